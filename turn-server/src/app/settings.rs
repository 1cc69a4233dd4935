//! Turns the shared config file (plus flags) into what the core and the driver need: addresses
//! resolved, secrets parsed, and every inconsistency reported with the key that caused it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ice_config::{Config, ConfigError};

use crate::net::{ProxyProtocol, StreamLimits, TlsFiles};
use crate::ops::registry::RegistrySettings;
use crate::proto::auth::CredentialStore;
use crate::proto::bandwidth::BandwidthCaps;
use crate::proto::peer_policy::{PeerPolicy, PeerPolicyConfig};
use crate::proto::{Lifetimes, NatDiscovery, Quotas, RelayIp, ServerConfig};

/// Everything needed to start the relay.
pub struct Settings {
    pub server: ServerConfig,
    /// UDP listening addresses.
    pub listen: Vec<SocketAddr>,
    pub tcp_listen: Vec<SocketAddr>,
    pub tls_listen: Vec<SocketAddr>,
    pub tls_files: Option<TlsFiles>,
    pub stream_limits: StreamLimits,
    pub proxy_protocol: ProxyProtocol,
    /// Where to serve Prometheus metrics, if at all.
    pub metrics: Option<SocketAddr>,
    /// The admin interface, when a token is configured.
    pub admin: Option<AdminListen>,
    /// How long existing allocations may keep relaying after SIGTERM.
    pub drain_timeout: Duration,
    /// UDP workers (`turn.workers`, 0 resolved to the number of cores).
    pub workers: usize,
    /// Where channel data is relayed (`turn.offload`).
    pub offload: ice_config::OffloadMode,
    /// `turn.log_level`, validated.
    pub log_level: String,
    /// The configuration these settings came from, as TOML with secrets redacted (admin `config`).
    pub effective_config: String,
    /// The fleet registry record, when `turn.redis_url` is set.
    pub registry: Option<RegistrySettings>,
}

/// Where the admin interface listens and the token it demands.
#[derive(Clone)]
pub struct AdminListen {
    pub addr: SocketAddr,
    pub token: String,
}

/// More UDP workers than this buys nothing on any machine a relay runs on.
const MAX_WORKERS: usize = 256;

/// Shorter admin tokens are refused: the interface can end every call on the relay.
const MIN_ADMIN_TOKEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> SettingsError {
    SettingsError::Invalid { key, message: message.into() }
}

