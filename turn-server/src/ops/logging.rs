//! Structured logs with `tracing`: human-readable by default, JSON on request, to stderr, stdout
//! or a file (coturn's `--log-file`). `RUST_LOG` overrides the level chosen by `-v`.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

pub fn init(verbose: u8, json: bool, file: Option<&Path>) -> anyhow::Result<()> {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match file.and_then(Path::to_str) {
        // Colour only for a person at a terminal: journald and log files must not get escape codes.
        None | Some("stderr") => {
            finish(builder.with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal()), json)
        }
        Some("stdout") => finish(builder.with_writer(std::io::stdout).with_ansi(std::io::stdout().is_terminal()), json),
        Some(_) => {
            let path = file.unwrap_or(Path::new(""));
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            finish(builder.with_writer(Mutex::new(f)).with_ansi(false), json)
        }
    };
    result.map_err(|e| anyhow::anyhow!("cannot initialise logging: {e}"))
}

fn finish<W>(
    builder: tracing_subscriber::fmt::SubscriberBuilder<
        tracing_subscriber::fmt::format::DefaultFields,
        tracing_subscriber::fmt::format::Format,
        EnvFilter,
        W,
    >,
    json: bool,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    }
}
