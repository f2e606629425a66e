//! `/v1/upstreams` and `/v1/remote-subscriptions` on a query node, with `serve`'s
//! checks, JSON, roles, scope rules and errors (`crate::subscriptions::
//! {upstream_handlers, remote_handlers}`), kept in PostgreSQL
//! (`sightline_cluster::upstreams`).
//!
//! **Upstreams** are rows of the cluster's `subscriptions` (as on `serve`, a
//! subscription with an upstream part: `max_subscriptions` and
//! `max_subscriptions_per_owner` count them), delivered by whichever query node holds
//! the row's lease (`super::delivery`): that node keeps the registration there
//! (`serve`'s `upstream::Session`: Register answering the digest, Keepalive,
//! registering again on a 401 or a failed keepalive), fenced by the lease (a
//! registration is never made again once the lease moved on), uploads under it, and
//! writes it to `upstream_sessions`, which ingest nodes read to let the upper
//! platform in. `from`, `status.cursor` and `status.lag` are as for
//! `/v1/subscriptions` on a query node (a feed cursor; `null`); `status.holder`
//! names the node registered there. `DELETE` deletes the row (its holder's next write
//! is refused: its registration task ends) and unregisters there from the node
//! answering (one attempt, as `serve`).
//!
//! **Remote subscriptions** are rows of `remote_subscriptions`, placed and asserted
//! again by the query node holding the row's lease (`serve`'s `remote::keep_placed`),
//! their status written with each lease renewal. Notifications come back to ingest
//! nodes, so `receive_addr` must be given (an ingest node's, or its load balancer's,
//! `/VIID/SubscribeNotifications`): a query node does not know where they listen.
//! `DELETE` cancels it there from the node answering; a cancel not taken marks it
//! `cancelling` and frees its lease, and whoever takes it cancels it until taken.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};
use sightline_cluster::subscriptions::Added;
use sightline_cluster::upstreams::RemoteLease;
use sightline_query::federated::FeedCursor;

use super::catalog::{on_meta, Catalog};
use super::query::QueryNode;
use super::subscriptions::{full_message, start_of, subscription_of_row, visible_cursor};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::client::Outbound;
use crate::http::json::object;
use crate::subscriptions::remote::{self, RemoteStatus, RemoteSubscription};
use crate::subscriptions::remote_handlers::{remote_json, remote_of};
use crate::subscriptions::upstream::Session;
use crate::subscriptions::upstream_handlers::{upstream_json, upstream_of};
use crate::subscriptions::Subscription;

/// `on_meta!` as an expression: its `Result`, not returned early.
macro_rules! pg {
    ($($call:tt)*) => {
        async { on_meta!($($call)*) }.await
    };
}

/// Outbound connections of the handlers (an `UnRegister`, a cancel).
fn outbound() -> Result<&'static Outbound, ApiError> {
    static OUTBOUND: OnceLock<Result<Outbound, String>> = OnceLock::new();
    OUTBOUND
        .get_or_init(|| Outbound::new(None).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| ApiError::internal(format!("outbound TLS: {e}")))
}

/// An upstream as `serve` lists it, its status from the row (and the registration
/// its holder last wrote, while it holds the lease).
fn listed_upstream(
    s: &Subscription,
    row: &sightline_cluster::subscriptions::SubscriptionRow,
    session: Option<&str>,
    partitions: u16,
) -> Value {
    let shown = (Default::default(), None);
    let mut v = upstream_json(s, &shown, 0);
    let st = &row.status;
    let status = &mut v["status"];
    status["cursor"] = visible_cursor(s, &row.cursor, partitions).into();
    status["delivered"] = st.delivered.into();
    status["failures_in_a_row"] = st.failures_in_a_row.into();
    status["failures_total"] = st.failures_total.into();
    status["last_error"] = st.last_error.clone().into();
    status["last_success_ms"] = st.last_success_ms.into();
    status["lag"] = Value::Null;
    status["holder"] = row.holder.clone().into();
    let written = session.and_then(|j| serde_json::from_str::<Value>(j).ok());
    if let Some(Value::Object(m)) = written {
        for (k, val) in m {
            status[&k] = val;
        }
    }
    if row.holder.is_none() {
        // Nobody holds it: nobody keeps the registration alive.
        status["registered"] = false.into();
    }
    v
}

