//! The Redis store with a local fallback. While Redis is unreachable every operation runs on a
//! [`MemoryStore`] instead, so calls between sockets on this instance keep working (calls that
//! need another instance cannot: its sockets are only reachable through Redis). When Redis
//! answers again, [`FailoverStore::recover`] hands the records made meanwhile to Redis and
//! switches back; they are the newest state of those calls, so they are written without
//! expectations.
//!
//! A read-then-commit cycle that straddles a switch stays correct because the engine commits
//! with expectations: a commit whose reads came from the other side finds different values
//! (or absent keys) and is retried from fresh reads. A recovery excludes every operation while
//! it moves the records, so nothing is written to memory after they were taken.

use std::sync::Arc;

use tokio::sync::RwLock;

use super::{Commit, KvStore, MemoryStore, StoreError};
use crate::cluster::RedisHealth;

/// Records moved back to Redis by one recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Call records and user slots.
    pub records: usize,
    /// Pending deadlines (ring timeouts, reconnect graces).
    pub deadlines: usize,
}

struct Inner<P> {
    primary: P,
    local: MemoryStore,
    health: RedisHealth,
    /// Operations hold it shared; a recovery holds it exclusively.
    gate: RwLock<()>,
}

/// `primary` (Redis) while `health` is up, memory while it is down.
pub struct FailoverStore<P> {
    inner: Arc<Inner<P>>,
}

impl<P> Clone for FailoverStore<P> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<P> std::fmt::Debug for FailoverStore<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailoverStore").field("up", &self.inner.health.is_up()).finish()
    }
}

impl<P: KvStore> FailoverStore<P> {
    /// Serves from `primary` while `health` is up.
    pub fn new(primary: P, health: RedisHealth) -> Self {
        Self { inner: Arc::new(Inner { primary, local: MemoryStore::new(), health, gate: RwLock::new(()) }) }
    }

    /// The shared up/down state.
    pub fn health(&self) -> &RedisHealth {
        &self.inner.health
    }

    /// If Redis was down and answers again: moves the local records to Redis and switches
    /// back. `Ok(None)` if it was up; an error (still down) if Redis is
    /// still unreachable.
    pub async fn recover(&self) -> Result<Option<Recovered>, StoreError> {
        let inner = &self.inner;
        if inner.health.is_up() {
            return Ok(None);
        }
        inner.primary.ping().await?;
        let _exclusive = inner.gate.write().await;
        let taken = inner.local.take_all();
        let moved = Recovered { records: taken.put.len(), deadlines: taken.zadd.len() };
        if moved.records + moved.deadlines > 0 {
            if let Err(e) = inner.primary.commit(&taken).await {
                inner.local.restore(&taken);
                return Err(e);
            }
        }
        inner.health.restore();
        Ok(Some(moved))
    }

    /// Marks Redis down if `e` is an outage; `true` if so.
    fn observe(&self, e: &StoreError) -> bool {
        e.is_outage() && {
            self.inner.health.mark_down(e);
            true
        }
    }
}

impl<P: KvStore> KvStore for FailoverStore<P> {
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<String>>, StoreError> {
        let inner = &self.inner;
        let _shared = inner.gate.read().await;
        if inner.health.is_up() {
            match inner.primary.get_many(keys).await {
                Err(e) if self.observe(&e) => {}
                result => return result,
            }
        }
        inner.local.get_many(keys).await
    }

    async fn commit(&self, commit: &Commit) -> Result<bool, StoreError> {
        let inner = &self.inner;
        let _shared = inner.gate.read().await;
        if !inner.health.is_up() {
            return inner.local.commit(commit).await;
        }
        // Not retried locally: the expectations were read from Redis, and the write may even
        // have been applied before the connection failed. The request fails `unavailable`; the
        // client's retry runs on memory.
        let result = inner.primary.commit(commit).await;
        if let Err(e) = &result {
            self.observe(e);
        }
        result
    }

