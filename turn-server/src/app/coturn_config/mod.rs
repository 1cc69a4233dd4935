//! coturn's `turnserver.conf` read into the shared [`Config`], so a deployment moves over by
//! pointing `--coturn-config` at the file it already has (or printing the TOML with `migrate`).
//!
//! The reader is pure (text in, [`Import`] out) so every option, quirk and error is unit-tested
//! without files; `main.rs` reads the file and prints the notes. Nothing is dropped silently:
//! each option is either mapped, accepted as already true here (a [`Severity::Info`] note), or
//! ignored with a [`Severity::Warning`] naming it and its line. Where an option is mapped but
//! behaves differently from coturn (peer policy above all), a warning says so.

mod options;
mod render;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use ice_config::{Config, IpRange};

pub use render::{render_toml, RenderError};

/// What a coturn config file turned into.
#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    /// The settings, unvalidated (as [`Config::from_toml_str`] leaves them).
    pub config: Config,
    /// coturn's `log-file`: not a config key here but a flag (`--log-file`), so it travels apart.
    pub log_file: Option<PathBuf>,
    /// Everything the operator should read, in file order, file-wide notes last.
    pub notes: Vec<Note>,
}

/// How much a [`Note`] matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The option is accepted and means nothing different here.
    Info,
    /// The option is ignored, or it behaves differently from coturn.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Info => "note",
            Self::Warning => "warning",
        })
    }
}

/// One message about the file, e.g. `turnserver.conf:12: userdb is not supported by turn-server; ignored`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub severity: Severity,
    /// The file's name as given to [`parse`].
    pub file: String,
    /// 1-based; `None` for notes about the file as a whole.
    pub line: Option<usize>,
    /// The coturn option it is about, if one.
    pub option: Option<String>,
    pub message: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// A line that cannot be read: the value is malformed or the line is not an option at all.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("{file}:{line}: {option}: {message}")]
pub struct CoturnConfigError {
    /// The file's name as given to [`parse`].
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// The option name as written (or the whole line when it has no name).
    pub option: String,
    pub message: String,
}

/// Reads a coturn config file's text. `file` names it in notes and errors.
///
/// Lines are `name=value`, `name value` or a bare `name` (a flag, which also takes coturn's
/// boolean values such as `fingerprint=0`); `#` starts a comment line; a value in double quotes
/// loses them. Options may repeat where coturn lets them (`listening-ip`, `static-auth-secret`,
/// ...); elsewhere the last one wins, as in coturn, with a warning.
pub fn parse(text: &str, file: &str) -> Result<Import, CoturnConfigError> {
    let mut reader = Reader::new(file);
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        // A UTF-8 byte-order mark is invisible in editors and would otherwise glue onto the first name.
        let raw = if index == 0 { raw.trim_start_matches('\u{feff}') } else { raw };
        let Some((name, value)) = split_line(raw) else { continue };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(CoturnConfigError {
                file: file.to_owned(),
                line,
                option: raw.trim().to_owned(),
                message: "expected an option: `name=value`, `name value` or a bare `name`".into(),
            });
        }
        reader.option(line, name, value)?;
    }
    Ok(reader.finish())
}

/// `(name, value)` of a line, `None` for blank and comment lines. The value is `None` for a bare
/// name and has surrounding whitespace and one pair of double quotes removed.
fn split_line(raw: &str) -> Option<(&str, Option<&str>)> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line.find(|c: char| c == '=' || c.is_whitespace()).unwrap_or(line.len());
    let (name, rest) = line.split_at(end);
    let rest = rest.trim_start();
    // `name = value` as well as `name=value` and `name value`.
    let rest = rest.strip_prefix('=').map_or(rest, str::trim_start);
    if rest.is_empty() {
        // `name=` is a flag without a value too, which is how coturn reads it.
        return Some((name, None));
    }
    let value = match rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) => inner,
        None => rest,
    };
    Some((name, Some(value)))
}

/// coturn's boolean spellings for flags given a value (its `get_bool_value`).
fn parse_bool(value: Option<&str>) -> Option<bool> {
    let Some(v) = value else { return Some(true) };
    match v.to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Some(false),
        _ => None,
    }
}

/// The state of one pass over a file.
struct Reader {
    file: String,
    config: Config,
    log_file: Option<PathBuf>,
    notes: Vec<Note>,
    /// Line each single-valued option was last set on, to warn when it is set again.
    seen: Vec<(String, usize)>,
    /// Whether a `tls-listening-port` line has replaced the default port list yet.
    tls_ports_given: bool,
    use_auth_secret_line: Option<usize>,
    no_cli_line: Option<usize>,
    cli_password_line: Option<usize>,
    allowed: Vec<(IpRange, usize)>,
    denied: Vec<(IpRange, usize)>,
}

