//! TURN over TCP and TLS, and RFC 6062 TCP allocations, with clients nobody here wrote plus a
//! wire-level client for what none of them does:
//!
//! - coturn's `turnutils_uclient -T`: RFC 6062 client-to-client TCP relays, zero loss (the plain
//!   `-t` and `-t -S` stream runs are in `coturn_tools.rs`);
//! - aioice (PyPI) over TCP and over TLS (`tests/clients/turn_aioice.py`): Allocate,
//!   CreatePermission, ChannelData and a Send indication to a UDP echo peer, echoes back, delete;
//! - RFC 6062 spoken here: Connect to a TCP echo peer and ConnectionBind, raw bytes echoed byte
//!   for byte; a peer connecting in (ConnectionAttempt); 403, 447 and 400 refusals.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use e2e::peers::{self, TcpEcho, UdpEcho};
use e2e::process;
use e2e::turn_wire::{self, Incoming, TurnClient, Wire};
use e2e::{require_tool, tail, Server, ServerBuilder};
use serde_json::Value;
use turn_server::proto::stun::{attr, Method};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Bound on one uclient run (~5 s needed for the load below).
const UCLIENT_DEADLINE: Duration = Duration::from_secs(60);

/// Bound on one aioice script run; the script bounds itself to 30 s.
const AIOICE_DEADLINE: Duration = Duration::from_secs(45);

/// The number after `key=` on the last line containing `key=`.
fn last_number(out: &str, key: &str) -> Option<u64> {
    let pat = format!("{key}=");
    out.lines()
        .filter_map(|l| {
            let rest = &l[l.find(&pat)? + pat.len()..];
            rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
        })
        .next_back()
}

fn lost_packets(out: &str) -> Option<u64> {
    let line = out.lines().rfind(|l| l.contains("Total lost packets "))?;
    let after = &line[line.find("Total lost packets ")? + "Total lost packets ".len()..];
    after.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
}

/// `turnutils_uclient -T` (with `-S`: control and data connections over TLS): pairs of clients
/// with RFC 6062 TCP allocations send to each other's relayed address.
fn uclient_rfc6062(name: &str, tls: bool) {
    let _turn = e2e::exclusive_load();
    let mut builder = ServerBuilder::new(name);
    let cert_dir = e2e::LogDir::new(&format!("{name}-cert"));
    if tls {
        let (cert, key) = peers::named_cert(cert_dir.path(), "relay", "turn.test", &["IP:127.0.0.1"]);
        builder = builder.tls(cert, key);
    }
    let server = builder.start();
    let uclient = require_tool("turnutils_uclient");
    let (clients, messages) = (2u64, 200u64);
    let port = if tls { server.tls_addr().port() } else { server.addr().port() };
    let mut args: Vec<String> = vec!["-v".into(), "-T".into()];
    if tls {
        args.push("-S".into());
    }
    args.extend(
        [
            "-W",
            server.secret(),
            "-u",
            "e2e-rfc6062",
            "-m",
            &clients.to_string(),
            "-n",
            &messages.to_string(),
            "-l",
            "172",
            "-z",
            "5",
            "-p",
            &port.to_string(),
            "127.0.0.1",
        ]
        .map(str::to_owned),
    );
    let run = process::run("turnutils_uclient", &uclient, &args, server.log_dir(), UCLIENT_DEADLINE);
    let out = format!("{}\n{}", run.stdout, run.stderr);
    let describe = || {
        format!(
            "uclient {}: {} after {:.1?}; output tail:\n{}",
            args.join(" "),
            run.describe_status(),
            run.elapsed,
            tail(&out, 25)
        )
    };
    server.check(run.success(), describe);
    let (sent, received, lost) =
        (last_number(&out, "tot_send_msgs"), last_number(&out, "tot_recv_msgs"), lost_packets(&out));
    let expected = clients * messages;
    server.check(sent == Some(expected) && received == Some(expected) && lost == Some(0), || {
        format!("expected {expected} sent and received, 0 lost; got {sent:?}/{received:?}/{lost:?}. {}", describe())
    });
    // With -v uclient logs each RFC 6062 step: proof that the relay paths were TCP allocations.
    for step in ["tcp connect sent", "connection bind sent", "connect bind response received"] {
        server.check(out.contains(step), || format!("uclient output lacks {step:?}. {}", describe()));
    }
    eprintln!("{name}: {expected} messages, 0 lost, in {:.1?}", run.elapsed);
}

#[test]
fn uclient_rfc6062_tcp_relays_client_to_client_lose_nothing() {
    uclient_rfc6062("uclient_rfc6062", false);
}

