//! The Sightline HTTP server: one store, its index and vocabulary, and the `/v1` API
//! over hyper 1.x. `sightline serve` (in `main.rs`) is a thin shell over [`Server`].
//!
//! Store calls block (fsync, locks, CPU-bound queries), so handlers run them on
//! tokio's blocking pool; the async side only parses, routes and writes responses.

//!
//! Start reading at `routes.rs`: the route table is the API, each entry naming its
//! handler, which lives beside its feature (`queries/`, `ingest/`, `feed.rs`,
//! `subscriptions/`, `watchlists/`, `gat1400/`, `catalog.rs`, `admin.rs`). Shared
//! request plumbing is `http/`; it imports no handler.

mod admin;
mod app;
pub mod audit;
pub mod auth;
mod catalog;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod config;
mod console;
pub mod demo;
mod error;
pub mod feed;
pub mod fuzzing;
pub mod gat1400;
mod http;
pub use http::egress::{parse_networks, ReceivePolicy};
mod images;
mod ingest;
mod keys;
mod metrics;
pub mod openapi;
mod params;
mod queries;
mod routes;
mod serve;
pub mod subscriptions;
pub mod tls;
pub mod watchlists;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sightline_storage::StoreConfig;

pub use app::now_ms;
pub(crate) use app::{App, Totals};
pub use error::{ApiError, RecordError};
pub use ingest::wire;
pub use params::{parse_time, parse_window, rfc3339};
pub use serve::{ServeError, Server};

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
    /// Of the ingest slots, the most one API key holds at once (so a key dribbling
    /// bodies in cannot starve the others). Default 8.
    pub max_ingest_per_key: usize,
    /// Queries handled at once; more are answered 429. Default 64.
    pub max_concurrent_queries: usize,
    /// A query running longer is stopped and answered 503 `query_timeout`: checked
    /// between units of work, so it ends when the unit under way does (a read the disk
    /// does not complete is waited for). Default 30 s.
    pub query_timeout: Duration,
    /// Most rows one answer may hold: a `limit` above it is refused (400, `field:
    /// limit`). Default 10,000.
    pub max_result_rows: usize,
    /// The audit log moves to a new file past this many bytes. Default 64 MiB.
    pub audit_file_bytes: u64,
    /// This server's 20-digit GA/T 1400 id (`VIIDServerID` in `/VIID/System/Time`, the
    /// `User-Identify` of what it sends). Default `32050000005030000001` (Suzhou, type
    /// 503: a 视图库).
    pub viid_server_id: String,
    /// The address receivers reach this server at (`http://host:port`, no path): the
    /// picture URLs (`StoragePath`) of pushed GA/T 1400 objects start with it. Default
    /// `http://` (`https://` with TLS) and the address bound (set it when listening on 0.0.0.0 or behind
    /// a proxy).
    pub public_url: Option<String>,
    /// GA/T 1400 uploads (and listings, dispositions) handled at once; more are
    /// answered with status 2 (busy, HTTP 429). With `max_viid_body_bytes` it bounds the
    /// bodies held in memory. Default 16.
    pub max_concurrent_viid: usize,
    /// Largest `/VIID` request body, in bytes: uploads carry pictures. Default 64 MiB.
    pub max_viid_body_bytes: usize,
    /// Bytes of `/VIID` request bodies held in memory at once (each reserves what it
    /// announces before a byte is read, and what it grows to, gzip inflated
    /// included); more are answered with status 2 (busy, HTTP 429). Default 256 MiB.
    pub max_viid_inflight_bytes: usize,
    /// Of the `/VIID` slots, the most one caller (a device or platform code, or an
    /// address) holds at once. Default 8.
    pub max_viid_per_caller: usize,
    /// Largest picture of a GA/T 1400 object, decoded, in bytes. Default 8 MiB.
    pub max_picture_bytes: usize,
    /// The GA/T 1400 face field that carries the subject (a feature or archive id an
    /// upstream platform fills); without it a face's subject is its `FaceID`. Default
    /// `ArchiveID`.
    pub gat1400_face_subject: String,
    /// A request's head must arrive within this (slow-header attacks); its body
    /// within `body_timeout` (answered 408 after). Defaults 10 s and 60 s.
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// The slowest a request body may arrive, in bytes a second averaged from its
    /// first byte, after a grace of 5 s; slower is cut off with 408 `body_too_slow` and
    /// its slot freed. 0: no floor. Default 1,024.
    pub min_body_rate: u64,
    /// Connections served at once; past it the listener stops accepting (the kernel
    /// queues the rest) until one closes. Lowered at start to what the open-file limit
    /// (`ulimit -n`) leaves after 128 descriptors for the store. Default 4,096.
    pub max_connections: usize,
    /// Wildcard and fuzzy watchlist entries an event may be checked against: those of
    /// lists scoped to its community, and those of unscoped lists, each at most this
    /// many (a list that would go past it is refused). Default 100,000.
    pub max_scanned_watch_entries: usize,
    /// Entries of every watchlist together (`--max-watch-entries`).
    pub max_watch_entries: usize,
    /// `--no-auth`: serve without API keys, anyone an admin, while the store has never
    /// held a key; loopback addresses only. Without it and without keys every keyed
    /// request is refused (401). Default false.
    pub no_auth: bool,
    /// `--audit-witness-key FILE`: sign the audit chain's head into `audit.witness`
    /// with this key (a file outside the data directory). Default none.
    pub audit_witness_key: Option<PathBuf>,
    /// `--tls-cert/--tls-key` (and `--tls-client-ca`): the listener speaks only TLS.
    /// Default none (plain HTTP).
    pub tls: Option<tls::TlsFiles>,
    /// `--tls-ca-bundle FILE`: the CAs `https://` receivers are verified against.
    /// Default none: the Mozilla roots built in.
    pub tls_ca_bundle: Option<PathBuf>,
    /// `--allow-plaintext`: plain HTTP on a non-loopback address over a store that
    /// holds API keys. Default false (refused).
    pub allow_plaintext: bool,
    /// `--viid-registration-any-address`: a GA/T 1400 registration's `User-Identify`
    /// trusted from any address, not only the registering one. Default false.
    pub viid_registration_any_address: bool,
    /// Where a platform's `ReceiveAddr` (its `/VIID/Subscribes` and
    /// `/VIID/Dispositions` notifications) may point: `--viid-receive-allow` and
    /// `--viid-receive-deny` over the defaults of [`http::egress`] (no loopback,
    /// link-local, unspecified, multicast or broadcast addresses). Default: none given.
    pub viid_receive: http::egress::ReceivePolicy,
}

