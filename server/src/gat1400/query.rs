//! `GET /VIID/MotorVehicles|Faces|Persons|NonMotorVehicles` (GA/T 1400.4 query by
//! conditions) and `GET /VIID/<resource>/{id}` (one object): the objects a registered
//! caller's record covers (its community and those its relays map to), each as it
//! was uploaded (pictures by `StoragePath`), as a subscription delivers it. Every
//! query is audited (key `gat1400:<caller code>`, with how it was proven and from
//! which address), answered or refused.
//!
//! The conditions are read by [`super::conditions`]; the objects are selected by
//! [`sightline_query::objects`]; this file is the part between: scope, answer, audit.
//! The answer and its audit are written once, over an [`Objects`] source: `serve`'s
//! store ([`App`]) here, a cluster's partitions on an ingest node
//! (`crate::cluster::gat1400::queries`), so both answer alike by construction.

use std::collections::BTreeMap;

use hyper::StatusCode;
use serde_json::{json, Value};
use sightline_query::{objects, ObjectPage, ObjectQuery};

use super::conditions::{parse, BadCondition, Page};
use super::handlers::{device_error, Exchange, Reply};
use super::objects::{time_of_id, Upload};
use super::{one_status, INVALID_OPERATION};
use crate::error::ApiError;
use crate::http::out::EventOut;
use crate::subscriptions::deliver::{object_of, public_base, Pictures};
use crate::App;

/// How far from the time inside an object's id its capture time is looked for first
/// (an id's time is when the platform made it, seconds after the capture); not found
/// there, the whole store in scope is searched.
pub const ID_TIME_SLACK_MS: i64 = 86_400_000;

/// The resource a `/VIID` path names, and the id after it when it names one object.
pub(crate) fn resource_of(path: &str) -> Option<(Upload, Option<&str>)> {
    Upload::ALL.into_iter().find_map(|u| {
        let base = u.path();
        let rest = path.strip_prefix(base)?;
        match rest.strip_prefix('/') {
            None if rest.is_empty() => Some((u, None)),
            Some(id) if !id.is_empty() => Some((u, Some(id))),
            _ => None,
        }
    })
}

/// How an object query's caller proved who it is (its audit entry says so).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proof {
    /// A digest on the query (or checked from its headers before its body).
    Digest,
    /// A client certificate naming it (mTLS, `serve`'s `--tls-client-ca`).
    Certificate,
    /// Its registration: its `User-Identify` from the address that registered it,
    /// still online.
    Registration,
}

impl Proof {
    /// As the audit entry names it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Proof::Digest => "digest",
            Proof::Certificate => "certificate",
            Proof::Registration => "registration",
        }
    }
}

/// The caller of an object query: a platform's code, and how it was proven.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Querier {
    pub code: String,
    pub proof: Proof,
}

/// Where object queries are answered: the objects a caller's record covers, their
/// answers' objects as uploaded, and the audit log.
pub(crate) trait Objects {
    /// The field of a face or person object that names its subject.
    fn face_subject(&self) -> &str;
    /// How many objects `q` selects within the communities `caller`'s record covers,
    /// and the page's objects as uploaded (else built from their events), pictures
    /// by reference, in `q`'s order.
    fn select(
        &self,
        x: &Exchange,
        caller: &str,
        q: &ObjectQuery,
    ) -> Result<(u64, Vec<Value>), ApiError>;
    /// Where its queries are audited.
    fn audit(&self) -> &crate::audit::AuditLog;
}

impl Objects for App {
    fn face_subject(&self) -> &str {
        &self.config.gat1400_face_subject
    }

    fn select(
        &self,
        x: &Exchange,
        caller: &str,
        q: &ObjectQuery,
    ) -> Result<(u64, Vec<Value>), ApiError> {
        let found = select(self, caller, q)?;
        Ok((found.total, objects_of(self, x, &found)?))
    }

    fn audit(&self) -> &crate::audit::AuditLog {
        &self.audit
    }
}

