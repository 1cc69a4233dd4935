//! The IO half of RFC 6062 TCP allocations: accepting peers on relay listeners, connecting out to
//! peers from the relayed address, and carrying out the core's commands. Splicing itself happens in
//! the data connection's task (`stream.rs`), which owns its socket.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::clock;
use super::worker::Shared;
use crate::proto::TcpCommand;

/// How long an outgoing connection to a peer may take (RFC 6062 allows 30 s; the core also times
/// out on its own).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) async fn accept_peers(shared: Rc<Shared>, listener: TcpListener, relay: SocketAddr) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(%relay, error = %e, "TCP relay accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let now = clock::now();
        let mut server = shared.dgram.server.borrow_mut();
        match server.tcp_peer_incoming(now, relay, peer) {
            Some(id) => {
                shared.peer_streams.borrow_mut().insert(id, stream);
            }
            None => tracing::debug!(%relay, %peer, "refused TCP peer: no permission"),
        }
        shared.settle(&mut server, now);
    }
}

pub(super) fn run_command(shared: &Rc<Shared>, command: TcpCommand) {
    match command {
        TcpCommand::ConnectPeer { id, relay, peer } => {
            let task = tokio::task::spawn_local(connect_peer(shared.clone(), id, relay, peer));
            shared.peer_connects.borrow_mut().insert(id, task.abort_handle());
        }
        TcpCommand::ClosePeer { id } => {
            if let Some(task) = shared.peer_connects.borrow_mut().remove(&id) {
                task.abort();
            }
            shared.peer_streams.borrow_mut().remove(&id);
            if let Some(data) = shared.spliced.borrow_mut().remove(&id) {
                if let Some(conn) = shared.streams.borrow().get(&data) {
                    conn.close();
                }
            }
        }
        TcpCommand::Splice { id, data } => {
            let Some(peer) = shared.peer_streams.borrow_mut().remove(&id) else { return };
            if let Some(conn) = shared.streams.borrow().get(&data) {
                conn.splice_to(id, peer);
                shared.spliced.borrow_mut().insert(id, data);
            }
        }
    }
}

async fn connect_peer(shared: Rc<Shared>, id: u32, relay: SocketAddr, peer: SocketAddr) {
    let result = tokio::time::timeout(CONNECT_TIMEOUT, connect_from(relay, peer)).await;
    shared.peer_connects.borrow_mut().remove(&id);
    let connected = match result {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            shared.peer_streams.borrow_mut().insert(id, stream);
            true
        }
        Ok(Err(e)) => {
            tracing::debug!(%relay, %peer, error = %e, "TCP connect to peer failed");
            false
        }
        Err(_) => false,
    };
    let now = clock::now();
    let mut server = shared.dgram.server.borrow_mut();
    server.tcp_connect_result(now, id, connected);
    shared.settle(&mut server, now);
}

/// Connects from the relayed address itself, so the peer sees the address the client announced.
async fn connect_from(relay: SocketAddr, peer: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if relay.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(relay)?;
    socket.connect(peer).await
}
