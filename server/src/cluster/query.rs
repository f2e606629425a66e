//! The query role (`sightline cluster query`): the investigator query endpoints with
//! `serve`'s parameters, errors and JSON (the same parsing and writing functions in
//! `crate::queries`; unknown parameters refused against the same route table), each
//! answered by a `Federation` over the cluster's P partitions, every one a
//! [`RemotePartition`] (asked of this node's own read replica, other query nodes'
//! replicas, then its indexer; the next at once when one fails). With
//! `query.replicas > 0` the node holds read replicas of the partitions rendezvous
//! hashing assigns it (`sightline_cluster::replica`) and answers other query nodes'
//! partition requests for them on `query.serve`. Any query node answers any query.
//!
//! Endpoints:
//! * queries, through the federation: `GET /v1/trajectory` (pages, or with `Accept:
//!   application/x-ndjson` every sighting after the cursor, streamed a round of pages
//!   at a time), `GET /v1/cooccurrence`, `POST /v1/collision`, `GET /v1/search`,
//!   `/v1/frequency`, `/v1/nocturnal`, `/v1/first-seen`, `/v1/overnight`,
//!   `/v1/counts`, `GET /v1/events/{id}` (a cluster id, `partition << 48 | seq`); list
//!   answers as NDJSON lines when asked, as `serve`;
//! * the investigator console: its page and files, `GET /` and `GET /console/{file}`
//!   (`crate::console`: the same bytes, tags and Content-Security-Policy as `serve`;
//!   no key, not audited);
//! * for the console, in `super::service`: `GET /v1/whoami` (the caller's cluster key),
//!   `GET /v1/communities`, `GET /v1/communities/{code}`, `GET /v1/devices`, `GET
//!   /v1/devices/{code}`, and `PUT` of a community or device (admin), over the
//!   catalog in PostgreSQL (`super::catalog`), and `GET /v1/audit` (admin: this node's
//!   audit log), each with `serve`'s roles, parameters, checks and JSON;
//! * `GET /v1/images/{id}`, `GET /v1/objects/{id}`: the GA/T 1400 gateway's pictures
//!   and objects as uploaded, from object storage (`super::pictures`);
//! * `GET /health` (no key).
//!
//! * in `super::feed` (through `super::service`): `GET /v1/feed` (its cursor a
//!   position per partition), `GET /v1/admin/stats`, `GET/PUT /v1/admin/retention`.
//!
//! * in `super::subscriptions` (through `super::service`): `GET`/`POST
//!   /v1/subscriptions`, `DELETE /v1/subscriptions/{id}`, in PostgreSQL; every query
//!   node delivers those whose leases it holds (`super::delivery`).
//! * in `super::upstreams` (through `super::service`): `GET`/`POST /v1/upstreams`,
//!   `GET`/`DELETE /v1/upstreams/{id}`, `GET`/`POST /v1/remote-subscriptions`,
//!   `DELETE /v1/remote-subscriptions/{id}`, in PostgreSQL; the node holding an
//!   upstream's lease keeps its registration and uploads, the node holding a remote
//!   subscription's lease places it.
//!
//! Every other endpoint of `serve`'s API (GA/T 1400, which ingest nodes take;
//! ingest, too) is answered 501 `not_in_cluster`
//! naming it; a path `serve` does not have, 404.
//!
//! Keys (`super::keys`): a token listed in `query.token_sha256` (every community),
//! else an active key of the cluster's `api_keys` table with role `investigate` or
//! `admin`, checked before any body is read (401 without one, 403 for another role;
//! 503 while the table has never been read). A key scoped to communities is confined
//! to them as on `serve`: a query naming another community is refused (403 naming the
//! field), and its scope is each query's `Call::scope`, which every
//! partition applies (a community outside it holds nothing for that key, and an event
//! of one is answered 404 `no_such_event`, as an unknown id).
//!
//! Audit: every request but `/health` is one entry of this node's hash-chained audit
//! log (`crate::audit::AuditLog`, in `query.audit_dir`, its head in a catalog beside
//! it, fsynced every second; `sightline audit verify --data DIR` checks it): the key
//! id, the path, the query string (a collision's body), the rows answered and the
//! status, refusals (401, 403, 503) included, as `serve` writes them. An answer whose
//! entry cannot be written is withheld: 503 `audit_unavailable`. Bounds: `query.slots`
//! queries at once (429 beyond), `query.timeout_ms` per query (503),
//! `query.max_result_rows`, bodies of 1 MiB.

