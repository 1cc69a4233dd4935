//! `cargo run -p pkg-assets -- assets DIR`: writes the man pages and shell completions of both binaries
//! from their clap definitions (`turn_server::app::cli::Cli`, `signaling::cli::Cli`), so what the
//! Debian packages document is the parser the binaries run, with no build.rs copy of the CLI.
//! `deploy/package.sh` runs it before `cargo deb`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    match (args.next().as_deref().and_then(|a| a.to_str()), args.next(), args.next()) {
        (Some("assets"), dir, None) => {
            let dir = dir.map_or_else(|| PathBuf::from("target/assets"), PathBuf::from);
            write_assets(turn_server::app::cli::Cli::command(), &dir)?;
            write_assets(signaling::cli::Cli::command(), &dir)?;
            Ok(())
        }
        _ => bail!("usage: pkg-assets assets [DIR]  (writes DIR/<binary>/man/*.1 and DIR/<binary>/completions/)"),
    }
}

/// `DIR/<name>/man/` gets a page for the binary and one per subcommand (`turn-server-probe.1`),
/// `DIR/<name>/completions/` one script per shell under the file name Debian installs it as.
fn write_assets(cmd: clap::Command, dir: &Path) -> anyhow::Result<()> {
    let name = cmd.get_name().to_owned();
    let man_dir = dir.join(&name).join("man");
    let completion_dir = dir.join(&name).join("completions");
    for d in [&man_dir, &completion_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    clap_mangen::generate_to(cmd.clone(), &man_dir)
        .with_context(|| format!("cannot write man pages to {}", man_dir.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = cmd.clone();
        clap_complete::generate_to(shell, &mut cmd, &name, &completion_dir)
            .with_context(|| format!("cannot write the {shell} completion to {}", completion_dir.display()))?;
    }
    println!("{}: man pages in {}, completions in {}", name, man_dir.display(), completion_dir.display());
    Ok(())
}