pub fn resolve(cfg: &Config) -> Result<Settings, SettingsError> {
    cfg.validate()?;
    let t = &cfg.turn;
    let listen_ips = if t.listening_ips.is_empty() {
        vec![IpAddr::from([0u8; 4]), IpAddr::from([0u16; 8])]
    } else {
        t.listening_ips.clone()
    };
    let on = |port: u16| listen_ips.iter().map(move |ip| SocketAddr::new(*ip, port));
    let nat_discovery = t.alt_listening_ip.zip(t.listening_ips.first()).map(|(alt, primary)| NatDiscovery {
        primary_ip: *primary,
        alternate_ip: alt,
        primary_port: t.listening_port,
        alternate_port: if t.alt_listening_port == 0 { t.listening_port.wrapping_add(1) } else { t.alt_listening_port },
    });
    let listen = match (t.no_udp, nat_discovery) {
        (true, _) => Vec::new(),
        (false, Some(d)) => d.addresses().to_vec(),
        (false, None) => on(t.listening_port).collect(),
    };
    let tcp_listen = if t.no_tcp { Vec::new() } else { on(t.listening_port).collect() };
    let tls_files = match (&t.cert, &t.pkey) {
        (Some(cert), Some(key)) if !t.no_tls => Some(TlsFiles { cert: cert.clone(), key: key.clone() }),
        _ => None,
    };
    let tls_listen =
        if tls_files.is_some() { t.tls_listening_ports.iter().flat_map(|p| on(*p)).collect() } else { Vec::new() };
    let stream_limits = StreamLimits {
        tls_handshake: Duration::from_secs(t.stream_handshake_timeout_secs),
        frame: Duration::from_secs(t.stream_handshake_timeout_secs),
        idle: Duration::from_secs(t.stream_idle_timeout_secs),
        per_source: t.max_connections_per_ip,
        ..StreamLimits::default()
    };

    let relay_ips: Vec<RelayIp> = relay_bind_ips(cfg)?
        .into_iter()
        .map(|bind| {
            let advertised = t.external_ips.iter().find(|e| e.applies_to(bind)).map_or(bind, |e| e.public);
            RelayIp { bind, advertised }
        })
        .collect();

    let mut own: Vec<IpAddr> = listen_ips.iter().copied().filter(|ip| !ip.is_unspecified()).collect();
    own.extend(relay_ips.iter().flat_map(|r| [r.bind, r.advertised]));
    own.extend(t.external_ips.iter().map(|e| e.public));
    own.sort();
    own.dedup();
    let peer_policy = PeerPolicy::new(PeerPolicyConfig {
        service_endpoints: service_endpoints(cfg),
        ..PeerPolicyConfig::from_turn_config(t, own)
    });

    let rest = if t.use_auth_secret && !cfg.auth.secrets.is_empty() { Some(cfg.rest_secrets()?) } else { None };
    let static_users: HashMap<_, _> = cfg.auth.static_users()?.into_iter().collect();
    if rest.is_none() && static_users.is_empty() {
        return Err(invalid(
            "auth.secrets",
            "no credentials configured: set --static-auth-secret (with --use-auth-secret) or --user; \
             a relay without authentication would be an open proxy",
        ));
    }
    let max_lifetime = cfg.auth.max_credential_lifetime_secs;
    let credentials = CredentialStore {
        rest,
        rest_separator: cfg.auth.rest_separator_char()?,
        static_users,
        max_lifetime_secs: (max_lifetime > 0).then_some(max_lifetime),
    };

    let secs = Duration::from_secs;
    let lifetimes = Lifetimes {
        default_allocation: secs(t.default_allocate_lifetime_secs),
        max_allocation: secs(t.max_allocate_lifetime_secs),
        permission: secs(t.permission_lifetime_secs),
        channel: secs(t.channel_lifetime_secs),
        max_session: (t.max_session_lifetime_secs > 0).then(|| secs(t.max_session_lifetime_secs)),
        ..Lifetimes::default()
    };
    let quotas = Quotas {
        per_user: t.user_quota,
        total: t.total_quota,
        per_source: t.max_allocations_per_ip,
        ..Quotas::default()
    };
    crate::ops::logging::check_level(&t.log_level).map_err(|e| invalid("turn.log_level", e))?;
    let admin = match &t.admin_token {
        Some(token) if token.len() < MIN_ADMIN_TOKEN => {
            return Err(invalid("turn.admin_token", format!("must be at least {MIN_ADMIN_TOKEN} characters")));
        }
        Some(token) => Some(AdminListen { addr: SocketAddr::new(t.admin_address, t.admin_port), token: token.clone() }),
        None => None,
    };
    if let Some(alt) = t.alternate_servers.iter().find(|a| a.ip().is_unspecified() || a.port() == 0) {
        return Err(invalid("turn.alternate_servers", format!("{alt} is not an address clients can be sent to")));
    }
    let registry = match &t.redis_url {
        None => None,
        Some(url) => {
            let target = redis_link::Target::parse(url).map_err(|e| invalid("turn.redis_url", e.to_string()))?;
            Some(RegistrySettings {
                // The signaling service derives the same prefix from the same URL and prefix.
                prefix: target.keyspace(&cfg.signaling.redis_prefix),
                target,
                heartbeat: Duration::from_secs(t.registry_heartbeat_secs),
                identity: registry_identity(
                    cfg,
                    &relay_ips,
                    !listen.is_empty(),
                    !tcp_listen.is_empty(),
                    tls_listen.first(),
                ),
            })
        }
    };
    Ok(Settings {
        server: ServerConfig {
            realm: cfg.realm.clone(),
            software: (!t.software.is_empty()).then(|| t.software.clone()),
            credentials,
            nonce_lifetime_secs: t.nonce_lifetime_secs,
            unauthenticated_rate: t.unauthenticated_rate,
            relay_ips,
            min_port: t.min_port,
            max_port: t.max_port,
            lifetimes,
            quotas,
            peer_policy,
            no_stun: t.no_stun,
            nat_discovery,
            bandwidth: BandwidthCaps { per_allocation: t.max_bps, per_user: t.user_max_bps },
            alternate_servers: t.alternate_servers.clone(),
            capacity: t.capacity,
            nonce_keys: if t.use_auth_secret {
                cfg.auth.secrets.iter().map(|s| crate::proto::nonce::fleet_nonce_key(s.as_bytes())).collect()
            } else {
                Vec::new()
            },
        },
        listen,
        tcp_listen,
        tls_listen,
        tls_files,
        stream_limits,
        proxy_protocol: ProxyProtocol {
            tcp: t.proxy_protocol_tcp,
            tls: t.proxy_protocol_tls,
            from: t.proxy_protocol_from.clone(),
        },
        metrics: t.prometheus.then(|| SocketAddr::new(t.prometheus_address, t.prometheus_port)),
        admin,
        drain_timeout: Duration::from_secs(t.drain_timeout_secs),
        workers: match t.workers {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            n => n,
        }
        .min(MAX_WORKERS),
        offload: t.offload,
        log_level: t.log_level.clone(),
        effective_config: cfg.to_redacted_toml()?,
        registry,
    })
}

