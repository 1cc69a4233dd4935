//! Command line: coturn's long option names (and its short letters where they exist), so a coturn
//! user keeps their flags. Flags override the config file.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use ice_config::{Config, ExternalIp, IpRange};

#[derive(Debug, Parser)]
#[command(
    name = "turn-server",
    version,
    about = "STUN/TURN relay with TURN REST API credentials (a coturn replacement)"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a TURN REST username/password pair (and an iceServers JSON when relays are configured).
    Credentials(CredentialsArgs),
    /// Run on 127.0.0.1 with a throwaway secret and print a working ICE config: for trying it out.
    Quickstart(QuickstartArgs),
    /// Check STUN/TURN servers as a client would: allocate, relay a datagram back, report.
    Probe(ProbeArgs),
    /// Talk to a running relay's admin interface: list allocations, drop a user, show the
    /// effective config, reload.
    Admin(AdminArgs),
    /// Print a coturn turnserver.conf as the equivalent TOML for --config (warnings on stderr).
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Admin interface base URL (default: from --config's admin_address/admin_port, else
    /// http://127.0.0.1:5766).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Admin token (default: the config's admin_token).
    #[arg(long, env = "TURN_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub action: AdminAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AdminAction {
    /// Allocations with user, 5-tuple, relayed addresses, age and bytes.
    List {
        /// Only this user's (REST user id or username).
        #[arg(long)]
        user: Option<String>,
    },
    /// End every allocation of a user (REST user id or username).
    Drop { user: String },
    /// The effective configuration (secrets redacted) and the relay's state.
    Config,
    /// Re-read the config file, as SIGHUP does.
    Reload,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["file", "coturn_config"])))]
pub struct MigrateArgs {
    /// coturn config file, e.g. /etc/turnserver.conf.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The same, as a flag (as the relay takes it).
    #[arg(long = "coturn-config", value_name = "FILE", conflicts_with = "file")]
    pub coturn_config: Option<PathBuf>,
}

impl MigrateArgs {
    /// The coturn file named either way (clap makes sure there is exactly one).
    pub fn input(&self) -> Option<&std::path::Path> {
        self.file.as_deref().or(self.coturn_config.as_deref())
    }
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// ICE URL to check (repeatable): stun:HOST[:PORT], turn:HOST[:PORT]?transport=udp|tcp,
    /// turns:HOST[:PORT]?transport=tcp. Default: every URL of the config's [[relays]].
    #[arg(long, value_name = "URL")]
    pub url: Vec<ice_config::IceUrl>,
    /// REST shared secret to mint a credential with (default: the config's first auth.secrets).
    #[arg(long, env = "TURN_STATIC_AUTH_SECRET")]
    pub secret: Option<String>,
    /// User id for the minted REST credential.
    #[arg(long, default_value = "probe")]
    pub user: String,
    /// Long-term username instead of a REST secret.
    #[arg(long, requires = "password")]
    pub username: Option<String>,
    #[arg(long, requires = "username")]
    pub password: Option<String>,
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Signaling service base URL: probe the iceServers its /v1/ice-servers hands out (with --token).
    #[arg(long, value_name = "URL", requires = "token")]
    pub signaling: Option<String>,
    /// Bearer token (the messenger's JWT) for --signaling.
    #[arg(long, value_name = "JWT", env = "SIGNALING_TOKEN")]
    pub token: Option<String>,
    /// Time allowed for each step, e.g. 3s.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub timeout: Duration,
    /// PEM file of CAs to trust for turns: (default: the system's).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Do not verify the TLS certificate (test deployments only).
    #[arg(long)]
    pub insecure: bool,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args, Default)]
