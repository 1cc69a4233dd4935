//! The PROXY protocol header (HAProxy's `proxy-protocol.txt`, versions 1 and 2) that nginx's
//! `stream { proxy_protocol on; }` and HAProxy's `send-proxy` put before the client's bytes, so a
//! relay behind them learns the client's real address. Pure: bytes in, a verdict out; the stream
//! driver reads the socket and decides whom to believe.
//!
//! Only what a relay needs is kept: the stream addresses of TCP over IPv4 or IPv6. `UNKNOWN` (v1),
//! `LOCAL` (v2, a proxy's own health check) and families without a stream address (v2 `UNSPEC`,
//! `AF_UNIX`) parse as headers without addresses, and the connection keeps its own. TLVs are
//! skipped. A v2 datagram (UDP) header is refused: it cannot describe a stream connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12 bytes every v2 header starts with (chosen by the spec to be invalid in any text protocol).
const V2_SIGNATURE: [u8; 12] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];
const V1_PREFIX: &[u8] = b"PROXY ";
/// The spec's bound on a v1 line, CRLF included ("PROXY UNKNOWN" with two full IPv6 addresses).
const V1_MAX: usize = 107;
/// Bound on a v2 header, TLVs included. The spec allows 16 + 65535, but a relay has no use for
/// large TLVs (certificates, say) and must not buffer them for every connection.
pub const V2_MAX: usize = 1024;
/// The most bytes a header may take; a driver never needs to hold more than this to decide.
pub const MAX_HEADER: usize = V2_MAX;

/// The addresses a proxy reports for the connection it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxiedAddrs {
    /// The client, as the proxy saw it.
    pub src: SocketAddr,
    /// The address the client connected to (the proxy's listener).
    pub dst: SocketAddr,
}

/// What the bytes received so far say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyParse {
    /// A valid header may still follow; every byte so far belongs to it.
    NeedMore,
    /// A header of `header_len` bytes; `addrs` is `None` when it carries no stream addresses.
    Parsed { addrs: Option<ProxiedAddrs>, header_len: usize },
    /// Not a PROXY header, or a malformed one.
    Invalid(&'static str),
}

/// Parses a header at the start of `buf`.
pub fn parse(buf: &[u8]) -> ProxyParse {
    if starts_like(buf, &V2_SIGNATURE) {
        if buf.len() < V2_SIGNATURE.len() {
            return ProxyParse::NeedMore;
        }
        return parse_v2(buf);
    }
    if starts_like(buf, V1_PREFIX) {
        return parse_v1(buf);
    }
    ProxyParse::Invalid("no PROXY protocol signature")
}

/// Whether `buf` and `prefix` agree on their common length.
fn starts_like(buf: &[u8], prefix: &[u8]) -> bool {
    let n = buf.len().min(prefix.len());
    buf[..n] == prefix[..n]
}

fn parse_v1(buf: &[u8]) -> ProxyParse {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        return if buf.len() >= V1_MAX { ProxyParse::Invalid("v1 line too long") } else { ProxyParse::NeedMore };
    };
    match window.get(cr + 1) {
        None => return ProxyParse::NeedMore,
        Some(b'\n') => {}
        Some(_) => return ProxyParse::Invalid("v1 line not ended by CRLF"),
    }
    let header_len = cr + 2;
    let Ok(line) = std::str::from_utf8(&window[V1_PREFIX.len()..cr]) else {
        return ProxyParse::Invalid("v1 line is not text");
    };
    let mut fields = line.split(' ');
    let family = fields.next().unwrap_or_default();
    if family == "UNKNOWN" {
        // The rest of the line may hold anything and must be ignored.
        return ProxyParse::Parsed { addrs: None, header_len };
    }
    let v6 = match family {
        "TCP4" => false,
        "TCP6" => true,
        _ => return ProxyParse::Invalid("v1 family is not TCP4, TCP6 or UNKNOWN"),
    };
    let (Some(src), Some(dst), Some(sport), Some(dport), None) =
        (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return ProxyParse::Invalid("v1 line does not have four addresses and ports");
    };
    let (Some(src), Some(dst)) = (v1_ip(src, v6), v1_ip(dst, v6)) else {
        return ProxyParse::Invalid("v1 address does not match its family");
    };
    let (Some(sport), Some(dport)) = (v1_port(sport), v1_port(dport)) else {
        return ProxyParse::Invalid("v1 port is not a number from 0 to 65535");
    };
    let addrs = ProxiedAddrs { src: SocketAddr::new(src, sport), dst: SocketAddr::new(dst, dport) };
    ProxyParse::Parsed { addrs: Some(addrs), header_len }
}

