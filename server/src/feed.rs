//! `GET /v1/feed`: the change feed. Events in commit (sequence) order after a cursor,
//! as a page (with long-poll: `wait`), or as Server-Sent Events. The cursor is an
//! event id; a consumer that resumes from the last id it processed misses nothing and
//! gets nothing twice, in order (ids only grow, and events become readable in id order,
//! a whole group commit at a time).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use hyper::StatusCode;
use sightline_storage::{AppendObserver, Kind, Row};

use crate::error::ApiError;
use crate::http::out::EventOut;
use crate::http::runner::{run, AuditLine};
use crate::http::{Answer, Body, Call};
use crate::App;

/// Wakes waiting feed readers when a group commit makes events readable.
#[derive(Default)]
pub struct Signal(pub tokio::sync::Notify);

impl AppendObserver for Signal {
    fn appended(&self, _rows: &[Row]) {
        self.0.notify_waiters();
    }
}

/// One page of the feed.
pub struct Page {
    pub events: Vec<(sightline_query::Sighting, sightline_storage::AttrsAt)>,
    /// Where the next page starts: everything up to it was looked at.
    pub next_after: u64,
}

/// What a feed reader asks for.
#[derive(Clone)]
pub struct Ask {
    pub after: u64,
    pub limit: usize,
    pub kind: Option<Kind>,
    /// Community codes (already limited to the caller's scope); all when `None`.
    /// Resolved to ids by each page after it reads how far events are readable, so a
    /// community's first events are never read before its code resolves.
    pub communities: Option<Vec<String>>,
}

/// The events after `ask.after` that are readable now.
/// A damaged segment holding some of them is the error (naming the file).
pub fn page(
    store: &sightline_storage::Store,
    ask: &Ask,
) -> Result<Page, sightline_storage::StorageError> {
    // Before the codes are resolved: a community whose first events land between the
    // two reads is then either unknown here, its events past `through` (read by the
    // next page), or known; never resolved too late with its events already passed.
    let through = store.applied_through();
    let communities: Option<Vec<u32>> = ask.communities.as_ref().map(|codes| {
        let d = store.dictionaries();
        let mut ids: Vec<u32> = codes.iter().filter_map(|c| d.community_id(c)).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    });
    let rows = store.scan_seq_range(ask.after, through, ask.limit, communities.as_deref())?;
    let next_after = match rows.len() == ask.limit {
        true => rows.last().map_or(through, |(r, _)| r.seq),
        false => through.max(ask.after),
    };
    let kept: Vec<_> = rows
        .into_iter()
        .filter(|(r, _)| ask.kind.is_none_or(|k| k == r.kind))
        .collect();
    let sightings = {
        let plain: Vec<Row> = kept.iter().map(|(r, _)| *r).collect();
        sightline_query::sightings(store, &plain)
    };
    Ok(Page {
        events: sightings
            .into_iter()
            .zip(kept.into_iter().map(|(_, a)| a))
            .collect(),
        next_after,
    })
}

/// Waits until new events may be readable or `deadline` passes; false at the deadline.
pub async fn wait_for(
    signal: &Signal,
    store: &sightline_storage::Store,
    seen: u64,
    deadline: Instant,
) -> bool {
    let notified = signal.0.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    // Checked after enabling, so a commit between the check and the wait is not missed.
    if store.applied_through() > seen {
        return true;
    }
    let left = deadline.saturating_duration_since(Instant::now());
    tokio::time::timeout(left, notified).await.is_ok()
}

/// The epoch milliseconds of an event as the API writes it (`ts` in RFC 3339).
pub fn epoch_ms_of(event: &serde_json::Value) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(event["ts"].as_str()?)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// An SSE message for one event (`id` is the cursor to resume from).
pub fn sse_event(id: u64, json: &str) -> Bytes {
    Bytes::from(format!("id: {id}\nevent: event\ndata: {json}\n\n"))
}

/// How long an idle SSE stream waits before sending a comment to keep it open.
pub const SSE_HEARTBEAT: Duration = Duration::from_secs(15);

/// The signal's observer handle, for registering with the store.
pub fn observer(signal: &Arc<Signal>) -> Arc<dyn AppendObserver> {
    signal.clone()
}

/// The feed's answer for a page: events as in a trajectory, and the cursor to go on from.
#[derive(serde::Serialize)]
struct FeedOut<'a> {
    events: Vec<EventOut<'a>>,
    next_after: u64,
}

