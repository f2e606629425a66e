//! `GET /v1/trajectory`: a page of a subject's sightings with stays, or with
//! `Accept: application/x-ndjson` every sighting after the cursor, streamed.

use std::mem::take;
use std::sync::Arc;

use hyper::body::Bytes;
use hyper::StatusCode;
use sightline_query::{
    trajectory_handed, trajectory_pages, Cursor, QueryContext, Sighting, Stay, StayEnd,
    TrajectoryQuery,
};
use sightline_storage::AttrsAt;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::offer::{core_free, in_parts_fed};
use crate::http::out::{put_str, EventOut, Fields};
use crate::http::runner::{audited_get, query_ctx, scope_ids, AuditLine};
use crate::http::{Answer, Body, Call};
use crate::params::{Params, Rfc3339};
use crate::App;

/// How a stay ended, as answers write it.
fn ended_by(e: StayEnd) -> &'static str {
    match e {
        StayEnd::Out => "out",
        StayEnd::Elsewhere => "elsewhere",
        StayEnd::Open => "open",
    }
}

/// The route's handler: a page, or the stream when NDJSON was asked for.
pub(crate) async fn get(c: Call) -> Result<Answer, ApiError> {
    if c.ndjson {
        return stream(c.app, c.caller, &c.path, c.query, c.params).await;
    }
    audited_get(c, page).await
}

/// The trajectory parameters; `limit` is checked against `max_limit` (also the
/// cluster's query role's).
pub(crate) fn trajectory_params(p: &Params, max_limit: usize) -> Result<TrajectoryQuery, ApiError> {
    p.only(&[
        "kind",
        "subject",
        "from",
        "to",
        "community",
        "cursor",
        "limit",
        "fields",
    ])?;
    let (from_ms, to_ms) = (p.time("from")?, p.time("to")?);
    let cursor = p
        .get("cursor")?
        .map(|c| {
            c.parse::<Cursor>()
                .map_err(|_| ApiError::param("cursor", "not a cursor this server returned"))
        })
        .transpose()?;
    Ok(TrajectoryQuery {
        kind: p.kind("kind")?,
        subject: p.required("subject")?.to_string(),
        from_ms,
        to_ms,
        communities: p.list("community"),
        cursor,
        limit: p.limit(1000, max_limit)?,
    })
}

