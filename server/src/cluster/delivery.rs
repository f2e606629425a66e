//! Subscriptions delivered by the query nodes: each subscription of the cluster's
//! `subscriptions` table is delivered by exactly one query node at a time, the one
//! holding its lease (`sightline_cluster::subscriptions`).
//!
//! Every query node runs one supervisor: every `index.renew_ms` it renews the leases
//! it holds (for `index.lease_ms`) and takes the subscriptions nobody holds (never
//! taken, released, or whose holder's lease expired: a node killed loses its
//! subscriptions within a lease, and another takes them over). For each lease it
//! holds, a worker reads after the subscription's cursor — the federated change feed
//! (`GET /v1/feed`'s pages: a position per partition, in the subscriber's scope) for
//! events, the `alerts` table for alerts — filters as `serve` does
//! ([`Subscription::matches`]), and POSTs a batch with `serve`'s code
//! (`crate::subscriptions::deliver`: the same Sightline JSON or GA/T 1400
//! `SubscribeNotificationListObject` / `DispositionNotificationListObject` bodies,
//! the same answer checks, the same backoff, 0.5 s doubling to 60 s), the objects'
//! kept copies and pictures read from object storage ([`ClusterHost`]). The cursor
//! moves only after the receiver answered 2xx, written with the lease's epoch: a
//! write of a holder replaced (stopped past its lease, or cut off from PostgreSQL)
//! is refused and its worker ends. So delivery is at least once: a node killed
//! mid-delivery leaves the cursor before the batch in flight, which its successor
//! sends again (duplicates only within that last batch, as on `serve`).
//!
//! Cursor writes past events that match nothing are made at most once a second.
//! A worker whose lease cannot be renewed for a whole lease (PostgreSQL away) is
//! stopped by the supervisor. A clean stop releases every lease at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sightline_cluster::gat1400::{Blob, BlobId};
use sightline_cluster::objects::Objects;
use sightline_cluster::subscriptions::SubscriptionLease;
use sightline_query::federated::{Call, FeedAsk, FeedCursor};

use super::catalog::{on_meta, Catalog};
use super::query::QueryNode;
use crate::error::ApiError;
use crate::http::client::Outbound;
use crate::http::out::EventOut;
use crate::subscriptions::deliver::{self, Backoff, DeliveryError, Host, Stored};
use crate::subscriptions::upstream::{self, Session};
use crate::subscriptions::Subscription;

/// `on_meta!` as an expression: its `Result`, not returned early.
macro_rules! pg {
    ($($call:tt)*) => {
        async { on_meta!($($call)*) }.await
    };
}

/// How often a worker with nothing to send reads again (the feed has no signal to
/// wait on across the network; as `GET /v1/feed`'s long-poll).
const POLL: Duration = super::feed::POLL;

/// Cursor writes past events that match nothing, at most this often.
const SKIP_WRITES_EVERY: Duration = Duration::from_secs(1);

/// What delivery reads of the cluster: its GA/T 1400 id, where receivers fetch
/// pictures (`query.public_url`), and the uploads' pictures and objects on object
/// storage (read on a blocking thread: [`Host::stored`] is called where the bodies
/// are built, off the runtime's workers).
pub(super) struct ClusterHost {
    base: String,
    server_id: String,
    objects: &'static Objects,
    rt: tokio::runtime::Handle,
    /// The subscriber's communities (`None`: every one): a blob of another is not
    /// read.
    scope: Option<Vec<String>>,
    /// The first object storage error met building a batch (not a blob missing):
    /// the batch is not sent but retried.
    failed: std::sync::Mutex<Option<String>>,
}

impl ClusterHost {
    /// Another, for a batch of a subscriber of `scope`.
    fn for_batch(&self, scope: Option<Vec<String>>) -> ClusterHost {
        ClusterHost {
            base: self.base.clone(),
            server_id: self.server_id.clone(),
            objects: self.objects,
            rt: self.rt.clone(),
            scope,
            failed: std::sync::Mutex::new(None),
        }
    }