use sightline_cluster::tls::PublicListener;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::json;
use sightline_cluster::serving::Held;
use sightline_cluster::ClusterConfig;
use sightline_query::federated::{Call, Federation, Partition};

use super::catalog::Catalog;
use super::keys::ClusterKeys;
use super::remote::{Directory, RemotePartition};
use crate::audit::{self, AuditLog};
use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::http::body::{respond, respond_error, Reply};
use crate::http::out::{serialized, EventOut, Fields};
use crate::http::runner::AuditLine;
use crate::http::Body;
use crate::params::Params;
use crate::queries::{self, patterns, trajectory};

/// Largest request body (a collision's conditions, a catalog record).
pub(super) const MAX_BODY_BYTES: usize = 1 << 20;

pub(super) struct QueryNode {
    pub(super) config: ClusterConfig,
    partitions: u16,
    directory: Arc<Directory>,
    pub(super) slots: Arc<tokio::sync::Semaphore>,
    /// Server-Sent Event streams of the feed open now (`super::feed::MAX_STREAMS`).
    pub(super) feed_streams: Arc<tokio::sync::Semaphore>,
    /// Long-polls of the feed waiting now (`super::feed::MAX_LONG_POLLS`).
    pub(super) feed_polls: Arc<tokio::sync::Semaphore>,
    /// This node's read replicas (`None` with `query.replicas = 0`).
    held: Option<Arc<Held>>,
    /// How far each of them has read the log.
    status: sightline_cluster::replica::Status,
    /// Where they keep the segments they fetched (`None`: no cache, or no replicas).
    segment_cache: Option<Arc<sightline_storage::SegmentCache>>,
    /// Who may ask.
    pub(super) keys: Arc<ClusterKeys>,
    /// Every query, answered or refused.
    pub(super) audit: Arc<AuditLog>,
    /// The cluster's communities and devices.
    pub(super) catalog: Catalog,
    /// The subject → partitions directories' buckets (`None`: `directory.route` off).
    router: Option<sightline_cluster::directory::route::Router>,
    /// The connection their rows and late notes are read on, per query.
    directories: Catalog,
}

impl QueryNode {
    pub(super) fn federation(&self) -> Federation<'static> {
        let partitions: Vec<Box<dyn Partition>> = (0..self.partitions)
            .map(|id| {
                Box::new(RemotePartition {
                    id,
                    directory: self.directory.clone(),
                }) as Box<dyn Partition>
            })
            .collect();
        Federation::new(partitions)
    }

    pub(super) fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.query.timeout_ms)
    }

    /// The cluster's partition count, P.
    pub(super) fn partitions(&self) -> u16 {
        self.partitions
    }

    pub(super) fn max_rows(&self) -> usize {
        self.config.query.max_result_rows
    }
}

