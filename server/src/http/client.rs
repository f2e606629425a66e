//! Outbound connections (subscription receivers, upstream platforms): plain TCP for
//! `http://`, TLS for `https://`, ready for hyper's HTTP/1.1 client.
//!
//! `https://` receivers are verified against the CA bundle of `--tls-ca-bundle FILE`
//! (PEM; only those CAs), by default against the Mozilla roots compiled into the
//! binary (`webpki-roots`: the same on every machine, nothing read from the system).
//! The receiver's certificate must name the URL's host (a DNS name or an IP address).

use std::path::Path;
use std::sync::Arc;

use hyper::body::Body;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

use crate::tls::TlsError;

/// How outbound TLS is verified: the trust anchors, shared by every connection.
#[derive(Clone)]
pub(crate) struct Outbound {
    tls: Arc<rustls::ClientConfig>,
    /// Where connections may go, for a receiver a platform named
    /// ([`super::egress`]); `None`: anywhere (the operator's own targets).
    policy: Option<Arc<super::egress::ReceivePolicy>>,
}

impl Outbound {
    /// Verifying against `ca_bundle` (PEM) when given, else the Mozilla roots.
    pub fn new(ca_bundle: Option<&Path>) -> Result<Outbound, TlsError> {
        let roots = match ca_bundle {
            Some(path) => crate::tls::roots(path)?,
            None => rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Outbound {
            tls: Arc::new(config),
            policy: None,
        })
    }

    /// The same trust, connecting only where `policy` permits (after resolving).
    pub fn checked(&self, policy: &super::egress::ReceivePolicy) -> Outbound {
        Outbound {
            tls: self.tls.clone(),
            policy: Some(Arc::new(policy.clone())),
        }
    }
}

/// Where to connect: scheme, host and port of an `http://` or `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    pub tls: bool,
    /// As in the URL (an IPv6 address in brackets).
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// The origin and the path (with its query; `/` when empty) of a URL; why not,
    /// when it is not an `http://` or `https://` URL with a host.
    pub fn parse(url: &str) -> Result<(Origin, String), String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err("only http:// and https:// receivers".into()),
        };
        let host = uri.host().filter(|h| !h.is_empty()).ok_or("no host")?;
        let origin = Origin {
            tls,
            host: host.to_string(),
            port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        Ok((origin, path))
    }

    /// `host:port`: what to connect to, and the `Host` header.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// Why a connection could not be made ready for requests.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("{0}")]
    Origin(String),
    #[error("TCP: {0}")]
    Tcp(std::io::Error),
    #[error("refused by the receiver policy: {0}")]
    Refused(String),
    #[error("{host:?} is not a name TLS can verify")]
    ServerName { host: String },
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    #[error("HTTP handshake: {0}")]
    Http(hyper::Error),
}

/// Connects to `origin` (`http://host:port`, `https://host:port`, or a whole URL whose
/// path is ignored) over TCP or TLS as its scheme says, and makes the HTTP/1.1
/// handshake; the connection is driven by a task of its own, which ends when the
/// sender is dropped. The caller bounds the time it waits.
pub(crate) async fn connect<B>(origin: &str, tls: &Outbound) -> Result<SendRequest<B>, ConnectError>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (origin, _) = Origin::parse(origin).map_err(ConnectError::Origin)?;
    let tcp = match &tls.policy {
        None => tokio::net::TcpStream::connect(origin.authority())
            .await
            .map_err(ConnectError::Tcp)?,
        Some(policy) => permitted_tcp(&origin, policy).await?,
    };
    let _ = tcp.set_nodelay(true);
    if !origin.tls {
        return handshake(tcp).await;
    }
    let host = origin.host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_string()).map_err(|_| ConnectError::ServerName {
        host: host.to_string(),
    })?;
    let stream = tokio_rustls::TlsConnector::from(tls.tls.clone())
        .connect(name, tcp)
        .await
        .map_err(ConnectError::Tls)?;
    handshake(stream).await
}

/// A TCP connection to the first address `origin`'s host resolves to (now) that
/// `policy` permits; refused when it permits none: what was checked is what is
/// connected to, so a name rebound between checks gains nothing.
async fn permitted_tcp(
    origin: &Origin,
    policy: &super::egress::ReceivePolicy,
) -> Result<tokio::net::TcpStream, ConnectError> {
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(origin.authority())
        .await
        .map_err(ConnectError::Tcp)?
        .collect();
    let mut refusal = None;
    let mut last = None;
    for addr in addrs {
        if let Some(why) = policy.refusal(addr.ip()) {
            refusal.get_or_insert(format!("{}: {why}", origin.host));
            continue;
        }
        match tokio::net::TcpStream::connect(addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = Some(e),
        }
    }
    Err(match (last, refusal) {
        (Some(e), _) => ConnectError::Tcp(e),
        (None, Some(why)) => ConnectError::Refused(why),
        (None, None) => ConnectError::Tcp(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} resolves to no address", origin.host),
        )),
    })
}

async fn handshake<B, S>(stream: S) -> Result<SendRequest<B>, ConnectError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(ConnectError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "outbound connection ended with an error");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_origin_and_path() {
        let (o, p) = Origin::parse("https://recv.example:8443/hook?x=1").unwrap();
        assert_eq!(o.to_string(), "https://recv.example:8443");
        assert_eq!(
            (o.authority().as_str(), p.as_str()),
            ("recv.example:8443", "/hook?x=1")
        );
        let (o, p) = Origin::parse("http://127.0.0.1").unwrap();
        assert_eq!(
            (o.to_string().as_str(), p.as_str()),
            ("http://127.0.0.1:80", "/")
        );
        assert_eq!(Origin::parse("https://h").unwrap().0.port, 443);
        let (o, _) = Origin::parse("https://[::1]:9/").unwrap();
        assert_eq!(o.authority(), "[::1]:9");
        for bad in ["ftp://x/", "x/hook", "not a url", "https:///path"] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bundle_that_is_not_pem_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle.pem");
        std::fs::write(&path, "nothing").unwrap();
        let e = Outbound::new(Some(&path)).err().unwrap().to_string();
        assert!(e.contains("bundle.pem"), "{e}");
        assert!(Outbound::new(None).is_ok());
    }
}
