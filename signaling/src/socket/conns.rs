//! The TCP connections under the HTTP server, each with a kill switch, so that a WebSocket whose
//! send queue is full can be cut off at once. socketioxide 0.18 cannot do it: `disconnect` must
//! queue a DISCONNECT packet first (and fails while the queue is full), and it exposes no way to
//! close an engine.io session, so only the heartbeat would notice, up to pingInterval later.
//! A killed connection fails every read and write; engine.io then closes the session as for any
//! broken transport, which runs the socket's disconnect handler.
//!
//! A connection is found by the client's address and port (unique among the live connections
//! of one listener), which axum gives every request as `ConnectInfo<SocketAddr>`: a socket's
//! handshake request (kept by socketioxide) names the connection of a direct WebSocket, and the
//! guard records here the connection of a WebSocket that upgraded a polling session. The table
//! holds one entry per open connection and forgets it when the connection is dropped.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use axum::serve::{Listener, ListenerExt as _, TapIo};
use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// What a killed connection does to its stream before failing.
pub trait Abort {
    /// Makes the close that follows abortive.
    fn abort(&self);
}

impl Abort for TcpStream {
    /// RST on close: the kernel discards the unsent data of a client that reads nothing instead
    /// of retrying it for minutes.
    fn abort(&self) {
        let _ = self.set_zero_linger();
    }
}

#[derive(Debug, Default)]
struct Switch {
    killed: AtomicBool,
    read: AtomicWaker,
    write: AtomicWaker,
}

impl Switch {
    /// Registers the polling task for the wake-up of [`kill`](Self::kill) before looking, so a
    /// kill between the two is not missed.
    fn killed(&self, waker: &AtomicWaker, cx: &Context<'_>) -> bool {
        waker.register(cx.waker());
        self.killed.load(Ordering::Acquire)
    }

    fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.read.wake();
        self.write.wake();
    }
}

#[derive(Debug)]
struct Entry {
    switch: Arc<Switch>,
    /// The engine.io session this connection carries as an upgraded WebSocket.
    upgraded: Option<String>,
}

#[derive(Debug, Default)]
struct Table {
    conns: HashMap<SocketAddr, Entry>,
    upgraded: HashMap<String, SocketAddr>,
}

/// The open connections of one listener.
#[derive(Debug, Default)]
pub struct Connections {
    table: Mutex<Table>,
}

/// The connection that carries a WebSocket session: the one it upgraded on, else (a direct
/// WebSocket) the one of its handshake request.
pub fn carrier(upgraded_on: Option<SocketAddr>, handshake: Option<SocketAddr>) -> Option<SocketAddr> {
    upgraded_on.or(handshake)
}

impl Connections {
    /// An empty table.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `listener` with every accepted connection tracked here. The tap is a no-op: it makes axum
    /// hand requests the listener's address type, `ConnectInfo<SocketAddr>`, as for a plain
    /// `TcpListener`.
    pub fn listen(self: &Arc<Self>, listener: TcpListener) -> TapIo<Tracked, fn(&mut Conn<TcpStream>)> {
        let tap: fn(&mut Conn<TcpStream>) = |_| {};
        Tracked { inner: listener, conns: self.clone() }.tap_io(tap)
    }

    /// Tracks `io`, a connection from `peer`.
    pub fn track<T>(self: &Arc<Self>, io: T, peer: SocketAddr) -> Conn<T> {
        let switch = Arc::new(Switch::default());
        self.lock().conns.insert(peer, Entry { switch: switch.clone(), upgraded: None });
        Conn { io, switch, peer, conns: self.clone(), aborted: false }
    }

    /// Records that the connection from `peer` now carries session `sid` as a WebSocket.
    pub fn upgraded(&self, sid: &str, peer: SocketAddr) {
        let mut t = self.lock();
        let Some(entry) = t.conns.get_mut(&peer) else { return };
        entry.upgraded = Some(sid.to_owned());
        t.upgraded.insert(sid.to_owned(), peer);
    }

    /// Kills the connection carrying WebSocket session `sid` (see [`carrier`]); false when none
    /// is open.
    pub fn kill(&self, sid: &str, handshake: Option<SocketAddr>) -> bool {
        let t = self.lock();
        let Some(peer) = carrier(t.upgraded.get(sid).copied(), handshake) else { return false };
        let Some(entry) = t.conns.get(&peer) else { return false };
        entry.switch.kill();
        true
    }

    /// Open connections (what the tests check the table against).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().conns.len()
    }

    fn forget(&self, peer: SocketAddr, switch: &Arc<Switch>) {
        let mut t = self.lock();
        // The same address and port may already belong to a newer connection.
        if !t.conns.get(&peer).is_some_and(|e| Arc::ptr_eq(&e.switch, switch)) {
            return;
        }
        if let Some(sid) = t.conns.remove(&peer).and_then(|e| e.upgraded) {
            if t.upgraded.get(&sid) == Some(&peer) {
                t.upgraded.remove(&sid);
            }
        }
    }
}