/// Binds the query role and serves until `shutdown` completes. Prints `listening on
/// http://ADDR` once bound.
pub async fn run_query(
    config: ClusterConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let partitions = super::ingest::partitions(&config).await?;
    let partitions = u16::try_from(partitions)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{partitions} partitions: a query node federates 1 to 65535"))?;
    let audit = open_audit(config.query.audit_dir(), &config.query).await?;
    let listener = tokio::net::TcpListener::bind(config.query.listen)
        .await
        .map_err(|e| format!("binding {}: {e}", config.query.listen))?;
    let addr: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
    let keys = ClusterKeys::new(
        &config.query.token_sha256,
        addr.ip().is_loopback(),
        Role::Investigate,
    );
    let loading = keys.start(&config).await;
    let syncing = AuditSync::start(audit.clone());
    // Read replicas: a partition listener for other query nodes, and the supervisor
    // placing, restoring and feeding them.
    let (stop_replicas, replicas_stopped) = tokio::sync::watch::channel(false);
    let mut replicas = None;
    let status = sightline_cluster::replica::Status::default();
    // One bound for every replica of this node (`query.segment_cache_bytes`).
    let segment_cache = (config.query.replicas > 0 && config.query.segment_cache_bytes > 0)
        .then(|| sightline_storage::SegmentCache::new(config.query.segment_cache_bytes));
    let held = match config.query.replicas {
        0 => None,
        _ => {
            let serve = tokio::net::TcpListener::bind(config.query.serve)
                .await
                .map_err(|e| format!("binding {}: {e}", config.query.serve))?;
            let serve_addr = serve.local_addr().map_err(|e| e.to_string())?;
            // Where other query nodes reach it: `query.advertise`, else the bound
            // address (fine on one host; set it in production).
            let advertised = config
                .query
                .advertise
                .clone()
                .unwrap_or_else(|| serve_addr.to_string());
            sightline_cluster::config::check_advertised(&advertised)
                .map_err(|e| format!("query.serve bound to {serve_addr}: {e}"))?;
            let held = Held::new(&config.owner());
            let token = config.partition_token.clone();
            let most = config.max_connections;
            let tls = super::listener_tls(&config, super::Listening::Partitions)?;
            tokio::spawn(super::serve_partitions(
                serve,
                held.clone(),
                "query",
                token,
                most,
                tls,
                segment_cache.clone(),
            ));
            tracing::info!(%serve_addr, "answering partition requests from replicas");
            let (cfg, h, st) = (config.clone(), held.clone(), status.clone());
            let cache = segment_cache.clone();
            let mut stopped = replicas_stopped.clone();
            replicas = Some(tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                let ran = sightline_cluster::replica::run(
                    cfg,
                    u32::from(partitions),
                    h,
                    st,
                    Some(advertised),
                    cache,
                    shutdown,
                )
                .await;
                if let Err(e) = ran {
                    tracing::error!(error = %e, "replicas failed: partitions are asked elsewhere");
                }
            }));
            Some(held)
        }
    };
    tracing::info!(%addr, partitions, "query node started");
    let tls = super::listener_tls(&config, super::Listening::Public(PublicListener::Query))?;
    println!("listening on {}://{addr}", super::scheme(&tls));
    let node = Arc::new(QueryNode {
        directory: Directory::start(&config, held.clone()).await,
        partitions,
        slots: Arc::new(tokio::sync::Semaphore::new(config.query.slots)),
        feed_streams: Arc::new(tokio::sync::Semaphore::new(super::feed::MAX_STREAMS)),
        feed_polls: Arc::new(tokio::sync::Semaphore::new(super::feed::MAX_LONG_POLLS)),
        held,
        status,
        segment_cache,
        keys,
        audit,
        catalog: Catalog::new(&config),
        router: match config.directory.route {
            true => Some(sightline_cluster::directory::route::Router::new(
                sightline_cluster::objects::Objects::new(&config.s3).map_err(|e| e.to_string())?,
                config.directory.cache_bytes,
            )),
            false => None,
        },
        directories: Catalog::new(&config),
        config,
    });
    // Subscriptions: this node delivers those whose leases it takes.
    let (stop_delivery, delivery_stopped) = tokio::sync::watch::channel(false);
    let scheme = super::scheme(&tls);
    let base =
        (node.config.query.public_url.clone()).unwrap_or_else(|| format!("{scheme}://{addr}"));
    let placing = super::upstreams::start(node.clone(), delivery_stopped.clone())?;
    let delivering = super::delivery::start(node.clone(), base, delivery_stopped)?;
    let max_connections = node.config.max_connections;
    super::accept_loop(listener, shutdown, node, handle, max_connections, tls).await;
    let _ = stop_delivery.send(true);
    // Past 5 s its workers are aborted (a dropped handle would leave them posting).
    let mut delivering = delivering;
    if tokio::time::timeout(Duration::from_secs(5), &mut delivering)
        .await
        .is_err()
    {
        delivering.abort();
    }
    let mut placing = placing;
    if tokio::time::timeout(Duration::from_secs(2), &mut placing)
        .await
        .is_err()
    {
        placing.abort();
    }
    loading.abort();
    syncing.stop().await;
    let _ = stop_replicas.send(true);
    if let Some(r) = replicas {
        let _ = r.await;
    }
    Ok(())
}

/// A node's audit log made durable every second (and its head kept), as `serve`
/// does, and once more when the node stops ([`AuditSync::stop`]).
pub(super) struct AuditSync {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl AuditSync {
    pub(super) fn start(audit: Arc<AuditLog>) -> AuditSync {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let stop = tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => false,
                    _ = stopped.wait_for(|s| *s) => true,
                };
                let a = audit.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || a.sync()).await {
                    tracing::error!(error = %e, "cannot sync the audit log");
                }
                if stop {
                    return;
                }
            }
        });
        AuditSync { stop, task }
    }

    /// Syncs a last time and ends the task.
    pub(super) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The test fault point `SIGHTLINE_CLUSTER_FAULT=audit-disk-full`: every write of
