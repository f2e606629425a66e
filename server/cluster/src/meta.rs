//! PostgreSQL: leases, checkpoints and the catalog of committed segments.
//!
//! ```sql
//! cluster_meta (key PRIMARY KEY, value)            -- 'partitions' = P, set once;
//!                                                    -- 'retention_days' (absent: keep all)
//! leases   (partition PRIMARY KEY, owner, epoch, expires_at, checkpoint_seq, dict_bytes)
//! members  (owner PRIMARY KEY, expires_at, address) -- live indexers (fair share; where
//!                                                   --   query nodes reach them)
//! segments (partition, segment_id, community, span, file, events, max_seq, object_key, epoch,
//!   object_offset, object_len, min_seq, min_ts_ms, max_ts_ms)
//! dict_chunks (partition, start_offset, len, object_key, epoch)
//! query_members (member PRIMARY KEY, expires_at, address, serving integer[])
//!                                                   -- live query nodes, where they answer
//!                                                   --   and the read replicas they serve
//! api_keys (id PRIMARY KEY, name, token_sha256 UNIQUE, role, communities text[],
//!           created_at, revoked_at)                 -- the cluster's API keys (`keys.rs`)
//! gat1400_credentials, gat1400_registrations,      -- the GA/T 1400 gateway's (`gat1400.rs`)
//! gat1400_nonces
//! watchlists (id PRIMARY KEY, name, reason, expires_ms, entries jsonb, scope text[])
//!                                                   -- `serve`'s watchlists (`watchlists.rs`)
//! alerts (id bigserial PRIMARY KEY, watchlist, community, msg_id, body, raised_at,
//!         UNIQUE (watchlist, msg_id))          -- the alerts they raise (`alerts.rs`)
//! subscriptions (id PRIMARY KEY, owner, body jsonb, cursor, holder, epoch, expires_at,
//!                delivered, failures_…, last_error, last_success_ms)
//!                                                   -- `serve`'s subscriptions and their
//!                                                   --   delivery leases (`subscriptions.rs`)
//! upstream_sessions (id PRIMARY KEY → subscriptions, epoch, state jsonb, server_id,
//!                    device_id, scope text[], addresses text[], registered)
//!                                                   -- an upstream's registration, as its
//!                                                   --   holder last wrote it (`upstreams.rs`)
//! remote_subscriptions (id PRIMARY KEY, owner, body jsonb, subscribe_id, holder, epoch,
//!                       expires_at, status jsonb)   -- `serve`'s remote subscriptions and
//!                                                   --   their leases (`upstreams.rs`)
//! directory_days, late_days, directories,          -- the subject → partitions directory
//! directory_builder                                --   (`directory/catalog.rs`)
//! ```
//!
//! Times are the database's (`now()`), so indexers' clocks do not matter. A lease is
//! taken by bumping its epoch; a commit ([`Meta::commit`]) locks the lease row, checks
//! the epoch, inserts the segment and dictionary rows and moves the checkpoint, in one
//! transaction: an indexer whose lease was taken over can upload, but never commit.

use std::collections::HashSet;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::{Client, NoTls};

use crate::error::{ClusterError, Result};

/// One connection to the cluster's database, borrowed from the node's pool
/// ([`configure_pool`]) and given back when the `Meta` drops (a connection a call
/// was given up on is closed instead: [`Meta::given_up`]).
pub struct Meta {
    pub(crate) client: Pooled,
    /// Set when a call on this connection was given up ([`Meta::given_up`]): later
    /// statements would queue behind the one that hangs, so a new connection is made.
    broken: std::sync::atomic::AtomicBool,
}

/// A pooled connection, used as the [`Client`] it holds.
pub struct Pooled(Option<deadpool_postgres::Object>);

impl std::ops::Deref for Pooled {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.0.as_ref().expect("taken only when dropped")
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Client {
        self.0.as_mut().expect("taken only when dropped")
    }
}

impl Drop for Meta {
    fn drop(&mut self) {
        // A connection a call was given up on may still run that call: it leaves the
        // pool (closed) rather than be lent to the next task.
        if self.broken.load(std::sync::atomic::Ordering::Relaxed) {
            if let Some(obj) = self.client.0.take() {
                drop(deadpool_postgres::Object::take(obj));
            }
        }
    }
}

/// The node's bound on its PostgreSQL connections and how long a task waits for one
/// (`postgres_pool_size`, `postgres_wait_ms`); defaults until [`configure_pool`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    pub size: usize,
    pub wait: Duration,
    /// PostgreSQL's `application_name` of the node's connections when the
    /// connection string sets none: `sightline <owner>` (`pg_stat_activity` tells
    /// nodes apart).
    pub application_name: Option<String>,
}

static POOL_SETTINGS: OnceLock<PoolSettings> = OnceLock::new();
/// A connection lent again answers its check within this, or is replaced.
const RECYCLE_CHECK: Duration = Duration::from_secs(1);
/// One pool per connection string (a node has one; a test process may reach several
/// databases).
static POOLS: OnceLock<Mutex<HashMap<String, Pool>>> = OnceLock::new();

/// Sets this process's pool bound from its configuration, once, before its first
/// connection (later calls are ignored: the first configuration holds).
pub fn configure_pool(config: &crate::ClusterConfig) {
    let _ = POOL_SETTINGS.set(PoolSettings {
        size: config.postgres_pool_size,
        wait: Duration::from_millis(config.postgres_wait_ms),
        application_name: Some(format!("sightline {}", config.owner())),
    });
}

/// The pool bound in force.
pub fn pool_settings() -> &'static PoolSettings {
    POOL_SETTINGS.get_or_init(|| PoolSettings {
        size: 16,
        wait: Duration::from_millis(5_000),
        application_name: None,
    })
}

/// The pool of `conninfo`, made on first use: `sslmode=require` connects over TLS
/// (the server checked against `[tls]`'s CA and its host name, `crate::tls`),
/// otherwise plain; each new connection sets `idle_in_transaction_session_timeout`.
fn pool(conninfo: &str) -> Result<Pool> {
    pool_for(conninfo, None)
}

/// Connections kept for lease renewals alone, apart from the node's pool
/// (`postgres_pool_size`): commits holding pooled connections while a slow S3 takes
/// their uploads must not starve the renewals and let every lease lapse.
pub const LEASE_POOL_SIZE: usize = 4;

/// [`Meta::connect_for_leases`]'s timeout, naming [`LEASE_POOL_SIZE`] (a test holds
/// them together).
const LEASE_POOL_BUSY: &str =
    "waiting for a PostgreSQL connection for a lease renewal (the lease pool's 4 all in use)";

