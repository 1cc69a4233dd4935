//! What each coturn option becomes: a `Config` field, an informational note (already true
//! here), or a warning (ignored, with what to do instead). Names are coturn's long options,
//! case-sensitive as coturn's are (`verbose` and `Verbose` differ).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use ice_config::{parse_static_user, ExternalIp, IpRange};

use super::{parse_bool, CoturnConfigError, Reader};

/// coturn's default port for an `alternate-server` given without one.
const DEFAULT_ALTERNATE_PORT: u16 = 3478;

/// Options accepted as they are because turn-server already behaves that way.
const ALWAYS_ON: &[(&str, &str)] = &[
    ("fingerprint", "every response carries FINGERPRINT"),
    ("lt-cred-mech", "long-term credentials are always on"),
    ("no-dtls", "there is no DTLS; clients use turns: (TLS over TCP)"),
    ("no-loopback-peers", "loopback peers are refused unless allow-loopback-peers is set"),
    ("no-multicast-peers", "multicast and broadcast peers are always refused"),
    ("simple-log", "log-file is written under exactly the name given"),
    ("no-stdout-log", "logs go to one place only: log-file, or stderr without it"),
    ("no-tlsv1", "TLS 1.0 is never offered (TLS 1.2 and 1.3 only)"),
    ("no-tlsv1_1", "TLS 1.1 is never offered (TLS 1.2 and 1.3 only)"),
    ("prod", "SOFTWARE never carries a version (no-software-attribute removes it)"),
    ("no-rfc5780", "RFC 5780 runs only when alt-listening-ip is set"),
    ("new-log-timestamp", "every log line carries a timestamp"),
    ("no-auth-pings", "there is no database to ping"),
    ("no-dynamic-ip-list", "peer lists change only on SIGHUP"),
    ("no-dynamic-realms", "there is one realm"),
];

/// Options ignored, with what to do instead (empty when there is nothing to say).
const UNSUPPORTED: &[(&str, &str)] = &[
    ("userdb", "no user database: use static-auth-secret or user lines"),
    ("db", "no user database: use static-auth-secret or user lines"),
    ("psql-userdb", "no user database: use static-auth-secret or user lines"),
    ("sql-userdb", "no user database: use static-auth-secret or user lines"),
    ("mysql-userdb", "no user database: use static-auth-secret or user lines"),
    ("mongo-userdb", "no user database: use static-auth-secret or user lines"),
    ("redis-userdb", "no user database: use static-auth-secret or user lines"),
    ("redis-statsdb", "statistics are Prometheus metrics (prometheus)"),
    ("secret-ttl", ""),
    ("oauth", "no OAuth: use REST credentials (use-auth-secret)"),
    ("server-name", "no OAuth: use REST credentials (use-auth-secret)"),
    ("no-auth", "turn-server always authenticates; an open relay is not possible"),
    ("stun-only", "the relay serves TURN too; it stays authenticated"),
    ("secure-stun", "Binding requests are answered without authentication"),
    ("mobility", ""),
    ("no-udp-relay", "UDP relaying is always on"),
    ("no-tcp-relay", "TCP allocations (RFC 6062) stay on"),
    ("dtls-listening-port", "there is no DTLS; clients use turns: (TLS over TCP)"),
    ("alt-dtls-listening-port", "there is no DTLS"),
    ("alt-tls-listening-port", "RFC 5780 answers over UDP only"),
    ("tls-alternate-server", "alternate-server redirects apply to every transport"),
    ("listening-device", "listen on an address with listening-ip"),
    ("relay-device", "relay from an address with relay-ip"),
    ("cipher-list", "rustls offers its own safe cipher suites"),
    ("ec-curve-name", "rustls chooses the key exchange"),
    ("dh566", "no DH cipher suites are offered"),
    ("dh1066", "no DH cipher suites are offered"),
    ("dh2066", "no DH cipher suites are offered"),
    ("dh-file", "no DH cipher suites are offered"),
    ("CA-file", "client certificates are not checked"),
    ("pkey-pwd", "the private key must be unencrypted PEM"),
    ("no-tlsv1_2", "TLS 1.2 and 1.3 are both offered"),
    ("cli-max-output-sessions", ""),
    ("web-admin", "the admin interface is HTTP already: cli-ip, cli-port, cli-password"),
    ("web-admin-ip", "the admin interface is HTTP already: cli-ip, cli-port, cli-password"),
    ("web-admin-port", "the admin interface is HTTP already: cli-ip, cli-port, cli-password"),
    ("web-admin-listen-on-workers", ""),
    ("pidfile", "systemd tracks the process (systemd/turn-server.service)"),
    ("proc-user", "set User= in the systemd unit"),
    ("proc-group", "set Group= in the systemd unit"),
    ("daemon", "it runs in the foreground; run it under systemd (Type=notify)"),
    ("syslog", "it logs to stderr, which systemd sends to the journal; or set log-file"),
    ("syslog-facility", "it logs to stderr, which systemd sends to the journal"),
    ("new-log-timestamp-format", ""),
    ("log-binding", ""),
    ("bps-capacity", "max-bps caps each allocation; there is no server-wide cap"),
    ("check-origin-consistency", ""),
    ("tcp-proxy-port", ""),
    ("acme-redirect", "serve ACME challenges from a web server (deploy/nginx)"),
    ("aux-server", ""),
    ("udp-self-balance", ""),
    ("keep-address-family", ""),
    ("allocation-default-address-family", ""),
    ("raw-public-keys", ""),
    ("sock-buf-size", ""),
    ("max-allocate-timeout", ""),
    ("prometheus-username-labels", ""),
    ("no-stun-backward-compatibility", ""),
    ("response-origin-only-with-rfc5780", ""),
    ("respond-http-unsupported", ""),
    ("server-relay", ""),
    ("cpus", "worker threads follow the cores (relay-threads sets their number)"),
    ("ne", ""),
];

