//! `/VIID/Subscribes` on an ingest node (GA/T 1400.4 §"订阅"), answered as `serve`
//! answers it (`crate::gat1400::subscribes`: the same reading of a `SubscribeObject`,
//! the same statuses), writing the cluster's `subscriptions` rows that the query nodes
//! deliver (`crate::cluster::delivery`):
//!
//! * `POST`/`PUT /VIID/Subscribes` (`SubscribeListObject`): each object creates,
//!   replaces (its cursor kept) or, with `OperateType` 1, cancels the caller's
//!   subscription `viid-{SubscribeID}`, confined to the communities the caller's
//!   record covers (its device's, and those it relays into, as this node last read
//!   them); one status per object. A new one starts now: the partitions' heads, asked
//!   of them (an ingest node reaches the partitions as a query node does, through a
//!   directory of their owners made on the first subscription; a partition that does
//!   not answer refuses the object with status 3, rather than start it anywhere
//!   else).
//! * `PUT /VIID/Subscribes/{id}` cancels the caller's own (kept, listed with
//!   `SubscribeStatus` 1, in `cancelled_subscribes`); `DELETE /VIID/Subscribes?IDList=
//!   a,b` and `DELETE /VIID/Subscribes/{id}` delete them; one status per id.
//! * `GET /VIID/Subscribes`: the caller's that the conditions keep, as a
//!   `SubscribeListObject` (as `serve`'s).
//!
//! A new subscription is refused with status 2 past `query.max_subscriptions` or
//! `query.max_subscriptions_per_owner`, and with status 3 while this node has not read
//! the caller's device (or it covers no community); a change replaces the body of the
//! caller's row only (`UPDATE … WHERE id AND owner`: the cursor kept; cancelled
//! meanwhile, status 1), a cancel deletes the caller's row only.
//!
//! Admitted as the node's other requests of a registered caller (slots, the
//! caller's share, proven before the body), bodies of at most [`MAX_BODY_BYTES`].
//! Another platform's `SubscribeID` is refused as on `serve`.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::Request;
use serde_json::Value;

use super::{admit_platform, managing, GatNode};
use crate::error::ApiError;
use crate::gat1400::conditions::{records, BadCondition, RecordQuery, SUBSCRIBE_ATTRIBUTES};
use crate::gat1400::handlers::{device_error, items_of_list, Exchange, Reply};
use crate::gat1400::subscribes::{
    cancelled_object, listed, requested, subscription_id, SubscribeError, Subscriber,
    MAX_CANCELLED_KEPT,
};
use crate::gat1400::{status_list, status_object, INVALID_JSON_CONTENT, OK};
use crate::subscriptions::Subscription;
use sightline_cluster::subscriptions::Added;

/// Tries of a cancel whose subscription keeps changing under it (then 429).
const CANCEL_TRIES: usize = 5;

/// Largest `/VIID/Subscribes` body (a list of subscriptions, not of objects).
pub(super) const MAX_BODY_BYTES: usize = 1 << 20;

impl GatNode {
    /// The subscription `id` as stored, if any.
    async fn stored_subscription(&self, id: &str) -> Result<Option<Subscription>, ApiError> {
        Ok(self.stored_row(id).await?.map(|(s, _)| s))
    }

    /// The subscription `id` as stored, with its body as the row holds it (to change
    /// the row only while it still holds that body), if any.
    async fn stored_row(&self, id: &str) -> Result<Option<(Subscription, String)>, ApiError> {
        let i = id.to_string();
        let row = self
            .write("read a subscription", move |m| {
                Box::pin(async move { m.subscription(&i).await })
            })
            .await?;
        row.map(|r| {
            serde_json::from_str(&r.body_json)
                .map(|s| (s, r.body_json.clone()))
                .map_err(|e| {
                    ApiError::internal(format!("subscription {}'s stored body: {e}", r.id))
                })
        })
        .transpose()
    }

    /// Every partition's head (the feed cursor of now), asked of the partitions.
    async fn heads(&self) -> Result<String, ApiError> {
        let (partitions, federation) = (self.partitions, self.federation().await);
        let within = std::time::Duration::from_millis(self.config.query.timeout_ms);
        let cursor = crate::cluster::subscriptions::heads(federation, partitions, within).await?;
        Ok(cursor.to_string())
    }

