//! A partition listener: an indexer's (`index.serve`, advertised in `members.address`)
//! or a query node's for its read replicas (`query.serve`, in
//! `query_members.address`):
//! `POST /v1/partition` with a federated `Request` (bincode 2) is answered with a
//! `PartitionReply` from the partitions this indexer holds and has caught up
//! (`sightline_cluster::serving`); a partition it does not serve is answered
//! `NotHeld`, so the query node looks for its owner again. `GET /health` (or `/v1/health`) lists the
//! partitions served. With the cluster's `partition_token`, a partition request
//! without it (`Authorization: Bearer …`) is refused 401 before its body is read;
//! without one the listener must bind loopback (`ClusterConfig::check`). Bounds: [`PARTITION_SLOTS`] requests at
//! once (429 beyond), bodies of `serving::MAX_REQUEST_BYTES`.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use sightline_cluster::serving::{self, Held};
use sightline_storage::SegmentCache;

use super::{error, reply};
use crate::error::ApiError;

/// Partition requests answered at once (each a query on the blocking pool).
const PARTITION_SLOTS: usize = 64;

/// The index role: binds `index.serve`, answers partition requests there, and runs
/// the indexer (`sightline_cluster::indexer::run`) advertising that address.
pub async fn run_index(
    config: sightline_cluster::ClusterConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(config.index.serve)
        .await
        .map_err(|e| format!("binding {}: {e}", config.index.serve))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let held = Held::new(&config.owner());
    tracing::info!(%addr, "answering partition requests");
    let token = config.partition_token.clone();
    let most = config.max_connections;
    let tls = super::listener_tls(&config, super::Listening::Partitions)?;
    // Old segments of partitions taken over, fetched on first use
    // (`index.segment_cache_bytes`); its counters in this listener's `/health`.
    let cache = sightline_cluster::indexer::segment_cache(&config);
    let serving = tokio::spawn(serve_partitions(
        listener,
        held.clone(),
        "index",
        token,
        most,
        tls,
        cache.clone(),
    ));
    let address = Some(addr.to_string());
    let ran = sightline_cluster::indexer::run(config, held, address, cache, shutdown)
        .await
        .map_err(|e| e.to_string());
    serving.abort();
    ran
}

/// What a partition listener holds.
struct Listener {
    held: Arc<Held>,
    slots: Arc<tokio::sync::Semaphore>,
    /// What its health says it is.
    role: &'static str,
    /// SHA-256 of the cluster's `partition_token`: a partition request must carry it.
    token_sha256: Option<String>,
    /// The segment cache of the partitions served here (its counters in `/health`).
    cache: Option<Arc<SegmentCache>>,
}

/// A segment cache's counters as `/health` reports them (`null` without one).
pub(super) fn cache_health(cache: Option<&SegmentCache>) -> serde_json::Value {
    match cache.map(SegmentCache::stats) {
        None => serde_json::Value::Null,
        Some(s) => json!({
            "capacity_bytes": s.capacity_bytes,
            "bytes": s.bytes,
            "segments": s.segments,
            "hits": s.hits,
            "misses": s.misses,
            "evictions": s.evictions,
            "fetched_bytes": s.fetched_bytes,
            "failures": s.failures,
        }),
    }
}

/// Answers partition requests on `listener` from `held`, until the process ends;
/// `role` is what its health says it is. With `token` (the cluster's
/// `partition_token`), `POST /v1/partition` without it as a bearer token is refused
/// 401 before its body is read. At most `max_connections` connections at once. With
/// `tls`, only TLS (mutual: `super::listener_tls`). `cache`'s counters (the segments
/// its partitions fetched) are in its `/health`.
pub async fn serve_partitions(
    listener: tokio::net::TcpListener,
    held: Arc<Held>,
    role: &'static str,
    token: Option<String>,
    max_connections: usize,
    tls: Option<Arc<crate::tls::ServerTls>>,
    cache: Option<Arc<SegmentCache>>,
) {
    let state = Arc::new(Listener {
        held,
        slots: Arc::new(tokio::sync::Semaphore::new(PARTITION_SLOTS)),
        role,
        token_sha256: token.map(|t| crate::auth::sha256_hex(t.as_bytes())),
        cache,
    });
    super::accept_loop(
        listener,
        std::future::pending(),
        state,
        handle,
        max_connections,
        tls,
    )
    .await;
}

async fn handle(
    state: Arc<Listener>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (held, slots, role) = (state.held.clone(), state.slots.clone(), state.role);
    if req.uri().path() == "/v1/partition" {
        if let Some(want) = &state.token_sha256 {
            let given = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            // Hashes compared, not the secret: nothing learnt from the comparison's time.
            if given.is_none_or(|t| crate::auth::sha256_hex(t.as_bytes()) != *want) {
                return Ok(error(ApiError::Unauthorized(
                    "a partition request needs the cluster's partition_token".into(),
                )));
            }
        }
    }
    Ok(match (req.method().as_str(), req.uri().path()) {
        ("GET", "/health" | "/v1/health") => reply(
            StatusCode::OK,
            json!({
                "status": "ok",
                "role": role,
                "serving": held.served(),
                "segment_cache": cache_health(state.cache.as_deref()),
            }),
        ),
        ("POST", "/v1/partition") => match answer(held, slots, req).await {
            Ok(r) => r,
            Err(e) => error(e),
        },
        _ => error(ApiError::NoSuchEndpoint(
            "no such route on a partition listener".into(),
        )),
    })
}

async fn answer(
    held: Arc<Held>,
    slots: Arc<tokio::sync::Semaphore>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let _slot = slots
        .try_acquire_owned()
        .map_err(|_| ApiError::Busy("the partition service"))?;
    let max = serving::MAX_REQUEST_BYTES;
    let body = Limited::new(req.into_body(), max)
        .collect()
        .await
        .map_err(|_| ApiError::BodyTooLarge(max))?
        .to_bytes();
    let request = serving::decode_request(&body).map_err(ApiError::MalformedBody)?;
    let bytes = tokio::task::spawn_blocking(move || serving::encode_reply(&held.answer(&request)))
        .await
        .map_err(|e| ApiError::internal(format!("the partition's task failed: {e}")))?;
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", serving::CONTENT_TYPE)
        .body(Full::new(Bytes::from(bytes)))
        .expect("a valid response"))
}
