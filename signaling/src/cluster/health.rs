//! Whether this instance reaches Redis right now. The store, the Socket.IO adapter's driver and
//! the node heartbeat share one [`RedisHealth`]: the first of them to see an outage flips it, so
//! the others stop waiting on Redis at once (calls continue on this instance's own sockets), and
//! the recovery task flips it back once Redis answers and the local records are moved there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use redis_link::is_outage;

/// The shared up/down state; cloning shares it.
#[derive(Debug, Clone)]
pub struct RedisHealth {
    up: Arc<AtomicBool>,
}

impl Default for RedisHealth {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisHealth {
    /// Starts up (the service connected to Redis before serving).
    pub fn new() -> Self {
        Self { up: Arc::new(AtomicBool::new(true)) }
    }

    /// Whether Redis is believed reachable.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Records `error` if it is an outage; `true` only for the call that took Redis down,
    /// so the switch is logged once.
    pub fn observe(&self, error: &redis::RedisError) -> bool {
        is_outage(error) && self.mark_down(error)
    }

    /// Marks Redis down for `why`; `true` if it was up.
    pub fn mark_down(&self, why: &dyn std::fmt::Display) -> bool {
        let was_up = self.up.swap(false, Ordering::AcqRel);
        if was_up {
            tracing::warn!(error = %why, "Redis unreachable: calls continue between this instance's sockets");
        }
        was_up
    }

    /// Marks Redis reachable again (after the local records were moved there).
    pub fn restore(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            tracing::info!("Redis reachable again: call state and cross-instance delivery through Redis");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_error() -> redis::RedisError {
        std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused").into()
    }

    #[test]
    fn an_outage_marks_redis_down_once() {
        let health = RedisHealth::new();
        assert!(health.is_up());
        assert!(health.observe(&io_error()));
        assert!(!health.observe(&io_error()), "already down: not reported twice");
        assert!(!health.is_up());
        health.restore();
        assert!(health.is_up());
    }

    #[test]
    fn a_command_error_is_not_an_outage() {
        let health = RedisHealth::new();
        let e = redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, "wrong type"));
        assert!(!health.observe(&e));
        assert!(health.is_up());
    }
}