pub struct RunArgs {
    /// The shared TOML config file (see ice-config/config.example.toml).
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A coturn turnserver.conf instead of --config (pick one): read as coturn reads it, with a
    /// warning for each option turn-server ignores.
    #[arg(long = "coturn-config", value_name = "FILE", conflicts_with = "config")]
    pub coturn_config: Option<PathBuf>,
    /// Validate the config file and flags, print the effective settings, and exit.
    #[arg(long)]
    pub check_config: bool,
    /// Address to listen on (repeatable); default: all addresses.
    #[arg(short = 'L', long = "listening-ip", value_name = "IP")]
    pub listening_ip: Vec<IpAddr>,
    /// STUN/TURN port (default 3478).
    #[arg(short = 'p', long = "listening-port", value_name = "PORT")]
    pub listening_port: Option<u16>,
    /// Address relay sockets bind to (repeatable); default: the listening addresses.
    #[arg(short = 'E', long = "relay-ip", value_name = "IP")]
    pub relay_ip: Vec<IpAddr>,
    /// Public address behind 1:1 NAT, `PUBLIC` or `PUBLIC/PRIVATE` (repeatable).
    #[arg(short = 'X', long = "external-ip", value_name = "PUBLIC[/PRIVATE]")]
    pub external_ip: Vec<ExternalIp>,
    /// Lowest relay port (default 49152).
    #[arg(long = "min-port", value_name = "PORT")]
    pub min_port: Option<u16>,
    /// Highest relay port (default 65535).
    #[arg(long = "max-port", value_name = "PORT")]
    pub max_port: Option<u16>,
    /// Realm for long-term credentials.
    #[arg(short = 'r', long, value_name = "REALM")]
    pub realm: Option<String>,
    /// Accept TURN REST API credentials (time-limited, signed with --static-auth-secret).
    #[arg(long = "use-auth-secret")]
    pub use_auth_secret: bool,
    /// REST API shared secret (repeatable: the first signs, all verify, for rotation).
    #[arg(long = "static-auth-secret", value_name = "SECRET", env = "TURN_STATIC_AUTH_SECRET")]
    pub static_auth_secret: Vec<String>,
    /// Static user `name:password` or `name:0x<md5 key>` (repeatable).
    #[arg(short = 'u', long, value_name = "NAME:PASSWORD")]
    pub user: Vec<String>,
    /// Allow relaying to loopback addresses (tests only: it exposes the relay host's local services).
    #[arg(long = "allow-loopback-peers")]
    pub allow_loopback_peers: bool,
    /// Peer address range opened despite the built-in deny list: IP, CIDR or A-B (repeatable).
    #[arg(long = "allowed-peer-ip", value_name = "RANGE")]
    pub allowed_peer_ip: Vec<IpRange>,
    /// Peer address range always refused: IP, CIDR or A-B (repeatable).
    #[arg(long = "denied-peer-ip", value_name = "RANGE")]
    pub denied_peer_ip: Vec<IpRange>,
    /// Maximum simultaneous allocations per user (0 = unlimited).
    #[arg(long = "user-quota", value_name = "N")]
    pub user_quota: Option<u32>,
    /// Maximum simultaneous allocations in total (0 = unlimited).
    #[arg(long = "total-quota", value_name = "N")]
    pub total_quota: Option<u32>,
    /// Maximum simultaneous allocations from one client IP (0 = unlimited).
    #[arg(long = "max-allocations-per-ip", value_name = "N")]
    pub max_allocations_per_ip: Option<u32>,
    /// 401/438 answers per second to one source address (0 = unlimited; default 50).
    #[arg(long = "unauthenticated-rate", value_name = "N")]
    pub unauthenticated_rate: Option<u32>,
    /// Refuse REST credentials expiring further ahead than this many seconds (0 = no limit).
    #[arg(long = "max-credential-lifetime", value_name = "SECS")]
    pub max_credential_lifetime: Option<u64>,
    /// Longest lifetime a client may request, in seconds (default 3600).
    #[arg(long = "max-allocate-lifetime", value_name = "SECS")]
    pub max_allocate_lifetime: Option<u64>,
    /// Longest an allocation may be refreshed in all, in seconds (default 86400; 0 = unlimited).
    #[arg(long = "max-session-lifetime", value_name = "SECS")]
    pub max_session_lifetime: Option<u64>,
    /// TURN-over-TLS port (repeatable, e.g. 5349 and 443); TLS runs when --cert and --pkey are set.
    #[arg(long = "tls-listening-port", value_name = "PORT")]
    pub tls_listening_port: Vec<u16>,
    /// PEM certificate chain for TLS.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// PEM private key for TLS.
    #[arg(long, value_name = "FILE")]
    pub pkey: Option<PathBuf>,
    /// Serve Prometheus metrics on --prometheus-address:--prometheus-port.
    #[arg(long)]
    pub prometheus: bool,
    /// Metrics port (default 9641).
    #[arg(long = "prometheus-port", value_name = "PORT")]
    pub prometheus_port: Option<u16>,
    /// Metrics address (default 127.0.0.1).
    #[arg(long = "prometheus-address", value_name = "IP")]
    pub prometheus_address: Option<IpAddr>,
    /// Second listening address for RFC 5780 NAT behaviour discovery.
    #[arg(long = "alt-listening-ip", value_name = "IP")]
    pub alt_listening_ip: Option<IpAddr>,
    /// Second port for RFC 5780 (default: listening port + 1).
    #[arg(long = "alt-listening-port", value_name = "PORT")]
    pub alt_listening_port: Option<u16>,
    /// Do not listen on UDP.
    #[arg(long = "no-udp")]
    pub no_udp: bool,
    /// Do not listen on TCP.
    #[arg(long = "no-tcp")]
    pub no_tcp: bool,
    /// Do not listen on TLS.
    #[arg(long = "no-tls")]
    pub no_tls: bool,
    /// TCP/TLS connections one source address may hold (default 64).
    #[arg(long = "max-connections-per-ip", value_name = "N")]
    pub max_connections_per_ip: Option<u32>,
    /// Expect a PROXY protocol header (v1 or v2) on these stream listeners: `tcp`, `tls`, or both
    /// when given bare; the client's address is taken from it and connections without one are
    /// refused (for a relay behind nginx's `proxy_protocol on` or HAProxy's `send-proxy`).
    #[arg(
        long = "proxy-protocol",
        value_name = "LISTENER",
        num_args = 0..=1,
        default_missing_value = "all",
        value_parser = ["tcp", "tls", "all"]
    )]
    pub proxy_protocol: Vec<String>,
    /// Address or range (CIDR, `A-B`) of a proxy whose PROXY protocol headers are believed
    /// (repeatable; default loopback); connections from elsewhere to such a listener are refused.
    #[arg(long = "proxy-protocol-from", value_name = "RANGE")]
    pub proxy_protocol_from: Vec<IpRange>,
    /// Kernel fast path for channel data: `auto` (default) loads an eBPF program at TC ingress
    /// when the kernel and privileges (CAP_BPF, CAP_NET_ADMIN) allow, else says why and relays
    /// in userspace; `tc` refuses to start without it; `xdp` relays at XDP instead, before an skb
    /// exists on NICs with a native XDP driver (one XDP program per interface, so not two relays
    /// on one interface; next-hop MACs from the FIB or the neighbour table, unresolved ones and
    /// local senders' datagrams leaving through a device go to userspace), and refuses to start
    /// without it; `off` keeps everything in userspace.
    #[arg(long = "offload", value_name = "MODE", value_parser = parse_offload)]
    pub offload: Option<ice_config::OffloadMode>,
    /// UDP worker threads, each with its own listening sockets (SO_REUSEPORT, a client address
    /// always to the same one) and relay sockets; 0 = one per core (the default).
    #[arg(long = "relay-threads", value_name = "N")]
    pub relay_threads: Option<usize>,
    /// Ignore STUN Binding requests (TURN only).
    #[arg(long = "no-stun")]
    pub no_stun: bool,
    /// Log to this file instead of stderr (`stdout` and `stderr` are understood).
    #[arg(short = 'l', long = "log-file", value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// More logging: -v debug (every refused request and why), -vv trace.
    #[arg(short = 'v', long, action = ArgAction::Count)]
    pub verbose: u8,
    /// Log as JSON lines.
    #[arg(long = "log-json")]
    pub log_json: bool,
    /// Relayed bytes per second per allocation, each direction on its own (0 = unlimited).
    #[arg(long = "max-bps", value_name = "BYTES")]
    pub max_bps: Option<u64>,
    /// Relayed bytes per second for all of one user's allocations together (0 = unlimited).
    #[arg(long = "user-max-bps", value_name = "BYTES")]
    pub user_max_bps: Option<u64>,
    /// Relay to send new clients to (300 Try Alternate) while draining, IP:PORT (repeatable).
    #[arg(long = "alternate-server", value_name = "IP:PORT")]
    pub alternate_server: Vec<std::net::SocketAddr>,
    /// After SIGTERM, seconds existing allocations keep relaying before exit (default 30).
    #[arg(long = "drain-timeout", value_name = "SECS")]
    pub drain_timeout: Option<u64>,
    /// Admin interface address (default 127.0.0.1).
    #[arg(long = "admin-address", visible_alias = "cli-ip", value_name = "IP")]
    pub admin_address: Option<IpAddr>,
    /// Admin interface port (default 5766).
    #[arg(long = "admin-port", visible_alias = "cli-port", value_name = "PORT")]
    pub admin_port: Option<u16>,
    /// Bearer token for the admin interface; without one there is no admin interface.
    #[arg(
        long = "admin-token",
        visible_alias = "cli-password",
        value_name = "TOKEN",
        env = "TURN_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Redis of the fleet registry, e.g. redis://10.0.0.5:6379/0 (coturn's --redis-statsdb).
    #[arg(long = "redis-url", visible_alias = "redis-statsdb", value_name = "URL")]
    pub redis_url: Option<String>,
    /// Host name clients reach this relay at, for its registry record.
    #[arg(long = "public-host", value_name = "HOST")]
    pub public_host: Option<String>,
    /// Region label for the registry record.
    #[arg(long, value_name = "LABEL")]
    pub region: Option<String>,
    /// Allocations this relay should take at most, for the registry's load figure.
    #[arg(long, value_name = "N")]
    pub capacity: Option<u32>,
}

