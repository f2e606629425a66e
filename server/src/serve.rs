//! [`Server`]: open the store and everything beside it, bind, serve until told to
//! stop; and the background tasks (maintenance, audit sync).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use sightline_index::{Refresher, StoreIndex, Vocabulary};
use sightline_storage::Store;
use tokio::net::TcpListener;

use crate::{audit, auth, feed, subscriptions, watchlists, App, ServerConfig};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("refusing to listen on {0}: with --no-auth only loopback addresses (127.0.0.1, ::1) are allowed")]
    NotLoopback(SocketAddr),
    #[error("the audit witness key {key} lies inside the data directory {data}: keep it elsewhere, or it witnesses nothing")]
    WitnessKeyInData { key: PathBuf, data: PathBuf },
    #[error("cannot load the watchlists: {0}")]
    Watchlists(crate::ApiError),
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

/// A server bound to its address, not yet serving.
pub struct Server {
    app: Arc<App>,
    listener: TcpListener,
    _refresher: Refresher,
}

impl Server {
    /// Opens the store (recovering it), its keys and audit log, builds the index and
    /// vocabulary, and binds. With `no_auth` only loopback addresses are allowed.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServeError> {
        let (store, index, vocab, keys, audit, watch) = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || -> Result<_, ServeError> {
                if config.no_auth && !config.listen.ip().is_loopback() {
                    return Err(ServeError::NotLoopback(config.listen));
                }
                let witness = match &config.audit_witness_key {
                    None => None,
                    Some(key) => {
                        outside(key, &config.data)?;
                        Some(audit::WitnessKey::load(key)?)
                    }
                };
                let store = Store::open(&config.data, config.store.clone())?;
                let keys = auth::Keys::load(&store, config.no_auth)?;
                if keys.is_empty() && !keys.is_open() {
                    tracing::warn!(
                        "no API key is active: every keyed request is refused (401); create one with `sightline keys create`"
                    );
                }
                let audit = audit::AuditLog::open(
                    &config.data,
                    audit::AuditOptions {
                        max_bytes: config.audit_file_bytes,
                        io: config.store.io.clone(),
                        heads: Arc::new(store.clone()),
                        witness,
                    },
                )?;
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
        let mut config = config;
        if config.public_url.is_none() {
            // Where receivers fetch pictures by default: the address bound (its real
            // port when the configured one was 0).
            let bound = listener.local_addr().unwrap_or(config.listen);
            config.public_url = Some(format!("http://{bound}"));
        }
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
                viid_slots: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_viid)),
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
        let mut backoff = ACCEPT_BACKOFF_MIN;
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok((stream, peer)) => {
                            backoff = ACCEPT_BACKOFF_MIN;
                            (stream, peer)
                        }
                        // Out of file descriptors (EMFILE) or the like: retrying at
                        // once would spin both cores and starve the connections being
                        // served; wait, longer each time, until one closes.
                        Err(e) => {
                            tracing::warn!(error = %e, wait_ms = backoff.as_millis() as u64, "accept failed");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                            continue;
                        }
                    };
                    // Answers go out as written: with Nagle's algorithm the last
                    // short segment of a 200 KB picture waited for the client's
                    // delayed ACK, up to 40 ms (most of the picture reads' p99 under
                    // upload load).
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                    }
                    let app = self.app.clone();
                    let conn = http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(self.app.config.header_timeout)
                        .serve_connection(
                        TokioIo::new(stream),
                        service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                            // Who is on the other end (the GA/T 1400 gateway binds a
                            // registration to it).
                            req.extensions_mut().insert(Peer(peer.ip()));
                            crate::routes::handle(app.clone(), req)
                        }),
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

/// Refuses a witness key inside the data directory (whoever can rewrite the log could
/// read it there).
fn outside(key: &Path, data: &Path) -> Result<(), ServeError> {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (k, d) = (canon(key), canon(data));
    match k.starts_with(&d) {
        true => Err(ServeError::WitnessKeyInData {
            key: key.to_path_buf(),
            data: data.to_path_buf(),
        }),
        false => Ok(()),
    }
}

/// The address of the client a request came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Peer(pub std::net::IpAddr);

/// How long the accept loop waits after a failed accept (EMFILE …), doubling to the
/// maximum while accepts keep failing.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

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
