//! `/VIID/Dispositions` on an ingest node (布控), answered as `serve` answers it
//! (`crate::gat1400::dispositions`: the same reading of a `DispositionObject`, the
//! same statuses): a disposition is a row of the cluster's `watchlists` table (its id
//! the `DispositionID`, scoped to the communities the caller's record covers, as this
//! node last read them; bounded per community as a query node bounds a list) and,
//! with a `ReceiveAddr`, an alerts subscription `disposition-{id}` of the
//! `subscriptions` table, which a query node delivers as
//! `DispositionNotificationListObject`s (`crate::cluster::delivery`) from the last
//! alert at its making. The ingest nodes' matchers take a new list up within
//! `index.renew_ms` (`super::super::alerting`).
//!
//! * `POST`/`PUT /VIID/Dispositions` (`DispositionListObject`): one status per
//!   object; `OperateType` 1 revokes.
//! * `DELETE /VIID/Dispositions?IDList=a,b`, `PUT`/`DELETE /VIID/Dispositions/{id}`:
//!   revokes (the list and its notifications); one status per id.
//!
//! A disposition is its platform's (`watchlists.disposer`): a put or revoke of a
//! `DispositionID` that is another platform's disposition, or a `/v1` watchlist's id,
//! is refused with status 4 (`DispositionError::NotYours`), as on `serve`.
//!
//! Admitted as `/VIID/Subscribes` is (`super::subscribes`).

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::Request;
use serde_json::Value;

use super::subscribes::{ids_of, MAX_BODY_BYTES};
use super::{admit, managing, GatNode};
use crate::error::ApiError;
use crate::gat1400::dispositions::{requested, subscription_id, Asked, DispositionError};
use crate::gat1400::handlers::{items_of_list, Exchange, Reply};
use crate::gat1400::{status_list, status_object, DEVICE_ERROR, OK};

const PATH: &str = "/VIID/Dispositions";

impl GatNode {
    /// Creates or replaces one disposition of `platform` (`OperateType` 1 revokes
    /// it); its id. A `DispositionID` that is another platform's disposition, or a
    /// `/v1` watchlist, is refused.
    async fn dispose(&self, platform: &str, o: &Value) -> Result<String, DispositionError> {
        let scope = self.directory.uploader(platform).communities;
        let scope = || {
            let mut scope = scope;
            scope.sort();
            scope.dedup();
            Ok(scope)
        };
        let (w, pushed) = match requested(o, platform, scope)? {
            Asked::Revoke(id) => {
                return match self.revoke(platform, &id).await? {
                    Some(_) => Ok(id),
                    None => Err(DispositionError::NotYours(id)),
                };
            }
            Asked::Put(w, pushed) => (w, pushed),
        };
        if let Some(s) = &pushed {
            // Where it may make us send, as `serve` judges it (`http::egress`).
            if let Some(why) = self.receive.url_refusal(&s.url) {
                return Err(DispositionError::ReceiveRefused(s.url.clone(), why));
            }
        }
        let rows = self
            .write("read watchlists", |m| {
                Box::pin(async move { m.watchlists().await })
            })
            .await?;
        let lists = rows
            .into_iter()
            .filter(|r| r.id != w.id)
            .filter_map(|r| crate::cluster::watchlists::watchlist_of_row(r).ok())
            .collect();
        crate::watchlists::room_for(lists, &w, crate::watchlists::Room::DEFAULT)?;
        let row = crate::cluster::watchlists::row_of(&w);
        let p = platform.to_string();
        let ours = self
            .write("put a disposition", move |m| {
                Box::pin(async move { m.put_disposition(&row, &p).await })
            })
            .await?;
        if !ours {
            return Err(DispositionError::NotYours(w.id));
        }
        // Its notifications start now: the alerts from here on (as on `serve`, a
        // replaced disposition's subscription is made again).
        let sub_id = subscription_id(&w.id);
        let (i, p) = (sub_id.clone(), platform.to_string());
        self.write("delete a subscription", move |m| {
            Box::pin(async move { m.delete_subscription_of(&i, &p).await })
        })
        .await?;
        if let Some(s) = pushed {
            let body = serde_json::to_string(&s).expect("serializes");
            let owner = s.owner.clone();
            let written = self
                .write("put a subscription", move |m| {
                    Box::pin(async move {
                        let cursor = m.last_alert_id().await?.to_string();
                        m.put_subscription(&sub_id, &owner, &body, &cursor).await
                    })
                })
                .await?;
            if !written {
                return Err(DispositionError::NotYours(w.id));
            }
        }
        Ok(w.id)
    }