/// the audit log fails as on a full disk (ENOSPC), once it is open.
fn fault_audit_disk_full() -> bool {
    std::env::var("SIGHTLINE_CLUSTER_FAULT").is_ok_and(|f| f == "audit-disk-full")
}

/// Opens a node's audit log in `dir` (`query.audit_dir`, or an ingest node's
/// `ingest.audit_dir`; created private), its head kept in a catalog there
/// (`DIR/catalog`), where `sightline audit verify --data DIR` finds it, rotated and
/// signed as `q` says. A log that does not verify stops the node from starting, as
/// `serve`.
pub(super) async fn open_audit(
    dir: std::path::PathBuf,
    q: &sightline_cluster::config::QueryConfig,
) -> Result<Arc<AuditLog>, String> {
    let (max_bytes, witness_key) = (q.audit_file_bytes, q.audit_witness_key.clone());
    let opened = tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("creating the audit directory {}: {e}", dir.display()))?;
        let witness = witness_key
            .as_deref()
            .map(audit::WitnessKey::load)
            .transpose()
            .map_err(|e| e.to_string())?;
        let heads = sightline_storage::SledCatalog::open(&dir.join("catalog"))
            .map_err(|e| format!("the audit head's catalog in {}: {e}", dir.display()))?;
        let faulty = fault_audit_disk_full().then(sightline_storage::io::FaultyIo::new);
        let io: Arc<dyn sightline_storage::io::FileIo> = match &faulty {
            Some(f) => f.clone(),
            None => sightline_storage::io::os(),
        };
        let log = AuditLog::open(
            &dir,
            audit::AuditOptions {
                max_bytes,
                io,
                heads: Arc::new(heads),
                witness,
            },
        )
        .map_err(|e| e.to_string())?;
        if let Some(f) = faulty {
            use sightline_storage::io::{Fault, FaultKind, Op};
            f.inject(Fault::new(Op::Write, audit::FILE, FaultKind::ShortWrite));
        }
        Ok::<_, String>(log)
    })
    .await
    .map_err(|e| format!("opening the audit log: {e}"))??;
    Ok(Arc::new(opened))
}

