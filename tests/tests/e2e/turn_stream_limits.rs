//! The limits that keep stream clients from holding the relay's resources: a TLS client that
//! never sends its ClientHello, a TCP client that trickles a STUN header a byte a second, and a
//! connection that does nothing are cut off after their timeouts (set low in a generated config),
//! while a well-behaved client on the same server completes its requests meanwhile; a client with
//! an allocation is not cut off for idling; and `--max-connections-per-ip` closes the connection
//! over the cap at once.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use e2e::peers::{self, wait_closed};
use e2e::turn_wire::{self, TurnClient, Wire};
use e2e::{stun, ServerBuilder};

/// The timeouts the generated config sets, in seconds.
const HANDSHAKE_SECS: u64 = 2;
const IDLE_SECS: u64 = 3;

/// Allowed lateness of a cut-off: timers, scheduling on 2 busy cores.
const SLACK: Duration = Duration::from_millis(2500);

fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

/// Sends a Binding request one byte per second; returns when the relay closed the connection
/// (counted from the first byte), or `None` if all 20 bytes went out and it is still open.
fn trickle(mut stream: TcpStream) -> Option<Duration> {
    let request = stun::binding_request(stun::transaction_id());
    let start = Instant::now();
    for (i, byte) in request.iter().enumerate() {
        if stream.write_all(&[*byte]).is_err() {
            return Some(start.elapsed());
        }
        // Read (and watch for the close) until the next byte is due.
        let next = start + Duration::from_secs(u64::try_from(i).unwrap() + 1);
        if wait_closed(&mut stream, next.saturating_duration_since(Instant::now())).is_some() {
            return Some(start.elapsed());
        }
    }
    None
}

fn within(got: Option<Duration>, limit: Duration) -> bool {
    got.is_some_and(|d| d >= limit.saturating_sub(Duration::from_millis(500)) && d <= limit + SLACK)
}

#[test]
fn stalled_stream_clients_are_cut_off_while_others_are_served() {
    let dir = e2e::LogDir::new("stream_limits-files");
    let (cert, key) = peers::named_cert(dir.path(), "relay", "turn.test", &["IP:127.0.0.1"]);
    let config = peers::write_file(
        dir.path(),
        "limits.toml",
        &format!("[turn]\nstream_handshake_timeout_secs = {HANDSHAKE_SECS}\nstream_idle_timeout_secs = {IDLE_SECS}\n"),
    );
    let server = ServerBuilder::new("stream_limits")
        .tls(cert, key)
        .arg("--config")
        .arg(config.display().to_string())
        .arg("-v")
        .start();
    let handshake = Duration::from_secs(HANDSHAKE_SECS);
    let idle = Duration::from_secs(IDLE_SECS);

    // Three misbehaving clients at once, each watched on its own thread.
    let mut silent_tls = connect(server.tls_addr());
    let tls_watch = std::thread::spawn(move || wait_closed(&mut silent_tls, Duration::from_secs(15)));
    let trickler = connect(server.addr());
    let trickle_watch = std::thread::spawn(move || trickle(trickler));
    let mut idler = connect(server.addr());
    let idle_watch = std::thread::spawn(move || wait_closed(&mut idler, Duration::from_secs(15)));

    // Meanwhile a normal TCP client allocates, and keeps its allocation past the idle timeout.
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let (u, p) = server.credential("normal");
    let mut normal = TurnClient::new(Wire::tcp(server.addr()).unwrap(), &u, &p);
    let binding = normal.binding().unwrap_or_else(|e| server.fail(&format!("Binding over TCP meanwhile: {e}")));
    server.check(binding.is_success(), || format!("Binding over TCP meanwhile: {}", binding.describe()));
    let alloc = normal.allocate(turn_wire::UDP).unwrap_or_else(|e| server.fail(&format!("Allocate meanwhile: {e}")));
    let served_in = started.elapsed();
    server.check(served_in < Duration::from_secs(2), || {
        format!("the normal client took {served_in:?} to allocate while stalled clients were connected")
    });

    let tls_closed = tls_watch.join().unwrap();
    let trickle_closed = trickle_watch.join().unwrap();
    let idle_closed = idle_watch.join().unwrap();
    eprintln!(
        "silent TLS closed after {tls_closed:?} (limit {handshake:?}), trickling TCP after {trickle_closed:?} (limit \
         {handshake:?}), idle TCP after {idle_closed:?} (limit {idle:?}); normal client served in {served_in:?}"
    );
    server.check(within(tls_closed, handshake), || {
        format!("a TLS client that never sent a ClientHello was closed after {tls_closed:?}, expected {handshake:?} + {SLACK:?}")
    });
    server.check(within(trickle_closed, handshake), || {
        format!("a TCP client sending a byte a second was closed after {trickle_closed:?}, expected {handshake:?} + {SLACK:?}")
    });
    server.check(within(idle_closed, idle), || {
        format!("a TCP client that sent nothing was closed after {idle_closed:?}, expected {idle:?} + {SLACK:?}")
    });

    // A TLS ClientHello on the plain port is not STUN (no magic cookie): closed at once. An HTTP
    // request cannot be told from ChannelData by its first bytes ("GE" is channel 0x4745, "T " a
    // length of 21536), so it waits for the rest of that frame and is closed at the frame timeout.
    let mut hello = connect(server.addr());
    hello.write_all(&[0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03]).unwrap();
    let mut http = connect(server.addr());
    http.write_all(b"GET / HTTP/1.1\r\nHost: turn.test\r\n\r\n").unwrap();
    let hello_closed = wait_closed(&mut hello, Duration::from_secs(3));
    server.check(hello_closed.is_some_and(|d| d < Duration::from_secs(1)), || {
        format!("a TLS ClientHello on the TURN TCP port: closed after {hello_closed:?}, expected at once")
    });
    let http_closed = wait_closed(&mut http, Duration::from_secs(6));
    server.check(http_closed.is_some_and(|d| d <= handshake + SLACK), || {
        format!("an HTTP request on the TURN TCP port: closed after {http_closed:?}, expected within {handshake:?} + {SLACK:?}")
    });

    // Past the idle timeout since it last sent anything, the client with an allocation is still
    // served on the same connection.
    std::thread::sleep((started + idle + Duration::from_secs(1)).saturating_duration_since(Instant::now()));
    let waited = started.elapsed();
    let refresh = normal.refresh(600).unwrap_or_else(|e| {
        server.fail(&format!("Refresh {waited:?} after allocating (idle timeout {idle:?}) failed: {e}"))
    });
    server.check(refresh.is_success(), || format!("Refresh after the idle timeout: {}", refresh.describe()));
    eprintln!("allocation {} still refreshed after {waited:?}", alloc.relayed);
}

