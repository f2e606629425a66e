//! `cluster.toml`: where the engines are and how the roles behave. Every bound has a
//! default and a reason here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{ClusterError, Result};

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS server URLs (any of the cluster's nodes; the client fails over).
    pub nats: Vec<String>,
    /// The JetStream stream holding `ev.>`.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Replicas of the stream when it is created (3: a quorum survives one node).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// JetStream's dedup window for `Nats-Msg-Id`, seconds (default 120: re-sends
    /// within it are acknowledged as duplicates, not stored again).
    #[serde(default = "default_duplicate_window_s")]
    pub duplicate_window_s: u64,
    /// The stream drops messages older than this many seconds (JetStream's
    /// `max_age`; set when the stream is created and updated when it differs). A
    /// committed message is needed only to replay the time since a partition's
    /// checkpoint (indexers commit every `commit_interval_ms`), so the log need not
    /// keep every event ever ingested (at 150 M events a day, ~28 GB a day on each
    /// NATS node). Default 259,200 (3 days: an indexer outage over a weekend still
    /// replays); 0 keeps everything; otherwise at least 3,600. An indexer that finds
    /// the stream starting past its checkpoint says so in its log (events between may
    /// be gone).
    #[serde(default = "default_stream_max_age_s")]
    pub stream_max_age_s: u64,
    /// A libpq connection string (`host=… port=… user=… dbname=…`).
    pub postgres: String,
    /// Partitions, used only when the cluster's tables are created (default 64).
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    pub s3: S3Config,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub index: IndexConfig,
    #[serde(default)]
    pub query: QueryConfig,
    #[serde(default)]
    pub gat1400: Gat1400Config,
    /// The subject → partitions directory of sealed days (`crate::directory`).
    #[serde(default)]
    pub directory: DirectoryConfig,
    /// A secret every node of the cluster shares: the partition listeners
    /// (`index.serve`, `query.serve`) answer only requests carrying it
    /// (`Authorization: Bearer …`), and query nodes send it. Those listeners answer
    /// unscoped whatever a request asks (the caller's scope travels inside it), so
    /// without the secret anyone who reaches them reads every community. Unset by
    /// default, and then only allowed while both listeners bind loopback addresses
    /// (`try.sh`); at least 32 characters.
    #[serde(default)]
    pub partition_token: Option<String>,
    /// Connections each listener of a node holds open at once (default 4,096, as
    /// `serve`'s `max_connections`; lowered to what the process's open-file limit
    /// leaves): past it a listener stops accepting until one closes, the kernel
    /// queueing the rest, so idle or slow clients cannot take the descriptors the
    /// node's stores, logs and engines need.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// TLS between the nodes and to the engines (`crate::tls`): this node's
    /// certificate and key, and the CA that signed every node's. Default: none.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsConfig>,
    /// Allow plain HTTP on listeners bound to addresses other than loopback (default
    /// false): without `[tls]`, API keys, the partition token and residents' events
    /// would cross the network in clear, so a node refuses to start that way (as
    /// `serve` without `--allow-plaintext`). Set it only behind a TLS-terminating
    /// proxy or on a network that encrypts for you.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// PostgreSQL connections this node holds open at most, all its tasks together
    /// (default 16): one pool (`meta::pool`) that every task's statements borrow a
    /// connection from and give back. An indexer's supervisor, each partition it
    /// holds while it commits and while it renews its lease, its janitors, a query
    /// node's catalog, key and watchlist endpoints, its replicas' restores all draw
    /// from it. At least 2.
    #[serde(default = "default_postgres_pool_size")]
    pub postgres_pool_size: usize,
    /// A task waits at most this long for one of the pool's connections, ms (default
    /// 5,000; also bounded by the caller's own bound, e.g. a lease): past it the call
    /// fails as unavailable (an HTTP request answers 503 `storage_unavailable`), not
    /// a hang.
    #[serde(default = "default_postgres_wait_ms")]
    pub postgres_wait_ms: u64,
}

/// `[gat1400]`: what GA/T 1400 platforms may make the cluster do, read by ingest and
/// query nodes alike (as `serve`'s `--viid-receive-allow`, `--viid-receive-deny`,
/// `--viid-registration-any-address`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gat1400Config {
    /// Networks (`"10.1.0.0/16"`, a bare address its own /32 or /128) a platform's
    /// `ReceiveAddr` (`/VIID/Subscribes`, `/VIID/Dispositions`) may point into
    /// although refused by default (loopback, link-local, …: server/API.md, "Where a
    /// platform may make us send"); judged by ingest nodes at subscribe time and by
    /// query nodes at every connection. Default none: no loopback receiver (a
    /// cluster's own PostgreSQL, NATS and SeaweedFS ports are there).
    #[serde(default)]
    pub receive_allow: Vec<String>,
    /// Networks a platform's `ReceiveAddr` may never point into, over any allow.
    /// Default none.
    #[serde(default)]
    pub receive_deny: Vec<String>,
    /// Take a `/VIID/SubscribeNotifications` for a remote subscription from any
    /// address, not only those its host resolved to when it was last placed (a
    /// clustered lower platform sending from several nodes). Default false.
    #[serde(default)]
    pub registration_any_address: bool,
}

/// Whether `s` is a network (`CIDR`) or a bare IP address, as `[gat1400]` takes them.
fn is_network(s: &str) -> bool {
    match s.split_once('/') {
        None => s.parse::<std::net::IpAddr>().is_ok(),
        Some((ip, len)) => match (ip.parse::<std::net::IpAddr>(), len.parse::<u8>()) {
            (Ok(std::net::IpAddr::V4(_)), Ok(l)) => {
                l <= 32 && len.bytes().all(|b| b.is_ascii_digit())
            }
            (Ok(std::net::IpAddr::V6(_)), Ok(l)) => {
                l <= 128 && len.bytes().all(|b| b.is_ascii_digit())
            }
            _ => false,
        },
    }
}

/// Shortest [`ClusterConfig::partition_token`] accepted.
pub const MIN_PARTITION_TOKEN: usize = 32;

/// The S3 API the segments go to.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// e.g. `http://127.0.0.1:8333`; path-style requests are used.
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    #[serde(default = "default_region")]
    pub region: String,
}