/// The fixed part of this relay's registry record: what clients are told and where a full relay
/// may send them.
fn registry_identity(
    cfg: &Config,
    relay_ips: &[RelayIp],
    udp: bool,
    tcp: bool,
    tls: Option<&SocketAddr>,
) -> ice_config::fleet::RelayRecord {
    let t = &cfg.turn;
    let advertised =
        relay_ips.iter().map(|r| r.advertised).find(IpAddr::is_ipv4).or(relay_ips.first().map(|r| r.advertised));
    let host = match (&t.public_host, advertised) {
        (Some(h), _) => h.clone(),
        (None, Some(IpAddr::V6(v6))) => format!("[{v6}]"),
        (None, Some(ip)) => ip.to_string(),
        (None, None) => "localhost".into(),
    };
    let port = t.listening_port;
    let mut urls = Vec::new();
    if udp {
        urls.push(format!("turn:{host}:{port}?transport=udp"));
    }
    if tcp {
        urls.push(format!("turn:{host}:{port}?transport=tcp"));
    }
    if let Some(tls) = tls {
        urls.push(format!("turns:{host}:{}?transport=tcp", tls.port()));
    }
    ice_config::fleet::RelayRecord {
        id: format!("{host}:{port}"),
        urls,
        stun: (udp && !t.no_stun).then(|| format!("stun:{host}:{port}")),
        region: t.region.clone(),
        alternate: advertised.filter(|_| udp).map(|ip| SocketAddr::new(ip, port)),
        capacity: t.capacity,
        allocations: 0,
        relayed_bps: 0,
        cpu: 0.0,
        draining: false,
        updated_at: 0,
    }
}