/// A `TcpListener` whose connections are tracked in [`Connections`].
#[derive(Debug)]
pub struct Tracked {
    inner: TcpListener,
    conns: Arc<Connections>,
}

impl Listener for Tracked {
    type Io = Conn<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // axum's own accept loop for TcpListener: it logs and retries accept errors.
        let (io, peer) = Listener::accept(&mut self.inner).await;
        (self.conns.track(io, peer), peer)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// One tracked connection: `T` until it is killed, then an error on every read and write.
#[derive(Debug)]
pub struct Conn<T> {
    io: T,
    switch: Arc<Switch>,
    peer: SocketAddr,
    conns: Arc<Connections>,
    aborted: bool,
}

impl<T> Drop for Conn<T> {
    fn drop(&mut self) {
        self.conns.forget(self.peer, &self.switch);
    }
}

impl<T: Abort> Conn<T> {
    /// The error every read or write gets once the connection is killed; the first one also
    /// makes the close abortive.
    fn killed(&mut self, side: Side, cx: &Context<'_>) -> Option<io::Error> {
        let waker = match side {
            Side::Read => &self.switch.read,
            Side::Write => &self.switch.write,
        };
        if !self.switch.killed(waker, cx) {
            return None;
        }
        if !self.aborted {
            self.io.abort();
            self.aborted = true;
        }
        Some(io::Error::new(io::ErrorKind::ConnectionAborted, "connection dropped by the server"))
    }
}

/// Which half of the connection a task is polling: each has its own waker to wake on a kill.
#[derive(Clone, Copy)]
enum Side {
    Read,
    Write,
}

impl<T: AsyncRead + Abort + Unpin> AsyncRead for Conn<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.killed(Side::Read, cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Abort + Unpin> AsyncWrite for Conn<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.killed(Side::Write, cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.killed(Side::Write, cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.killed(Side::Write, cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Nothing more to say to a killed peer: the drop that follows closes with RST.
        if this.switch.killed.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};

    impl Abort for DuplexStream {
        fn abort(&self) {}
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    /// A tracked in-memory connection from `peer` with a 16-byte pipe, and its client end.
    fn tracked(conns: &Arc<Connections>, peer: SocketAddr) -> (Conn<DuplexStream>, DuplexStream) {
        let (server, client) = tokio::io::duplex(16);
        (conns.track(server, peer), client)
    }

    #[test]
    fn the_upgraded_connection_wins_over_the_handshake_one() {
        assert_eq!(carrier(Some(addr(2)), Some(addr(1))), Some(addr(2)));
        assert_eq!(carrier(None, Some(addr(1))), Some(addr(1)));
        assert_eq!(carrier(None, None), None);
    }

    #[tokio::test]
    async fn a_kill_wakes_a_blocked_reader_and_writer_and_fails_them() {
        let conns = Connections::new();
        let (server, _client) = tracked(&conns, addr(1));
        let (mut rd, mut wr) = tokio::io::split(server);
        // The writer blocks once the 16-byte pipe is full, the reader has nothing to read.
        let writer = tokio::spawn(async move { wr.write_all(&[0u8; 64]).await });
        let reader = tokio::spawn(async move { rd.read(&mut [0u8; 8]).await });
        tokio::task::yield_now().await;
        assert!(!writer.is_finished() && !reader.is_finished());
        assert!(conns.kill("sid", Some(addr(1))));
        let (w, r) = (writer.await.unwrap(), reader.await.unwrap());
        assert_eq!(w.unwrap_err().kind(), io::ErrorKind::ConnectionAborted);
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::ConnectionAborted);
    }

    #[tokio::test]
    async fn upgraded_sessions_are_found_and_dropped_connections_forgotten() {
        let conns = Connections::new();
        let (polling, _a) = tracked(&conns, addr(1));
        let (mut ws, _b) = tracked(&conns, addr(2));
        conns.upgraded("s1", addr(2));
        // The handshake was on the polling connection; the kill reaches the WebSocket.
        assert!(conns.kill("s1", Some(addr(1))));
        assert!(ws.write_all(b"x").await.is_err());
        assert!(!polling.switch.killed.load(Ordering::Acquire));
        drop(ws);
        assert_eq!(conns.len(), 1);
        assert!(!conns.kill("s1", None));
        drop(polling);
        assert_eq!(conns.len(), 0);
        assert!(!conns.kill("s2", Some(addr(1))));
    }

    #[tokio::test]
    async fn a_reused_address_keeps_the_newer_connection() {
        let conns = Connections::new();
        let (old, _a) = tracked(&conns, addr(1));
        let (new, _b) = tracked(&conns, addr(1));
        drop(old);
        assert_eq!(conns.len(), 1);
        assert!(conns.kill("s", Some(addr(1))));
        assert!(new.switch.killed.load(Ordering::Acquire));
    }
}