/// The ingest role.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// SHA-256 (hex) of tokens allowed to ingest into every community
    /// (`Authorization: Bearer …`), as `sightline keys` stores them; checked before
    /// the keys of the cluster's `api_keys` table (`sightline cluster keys`: roles
    /// and community scopes), which are honoured too. No key at all is checked only
    /// while this is empty, `listen` is a loopback address and the table has never
    /// held a key (as `sightline serve --no-auth`).
    #[serde(default)]
    pub token_sha256: Vec<String>,
    /// Largest body, bytes (default 16 MiB, as `serve`).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Most records in one request (default 100,000, as `serve`).
    #[serde(default = "default_max_records")]
    pub max_batch_records: usize,
    /// The GA/T 1400 gateway's id (`VIIDServerID` of `/VIID/System/Time`; default as
    /// `serve`'s).
    #[serde(default = "default_viid_server_id")]
    pub viid_server_id: String,
    /// Largest `/VIID` upload body, bytes (default 64 MiB, as `serve`: a batch of
    /// objects with their pictures in base64).
    #[serde(default = "default_max_viid_body")]
    pub max_viid_body_bytes: usize,
    /// Upload bodies held in memory at once, bytes (default 256 MiB, as `serve`): a
    /// body reserves what it announces before it is read; beyond, 429.
    #[serde(default = "default_max_viid_inflight")]
    pub max_viid_inflight_bytes: usize,
    /// Largest picture of an uploaded object, bytes once decoded (default 8 MiB, as
    /// `serve`); a larger one refuses its object.
    #[serde(default = "default_max_picture")]
    pub max_picture_bytes: usize,
    /// The field of a face or person object that names its subject (default
    /// `ArchiveID`, as `serve`; without it, the object's id).
    #[serde(default = "default_face_subject")]
    pub gat1400_face_subject: String,
    /// Where this ingest node writes its audit log: every GA/T 1400 object query
    /// (`GET /VIID/MotorVehicles?…`, `GET /VIID/Faces/{id}`, …), answered or refused,
    /// as `serve` writes it (`sightline audit verify --data DIR` checks it with the
    /// node stopped; rotated past `query.audit_file_bytes`, signed with
    /// `query.audit_witness_key` when set). Default: beside `query.data`, named after
    /// it with `-ingest-audit` (`sightline-replicas-ingest-audit`): one per node
    /// wherever `query.data` is one per node, never the query node's own log (two
    /// ingest nodes started with one configuration on one host must each set it: the
    /// second would not start on a log the first holds).
    #[serde(default)]
    pub audit_dir: Option<PathBuf>,
}

/// The index role.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexConfig {
    /// Where partitions' local stores are kept (a cache: the truth is S3 + PostgreSQL).
    #[serde(default = "default_data")]
    pub data: PathBuf,
    /// This indexer's name in the leases, and a query node's in `query_members` (the
    /// rendezvous hashes it: give a stable name for stable replica placement);
    /// default `<host>-<pid>`.
    #[serde(default)]
    pub owner: Option<String>,
    /// A lease lasts this long unless renewed, ms (default 15 s). A query node's
    /// membership lasts as long: its replicas move to others once it is past.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// Leases are renewed (and partitions taken or given back) this often, ms
    /// (default 3 s: five tries before a lease lapses). Query nodes heartbeat, take
    /// and hand over replicas, and re-read where replicas and owners are, as often.
    #[serde(default = "default_renew_ms")]
    pub renew_ms: u64,
    /// A partition seals, uploads and commits this often, ms (default 10 s)…
    #[serde(default = "default_commit_ms")]
    pub commit_interval_ms: u64,
    /// …or once this many events arrived since the last commit (default 200,000).
    #[serde(default = "default_commit_events")]
    pub commit_events: u64,
    /// Messages asked of the log at once (default 2,000: one local fsync each).
    #[serde(default = "default_fetch")]
    pub fetch_batch: usize,
    /// Objects under the bucket that no commit names are removed once unnamed this
    /// long, s (default 1 h: far longer than any upload-to-commit window): counted
    /// from the commit that stopped naming one (`released_objects`; a replica
    /// restored before it may still read it, and one that finds it gone is restored
    /// again), or, for one never named, from its upload.
    #[serde(default = "default_janitor_age_s")]
    pub janitor_age_s: u64,
    /// The GA/T 1400 gateway's pictures and objects as uploaded are kept this many
    /// days past their event's day (Asia/Shanghai), then the janitor deletes the day
    /// whole (`janitor::sweep_gat1400`, on a task of its own), at most
    /// `GAT1400_DELETES_PER_SWEEP` objects a sweep; ingest nodes refuse an object of
    /// a day already past it. Default 0: as the cluster's event retention
    /// (`cluster_meta` `retention_days`, `PUT /v1/admin/retention`; none: kept
    /// forever), so a picture goes with its event's shard. Set it only to keep
    /// pictures for less time than events.
    #[serde(default)]
    pub gat1400_retention_days: u32,
    /// A commit also uploads the partition's index (subject → shards, statistics;
    /// the checkpoint format of `storage/FORMAT.md`) when the last upload of this
    /// owner is older than this, ms (default 5 min; 0: with every commit). A read
    /// replica restoring with a segment cache opens it instead of reading every row,
    /// so it fetches at start only segments committed since (at most this long's).
    #[serde(default = "default_index_upload_ms")]
    pub index_upload_ms: u64,
    /// Bytes of segment files this indexer fetched from object storage and keeps on
    /// local disk, all its partitions together (default 16 GiB, as
    /// `query.segment_cache_bytes`). A partition taken over restores only its
    /// metadata (the dictionary, each segment's facts, the last owner's uploaded
    /// index) and fetches an old segment with one range read of its bundle on first
    /// use: a query, a source-id duplicate check of its shard, a compaction or a
    /// retention drop; past this bound the least recently used fetched files are
    /// unlinked (and fetched again when needed). Segments the indexer seals or merges
    /// itself are its own files, outside the bound. 0: no cache, a partition taken
    /// over is downloaded whole before it is served (as before the cache).
    #[serde(default = "default_segment_cache_bytes")]
    pub segment_cache_bytes: u64,
    /// Where this indexer answers query nodes' partition requests (`POST
    /// /v1/partition`); advertised in `members.address` as bound (default
    /// 127.0.0.1:0: a free port; give a routable address with a fixed port on a real
    /// network). Requests carry the cluster's `partition_token`; with `[tls]` the
    /// listener speaks mutual TLS (a client certificate the cluster's CA signed).
    #[serde(default = "default_serve")]
    pub serve: SocketAddr,
    /// A partition's append fetches the old segments its source-id duplicate check
    /// reads (of a partition taken over, `segment_cache_bytes`) all at once before it
    /// appends, within this many ms (default 60,000); past it, or on an S3 error, the
    /// append is tried again (`append_attempts`), the lease kept meanwhile.
    #[serde(default = "default_segment_fetch_timeout_ms")]
    pub segment_fetch_timeout_ms: u64,
    /// An append that failed (its segments not fetched: S3 away or slow) is tried
    /// this many times in all, with a backoff from 250 ms doubling to 10 s between
    /// tries, each logged, the lease renewed meanwhile (default 8: about 37 s of
    /// backoff, and each try may take up to `segment_fetch_timeout_ms`: with the
    /// defaults up to ~9 minutes for one batch); then the partition commits what it
    /// has and releases its lease, the commit taken or not (another indexer, or this
    /// one at its next turn, takes it and replays from the checkpoint). 1 to 100.
    #[serde(default = "default_append_attempts")]
    pub append_attempts: u32,
}

