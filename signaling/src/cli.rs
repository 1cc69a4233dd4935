//! Command line. Every `[signaling]` key and the shared keys the service uses have a flag; flag
//! names shared with the relay (`--static-auth-secret`, `--realm`) mean the same thing there.
//! Flags override the config file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ice_config::{Config, IceUrl, RelayEndpoint, Scheme, Transport};

/// `signaling`.
#[derive(Debug, Parser)]
#[command(name = "signaling", version, about = "ICE config over REST and call signaling over Socket.IO")]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// A subcommand; none runs the service.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Run options.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start turn-server and signaling on 127.0.0.1 with throwaway secrets; print a test token
    /// and a curl line that fetches a working ICE config.
    Quickstart(QuickstartArgs),
    /// Print an HS256 JWT for a user (testing only: the messenger's backend issues real ones).
    Token(TokenArgs),
}

/// `signaling quickstart`.
#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// HTTP/Socket.IO port.
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    /// STUN/TURN port of the relay.
    #[arg(long, default_value_t = 3478)]
    pub turn_port: u16,
    /// The relay binary; default: `turn-server` next to this executable, then PATH.
    #[arg(long, value_name = "FILE")]
    pub turn_server: Option<PathBuf>,
    /// More logging.
    #[arg(short, long)]
    pub verbose: bool,
}

/// `signaling token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// HS256 secret (the service's `--jwt-secret`).
    #[arg(long, env = "SIGNALING_JWT_SECRET")]
    pub jwt_secret: String,
    /// User id (`sub`).
    #[arg(long)]
    pub user: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl: u64,
}