async fn handle(node: Arc<QueryNode>, req: Request<Incoming>) -> Result<Reply, Infallible> {
    // RFC 9112 §3.2, as `serve` answers it (health probes too).
    if let Some(why) = crate::routes::host_problem(&req) {
        return Ok(respond_error(&ApiError::BadHost(why)));
    }
    let path = req.uri().path().to_string();
    let table = crate::routes::routes();
    // RFC 9110 §9.3.7, as `serve` answers it: the methods a resource takes, before
    // any key (nothing else is revealed).
    if req.method() == Method::OPTIONS {
        let allowed = match path.as_str() {
            "*" => Some(crate::routes::ALL_METHODS.to_string()),
            p => table.methods_of(p),
        };
        return Ok(match allowed {
            Some(allowed) => {
                let mut r = respond(StatusCode::NO_CONTENT, Body::Text(String::new()));
                if let Ok(v) = hyper::header::HeaderValue::from_str(&allowed) {
                    r.headers_mut().insert(hyper::header::ALLOW, v);
                }
                r
            }
            None => respond_error(&ApiError::NoSuchEndpoint(path)),
        });
    }
    // RFC 9110 §15.6.2: a method no resource takes.
    if !table.implements(req.method()) {
        return Ok(respond_error(&ApiError::NotImplemented(
            req.method().to_string(),
        )));
    }
    // RFC 9112 §6.1, as `serve` answers it: hyper undoes `chunked` only; a body in
    // another transfer coding would be read as if it were plain.
    if let Some(coding) = crate::routes::other_transfer_coding(req.headers()) {
        return Ok(respond_error(&ApiError::TransferCoding(coding)));
    }
    // A camera or platform sent here: told in GA/T 1400's shape where to go, not with
    // a Bearer challenge it cannot answer.
    if crate::gat1400::paths::is_viid(&path) {
        let (status, body) = crate::gat1400::handlers::viid_answer(
            StatusCode::NOT_FOUND,
            &path,
            crate::gat1400::INVALID_OPERATION,
            "a cluster's query node does not answer GA/T 1400: send /VIID requests to an ingest node (`sightline cluster ingest`)",
        );
        return Ok(respond(status, body));
    }
    // RFC 9110 §15.5.6, as `serve` answers it: a path taking other methods is 405
    // with `Allow`, before any key.
    if let Err(true) = table.lookup(req.method(), &path) {
        return Ok(respond_error(&super::service::not_answered(
            req.method(),
            &path,
        )));
    }
    // RFC 9110 §9.3.2: HEAD is answered as GET wherever GET is (hyper sends the head
    // only); audited as HEAD.
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    if get && (path == "/health" || path == "/v1/health") {
        // Answered before any key is checked: from what this node has at hand (the
        // directory as its own task last read it), never asking PostgreSQL.
        let replicas = node.status.lock().expect("replica status poisoned").clone();
        let answered = &node.directory.answered;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        return Ok(respond(
            StatusCode::OK,
            json!({
                "status": "ok",
                "role": "query",
                "partitions": node.partitions,
                // This node's caught-up replicas; the partitions other query nodes
                // serve, as last read; who answered this node's partition calls.
                "replicas": node.held.as_ref().map(|h| h.served()).unwrap_or_default(),
                "replicated_elsewhere": node.directory.replicated(),
                // Each replica here: how far it has read the log, whether it answers.
                "replica_lag": replicas,
                "directory_age_ms": node.directory.age().map(|a| a.as_millis() as u64),
                // The replicas' segment cache (null without one).
                "segment_cache": super::partitions::cache_health(node.segment_cache.as_deref()),
                // When the API keys were last read from PostgreSQL (null: never).
                "keys_age_ms": node.keys.age().map(|a| a.as_millis() as u64),
                // Bytes of subject directory buckets held (null: directories unused).
                "directory_cache_bytes": node.router.as_ref().map(|r| r.cached_bytes()),
                "answered": {
                    "local": load(&answered.local),
                    "replica": load(&answered.replica),
                    "indexer": load(&answered.indexer),
                },
            }),
        ));
    }
    // The console's page and files, as `serve` serves them: no key (they hold no
    // data), not audited.
    if let Ok((r, file)) = crate::routes::routes().lookup(req.method(), &path) {
        if r.access == crate::routes::Access::Console {
            let if_none_match = req
                .headers()
                .get(hyper::header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok());
            // `/` is the page; `/console/{file}` names the file.
            let name = file.as_deref().unwrap_or("index.html");
            return Ok(match crate::console::asset(&path, name, if_none_match) {
                Ok((status, body)) => respond(status, body),
                Err(e) => respond_error(&e),
            });
        }
    }
    let started = Instant::now();
    let query = req.uri().query().unwrap_or("").to_string();
    // The key first, before any body is read.
    let mut created = false;
    // A POST that creates: its answer names where (`Location`), as on `serve`.
    let mut posted = false;
    let (key, answer) = match node.keys.authorize(crate::routes::token(&req)) {
        Err(e) => {
            // Audited as `serve` audits a refusal: the method and path, the query
            // string, the status; a 403 names the key's claimed id, a 401 no one.
            let key = match &e {
                ApiError::Forbidden(_) => crate::routes::token(&req)
                    .and_then(crate::auth::claimed_id)
                    .unwrap_or("-"),
                _ => "-",
            }
            .to_string();
            let what = format!("{} {path}", req.method());
            if let Err(err) = node.audit.record(
                crate::now_ms(),
                &key,
                &what,
                &query,
                None,
                e.status().as_u16(),
            ) {
                // Refusing is safe: answered even when its entry is not written.
                tracing::error!(error = %err, "a refusal is not audited");
            }
            (key, Err(e))
        }
        Ok(caller) => {
            created = super::service::creates(req.method(), &path);
            posted = created;
            let mut line = AuditLine::new(&caller, &path, query);
            let answer = route(&node, &caller, req, &path, &mut line, &mut created).await;
            // Written unless the handler did (a stream, before its first byte); an
            // answer that cannot be audited is withheld.
            let answer = match caller.audited.load(std::sync::atomic::Ordering::Relaxed) {
                true => answer.map(|(body, _)| body),
                false => {
                    let (results, status) = match &answer {
                        Ok((_, n)) => (*n, if created { 201 } else { 200 }),
                        Err(e) => (None, e.status().as_u16()),
                    };
                    line.record_in(&node.audit, results, status)
                        .and(answer.map(|(body, _)| body))
                }
            };
            (caller.key_id, answer)
        }
    };
    let status = match &answer {
        Ok(_) if created => StatusCode::CREATED,
        Ok(_) => StatusCode::OK,
        Err(e) => e.status(),
    };
    tracing::info!(
        path,
        key,
        status = status.as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "query"
    );
    Ok(match answer {
        Ok(body) if posted => respond(StatusCode::CREATED, body.located(&path)),
        Ok(body) if created => respond(StatusCode::CREATED, body),
        Ok(body) => respond(StatusCode::OK, body),
        Err(e) => respond_error(&e),
    })
}