/// The subject → partitions directory (`crate::directory`): built by one indexer at a
/// time for days long enough past, read by query nodes to ask a subject's question of
/// only the partitions that saw it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// Indexers build directories (default true; false: none is built, those built
    /// stay in use until retention drops them).
    #[serde(default = "default_true")]
    pub build: bool,
    /// Query nodes use the directories (default true; false: every partition is
    /// asked every question, as before them).
    #[serde(default = "default_true")]
    pub route: bool,
    /// A day is frozen for its directory once it ended this long ago, ms (default
    /// 3,600,000: an hour, so the late trickle of a day's events mostly lands before;
    /// later ones are noted in `late_days` and still found).
    #[serde(default = "default_directory_min_age_ms")]
    pub min_age_ms: u64,
    /// How old an ingest node's reading of the frozen days may be when it
    /// acknowledges an event, ms (default 300,000, as the keys' and watchlists'
    /// bound): past it, ingest is refused (503) until it reads them again. The
    /// builder waits this long (and a renewal) after freezing a day before it reads
    /// the log's end, so every node acknowledging after that notes late events.
    #[serde(default = "default_directory_frozen_view_ms")]
    pub frozen_view_ms: u64,
    /// Buckets of a day's directory object (default 256: at 1 M subjects a day a
    /// bucket is ~50 KB, read with one range read). 1 to 65,536.
    #[serde(default = "default_directory_buckets")]
    pub buckets: u32,
    /// The builder looks for a day to freeze, build or drop this often, ms (default
    /// 60,000); its lease (and the bound on one step) lasts three times this, and at
    /// least 10 minutes.
    #[serde(default = "default_directory_every_ms")]
    pub every_ms: u64,
    /// Directory buckets a query node keeps in memory, bytes (default 64 MiB; least
    /// recently used first out).
    #[serde(default = "default_directory_cache_bytes")]
    pub cache_bytes: u64,
}

