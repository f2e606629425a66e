//! `GET /v1/feed` and `GET /v1/admin/stats` on a query node, over the federation;
//! `GET/PUT /v1/admin/retention`, the policy in PostgreSQL (`sightline_cluster::retention`).
//!
//! The feed takes `serve`'s parameters (`after`, `limit`, `wait`, `kind`,
//! `community`), paging, long-poll and Server-Sent Events, with one difference: the
//! cursor (`after`, `next_after`, an event's SSE `id`, `Last-Event-ID`) is a
//! [`FeedCursor`], a position per partition written `partition:seq.partition:seq…`
//! (`0`: the start), not an event id (ARCHITECTURE.md, "The change feed on a query
//! node"). A page is at most `limit` events, a prefix of each partition's events after
//! its position, merged by capture time; a partition that did not answer is listed in
//! `unavailable` and its position does not move, so resuming from the last cursor
//! processed misses nothing and gets nothing twice.
//!
//! Bounds: a page within the query slots and `query.timeout_ms`; a long-poll (`wait`,
//! ≤ 60 s, as `serve`) asks the partitions every [`POLL`] while they have nothing
//! more (at once while one read to its limit) and holds no slot between;
//! [`MAX_LONG_POLLS`] long-polls and [`MAX_STREAMS`] Server-Sent Event streams at
//! once per node (429 beyond). A stream takes a query slot for each read only when
//! one is free (never queued ahead of the pages), and its task ends as soon as its
//! client goes away, whatever it waits for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use hyper::HeaderMap;
use sightline_query::federated::{Call, FeedAsk, FeedCursor, FeedPage, PartitionStats};

use super::query::QueryNode;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::out::EventOut;
use crate::http::runner::AuditLine;
use crate::http::Body;
use crate::params::Params;

/// How often a long-poll or an idle stream asks the partitions again: they have no
/// append signal to wait on across the network (each round is one call a partition).
pub(super) const POLL: Duration = Duration::from_millis(500);

/// Server-Sent Event streams a query node holds open at once (each asks every
/// partition every [`POLL`] while idle); 429 beyond.
pub(super) const MAX_STREAMS: usize = 32;

/// Long-polls (`wait` > 0) a query node holds waiting at once (each asks every
/// partition every [`POLL`]): twice the streams, as a long-poll ends within 60 s;
/// 429 beyond.
pub(super) const MAX_LONG_POLLS: usize = 64;

/// Longest `wait`, as on `serve`.
const MAX_WAIT_MS: i64 = 60_000;

/// The feed's answer for a page.
#[derive(serde::Serialize)]
struct PageOut<'a> {
    events: Vec<EventOut<'a>>,
    next_after: String,
    unavailable: Vec<serde_json::Value>,
}

/// `GET /v1/feed`: a page (long-polled with `wait`) or, with `Accept:
/// text/event-stream`, a stream resuming from `Last-Event-ID`. The page is audited
/// with its count by the caller of this; a stream here, before its first byte.
pub(super) async fn get(
    node: &Arc<QueryNode>,
    caller: &Caller,
    headers: &HeaderMap,
    params: &Params,
    line: &AuditLine,
) -> Result<(Body, Option<usize>), ApiError> {
    // A page here is JSON only (no NDJSON lines): the stream or the page.
    use crate::http::negotiate::{preferred, JSON, SSE};
    let sse = preferred(headers, &[JSON, SSE]) == SSE;
    let last_id = headers
        .get("last-event-id")
        .filter(|_| sse)
        .map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let (field, text) = match last_id {
        Some(id) => ("Last-Event-ID", id),
        None => ("after", params.get("after")?.unwrap_or("0")),
    };
    let mut cursor =
        FeedCursor::parse(text, node.partitions()).map_err(|why| ApiError::param(field, why))?;
    let asked = params.list("community");
    caller.check_communities("community", &asked.clone().unwrap_or_default())?;
    let wait = params.window("wait")?.unwrap_or(0);
    if !(0..=MAX_WAIT_MS).contains(&wait) {
        return Err(ApiError::param("wait", "0 to 60 s"));
    }
    let ask = FeedAsk {
        after: 0,
        limit: params.limit(1000, node.max_rows())?,
        kind: params.opt_kind("kind")?,
        communities: asked,
    };
    let call = Call {
        scope: caller.communities.clone(),
        deadline: None,
    };
    if sse {
        let stream = node
            .feed_streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Busy("the feed's streams"))?;
        line.record_in(&node.audit, None, 200)?;
        let rx = spawn_stream(node.clone(), call, cursor, ask, stream);
        return Ok((Body::Events(rx), None));
    }
    // Held while the long-poll waits (dropped with this future when the client goes).
    let _poll = match wait > 0 {
        true => Some(
            node.feed_polls
                .clone()
                .try_acquire_owned()
                .map_err(|_| ApiError::Busy("the feed's long-polls"))?,
        ),
        false => None,
    };
    let deadline = Instant::now() + Duration::from_millis(wait as u64);
    loop {
        let page = read(node, &call, &cursor, &ask).await?;
        let now = Instant::now();
        if !page.events.is_empty() || now >= deadline {
            let n = page.events.len();
            let out = PageOut {
                events: page
                    .events
                    .iter()
                    .map(|(s, a)| EventOut::decoded(s, a))
                    .collect(),
                next_after: page.next.to_string(),
                unavailable: unavailable_json(&page),
            };
            let text =
                serde_json::to_string(&out).map_err(|e| ApiError::internal(e.to_string()))?;
            return Ok((Body::Text(text), Some(n)));
        }
        // Nothing new: past what the filters left out, then ask again, at once while a
        // partition read to its limit (a backlog the filters leave out).
        // At once only while that moves the cursor: an older node answering no
        // `more` counts as more, and a round that moves nothing would spin.
        let moved = page.next != cursor;
        cursor = page.next;
        if !(page.more && moved) {
            tokio::time::sleep(POLL.min(deadline - now)).await;
        }
    }
}