/// The handler of `path` for `caller`: parameters parsed and checked as `serve` does,
/// then run in the caller's communities; the answer and how many rows it holds (for
/// the audit entry, `line`, whose parameters a collision sets to its body). A `PUT`
/// that created what it names sets `created` (answered 201).
async fn route(
    node: &Arc<QueryNode>,
    caller: &Caller,
    req: Request<Incoming>,
    path: &str,
    line: &mut AuditLine,
    created: &mut bool,
) -> Result<(Body, Option<usize>), ApiError> {
    if let Some((route, arg)) = super::service::route_of(req.method(), path) {
        // JSON or NDJSON as `Accept` asks, with `Vary: Accept`, as `serve` answers.
        let ndjson = crate::routes::wants_ndjson(&req);
        let (body, n) =
            super::service::answer(node, caller, route, arg, req, line, created).await?;
        return Ok((crate::routes::negotiated(body, ndjson, route.changes), n));
    }
    let params = Params::parse(req.uri().query());
    let max = node.max_rows();
    // HEAD as GET (the head only is sent).
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    let ndjson = crate::routes::wants_ndjson(&req);
    caller.check_communities("community", &params.list("community").unwrap_or_default())?;
    let call = Call {
        scope: caller.communities.clone(),
        deadline: None,
    };
    // Every answer here but a picture's may be JSON or NDJSON lines (`Vary: Accept`).
    let answer = match path {
        "/v1/trajectory" if get && ndjson => {
            let q = trajectory::trajectory_params(&params, usize::MAX)?;
            let fields = Fields::param(&params)?;
            let cap = params.get("limit")?.map(|_| q.limit).unwrap_or(usize::MAX);
            let only = subject_partitions(node, q.kind, &q.subject, q.from_ms, q.to_ms).await;
            stream(node, call, (q, fields), cap, line, caller, only).await
        }
        "/v1/trajectory" if get => {
            let q = trajectory::trajectory_params(&params, max)?;
            let fields = Fields::param(&params)?;
            let only = subject_partitions(node, q.kind, &q.subject, q.from_ms, q.to_ms).await;
            run_routed(node, &call, ndjson, only, move |fed, call| {
                let t = fed.trajectory(call, &q)?;
                let events = t
                    .events
                    .iter()
                    .zip(&t.attrs)
                    .map(|(s, a)| EventOut::decoded(s, a));
                trajectory::page_answer(
                    Instant::now(),
                    t.events.len(),
                    |text| trajectory::write_events(text, events, fields),
                    &t.stays,
                    t.stays_truncated,
                    t.next_cursor.as_ref(),
                )
            })
            .await
        }
        "/v1/collision" if req.method() == Method::POST => {
            // As on `serve`: the query is the body (a query string is refused), of a
            // JSON media type.
            crate::params::Params::parse(req.uri().query()).only(&[])?;
            crate::http::call::taken_media_type(req.headers())?;
            let body = Limited::new(req.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|_| ApiError::BodyTooLarge(MAX_BODY_BYTES))?
                .to_bytes();
            // Audited with its body, as `serve` audits it.
            *line = AuditLine::new(caller, path, String::from_utf8_lossy(&body).into_owned());
            let q = queries::collision_query(&body, max)?;
            queries::check_places(caller, &q)?;
            run(node, &call, ndjson, move |fed, call| {
                Ok(queries::collision_answer(&fed.collision(call, &q)?))
            })
            .await
        }
        _ if get && super::pictures::answers(path) => {
            super::pictures::get(&node.config, caller, path).await
        }
        _ if get && path.starts_with("/v1/events/") => {
            params.only(&[])?;
            let id = queries::event_id(&path["/v1/events/".len()..])?;
            run(node, &call, ndjson, move |fed, call| {
                let (s, a) = fed.event(call, id)?.ok_or(ApiError::NoSuchEvent(id))?;
                serialized(&EventOut::decoded(&s, &a), 1)
            })
            .await
        }
        _ if get => {
            documented(path, &params)?;
            match path {
                "/v1/cooccurrence" => {
                    let q = queries::cooccurrence_query(&params, max)?;
                    let only =
                        subject_partitions(node, q.kind, &q.subject, q.from_ms, q.to_ms).await;
                    run_routed(node, &call, ndjson, only, move |fed, call| {
                        Ok(queries::candidates_answer(&fed.cooccurrence(call, &q)?))
                    })
                    .await
                }
                "/v1/search" => {
                    let q = queries::search_query(&params, max)?;
                    run(node, &call, ndjson, move |fed, call| {
                        Ok(queries::search_answer(&fed.search(call, &q)?))
                    })
                    .await
                }
                "/v1/frequency" => {
                    let q = patterns::frequency_query(&params, max)?;
                    run(node, &call, ndjson, move |fed, call| {
                        Ok(patterns::frequency_answer(&fed.frequency(call, &q)?))
                    })
                    .await
                }
                "/v1/nocturnal" => {
                    let q = patterns::nocturnal_query(&params, max)?;
                    run(node, &call, ndjson, move |fed, call| {
                        Ok(patterns::nocturnal_answer(&fed.nocturnal(call, &q)?))
                    })
                    .await
                }
                "/v1/first-seen" => {
                    let q = patterns::first_seen_query(&params, max)?;
                    run(node, &call, ndjson, move |fed, call| {
                        Ok(patterns::first_seen_answer(&fed.first_seen(call, &q)?))
                    })
                    .await
                }
                "/v1/overnight" => {
                    let q = patterns::overnight_query(&params)?;
                    run(node, &call, ndjson, move |fed, call| {
                        Ok(patterns::overnight_answer(&fed.overnight(call, &q)?))
                    })
                    .await
                }
                "/v1/counts" => {
                    let q = patterns::counts_query(&params)?;
                    run(node, &call, ndjson, move |fed, call| {
                        patterns::counts_answer(&fed.counts(call, &q)?)
                    })
                    .await
                }
                _ => unreachable!("documented() passes only the paths above"),
            }
        }
        _ => Err(super::service::not_answered(req.method(), path)),
    };
    answer.map(|(body, rows)| (crate::http::negotiate::vary_accept(body), rows))
}