/// A remote subscription as `serve` lists it, its status as its holder last wrote it.
fn listed_remote(r: &sightline_cluster::upstreams::RemoteRow) -> Result<Value, ApiError> {
    let rs: RemoteSubscription = serde_json::from_str(&r.body_json).map_err(|e| {
        ApiError::internal(format!("remote subscription {}'s stored body: {e}", r.id))
    })?;
    let mut v = remote_json(&rs, &RemoteStatus::default());
    let written = r
        .status_json
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok());
    if let (Some(Value::Object(m)), Some(_)) = (written, &r.holder) {
        // `resolved` is for the ingest nodes (where notifications may come from), not
        // listed, as on `serve`.
        for (k, val) in m.into_iter().filter(|(k, _)| k != "resolved") {
            v["status"][&k] = val;
        }
    }
    v["status"]["holder"] = r.holder.clone().into();
    Ok(v)
}

impl Catalog {
    /// The upstreams `caller` covers, with their rows and registrations.
    async fn covered_upstreams(
        &self,
        caller: &Caller,
    ) -> Result<
        Vec<(
            Subscription,
            sightline_cluster::subscriptions::SubscriptionRow,
        )>,
        ApiError,
    > {
        let rows = on_meta!(self, "read subscriptions", |m| m.subscriptions())?;
        let mut out = Vec::new();
        for row in rows {
            let s = subscription_of_row(&row)?;
            if s.upstream.is_some() && caller.covers(s.scope.as_deref()) {
                out.push((s, row));
            }
        }
        Ok(out)
    }

    async fn sessions(&self) -> Result<HashMap<String, String>, ApiError> {
        let read = on_meta!(self, "read upstreams' registrations", |m| m
            .upstream_sessions())?;
        Ok(read.into_iter().collect())
    }

    /// `GET /v1/upstreams`.
    pub(super) async fn list_upstreams(
        &self,
        caller: &Caller,
        partitions: u16,
    ) -> Result<(crate::http::Body, usize), ApiError> {
        let sessions = self.sessions().await?;
        let items: Vec<Value> = (self.covered_upstreams(caller).await?.iter())
            .map(|(s, row)| {
                let session = sessions.get(&s.id).map(String::as_str);
                listed_upstream(s, row, session, partitions)
            })
            .collect();
        Ok(crate::http::out::listed("upstreams", items))
    }

    /// `GET /v1/upstreams/{id}`.
    pub(super) async fn upstream(
        &self,
        caller: &Caller,
        id: String,
        partitions: u16,
    ) -> Result<Value, ApiError> {
        let sessions = self.sessions().await?;
        let found = self.covered_upstreams(caller).await?;
        match found.iter().find(|(s, _)| s.id == id) {
            Some((s, row)) => {
                let session = sessions.get(&s.id).map(String::as_str);
                Ok(listed_upstream(s, row, session, partitions))
            }
            None => Err(ApiError::NoSuchUpstream(id)),
        }
    }