/// The signaling service and Redis from the shared config, which no peer may be. Redis is named by
/// URL; only IP literals and `localhost` are taken (a host name would need DNS at start, and its
/// address may change): a Redis behind a name needs a `denied_peer_ips` entry.
fn service_endpoints(cfg: &Config) -> Vec<SocketAddr> {
    let mut endpoints = Vec::new();
    let mut add = |addr: SocketAddr| {
        if addr.ip().is_unspecified() {
            // Listening on every address: loopback is the one the own-address rule may not cover.
            endpoints.push(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), addr.port()));
            endpoints.push(SocketAddr::new(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]), addr.port()));
        } else {
            endpoints.push(addr);
        }
    };
    add(cfg.signaling.listen);
    if let Some(metrics) = cfg.signaling.metrics_listen {
        add(metrics);
    }
    for addr in cfg.signaling.redis_url.as_deref().map(redis_endpoints).unwrap_or_default() {
        add(addr);
    }
    endpoints
}

/// `redis://[user:password@]host[:port][/db]` (and `rediss://`) as socket addresses.
fn redis_endpoints(url: &str) -> Vec<SocketAddr> {
    let Some(rest) = url.strip_prefix("redis://").or_else(|| url.strip_prefix("rediss://")) else {
        return Vec::new(); // redis+unix:// and the like: no network address
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => return Vec::new(),
        },
        None => match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    let Some(port) = port.map_or(Some(6379), |p| p.parse::<u16>().ok()) else { return Vec::new() };
    if host.eq_ignore_ascii_case("localhost") {
        return vec![SocketAddr::from(([127, 0, 0, 1], port)), SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], port))];
    }
    host.parse::<IpAddr>().map(|ip| vec![SocketAddr::new(ip, port)]).unwrap_or_default()
}

/// Relay sockets bind to, in order of preference: `relay_ips`; the specific listening addresses;
/// the private side of `external_ips`; else this host's first global-looking IPv4 and IPv6
/// interface addresses.
fn relay_bind_ips(cfg: &Config) -> Result<Vec<IpAddr>, SettingsError> {
    let t = &cfg.turn;
    if let Some(ip) = t.relay_ips.iter().find(|ip| ip.is_unspecified()) {
        return Err(invalid("turn.relay_ips", format!("{ip} is unspecified: clients cannot be told it")));
    }
    if !t.relay_ips.is_empty() {
        return Ok(t.relay_ips.clone());
    }
    let specific: Vec<IpAddr> = t.listening_ips.iter().copied().filter(|ip| !ip.is_unspecified()).collect();
    if !specific.is_empty() {
        return Ok(specific);
    }
    let private: Vec<IpAddr> = t.external_ips.iter().filter_map(|e| e.private).collect();
    if !private.is_empty() {
        return Ok(private);
    }
    let interfaces = if_addrs::get_if_addrs()
        .map_err(|e| invalid("turn.relay_ips", format!("cannot list interfaces ({e}); set --relay-ip")))?;
    let usable = |ip: &IpAddr| match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
        IpAddr::V6(v6) => !v6.is_loopback() && (v6.segments()[0] & 0xffc0) != 0xfe80 && !v6.is_unspecified(),
    };
    let ips: Vec<IpAddr> = interfaces.iter().map(|i| i.ip()).filter(usable).collect();
    let mut chosen: Vec<IpAddr> = ips.iter().copied().find(IpAddr::is_ipv4).into_iter().collect();
    chosen.extend(ips.iter().copied().find(IpAddr::is_ipv6));
    if chosen.is_empty() {
        return Err(invalid(
            "turn.relay_ips",
            "this host has no non-loopback address to relay from; set --relay-ip (or --listening-ip)",
        ));
    }
    Ok(chosen)
}

