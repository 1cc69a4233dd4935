//! `signaling`: run the service, check a config, mint a test token, or try it out locally.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use ice_config::Config;
use signaling::cli::{Cli, Command, RunArgs};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::Quickstart(args)) => {
            init_logging(args.verbose, false).and_then(|()| signaling::quickstart::run(args))
        }
        Some(Command::Token(args)) => {
            signaling::quickstart::mint_token(&args.jwt_secret, &args.user, args.ttl).map(|t| {
                println!("{t}");
            })
        }
        None => return run(&cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signaling: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &RunArgs) -> ExitCode {
    let mut cfg = match &args.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("configuration error: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => Config::default(),
    };
    args.apply(&mut cfg);
    if let Err(e) = cfg.validate_for_signaling() {
        eprintln!("configuration error: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(path) = &cfg.signaling.jwt_public_key {
        if let Err(e) = signaling::auth::Authenticator::from_config(&cfg.signaling) {
            eprintln!("configuration error: signaling.jwt_public_key: {e} ({})", path.display());
            return ExitCode::FAILURE;
        }
    }
    if args.check_config {
        println!("configuration OK\n{}", describe(&cfg));
        return ExitCode::SUCCESS;
    }
    match serve(args, cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signaling: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &RunArgs, cfg: Config) -> anyhow::Result<()> {
    init_logging(args.verbose, args.log_json)?;
    for line in describe(&cfg).lines() {
        tracing::info!("{line}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(cfg.signaling.listen)
            .await
            .with_context(|| format!("binding signaling.listen {}", cfg.signaling.listen))?;
        signaling::server::run(cfg, listener).await
    })
}

/// The effective settings, secrets hidden.
fn describe(cfg: &Config) -> String {
    let s = &cfg.signaling;
    let mut out = String::new();
    out.push_str(&format!("listen: http://{}  socket.io path: {}\n", s.listen, s.socketio_path));
    out.push_str(&format!(
        "realm: {}  REST secrets: {}  credential ttl: {} s (bucket {} s)\n",
        cfg.realm,
        cfg.auth.secrets.len(),
        cfg.auth.credential_ttl_secs,
        s.credential_bucket_secs.min(cfg.auth.credential_ttl_secs / 2)
    ));
    let mut auth = Vec::new();
    if s.jwt_secret.is_some() {
        auth.push("HS256".to_owned());
    }
    if let Some(p) = &s.jwt_public_key {
        auth.push(format!("RS256/ES256 key {}", p.display()));
    }
    if !s.api_keys.is_empty() {
        auth.push(format!("{} API key(s)", s.api_keys.len()));
    }
    out.push_str(&format!("auth: {}  user claim: {}\n", auth.join(", "), s.jwt_user_claim));
    for r in &cfg.relays {
        let t: Vec<&str> = r.transports.iter().map(|t| t.as_str()).collect();
        out.push_str(&format!(
            "relay: {} udp {} tcp {} tls {} transports [{}] stun {}\n",
            r.host,
            r.udp_port,
            r.tcp_port,
            r.tls_port,
            t.join(","),
            r.stun
        ));
    }
    out.push_str(&format!(
        "ring timeout: {} s  heartbeat: ping every {} s, timeout {} s  reconnect grace: {} s\n",
        cfg.call.ring_timeout_secs,
        cfg.call.heartbeat_interval_secs,
        cfg.call.heartbeat_timeout_secs,
        s.reconnect_grace_secs
    ));
    out.push_str(&format!(
        "state: {}\n",
        if s.redis_url.is_some() { "redis (shared)" } else { "memory (single instance)" }
    ));
    out.push_str(&format!("webhook: {}\n", s.webhook_url.as_deref().unwrap_or("none")));
    out.push_str(&format!("cors origins: {:?}", s.cors_origins));
    out
}

fn init_logging(verbose: bool, json: bool) -> anyhow::Result<()> {
    let default = if verbose { "debug,socketioxide=info,engineioxide=info" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colours only on a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let result = if json { builder.json().try_init() } else { builder.try_init() };
    result.map_err(|e| anyhow::anyhow!("logging: {e}"))
}
