//! The one TOML file read by both the relay and the signaling service.
//!
//! Sharing a file is what keeps the two in agreement on the realm, the REST secrets and the
//! public endpoints without any runtime coordination. Key names mirror coturn's options (with
//! `_` for `-`) so operators can carry their knowledge over. Every field has a default, so a file
//! with just `[auth] secrets = [...]` and one `[[relays]]` is a working config.
//!
//! Parsing and validation are separate steps: [`Config::from_toml_str`] and [`Config::load`]
//! only parse; callers must run [`Config::validate`] before using the result.

mod external_ip;
mod ip_range;
mod signaling;
mod static_user;
mod validate;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::credentials::{CredentialError, RestSecrets};
use crate::ice::Transport;

pub use external_ip::ExternalIp;
pub use ip_range::{IpRange, ParseAddrError};
pub use signaling::SignalingConfig;
pub use static_user::{parse_static_user, StaticUserSecret};

/// Why a config could not be read, parsed or accepted.
#[derive(thiserror::Error, Debug)]
pub enum ConfigError {
    /// The file could not be read; the IO error is the `source()`.
    #[error("cannot read config file {}", path.display())]
    Io {
        /// The file we tried to read.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// TOML syntax or type error, with toml's own message (it names the key and line).
    #[error("{0}")]
    Parse(String),
    /// A value parsed but is not acceptable; `key` is its dotted path, e.g. `turn.min_port`.
    #[error("{key}: {message}")]
    Invalid {
        /// Dotted path of the offending key, with `[i]` for array elements.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { key: key.into(), message: message.into() }
    }
}

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Long-term credential realm (coturn `realm`); part of every key, so both services must agree.
    pub realm: String,
    /// Credentials.
    pub auth: AuthConfig,
    /// Public endpoints handed to clients in the ICE config.
    pub relays: Vec<RelayEndpoint>,
    /// The relay process.
    pub turn: TurnConfig,
    /// Call signaling timing.
    pub call: CallConfig,
    /// The signaling service (ignored by the relay).
    pub signaling: SignalingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            realm: "localhost".into(),
            auth: AuthConfig::default(),
            relays: Vec::new(),
            turn: TurnConfig::default(),
            call: CallConfig::default(),
            signaling: SignalingConfig::default(),
        }
    }
}

impl Config {
    /// Parses a config from TOML text. Does not validate.
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigError> {
        toml::from_str(s).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Reads and parses `path`. Does not validate. Errors name the file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse(format!("{}: {e}", path.display())))
    }

    /// The config as TOML with every secret, password and token replaced by `<redacted>`: what an
    /// operator may be shown (the admin interface) without handing out credentials.
    pub fn to_redacted_toml(&self) -> Result<String, ConfigError> {
        const REDACTED: &str = "<redacted>";
        let mut c = self.clone();
        c.auth.secrets.iter_mut().for_each(|s| *s = REDACTED.into());
        for user in &mut c.auth.users {
            let name = user.split_once(':').map_or("<malformed>", |(name, _)| name);
            *user = format!("{name}:{REDACTED}");
        }
        let hide = |slot: &mut Option<String>| {
            if slot.is_some() {
                *slot = Some(REDACTED.into());
            }
        };
        hide(&mut c.turn.admin_token);
        hide(&mut c.signaling.jwt_secret);
        hide(&mut c.signaling.webhook_secret);
        c.signaling.api_keys.iter_mut().for_each(|k| *k = REDACTED.into());
        for url in [&mut c.turn.redis_url, &mut c.signaling.redis_url].into_iter().flatten() {
            *url = redis_link::redact(url);
        }
        toml::to_string(&c).map_err(|e| ConfigError::Parse(format!("cannot write the config as TOML: {e}")))
    }

    /// The REST secrets, as an error naming `auth.secrets` when there are none or one is empty.
    pub fn rest_secrets(&self) -> Result<RestSecrets, ConfigError> {
        RestSecrets::new(self.auth.secrets.iter().cloned()).map_err(|e| match e {
            CredentialError::EmptySecret => {
                let index = self.auth.secrets.iter().position(String::is_empty).unwrap_or(0);
                ConfigError::invalid(format!("auth.secrets[{index}]"), "is empty")
            }
            _ => ConfigError::invalid("auth.secrets", "is empty: no REST API secret is configured"),
        })
    }
}

