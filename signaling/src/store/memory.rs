//! The single-instance store: a map in memory with the same semantics as the Redis one
//! (values, TTLs, compare-and-set, leased deadlines), so the engine cannot tell them apart.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Commit, KvStore, StoreError};

#[derive(Debug, Default)]
struct Inner {
    values: HashMap<String, (String, u64)>,
    deadlines: BTreeMap<String, u64>,
}

/// Everything in one process; cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

impl Inner {
    fn get(&self, key: &str, now: u64) -> Option<&String> {
        self.values.get(key).filter(|(_, until)| *until > now).map(|(v, _)| v)
    }

    fn sweep(&mut self, now: u64) {
        // Bounded memory: expired records go on every commit rather than on a timer.
        if self.values.len() > 1024 {
            self.values.retain(|_, (_, until)| *until > now);
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied commit (we only mutate
        // after all checks), so the data is still consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every live record and deadline as one commit that recreates them elsewhere (TTLs are
    /// the time left), and empties this store. Used to hand the records kept during a Redis
    /// outage back to Redis.
    pub fn take_all(&self) -> Commit {
        let now = now_ms();
        let mut inner = self.lock();
        let values = std::mem::take(&mut inner.values);
        let deadlines = std::mem::take(&mut inner.deadlines);
        let mut put: Vec<_> = values
            .into_iter()
            .filter(|(_, (_, until))| *until > now)
            .map(|(key, (value, until))| (key, value, until - now))
            .collect();
        put.sort();
        Commit { put, zadd: deadlines.into_iter().collect(), ..Commit::default() }
    }

    /// Puts back what [`take_all`](Self::take_all) took, when it could not be handed over.
    pub fn restore(&self, taken: &Commit) {
        let now = now_ms();
        let mut inner = self.lock();
        for (key, value, ttl) in &taken.put {
            inner.values.entry(key.clone()).or_insert_with(|| (value.clone(), now.saturating_add(*ttl)));
        }
        for (member, at) in &taken.zadd {
            inner.deadlines.entry(member.clone()).or_insert(*at);
        }
    }
}

impl KvStore for MemoryStore {
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<String>>, StoreError> {
        let now = now_ms();
        let inner = self.lock();
        Ok(keys.iter().map(|k| inner.get(k, now).cloned()).collect())
    }

    async fn commit(&self, commit: &Commit) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut inner = self.lock();
        for (key, expected) in &commit.expect {
            if inner.get(key, now) != expected.as_ref() {
                return Ok(false);
            }
        }
        for (key, value, ttl) in &commit.put {
            inner.values.insert(key.clone(), (value.clone(), now.saturating_add(*ttl)));
        }
        for (key, value) in &commit.delete_if {
            if inner.get(key, now) == Some(value) {
                inner.values.remove(key);
            }
        }
        for member in &commit.zrem {
            inner.deadlines.remove(member);
        }
        for (member, at) in &commit.zadd {
            inner.deadlines.insert(member.clone(), *at);
        }
        inner.sweep(now);
        Ok(true)
    }

    async fn claim_due(&self, now_ms: u64, lease_ms: u64, max: usize) -> Result<Vec<String>, StoreError> {
        let mut inner = self.lock();
        let due: Vec<String> =
            inner.deadlines.iter().filter(|(_, at)| **at <= now_ms).take(max).map(|(m, _)| m.clone()).collect();
        for m in &due {
            inner.deadlines.insert(m.clone(), now_ms.saturating_add(lease_ms));
        }
        Ok(due)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn compare_and_set() {
        let s = MemoryStore::new();
        let put = |k: &str, v: &str| Commit { put: vec![(k.into(), v.into(), 60_000)], ..Commit::default() };
        assert!(s.commit(&Commit { expect: vec![("a".into(), None)], ..put("a", "1") }).await.unwrap());
        assert!(!s.commit(&Commit { expect: vec![("a".into(), None)], ..put("a", "2") }).await.unwrap());
        assert!(s.commit(&Commit { expect: vec![("a".into(), Some("1".into()))], ..put("a", "2") }).await.unwrap());
        assert_eq!(s.get_many(&["a".into(), "b".into()]).await.unwrap(), vec![Some("2".into()), None]);
        s.commit(&Commit { delete_if: vec![("a".into(), "1".into())], ..Commit::default() }).await.unwrap();
        assert_eq!(s.get_many(&["a".into()]).await.unwrap(), vec![Some("2".into())]);
        s.commit(&Commit { delete_if: vec![("a".into(), "2".into())], ..Commit::default() }).await.unwrap();
        assert_eq!(s.get_many(&["a".into()]).await.unwrap(), vec![None]);
    }

    #[tokio::test]
    async fn expired_values_are_absent() {
        let s = MemoryStore::new();
        s.commit(&Commit { put: vec![("a".into(), "1".into(), 0)], ..Commit::default() }).await.unwrap();
        assert_eq!(s.get_many(&["a".into()]).await.unwrap(), vec![None]);
    }

    #[tokio::test]
    async fn take_all_moves_live_records_and_deadlines() {
        let s = MemoryStore::new();
        let c = Commit {
            put: vec![("b".into(), "2".into(), 60_000), ("a".into(), "1".into(), 60_000), ("x".into(), "0".into(), 0)],
            zadd: vec![("ring|a".into(), 100)],
            ..Commit::default()
        };
        s.commit(&c).await.unwrap();
        let taken = s.take_all();
        assert_eq!(s.take_all(), Commit::default(), "taken: the store is empty");
        let keys: Vec<_> = taken.put.iter().map(|(k, v, _)| (k.as_str(), v.as_str())).collect();
        assert_eq!(keys, vec![("a", "1"), ("b", "2")], "expired records are not moved");
        assert!(taken.put.iter().all(|(_, _, ttl)| *ttl > 0 && *ttl <= 60_000));
        assert_eq!(taken.zadd, vec![("ring|a".to_owned(), 100)]);
        assert!(taken.expect.is_empty(), "the records kept locally are the newest: no expectations");

        // Handing over failed: everything comes back, without overwriting newer local writes.
        s.commit(&Commit { put: vec![("a".into(), "new".into(), 60_000)], ..Commit::default() }).await.unwrap();
        s.restore(&taken);
        assert_eq!(s.get_many(&["a".into(), "b".into()]).await.unwrap(), vec![Some("new".into()), Some("2".into())]);
        assert_eq!(s.claim_due(200, 1_000, 10).await.unwrap(), vec!["ring|a".to_owned()]);
    }

    #[tokio::test]
    async fn claims_are_leased() {
        let s = MemoryStore::new();
        s.commit(&Commit { zadd: vec![("ring|a".into(), 100), ("ring|b".into(), 300)], ..Commit::default() })
            .await
            .unwrap();
        assert_eq!(s.claim_due(200, 1_000, 10).await.unwrap(), vec!["ring|a".to_owned()]);
        // Leased: not due again until the lease runs out.
        assert!(s.claim_due(250, 1_000, 10).await.unwrap().is_empty());
        assert_eq!(s.claim_due(1_200, 1_000, 1).await.unwrap(), vec!["ring|a".to_owned()]);
        s.commit(&Commit { zrem: vec!["ring|a".into()], ..Commit::default() }).await.unwrap();
        assert_eq!(s.claim_due(5_000, 1_000, 10).await.unwrap(), vec!["ring|b".to_owned()]);
    }
}