/// The query role.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    #[serde(default = "default_query_listen")]
    pub listen: SocketAddr,
    /// SHA-256 (hex) of tokens allowed to query every community, as
    /// `ingest.token_sha256`: they come first, then the keys of the `api_keys` table
    /// (role investigate or admin, confined to their communities). No key at all is
    /// checked only while this is empty, `listen` is a loopback address and the table
    /// has never held a key.
    #[serde(default)]
    pub token_sha256: Vec<String>,
    /// A query's time limit, ms (default 30 s, as `serve`): past it, 503.
    #[serde(default = "default_query_timeout_ms")]
    pub timeout_ms: u64,
    /// Most rows an answer may hold (default 10,000, as `serve`).
    #[serde(default = "default_max_result_rows")]
    pub max_result_rows: usize,
    /// One call to an indexer may take this long, ms (default 20 s).
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// A partition whose owner fails or refuses is asked again (owners re-read from
    /// the leases) for up to this long, ms, within the query's time limit (default
    /// 25 s: longer than a lease, so a dead indexer's partitions are taken over).
    #[serde(default = "default_retry_ms")]
    pub retry_ms: u64,
    /// Queries at once (default 64, as `serve`'s query slots): 429 beyond.
    #[serde(default = "default_query_slots")]
    pub slots: usize,
    /// Read replicas of each partition kept by the query nodes (default 1: the
    /// indexers answer only what no live replica does, and a query node's death costs
    /// a query only the calls it was answering, asked again elsewhere). Each partition
    /// goes to the `replicas` live query nodes that rendezvous hashing ranks first;
    /// every query node must say the same number. 0: this node holds no replica and
    /// is no member (it asks other query nodes' replicas, then the indexers). A
    /// replica restores its partition's metadata from S3 (its segments fetched on
    /// first use: `segment_cache_bytes`) and follows the log, so each costs a
    /// consumer of its subjects and its share of the segment cache.
    #[serde(default = "default_query_replicas")]
    pub replicas: usize,
    /// Bytes of segment files this node's replicas keep on local disk, all of them
    /// together (default 16 GiB). A replica restores only its partition's metadata
    /// (the dictionary, each segment's facts) and fetches a segment with one range
    /// read of its bundle on first use; past this bound the least recently used files
    /// are unlinked (a query reading one keeps it until it ends; the newest file is
    /// kept even when larger than the bound). 0: no cache, replicas download their
    /// partitions whole at restore (as before the cache). Segments committed before
    /// the catalog kept their facts are downloaded at restore either way. Only fetched
    /// files count: segments a replica seals or merges itself (the log's events since
    /// the last commit, its own compaction) are its own files, outside the bound.
    #[serde(default = "default_segment_cache_bytes")]
    pub segment_cache_bytes: u64,
    /// Where this query node keeps its replicas' stores (a cache, emptied at start:
    /// the truth is S3 + PostgreSQL + the log).
    #[serde(default = "default_query_data")]
    pub data: PathBuf,
    /// Where this query node answers other query nodes' partition requests from its
    /// replicas (`POST /v1/partition`, as `index.serve`) (default 127.0.0.1:0: a free
    /// port). Requests carry the cluster's `partition_token`; with `[tls]`, mutual TLS
    /// as `index.serve`.
    #[serde(default = "default_serve")]
    pub serve: SocketAddr,
    /// Where other query nodes reach `serve` (`host:port`), advertised in
    /// `query_members.address`. Default: the address `serve` is bound to, which only
    /// works when every query node runs on one host: production sets it. An
    /// unspecified address (0.0.0.0, ::) or port 0 is refused.
    #[serde(default)]
    pub advertise: Option<String>,
    /// Where this query node writes its audit log (every query, answered or refused:
    /// `sightline audit verify --data DIR` checks it with the node stopped). Default:
    /// beside `data`, named after it with `-audit` (`sightline-replicas-audit`): out of
    /// the replicas' cache, and one per node wherever `data` is one per node.
    #[serde(default)]
    pub audit_dir: Option<PathBuf>,
    /// The audit log's file is rotated past this many bytes (default 64 MiB, as
    /// `serve`).
    #[serde(default = "default_audit_file_bytes")]
    pub audit_file_bytes: u64,
    /// Sign the audit log's head into `audit_dir/audit.witness` with the key in this
    /// file (as `serve --audit-witness-key`; keep it outside `audit_dir`). Default:
    /// none.
    #[serde(default)]
    pub audit_witness_key: Option<PathBuf>,
    /// Where subscribers fetch the pictures their notifications name
    /// (`http://host:port`, no trailing slash: a GA/T 1400 `StoragePath` is this and
    /// `/v1/images/{id}`), as `serve --public-url`. Default: `http://` (`https://` with
    /// `[tls]`'s public listeners) and the address `listen` is bound to (fine on one host; production sets it, e.g. the query
    /// nodes' load balancer).
    #[serde(default)]
    pub public_url: Option<String>,
    /// Subscriptions the cluster holds at most, all owners together (default
    /// 10,000): a new one past it is refused (`POST /v1/subscriptions` 429
    /// `too_many_subscriptions`, `/VIID/Subscribes` status 2). A disposition's
    /// notifications count but are bounded by the watchlists' own limit.
    #[serde(default = "default_max_subscriptions")]
    pub max_subscriptions: usize,
    /// Subscriptions one owner (a key's hash prefix as `serve` names it, or a GA/T
    /// 1400 platform) holds at most (default 100), refused as `max_subscriptions`.
    #[serde(default = "default_max_subscriptions_per_owner")]
    pub max_subscriptions_per_owner: usize,
    /// Feed reads of this node's delivery workers at once (default 4): a worker
    /// with its subscription's page to read waits for one of these, so a node
    /// holding many subscriptions asks the partitions for at most this many pages
    /// at a time. 0 is refused.
    #[serde(default = "default_delivery_reads")]
    pub delivery_reads: usize,
}

impl QueryConfig {
    /// Where the audit log is written: `audit_dir`, or `data` + `-audit` beside it.
    pub fn audit_dir(&self) -> PathBuf {
        self.audit_dir.clone().unwrap_or_else(|| {
            let mut name = self
                .data
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_else(|| "sightline-replicas".into());
            name.push("-audit");
            self.data.with_file_name(name)
        })
    }
}

fn default_true() -> bool {
    true
}
fn default_directory_min_age_ms() -> u64 {
    3_600_000
}
fn default_directory_frozen_view_ms() -> u64 {
    300_000
}
fn default_directory_buckets() -> u32 {
    256
}
fn default_directory_every_ms() -> u64 {
    60_000
}
fn default_directory_cache_bytes() -> u64 {
    64 << 20
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        DirectoryConfig {
            build: true,
            route: true,
            min_age_ms: default_directory_min_age_ms(),
            frozen_view_ms: default_directory_frozen_view_ms(),
            buckets: default_directory_buckets(),
            every_ms: default_directory_every_ms(),
            cache_bytes: default_directory_cache_bytes(),
        }
    }
}

