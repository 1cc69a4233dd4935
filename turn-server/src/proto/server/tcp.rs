//! RFC 6062 TCP allocations: the client asks the relay to open (Connect) or accept TCP connections
//! to peers, then binds each one to a fresh data connection of its own (ConnectionBind), after
//! which bytes flow raw. The core decides and remembers; the driver connects, accepts and splices.

use std::cmp::Reverse;
use std::net::SocketAddr;
use std::time::Duration;

use super::super::allocation::{ClientTransport, FiveTuple, RelayTransport};
use super::super::stun::attr::{self, XOR_PEER_ADDRESS};
use super::super::stun::{Class, ErrorCode, Message, MessageBuilder, MessageType, Method, TransactionId};
use super::reply::ResponseKey;
use super::{Now, Output, Server, TcpCommand, Timer};
use crate::proto::time::Instant;

/// RFC 6062: a connection must be bound (or connected) within 30 seconds.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
enum State {
    Connecting {
        tid: TransactionId,
        key: ResponseKey,
    },
    /// Connected (or accepted) and waiting for the client's ConnectionBind.
    Ready,
    Bound,
}

#[derive(Debug, Clone)]
pub(super) struct TcpConnection {
    allocation: FiveTuple,
    peer: SocketAddr,
    state: State,
    expires: Instant,
}

impl Server {
    fn new_connection(&mut self, now: Instant, allocation: FiveTuple, peer: SocketAddr, state: State) -> u32 {
        let mut id = self.next_connection_id;
        while id == 0 || self.tcp_connections.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        self.next_connection_id = id.wrapping_add(1);
        let expires = now + CONNECTION_TIMEOUT;
        self.tcp_connections.insert(id, TcpConnection { allocation, peer, state, expires });
        self.timers.push(Reverse((expires, Timer::TcpConnection { id })));
        id
    }

    pub(super) fn connect(&mut self, now: Now, tuple: FiveTuple, req: &Message<'_>) {
        let Some(key) = self.on_allocation(now, tuple, req) else { return };
        let Some(alloc) = self.allocations.get(&tuple) else { return };
        if alloc.relay_transport != RelayTransport::Tcp {
            return self.reply_error(tuple, req, ErrorCode::BadRequest, &key, "Connect on a UDP allocation");
        }
        let Some(Ok(peer)) = req.get(XOR_PEER_ADDRESS).map(|v| attr::decode_xor_address(v, req.transaction_id()))
        else {
            return self.reply_error(tuple, req, ErrorCode::BadRequest, &key, "missing or malformed XOR-PEER-ADDRESS");
        };
        let Some(relay) = alloc.relay_for(&peer) else {
            return self.reply_family_mismatch(tuple, req, &key);
        };
        if let Err(why) = self.cfg.peer_policy.check_peer(peer) {
            *self.stats.peers_refused.entry(why.as_str()).or_default() += 1;
            return self.reply_error(
                tuple,
                req,
                ErrorCode::Forbidden,
                &key,
                &format!("peer {peer} refused: {}", why.as_str()),
            );
        }
        if self.tcp_connections.values().any(|c| c.allocation == tuple && c.peer == peer) {
            return self.reply_error(
                tuple,
                req,
                ErrorCode::ConnectionAlreadyExists,
                &key,
                "connection to this peer exists",
            );
        }
        let state = State::Connecting { tid: *req.transaction_id(), key };
        let id = self.new_connection(now.instant, tuple, peer, state);
        self.outputs.push_back(Output::Tcp(TcpCommand::ConnectPeer { id, relay, peer }));
    }

    /// The driver's answer to [`TcpCommand::ConnectPeer`].
    pub fn tcp_connect_result(&mut self, now: Now, id: u32, connected: bool) {
        self.connect_answered(now.instant, id, connected);
    }

    fn connect_answered(&mut self, now: Instant, id: u32, connected: bool) {
        let Some(conn) = self.tcp_connections.get_mut(&id) else { return };
        let State::Connecting { tid, key } = conn.state.clone() else { return };
        let tuple = conn.allocation;
        let mut b = MessageBuilder::new(MessageType::new(Method::Connect, Class::Success), &tid);
        if connected {
            conn.state = State::Ready;
            conn.expires = now + CONNECTION_TIMEOUT;
            self.timers.push(Reverse((conn.expires, Timer::TcpConnection { id })));
            b.u32_attr(attr::CONNECTION_ID, id);
        } else {
            tracing::debug!(client = %tuple.client, peer = %conn.peer, "refused Connect: 447, peer unreachable");
            self.tcp_connections.remove(&id);
            b = MessageBuilder::new(MessageType::new(Method::Connect, Class::Error), &tid);
            b.error(ErrorCode::ConnectionTimeoutOrFailure);
        }
        self.queue(tuple, b, Some(&key));
    }

