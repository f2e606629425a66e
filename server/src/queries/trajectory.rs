//! `GET /v1/trajectory`: a page of a subject's sightings with stays, or with
//! `Accept: application/x-ndjson` every sighting after the cursor, streamed.

use std::sync::Arc;

use hyper::body::Bytes;
use hyper::StatusCode;
use sightline_query::{
    trajectory, trajectory_pages, Cursor, QueryContext, StayEnd, TrajectoryQuery,
};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::out::{serialized, EventOut};
use crate::http::runner::{audited_get, query_ctx, scope_ids, AuditLine};
use crate::http::{Answer, Body, Call};
use crate::params::{Params, Rfc3339};
use crate::App;

#[derive(serde::Serialize)]
struct StayOut<'a> {
    community: &'a str,
    #[serde(rename = "in")]
    in_: Rfc3339,
    out: Option<Rfc3339>,
    ended_by: &'static str,
}

#[derive(serde::Serialize)]
struct TrajectoryOut<'a> {
    events: Vec<EventOut<'a>>,
    stays: Vec<StayOut<'a>>,
    stays_truncated: bool,
    next_cursor: Option<String>,
}

/// The route's handler: a page, or the stream when NDJSON was asked for.
pub(crate) async fn get(c: Call) -> Result<Answer, ApiError> {
    if c.ndjson {
        return stream(c.app, c.caller, &c.path, c.query, c.params).await;
    }
    audited_get(c, page).await
}

/// The trajectory parameters; `limit` is checked against `max_limit`.
fn trajectory_params(p: &Params, max_limit: usize) -> Result<TrajectoryQuery, ApiError> {
    p.only(&[
        "kind",
        "subject",
        "from",
        "to",
        "community",
        "cursor",
        "limit",
    ])?;
    let (from_ms, to_ms) = (p.time("from")?, p.time("to")?);
    let cursor = p
        .get("cursor")
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

fn page(app: &App, ctx: &QueryContext<'_>, p: &Params) -> Result<(Body, usize), ApiError> {
    let q = trajectory_params(p, app.config.max_result_rows)?;
    let t = trajectory(ctx, &q)?;
    let out = TrajectoryOut {
        events: t
            .events
            .iter()
            .zip(&t.attrs_at)
            .map(|(s, a)| EventOut::of(s, a))
            .collect(),
        stays: t
            .stays
            .iter()
            .map(|s| StayOut {
                community: &s.community,
                in_: Rfc3339(s.in_ms),
                out: s.out_ms.map(Rfc3339),
                ended_by: match s.ended_by {
                    StayEnd::Out => "out",
                    StayEnd::Elsewhere => "elsewhere",
                    StayEnd::Open => "open",
                },
            })
            .collect(),
        stays_truncated: t.stays_truncated,
        next_cursor: t.next_cursor.as_ref().map(|c| c.to_string()),
    };
    serialized(&out, out.events.len())
}

/// Events per streamed chunk, and how long a stream waits for a client that stopped
/// reading before it gives up.
const STREAM_PAGE: usize = 1000;
const STREAM_STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// Every event after `cursor` (at most `limit`, if given; no page size), one JSON
/// object a line, streamed as produced. The rows are found and the audit entry written
/// (with the count) before the first byte; a failure after that ends the stream with
/// an `{"error":…}` line.
async fn stream(
    app: Arc<App>,
    caller: Caller,
    endpoint: &str,
    query: String,
    p: Params,
) -> Result<Answer, ApiError> {
    let q = trajectory_params(&p, usize::MAX)?;
    let cap = p.get("limit").map(|_| q.limit).unwrap_or(usize::MAX);
    let slot = app
        .query_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Busy("the query service"))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<Result<(), ApiError>>();
    let line = AuditLine::new(&caller, endpoint, query);
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
            |events, attrs| sink.chunk(events, attrs, &mut left),
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

/// Where a stream's chunks go: the response body's channel, from a blocking task.
struct Sink {
    rt: tokio::runtime::Handle,
    tx: tokio::sync::mpsc::Sender<Bytes>,
}

impl Sink {
    /// Sends a chunk; false when the client is gone or stalled past [`STREAM_STALL`].
    fn send(&self, chunk: Vec<u8>) -> bool {
        self.rt
            .block_on(self.tx.send_timeout(Bytes::from(chunk), STREAM_STALL))
            .is_ok()
    }

    /// Sends up to `left` events as NDJSON lines; false to stop the stream.
    fn chunk(
        &self,
        events: &[sightline_query::Sighting],
        attrs: &[sightline_storage::AttrsAt],
        left: &mut usize,
    ) -> bool {
        let mut buf = Vec::with_capacity(events.len() * 320);
        for (e, a) in events.iter().zip(attrs).take(*left) {
            if let Err(err) = serde_json::to_writer(&mut buf, &EventOut::of(e, a)) {
                let line = ApiError::internal(format!("event {}: {err}", e.seq)).json();
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