/// The pool of `conninfo` ([`pool`]), or with `purpose` a separate one of `size`.
fn pool_for(conninfo: &str, purpose: Option<(&str, usize)>) -> Result<Pool> {
    let key = match purpose {
        None => conninfo.to_string(),
        Some((what, _)) => format!("{conninfo}\n{what}"),
    };
    let pools = POOLS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut pools = pools.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = pools.get(&key) {
        return Ok(p.clone());
    }
    let mut pg: tokio_postgres::Config = conninfo
        .parse()
        .map_err(ClusterError::pg("read the connection string"))?;
    let settings = pool_settings();
    if let (None, Some(name)) = (pg.get_application_name(), &settings.application_name) {
        pg.application_name(name);
    }
    // Each connection lent again is checked with an empty statement first (within
    // `RECYCLE_CHECK`): one the server closed (a restart) or one still busy with a
    // statement given up on is closed and replaced, never lent.
    let recycling = ManagerConfig {
        recycling_method: RecyclingMethod::Verified,
    };
    let tls =
        crate::tls::postgres_connector().filter(|_| crate::tls::postgres_requires_tls(conninfo));
    let manager = match tls {
        Some(tls) => Manager::from_config(pg, tls, recycling),
        None => Manager::from_config(pg, NoTls, recycling),
    };
    let made = Pool::builder(manager)
        .max_size(purpose.map_or(settings.size, |(_, size)| size))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(settings.wait))
        .recycle_timeout(Some(RECYCLE_CHECK))
        .post_create(deadpool_postgres::Hook::async_fn(|client, _| {
            Box::pin(async move {
                client
                    .batch_execute(&format!(
                        "SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_MS}"
                    ))
                    .await
                    .map_err(deadpool_postgres::HookError::Backend)
            })
        }))
        .build()
        .map_err(|e| ClusterError::Config(format!("postgres pool: {e}")))?;
    pools.insert(key, made.clone());
    Ok(made)
}

/// `call` given up after `within` as [`ClusterError::Timeout`]`(what)`: every
/// PostgreSQL call of a long-running task is bounded, so a hung server (stopped, a
/// network that drops packets) pauses what needs it instead of stopping the task
/// (a shutdown, the log read, lease renewals of other partitions). The connection of a
/// call given up is marked with [`Meta::given_up`].
pub async fn bounded<T>(
    within: std::time::Duration,
    what: &'static str,
    call: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(within, call)
        .await
        .map_err(|_| ClusterError::Timeout(what))?
}

/// A lease just taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub partition: u32,
    pub epoch: i64,
    /// Every log message of the partition with stream sequence ≤ this is in the
    /// committed segments; none after it is.
    pub checkpoint_seq: u64,
    /// Bytes of the partition's dictionary log the committed chunks hold.
    pub dict_bytes: u64,
}

/// A committed segment, as the catalog lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentRow {
    pub segment_id: u64,
    pub community: u32,
    pub span: i32,
    /// The file's path inside a store directory (`segments/{span}/{community}-{id}.seg`).
    pub file: String,
    pub events: u32,
    pub max_seq: u64,
    /// The object holding the segment file: a commit's bundle (`objects::bundle_key`),
    /// or, for rows committed before bundles, the file alone.
    pub object_key: String,
    /// Where in the object the file lies (offset, length); `None`: the whole object.
    pub object_range: Option<(u64, u64)>,
    /// The rest of the file's facts (with `max_seq`, `events` and the range's length:
    /// what a store needs to list a segment without reading it), so a read replica
    /// restores it without downloading it; `None` for rows committed before they
    /// were kept (such a segment is downloaded whole at restore).
    pub facts: Option<RowFacts>,
}

/// What a segment row keeps of its file's header beyond `max_seq` and `events`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowFacts {
    pub min_seq: u64,
    pub min_ts_ms: i64,
    pub max_ts_ms: i64,
}

/// A live query node, as it last said: where it answers partition requests and the
/// partitions whose read replicas it serves (caught up with the log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryMember {
    pub member: String,
    pub address: Option<String>,
    pub serving: Vec<u32>,
}

/// What a partition's committed state is at one instant: read in one snapshot, so the
/// segments, the dictionary chunks and the checkpoint agree (a replica restores while
/// the owner goes on committing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    pub checkpoint_seq: u64,
    /// The partition's index as last uploaded with a commit (`leases.index_key`), if
    /// any: a checkpoint covering a prefix of the committed segments.
    pub index_key: Option<String>,
    pub dict_chunks: Vec<DictChunk>,
    pub segments: Vec<SegmentRow>,
}

/// A committed piece of a partition's dictionary log: bytes `[start, start + len)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DictChunk {
    pub start: u64,
    pub len: u64,
    pub object_key: String,
}

/// What a database made before bundles needs (the migration `Meta::create` runs
/// once).
const BUNDLES: &str = "
ALTER TABLE segments DROP CONSTRAINT IF EXISTS segments_object_key_key;
ALTER TABLE segments ADD COLUMN IF NOT EXISTS object_offset bigint;
ALTER TABLE segments ADD COLUMN IF NOT EXISTS object_len bigint;
";

/// What a database made before segment rows kept their files' facts (and leases
/// their uploaded index) needs (the migration `Meta::create` runs once).
const FACTS: &str = "
ALTER TABLE segments ADD COLUMN IF NOT EXISTS min_seq bigint;
ALTER TABLE segments ADD COLUMN IF NOT EXISTS min_ts_ms bigint;
ALTER TABLE segments ADD COLUMN IF NOT EXISTS max_ts_ms bigint;
ALTER TABLE leases ADD COLUMN IF NOT EXISTS index_key text;
";

/// What a database made before registrations were tied to credentials needs (the
/// migration `Meta::create` runs once): a registration whose login was removed goes.
pub(crate) const REGISTRATIONS_CASCADE: &str = "
DELETE FROM gat1400_registrations r
    WHERE NOT EXISTS (SELECT 1 FROM gat1400_credentials c WHERE c.code = r.code);
ALTER TABLE gat1400_registrations ADD CONSTRAINT gat1400_registrations_code_fkey
    FOREIGN KEY (code) REFERENCES gat1400_credentials (code) ON DELETE CASCADE;
";

/// What a catalog made before platforms' relays were kept needs (the migration
/// `Meta::create` runs once): the column, NULL (no relays) for every device.
const RELAYS: &str = "ALTER TABLE devices ADD COLUMN IF NOT EXISTS relays jsonb
    CONSTRAINT devices_relays_object CHECK (jsonb_typeof(relays) = 'object');";