#[derive(Debug, Args)]
pub struct CredentialsArgs {
    /// Shared secret; defaults to the first of the config file's auth.secrets.
    #[arg(long, env = "TURN_STATIC_AUTH_SECRET")]
    pub secret: Option<String>,
    /// User id to embed in the username (`<expiry>:<user>`).
    #[arg(long)]
    pub user: Option<String>,
    /// Lifetime, e.g. `1h`, `30m`, `86400s` (default: the config's credential_ttl_secs).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ttl: Option<Duration>,
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print only JSON: {username, credential, expiresAt, iceServers}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Port on 127.0.0.1.
    #[arg(short = 'p', long, default_value_t = 3478)]
    pub port: u16,
    /// Lowest relay port.
    #[arg(long = "min-port", default_value_t = 49152)]
    pub min_port: u16,
    /// Highest relay port.
    #[arg(long = "max-port", default_value_t = 65535)]
    pub max_port: u16,
    #[arg(short = 'v', long, action = ArgAction::Count)]
    pub verbose: u8,
}

impl RunArgs {
    /// Applies the flags over the file's settings.
    pub fn apply(&self, cfg: &mut Config) {
        let t = &mut cfg.turn;
        if !self.listening_ip.is_empty() {
            t.listening_ips = self.listening_ip.clone();
        }
        if let Some(p) = self.listening_port {
            t.listening_port = p;
        }
        if !self.relay_ip.is_empty() {
            t.relay_ips = self.relay_ip.clone();
        }
        if !self.external_ip.is_empty() {
            t.external_ips = self.external_ip.clone();
        }
        set(&mut t.min_port, self.min_port);
        set(&mut t.max_port, self.max_port);
        set(&mut t.user_quota, self.user_quota);
        set(&mut t.total_quota, self.total_quota);
        set(&mut t.max_allocate_lifetime_secs, self.max_allocate_lifetime);
        // coturn semantics: a maximum below the default lowers the default too, so the flag alone
        // is a complete setting.
        if self.max_allocate_lifetime.is_some() {
            t.default_allocate_lifetime_secs = t.default_allocate_lifetime_secs.min(t.max_allocate_lifetime_secs);
        }
        set(&mut t.max_session_lifetime_secs, self.max_session_lifetime);
        t.use_auth_secret |= self.use_auth_secret;
        t.allow_loopback_peers |= self.allow_loopback_peers;
        t.no_stun |= self.no_stun;
        t.no_udp |= self.no_udp;
        t.no_tcp |= self.no_tcp;
        t.no_tls |= self.no_tls;
        if !self.tls_listening_port.is_empty() {
            t.tls_listening_ports = self.tls_listening_port.clone();
        }
        if self.cert.is_some() {
            t.cert = self.cert.clone();
        }
        if self.pkey.is_some() {
            t.pkey = self.pkey.clone();
        }
        set(&mut t.max_connections_per_ip, self.max_connections_per_ip);
        for listener in &self.proxy_protocol {
            t.proxy_protocol_tcp |= listener != "tls";
            t.proxy_protocol_tls |= listener != "tcp";
        }
        if !self.proxy_protocol_from.is_empty() {
            t.proxy_protocol_from = self.proxy_protocol_from.clone();
        }
        set(&mut t.offload, self.offload);
        set(&mut t.workers, self.relay_threads);
        set(&mut t.max_allocations_per_ip, self.max_allocations_per_ip);
        set(&mut t.unauthenticated_rate, self.unauthenticated_rate);
        set(&mut cfg.auth.max_credential_lifetime_secs, self.max_credential_lifetime);
        set(&mut t.alt_listening_port, self.alt_listening_port);
        t.prometheus |= self.prometheus;
        set(&mut t.prometheus_port, self.prometheus_port);
        set(&mut t.prometheus_address, self.prometheus_address);
        if self.alt_listening_ip.is_some() {
            t.alt_listening_ip = self.alt_listening_ip;
        }
        set(&mut t.max_bps, self.max_bps);
        set(&mut t.user_max_bps, self.user_max_bps);
        if !self.alternate_server.is_empty() {
            t.alternate_servers = self.alternate_server.clone();
        }
        set(&mut t.drain_timeout_secs, self.drain_timeout);
        set(&mut t.admin_address, self.admin_address);
        set(&mut t.admin_port, self.admin_port);
        if self.admin_token.is_some() {
            t.admin_token = self.admin_token.clone();
        }
        if self.redis_url.is_some() {
            t.redis_url = self.redis_url.clone();
        }
        if self.public_host.is_some() {
            t.public_host = self.public_host.clone();
        }
        set(&mut t.region, self.region.clone());
        set(&mut t.capacity, self.capacity);
        t.allowed_peer_ips.extend(self.allowed_peer_ip.iter().cloned());
        t.denied_peer_ips.extend(self.denied_peer_ip.iter().cloned());
        if let Some(r) = &self.realm {
            cfg.realm = r.clone();
        }
        if !self.static_auth_secret.is_empty() {
            cfg.auth.secrets = self.static_auth_secret.clone();
        }
        cfg.auth.users.extend(self.user.iter().cloned());
    }
}