/// `GET /VIID/<resource>?conditions`: `{"<List>":{"<Item>":[…],"TotalNum",
/// "RecordStartNo","PageRecordNum"}}`.
pub(crate) fn list(src: &dyn Objects, x: &Exchange, querier: &Querier) -> Reply {
    let caller = querier.code.as_str();
    let Some((upload, None)) = resource_of(&x.path) else {
        return not_found(x, "no such VIID resource");
    };
    let (reply, n) = match parse(upload, src.face_subject(), x.query.as_deref()) {
        Err(e) => (refused(x, &e), None),
        Ok((q, page)) => match answer_list(src, x, caller, upload, q, page) {
            Ok((v, n)) => (Reply::ok(v), Some(n)),
            Err(e) => (device_error(x, &e), None),
        },
    };
    audited(src, x, querier, reply, n)
}

/// `GET /VIID/<resource>/{id}`: `{"<Item>":{…}}`, or 404 with a status object.
pub(crate) fn one(src: &dyn Objects, x: &Exchange, querier: &Querier) -> Reply {
    let caller = querier.code.as_str();
    let Some((upload, Some(id))) = resource_of(&x.path) else {
        return not_found(x, "no such VIID resource");
    };
    let (reply, n) = match find_one(src, x, caller, upload, id) {
        Ok(Some(o)) => {
            let (_, item, _) = upload.names();
            (Reply::ok(json!({ item: o })), Some(1))
        }
        Ok(None) => (
            not_found(
                x,
                &format!(
                    "no {} {id} in this caller's communities",
                    upload.names().2[0]
                ),
            ),
            Some(0),
        ),
        Err(e) => (device_error(x, &e), None),
    };
    audited(src, x, querier, reply, n)
}

fn answer_list(
    src: &dyn Objects,
    x: &Exchange,
    caller: &str,
    upload: Upload,
    mut q: ObjectQuery,
    page: Page,
) -> Result<(Value, usize), ApiError> {
    // `MaxNumRecordReturn`: records past it are not answered (the page is cut).
    let cap = page.max_num_record_return;
    let allowed = cap.map_or(q.limit, |c| c.saturating_sub(q.skip).min(q.limit));
    // No more asked for than answered (on a cluster each is an object storage read).
    q.limit = allowed.max(1);
    let (found_total, mut items) = src.select(x, caller, &q)?;
    items.truncate(allowed);
    let n = items.len();
    let (list, item, _) = upload.names();
    let total = cap.map_or(found_total, |c| found_total.min(c as u64));
    Ok((
        json!({ list: { item: items, "TotalNum": total,
                        "RecordStartNo": page.record_start_no, "PageRecordNum": n } }),
        n,
    ))
}

/// The object with this id, looked for near the time its id holds, then everywhere.
fn find_one(
    src: &dyn Objects,
    x: &Exchange,
    caller: &str,
    upload: Upload,
    id: &str,
) -> Result<Option<Value>, ApiError> {
    let kind = sightline_storage::Kind::parse(upload.kind());
    let by_id = |from_ms: i64, to_ms: i64| ObjectQuery {
        kind,
        from_ms,
        to_ms,
        attrs: vec![("source_id".into(), vec![id.to_string()])],
        limit: 1,
        ..ObjectQuery::default()
    };
    let mut found = None;
    if let Some(t) = time_of_id(id) {
        found = Some(src.select(
            x,
            caller,
            &by_id(t - ID_TIME_SLACK_MS, t + ID_TIME_SLACK_MS),
        )?);
    }
    if found.as_ref().is_none_or(|(_, f)| f.is_empty()) {
        let (from_ms, to_ms) = super::conditions::ALL_TIME;
        found = Some(src.select(x, caller, &by_id(from_ms, to_ms))?);
    }
    Ok(found.and_then(|(_, f)| f.into_iter().next()))
}

/// The objects `q` selects within the communities `caller`'s record covers.
fn select(app: &App, caller: &str, q: &ObjectQuery) -> Result<ObjectPage, ApiError> {
    let _slot = object_query_slot(&app.gateway.object_queries)?;
    let scope = scope_of(app, caller)?;
    let ctx = crate::http::runner::query_ctx(app, Some(&scope));
    Ok(objects(&ctx, q)?)
}

