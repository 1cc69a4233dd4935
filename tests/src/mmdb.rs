//! A MaxMind DB (`.mmdb`, format 2.0) writer for tests: IPv4 networks mapped to
//! `{"continent": {"code": CODE}}`, the shape of a GeoIP2/DB-IP country database as far as
//! `geoip2 { $var continent code; }` in nginx reads it. Written from the public format
//! specification; the reader is libmaxminddb inside nginx's geoip2 module, so a mistake here
//! shows as a lookup that finds nothing, never as a test that passes by itself.
//!
//! Layout: a binary search tree over the address bits (24-bit records; a record below the
//! node count is a node, equal to it is "no data", above it points into the data section),
//! 16 zero bytes, the data section, then `\xAB\xCD\xEFMaxMind.com` and the metadata map.

use std::net::Ipv4Addr;

/// A data-section value (only the types the test databases need).
enum Data<'a> {
    Str(&'a str),
    /// Type number (5 uint16, 6 uint32, 9 uint64) and value.
    Uint(u8, u64),
    Map(Vec<(&'a str, Data<'a>)>),
    Array(Vec<Data<'a>>),
}

/// A control byte (and the extended type byte, and the size's extra bytes).
fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
    let (low, extra): (u8, Vec<u8>) = match size {
        0..29 => (size as u8, vec![]),
        29..285 => (29, vec![(size - 29) as u8]),
        285..65_821 => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
        _ => (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec()),
    };
    if kind <= 7 {
        out.push(kind << 5 | low);
    } else {
        out.push(low);
        out.push(kind - 7);
    }
    out.extend(extra);
}

fn encode(out: &mut Vec<u8>, value: &Data<'_>) {
    match value {
        Data::Str(s) => {
            control(out, 2, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Data::Uint(kind, v) => {
            let bytes = v.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            control(out, *kind, bytes.len() - skip);
            out.extend_from_slice(&bytes[skip..]);
        }
        Data::Map(pairs) => {
            control(out, 7, pairs.len());
            for (k, v) in pairs {
                encode(out, &Data::Str(k));
                encode(out, v);
            }
        }
        Data::Array(items) => {
            control(out, 11, items.len());
            for v in items {
                encode(out, v);
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Record {
    Empty,
    Node(u32),
    /// Offset in the data section.
    Data(u32),
}

/// An IPv4 database (`ip_version` 4) mapping each `(network, prefix length, continent code)`
/// to `{"continent": {"code": code}}`. Networks must not overlap; addresses outside them have
/// no data.
pub fn continents(networks: &[(Ipv4Addr, u8, &str)], description: &str) -> Vec<u8> {
    let mut data = Vec::new();
    let mut tree: Vec<[Record; 2]> = vec![[Record::Empty; 2]];
    for &(net, len, code) in networks {
        assert!((1..=32).contains(&len), "prefix length {len} of {net}");
        let offset = u32::try_from(data.len()).expect("small data section");
        encode(&mut data, &Data::Map(vec![("continent", Data::Map(vec![("code", Data::Str(code))]))]));
        let bits = u32::from(net);
        let mut node = 0usize;
        for depth in 0..u32::from(len) {
            let bit = ((bits >> (31 - depth)) & 1) as usize;
            if depth + 1 == u32::from(len) {
                assert!(matches!(tree[node][bit], Record::Empty), "{net}/{len} overlaps another network");
                tree[node][bit] = Record::Data(offset);
                break;
            }
            node = match tree[node][bit] {
                Record::Node(n) => n as usize,
                Record::Empty => {
                    tree.push([Record::Empty; 2]);
                    let n = tree.len() - 1;
                    tree[node][bit] = Record::Node(u32::try_from(n).expect("small tree"));
                    n
                }
                Record::Data(_) => panic!("{net}/{len} lies inside another network"),
            };
        }
    }

    let node_count = u32::try_from(tree.len()).expect("small tree");
    let mut out = Vec::new();
    for node in &tree {
        for record in node {
            let value = match *record {
                Record::Node(n) => n,
                Record::Empty => node_count,
                Record::Data(offset) => node_count + 16 + offset,
            };
            assert!(value < 1 << 24, "24-bit records");
            out.extend_from_slice(&value.to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    let metadata = Data::Map(vec![
        ("node_count", Data::Uint(6, u64::from(node_count))),
        ("record_size", Data::Uint(5, 24)),
        ("ip_version", Data::Uint(5, 4)),
        ("database_type", Data::Str("e2e-Country")),
        ("languages", Data::Array(vec![Data::Str("en")])),
        ("binary_format_major_version", Data::Uint(5, 2)),
        ("binary_format_minor_version", Data::Uint(5, 0)),
        ("build_epoch", Data::Uint(9, crate::unix_now())),
        ("description", Data::Map(vec![("en", Data::Str(description))])),
    ]);
    encode(&mut out, &metadata);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_extended_types_encode_as_the_spec_says() {
        let mut out = Vec::new();
        control(&mut out, 2, 3);
        control(&mut out, 2, 29);
        control(&mut out, 2, 300);
        control(&mut out, 11, 1);
        assert_eq!(out, [0x43, 0x5d, 0x00, 0x5e, 0x00, 0x0f, 0x01, 0x04]);
        let mut out = Vec::new();
        encode(&mut out, &Data::Uint(5, 0));
        encode(&mut out, &Data::Uint(6, 0x0102));
        encode(&mut out, &Data::Uint(9, 1));
        assert_eq!(out, [0xa0, 0xc2, 0x01, 0x02, 0x01, 0x02, 0x01]);
    }

    #[test]
    fn one_network_makes_one_path_of_nodes() {
        let db = continents(&[(Ipv4Addr::new(127, 0, 0, 2), 32, "EU")], "t");
        // 32 nodes of 6 bytes, one a bit: the 32nd ends in a data record.
        let tree = 32 * 6;
        assert_eq!(&db[tree..tree + 16], &[0u8; 16]);
        // The first bit of 127 is 0: the root's left record is node 1, its right "no data" (32).
        assert_eq!(&db[..6], &[0, 0, 1, 0, 0, 32]);
        // The last node: 127.0.0.2 ends in bit 0, pointing at data offset 0 (32 + 16).
        assert_eq!(&db[tree - 6..tree], &[0, 0, 48, 0, 0, 32]);
        assert!(db.windows(14).any(|w| w == b"\xAB\xCD\xEFMaxMind.com"));
    }
}
