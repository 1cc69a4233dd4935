//! Shared configuration, TURN credentials and the ICE server model for the relay and signaling.
//!
//! Both binaries depend on this crate so they agree on the config file, on how REST credentials
//! are signed and verified, and on the `iceServers` JSON clients receive. It does no IO except
//! [`Config::load`], which reads the config file; everything else is pure and takes time as an
//! argument, so callers and tests control the clock.

pub mod config;
pub mod credentials;
pub mod fleet;
pub mod ice;
pub mod keys;
pub mod url;

pub use config::{
    parse_static_user, AuthConfig, CallConfig, Config, ConfigError, ExternalIp, IpRange, OffloadMode, ParseAddrError,
    RelayEndpoint, SignalingConfig, StaticUserSecret, TurnConfig,
};
pub use credentials::{parse_rest_username, rest_password, CredentialError, RestCredential, RestSecrets, RestUsername};
pub use ice::{ice_servers, IceServer, Transport};
pub use keys::{long_term_key, long_term_key_from_hex, KeyError, LongTermKey, PasswordAlgorithm};
pub use url::{IceUrl, Scheme, UrlError, UrlErrorKind};
