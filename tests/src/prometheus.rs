//! Reading Prometheus text in tests: the relay's listener (`--prometheus`, served on 127.0.0.1)
//! and the samples of any scrape (the signaling service's too).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// `GET path` on 127.0.0.1:`port`: the status line and the body.
pub fn get(port: u16, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics listener");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("set read timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").expect("send request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read response");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

/// The body of `/metrics`.
pub fn scrape(port: u16) -> String {
    get(port, "/metrics").1
}

/// The value of the sample `series` (the exact text before the value, labels included).
pub fn sample(body: &str, series: &str) -> Option<u64> {
    body.lines().find_map(|l| value_text(l, series)?.parse().ok())
}

/// [`sample`] for values that need not be integers (gauges, OpenMetrics text).
pub fn sample_f64(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| value_text(l, series)?.parse().ok())
}

/// The value of line `l` if it is a sample of exactly `series` (a timestamp after it is ignored).
fn value_text<'a>(l: &'a str, series: &str) -> Option<&'a str> {
    l.strip_prefix(series)?.strip_prefix(' ')?.split_whitespace().next()
}

/// The sum of every sample of family `name`, whatever its labels.
pub fn sum(body: &str, name: &str) -> u64 {
    body.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