impl Reader {
    /// Applies one `name[=value]` line.
    pub(super) fn option(&mut self, line: usize, name: &str, value: Option<&str>) -> Result<(), CoturnConfigError> {
        match name {
            // Listening and relay addresses.
            "listening-port" => self.config.turn.listening_port = self.single(line, name, value)?,
            "tls-listening-port" => {
                let port = self.parse(line, name, value)?;
                let t = &mut self.config.turn;
                // The first line replaces the default 5349; more lines add ports, as the flag does.
                if !self.tls_ports_given {
                    t.tls_listening_ports.clear();
                    self.tls_ports_given = true;
                }
                t.tls_listening_ports.push(port);
            }
            "alt-listening-port" => self.config.turn.alt_listening_port = self.single(line, name, value)?,
            "alt-listening-ip" => self.config.turn.alt_listening_ip = Some(self.single_ip(line, name, value)?),
            "listening-ip" => {
                let ip = self.ip(line, name, value)?;
                self.config.turn.listening_ips.push(ip);
            }
            "relay-ip" => {
                let ip = self.ip(line, name, value)?;
                self.config.turn.relay_ips.push(ip);
            }
            "external-ip" => {
                let ip: ExternalIp = self.parse(line, name, value)?;
                self.config.turn.external_ips.push(ip);
            }
            "min-port" => self.config.turn.min_port = self.single(line, name, value)?,
            "max-port" => self.config.turn.max_port = self.single(line, name, value)?,
            "no-udp" => self.config.turn.no_udp = self.flag(line, name, value)?,
            "no-tcp" => self.config.turn.no_tcp = self.flag(line, name, value)?,
            "no-tls" => self.config.turn.no_tls = self.flag(line, name, value)?,
            "no-stun" => self.config.turn.no_stun = self.flag(line, name, value)?,
            "cert" => self.config.turn.cert = Some(self.path(line, name, value)?),
            "pkey" => self.config.turn.pkey = Some(self.path(line, name, value)?),

            // Authentication.
            "realm" => {
                let realm: String = self.single(line, name, value)?;
                self.config.realm = realm;
            }
            "use-auth-secret" => {
                if self.flag(line, name, value)? {
                    self.use_auth_secret_line = Some(line);
                }
            }
            "static-auth-secret" => {
                let secret = self.value(line, name, value)?.to_owned();
                self.config.auth.secrets.push(secret);
            }
            "user" => {
                let entry = self.value(line, name, value)?;
                // Checked here so the error names this line; the message never repeats the password.
                parse_static_user(entry).map_err(|e| {
                    let message = match e {
                        ice_config::ConfigError::Invalid { message, .. } => message,
                        other => other.to_string(),
                    };
                    self.error(line, name, message)
                })?;
                let entry = entry.to_owned();
                self.config.auth.users.push(entry);
            }
            "rest-api-separator" => {
                let separator: String = self.single(line, name, value)?;
                if separator.chars().count() != 1 {
                    return Err(self.error(line, name, format!("must be one character, got {separator:?}")));
                }
                self.config.auth.rest_separator = separator;
            }
            "max-credential-lifetime" => {
                self.config.auth.max_credential_lifetime_secs = self.single(line, name, value)?;
            }

            // Peers.
            "allow-loopback-peers" => self.config.turn.allow_loopback_peers = self.flag(line, name, value)?,
            "allowed-peer-ip" => {
                let range: IpRange = self.parse(line, name, value)?;
                self.allowed.push((range, line));
                self.config.turn.allowed_peer_ips.push(range);
            }
            "denied-peer-ip" => {
                let range: IpRange = self.parse(line, name, value)?;
                self.denied.push((range, line));
                self.config.turn.denied_peer_ips.push(range);
            }

            // Quotas, lifetimes, bandwidth.
            "user-quota" => self.config.turn.user_quota = self.single(line, name, value)?,
            "total-quota" => self.config.turn.total_quota = self.single(line, name, value)?,
            "max-allocations-per-ip" => self.config.turn.max_allocations_per_ip = self.single(line, name, value)?,
            "max-connections-per-ip" => self.config.turn.max_connections_per_ip = self.single(line, name, value)?,
            "unauthenticated-rate" => self.config.turn.unauthenticated_rate = self.single(line, name, value)?,
            "max-allocate-lifetime" => {
                let max: u64 = self.single(line, name, value)?;
                let t = &mut self.config.turn;
                t.max_allocate_lifetime_secs = max;
                // As with the flag: a maximum below the default lowers the default too.
                t.default_allocate_lifetime_secs = t.default_allocate_lifetime_secs.min(max);
            }
            "max-session-lifetime" => self.config.turn.max_session_lifetime_secs = self.single(line, name, value)?,
            "channel-lifetime" => self.config.turn.channel_lifetime_secs = self.positive(line, name, value)?,
            "permission-lifetime" => self.config.turn.permission_lifetime_secs = self.positive(line, name, value)?,
            "stale-nonce" => self.stale_nonce(line, value)?,
            "max-bps" => {
                self.config.turn.max_bps = self.single(line, name, value)?;
                self.info(
                    line,
                    name,
                    "max-bps: bytes per second per allocation, each direction on its own, as in coturn; \
                     datagrams over the rate are dropped",
                );
            }
            "alternate-server" => {
                let server = self.alternate_server(line, name, value)?;
                self.config.turn.alternate_servers.push(server);
                if self.config.turn.alternate_servers.len() == 1 {
                    self.info(
                        line,
                        name,
                        "alternate-server: clients are redirected there (300 Try Alternate) only while \
                         this relay drains after SIGTERM, not to spread load",
                    );
                }
            }
            "drain-timeout" => self.config.turn.drain_timeout_secs = self.single(line, name, value)?,

            // Operations.
            "prometheus" => self.config.turn.prometheus = self.flag(line, name, value)?,
            "prometheus-port" => self.config.turn.prometheus_port = self.single(line, name, value)?,
            "prometheus-address" => self.config.turn.prometheus_address = self.single_ip(line, name, value)?,
            "cli-ip" => self.config.turn.admin_address = self.single_ip(line, name, value)?,
            "cli-port" => self.config.turn.admin_port = self.single(line, name, value)?,
            "cli-password" => self.cli_password(line, value)?,
            "no-cli" => {
                if self.flag(line, name, value)? {
                    self.no_cli_line = Some(line);
                }
            }
            "log-file" => {
                self.once(line, name);
                self.log_file = Some(self.path(line, name, value)?);
            }
            "verbose" => self.log_level(line, name, value, "debug")?,
            "Verbose" => self.log_level(line, name, value, "trace")?,
            "no-software-attribute" => {
                if self.flag(line, name, value)? {
                    self.config.turn.software.clear();
                }
            }
            "relay-threads" => self.config.turn.workers = self.single(line, name, value)?,

            _ => self.not_mapped(line, name, value)?,
        }
        Ok(())
    }

