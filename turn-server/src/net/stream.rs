//! TURN over TCP and TLS: one reader task and one writer task per connection, framing with
//! `proto::framing`. Every wait is bounded: a TLS handshake that never finishes, a frame that
//! trickles in a byte at a time, and a connection with nothing to do are all cut off, and a client
//! that stops reading loses data (as UDP would) rather than growing server memory.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::proxy;
use super::worker::Shared;
use crate::proto::framing::{self, MAX_FRAME};
use crate::proto::{ClientTransport, FiveTuple};

/// Timeouts and caps for stream clients.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    pub tls_handshake: Duration,
    /// A frame whose first byte has arrived must be complete within this.
    pub frame: Duration,
    /// A connection without an allocation is closed after this long without a complete frame.
    pub idle: Duration,
    /// Connections one source address may hold at once.
    pub per_source: u32,
    /// Bytes queued for a client that is not reading before further data is dropped.
    pub max_queued: usize,
    /// How long one write may block before the connection is given up.
    pub write: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            tls_handshake: Duration::from_secs(10),
            frame: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            per_source: 64,
            max_queued: 256 * 1024,
            write: Duration::from_secs(30),
        }
    }
}

/// The sending half of a connection as the rest of the worker sees it.
pub struct StreamConn {
    queued: RefCell<Vec<u8>>,
    wake_writer: Notify,
    /// Signalled after each write, for senders waiting on a full queue (spliced TCP relays).
    drained: Notify,
    closed: Cell<bool>,
    close_reader: Notify,
    dropped: Cell<u64>,
    /// RFC 6062: set by a ConnectionBind; the reader then stops framing and pipes raw bytes.
    splice: RefCell<Option<(u32, TcpStream)>>,
}

impl StreamConn {
    fn new() -> Self {
        StreamConn {
            queued: RefCell::new(Vec::new()),
            wake_writer: Notify::new(),
            drained: Notify::new(),
            closed: Cell::new(false),
            close_reader: Notify::new(),
            dropped: Cell::new(0),
            splice: RefCell::new(None),
        }
    }

    /// Queues a frame; over the cap it is dropped, whole, so framing stays intact.
    pub fn send(&self, data: &[u8], max_queued: usize) {
        if self.closed.get() {
            return;
        }
        let mut q = self.queued.borrow_mut();
        if q.len() + data.len() > max_queued {
            self.dropped.set(self.dropped.get() + 1);
            return;
        }
        q.extend_from_slice(data);
        self.wake_writer.notify_one();
    }

    /// Queues bytes of a spliced TCP relay, waiting for room: dropping would corrupt the stream.
    async fn send_stream(&self, data: &[u8], max_queued: usize) -> bool {
        loop {
            if self.closed.get() {
                return false;
            }
            if self.queued.borrow().len() < max_queued {
                self.queued.borrow_mut().extend_from_slice(data);
                self.wake_writer.notify_one();
                return true;
            }
            self.drained.notified().await;
        }
    }

    pub(super) fn splice_to(&self, id: u32, peer: TcpStream) {
        *self.splice.borrow_mut() = Some((id, peer));
    }

    pub(super) fn close(&self) {
        self.closed.set(true);
        self.wake_writer.notify_one();
        self.close_reader.notify_one();
    }
}

/// Accepts connections on one TCP listener; `tls` makes it a `turns:` listener.
pub async fn accept_loop(shared: Rc<Shared>, listener: TcpListener, tls: bool) {
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "listener has no local address");
            return;
        }
    };
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(%local, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if shared.proxy.expected_on(tls) {
            // Checked before a byte is read: a header from anyone else could name any client.
            if !shared.proxy.trusts(client) {
                tracing::debug!(%client, %local, "refused connection: not from a PROXY protocol source");
                continue;
            }
            tokio::task::spawn_local(serve_proxied(shared.clone(), stream, client, local, tls));
            continue;
        }
        if !shared.admit_source(client.ip()) {
            tracing::debug!(%client, %local, "refused connection: too many from this address");
            continue;
        }
        tokio::task::spawn_local(serve(shared.clone(), stream, client, local, tls));
    }
}

/// A connection through a proxy: the header names the client, and the per-source cap counts that
/// client rather than the proxy (which would otherwise be one source for everybody).
async fn serve_proxied(shared: Rc<Shared>, mut stream: TcpStream, proxy: SocketAddr, local: SocketAddr, tls: bool) {
    let client = match proxy::read_header(&mut stream, shared.stream_limits.tls_handshake).await {
        Ok(Some(addrs)) => SocketAddr::new(addrs.src.ip().to_canonical(), addrs.src.port()),
        Ok(None) => proxy,
        Err(why) => {
            tracing::debug!(%proxy, %local, why, "refused connection: no valid PROXY protocol header");
            return;
        }
    };
    if !shared.admit_source(client.ip()) {
        tracing::debug!(%client, %proxy, %local, "refused connection: too many from this address");
        return;
    }
    serve(shared, stream, client, local, tls).await;
}

async fn serve(shared: Rc<Shared>, stream: TcpStream, client: SocketAddr, local: SocketAddr, tls: bool) {
    let limits = shared.stream_limits;
    if tls {
        let Some(acceptor) = shared.tls_acceptor() else {
            shared.release_source(client.ip());
            return;
        };
        match tokio::time::timeout(limits.tls_handshake, acceptor.accept(stream)).await {
            Ok(Ok(tls_stream)) => {
                let tuple = FiveTuple { client, server: local, transport: ClientTransport::Tls };
                run_connection(&shared, tls_stream, tuple).await;
            }
            Ok(Err(e)) => tracing::debug!(%client, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%client, "TLS handshake timed out"),
        }
    } else {
        let tuple = FiveTuple { client, server: local, transport: ClientTransport::Tcp };
        run_connection(&shared, stream, tuple).await;
    }
    shared.release_source(client.ip());
}