    /// Creates, replaces or cancels one subscription of `platform` (as `serve`'s
    /// `subscribes::apply`); its `SubscribeID`.
    async fn apply(&self, platform: &str, o: &Value) -> Result<String, SubscribeError> {
        let id = crate::gat1400::text(o, "SubscribeID").ok_or(SubscribeError::NoId)?;
        let sub_id = subscription_id(&id);
        let existing = self.stored_subscription(&sub_id).await?;
        if existing.as_ref().is_some_and(|s| s.owner != platform) {
            return Err(SubscribeError::NotYours(id));
        }
        // An upper platform our upstream is registered with (no record here): confined
        // to the communities its upstream reads (`None`: every one), its
        // notifications sent as our id there (as on `serve`).
        let upper = self.directory.upper_named(platform);
        let mut scope = match &upper {
            Some(u) => u.scope.clone(),
            None => Some(self.directory.uploader(platform).communities),
        };
        if let Some(scope) = &mut scope {
            scope.sort();
            scope.dedup();
        }
        let cancelled = crate::gat1400::text(o, "OperateType").as_deref() == Some("1");
        if scope.as_ref().is_some_and(Vec::is_empty) && !cancelled {
            // Its device not read yet (or of no community): it would deliver nothing.
            return Err(SubscribeError::Store(ApiError::StorageUnavailable(format!(
                "platform {platform}'s device is not known to this node yet (or covers no community): try again"
            ))));
        }
        let subscriber = || {
            Ok(Subscriber {
                scope,
                via_upstream: upper.as_ref().map(|u| u.id.clone()),
                identify: upper.map(|u| u.device_id),
            })
        };
        let server_id = &self.config.ingest.viid_server_id;
        // A change is merged onto the object stored (as `serve`).
        let stored = existing
            .as_ref()
            .and_then(|e| e.viid.as_ref())
            .map(|v| &v.object);
        let Some(s) = requested(o, platform, server_id, stored, subscriber)? else {
            // Cancelling one that is not there (as `serve`: 1, 不存在订阅ID).
            return match self.cancel(platform, &id, Some(o)).await? {
                true => Ok(id),
                false => Err(SubscribeError::NoSuch(id)),
            };
        };
        // Where it may make us send, as `serve` judges it (`http::egress`); the query
        // nodes judge each connection again.
        if let Some(why) = self.receive.url_refusal(&s.url) {
            return Err(SubscribeError::ReceiveRefused(s.url, why));
        }
        let body = serde_json::to_string(&s).expect("serializes");
        let (i, owner) = (sub_id, platform.to_string());
        if existing.is_some() {
            // A change keeps the cursor: the row's body alone is replaced, and only
            // while it is still the caller's (cancelled meanwhile: none).
            let changed = self
                .write("change a subscription", move |m| {
                    Box::pin(async move { m.change_subscription(&i, &owner, &body).await })
                })
                .await?;
            return match changed {
                true => Ok(id),
                false => Err(SubscribeError::NoSuch(id)),
            };
        }

        // Only a new one asks for now.
        let cursor = self.heads().await?;
        let q = &self.config.query;
        let (max_total, max_owned) = (q.max_subscriptions, q.max_subscriptions_per_owner);
        let added = self
            .write("add a subscription", move |m| {
                Box::pin(async move {
                    m.add_subscription(&i, &owner, &body, &cursor, max_total, max_owned)
                        .await
                })
            })
            .await?;
        match added {
            Added::Added => {
                // Subscribed again: no longer listed as cancelled.
                let (i, p) = (subscription_id(&id), platform.to_string());
                self.write("forget a cancelled subscription", move |m| {
                    Box::pin(async move { m.forget_cancelled_subscribe(&i, &p).await })
                })
                .await?;
                Ok(id)
            }
            // Made since it was read (by this platform or another).
            Added::Exists => Err(SubscribeError::NotYours(id)),
            Added::Full { total } => Err(SubscribeError::Store(ApiError::TooManySubscriptions(
                crate::cluster::subscriptions::full_message(total, max_total, max_owned),
            ))),
        }
    }