#[test]
fn uclient_rfc6062_over_tls_loses_nothing() {
    uclient_rfc6062("uclient_rfc6062_tls", true);
}

/// Runs the aioice script and returns its JSON result, failing with the server's log if the
/// script did not report success.
fn run_aioice(
    server: &Server,
    target: SocketAddr,
    transport: &str,
    extra: &[String],
    peers: (&UdpEcho, &UdpEcho),
) -> Value {
    let python = peers::aioice_python();
    let (user, pass) = server.credential("aioice");
    let mut args: Vec<String> = vec![
        e2e::clients_dir().join("turn_aioice.py").display().to_string(),
        "--server".into(),
        target.to_string(),
        "--transport".into(),
        transport.into(),
        "--username".into(),
        user,
        "--password".into(),
        pass,
        "--peer".into(),
        peers.0.addr().to_string(),
        "--peer2".into(),
        peers.1.addr().to_string(),
        "--count".into(),
        "20".into(),
    ];
    args.extend_from_slice(extra);
    let run = process::run(&format!("aioice-{transport}"), &python, &args, server.log_dir(), AIOICE_DEADLINE);
    let line = run.stdout.lines().rfind(|l| l.starts_with('{')).unwrap_or_default().to_owned();
    let result: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
    server.check(run.success() && result["ok"] == Value::Bool(true), || {
        format!(
            "aioice over {transport} to {target}: {} after {:.1?}\nresult: {line}\nstderr tail:\n{}",
            run.describe_status(),
            run.elapsed,
            tail(&run.stderr, 20)
        )
    });
    eprintln!("aioice over {transport}: {line} in {:.1?}", run.elapsed);
    result
}

/// Checks what both aioice runs must show: 20 channel echoes, the Send-indication echo, the
/// relayed address on 127.0.0.1 in the relay range, and that address as the peers' source.
fn check_aioice_result(server: &Server, result: &Value, peers: (&UdpEcho, &UdpEcho)) {
    let relayed: Option<SocketAddr> = result["relayed"].as_str().and_then(|s| s.parse().ok());
    let in_range = relayed.is_some_and(|r| {
        r.ip() == LOCALHOST && (server.ports().relay_min()..=server.ports().relay_max()).contains(&r.port())
    });
    server.check(in_range, || format!("relayed address {relayed:?} is not 127.0.0.1 in the relay range: {result}"));
    server
        .check(result["channel_echoes"] == 20 && result["channels"] == 1 && result["indication_echo"] == true, || {
            format!("expected 20 echoes over one channel and the Send-indication echo: {result}")
        });
    server.check(result["permission"] == "RESPONSE" && result["deleted"] == true, || {
        format!("CreatePermission must succeed and the allocation be deleted: {result}")
    });
    let relayed = relayed.unwrap();
    for peer in [peers.0, peers.1] {
        server.check(peer.sources() == vec![relayed], || {
            format!(
                "peer {} saw sources {:?}, expected only the relayed address {relayed}",
                peer.addr(),
                peer.sources()
            )
        });
    }
}

#[test]
fn aioice_over_tcp_relays_to_a_udp_peer() {
    let server = ServerBuilder::new("aioice_tcp").start();
    let (a, b) = (
        UdpEcho::start(SocketAddr::new(LOCALHOST, server.ports().peer_port(0))),
        UdpEcho::start(SocketAddr::new(LOCALHOST, server.ports().peer_port(1))),
    );
    let result = run_aioice(&server, server.addr(), "tcp", &[], (&a, &b));
    check_aioice_result(&server, &result, (&a, &b));
    server.check(a.datagrams() == 20 && b.datagrams() == 1, || {
        format!("peers echoed {} and {} datagrams, expected 20 and 1", a.datagrams(), b.datagrams())
    });
}

#[test]
fn aioice_over_tls_relays_to_a_udp_peer() {
    let dir = e2e::LogDir::new("aioice_tls-cert");
    let (cert, key) = peers::named_cert(dir.path(), "relay", "turn.test", &["IP:127.0.0.1"]);
    let server = ServerBuilder::new("aioice_tls").tls(cert.clone(), key).start();
    let (a, b) = (
        UdpEcho::start(SocketAddr::new(LOCALHOST, server.ports().peer_port(0))),
        UdpEcho::start(SocketAddr::new(LOCALHOST, server.ports().peer_port(1))),
    );
    // The certificate is verified against itself as the CA, host name 127.0.0.1 (IP SAN).
    let extra = ["--cafile".to_owned(), cert.display().to_string()];
    let result = run_aioice(&server, server.tls_addr(), "tls", &extra, (&a, &b));
    check_aioice_result(&server, &result, (&a, &b));
    server.check(result["tls_peer_subject"]["commonName"] == "turn.test", || {
        format!("the TLS peer is not the relay's certificate: {result}")
    });
}