fn default_postgres_pool_size() -> usize {
    16
}
fn default_postgres_wait_ms() -> u64 {
    5_000
}
fn default_segment_fetch_timeout_ms() -> u64 {
    60_000
}
fn default_append_attempts() -> u32 {
    8
}
fn default_stream() -> String {
    "SIGHTLINE_EVENTS".into()
}
fn default_replicas() -> usize {
    3
}
fn default_duplicate_window_s() -> u64 {
    120
}
fn default_stream_max_age_s() -> u64 {
    3 * 86_400
}
fn default_partitions() -> u32 {
    64
}
fn default_max_connections() -> usize {
    4096
}
fn default_region() -> String {
    "us-east-1".into()
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_body() -> usize {
    16 << 20
}
fn default_max_records() -> usize {
    100_000
}
fn default_viid_server_id() -> String {
    "32050000005030000001".into()
}
fn default_max_viid_body() -> usize {
    64 << 20
}
fn default_max_viid_inflight() -> usize {
    256 << 20
}
fn default_max_picture() -> usize {
    8 << 20
}
fn default_face_subject() -> String {
    "ArchiveID".into()
}
fn default_data() -> PathBuf {
    PathBuf::from("sightline-index")
}
fn default_lease_ms() -> u64 {
    15_000
}
fn default_renew_ms() -> u64 {
    3_000
}
fn default_commit_ms() -> u64 {
    10_000
}
fn default_commit_events() -> u64 {
    200_000
}
fn default_fetch() -> usize {
    2_000
}
fn default_index_upload_ms() -> u64 {
    300_000
}
fn default_janitor_age_s() -> u64 {
    3_600
}
fn default_serve() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
fn default_query_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8081))
}
fn default_query_timeout_ms() -> u64 {
    30_000
}
fn default_max_result_rows() -> usize {
    10_000
}
fn default_call_timeout_ms() -> u64 {
    20_000
}
fn default_retry_ms() -> u64 {
    25_000
}
fn default_query_slots() -> usize {
    64
}
fn default_query_replicas() -> usize {
    1
}
fn default_segment_cache_bytes() -> u64 {
    16 << 30
}
fn default_query_data() -> PathBuf {
    PathBuf::from("sightline-replicas")
}
fn default_max_subscriptions() -> usize {
    10_000
}
fn default_max_subscriptions_per_owner() -> usize {
    100
}
fn default_delivery_reads() -> usize {
    4
}
fn default_audit_file_bytes() -> u64 {
    64 << 20
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            listen: default_listen(),
            token_sha256: Vec::new(),
            max_body_bytes: default_max_body(),
            max_batch_records: default_max_records(),
            viid_server_id: default_viid_server_id(),
            max_viid_body_bytes: default_max_viid_body(),
            max_viid_inflight_bytes: default_max_viid_inflight(),
            max_picture_bytes: default_max_picture(),
            gat1400_face_subject: default_face_subject(),
            audit_dir: None,
        }
    }
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            data: default_data(),
            owner: None,
            lease_ms: default_lease_ms(),
            renew_ms: default_renew_ms(),
            commit_interval_ms: default_commit_ms(),
            commit_events: default_commit_events(),
            fetch_batch: default_fetch(),
            janitor_age_s: default_janitor_age_s(),
            gat1400_retention_days: 0,
            index_upload_ms: default_index_upload_ms(),
            segment_cache_bytes: default_segment_cache_bytes(),
            serve: default_serve(),
            segment_fetch_timeout_ms: default_segment_fetch_timeout_ms(),
            append_attempts: default_append_attempts(),
        }
    }
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            listen: default_query_listen(),
            token_sha256: Vec::new(),
            timeout_ms: default_query_timeout_ms(),
            max_result_rows: default_max_result_rows(),
            call_timeout_ms: default_call_timeout_ms(),
            retry_ms: default_retry_ms(),
            slots: default_query_slots(),
            replicas: default_query_replicas(),
            segment_cache_bytes: default_segment_cache_bytes(),
            data: default_query_data(),
            serve: default_serve(),
            advertise: None,
            audit_dir: None,
            audit_file_bytes: default_audit_file_bytes(),
            audit_witness_key: None,
            public_url: None,
            max_subscriptions: default_max_subscriptions(),
            max_subscriptions_per_owner: default_max_subscriptions_per_owner(),
            delivery_reads: default_delivery_reads(),
        }
    }
}

/// Refuses a `query.public_url` that is not `http(s)://host[:port]` (no path, query
/// or user; a trailing `/` allowed), as `serve --public-url`.
pub fn check_public_url(url: &str) -> std::result::Result<(), String> {
    let bad = || format!("{url:?} is not like http://host:port (no path)");
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(bad)?;
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.is_empty()
        || host.starts_with(':')
        || host.contains(['/', '?', '#', '@', ' ', '\\'])
        || host.chars().any(|c| c.is_control())
    {
        return Err(bad());
    }
    Ok(())
}

/// Refuses an advertised address other hosts cannot reach: not `host:port`, port 0,
/// or an unspecified IP (0.0.0.0, ::).
pub fn check_advertised(address: &str) -> std::result::Result<(), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("{address:?} is not host:port"))?;
    match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err(format!("{address:?}: a port from 1 to 65535")),
        Ok(_) => {}
    }
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty()
        || ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified())
    {
        return Err(format!(
            "{address:?} is no address another host can reach (set query.advertise)"
        ));
    }
    Ok(())
}

/// The host of a URL's rest after its scheme (`user@host:port/path` → `host`).
fn url_host(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    }
}

