//! Runs one input through the state machine against a store: load, decide, compare-and-set,
//! retry on conflict. Effects are returned only for a committed transition, so an event is
//! never emitted for a change that another instance overwrote. The committed transitions are
//! counted here for the same reason: exactly once, by the instance whose commit applied them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::calls::{Call, Effect, Input, Machine, Reply, Timing, View, Writes};
use crate::metrics::{Metrics, RedisComponent};

use super::{Commit, Keys, KvStore, StoreError};

/// Attempts before giving up with [`StoreError::Contention`]; a conflict needs another writer
/// touching the same call in the few milliseconds between read and commit.
const MAX_ATTEMPTS: u32 = 8;

/// The machine bound to a store.
#[derive(Debug, Clone)]
pub struct Engine<S> {
    store: S,
    keys: Keys,
    timing: Timing,
    metrics: Arc<Metrics>,
}

impl<S: KvStore> Engine<S> {
    /// An engine over `store` with keys under `prefix`.
    pub fn new(store: S, prefix: &str, timing: Timing) -> Self {
        Self { store, keys: Keys::new(prefix), timing, metrics: Arc::new(Metrics::new()) }
    }

    /// Counts transitions and store failures in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Where transitions are counted.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The store (readiness checks).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Key names.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Handles `input` at `now_ms`; the effects are for the shell to perform.
    pub async fn run(&self, now_ms: u64, input: Input) -> Result<(Reply, Vec<Effect>), StoreError> {
        let result = self.run_once_committed(now_ms, input).await;
        if let Err(StoreError::Redis(_)) = &result {
            self.metrics.redis_error(RedisComponent::Store);
        }
        result
    }