/// One of a gateway's [`super::OBJECT_QUERIES`] object query slots (`running` counts
/// those taken), held until dropped; busy when all are taken.
pub(crate) fn object_query_slot(
    running: &std::sync::atomic::AtomicUsize,
) -> Result<impl Drop + '_, ApiError> {
    use std::sync::atomic::Ordering;
    if running.fetch_add(1, Ordering::AcqRel) >= super::OBJECT_QUERIES {
        running.fetch_sub(1, Ordering::AcqRel);
        return Err(ApiError::Busy("GA/T 1400 object queries"));
    }
    struct Slot<'a>(&'a std::sync::atomic::AtomicUsize);
    impl Drop for Slot<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::AcqRel);
        }
    }
    Ok(Slot(running))
}

/// The communities (dictionary ids, sorted) a caller's catalog record covers: its own
/// and, for a platform, those its relays map to; none when it has no record.
fn scope_of(app: &App, caller: &str) -> Result<Vec<u32>, ApiError> {
    let own = app.store.catalog().device(caller)?;
    let relays = match &own {
        Some(_) => super::relay::prefixes(&app.store, caller)?,
        None => BTreeMap::new(),
    };
    let covered = super::catalog::covered(own.as_ref(), &relays);
    let d = app.store.dictionaries();
    let mut ids: Vec<u32> = covered.iter().filter_map(|c| d.community_id(c)).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Each selected event's object as uploaded (else built from the event), pictures by
/// reference to this server.
fn objects_of(app: &App, x: &Exchange, found: &ObjectPage) -> Result<Vec<Value>, ApiError> {
    let base = public_base(app);
    let mut out = Vec::with_capacity(found.events.len());
    for (s, a) in found.events.iter().zip(&found.attrs_at) {
        let e = serde_json::to_value(EventOut::of(s, a))
            .map_err(|e| ApiError::internal(format!("an event does not serialize: {e}")))?;
        if let Some((_, _, o)) = object_of(app, &e, x.now_ms, Pictures::Reference, &base) {
            out.push(o);
        }
    }
    Ok(out)
}

/// 400 naming the condition refused: `StatusCode` 4 (invalid operation).
pub(crate) fn refused(x: &Exchange, e: &BadCondition) -> Reply {
    let s = one_status("", &x.url(), INVALID_OPERATION, &e.to_string(), x.now_ms);
    Reply::with(StatusCode::BAD_REQUEST, s)
}

fn not_found(x: &Exchange, why: &str) -> Reply {
    let s = one_status("", &x.url(), INVALID_OPERATION, why, x.now_ms);
    Reply::with(StatusCode::NOT_FOUND, s)
}

/// Writes the query's audit entry (who: `gat1400:<code>`; what: the path; its
/// params: how the caller was proven and from which address, `proof=digest|
/// certificate|registration&peer=<address>`, then `&` and the query string when it has
/// one, cut to the audit's bound; how many objects; the status); a log that cannot be
/// written answers 503, so nothing is read unaudited.
fn audited(
    src: &dyn Objects,
    x: &Exchange,
    querier: &Querier,
    reply: Reply,
    results: Option<usize>,
) -> Reply {
    // Ahead of the caller's own text, which cannot change it: a query string is
    // whatever the caller sent, and might say `proof=` too.
    let peer = x
        .peer
        .map_or_else(|| "unknown".to_string(), |p| p.to_string());
    let mut params = format!("proof={}&peer={peer}", querier.proof.as_str());
    if let Some(q) = x.query.as_deref().filter(|q| !q.is_empty()) {
        params.push('&');
        params.push_str(q);
    }
    let mut cut = crate::http::runner::AUDIT_PARAMS_BYTES.min(params.len());
    while !params.is_char_boundary(cut) {
        cut -= 1;
    }
    params.truncate(cut);
    let written = src.audit().record(
        x.now_ms,
        &format!("gat1400:{}", querier.code),
        &format!("GET {}", x.path),
        &params,
        results,
        reply.status.as_u16(),
    );
    match written {
        Ok(()) => reply,
        Err(e) => {
            tracing::error!(error = %e, "a GA/T 1400 query is not audited");
            device_error(x, &ApiError::AuditUnavailable(e.to_string()))
        }
    }
}