/// The partitions that did not answer a page, with why.
fn unavailable_json(page: &FeedPage) -> Vec<serde_json::Value> {
    page.unavailable
        .iter()
        .map(|(p, e)| serde_json::json!({"partition": p, "error": e.to_string()}))
        .collect()
}

/// One page from `cursor`, on the blocking pool within a query slot (429 when none
/// is free) and `query.timeout_ms`. Fails when no partition asked answered.
async fn read(
    node: &Arc<QueryNode>,
    call: &Call,
    cursor: &FeedCursor,
    ask: &FeedAsk,
) -> Result<FeedPage, ApiError> {
    let slot = node
        .slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Busy("the query service"))?;
    let timeout = node.timeout();
    let (n, scope, cursor, ask) = (
        node.clone(),
        call.scope.clone(),
        cursor.clone(),
        ask.clone(),
    );
    let task = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let call = Call {
            scope,
            deadline: Some(Instant::now() + timeout),
        };
        n.federation().feed(&call, &cursor, &ask)
    });
    let page = match tokio::time::timeout(timeout + Duration::from_secs(1), task).await {
        Err(_) => return Err(ApiError::QueryTimeout(Some(timeout))),
        Ok(joined) => {
            joined.map_err(|e| ApiError::internal(format!("the feed's task failed: {e}")))??
        }
    };
    all_failed(page)
}

/// A page where every partition asked failed is the first failure.
fn all_failed(mut page: FeedPage) -> Result<FeedPage, ApiError> {
    // A page with no answer at all (nothing asked) has no failure either.
    let answered_none = !page.unavailable.is_empty() && page.events.is_empty();
    if answered_none && page.unavailable.len() == page.asked {
        let (_, e) = page.unavailable.swap_remove(0);
        return Err(e.into());
    }
    Ok(page)
}

