//! Structured logs with `tracing`: human-readable by default, JSON on request, to stderr, stdout
//! or a file (coturn's `--log-file`). The level comes from `-v`, else `RUST_LOG`, else the config's
//! `turn.log_level`; only the last can change at runtime (SIGHUP), because the first two are the
//! operator's explicit override for this run.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Layer, Registry};

/// Changes the log filter of a running process, when it came from the config file.
pub struct LogControl {
    handle: Option<reload::Handle<EnvFilter, Registry>>,
    current: Mutex<String>,
}

impl LogControl {
    /// Applies `directives` (a `turn.log_level` value). Returns whether the filter changed; a
    /// level fixed by `-v` or `RUST_LOG` stays as it is.
    pub fn apply(&self, directives: &str) -> Result<bool, String> {
        let Some(handle) = &self.handle else { return Ok(false) };
        let Ok(mut current) = self.current.lock() else { return Ok(false) };
        if *current == directives {
            return Ok(false);
        }
        let filter = EnvFilter::try_new(directives).map_err(|e| format!("turn.log_level {directives:?}: {e}"))?;
        handle.reload(filter).map_err(|e| e.to_string())?;
        *current = directives.to_owned();
        Ok(true)
    }
}

/// Whether `directives` is a valid log filter (for config validation).
pub fn check_level(directives: &str) -> Result<(), String> {
    EnvFilter::try_new(directives).map(|_| ()).map_err(|e| e.to_string())
}

pub fn init(verbose: u8, json: bool, file: Option<&Path>, configured: &str) -> anyhow::Result<LogControl> {
    let fixed = match verbose {
        0 => EnvFilter::try_from_default_env().ok(),
        1 => Some(EnvFilter::new("debug")),
        _ => Some(EnvFilter::new("trace")),
    };
    let reloadable = fixed.is_none();
    let filter = match fixed {
        Some(f) => f,
        None => EnvFilter::try_new(configured).unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let output = output_layer(json, file)?;
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot initialise logging: {e}"))?;
    Ok(LogControl { handle: reloadable.then_some(handle), current: Mutex::new(configured.to_owned()) })
}

/// The subscriber the output layer sits on: the registry under the reloadable filter.
type Filtered = tracing_subscriber::layer::Layered<reload::Layer<EnvFilter, Registry>, Registry>;
type Output = Box<dyn Layer<Filtered> + Send + Sync>;

fn output_layer(json: bool, file: Option<&Path>) -> anyhow::Result<Output> {
    let layer = fmt::layer();
    // Colour only for a person at a terminal: journald and log files must not get escape codes.
    Ok(match file.and_then(Path::to_str) {
        None | Some("stderr") => {
            finish(layer.with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal()), json)
        }
        Some("stdout") => finish(layer.with_writer(std::io::stdout).with_ansi(std::io::stdout().is_terminal()), json),
        Some(_) => {
            let path = file.unwrap_or(Path::new(""));
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            finish(layer.with_writer(Mutex::new(f)).with_ansi(false), json)
        }
    })
}

fn finish<W>(layer: fmt::Layer<Filtered, fmt::format::DefaultFields, fmt::format::Format, W>, json: bool) -> Output
where
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    if json {
        layer.json().boxed()
    } else {
        layer.boxed()
    }
}
