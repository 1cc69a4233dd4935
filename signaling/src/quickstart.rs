//! `signaling quickstart`: the relay and the signaling service on loopback with throwaway
//! secrets, plus a test token and the curl line that fetches a working ICE config. For trying
//! the pair out; nothing here is fit for production (random secrets, loopback peers allowed).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use ice_config::{Config, RelayEndpoint, Transport};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

use crate::cli::QuickstartArgs;

/// A HS256 token `{sub: user, iat, exp: now + ttl}`.
pub fn mint_token(secret: &str, user: &str, ttl_secs: u64) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let claims = json!({"sub": user, "iat": now, "exp": now + ttl_secs});
    Ok(encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes()))?)
}

fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

/// Kills the relay when quickstart ends, however it ends.
struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn turn_server_binary(args: &QuickstartArgs) -> PathBuf {
    if let Some(p) = &args.turn_server {
        return p.clone();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("turn-server")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("turn-server"))
}

/// Runs until Ctrl-C.
pub fn run(args: &QuickstartArgs) -> anyhow::Result<()> {
    let turn_secret = random_hex(32);
    let jwt_secret = random_hex(32);
    let binary = turn_server_binary(args);
    let port = args.turn_port.to_string();
    let child = Command::new(&binary)
        .args(["-L", "127.0.0.1", "-p", &port, "-r", "localhost", "--use-auth-secret", "--allow-loopback-peers"])
        .arg("--static-auth-secret")
        .arg(&turn_secret)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {} (build it with `cargo build -p turn-server`)", binary.display()))?;
    let mut relay = Relay(child);
    std::thread::sleep(Duration::from_millis(300));
    if let Some(status) = relay.0.try_wait()? {
        anyhow::bail!("turn-server exited at once ({status}); is port {port} free?");
    }

    let mut cfg = Config { realm: "localhost".into(), ..Config::default() };
    cfg.auth.secrets = vec![turn_secret];
    cfg.relays = vec![RelayEndpoint {
        host: Ipv4Addr::LOCALHOST.to_string(),
        udp_port: args.turn_port,
        tcp_port: args.turn_port,
        tls_port: 5349,
        transports: vec![Transport::Udp, Transport::Tcp],
        stun: true,
    }];
    cfg.signaling.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, args.http_port));
    cfg.signaling.jwt_secret = Some(jwt_secret.clone());
    cfg.signaling.cors_origins = vec!["*".into()];
    cfg.validate_for_signaling()?;
    let token = mint_token(&jwt_secret, "demo", 86_400)?;
    let other = mint_token(&jwt_secret, "demo2", 86_400)?;
    let http = args.http_port;
    println!(
        "signaling quickstart: turn-server on udp/tcp 127.0.0.1:{port}, signaling on http://127.0.0.1:{http}\n\
         JWT secret for this run (--jwt-secret): {jwt_secret}\n\n\
         Test token for user \"demo\" (valid 24 h):\n  {token}\n\
         Second user \"demo2\":\n  {other}\n\n\
         Fetch a working ICE config:\n  \
         curl -s -H 'Authorization: Bearer {token}' http://127.0.0.1:{http}/v1/ice-servers\n\n\
         Socket.IO: io('http://127.0.0.1:{http}', {{ path: '/socket.io', auth: {{ token }} }})\n\
         Stop with Ctrl-C.\n"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(cfg.signaling.listen)
            .await
            .with_context(|| format!("binding {}", cfg.signaling.listen))?;
        crate::server::run(cfg, listener).await
    });
    drop(relay);
    result
}
