//! The relays' registry as `/v1/ice-servers` sees it (`signaling.fleet`). A background task
//! reads it from Redis once a second with a short timeout, so a burst of requests never waits on
//! Redis nor multiplies its load, and requests pick from the last read ([`select`], pure).
//! With Redis unreachable the last read is served for `fleet_stale_secs`, judged as of when it
//! was read (records age in the cache but were fresh then); after that, and whenever the
//! registry holds no usable relay, the static `[[relays]]` are served.

pub mod select;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ice_config::fleet::{record_key, registry_key, RelayRecord};
use redis_link::{Link, Options, Target};

use crate::metrics::{Metrics, RedisComponent};

/// How often the registry is read; also the longest a new, drained or dead relay waits to be
/// seen beyond its own heartbeat.
const REFRESH: Duration = Duration::from_secs(1);
/// Bound on one read (and on connecting): well under [`REFRESH`], so a hung Redis cannot pile
/// reads up, and long enough for a loaded Redis on a LAN.
const READ_TIMEOUT: Duration = Duration::from_millis(500);
/// Most records read: a bound on memory if the set fills with junk, far above any real fleet.
const MAX_RELAYS: isize = 1_000;
/// Longest region label taken from a request.
const MAX_REGION: usize = 64;

/// Where one ICE config's relays came from (label of `signaling_fleet_served_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The latest registry read.
    Registry,
    /// An older read, served while Redis is unreachable (within `fleet_stale_secs`).
    Cache,
    /// `[[relays]]`: no usable relay in the registry, or the last read is too old.
    Static,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registry => "registry",
            Self::Cache => "cache",
            Self::Static => "static",
        }
    }
}

/// Why a registry read failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("registry read timed out after {0:?}")]
    Timeout(Duration),
}

/// What the last reads found.
#[derive(Debug, Default)]
struct Snapshot {
    records: Vec<RelayRecord>,
    /// Unix seconds and monotonic time of the last successful read; `None` before the first.
    read_at: Option<(u64, Instant)>,
    /// Whether the latest attempt succeeded.
    reachable: bool,
}

/// For `/readyz`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetStatus {
    /// `ok` (registry read), `degraded` (Redis unreachable: cache, or static once it is too old).
    pub state: &'static str,
    /// What a request would be served from now.
    pub source: &'static str,
    /// Seconds since the last successful read, if any.
    #[serde(rename = "lastReadSecsAgo")]
    pub last_read_secs_ago: Option<u64>,
    /// Relays that may be handed out, as of the last read.
    pub healthy: usize,
}

/// The registry cache shared by the handlers.
#[derive(Debug)]
pub struct Fleet {
    snapshot: Mutex<Snapshot>,
    relays: usize,
    fresh_secs: u64,
    stale: Duration,
}

impl Fleet {
    /// `relays` per config; records count as fresh for `fresh_secs` (the record TTL: three of the
    /// relays' heartbeats); the last read is served for `stale` while Redis is down.
    pub fn new(relays: usize, fresh_secs: u64, stale: Duration) -> Self {
        Self { snapshot: Mutex::new(Snapshot::default()), relays, fresh_secs, stale }
    }

    /// Starts the reader; it runs until the runtime stops.
    pub fn spawn(self: &Arc<Self>, target: Target, prefix: String, metrics: Arc<Metrics>) {
        tokio::spawn(refresh(self.clone(), target, prefix, metrics));
    }

    /// The relays for a client in `region`, and where they came from. Empty with
    /// [`Source::Static`]: serve `[[relays]]`.
    pub fn pick(&self, region: Option<&str>) -> (Vec<RelayRecord>, Source) {
        let snap = self.snapshot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some((read_unix, read_at)) = snap.read_at else { return (Vec::new(), Source::Static) };
        let source = if snap.reachable {
            Source::Registry
        } else if read_at.elapsed() <= self.stale {
            Source::Cache
        } else {
            return (Vec::new(), Source::Static);
        };
        let chosen: Vec<RelayRecord> = select::select(&snap.records, read_unix, self.fresh_secs, region, self.relays)
            .into_iter()
            .cloned()
            .collect();
        if chosen.is_empty() {
            (chosen, Source::Static)
        } else {
            (chosen, source)
        }
    }

    /// For `/readyz`.
    pub fn status(&self) -> FleetStatus {
        let (_, source) = self.pick(None);
        let snap = self.snapshot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let healthy = snap.read_at.map_or(0, |(unix, _)| select::census(&snap.records, unix, self.fresh_secs).healthy);
        FleetStatus {
            state: if snap.reachable { "ok" } else { "degraded" },
            source: source.as_str(),
            last_read_secs_ago: snap.read_at.map(|(_, at)| at.elapsed().as_secs()),
            healthy,
        }
    }

    fn store_read(&self, records: Vec<RelayRecord>, now_unix: u64) {
        let mut snap = self.snapshot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *snap = Snapshot { records, read_at: Some((now_unix, Instant::now())), reachable: true };
    }

    fn store_failure(&self) -> Option<Duration> {
        let mut snap = self.snapshot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        snap.reachable = false;
        snap.read_at.map(|(_, at)| at.elapsed())
    }
}

