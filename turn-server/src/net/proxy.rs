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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn a_trickled_header_is_read_and_the_bytes_after_it_stay() {
        let (mut client, mut server) = pair().await;
        let writer = tokio::spawn(async move {
            for piece in [&b"PROXY TCP4 198.51"[..], b".100.7 192.0.2.1 4000 443\r", b"\nSTUN"] {
                client.write_all(piece).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            client
        });
        let addrs = read_header(&mut server, Duration::from_secs(5)).await.unwrap().unwrap();
        assert_eq!(addrs.src, "198.51.100.7:4000".parse().unwrap());
        let mut rest = [0u8; 4];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"STUN");
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn silence_no_header_and_early_close_are_refused() {
        let (_client, mut server) = pair().await;
        let silent = read_header(&mut server, Duration::from_millis(100)).await;
        assert_eq!(silent, Err("PROXY protocol header not received in time"));

        let (mut client, mut server) = pair().await;
        client.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).await.unwrap(); // a TLS ClientHello
        assert!(read_header(&mut server, Duration::from_secs(5)).await.is_err());

        let (mut client, mut server) = pair().await;
        client.write_all(b"PROXY TCP4 1.2").await.unwrap();
        drop(client);
        assert_eq!(
            read_header(&mut server, Duration::from_secs(5)).await,
            Err("closed before a complete PROXY protocol header")
        );
    }

    #[test]
    fn only_listed_sources_are_trusted() {
        let p = ProxyProtocol { tcp: false, tls: true, from: vec!["10.0.0.0/8".parse().unwrap()] };
        assert!(p.expected_on(true) && !p.expected_on(false));
        assert!(p.trusts("10.1.2.3:5".parse().unwrap()));
        // An IPv4 proxy on a dual-stack socket arrives IPv4-mapped.
        assert!(p.trusts("[::ffff:10.1.2.3]:5".parse().unwrap()));
        assert!(!p.trusts("192.0.2.1:5".parse().unwrap()));
    }
}