/// A page as JSON: `{"events", "stays", "stays_truncated", "next_cursor"}`, the events
/// written by [`EventOut::write_fields`] straight into the answer (a page holds up to
/// 10,000). Attributes are read as the events are written; both count as
/// serialization in `Server-Timing` once the merge has ended (what is written while it
/// runs counts as the query's time). A page whose `fields` read attributes (the
/// default, or any naming `attrs`, `images` or `object`) that may hold
/// [`SPLIT_EVENTS`] or more (its `limit` and the subject's runs past the cursor hold
/// that many), when a core is likely free (fewer queries running than cores:
/// [`core_free`]), has its events handed over in parts of [`PART_EVENTS`] as they are
/// merged ([`trajectory_handed`]): a thread of rayon's pool writes them while this
/// thread merges the rest, then both write what is left ([`in_parts_fed`]), and the
/// page is sent as those parts, not copied into one. Else this thread writes the page
/// alone, straight into the answer, once merged.
fn page(app: &App, ctx: &QueryContext<'_>, p: &Params) -> Result<(Body, usize), ApiError> {
    let q = trajectory_params(p, app.config.max_result_rows)?;
    let fields = Fields::param(p)?;
    let running =
        (app.config.max_concurrent_queries).saturating_sub(app.query_slots.available_permits());
    // Only events whose attributes are read cost enough to share: a page of a few
    // fields (`fields=ts,device`, ~0.1 µs an event) is written faster alone than
    // handed over part by part.
    let share = fields.reads_attrs() && core_free(running);
    let offer = |most: usize| (share && most >= SPLIT_EVENTS).then_some(PART_EVENTS);
    // Part `i` of the page: its events (after what goes before them: the page's head,
    // or a comma), or what follows the last of them.
    let write = move |i: usize, part: PagePart| -> Result<Vec<u8>, String> {
        match part {
            PagePart::Events(sightings, attrs) => {
                let events = ahead(&sightings, &attrs, 0..sightings.len(), fields);
                let mut text = Vec::with_capacity(sightings.len() * 400 + PAGE_HEAD.len());
                match i {
                    0 => text.extend_from_slice(PAGE_HEAD),
                    _ => text.push(b','),
                }
                write_events(&mut text, events, fields).map(|()| text)
            }
            PagePart::Tail(stays, truncated, cursor) => {
                let mut tail = Vec::with_capacity(stays.len() * 120 + 128);
                page_tail(&mut tail, &stays, truncated, cursor.as_ref())
                    .map_err(|e| e.to_string())?;
                Ok(tail)
            }
        }
    };
    let mut handed = 0usize;
    // When the merge ended: serialization is timed from there (writing that overlapped
    // the merge counts as the query's time).
    let mut merged = None;
    let (t, parts) = in_parts_fed(
        |feed| {
            let mut t = trajectory_handed(ctx, &q, offer, |events, attrs| {
                handed += events.len();
                feed.push(PagePart::Events(events, attrs));
            })?;
            merged = Some(std::time::Instant::now());
            if feed.fed() {
                // The events after the last part handed over are the last part of
                // events; what follows them, the stays and the cursor, one more.
                if !t.events.is_empty() {
                    handed += t.events.len();
                    let (events, attrs) = (take(&mut t.events), take(&mut t.attrs_at));
                    feed.push(PagePart::Events(events, attrs));
                }
                let tail = (take(&mut t.stays), t.stays_truncated, t.next_cursor.take());
                feed.push(PagePart::Tail(tail.0, tail.1, tail.2));
            }
            Ok::<_, ApiError>(t)
        },
        write,
    )?;
    let started = merged.unwrap_or_else(std::time::Instant::now);
    let Some(parts) = parts else {
        let n = t.events.len();
        let (stays, truncated, cursor) = (&t.stays, t.stays_truncated, t.next_cursor.as_ref());
        let events = ahead(&t.events, &t.attrs_at, 0..n, fields);
        let write = |text: &mut Vec<u8>| write_events(text, events, fields);
        return page_answer(started, n, write, stays, truncated, cursor);
    };
    let parts = parts.map_err(ApiError::internal)?;
    let parts = parts.into_iter().map(Bytes::from).collect();
    Ok((page_body(started, parts), handed))
}

/// A part of a page written by [`in_parts_fed`]: some of its events, or what follows
/// the last of them (the stays, whether they were cut short, the cursor).
enum PagePart {
    Events(Vec<Sighting>, Vec<AttrsAt>),
    Tail(Vec<Stay>, bool, Option<Cursor>),
}

/// `events[range]` to write, their attributes' chunks asked for ahead of their reads
/// when `fields` reads them ([`AttrsAt::prefetch_segment`]): the segment
/// [`PREFETCH_AHEAD`] × 3 events ahead, the chunk's place × 2, the chunk × 1. A heavy
/// subject's events are one or two in each of hundreds of segments, and each
/// otherwise waits for its own cache misses.
pub(crate) fn ahead<'a>(
    events: &'a [Sighting],
    attrs: &'a [AttrsAt],
    range: std::ops::Range<usize>,
    fields: Fields,
) -> impl Iterator<Item = EventOut<'a>> {
    let reads = fields.reads_attrs();
    debug_assert_eq!(events.len(), attrs.len(), "an attributes' place an event");
    // Both lists hold an entry an event; never past the shorter, should they differ.
    let end = range.end.min(events.len()).min(attrs.len());
    (range.start.min(end)..end).map(move |i| {
        if reads {
            if let Some(a) = attrs[..end].get(i + 3 * PREFETCH_AHEAD) {
                a.prefetch_segment();
            }
            if let Some(a) = attrs[..end].get(i + 2 * PREFETCH_AHEAD) {
                a.prefetch_place();
            }
            if let Some(a) = attrs[..end].get(i + PREFETCH_AHEAD) {
                a.prefetch();
            }
        }
        EventOut::of(&events[i], &attrs[i])
    })
}

/// How far ahead [`ahead`] asks for attributes (events; each takes ~1.5 µs to write,
/// a miss ~0.1 µs).
const PREFETCH_AHEAD: usize = 2;

/// Pages of at least this many events whose fields read attributes are written in
/// parts ([`page`]): below it, sharing the work costs more than it saves.
pub(crate) const SPLIT_EVENTS: usize = 256;