fn v1_ip(s: &str, v6: bool) -> Option<IpAddr> {
    if v6 {
        s.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else {
        s.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    }
}

/// Decimal without sign or leading zeros, as the spec writes ports.
fn v1_port(s: &str) -> Option<u16> {
    let digits_only = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

fn parse_v2(buf: &[u8]) -> ProxyParse {
    let Some(&[ver_cmd, fam, hi, lo]) = buf.get(12..16) else {
        return ProxyParse::NeedMore;
    };
    if ver_cmd >> 4 != 2 {
        return ProxyParse::Invalid("v2 version is not 2");
    }
    let local = match ver_cmd & 0x0F {
        0 => true,
        1 => false,
        _ => return ProxyParse::Invalid("v2 command is neither LOCAL nor PROXY"),
    };
    let header_len = 16 + usize::from(u16::from_be_bytes([hi, lo]));
    if header_len > V2_MAX {
        return ProxyParse::Invalid("v2 header longer than this relay accepts");
    }
    let Some(body) = buf.get(16..header_len) else {
        return ProxyParse::NeedMore;
    };
    let (family, transport) = (fam >> 4, fam & 0x0F);
    if family > 3 || transport > 2 {
        return ProxyParse::Invalid("v2 family or transport out of range");
    }
    // LOCAL: the proxy speaks for itself and the address block, whatever it holds, is ignored.
    if local || family == 0 || family == 3 {
        return ProxyParse::Parsed { addrs: None, header_len };
    }
    if transport != 1 {
        return ProxyParse::Invalid("v2 header is not for a stream connection");
    }
    let addrs = if family == 1 {
        body.get(..12).map(|a| {
            let ip = |i: usize| IpAddr::V4(Ipv4Addr::new(a[i], a[i + 1], a[i + 2], a[i + 3]));
            let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
            ProxiedAddrs { src: SocketAddr::new(ip(0), port(8)), dst: SocketAddr::new(ip(4), port(10)) }
        })
    } else {
        body.get(..36).map(|a| {
            let ip = |i: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&a[i..i + 16]);
                IpAddr::V6(Ipv6Addr::from(o))
            };
            let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
            ProxiedAddrs { src: SocketAddr::new(ip(0), port(32)), dst: SocketAddr::new(ip(16), port(34)) }
        })
    };
    match addrs {
        // Whatever follows the addresses up to `header_len` is TLVs, which nothing here needs.
        Some(a) => ProxyParse::Parsed { addrs: Some(a), header_len },
        None => ProxyParse::Invalid("v2 length too short for its address family"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn parsed(src: &str, dst: &str, header_len: usize) -> ProxyParse {
        ProxyParse::Parsed { addrs: Some(ProxiedAddrs { src: sa(src), dst: sa(dst) }), header_len }
    }

    /// Every proper prefix of a valid header asks for more; none is refused early.
    fn assert_prefixes_need_more(header: &[u8]) {
        for n in 0..header.len() {
            assert_eq!(parse(&header[..n]), ProxyParse::NeedMore, "prefix of {n} bytes");
        }
    }

    #[test]
    fn v1_spec_examples() {
        // The spec's worst cases for each family, and its short UNKNOWN form.
        let tcp4 = b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
        assert_eq!(parse(tcp4), parsed("255.255.255.255:65535", "255.255.255.255:65535", 56));
        let tcp6 = b"PROXY TCP6 ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n".to_vec();
        assert!(matches!(parse(&tcp6), ProxyParse::Invalid(_)), "elided addresses are not addresses");
        let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let tcp6 = format!("PROXY TCP6 {full} {full} 65535 65535\r\n");
        assert_eq!(tcp6.len(), 104);
        let want = format!("[{full}]:65535");
        assert_eq!(parse(tcp6.as_bytes()), parsed(&want, &want, 104));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), ProxyParse::Parsed { addrs: None, header_len: 15 });
        let unknown = format!("PROXY UNKNOWN {full} {full} 65535 65535\r\n");
        assert_eq!(unknown.len(), V1_MAX);
        assert_eq!(parse(unknown.as_bytes()), ProxyParse::Parsed { addrs: None, header_len: V1_MAX });
        assert_prefixes_need_more(tcp4);
        assert_prefixes_need_more(unknown.as_bytes());
    }

    #[test]
    fn v1_as_nginx_sends_it_with_data_after() {
        let mut bytes = b"PROXY TCP4 127.0.0.2 127.0.0.1 40312 443\r\n".to_vec();
        let len = bytes.len();
        bytes.extend_from_slice(&[0x16, 0x03, 0x01, 0x00, 0x10]); // a TLS record follows
        assert_eq!(parse(&bytes), parsed("127.0.0.2:40312", "127.0.0.1:443", len));
    }

    #[test]
    fn v1_malformed_lines_are_refused() {
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"[..],
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY \xff\r\n",
            b"GET / HTTP/1.1\r\n",
            b"\x00\x01\x00\x00", // a STUN Binding request without the header
        ] {
            assert!(matches!(parse(bad), ProxyParse::Invalid(_)), "{:?}", String::from_utf8_lossy(bad));
        }
        let endless = [b"PROXY ".as_slice(), &[b'1'; 200]].concat();
        assert_eq!(parse(&endless), ProxyParse::Invalid("v1 line too long"));
    }

    fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[ver_cmd, fam]);
        h.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn v2_tcp4_as_haproxy_sends_it() {
        // HAProxy's send-proxy-v2 for 172.19.0.1:42578 -> 172.19.0.3:80, followed by the request.
        let mut bytes = vec![
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c, 0xac, 0x13,
            0x00, 0x01, 0xac, 0x13, 0x00, 0x03, 0xa6, 0x52, 0x00, 0x50,
        ];
        assert_prefixes_need_more(&bytes);
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(parse(&bytes), parsed("172.19.0.1:42578", "172.19.0.3:80", 28));
    }

    #[test]
    fn v2_tcp6_with_tlvs_skipped() {
        let mut body = Vec::new();
        body.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        body.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        body.extend_from_slice(&[0x9c, 0x40, 0x01, 0xbb]);
        // PP2_TYPE_ALPN "stun.turn", then a NOOP padding TLV.
        body.extend_from_slice(&[0x01, 0x00, 0x09]);
        body.extend_from_slice(b"stun.turn");
        body.extend_from_slice(&[0x04, 0x00, 0x02, 0, 0]);
        let h = v2(0x21, 0x21, &body);
        assert_prefixes_need_more(&h);
        assert_eq!(parse(&h), parsed("[2001:db8::1]:40000", "[2001:db8::2]:443", h.len()));
    }

    #[test]
    fn v2_without_stream_addresses_keeps_the_connections_own() {
        let none = |h: &[u8]| ProxyParse::Parsed { addrs: None, header_len: h.len() };
        // LOCAL (a health check), with and without an address block.
        let h = v2(0x20, 0x00, &[]);
        assert_eq!(parse(&h), none(&h));
        let h = v2(0x20, 0x11, &[1; 12]);
        assert_eq!(parse(&h), none(&h));
        // PROXY over UNSPEC, and AF_UNIX (216 bytes of paths).
        let h = v2(0x21, 0x00, &[]);
        assert_eq!(parse(&h), none(&h));
        let h = v2(0x21, 0x31, &[0; 216]);
        assert_eq!(parse(&h), none(&h));
    }

    #[test]
    fn v2_malformed_headers_are_refused() {
        for (what, h) in [
            ("version 1", v2(0x11, 0x11, &[0; 12])),
            ("command 2", v2(0x22, 0x11, &[0; 12])),
            ("family 4", v2(0x21, 0x41, &[0; 12])),
            ("transport 3", v2(0x21, 0x13, &[0; 12])),
            ("UDP4", v2(0x21, 0x12, &[0; 12])),
            ("TCP4 too short", v2(0x21, 0x11, &[0; 11])),
            ("TCP6 too short", v2(0x21, 0x21, &[0; 35])),
            ("too long", v2(0x21, 0x11, &[0; V2_MAX])),
        ] {
            assert!(matches!(parse(&h), ProxyParse::Invalid(_)), "{what}");
        }
        let mut bad_sig = V2_SIGNATURE;
        bad_sig[11] = 0;
        assert!(matches!(parse(&bad_sig), ProxyParse::Invalid(_)));
    }

    #[test]
    fn verdict_never_claims_more_bytes_than_given() {
        // The driver consumes `header_len` bytes: it must lie within the buffer and the cap.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 64) as usize;
            let seeds: [&[u8]; 3] = [&V2_SIGNATURE, b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", b""];
            let mut bytes = seeds[(state >> 8) as usize % 3].to_vec();
            bytes.extend((0..len).map(|i| (state >> (i % 56)) as u8));
            let cut = (state >> 20) as usize % (bytes.len() + 1);
            bytes.truncate(cut.max(bytes.len() / 2));
            if let ProxyParse::Parsed { header_len, .. } = parse(&bytes) {
                assert!(header_len <= bytes.len() && header_len <= MAX_HEADER);
            }
        }
    }
}