    async fn run_once_committed(&self, now_ms: u64, input: Input) -> Result<(Reply, Vec<Effect>), StoreError> {
        for attempt in 0..MAX_ATTEMPTS {
            let (view, expect) = self.load(&input).await?;
            let mut machine = Machine::new(self.timing, view);
            let reply = machine.handle(now_ms, input.clone());
            let (writes, effects) = machine.finish();
            if writes.is_empty() {
                return Ok((reply, effects));
            }
            let commit = self.commit_for(now_ms, expect, &writes)?;
            if self.store.commit(&commit).await? {
                for t in &writes.transitions {
                    self.metrics.transition(t);
                }
                return Ok((reply, effects));
            }
            tracing::debug!(attempt, ?input, "call record changed under us; retrying");
            tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 5)).await;
        }
        Err(StoreError::Contention)
    }

    /// Reads the slots and calls `input` needs (and the calls the slots point to).
    async fn load(&self, input: &Input) -> Result<(View, Vec<(String, Option<String>)>), StoreError> {
        let needs = input.needs();
        let mut view = View::default();
        let mut expect = Vec::new();
        let slot_keys: Vec<String> = needs.slots.iter().map(|u| self.keys.slot(u)).collect();
        let mut call_ids: Vec<String> = needs.calls.iter().cloned().collect();
        if !slot_keys.is_empty() {
            let values = self.store.get_many(&slot_keys).await?;
            for ((user, key), value) in needs.slots.iter().zip(slot_keys).zip(values) {
                if let Some(id) = &value {
                    view.slots.insert(user.clone(), id.clone());
                    if !call_ids.contains(id) {
                        call_ids.push(id.clone());
                    }
                }
                expect.push((key, value));
            }
        }
        if !call_ids.is_empty() {
            let call_keys: Vec<String> = call_ids.iter().map(|id| self.keys.call(id)).collect();
            let values = self.store.get_many(&call_keys).await?;
            for ((id, key), value) in call_ids.iter().zip(call_keys).zip(values) {
                if let Some(raw) = &value {
                    let call: Call = serde_json::from_str(raw)
                        .map_err(|e| StoreError::Corrupt { key: key.clone(), message: e.to_string() })?;
                    view.calls.insert(id.clone(), call);
                }
                expect.push((key, value));
            }
        }
        Ok((view, expect))
    }

    fn commit_for(
        &self,
        now_ms: u64,
        expect: Vec<(String, Option<String>)>,
        writes: &Writes,
    ) -> Result<Commit, StoreError> {
        let mut commit = Commit { expect, ..Commit::default() };
        let mut ttl_of: BTreeMap<&str, u64> = BTreeMap::new();
        for (id, call) in &writes.calls {
            let key = self.keys.call(id);
            let raw = serde_json::to_string(call)
                .map_err(|e| StoreError::Corrupt { key: key.clone(), message: e.to_string() })?;
            let ttl = call.keep_until_ms.saturating_sub(now_ms).max(1);
            ttl_of.insert(id, ttl);
            commit.put.push((key, raw, ttl));
        }
        for (user, id) in &writes.set_slots {
            // A slot lives as long as its call record, so a crash never leaves a user "busy".
            let ttl = ttl_of.get(id.as_str()).copied().unwrap_or(self.timing.record_ttl_ms);
            commit.put.push((self.keys.slot(user), id.clone(), ttl));
        }
        for (user, id) in &writes.clear_slots {
            commit.delete_if.push((self.keys.slot(user), id.clone()));
        }
        commit.zrem = writes.disarm.iter().map(|d| d.member()).collect();
        commit.zadd = writes.arm.iter().map(|(d, at)| (d.member(), *at)).collect();
        Ok(commit)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;
    use crate::calls::{CallState, CallType, Deadline, DeadlineKind};
    use crate::store::MemoryStore;

    fn engine() -> Engine<MemoryStore> {
        Engine::new(MemoryStore::new(), "t", Timing { ring_timeout_ms: 1_000, ..Timing::default() })
    }

    /// alice (socket a1) calls `callee` with an offer.
    fn initiate(call_id: &str, callee: &str) -> Input {
        Input::Initiate {
            call_id: call_id.into(),
            user: "alice".into(),
            sid: "a1".into(),
            callee: callee.into(),
            chat_id: "chat".into(),
            call_type: CallType::Audio,
            sdp: Some(json!("o")),
        }
    }

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
    }

    #[tokio::test]
    async fn a_call_through_the_store() {
        let e = engine();
        let t = now();
        let init = initiate("c1", "bob");
        let (r, fx) = e.run(t, init).await.unwrap();
        assert!(r.is_ok());
        assert_eq!(fx.len(), 2);
        let slots = e.store().get_many(&["t:slot:alice".into(), "t:slot:bob".into()]).await.unwrap();
        assert_eq!(slots, vec![Some("c1".into()), Some("c1".into())]);
        // The ring deadline is in the set and claimable once due.
        assert!(e.store().claim_due(t + 999, 5_000, 10).await.unwrap().is_empty());
        let due = e.store().claim_due(t + 1_000, 5_000, 10).await.unwrap();
        assert_eq!(due, vec![Deadline { call_id: "c1".into(), kind: DeadlineKind::Ring }.member()]);
        let (r, _) =
            e.run(t + 1_000, Input::Deadline { call_id: "c1".into(), kind: DeadlineKind::Ring }).await.unwrap();
        assert_eq!(r, Reply::ok("c1", CallState::NoAnswer));
        let slots = e.store().get_many(&["t:slot:alice".into(), "t:slot:bob".into()]).await.unwrap();
        assert_eq!(slots, vec![None, None]);
        // Consumed: not claimable after its lease either.
        assert!(e.store().claim_due(t + 60_000, 5_000, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn concurrent_answers_have_one_winner() {
        let e = engine();
        let t = now();
        let init = initiate("c1", "bob");
        e.run(t, init).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..8 {
            let e = e.clone();
            tasks.push(tokio::spawn(async move {
                let input =
                    Input::Answer { call_id: "c1".into(), user: "bob".into(), sid: format!("b{i}"), sdp: json!("a") };
                e.run(t + 10, input).await.unwrap().0
            }));
        }
        let mut winners = 0;
        for t in tasks {
            if t.await.unwrap().is_ok() {
                winners += 1;
            }
        }
        assert_eq!(winners, 1);
        // Eight runs raced, several retried after a conflict: the answer is counted once.
        assert_eq!(e.metrics().calls_of(crate::metrics::Outcome::answered), 1);
    }

    /// A store whose commits fail the compare-and-set a given number of times, as when another
    /// instance writes the same call in between.
    #[derive(Clone)]
    struct Conflicting {
        inner: MemoryStore,
        conflicts: Arc<std::sync::atomic::AtomicU32>,
    }

    impl KvStore for Conflicting {
        async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<String>>, StoreError> {
            self.inner.get_many(keys).await
        }
        async fn commit(&self, commit: &crate::store::Commit) -> Result<bool, StoreError> {
            use std::sync::atomic::Ordering;
            if self.conflicts.load(Ordering::SeqCst) > 0 {
                self.conflicts.fetch_sub(1, Ordering::SeqCst);
                return Ok(false);
            }
            self.inner.commit(commit).await
        }
        async fn claim_due(&self, now_ms: u64, lease_ms: u64, max: usize) -> Result<Vec<String>, StoreError> {
            self.inner.claim_due(now_ms, lease_ms, max).await
        }
        async fn ping(&self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn transitions_are_counted_once_committed_and_not_per_attempt() {
        use crate::metrics::Outcome;
        let conflicts = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let store = Conflicting { inner: MemoryStore::new(), conflicts: conflicts.clone() };
        let e = Engine::new(store, "t", Timing { ring_timeout_ms: 1_000, ..Timing::default() });
        let t = now();
        let init = initiate("c1", "bob");
        e.run(t, init).await.unwrap();
        // Three lost compare-and-sets, then the commit: one rejection counted.
        conflicts.store(3, std::sync::atomic::Ordering::SeqCst);
        let reject = Input::Reject { call_id: "c1".into(), user: "bob".into(), sid: "b1".into() };
        assert!(e.run(t + 10, reject).await.unwrap().0.is_ok());
        assert_eq!(e.metrics().calls_of(Outcome::rejected), 1);
        // Contention to the end: nothing applied, nothing counted.
        let init2 = initiate("c2", "carol");
        e.run(t + 20, init2).await.unwrap();
        conflicts.store(u32::MAX, std::sync::atomic::Ordering::SeqCst);
        let end = Input::End { call_id: "c2".into(), user: "alice".into(), sid: "a1".into() };
        assert!(matches!(e.run(t + 30, end).await, Err(StoreError::Contention)));
        assert_eq!(e.metrics().calls_of(Outcome::cancelled), 0);
        let text = e.metrics().render();
        assert!(text.contains("signaling_calls_started_total 2\n"), "{text}");
    }
}