/// Events a part of a page holds ([`page`]): small enough that a thread which joins
/// late leaves the other waiting at most one part's time (~70 µs) at the end.
const PART_EVENTS: usize = 64;

/// `events`' JSON (their `fields`), comma-separated, appended to `text`; an event
/// whose attributes are damaged is an error naming the file.
pub(crate) fn write_events<'a>(
    text: &mut Vec<u8>,
    events: impl Iterator<Item = EventOut<'a>>,
    fields: Fields,
) -> Result<(), String> {
    let mut scratch = sightline_storage::RowScratch::default();
    for (i, e) in events.enumerate() {
        if i > 0 {
            text.push(b',');
        }
        e.write_fields(text, &mut scratch, fields)?;
    }
    Ok(())
}

/// What a page's JSON starts with, before its events.
const PAGE_HEAD: &[u8] = b"{\"events\":[";

/// A page's JSON (also the cluster's query role's): its `n` events as `write_events`
/// writes them (comma-separated), then the stays and the cursor; `started` is when
/// serialization began.
pub(crate) fn page_answer(
    started: std::time::Instant,
    n: usize,
    write_events: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
    stays: &[Stay],
    stays_truncated: bool,
    next_cursor: Option<&Cursor>,
) -> Result<(Body, usize), ApiError> {
    // Room for the page (an event with a GA/T 1400 id and a few attributes is ~340
    // bytes), so thousands are not copied again at a doubling.
    let mut text = Vec::with_capacity(n.saturating_mul(400) + 256);
    text.extend_from_slice(PAGE_HEAD);
    write_events(&mut text).map_err(ApiError::internal)?;
    page_tail(&mut text, stays, stays_truncated, next_cursor)?;
    Ok((page_body(started, vec![text.into()]), n))
}

/// What follows a page's events: the end of their list, the stays and the cursor.
fn page_tail(
    text: &mut Vec<u8>,
    stays: &[Stay],
    stays_truncated: bool,
    next_cursor: Option<&Cursor>,
) -> Result<(), ApiError> {
    text.extend_from_slice(b"],\"stays\":[");
    for (i, stay) in stays.iter().enumerate() {
        if i > 0 {
            text.push(b',');
        }
        text.extend_from_slice(b"{\"community\":");
        put_str(text, &stay.community);
        text.extend_from_slice(b",\"in\":");
        Rfc3339(stay.in_ms).write_json(text);
        text.extend_from_slice(b",\"out\":");
        match stay.out_ms {
            Some(ms) => Rfc3339(ms).write_json(text),
            None => text.extend_from_slice(b"null"),
        }
        text.extend_from_slice(b",\"ended_by\":\"");
        text.extend_from_slice(ended_by(stay.ended_by).as_bytes());
        text.extend_from_slice(b"\"}");
    }
    text.push(b']');
    text.extend_from_slice(match stays_truncated {
        true => b",\"stays_truncated\":true,\"next_cursor\":",
        false => b",\"stays_truncated\":false,\"next_cursor\":",
    });
    let cursor = next_cursor.map(|c| c.to_string());
    serde_json::to_writer(&mut *text, &cursor).map_err(|e| ApiError::internal(e.to_string()))?;
    text.push(b'}');
    Ok(())
}

/// A page's body: its JSON in the parts it was written in, sent as they are, and the
/// time its serialization took since `started`.
fn page_body(started: std::time::Instant, parts: Vec<Bytes>) -> Body {
    // UTF-8 by construction (strings written from `&str`, the rest ASCII): not
    // checked again in release builds (a 1.3 MB page's check cost ~260 instructions an
    // event); every test and debug build still checks it.
    debug_assert!(
        std::str::from_utf8(&parts.concat()).is_ok(),
        "a page that is not UTF-8"
    );
    Body::Serialized(started.elapsed(), Box::new(Body::Json(parts)))
}