/// `GET /v1/feed?after=&limit=&wait=&kind=&community=`: a page of events after the
/// cursor (waiting up to `wait` for some when there are none), or with `Accept:
/// text/event-stream` a stream of them that resumes from `Last-Event-ID`. Audited once
/// per request.
pub(crate) async fn get(c: Call) -> Result<Answer, ApiError> {
    // The stream, or a page in JSON or (as any list answer) NDJSON lines: the stream
    // when preferred to both (a tie to the page; between the stream and lines, to the
    // stream).
    use crate::http::negotiate::{preferred, JSON, NDJSON, SSE};
    let sse = preferred(&c.head.headers, &[JSON, SSE, NDJSON]) == SSE;
    let p = &c.params;
    let after = match c.header("last-event-id").filter(|_| sse) {
        Some(id) => id
            .trim()
            .parse()
            .map_err(|_| ApiError::param("Last-Event-ID", "not an event id"))?,
        None => p.number("after", 0u64)?,
    };
    c.caller
        .check_communities("community", &p.list("community").unwrap_or_default())?;
    let wait = p.window("wait")?.unwrap_or(0);
    if !(0..=60_000).contains(&wait) {
        return Err(ApiError::param("wait", "0 to 60 s"));
    }
    let ask = Ask {
        after,
        limit: p.limit(1000, c.app.config.max_result_rows)?,
        kind: p.opt_kind("kind")?,
        communities: communities(&c),
    };
    let line = AuditLine::new(&c.caller, &c.path, c.query.clone());
    if sse {
        line.record(&c.app, None, 200)?;
        return Ok((StatusCode::OK, Body::Events(stream(c.app, ask))));
    }
    let deadline = Instant::now() + Duration::from_millis(wait as u64);
    loop {
        let (a, store_app) = (ask.clone(), c.app.clone());
        let (text, n, next) = run(c.app.clone(), move |_| {
            let page = page(&store_app.store, &a)?;
            let out = FeedOut {
                events: page
                    .events
                    .iter()
                    .map(|(s, at)| EventOut::of(s, at))
                    .collect(),
                next_after: page.next_after,
            };
            let n = out.events.len();
            serde_json::to_string(&out)
                .map(|s| (s, n, page.next_after))
                .map_err(|e| ApiError::internal(e.to_string()))
        })
        .await?;
        if n > 0 || Instant::now() >= deadline {
            line.record(&c.app, Some(n), 200)?;
            return Ok((StatusCode::OK, Body::Text(text)));
        }
        wait_for(&c.app.feed_signal, &c.app.store, next, deadline).await;
    }
}

/// The communities a feed request reads (codes): those asked for within the
/// caller's scope.
fn communities(c: &Call) -> Option<Vec<String>> {
    let scope = c.caller.communities.as_ref();
    match c.params.list("community") {
        None => scope.cloned(),
        Some(codes) => Some(
            codes
                .into_iter()
                .filter(|c| scope.is_none_or(|s| s.contains(c)))
                .collect(),
        ),
    }
}

/// The Server-Sent Events stream of `ask`, until the client goes away.
fn stream(app: Arc<App>, mut ask: Ask) -> tokio::sync::mpsc::Receiver<Bytes> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    tokio::spawn(async move {
        loop {
            let (a, store_app) = (ask.clone(), app.clone());
            let Ok(built) = tokio::task::spawn_blocking(move || {
                let page = page(&store_app.store, &a).map_err(|e| e.to_string())?;
                let lines = page
                    .events
                    .iter()
                    .map(|(s, at)| {
                        serde_json::to_string(&EventOut::of(s, at))
                            .map(|json| sse_event(s.seq, &json))
                    })
                    .collect::<Result<Vec<Bytes>, _>>()
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>((lines, page.next_after))
            })
            .await
            else {
                return;
            };
            // An event whose attributes cannot be read (a damaged segment) ends the
            // stream with an error event naming the file, never skipped silently.
            let (lines, next) = match built {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "an event cannot be read for the feed");
                    let text = serde_json::json!({"error": {"code": "storage_unavailable",
                        "message": e.to_string()}});
                    let _ = tx
                        .send(Bytes::from(format!("event: error\ndata: {text}\n\n")))
                        .await;
                    return;
                }
            };
            for l in lines {
                if tx.send(l).await.is_err() {
                    return; // the client went away
                }
            }
            let idle = next == ask.after;
            ask.after = next;
            if idle {
                let deadline = Instant::now() + SSE_HEARTBEAT;
                let woke = wait_for(&app.feed_signal, &app.store, next, deadline).await;
                if !woke
                    && tx
                        .send(Bytes::from_static(b": keepalive\n\n"))
                        .await
                        .is_err()
                {
                    return;
                }
            }
        }
    });
    rx
}