/// The region a request asks for: `?region=` first (the client knows best, e.g. where its
/// peer is), then the configured header. Over-long or non-printable values are ignored.
pub fn request_region<'a>(query: Option<&'a str>, header: Option<&'a str>) -> Option<&'a str> {
    [query, header]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|r| !r.is_empty() && r.len() <= MAX_REGION && r.bytes().all(|b| b.is_ascii_graphic()))
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The reader loop: logs each change between reachable, cached and static once, not every second.
async fn refresh(fleet: Arc<Fleet>, target: Target, prefix: String, metrics: Arc<Metrics>) {
    let mut connection: Option<Link> = None;
    let mut failing = false;
    let mut fell_back = false;
    let mut was_empty = false;
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = unix_now();
        match tokio::time::timeout(READ_TIMEOUT, read(&target, &prefix, &mut connection, now)).await {
            Ok(Ok(records)) => {
                let census = select::census(&records, now, fleet.fresh_secs);
                metrics.fleet_relays(census.healthy, census.draining, census.stale);
                if failing {
                    tracing::info!(relays = records.len(), "fleet: registry read again");
                }
                if census.healthy == 0 && !was_empty {
                    tracing::warn!(
                        records = records.len(),
                        "fleet: no healthy relay in the registry; serving [[relays]]"
                    );
                } else if census.healthy > 0 && was_empty {
                    tracing::info!(healthy = census.healthy, "fleet: healthy relays in the registry");
                }
                (failing, fell_back, was_empty) = (false, false, census.healthy == 0);
                fleet.store_read(records, now);
            }
            result => {
                let error = match result {
                    Ok(Err(e)) => e,
                    _ => FleetError::Timeout(READ_TIMEOUT),
                };
                // A fresh connection next time: a timed-out one may be wedged.
                connection = None;
                metrics.redis_error(RedisComponent::Fleet);
                let age = fleet.store_failure();
                if !failing {
                    failing = true;
                    tracing::warn!(%error, stale_secs = fleet.stale.as_secs(), "fleet: cannot read the registry; serving the last read");
                }
                if !fell_back && age.is_none_or(|a| a > fleet.stale) {
                    fell_back = true;
                    tracing::warn!(
                        last_read_secs_ago = age.map(|a| a.as_secs()),
                        "fleet: last registry read too old; serving [[relays]] until Redis answers"
                    );
                }
            }
        }
    }
}

/// One read: ids whose records have not expired, then their records.
async fn read(
    target: &Target,
    prefix: &str,
    connection: &mut Option<Link>,
    now: u64,
) -> Result<Vec<RelayRecord>, FleetError> {
    let conn = match connection {
        Some(c) => c,
        None => {
            let options = Options { connect_timeout: READ_TIMEOUT, response_timeout: READ_TIMEOUT, push: None };
            connection.insert(Link::connect(target, &options).await?)
        }
    };
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg(registry_key(prefix))
        .arg(now)
        .arg("+inf")
        .arg("BYSCORE")
        .arg("LIMIT")
        .arg(0)
        .arg(MAX_RELAYS)
        .query_async(conn)
        .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = ids.iter().map(|id| record_key(prefix, id)).collect();
    let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(conn).await?;
    let mut records = Vec::with_capacity(values.len());
    // A record may expire between the two commands (None); a malformed one is skipped, not
    // allowed to hide the rest of the fleet.
    for (id, value) in ids.iter().zip(values) {
        let Some(json) = value else { continue };
        match serde_json::from_str::<RelayRecord>(&json) {
            Ok(r) => records.push(r),
            Err(e) => tracing::debug!(%id, error = %e, "fleet: unreadable relay record skipped"),
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> RelayRecord {
        RelayRecord {
            id: id.into(),
            urls: vec![format!("turn:{id}?transport=udp")],
            stun: None,
            region: String::new(),
            alternate: None,
            capacity: 0,
            allocations: 0,
            relayed_bps: 0,
            cpu: 0.0,
            draining: false,
            updated_at: unix_now(),
        }
    }

    #[test]
    fn region_from_query_then_header_and_junk_ignored() {
        assert_eq!(request_region(Some("us"), Some("eu")), Some("us"));
        assert_eq!(request_region(None, Some(" eu ")), Some("eu"));
        assert_eq!(request_region(Some(""), Some("eu")), Some("eu"));
        assert_eq!(request_region(Some("a b"), None), None);
        assert_eq!(request_region(Some(&"x".repeat(65)), None), None);
        assert_eq!(request_region(None, None), None);
    }

    #[test]
    fn static_before_the_first_read_then_registry_then_cache_then_static() {
        let fleet = Fleet::new(2, 15, Duration::from_millis(50));
        assert_eq!(fleet.pick(None).1, Source::Static);
        assert_eq!(fleet.status().source, "static");
        fleet.store_read(vec![rec("a:1"), rec("b:1"), rec("c:1")], unix_now());
        let (chosen, source) = fleet.pick(None);
        assert_eq!((chosen.len(), source), (2, Source::Registry));
        assert_eq!(fleet.status().state, "ok");
        // Redis fails: the same relays, from the cache, until the stale bound.
        assert!(fleet.store_failure().is_some());
        let (cached, source) = fleet.pick(None);
        assert_eq!((cached, source), (chosen, Source::Cache));
        assert_eq!((fleet.status().state, fleet.status().source), ("degraded", "cache"));
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(fleet.pick(None), (Vec::new(), Source::Static));
        assert_eq!(fleet.status().source, "static");
        // Redis back.
        fleet.store_read(vec![rec("d:1")], unix_now());
        assert_eq!(fleet.pick(None).1, Source::Registry);
    }

    #[test]
    fn an_empty_or_all_draining_registry_serves_static() {
        let fleet = Fleet::new(2, 15, Duration::from_secs(60));
        fleet.store_read(Vec::new(), unix_now());
        assert_eq!(fleet.pick(None).1, Source::Static);
        let mut d = rec("a:1");
        d.draining = true;
        fleet.store_read(vec![d], unix_now());
        assert_eq!(fleet.pick(None).1, Source::Static);
        assert_eq!(fleet.status().healthy, 0);
    }
}