/// Whether `host` names this machine only (`localhost`, a loopback address).
fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl ClusterConfig {
    /// Where an ingest node writes its audit log: `ingest.audit_dir`, or `query.data`
    /// + `-ingest-audit` beside it.
    pub fn ingest_audit_dir(&self) -> PathBuf {
        self.ingest.audit_dir.clone().unwrap_or_else(|| {
            let data = &self.query.data;
            let mut name = data
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_else(|| "sightline-replicas".into());
            name.push("-ingest-audit");
            data.with_file_name(name)
        })
    }

    /// Reads and checks `path`.
    pub fn from_file(path: &Path) -> Result<ClusterConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| ClusterError::Io {
            context: format!("reading {}", path.display()),
            source,
        })?;
        let mut config: ClusterConfig = toml::from_str(&text)
            .map_err(|e| ClusterError::Config(format!("{}: {e}", path.display())))?;
        config.check()?;
        // As `serve --public-url`: a trailing `/` is dropped.
        if let Some(u) = &mut config.query.public_url {
            *u = u.trim_end_matches('/').to_string();
        }
        Ok(config)
    }

    /// Refuses settings that cannot work.
    pub fn check(&self) -> Result<()> {
        let bad = |m: &str| Err(ClusterError::Config(m.to_string()));
        if self.nats.is_empty() {
            return bad("nats: at least one server URL");
        }
        if self.partitions == 0 || self.partitions > 1 << 16 {
            return bad("partitions: 1 to 65536");
        }
        if self.max_connections == 0 {
            return bad("max_connections: positive");
        }
        if self.postgres_pool_size < 2 {
            return bad("postgres_pool_size: at least 2");
        }
        // (A wait near a lease lets one renewal's wait use most of it: keep it well
        // below `index.lease_ms`; a renewal is bounded by a lease in any case.)
        if self.postgres_wait_ms == 0 {
            return bad("postgres_wait_ms: positive");
        }
        if self.index.append_attempts == 0 || self.index.append_attempts > 100 {
            return bad("index.append_attempts: 1 to 100");
        }
        if self.index.segment_fetch_timeout_ms == 0 || self.index.segment_fetch_timeout_ms > 600_000
        {
            return bad("index.segment_fetch_timeout_ms: 1 to 600000");
        }
        if self.replicas == 0 || self.replicas > 5 {
            return bad("replicas: 1 to 5 (JetStream's limit)");
        }
        if self.stream_max_age_s != 0
            && (self.stream_max_age_s < 3_600 || self.stream_max_age_s <= self.duplicate_window_s)
        {
            return bad(
                "stream_max_age_s: 0 (keep everything) or at least 3600 and above duplicate_window_s",
            );
        }
        let i = &self.index;
        if i.renew_ms == 0 || i.renew_ms * 2 > i.lease_ms {
            return bad("index.renew_ms: positive and at most half of index.lease_ms");
        }
        if i.commit_interval_ms == 0 || i.commit_events == 0 || i.fetch_batch == 0 {
            return bad("index.commit_interval_ms, commit_events, fetch_batch: positive");
        }
        let d = &self.directory;
        if d.buckets == 0 || d.buckets > crate::directory::MAX_BUCKETS {
            return bad("directory.buckets: 1 to 65536");
        }
        if d.every_ms == 0 {
            return bad("directory.every_ms: positive");
        }
        // An ingest node reads the frozen days every renewal: a bound under two of
        // them would refuse events for most of each interval.
        if d.frozen_view_ms < 2 * i.renew_ms {
            return bad("directory.frozen_view_ms: at least twice index.renew_ms");
        }
        // The directory names partitions in 16 bits.
        if d.build && self.partitions > crate::directory::format::MAX_PARTITIONS {
            return bad(
                "directory.build needs partitions of at most 65535 (set directory.build = false)",
            );
        }
        for (name, hashes) in [
            ("ingest.token_sha256", &self.ingest.token_sha256),
            ("query.token_sha256", &self.query.token_sha256),
        ] {
            if let Some(h) = hashes
                .iter()
                .find(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(ClusterError::Config(format!(
                    "{name}: {h:?} is not a SHA-256 in hex (64 digits)"
                )));
            }
        }
        let g = &self.ingest;
        if g.max_viid_body_bytes == 0
            || g.max_viid_inflight_bytes < g.max_viid_body_bytes
            || g.max_picture_bytes == 0
            || g.max_picture_bytes > 16 << 20
        {
            return bad(
                "ingest.max_viid_body_bytes, max_picture_bytes: positive; max_viid_inflight_bytes at least max_viid_body_bytes; max_picture_bytes at most 16 MiB (as serve's store)",
            );
        }
        if sightline_storage::DeviceCode::parse_checked(&g.viid_server_id).is_err() {
            return bad("ingest.viid_server_id: a GA/T 1400 id (a GB/T 28181 code: 20 digits, a province and a type code the standard defines)");
        }
        for (name, list) in [
            ("gat1400.receive_allow", &self.gat1400.receive_allow),
            ("gat1400.receive_deny", &self.gat1400.receive_deny),
        ] {
            if let Some(n) = list.iter().find(|n| !is_network(n.trim())) {
                return Err(ClusterError::Config(format!(
                    "{name}: {n:?} is not a network like 10.0.0.0/8 or fd00::/8"
                )));
            }
        }
        let q = &self.query;
        if q.timeout_ms == 0 || q.call_timeout_ms == 0 || q.slots == 0 || q.max_result_rows == 0 {
            return bad("query.timeout_ms, call_timeout_ms, slots, max_result_rows: positive");
        }
        if q.replicas > 16 {
            return bad("query.replicas: 0 to 16");
        }
        if q.audit_file_bytes < 4096 {
            return bad("query.audit_file_bytes: at least 4096");
        }
        match &self.partition_token {
            Some(t) if t.chars().count() < MIN_PARTITION_TOKEN => {
                return Err(ClusterError::Config(format!(
                    "partition_token: at least {MIN_PARTITION_TOKEN} characters"
                )));
            }
            Some(_) => {}
            None => {
                for (name, addr) in [("index.serve", i.serve), ("query.serve", q.serve)] {
                    if !addr.ip().is_loopback() {
                        return Err(ClusterError::Config(format!(
                            "{name} = {addr} is not a loopback address: set partition_token \
                             (a shared secret) so that only the cluster's nodes are answered there"
                        )));
                    }
                }
            }
        }
        if let Some(u) = &q.public_url {
            check_public_url(u)
                .map_err(|e| ClusterError::Config(format!("query.public_url: {e}")))?;
        }
        if q.delivery_reads == 0 {
            return bad("query.delivery_reads: positive");
        }
        if let Some(a) = &q.advertise {
            check_advertised(a)
                .map_err(|e| ClusterError::Config(format!("query.advertise: {e}")))?;
        }
        self.check_plaintext()?;
        if crate::tls::postgres_requires_tls(&self.postgres) && self.tls.is_none() {
            return bad(
                "postgres: sslmode=require checks PostgreSQL's certificate against tls.ca: add [tls]",
            );
        }
        Ok(())
    }

    /// Refuses, unless `allow_plaintext`, a listener bound beyond loopback that would
    /// speak plain HTTP (a public one without `[tls]`, a partition listener without
    /// `[tls]`; a public one named in `tls.plain` is the operator's choice), and an
    /// engine beyond loopback reached in clear (PostgreSQL over TCP without
    /// `sslmode=require`, a `nats://` URL, an `http://` S3 endpoint).
    fn check_plaintext(&self) -> Result<()> {
        use crate::tls::PublicListener;
        if self.allow_plaintext {
            return Ok(());
        }
        let public = |which| self.tls.as_ref().map(|t| !t.serves(which));
        let listeners = [
            (
                "ingest.listen",
                self.ingest.listen,
                public(PublicListener::Ingest),
            ),
            (
                "query.listen",
                self.query.listen,
                public(PublicListener::Query),
            ),
            (
                "index.serve",
                self.index.serve,
                self.tls.as_ref().map(|_| false),
            ),
            (
                "query.serve",
                self.query.serve,
                self.tls.as_ref().map(|_| false),
            ),
        ];
        for (name, addr, plain) in listeners {
            // `None`: no [tls] at all; `Some(true)`: named in tls.plain.
            if plain.is_none() && !addr.ip().is_loopback() {
                return Err(ClusterError::Config(format!(
                    "{name} = {addr} would speak plain HTTP beyond loopback: add [tls] \
                     (cert, key, ca), bind a loopback address, or set allow_plaintext = true"
                )));
            }
        }
        let engine = |what: &str, host: &str| -> Result<()> {
            match is_loopback_host(host) {
                true => Ok(()),
                false => Err(ClusterError::Config(format!(
                    "{what} reaches {host} in clear: {}, or set allow_plaintext = true",
                    match what {
                        "postgres" => "add sslmode=require (checked against tls.ca)",
                        "nats" => "use tls:// URLs",
                        _ => "use an https:// endpoint",
                    }
                ))),
            }
        };
        if !crate::tls::postgres_requires_tls(&self.postgres) {
            if let Ok(pg) = self.postgres.parse::<tokio_postgres::Config>() {
                for h in pg.get_hosts() {
                    if let tokio_postgres::config::Host::Tcp(host) = h {
                        engine("postgres", host)?;
                    }
                }
            }
        }
        for url in &self.nats {
            if let Some(rest) = url.strip_prefix("nats://") {
                engine("nats", url_host(rest))?;
            }
        }
        if let Some(rest) = self.s3.endpoint.strip_prefix("http://") {
            engine("s3.endpoint", url_host(rest))?;
        }
        Ok(())
    }

    /// Whether `ingest.listen` and `query.listen` speak TLS: the `[tls]` they use.
    pub fn public_tls(&self, which: crate::tls::PublicListener) -> Option<&crate::tls::TlsConfig> {
        self.tls.as_ref().filter(|t| t.serves(which))
    }

    /// This indexer's owner name.
    pub fn owner(&self) -> String {
        self.index.owner.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "host".into());
            format!("{host}-{}", std::process::id())
        })
    }

    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.index.lease_ms)
    }
    pub fn renew(&self) -> Duration {
        Duration::from_millis(self.index.renew_ms)
    }
    pub fn segment_fetch_timeout(&self) -> Duration {
        Duration::from_millis(self.index.segment_fetch_timeout_ms)
    }
    pub fn commit_interval(&self) -> Duration {
        Duration::from_millis(self.index.commit_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::PublicListener;

    const MINIMAL: &str = r#"
nats = ["nats://127.0.0.1:4222"]
postgres = "host=127.0.0.1 user=postgres"
[s3]
endpoint = "http://127.0.0.1:8333"
bucket = "b"
access_key = "a"
secret_key = "s"
"#;

    fn parse(text: &str) -> Result<ClusterConfig> {
        let c: ClusterConfig =
            toml::from_str(text).map_err(|e| ClusterError::Config(e.to_string()))?;
        c.check()?;
        Ok(c)
    }

    #[test]
    fn a_minimal_file_takes_the_documented_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.partitions, 64);
        assert_eq!(c.replicas, 3);
        assert_eq!(c.stream_max_age_s, 259_200);
        assert_eq!(c.index.commit_interval_ms, 10_000);
        assert_eq!(c.index.lease_ms, 15_000);
        assert!(c.ingest.listen.ip().is_loopback());
        assert_eq!(c.query.replicas, 1);
        assert!(c.query.serve.ip().is_loopback());
        assert_eq!(c.query.advertise, None);
        let c = parse(&format!(
            "{MINIMAL}\n[query]\nadvertise = \"10.0.0.7:7000\""
        ))
        .unwrap();
        assert_eq!(c.query.advertise.as_deref(), Some("10.0.0.7:7000"));
        assert!(check_advertised("q1.internal:7000").is_ok());
        assert!(c.owner().ends_with(&format!("-{}", std::process::id())));
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        for bad in [
            "partitions = 0",
            "replicas = 7",
            "[index]\nrenew_ms = 10000",
            "[index]\ncommit_events = 0",
            "[ingest]\ntoken_sha256 = [\"ab\"]",
            "[query]\ntoken_sha256 = [\"not hex, but 64 characters long: not a SHA-256 of anything at all\"]",
            "[query]\naudit_file_bytes = 10",
            "[query]\nreplicas = 17",
            "[query]\nadvertise = \"0.0.0.0:7000\"",
            "[query]\nadvertise = \"[::]:7000\"",
            "[query]\nadvertise = \"q1.internal:0\"",
            "[query]\nadvertise = \"q1.internal\"",
            "[index]\nserve = \"0.0.0.0:7000\"",
            "[query]\nserve = \"10.0.0.7:7001\"",
            "partition_token = \"shorter than 32 characters\"",
            "stream_max_age_s = 60",
            "[directory]\nfrozen_view_ms = 5000",
            "partitions = 65536",
            "unknown_key = 1",
        ] {
            let text = match bad.starts_with('[') {
                true => format!("{MINIMAL}\n{bad}"),
                false => format!("{bad}\n{MINIMAL}"),
            };
            assert!(parse(&text).is_err(), "{bad} was accepted");
        }
        // A wide address without listed tokens is fine: such a node is never open
        // (it lets in only the keys of the cluster's table). But not in clear.
        let hash = "ab".repeat(32);
        let tls = "[tls]\ncert = \"n.pem\"\nkey = \"n.key\"\nca = \"ca.pem\"";
        for wide in [
            format!("{MINIMAL}\n[ingest]\nlisten = \"0.0.0.0:8080\"\ntoken_sha256 = [\"{hash}\"]"),
            format!("{MINIMAL}\n[ingest]\nlisten = \"0.0.0.0:8080\""),
            format!("{MINIMAL}\n[query]\nlisten = \"0.0.0.0:8081\""),
        ] {
            let refused = parse(&wide).unwrap_err().to_string();
            assert!(refused.contains("plain HTTP beyond loopback"), "{refused}");
            assert!(
                parse(&format!("allow_plaintext = true\n{wide}")).is_ok(),
                "{wide}"
            );
            let with_tls = parse(&format!("{wide}\n{tls}")).unwrap();
            assert!(with_tls.public_tls(PublicListener::Ingest).is_some());
            assert!(with_tls.public_tls(PublicListener::Query).is_some());
            // Named in `plain`: that listener in clear, by the operator's choice.
            let plain = parse(&format!("{wide}\n{tls}\nplain = [\"ingest\"]")).unwrap();
            assert!(plain.public_tls(PublicListener::Ingest).is_none());
            assert!(plain.public_tls(PublicListener::Query).is_some());
            assert!(parse(&format!("{wide}\n{tls}\nplain = [\"nobody\"]")).is_err());
        }
        // Partition listeners on the network need the cluster's shared secret, and
        // TLS (or allow_plaintext).
        let secret = "partition_token = \"a secret of at least thirty-two characters\"";
        let partition = format!(
            "{MINIMAL}\n[index]\nserve = \"0.0.0.0:7000\"\n[query]\nserve = \"10.0.0.7:7001\""
        );
        assert!(parse(&format!("{secret}\n{partition}")).is_err());
        let c = parse(&format!("{secret}\nallow_plaintext = true\n{partition}")).unwrap();
        assert!(c.partition_token.is_some());
        let c = parse(&format!(
            "{secret}\n{partition}\n{tls}\nplain = [\"ingest\", \"query\"]"
        ))
        .unwrap();
        assert!(c.tls.is_some() && c.public_tls(PublicListener::Query).is_none());
        // Engines beyond loopback in clear are refused; over TLS, or allowed, fine.
        for (clear, safe) in [
            (
                MINIMAL.replace("host=127.0.0.1", "host=10.0.0.9"),
                MINIMAL.replace("host=127.0.0.1", "host=10.0.0.9 sslmode=require"),
            ),
            (
                MINIMAL.replace("nats://127.0.0.1", "nats://10.0.0.1"),
                MINIMAL.replace("nats://127.0.0.1", "tls://10.0.0.1"),
            ),
            (
                MINIMAL.replace("http://127.0.0.1:8333", "http://s3.internal:8333"),
                MINIMAL.replace("http://127.0.0.1:8333", "https://s3.internal:8333"),
            ),
        ] {
            let refused = parse(&format!("{clear}\n{tls}")).unwrap_err().to_string();
            assert!(refused.contains("in clear"), "{refused}");
            assert!(parse(&format!("allow_plaintext = true\n{clear}\n{tls}")).is_ok());
            assert!(parse(&format!("{safe}\n{tls}")).is_ok(), "{safe}");
        }
        assert_eq!(url_host("user:pw@[::1]:4222/x"), "::1");
        assert!(is_loopback_host("::1") && is_loopback_host("LOCALHOST"));
        // TLS to PostgreSQL is checked against the CA: `require` needs `[tls]`.
        let pg = MINIMAL.replace("user=postgres", "user=postgres sslmode=require");
        assert_ne!(pg, MINIMAL);
        assert!(parse(&pg)
            .unwrap_err()
            .to_string()
            .contains("sslmode=require"));
        assert!(parse(&format!("{pg}\n{tls}")).is_ok());
    }

    #[test]
    fn the_pool_and_the_append_retries_have_defaults_and_refuse_what_cannot_work() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!((c.postgres_pool_size, c.postgres_wait_ms), (16, 5_000));
        assert_eq!(c.index.segment_fetch_timeout_ms, 60_000);
        assert_eq!(c.index.append_attempts, 8);
        let c = parse(&format!(
            "postgres_pool_size = 2\npostgres_wait_ms = 500\n{MINIMAL}"
        ))
        .unwrap();
        assert_eq!((c.postgres_pool_size, c.postgres_wait_ms), (2, 500));
        for (bad, named) in [
            (
                format!("postgres_pool_size = 1\n{MINIMAL}"),
                "postgres_pool_size",
            ),
            (
                format!("postgres_wait_ms = 0\n{MINIMAL}"),
                "postgres_wait_ms",
            ),
            (
                format!("{MINIMAL}\n[index]\nappend_attempts = 0"),
                "index.append_attempts",
            ),
            (
                format!("{MINIMAL}\n[index]\nsegment_fetch_timeout_ms = 0"),
                "index.segment_fetch_timeout_ms",
            ),
        ] {
            let refused = parse(&bad).unwrap_err().to_string();
            assert!(refused.contains(named), "{bad}: {refused}");
        }
    }

    #[test]
    fn the_audit_log_defaults_beside_the_replicas_and_one_per_node() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(
            c.query.audit_dir(),
            PathBuf::from("sightline-replicas-audit")
        );
        assert_eq!(c.query.audit_file_bytes, 64 << 20);
        assert_eq!(c.query.audit_witness_key, None);
        let c = parse(&format!(
            "{MINIMAL}\n[query]\ndata = \"/var/lib/q1/replicas\""
        ))
        .unwrap();
        assert_eq!(
            c.query.audit_dir(),
            PathBuf::from("/var/lib/q1/replicas-audit")
        );
        let c = parse(&format!(
            "{MINIMAL}\n[query]\ndata = \"/var/lib/q1/\"\naudit_dir = \"/srv/audit\""
        ))
        .unwrap();
        assert_eq!(c.query.audit_dir(), PathBuf::from("/srv/audit"));
        let c = parse(&format!("{MINIMAL}\n[query]\ndata = \"/var/lib/q1/\"")).unwrap();
        assert_eq!(c.query.audit_dir(), PathBuf::from("/var/lib/q1-audit"));
    }

    #[test]
    fn gat1400_receivers_default_to_none_and_networks_are_checked() {
        let c = parse(MINIMAL).unwrap();
        assert!(c.gat1400.receive_allow.is_empty() && c.gat1400.receive_deny.is_empty());
        assert!(!c.gat1400.registration_any_address);
        let with = |t: &str| parse(&format!("{MINIMAL}\n[gat1400]\n{t}\n"));
        let c = with(
            r#"receive_allow = ["127.0.0.1", "10.0.0.0/8", "fd00::/8"]
receive_deny = ["10.9.0.0/16"]
registration_any_address = true"#,
        )
        .unwrap();
        assert_eq!(c.gat1400.receive_allow.len(), 3);
        assert!(c.gat1400.registration_any_address);
        for bad in ["10.0.0.0/33", "intranet", "10.0.0.0/+8", "::1/129"] {
            let e = with(&format!("receive_deny = [{bad:?}]"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("gat1400.receive_deny") && e.contains(bad), "{e}");
        }
    }
}