/// Opens a TCP connection and proves it is admitted with a Binding over it.
fn admitted(addr: SocketAddr) -> Result<TurnClient, String> {
    let mut c = TurnClient::new(Wire::tcp(addr).map_err(|e| e.to_string())?, "-", "-");
    let reply = c.binding()?;
    if reply.is_success() {
        Ok(c)
    } else {
        Err(reply.describe())
    }
}

#[test]
fn connections_over_the_per_source_cap_are_closed_at_once() {
    let dir = e2e::LogDir::new("per_source_cap-files");
    let (cert, key) = peers::named_cert(dir.path(), "relay", "turn.test", &["IP:127.0.0.1"]);
    let config = peers::write_file(dir.path(), "limits.toml", "[turn]\nstream_handshake_timeout_secs = 1\n");
    let server = ServerBuilder::new("per_source_cap")
        .tls(cert, key)
        .arg("--config")
        .arg(config.display().to_string())
        .arg("--max-connections-per-ip")
        .arg("3")
        .arg("-v")
        .start();
    let mut held: Vec<TurnClient> = (0..3)
        .map(|i| admitted(server.addr()).unwrap_or_else(|e| server.fail(&format!("connection {i} under the cap: {e}"))))
        .collect();

    let mut fourth = connect(server.addr());
    let closed = wait_closed(&mut fourth, Duration::from_secs(3));
    server.check(closed.is_some_and(|d| d < Duration::from_secs(1)), || {
        format!("the 4th connection from 127.0.0.1 with --max-connections-per-ip 3 was closed after {closed:?}, expected at once")
    });
    eprintln!("4th connection closed after {closed:?}");

    // UDP is not capped, and the held connections still work.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tid = stun::transaction_id();
    let reply = stun::transact(
        &udp,
        server.addr(),
        &stun::binding_request(tid),
        Duration::from_millis(200),
        Duration::from_secs(3),
    );
    server.check(reply.is_some(), || "UDP Binding while the stream cap is reached got no answer".to_owned());
    for (i, c) in held.iter_mut().enumerate() {
        let r = c.binding();
        server.check(r.as_ref().is_ok_and(|r| r.is_success()), || format!("held connection {i} after the cap: {r:?}"));
    }

    // Closing one frees its slot.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(3);
    let again = loop {
        match admitted(server.addr()) {
            Ok(c) => break Ok(c),
            Err(e) if Instant::now() >= deadline => break Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    server.check(again.is_ok(), || format!("no connection admitted within 3 s after one of 3 closed: {again:?}"));

    // Every way a connection ends gives its slot back: a TLS handshake that times out, bytes
    // that are not TURN, the client closing. Afterwards three connections fit again.
    drop(again);
    drop(held);
    // The relay must first see those closes; until then new connections are still refused.
    std::thread::sleep(Duration::from_millis(300));
    let tls_addr = server.tls_addr();
    let silent: Vec<_> = (0..2)
        .map(|_| {
            let mut s = connect(tls_addr);
            std::thread::spawn(move || wait_closed(&mut s, Duration::from_secs(5)))
        })
        .collect();
    let mut garbage = connect(server.addr());
    garbage.write_all(&[0xff; 32]).unwrap();
    let garbage_closed = wait_closed(&mut garbage, Duration::from_secs(3));
    for (i, watch) in silent.into_iter().enumerate() {
        // Admitted (not refused at once), then cut at the 1 s handshake timeout.
        let closed = watch.join().unwrap();
        server.check(within(closed, Duration::from_secs(1)), || {
            format!("silent TLS connection {i} under the cap was closed after {closed:?}, expected 1 s + {SLACK:?}")
        });
    }
    server.check(garbage_closed.is_some(), || "a connection sending 0xff bytes was not closed".to_owned());
    std::thread::sleep(Duration::from_millis(200));
    let refill: Vec<Result<TurnClient, String>> = (0..3).map(|_| admitted(server.addr())).collect();
    server.check(refill.iter().all(Result::is_ok), || {
        format!("after every connection closed, 3 new ones must fit under the cap of 3: {refill:?}")
    });
}