    /// Cancels `platform`'s subscription `id` (as `serve`'s `subscribes::cancel`: its
    /// row gone, its object kept to list with `SubscribeStatus` 1 and the cancel's
    /// fields `given` names), in one statement that takes effect only while the row
    /// holds the body read (a change or a re-creation in between: read again, at most
    /// [`CANCEL_TRIES`] times, then 429). True when it was in force or already
    /// cancelled; false when the platform has none by that id.
    async fn cancel(
        &self,
        platform: &str,
        id: &str,
        given: Option<&Value>,
    ) -> Result<bool, SubscribeError> {
        let sub_id = subscription_id(id);
        for _ in 0..CANCEL_TRIES {
            let Some((s, body)) = self.stored_row(&sub_id).await? else {
                let (i, p) = (sub_id.clone(), platform.to_string());
                return Ok(self
                    .write("read a cancelled subscription", move |m| {
                        Box::pin(async move { m.cancelled_subscribe_exists(&i, &p).await })
                    })
                    .await?);
            };
            if s.owner != platform {
                return Err(SubscribeError::NotYours(id.to_string()));
            }
            let stored = s.viid.map(|v| v.object).unwrap_or_default();
            let object = cancelled_object(id, &stored, given, crate::now_ms()).to_string();
            let (i, p) = (sub_id.clone(), platform.to_string());
            let keep = MAX_CANCELLED_KEPT as i64;
            let done = self
                .write("cancel a subscription", move |m| {
                    Box::pin(
                        async move { m.cancel_subscription_of(&i, &p, &body, &object, keep).await },
                    )
                })
                .await?;
            if done {
                return Ok(true);
            }
        }
        Err(SubscribeError::Store(ApiError::Busy(
            "the subscription's row (it kept changing while it was cancelled)",
        )))
    }

    /// Deletes `platform`'s subscription `id` (as `serve`'s `subscribes::delete`):
    /// stopped if in force, and no longer listed. False when it has none by that id.
    async fn delete(&self, platform: &str, id: &str) -> Result<bool, SubscribeError> {
        let sub_id = subscription_id(id);
        let running = match self.stored_subscription(&sub_id).await? {
            Some(s) if s.owner != platform => return Err(SubscribeError::NotYours(id.to_string())),
            Some(_) => {
                let p = platform.to_string();
                self.write("delete a subscription", move |m| {
                    Box::pin(async move { m.delete_subscription_of(&sub_id, &p).await })
                })
                .await?
            }
            None => false,
        };
        let (i, p) = (subscription_id(id), platform.to_string());
        let forgot = self
            .write("forget a cancelled subscription", move |m| {
                Box::pin(async move { m.forget_cancelled_subscribe(&i, &p).await })
            })
            .await?;
        Ok(running || forgot)
    }

    /// `platform`'s subscriptions the conditions `q` keep, as a `SubscribeListObject`
    /// (as `serve`'s: in force and cancelled).
    async fn listed(
        &self,
        platform: &str,
        q: &RecordQuery,
    ) -> Result<Result<Value, BadCondition>, ApiError> {
        let rows = self
            .write("read subscriptions", |m| {
                Box::pin(async move { m.subscriptions().await })
            })
            .await?;
        let all: Vec<Subscription> = rows
            .iter()
            .filter_map(|r| serde_json::from_str(&r.body_json).ok())
            .collect();
        let p = platform.to_string();
        let cancelled = self
            .write("read cancelled subscriptions", move |m| {
                Box::pin(async move { m.cancelled_subscribes(&p).await })
            })
            .await?
            .iter()
            .filter_map(|o| serde_json::from_str(o).ok())
            .collect();
        Ok(listed(all, cancelled, platform, crate::now_ms(), q))
    }
}

/// Whether `method` on `path` is one of these (else the gateway's 404 or 405).
pub(super) fn takes(method: &str, path: &str) -> bool {
    match path {
        "/VIID/Subscribes" => matches!(method, "GET" | "POST" | "PUT" | "DELETE"),
        p => one_path(p) && matches!(method, "PUT" | "DELETE"),
    }
}

