//! `GET /v1/subscriptions`, `POST /v1/subscriptions` and `DELETE
//! /v1/subscriptions/{id}` on a query node, over the cluster's `subscriptions` table
//! (`sightline_cluster::subscriptions`), with `serve`'s checks, JSON, errors and scope
//! rules (`crate::subscriptions::handlers`): a subscription keeps its creator's
//! communities and never delivers more; a key lists and deletes only those its
//! communities cover (another's is 404 `no_such_subscription`, as if there were none).
//! Whichever query node holds a subscription's lease delivers it (`super::delivery`).
//!
//! Two differences from `serve`, both of the cluster's feed: an events
//! subscription's cursor (`from`, `status.cursor`) is a feed cursor, a position per
//! partition (`partition:seq.…`, the `next_after` of `GET /v1/feed`; `0`: the start);
//! an alerts subscription's is an alert id, as on `serve`. Absent `from` is now: the
//! partitions' heads (503 when one does not answer) or the last alert. `status.lag`
//! is `null` (it would cost a call to every partition per listing); `status.holder`
//! names the node delivering it.

use serde_json::{json, Value};
use sightline_cluster::subscriptions::{Added, SubscriptionRow};
use sightline_query::federated::{Call, Federation, FeedCursor};

use super::catalog::{on_meta, Catalog};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::json::object;
use crate::subscriptions::handlers::subscription_of;
use crate::subscriptions::Subscription;

/// Why a new subscription is refused past `query.max_subscriptions` (`total`) or
/// `query.max_subscriptions_per_owner`.
pub(crate) fn full_message(total: bool, max_total: usize, max_owned: usize) -> String {
    match total {
        true => format!("the cluster holds its limit of {max_total} subscriptions (query.max_subscriptions)"),
        false => format!("this owner holds its limit of {max_owned} subscriptions (query.max_subscriptions_per_owner)"),
    }
}

/// A stored subscription as `serve` has it.
pub(super) fn subscription_of_row(row: &SubscriptionRow) -> Result<Subscription, ApiError> {
    serde_json::from_str(&row.body_json)
        .map_err(|e| ApiError::internal(format!("subscription {}'s stored body: {e}", row.id)))
}

/// A subscription's cursor as its lister sees it: an events subscription confined to
/// communities shows only the positions of their partitions (the others' heads are
/// no business of a key that cannot read them; left out, as a position at 0 is).
pub(super) fn visible_cursor(s: &Subscription, cursor: &str, partitions: u16) -> String {
    let Some(scope) = s.scope.as_deref().filter(|_| !s.alerts) else {
        return cursor.to_string();
    };
    let Ok(mut c) = FeedCursor::parse(cursor, partitions) else {
        return cursor.to_string();
    };
    let seen: std::collections::BTreeSet<usize> = scope
        .iter()
        .map(|community| {
            sightline_cluster::partition::partition_of(community, u32::from(partitions)) as usize
        })
        .collect();
    for (p, seq) in c.0.iter_mut().enumerate() {
        if !seen.contains(&p) {
            *seq = 0;
        }
    }
    c.to_string()
}

/// A subscription with its delivery status, as listed and created.
fn listed_json(s: &Subscription, row: &SubscriptionRow, partitions: u16) -> Value {
    let mut v = serde_json::to_value(s).expect("serializes");
    let st = &row.status;
    v["status"] = json!({
        "cursor": visible_cursor(s, &row.cursor, partitions),
        "delivered": st.delivered,
        "failures_in_a_row": st.failures_in_a_row,
        "failures_total": st.failures_total,
        "last_error": st.last_error,
        "last_success_ms": st.last_success_ms,
        "refused": st.refused,
        "last_refusal": st.last_refusal,
        "stopped": st.stopped,
        "lag": null,
        "holder": row.holder,
    });
    if st.last_refusal.is_none() {
        // As `serve` writes it: absent rather than null.
        if let Some(o) = v["status"].as_object_mut() {
            o.remove("last_refusal");
        }
    }
    v
}

/// Every partition's head: the feed cursor of "now" (fails when a partition does not
/// answer: a subscription must not start past events it never saw, nor from the
/// start of one by accident).
pub(super) async fn heads(
    federation: Federation<'static>,
    partitions: u16,
    within: std::time::Duration,
) -> Result<FeedCursor, ApiError> {
    let task = tokio::task::spawn_blocking(move || {
        let call = Call {
            scope: None,
            deadline: Some(std::time::Instant::now() + within),
        };
        federation.stats(&call)
    });
    let each = match tokio::time::timeout(within + std::time::Duration::from_secs(1), task).await {
        Err(_) => return Err(ApiError::QueryTimeout(Some(within))),
        Ok(joined) => joined
            .map_err(|e| ApiError::internal(format!("reading the partitions' heads: {e}")))??,
    };
    let mut cursor = FeedCursor::start(partitions);
    for (p, stats) in each {
        if let Some(slot) = cursor.0.get_mut(usize::from(p)) {
            *slot = stats.applied_through;
        }
    }
    Ok(cursor)
}