/// `[auth]`: who may use the relay.
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// REST shared secrets (coturn `static-auth-secret`); the first signs, all verify.
    pub secrets: Vec<String>,
    /// Lifetime of issued credentials.
    pub credential_ttl_secs: u64,
    /// Between expiry and user id in REST usernames (coturn `rest-api-separator`); one character.
    pub rest_separator: String,
    /// Static long-term users, `name:password` or `name:0x<md5 key>` (coturn `user`).
    pub users: Vec<String>,
    /// REST usernames expiring further in the future than this are refused, so a leaked or forged
    /// long-lived credential is useless; 0 = no limit.
    pub max_credential_lifetime_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            secrets: Vec::new(),
            credential_ttl_secs: 86_400,
            rest_separator: ":".into(),
            users: Vec::new(),
            max_credential_lifetime_secs: 7 * 86_400,
        }
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Configs get logged at startup; secrets and passwords must not be.
        let users: Vec<&str> =
            self.users.iter().map(|u| u.split_once(':').map_or("<malformed>", |(name, _)| name)).collect();
        f.debug_struct("AuthConfig")
            .field("secrets", &format_args!("<{} redacted>", self.secrets.len()))
            .field("credential_ttl_secs", &self.credential_ttl_secs)
            .field("rest_separator", &self.rest_separator)
            .field("users", &users)
            .finish()
    }
}

impl AuthConfig {
    /// `rest_separator` as the single character it must be.
    pub fn rest_separator_char(&self) -> Result<char, ConfigError> {
        let mut chars = self.rest_separator.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Ok(c),
            _ => Err(ConfigError::invalid(
                "auth.rest_separator",
                format!("must be one character, got {:?}", self.rest_separator),
            )),
        }
    }

    /// Every `users` entry parsed; errors name the entry as `auth.users[i]`.
    pub fn static_users(&self) -> Result<Vec<(String, StaticUserSecret)>, ConfigError> {
        let mut parsed: Vec<(String, StaticUserSecret)> = Vec::with_capacity(self.users.len());
        for (i, entry) in self.users.iter().enumerate() {
            let (name, secret) = parse_static_user(entry).map_err(|e| match e {
                ConfigError::Invalid { message, .. } => ConfigError::invalid(format!("auth.users[{i}]"), message),
                other => other,
            })?;
            if parsed.iter().any(|(seen, _)| *seen == name) {
                return Err(ConfigError::invalid(format!("auth.users[{i}]"), format!("user {name:?} is listed twice")));
            }
            parsed.push((name, secret));
        }
        Ok(parsed)
    }
}

/// `[[relays]]`: one public relay endpoint as clients see it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RelayEndpoint {
    /// Host name or IP literal clients connect to (an IPv6 literal may be bare or bracketed).
    pub host: String,
    /// Port for STUN and TURN over UDP.
    #[serde(default = "default_stun_port")]
    pub udp_port: u16,
    /// Port for TURN over TCP.
    #[serde(default = "default_stun_port")]
    pub tcp_port: u16,
    /// Port for TURN over TLS.
    #[serde(default = "default_tls_port")]
    pub tls_port: u16,
    /// Transports offered to clients.
    #[serde(default = "default_transports")]
    pub transports: Vec<Transport>,
    /// Whether to also list the relay as a plain STUN server.
    #[serde(default = "default_true")]
    pub stun: bool,
}

fn default_stun_port() -> u16 {
    3478
}

fn default_tls_port() -> u16 {
    5349
}

fn default_transports() -> Vec<Transport> {
    vec![Transport::Udp, Transport::Tcp]
}

fn default_true() -> bool {
    true
}

/// Where channel data is relayed (`turn.offload`, `--offload`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OffloadMode {
    /// In the kernel when it can load there, else in userspace (one log line says why).
    #[default]
    Auto,
    /// In the kernel, from a TC ingress program; the relay does not start without it.
    Tc,
    /// In the kernel, from an XDP program (native where the NIC's driver runs XDP, else
    /// generic); the relay does not start without it. One XDP program per interface.
    Xdp,
    /// Always in userspace.
    Off,
}

impl OffloadMode {
    pub fn as_str(self) -> &'static str {
        match self {
            OffloadMode::Auto => "auto",
            OffloadMode::Tc => "tc",
            OffloadMode::Xdp => "xdp",
            OffloadMode::Off => "off",
        }
    }
}

