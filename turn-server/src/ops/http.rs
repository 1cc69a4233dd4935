//! The small HTTP/1.1 server behind the local operations listeners (Prometheus metrics, admin).
//! One request per connection, head bounded in size and time, no bodies: these listeners serve a
//! scraper and an operator's CLI on loopback, and pulling a full HTTP stack into the relay for
//! that would add more code to audit than it saves.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request head accepted; anything longer is answered 431.
const MAX_HEAD: usize = 8192;
/// A connection must deliver its request and take its answer within this.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);

/// What a handler sees of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path, percent-decoded, without the query.
    pub path: String,
    /// `name=value` pairs of the query, percent-decoded.
    pub query: Vec<(String, String)>,
    /// The `Authorization` header's value.
    pub authorization: Option<String>,
}

impl Request {
    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Parses a request head (everything before the blank line).
    pub fn parse(head: &[u8]) -> Option<Request> {
        let text = std::str::from_utf8(head).ok()?;
        let mut lines = text.split("\r\n");
        let mut first = lines.next()?.split(' ');
        let (method, target, version) = (first.next()?, first.next()?, first.next()?);
        if !version.starts_with("HTTP/1.") || first.next().is_some() {
            return None;
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let query = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                Some((percent_decode(k)?, percent_decode(v)?))
            })
            .collect::<Option<Vec<_>>>()?;
        let authorization = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("authorization"))
            .map(|(_, value)| value.trim().to_owned());
        Some(Request { method: method.to_owned(), path: percent_decode(path)?, query, authorization })
    }
}

/// An answer: status, content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Extra header lines, each without the line end.
    pub headers: Vec<String>,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.into(), headers: Vec::new() }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        let mut body = value.to_string();
        body.push('\n');
        Response { status, content_type: "application/json", body, headers: Vec::new() }
    }

    fn head(&self) -> String {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for h in &self.headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        head
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Serves until the task is dropped; `handler` answers each request (on this thread: it may
/// hold `Rc`s of the worker).
pub async fn serve(listener: TcpListener, handler: impl Fn(&Request) -> Response + 'static) {
    let handler = std::rc::Rc::new(handler);
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let handler = handler.clone();
        tokio::task::spawn_local(async move {
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, answer(stream, &*handler)).await;
        });
    }
}

async fn answer(mut stream: TcpStream, handler: &dyn Fn(&Request) -> Response) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    let end = loop {
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break Some(i);
        }
        if head.len() > MAX_HEAD {
            break None;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    };
    let response = match end {
        None => Response::text(431, "request head too large\n"),
        Some(i) => match Request::parse(&head[..i]) {
            Some(request) => handler(&request),
            None => Response::text(400, "malformed request\n"),
        },
    };
    stream.write_all(response.head().as_bytes()).await?;
    stream.write_all(response.body.as_bytes()).await?;
    stream.shutdown().await
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_method_path_query_and_authorization() {
        let r = Request::parse(
            b"DELETE /users/al%20ice/allocations?x=1&user=b%3Ab HTTP/1.1\r\nHost: x\r\nauthorization:  Bearer t0k\r\n",
        )
        .unwrap();
        assert_eq!(r.method, "DELETE");
        assert_eq!(r.path, "/users/al ice/allocations");
        assert_eq!(r.query_value("user"), Some("b:b"));
        assert_eq!(r.query_value("x"), Some("1"));
        assert_eq!(r.authorization.as_deref(), Some("Bearer t0k"));
    }

    #[test]
    fn refuses_what_is_not_an_http_request() {
        for head in
            [&b"GET /"[..], b"GET / SMTP/1.0", b"GET /%zz HTTP/1.1", b"\xff\xfe HTTP/1.1", b"GET / HTTP/1.1 extra"]
        {
            assert_eq!(Request::parse(head), None, "{head:?}");
        }
    }
}