/// Running the service.
#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// The shared TOML config file (see ice-config/config.example.toml).
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Validate config and flags, print the effective settings (secrets hidden), and exit.
    #[arg(long)]
    pub check_config: bool,
    /// HTTP listen address [signaling.listen].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Local Prometheus listener, e.g. 127.0.0.1:9642 [signaling.metrics_listen].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Longest SIGTERM drain in seconds [signaling.drain_timeout_secs].
    #[arg(long, value_name = "SECS")]
    pub drain_timeout: Option<u64>,
    /// Seconds to send the Socket.IO CONNECT after opening a session [signaling.socket_connect_timeout_secs].
    #[arg(long, value_name = "SECS")]
    pub socket_connect_timeout: Option<u64>,
    /// Packets queued towards one socket [signaling.socket_send_queue].
    #[arg(long, value_name = "N")]
    pub socket_send_queue: Option<usize>,
    /// New Socket.IO sessions per minute per client address [signaling.socket_connects_per_ip].
    #[arg(long, value_name = "N")]
    pub socket_connects_per_ip: Option<u32>,
    /// Refused handshakes per minute per client address [signaling.socket_auth_failures_per_ip].
    #[arg(long, value_name = "N")]
    pub socket_auth_failures_per_ip: Option<u32>,
    /// Build ICE configs from the relays' registry in Redis [signaling.fleet].
    #[arg(long)]
    pub fleet: bool,
    /// Registry relays per ICE config [signaling.fleet_relays].
    #[arg(long, value_name = "N")]
    pub fleet_relays: Option<usize>,
    /// Header carrying the client's region [signaling.region_header].
    #[arg(long, value_name = "NAME")]
    pub region_header: Option<String>,
    /// Seconds the last registry read is served while Redis is down [signaling.fleet_stale_secs].
    #[arg(long, value_name = "SECS")]
    pub fleet_stale: Option<u64>,
    /// Socket.IO path [signaling.socketio_path].
    #[arg(long, value_name = "PATH")]
    pub socketio_path: Option<String>,
    /// HS256 JWT secret [signaling.jwt_secret].
    #[arg(long, value_name = "S", env = "SIGNALING_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM public key for RS256/ES256 JWTs [signaling.jwt_public_key].
    #[arg(long, value_name = "FILE")]
    pub jwt_public_key: Option<PathBuf>,
    /// Required JWT issuer [signaling.jwt_issuer].
    #[arg(long, value_name = "ISS")]
    pub jwt_issuer: Option<String>,
    /// Required JWT audience [signaling.jwt_audience].
    #[arg(long, value_name = "AUD")]
    pub jwt_audience: Option<String>,
    /// JWT claim holding the user id [signaling.jwt_user_claim].
    #[arg(long, value_name = "CLAIM")]
    pub jwt_user_claim: Option<String>,
    /// JWT clock skew leeway in seconds [signaling.jwt_leeway_secs].
    #[arg(long, value_name = "SECS")]
    pub jwt_leeway: Option<u64>,
    /// Server-to-server API key (repeatable) [signaling.api_keys].
    #[arg(long = "api-key", value_name = "KEY", env = "SIGNALING_API_KEY", hide_env_values = true)]
    pub api_key: Vec<String>,
    /// Query parameter naming the user for API keys [signaling.api_key_user_param].
    #[arg(long, value_name = "NAME")]
    pub api_key_user_param: Option<String>,
    /// Allowed browser origin (repeatable; "*" for any) [signaling.cors_origins].
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origin: Vec<String>,
    /// Requests per minute per user [signaling.rate_limit_per_user].
    #[arg(long, value_name = "N")]
    pub rate_limit_per_user: Option<u32>,
    /// Requests per minute per client address [signaling.rate_limit_per_ip].
    #[arg(long, value_name = "N")]
    pub rate_limit_per_ip: Option<u32>,
    /// Trust X-Real-IP / X-Forwarded-For [signaling.trust_proxy_headers].
    #[arg(long)]
    pub trust_proxy_headers: bool,
    /// Credential expiry bucket in seconds [signaling.credential_bucket_secs].
    #[arg(long, value_name = "SECS")]
    pub credential_bucket: Option<u64>,
    /// Reconnect grace in seconds [signaling.reconnect_grace_secs].
    #[arg(long, value_name = "SECS")]
    pub reconnect_grace: Option<u64>,
    /// Largest event payload in bytes [signaling.max_event_bytes].
    #[arg(long, value_name = "BYTES")]
    pub max_event_bytes: Option<usize>,
    /// Largest Socket.IO message the engine reads, in bytes; above it the connection is closed
    /// [signaling.max_message_bytes].
    #[arg(long, value_name = "BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Redis URL shared by all instances [signaling.redis_url].
    #[arg(long, value_name = "URL", env = "SIGNALING_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Redis key/channel prefix [signaling.redis_prefix].
    #[arg(long, value_name = "PREFIX")]
    pub redis_prefix: Option<String>,
    /// Deadline poll interval in milliseconds [signaling.deadline_poll_ms].
    #[arg(long, value_name = "MS")]
    pub deadline_poll_ms: Option<u64>,
    /// Webhook URL for pushes [signaling.webhook_url].
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Webhook HMAC secret [signaling.webhook_secret].
    #[arg(long, value_name = "S", env = "SIGNALING_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Webhook attempts per event [signaling.webhook_max_attempts].
    #[arg(long, value_name = "N")]
    pub webhook_max_attempts: Option<u32>,
    /// Webhook request timeout in seconds [signaling.webhook_timeout_secs].
    #[arg(long, value_name = "SECS")]
    pub webhook_timeout: Option<u64>,
    /// Do not serve the diagnostics page at /diag (404) [signaling.diag_enabled = false].
    #[arg(long)]
    pub no_diag: bool,
    /// Do not serve the test call page at /call (404) [signaling.call_page_enabled = false].
    #[arg(long)]
    pub no_call_page: bool,
    /// TURN REST shared secret, as the relay's flag (repeatable; first signs) [auth.secrets].
    #[arg(long = "static-auth-secret", value_name = "S", env = "TURN_STATIC_AUTH_SECRET", hide_env_values = true)]
    pub static_auth_secret: Vec<String>,
    /// Realm, as the relay's flag [realm].
    #[arg(short = 'r', long, value_name = "R")]
    pub realm: Option<String>,
    /// Relay URL handed to clients, e.g. `turn:turn.example.org:3478?transport=udp`,
    /// `turns:turn.example.org:443?transport=tcp`, `stun:turn.example.org:3478` (repeatable;
    /// replaces [[relays]]).
    #[arg(long = "turn-url", value_name = "URL")]
    pub turn_url: Vec<IceUrl>,
    /// Credential lifetime in seconds [auth.credential_ttl_secs].
    #[arg(long, value_name = "SECS")]
    pub credential_ttl: Option<u64>,
    /// Ring timeout in seconds [call.ring_timeout_secs].
    #[arg(long, value_name = "SECS")]
    pub ring_timeout: Option<u64>,
    /// Socket.IO pingInterval in seconds [call.heartbeat_interval_secs].
    #[arg(long, value_name = "SECS")]
    pub heartbeat_interval: Option<u64>,
    /// Socket.IO pingTimeout in seconds [call.heartbeat_timeout_secs].
    #[arg(long, value_name = "SECS")]
    pub heartbeat_timeout: Option<u64>,
    /// Debug logging (RUST_LOG overrides).
    #[arg(short, long)]
    pub verbose: bool,
    /// Logs as JSON lines.
    #[arg(long)]
    pub log_json: bool,
}