/// `[turn]`: the relay process, in coturn's terms.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TurnConfig {
    /// Addresses to listen on; empty means every address (`0.0.0.0` and `::`).
    pub listening_ips: Vec<IpAddr>,
    /// STUN/TURN listening port for UDP and TCP.
    pub listening_port: u16,
    /// Addresses to allocate relay sockets on; empty means the listening addresses.
    pub relay_ips: Vec<IpAddr>,
    /// Public addresses announced when behind 1:1 NAT.
    pub external_ips: Vec<ExternalIp>,
    /// Lowest relay port.
    pub min_port: u16,
    /// Highest relay port.
    pub max_port: u16,
    /// Accept TURN REST credentials signed with `auth.secrets`.
    pub use_auth_secret: bool,
    /// Let clients relay to loopback addresses (for tests only).
    pub allow_loopback_peers: bool,
    /// Peers opened despite the built-in deny list (private networks a relay must reach).
    pub allowed_peer_ips: Vec<IpRange>,
    /// Peers always refused, even if allowed elsewhere.
    pub denied_peer_ips: Vec<IpRange>,
    /// Maximum simultaneous allocations per user; 0 = unlimited.
    pub user_quota: u32,
    /// Maximum simultaneous allocations in total; 0 = unlimited.
    pub total_quota: u32,
    /// Maximum simultaneous allocations from one client IP address; 0 = unlimited.
    pub max_allocations_per_ip: u32,
    /// 401/438 challenges answered per second to one source address (a bounded, hashed table:
    /// no per-source state for unauthenticated traffic); 0 = unlimited.
    pub unauthenticated_rate: u32,
    /// Allocation lifetime when the client asks for none.
    pub default_allocate_lifetime_secs: u64,
    /// Upper bound on a requested allocation lifetime.
    pub max_allocate_lifetime_secs: u64,
    /// Permission lifetime (RFC 8656 fixes 300 s).
    pub permission_lifetime_secs: u64,
    /// Channel binding lifetime (RFC 8656 fixes 600 s).
    pub channel_lifetime_secs: u64,
    /// How long an allocation may be refreshed past its credential's expiry; 0 = unlimited.
    pub max_session_lifetime_secs: u64,
    /// How long a NONCE stays valid before 438 Stale Nonce.
    pub nonce_lifetime_secs: u64,
    /// Refuse plain STUN Binding requests.
    pub no_stun: bool,
    /// SOFTWARE attribute value; empty sends none.
    pub software: String,
    /// UDP worker threads (coturn `relay-threads`); 0 = one per core the process may run on.
    pub workers: usize,
    /// Second address for RFC 5780 NAT behaviour discovery (coturn's second listening IP); needs
    /// exactly one `listening_ips` entry, of the same family.
    pub alt_listening_ip: Option<IpAddr>,
    /// Second port for RFC 5780; 0 = `listening_port` + 1 (coturn `alt-listening-port`).
    pub alt_listening_port: u16,
    /// Serve Prometheus metrics (coturn `prometheus`).
    pub prometheus: bool,
    /// Metrics port (coturn `prometheus-port`).
    pub prometheus_port: u16,
    /// Metrics address; keep it local or firewalled.
    pub prometheus_address: IpAddr,
    /// Do not listen on UDP (coturn `no-udp`).
    pub no_udp: bool,
    /// Do not listen on TCP (coturn `no-tcp`).
    pub no_tcp: bool,
    /// Do not listen on TLS (coturn `no-tls`).
    pub no_tls: bool,
    /// TURN-over-TLS ports (`turns:`), e.g. `[5349, 443]`; used when `cert` and `pkey` are set.
    pub tls_listening_ports: Vec<u16>,
    /// PEM certificate chain for TLS (coturn `cert`).
    pub cert: Option<PathBuf>,
    /// PEM private key for TLS (coturn `pkey`).
    pub pkey: Option<PathBuf>,
    /// TCP/TLS connections one source address may hold at once.
    pub max_connections_per_ip: u32,
    /// A TCP/TLS connection without an allocation is closed after this long without a message.
    pub stream_idle_timeout_secs: u64,
    /// The TCP listener expects a PROXY protocol header (v1 or v2, as nginx's `proxy_protocol on`
    /// and HAProxy's `send-proxy` write) before the client's bytes, and takes the client address
    /// from it; connections without one are refused.
    pub proxy_protocol_tcp: bool,
    /// The same for the TLS listeners (the header comes before the TLS handshake).
    pub proxy_protocol_tls: bool,
    /// The proxies whose headers are believed: a connection to a PROXY protocol listener from any
    /// other address is refused, since whoever can write the header can claim any client address.
    pub proxy_protocol_from: Vec<IpRange>,
    /// A TLS handshake, or a message that has started to arrive, must finish within this.
    pub stream_handshake_timeout_secs: u64,
    /// The kernel fast path for channel data (eBPF): `auto` uses it where the kernel and the
    /// process's privileges allow and says why not otherwise, `tc` requires it, `off` never.
    pub offload: OffloadMode,
    /// Relayed bytes per second one allocation may carry, each direction counted on its own
    /// (coturn `max-bps`); 0 = unlimited. Datagrams over the rate are dropped.
    pub max_bps: u64,
    /// Relayed bytes per second all of one user's allocations may carry together, each direction
    /// on its own; 0 = unlimited.
    pub user_max_bps: u64,
    /// Relays to send clients to with 300 Try Alternate while this one drains (coturn
    /// `alternate-server`, `IP:port`).
    pub alternate_servers: Vec<SocketAddr>,
    /// After SIGTERM, how long existing allocations keep relaying before the process exits;
    /// new Allocates are refused (or redirected) from the first moment. 0 = exit at once.
    pub drain_timeout_secs: u64,
    /// Log filter (`info`, `debug`, `turn_server=debug,info`); `-v` flags override it; SIGHUP
    /// applies a changed value.
    pub log_level: String,
    /// Admin HTTP interface address (coturn `cli-ip`); served only when `admin_token` is set.
    pub admin_address: IpAddr,
    /// Admin HTTP interface port (coturn `cli-port`).
    pub admin_port: u16,
    /// Bearer token the admin interface requires (coturn `cli-password`); unset = no admin
    /// interface.
    pub admin_token: Option<String>,
    /// Redis of the fleet registry (coturn `redis-statsdb`): the relay keeps a record of itself
    /// there (URLs, region, load, draining) under `signaling.redis_prefix`. Unset = no registry.
    pub redis_url: Option<String>,
    /// Host name (or IP) clients reach this relay at, for its registry record; default: its
    /// first advertised relay address.
    pub public_host: Option<String>,
    /// Region label in the registry record (e.g. "eu-west"), for region-aware ICE configs.
    pub region: String,
    /// Allocations this relay should hold at most: past it, new Allocates are redirected (300) to
    /// a less loaded relay of the registry or `alternate_servers` when one is known; 0 = no limit.
    pub capacity: u32,
    /// How often the registry record is rewritten; it expires after three of these.
    pub registry_heartbeat_secs: u64,
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            listening_ips: Vec::new(),
            listening_port: 3478,
            relay_ips: Vec::new(),
            external_ips: Vec::new(),
            min_port: 49_152,
            max_port: 65_535,
            use_auth_secret: true,
            allow_loopback_peers: false,
            allowed_peer_ips: Vec::new(),
            denied_peer_ips: Vec::new(),
            user_quota: 0,
            total_quota: 0,
            max_allocations_per_ip: 0,
            unauthenticated_rate: 50,
            default_allocate_lifetime_secs: 600,
            max_allocate_lifetime_secs: 3_600,
            permission_lifetime_secs: 300,
            channel_lifetime_secs: 600,
            max_session_lifetime_secs: 86_400,
            nonce_lifetime_secs: 600,
            no_stun: false,
            software: "turn-server".into(),
            workers: 0,
            prometheus: false,
            prometheus_port: 9641,
            prometheus_address: IpAddr::from([127, 0, 0, 1]),
            alt_listening_ip: None,
            alt_listening_port: 0,
            no_udp: false,
            no_tcp: false,
            no_tls: false,
            tls_listening_ports: vec![5349],
            cert: None,
            pkey: None,
            max_connections_per_ip: 64,
            stream_idle_timeout_secs: 60,
            proxy_protocol_tcp: false,
            proxy_protocol_tls: false,
            proxy_protocol_from: vec![
                IpRange::single(IpAddr::from([127, 0, 0, 1])),
                IpRange::single(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
            ],
            stream_handshake_timeout_secs: 10,
            offload: OffloadMode::Auto,
            max_bps: 0,
            user_max_bps: 0,
            alternate_servers: Vec::new(),
            drain_timeout_secs: 30,
            log_level: "info".into(),
            admin_address: IpAddr::from([127, 0, 0, 1]),
            admin_port: 5766,
            admin_token: None,
            redis_url: None,
            public_host: None,
            region: String::new(),
            capacity: 0,
            registry_heartbeat_secs: 5,
        }
    }
}

/// `[call]`: signaling timing that clients also need to know.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CallConfig {
    /// How long a call rings before `call:no-answer`.
    pub ring_timeout_secs: u64,
    /// Socket.IO `pingInterval`.
    pub heartbeat_interval_secs: u64,
    /// Socket.IO `pingTimeout`.
    pub heartbeat_timeout_secs: u64,
}

impl Default for CallConfig {
    fn default() -> Self {
        Self { ring_timeout_secs: 45, heartbeat_interval_secs: 25, heartbeat_timeout_secs: 20 }
    }
}

#[cfg(test)]
mod tests;
