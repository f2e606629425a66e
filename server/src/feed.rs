//! `GET /v1/feed`: the change feed. Events in commit (sequence) order after a cursor,
//! as a page (with long-poll: `wait`), or as Server-Sent Events. The cursor is an
//! event id; a consumer that resumes from the last id it processed misses nothing and
//! gets nothing twice, in order (ids only grow, and events become readable in id order,
//! a whole group commit at a time).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use sightline_storage::{AppendObserver, Kind, Row};

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
    /// Community ids (already limited to the caller's scope); all when `None`.
    pub communities: Option<Vec<u32>>,
}

/// The events after `ask.after` that are readable now.
pub fn page(store: &sightline_storage::Store, ask: &Ask) -> Page {
    let through = store.applied_through();
    let rows = store.scan_seq_range(ask.after, through, ask.limit, ask.communities.as_deref());
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
    Page {
        events: sightings
            .into_iter()
            .zip(kept.into_iter().map(|(_, a)| a))
            .collect(),
        next_after,
    }
}

/// Waits until new events may be readable or `deadline` passes; false at the deadline.
pub async fn wait(
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
