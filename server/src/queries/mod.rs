//! The investigative query endpoints: parse and check parameters, call the query
//! (`sightline_query`), write the answer. Every one runs through [`answer`] (or, for
//! collision's body and trajectory's stream, the same runner): on the connection's
//! thread after its other tasks were handed on (a stream: on the blocking pool), in the
//! caller's scope, audited answered or not.

pub(crate) mod patterns;
pub(crate) mod trajectory;

use serde_json::{json, Value};
use sightline_query::{
    collision as collide, cooccurrence as cooccur, event_by_id, search as find, Candidate,
    Collision, CollisionHit, Condition, Cooccurrence, Place, QueryContext, Scope, SearchMode,
    SearchQuery, SubjectMatch,
};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::json::{known_fields, object, strings};
use crate::http::out::{listed, serialized, EventOut};
use crate::http::runner::{audited, audited_get};
use crate::http::{Answer, Body, Call};
use crate::params::{parse_kind, parse_time, rfc3339, Param, Params};
use crate::App;

/// A GET query: its answer and how many results it holds (for the audit).
pub(crate) type QueryFn = fn(&App, &QueryContext<'_>, &Params) -> Result<(Body, usize), ApiError>;

/// Runs a GET query, audited: unknown parameters (not in `accepted`) are refused
/// inside the audited run, so the refusal is on the record too.
pub(crate) async fn answer(
    c: Call,
    accepted: &'static [Param],
    f: QueryFn,
) -> Result<Answer, ApiError> {
    audited_get(c, move |app, ctx, params| {
        params.only_these(accepted)?;
        f(app, ctx, params)
    })
    .await
}

pub(crate) fn range(p: &Params) -> Result<(i64, i64), ApiError> {
    Ok((p.time("from")?, p.time("to")?))
}

/// `GET /v1/events/{id}`: one event, as trajectory returns events. An id the caller's
/// scope does not cover is answered like an unknown one (404), so ids reveal nothing.
pub(crate) async fn event(c: Call) -> Result<Answer, ApiError> {
    let id = c.arg();
    audited_get(c, move |_, ctx, params| {
        params.only(&[])?;
        let seq = event_id(&id)?;
        let (s, a) = event_by_id(ctx, seq)?.ok_or(ApiError::NoSuchEvent(seq))?;
        serialized(&EventOut::of(&s, &a), 1)
    })
    .await
}

/// An event id of a path (also the cluster's query role's).
pub(crate) fn event_id(id: &str) -> Result<u64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::param("id", format!("{id:?} is not an event id (a number)")))
}

/// `GET /v1/cooccurrence`.
pub(crate) fn cooccurrence(
    app: &App,
    ctx: &QueryContext<'_>,
    p: &Params,
) -> Result<(Body, usize), ApiError> {
    let q = cooccurrence_query(p, app.config.max_result_rows)?;
    Ok(candidates_answer(&cooccur(ctx, &q)?))
}

/// The co-occurrence query of the parameters (also the cluster's query role's).
pub(crate) fn cooccurrence_query(p: &Params, max_rows: usize) -> Result<Cooccurrence, ApiError> {
    let (from_ms, to_ms) = range(p)?;
    let scope = p.choice(
        "scope",
        "device",
        &[("device", Scope::Device), ("community", Scope::Community)],
    )?;
    Ok(Cooccurrence {
        kind: p.kind("kind")?,
        subject: p.required("subject")?.to_string(),
        from_ms,
        to_ms,
        communities: p.list("community"),
        window_ms: p.window("window")?.unwrap_or(60_000),
        min_count: p.number("min_count", 1)?,
        scope,
        candidate_kind: p.opt_kind("candidate_kind")?,
        dedup_gap_ms: p.window("dedup_gap")?,
        limit: p.limit(100, max_rows)?,
    })
}

/// Co-occurrence's answer: `{"candidates": [...]}`.
pub(crate) fn candidates_answer(found: &[Candidate]) -> (Body, usize) {
    let candidates: Vec<Value> = found
        .iter()
        .map(|c| {
            json!({
                "kind": c.kind.as_str(),
                "subject": c.subject,
                "hits": c.hits,
                "devices": c.devices,
                "days": c.days,
                "first": rfc3339(c.first_ms),
                "last": rfc3339(c.last_ms),
                "lift": (c.lift * 1000.0).round() / 1000.0,
            })
        })
        .collect();
    listed("candidates", candidates)
}

/// `POST /v1/collision`: the body is the query (and what the audit records).
pub(crate) async fn collision(mut c: Call) -> Result<Answer, ApiError> {
    let body = c.body().await?;
    let text = String::from_utf8_lossy(&body).into_owned();
    let caller = c.caller.clone();
    // The query is the body: a query string (`?limit=5`) is refused, audited.
    let unasked = c.params.only(&[]);
    audited(c.app, c.caller, &c.path, text, c.ndjson, move |app, ctx| {
        unasked?;
        let q = collision_query(&body, app.config.max_result_rows)?;
        check_places(&caller, &q)?;
        Ok(collision_answer(&collide(ctx, &q)?))
    })
    .await
}