async fn run_connection<S>(shared: &Rc<Shared>, stream: S, tuple: FiveTuple)
where
    S: AsyncRead + AsyncWrite + 'static,
{
    let limits = shared.stream_limits;
    // Only a proxy's header can repeat a live client address and port; the first holder keeps it.
    if shared.streams.borrow().contains_key(&tuple) {
        tracing::debug!(client = %tuple.client, "refused connection: this client address is already connected");
        return;
    }
    let (reader, writer) = tokio::io::split(stream);
    let conn = Rc::new(StreamConn::new());
    shared.streams.borrow_mut().insert(tuple, conn.clone());
    let writer_task = tokio::task::spawn_local(write_loop(writer, conn.clone(), limits.write));
    let why = read_loop(shared, reader, &conn, tuple, limits).await;
    tracing::debug!(client = %tuple.client, transport = tuple.transport.as_str(), why, "connection closed");
    conn.close();
    shared.streams.borrow_mut().remove(&tuple);
    shared.on_connection_closed(tuple);
    // Let queued replies (a final error, say) go out, within the write timeout.
    let _ = writer_task.await;
    if conn.dropped.get() > 0 {
        tracing::debug!(client = %tuple.client, dropped = conn.dropped.get(), "frames dropped for a slow reader");
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    shared: &Rc<Shared>,
    mut reader: R,
    conn: &StreamConn,
    tuple: FiveTuple,
    limits: StreamLimits,
) -> &'static str {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut consumed = 0;
    let mut last_frame = Instant::now();
    let mut partial_since: Option<Instant> = None;
    loop {
        let deadline = match partial_since {
            Some(t) => t + limits.frame,
            None if shared.has_allocation(&tuple) => last_frame + Duration::from_secs(24 * 3600),
            None => last_frame + limits.idle,
        };
        if buf.capacity() - buf.len() < 2048 {
            buf.reserve(4096);
        }
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline.into(), reader.read_buf(&mut buf)) => r,
            () = conn.close_reader.notified() => return "writer failed",
        };
        match read {
            Err(_) if partial_since.is_some() => return "frame not completed in time",
            Err(_) => return "idle",
            Ok(Ok(0)) => return "closed by client",
            Ok(Err(_)) => return "read error",
            Ok(Ok(_)) => {}
        }
        let mut completed = false;
        loop {
            match framing::frame_len(&buf[consumed..]) {
                Ok(Some(len)) => {
                    shared.on_client_message(tuple, &buf[consumed..consumed + len]);
                    consumed += len;
                    completed = true;
                    let splice = conn.splice.borrow_mut().take();
                    if let Some((id, peer)) = splice {
                        let why = splice_raw(&mut reader, conn, peer, &buf[consumed..], limits).await;
                        shared.spliced.borrow_mut().remove(&id);
                        let mut server = shared.dgram.server.borrow_mut();
                        server.tcp_connection_closed(id);
                        shared.settle(&mut server, super::clock::now());
                        return why;
                    }
                }
                Ok(None) => break,
                Err(_) => return "not STUN/TURN",
            }
        }
        let now = Instant::now();
        if completed {
            last_frame = now;
            partial_since = None;
        }
        // Compact once the parsed prefix dominates, so a steady stream does not memmove every frame.
        if consumed == buf.len() {
            buf.clear();
            consumed = 0;
        } else if consumed > buf.len() / 2 {
            buf.drain(..consumed);
            consumed = 0;
        }
        partial_since = if buf.len() > consumed { partial_since.or(Some(now)) } else { None };
        if buf.len() - consumed > MAX_FRAME {
            return "frame too large";
        }
    }
}

/// RFC 6062 data connection after ConnectionBind: bytes flow raw between client and peer until
/// either side closes. `pending` is what the client sent right after its ConnectionBind.
async fn splice_raw<R: AsyncRead + Unpin>(
    reader: &mut R,
    conn: &StreamConn,
    peer: TcpStream,
    pending: &[u8],
    limits: StreamLimits,
) -> &'static str {
    let (mut peer_rd, mut peer_wr) = peer.into_split();
    let to_peer = async {
        if peer_wr.write_all(pending).await.is_err() {
            return "peer write failed";
        }
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => return "client closed data connection",
                Ok(n) => {
                    if peer_wr.write_all(&chunk[..n]).await.is_err() {
                        return "peer write failed";
                    }
                }
            }
        }
    };
    let from_peer = async {
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            match peer_rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return "peer closed",
                Ok(n) => {
                    if !conn.send_stream(&chunk[..n], limits.max_queued).await {
                        return "client connection closed";
                    }
                }
            }
        }
    };
    tokio::select! {
        why = to_peer => why,
        why = from_peer => why,
        () = conn.close_reader.notified() => "closed by the relay",
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut writer: W, conn: Rc<StreamConn>, timeout: Duration) {
    loop {
        let data = std::mem::take(&mut *conn.queued.borrow_mut());
        if data.is_empty() {
            if conn.closed.get() {
                break;
            }
            conn.wake_writer.notified().await;
            continue;
        }
        match tokio::time::timeout(timeout, writer.write_all(&data)).await {
            Ok(Ok(())) => conn.drained.notify_waiters(),
            _ => {
                conn.close();
                return;
            }
        }
    }
    let _ = tokio::time::timeout(timeout, writer.shutdown()).await;
}