fn parse_offload(s: &str) -> Result<ice_config::OffloadMode, String> {
    use ice_config::OffloadMode::*;
    match s {
        "auto" => Ok(Auto),
        "tc" => Ok(Tc),
        "xdp" => Ok(Xdp),
        "off" => Ok(Off),
        _ => Err("expected auto, tc, xdp or off".into()),
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn coturn_flags_parse_and_override_the_file() {
        let cli = Cli::try_parse_from([
            "turn-server",
            "--listening-ip",
            "127.0.0.1",
            "-p",
            "3479",
            "--min-port",
            "40000",
            "--max-port",
            "40100",
            "--realm",
            "example.org",
            "--use-auth-secret",
            "--static-auth-secret",
            "s1",
            "--static-auth-secret",
            "s2",
            "--user",
            "alice:pw",
            "--allow-loopback-peers",
            "--denied-peer-ip",
            "203.0.113.0/24",
            "--allowed-peer-ip",
            "10.0.0.1-10.0.0.9",
            "--external-ip",
            "198.51.100.1/10.0.0.2",
            "--user-quota",
            "3",
            "--total-quota",
            "100",
            "--max-allocate-lifetime",
            "1800",
            "--no-stun",
            "-vv",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        let mut cfg = Config::default();
        cli.run.apply(&mut cfg);
        assert_eq!(cfg.turn.listening_port, 3479);
        assert_eq!(cfg.turn.min_port, 40000);
        assert_eq!(cfg.realm, "example.org");
        assert_eq!(cfg.auth.secrets, vec!["s1", "s2"]);
        assert_eq!(cfg.auth.users, vec!["alice:pw"]);
        assert!(cfg.turn.allow_loopback_peers && cfg.turn.no_stun);
        assert_eq!(cfg.turn.denied_peer_ips.len(), 1);
        assert_eq!(cfg.turn.user_quota, 3);
        assert_eq!(cfg.turn.max_allocate_lifetime_secs, 1800);
        assert_eq!(cli.run.verbose, 2);
    }

    #[test]
    fn proxy_protocol_per_listener() {
        let applied = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["turn-server"], args].concat()).unwrap();
            let mut cfg = Config::default();
            cli.run.apply(&mut cfg);
            (cfg.turn.proxy_protocol_tcp, cfg.turn.proxy_protocol_tls, cfg.turn.proxy_protocol_from.len())
        };
        assert_eq!(applied(&[]), (false, false, 2));
        assert_eq!(applied(&["--proxy-protocol"]), (true, true, 2));
        assert_eq!(applied(&["--proxy-protocol", "tls"]), (false, true, 2));
        assert_eq!(applied(&["--proxy-protocol=tcp", "--proxy-protocol-from", "10.0.0.0/8"]), (true, false, 1));
        assert!(Cli::try_parse_from(["turn-server", "--proxy-protocol", "udp"]).is_err());
    }

    #[test]
    fn subcommands_parse() {
        let cli =
            Cli::try_parse_from(["turn-server", "credentials", "--secret", "s", "--user", "u", "--ttl", "1h"]).unwrap();
        match cli.command {
            Some(Command::Credentials(c)) => assert_eq!(c.ttl, Some(Duration::from_secs(3600))),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn coturn_config_and_migrate_parse() {
        let cli =
            Cli::try_parse_from(["turn-server", "--coturn-config", "/etc/turnserver.conf", "-p", "3479"]).unwrap();
        assert_eq!(cli.run.coturn_config.as_deref(), Some(std::path::Path::new("/etc/turnserver.conf")));
        // One file or the other: both is a mistake, not a merge.
        assert!(Cli::try_parse_from(["turn-server", "--coturn-config", "a.conf", "--config", "b.toml"]).is_err());
        let forms: [&[&str]; 2] =
            [&["turn-server", "migrate", "t.conf"], &["turn-server", "migrate", "--coturn-config", "t.conf"]];
        for args in forms {
            match Cli::try_parse_from(args).unwrap().command {
                Some(Command::Migrate(m)) => assert_eq!(m.input(), Some(std::path::Path::new("t.conf"))),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(Cli::try_parse_from(["turn-server", "migrate"]).is_err(), "migrate needs a file");
        assert!(Cli::try_parse_from(["turn-server", "migrate", "a.conf", "--coturn-config", "b.conf"]).is_err());
    }

    #[test]
    fn bad_flag_values_are_errors() {
        assert!(Cli::try_parse_from(["turn-server", "--denied-peer-ip", "10.0.0.0/33"]).is_err());
        assert!(Cli::try_parse_from(["turn-server", "--listening-port", "70000"]).is_err());
    }
}