/// What a catalog made before dispositions kept their platform needs (the migration
/// `Meta::create` runs once): the column, NULL (a `/v1` watchlist) for every list.
const DISPOSERS: &str = "ALTER TABLE watchlists ADD COLUMN IF NOT EXISTS disposer text;";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cluster_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
    partition integer PRIMARY KEY,
    owner text,
    epoch bigint NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL DEFAULT 'epoch',
    checkpoint_seq bigint NOT NULL DEFAULT 0,
    dict_bytes bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS members (owner text PRIMARY KEY, expires_at timestamptz NOT NULL);
ALTER TABLE members ADD COLUMN IF NOT EXISTS address text;
CREATE TABLE IF NOT EXISTS segments (
    partition integer NOT NULL,
    segment_id bigint NOT NULL,
    community integer NOT NULL,
    span integer NOT NULL,
    file text NOT NULL,
    events integer NOT NULL,
    max_seq bigint NOT NULL,
    object_key text NOT NULL,
    epoch bigint NOT NULL,
    PRIMARY KEY (partition, segment_id)
);

-- Objects a commit stopped naming (the rows of segments compaction or retention took
-- out, an index upload replaced), and since when: the janitor removes one only once
-- it has been unnamed for its age (a replica restored before may still read it).
CREATE TABLE IF NOT EXISTS released_objects (
    object_key text PRIMARY KEY,
    released_at timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS dict_chunks (
    partition integer NOT NULL,
    start_offset bigint NOT NULL,
    len bigint NOT NULL,
    object_key text NOT NULL UNIQUE,
    epoch bigint NOT NULL,
    PRIMARY KEY (partition, start_offset)
);
CREATE TABLE IF NOT EXISTS query_members (
    member text PRIMARY KEY,
    expires_at timestamptz NOT NULL,
    address text,
    serving integer[] NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS api_keys (
    id text PRIMARY KEY,
    name text NOT NULL DEFAULT '',
    token_sha256 text NOT NULL UNIQUE,
    role text NOT NULL CHECK (role IN ('ingest', 'investigate', 'admin')),
    communities text[] CHECK (cardinality(communities) > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE TABLE IF NOT EXISTS communities (
    code text PRIMARY KEY,
    name text NOT NULL,
    district text NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS devices (
    code text PRIMARY KEY,
    community text NOT NULL REFERENCES communities (code),
    device_kind text NOT NULL,
    direction text NOT NULL CHECK (direction IN ('in', 'out', 'unknown')),
    name text NOT NULL DEFAULT '',
    relays jsonb CONSTRAINT devices_relays_object CHECK (jsonb_typeof(relays) = 'object')
);
CREATE INDEX IF NOT EXISTS devices_community ON devices (community);
CREATE TABLE IF NOT EXISTS gat1400_credentials (
    code text PRIMARY KEY,
    username text NOT NULL,
    realm text NOT NULL,
    ha1 text NOT NULL,
    ha1_sha256 text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS gat1400_registrations (
    code text PRIMARY KEY REFERENCES gat1400_credentials (code) ON DELETE CASCADE,
    address text,
    renewed_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS watchlists (
    id text PRIMARY KEY,
    name text NOT NULL DEFAULT '',
    reason text NOT NULL,
    expires_ms bigint,
    entries jsonb NOT NULL,
    scope text[] CHECK (cardinality(scope) > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS alerts (
    id bigserial PRIMARY KEY,
    watchlist text NOT NULL,
    community text NOT NULL,
    msg_id text NOT NULL,
    body text NOT NULL,
    raised_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (watchlist, msg_id)
);
CREATE TABLE IF NOT EXISTS alert_events (
    msg_id text PRIMARY KEY,
    event_id bigint NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS gat1400_nonces (
    nonce text NOT NULL,
    nc bigint NOT NULL,
    used_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (nonce, nc)
);
CREATE INDEX IF NOT EXISTS gat1400_nonces_used_at ON gat1400_nonces (used_at);
CREATE TABLE IF NOT EXISTS subscriptions (
    id text PRIMARY KEY,
    owner text NOT NULL,
    body jsonb NOT NULL CHECK (jsonb_typeof(body) = 'object'),
    cursor text NOT NULL,
    holder text,
    epoch bigint NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL DEFAULT 'epoch',
    delivered bigint NOT NULL DEFAULT 0,
    failures_in_a_row bigint NOT NULL DEFAULT 0,
    failures_total bigint NOT NULL DEFAULT 0,
    last_error text,
    last_success_ms bigint,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- What a GA/T 1400 receiver refused for good, and whether it said it does not know the
-- subscription (as `serve`'s status says; added after the table).
ALTER TABLE subscriptions ADD COLUMN IF NOT EXISTS refused bigint NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN IF NOT EXISTS last_refusal text;
ALTER TABLE subscriptions ADD COLUMN IF NOT EXISTS stopped boolean NOT NULL DEFAULT false;
CREATE TABLE IF NOT EXISTS cancelled_subscribes (
    owner text NOT NULL,
    id text NOT NULL,
    object jsonb NOT NULL CHECK (jsonb_typeof(object) = 'object'),
    cancelled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, id)
);
CREATE TABLE IF NOT EXISTS upstream_sessions (
    id text PRIMARY KEY REFERENCES subscriptions (id) ON DELETE CASCADE,
    epoch bigint NOT NULL,
    state jsonb NOT NULL,
    server_id text,
    device_id text NOT NULL,
    scope text[],
    addresses text[] NOT NULL DEFAULT '{}',
    registered boolean NOT NULL DEFAULT false
);
CREATE TABLE IF NOT EXISTS remote_subscriptions (
    id text PRIMARY KEY,
    owner text NOT NULL,
    body jsonb NOT NULL CHECK (jsonb_typeof(body) = 'object'),
    subscribe_id text NOT NULL,
    holder text,
    epoch bigint NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL DEFAULT 'epoch',
    status jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS remote_subscriptions_subscribe_id
    ON remote_subscriptions (subscribe_id);
-- One upstream per configured server_id (`Meta::add_upstream`): two creates on two
-- nodes at once cannot both win. Upstreams that already share one (made before)
-- keep working, without the index (logged by PostgreSQL as a warning).
DO $$ BEGIN
    CREATE UNIQUE INDEX IF NOT EXISTS subscriptions_upstream_server_id
        ON subscriptions ((body->'upstream'->>'server_id'))
        WHERE body->'upstream'->>'server_id' IS NOT NULL;
EXCEPTION WHEN unique_violation THEN
    RAISE WARNING 'two upstreams share a server_id: one upstream per server_id is checked at each create only';
END $$;
";

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).expect("sequence numbers and offsets are stored non-negative")
}
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).expect("sequence numbers and offsets fit in a bigint")
}

/// A catalog value that must not be negative (a sequence number, an offset, a
/// length, a count, an id): a malformed row is a `Catalog` error, never a panic or a
/// wrapped number.
fn stored_u64(partition: u32, what: &str, v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| ClusterError::Catalog {
        partition,
        reason: format!("{what} is {v}, which cannot be"),
    })
}

/// As [`stored_u64`], for an `integer` column.
fn stored_u32(partition: u32, what: &str, v: i32) -> Result<u32> {
    u32::try_from(v).map_err(|_| ClusterError::Catalog {
        partition,
        reason: format!("{what} is {v}, which cannot be"),
    })
}

/// A `dict_chunks` row (start_offset, len, object_key) of `partition`.
fn chunk_of(partition: u32, r: &tokio_postgres::Row) -> Result<DictChunk> {
    let object_key: String = r.get(2);
    let at = |what: &str| format!("dictionary chunk {object_key}: {what}");
    Ok(DictChunk {
        start: stored_u64(partition, &at("start_offset"), r.get(0))?,
        len: stored_u64(partition, &at("len"), r.get(1))?,
        object_key,
    })
}

/// A `segments` row (segment_id, community, span, file, events, max_seq, object_key,
/// object_offset, object_len, min_seq, min_ts_ms, max_ts_ms) of `partition`.
fn segment_of(partition: u32, r: &tokio_postgres::Row) -> Result<SegmentRow> {
    let id: i64 = r.get(0);
    let at = |what: &str| format!("segment {id}: {what}");
    let num = |what: &str, v: i64| stored_u64(partition, &at(what), v);
    Ok(SegmentRow {
        segment_id: num("segment_id", id)?,
        community: stored_u32(partition, &at("community"), r.get(1))?,
        span: r.get(2),
        file: r.get(3),
        events: stored_u32(partition, &at("events"), r.get(4))?,
        max_seq: num("max_seq", r.get(5))?,
        object_key: r.get(6),
        object_range: match (r.get::<_, Option<i64>>(7), r.get::<_, Option<i64>>(8)) {
            (Some(offset), Some(len)) => {
                Some((num("object_offset", offset)?, num("object_len", len)?))
            }
            _ => None,
        },
        facts: match (
            r.get::<_, Option<i64>>(9),
            r.get::<_, Option<i64>>(10),
            r.get::<_, Option<i64>>(11),
        ) {
            (Some(min_seq), Some(min_ts_ms), Some(max_ts_ms)) => Some(RowFacts {
                min_seq: num("min_seq", min_seq)?,
                min_ts_ms,
                max_ts_ms,
            }),
            _ => None,
        },
    })
}

/// Whether `table` (of the current schema) has `column`: a migration's check, made
/// before its `ALTER TABLE` (which takes the table's strongest lock even when it
/// changes nothing).
async fn has_column(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    column: &str,
) -> Result<bool> {
    let n: i64 = tx
        .query_one(
            "SELECT count(*) FROM information_schema.columns
             WHERE table_schema = current_schema()
               AND table_name::text = $1 AND column_name::text = $2",
            &[&table, &column],
        )
        .await
        .map_err(ClusterError::pg("look at a table's columns"))?
        .get(0);
    Ok(n > 0)
}

/// A session whose transaction waits this long for its client is ended by the
/// server: a commit's transaction holds its lease row `FOR UPDATE`, and an indexer
/// stopped inside one (SIGSTOP, a long GC-like pause, a dead VM) must not block the
/// indexer taking its lease over. Our transactions never wait on anything but the
/// database between statements; 5 s is far beyond that.
const IDLE_IN_TRANSACTION_MS: u32 = 5_000;

impl Meta {
    /// A connection of the node's pool ([`configure_pool`]): an idle one, or a new
    /// one while fewer than `postgres_pool_size` are open; otherwise waits for one
    /// at most `postgres_wait_ms`, then fails with [`ClusterError::Timeout`].
    pub async fn connect(conninfo: &str) -> Result<Meta> {
        Meta::connect_from(
            pool(conninfo)?,
            "waiting for a PostgreSQL connection (postgres_pool_size all in use)",
        )
        .await
    }

    /// A connection for a lease renewal, from the lease pool ([`LEASE_POOL_SIZE`],
    /// apart from the node's pool).
    pub async fn connect_for_leases(conninfo: &str) -> Result<Meta> {
        Meta::connect_from(
            pool_for(conninfo, Some(("leases", LEASE_POOL_SIZE)))?,
            LEASE_POOL_BUSY,
        )
        .await
    }

    async fn connect_from(pool: Pool, waiting: &'static str) -> Result<Meta> {
        let obj = pool.get().await.map_err(|e| match e {
            PoolError::Timeout(_) => ClusterError::Timeout(waiting),
            PoolError::Backend(e) => ClusterError::pg("connect")(e),
            PoolError::PostCreateHook(e) => {
                ClusterError::Config(format!("PostgreSQL connection set-up: {e}"))
            }
            e => ClusterError::Config(format!("PostgreSQL pool: {e}")),
        })?;
        Ok(Meta {
            client: Pooled(Some(obj)),
            broken: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// [`Meta::connect`] given up after `within` (tokio-postgres has no connect
    /// timeout of its own).
    pub async fn connect_within(conninfo: &str, within: std::time::Duration) -> Result<Meta> {
        tokio::time::timeout(within, Meta::connect(conninfo))
            .await
            .map_err(|_| ClusterError::Timeout("PostgreSQL connect"))?
    }

    /// False once the connection broke (reconnect then).
    pub fn is_open(&self) -> bool {
        !self.client.is_closed() && !self.broken.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Marks this connection broken (a call on it was given up by other means than
    /// [`Meta::given_up`]): it is closed when it drops, never lent again.
    pub fn abandon(&self) {
        self.broken
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Passes `r` on; a [`ClusterError::Timeout`] marks this connection broken
    /// ([`Meta::is_open`] is false from then on, so the caller connects again).
    pub fn given_up<T>(&self, r: Result<T>) -> Result<T> {
        if let Err(ClusterError::Timeout(_)) = &r {
            self.broken
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }

    /// Names `index_key` the partition's uploaded index (`leases.index_key`) while
    /// `epoch` holds it, releasing the one it replaces (`released_objects`), in one
    /// statement: an owner's index uploaded with nothing else to commit. False when
    /// the epoch is not ours (nothing changed).
    pub async fn set_index(&self, partition: u32, epoch: i64, index_key: &str) -> Result<bool> {
        let row = self
            .client
            .query_one(
                // The replaced key comes from the row as locked before the update
                // (a CTE reading the row beside the UPDATE would be skipped: the
                // same command changed it first).
                "WITH named AS (
                     UPDATE leases l SET index_key = $3
                     FROM (SELECT partition, index_key FROM leases
                           WHERE partition = $1 AND epoch = $2 FOR UPDATE) old
                     WHERE l.partition = old.partition
                     RETURNING old.index_key AS replaced),
                 released AS (
                     INSERT INTO released_objects (object_key, released_at)
                     SELECT replaced, now() FROM named
                     WHERE replaced IS NOT NULL AND replaced <> $3
                     ON CONFLICT (object_key) DO UPDATE SET released_at = EXCLUDED.released_at
                     RETURNING 1)
                 SELECT (SELECT count(*) FROM named), (SELECT count(*) FROM released)",
                &[&(partition as i32), &epoch, &index_key],
            )
            .await
            .map_err(ClusterError::pg("name the index"))?;
        Ok(row.get::<_, i64>(0) == 1)
    }

    /// What an indexer reads to learn whether its commit whose answer never came took
    /// effect: the lease row's `(epoch, checkpoint_seq, dict_bytes)` and which of
    /// `segments` the catalog lists. The row is read `FOR SHARE`, so this waits for a
    /// commit transaction still in flight on an abandoned connection (it holds the row
    /// `FOR UPDATE`) to end one way or the other: a plain read would see the old row
    /// while that transaction may still commit.
    pub async fn commit_state(
        &mut self,
        partition: u32,
        segments: &[u64],
    ) -> Result<(i64, u64, u64, HashSet<u64>)> {
        let p = partition as i32;
        let tx = self
            .client
            .transaction()
            .await
            .map_err(ClusterError::pg("begin reading the commit state"))?;
        let r = tx
            .query_one(
                "SELECT epoch, checkpoint_seq, dict_bytes FROM leases WHERE partition = $1 FOR SHARE",
                &[&p],
            )
            .await
            .map_err(ClusterError::pg("read lease"))?;
        let (epoch, checkpoint, dict_bytes): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
        let mut listed = HashSet::new();
        if !segments.is_empty() {
            let ids: Vec<i64> = segments.iter().map(|&id| to_i64(id)).collect();
            let rows = tx
                .query(
                    "SELECT segment_id FROM segments WHERE partition = $1 AND segment_id = ANY($2)",
                    &[&p, &ids],
                )
                .await
                .map_err(ClusterError::pg("look up segments"))?;
            listed.extend(rows.iter().map(|r| to_u64(r.get::<_, i64>(0))));
        }
        tx.commit()
            .await
            .map_err(ClusterError::pg("end reading the commit state"))?;
        Ok((epoch, to_u64(checkpoint), to_u64(dict_bytes), listed))
    }

    /// Creates the tables (once, under an advisory lock, whoever comes first) and the
    /// partitions' lease rows; returns P, which the first caller's `partitions` set.
    pub async fn create(&mut self, partitions: u32) -> Result<u32> {
        let tx = self
            .client
            .transaction()
            .await
            .map_err(ClusterError::pg("begin create"))?;
        tx.execute("SELECT pg_advisory_xact_lock(2207)", &[])
            .await
            .map_err(ClusterError::pg("advisory lock"))?;
        tx.batch_execute(SCHEMA)
            .await
            .map_err(ClusterError::pg("create tables"))?;
        tx.batch_execute(crate::directory::catalog::SCHEMA)
            .await
            .map_err(ClusterError::pg("create the directory's tables"))?;
        // Bundles (one object a commit): a database made before them gets their
        // columns and loses the one-object-a-segment constraint, once. Checked first:
        // ALTER TABLE takes the table's strongest lock even when it changes nothing.
        if !has_column(&tx, "segments", "object_offset").await? {
            tx.batch_execute(BUNDLES)
                .await
                .map_err(ClusterError::pg("add the bundle columns"))?;
        }
        // Segment facts (a replica restores a segment without its file): columns
        // added once to a database made before them (checked first, as above).
        let with_facts: i64 = tx
            .query_one(
                "SELECT count(*) FROM information_schema.columns
                 WHERE table_schema = current_schema()
                   AND ((table_name = 'segments' AND column_name = 'min_ts_ms')
                     OR (table_name = 'leases' AND column_name = 'index_key'))",
                &[],
            )
            .await
            .map_err(ClusterError::pg("look at the segments table"))?
            .get(0);
        if with_facts < 2 {
            tx.batch_execute(FACTS)
                .await
                .map_err(ClusterError::pg("add the segment facts' columns"))?;
        }
        // A registration lives only while its credential does: a database made before
        // the foreign key loses the registrations of removed logins and gets it, once
        // (checked first, for the same reason as above).
        let cascaded: i64 = tx
            .query_one(
                "SELECT count(*) FROM information_schema.table_constraints
                 WHERE table_schema = current_schema()
                   AND table_name = 'gat1400_registrations'
                   AND constraint_type = 'FOREIGN KEY'",
                &[],
            )
            .await
            .map_err(ClusterError::pg("look at the gat1400_registrations table"))?
            .get(0);
        if cascaded == 0 {
            tx.batch_execute(REGISTRATIONS_CASCADE)
                .await
                .map_err(ClusterError::pg("tie registrations to credentials"))?;
        }
        // A platform's relays (`catalog`): a catalog made before them gets the column,
        // once (checked first, for the same reason).
        if !has_column(&tx, "devices", "relays").await? {
            tx.batch_execute(RELAYS)
                .await
                .map_err(ClusterError::pg("add the relays column"))?;
        }
        // A disposition's platform (`watchlists`): a catalog made before it gets the
        // column, once (checked first, for the same reason).
        if !has_column(&tx, "watchlists", "disposer").await? {
            tx.batch_execute(DISPOSERS)
                .await
                .map_err(ClusterError::pg("add the disposer column"))?;
        }
        tx.execute(
            "INSERT INTO cluster_meta (key, value) VALUES ('partitions', $1) ON CONFLICT DO NOTHING",
            &[&partitions.to_string()],
        )
        .await
        .map_err(ClusterError::pg("set partitions"))?;
        let p: String = tx
            .query_one(
                "SELECT value FROM cluster_meta WHERE key = 'partitions'",
                &[],
            )
            .await
            .map_err(ClusterError::pg("read partitions"))?
            .get(0);
        let p: u32 = p
            .parse()
            .map_err(|_| ClusterError::Config(format!("cluster_meta partitions = {p:?}")))?;
        tx.execute(
            "INSERT INTO leases (partition) SELECT generate_series(0, $1 - 1) ON CONFLICT DO NOTHING",
            &[&(p as i32)],
        )
        .await
        .map_err(ClusterError::pg("create leases"))?;
        tx.commit()
            .await
            .map_err(ClusterError::pg("commit create"))?;
        Ok(p)
    }

    /// P, as set when the cluster was created.
    pub async fn partitions(&self) -> Result<u32> {
        let v: String = self
            .client
            .query_one(
                "SELECT value FROM cluster_meta WHERE key = 'partitions'",
                &[],
            )
            .await
            .map_err(ClusterError::pg("read partitions"))?
            .get(0);
        v.parse()
            .map_err(|_| ClusterError::Config(format!("cluster_meta partitions = {v:?}")))
    }

    /// The cluster's retention policy in days (`cluster_meta` `retention_days`;
    /// `None`: keep everything, also when never set).
    pub async fn retention_days(&self) -> Result<Option<u32>> {
        let row = self
            .client
            .query_opt(
                "SELECT value FROM cluster_meta WHERE key = 'retention_days'",
                &[],
            )
            .await
            .map_err(ClusterError::pg("read retention"))?;
        match row.map(|r| r.get::<_, String>(0)) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ClusterError::Config(format!("cluster_meta retention_days = {v:?}"))),
        }
    }

    /// Sets the retention policy (`None`: keep everything) for every partition: the
    /// indexers apply it at their next commit, the replicas at their next maintenance.
    pub async fn set_retention_days(&self, days: Option<u32>) -> Result<()> {
        let change = match days {
            Some(d) => {
                self.client
                    .execute(
                        "INSERT INTO cluster_meta (key, value) VALUES ('retention_days', $1) \
                         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                        &[&d.to_string()],
                    )
                    .await
            }
            None => {
                self.client
                    .execute("DELETE FROM cluster_meta WHERE key = 'retention_days'", &[])
                    .await
            }
        };
        change.map_err(ClusterError::pg("set retention"))?;
        Ok(())
    }

    /// Says `owner` is alive for `ttl_ms` and answers partition requests at
    /// `address` (`host:port`); returns how many indexers are.
    pub async fn heartbeat(&self, owner: &str, ttl_ms: u64, address: Option<&str>) -> Result<u32> {
        self.client
            .execute(
                "INSERT INTO members (owner, expires_at, address)
                 VALUES ($1, now() + $2 * interval '1 millisecond', $3)
                 ON CONFLICT (owner) DO UPDATE SET expires_at = EXCLUDED.expires_at,
                     address = EXCLUDED.address",
                &[&owner, &(ttl_ms as f64), &address],
            )
            .await
            .map_err(ClusterError::pg("heartbeat"))?;
        let n: i64 = self
            .client
            .query_one("SELECT count(*) FROM members WHERE expires_at > now()", &[])
            .await
            .map_err(ClusterError::pg("count members"))?
            .get(0);
        Ok(n.max(1) as u32)
    }

    /// Where each partition with a live lease is answered: partition → (owner,
    /// epoch, the owner's advertised address). A partition without a live lease, or
    /// whose owner advertises no address, is left out.
    pub async fn owners(&self) -> Result<std::collections::HashMap<u32, (String, i64, String)>> {
        let rows = self
            .client
            .query(
                "SELECT l.partition, l.owner, l.epoch, m.address FROM leases l
                 JOIN members m ON m.owner = l.owner
                 WHERE l.expires_at > now() AND m.address IS NOT NULL",
                &[],
            )
            .await
            .map_err(ClusterError::pg("read owners"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let p: i32 = r.get(0);
                (p as u32, (r.get(1), r.get(2), r.get(3)))
            })
            .collect())
    }

    /// Removes `owner` from the live indexers (a clean stop).
    pub async fn leave(&self, owner: &str) -> Result<()> {
        self.client
            .execute("DELETE FROM members WHERE owner = $1", &[&owner])
            .await
            .map_err(ClusterError::pg("leave"))?;
        Ok(())
    }

    /// Partitions nobody holds (never taken, released, or expired), ascending.
    pub async fn free_partitions(&self) -> Result<Vec<u32>> {
        let rows = self
            .client
            .query(
                "SELECT partition FROM leases WHERE owner IS NULL OR expires_at < now() ORDER BY partition",
                &[],
            )
            .await
            .map_err(ClusterError::pg("free partitions"))?;
        Ok(rows.iter().map(|r| r.get::<_, i32>(0) as u32).collect())
    }

    /// Takes `partition` if it is free or expired, bumping its epoch.
    pub async fn acquire(&self, partition: u32, owner: &str, ttl_ms: u64) -> Result<Option<Lease>> {
        let row = self
            .client
            .query_opt(
                "UPDATE leases SET owner = $1, epoch = epoch + 1,
                        expires_at = now() + $2 * interval '1 millisecond'
                 WHERE partition = $3 AND (owner IS NULL OR expires_at < now())
                 RETURNING epoch, checkpoint_seq, dict_bytes",
                &[&owner, &(ttl_ms as f64), &(partition as i32)],
            )
            .await
            .map_err(ClusterError::pg("acquire"))?;
        Ok(row.map(|r| Lease {
            partition,
            epoch: r.get(0),
            checkpoint_seq: to_u64(r.get(1)),
            dict_bytes: to_u64(r.get(2)),
        }))
    }

    /// Extends a lease still ours (same epoch); false when it is not any more.
    pub async fn renew(&self, partition: u32, epoch: i64, ttl_ms: u64) -> Result<bool> {
        let n = self
            .client
            .execute(
                "UPDATE leases SET expires_at = now() + $1 * interval '1 millisecond'
                 WHERE partition = $2 AND epoch = $3",
                &[&(ttl_ms as f64), &(partition as i32), &epoch],
            )
            .await
            .map_err(ClusterError::pg("renew"))?;
        Ok(n == 1)
    }

    /// Gives a lease back (a clean stop or a rebalance): free at once for others.
    pub async fn release(&self, partition: u32, epoch: i64) -> Result<()> {
        self.client
            .execute(
                "UPDATE leases SET owner = NULL, expires_at = now() WHERE partition = $1 AND epoch = $2",
                &[&(partition as i32), &epoch],
            )
            .await
            .map_err(ClusterError::pg("release"))?;
        Ok(())
    }

    /// The fenced commit: in one transaction, only while the lease's epoch is still
    /// `epoch`, records `segments` and `dict`, removes the rows of the segments
    /// `replaced` (merged into one of `segments` by compaction), and sets the
    /// checkpoint to `checkpoint_seq` (and the committed dictionary length to
    /// `dict_bytes`).
    #[allow(clippy::too_many_arguments)]
    pub async fn commit(
        &mut self,
        partition: u32,
        epoch: i64,
        segments: &[SegmentRow],
        replaced: &[u64],
        dict: Option<&DictChunk>,
        checkpoint_seq: u64,
        dict_bytes: u64,
        ttl_ms: u64,
        index_key: Option<&str>,
    ) -> Result<()> {
        let tx = self
            .client
            .transaction()
            .await
            .map_err(ClusterError::pg("begin commit"))?;
        let lease = tx
            .query_one(
                "SELECT epoch, index_key FROM leases WHERE partition = $1 FOR UPDATE",
                &[&(partition as i32)],
            )
            .await
            .map_err(ClusterError::pg("lock lease"))?;
        let current: i64 = lease.get(0);
        let previous_index: Option<String> = lease.get(1);
        if current != epoch {
            // Dropping the transaction rolls it back.
            return Err(ClusterError::Fenced {
                partition,
                ours: epoch,
                current,
            });
        }
        let p = partition as i32;
        for s in segments {
            tx.execute(
                "INSERT INTO segments (partition, segment_id, community, span, file, events, max_seq, object_key, epoch, object_offset, object_len, min_seq, min_ts_ms, max_ts_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                &[
                    &p,
                    &to_i64(s.segment_id),
                    &(s.community as i32),
                    &s.span,
                    &s.file,
                    &(s.events as i32),
                    &to_i64(s.max_seq),
                    &s.object_key,
                    &epoch,
                    &s.object_range.map(|(o, _)| to_i64(o)),
                    &s.object_range.map(|(_, l)| to_i64(l)),
                    &s.facts.map(|f| to_i64(f.min_seq)),
                    &s.facts.map(|f| f.min_ts_ms),
                    &s.facts.map(|f| f.max_ts_ms),
                ],
            )
            .await
            .map_err(ClusterError::pg("insert segment"))?;
        }
        if !replaced.is_empty() {
            let ids: Vec<i64> = replaced.iter().map(|id| to_i64(*id)).collect();
            // Their objects are released now: the janitor counts their age from
            // here, not from their upload (a replica may still read them).
            tx.execute(
                "WITH gone AS (
                     DELETE FROM segments WHERE partition = $1 AND segment_id = ANY($2)
                     RETURNING object_key)
                 INSERT INTO released_objects (object_key, released_at)
                     SELECT DISTINCT object_key, now() FROM gone
                 ON CONFLICT (object_key) DO UPDATE SET released_at = EXCLUDED.released_at",
                &[&p, &ids],
            )
            .await
            .map_err(ClusterError::pg("remove compacted segments"))?;
        }
        if let Some(old) = previous_index.filter(|old| Some(old.as_str()) != index_key) {
            if index_key.is_some() {
                tx.execute(
                    "INSERT INTO released_objects (object_key, released_at) VALUES ($1, now())
                     ON CONFLICT (object_key) DO UPDATE SET released_at = EXCLUDED.released_at",
                    &[&old],
                )
                .await
                .map_err(ClusterError::pg("release the previous index"))?;
            }
        }
        if let Some(d) = dict {
            tx.execute(
                "INSERT INTO dict_chunks (partition, start_offset, len, object_key, epoch)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&p, &to_i64(d.start), &to_i64(d.len), &d.object_key, &epoch],
            )
            .await
            .map_err(ClusterError::pg("insert dictionary chunk"))?;
        }
        tx.execute(
            "UPDATE leases SET checkpoint_seq = $1, dict_bytes = $2,
                    expires_at = now() + $3 * interval '1 millisecond',
                    index_key = coalesce($6, index_key)
             WHERE partition = $4 AND epoch = $5",
            &[
                &to_i64(checkpoint_seq),
                &to_i64(dict_bytes),
                &(ttl_ms as f64),
                &p,
                &epoch,
                &index_key,
            ],
        )
        .await
        .map_err(ClusterError::pg("move checkpoint"))?;
        tx.commit().await.map_err(ClusterError::pg("commit"))?;
        Ok(())
    }

    /// Says the query node `member` is alive for `ttl_ms`, answers partition requests
    /// at `address` and serves the replicas `serving`; returns every live query node
    /// (itself included), by name.
    pub async fn query_heartbeat(
        &self,
        member: &str,
        ttl_ms: u64,
        address: Option<&str>,
        serving: &[u32],
    ) -> Result<Vec<QueryMember>> {
        let serving: Vec<i32> = serving.iter().map(|p| *p as i32).collect();
        // Rows of query nodes gone for good (expired a day ago): nobody reads them.
        self.client
            .execute(
                "DELETE FROM query_members WHERE expires_at < now() - interval '1 day'",
                &[],
            )
            .await
            .map_err(ClusterError::pg("forget old query members"))?;
        self.client
            .execute(
                "INSERT INTO query_members (member, expires_at, address, serving)
                 VALUES ($1, now() + $2 * interval '1 millisecond', $3, $4)
                 ON CONFLICT (member) DO UPDATE SET expires_at = EXCLUDED.expires_at,
                     address = EXCLUDED.address, serving = EXCLUDED.serving",
                &[&member, &(ttl_ms as f64), &address, &serving],
            )
            .await
            .map_err(ClusterError::pg("query heartbeat"))?;
        self.query_members().await
    }

    /// The live query nodes, by name.
    pub async fn query_members(&self) -> Result<Vec<QueryMember>> {
        let rows = self
            .client
            .query(
                "SELECT member, address, serving FROM query_members
                 WHERE expires_at > now() ORDER BY member",
                &[],
            )
            .await
            .map_err(ClusterError::pg("read query members"))?;
        Ok(rows
            .iter()
            .map(|r| QueryMember {
                member: r.get(0),
                address: r.get(1),
                serving: r
                    .get::<_, Vec<i32>>(2)
                    .into_iter()
                    .map(|p| p as u32)
                    .collect(),
            })
            .collect())
    }

    /// Removes the query node `member` (a clean stop): its replicas move at once.
    pub async fn leave_query(&self, member: &str) -> Result<()> {
        self.client
            .execute("DELETE FROM query_members WHERE member = $1", &[&member])
            .await
            .map_err(ClusterError::pg("leave query members"))?;
        Ok(())
    }

    /// The committed state of `partition` (checkpoint, dictionary chunks, segments),
    /// read in one `REPEATABLE READ` transaction: a commit of its owner lands wholly
    /// before or after it.
    pub async fn committed(&mut self, partition: u32) -> Result<Committed> {
        let tx = self
            .client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(ClusterError::pg("begin snapshot"))?;
        let p = partition as i32;
        let lease = tx
            .query_one(
                "SELECT checkpoint_seq, index_key FROM leases WHERE partition = $1",
                &[&p],
            )
            .await
            .map_err(ClusterError::pg("read checkpoint"))?;
        let checkpoint: i64 = lease.get(0);
        let index_key: Option<String> = lease.get(1);
        let chunks = tx
            .query(
                "SELECT start_offset, len, object_key FROM dict_chunks WHERE partition = $1 ORDER BY start_offset",
                &[&p],
            )
            .await
            .map_err(ClusterError::pg("list dictionary chunks"))?;
        let segments = tx
            .query(
                "SELECT segment_id, community, span, file, events, max_seq, object_key,
                        object_offset, object_len, min_seq, min_ts_ms, max_ts_ms
                 FROM segments WHERE partition = $1 ORDER BY segment_id",
                &[&p],
            )
            .await
            .map_err(ClusterError::pg("list segments"))?;
        tx.commit()
            .await
            .map_err(ClusterError::pg("end snapshot"))?;
        Ok(Committed {
            checkpoint_seq: stored_u64(partition, "checkpoint_seq", checkpoint)?,
            index_key,
            dict_chunks: chunks
                .iter()
                .map(|r| chunk_of(partition, r))
                .collect::<Result<_>>()?,
            segments: segments
                .iter()
                .map(|r| segment_of(partition, r))
                .collect::<Result<_>>()?,
        })
    }

    /// The last commit of each of `partitions`, read in one statement: its checkpoint
    /// (the stream sequence it covers) and the highest local sequence number of its
    /// committed segments (0 when none).
    pub async fn commit_marks(
        &self,
        partitions: &[u32],
    ) -> Result<std::collections::HashMap<u32, (u64, u64)>> {
        let partitions: Vec<i32> = partitions.iter().map(|p| *p as i32).collect();
        let rows = self
            .client
            .query(
                "SELECT l.partition, l.checkpoint_seq, coalesce(s.max_seq, 0)::bigint
                 FROM leases l LEFT JOIN (
                     SELECT partition, max(max_seq) AS max_seq FROM segments
                     WHERE partition = ANY($1) GROUP BY partition
                 ) s ON s.partition = l.partition
                 WHERE l.partition = ANY($1)",
                &[&partitions],
            )
            .await
            .map_err(ClusterError::pg("read commit marks"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let p: i32 = r.get(0);
                (p as u32, (to_u64(r.get(1)), to_u64(r.get(2))))
            })
            .collect())
    }

    /// The committed dictionary chunks of `partition`, in order.
    pub async fn dict_chunks(&self, partition: u32) -> Result<Vec<DictChunk>> {
        let rows = self
            .client
            .query(
                "SELECT start_offset, len, object_key FROM dict_chunks WHERE partition = $1 ORDER BY start_offset",
                &[&(partition as i32)],
            )
            .await
            .map_err(ClusterError::pg("list dictionary chunks"))?;
        rows.iter().map(|r| chunk_of(partition, r)).collect()
    }

    /// The committed segments of `partition`, by segment id.
    pub async fn segments(&self, partition: u32) -> Result<Vec<SegmentRow>> {
        let rows = self
            .client
            .query(
                "SELECT segment_id, community, span, file, events, max_seq, object_key,
                        object_offset, object_len, min_seq, min_ts_ms, max_ts_ms
                 FROM segments WHERE partition = $1 ORDER BY segment_id",
                &[&(partition as i32)],
            )
            .await
            .map_err(ClusterError::pg("list segments"))?;
        rows.iter().map(|r| segment_of(partition, r)).collect()
    }

    /// The lease row of `partition`: (owner, epoch, checkpoint_seq, dict_bytes).
    pub async fn lease(&self, partition: u32) -> Result<(Option<String>, i64, u64, u64)> {
        let r = self
            .client
            .query_one(
                "SELECT owner, epoch, checkpoint_seq, dict_bytes FROM leases WHERE partition = $1",
                &[&(partition as i32)],
            )
            .await
            .map_err(ClusterError::pg("read lease"))?;
        Ok((r.get(0), r.get(1), to_u64(r.get(2)), to_u64(r.get(3))))
    }

    /// Events in committed segments, all partitions.
    pub async fn committed_events(&self) -> Result<u64> {
        let n: i64 = self
            .client
            .query_one("SELECT coalesce(sum(events), 0)::bigint FROM segments", &[])
            .await
            .map_err(ClusterError::pg("count committed events"))?
            .get(0);
        Ok(to_u64(n))
    }

    /// Every object key a commit names (for the janitor).
    pub async fn committed_keys(&self) -> Result<std::collections::HashSet<String>> {
        let rows = self
            .client
            .query(
                "SELECT object_key FROM segments UNION ALL SELECT object_key FROM dict_chunks
                 UNION ALL SELECT index_key FROM leases WHERE index_key IS NOT NULL
                 UNION ALL SELECT object_key FROM directories",
                &[],
            )
            .await
            .map_err(ClusterError::pg("list committed objects"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Objects commits stopped naming, each with when (epoch milliseconds on this
    /// node's clock, from their age by the database's) the last commit that named it
    /// took its row out.
    pub async fn released_objects(&self) -> Result<std::collections::HashMap<String, i64>> {
        // Aged by the database's clock (which stamped them), then put on this node's,
        // which the janitor compares them with: a node whose clock runs ahead of the
        // database's does not cut the replicas' grace short.
        let rows = self
            .client
            .query(
                "SELECT object_key,
                        (extract(epoch FROM (now() - released_at)) * 1000)::bigint
                 FROM released_objects",
                &[],
            )
            .await
            .map_err(ClusterError::pg("list released objects"))?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Ok(rows
            .iter()
            .map(|r| (r.get(0), now_ms - r.get::<_, i64>(1).max(0)))
            .collect())
    }

    /// Forgets the released objects `keys` (removed, or found gone).
    pub async fn forget_released(&self, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        self.client
            .execute(
                "DELETE FROM released_objects WHERE object_key = ANY($1)",
                &[&keys],
            )
            .await
            .map_err(ClusterError::pg("forget released objects"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_lease_pool_timeout_names_its_size() {
        let said = format!("pool's {} all in use", super::LEASE_POOL_SIZE);
        assert!(
            super::LEASE_POOL_BUSY.contains(&said),
            "{}",
            super::LEASE_POOL_BUSY
        );
    }
}