    /// The object storage error met building the batch, if any.
    fn failure(&self) -> Option<String> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl Host for ClusterHost {
    fn public_base(&self) -> String {
        self.base.clone()
    }
    fn viid_server_id(&self) -> &str {
        &self.server_id
    }
    fn stored(&self, what: Stored, id: &str) -> Option<Vec<u8>> {
        let blob = BlobId::parse(id)?;
        if let Some(scope) = &self.scope {
            if !scope.contains(&blob.community) {
                return None;
            }
        }
        let key = blob.key(match what {
            Stored::Picture => Blob::Picture,
            Stored::Object => Blob::Object,
        });
        let bytes = match self.rt.block_on(self.objects.get_if_exists(&key)) {
            Ok(bytes) => bytes?,
            Err(e) => {
                let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
                failed.get_or_insert_with(|| format!("object storage: {e}"));
                return None;
            }
        };
        // Only bytes whose hash is the one their key names.
        (sightline_cluster::gat1400::sha256_hex(&bytes) == blob.sha256).then(|| bytes.to_vec())
    }
}

/// What every worker of a node shares.
struct Ctx {
    node: Arc<QueryNode>,
    /// The workers' connection, not the requests'.
    catalog: Catalog,
    /// The supervisor's own connection (lease renewals never wait behind a worker).
    leases: Catalog,
    /// Feed reads at once (`query.delivery_reads`).
    reads: tokio::sync::Semaphore,
    host: ClusterHost,
    outbound: Outbound,
    /// Where a platform's `ReceiveAddr` may point (`[gat1400]`): a subscription a
    /// platform made connects only through `outbound` checked with it.
    receive: crate::http::egress::ReceivePolicy,
    holder: String,
}

/// A lease held: its epoch, its worker, when it was last renewed, and for an
/// upstream its registration (unregistered at a clean stop).
struct Held {
    epoch: i64,
    task: tokio::task::JoinHandle<()>,
    renewed: Instant,
    session: Option<Arc<Session>>,
}

/// Starts the node's supervisor (until `stop` turns true; then every lease it holds
/// is released). `base`: where receivers fetch pictures.
pub(super) fn start(
    node: Arc<QueryNode>,
    base: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let outbound = Outbound::new(None).map_err(|e| format!("outbound TLS: {e}"))?;
    let receive = super::receive_policy(&node.config)?;
    let objects = super::pictures::objects(&node.config)
        .map_err(|e| format!("object storage for deliveries: {e}"))?;
    let ctx = Arc::new(Ctx {
        catalog: node.catalog.sibling(),
        leases: node.catalog.sibling(),
        reads: tokio::sync::Semaphore::new(node.config.query.delivery_reads.max(1)),
        host: ClusterHost {
            base,
            server_id: node.config.ingest.viid_server_id.clone(),
            objects,
            rt: tokio::runtime::Handle::current(),
            scope: None,
            failed: std::sync::Mutex::new(None),
        },
        outbound,
        receive,
        holder: format!("{}-{:08x}", node.config.owner(), rand::random::<u32>()),
        node,
    });
    Ok(tokio::spawn(async move {
        let mut held: HashMap<String, Held> = HashMap::new();
        let (ttl, every) = (ctx.node.config.index.lease_ms, ctx.node.config.renew());
        loop {
            renew_all(&ctx, &mut held, ttl).await;
            take_free(&ctx, &mut held, ttl).await;
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        let mut released = Vec::with_capacity(held.len());
        let mut sessions = Vec::new();
        for (id, h) in held.drain() {
            h.task.abort();
            let _ = h.task.await;
            released.push((id, h.epoch));
            // Only where we are registered.
            sessions.extend(h.session.filter(|s| s.state().registered));
        }
        // The upstreams are told we leave (as `serve` tells them at shutdown), within
        // the same bound; their leases are released after, so a node taking one over
        // registers again.
        let mut goodbyes = tokio::task::JoinSet::new();
        for s in sessions {
            let outbound = ctx.outbound.clone();
            goodbyes.spawn(async move { s.unregister(&outbound).await });
        }
        let _ = tokio::time::timeout(upstream::UNREGISTER_AT_SHUTDOWN, async {
            while goodbyes.join_next().await.is_some() {}
        })
        .await;
        let done = pg!(ctx.leases, "release subscriptions", |m| m
            .release_subscriptions(&released));
        if let Err(e) = done {
            tracing::warn!(leases = released.len(), error = %e, "leases not released: they expire");
        }
    }))
}

/// Renews every lease held, in one statement; a worker whose lease is gone (taken
/// over, deleted, replaced) or not renewed within a lease is stopped.
async fn renew_all(ctx: &Ctx, held: &mut HashMap<String, Held>, ttl: u64) {
    let lease = Duration::from_millis(ttl);
    let mut gone: Vec<(String, bool)> = held
        .iter()
        .filter(|(_, h)| h.task.is_finished())
        .map(|(id, _)| (id.clone(), true))
        .collect();
    let live: Vec<(String, i64)> = held
        .iter()
        .filter(|(_, h)| !h.task.is_finished())
        .map(|(id, h)| (id.clone(), h.epoch))
        .collect();
    if !live.is_empty() {
        match pg!(ctx.leases, "renew subscriptions", |m| m
            .renew_subscriptions(&live, ttl))
        {
            Ok(renewed) => {
                let renewed: std::collections::HashSet<String> = renewed.into_iter().collect();
                for (id, _) in &live {
                    match renewed.contains(id) {
                        true => {
                            if let Some(h) = held.get_mut(id) {
                                h.renewed = Instant::now();
                            }
                        }
                        false => gone.push((id.clone(), false)),
                    }
                }
            }
            Err(e) => {
                for (id, _) in &live {
                    if held.get(id).is_some_and(|h| h.renewed.elapsed() >= lease) {
                        tracing::warn!(subscription = %id, error = %e, "a lease not renewed for a whole lease: its worker stops");
                        gone.push((id.clone(), false));
                    }
                }
                tracing::debug!(error = %e, "leases not renewed");
            }
        }
    }
    let mut finished = Vec::new();
    for (id, ended) in gone {
        if let Some(h) = held.remove(&id) {
            h.task.abort();
            if ended {
                // Its worker ended by itself (fenced, or a body that cannot be
                // delivered): let another node, or this one later, take it afresh.
                finished.push((id.clone(), h.epoch));
            }
            tracing::info!(subscription = %id, "a subscription's lease is given up");
        }
    }
    if !finished.is_empty() {
        let _ = pg!(ctx.leases, "release subscriptions", |m| m
            .release_subscriptions(&finished));
    }
}

/// Takes the subscriptions nobody holds, each with a worker.
async fn take_free(ctx: &Arc<Ctx>, held: &mut HashMap<String, Held>, ttl: u64) {
    let free = match pg!(ctx.leases, "read free subscriptions", |m| m
        .free_subscriptions())
    {
        Ok(free) => free,
        Err(e) => {
            tracing::debug!(error = %e, "free subscriptions not read");
            return;
        }
    };
    for id in free {
        if held.contains_key(&id) {
            continue;
        }
        let holder = ctx.holder.clone();
        let lease = match pg!(ctx.leases, "acquire a subscription", |m| m
            .acquire_subscription(&id, &holder, ttl))
        {
            Ok(Some(lease)) => lease,
            Ok(None) => continue,
            Err(e) => {
                tracing::debug!(subscription = %id, error = %e, "a subscription not taken");
                return;
            }
        };
        tracing::info!(subscription = %id, epoch = lease.epoch, "delivering a subscription");
        let epoch = lease.epoch;
        // An upstream's registration, kept by this node while it holds the lease.
        let session = serde_json::from_str::<Subscription>(&lease.body_json)
            .ok()
            .and_then(|s| Session::of(&s))
            .map(Arc::new);
        let task = tokio::spawn(work(ctx.clone(), lease, session.clone()));
        held.insert(
            id,
            Held {
                epoch,
                task,
                renewed: Instant::now(),
                session,
            },
        );
    }
}

/// Why a worker ends.
enum End {
    /// Its lease is not its own any more: a cursor write was refused.
    Fenced,
    /// It cannot deliver at all (a stored body or cursor that does not read).
    Broken(String),
}

/// One subscription's worker, until its lease ends.
async fn work(ctx: Arc<Ctx>, lease: SubscriptionLease, session: Option<Arc<Session>>) {
    // An upstream's registration runs beside its uploads, fenced by the lease: it
    // ends (and never registers again) once the lease moved on.
    let _registration = session.clone().map(|session| {
        let (c, l, s) = (ctx.clone(), lease.clone(), session.clone());
        let task = tokio::spawn(upstream::registration_fenced(
            ctx.outbound.clone(),
            session,
            move |_| {
                let (c, l, s) = (c.clone(), l.clone(), s.clone());
                async move { write_session(&c, &l, &s).await }
            },
        ));
        AbortOnDrop(task)
    });
    let w = match Worker::of(&ctx, &lease, session) {
        Ok(w) => w,
        Err(why) => {
            tracing::error!(subscription = %lease.id, %why, "a subscription cannot be delivered");
            let _ = failed(&ctx, &lease, &why).await;
            // Held (its lease renewed) so no node spins on it; deleting it ends it.
            std::future::pending::<()>().await;
            return;
        }
    };
    let ended = match w.s.alerts {
        true => w.alerts(&ctx, &lease).await,
        false => w.events(&ctx, &lease).await,
    };
    match ended {
        End::Fenced => tracing::info!(subscription = %lease.id, "a subscription's lease moved on"),
        End::Broken(why) => {
            tracing::error!(subscription = %lease.id, %why, "a subscription's delivery stops");
            let _ = failed(&ctx, &lease, &why).await;
            std::future::pending::<()>().await;
        }
    }
}

/// Aborts its task when dropped (an upstream's registration ends with its worker).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Writes an upstream's registration as it is now (fenced by the lease: what ingest
/// nodes let in by `User-Identify`); false when the lease moved on. PostgreSQL
/// away: true (the supervisor stops a worker whose lease is not renewed).
async fn write_session(ctx: &Ctx, lease: &SubscriptionLease, s: &Session) -> bool {
    put_session(ctx, lease, s).await.unwrap_or(true)
}

/// Writes `s`'s registration under `lease` as [`write_session`]: Some(false) when the
/// lease moved on, None when PostgreSQL did not answer (nothing known of the lease).
async fn put_session(ctx: &Ctx, lease: &SubscriptionLease, s: &Session) -> Option<bool> {
    let state = s.state();
    let row = sightline_cluster::upstreams::UpstreamSession {
        state_json: serde_json::to_string(&state).expect("serializes"),
        server_id: s.server_id(),
        device_id: s.device_id().to_string(),
        scope: s.scope(),
        addresses: s.addresses().iter().map(|ip| ip.to_string()).collect(),
        registered: state.registered,
    };
    pg!(ctx.catalog, "write an upstream's registration", |m| m
        .put_upstream_session(&lease.id, lease.epoch, &row))
    .ok()
}

/// What a receiver took of a batch: the objects it refused for good, and why the
/// last was.
#[derive(Default)]
struct Taken {
    refused: u64,
    last_refusal: Option<String>,
}

/// Records a failed attempt; false when the lease moved on.
async fn failed(ctx: &Ctx, lease: &SubscriptionLease, why: &str) -> bool {
    // PostgreSQL away: the status waits; the supervisor ends a lease not renewed.
    pg!(ctx.catalog, "record a failed delivery", |m| m
        .subscription_failed(&lease.id, lease.epoch, why))
    .unwrap_or(true)
}

/// Moves the cursor (fenced), trying again while PostgreSQL does not answer (the
/// supervisor stops this worker if that lasts a lease); false when the lease moved
/// on.
async fn advance(
    ctx: &Ctx,
    lease: &SubscriptionLease,
    cursor: &str,
    delivered: u64,
    at_ms: Option<i64>,
) -> bool {
    advance_past(ctx, lease, cursor, delivered, at_ms, &Taken::default()).await
}

/// [`advance`] past `sent` objects of which the receiver refused some for good
/// (`taken`): those count as refused, the rest as delivered (as `serve` counts them).
async fn advance_past(
    ctx: &Ctx,
    lease: &SubscriptionLease,
    cursor: &str,
    sent: u64,
    at_ms: Option<i64>,
    taken: &Taken,
) -> bool {
    let delivered = sent.saturating_sub(taken.refused);
    let last = taken.last_refusal.as_deref();
    loop {
        match pg!(ctx.catalog, "move a subscription's cursor", |m| m
            .advance_subscription_past(
                &lease.id,
                lease.epoch,
                cursor,
                delivered,
                at_ms,
                taken.refused,
                last
            )) {
            Ok(ours) => return ours,
            Err(e) => {
                tracing::warn!(subscription = %lease.id, error = %e, "a cursor not written yet");
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// A worker's subscription and where it delivers.
struct Worker {
    s: Subscription,
    addr: String,
    path: String,
    /// `User-Identify` of a GA/T 1400 receiver (this 视图库's id, or for an upper
    /// platform's subscription our id there).
    viid: Option<String>,
    /// An upstream's registration: its uploads go under it.
    session: Option<Arc<Session>>,
    /// How it connects: for a receiver a platform named (`/VIID/Subscribes`, a
    /// disposition's `ReceiveAddr`), only to the addresses `[gat1400]` and the
    /// defaults permit, each connection resolved and checked (`http::egress`).
    outbound: Outbound,
}

/// One POST of a batch: the path on the receiver's origin, the body, its items.
type Post = (String, Vec<u8>, u64);

impl Worker {
    fn of(
        ctx: &Ctx,
        lease: &SubscriptionLease,
        session: Option<Arc<Session>>,
    ) -> Result<Worker, String> {
        let s: Subscription = serde_json::from_str(&lease.body_json)
            .map_err(|e| format!("its stored body does not read: {e}"))?;
        let (addr, path) = crate::subscriptions::target(&s.url).map_err(|e| e.to_string())?;
        let identify = s.viid.as_ref().and_then(|v| v.identify.clone());
        let viid =
            (s.format == "gat1400").then(|| identify.unwrap_or_else(|| ctx.host.server_id.clone()));
        let outbound = match s.platform_named() {
            true => ctx.outbound.checked(&ctx.receive),
            false => ctx.outbound.clone(),
        };
        Ok(Worker {
            s,
            addr,
            path,
            viid,
            session,
            outbound,
        })
    }

    /// POSTs `payload`: Ok when taken, else the failure recorded (`Err(true)`: go
    /// on after the backoff; `Err(false)`: the lease moved on).
    async fn send(
        &self,
        ctx: &Ctx,
        lease: &SubscriptionLease,
        payload: Vec<u8>,
        n: u64,
    ) -> Result<Taken, bool> {
        let post = (self.path.clone(), payload, n);
        self.send_one(ctx, lease, post).await
    }

    /// POSTs every one of `posts` in order, each as [`Worker::send`]: Ok when all
    /// were taken (an upstream's uploads of one page, one per run of a class).
    async fn send_all(
        &self,
        ctx: &Ctx,
        lease: &SubscriptionLease,
        posts: Vec<Post>,
    ) -> Result<Taken, bool> {
        let mut all = Taken::default();
        for post in posts {
            let taken = self.send_one(ctx, lease, post).await?;
            all.refused += taken.refused;
            all.last_refusal = taken.last_refusal.or(all.last_refusal);
        }
        Ok(all)
    }

    async fn send_one(
        &self,
        ctx: &Ctx,
        lease: &SubscriptionLease,
        (path, payload, n): Post,
    ) -> Result<Taken, bool> {
        // GA/T 1400 notifications: judged object by object, as `serve` judges them;
        // an upstream's uploads as `serve` judges them, under its registration.
        let viid = match &self.session {
            Some(session) => Some((session.device_id(), false)),
            None => self.viid.as_deref().map(|id| (id, true)),
        };
        let sent = deliver::post(&self.addr, &path, payload, viid, n, &self.outbound).await;
        if let (
            Some(session),
            Err(DeliveryError::Refused {
                status: hyper::StatusCode::UNAUTHORIZED,
                ..
            }),
        ) = (&self.session, &sent)
        {
            // The upstream does not know us (it restarted, or our registration
            // lapsed): register again before the next attempt, as `serve` does.
            session.forget();
            // Fenced first: a holder whose lease moved on (the upstream deleted and
            // unregistered by another node, or taken over) must not register again —
            // nobody would keep that registration alive or end it.
            match put_session(ctx, lease, session).await {
                Some(true) => {}
                Some(false) => return Err(false),
                // The lease unknown: not now; the batch is tried again.
                None => return Err(true),
            }
            let again = session.register(&ctx.outbound).await;
            if !write_session(ctx, lease, session).await {
                return Err(false);
            }
            if let Err(e) = again {
                tracing::warn!(subscription = %self.s.id, error = %e, "registering again failed");
            }
        }
        match sent {
            Ok((refused, last)) => {
                let last_refusal = last.map(|(code, text)| {
                    tracing::warn!(subscription = %self.s.id, refused, %code, %text,
                        "objects refused for good: passed");
                    format!("StatusCode {code} ({text:?})")
                });
                Ok(Taken {
                    refused,
                    last_refusal,
                })
            }
            Err(e @ DeliveryError::Gone { .. }) => {
                // The receiver does not know the subscription: resending never helps
                // (as on `serve`). Stopped, and said so, until it is changed (placed
                // again: its lease ends) or the lease is taken again.
                let why = e.to_string();
                tracing::warn!(subscription = %self.s.id, error = %why, "delivery stopped");
                match pg!(ctx.catalog, "record a stopped delivery", |m| m
                    .subscription_stopped(&lease.id, lease.epoch, &why))
                {
                    Ok(false) => Err(false),
                    _ => std::future::pending().await,
                }
            }
            Err(e) => Err(failed(ctx, lease, &e.to_string()).await),
        }
    }

    /// Events: feed pages after the cursor, filtered, delivered, the cursor kept.
    async fn events(&self, ctx: &Ctx, lease: &SubscriptionLease) -> End {
        let partitions = ctx.node.partitions();
        let mut cursor = match FeedCursor::parse(&lease.cursor, partitions) {
            Ok(c) => c,
            Err(why) => return End::Broken(format!("its stored cursor: {why}")),
        };
        let mut backoff = Backoff::default();
        let (mut unsaved, mut saved_at) = (false, Instant::now());
        loop {
            let page = match self.page(ctx, &cursor).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(subscription = %self.s.id, error = %e, "a feed page not read");
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            };
            let (events, next, more) = page;
            if events.is_empty() {
                let moved = next != cursor;
                if moved {
                    cursor = next;
                    unsaved = true;
                }
                if unsaved && saved_at.elapsed() >= SKIP_WRITES_EVERY {
                    if !advance(ctx, lease, &cursor.to_string(), 0, None).await {
                        return End::Fenced;
                    }
                    (unsaved, saved_at) = (false, Instant::now());
                }
                if !(more && moved) {
                    tokio::time::sleep(POLL).await;
                }
                continue;
            }
            let posts = match self.body(ctx, events).await {
                Ok(Ok(p)) => p,
                // Object storage failed: the batch failed, tried again after the backoff.
                Ok(Err(why)) => match failed(ctx, lease, &why).await {
                    true => {
                        tokio::time::sleep(backoff.next()).await;
                        continue;
                    }
                    false => return End::Fenced,
                },
                Err(why) => return End::Broken(why),
            };
            let n = posts.iter().map(|(_, _, n)| n).sum();
            match self.send_all(ctx, lease, posts).await {
                Ok(taken) => {
                    let at = Some(crate::now_ms());
                    if !advance_past(ctx, lease, &next.to_string(), n, at, &taken).await {
                        return End::Fenced;
                    }
                    cursor = next;
                    (unsaved, saved_at) = (false, Instant::now());
                    backoff.reset();
                }
                Err(true) => tokio::time::sleep(backoff.next()).await,
                Err(false) => return End::Fenced,
            }
        }
    }

    /// The page after `cursor` in the subscriber's scope: its matching events (as
    /// the API writes them), the cursor past it, and whether a partition has more.
    async fn page(
        &self,
        ctx: &Ctx,
        cursor: &FeedCursor,
    ) -> Result<(Vec<Value>, FeedCursor, bool), ApiError> {
        let node = ctx.node.clone();
        let timeout = node.timeout();
        let (s, cursor) = (self.s.clone(), cursor.clone());
        // A tollgate's subscription reads objects as uploaded (`deliver::taken`).
        let host = ctx.host.for_batch(s.scope.clone());
        // One of the node's feed reads (`query.delivery_reads`), held for the read.
        let _read = ctx
            .reads
            .acquire()
            .await
            .map_err(|_| ApiError::internal("the delivery's reads are closed"))?;
        let task = tokio::task::spawn_blocking(move || {
            let call = Call {
                scope: s.scope.clone(),
                deadline: Some(Instant::now() + timeout),
            };
            let ask = FeedAsk {
                after: 0,
                limit: s.batch.max(1),
                kind: None,
                communities: deliver::communities_of(&s),
            };
            let page = node.federation().feed(&call, &cursor, &ask)?;
            if !page.unavailable.is_empty() && page.unavailable.len() == page.asked {
                let (_, e) = page.unavailable.into_iter().next().expect("not empty");
                return Err(ApiError::from(e));
            }
            // `serve`'s matcher: its filters, or an object taken at a subscribed
            // tollgate; object storage failing, the page is read again later.
            let events = deliver::taken(&host, &s, &page.events, |e, a| {
                serde_json::to_value(EventOut::decoded(e, a)).map_err(|e| e.to_string())
            })
            .map_err(ApiError::internal)?;
            if let Some(why) = host.failure() {
                return Err(ApiError::StorageUnavailable(why));
            }
            Ok((events, page.next, page.more))
        });
        match tokio::time::timeout(timeout + Duration::from_secs(1), task).await {
            Err(_) => Err(ApiError::QueryTimeout(Some(timeout))),
            Ok(joined) => {
                joined.map_err(|e| ApiError::internal(format!("the feed's task failed: {e}")))?
            }
        }
    }

    /// A batch's body, as `serve` makes it (a GA/T 1400 notification reads its
    /// objects and pictures from object storage, those of the subscriber's
    /// communities only: on a blocking thread); for an upstream, `serve`'s uploads,
    /// one per run of events of one class. `Ok(Err)`: object storage failed, the
    /// batch is to be tried again.
    async fn body(
        &self,
        ctx: &Ctx,
        events: Vec<Value>,
    ) -> Result<Result<Vec<Post>, String>, String> {
        let (s, path) = (self.s.clone(), self.path.clone());
        let host = ctx.host.for_batch(s.scope.clone());
        tokio::task::spawn_blocking(move || {
            let now = crate::now_ms();
            let posts = match &s.upstream {
                Some(up) => upstream::uploads(&host, &s, up, &events, 0, now)
                    .into_iter()
                    .map(|d| (d.path, d.payload, d.n))
                    .collect(),
                None => {
                    let body = deliver::body(&host, &s, &events, now);
                    let n = events.len() as u64;
                    vec![(path, serde_json::to_vec(&body).expect("serializes"), n)]
                }
            };
            match host.failure() {
                Some(why) => Err(why),
                None => Ok(posts),
            }
        })
        .await
        .map_err(|e| format!("building a batch failed: {e}"))
    }

    /// Alerts: those after the cursor (an alert id) in its creator's communities,
    /// of its watchlist when it names one, delivered in order.
    async fn alerts(&self, ctx: &Ctx, lease: &SubscriptionLease) -> End {
        let Ok(mut cursor) = lease.cursor.parse::<u64>() else {
            return End::Broken(format!(
                "its stored cursor {:?} is not an alert id",
                lease.cursor
            ));
        };
        let mut backoff = Backoff::default();
        // The creator's communities, as `serve` reads alerts for a subscription.
        let scope = self.s.scope.clone();
        let batch = self.s.batch.max(1);
        loop {
            let read = pg!(ctx.catalog, "read alerts", |m| m.alerts_page(
                cursor,
                batch,
                scope.as_deref()
            ));
            let (rows, head) = match read {
                Ok(read) => read,
                Err(e) => {
                    tracing::debug!(subscription = %self.s.id, error = %e, "alerts not read");
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            };
            let Some(next) = rows.last().map(|(id, _, _)| *id) else {
                // None in scope up to the last alert: the next read starts past it
                // (kept in memory, written with the next batch or skip).
                if head > cursor {
                    if !advance(ctx, lease, &head.to_string(), 0, None).await {
                        return End::Fenced;
                    }
                    cursor = head;
                }
                tokio::time::sleep(POLL).await;
                continue;
            };
            let mut alerts = Vec::with_capacity(rows.len());
            for (id, body, event_id) in rows {
                let Ok(mut v) = serde_json::from_str::<Value>(&body) else {
                    return End::Broken(format!("stored alert {id} does not read"));
                };
                v["id"] = id.into();
                if let Some(e) = event_id {
                    v["event_id"] = e.into();
                    v["event"]["id"] = e.into();
                }
                let ours = (self.s.watchlist.as_ref()).is_none_or(|w| v["watchlist"] == w.as_str());
                if ours {
                    alerts.push(v);
                }
            }
            if alerts.is_empty() {
                // Another list's alerts: nothing to send; go on past them.
                if !advance(ctx, lease, &next.to_string(), 0, None).await {
                    return End::Fenced;
                }
                cursor = next;
                continue;
            }
            let n = alerts.len() as u64;
            let payload = match self.s.format.as_str() {
                // Each hit's object as uploaded, read from object storage (the
                // creator's communities only) on a blocking thread, as the events'
                // notifications are: `Host::stored` blocks on the read.
                "gat1400" => {
                    let host = ctx.host.for_batch(self.s.scope.clone());
                    let built = tokio::task::spawn_blocking(move || {
                        let body = deliver::disposition_notifications(&host, &alerts);
                        host.failure().map_or(Ok(body), Err)
                    })
                    .await
                    .unwrap_or_else(|e| Err(format!("the notification's task failed: {e}")));
                    match built {
                        Ok(body) => body,
                        Err(why) => {
                            // Object storage failing: the same alerts again later.
                            tracing::warn!(subscription = %self.s.id, error = %why, "disposition notification not built");
                            tokio::time::sleep(backoff.next()).await;
                            continue;
                        }
                    }
                }
                _ => json!({"subscription": self.s.id, "alerts": alerts}),
            };
            let payload = serde_json::to_vec(&payload).expect("serializes");
            match self.send(ctx, lease, payload, n).await {
                Ok(taken) => {
                    let at = Some(crate::now_ms());
                    if !advance_past(ctx, lease, &next.to_string(), n, at, &taken).await {
                        return End::Fenced;
                    }
                    cursor = next;
                    backoff.reset();
                }
                Err(true) => tokio::time::sleep(backoff.next()).await,
                Err(false) => return End::Fenced,
            }
        }
    }
}
