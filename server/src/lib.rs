//! The Sightline HTTP server: one store, its index and vocabulary, and the `/v1` API
//! over hyper 1.x. `sightline serve` (in `main.rs`) is a thin shell over [`Server`].
//!
//! Store calls block (fsync, locks, CPU-bound queries), so handlers run them on
//! tokio's blocking pool; the async side only parses, routes and writes responses.

mod api;
pub mod audit;
pub mod auth;
pub mod config;
pub mod demo;
mod error;
pub mod feed;
pub mod fuzzing;
pub mod gat1400;
mod ingest;
mod metrics;
pub mod openapi;
mod params;
pub mod subscriptions;
pub mod watchlists;
pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use sightline_index::{Refresher, StoreIndex, Vocabulary};
use sightline_storage::{Store, StoreConfig};
use tokio::net::TcpListener;

pub use error::ApiError;
pub use params::{parse_time, parse_window, rfc3339};

/// Everything `sightline serve` can be told. Defaults are sane for one machine.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub data: PathBuf,
    pub listen: SocketAddr,
    pub store: StoreConfig,
    /// Largest request body, in bytes. Default 16 MiB.
    pub max_body_bytes: usize,
    /// Most records in one ingest request. Default 100,000.
    pub max_batch_records: usize,
    /// How often new subjects are added to the vocabulary (search staleness).
    /// Default 1 s.
    pub vocabulary_refresh: Duration,
    /// How often shards due for sealing are sealed. Default 60 s.
    pub maintenance_every: Duration,
    /// How long shutdown waits for in-flight requests. Default 30 s.
    pub shutdown_grace: Duration,
    /// Ingest requests handled at once; more are answered 429 with `Retry-After`
    /// instead of queueing without bound. Default 32.
    pub max_concurrent_ingest: usize,
    /// Queries handled at once; more are answered 429. Default 64.
    pub max_concurrent_queries: usize,
    /// A query running longer is stopped and answered 503 `query_timeout`. Default 30 s.
    pub query_timeout: Duration,
    /// Most rows one answer may hold: a `limit` above it is refused (400, `field:
    /// limit`). Default 10,000.
    pub max_result_rows: usize,
    /// The audit log moves to a new file past this many bytes. Default 64 MiB.
    pub audit_file_bytes: u64,
    /// The GA/T 1400 face field that carries the subject (a feature or archive id an
    /// upstream platform fills); without it a face's subject is its `FaceID`. Default
    /// `ArchiveID`.
    pub gat1400_face_subject: String,
    /// A request's head must arrive within this (slow-header attacks); its body
    /// within `body_timeout` (answered 408 after). Defaults 10 s and 60 s.
    pub header_timeout: Duration,
    pub body_timeout: Duration,
}