/// Where a new subscription starts: `from` as given (checked), else now.
pub(super) async fn start_of(
    catalog: &Catalog,
    alerts: bool,
    from: Option<&Value>,
    partitions: u16,
    now: impl std::future::Future<Output = Result<FeedCursor, ApiError>>,
) -> Result<String, ApiError> {
    match (alerts, from) {
        (true, None | Some(Value::Null)) => {
            Ok(on_meta!(catalog, "read the last alert id", |m| m.last_alert_id())?.to_string())
        }
        (true, Some(v)) => v
            .as_u64()
            .map(|id| id.to_string())
            .ok_or_else(|| ApiError::param("from", "an alert id (0: from the first)")),
        (false, None | Some(Value::Null)) => Ok(now.await?.to_string()),
        (false, Some(v)) => {
            let text = match v {
                Value::Number(n) if n.as_u64() == Some(0) => "0".to_string(),
                Value::String(s) => s.clone(),
                _ => return Err(ApiError::param(
                    "from",
                    "a cluster feed cursor (the `next_after` of GET /v1/feed; 0: from the start)",
                )),
            };
            let cursor =
                FeedCursor::parse(&text, partitions).map_err(|why| ApiError::param("from", why))?;
            Ok(cursor.to_string())
        }
    }
}

impl Catalog {
    /// `GET /v1/subscriptions`: those `caller` covers (upstreams are not made here).
    pub(super) async fn list_subscriptions(
        &self,
        caller: &Caller,
        partitions: u16,
    ) -> Result<(crate::http::Body, usize), ApiError> {
        let rows = on_meta!(self, "read subscriptions", |m| m.subscriptions())?;
        let mut items = Vec::new();
        for row in &rows {
            let s = subscription_of_row(row)?;
            if s.upstream.is_none() && caller.covers(s.scope.as_deref()) {
                items.push(listed_json(&s, row, partitions));
            }
        }
        Ok(crate::http::out::listed("subscriptions", items))
    }

    /// `POST /v1/subscriptions` with `body` (`serve`'s fields; `from` as the module
    /// says); its first worker starts within a lease renewal on some query node.
    pub(super) async fn create_subscription(
        &self,
        caller: &Caller,
        body: &[u8],
        partitions: u16,
        (max_total, max_owned): (usize, usize),
        now: impl std::future::Future<Output = Result<FeedCursor, ApiError>>,
    ) -> Result<Value, ApiError> {
        let o = object(body)?;
        let s = subscription_of(&o, caller)?;
        let cursor = start_of(self, s.alerts, o.get("from"), partitions, now).await?;
        let text = serde_json::to_string(&s).expect("serializes");
        let (id, owner) = (s.id.clone(), s.owner.clone());
        let added = on_meta!(self, "add a subscription", |m| m
            .add_subscription(&id, &owner, &text, &cursor, max_total, max_owned))?;
        match added {
            Added::Added => {}
            Added::Full { total } => {
                return Err(ApiError::TooManySubscriptions(full_message(
                    total, max_total, max_owned,
                )))
            }
            // Ids are random: a clash is a bug's or a tampered catalog's.
            Added::Exists => {
                return Err(ApiError::internal(format!("subscription id {id} is taken")))
            }
        }
        let row = on_meta!(self, "read a subscription", |m| m.subscription(&id))?
            .ok_or_else(|| ApiError::NoSuchSubscription(id.clone()))?;
        Ok(listed_json(&s, &row, partitions))
    }

    /// `DELETE /v1/subscriptions/{id}`: one `caller` does not cover is, to it, none.
    pub(super) async fn delete_subscription(
        &self,
        caller: &Caller,
        id: String,
    ) -> Result<Value, ApiError> {
        let row = on_meta!(self, "read a subscription", |m| m.subscription(&id))?;
        let covered = match &row {
            Some(row) => {
                let s = subscription_of_row(row)?;
                s.upstream.is_none() && caller.covers(s.scope.as_deref())
            }
            None => false,
        };
        if !covered
            || !on_meta!(self, "delete a subscription", |m| m
                .delete_subscription(&id))?
        {
            return Err(ApiError::NoSuchSubscription(id));
        }
        Ok(json!({ "deleted": id }))
    }
}
