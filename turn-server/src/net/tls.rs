//! TLS for `turns:`: certificates loaded with rustls and swapped at runtime. A bad new certificate
//! never replaces a good one: the old acceptor stays and the reason is logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate chain {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("cannot read private key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("certificate and key do not make a TLS config: {0}")]
    Config(#[from] rustls::Error),
}

/// Where the certificate and key live (coturn's `--cert` and `--pkey`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    pub fn load(&self) -> Result<TlsAcceptor, TlsError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError::Cert { path: self.cert.clone(), reason: e.to_string() })?;
        if certs.is_empty() {
            return Err(TlsError::Cert { path: self.cert.clone(), reason: "no CERTIFICATE block".into() });
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| TlsError::Key { path: self.key.clone(), reason: e.to_string() })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        // No ALPN list: rustls would refuse clients that offer others, and browsers offer none for TURN.
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Modification times of both files, to notice a renewed certificate (certbot, acme.sh).
    pub fn modified(&self) -> Option<(SystemTime, SystemTime)> {
        let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        Some((m(&self.cert)?, m(&self.key)?))
    }
}
