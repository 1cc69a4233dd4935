#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ice_config::{Config, ExternalIp, IpRange};

use super::*;

fn import(text: &str) -> Import {
    parse(text, "turnserver.conf").unwrap_or_else(|e| panic!("{text:?} was refused: {e}"))
}

fn config(text: &str) -> Config {
    import(text).config
}

fn error(text: &str) -> CoturnConfigError {
    match parse(text, "turnserver.conf") {
        Ok(i) => panic!("{text:?} was accepted: {:?}", i.config),
        Err(e) => e,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn range(s: &str) -> IpRange {
    s.parse().unwrap()
}

/// Notes about `option` of the given severity.
fn notes_for(i: &Import, option: &str, severity: Severity) -> Vec<String> {
    i.notes
        .iter()
        .filter(|n| n.option.as_deref() == Some(option) && n.severity == severity)
        .map(ToString::to_string)
        .collect()
}

/// A file that sets nothing that would raise file-wide notes.
const QUIET: &str = "allowed-peer-ip=10.0.0.0/8\n";

#[test]
fn an_empty_file_is_the_default_config_with_rest_auth_off() {
    let i = import("");
    let expected =
        Config { turn: ice_config::TurnConfig { use_auth_secret: false, ..Default::default() }, ..Default::default() };
    assert_eq!(i.config, expected);
    assert_eq!(i.log_file, None);
}

#[test]
fn every_mapped_option() {
    let text = "\
listening-port=3479
tls-listening-port=5350
tls-listening-port=443
alt-listening-port=3481
alt-listening-ip=192.0.2.9
listening-ip=192.0.2.1
listening-ip=2001:db8::1
relay-ip=192.0.2.2
external-ip=203.0.113.5/192.0.2.2
min-port=40000
max-port=40100
no-udp
no-tcp
no-tls
no-stun
cert=/etc/ssl/turn.pem
pkey=/etc/ssl/turn.key
realm=example.org
use-auth-secret
static-auth-secret=first
static-auth-secret=second
user=alice:pw
user=bob:0x5d9e3d3a8f1a4c1b0a2c9e7f6b5d4c3a
rest-api-separator=-
max-credential-lifetime=3600
allow-loopback-peers
allowed-peer-ip=10.0.0.0/8
denied-peer-ip=192.0.2.0-192.0.2.255
user-quota=3
total-quota=100
max-allocations-per-ip=7
max-connections-per-ip=9
unauthenticated-rate=11
max-allocate-lifetime=300
max-session-lifetime=7200
channel-lifetime=700
permission-lifetime=400
stale-nonce=900
max-bps=64000
alternate-server=198.51.100.7:3478
alternate-server=[2001:db8::7]:3479
drain-timeout=45
prometheus
prometheus-port=9642
prometheus-address=127.0.0.2
cli-ip=127.0.0.3
cli-port=5767
cli-password=admin-token-value
log-file=/var/log/turn.log
verbose
no-software-attribute
relay-threads=4
";
    let i = import(text);
    let c = &i.config;
    let t = &c.turn;
    assert_eq!(t.listening_port, 3479);
    assert_eq!(t.tls_listening_ports, vec![5350, 443]);
    assert_eq!(t.alt_listening_port, 3481);
    assert_eq!(t.alt_listening_ip, Some(ip("192.0.2.9")));
    assert_eq!(t.listening_ips, vec![ip("192.0.2.1"), ip("2001:db8::1")]);
    assert_eq!(t.relay_ips, vec![ip("192.0.2.2")]);
    assert_eq!(t.external_ips, vec!["203.0.113.5/192.0.2.2".parse::<ExternalIp>().unwrap()]);
    assert_eq!((t.min_port, t.max_port), (40000, 40100));
    assert!(t.no_udp && t.no_tcp && t.no_tls && t.no_stun);
    assert_eq!(t.cert, Some(PathBuf::from("/etc/ssl/turn.pem")));
    assert_eq!(t.pkey, Some(PathBuf::from("/etc/ssl/turn.key")));
    assert_eq!(c.realm, "example.org");
    assert!(t.use_auth_secret);
    assert_eq!(c.auth.secrets, vec!["first", "second"]);
    assert_eq!(c.auth.users, vec!["alice:pw", "bob:0x5d9e3d3a8f1a4c1b0a2c9e7f6b5d4c3a"]);
    assert_eq!(c.auth.rest_separator, "-");
    assert_eq!(c.auth.max_credential_lifetime_secs, 3600);
    assert!(t.allow_loopback_peers);
    assert_eq!(t.allowed_peer_ips, vec![range("10.0.0.0/8")]);
    assert_eq!(t.denied_peer_ips, vec![range("192.0.2.0/24")]);
    assert_eq!((t.user_quota, t.total_quota), (3, 100));
    assert_eq!((t.max_allocations_per_ip, t.max_connections_per_ip, t.unauthenticated_rate), (7, 9, 11));
    assert_eq!(t.max_allocate_lifetime_secs, 300);
    assert_eq!(t.default_allocate_lifetime_secs, 300, "a lower maximum lowers the default too");
    assert_eq!(t.max_session_lifetime_secs, 7200);
    assert_eq!((t.channel_lifetime_secs, t.permission_lifetime_secs), (700, 400));
    assert_eq!(t.nonce_lifetime_secs, 900);
    assert_eq!(t.max_bps, 64000);
    assert_eq!(
        t.alternate_servers,
        vec!["198.51.100.7:3478".parse::<SocketAddr>().unwrap(), "[2001:db8::7]:3479".parse().unwrap()]
    );
    assert_eq!(t.drain_timeout_secs, 45);
    assert!(t.prometheus);
    assert_eq!((t.prometheus_port, t.prometheus_address), (9642, ip("127.0.0.2")));
    assert_eq!((t.admin_address, t.admin_port), (ip("127.0.0.3"), 5767));
    assert_eq!(t.admin_token.as_deref(), Some("admin-token-value"));
    assert_eq!(i.log_file, Some(PathBuf::from("/var/log/turn.log")));
    assert_eq!(t.log_level, "debug");
    assert_eq!(t.software, "");
    assert_eq!(t.workers, 4);
    // Mapped options raise no warnings except the semantic ones asked for below.
    let unexpected: Vec<String> = i
        .notes
        .iter()
        .filter(|n| n.severity == Severity::Warning)
        .filter(|n| n.option.as_deref() != Some("allowed-peer-ip"))
        .map(ToString::to_string)
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:#?}");
}

#[test]
fn the_three_line_forms_comments_quotes_and_crlf() {
    let text = "# coturn config\r\n\r\n   # indented comment\r\nrealm=\"quoted.example\"\r\nlistening-port 3480\r\n\
                min-port = 41000\r\nmax-port\t41010\r\nfingerprint\r\nstatic-auth-secret=\"with space and # hash\"\r\n\
                user = name:pass=word\r\n";
    let c = config(text);
    assert_eq!(c.realm, "quoted.example");
    assert_eq!(c.turn.listening_port, 3480);
    assert_eq!((c.turn.min_port, c.turn.max_port), (41000, 41010));
    assert_eq!(c.auth.secrets, vec!["with space and # hash"], "# inside a value is not a comment");
    assert_eq!(c.auth.users, vec!["name:pass=word"], "only the first = separates");
    assert!(c.turn.use_auth_secret, "a static-auth-secret implies use-auth-secret, as in coturn");
}

#[test]
fn a_byte_order_mark_and_a_final_line_without_newline() {
    let c = config("\u{feff}realm=bom.example\nlistening-port=3490");
    assert_eq!(c.realm, "bom.example");
    assert_eq!(c.turn.listening_port, 3490);
}

#[test]
fn flags_take_coturn_booleans() {
    assert!(config("no-udp=yes").turn.no_udp);
    assert!(config("no-udp=1").turn.no_udp);
    assert!(config("no-udp=").turn.no_udp, "an empty value is the bare flag");
    assert!(!config("no-udp=false").turn.no_udp);
    assert!(!config("no-udp=off").turn.no_udp);
    assert!(!config("use-auth-secret=0").turn.use_auth_secret);
    let e = error("no-udp=maybe");
    assert_eq!((e.line, e.option.as_str()), (1, "no-udp"));
    assert!(e.to_string().contains("turnserver.conf:1: no-udp"), "{e}");
}

#[test]
fn rest_auth_follows_use_auth_secret_and_static_auth_secret() {
    assert!(!config("user=alice:pw").turn.use_auth_secret);
    assert!(config("static-auth-secret=s").turn.use_auth_secret);
    let i = import("use-auth-secret\n");
    assert!(i.config.turn.use_auth_secret);
    let w = notes_for(&i, "use-auth-secret", Severity::Warning);
    assert!(w.len() == 1 && w[0].contains("static-auth-secret"), "{w:?}");
}

#[test]
fn repeatable_options_collect_and_single_ones_warn_last_wins() {
    let i = import("listening-ip=127.0.0.1\nlistening-ip=::1\nrealm=a\nrealm=b\nrelay-ip=127.0.0.1\nrelay-ip=::1\n");
    assert_eq!(i.config.turn.listening_ips, vec![ip("127.0.0.1"), ip("::1")]);
    assert_eq!(i.config.turn.relay_ips, vec![ip("127.0.0.1"), ip("::1")]);
    assert_eq!(i.config.realm, "b");
    let w = notes_for(&i, "realm", Severity::Warning);
    assert_eq!(w, vec!["turnserver.conf:4: realm is also set on line 3; this later one wins (as in coturn)"]);
    assert!(notes_for(&i, "listening-ip", Severity::Warning).is_empty());
}

#[test]
fn always_on_options_are_informational() {
    for name in ["fingerprint", "lt-cred-mech", "no-dtls", "no-cli", "simple-log", "no-loopback-peers", "no-tlsv1"] {
        let i = import(&format!("{QUIET}{name}\n"));
        assert!(i.notes.iter().all(|n| n.severity == Severity::Info), "{name}: {:?}", i.notes);
        let info = notes_for(&i, name, Severity::Info);
        assert!(info.len() == 1 && info[0].starts_with("turnserver.conf:2: "), "{name}: {info:?}");
        assert_eq!(i.config, config(QUIET), "{name} must change nothing");
    }
    // Turning one off cannot be honoured, so it is a warning.
    let i = import("fingerprint=no\n");
    assert_eq!(notes_for(&i, "fingerprint", Severity::Warning).len(), 1);
}

#[test]
fn unsupported_options_warn_with_their_line() {
    let i = import("realm=x\n\n# c\nuserdb=/var/lib/turn/turndb\nredis-userdb=\"ip=127.0.0.1\"\nno-tcp-relay\n");
    let w = notes_for(&i, "userdb", Severity::Warning);
    assert_eq!(w.len(), 1);
    assert!(w[0].starts_with("turnserver.conf:4: userdb is not supported by turn-server; ignored"), "{w:?}");
    assert_eq!(notes_for(&i, "redis-userdb", Severity::Warning).len(), 1);
    assert!(notes_for(&i, "no-tcp-relay", Severity::Warning)[0].contains("turnserver.conf:6:"));
    assert_eq!(i.config.realm, "x");
}

#[test]
fn unknown_options_warn_and_do_not_stop_the_import() {
    let i = import("realm=x\nlistening-prot=3478\n");
    let w = notes_for(&i, "listening-prot", Severity::Warning);
    assert!(w.len() == 1 && w[0].contains("turnserver.conf:2: listening-prot") && w[0].contains("misspelt"), "{w:?}");
    // Names are case-sensitive in coturn: `Verbose` is an option, `VERBOSE` is not.
    assert_eq!(notes_for(&import("VERBOSE\n"), "VERBOSE", Severity::Warning).len(), 1);
}

#[test]
fn malformed_values_are_errors_naming_line_and_option() {
    let cases: &[(&str, usize, &str)] = &[
        ("listening-port=70000", 1, "listening-port"),
        ("# c\nlistening-port=abc", 2, "listening-port"),
        ("min-port=-1", 1, "min-port"),
        ("listening-ip=10.0.0.300", 1, "listening-ip"),
        ("relay-ip=example.org", 1, "relay-ip"),
        ("external-ip=not-an-ip", 1, "external-ip"),
        ("denied-peer-ip=10.0.0.0/33", 1, "denied-peer-ip"),
        ("allowed-peer-ip=10.0.0.9-10.0.0.1", 1, "allowed-peer-ip"),
        ("user=nopassword", 1, "user"),
        ("user=bob:0x123", 1, "user"),
        ("user-quota=many", 1, "user-quota"),
        ("total-quota=-5", 1, "total-quota"),
        ("max-bps=1.5", 1, "max-bps"),
        ("alternate-server=turn.example.org:3478", 1, "alternate-server"),
        ("rest-api-separator=::", 1, "rest-api-separator"),
        ("channel-lifetime=0", 1, "channel-lifetime"),
        ("stale-nonce=soon", 1, "stale-nonce"),
        ("cli-port=99999", 1, "cli-port"),
        ("prometheus-address=localhost", 1, "prometheus-address"),
        ("realm", 1, "realm"),
        ("static-auth-secret", 1, "static-auth-secret"),
        ("=value", 1, "=value"),
        ("listening.port=1", 1, "listening.port=1"),
    ];
    for (text, line, option) in cases {
        let e = error(text);
        assert_eq!((e.line, e.option.as_str()), (*line, *option), "{text:?}: {e}");
        assert!(e.to_string().starts_with(&format!("turnserver.conf:{line}: {option}: ")), "{text:?}: {e}");
    }
}

#[test]
fn a_bad_static_user_error_does_not_repeat_the_password() {
    let e = error("user=bob:0xnotakeyatall-secret");
    assert!(!e.to_string().contains("notakeyatall-secret"), "{e}");
}

#[test]
fn addresses_in_brackets_and_alternate_servers_without_port() {
    let c = config("listening-ip=[::1]\nalternate-server=198.51.100.7\nalternate-server=2001:db8::7\n");
    assert_eq!(c.turn.listening_ips, vec![ip("::1")]);
    assert_eq!(
        c.turn.alternate_servers,
        vec!["198.51.100.7:3478".parse::<SocketAddr>().unwrap(), "[2001:db8::7]:3478".parse().unwrap()]
    );
}

#[test]
fn the_first_tls_port_replaces_the_default() {
    assert_eq!(config("").turn.tls_listening_ports, vec![5349]);
    assert_eq!(config("tls-listening-port=443").turn.tls_listening_ports, vec![443]);
}

#[test]
fn stale_nonce_forms() {
    assert_eq!(config("stale-nonce").turn.nonce_lifetime_secs, 600);
    assert_eq!(config("stale-nonce=120").turn.nonce_lifetime_secs, 120);
    let i = import("stale-nonce=0");
    assert_eq!(i.config.turn.nonce_lifetime_secs, Config::default().turn.nonce_lifetime_secs);
    assert_eq!(notes_for(&i, "stale-nonce", Severity::Warning).len(), 1);
}

#[test]
fn max_allocate_lifetime_above_the_default_keeps_the_default() {
    let t = config("max-allocate-lifetime=7200").turn;
    assert_eq!((t.max_allocate_lifetime_secs, t.default_allocate_lifetime_secs), (7200, 600));
}

#[test]
fn verbose_levels() {
    assert_eq!(config("").turn.log_level, "info");
    assert_eq!(config("verbose").turn.log_level, "debug");
    assert_eq!(config("Verbose").turn.log_level, "trace");
    assert_eq!(config("Verbose\nverbose").turn.log_level, "trace");
    assert_eq!(config("verbose=no").turn.log_level, "info");
}

#[test]
fn cli_options_become_the_admin_interface_unless_no_cli() {
    let i = import("cli-password=tok\nno-cli\n");
    assert_eq!(i.config.turn.admin_token, None, "no-cli keeps the admin interface off, as in coturn");
    assert!(notes_for(&i, "no-cli", Severity::Info)[0].contains("line 1"));
    let i = import("cli-password=$5$abc$def\n");
    assert_eq!(notes_for(&i, "cli-password", Severity::Warning).len(), 1, "a hash is not a usable token");
}

#[test]
fn log_file_travels_apart_and_relative_paths_warn() {
    let i = import("log-file=stdout\n");
    assert_eq!(i.log_file, Some(PathBuf::from("stdout")));
    assert!(notes_for(&i, "log-file", Severity::Warning).is_empty());
    let i = import("cert=turn_server_cert.pem\n");
    assert!(notes_for(&i, "cert", Severity::Warning)[0].contains("relative"));
}

#[test]
fn peer_policy_differences_are_warned() {
    // Nothing opened: coturn would have relayed to private peers.
    let i = import("realm=x\n");
    let file_wide: Vec<&Note> = i.notes.iter().filter(|n| n.line.is_none()).collect();
    assert_eq!(file_wide.len(), 1);
    assert_eq!(file_wide[0].severity, Severity::Warning);
    assert!(file_wide[0].message.contains("allowed-peer-ip"), "it must say how to open them");
    assert!(file_wide[0].to_string().starts_with("turnserver.conf: coturn relays to private"));
    // coturn lets allowed beat denied; here denied wins.
    let i = import("denied-peer-ip=10.0.0.0/8\nallowed-peer-ip=10.1.0.0/16\nallowed-peer-ip=192.168.0.1\n");
    let w = notes_for(&i, "allowed-peer-ip", Severity::Warning);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("turnserver.conf:2: ") && w[0].contains("line 1"), "{w:?}");
    assert!(i.notes.iter().all(|n| n.line.is_some()), "an allow list answers the file-wide warning");
    // coturn's allowed-peer-ip never opens loopback; ours does.
    let i = import("allowed-peer-ip=127.0.0.1\n");
    assert!(notes_for(&i, "allowed-peer-ip", Severity::Warning)[0].contains("loopback"));
    assert!(notes_for(
        &import("allow-loopback-peers\nallowed-peer-ip=127.0.0.1\n"),
        "allowed-peer-ip",
        Severity::Warning
    )
    .is_empty());
}

#[test]
fn notes_keep_file_order() {
    // no-cli's note is only written once the whole file is read, yet it sits at its line.
    let i = import("userdb=x\nno-cli\nmobility\n");
    let lines: Vec<Option<usize>> = i.notes.iter().map(|n| n.line).collect();
    assert_eq!(lines, vec![Some(1), Some(2), Some(3), None]);
}

#[test]
fn migrate_output_round_trips_and_lists_only_changes() {
    let text = "\
listening-port=3479
listening-ip=127.0.0.1
min-port=40000
max-port=40100
realm=\"example.org\"
use-auth-secret
static-auth-secret=s3cret
user=alice:pw
fingerprint
lt-cred-mech
user-quota=3
total-quota=100
denied-peer-ip=10.9.0.0/16
allowed-peer-ip=10.0.0.0-10.0.255.255
no-tls
no-cli
cli-password=tok
log-file=/var/log/turn.log
prometheus
max-bps=1000
alternate-server=192.0.2.5:3478
userdb=/var/db/turndb
verbose
max-allocate-lifetime=300
";
    let i = import(text);
    let toml_text = render_toml(&i, "/etc/turnserver.conf").unwrap();
    let back = Config::from_toml_str(&toml_text).unwrap_or_else(|e| panic!("{e}\n{toml_text}"));
    assert_eq!(back, i.config, "the printed TOML must load as the imported config:\n{toml_text}");
    assert!(toml_text.contains("--log-file /var/log/turn.log"), "{toml_text}");
    assert!(toml_text.contains("userdb (line 22)"), "{toml_text}");
    // Defaults stay out; what the file changed is in.
    assert!(!toml_text.contains("software"), "{toml_text}");
    assert!(!toml_text.contains("channel_lifetime_secs"), "{toml_text}");
    assert!(!toml_text.contains("[call]") && !toml_text.contains("[signaling]"), "{toml_text}");
    assert!(toml_text.contains("listening_port = 3479"), "{toml_text}");
    assert!(toml_text.contains("realm = \"example.org\""), "{toml_text}");
    assert!(toml_text.contains("default_allocate_lifetime_secs = 300"), "{toml_text}");
}

#[test]
fn minimal_toml_round_trips_default_and_unusual_configs() {
    let default = Config::default();
    let text = render::minimal_toml(&default).unwrap();
    assert_eq!(text.trim(), "", "the default config needs no keys");
    assert_eq!(Config::from_toml_str(&text).unwrap(), default);

    // Values that must not collapse into defaults: a cleared list, false where true is the default,
    // an Option set, relays (an array of tables) next to bare keys.
    let mut odd = Config { realm: "odd.example".into(), ..Config::default() };
    odd.turn.tls_listening_ports.clear();
    odd.turn.use_auth_secret = false;
    odd.turn.admin_token = Some("t".into());
    odd.turn.alt_listening_ip = Some(ip("192.0.2.1"));
    odd.relays = vec![ice_config::RelayEndpoint {
        host: "turn.example.org".into(),
        udp_port: 3478,
        tcp_port: 3478,
        tls_port: 443,
        transports: vec![ice_config::Transport::Udp],
        stun: false,
    }];
    odd.call.ring_timeout_secs = 30;
    let text = render::minimal_toml(&odd).unwrap();
    assert_eq!(Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}")), odd, "{text}");
}