/// The GET query endpoints a query node answers (beside trajectory and events).
const GET_QUERIES: &[&str] = &[
    "/v1/cooccurrence",
    "/v1/search",
    "/v1/frequency",
    "/v1/nocturnal",
    "/v1/first-seen",
    "/v1/overnight",
    "/v1/counts",
];

/// Refuses parameters the route table does not document for `path` (as `serve`).
fn documented(path: &str, params: &Params) -> Result<(), ApiError> {
    if !GET_QUERIES.contains(&path) {
        return Err(super::service::not_answered(&Method::GET, path));
    }
    let route = crate::routes::routes()
        .routes
        .iter()
        .find(|r| r.path == path && r.method == Some(Method::GET))
        .and_then(|r| r.doc.as_ref())
        .expect("every query node endpoint is in the route table");
    params.only_these(route.params)
}

/// The partitions that may hold `(kind, subject)` within `[from_ms, to_ms)` as the
/// directories of its days and the late notes say, read now (`None`: ask every
/// partition: a day without a directory, `directory.route` off, or the directory
/// unreadable, which is logged).
async fn subject_partitions(
    node: &QueryNode,
    kind: sightline_storage::Kind,
    subject: &str,
    from_ms: i64,
    to_ms: i64,
) -> Option<Vec<u16>> {
    use sightline_cluster::directory::route;
    let router = node.router.as_ref()?;
    if from_ms >= to_ms {
        return None;
    }
    let (first, last) = route::days_of_range(from_ms, to_ms);
    if i64::from(last) - i64::from(first) >= route::MAX_ROUTED_DAYS {
        return None;
    }
    let rows: Result<_, ApiError> = async {
        super::catalog::on_meta!(node.directories, "read the directories", |m| m
            .directories_for(first, last))
    }
    .await;
    let (rows, late) = match rows {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "directories not read: every partition is asked");
            return None;
        }
    };
    let name = sightline_storage::normalize_subject(kind, subject);
    match router
        .partitions(&rows, &late, first, last, kind as u8, &name)
        .await
    {
        Ok(only) => only,
        Err(e) => {
            tracing::warn!(error = %e, "a directory cannot be read: every partition is asked");
            None
        }
    }
}

