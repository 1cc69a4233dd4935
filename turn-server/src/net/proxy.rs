//! The PROXY protocol on the stream listeners: which listeners expect the header, whose headers
//! are believed, and reading exactly the header's bytes off a new connection (parsing is
//! `proto::proxy_header`). Reading no further than the header matters: what follows is a TLS
//! ClientHello or the first STUN frame, which the usual path must find untouched in the socket.

use std::net::SocketAddr;
use std::time::Duration;

use ice_config::IpRange;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::proto::proxy_header::{self, ProxiedAddrs, ProxyParse, MAX_HEADER};

/// Which stream listeners read a PROXY protocol header, and from whom.
#[derive(Debug, Clone, Default)]
pub struct ProxyProtocol {
    pub tcp: bool,
    pub tls: bool,
    /// Proxies allowed to send the header; connections from elsewhere are refused.
    pub from: Vec<IpRange>,
}

impl ProxyProtocol {
    pub(super) fn expected_on(&self, tls: bool) -> bool {
        if tls {
            self.tls
        } else {
            self.tcp
        }
    }

    pub(super) fn trusts(&self, proxy: SocketAddr) -> bool {
        let ip = proxy.ip().to_canonical();
        self.from.iter().any(|r| r.contains(ip))
    }
}

/// Reads the header within `timeout`, leaving every byte after it in the socket. `Ok(None)`: a
/// header without client addresses (a proxy's health check, `UNKNOWN`), so the connection's own
/// addresses stand.
pub(super) async fn read_header(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<Option<ProxiedAddrs>, &'static str> {
    match tokio::time::timeout(timeout, read_header_untimed(stream)).await {
        Ok(r) => r,
        Err(_) => Err("PROXY protocol header not received in time"),
    }
}

async fn read_header_untimed(stream: &mut TcpStream) -> Result<Option<ProxiedAddrs>, &'static str> {
    // Bytes already consumed: all of them belong to the header, which is not complete yet.
    let mut taken: Vec<u8> = Vec::with_capacity(128);
    let mut peeked = vec![0u8; MAX_HEADER];
    loop {
        // Peek waits for new bytes (those consumed below are gone from the socket), so a header
        // that trickles in costs no busy loop; nothing past the header is ever consumed.
        let room = MAX_HEADER - taken.len();
        let n = stream.peek(&mut peeked[..room]).await.map_err(|_| "read error before the PROXY protocol header")?;
        if n == 0 {
            return Err("closed before a complete PROXY protocol header");
        }
        let at_hand = [taken.as_slice(), &peeked[..n]].concat();
        match proxy_header::parse(&at_hand) {
            ProxyParse::Parsed { addrs, header_len } => {
                let mut rest = vec![0u8; header_len.saturating_sub(taken.len())];
                stream.read_exact(&mut rest).await.map_err(|_| "read error in the PROXY protocol header")?;
                return Ok(addrs);
            }
            ProxyParse::NeedMore => {
                stream.read_exact(&mut peeked[..n]).await.map_err(|_| "read error in the PROXY protocol header")?;
                taken.extend_from_slice(&peeked[..n]);
            }
            ProxyParse::Invalid(why) => return Err(why),
        }
    }
}