impl Settings {
    /// Human summary for `--check-config` and the startup log.
    pub fn describe(&self) -> String {
        let s = &self.server;
        let relays: Vec<String> = s
            .relay_ips
            .iter()
            .map(|r| {
                if r.bind == r.advertised {
                    r.bind.to_string()
                } else {
                    format!("{} (advertised as {})", r.bind, r.advertised)
                }
            })
            .collect();
        let proxied = |on: bool| if on { " (PROXY protocol)" } else { "" };
        let listen: Vec<String> = (self.listen.iter().map(|a| format!("udp {a}")))
            .chain(self.tcp_listen.iter().map(|a| format!("tcp {a}{}", proxied(self.proxy_protocol.tcp))))
            .chain(self.tls_listen.iter().map(|a| format!("tls {a}{}", proxied(self.proxy_protocol.tls))))
            .collect();
        format!(
            "listening: {}\nrelay addresses: {}\nrelay ports: {}-{}\nrealm: {}\nREST secrets: {}\nstatic users: {}\n\
             lifetimes: allocation {}s (max {}s), permission {}s, channel {}s, session max {}\n\
             quotas: per user {}, total {}\nbandwidth caps: per allocation {}, per user {}\nSTUN: {}\n\
             drain: {}s{}\nadmin: {}",
            listen.join(", "),
            relays.join(", "),
            s.min_port,
            s.max_port,
            s.realm,
            s.credentials.rest.as_ref().map_or(0, |r| r.len()),
            s.credentials.static_users.len(),
            s.lifetimes.default_allocation.as_secs(),
            s.lifetimes.max_allocation.as_secs(),
            s.lifetimes.permission.as_secs(),
            s.lifetimes.channel.as_secs(),
            s.lifetimes.max_session.map_or("unlimited".to_owned(), |d| format!("{}s", d.as_secs())),
            quota(s.quotas.per_user),
            quota(s.quotas.total),
            rate(s.bandwidth.per_allocation),
            rate(s.bandwidth.per_user),
            if s.no_stun { "off" } else { "on" },
            self.drain_timeout.as_secs(),
            if s.alternate_servers.is_empty() {
                String::new()
            } else {
                let list: Vec<String> = s.alternate_servers.iter().map(ToString::to_string).collect();
                format!(" (new allocations redirected to {})", list.join(", "))
            },
            self.admin.as_ref().map_or("off".to_owned(), |a| format!("http://{}", a.addr)),
        )
    }
}

fn rate(bytes_per_sec: u64) -> String {
    if bytes_per_sec == 0 {
        "unlimited".into()
    } else {
        format!("{bytes_per_sec} B/s")
    }
}

fn quota(n: u32) -> String {
    if n == 0 {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn redis_urls_give_their_endpoints() {
        let one = |url: &str| redis_endpoints(url);
        assert_eq!(one("redis://10.0.0.5:6380/0"), vec!["10.0.0.5:6380".parse().unwrap()]);
        assert_eq!(one("rediss://user:p%40ss@10.0.0.5/2"), vec!["10.0.0.5:6379".parse().unwrap()]);
        assert_eq!(one("redis://[fd00::5]:7000"), vec!["[fd00::5]:7000".parse().unwrap()]);
        assert_eq!(one("redis://localhost").len(), 2);
        assert!(one("redis://redis.internal:6379").is_empty());
        assert!(one("redis+unix:///run/redis.sock").is_empty());
        assert!(one("redis://10.0.0.5:notaport").is_empty());
    }

    #[test]
    fn the_signaling_service_and_redis_are_no_peers() {
        let mut cfg = Config::default();
        cfg.auth.secrets = vec!["s".into()];
        cfg.turn.listening_ips = vec![IpAddr::from([192, 0, 2, 1])];
        cfg.turn.allowed_peer_ips = vec!["10.0.0.0/8".parse().unwrap()];
        cfg.signaling.redis_url = Some("redis://10.0.0.5:6379/0".into());
        cfg.signaling.listen = "0.0.0.0:8080".parse().unwrap();
        let settings = resolve(&cfg).unwrap();
        let policy = &settings.server.peer_policy;
        assert!(policy.check_peer("10.0.0.5:6379".parse().unwrap()).is_err());
        assert!(policy.check_peer("10.0.0.5:6378".parse().unwrap()).is_ok());
        assert!(policy.check_own_port("127.0.0.1:8080".parse().unwrap()).is_err());
    }
}
