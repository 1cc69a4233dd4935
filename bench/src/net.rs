//! Where the generator's sockets live: the local addresses its client and peer sockets bind to
//! (loopback by default), and the network namespaces they are made in when the relay is reached
//! over veth (bench/run.sh's netns step). A socket stays in the namespace it was made in, so one
//! generator process can hold clients in one namespace and the peer in another.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use anyhow::{anyhow, bail, Context};
use clap::Args;

/// Source addresses the clients spread over by default: real clients come from many addresses,
/// and the relay's per-source limit on unauthenticated answers (50/s, burst 100) must stay on in
/// a fair comparison. All of 127.0.0.0/8 is loopback on Linux.
pub const SOURCE_ADDRESSES: usize = 250;

#[derive(Args, Clone, Debug)]
pub struct NetArgs {
    /// First local address of the client sockets: client i binds the (i mod --sources)-th address
    /// counting from this one.
    #[arg(long, default_value = "127.0.0.2")]
    pub client_ip: Ipv4Addr,
    /// Source addresses the clients are spread over, consecutive from --client-ip (1: every
    /// client from one address, as behind one carrier-grade NAT; the relay's per-source limit on
    /// challenges then paces the opening of allocations).
    #[arg(long, default_value_t = SOURCE_ADDRESSES, value_parser = parse_sources)]
    pub sources: usize,
    /// Local address of the peer socket the relay's allocations send to.
    #[arg(long, default_value = "127.0.0.1")]
    pub peer_ip: Ipv4Addr,
    /// Make the client sockets in this network namespace (a name from `ip netns`, under
    /// /run/netns; needs CAP_SYS_ADMIN).
    #[arg(long, value_parser = parse_netns)]
    pub client_netns: Option<String>,
    /// Make the peer socket in this network namespace.
    #[arg(long, value_parser = parse_netns)]
    pub peer_netns: Option<String>,
}

fn parse_sources(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=SOURCE_ADDRESSES).contains(&n) => Ok(n),
        _ => Err(format!("expected 1 to {SOURCE_ADDRESSES}")),
    }
}

fn parse_netns(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains('/') || s == "." || s == ".." {
        return Err(format!("not a network namespace name: {s:?}"));
    }
    Ok(s.to_owned())
}

impl NetArgs {
    /// The source address of client `index`.
    pub fn client_source(&self, index: usize) -> anyhow::Result<Ipv4Addr> {
        let step = (index % self.sources.max(1)) as u32;
        u32::from(self.client_ip)
            .checked_add(step)
            .map(Ipv4Addr::from)
            .ok_or_else(|| anyhow!("--client-ip {} plus {step} is past 255.255.255.255", self.client_ip))
    }

    /// A UDP socket for client `index`, bound to its source address (any port) in the clients'
    /// namespace.
    pub fn client_socket(&self, index: usize) -> anyhow::Result<UdpSocket> {
        let at = SocketAddr::new(IpAddr::V4(self.client_source(index)?), 0);
        bind_in(self.client_netns.as_deref(), at).context("bind client socket")
    }

    /// A UDP socket on the peer's address (any port) in the peer's namespace.
    pub fn peer_socket(&self) -> anyhow::Result<UdpSocket> {
        bind_in(self.peer_netns.as_deref(), SocketAddr::new(IpAddr::V4(self.peer_ip), 0)).context("bind peer socket")
    }
}

/// Binds a UDP socket to `at` in the network namespace `netns` (the caller's when `None`). The
/// namespace is entered by a short-lived thread, so the rest of the process stays where it is.
pub fn bind_in(netns: Option<&str>, at: SocketAddr) -> anyhow::Result<UdpSocket> {
    let Some(name) = netns else {
        return UdpSocket::bind(at).with_context(|| format!("cannot bind {at}"));
    };
    let path = format!("/run/netns/{name}");
    std::thread::scope(|s| {
        s.spawn(|| -> anyhow::Result<UdpSocket> {
            let ns = File::open(&path).with_context(|| format!("cannot open {path}: no such network namespace?"))?;
            // SAFETY: setns with a namespace descriptor we hold open; CLONE_NEWNET moves only
            // this thread, which ends right after making the socket.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("cannot enter network namespace {name} (root only)"));
            }
            UdpSocket::bind(at).with_context(|| format!("cannot bind {at} in network namespace {name}"))
        })
        .join()
        .map_err(|_| anyhow!("the thread entering network namespace {name} panicked"))?
    })
}

/// Reads the sum over labels of each of `names` from a Prometheus text endpoint at `addr`
/// (`GET /metrics`), e.g. turn-server's `turn_offloaded_packets_total`. A metric missing from
/// the answer is 0.
pub fn scrape(addr: SocketAddr, names: &[&str]) -> anyhow::Result<Vec<f64>> {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(3);
    let mut conn = std::net::TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot connect to the metrics endpoint {addr}"))?;
    conn.set_read_timeout(Some(timeout)).context("metrics read timeout")?;
    conn.set_write_timeout(Some(timeout)).context("metrics write timeout")?;
    write!(conn, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
        .context("send metrics request")?;
    let mut text = String::new();
    conn.take(16 << 20).read_to_string(&mut text).with_context(|| format!("read metrics from {addr}"))?;
    let Some((head, body)) = text.split_once("\r\n\r\n") else { bail!("{addr}: not an HTTP answer") };
    if !head.starts_with("HTTP/1.") || head.split_whitespace().nth(1) != Some("200") {
        bail!("{addr}: {}", head.lines().next().unwrap_or_default());
    }
    Ok(names.iter().map(|name| sum_of(body, name)).collect())
}

fn sum_of(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.trim().parse::<f64>().ok()))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_sources_count_up_from_the_first() {
        let mut net = NetArgs {
            client_ip: Ipv4Addr::new(198, 18, 1, 2),
            sources: 3,
            peer_ip: Ipv4Addr::LOCALHOST,
            client_netns: None,
            peer_netns: None,
        };
        let got: Vec<Ipv4Addr> = (0..4).map(|i| net.client_source(i).expect("in range")).collect();
        assert_eq!(got[0], Ipv4Addr::new(198, 18, 1, 2));
        assert_eq!(got[2], Ipv4Addr::new(198, 18, 1, 4));
        assert_eq!(got[3], got[0]);
        net.client_ip = Ipv4Addr::BROADCAST;
        assert!(net.client_source(1).is_err());
        assert!(parse_sources("0").is_err() && parse_sources("251").is_err());
        assert!(parse_netns("../x").is_err() && parse_netns("tb-client").is_ok());
    }

    #[test]
    fn metrics_are_summed_over_labels() {
        let body = "# HELP turn_offloaded_packets_total x\n\
                    turn_offloaded_packets_total{direction=\"to_peer\"} 10\n\
                    turn_offloaded_packets_total{direction=\"from_peer\"} 7\n\
                    turn_offloaded_packets_total_other 99\n\
                    turn_relayed_packets_total 20\n";
        assert_eq!(sum_of(body, "turn_offloaded_packets_total"), 17.0);
        assert_eq!(sum_of(body, "turn_relayed_packets_total"), 20.0);
        assert_eq!(sum_of(body, "missing"), 0.0);
    }
}