impl Reader {
    fn new(file: &str) -> Self {
        let mut config = Config::default();
        // coturn accepts REST credentials only when told to (use-auth-secret or a secret); the
        // finish step turns it back on when the file asks for it.
        config.turn.use_auth_secret = false;
        Self {
            file: file.to_owned(),
            config,
            log_file: None,
            notes: Vec::new(),
            seen: Vec::new(),
            tls_ports_given: false,
            use_auth_secret_line: None,
            no_cli_line: None,
            cli_password_line: None,
            allowed: Vec::new(),
            denied: Vec::new(),
        }
    }

    fn note(&mut self, severity: Severity, line: Option<usize>, option: Option<&str>, message: String) {
        self.notes.push(Note { severity, file: self.file.clone(), line, option: option.map(str::to_owned), message });
    }

    fn info(&mut self, line: usize, option: &str, message: impl Into<String>) {
        self.note(Severity::Info, Some(line), Some(option), message.into());
    }

    fn warn(&mut self, line: usize, option: &str, message: impl Into<String>) {
        self.note(Severity::Warning, Some(line), Some(option), message.into());
    }

    fn error(&self, line: usize, option: &str, message: impl Into<String>) -> CoturnConfigError {
        CoturnConfigError { file: self.file.clone(), line, option: option.to_owned(), message: message.into() }
    }

    /// Warns when a single-valued option was already set, and remembers this line.
    fn once(&mut self, line: usize, name: &str) {
        if let Some(i) = self.seen.iter().position(|(n, _)| n == name) {
            let earlier = self.seen[i].1;
            self.seen[i].1 = line;
            self.warn(line, name, format!("{name} is also set on line {earlier}; this later one wins (as in coturn)"));
        } else {
            self.seen.push((name.to_owned(), line));
        }
    }

    fn finish(mut self) -> Import {
        let t = &mut self.config.turn;
        t.use_auth_secret = self.use_auth_secret_line.is_some() || !self.config.auth.secrets.is_empty();
        if let (Some(line), true) = (self.use_auth_secret_line, self.config.auth.secrets.is_empty()) {
            self.warn(
                line,
                "use-auth-secret",
                "use-auth-secret without static-auth-secret: coturn would take the secrets from its \
                 database, which turn-server does not have; add static-auth-secret lines (or set \
                 TURN_STATIC_AUTH_SECRET)",
            );
        }
        if let Some(line) = self.no_cli_line {
            if self.config.turn.admin_token.take().is_some() {
                let password_line = self.cli_password_line.unwrap_or(line);
                self.info(
                    line,
                    "no-cli",
                    format!(
                        "no-cli: the admin interface stays off, so cli-password (line {password_line}) is not used"
                    ),
                );
            } else {
                self.info(line, "no-cli", "no-cli: the admin interface is off unless cli-password is set");
            }
        }
        self.peer_policy_notes();
        // Notes raised at the end still belong with their line; file-wide ones go last.
        self.notes.sort_by_key(|n| n.line.unwrap_or(usize::MAX));
        Import { config: self.config, log_file: self.log_file, notes: self.notes }
    }

    /// Where turn-server's peer policy would relay to different peers than coturn given the same lines.
    fn peer_policy_notes(&mut self) {
        let loopback = [
            IpRange::from_cidr(IpAddr::from([127, 0, 0, 0]), 8),
            IpRange::from_cidr(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]), 128),
        ];
        let allow_loopback = self.config.turn.allow_loopback_peers;
        for (allowed, line) in self.allowed.clone() {
            for (denied, denied_line) in self.denied.clone() {
                if overlaps(&allowed, &denied) {
                    self.warn(
                        line,
                        "allowed-peer-ip",
                        format!(
                            "allowed-peer-ip {allowed} overlaps denied-peer-ip {denied} (line {denied_line}): \
                             coturn lets the allowed range win, turn-server refuses what is denied; \
                             narrow the denied range if those peers must stay reachable"
                        ),
                    );
                }
            }
            if !allow_loopback && loopback.iter().flatten().any(|l| overlaps(&allowed, l)) {
                self.warn(
                    line,
                    "allowed-peer-ip",
                    format!(
                        "allowed-peer-ip {allowed} includes loopback addresses: coturn still refuses \
                         them, turn-server relays to them"
                    ),
                );
            }
        }
        if self.allowed.is_empty() && !allow_loopback {
            self.note(
                Severity::Warning,
                None,
                None,
                "coturn relays to private (10/8, 172.16/12, 192.168/16), CGNAT and link-local peers \
                 unless denied-peer-ip or no-*-peers lines say otherwise; turn-server refuses them \
                 (and loopback, multicast and its own addresses) by default. If clients must reach \
                 peers there, open those ranges with allowed-peer-ip=RANGE"
                    .into(),
            );
        }
    }
}

fn overlaps(a: &IpRange, b: &IpRange) -> bool {
    a.start().is_ipv4() == b.start().is_ipv4() && a.start() <= b.end() && b.start() <= a.end()
}

#[cfg(test)]
mod tests;
