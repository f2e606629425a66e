//! The ingest role (`sightline cluster ingest`, feature `cluster`):
//! `POST /v1/events` as `sightline serve` takes it (and the GA/T 1400 gateway's
//! `/VIID` routes: `super::gat1400`) — NDJSON, a JSON array or a binary
//! batch, each record validated on its own (a refused record is named by line and
//! field, the rest go on) — but the valid events are published to NATS JetStream
//! (`sightline_cluster::log::Publisher`) instead of a local store, and the answer is
//! sent only once every one has its PubAck (a quorum of the stream's replicas holds
//! it). The answer's shape is `serve`'s; its `ids` are the events' log (stream)
//! sequence numbers, known at once, since the cluster event id (`partition << 48 |
//! local seq`, `sightline_cluster::partition::event_id`) is given only by the
//! partition's indexer.
//!
//! Keys (`super::keys`): a token listed in `ingest.token_sha256` (every community),
//! else an active key of the cluster's `api_keys` table with role `ingest` or `admin`
//! (`Authorization: Bearer …` or `X-Api-Key`), checked before the body is read. A key
//! scoped to communities writes only those: a record of another is refused by line,
//! field `community`, with `serve`'s message, and the rest go on. Ingest is not
//! audited (as on `serve`, it is no investigation). Each acknowledged event is matched
//! against the watchlists and its alerts written before the answer
//! (`super::alerting`; `alerts` counts the new ones).
//! Bounds: 32 requests at once (429 with `Retry-After` beyond), `max_body_bytes`,
//! `max_batch_records`.

use sightline_cluster::tls::PublicListener;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use sightline_cluster::log::{self, Publisher};
use sightline_cluster::meta::Meta;
use sightline_cluster::ClusterConfig;
use sightline_storage::{Event, EventInput, EventRef, ValidationError, Validator};

use super::alerting::Alerting;
use super::gat1400::GatNode;
use super::keys::ClusterKeys;
use super::{error, reply};
use crate::auth::Role;
use crate::error::{ApiError, RecordError};
use crate::ingest::{in_scope, parse, wire};

/// Requests being ingested at once (as `serve`'s ingest slots): a request beyond
/// them is answered 429 before its body is read, so buffered bodies are bounded by
/// slots × `max_body_bytes`.
const INGEST_SLOTS: usize = 32;
/// How long a starting ingest node waits for PostgreSQL (it reads P there).
const META_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

struct Ingest {
    config: ClusterConfig,
    /// The NATS client the publisher uses (its connection state is the health).
    nats: log::NatsClient,
    publisher: Publisher,
    validator: Validator,
    slots: Arc<tokio::sync::Semaphore>,
    keys: Arc<ClusterKeys>,
    /// The GA/T 1400 gateway (`/VIID/…`).
    gat1400: Arc<GatNode>,
    /// The watchlists and the alerts they raise.
    alerting: Arc<Alerting>,
}

/// Binds the ingest role and serves until `shutdown` completes. Prints `listening on
/// http://ADDR` once bound.
pub async fn run_ingest(
    config: ClusterConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let (nats, js) = log::connect_client(&config)
        .await
        .map_err(|e| e.to_string())?;
    log::ensure_stream(&js, &config)
        .await
        .map_err(|e| e.to_string())?;
    let partitions = partitions(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.ingest.listen)
        .await
        .map_err(|e| format!("binding {}: {e}", config.ingest.listen))?;
    let addr: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
    let keys = ClusterKeys::new(
        &config.ingest.token_sha256,
        addr.ip().is_loopback(),
        Role::Ingest,
    );
    let loading = keys.start(&config).await;
    let publisher = Publisher::new(js, partitions).refusing_when_disconnected(nats.clone());
    let (alerting, watching) = Alerting::start(&config).await;
    let (gat1400, reading) =
        GatNode::start(&config, publisher.clone(), alerting.clone(), partitions).await?;
    let tls = super::listener_tls(&config, super::Listening::Public(PublicListener::Ingest))?;
    println!("listening on {}://{addr}", super::scheme(&tls));
    let state = Arc::new(Ingest {
        publisher,
        gat1400,
        alerting,
        nats,
        validator: Validator::default(),
        slots: Arc::new(tokio::sync::Semaphore::new(INGEST_SLOTS)),
        keys,
        config,
    });
    let max_connections = state.config.max_connections;
    let syncing = super::query::AuditSync::start(state.gat1400.audit());
    super::accept_loop(listener, shutdown, state, handle, max_connections, tls).await;
    syncing.stop().await;
    loading.abort();
    reading.abort();
    watching.abort();
    Ok(())
}