    /// `POST /v1/upstreams` with `body` (`serve`'s fields; `from` a feed cursor):
    /// registered within a lease renewal by the query node that takes it.
    pub(super) async fn create_upstream(
        &self,
        caller: &Caller,
        body: &[u8],
        (server_id, partitions): (&str, u16),
        (max_total, max_owned): (usize, usize),
        now: impl std::future::Future<Output = Result<FeedCursor, ApiError>>,
    ) -> Result<Value, ApiError> {
        let o = object(body)?;
        let s = upstream_of(&o, server_id, caller)?;
        let cursor = start_of(self, false, o.get("from"), partitions, now).await?;
        let text = serde_json::to_string(&s).expect("serializes");
        let (id, owner) = (s.id.clone(), s.owner.clone());
        // One upstream per 视图库 id, as on `serve` (decided in the insert statement).
        let sid = s.upstream.as_ref().and_then(|u| u.server_id.clone());
        let added = on_meta!(self, "add an upstream", |m| m.add_upstream(
            &id,
            &owner,
            &text,
            &cursor,
            sid.as_deref(),
            max_total,
            max_owned
        ))?;
        let added = match added {
            Ok(added) => added,
            Err(other) => {
                return Err(crate::subscriptions::upstream_handlers::server_id_taken(
                    sid.as_deref().unwrap_or_default(),
                    &other,
                    caller,
                ))
            }
        };
        match added {
            Added::Added => {}
            Added::Full { total } => {
                return Err(ApiError::TooManySubscriptions(full_message(
                    total, max_total, max_owned,
                )))
            }
            Added::Exists => return Err(ApiError::internal(format!("upstream id {id} is taken"))),
        }
        let row = on_meta!(self, "read an upstream", |m| m.subscription(&id))?
            .ok_or_else(|| ApiError::NoSuchUpstream(id.clone()))?;
        Ok(listed_upstream(&s, &row, None, partitions))
    }

    /// `DELETE /v1/upstreams/{id}`: forgotten (its holder stops at its next write),
    /// then unregistered there from this node, one attempt (its outcome in the
    /// answer, as on `serve`).
    pub(super) async fn delete_upstream(
        &self,
        caller: &Caller,
        id: String,
    ) -> Result<Value, ApiError> {
        let Some((s, _)) = (self.covered_upstreams(caller).await?)
            .into_iter()
            .find(|(s, _)| s.id == id)
        else {
            return Err(ApiError::NoSuchUpstream(id));
        };
        // What its upper platform subscribed to through it ends with it (as on `serve`),
        // first: a failure leaves the upstream to delete again, not its upper's
        // subscriptions running with no upstream to end them.
        let ended = on_meta!(self, "end an upper platform's subscriptions", |m| m
            .end_upper_subscriptions(&id))?;
        if !on_meta!(self, "delete an upstream", |m| m.delete_subscription(&id))? {
            return Err(ApiError::NoSuchUpstream(id));
        }
        let unregistered = match Session::of(&s) {
            Some(session) => session
                .unregister(outbound()?)
                .await
                .map_err(|e| e.to_string()),
            None => Err("its URL does not read".to_string()),
        };
        Ok(json!({ "deleted": id, "unregistered": unregistered.is_ok(),
                   "unregister_error": unregistered.err(), "ended_subscriptions": ended }))
    }

    /// `GET /v1/remote-subscriptions` (city-wide, checked by the caller).
    pub(super) async fn list_remotes(&self) -> Result<(crate::http::Body, usize), ApiError> {
        let rows = on_meta!(self, "read remote subscriptions", |m| m
            .remote_subscriptions())?;
        let items = rows
            .iter()
            .map(listed_remote)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(crate::http::out::listed("remote_subscriptions", items))
    }

    /// `POST /v1/remote-subscriptions` (city-wide, checked by the caller before the
    /// body): `serve`'s fields, `receive_addr` required.
    pub(super) async fn create_remote(
        &self,
        caller: &Caller,
        body: &[u8],
        server_id: &str,
    ) -> Result<Value, ApiError> {
        let o = object(body)?;
        let given = crate::http::json::text(&o, "receive_addr", false)?;
        if given.is_empty() {
            return Err(ApiError::param(
                "receive_addr",
                "needed on a cluster: the URL of an ingest node's (or its load balancer's) /VIID/SubscribeNotifications, where the other side sends notifications",
            ));
        }
        // `receive_addr` is given: the base is not used.
        let r = remote_of(body, server_id, "http://127.0.0.1", caller)?;
        let text = serde_json::to_string(&r).expect("serializes");
        let subscribe_id = crate::gat1400::text(&r.object, "SubscribeID").unwrap_or_default();
        let (id, owner) = (r.id.clone(), r.owner.clone());
        let added = on_meta!(self, "add a remote subscription", |m| m
            .add_remote_subscription(&id, &owner, &text, &subscribe_id))?;
        if !added {
            return Err(ApiError::internal(format!(
                "remote subscription id {id} is taken"
            )));
        }
        Ok(remote_json(&r, &RemoteStatus::default()))
    }