/// A TCP connection to `to` from address `from` (port chosen by the kernel).
fn socket2_connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(to), socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
    Ok(socket.into())
}

/// A control connection with a TCP allocation.
fn tcp_allocation(server: &Server, user: &str) -> (TurnClient, turn_wire::Allocation) {
    let (u, p) = server.credential(user);
    let mut control = TurnClient::new(Wire::tcp(server.addr()).unwrap(), &u, &p);
    let alloc = control.allocate(turn_wire::TCP).unwrap_or_else(|e| server.fail(&format!("TCP Allocate: {e}")));
    let in_range = alloc.relayed.ip() == LOCALHOST
        && (server.ports().relay_min()..=server.ports().relay_max()).contains(&alloc.relayed.port());
    server.check(in_range, || format!("TCP allocation's relayed address {} not in the relay range", alloc.relayed));
    (control, alloc)
}

/// A data connection bound to `id`, as a raw stream (plus any bytes already read past the
/// ConnectionBind response).
fn bind_data_connection(server: &Server, control: &TurnClient, user: &str, id: u32) -> (TcpStream, Vec<u8>) {
    let (u, p) = server.credential(user);
    let mut data = TurnClient::new(Wire::tcp(server.addr()).unwrap(), &u, &p);
    data.share_credentials_of(control);
    let reply = data.connection_bind(id).unwrap_or_else(|e| server.fail(&format!("ConnectionBind: {e}")));
    server.check(reply.is_success(), || format!("ConnectionBind({id}) failed: {}", reply.describe()));
    data.into_wire().into_tcp().unwrap()
}

/// Writes `total` patterned bytes while a second thread reads them back, byte for byte.
fn echo_bytes(stream: &mut TcpStream, pending: Vec<u8>, total: usize) -> Result<(), String> {
    let sent: Vec<u8> = (0..total).map(|i| u8::try_from((i * 7 + i / 256) % 251).unwrap()).collect();
    let mut reader = stream.try_clone().map_err(|e| e.to_string())?;
    reader.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    let read_back = std::thread::spawn(move || {
        let mut received = pending;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = vec![0u8; 16 * 1024];
        while received.len() < total && Instant::now() < deadline {
            match reader.read(&mut buf) {
                Ok(0) => return Err(format!("closed after {} of {total} bytes", received.len())),
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) => return Err(format!("read after {} of {total} bytes: {e}", received.len())),
            }
        }
        Ok(received)
    });
    stream.set_write_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    for chunk in sent.chunks(4096) {
        stream.write_all(chunk).map_err(|e| format!("write failed: {e}"))?;
    }
    let received = read_back.join().map_err(|_| "reader thread panicked".to_owned())??;
    if received.len() != total {
        return Err(format!("{} of {total} bytes came back within 20 s", received.len()));
    }
    match received.iter().zip(&sent).position(|(a, b)| a != b) {
        Some(i) => Err(format!("byte {i} differs: sent {:#04x}, got {:#04x}", sent[i], received[i])),
        None => Ok(()),
    }
}

