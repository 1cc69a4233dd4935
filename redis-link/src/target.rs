//! Which Redis to talk to, from one URL. The `redis` crate reads the one-server forms
//! (`redis://`, `rediss://`, `redis+unix://`, `unix://`); Sentinel and Cluster have no URL form
//! there, so these two follow the convention other clients use, a comma-separated host list:
//!
//! - `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]`: ask the
//!   Sentinels (port 26379 by default) for the primary of `service`; the credentials are the
//!   primary's;
//! - `redis+cluster://[[user]:password@]host[:port][,host[:port]...]`: any reachable nodes of
//!   the cluster (port 6379 by default) give the rest.

use std::fmt;

/// A URL that names no usable Redis.
#[derive(thiserror::Error, Debug, PartialEq, Eq)]
pub enum UrlError {
    /// Not one of the schemes above.
    #[error("unknown scheme in {0:?}: expected redis://, rediss://, redis+unix://, unix://, redis+sentinel:// or redis+cluster://")]
    Scheme(String),
    /// No host in the list, or an empty one.
    #[error("{0}: a host is missing (host[:port][,host[:port]...])")]
    NoHost(&'static str),
    /// A port that is not a number from 1 to 65535.
    #[error("bad port {0:?}")]
    Port(String),
    /// `redis+sentinel://` without the service (primary) name.
    #[error("redis+sentinel:// needs the service name as its path: redis+sentinel://host:26379/mymaster")]
    NoService,
    /// A database number that is not a number.
    #[error("bad database number {0:?}")]
    Db(String),
    /// `redis+cluster://` with a path: a cluster has only database 0.
    #[error("redis+cluster:// takes no path: a cluster has only database 0")]
    ClusterPath,
    /// The one-server form, refused by the `redis` crate.
    #[error("{0}")]
    Server(String),
}

/// Credentials for the data nodes (not the Sentinels).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// ACL user (Redis 6+); `None` for the default user.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// One host of a list.
pub type HostPort = (String, u16);

/// A parsed Redis URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One server, the URL as the `redis` crate reads it.
    Server(String),
    /// A primary found through Sentinels.
    Sentinel {
        /// The Sentinels.
        sentinels: Vec<HostPort>,
        /// The monitored primary's name (`sentinel monitor <name> ...`).
        service: String,
        /// Database number on the primary.
        db: i64,
        /// The primary's credentials.
        credentials: Credentials,
    },
    /// A Redis Cluster.
    Cluster {
        /// Seed nodes.
        nodes: Vec<HostPort>,
        /// The nodes' credentials.
        credentials: Credentials,
    },
}

const SENTINEL_PORT: u16 = 26379;
const REDIS_PORT: u16 = 6379;

impl Target {
    /// Parses `url`.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            let (credentials, hosts, path) = split_authority(rest);
            let sentinels = host_list(hosts, SENTINEL_PORT, "redis+sentinel://")?;
            let mut segments = path.split('/').filter(|s| !s.is_empty());
            let service = segments.next().ok_or(UrlError::NoService)?.to_owned();
            let db = match segments.next() {
                Some(db) => db.parse().map_err(|_| UrlError::Db(db.to_owned()))?,
                None => 0,
            };
            return Ok(Self::Sentinel { sentinels, service, db, credentials });
        }
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let (credentials, hosts, path) = split_authority(rest);
            if !path.trim_matches('/').is_empty() {
                return Err(UrlError::ClusterPath);
            }
            let nodes = host_list(hosts, REDIS_PORT, "redis+cluster://")?;
            return Ok(Self::Cluster { nodes, credentials });
        }
        const SERVER: [&str; 4] = ["redis://", "rediss://", "redis+unix://", "unix://"];
        if !SERVER.iter().any(|s| url.starts_with(s)) {
            return Err(UrlError::Scheme(redact(url)));
        }
        redis::Client::open(url).map_err(|e| UrlError::Server(e.to_string()))?;
        Ok(Self::Server(url.to_owned()))
    }

    /// Whether keys are spread over nodes by hash slot: multi-key commands and scripts then
    /// need every key in one slot ([`Target::keyspace`]).
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster { .. })
    }

    /// The key prefix to use for `prefix`. On a cluster it becomes a hash tag (`{prefix}`),
    /// unless it holds one already, so that every key of the service lands in one slot and
    /// the scripts and multi-key reads keep working; elsewhere it is `prefix` unchanged. Every
    /// process that shares the keys derives it the same way from the same URL and prefix.
    pub fn keyspace(&self, prefix: &str) -> String {
        if self.is_cluster() && !(prefix.contains('{') && prefix.contains('}')) {
            format!("{{{prefix}}}")
        } else {
            prefix.to_owned()
        }
    }
}

impl fmt::Display for Target {
    /// Without passwords, for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts = |h: &[HostPort]| h.iter().map(|(h, p)| format!("{h}:{p}")).collect::<Vec<_>>().join(",");
        match self {
            Self::Server(url) => f.write_str(&redact(url)),
            Self::Sentinel { sentinels, service, db, .. } => {
                write!(f, "redis+sentinel://{}/{service}/{db}", hosts(sentinels))
            }
            Self::Cluster { nodes, .. } => write!(f, "redis+cluster://{}", hosts(nodes)),
        }
    }
}