    /// `DELETE /v1/remote-subscriptions/{id}` (city-wide, checked by the caller):
    /// cancelled there from this node; forgotten when taken, else kept `cancelling`
    /// for whoever takes its lease next.
    pub(super) async fn delete_remote(&self, id: String) -> Result<Value, ApiError> {
        let rows = on_meta!(self, "read remote subscriptions", |m| m
            .remote_subscriptions())?;
        let Some(row) = rows.into_iter().find(|r| r.id == id) else {
            return Err(ApiError::NoSuchSubscription(id));
        };
        let mut r: RemoteSubscription = serde_json::from_str(&row.body_json).map_err(|e| {
            ApiError::internal(format!("remote subscription {id}'s stored body: {e}"))
        })?;
        // Fenced first: marked cancelling under a new epoch, so its holder (on any
        // node) stops placing it before the cancel goes out, and whoever takes it next
        // cancels it again if this cancel is not taken.
        r.cancelling = true;
        let text = serde_json::to_string(&r).expect("serializes");
        on_meta!(self, "cancel a remote subscription", |m| m
            .replace_remote_subscription(&id, &text))?;
        let cancelled = remote::cancel(outbound()?, &r).await;
        if cancelled.is_ok() {
            on_meta!(self, "delete a remote subscription", |m| m
                .delete_remote_subscription(&id))?;
        }
        Ok(json!({"deleted": id, "cancelled": cancelled.is_ok(),
                  "cancel_error": cancelled.err().map(|e| e.to_string())}))
    }
}

/// A remote subscription's lease held: its epoch, its worker, its status.
struct HeldRemote {
    epoch: i64,
    task: tokio::task::JoinHandle<()>,
    status: Arc<Mutex<RemoteStatus>>,
    renewed: std::time::Instant,
}