/// The Server-Sent Events of `ask` from `cursor` until the client goes away (every
/// wait also ends then): each event's `id` is the cursor just past it. A round with
/// no query slot free, or where no partition answered, is logged and tried again
/// after [`POLL`] (the stream stays open; a partition that failed is read again
/// from its position); a round with nothing new waits [`POLL`] unless a partition
/// read to its limit; a comment every 15 s keeps it open.
fn spawn_stream(
    node: Arc<QueryNode>,
    call: Call,
    mut cursor: FeedCursor,
    ask: FeedAsk,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> tokio::sync::mpsc::Receiver<Bytes> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    tokio::spawn(async move {
        let _permit = permit;
        let mut quiet_since = Instant::now();
        loop {
            let answer = tokio::select! {
                a = read(&node, &call, &cursor, &ask) => a,
                _ = tx.closed() => return,
            };
            let page = match answer {
                Ok(page) => page,
                Err(e) => {
                    match e {
                        ApiError::Busy(_) => {
                            tracing::debug!("the feed's stream waits for a query slot")
                        }
                        e => tracing::warn!(error = %e, "the feed's partitions did not answer"),
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(POLL) => {}
                        _ = tx.closed() => return,
                    }
                    continue;
                }
            };
            let mut at = cursor.clone();
            let mut lines = Vec::with_capacity(page.events.len());
            for (s, a) in &page.events {
                let (p, seq) = sightline_query::federated::split_cluster_id(s.seq);
                at.0[usize::from(p)] = seq;
                let json = match serde_json::to_string(&EventOut::decoded(s, a)) {
                    Ok(j) => j,
                    Err(e) => {
                        tracing::error!(error = %e, "an event cannot be written for the feed");
                        return;
                    }
                };
                lines.push(Bytes::from(format!(
                    "id: {at}\nevent: event\ndata: {json}\n\n"
                )));
            }
            let idle = page.events.is_empty();
            // As a long-poll: at once only while that moves the cursor.
            let more = page.more && page.next != cursor;
            cursor = page.next;
            for l in lines {
                if tx.send(l).await.is_err() {
                    return; // the client went away
                }
            }
            if idle {
                if quiet_since.elapsed() >= crate::feed::SSE_HEARTBEAT {
                    if tx
                        .send(Bytes::from_static(b": keepalive\n\n"))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    quiet_since = Instant::now();
                }
                if !more {
                    tokio::select! {
                        _ = tokio::time::sleep(POLL) => {}
                        _ = tx.closed() => return,
                    }
                } else if tx.is_closed() {
                    return;
                }
            } else {
                quiet_since = Instant::now();
            }
        }
    });
    rx
}

/// `GET /v1/admin/stats`: `serve`'s figures added up over the partitions (as their
/// owners or replicas answer them), and each partition's.
pub(super) async fn stats(node: &Arc<QueryNode>) -> Result<(Body, Option<usize>), ApiError> {
    let slot = node
        .slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Busy("the query service"))?;
    let timeout = node.timeout();
    let n = node.clone();
    let task = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let call = Call {
            scope: None,
            deadline: Some(Instant::now() + timeout),
        };
        n.federation().stats(&call)
    });
    let each = match tokio::time::timeout(timeout + Duration::from_secs(1), task).await {
        Err(_) => return Err(ApiError::QueryTimeout(Some(timeout))),
        Ok(joined) => joined
            .map_err(|e| ApiError::internal(format!("the statistics' task failed: {e}")))??,
    };
    let mut sum = PartitionStats::default();
    for (_, s) in &each {
        sum.add(s);
    }
    let partitions: Vec<serde_json::Value> = each
        .iter()
        .map(|(p, s)| {
            serde_json::json!({
                "partition": p,
                "events": s.events,
                "events_in_memory": s.events_in_memory,
                "shards": s.shards,
                "segments": s.segments,
                "sealed_bytes": s.sealed_bytes,
                "subjects": s.subjects,
                "applied_through": s.applied_through,
            })
        })
        .collect();
    let v = serde_json::json!({
        "events": sum.events,
        "events_in_memory": sum.events_in_memory,
        "shards": sum.shards,
        "segments": sum.segments,
        "sealed_bytes": sum.sealed_bytes,
        "subjects": sum.subjects,
        "devices": sum.devices,
        "communities": sum.communities,
        "wal_files": sum.wal_files,
        "retention_days": node.catalog.retention_days().await?,
        "partitions": partitions,
    });
    Ok((v.into(), Some(1)))
}

/// `GET /v1/admin/retention` (`body`: `None`) reads the cluster's policy; `PUT` with
/// `serve`'s body (`{"days": N}` or `{"days": null}`) changes it. `serve`'s answer,
/// but `dropped_shards` is `null`: the indexers drop at their next commit (within
/// `index.commit_interval_ms`; an idle partition within a minute), the replicas at
/// once after their next renewal, so which shards go is not known here.
pub(super) async fn retention(
    node: &Arc<QueryNode>,
    body: Option<Bytes>,
) -> Result<serde_json::Value, ApiError> {
    if let Some(body) = body {
        let days = crate::admin::retention_days(&body)?;
        node.catalog.set_retention_days(days).await?;
        return Ok(serde_json::json!({"retention_days": days, "dropped_shards": null}));
    }
    // The same members as `serve`'s (nothing is dropped by reading).
    Ok(serde_json::json!({
        "retention_days": node.catalog.retention_days().await?,
        "dropped_shards": [],
    }))
}
