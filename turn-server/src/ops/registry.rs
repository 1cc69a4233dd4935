//! The relay's record in the fleet registry (`turn.redis_url`, coturn's `redis-statsdb`): every
//! heartbeat it rewrites `ice_config::fleet::RelayRecord` with a TTL of three heartbeats, so a
//! relay that dies drops out on its own, and a drain is published at once. It also reads the
//! other relays' records, so that when this one is full or draining the core can send new clients
//! to the least loaded of them (300 Try Alternate). Redis being down never touches relaying: the
//! record goes stale and the last alternates stay until Redis answers again.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ice_config::fleet::{record_key, registry_key, RelayRecord};
use redis_link::{Link, Options, Target};
use tokio::sync::Notify;

use crate::net::{Worker, WorkerPool};

/// A record older than this is not trusted for redirects even if its key still exists.
const STALE_AFTER_SECS: u64 = 60;

/// What the registry needs from the settings.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// Where the registry lives (one server, Sentinel or Cluster).
    pub target: Target,
    /// Key prefix, already a hash tag on a cluster ([`Target::keyspace`]).
    pub prefix: String,
    pub heartbeat: Duration,
    /// The record's fixed part; the load fields are filled in at each heartbeat.
    pub identity: RelayRecord,
}

/// Counters read at one heartbeat, to turn into rates at the next.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    relayed_bytes: u64,
    cpu_ticks: u64,
}

/// The record for this heartbeat: the identity plus load measured since `previous`.
fn record(identity: &RelayRecord, previous: Sample, now: Sample, allocations: u64, draining: bool) -> RelayRecord {
    let secs = now.at.saturating_duration_since(previous.at).as_secs_f64().max(1e-3);
    let bytes = now.relayed_bytes.saturating_sub(previous.relayed_bytes) as f64;
    let ticks = now.cpu_ticks.saturating_sub(previous.cpu_ticks) as f64;
    RelayRecord {
        allocations,
        relayed_bps: (bytes * 8.0 / secs) as u64,
        cpu: ticks / clock_ticks_per_second() / secs,
        draining,
        updated_at: unix_now(),
        ..identity.clone()
    }
}

/// Keeps the record fresh until the task is dropped; `wake` publishes at once (a drain began).
pub async fn run(settings: RegistrySettings, workers: Rc<WorkerPool>, wake: Rc<Notify>) {
    let mut connection: Option<Link> = None;
    let mut previous = sample(&workers);
    let mut failing = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep(settings.heartbeat) => {}
            () = wake.notified() => {}
        }
        let now = sample(&workers);
        let (allocations, draining) = (workers.allocation_count() as u64, workers.is_draining());
        let rec = record(&settings.identity, previous, now, allocations, draining);
        previous = now;
        let fleet = match publish(&settings, &mut connection, &rec).await {
            Ok(()) => read_fleet(&settings, &mut connection).await,
            Err(e) => Err(e),
        };
        match fleet {
            Ok(records) => {
                workers.set_fleet_alternates(choose_alternates(&records, &rec.id, unix_now()));
                if failing {
                    failing = false;
                    tracing::info!(id = %rec.id, "registry: Redis reachable again; record published");
                }
            }
            Err(e) => {
                // Dropped so the next heartbeat reconnects from scratch; the last alternates stay.
                connection = None;
                if !failing {
                    failing = true;
                    tracing::warn!(error = %e, "registry: cannot reach Redis; relaying goes on, the record goes stale");
                }
            }
        }
    }
}

/// The other relays worth sending a client to, least loaded first: fresh, not draining, not full,
/// with an address to name in ALTERNATE-SERVER.
fn choose_alternates(records: &[RelayRecord], own_id: &str, now_unix: u64) -> Vec<SocketAddr> {
    let mut usable: Vec<&RelayRecord> = records
        .iter()
        .filter(|r| r.id != own_id && !r.draining && !r.is_full() && r.alternate.is_some())
        .filter(|r| now_unix.saturating_sub(r.updated_at) <= STALE_AFTER_SECS)
        .collect();
    usable.sort_by(|a, b| a.load().total_cmp(&b.load()));
    usable.iter().filter_map(|r| r.alternate).collect()
}

/// Every live record of the registry (ids whose expiry score has not passed).
async fn read_fleet(
    settings: &RegistrySettings,
    connection: &mut Option<Link>,
) -> Result<Vec<RelayRecord>, redis::RedisError> {
    let Some(conn) = connection.as_mut() else { return Ok(Vec::new()) };
    let work = async {
        let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(registry_key(&settings.prefix))
            .arg(unix_now())
            .arg("+inf")
            .query_async(conn)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| record_key(&settings.prefix, id)).collect();
        let texts: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(conn).await?;
        // A record that does not parse (another version's, say) is skipped, not fatal.
        Ok(texts.into_iter().flatten().filter_map(|t| serde_json::from_str(&t).ok()).collect())
    };
    tokio::time::timeout(settings.heartbeat, work)
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "read timed out")))?
}

