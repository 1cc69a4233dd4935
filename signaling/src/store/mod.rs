//! Where call records live, and the engine that runs the state machine against them.
//!
//! Both stores are plain key/value maps with TTLs plus one sorted set of deadlines, and offer
//! the same three operations: read keys, commit a [`Commit`] atomically if the keys read are
//! unchanged (compare-and-set), and claim due deadlines with a lease. [`Engine`] turns an input
//! into reads, runs [`crate::calls::Machine`], and commits, retrying on conflict; it is generic
//! over the store, so memory (one instance) and Redis (many) share every line of logic.

mod engine;
mod failover;
mod memory;

use std::future::Future;

pub use engine::Engine;
pub use failover::FailoverStore;
pub use memory::MemoryStore;

/// Why the store could not answer.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// Redis failed (connection, script).
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A stored record did not parse (another version wrote it, or corruption).
    #[error("corrupt record under {key}: {message}")]
    Corrupt {
        /// The key.
        key: String,
        /// The parse error.
        message: String,
    },
    /// Other writers kept changing the records; the request should be retried.
    #[error("too much contention on the call records")]
    Contention,
    /// Redis is unreachable; call state is kept in this instance's memory until it returns.
    #[error("Redis unreachable: calls are served between this instance's sockets only")]
    Degraded,
}

impl StoreError {
    /// Whether this is Redis being unreachable (rather than a bad record or a bug).
    pub fn is_outage(&self) -> bool {
        match self {
            Self::Redis(e) => redis_link::is_outage(e),
            Self::Degraded => true,
            Self::Corrupt { .. } | Self::Contention => false,
        }
    }
}

/// An atomic change: applied only if every `expect`ed key still holds the value read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commit {
    /// Key and the value it must still have (`None`: must still be absent).
    pub expect: Vec<(String, Option<String>)>,
    /// Key, value, time to live in milliseconds.
    pub put: Vec<(String, String, u64)>,
    /// Delete the key if it holds this value.
    pub delete_if: Vec<(String, String)>,
    /// Deadline members to remove.
    pub zrem: Vec<String>,
    /// Deadline members to add at unix milliseconds.
    pub zadd: Vec<(String, u64)>,
}

/// A key/value store with compare-and-set commits and a deadline set.
pub trait KvStore: Send + Sync + 'static {
    /// The values of `keys`, in order.
    fn get_many(&self, keys: &[String]) -> impl Future<Output = Result<Vec<Option<String>>, StoreError>> + Send;
    /// Applies `commit` atomically; `false` if an expectation failed (nothing was written).
    fn commit(&self, commit: &Commit) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Deadline members due at `now_ms`, at most `max`; each is leased until `now_ms + lease_ms`
    /// (so another instance re-claims it if this one dies before handling it).
    fn claim_due(
        &self,
        now_ms: u64,
        lease_ms: u64,
        max: usize,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// Whether the store answers (readiness).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Key names under a prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    /// A call record.
    pub fn call(&self, id: &str) -> String {
        format!("{}:call:{id}", self.prefix)
    }

    /// A user's live-call slot.
    pub fn slot(&self, user: &str) -> String {
        format!("{}:slot:{user}", self.prefix)
    }

    /// The deadline sorted set.
    pub fn deadlines(&self) -> String {
        format!("{}:deadlines", self.prefix)
    }
}
