//! TLS for the listener (rustls, on ring): the certificate and key from PEM files,
//! reloaded on SIGHUP without closing the listener, and optional client certificates
//! (mTLS) that name who is connecting.
//!
//! * `--tls-cert FILE --tls-key FILE`: the listener speaks only TLS (TLS 1.2 and 1.3,
//!   HTTP/1.1 by ALPN), every endpoint including `/VIID`. The handshake must end
//!   within the header timeout.
//! * `--tls-client-ca FILE`: a client certificate signed by one of these CAs is
//!   *required*; a client without one is refused at the handshake. What it proves:
//!   the peer holds a key the CA certified. It names the caller too ([`ClientCert`]):
//!   a request without an API key authenticates as the active key whose id is the
//!   certificate's subject CN or one of its DNS names; a `/VIID` request whose
//!   `User-Identify` is one of them counts as that device or platform authenticated.
//! * SIGHUP (or [`ServerTls::reload`]) reads the files again: connections accepted
//!   after it get the new certificate, those open keep theirs; files that do not make
//!   a valid configuration are logged and the old one is kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The PEM files of the listener's TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// With it, clients must present a certificate signed by one of these CAs.
    pub client_ca: Option<PathBuf>,
}

/// Why TLS cannot be set up; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate in it")]
    NoCertificate { path: PathBuf },
    #[error("{path}: not PEM: {reason}")]
    NotPem { path: PathBuf, reason: String },
    #[error("{path}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it")]
    NoKey { path: PathBuf },
    #[error("{path}: {reason}")]
    Refused { path: PathBuf, reason: String },
}

/// The provider every TLS configuration of the server uses.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Unreadable {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM file (at least one).
pub(crate) fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::NotPem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    match certs.is_empty() {
        true => Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        }),
        false => Ok(certs),
    }
}

/// The certificates of a PEM file as trust anchors.
pub(crate) fn roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|e| TlsError::Refused {
            path: path.to_path_buf(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        e => TlsError::NotPem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
    })
}

/// A server configuration from the files: the chain, a key that matches it, and the
/// client CA's verifier when given.
fn build(files: &TlsFiles) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider,
            )
            .build()
            .map_err(|e| TlsError::Refused {
                path: ca.clone(),
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let certs = certificates(&files.cert)?;
    let key = private_key(&files.key)?;
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Refused {
            path: files.key.clone(),
            reason: format!("does not go with {}: {e}", files.cert.display()),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The listener's TLS: the files, and the configuration new connections get.
pub struct ServerTls {
    files: TlsFiles,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl ServerTls {
    /// Reads the files; fails naming the file that is missing or wrong.
    pub fn load(files: &TlsFiles) -> Result<ServerTls, TlsError> {
        Ok(ServerTls {
            current: RwLock::new(Arc::new(build(files)?)),
            files: files.clone(),
        })
    }

    /// Reads the files again: connections accepted from now on get the new
    /// configuration; on an error the old one stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(build(&self.files)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// [`ServerTls::reload`], logged either way (SIGHUP).
    pub fn reload_logged(&self) {
        match self.reload() {
            Ok(()) => tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded"),
            Err(e) => tracing::error!(error = %e, "TLS reload failed; the old certificate stays"),
        }
    }

    /// Whether clients must present a certificate (`client_ca`).
    pub(crate) fn asks_client_certificates(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// The acceptor for a connection accepted now.
    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let config = self.current.read().unwrap_or_else(|p| p.into_inner());
        tokio_rustls::TlsAcceptor::from(config.clone())
    }
}

/// The names a verified client certificate gives its holder: the subject's common
/// names and the DNS names of its subject alternative names. Put into each request of
/// the connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ClientCert(pub Arc<[String]>);

impl ClientCert {
    /// The names of a DER certificate (none when it does not parse: rustls verified
    /// the chain already, so a name we cannot read only names nobody).
    pub fn of(der: &[u8]) -> ClientCert {
        use x509_parser::extensions::GeneralName;
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            return ClientCert::default();
        };
        let mut names: Vec<String> = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .map(str::to_string)
            .collect();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::DNSName(dns) = name {
                    names.push(dns.to_string());
                }
            }
        }
        ClientCert(names.into())
    }

    /// Whether the certificate names `name`.
    pub fn names(&self, name: &str) -> bool {
        self.0.iter().any(|n| n == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_wrong_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let files = TlsFiles {
            cert: dir.path().join("none.pem"),
            key: garbage.clone(),
            client_ca: None,
        };
        let e = ServerTls::load(&files).err().unwrap().to_string();
        assert!(e.contains("none.pem"), "{e}");
        let files = TlsFiles {
            cert: garbage.clone(),
            ..files
        };
        let e = ServerTls::load(&files).err().unwrap().to_string();
        assert!(
            e.contains("garbage.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
    }
}
