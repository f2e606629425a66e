//! Ingest: `POST /v1/events` (NDJSON, a JSON array, or a binary batch) and the one
//! ingest core every surface calls — the GA/T 1400 uploads too. A surface decodes its
//! records; [`ingest`] checks each against the caller's communities, validates it,
//! appends the valid ones (durably, one group commit), raises watchlist alerts, counts
//! the results in `/metrics`, and says what became of every record.

pub(crate) mod parse;
pub mod wire;

use std::sync::atomic::Ordering::Relaxed;

use hyper::header::CONTENT_TYPE;
use hyper::StatusCode;
use serde_json::{json, Value};
use sightline_storage::{Appended, Event, EventInput, EventRef, Store, ValidationError};

use crate::error::{ApiError, RecordError};
use crate::http::out::event_json;
use crate::http::{Answer, Call};
use crate::App;

/// A record as a surface decoded it, not yet validated.
pub(crate) trait Candidate {
    fn community(&self) -> &str;
    fn validate(self, store: &Store) -> Result<Event, ValidationError>;
}

impl Candidate for EventInput {
    fn community(&self) -> &str {
        &self.community
    }
    fn validate(self, store: &Store) -> Result<Event, ValidationError> {
        store.validate(self)
    }
}

impl Candidate for EventRef<'_> {
    fn community(&self) -> &str {
        self.community
    }
    fn validate(self, store: &Store) -> Result<Event, ValidationError> {
        store.validate_ref(&self)
    }
}

/// What became of one record.
#[derive(Debug)]
pub(crate) enum Fate {
    /// Stored now, with this event id.
    Stored(u64),
    /// Already stored (its `source_id` was seen), under this id.
    Duplicate(u64),
    Refused(RecordError),
}

/// What an ingest did: every record's fate with its position, in input order, and
/// how many watchlist alerts the stored ones raised.
pub(crate) struct Ingested {
    pub fates: Vec<(usize, Fate)>,
    pub alerts: usize,
}

/// The ingest core: `records` (position, decoded record or why not) in the caller's
/// `scope` (`None`: every community). Returns after the fsync that covers every stored
/// event; a storage failure fails the whole batch (nothing is acknowledged).
pub(crate) fn ingest<C: Candidate>(
    app: &App,
    scope: Option<&[String]>,
    records: impl IntoIterator<Item = (usize, Result<C, RecordError>)>,
) -> Result<Ingested, ApiError> {
    let mut valid = Vec::new();
    let admitted: Vec<(usize, Result<usize, RecordError>)> = records
        .into_iter()
        .map(|(pos, record)| {
            let admitted = record.and_then(|r| admit(app, scope, pos, r)).map(|event| {
                valid.push(event);
                valid.len() - 1
            });
            (pos, admitted)
        })
        .collect();
    let results = match valid.is_empty() {
        true => Vec::new(),
        false => app.store.append(&valid)?.results,
    };
    let alerts = raise_alerts(app, &valid, &results);
    assert_eq!(results.len(), valid.len(), "one result per appended event");
    let mut results = results.into_iter();
    let fates: Vec<(usize, Fate)> = admitted
        .into_iter()
        .map(|(pos, admitted)| {
            let fate = match admitted.map(|_| results.next()) {
                Err(e) => Fate::Refused(e),
                Ok(Some(Appended::Stored { seq })) => Fate::Stored(seq),
                Ok(Some(Appended::Duplicate { seq })) => Fate::Duplicate(seq),
                Ok(Some(Appended::Rejected(v))) => {
                    Fate::Refused(RecordError::new(pos, v.field, v.reason))
                }
                Ok(None) => unreachable!("one result per appended event, checked above"),
            };
            (pos, fate)
        })
        .collect();
    count(app, &fates);
    Ok(Ingested { fates, alerts })
}

/// A record the caller may write, validated.
fn admit<C: Candidate>(
    app: &App,
    scope: Option<&[String]>,
    pos: usize,
    record: C,
) -> Result<Event, RecordError> {
    in_scope(scope, pos, record.community())?;
    record
        .validate(&app.store)
        .map_err(|v| RecordError::new(pos, v.field, v.reason))
}

/// Refuses record `pos` of `community` unless the caller's `scope` (`None`: every
/// community) holds it (also the cluster's ingest role's check).
pub(crate) fn in_scope(
    scope: Option<&[String]>,
    pos: usize,
    community: &str,
) -> Result<(), RecordError> {
    match scope {
        Some(allowed) if !allowed.iter().any(|c| c == community) => Err(RecordError::new(
            pos,
            "community",
            format!("this API key may not write community {community:?}"),
        )),
        _ => Ok(()),
    }
}