/// Whether `path` is `/VIID/Subscribes/{id}`.
fn one_path(path: &str) -> bool {
    path.strip_prefix("/VIID/Subscribes/")
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// Answers `method` on a `/VIID/Subscribes` path.
pub(super) async fn handle(node: &GatNode, req: Request<Incoming>, mut x: Exchange) -> Reply {
    let one = one_id(&x);
    let method = x.method.clone();
    let (_admitted, platform) = match admit_platform(node, req, &mut x, MAX_BODY_BYTES).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal,
    };
    if method != "GET" {
        if let Err(refused) = managing(node, &x, &platform) {
            return refused;
        }
    }
    let x = Arc::new(x);
    let status =
        |id: &str, code: i64, text: &str| status_object(id, &x.url(), code, text, x.now_ms);
    match (method.as_str(), one.clone()) {
        ("GET", None) => {
            let q = records(
                "Subscribe",
                SUBSCRIBE_ATTRIBUTES,
                x.query.as_deref().filter(|q| !q.is_empty()),
            );
            match q {
                Err(e) => crate::gat1400::query::refused(&x, &e),
                Ok(q) => match node.listed(&platform, &q).await {
                    Ok(Ok(list)) => Reply::ok(list),
                    Ok(Err(costly)) => crate::gat1400::query::refused(&x, &costly),
                    Err(e) => device_error(&x, &e),
                },
            }
        }
        ("POST" | "PUT", None) => {
            let items = match items_of_list(&x, "SubscribeListObject", "SubscribeObject") {
                Ok(items) => items,
                Err(refused) => return refused,
            };
            let mut statuses = Vec::with_capacity(items.len());
            for o in &items {
                statuses.push(match node.apply(&platform, o).await {
                    Ok(id) => status(&id, OK, "正常"),
                    Err(why) => {
                        let id = o["SubscribeID"].as_str().unwrap_or("");
                        let code = match &why {
                            SubscribeError::Store(ApiError::TooManySubscriptions(_)) => {
                                crate::gat1400::BUSY
                            }
                            why => why.code(),
                        };
                        status(id, code, &why.to_string())
                    }
                });
            }
            Reply::ok(status_list(statuses))
        }
        ("DELETE", None) | ("PUT" | "DELETE", Some(_)) => {
            let ids = match ids_of(&x, one) {
                Ok(ids) => ids,
                Err(refused) => return refused,
            };
            let mut statuses = Vec::with_capacity(ids.len());
            let cancels = method == "PUT";
            let given = crate::gat1400::subscribes::cancel_body(&x.body);
            for id in &ids {
                let done = match cancels {
                    true => node.cancel(&platform, id, given.as_ref()).await,
                    false => node.delete(&platform, id).await,
                };
                let (code, text) = match done {
                    Ok(true) => (OK, "正常".to_string()),
                    Ok(false) => {
                        let why = SubscribeError::NoSuch(id.clone());
                        (why.code(), why.to_string())
                    }
                    Err(e) => (e.code(), e.to_string()),
                };
                statuses.push(status(id, code, &text));
            }
            Reply::ok(status_list(statuses))
        }
        _ => {
            let allow = allowed(&x.path).unwrap_or("nothing");
            let why = format!("{} takes {allow}, not {method}", x.path);
            let s = crate::gat1400::one_status(
                "",
                &x.url(),
                crate::gat1400::INVALID_OPERATION,
                &why,
                x.now_ms,
            );
            Reply::with(hyper::StatusCode::METHOD_NOT_ALLOWED, s)
        }
    }
}

/// The ids a cancel or revoke names: the path's (`one`), else `IDList`'s; or the
/// answer refusing a request that names none (as `serve`'s).
pub(super) fn ids_of(x: &Exchange, one: Option<String>) -> Result<Vec<String>, Reply> {
    let ids: Vec<String> = match one {
        Some(id) => vec![id],
        None => crate::params::Params::parse(x.query.as_deref())
            .list("IDList")
            .unwrap_or_default(),
    };
    if ids.is_empty() {
        let s = status_object(
            "",
            &x.url(),
            INVALID_JSON_CONTENT,
            "IDList is missing",
            x.now_ms,
        );
        return Err(Reply::ok(status_list(vec![s])));
    }
    Ok(ids)
}

/// The id a `/VIID/Subscribes/{id}` path names.
fn one_id(x: &Exchange) -> Option<String> {
    x.path
        .strip_prefix("/VIID/Subscribes/")
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .map(str::to_string)
}

/// The methods a `/VIID/Subscribes` path takes, when it is one.
pub(super) fn allowed(path: &str) -> Option<&'static str> {
    match path {
        "/VIID/Subscribes" => Some("GET, POST, PUT, DELETE"),
        p if one_path(p) => Some("PUT, DELETE"),
        _ => None,
    }
}
