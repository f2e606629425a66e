//! The cluster roles' HTTP (feature `cluster`; `ARCHITECTURE.md`, "Cluster"):
//!
//! * [`ingest`]: `sightline cluster ingest`, `POST /v1/events` onto the log.
//! * [`gat1400`]: the ingest nodes' GA/T 1400 gateway (`/VIID`): credentials, devices
//!   and registrations in PostgreSQL, pictures on S3 before their events are published.
//! * [`devices`]: `sightline cluster gat1400 add|list|remove`.
//! * [`pictures`]: `GET /v1/images/{id}` and `/v1/objects/{id}` on query nodes, from S3.
//! * [`keys`]: who may ask a query or ingest node: listed tokens, then the keys of the
//!   cluster's `api_keys` table, read every `index.renew_ms`.
//! * [`partitions`]: an indexer's listener answering query nodes' partition requests
//!   from the partitions it holds (`sightline_cluster::serving`).
//! * [`remote`]: a partition as a query node reaches it: its owner found in the
//!   leases, called, and asked again elsewhere when it fails or refuses.
//! * [`query`]: `sightline cluster query`, the investigator query endpoints answered
//!   through a `Federation` of remote partitions, and the console's files.
//! * [`service`]: what else a query node answers for the console (`/v1/whoami`, the
//!   catalog, `/v1/audit`), and 501 `not_in_cluster` for the rest of `serve`'s API.
//! * [`feed`]: `GET /v1/feed` (a cursor of a position per partition) and `GET
//!   /v1/admin/stats` on query nodes, over the federation.
//! * [`subscriptions`]: `/v1/subscriptions` on query nodes, in PostgreSQL;
//!   [`delivery`]: each subscription delivered by the one query node holding its
//!   lease, with `serve`'s delivery code; `gat1400::subscribes`: `/VIID/Subscribes`
//!   on ingest nodes, writing the same rows.
//! * [`catalog`]: communities and devices in the cluster's PostgreSQL, as `serve`
//!   checks and writes them.

mod alerting;
mod catalog;
mod delivery;
mod devices;
mod feed;
mod gat1400;
mod ingest;
mod key_admin;
mod keys;
mod partitions;
mod pictures;
mod query;
mod remote;
mod service;
mod subscriptions;
mod upstreams;
mod watchlists;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::Value;

use crate::error::ApiError;

pub use devices::{manage_devices, DeviceAction, NewDevice};
pub use ingest::run_ingest;
pub use partitions::{run_index, serve_partitions};
pub use query::run_query;

/// Serves HTTP/1.1 on `listener` until `shutdown` resolves: each accepted connection
/// (`TCP_NODELAY`) on a task of its own, each request answered by
/// `handle(state, request)`, at most `max_connections` at once (lowered to what the
/// open-file limit allows, as `serve` does: past it nothing is accepted until one
/// closes). The loop all three listeners share.
/// How long a stopping node waits for the connections it has to finish.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

async fn accept_loop<S, B, F, Fut>(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
    state: std::sync::Arc<S>,
    handle: F,
    max_connections: usize,
    tls: Option<std::sync::Arc<crate::tls::ServerTls>>,
) where
    S: Send + Sync + 'static,
    F: Fn(std::sync::Arc<S>, Request<Incoming>) -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response<B>, std::convert::Infallible>>
        + Send
        + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(shutdown);
    let limit = crate::serve::connection_limit(max_connections);
    let open = std::sync::Arc::new(tokio::sync::Semaphore::new(limit));
    // At the stop, the requests in hand are given a moment to finish (their audit
    // entries written before the log's last sync), at most `DRAIN`.
    let drained = |open: std::sync::Arc<tokio::sync::Semaphore>| async move {
        let all = u32::try_from(limit).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(DRAIN, open.acquire_many(all)).await;
    };
    let mut backoff = crate::serve::ACCEPT_BACKOFF_MIN;
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return drained(open).await,
            permit = open.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => {
                drop(permit);
                return drained(open).await;
            }
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    backoff = crate::serve::ACCEPT_BACKOFF_MIN;
                    a
                }
                // Out of descriptors (EMFILE) or the like: retried at once, the loop
                // would spin a core; wait, longer each time, as `serve` does.
                Err(e) => {
                    tracing::warn!(error = %e, wait_ms = backoff.as_millis() as u64, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(crate::serve::ACCEPT_BACKOFF_MAX);
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        let client_certificates = tls.as_ref().is_some_and(|t| t.asks_client_certificates());
        tokio::spawn(async move {
            let _open = permit;
            // Who is on the other end (the GA/T 1400 gateway binds a registration to
            // its address, as `serve`'s does).
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(crate::serve::Peer(peer.ip()));
                // A node does not drain a body it refused (API.md): after an error to
                // a request with a body, the connection closes, and the answer says
                // so (RFC 9112 §9.6), as `serve`'s does when it closes. Not after a
                // 400 or 422, which judge a body read whole.
                let has_body = !hyper::body::Body::is_end_stream(req.body());
                let answered = handle(state.clone(), req);
                async move {
                    let mut r = answered.await?;
                    let status = r.status();
                    // RFC 9110 §15.3.5: a 204 has no content, and so no type (as
                    // `serve`'s answers it).
                    if status == StatusCode::NO_CONTENT {
                        r.headers_mut().remove(hyper::header::CONTENT_TYPE);
                    }
                    let read_whole = matches!(status.as_u16(), 400 | 422);
                    if has_body
                        && !read_whole
                        && (status.is_client_error() || status.is_server_error())
                    {
                        r.headers_mut().insert(
                            hyper::header::CONNECTION,
                            hyper::header::HeaderValue::from_static("close"),
                        );
                    }
                    Ok::<_, std::convert::Infallible>(r)
                }
            });
            // A client that opens connections and never finishes a request head is
            // cut off as `serve` cuts it off.
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(crate::DEFAULT_HEADER_TIMEOUT);
            match acceptor {
                None => {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = http.serve_connection(io, service).await;
                }
                Some(acceptor) => {
                    // The handshake ends within the header timeout, as a request's head
                    // must (a client stalling in it holds a connection slot); a
                    // partition listener's clients are the cluster's own nodes, on its
                    // network: [`PARTITION_HANDSHAKE`].
                    let limit = match client_certificates {
                        true => PARTITION_HANDSHAKE,
                        false => crate::DEFAULT_HEADER_TIMEOUT,
                    };
                    let stream = match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, %peer, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = http.serve_connection(io, service).await;
                }
            }
        });
    }
}