fn count(app: &App, fates: &[(usize, Fate)]) {
    let m = &app.metrics;
    for (_, fate) in fates {
        let counter = match fate {
            Fate::Stored(_) => &m.stored,
            Fate::Duplicate(_) => &m.duplicates,
            Fate::Refused(_) => &m.rejected,
        };
        counter.fetch_add(1, Relaxed);
    }
}

/// Checks newly stored events against the watchlists and writes their alerts (before
/// the ingest is answered); returns how many. A failure to write an alert is logged:
/// the events are stored and acknowledged all the same.
fn raise_alerts(app: &App, events: &[Event], results: &[Appended]) -> usize {
    if app.watch.is_empty() {
        return 0;
    }
    let stored: Vec<(u64, &Event, Value)> = events
        .iter()
        .zip(results)
        .filter_map(|(e, r)| match r {
            Appended::Stored { seq } => Some((*seq, e, event_json(*seq, e))),
            _ => None,
        })
        .collect();
    match app.watch.check(&app.store, &stored, crate::now_ms()) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "watchlist alerts were not written");
            0
        }
    }
}

/// `POST /v1/events`: NDJSON, a JSON array, or (`Content-Type:
/// application/x-sightline-bincode`) a binary batch. 200 with each refused record
/// listed when any was stored; 422 when none was.
pub(crate) async fn post_events(mut c: Call) -> Result<Answer, ApiError> {
    // One key holds its share of the slots however many connections it opens
    // (`--no-auth`, loopback only, has no keys to tell callers apart).
    let _share = match c.caller.is_keyed() {
        false => None,
        true => Some(
            c.app
                .ingest_callers
                .take(&c.caller.key_id)
                .ok_or(ApiError::Busy("this key's share of ingest"))?,
        ),
    };
    // The slot is taken before the body is read, so buffered bodies are bounded by
    // slots × body limit whatever the load.
    let _slot = c
        .app
        .ingest_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Busy("ingest"))?;
    let binary = wire::is_binary(c.header(CONTENT_TYPE));
    let body = c.body().await?;
    // NDJSON and JSON are parsed here; binary batches are decoded on the blocking
    // pool, borrowing their strings from the body.
    let parsed = match binary {
        true => Vec::new(),
        false => parse::records(&body)?,
    };
    let (app, scope) = (c.app.clone(), c.caller.communities.clone());
    let answer = tokio::task::spawn_blocking(move || {
        let max = app.config.max_batch_records;
        let scope = scope.as_deref();
        if binary {
            let decoded = wire::decode(&body).map_err(|e| {
                ApiError::MalformedBody(format!("not a {} batch: {e}", wire::CONTENT_TYPE))
            })?;
            check_size(decoded.len(), max)?;
            ingest(
                &app,
                scope,
                decoded.into_iter().enumerate().map(|(i, e)| (i, Ok(e))),
            )
        } else {
            check_size(parsed.len(), max)?;
            ingest(&app, scope, parsed)
        }
    })
    .await
    .map_err(|e| ApiError::internal(format!("ingest task failed: {e}")))??;
    answer_of(answer)
}

fn check_size(records: usize, max: usize) -> Result<(), ApiError> {
    match records {
        0 => Err(ApiError::NoEvents),
        n if n > max => Err(ApiError::TooManyRecords { records: n, max }),
        _ => Ok(()),
    }
}

/// Some stored (or all fine): 200 with the refused ones listed. None stored and some
/// refused: 422, in the one error shape, with the list.
fn answer_of(done: Ingested) -> Result<Answer, ApiError> {
    let (mut stored, mut duplicates, mut ids, mut errors) =
        (0usize, 0usize, Vec::new(), Vec::new());
    for (_, fate) in done.fates {
        match fate {
            Fate::Stored(seq) => {
                stored += 1;
                ids.push(seq);
            }
            Fate::Duplicate(seq) => {
                duplicates += 1;
                ids.push(seq);
            }
            Fate::Refused(e) => errors.push(e),
        }
    }
    errors.sort_by_key(|e| e.line);
    if stored + duplicates == 0 {
        return Err(ApiError::InvalidEvents { errors });
    }
    let body = json!({
        "stored": stored,
        "duplicates": duplicates,
        "rejected": errors.len(),
        "ids": ids,
        "errors": errors.iter().map(RecordError::json).collect::<Vec<_>>(),
        "alerts": done.alerts,
    });
    Ok((StatusCode::OK, body.into()))
}
