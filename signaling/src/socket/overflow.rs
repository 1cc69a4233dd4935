//! A socket that stops reading is dropped the moment a send to it finds its queue full
//! (`socket_send_queue` packets waiting), instead of holding up to that many packets until its
//! next heartbeat. Every send of this instance to one of its own sockets goes through here
//! (events, acks, `call:error`), so the failure is pinned on the socket it happened to.
//!
//! Closing it takes its transport: socketioxide's `disconnect` needs a free slot for the
//! DISCONNECT packet. A WebSocket's TCP connection is killed (`conns.rs`); engine.io then closes
//! the session as for any broken connection, the disconnect handler runs, and a client that was
//! only slow reconnects and resyncs with `call:sync`. A long-polling session has no connection
//! of its own to kill: it gets the DISCONNECT if a slot has freed, else its heartbeat closes it.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use serde::Serialize;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError, TransportType};

use super::Gateway;
use crate::store::KvStore;

/// Why the service closed a socket itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A send found the socket's queue full: the client is not reading.
    SendQueueFull,
}

impl DropReason {
    /// The `reason` label of `signaling_sockets_dropped_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendQueueFull => "send_queue_full",
        }
    }
}

/// What a failed send means for the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it: the failure is not the client's doing, or the socket is already closing.
    Keep,
    /// Close it.
    Drop(DropReason),
}

/// The decision after a send to a socket failed.
pub fn verdict(error: &SendError) -> Verdict {
    match error {
        SendError::Socket(SocketError::InternalChannelFull) => Verdict::Drop(DropReason::SendQueueFull),
        // Its transport is gone: the disconnect handler runs anyway.
        SendError::Socket(SocketError::Closed) => Verdict::Keep,
        // A payload of ours that does not encode is a bug here, not a slow client.
        SendError::Serialize(_) => Verdict::Keep,
    }
}

/// Set on a socket once it is being dropped, so it is counted and logged once while the sends
/// behind the first failure keep failing.
#[derive(Clone)]
struct Dropped;

impl<S: KvStore, A: Adapter> Gateway<S, A> {
    /// Sends `event` to this instance's socket `s`.
    pub(super) fn send<T: Serialize + ?Sized>(&self, s: &SocketRef<A>, event: &'static str, data: &T) {
        if let Err(e) = s.emit(event, data) {
            self.send_failed(s, event, &e);
        }
    }

    /// Acts on a failed send of `what` (an event name, or `ack`) to `s`.
    pub(super) fn send_failed(&self, s: &SocketRef<A>, what: &'static str, error: &SendError) {
        match verdict(error) {
            Verdict::Drop(reason) => self.drop_socket(s, reason),
            Verdict::Keep => tracing::debug!(sid = %s.id, what, %error, "not sent"),
        }
    }

    fn drop_socket(&self, s: &SocketRef<A>, reason: DropReason) {
        let transport = s.transport_type();
        if s.extensions.insert(Dropped).is_none() {
            self.metrics.socket_dropped(reason.as_str());
            let user = s.extensions.get::<crate::auth::Principal>().map(|p| p.user).unwrap_or_default();
            tracing::warn!(%user, sid = %s.id, ?transport, reason = reason.as_str(), "dropping socket");
        }
        // Tried on every failure, not just the first (a kill is idempotent): for long-polling, a
        // slot for the DISCONNECT may have freed since.
        let killed = transport == TransportType::Websocket && {
            let handshake = s.req_parts().extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
            self.guard.conns.kill(&s.id.to_string(), handshake)
        };
        if !killed {
            if let Err(e) = s.clone().disconnect() {
                tracing::debug!(sid = %s.id, error = %e, "socket not closed yet: its heartbeat will");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_full_queue_drops_the_socket() {
        let full = SendError::Socket(SocketError::InternalChannelFull);
        assert_eq!(verdict(&full), Verdict::Drop(DropReason::SendQueueFull));
        assert_eq!(verdict(&SendError::Socket(SocketError::Closed)), Verdict::Keep);
        assert_eq!(DropReason::SendQueueFull.as_str(), "send_queue_full");
    }
}