async fn publish(
    settings: &RegistrySettings,
    connection: &mut Option<Link>,
    rec: &RelayRecord,
) -> Result<(), redis::RedisError> {
    if connection.is_none() {
        let link = tokio::time::timeout(settings.heartbeat, Link::connect(&settings.target, &link_options(settings)))
            .await
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out")))??;
        *connection = Some(link);
    }
    let Some(conn) = connection.as_mut() else { return Ok(()) };
    let ttl = settings.heartbeat * 3;
    let json = serde_json::to_string(rec)
        .map_err(|e| redis::RedisError::from((redis::ErrorKind::Io, "json", e.to_string())))?;
    let expires = unix_now() + ttl.as_secs();
    let registry = registry_key(&settings.prefix);
    let mut pipe = redis::pipe();
    pipe.set_ex(record_key(&settings.prefix, &rec.id), json, ttl.as_secs())
        .ignore()
        .zadd(&registry, &rec.id, expires)
        .ignore()
        // Ids of relays that died without removing themselves.
        .zrembyscore(&registry, "-inf", unix_now())
        .ignore();
    let work = pipe.query_async::<()>(conn);
    tokio::time::timeout(settings.heartbeat, work)
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "write timed out")))?
}

/// On a clean stop: the record goes at once instead of lingering for its TTL.
pub async fn remove(settings: &RegistrySettings) {
    let work = async {
        let options =
            Options { connect_timeout: Duration::from_secs(1), response_timeout: Duration::from_secs(1), push: None };
        let mut conn = Link::connect(&settings.target, &options).await?;
        redis::pipe()
            .del(record_key(&settings.prefix, &settings.identity.id))
            .ignore()
            .zrem(registry_key(&settings.prefix), &settings.identity.id)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
    };
    match tokio::time::timeout(Duration::from_secs(1), work).await {
        Ok(Ok(())) => tracing::info!(id = %settings.identity.id, "registry: record removed"),
        Ok(Err(e)) => tracing::warn!(error = %e, "registry: cannot remove the record; it expires on its own"),
        Err(_) => tracing::warn!("registry: Redis too slow to remove the record; it expires on its own"),
    }
}

/// A heartbeat's Redis work must end within the heartbeat.
fn link_options(settings: &RegistrySettings) -> Options {
    let half = settings.heartbeat / 2;
    Options { connect_timeout: half, response_timeout: half, push: None }
}

fn sample(workers: &WorkerPool) -> Sample {
    let relayed = |w: &Worker| w.with_server(|s| s.stats().bytes_to_peer + s.stats().bytes_from_peer);
    let relayed_bytes = workers.each(relayed).into_iter().sum();
    Sample { at: Instant::now(), relayed_bytes, cpu_ticks: own_cpu_ticks().unwrap_or(0) }
}

/// utime + stime of this process, in clock ticks (`/proc/self/stat` fields 14 and 15).
fn own_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields after it start behind its ')'.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A record with a capacity of 100 and nothing else to say.
    fn blank(id: &str, updated_at: u64) -> RelayRecord {
        RelayRecord {
            id: id.into(),
            urls: Vec::new(),
            stun: None,
            region: String::new(),
            alternate: None,
            capacity: 100,
            allocations: 0,
            relayed_bps: 0,
            cpu: 0.0,
            draining: false,
            updated_at,
        }
    }

    #[test]
    fn rates_come_from_the_difference_of_two_samples() {
        let identity = RelayRecord { region: "eu".into(), ..blank("relay:3478", 0) };
        let t0 = Instant::now();
        let ticks = clock_ticks_per_second() as u64;
        let before = Sample { at: t0, relayed_bytes: 1_000, cpu_ticks: 10 };
        let after = Sample { at: t0 + Duration::from_secs(2), relayed_bytes: 251_000, cpu_ticks: 10 + ticks };
        let r = record(&identity, before, after, 7, true);
        assert_eq!(r.relayed_bps, 1_000_000, "250 kB in 2 s");
        assert!((r.cpu - 0.5).abs() < 1e-9, "one second of CPU in two: {}", r.cpu);
        assert_eq!((r.allocations, r.draining, r.region.as_str()), (7, true, "eu"));
        assert!(r.updated_at > 0);
    }

    #[test]
    fn alternates_are_the_usable_others_least_loaded_first() {
        let base = blank("", 1_000);
        let relay = |id: &str, allocations: u64, f: fn(&mut RelayRecord)| {
            let mut r = RelayRecord {
                id: id.into(),
                alternate: Some(format!("192.0.2.{}:3478", id.len()).parse().unwrap()),
                allocations,
                ..base.clone()
            };
            f(&mut r);
            r
        };
        let records = vec![
            relay("self", 0, |_| {}),
            relay("busy-one", 80, |_| {}),
            relay("idle", 10, |_| {}),
            relay("draining-x", 0, |r| r.draining = true),
            relay("full-relay-y", 100, |_| {}),
            relay("stale-relay-zz", 0, |r| r.updated_at = 1),
            relay("no-address-abc", 0, |r| r.alternate = None),
        ];
        let chosen = choose_alternates(&records, "self", 1_010);
        assert_eq!(chosen, vec!["192.0.2.4:3478".parse().unwrap(), "192.0.2.8:3478".parse().unwrap()]);
    }

    #[test]
    fn reads_its_own_cpu_time() {
        assert!(own_cpu_ticks().is_some());
    }
}