/// Longest TLS handshake on a partition listener (mutual TLS between the cluster's
/// nodes, a round trip or two on their network): a stranger stalling in it holds
/// one of `max_connections` for this long at most.
const PARTITION_HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(3);

/// Which listener of a node [`listener_tls`] sets up.
#[derive(Clone, Copy)]
enum Listening {
    Public(sightline_cluster::tls::PublicListener),
    /// `index.serve`, `query.serve`.
    Partitions,
}

/// The TLS of one of this node's listeners, from `[tls]`: a public one
/// (`ingest.listen`, `query.listen`) unless named in `tls.plain`, with no client
/// certificate asked; a partition listener whenever `[tls]` is there, requiring a
/// client certificate the cluster's CA signed. Reloaded from its files on SIGHUP, as
/// `serve`'s (the client side is not: `sightline_cluster::tls`).
fn listener_tls(
    config: &sightline_cluster::ClusterConfig,
    which: Listening,
) -> Result<Option<std::sync::Arc<crate::tls::ServerTls>>, String> {
    let Some(t) = config.tls.as_ref() else {
        return Ok(None);
    };
    let partition = matches!(which, Listening::Partitions);
    if let Listening::Public(public) = which {
        if !t.serves(public) {
            return Ok(None);
        }
    }
    let files = crate::tls::TlsFiles {
        cert: t.cert.clone(),
        key: t.key.clone(),
        client_ca: partition.then(|| t.ca.clone()),
    };
    let tls =
        std::sync::Arc::new(crate::tls::ServerTls::load(&files).map_err(|e| format!("tls: {e}"))?);
    tokio::spawn(crate::serve::reload_on_hangup(tls.clone()));
    Ok(Some(tls))
}

/// `http` or `https`, as a listener speaks.
/// `[gat1400]`'s receiver policy (`http::egress`): where a platform's `ReceiveAddr`
/// may make the cluster send. Why not, naming the key, when a network does not read
/// (the node does not start).
pub(crate) fn receive_policy(
    c: &sightline_cluster::config::ClusterConfig,
) -> Result<crate::http::egress::ReceivePolicy, String> {
    let parse = |name: &str, list: &[String]| {
        crate::http::egress::parse_networks(&list.join(",")).map_err(|e| format!("{name}: {e}"))
    };
    Ok(crate::http::egress::ReceivePolicy {
        allow: parse("gat1400.receive_allow", &c.gat1400.receive_allow)?,
        deny: parse("gat1400.receive_deny", &c.gat1400.receive_deny)?,
        named: crate::http::egress::Named::ClusterToml,
    })
}

fn scheme(tls: &Option<std::sync::Arc<crate::tls::ServerTls>>) -> &'static str {
    match tls {
        Some(_) => "https",
        None => "http",
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    text_reply(status, body.to_string())
}

fn text_reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

fn error(e: ApiError) -> Response<Full<Bytes>> {
    let mut r = reply(e.status(), e.json());
    crate::http::body::error_headers(&e, r.headers_mut());
    r
}
