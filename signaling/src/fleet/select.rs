//! Which registry relays a client is given: a pure function of the records, the time, the
//! client's region and how many it gets, so every rule is unit-tested without Redis or a clock.

use ice_config::fleet::RelayRecord;
use ice_config::{IceServer, RestCredential};

/// A record written this far ahead of our clock is still believed: relays and signaling run on
/// different machines whose clocks may disagree by a little.
const FUTURE_SKEW_SECS: u64 = 5;

/// How the records divide up, for the `signaling_fleet_relays{state}` gauge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    /// Fresh and not draining: may be handed out.
    pub healthy: usize,
    /// Fresh but draining: finishing its calls, takes no new ones.
    pub draining: usize,
    /// Not updated within the freshness window (its process is likely gone).
    pub stale: usize,
}

/// Whether `r` was updated within `fresh_secs` of `now` (unix seconds).
pub fn is_fresh(r: &RelayRecord, now: u64, fresh_secs: u64) -> bool {
    r.updated_at.saturating_add(fresh_secs) >= now && r.updated_at <= now.saturating_add(FUTURE_SKEW_SECS)
}

/// Counts the records by state.
pub fn census(records: &[RelayRecord], now: u64, fresh_secs: u64) -> Census {
    let mut c = Census::default();
    for r in records {
        match (is_fresh(r, now, fresh_secs), r.draining) {
            (false, _) => c.stale += 1,
            (true, true) => c.draining += 1,
            (true, false) => c.healthy += 1,
        }
    }
    c
}

/// The best `n` relays for a client in `region` (empty: no preference): fresh, not draining,
/// ordered by (at capacity last, other regions after the client's, least loaded, id). A full
/// relay is still offered after all others rather than dropped: it redirects or refuses, which is
/// better than a client left with no relay at all. The id breaks ties so that every instance
/// hands out the same order for the same records.
pub fn select<'a>(
    records: &'a [RelayRecord],
    now: u64,
    fresh_secs: u64,
    region: Option<&str>,
    n: usize,
) -> Vec<&'a RelayRecord> {
    let region = region.filter(|r| !r.is_empty());
    let mut usable: Vec<&RelayRecord> =
        records.iter().filter(|r| !r.draining && is_fresh(r, now, fresh_secs) && !r.urls.is_empty()).collect();
    let other_region = |r: &RelayRecord| region.is_some_and(|want| !r.region.eq_ignore_ascii_case(want));
    usable.sort_by(|a, b| {
        (a.is_full(), other_region(a))
            .cmp(&(b.is_full(), other_region(b)))
            .then(a.load().total_cmp(&b.load()))
            .then_with(|| a.id.cmp(&b.id))
    });
    // Two records of one relay (an id reused after a restart) must not take two places.
    usable.dedup_by(|a, b| a.id == b.id);
    usable.truncate(n);
    usable
}