    pub(super) fn connection_bind(&mut self, now: Now, tuple: FiveTuple, req: &Message<'_>) {
        let Some(auth) = self.authenticate(now, tuple, req) else { return };
        let key = auth.response_key;
        if tuple.transport == ClientTransport::Udp || self.allocations.contains_key(&tuple) {
            return self.reply_error(
                tuple,
                req,
                ErrorCode::BadRequest,
                &key,
                "ConnectionBind needs a fresh TCP connection",
            );
        }
        let Some(Ok(id)) = req.get(attr::CONNECTION_ID).map(attr::decode_u32) else {
            return self.reply_error(tuple, req, ErrorCode::BadRequest, &key, "missing or malformed CONNECTION-ID");
        };
        let Some(conn) = self.tcp_connections.get(&id).filter(|c| matches!(c.state, State::Ready)) else {
            return self.reply_error(tuple, req, ErrorCode::BadRequest, &key, "unknown or already bound CONNECTION-ID");
        };
        let owner = self.allocations.get(&conn.allocation).map(|a| a.username.as_str());
        if owner != Some(auth.username.as_str()) {
            return self.reply_error(
                tuple,
                req,
                ErrorCode::WrongCredentials,
                &key,
                "CONNECTION-ID belongs to another user",
            );
        }
        if let Some(conn) = self.tcp_connections.get_mut(&id) {
            conn.state = State::Bound;
        }
        self.queue(tuple, MessageBuilder::response_to(req, Class::Success), Some(&key));
        self.outputs.push_back(Output::Tcp(TcpCommand::Splice { id, data: tuple }));
    }

    /// A peer connected to the TCP relay at `relay`. Returns the connection id to hold it under, or
    /// `None` to refuse it (no such allocation, or no permission for the peer).
    pub fn tcp_peer_incoming(&mut self, now: Now, relay: SocketAddr, peer: SocketAddr) -> Option<u32> {
        let now = now.instant;
        let tuple = *self.by_relay.get(&relay)?;
        let alloc = self.allocations.get(&tuple)?;
        if alloc.relay_transport != RelayTransport::Tcp || !alloc.has_permission(peer.ip(), now) {
            return None;
        }
        let id = self.new_connection(now, tuple, peer, State::Ready);
        self.indications_sent = self.indications_sent.wrapping_add(1);
        let tid = super::relay::indication_tid(self.indication_salt, self.indications_sent);
        let mut b = MessageBuilder::new(MessageType::new(Method::ConnectionAttempt, Class::Indication), &tid);
        b.xor_address(XOR_PEER_ADDRESS, &peer).u32_attr(attr::CONNECTION_ID, id);
        self.queue(tuple, b, None);
        Some(id)
    }

    /// The driver saw peer connection `id` or its data connection close.
    pub fn tcp_connection_closed(&mut self, id: u32) {
        if self.tcp_connections.remove(&id).is_some() {
            self.outputs.push_back(Output::Tcp(TcpCommand::ClosePeer { id }));
        }
    }

    pub(super) fn tcp_connection_timer(&mut self, now: Instant, id: u32) {
        let Some(conn) = self.tcp_connections.get(&id) else { return };
        if matches!(conn.state, State::Bound) || conn.expires > now {
            return;
        }
        if matches!(conn.state, State::Connecting { .. }) {
            // The driver's connect attempt has its own timeout; answer the client now regardless.
            self.connect_answered(now, id, false);
        } else {
            self.tcp_connections.remove(&id);
        }
        self.outputs.push_back(Output::Tcp(TcpCommand::ClosePeer { id }));
    }

    /// Closes every TCP connection of an allocation that is going away.
    pub(super) fn close_tcp_connections(&mut self, allocation: &FiveTuple) {
        let ids: Vec<u32> =
            self.tcp_connections.iter().filter(|(_, c)| c.allocation == *allocation).map(|(id, _)| *id).collect();
        for id in ids {
            self.tcp_connections.remove(&id);
            self.outputs.push_back(Output::Tcp(TcpCommand::ClosePeer { id }));
        }
    }
}
