//! A loopback receiver of the service's webhook POSTs, for checking what it sends and how it
//! retries.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

/// A loopback HTTP server that records webhook POSTs (headers and body) and answers with the
/// statuses given, then 200.
pub struct HookSink {
    pub addr: SocketAddr,
    rx: mpsc::Receiver<(BTreeMap<String, String>, Vec<u8>)>,
}

impl HookSink {
    pub fn start(fail_first: usize) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind webhook sink");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut served = 0usize;
            for stream in listener.incoming().take(1000) {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let Some((headers, body)) = read_request(&mut stream) else { continue };
                served += 1;
                let status = if served <= fail_first { "503 Service Unavailable" } else { "200 OK" };
                let _ = stream.write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes(),
                );
                if served > fail_first && tx.send((headers, body)).is_err() {
                    break;
                }
            }
        });
        Self { addr, rx }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks/calls", self.addr)
    }

    /// The next successfully delivered hook within `within`.
    pub fn next(&self, within: Duration) -> Option<(BTreeMap<String, String>, Vec<u8>)> {
        self.rx.recv_timeout(within).ok()
    }
}

fn read_request(stream: &mut TcpStream) -> Option<(BTreeMap<String, String>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 1 << 20 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let headers: BTreeMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((headers, body))
}
