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
