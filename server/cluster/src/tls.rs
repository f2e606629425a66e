//! TLS between a cluster's nodes and to its engines (rustls on ring), from the
//! `[tls]` section of `cluster.toml` ([`TlsConfig`]): one certificate and key per
//! node, and the CA that signed every node's certificate and the engines'.
//!
//! * **Partition links** (query node → indexer, query node → query node, `POST
//!   /v1/partition`): mutual TLS. The listeners (`index.serve`, `query.serve`)
//!   require a client certificate the CA signed; the caller checks the listener's
//!   certificate against the CA and the address it dialled (an IP address must be in
//!   the certificate's subject alternative names, a host name likewise). Without a
//!   node's certificate nobody completes a handshake there, so the
//!   `partition_token` no longer crosses the network in clear.
//! * **Public listeners** (`ingest.listen`, `query.listen`): TLS with the node's
//!   certificate, unless named in `tls.plain` (GA/T 1400 cameras that speak only
//!   plain HTTP to their 视图库: `plain = ["ingest"]`; that listener's keys and
//!   digests then cross in clear, which the operator chose by naming it).
//! * **PostgreSQL**: a connection string with `sslmode=require` is made over TLS, the
//!   server's certificate checked against the CA *and* its host name (libpq's
//!   `verify-full`; tokio-postgres knows no `verify-full` spelling, so `require`
//!   means it here). `prefer` and `disable` stay plain (`prefer` would otherwise fail
//!   against a self-signed certificate a libpq client accepts).
//! * **NATS**: `tls://` URLs (or a server that requires TLS) are checked against the
//!   CA, and the node's certificate is presented (NATS `verify` may require it).
//! * **S3**: an `https://` endpoint is checked against the CA as well as the
//!   system's roots.
//!
//! Without `allow_plaintext`, a node refuses to start with an engine beyond loopback
//! reached in clear (PostgreSQL without `sslmode=require` over TCP, a `nats://` URL,
//! an `http://` S3 endpoint). The files are read once at start: SIGHUP reloads the
//! listeners' certificate and key, but the client side (partition calls,
//! PostgreSQL, NATS, S3) keeps what it read until the process restarts — renew a
//! node's certificate by restarting it, one node at a time.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::error::{ClusterError, Result};

/// `[tls]` of `cluster.toml`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// This node's certificate chain (PEM, leaf first): served on its listeners and
    /// presented as its client certificate to other nodes and to NATS.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA certificates (PEM) that signed every node's certificate and the
    /// engines' (PostgreSQL, NATS, S3): the only roots partition links trust.
    pub ca: PathBuf,
    /// Public listeners left in plain HTTP (`"ingest"`, `"query"`; default none: both
    /// speak TLS). A listener named here is let bind beyond loopback in clear: its
    /// clients' keys and digests cross the network unencrypted.
    #[serde(default)]
    pub plain: Vec<PublicListener>,
}

/// A public listener of a node.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PublicListener {
    /// `ingest.listen`.
    Ingest,
    /// `query.listen`.
    Query,
}

impl TlsConfig {
    /// Whether public listener `which` speaks TLS.
    pub fn serves(&self, which: PublicListener) -> bool {
        !self.plain.contains(&which)
    }
}

pub(crate) fn tls_error(path: &Path, reason: impl std::fmt::Display) -> ClusterError {
    ClusterError::Config(format!("tls: {}: {reason}", path.display()))
}

/// Every certificate of a PEM file (at least one).
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).map_err(|e| tls_error(path, e))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_error(path, format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).map_err(|e| tls_error(path, e))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            tls_error(path, "no PEM private key (PKCS#8, PKCS#1 or SEC1) in it")
        }
        e => tls_error(path, format!("not PEM: {e}")),
    })
}

/// The certificates of a PEM file as the only trust anchors.
pub fn roots(path: &Path) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| tls_error(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsConfig {
    /// A client configuration trusting only the CA, presenting this node's
    /// certificate: partition links and NATS.
    pub fn client(&self) -> Result<Arc<rustls::ClientConfig>> {
        let certs = certificates(&self.cert)?;
        let key = private_key(&self.key)?;
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots(&self.ca)?)
            .with_client_auth_cert(certs, key)
            .map_err(|e| {
                tls_error(
                    &self.key,
                    format!("does not go with {}: {e}", self.cert.display()),
                )
            })?;
        Ok(Arc::new(config))
    }
}

/// What [`install`] set up for this process.
struct Installed {
    config: TlsConfig,
    /// The CA's certificates as read at [`install`] (S3's extra roots): never read
    /// from the file again.
    ca: Vec<CertificateDer<'static>>,
    /// Partition links and NATS: trusts only the CA, presents the node's certificate.
    client: Arc<rustls::ClientConfig>,
    /// PostgreSQL connections with `sslmode=require`.
    postgres: tokio_postgres_rustls::MakeRustlsConnect,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Reads `tls`'s files (refusing a bad one, naming it) and makes every connection
/// this process opens afterwards use them: PostgreSQL with `sslmode=require`, NATS,
/// S3, partition links. Called once at start (every role of a process reads one
/// `cluster.toml`; a second call keeps the first).
pub fn install(tls: &TlsConfig) -> Result<()> {
    let client = tls.client()?;
    let postgres = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots(&tls.ca)?)
        .with_no_client_auth();
    let _ = INSTALLED.set(Installed {
        config: tls.clone(),
        ca: certificates(&tls.ca)?,
        client,
        postgres: tokio_postgres_rustls::MakeRustlsConnect::new(postgres),
    });
    Ok(())
}

/// The `[tls]` [`install`]ed, if any.
pub fn installed() -> Option<&'static TlsConfig> {
    INSTALLED.get().map(|i| &i.config)
}

/// The CA's certificates read at [`install`] (none when not installed).
pub fn ca_certificates() -> &'static [CertificateDer<'static>] {
    INSTALLED.get().map_or(&[], |i| &i.ca)
}

/// The client configuration of partition links, when [`install`]ed.
pub fn client_config() -> Option<Arc<rustls::ClientConfig>> {
    INSTALLED.get().map(|i| i.client.clone())
}

/// The connector for `sslmode=require`, when [`install`]ed.
pub(crate) fn postgres_connector() -> Option<tokio_postgres_rustls::MakeRustlsConnect> {
    INSTALLED.get().map(|i| i.postgres.clone())
}

/// Whether a libpq connection string asks for TLS (`sslmode=require`).
pub fn postgres_requires_tls(conninfo: &str) -> bool {
    conninfo
        .parse::<tokio_postgres::Config>()
        .is_ok_and(|c| c.get_ssl_mode() == tokio_postgres::config::SslMode::Require)
}