/// Starts the node's remote subscriptions' supervisor (until `stop` turns true; then
/// every lease it holds is released): every `index.renew_ms` it renews its leases
/// (writing each one's status), stops the workers of leases lost, and takes the free
/// ones, each with `serve`'s worker (`remote::keep_placed`).
pub(super) fn start(
    node: Arc<QueryNode>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let outbound = Outbound::new(None).map_err(|e| format!("outbound TLS: {e}"))?;
    let catalog = node.catalog.sibling();
    let holder = format!("{}-{:08x}", node.config.owner(), rand::random::<u32>());
    let (ttl, every) = (node.config.index.lease_ms, node.config.renew());
    Ok(tokio::spawn(async move {
        let mut held: HashMap<String, HeldRemote> = HashMap::new();
        loop {
            renew(&catalog, &mut held, ttl).await;
            take(&catalog, &outbound, &holder, &mut held, ttl).await;
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        for (id, h) in held.drain() {
            h.task.abort();
            let _ = h.task.await;
            let _ = pg!(catalog, "release a remote subscription", |m| m
                .release_remote_subscription(&id, h.epoch));
        }
    }))
}

async fn renew(catalog: &Catalog, held: &mut HashMap<String, HeldRemote>, ttl: u64) {
    let lease = Duration::from_millis(ttl);
    let mut gone = Vec::new();
    for (id, h) in held.iter_mut() {
        if h.task.is_finished() {
            // Cancelled and forgotten.
            gone.push(id.clone());
            continue;
        }
        // With the addresses its host resolved to before the last placing: where
        // ingest nodes take its notifications from (`gat1400.rs` `notifications`).
        let status = {
            let st = h.status.lock().expect("status");
            let mut v = serde_json::to_value(&*st).expect("serializes");
            let resolved: Vec<String> = st.resolved.iter().map(|ip| ip.to_string()).collect();
            v["resolved"] = resolved.into();
            v.to_string()
        };
        match pg!(catalog, "renew a remote subscription", |m| m
            .renew_remote_subscription(id, h.epoch, ttl, &status))
        {
            Ok(true) => h.renewed = std::time::Instant::now(),
            Ok(false) => gone.push(id.clone()),
            Err(e) if h.renewed.elapsed() >= lease => {
                tracing::warn!(remote_subscription = %id, error = %e, "a lease not renewed for a whole lease: its worker stops");
                gone.push(id.clone());
            }
            Err(_) => {}
        }
    }
    for id in gone {
        if let Some(h) = held.remove(&id) {
            h.task.abort();
            tracing::info!(remote_subscription = %id, "a remote subscription's lease is given up");
        }
    }
}

async fn take(
    catalog: &Catalog,
    outbound: &Outbound,
    holder: &str,
    held: &mut HashMap<String, HeldRemote>,
    ttl: u64,
) {
    let Ok(free) = pg!(catalog, "read free remote subscriptions", |m| m
        .free_remote_subscriptions())
    else {
        return;
    };
    for id in free {
        if held.contains_key(&id) {
            continue;
        }
        let lease = match pg!(catalog, "acquire a remote subscription", |m| m
            .acquire_remote_subscription(&id, holder, ttl))
        {
            Ok(Some(lease)) => lease,
            Ok(None) => continue,
            Err(_) => return,
        };
        let RemoteLease {
            epoch, body_json, ..
        } = lease;
        let r: RemoteSubscription = match serde_json::from_str(&body_json) {
            Ok(r) => r,
            Err(e) => {
                // Held idle (renewed, its error shown), as a subscription with a
                // broken body is: not taken again by every node every lease.
                tracing::error!(remote_subscription = %id, error = %e, "a stored remote subscription does not read");
                let status = Arc::new(Mutex::new(RemoteStatus {
                    last_error: Some(format!("its stored body does not read: {e}")),
                    ..RemoteStatus::default()
                }));
                let task = tokio::spawn(std::future::pending());
                let renewed = std::time::Instant::now();
                held.insert(
                    id,
                    HeldRemote {
                        epoch,
                        task,
                        status,
                        renewed,
                    },
                );
                continue;
            }
        };
        tracing::info!(remote_subscription = %id, epoch, "placing a remote subscription");
        let status = Arc::new(Mutex::new(RemoteStatus::default()));
        let (c, o, st, i) = (
            catalog.sibling(),
            outbound.clone(),
            status.clone(),
            id.clone(),
        );
        let fence_catalog = c.sibling();
        let fence_id = i.clone();
        let task = tokio::spawn(async move {
            let forget = || async move {
                let _ = pg!(c, "forget a remote subscription", |m| m
                    .forget_remote_subscription(&i, epoch));
            };
            // Placed only while the lease is still this epoch's (a delete on another
            // node fences it before cancelling there); PostgreSQL away: not now.
            // PostgreSQL away: asked again until it answers (the supervisor ends this
            // worker if the lease is not renewed meanwhile).
            let fence = || {
                let (c, id) = (&fence_catalog, &fence_id);
                async move {
                    loop {
                        match pg!(c, "check a remote subscription's lease", |m| m
                            .remote_subscription_held(id, epoch))
                        {
                            Ok(held) => return held,
                            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                        }
                    }
                }
            };
            remote::keep_placed(&o, &r, &st, forget, fence).await
        });
        held.insert(
            id,
            HeldRemote {
                epoch,
                task,
                status,
                renewed: std::time::Instant::now(),
            },
        );
    }
}