#[test]
fn rfc6062_connect_and_connection_bind_echo_raw_bytes() {
    let server = ServerBuilder::new("rfc6062_connect").start();
    let echo = TcpEcho::start(SocketAddr::new(LOCALHOST, server.ports().peer_port(0)));
    let (mut control, alloc) = tcp_allocation(&server, "rfc6062");

    let reply = control.create_permission(echo.addr()).unwrap();
    server.check(reply.is_success(), || format!("CreatePermission: {}", reply.describe()));
    let reply = control.connect(echo.addr()).unwrap();
    server.check(reply.is_success(), || format!("Connect to the TCP echo peer: {}", reply.describe()));
    let id =
        reply.u32_attr(attr::CONNECTION_ID).unwrap_or_else(|| server.fail("Connect success without CONNECTION-ID"));
    // The relay connects from the relayed address, so the peer sees what the client announced.
    let accepted = echo.wait_accepted(1, Duration::from_secs(2));
    server.check(accepted == vec![alloc.relayed], || {
        format!("the echo peer accepted {accepted:?}, expected one connection from {}", alloc.relayed)
    });

    let (mut stream, pending) = bind_data_connection(&server, &control, "rfc6062", id);
    let total = 256 * 1024;
    if let Err(e) = echo_bytes(&mut stream, pending, total) {
        server.fail(&format!("raw bytes over the RFC 6062 data connection: {e}"));
    }
    let echoed = echo.wait_bytes(total as u64, Duration::from_secs(2));
    server.check(echoed == total as u64, || format!("the echo peer echoed {echoed} bytes, expected {total}"));

    // Data pipelined right behind the ConnectionBind request, in the same write, is not lost.
    let echo2 = TcpEcho::start(SocketAddr::new(LOCALHOST, server.ports().peer_port(5)));
    let reply = control.connect(echo2.addr()).unwrap();
    server.check(reply.is_success(), || format!("Connect to the second echo peer: {}", reply.describe()));
    let id2 =
        reply.u32_attr(attr::CONNECTION_ID).unwrap_or_else(|| server.fail("Connect success without CONNECTION-ID"));
    let (u, p) = server.credential("rfc6062");
    let mut data2 = TurnClient::new(Wire::tcp(server.addr()).unwrap(), &u, &p);
    data2.share_credentials_of(&control);
    let reply = data2.connection_bind_pipelined(id2, b"pipelined with the bind").unwrap();
    server.check(reply.is_success(), || format!("pipelined ConnectionBind: {}", reply.describe()));
    let (mut stream2, mut got) = data2.into_wire().into_tcp().unwrap();
    stream2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while got.len() < 23 {
        let mut buf = [0u8; 64];
        match stream2.read(&mut buf) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    server.check(got == b"pipelined with the bind", || {
        format!("bytes sent in the ConnectionBind's write came back as {:?}", String::from_utf8_lossy(&got))
    });

    // A second Connect to the same peer is refused while the first connection exists (446).
    let again = control.connect(echo.addr()).unwrap();
    server.check(again.error_code() == Some(446), || format!("second Connect to the same peer: {}", again.describe()));
    // The control connection still works, and the allocation can be deleted: its data
    // connections go with it (RFC 6062: they close with their allocation).
    let refresh = control.refresh(0).unwrap();
    server.check(refresh.is_success(), || format!("Refresh(0) on the control connection: {}", refresh.describe()));
    let closed = peers::wait_closed(&mut stream, Duration::from_secs(3));
    server
        .check(closed.is_some(), || "the data connection stayed open 3 s after its allocation was deleted".to_owned());
}

#[test]
fn rfc6062_peer_connects_in_with_connection_attempt() {
    let server = ServerBuilder::new("rfc6062_attempt").start();
    let (mut control, alloc) = tcp_allocation(&server, "attempt");
    // Permissions are per IP address: the peer's port does not matter.
    let reply = control.create_permission(SocketAddr::new(LOCALHOST, 1)).unwrap();
    server.check(reply.is_success(), || format!("CreatePermission: {}", reply.describe()));

    // A peer on an address without a permission (127.0.0.2) is turned away, unannounced.
    let stranger = socket2_connect_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), alloc.relayed);
    let mut stranger = stranger.unwrap_or_else(|e| server.fail(&format!("connect from 127.0.0.2: {e}")));
    let closed = peers::wait_closed(&mut stranger, Duration::from_secs(3));
    server.check(closed.is_some(), || "a peer without a permission stayed connected to the relayed address".to_owned());
    let early = control.next_incoming(Duration::from_millis(300)).unwrap();
    server.check(early.is_none(), || format!("the client was told about a peer without permission: {early:?}"));

    let peer_socket = std::net::TcpStream::connect_timeout(&alloc.relayed, Duration::from_secs(5));
    let mut peer = peer_socket.unwrap_or_else(|e| server.fail(&format!("peer connect to {}: {e}", alloc.relayed)));
    let peer_local = peer.local_addr().unwrap();
    // Sent before the client has even heard of the connection: the relay must keep it for the
    // data connection (it stays in the peer socket until ConnectionBind).
    peer.write_all(b"early;").unwrap();
    let attempt = loop {
        match control.next_incoming(Duration::from_secs(5)).unwrap() {
            Some(Incoming::Indication(r)) if r.method == Method::ConnectionAttempt => break r,
            Some(_) => {}
            None => server.fail("no ConnectionAttempt indication within 5 s of the peer connecting"),
        }
    };
    let from = attempt.xor_address(attr::XOR_PEER_ADDRESS);
    server
        .check(from == Some(peer_local), || format!("ConnectionAttempt names peer {from:?}, the peer is {peer_local}"));
    let id =
        attempt.u32_attr(attr::CONNECTION_ID).unwrap_or_else(|| server.fail("ConnectionAttempt without CONNECTION-ID"));

    let (mut stream, mut got) = bind_data_connection(&server, &control, "attempt", id);
    peer.write_all(b"from the peer").unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while got.len() < 19 {
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    server.check(got == b"early;from the peer", || {
        format!("client read {:?} from the data connection", String::from_utf8_lossy(&got))
    });
    stream.write_all(b"from the client").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 15];
    let read = peer.read_exact(&mut buf);
    server.check(read.is_ok() && &buf == b"from the client", || {
        format!("peer read {read:?} {:?}", String::from_utf8_lossy(&buf))
    });
    // Closing the control connection deletes the allocation (over TCP it lives with its connection) and
    // with it the data and peer connections.
    drop(control);
    let data_closed = peers::wait_closed(&mut stream, Duration::from_secs(3));
    let peer_closed = peers::wait_closed(&mut peer, Duration::from_secs(3));
    server.check(data_closed.is_some() && peer_closed.is_some(), || {
        format!("after the control connection closed: data connection closed {data_closed:?}, peer {peer_closed:?}")
    });
}