macro_rules! set {
    ($target:expr, $value:expr) => {
        if let Some(v) = $value.clone() {
            $target = v;
        }
    };
}

macro_rules! set_opt {
    ($target:expr, $value:expr) => {
        if let Some(v) = $value.clone() {
            $target = Some(v);
        }
    };
}

impl RunArgs {
    /// Overrides `cfg` with the flags given.
    pub fn apply(&self, cfg: &mut Config) {
        let s = &mut cfg.signaling;
        set!(s.listen, self.listen);
        set!(s.socketio_path, self.socketio_path);
        set_opt!(s.metrics_listen, self.metrics_listen);
        set!(s.drain_timeout_secs, self.drain_timeout);
        set!(s.socket_connect_timeout_secs, self.socket_connect_timeout);
        set!(s.socket_send_queue, self.socket_send_queue);
        set!(s.socket_connects_per_ip, self.socket_connects_per_ip);
        set!(s.socket_auth_failures_per_ip, self.socket_auth_failures_per_ip);
        s.fleet |= self.fleet;
        set!(s.fleet_relays, self.fleet_relays);
        set_opt!(s.region_header, self.region_header);
        set!(s.fleet_stale_secs, self.fleet_stale);
        set_opt!(s.jwt_secret, self.jwt_secret);
        set_opt!(s.jwt_public_key, self.jwt_public_key);
        set_opt!(s.jwt_issuer, self.jwt_issuer);
        set_opt!(s.jwt_audience, self.jwt_audience);
        set!(s.jwt_user_claim, self.jwt_user_claim);
        set!(s.jwt_leeway_secs, self.jwt_leeway);
        if !self.api_key.is_empty() {
            s.api_keys = self.api_key.clone();
        }
        set!(s.api_key_user_param, self.api_key_user_param);
        if !self.cors_origin.is_empty() {
            s.cors_origins = self.cors_origin.clone();
        }
        set!(s.rate_limit_per_user, self.rate_limit_per_user);
        set!(s.rate_limit_per_ip, self.rate_limit_per_ip);
        s.trust_proxy_headers |= self.trust_proxy_headers;
        if self.no_diag {
            s.diag_enabled = false;
        }
        if self.no_call_page {
            s.call_page_enabled = false;
        }
        set!(s.credential_bucket_secs, self.credential_bucket);
        set!(s.reconnect_grace_secs, self.reconnect_grace);
        set!(s.max_event_bytes, self.max_event_bytes);
        set!(s.max_message_bytes, self.max_message_bytes);
        set_opt!(s.redis_url, self.redis_url);
        set!(s.redis_prefix, self.redis_prefix);
        set!(s.deadline_poll_ms, self.deadline_poll_ms);
        set_opt!(s.webhook_url, self.webhook_url);
        set_opt!(s.webhook_secret, self.webhook_secret);
        set!(s.webhook_max_attempts, self.webhook_max_attempts);
        set!(s.webhook_timeout_secs, self.webhook_timeout);
        if !self.static_auth_secret.is_empty() {
            cfg.auth.secrets = self.static_auth_secret.clone();
        }
        set!(cfg.realm, self.realm);
        if !self.turn_url.is_empty() {
            cfg.relays = relays_from_urls(&self.turn_url);
        }
        set!(cfg.auth.credential_ttl_secs, self.credential_ttl);
        set!(cfg.call.ring_timeout_secs, self.ring_timeout);
        set!(cfg.call.heartbeat_interval_secs, self.heartbeat_interval);
        set!(cfg.call.heartbeat_timeout_secs, self.heartbeat_timeout);
    }
}

