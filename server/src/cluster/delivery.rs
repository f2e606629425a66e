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
use crate::subscriptions::deliver::{self, Backoff, Host, Stored};
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
        let key = blob.key(match what {
            Stored::Picture => Blob::Picture,
            Stored::Object => Blob::Object,
        });
        let bytes = self.rt.block_on(self.objects.get_if_exists(&key)).ok()??;
        // Only bytes whose hash is the one their key names.
        (sightline_cluster::gat1400::sha256_hex(&bytes) == blob.sha256).then(|| bytes.to_vec())
    }
}

/// What every worker of a node shares.
struct Ctx {
    node: Arc<QueryNode>,
    /// A connection of the supervisor and workers, not the requests'.
    catalog: Catalog,
    host: ClusterHost,
    outbound: Outbound,
    holder: String,
}

/// A lease held: its epoch, its worker, when it was last renewed.
struct Held {
    epoch: i64,
    task: tokio::task::JoinHandle<()>,
    renewed: Instant,
}

/// Starts the node's supervisor (until `stop` turns true; then every lease it holds
/// is released). `base`: where receivers fetch pictures.
pub(super) fn start(
    node: Arc<QueryNode>,
    base: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let outbound = Outbound::new(None).map_err(|e| format!("outbound TLS: {e}"))?;
    let objects = super::pictures::objects(&node.config)
        .map_err(|e| format!("object storage for deliveries: {e}"))?;
    let ctx = Arc::new(Ctx {
        catalog: node.catalog.sibling(),
        host: ClusterHost {
            base,
            server_id: node.config.ingest.viid_server_id.clone(),
            objects,
            rt: tokio::runtime::Handle::current(),
        },
        outbound,
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
        for (id, h) in held.drain() {
            h.task.abort();
            let _ = h.task.await;
            let done = pg!(ctx.catalog, "release a subscription", |m| m
                .release_subscription(&id, h.epoch));
            if let Err(e) = done {
                tracing::warn!(subscription = %id, error = %e, "a lease is not released: it expires");
            }
        }
    }))
}

/// Renews every lease held; a worker whose lease is gone (taken over, deleted,
/// replaced) or not renewed within a lease is stopped.
async fn renew_all(ctx: &Ctx, held: &mut HashMap<String, Held>, ttl: u64) {
    let lease = Duration::from_millis(ttl);
    let mut gone = Vec::new();
    for (id, h) in held.iter_mut() {
        if h.task.is_finished() {
            gone.push((id.clone(), true));
            continue;
        }
        let epoch = h.epoch;
        match pg!(ctx.catalog, "renew a subscription", |m| m
            .renew_subscription(id, epoch, ttl))
        {
            Ok(true) => h.renewed = Instant::now(),
            Ok(false) => gone.push((id.clone(), false)),
            Err(e) if h.renewed.elapsed() >= lease => {
                tracing::warn!(subscription = %id, error = %e, "a lease not renewed for a whole lease: its worker stops");
                gone.push((id.clone(), false));
            }
            Err(e) => tracing::debug!(subscription = %id, error = %e, "a lease not renewed"),
        }
    }
    for (id, finished) in gone {
        if let Some(h) = held.remove(&id) {
            h.task.abort();
            if finished {
                // Its worker ended by itself (fenced, or a body that cannot be
                // delivered): let another node, or this one later, take it afresh.
                let epoch = h.epoch;
                let _ = pg!(ctx.catalog, "release a subscription", |m| m
                    .release_subscription(&id, epoch));
            }
            tracing::info!(subscription = %id, "a subscription's lease is given up");
        }
    }
}

/// Takes the subscriptions nobody holds, each with a worker.
async fn take_free(ctx: &Arc<Ctx>, held: &mut HashMap<String, Held>, ttl: u64) {
    let free = match pg!(ctx.catalog, "read free subscriptions", |m| m
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
        let lease = match pg!(ctx.catalog, "acquire a subscription", |m| m
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
        let task = tokio::spawn(work(ctx.clone(), lease));
        held.insert(
            id,
            Held {
                epoch,
                task,
                renewed: Instant::now(),
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
async fn work(ctx: Arc<Ctx>, lease: SubscriptionLease) {
    let w = match Worker::of(&ctx, &lease) {
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
    loop {
        match pg!(ctx.catalog, "move a subscription's cursor", |m| m
            .advance_subscription(
                &lease.id,
                lease.epoch,
                cursor,
                delivered,
                at_ms
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
    /// `User-Identify` of a GA/T 1400 receiver (this 视图库's id).
    viid: Option<String>,
}

impl Worker {
    fn of(ctx: &Ctx, lease: &SubscriptionLease) -> Result<Worker, String> {
        let s: Subscription = serde_json::from_str(&lease.body_json)
            .map_err(|e| format!("its stored body does not read: {e}"))?;
        let (addr, path) = crate::subscriptions::target(&s.url).map_err(|e| e.to_string())?;
        let viid = (s.format == "gat1400").then(|| ctx.host.server_id.clone());
        Ok(Worker {
            s,
            addr,
            path,
            viid,
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
    ) -> Result<(), bool> {
        // GA/T 1400 notifications: judged object by object, as `serve` judges them.
        let viid = self.viid.as_deref().map(|id| (id, true));
        let sent = deliver::post(&self.addr, &self.path, payload, viid, n, &ctx.outbound).await;
        match sent {
            Ok((refused, last)) => {
                if let Some((code, text)) = last {
                    tracing::warn!(subscription = %self.s.id, refused, %code, %text,
                        "objects refused for good: passed");
                }
                Ok(())
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
            let n = events.len() as u64;
            let payload = match self.body(ctx, events).await {
                Ok(p) => p,
                Err(why) => return End::Broken(why),
            };
            match self.send(ctx, lease, payload, n).await {
                Ok(()) => {
                    let at = Some(crate::now_ms());
                    if !advance(ctx, lease, &next.to_string(), n, at).await {
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
            let events = page
                .events
                .iter()
                .filter(|(e, _)| s.matches(e))
                .map(|(e, a)| serde_json::to_value(EventOut::decoded(e, a)))
                .collect::<Result<Vec<Value>, _>>()
                .map_err(|e| ApiError::internal(e.to_string()))?;
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
    /// objects and pictures from object storage: on a blocking thread).
    async fn body(&self, ctx: &Ctx, events: Vec<Value>) -> Result<Vec<u8>, String> {
        let s = self.s.clone();
        let host = ClusterHost {
            base: ctx.host.base.clone(),
            server_id: ctx.host.server_id.clone(),
            objects: ctx.host.objects,
            rt: ctx.host.rt.clone(),
        };
        tokio::task::spawn_blocking(move || {
            let body = deliver::body(&host, &s, &events, crate::now_ms());
            serde_json::to_vec(&body).expect("serializes")
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
            let read = pg!(ctx.catalog, "read alerts", |m| m.alerts_after(
                cursor,
                batch,
                scope.as_deref()
            ));
            let rows = match read {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::debug!(subscription = %self.s.id, error = %e, "alerts not read");
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            };
            let Some(next) = rows.last().map(|(id, _, _)| *id) else {
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
                "gat1400" => deliver::disposition_notifications(&ctx.host, &alerts),
                _ => json!({"subscription": self.s.id, "alerts": alerts}),
            };
            let payload = serde_json::to_vec(&payload).expect("serializes");
            match self.send(ctx, lease, payload, n).await {
                Ok(()) => {
                    let at = Some(crate::now_ms());
                    if !advance(ctx, lease, &next.to_string(), n, at).await {
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
