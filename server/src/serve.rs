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

use crate::http::limits::{ByteBudget, PerCaller};
use crate::tls::{ClientCert, ServerTls};
use crate::{audit, auth, feed, subscriptions, watchlists, App, ServerConfig};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("refusing to listen on {0}: with --no-auth only loopback addresses (127.0.0.1, ::1) are allowed")]
    NotLoopback(SocketAddr),
    #[error("the audit witness key {key} lies inside the data directory {data}: keep it elsewhere, or it witnesses nothing")]
    WitnessKeyInData { key: PathBuf, data: PathBuf },
    #[error("refusing to serve plain HTTP on {0}: this store holds API keys, which would cross the network in clear; give --tls-cert and --tls-key, listen on loopback, or say --allow-plaintext")]
    Plaintext(SocketAddr),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
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
    /// `--tls-cert`: the listener speaks only TLS.
    tls: Option<Arc<ServerTls>>,
    _refresher: Refresher,
}

impl Server {
    /// Opens the store (recovering it), its keys and audit log, builds the index and
    /// vocabulary, and binds. With `no_auth` only loopback addresses are allowed;
    /// without TLS, a store that holds API keys is served beyond loopback only with
    /// `allow_plaintext`.
    pub async fn bind(mut config: ServerConfig) -> Result<Server, ServeError> {
        // A server on loopback (a `--no-auth` one always is): the platforms that reach
        // it are on this host, and may be sent to here (`http::egress`).
        let listen = config.listen.ip();
        config.viid_receive.serving_on(listen);
        let tls = config.tls.as_ref().map(ServerTls::load).transpose()?;
        let outbound = crate::http::client::Outbound::new(config.tls_ca_bundle.as_deref())?;
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
                let started = std::time::Instant::now();
                let ms = |since: std::time::Instant| since.elapsed().as_secs_f64() * 1e3;
                let store = Store::open(&config.data, config.store.clone())?;
                let store_ms = ms(started);
                let keys = auth::Keys::load(&store, config.no_auth)?;
                if config.tls.is_none()
                    && !config.allow_plaintext
                    && !config.listen.ip().is_loopback()
                    && !store.catalog().api_keys()?.is_empty()
                {
                    return Err(ServeError::Plaintext(config.listen));
                }
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
                // Both are kept under DATA/index: the index checkpoint is read, not
                // rebuilt from every row; the vocabulary only indexes new subjects.
                let t = std::time::Instant::now();
                let (index, opened) = StoreIndex::open(&store)?;
                let index_ms = ms(t);
                tracing::info!(
                    from_checkpoint = opened.from_checkpoint,
                    rows_read = opened.rows_read,
                    "index opened"
                );
                let t = std::time::Instant::now();
                let (vocab, _) =
                    Vocabulary::open_checked(&store.dir().join(VOCABULARY_DIR), &store)?;
                let vocab = Arc::new(vocab);
                vocab.catch_up(&store)?;
                let vocabulary_ms = ms(t);
                if !opened.from_checkpoint {
                    // Rebuilt from every row: keep it, without delaying the start. (Rows
                    // read after a checkpoint are in the WAL or in segments; the next
                    // maintenance pass that seals, or the stop, writes them.)
                    let (index, store) = (index.clone(), store.clone());
                    std::thread::spawn(move || {
                        if let Err(e) = index.checkpoint(&store) {
                            tracing::error!(error = %e, "index checkpoint failed");
                        }
                    });
                }
                let watch = watchlists::Watch::load(&store).map_err(ServeError::Watchlists)?;
                // Where start-up time goes (BENCHMARKS.md, "Start-up").
                tracing::info!(
                    store_ms,
                    index_ms,
                    vocabulary_ms,
                    total_ms = ms(started),
                    "opened"
                );
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
            let scheme = if config.tls.is_some() {
                "https"
            } else {
                "http"
            };
            config.public_url = Some(format!("{scheme}://{bound}"));
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
                gateway: crate::gat1400::Gateway::default()
                    .any_address(config.viid_registration_any_address),
                viid_slots: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_viid)),
                viid_callers: PerCaller::new(config.max_viid_per_caller),
                viid_bytes: ByteBudget::new(config.max_viid_inflight_bytes),
                ingest_callers: PerCaller::new(config.max_ingest_per_key),
                feed_signal,
                subscriptions: Default::default(),
                remotes: Default::default(),
                watch,
                outbound,
                config,
            }),
            listener,
            tls: tls.map(Arc::new),
            _refresher: refresher,
        })
    }

    /// The store being served (for loading data in-process, as `sightline demo` does).
    pub fn store(&self) -> &Store {
        &self.app.store
    }

    /// The listener's TLS (to reload its files, as SIGHUP does), when it speaks TLS.
    pub fn tls(&self) -> Option<Arc<ServerTls>> {
        self.tls.clone()
    }

    /// `https` when the listener speaks TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        match self.tls {
            Some(_) => "https",
            None => "http",
        }
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
        if let Err(e) = crate::gat1400::dispositions::migrate(&self.app) {
            tracing::error!(error = %e, "unowned dispositions were not moved");
        }
        if let Err(e) = crate::gat1400::subscribes::end_orphaned_uppers(&self.app) {
            tracing::error!(error = %e, "upper platforms' subscriptions were not checked");
        }
        if let Err(e) = subscriptions::Registry::start_all(&self.app) {
            tracing::error!(error = %e, "subscriptions did not start");
        }
        if let Err(e) = subscriptions::remote::Remotes::start_all(&self.app) {
            tracing::error!(error = %e, "remote subscriptions did not start");
        }
        let reloads = self
            .tls
            .clone()
            .map(|tls| tokio::spawn(reload_on_hangup(tls)));
        tokio::pin!(shutdown);
        let mut backoff = ACCEPT_BACKOFF_MIN;
        let connections = Arc::new(tokio::sync::Semaphore::new(connection_limit(
            self.app.config.max_connections,
        )));
        loop {
            // At the connection limit, stop accepting until one closes: the kernel
            // queues the rest, and the descriptors the store needs stay free.
            let open = tokio::select! {
                permit = connections.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = &mut shutdown => break,
            };
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
                    let (app, watcher) = (self.app.clone(), graceful.watcher());
                    match &self.tls {
                        None => serve_connection(app, stream, peer, None, watcher, open),
                        Some(tls) => {
                            let acceptor = tls.acceptor();
                            tokio::spawn(async move {
                                // A handshake must end within the header timeout, like a
                                // request's head (a client that stalls in it holds a task).
                                let limit = app.config.header_timeout;
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
                                let cert = stream
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .and_then(|chain| chain.first())
                                    .map(|leaf| ClientCert::of(leaf));
                                serve_connection(app, stream, peer, cert, watcher, open);
                            });
                        }
                    }
                }
                _ = &mut shutdown => break,
            }
        }
        drop(self.listener);
        if let Some(reloads) = reloads {
            reloads.abort();
        }
        // Upstreams hear that we go (as wvp-GB28181-pro unregisters on shutdown), each
        // at once, all within a few seconds.
        let sessions = self.app.subscriptions.sessions();
        self.app.subscriptions.stop_all();
        self.app.remotes.stop_all();
        let goodbyes: Vec<_> = sessions
            .into_iter()
            .map(|s| {
                let app = self.app.clone();
                tokio::spawn(async move { s.unregister(&app.outbound).await })
            })
            .collect();
        let _ = tokio::time::timeout(
            crate::subscriptions::upstream::UNREGISTER_AT_SHUTDOWN,
            async {
                for g in goodbyes {
                    let _ = g.await;
                }
            },
        )
        .await;
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
        // A clean stop leaves a checkpoint covering every event: the next start reads
        // no row.
        let app = self.app.clone();
        let written = tokio::task::spawn_blocking(move || app.index.checkpoint(&app.store)).await;
        if let Ok(Err(e)) = written {
            tracing::error!(error = %e, "index checkpoint failed");
        }
    }
}