/// `[[user]:password@]hosts[/path][?query]` into its parts (the query is ignored: the two list
/// forms have no options yet).
fn split_authority(rest: &str) -> (Credentials, &str, &str) {
    let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = authority.rsplit_once('@').map_or((None, authority), |(u, h)| (Some(u), h));
    let credentials = match userinfo {
        None => Credentials::default(),
        Some(u) => {
            let (user, password) = u.split_once(':').map_or((u, None), |(a, b)| (a, Some(b)));
            Credentials {
                username: Some(percent_decode(user)).filter(|s| !s.is_empty()),
                password: password.map(percent_decode).filter(|s| !s.is_empty()),
            }
        }
    };
    (credentials, hosts, path)
}

fn host_list(hosts: &str, default_port: u16, form: &'static str) -> Result<Vec<HostPort>, UrlError> {
    let mut list = Vec::new();
    for item in hosts.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(UrlError::NoHost(form));
        }
        // [v6]:port, [v6], host:port, host
        let (host, port) = if let Some(v6) = item.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or(UrlError::NoHost(form))?;
            (h, after.strip_prefix(':'))
        } else {
            item.rsplit_once(':').map_or((item, None), |(h, p)| (h, Some(p)))
        };
        if host.is_empty() {
            return Err(UrlError::NoHost(form));
        }
        let port = match port {
            None => default_port,
            Some(p) => p.parse().ok().filter(|p| *p != 0).ok_or_else(|| UrlError::Port(p.to_owned()))?,
        };
        list.push((host.to_owned(), port));
    }
    Ok(list)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL with any password replaced, for logs and errors.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, _)) if userinfo.contains(':') => {
            let user = userinfo.split_once(':').map_or("", |(u, _)| u);
            format!("{scheme}://{user}:<redacted>@{}", &rest[userinfo.len() + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn hp(h: &str, p: u16) -> HostPort {
        (h.to_owned(), p)
    }

    #[test]
    fn one_server_urls_are_the_redis_crates() {
        assert_eq!(
            Target::parse("redis://127.0.0.1:6380/2").unwrap(),
            Target::Server("redis://127.0.0.1:6380/2".into())
        );
        // TLS to Redis is not built in (no `tls-*` feature of the `redis` crate): the crate says so.
        assert!(matches!(Target::parse("rediss://h/0"), Err(UrlError::Server(_))));
        assert!(matches!(Target::parse("redis+unix:///run/redis.sock"), Ok(Target::Server(_))));
        assert!(matches!(Target::parse("http://h"), Err(UrlError::Scheme(_))));
        assert!(!Target::parse("redis://h").unwrap().is_cluster());
    }

    #[test]
    fn sentinel_lists_service_db_and_credentials() {
        let t = Target::parse("redis+sentinel://:s%40cret@10.0.0.1,10.0.0.2:26380,[::1]:5/calls/3").unwrap();
        assert_eq!(
            t,
            Target::Sentinel {
                sentinels: vec![hp("10.0.0.1", 26379), hp("10.0.0.2", 26380), hp("::1", 5)],
                service: "calls".into(),
                db: 3,
                credentials: Credentials { username: None, password: Some("s@cret".into()) },
            }
        );
        assert_eq!(t.to_string(), "redis+sentinel://10.0.0.1:26379,10.0.0.2:26380,::1:5/calls/3");
        assert!(!format!("{t:?}").contains("s@cret"), "Debug hides the password");
        assert_eq!(Target::parse("redis+sentinel://h:26379"), Err(UrlError::NoService));
        assert_eq!(Target::parse("redis+sentinel://h:x/m"), Err(UrlError::Port("x".into())));
        assert_eq!(Target::parse("redis+sentinel://h:0/m"), Err(UrlError::Port("0".into())));
        assert_eq!(Target::parse("redis+sentinel://h,,g/m"), Err(UrlError::NoHost("redis+sentinel://")));
        assert_eq!(Target::parse("redis+sentinel://h/m/x"), Err(UrlError::Db("x".into())));
    }

    #[test]
    fn cluster_seeds_and_keyspace() {
        let t = Target::parse("redis+cluster://app:pw@n1:7000,n2").unwrap();
        assert_eq!(
            t,
            Target::Cluster {
                nodes: vec![hp("n1", 7000), hp("n2", 6379)],
                credentials: Credentials { username: Some("app".into()), password: Some("pw".into()) },
            }
        );
        assert!(t.is_cluster());
        assert_eq!(t.keyspace("messenger"), "{messenger}");
        assert_eq!(t.keyspace("{m}calls"), "{m}calls", "an explicit hash tag is kept");
        assert_eq!(Target::parse("redis://h").unwrap().keyspace("messenger"), "messenger");
        assert_eq!(Target::parse("redis+cluster://n1/0"), Err(UrlError::ClusterPath));
        assert_eq!(Target::parse("redis+cluster://"), Err(UrlError::NoHost("redis+cluster://")));
    }

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(redact("redis://u:pw@h:1/0"), "redis://u:<redacted>@h:1/0");
        assert_eq!(redact("redis://:pw@h"), "redis://:<redacted>@h");
        assert_eq!(redact("redis://h/0"), "redis://h/0");
        assert_eq!(Target::parse("redis://:pw@h/0").unwrap().to_string(), "redis://:<redacted>@h/0");
        let e = Target::parse("bogus://:pw@h").unwrap_err().to_string();
        assert!(!e.contains("pw@"), "{e}");
    }
}