/// Refuses a collision naming a community outside the caller's (403 naming the
/// condition's field).
pub(crate) fn check_places(caller: &Caller, q: &Collision) -> Result<(), ApiError> {
    for (i, c) in q.conditions.iter().enumerate() {
        if let Place::Communities(codes) = &c.place {
            caller.check_communities(&format!("conditions[{i}].communities"), codes)?;
        }
    }
    Ok(())
}

/// The collision query of a request body (also the cluster's query role's).
pub(crate) fn collision_query(body: &[u8], max_rows: usize) -> Result<Collision, ApiError> {
    let obj = object(body)?;
    known_fields(&obj, &["kind", "conditions", "min_conditions", "limit"], "")?;
    let kind = match obj.get("kind") {
        Some(Value::String(s)) => parse_kind("kind", s)?,
        _ => return Err(ApiError::missing("kind")),
    };
    let conds = obj
        .get("conditions")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::param("conditions", "must be an array of conditions"))?;
    let conditions = conds
        .iter()
        .enumerate()
        .map(|(i, c)| condition(i, c))
        .collect::<Result<Vec<_>, _>>()?;
    let number = |f: &str, default: usize| -> Result<usize, ApiError> {
        match obj.get(f) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| ApiError::param(f, "must be a whole number")),
        }
    };
    let min_conditions = number("min_conditions", conditions.len())?;
    Ok(Collision {
        kind,
        conditions,
        min_conditions,
        limit: crate::params::check_limit(number("limit", 1000.min(max_rows))?, max_rows)?,
    })
}

/// Collision's answer: `{"subjects": [...]}`.
pub(crate) fn collision_answer(hits: &[CollisionHit]) -> (Body, usize) {
    let subjects: Vec<Value> = hits
        .iter()
        .map(|h| json!({ "kind": h.kind.as_str(), "subject": h.subject, "conditions": h.conditions }))
        .collect();
    listed("subjects", subjects)
}

/// Condition `i` of a collision: places and a time range.
fn condition(i: usize, c: &Value) -> Result<Condition, ApiError> {
    let field = |f: &str| format!("conditions[{i}].{f}");
    let Some(o) = c.as_object() else {
        return Err(ApiError::param(
            format!("conditions[{i}]"),
            "must be an object",
        ));
    };
    known_fields(
        o,
        &["communities", "devices", "from", "to"],
        &format!("conditions[{i}]."),
    )?;
    let list = |f: &str| strings(c.get(f), &field(f), "must be an array of strings");
    let place = match (list("communities")?, list("devices")?) {
        (Some(c), None) => Place::Communities(c),
        (None, Some(d)) => Place::Devices(d),
        _ => {
            return Err(ApiError::param(
                field("communities"),
                "give exactly one of communities or devices",
            ))
        }
    };
    let time = |f: &str| -> Result<i64, ApiError> {
        match c.get(f) {
            Some(Value::String(s)) => parse_time(&field(f), s),
            Some(Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| ApiError::param(field(f), "not whole epoch ms")),
            _ => Err(ApiError::missing(&field(f))),
        }
    };
    Ok(Condition {
        place,
        from_ms: time("from")?,
        to_ms: time("to")?,
    })
}

/// `GET /v1/search`.
pub(crate) fn search(
    app: &App,
    ctx: &QueryContext<'_>,
    p: &Params,
) -> Result<(Body, usize), ApiError> {
    let q = search_query(p, app.config.max_result_rows)?;
    Ok(search_answer(&find(ctx, &app.vocab, &q)?))
}

/// The subject search of the parameters (also the cluster's query role's).
pub(crate) fn search_query(p: &Params, max_rows: usize) -> Result<SearchQuery, ApiError> {
    let mode = match p.get("mode")?.unwrap_or("exact") {
        "exact" => SearchMode::Exact,
        "prefix" => SearchMode::Prefix,
        "wildcard" => SearchMode::Wildcard,
        "fuzzy" => SearchMode::Fuzzy {
            distance: match p.number("distance", 1)? {
                d @ 1..=2 => d,
                _ => return Err(ApiError::param("distance", "a fuzzy distance is 1 or 2")),
            },
        },
        other => {
            return Err(ApiError::param(
                "mode",
                format!("{other:?}; use exact, prefix, wildcard or fuzzy"),
            ))
        }
    };
    Ok(SearchQuery {
        pattern: p.required("q")?.to_string(),
        mode,
        kind: p.opt_kind("kind")?,
        limit: p.limit(100, max_rows)?,
    })
}

/// Search's answer: `{"subjects": [...]}`.
pub(crate) fn search_answer(found: &[SubjectMatch]) -> (Body, usize) {
    let subjects: Vec<Value> = found
        .iter()
        .map(|m| {
            json!({
                "kind": m.kind.as_str(),
                "subject": m.subject,
                "count": m.count,
                "first": rfc3339(m.first_ms),
                "last": rfc3339(m.last_ms),
                "distance": m.distance,
            })
        })
        .collect();
    listed("subjects", subjects)
}
