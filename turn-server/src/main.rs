//! `turn-server`: run the relay, check a config, mint credentials, or try it out locally.

use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use ice_config::{ice_servers, Config, IceUrl, RelayEndpoint, RestSecrets, Transport};
use turn_server::app::cli::{Cli, Command, CredentialsArgs, MigrateArgs, ProbeArgs, QuickstartArgs, RunArgs};
use turn_server::app::coturn_config::{self, Import, Note, Severity};
use turn_server::app::probe::conn::Trust;
use turn_server::app::probe::{self as prober, Credentials};
use turn_server::app::{runner, settings};
use turn_server::ops;

fn main() -> ExitCode {
    // A bad flag is a configuration error like any other: exit 1, as `--check-config` does for a
    // bad file (clap's own convention would be 2).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::FAILURE } else { ExitCode::SUCCESS };
        }
    };
    let result = match cli.command {
        Some(Command::Credentials(args)) => credentials(&args),
        Some(Command::Quickstart(args)) => quickstart(&args),
        Some(Command::Probe(args)) => probe(&args),
        Some(Command::Admin(args)) => turn_server::app::admin_client::run(&args),
        Some(Command::Migrate(args)) => migrate(&args),
        None => run(&cli.run),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("turn-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => Ok(Config::default()),
    }
}

fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    // Logging is not up yet, and the operator converting a file must see every note.
    let (mut cfg, coturn_log_file) = run_config(args, &|note| eprintln!("turn-server: {}: {note}", note.severity))?;
    args.apply(&mut cfg);
    if args.check_config {
        let checked = settings::resolve(&cfg).map_err(|e| e.to_string()).and_then(|s| {
            // The certificate is part of the configuration: a reload must not be approved with a
            // key that does not match or a file that does not parse.
            match &s.tls_files {
                Some(files) => files.load().map(|_| s).map_err(|e| format!("turn.cert: {e}")),
                None => Ok(s),
            }
        });
        return Ok(match checked {
            Ok(s) => match offload_status(s.offload) {
                Ok(offload) => {
                    println!("configuration OK\n{}\noffload: {offload}", s.describe());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!(
                        "configuration error: turn.offload = \"{}\", but the kernel fast path cannot load: {e}",
                        s.offload.as_str()
                    );
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("configuration error: {e}");
                ExitCode::FAILURE
            }
        });
    }
    let settings = settings::resolve(&cfg).context("invalid configuration")?;
    let log_file = args.log_file.as_deref().or(coturn_log_file.as_deref());
    let log = ops::logging::init(args.verbose, args.log_json, log_file, &settings.log_level)?;
    for line in settings.describe().lines() {
        tracing::info!("{line}");
    }
    let flags = RunArgs::clone(args);
    let reload: runner::Reloader = Box::new(move || {
        let (mut cfg, _) = run_config(&flags, &log_note)?;
        flags.apply(&mut cfg);
        Ok(settings::resolve(&cfg)?)
    });
    runner::run(settings, Some(reload), Some(log))?;
    Ok(ExitCode::SUCCESS)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn credentials(args: &CredentialsArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(args.config.as_deref())?;
    let secrets = match &args.secret {
        Some(s) => RestSecrets::new([s.clone()])?,
        None => cfg.rest_secrets().context("no --secret given and the config has no auth.secrets")?,
    };
    let ttl = args.ttl.map_or(cfg.auth.credential_ttl_secs, |d| d.as_secs());
    let cred = secrets.issue(args.user.as_deref(), unix_now(), ttl);
    let expires = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(cred.expires_at));
    let servers = ice_servers(&cfg.relays, &cred);
    if args.json {
        let out = serde_json::json!({
            "username": cred.username,
            "credential": cred.password,
            "expiresAt": expires.to_string(),
            "iceServers": servers,
        });
        println!("{out}");
    } else {
        println!("username: {}\npassword: {}\nexpires:  {expires}", cred.username, cred.password);
        if !servers.is_empty() {
            println!("{}", serde_json::json!({ "iceServers": servers }));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn quickstart(args: &QuickstartArgs) -> anyhow::Result<ExitCode> {
    ops::logging::init(args.verbose, false, None, "info")?;
    let secret: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut cfg = Config { realm: "localhost".into(), ..Config::default() };
    cfg.auth.secrets = vec![secret.clone()];
    cfg.turn.listening_ips = vec![loopback];
    cfg.turn.listening_port = args.port;
    cfg.turn.min_port = args.min_port;
    cfg.turn.max_port = args.max_port;
    // Safe here only because the relay is reachable from this host alone.
    cfg.turn.allow_loopback_peers = true;
    cfg.relays = vec![RelayEndpoint {
        host: loopback.to_string(),
        udp_port: args.port,
        tcp_port: args.port,
        tls_port: 5349,
        transports: vec![Transport::Udp],
        stun: true,
    }];
    let settings = settings::resolve(&cfg)?;
    let cred = RestSecrets::new([secret.clone()])?.issue(Some("demo"), unix_now(), 86_400);
    let servers = serde_json::to_string_pretty(&serde_json::json!({ "iceServers": ice_servers(&cfg.relays, &cred) }))?;
    println!(
        "turn-server quickstart: STUN/TURN on udp 127.0.0.1:{port} (loopback only, loopback peers allowed)\n\
         shared secret for this run: {secret}\n\n\
         ICE config for new RTCPeerConnection(...) (valid 24 h):\n{servers}\n\n\
         Try it with coturn's test tools (Debian package coturn):\n  \
         turnutils_peer -L 127.0.0.1 -p 3480 &\n  \
         turnutils_uclient -W {secret} -u demo -e 127.0.0.1 -r 3480 -n 100 -p {port} 127.0.0.1\n\n\
         More credentials: turn-server credentials --secret {secret} --user alice --ttl 1h\n\
         Stop with Ctrl-C.\n",
        port = args.port,
    );
    runner::run(settings, None, None)?;
    Ok(ExitCode::SUCCESS)
}

fn probe(args: &ProbeArgs) -> anyhow::Result<ExitCode> {
    if let (Some(base), Some(token)) = (&args.signaling, &args.token) {
        return probe_from_signaling(args, base, token);
    }
    let cfg = load_config(args.config.as_deref())?;
    let mut urls = args.url.clone();
    if urls.is_empty() {
        // Only the URLs are used; the credential comes from the flags below.
        let none = ice_config::RestCredential { username: String::new(), password: String::new(), expires_at: 0 };
        for server in ice_servers(&cfg.relays, &none) {
            for u in &server.urls {
                urls.push(u.parse::<IceUrl>().map_err(|e| anyhow::anyhow!("relays: {e}"))?);
            }
        }
    }
    anyhow::ensure!(!urls.is_empty(), "nothing to probe: give --url, or --config with [[relays]]");
    let creds = match (&args.username, &args.password, &args.secret) {
        (Some(u), Some(p), _) => Some(Credentials { username: u.clone(), password: p.clone() }),
        (_, _, Some(secret)) => {
            let c = RestSecrets::new([secret.clone()])?.issue(Some(&args.user), unix_now(), 3600);
            Some(Credentials { username: c.username, password: c.password })
        }
        _ => cfg.rest_secrets().ok().map(|s| {
            let c = s.issue(Some(&args.user), unix_now(), 3600);
            Credentials { username: c.username, password: c.password }
        }),
    };
    let trust = trust_of(args);
    let results: Vec<_> = urls.iter().map(|u| prober::probe(u, creds.as_ref(), args.timeout, &trust)).collect();
    report(args, &results)
}

fn trust_of(args: &ProbeArgs) -> Trust<'_> {
    match (&args.ca, args.insecure) {
        (_, true) => Trust::Insecure,
        (Some(ca), false) => Trust::CaFile(ca),
        (None, false) => Trust::System,
    }
}

/// Fetches the ICE config a client would get and probes every server in it with its credential.
fn probe_from_signaling(args: &ProbeArgs, base: &str, token: &str) -> anyhow::Result<ExitCode> {
    let url = format!("{}/v1/ice-servers", base.trim_end_matches('/'));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let body: serde_json::Value = runtime.block_on(async {
        let response = reqwest::Client::builder()
            .timeout(args.timeout)
            .build()?
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(status.is_success(), "GET {url}: {status}: {text}");
        serde_json::from_str(&text).with_context(|| format!("GET {url}: not JSON"))
    })?;
    let servers: Vec<ice_config::IceServer> = serde_json::from_value(body["iceServers"].clone())
        .with_context(|| format!("GET {url}: no iceServers array"))?;
    let trust = trust_of(args);
    let mut results = Vec::new();
    for server in &servers {
        let creds = match (&server.username, &server.credential) {
            (Some(u), Some(p)) => Some(Credentials { username: u.clone(), password: p.clone() }),
            _ => None,
        };
        for u in &server.urls {
            let parsed = u.parse::<IceUrl>().map_err(|e| anyhow::anyhow!("iceServers: {e}"))?;
            results.push(prober::probe(&parsed, creds.as_ref(), args.timeout, &trust));
        }
    }
    anyhow::ensure!(!results.is_empty(), "GET {url}: the iceServers array is empty");
    report(args, &results)
}

fn report(args: &ProbeArgs, results: &[prober::ProbeResult]) -> anyhow::Result<ExitCode> {
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        let dash = |a: Option<std::net::SocketAddr>| a.map_or("-".to_owned(), |a| a.to_string());
        println!("{:<44} {:<4} {:<6} {:<24} {:<24} {:>9}", "URL", "VIA", "RESULT", "MAPPED", "RELAYED", "RTT");
        for r in results {
            let rtt = r.rtt_ms.map_or("-".to_owned(), |ms| format!("{ms:.1} ms"));
            let result = if r.ok { "ok" } else { "FAIL" };
            println!(
                "{:<44} {:<4} {:<6} {:<24} {:<24} {:>9}",
                r.url,
                r.transport,
                result,
                dash(r.mapped),
                dash(r.relayed),
                rtt
            );
            if let (Some(error), Some(hint)) = (&r.error, &r.hint) {
                println!("    error: {error}\n    hint:  {hint}");
            }
        }
    }
    Ok(if results.iter().all(|r| r.ok) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The file the relay runs from: `--coturn-config` converted (its notes passed to `report`), or
/// `--config`, or the defaults. Also coturn's `log-file`, which is a flag here.
fn run_config(args: &RunArgs, report: &dyn Fn(&Note)) -> anyhow::Result<(Config, Option<std::path::PathBuf>)> {
    match &args.coturn_config {
        Some(path) => {
            let import = import_coturn(path)?;
            import.notes.iter().for_each(report);
            Ok((import.config, import.log_file))
        }
        None => Ok((load_config(args.config.as_deref())?, None)),
    }
}

/// On SIGHUP the notes were already shown at start; only what is ignored bears repeating.
fn log_note(note: &Note) {
    if note.severity == Severity::Warning {
        tracing::warn!("{note}");
    }
}

fn import_coturn(path: &std::path::Path) -> anyhow::Result<Import> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read coturn config file {}", path.display()))?;
    Ok(coturn_config::parse(&text, &path.display().to_string())?)
}

/// Prints the TOML for `--config`; exits 1 (after printing) when the result would not start.
fn migrate(args: &MigrateArgs) -> anyhow::Result<ExitCode> {
    let path = args.input().context("no coturn config file given")?;
    let import = import_coturn(path)?;
    for note in &import.notes {
        eprintln!("turn-server: {}: {note}", note.severity);
    }
    print!("{}", coturn_config::render_toml(&import, &path.display().to_string())?);
    if let Err(e) = settings::resolve(&import.config) {
        eprintln!("turn-server: the converted configuration would not start: {e}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the kernel fast path would load here, for `--check-config` (loads nothing for good).
fn offload_status(mode: ice_config::OffloadMode) -> Result<String, turn_server::offload::OffloadError> {
    use ice_config::OffloadMode;
    use turn_server::offload::Hook;
    let Some(hook) = turn_server::net::fast_path::hook(mode) else {
        return Ok("off (channel data is relayed in userspace)".into());
    };
    match (mode, turn_server::offload::probe(hook)) {
        (_, Ok(())) if hook == Hook::Xdp => Ok("available: channel data will be relayed at XDP".into()),
        (_, Ok(())) => Ok("available: channel data will be relayed at TC ingress".into()),
        (OffloadMode::Auto, Err(e)) => Ok(format!("unavailable, relaying in userspace: {e}")),
        (_, Err(e)) => Err(e),
    }
}