/// Runs `f` over the federation on the blocking pool, in `call`'s scope, within the
/// query slots and the time limit; its answer as JSON text (NDJSON lines when asked)
/// and how many rows it holds.
async fn run<F>(
    node: &Arc<QueryNode>,
    call: &Call,
    ndjson: bool,
    f: F,
) -> Result<(Body, Option<usize>), ApiError>
where
    F: FnOnce(&Federation<'static>, &Call) -> Result<(Body, usize), ApiError> + Send + 'static,
{
    run_routed(node, call, ndjson, None, f).await
}

/// As [`run`], a one-subject question asked only of `only` (`None`: every partition;
/// `Federation::with_subject_partitions`).
async fn run_routed<F>(
    node: &Arc<QueryNode>,
    call: &Call,
    ndjson: bool,
    only: Option<Vec<u16>>,
    f: F,
) -> Result<(Body, Option<usize>), ApiError>
where
    F: FnOnce(&Federation<'static>, &Call) -> Result<(Body, usize), ApiError> + Send + 'static,
{
    let slot = node
        .slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Busy("the query service"))?;
    let timeout = node.timeout();
    let n = node.clone();
    let scope = call.scope.clone();
    let task = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let call = Call {
            scope,
            deadline: Some(Instant::now() + timeout),
        };
        let fed = n.federation().with_subject_partitions(only);
        f(&fed, &call).map(|(b, rows)| match ndjson {
            true => (b.into_lines(), Some(rows)),
            false => (b.into_text(), Some(rows)),
        })
    });
    // A little past the deadline the partitions were given, so their own answer
    // (503 query_timeout) comes first.
    match tokio::time::timeout(timeout + Duration::from_secs(1), task).await {
        Err(_) => Err(ApiError::QueryTimeout(Some(timeout))),
        Ok(joined) => {
            joined.map_err(|e| ApiError::internal(format!("the query's task failed: {e}")))?
        }
    }
}

/// Every sighting after the cursor (at most `cap`) in `call`'s scope, one JSON object
/// a line, streamed as the federation's rounds produce them (as `serve`'s stream: the
/// first round is asked and the audit entry `line` written, with the count, before the
/// answer starts; a failure after that ends the stream with an `{"error":…}` line).
async fn stream(
    node: &Arc<QueryNode>,
    call: Call,
    (q, fields): (sightline_query::TrajectoryQuery, Fields),
    cap: usize,
    line: &AuditLine,
    caller: &Caller,
    only: Option<Vec<u16>>,
) -> Result<(Body, Option<usize>), ApiError> {
    let slot = node
        .slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Busy("the query service"))?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<Result<(), ApiError>>();
    let sink = trajectory::Sink {
        rt: tokio::runtime::Handle::current(),
        tx,
    };
    let timeout = node.timeout();
    let n = node.clone();
    let line = AuditLine::new(caller, &line.endpoint, line.params.clone());
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let call = Call {
            scope: call.scope,
            deadline: Some(Instant::now() + timeout),
        };
        let mut started = Some(started_tx);
        let mut left = cap;
        let sent = n
            .federation()
            .with_subject_partitions(only)
            .trajectory_pages(
                &call,
                &q,
                trajectory::STREAM_PAGE,
                |total| {
                    // On the record before the first byte; not sent unaudited.
                    let audited = line.record_in(&n.audit, Some(total.min(cap)), 200);
                    let go = audited.is_ok();
                    started.take().is_some_and(|s| s.send(audited).is_ok()) && go
                },
                |events, attrs| {
                    let out = events
                        .iter()
                        .zip(attrs)
                        .map(|(s, a)| EventOut::decoded(s, a));
                    sink.chunk_of(events.len(), out, fields, &mut left)
                },
            );
        if let Err(e) = sent {
            let e = ApiError::from(e);
            match started.take() {
                Some(s) => {
                    let _ = line.record_in(&n.audit, None, e.status().as_u16());
                    let _ = s.send(Err(e));
                }
                None => {
                    sink.send(format!("{}\n", e.json()).into_bytes());
                }
            }
        }
    });
    match tokio::time::timeout(timeout + Duration::from_secs(1), started_rx).await {
        Err(_) => Err(ApiError::QueryTimeout(Some(timeout))),
        Ok(Err(_)) => Err(ApiError::internal("the query's task failed")),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Ok(Ok(()))) => Ok((Body::Stream(rx), None)),
    }
}