/// `serve`'s defaults for what one client may hold of a listener, also the cluster
/// listeners' (which take no such settings): how long its request head may take, how
/// long its body and how slowly (bytes a second, averaged after a grace), and how
/// many GA/T 1400 slots one caller holds.
pub(crate) const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_MIN_BODY_RATE: u64 = 1024;
pub(crate) const DEFAULT_VIID_PER_CALLER: usize = 8;

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
            max_ingest_per_key: 8,
            max_concurrent_queries: 64,
            query_timeout: Duration::from_secs(30),
            max_result_rows: 10_000,
            audit_file_bytes: 64 << 20,
            viid_server_id: "32050000005030000001".into(),
            public_url: None,
            max_concurrent_viid: 16,
            max_viid_body_bytes: 64 << 20,
            max_viid_inflight_bytes: 256 << 20,
            max_viid_per_caller: DEFAULT_VIID_PER_CALLER,
            max_picture_bytes: 8 << 20,
            gat1400_face_subject: "ArchiveID".into(),
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            min_body_rate: DEFAULT_MIN_BODY_RATE,
            max_connections: 4096,
            max_scanned_watch_entries: watchlists::DEFAULT_MAX_SCANNED,
            max_watch_entries: watchlists::DEFAULT_MAX_ENTRIES,
            no_auth: false,
            audit_witness_key: None,
            tls: None,
            tls_ca_bundle: None,
            allow_plaintext: false,
            viid_registration_any_address: false,
            viid_receive: Default::default(),
        }
    }
}