impl ServerConfig {
    pub fn new(data: impl Into<PathBuf>, listen: SocketAddr) -> ServerConfig {
        ServerConfig {
            data: data.into(),
            listen,
            store: StoreConfig::default(),
            max_body_bytes: 16 << 20,
            max_batch_records: 100_000,
            vocabulary_refresh: Duration::from_secs(1),
            maintenance_every: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
            max_concurrent_ingest: 32,
            max_concurrent_queries: 64,
            query_timeout: Duration::from_secs(30),
            max_result_rows: 10_000,
            audit_file_bytes: 64 << 20,
            gat1400_face_subject: "ArchiveID".into(),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("refusing to listen on {0}: API keys are not configured, so only loopback addresses (127.0.0.1, ::1) are allowed")]
    NotLoopback(SocketAddr),
    #[error("cannot load the watchlists: {0}")]
    Watchlists(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] sightline_storage::StorageError),
    #[error(transparent)]
    Index(#[from] sightline_index::IndexError),
    #[error("{0} (the server does not start on a broken audit chain; `sightline audit verify` shows it)")]
    Audit(#[from] audit::AuditError),
}

/// Store-wide sums over its shards, as `/health`, `/v1/admin/stats` and `/metrics`
/// report them.
pub(crate) struct Totals {
    pub events: u64,
    pub memory_events: u64,
    pub shards: usize,
    pub segments: usize,
    pub sealed_bytes: u64,
}

impl Totals {
    pub fn of(store: &Store) -> Totals {
        let shards = store.shards();
        let memory_events = shards.iter().map(|s| s.memory_events as u64).sum();
        Totals {
            events: shards.iter().map(|s| s.sealed_events).sum::<u64>() + memory_events,
            memory_events,
            shards: shards.len(),
            segments: shards.iter().map(|s| s.segments).sum(),
            sealed_bytes: shards.iter().map(|s| s.sealed_bytes).sum(),
        }
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The shared state of a running server.
pub(crate) struct App {
    pub store: Store,
    pub index: Arc<StoreIndex>,
    pub vocab: Arc<Vocabulary>,
    pub config: ServerConfig,
    pub ingest_slots: Arc<tokio::sync::Semaphore>,
    pub metrics: metrics::Metrics,
    pub keys: auth::Keys,
    pub audit: audit::AuditLog,
    pub query_slots: Arc<tokio::sync::Semaphore>,
    pub gateway: gat1400::Gateway,
    /// Woken by every group commit, for feed readers waiting on new events.
    pub feed_signal: Arc<feed::Signal>,
    pub subscriptions: subscriptions::Registry,
    pub watch: watchlists::Watch,
}

/// A server bound to its address, not yet serving.
pub struct Server {
    app: Arc<App>,
    listener: TcpListener,
    _refresher: Refresher,
}

impl Server {
    /// Opens the store (recovering it), its keys and audit log, builds the index and
    /// vocabulary, and binds. Without API keys only loopback addresses are allowed.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServeError> {
        let (store, index, vocab, keys, audit, watch) = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || -> Result<_, ServeError> {
                let store = Store::open(&config.data, config.store.clone())?;
                let keys = auth::Keys::load(&store)?;
                if keys.is_empty() && !config.listen.ip().is_loopback() {
                    return Err(ServeError::NotLoopback(config.listen));
                }
                let audit = audit::AuditLog::open(&config.data, config.audit_file_bytes)?;
                let index = StoreIndex::attach(&store);
                let vocab = Arc::new(Vocabulary::in_memory()?);
                vocab.catch_up(&store)?;
                let watch = watchlists::Watch::load(&store).map_err(ServeError::Watchlists)?;
                Ok((store, index, vocab, keys, audit, watch))
            })
            .await
            .expect("opening the store panicked")?
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let refresher = vocab.spawn_refresher(store.clone(), config.vocabulary_refresh);
        let feed_signal = Arc::new(feed::Signal::default());
        store.observe(feed::observer(&feed_signal));
        Ok(Server {
            app: Arc::new(App {
                store,
                index,
                vocab,
                ingest_slots: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_ingest)),
                metrics: Default::default(),
                keys,
                audit,
                query_slots: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_queries)),
                gateway: Default::default(),
                feed_signal,
                subscriptions: Default::default(),
                watch,
                config,
            }),
            listener,
            _refresher: refresher,
        })
    }

    /// The store being served (for loading data in-process, as `sightline demo` does).
    pub fn store(&self) -> &Store {
        &self.app.store
    }

    /// The address actually bound (the port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight
    /// requests finish (up to the grace period) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let graceful = GracefulShutdown::new();
        let maintenance = tokio::spawn(maintain(self.app.clone()));
        let audit_sync = tokio::spawn(sync_audit(self.app.clone()));
        if let Err(e) = subscriptions::Registry::start_all(&self.app) {
            tracing::error!(error = %e, "subscriptions did not start");
        }
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let app = self.app.clone();
                    let conn = http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(self.app.config.header_timeout)
                        .serve_connection(
                        TokioIo::new(stream),
                        service_fn(move |req| api::handle(app.clone(), req)),
                    );
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                _ = &mut shutdown => break,
            }
        }
        drop(self.listener);
        self.app.subscriptions.stop_all();
        maintenance.abort();
        audit_sync.abort();
        tokio::select! {
            _ = graceful.shutdown() => {}
            _ = tokio::time::sleep(self.app.config.shutdown_grace) => {
                tracing::warn!("shutdown grace period over; closing remaining connections");
            }
        }
        if let Err(e) = self.app.audit.sync() {
            tracing::error!(error = %e, "audit log sync failed");
        }
    }
}

/// Makes the audit log durable every second.
async fn sync_audit(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let app = app.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || app.audit.sync()).await {
            tracing::error!(error = %e, "audit log sync failed");
        }
    }
}

/// Seals due shards (and compacts, applies retention) periodically.
async fn maintain(app: Arc<App>) {
    let mut tick = tokio::time::interval(app.config.maintenance_every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let store = app.store.clone();
        let started = std::time::Instant::now();
        let done = tokio::task::spawn_blocking(move || store.maintain()).await;
        let took = started.elapsed();
        app.metrics.maintenance.observe(took);
        app.metrics.maintenance_last_ms.store(
            took.as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        match done {
            Ok(Ok(r)) if !r.sealed.is_empty() => {
                tracing::info!(sealed = r.sealed.len(), "maintenance")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "maintenance failed"),
            Err(e) => tracing::error!(error = %e, "maintenance panicked"),
        }
    }
}