/// Groups URLs by host into relays, in the order hosts first appear.
pub fn relays_from_urls(urls: &[IceUrl]) -> Vec<RelayEndpoint> {
    let mut relays: Vec<RelayEndpoint> = Vec::new();
    for url in urls {
        let index = match relays.iter().position(|r| r.host == url.host) {
            Some(i) => i,
            None => {
                relays.push(RelayEndpoint {
                    host: url.host.clone(),
                    udp_port: 3478,
                    tcp_port: 3478,
                    tls_port: 5349,
                    transports: Vec::new(),
                    stun: false,
                });
                relays.len() - 1
            }
        };
        let relay = &mut relays[index];
        match url.transport {
            Transport::Udp => relay.udp_port = url.port,
            Transport::Tcp => relay.tcp_port = url.port,
            Transport::Tls => relay.tls_port = url.port,
        }
        if url.scheme == Scheme::Stun {
            relay.stun = true;
        } else if !relay.transports.contains(&url.transport) {
            relay.transports.push(url.transport);
        }
    }
    relays
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn turn_urls_become_relays() {
        let urls: Vec<IceUrl> = [
            "stun:turn.example.org:3478",
            "turn:turn.example.org:3478?transport=udp",
            "turn:turn.example.org:3479?transport=tcp",
            "turns:turn.example.org:443?transport=tcp",
            "turn:[2001:db8::1]:3478",
        ]
        .iter()
        .map(|u| u.parse().unwrap())
        .collect();
        let relays = relays_from_urls(&urls);
        assert_eq!(relays.len(), 2);
        assert_eq!(
            relays[0],
            RelayEndpoint {
                host: "turn.example.org".into(),
                udp_port: 3478,
                tcp_port: 3479,
                tls_port: 443,
                transports: vec![Transport::Udp, Transport::Tcp, Transport::Tls],
                stun: true,
            }
        );
        assert_eq!(relays[1].host, "2001:db8::1");
        assert_eq!(relays[1].transports, vec![Transport::Udp]);
    }

    #[test]
    fn flags_override_the_file() {
        let cli = Cli::parse_from([
            "signaling",
            "--listen",
            "127.0.0.1:9000",
            "--jwt-secret",
            "0123456789abcdef",
            "--static-auth-secret",
            "s1",
            "--realm",
            "r.example",
            "--turn-url",
            "turn:127.0.0.1:3478?transport=udp",
            "--ring-timeout",
            "3",
            "--credential-ttl",
            "600",
            "--redis-url",
            "redis://127.0.0.1:6379",
            "--webhook-url",
            "http://127.0.0.1:9/h",
        ]);
        let mut cfg = Config::default();
        cli.run.apply(&mut cfg);
        assert_eq!(cfg.signaling.listen.port(), 9000);
        assert_eq!(cfg.auth.secrets, vec!["s1"]);
        assert_eq!(cfg.realm, "r.example");
        assert_eq!(cfg.relays.len(), 1);
        assert_eq!(cfg.call.ring_timeout_secs, 3);
        assert_eq!(cfg.auth.credential_ttl_secs, 600);
        assert_eq!(cfg.signaling.redis_url.as_deref(), Some("redis://127.0.0.1:6379"));
        assert_eq!(cfg.signaling.webhook_url.as_deref(), Some("http://127.0.0.1:9/h"));
    }
}