#[test]
fn rfc6062_refusals() {
    // Safe default: loopback peers are refused, for Connect as for everything else.
    let strict = ServerBuilder::new("rfc6062_refused").refuse_loopback_peers().start();
    let echo = TcpEcho::start(SocketAddr::new(LOCALHOST, strict.ports().peer_port(0)));
    let (mut control, _) = tcp_allocation(&strict, "refused");
    let reply = control.connect(echo.addr()).unwrap();
    strict.check(reply.error_code() == Some(403), || {
        format!("Connect to loopback peer {}: {}", echo.addr(), reply.describe())
    });
    let accepted = echo.wait_accepted(1, Duration::from_millis(300));
    strict.check(accepted.is_empty(), || format!("the refused peer was connected to anyway: {accepted:?}"));

    let open = ServerBuilder::new("rfc6062_errors").start();
    let (mut control, _) = tcp_allocation(&open, "errors");
    // Nothing listens on this port: 447 Connection Timeout or Failure.
    let closed = SocketAddr::new(LOCALHOST, open.ports().peer_port(3));
    let reply = control.connect(closed).unwrap();
    open.check(reply.error_code() == Some(447), || format!("Connect to closed port {closed}: {}", reply.describe()));
    // ConnectionBind for an id that does not exist, on a fresh connection: 400.
    let (u, p) = open.credential("errors");
    let mut data = TurnClient::new(Wire::tcp(open.addr()).unwrap(), &u, &p);
    data.share_credentials_of(&control);
    let reply = data.connection_bind(0x7fff_fff0).unwrap();
    open.check(reply.error_code() == Some(400), || format!("ConnectionBind with an unknown id: {}", reply.describe()));
    // ConnectionBind for a connection of another user's allocation: 441, and the owner can
    // still bind it afterwards.
    let echo = TcpEcho::start(SocketAddr::new(LOCALHOST, open.ports().peer_port(4)));
    let reply = control.connect(echo.addr()).unwrap();
    open.check(reply.is_success(), || format!("Connect to the TCP echo peer: {}", reply.describe()));
    let id = reply.u32_attr(attr::CONNECTION_ID).unwrap_or_else(|| open.fail("Connect success without CONNECTION-ID"));
    let (u, p) = open.credential("mallory");
    let mut thief = TurnClient::new(Wire::tcp(open.addr()).unwrap(), &u, &p);
    let reply = thief.connection_bind(id).unwrap();
    open.check(reply.error_code() == Some(441), || format!("ConnectionBind by another user: {}", reply.describe()));
    let (mut stream, pending) = bind_data_connection(&open, &control, "errors", id);
    if let Err(e) = echo_bytes(&mut stream, pending, 1000) {
        open.fail(&format!("the owner's data connection after a refused bind by another user: {e}"));
    }
    // Connect on a UDP allocation: 400.
    let (u, p) = open.credential("udp");
    let mut udp = TurnClient::new(Wire::tcp(open.addr()).unwrap(), &u, &p);
    udp.allocate(turn_wire::UDP).unwrap_or_else(|e| open.fail(&format!("UDP Allocate over TCP: {e}")));
    let reply = udp.connect(closed).unwrap();
    open.check(reply.error_code() == Some(400), || format!("Connect on a UDP allocation: {}", reply.describe()));
}