    /// Revokes `platform`'s disposition `id`: its list and its notifications;
    /// `Some(false)` when there was neither, `None` when either is another's.
    async fn revoke(&self, platform: &str, id: &str) -> Result<Option<bool>, ApiError> {
        let (sub_id, list, p) = (subscription_id(id), id.to_string(), platform.to_string());
        self.write("revoke a disposition", move |m| {
            Box::pin(async move { m.revoke_disposition(&list, &sub_id, &p).await })
        })
        .await
    }
}

/// Whether `method` on `path` is one of these (else the gateway's 404 or 405).
pub(super) fn takes(method: &str, path: &str) -> bool {
    match path {
        PATH => matches!(method, "POST" | "PUT" | "DELETE"),
        p => one_path(p) && matches!(method, "PUT" | "DELETE"),
    }
}

/// Whether `path` is `/VIID/Dispositions/{id}`.
fn one_path(path: &str) -> bool {
    one_id(path).is_some()
}

fn one_id(path: &str) -> Option<String> {
    path.strip_prefix("/VIID/Dispositions/")
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .map(str::to_string)
}

/// The methods a `/VIID/Dispositions` path takes, when it is one.
pub(super) fn allowed(path: &str) -> Option<&'static str> {
    match path {
        PATH => Some("POST, PUT, DELETE"),
        p if one_path(p) => Some("PUT, DELETE"),
        _ => None,
    }
}

/// Answers a `/VIID/Dispositions` request ([`takes`] it).
pub(super) async fn handle(node: &GatNode, req: Request<Incoming>, mut x: Exchange) -> Reply {
    let one = one_id(&x.path);
    let method = x.method.clone();
    let (_admitted, platform) = match admit(node, req, &mut x, MAX_BODY_BYTES).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal,
    };
    if let Err(refused) = managing(node, &x, &platform) {
        return refused;
    }
    let x = Arc::new(x);
    let status =
        |id: &str, code: i64, text: &str| status_object(id, &x.url(), code, text, x.now_ms);
    if matches!(method.as_str(), "POST" | "PUT") && one.is_none() {
        let items = match items_of_list(&x, "DispositionListObject", "DispositionObject") {
            Ok(items) => items,
            Err(refused) => return refused,
        };
        let mut statuses = Vec::with_capacity(items.len());
        for o in &items {
            statuses.push(match node.dispose(&platform, o).await {
                Ok(id) => status(&id, OK, "正常"),
                Err(why) => {
                    let id = o["DispositionID"].as_str().unwrap_or("");
                    status(id, why.code(), &why.to_string())
                }
            });
        }
        return Reply::ok(status_list(statuses));
    }
    let ids = match ids_of(&x, one) {
        Ok(ids) => ids,
        Err(refused) => return refused,
    };
    let mut statuses = Vec::with_capacity(ids.len());
    for id in &ids {
        let (code, text) = match node.revoke(&platform, id).await {
            Ok(Some(true)) => (OK, "正常".to_string()),
            Ok(Some(false)) => {
                let why = DispositionError::NoSuch(id.clone());
                (why.code(), why.to_string())
            }
            Ok(None) => {
                let why = DispositionError::NotYours(id.clone());
                (why.code(), why.to_string())
            }
            Err(e) => (DEVICE_ERROR, e.to_string()),
        };
        statuses.push(status(id, code, &text));
    }
    Reply::ok(status_list(statuses))
}