/// The `iceServers` for the chosen relays, in their order: per relay its STUN URL (when it serves
/// STUN), then one TURN entry with its URLs and the shared credential, as `ice_servers` does for
/// `[[relays]]`.
pub fn ice_servers(chosen: &[&RelayRecord], credential: &RestCredential) -> Vec<IceServer> {
    let mut servers = Vec::with_capacity(chosen.len() * 2);
    for r in chosen {
        if let Some(stun) = &r.stun {
            servers.push(IceServer { urls: vec![stun.clone()], username: None, credential: None });
        }
        servers.push(IceServer {
            urls: r.urls.clone(),
            username: Some(credential.username.clone()),
            credential: Some(credential.password.clone()),
        });
    }
    servers
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const NOW: u64 = 1_800_000_000;
    const FRESH: u64 = 15;

    fn rec(id: &str, region: &str, capacity: u32, allocations: u64) -> RelayRecord {
        RelayRecord {
            id: format!("{id}:3478"),
            urls: vec![format!("turn:{id}:3478?transport=udp"), format!("turn:{id}:3478?transport=tcp")],
            stun: Some(format!("stun:{id}:3478")),
            region: region.into(),
            alternate: None,
            capacity,
            allocations,
            relayed_bps: 0,
            cpu: 0.0,
            draining: false,
            updated_at: NOW - 1,
        }
    }

    fn ids(chosen: &[&RelayRecord]) -> Vec<String> {
        chosen.iter().map(|r| r.id.trim_end_matches(":3478").to_owned()).collect()
    }

    #[test]
    fn least_loaded_first_and_only_n() {
        let rs = [rec("a", "eu", 100, 50), rec("b", "eu", 100, 10), rec("c", "eu", 1000, 200)];
        assert_eq!(ids(&select(&rs, NOW, FRESH, None, 2)), ["b", "c"]);
        assert_eq!(ids(&select(&rs, NOW, FRESH, None, 5)), ["b", "c", "a"]);
        assert!(select(&rs, NOW, FRESH, None, 0).is_empty());
    }

    #[test]
    fn equal_load_is_ordered_by_id_so_instances_agree() {
        let rs = [rec("c", "", 0, 0), rec("a", "", 0, 0), rec("b", "", 0, 0)];
        assert_eq!(ids(&select(&rs, NOW, FRESH, None, 3)), ["a", "b", "c"]);
    }

    #[test]
    fn region_first_then_load_and_case_insensitive() {
        let rs = [rec("eu1", "eu", 100, 90), rec("us1", "us", 100, 0), rec("eu2", "eu", 100, 40)];
        assert_eq!(ids(&select(&rs, NOW, FRESH, Some("EU"), 3)), ["eu2", "eu1", "us1"]);
        assert_eq!(ids(&select(&rs, NOW, FRESH, Some("us"), 2)), ["us1", "eu2"]);
        // An unknown region or none: load alone decides.
        assert_eq!(ids(&select(&rs, NOW, FRESH, Some("ap"), 3)), ["us1", "eu2", "eu1"]);
        assert_eq!(ids(&select(&rs, NOW, FRESH, Some(""), 3)), ["us1", "eu2", "eu1"]);
    }

    #[test]
    fn draining_stale_and_url_less_relays_are_never_chosen() {
        let mut draining = rec("d", "eu", 100, 0);
        draining.draining = true;
        let mut stale = rec("s", "eu", 100, 0);
        stale.updated_at = NOW - FRESH - 1;
        let mut future = rec("f", "eu", 100, 0);
        future.updated_at = NOW + 60;
        let mut no_urls = rec("n", "eu", 100, 0);
        no_urls.urls.clear();
        let mut edge = rec("e", "eu", 100, 99);
        edge.updated_at = NOW - FRESH;
        let rs = [draining, stale, future, no_urls, edge, rec("ok", "eu", 100, 1)];
        assert_eq!(ids(&select(&rs, NOW, FRESH, Some("eu"), 10)), ["ok", "e"]);
        assert_eq!(census(&rs, NOW, FRESH), Census { healthy: 3, draining: 1, stale: 2 });
    }

    #[test]
    fn full_relays_come_last_even_in_the_clients_region() {
        let rs = [rec("eu-full", "eu", 10, 10), rec("us", "us", 10, 9), rec("eu", "eu", 10, 5)];
        assert_eq!(ids(&select(&rs, NOW, FRESH, Some("eu"), 3)), ["eu", "us", "eu-full"]);
    }

    #[test]
    fn judged_at_the_time_given_not_the_wall_clock() {
        // The cache serves an old read by passing the read's time: what was fresh then counts.
        let rs = [rec("a", "", 0, 0)];
        assert_eq!(select(&rs, NOW + 3600, FRESH, None, 1).len(), 0);
        assert_eq!(select(&rs, NOW, FRESH, None, 1).len(), 1);
    }

    #[test]
    fn a_relay_listed_twice_takes_one_place() {
        let rs = [rec("a", "", 100, 1), rec("a", "", 100, 1), rec("b", "", 100, 2)];
        assert_eq!(ids(&select(&rs, NOW, FRESH, None, 2)), ["a", "b"]);
    }

    #[test]
    fn ice_servers_per_relay_stun_then_turn_with_one_credential() {
        let mut no_stun = rec("b", "", 0, 0);
        no_stun.stun = None;
        let rs = [rec("a", "", 0, 0), no_stun];
        let chosen: Vec<&RelayRecord> = rs.iter().collect();
        let cred = RestCredential { username: "1800000000:u".into(), password: "pw".into(), expires_at: NOW };
        let servers = ice_servers(&chosen, &cred);
        assert_eq!(servers.len(), 3);
        assert_eq!(servers[0].urls, ["stun:a:3478"]);
        assert!(servers[0].username.is_none() && servers[0].credential.is_none());
        assert_eq!(servers[1].urls, rs[0].urls);
        assert_eq!(servers[2].urls, rs[1].urls);
        for s in &servers[1..] {
            assert_eq!((s.username.as_deref(), s.credential.as_deref()), (Some("1800000000:u"), Some("pw")));
        }
    }
}
