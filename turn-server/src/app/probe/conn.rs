//! A blocking client connection to a STUN/TURN server over UDP, TCP or TLS: enough for a probe,
//! which makes a handful of transactions and reports how each went.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::proto::framing;
use crate::proto::stun::{Message, TransactionId};
use ice_config::{IceUrl, Transport};

/// Where Debian and most distributions keep the system's trusted CAs.
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

pub enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream, Vec<u8>),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>, Vec<u8>),
}

/// How to trust the server's certificate.
pub enum Trust<'a> {
    System,
    CaFile(&'a Path),
    Insecure,
}

pub fn resolve(url: &IceUrl) -> io::Result<SocketAddr> {
    (url.host.as_str(), url.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{} does not resolve", url.host)))
}

impl Conn {
    pub fn open(url: &IceUrl, server: SocketAddr, timeout: Duration, trust: &Trust<'_>) -> io::Result<Conn> {
        match url.transport {
            Transport::Udp => {
                let local: SocketAddr = if server.is_ipv4() { ([0u8; 4], 0).into() } else { ([0u16; 8], 0).into() };
                let socket = UdpSocket::bind(local)?;
                socket.connect(server)?;
                Ok(Conn::Udp(socket))
            }
            Transport::Tcp => Ok(Conn::Tcp(TcpStream::connect_timeout(&server, timeout)?, Vec::new())),
            Transport::Tls => {
                let tcp = TcpStream::connect_timeout(&server, timeout)?;
                tcp.set_read_timeout(Some(timeout))?;
                let config = tls_config(trust)?;
                let name = ServerName::try_from(url.host.clone())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
                let mut tls = ClientConnection::new(config, name).map_err(io::Error::other)?;
                let mut tcp = tcp;
                while tls.is_handshaking() {
                    tls.complete_io(&mut tcp)?;
                }
                Ok(Conn::Tls(Box::new(StreamOwned::new(tls, tcp)), Vec::new()))
            }
        }
    }

    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Conn::Udp(s) => s.send(data).map(|_| ()),
            Conn::Tcp(s, _) => s.write_all(data),
            Conn::Tls(s, _) => s.write_all(data),
        }
    }

    /// The next STUN message (ChannelData frames are skipped), or a timeout at `deadline`.
    fn recv(&mut self, deadline: Instant) -> io::Result<Vec<u8>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            let frame = match self {
                Conn::Udp(s) => {
                    s.set_read_timeout(Some(left))?;
                    let mut buf = vec![0u8; 65_536];
                    let n = s.recv(&mut buf)?;
                    buf.truncate(n);
                    buf
                }
                Conn::Tcp(s, pending) => {
                    s.set_read_timeout(Some(left))?;
                    read_frame(s, pending)?
                }
                Conn::Tls(s, pending) => {
                    s.sock.set_read_timeout(Some(left))?;
                    read_frame(s.as_mut(), pending)?
                }
            };
            if Message::parse(&frame).is_ok() {
                return Ok(frame);
            }
        }
    }

    /// Sends `request` (again every 500 ms over UDP) until a message with its transaction id
    /// arrives; returns it and the round-trip time of the first send.
    pub fn transact(
        &mut self,
        request: &[u8],
        tid: &TransactionId,
        timeout: Duration,
    ) -> io::Result<(Vec<u8>, Duration)> {
        let start = Instant::now();
        let deadline = start + timeout;
        let retransmit = matches!(self, Conn::Udp(_));
        self.send(request)?;
        let mut next_send = start + Duration::from_millis(500);
        loop {
            let wait_until = if retransmit { next_send.min(deadline) } else { deadline };
            match self.recv(wait_until) {
                Ok(reply) => {
                    if Message::parse(&reply).is_ok_and(|m| m.transaction_id() == tid) {
                        return Ok((reply, start.elapsed()));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    self.send(request)?;
                    next_send = Instant::now() + Duration::from_millis(500);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits for any STUN message for which `want` holds.
    pub fn wait_for(&mut self, timeout: Duration, want: impl Fn(&Message<'_>) -> bool) -> io::Result<Duration> {
        let start = Instant::now();
        let deadline = start + timeout;
        loop {
            match self.recv(deadline) {
                Ok(m) if Message::parse(&m).is_ok_and(|m| want(&m)) => return Ok(start.elapsed()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(io::ErrorKind::TimedOut.into()),
                Err(e) => return Err(e),
            }
        }
    }
}

fn read_frame(stream: &mut impl Read, pending: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    loop {
        match framing::frame_len(pending) {
            Ok(Some(len)) => return Ok(pending.drain(..len).collect()),
            Ok(None) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        pending.extend_from_slice(&chunk[..n]);
    }
}

fn tls_config(trust: &Trust<'_>) -> io::Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?;
    let config = match trust {
        Trust::Insecure => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(insecure::AcceptAny)).with_no_client_auth()
        }
        Trust::System | Trust::CaFile(_) => {
            let path = match trust {
                Trust::CaFile(p) => *p,
                _ => Path::new(SYSTEM_CAS),
            };
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| io::Error::new(io::ErrorKind::NotFound, format!("{}: {e}", path.display())))?
            {
                let cert = cert.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                roots.add(cert).map_err(io::Error::other)?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(Arc::new(config))
}

/// `--insecure`: for a probe against a test certificate; the probe still reports what it reached.
mod insecure {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    #[derive(Debug)]
    pub struct AcceptAny;

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }

        fn verify_tls13_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
        }
    }
}