/// Events per streamed chunk, and how long a stream waits for a client that stopped
/// reading before it gives up.
pub(crate) const STREAM_PAGE: usize = 1000;
const STREAM_STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// Every event after `cursor` (at most `limit`, if given; no page size), one JSON
/// object a line, streamed as produced. Refused as a page is (a `community` outside
/// the caller's is 403 naming it; a bad parameter 400 naming it; no query slot 503),
/// each refusal audited. The rows are found and the audit entry written (with the
/// count) before the first byte; a failure after that ends the stream with an
/// `{"error":…}` line.
async fn stream(
    app: Arc<App>,
    caller: Caller,
    endpoint: &str,
    query: String,
    p: Params,
) -> Result<Answer, ApiError> {
    let line = AuditLine::new(&caller, endpoint, query);
    let checked = (|| {
        caller.check_communities("community", &p.list("community").unwrap_or_default())?;
        let q = trajectory_params(&p, usize::MAX)?;
        let fields = Fields::param(&p)?;
        let slot = app
            .query_slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Busy("the query service"))?;
        Ok::<_, ApiError>((q, fields, slot))
    })();
    let (q, fields, slot) = match checked {
        Ok(checked) => checked,
        Err(e) => {
            line.record(&app, None, e.status().as_u16())?;
            return Err(e);
        }
    };
    // A `limit` given twice was refused, and audited, with the other parameters.
    let cap = match p.get("limit") {
        Ok(Some(_)) => q.limit,
        _ => usize::MAX,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<Result<(), ApiError>>();
    let sink = Sink {
        rt: tokio::runtime::Handle::current(),
        tx,
    };
    let app2 = app.clone();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let app = &*app2;
        let scope = scope_ids(app, &caller);
        let ctx = query_ctx(app, scope.as_deref());
        let mut started = Some(started_tx);
        let mut left = cap;
        let sent = trajectory_pages(
            &ctx,
            &q,
            STREAM_PAGE,
            |total| {
                let answer = line.record(app, Some(total.min(cap)), 200);
                let go = answer.is_ok();
                if let Some(s) = started.take() {
                    let _ = s.send(answer);
                }
                go
            },
            |events, attrs| sink.chunk(events, attrs, fields, &mut left),
        );
        if let Err(e) = sent {
            let e = ApiError::from(e);
            match started.take() {
                Some(s) => {
                    let _ = line.record(app, None, e.status().as_u16());
                    let _ = s.send(Err(e));
                }
                None => {
                    sink.send(format!("{}\n", e.json()).into_bytes());
                }
            }
        }
    });
    match tokio::time::timeout(app.config.query_timeout, started_rx).await {
        Err(_) => Err(ApiError::QueryTimeout(Some(app.config.query_timeout))),
        Ok(Err(_)) => Err(ApiError::internal("the query's task failed")),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Ok(Ok(()))) => Ok((StatusCode::OK, Body::Stream(rx))),
    }
}

/// Where a stream's chunks go: the response body's channel, from a blocking task
/// (also the cluster's query role's).
pub(crate) struct Sink {
    pub rt: tokio::runtime::Handle,
    pub tx: tokio::sync::mpsc::Sender<Bytes>,
}

impl Sink {
    /// Sends a chunk; false when the client is gone or stalled past [`STREAM_STALL`].
    pub fn send(&self, chunk: Vec<u8>) -> bool {
        self.rt
            .block_on(self.tx.send_timeout(Bytes::from(chunk), STREAM_STALL))
            .is_ok()
    }

    /// Sends up to `left` events (their `fields`) as NDJSON lines; false to stop the
    /// stream.
    fn chunk(
        &self,
        events: &[sightline_query::Sighting],
        attrs: &[sightline_storage::AttrsAt],
        fields: Fields,
        left: &mut usize,
    ) -> bool {
        let n = events.len().min(attrs.len());
        self.chunk_of(n, ahead(events, attrs, 0..n, fields), fields, left)
    }

    /// Sends up to `left` of `n` events (their `fields`) as NDJSON lines; false to
    /// stop the stream.
    pub fn chunk_of<'a>(
        &self,
        n: usize,
        events: impl Iterator<Item = EventOut<'a>>,
        fields: Fields,
        left: &mut usize,
    ) -> bool {
        let mut buf = Vec::with_capacity(n.saturating_mul(400));
        let mut scratch = sightline_storage::RowScratch::default();
        for e in events.take(*left) {
            let line = buf.len();
            if let Err(err) = e.write_fields(&mut buf, &mut scratch, fields) {
                buf.truncate(line);
                let line = ApiError::internal(format!("event {}: {err}", e.id())).json();
                buf.extend_from_slice(format!("{line}\n").as_bytes());
                self.send(buf);
                return false;
            }
            buf.push(b'\n');
            *left -= 1;
        }
        // A client gone or stalled ends the stream.
        self.send(buf) && *left > 0
    }
}