/// Where the server keeps the search vocabulary, under the store's directory.
pub const VOCABULARY_DIR: &str = "index/vocabulary";

/// Serves HTTP/1.1 on one accepted connection (TCP, or TLS after its handshake), on a
/// task of its own, watched for graceful shutdown.
fn serve_connection<S>(
    app: Arc<App>,
    stream: S,
    peer: SocketAddr,
    cert: Option<ClientCert>,
    watcher: hyper_util::server::graceful::Watcher,
    open: tokio::sync::OwnedSemaphorePermit,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = app.config.header_timeout;
    let conn = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(
            TokioIo::new(crate::http::parse_errors::JsonParseErrors::new(stream)),
            service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                // Who is on the other end (the GA/T 1400 gateway binds a
                // registration to it), and what its client certificate names.
                req.extensions_mut().insert(Peer(peer.ip()));
                if let Some(cert) = &cert {
                    req.extensions_mut().insert(cert.clone());
                }
                crate::routes::handle(app.clone(), req)
            }),
        );
    let conn = watcher.watch(conn);
    tokio::spawn(async move {
        let _open = open;
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    });
}

/// Descriptors kept free of connections for the store, the logs and outbound
/// deliveries.
const RESERVED_DESCRIPTORS: u64 = 128;

/// `max_connections`, lowered to what the open-file limit (its soft limit first raised
/// to the hard one) leaves after [`RESERVED_DESCRIPTORS`] (at least 1).
pub(crate) fn connection_limit(max_connections: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    let soft = match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } {
        0 => {
            // The soft limit (often 1,024) raised to the hard one, as servers do.
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                // SAFETY: setrlimit reads the struct it is given.
                if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                    limit.rlim_cur = limit.rlim_max;
                }
            }
            limit.rlim_cur
        }
        _ => libc::RLIM_INFINITY,
    };
    if soft == libc::RLIM_INFINITY {
        return max_connections;
    }
    let allowed = usize::try_from(soft.saturating_sub(RESERVED_DESCRIPTORS).max(1)).unwrap_or(1);
    if allowed < max_connections {
        tracing::warn!(
            max_connections,
            allowed,
            open_files = soft,
            "max_connections lowered to what the open-file limit allows"
        );
    }
    max_connections.min(allowed)
}

/// Reloads the listener's certificate on every SIGHUP (a bad one is logged and the
/// old one kept).
pub(crate) async fn reload_on_hangup(tls: Arc<ServerTls>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot catch SIGHUP: TLS files are not reloaded");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            let tls = tls.clone();
            let _ = tokio::task::spawn_blocking(move || tls.reload_logged()).await;
        }
    }
    #[cfg(not(unix))]
    let _ = tls;
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
pub(crate) const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
pub(crate) const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

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
        let index = app.index.clone();
        // After a pass that sealed, compacted or dropped, the index checkpoint is
        // written again, so a restart after a crash reads only what came later.
        let done = tokio::task::spawn_blocking(move || {
            let r = store.maintain()?;
            if !(r.sealed.is_empty() && r.compacted.is_empty() && r.dropped.is_empty()) {
                if let Err(e) = index.checkpoint(&store) {
                    tracing::error!(error = %e, "index checkpoint failed");
                }
            }
            Ok::<_, sightline_storage::StorageError>(r)
        })
        .await;
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
