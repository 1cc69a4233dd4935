//! Parsing, defaults and validation of the shared config file.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::keys::{long_term_key, PasswordAlgorithm};

const EXAMPLE: &str = include_str!("../../config.example.toml");

const MINIMAL: &str = r#"
[auth]
secrets = ["s3cret"]

[[relays]]
host = "turn.example.org"
"#;

fn minimal() -> Config {
    Config::from_toml_str(MINIMAL).unwrap()
}

fn invalid_key(config: &Config) -> (String, String) {
    match config.validate() {
        Err(ConfigError::Invalid { key, message }) => (key, message),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn parse_err(toml: &str) -> String {
    match Config::from_toml_str(toml) {
        Err(ConfigError::Parse(message)) => message,
        other => panic!("expected Parse, got {other:?}"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn empty_file_gives_defaults() {
    assert_eq!(Config::from_toml_str("").unwrap(), Config::default());
}

#[test]
fn defaults_match_the_documented_values() {
    let c = Config::default();
    assert_eq!(c.realm, "localhost");
    assert!(c.auth.secrets.is_empty());
    assert_eq!(c.auth.credential_ttl_secs, 86_400);
    assert_eq!(c.auth.rest_separator, ":");
    assert!(c.relays.is_empty());
    let t = &c.turn;
    assert!(t.listening_ips.is_empty());
    assert_eq!(t.listening_port, 3478);
    assert!(t.relay_ips.is_empty() && t.external_ips.is_empty());
    assert_eq!((t.min_port, t.max_port), (49_152, 65_535));
    assert!(t.use_auth_secret);
    assert!(!t.allow_loopback_peers);
    assert!(t.allowed_peer_ips.is_empty() && t.denied_peer_ips.is_empty());
    assert_eq!((t.user_quota, t.total_quota), (0, 0));
    assert_eq!(t.default_allocate_lifetime_secs, 600);
    assert_eq!(t.max_allocate_lifetime_secs, 3_600);
    assert_eq!(t.permission_lifetime_secs, 300);
    assert_eq!(t.channel_lifetime_secs, 600);
    assert_eq!(t.max_session_lifetime_secs, 86_400);
    assert_eq!(t.nonce_lifetime_secs, 600);
    assert!(!t.no_stun);
    assert_eq!(t.software, "turn-server");
    assert_eq!(t.workers, 0);
    assert_eq!(c.call, CallConfig::default());
    assert_eq!(c.call.ring_timeout_secs, 45);
    assert_eq!(c.call.heartbeat_interval_secs, 25);
    assert_eq!(c.call.heartbeat_timeout_secs, 20);
}

#[test]
fn minimal_file_is_valid_and_relay_gets_defaults() {
    let c = minimal();
    c.validate().unwrap();
    assert_eq!(
        c.relays,
        vec![RelayEndpoint {
            host: "turn.example.org".into(),
            udp_port: 3478,
            tcp_port: 3478,
            tls_port: 5349,
            transports: vec![Transport::Udp, Transport::Tcp],
            stun: true,
        }]
    );
}

#[test]
fn example_file_parses_and_validates() {
    let c = Config::from_toml_str(EXAMPLE).unwrap();
    c.validate().unwrap();
    assert_eq!(c.realm, "turn.example.org");
    assert_eq!(c.relays.len(), 1);
    assert_eq!(c.turn.external_ips, vec!["203.0.113.5/10.0.0.5".parse::<ExternalIp>().unwrap()]);
    assert_eq!(c.turn.allowed_peer_ips.len(), 2);
    assert_eq!(c.turn.denied_peer_ips[0].to_string(), "10.20.5.0/24");
    assert_eq!(c.auth.static_users().unwrap().len(), 1);
    c.rest_secrets().unwrap();
}

#[test]
fn example_file_mentions_every_key() {
    // Guards against adding a field without documenting it: serialize the defaults and check
    // each key appears in the example.
    let mut full = Config::default();
    full.relays.push(RelayEndpoint {
        host: "h".into(),
        udp_port: 1,
        tcp_port: 1,
        tls_port: 1,
        transports: vec![],
        stun: true,
    });
    let value = toml::Value::try_from(&full).unwrap();
    let mut missing = Vec::new();
    let tables = value.as_table().unwrap();
    for (key, v) in tables {
        let inner = match v {
            toml::Value::Table(t) => Some(t),
            toml::Value::Array(a) => a.first().and_then(toml::Value::as_table),
            _ => None,
        };
        match inner {
            Some(t) => {
                for sub in t.keys() {
                    if !EXAMPLE.contains(&format!("\n{sub} = ")) {
                        missing.push(format!("{key}.{sub}"));
                    }
                }
            }
            None if !EXAMPLE.contains(&format!("\n{key} = ")) => missing.push(key.clone()),
            None => {}
        }
    }
    assert!(missing.is_empty(), "not in config.example.toml: {missing:?}");
}

#[test]
fn full_file_values_are_read() {
    let c = Config::from_toml_str(
        r#"
realm = "r.example"
[auth]
secrets = ["a", "b"]
credential_ttl_secs = 60
rest_separator = "-"
users = ["alice:pass"]
[[relays]]
host = "2001:db8::1"
udp_port = 3480
tcp_port = 3481
tls_port = 443
transports = ["tls"]
stun = false
[[relays]]
host = "second.example"
[turn]
listening_ips = ["127.0.0.1", "::1"]
listening_port = 3479
relay_ips = ["10.0.0.5"]
external_ips = ["203.0.113.5"]
min_port = 50000
max_port = 50100
use_auth_secret = false
allow_loopback_peers = true
allowed_peer_ips = ["10.0.0.0/8"]
denied_peer_ips = ["8.8.8.8"]
user_quota = 5
total_quota = 100
default_allocate_lifetime_secs = 300
max_allocate_lifetime_secs = 1200
permission_lifetime_secs = 301
channel_lifetime_secs = 601
max_session_lifetime_secs = 0
nonce_lifetime_secs = 60
no_stun = true
software = ""
workers = 4
[call]
ring_timeout_secs = 30
heartbeat_interval_secs = 10
heartbeat_timeout_secs = 5
"#,
    )
    .unwrap();
    c.validate().unwrap();
    assert_eq!(c.realm, "r.example");
    assert_eq!(c.auth.rest_separator_char().unwrap(), '-');
    assert_eq!(c.relays[0].transports, vec![Transport::Tls]);
    assert!(!c.relays[0].stun);
    assert_eq!(c.relays[1].udp_port, 3478);
    assert_eq!(c.turn.listening_ips, vec![ip("127.0.0.1"), ip("::1")]);
    assert_eq!(c.turn.relay_ips, vec![ip("10.0.0.5")]);
    assert_eq!(c.turn.external_ips[0].private, None);
    assert_eq!((c.turn.min_port, c.turn.max_port), (50_000, 50_100));
    assert!(!c.turn.use_auth_secret && c.turn.allow_loopback_peers && c.turn.no_stun);
    assert!(c.turn.denied_peer_ips[0].contains(ip("8.8.8.8")));
    assert_eq!((c.turn.user_quota, c.turn.total_quota), (5, 100));
    assert_eq!(c.turn.permission_lifetime_secs, 301);
    assert_eq!(c.turn.channel_lifetime_secs, 601);
    assert_eq!(c.turn.max_session_lifetime_secs, 0);
    assert_eq!(c.turn.nonce_lifetime_secs, 60);
    assert_eq!(c.turn.software, "");
    assert_eq!(c.turn.workers, 4);
    assert_eq!(c.call.ring_timeout_secs, 30);
    assert_eq!(c.call.heartbeat_interval_secs, 10);
    assert_eq!(c.call.heartbeat_timeout_secs, 5);
}

#[test]
fn serialization_round_trips() {
    let c = Config::from_toml_str(EXAMPLE).unwrap();
    let text = toml::to_string(&c).unwrap();
    assert_eq!(Config::from_toml_str(&text).unwrap(), c);
}

#[test]
fn unknown_keys_are_rejected_with_their_name() {
    for (toml, key) in [
        ("relam = \"x\"", "relam"),
        ("[auth]\nsecret = [\"x\"]", "secret"),
        ("[[relays]]\nhost = \"h\"\nport = 1", "port"),
        ("[turn]\nlistening-port = 1", "listening-port"),
        ("[call]\nring_timeout = 1", "ring_timeout"),
        ("[signalling]\nx = 1", "signalling"),
    ] {
        let message = parse_err(toml);
        assert!(message.contains("unknown field"), "{message}");
        assert!(message.contains(key), "{key}: {message}");
    }
}

#[test]
fn type_errors_keep_toml_location() {
    let message = parse_err("[turn]\nmin_port = \"high\"\n");
    assert!(message.contains("line 2"), "{message}");
    assert!(message.contains("min_port"), "{message}");
    let message = parse_err("[turn]\nmax_port = 70000\n");
    assert!(message.contains("max_port"), "{message}");
    let message = parse_err("[turn]\nlistening_ips = [\"localhost\"]\n");
    assert!(message.contains("listening_ips"), "{message}");
    let message = parse_err("[[relays]]\nhost = \"h\"\ntransports = [\"quic\"]\n");
    assert!(message.contains("quic"), "{message}");
    let message = parse_err("[turn]\nallowed_peer_ips = [\"10.0.0.0/33\"]\n");
    assert!(message.contains("prefix length"), "{message}");
    let message = parse_err("realm = \n");
    assert!(message.contains("line 1"), "{message}");
}

#[test]
fn relay_host_is_required() {
    let message = parse_err("[[relays]]\nudp_port = 1\n");
    assert!(message.contains("missing field `host`"), "{message}");
}

#[test]
fn validate_realm() {
    let mut c = minimal();
    c.realm.clear();
    assert_eq!(invalid_key(&c), ("realm".into(), "is empty".into()));
    c.realm = "a".repeat(128);
    assert_eq!(invalid_key(&c).0, "realm");
    c.realm = "a".repeat(127);
    c.validate().unwrap();
    c.realm = "bad\nrealm".into();
    assert_eq!(invalid_key(&c).0, "realm");
    c.realm = "say \"hi\"".into();
    assert_eq!(invalid_key(&c).0, "realm");
}

#[test]
fn validate_auth_secrets_and_ttl() {
    let mut c = minimal();
    c.auth.secrets = vec!["a".into(), String::new()];
    let err = c.validate().unwrap_err();
    assert_eq!(err.to_string(), "auth.secrets[1]: is empty");
    let mut c = minimal();
    c.auth.credential_ttl_secs = 0;
    assert_eq!(invalid_key(&c).0, "auth.credential_ttl_secs");
}

#[test]
fn validate_rest_separator() {
    let mut c = minimal();
    for bad in ["", "::"] {
        c.auth.rest_separator = bad.into();
        let (key, message) = invalid_key(&c);
        assert_eq!(key, "auth.rest_separator");
        assert!(message.starts_with("must be one character"), "{message}");
    }
    c.auth.rest_separator = "é".into();
    c.validate().unwrap();
    assert_eq!(c.auth.rest_separator_char().unwrap(), 'é');
}

#[test]
fn validate_static_users() {
    let mut c = minimal();
    c.auth.users = vec!["alice:pw".into(), "bob".into()];
    let (key, _) = invalid_key(&c);
    assert_eq!(key, "auth.users[1]");
    c.auth.users = vec!["alice:pw".into(), "alice:other".into()];
    let (key, message) = invalid_key(&c);
    assert_eq!(key, "auth.users[1]");
    assert!(message.contains("listed twice"), "{message}");
}

#[test]
fn static_users_are_parsed_in_order() {
    let mut c = minimal();
    let key = long_term_key(PasswordAlgorithm::Md5, "bob", "r", "p");
    let hex: String = key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    c.auth.users = vec!["alice:pw".into(), format!("bob:0x{hex}")];
    let users = c.auth.static_users().unwrap();
    assert_eq!(users[0], ("alice".into(), StaticUserSecret::Password("pw".into())));
    assert_eq!(users[1], ("bob".into(), StaticUserSecret::Key(key)));
}

#[test]
fn a_relay_without_any_auth_is_refused() {
    let mut c = minimal();
    c.auth.secrets.clear();
    let err = c.validate().unwrap_err();
    assert!(err.to_string().starts_with("auth.secrets: is empty"), "{err}");
    c.auth.users = vec!["alice:pw".into()];
    c.validate().unwrap();

    let mut c = minimal();
    c.turn.use_auth_secret = false;
    let (key, message) = invalid_key(&c);
    assert_eq!(key, "turn.use_auth_secret");
    assert!(message.contains("is false"), "{message}");
    c.auth.users = vec!["alice:pw".into()];
    c.validate().unwrap();
}

#[test]
fn validate_relays() {
    type Mutate = fn(&mut RelayEndpoint);
    let cases: [(Mutate, &str); 7] = [
        (|r| r.host.clear(), "relays[0].host"),
        (|r| r.host = "turn.example.org:3478".into(), "relays[0].host"),
        (|r| r.host = "turn:turn.example.org".into(), "relays[0].host"),
        (|r| r.host = "[2001:db8::1".into(), "relays[0].host"),
        (|r| r.udp_port = 0, "relays[0].udp_port"),
        (|r| r.transports = vec![Transport::Udp, Transport::Udp], "relays[0].transports"),
        (
            |r| {
                r.transports.clear();
                r.stun = false;
            },
            "relays[0].transports",
        ),
    ];
    for (mutate, expected) in cases {
        let mut c = minimal();
        mutate(&mut c.relays[0]);
        assert_eq!(invalid_key(&c).0, expected, "{:?}", c.relays[0]);
    }
    let mut c = minimal();
    c.relays.push(c.relays[0].clone());
    c.relays[1].tls_port = 0;
    assert_eq!(invalid_key(&c).0, "relays[1].tls_port");
    let mut c = minimal();
    c.relays[0].tcp_port = 0;
    assert_eq!(invalid_key(&c).0, "relays[0].tcp_port");
    let mut c = minimal();
    c.relays[0].host.clear();
    assert_eq!(c.validate().unwrap_err().to_string(), "relays[0].host: is empty");
}

#[test]
fn valid_relay_hosts() {
    for host in [
        "turn.example.org",
        "TURN-1.example.org",
        "203.0.113.5",
        "2001:db8::1",
        "[2001:db8::1]",
        "localhost",
        "relay_1.internal",
    ] {
        let mut c = minimal();
        c.relays[0].host = host.into();
        c.validate().unwrap_or_else(|e| panic!("{host}: {e}"));
    }
    for host in ["a b", "a/b", "a?b", "user@h", ".h", "-h", "a..b", "[]", "[h]", "h\n"] {
        let mut c = minimal();
        c.relays[0].host = host.into();
        assert_eq!(invalid_key(&c).0, "relays[0].host", "{host:?}");
    }
}

#[test]
fn stun_only_relay_is_allowed() {
    let mut c = minimal();
    c.relays[0].transports.clear();
    c.validate().unwrap();
}

#[test]
fn no_relays_is_allowed() {
    let mut c = minimal();
    c.relays.clear();
    c.validate().unwrap();
}

#[test]
fn validate_ports() {
    let mut c = minimal();
    c.turn.min_port = 60_000;
    c.turn.max_port = 50_000;
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "turn.min_port: (60000) must not be greater than turn.max_port (50000)"
    );
    c.turn.max_port = 60_000;
    c.validate().unwrap();
    c.turn.min_port = 0;
    assert_eq!(invalid_key(&c).0, "turn.min_port");
    let mut c = minimal();
    c.turn.listening_port = 0;
    assert_eq!(invalid_key(&c).0, "turn.listening_port");
}

#[test]
fn validate_lifetimes() {
    type Field = fn(&mut TurnConfig) -> &mut u64;
    let fields: [(Field, &str); 5] = [
        (|t| &mut t.default_allocate_lifetime_secs, "turn.default_allocate_lifetime_secs"),
        (|t| &mut t.max_allocate_lifetime_secs, "turn.max_allocate_lifetime_secs"),
        (|t| &mut t.permission_lifetime_secs, "turn.permission_lifetime_secs"),
        (|t| &mut t.channel_lifetime_secs, "turn.channel_lifetime_secs"),
        (|t| &mut t.nonce_lifetime_secs, "turn.nonce_lifetime_secs"),
    ];
    for (field, key) in fields {
        let mut c = minimal();
        *field(&mut c.turn) = 0;
        let (got, message) = invalid_key(&c);
        assert_eq!(got, key);
        assert_eq!(message, "must be greater than 0");
    }
    let mut c = minimal();
    c.turn.max_session_lifetime_secs = 0;
    c.validate().unwrap();
}

#[test]
fn validate_allocate_lifetime_order_and_range() {
    let mut c = minimal();
    c.turn.default_allocate_lifetime_secs = 3_601;
    let (key, message) = invalid_key(&c);
    assert_eq!(key, "turn.max_allocate_lifetime_secs");
    assert!(message.contains(">= turn.default_allocate_lifetime_secs"), "{message}");
    c.turn.max_allocate_lifetime_secs = 3_601;
    c.validate().unwrap();
    c.turn.max_allocate_lifetime_secs = u64::from(u32::MAX) + 1;
    assert_eq!(invalid_key(&c).0, "turn.max_allocate_lifetime_secs");
}

#[test]
fn validate_software() {
    let mut c = minimal();
    c.turn.software = "x".repeat(128);
    assert_eq!(invalid_key(&c).0, "turn.software");
    c.turn.software = "é".repeat(127);
    c.validate().unwrap();
    c.turn.software = "a\u{7}".into();
    assert_eq!(invalid_key(&c).0, "turn.software");
}

#[test]
fn validate_call() {
    type Field = fn(&mut CallConfig) -> &mut u64;
    let fields: [(Field, &str); 3] = [
        (|c| &mut c.ring_timeout_secs, "call.ring_timeout_secs"),
        (|c| &mut c.heartbeat_interval_secs, "call.heartbeat_interval_secs"),
        (|c| &mut c.heartbeat_timeout_secs, "call.heartbeat_timeout_secs"),
    ];
    for (field, key) in fields {
        let mut c = minimal();
        *field(&mut c.call) = 0;
        assert_eq!(invalid_key(&c).0, key);
    }
}

#[test]
fn rest_secrets_from_config() {
    let mut c = minimal();
    c.auth.secrets = vec!["north".into(), "south".into()];
    assert_eq!(c.rest_secrets().unwrap().len(), 2);
    c.auth.secrets = vec!["north".into(), "".into()];
    assert_eq!(c.rest_secrets().unwrap_err().to_string(), "auth.secrets[1]: is empty");
    c.auth.secrets.clear();
    let err = c.rest_secrets().unwrap_err();
    assert!(matches!(err, ConfigError::Invalid { ref key, .. } if key == "auth.secrets"));
}

#[test]
fn debug_output_hides_secrets() {
    let mut c = minimal();
    c.auth.users = vec!["alice:hunter2".into(), "garbage".into()];
    let shown = format!("{c:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("<1 redacted>"), "{shown}");
    assert!(shown.contains("alice"), "{shown}");
}

#[test]
fn load_reads_a_file() {
    let dir = std::env::temp_dir().join(format!("ice-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, MINIMAL).unwrap();
    assert_eq!(Config::load(&good).unwrap(), minimal());

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[turn]\nmin_port = \"x\"\n").unwrap();
    match Config::load(&bad) {
        Err(ConfigError::Parse(message)) => {
            assert!(message.starts_with(&bad.display().to_string()), "{message}");
            assert!(message.contains("min_port"), "{message}");
        }
        other => panic!("expected Parse, got {other:?}"),
    }

    let missing = dir.join("missing.toml");
    match Config::load(&missing) {
        Err(err @ ConfigError::Io { .. }) => {
            assert!(err.to_string().contains("missing.toml"), "{err}");
            let source = std::error::Error::source(&err).unwrap();
            assert!(source.downcast_ref::<std::io::Error>().is_some());
        }
        other => panic!("expected Io, got {other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_error_display() {
    assert_eq!(ConfigError::invalid("turn.min_port", "must not be 0").to_string(), "turn.min_port: must not be 0");
    assert_eq!(ConfigError::Parse("boom".into()).to_string(), "boom");
}

#[test]
fn signaling_defaults_and_example() {
    let c = minimal();
    assert_eq!(c.signaling, SignalingConfig::default());
    assert_eq!(c.signaling.jwt_user_claim, "sub");
    assert_eq!(c.signaling.socketio_path, "/socket.io");
    let example = Config::from_toml_str(EXAMPLE).unwrap();
    example.validate_for_signaling().unwrap();
    assert_eq!(example.signaling.cors_origins, vec!["https://messenger.example.org"]);
}

#[test]
fn signaling_needs_a_way_to_authenticate_a_secret_and_a_relay() {
    let mut c = minimal();
    c.validate().unwrap();
    assert_eq!(
        match c.validate_for_signaling() {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("{other:?}"),
        },
        "signaling.jwt_secret"
    );
    c.signaling.jwt_secret = Some("0123456789abcdef".into());
    c.validate_for_signaling().unwrap();
    c.relays.clear();
    assert!(matches!(c.validate_for_signaling(), Err(ConfigError::Invalid { key, .. }) if key == "relays"));
}

#[test]
fn fleet_keys_default_off_and_read() {
    let c = minimal();
    assert!(!c.signaling.fleet);
    assert_eq!((c.signaling.fleet_relays, c.signaling.fleet_stale_secs), (2, 60));
    assert_eq!(c.signaling.region_header, None);
    let text = format!(
        "{MINIMAL}\n[signaling]\nredis_url = \"redis://127.0.0.1:6379/0\"\nfleet = true\nfleet_relays = 3\n\
         region_header = \"X-Client-Region\"\nfleet_stale_secs = 5\n"
    );
    let c = Config::from_toml_str(&text).unwrap();
    c.validate().unwrap();
    assert!(c.signaling.fleet);
    assert_eq!((c.signaling.fleet_relays, c.signaling.fleet_stale_secs), (3, 5));
    assert_eq!(c.signaling.region_header.as_deref(), Some("X-Client-Region"));
}

#[test]
fn signaling_errors_name_their_key() {
    let cases: [(&str, &str); 18] = [
        ("[signaling]\nsocket_connect_timeout_secs = 0\n", "signaling.socket_connect_timeout_secs"),
        ("[signaling]\nsocket_send_queue = 100000\n", "signaling.socket_send_queue"),
        ("[signaling]\nsocket_auth_failures_per_ip = 0\n", "signaling.socket_auth_failures_per_ip"),
        ("[signaling]\nsocketio_path = \"socket.io\"\n", "signaling.socketio_path"),
        ("[signaling]\nsocketio_path = \"/calls/\"\n", "signaling.socketio_path"),
        ("[signaling]\njwt_secret = \"short\"\n", "signaling.jwt_secret"),
        ("[signaling]\napi_keys = [\"0123456789abcdef\", \"x\"]\n", "signaling.api_keys[1]"),
        ("[signaling]\ncors_origins = [\"https://a.example/\"]\n", "signaling.cors_origins[0]"),
        ("[signaling]\nrate_limit_per_ip = 0\n", "signaling.rate_limit_per_ip"),
        ("[signaling]\nredis_url = \"localhost:6379\"\n", "signaling.redis_url"),
        ("[signaling]\nwebhook_url = \"http://127.0.0.1:9/hook\"\n", "signaling.webhook_secret"),
        ("[signaling]\nwebhook_url = \"ftp://x\"\nwebhook_secret = \"0123456789abcdef\"\n", "signaling.webhook_url"),
        ("[signaling]\nmax_event_bytes = 10\n", "signaling.max_event_bytes"),
        ("[signaling]\nmax_event_bytes = 600000\n", "signaling.max_message_bytes"),
        ("[signaling]\nmax_message_bytes = 66559\n", "signaling.max_message_bytes"),
        ("[signaling]\nfleet = true\n", "signaling.fleet"),
        ("[signaling]\nfleet_relays = 0\n", "signaling.fleet_relays"),
        ("[signaling]\nregion_header = \"X Region\"\n", "signaling.region_header"),
    ];
    for (extra, want) in cases {
        let c = Config::from_toml_str(&format!("{MINIMAL}\n{extra}")).unwrap();
        assert_eq!(invalid_key(&c).0, want, "for {extra:?}");
    }
    assert!(parse_err("[signaling]\nlisten_addr = \"127.0.0.1:1\"\n").contains("listen_addr"));
}

#[test]
fn redacted_toml_hides_every_credential_and_reads_back() {
    let mut c = minimal();
    c.auth.secrets = vec!["rest-secret-1".into(), "rest-secret-2".into()];
    c.auth.users = vec!["alice:alice-password".into()];
    c.turn.admin_token = Some("admin-token-value".into());
    c.signaling.jwt_secret = Some("jwt-secret-value-0123".into());
    c.signaling.webhook_secret = Some("webhook-secret-value".into());
    c.signaling.api_keys = vec!["api-key-value-0123".into()];
    c.turn.max_bps = 125_000;
    c.turn.redis_url = Some("redis://:redis-password-1@10.0.0.20:6379/0".into());
    c.signaling.redis_url = Some("redis+sentinel://:redis-password-2@10.0.0.21:26379/calls".into());
    let text = c.to_redacted_toml().unwrap();
    for secret in [
        "rest-secret",
        "alice-password",
        "admin-token-value",
        "jwt-secret",
        "webhook-secret",
        "api-key-value",
        "redis-password",
    ] {
        assert!(!text.contains(secret), "{secret} leaked into:\n{text}");
    }
    let back = Config::from_toml_str(&text).unwrap();
    assert_eq!(back.auth.users, vec!["alice:<redacted>"]);
    assert_eq!(back.auth.secrets.len(), 2);
    assert_eq!(back.turn.max_bps, 125_000);
    assert_eq!(back.realm, c.realm);
    assert_eq!(back.turn.redis_url.as_deref(), Some("redis://:<redacted>@10.0.0.20:6379/0"));
}

#[test]
fn redis_urls_of_every_topology_are_checked_in_full() {
    for url in ["redis://127.0.0.1:6379/0", "redis+sentinel://s1,s2:26380/calls", "redis+cluster://n1:7000,n2:7001"] {
        let c = Config::from_toml_str(&format!("{MINIMAL}\n[signaling]\nredis_url = \"{url}\"\n")).unwrap();
        c.validate().unwrap();
    }
    let mut no_service = minimal();
    no_service.turn.redis_url = Some("redis+sentinel://s1:26379".into());
    let (key, message) = invalid_key(&no_service);
    assert_eq!(key, "turn.redis_url");
    assert!(message.contains("service name"), "{message}");
}

#[test]
fn signaling_metrics_listener_and_drain_timeout() {
    let c = Config::from_toml_str(&format!("{MINIMAL}\n[signaling]\nmetrics_listen = \"127.0.0.1:9642\"\n")).unwrap();
    assert_eq!(c.signaling.metrics_listen, Some("127.0.0.1:9642".parse().unwrap()));
    c.validate().unwrap();
    assert_eq!(Config::default().signaling.metrics_listen, None);
    let mut same = minimal();
    same.signaling.metrics_listen = Some(same.signaling.listen);
    assert_eq!(invalid_key(&same).0, "signaling.metrics_listen");
    let mut zero = minimal();
    zero.signaling.drain_timeout_secs = 0;
    assert_eq!(invalid_key(&zero).0, "signaling.drain_timeout_secs");
}