    async fn claim_due(&self, now_ms: u64, lease_ms: u64, max: usize) -> Result<Vec<String>, StoreError> {
        let inner = &self.inner;
        let _shared = inner.gate.read().await;
        if inner.health.is_up() {
            match inner.primary.claim_due(now_ms, lease_ms, max).await {
                Err(e) if self.observe(&e) => {}
                result => return result,
            }
        }
        inner.local.claim_due(now_ms, lease_ms, max).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if !self.inner.health.is_up() {
            return Err(StoreError::Degraded);
        }
        let result = self.inner.primary.ping().await;
        if let Err(e) = &result {
            self.observe(e);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A primary that fails like an unreachable Redis while `down` is set: fault injection
    /// around a real [`MemoryStore`] (the e2e suite does the same with a real `redis-server`).
    #[derive(Clone, Default)]
    struct Unplugged {
        store: MemoryStore,
        down: Arc<AtomicBool>,
    }

    impl Unplugged {
        fn check(&self) -> Result<(), StoreError> {
            if self.down.load(Ordering::SeqCst) {
                let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
                return Err(StoreError::Redis(io.into()));
            }
            Ok(())
        }
    }

    impl KvStore for Unplugged {
        async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<String>>, StoreError> {
            self.check()?;
            self.store.get_many(keys).await
        }
        async fn commit(&self, commit: &Commit) -> Result<bool, StoreError> {
            self.check()?;
            self.store.commit(commit).await
        }
        async fn claim_due(&self, now_ms: u64, lease_ms: u64, max: usize) -> Result<Vec<String>, StoreError> {
            self.check()?;
            self.store.claim_due(now_ms, lease_ms, max).await
        }
        async fn ping(&self) -> Result<(), StoreError> {
            self.check()
        }
    }

    fn put(key: &str, value: &str) -> Commit {
        Commit { expect: vec![(key.into(), None)], put: vec![(key.into(), value.into(), 60_000)], ..Commit::default() }
    }

    #[tokio::test]
    async fn an_outage_moves_work_to_memory_and_recovery_moves_it_back() {
        let primary = Unplugged::default();
        let store = FailoverStore::new(primary.clone(), RedisHealth::new());
        assert!(store.commit(&put("before", "r")).await.unwrap());

        primary.down.store(true, Ordering::SeqCst);
        // The first read sees the outage and is answered from memory.
        assert_eq!(store.get_many(&["during".into()]).await.unwrap(), vec![None]);
        assert!(!store.health().is_up());
        assert!(matches!(store.ping().await, Err(StoreError::Degraded)));
        assert!(store.commit(&put("during", "m")).await.unwrap());
        store.commit(&Commit { zadd: vec![("ring|c".into(), 50)], ..Commit::default() }).await.unwrap();
        assert_eq!(store.claim_due(100, 1_000, 10).await.unwrap(), vec!["ring|c".to_owned()]);
        assert!(store.recover().await.is_err(), "still unreachable: stays on memory");
        assert_eq!(store.get_many(&["during".into()]).await.unwrap(), vec![Some("m".into())]);

        primary.down.store(false, Ordering::SeqCst);
        assert_eq!(store.recover().await.unwrap(), Some(Recovered { records: 1, deadlines: 1 }));
        assert!(store.health().is_up());
        assert_eq!(store.recover().await.unwrap(), None);
        store.ping().await.unwrap();
        // Both the record from before and the one made during the outage are in the primary.
        assert_eq!(
            primary.store.get_many(&["before".into(), "during".into()]).await.unwrap(),
            vec![Some("r".into()), Some("m".into())]
        );
        // The leased deadline kept its lease: due again once it runs out.
        assert!(primary.store.claim_due(500, 1_000, 10).await.unwrap().is_empty());
        assert_eq!(primary.store.claim_due(1_100, 1_000, 10).await.unwrap(), vec!["ring|c".to_owned()]);
    }

    #[tokio::test]
    async fn a_commit_that_meets_the_outage_fails_and_the_retry_runs_on_memory() {
        let primary = Unplugged::default();
        let store = FailoverStore::new(primary.clone(), RedisHealth::new());
        primary.down.store(true, Ordering::SeqCst);
        let e = store.commit(&put("k", "v")).await.unwrap_err();
        assert!(e.is_outage());
        assert!(store.commit(&put("k", "v")).await.unwrap());
        assert_eq!(store.get_many(&["k".into()]).await.unwrap(), vec![Some("v".into())]);
    }

    #[tokio::test]
    async fn a_failed_hand_over_keeps_the_local_records() {
        /// Answers pings but refuses commits, like a Redis replica promoted late (READONLY).
        #[derive(Clone, Default)]
        struct ReadOnly(MemoryStore);
        impl KvStore for ReadOnly {
            async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<String>>, StoreError> {
                self.0.get_many(keys).await
            }
            async fn commit(&self, _: &Commit) -> Result<bool, StoreError> {
                let e =
                    redis::RedisError::from((redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly), "READONLY"));
                Err(StoreError::Redis(e))
            }
            async fn claim_due(&self, now: u64, lease: u64, max: usize) -> Result<Vec<String>, StoreError> {
                self.0.claim_due(now, lease, max).await
            }
            async fn ping(&self) -> Result<(), StoreError> {
                Ok(())
            }
        }
        let store = FailoverStore::new(ReadOnly::default(), RedisHealth::new());
        assert!(store.commit(&put("k", "v")).await.unwrap_err().is_outage());
        assert!(!store.health().is_up());
        assert!(store.commit(&put("k", "v")).await.unwrap());
        assert!(store.recover().await.is_err());
        assert!(!store.health().is_up());
        assert_eq!(store.get_many(&["k".into()]).await.unwrap(), vec![Some("v".into())]);
    }
}