/// P, from PostgreSQL (creating the cluster's tables if this node is the first),
/// tried again for up to [`META_WAIT`].
pub(super) async fn partitions(config: &ClusterConfig) -> Result<u32, String> {
    let deadline = tokio::time::Instant::now() + META_WAIT;
    loop {
        let got = async {
            let mut meta = Meta::connect(&config.postgres).await?;
            meta.create(config.partitions).await
        }
        .await;
        match got {
            Ok(p) => return Ok(p),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "PostgreSQL not ready; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

async fn handle(
    state: Arc<Ingest>,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // As `serve` routes it: `/VIID/%46aces/` is `/VIID/Faces`.
    crate::routes::canonical_request(&mut req);
    let viid = super::gat1400::answers(req.uri().path());
    // RFC 9112 §3.2, as `serve` answers it (health probes too; a device in GA/T
    // 1400's shape).
    if let Some(why) = crate::routes::host_problem(&req) {
        return Ok(match viid {
            true => super::gat1400::refused_before(&state.gat1400, &req, ApiError::BadHost(why)),
            false => error(ApiError::BadHost(why)),
        });
    }
    // RFC 9110 §15.6.2: a method no resource takes (serve's table says which; OPTIONS
    // is answered for every path, as `serve` answers it).
    if req.method() != hyper::Method::OPTIONS && !crate::routes::routes().implements(req.method()) {
        let e = ApiError::NotImplemented(req.method().to_string());
        return Ok(match viid {
            true => super::gat1400::refused_before(&state.gat1400, &req, e),
            false => error(e),
        });
    }
    // RFC 9112 §6.1, as `serve` answers it: hyper undoes `chunked` only; a body in
    // another transfer coding would be read as if it were plain.
    if let Some(coding) = crate::routes::other_transfer_coding(req.headers()) {
        let e = ApiError::TransferCoding(coding);
        return Ok(match viid {
            true => super::gat1400::refused_before(&state.gat1400, &req, e),
            false => error(e),
        });
    }
    Ok(match (req.method().as_str(), req.uri().path()) {
        // Unhealthy while not connected to NATS: a load balancer sends the events
        // to another ingest node meanwhile (this one would answer 503 to each).
        // HEAD wherever GET (hyper sends the head only).
        ("GET" | "HEAD", "/health" | "/v1/health") => {
            let (connected, nats) = log::nats_state(&state.nats);
            let status = match connected {
                true => StatusCode::OK,
                false => StatusCode::SERVICE_UNAVAILABLE,
            };
            let said = if connected { "ok" } else { "unavailable" };
            // When the GA/T 1400 gateway last read its tables (null: never).
            let gat1400_age_ms = state.gat1400.age().map(|a| a.as_millis() as u64);
            reply(
                status,
                json!({"status": said, "role": "ingest", "nats": nats,
                       "gat1400_age_ms": gat1400_age_ms,
                       "gat1400_relays_unreadable": state.gat1400.relays_unreadable(),
                       "watchlists_unreadable": state.alerting.unreadable()}),
            )
        }
        ("POST", "/v1/events") => match post_events(&state, req).await {
            Ok(r) => r,
            Err(e) => error(e),
        },
        (_, path) if super::gat1400::answers(path) => {
            super::gat1400::handle(&state.gat1400, req).await
        }
        (method, "*") if method != "OPTIONS" => error(ApiError::NoSuchEndpoint("*".into())),
        (method, path) => match own_methods(path) {
            // RFC 9110 §9.3.7 and §15.5.6, as `serve` answers them.
            Some(allowed) => {
                let mut r = match method {
                    "OPTIONS" => {
                        let mut r = Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = StatusCode::NO_CONTENT;
                        r
                    }
                    _ => error(ApiError::MethodNotAllowed {
                        path: path.to_string(),
                        allowed: allowed.to_string(),
                        method: method.to_string(),
                    }),
                };
                r.headers_mut().insert(
                    hyper::header::ALLOW,
                    hyper::header::HeaderValue::from_static(allowed),
                );
                r
            }
            None => error(ApiError::NoSuchEndpoint(
                "no such route on an ingest node".into(),
            )),
        },
    })
}

/// The methods an ingest node's own paths take (`Allow`).
fn own_methods(path: &str) -> Option<&'static str> {
    match path {
        "/health" | "/v1/health" => Some("GET, HEAD, OPTIONS"),
        "/v1/events" => Some("POST, OPTIONS"),
        // RFC 9110 §9.3.7: `OPTIONS *` asks of the server as a whole (as `serve`
        // answers it); no other method takes `*`.
        "*" => Some(crate::routes::ALL_METHODS),
        _ => None,
    }
}

async fn post_events(
    state: &Ingest,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let caller = state.keys.authorize(crate::routes::token(&req))?;
    // As on `serve`: this write takes no query string (`?dry_run=1` is refused).
    crate::params::Params::parse(req.uri().query()).only(&[])?;
    let scope = caller.communities.as_deref();
    let _slot = state
        .slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Busy("ingest"))?;
    let binary = wire::is_binary(
        req.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
    );
    let max = state.config.ingest.max_body_bytes;
    // As `serve` reads it: 413 past `max_body_bytes`, 408 past the body timeout or
    // below the minimum rate (a client trickling a body would hold a slot for good).
    // A Content-Length past `max`: 413 before `100 Continue`, as on `serve`.
    let (head, body) = req.into_parts();
    // As `serve` decodes it (`http::call`): gzip/x-gzip inflated within `max`,
    // another coding 415 before the body is read, a UTF-8 byte order mark dropped.
    let gzipped = crate::http::call::gzipped(&head.headers)?;
    crate::http::call::taken_media_type(&head.headers)?;
    let body = crate::http::body::refuse_declared((&head.headers, &head.extensions), body, max)?;
    let (body, _) = crate::http::body::read_paced(
        body,
        max,
        None,
        crate::DEFAULT_BODY_TIMEOUT,
        crate::DEFAULT_MIN_BODY_RATE,
    )
    .await?;
    let body = crate::http::call::decoded(body, gzipped, binary, max).await?;
    let now = crate::now_ms();
    let mut valid: Vec<Event> = Vec::new();
    // (position, index into `valid` or why refused), in input order.
    let mut fates: Vec<(usize, Result<usize, RecordError>)> = Vec::new();
    let mut admit = |pos: usize, checked: Result<Event, RecordError>| {
        let fate = checked.map(|e| {
            valid.push(e);
            valid.len() - 1
        });
        fates.push((pos, fate));
    };
    let refused = |pos: usize| move |v: ValidationError| RecordError::new(pos, v.field, v.reason);
    let records = state.config.ingest.max_batch_records;
    if binary {
        let decoded: Vec<EventRef<'_>> = wire::decode(&body).map_err(|e| {
            ApiError::MalformedBody(format!("not a {} batch: {e}", wire::CONTENT_TYPE))
        })?;
        check_size(decoded.len(), records)?;
        for (i, e) in decoded.iter().enumerate() {
            let checked = in_scope(scope, i, e.community)
                .and_then(|()| state.validator.validate_ref(e, now).map_err(refused(i)));
            admit(i, checked);
        }
    } else {
        let parsed = parse::records(&body)?;
        check_size(parsed.len(), records)?;
        for (pos, r) in parsed {
            let checked = r.and_then(|input: EventInput| {
                in_scope(scope, pos, &input.community)?;
                state.validator.validate(input, now).map_err(refused(pos))
            });
            admit(pos, checked);
        }
    }
    // Not one acknowledged that might raise an alert this node cannot see.
    state.alerting.ready()?;
    // The alerts written before the answer; a re-send of the same events (a duplicate
    // PubAck) writes what an earlier attempt could not, never an alert twice.
    let (published, alerts) = match valid.is_empty() {
        true => (Vec::new(), 0),
        false => state.alerting.publish(&state.publisher, valid).await?,
    };
    let (mut stored, mut duplicates, mut ids, mut errors) =
        (0usize, 0usize, Vec::new(), Vec::new());
    for (_, fate) in fates {
        match fate {
            Ok(i) => {
                let p = published[i];
                match p.duplicate {
                    true => duplicates += 1,
                    false => stored += 1,
                }
                ids.push(p.seq);
            }
            Err(e) => errors.push(e),
        }
    }
    errors.sort_by_key(|e| e.line);
    if stored + duplicates == 0 {
        return Err(ApiError::InvalidEvents { errors });
    }
    Ok(reply(
        StatusCode::OK,
        json!({
            "stored": stored,
            "duplicates": duplicates,
            "rejected": errors.len(),
            "ids": ids,
            "errors": errors.iter().map(RecordError::json).collect::<Vec<_>>(),
            "alerts": alerts,
        }),
    ))
}

fn check_size(records: usize, max: usize) -> Result<(), ApiError> {
    match records {
        0 => Err(ApiError::NoEvents),
        n if n > max => Err(ApiError::TooManyRecords { records: n, max }),
        _ => Ok(()),
    }
}