    /// The always-on, unsupported and unknown options.
    fn not_mapped(&mut self, line: usize, name: &str, value: Option<&str>) -> Result<(), CoturnConfigError> {
        if let Some((_, why)) = ALWAYS_ON.iter().find(|(n, _)| *n == name) {
            if self.flag(line, name, value)? {
                self.info(line, name, format!("{name}: always so in turn-server ({why}); nothing to set"));
            } else {
                self.warn(line, name, format!("{name} cannot be turned off in turn-server ({why}); ignored"));
            }
        } else if let Some((_, hint)) = UNSUPPORTED.iter().find(|(n, _)| *n == name) {
            let hint = if hint.is_empty() { String::new() } else { format!(" ({hint})") };
            self.warn(line, name, format!("{name} is not supported by turn-server; ignored{hint}"));
        } else {
            self.warn(line, name, format!("{name} is not a coturn option turn-server knows (misspelt?); ignored"));
        }
        Ok(())
    }

    pub(super) fn value<'v>(
        &self,
        line: usize,
        name: &str,
        value: Option<&'v str>,
    ) -> Result<&'v str, CoturnConfigError> {
        value.ok_or_else(|| self.error(line, name, "needs a value"))
    }

    /// The value parsed as `T`, with `T`'s own reason in the error.
    fn parse<T>(&self, line: usize, name: &str, value: Option<&str>) -> Result<T, CoturnConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        let text = self.value(line, name, value)?;
        text.parse::<T>().map_err(|e| self.error(line, name, format!("{text:?} is not valid: {e}")))
    }

    /// [`parse`](Self::parse) for an option that is set once.
    fn single<T>(&mut self, line: usize, name: &str, value: Option<&str>) -> Result<T, CoturnConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        let parsed = self.parse(line, name, value)?;
        self.once(line, name);
        Ok(parsed)
    }

    fn positive(&mut self, line: usize, name: &str, value: Option<&str>) -> Result<u64, CoturnConfigError> {
        let secs: u64 = self.single(line, name, value)?;
        if secs == 0 {
            return Err(self.error(line, name, "must be greater than 0 seconds"));
        }
        Ok(secs)
    }

    /// An address; coturn also takes IPv6 in brackets.
    fn ip(&self, line: usize, name: &str, value: Option<&str>) -> Result<IpAddr, CoturnConfigError> {
        let text = self.value(line, name, value)?;
        let bare = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
        bare.parse().map_err(|_| self.error(line, name, format!("{text:?} is not an IP address")))
    }

    fn single_ip(&mut self, line: usize, name: &str, value: Option<&str>) -> Result<IpAddr, CoturnConfigError> {
        let ip = self.ip(line, name, value)?;
        self.once(line, name);
        Ok(ip)
    }

    fn path(&mut self, line: usize, name: &str, value: Option<&str>) -> Result<PathBuf, CoturnConfigError> {
        let path = PathBuf::from(self.value(line, name, value)?);
        if name != "log-file" {
            self.once(line, name);
        }
        if path.is_relative() && !(name == "log-file" && matches!(path.to_str(), Some("stdout" | "stderr"))) {
            // coturn looks relative names up in its config directories; here they are relative
            // to wherever the process starts, which under systemd is `/`.
            self.warn(
                line,
                name,
                format!(
                    "{name}: {} is a relative path: turn-server opens it relative to its working \
                     directory, not the config file's; give an absolute path",
                    path.display()
                ),
            );
        }
        Ok(path)
    }

    fn flag(&self, line: usize, name: &str, value: Option<&str>) -> Result<bool, CoturnConfigError> {
        parse_bool(value).ok_or_else(|| {
            self.error(
                line,
                name,
                format!("is a flag: give no value, or yes/no, true/false, on/off, 1/0 (got {:?})", value.unwrap_or("")),
            )
        })
    }

    /// `stale-nonce` alone means coturn's 600 s; `stale-nonce=0` (never stale) is not offered here.
    fn stale_nonce(&mut self, line: usize, value: Option<&str>) -> Result<(), CoturnConfigError> {
        let name = "stale-nonce";
        let secs = match value {
            None => 600,
            Some(_) => self.parse::<u64>(line, name, value)?,
        };
        self.once(line, name);
        if secs == 0 {
            let keep = self.config.turn.nonce_lifetime_secs;
            self.warn(
                line,
                name,
                format!("stale-nonce=0 (nonces never expire) is not supported: nonces expire after {keep} s"),
            );
        } else {
            self.config.turn.nonce_lifetime_secs = secs;
        }
        Ok(())
    }

    /// `IP`, `IP:PORT`, `[IPv6]:PORT` or a bare IPv6 address.
    fn alternate_server(&self, line: usize, name: &str, value: Option<&str>) -> Result<SocketAddr, CoturnConfigError> {
        let text = self.value(line, name, value)?;
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(addr);
        }
        let bare = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
        match bare.parse::<IpAddr>() {
            Ok(ip) => Ok(SocketAddr::new(ip, DEFAULT_ALTERNATE_PORT)),
            Err(_) => Err(self.error(line, name, format!("{text:?} is not IP, IP:PORT or [IPv6]:PORT"))),
        }
    }

    fn cli_password(&mut self, line: usize, value: Option<&str>) -> Result<(), CoturnConfigError> {
        let name = "cli-password";
        let password = self.value(line, name, value)?.to_owned();
        self.once(line, name);
        self.cli_password_line = Some(line);
        // coturn's turnadmin -P writes a crypt(3) hash, which is useless as a bearer token.
        let hashed = ["$1$", "$5$", "$6$"].iter().any(|p| password.starts_with(p));
        if hashed {
            self.warn(
                line,
                name,
                "cli-password looks like a coturn password hash ($N$...): turn-server's admin interface \
                 is HTTP and compares the bearer token as written, so clients would have to send the hash; \
                 set a new random admin_token",
            );
        } else {
            self.info(
                line,
                name,
                "cli-password: the admin interface is HTTP (not telnet) on cli-ip:cli-port, with this \
                 value as the bearer token (Authorization: Bearer ...)",
            );
        }
        self.config.turn.admin_token = Some(password);
        Ok(())
    }

    fn log_level(
        &mut self,
        line: usize,
        name: &str,
        value: Option<&str>,
        level: &str,
    ) -> Result<(), CoturnConfigError> {
        if !self.flag(line, name, value)? {
            return Ok(());
        }
        // `Verbose` beats `verbose` whatever the order, as coturn's extra verbosity includes the other.
        if !(level == "debug" && self.config.turn.log_level == "trace") {
            self.config.turn.log_level = level.to_owned();
        }
        Ok(())
    }
}
