//! A minimal HTTP/1.1 client for the signaling tests, and HTTPS from a chosen source address
//! through reqwest: enough to read status, headers and body of the service's answers.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Lower-cased names.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// One HTTP/1.1 request with `Connection: close`, bounded to 10 s.
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).expect("write request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap_or_else(|e| panic!("{method} {path}: reading response: {e}"));
    parse_response(&raw)
}

/// One HTTPS GET of `url` from the local address `from` (e.g. 127.0.0.2, so a proxy sees that
/// source), trusting only the PEM certificate `ca`, bounded to 10 s. The client is reqwest (on
/// rustls), not code of this repository.
pub fn https_get(from: IpAddr, url: &str, ca: &Path, headers: &[(&str, &str)]) -> Response {
    let pem = std::fs::read(ca).unwrap_or_else(|e| panic!("read {}: {e}", ca.display()));
    let ca = reqwest::Certificate::from_pem(&pem).expect("a PEM certificate");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .local_address(from)
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTPS client");
        let mut request = client.get(url);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let resp = request.send().await.unwrap_or_else(|e| panic!("GET {url} from {from}: {e:?}"));
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let body = resp.text().await.unwrap_or_else(|e| panic!("GET {url} from {from}: reading the body: {e}"));
        Response { status, headers, body }
    })
}

fn parse_response(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("malformed HTTP response: {text:?}"));
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = if headers.get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Response { status, headers, body }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    for _ in 0..10_000 {
        let Some((size, rest)) = body.split_once("\r\n") else { break };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
