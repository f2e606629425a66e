//! Trajectory: where a subject was, in time order, with the stays it implies.

use std::fmt;
use std::str::FromStr;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use sightline_storage::{Direction, Kind, Row, SubjectRun};

use crate::context::{Names, QueryContext, Sighting};
use crate::error::{QueryError, Result};

/// Most events per page.
pub const MAX_PAGE: usize = 10_000;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TrajectoryQuery {
    pub kind: Kind,
    pub subject: String,
    pub from_ms: i64,
    pub to_ms: i64,
    /// Only these community codes; all when `None`.
    pub communities: Option<Vec<String>>,
    /// Continue after this event (from a previous page's `next_cursor`).
    pub cursor: Option<Cursor>,
    /// Events per page, 1..=[`MAX_PAGE`].
    pub limit: usize,
}

/// Position in the (ts, device, seq) order: the last event of a page.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    pub ts_ms: i64,
    pub device: String,
    pub seq: u64,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.ts_ms, self.device, self.seq)
    }
}

impl FromStr for Cursor {
    type Err = QueryError;
    fn from_str(s: &str) -> Result<Cursor> {
        let bad = || {
            QueryError::invalid(
                "cursor",
                format!("{s:?} is not a cursor from a previous page"),
            )
        };
        let mut parts = s.splitn(3, '.');
        let ts_ms = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let device = parts
            .next()
            .filter(|d| !d.is_empty())
            .ok_or_else(bad)?
            .to_string();
        let seq = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        Ok(Cursor { ts_ms, device, seq })
    }
}

/// How a stay ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StayEnd {
    /// An `out` at the same community.
    Out,
    /// A sighting at another community.
    Elsewhere,
    /// Nothing closed it within the range.
    Open,
}

/// A dwell interval at one community derived from gate directions.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stay {
    pub community: String,
    pub in_ms: i64,
    /// When it ended; `None` when open.
    pub out_ms: Option<i64>,
    pub ended_by: StayEnd,
}

#[derive(Clone, Debug)]
pub struct Trajectory {
    pub events: Vec<Sighting>,
    /// Stays over the whole range, the first [`MAX_STAYS`] in time order; on the first
    /// page only (empty when `cursor` is set).
    pub stays: Vec<Stay>,
    /// There were more than [`MAX_STAYS`] stays in the range (narrow it to see them).
    pub stays_truncated: bool,
    pub next_cursor: Option<Cursor>,
    /// Where each event's attributes are (same order as `events`); see
    /// [`Trajectory::attrs`].
    pub attrs_at: Vec<sightline_storage::AttrsAt>,
}

/// Most stays one answer holds: like a page of events, an answer's size is bounded
/// whatever the subject's history.
pub const MAX_STAYS: usize = MAX_PAGE;

impl Trajectory {
    /// The page's events' attributes, decoded now (same order as `events`).
    pub fn attrs(&self) -> Result<Vec<sightline_storage::Attrs>> {
        self.attrs_at
            .iter()
            .map(|a| a.decode().map_err(QueryError::from))
            .collect()
    }
}

/// A page of the subject's trajectory. The events are merged in trajectory order from
/// per-device runs (see [`Merged`]): memory holds the page and the stays, not the
/// subject's history, however long it is.
pub fn trajectory(ctx: &QueryContext<'_>, q: &TrajectoryQuery) -> Result<Trajectory> {
    if q.limit == 0 || q.limit > MAX_PAGE {
        return Err(QueryError::invalid(
            "limit",
            format!("must be 1 to {MAX_PAGE}, got {}", q.limit),
        ));
    }
    let mut out = Trajectory {
        events: Vec::new(),
        stays: Vec::new(),
        stays_truncated: false,
        next_cursor: None,
        attrs_at: Vec::new(),
    };
    let Some(mut merged) = merged(ctx, q)? else {
        return Ok(out);
    };
    merged.skip_to_cursor(ctx)?;
    // Stays (first page only) need the whole range; the page, its first events.
    let mut stays = q.cursor.is_none().then(Stays::default);
    let mut rows = Vec::new();
    let mut seen = 0usize;
    loop {
        if rows.len() == q.limit && stays.as_ref().is_none_or(|s| s.truncated) {
            break;
        }
        let want = rows.len() < q.limit;
        let Some((row, at)) = merged.next(want) else {
            break;
        };
        if let Some(s) = stays.as_mut() {
            s.push(&row);
        }
        if let Some(at) = at {
            rows.push(row);
            out.attrs_at.push(at);
        }
        seen += 1;
        if seen.is_multiple_of(1 << 16) {
            ctx.check_deadline()?;
        }
    }
    // Events past the page: passed for the stays, or next in line.
    let more = seen > rows.len() || merged.peek().is_some();
    let dicts = ctx.store.dictionaries();
    let names = Names { dicts: &dicts };
    if let Some(s) = stays {
        out.stays_truncated = s.truncated;
        out.stays = s.finish(&names);
    }
    // Only the page is turned into strings.
    out.events = names.sightings(&rows);
    out.next_cursor = more.then(|| {
        let last = out
            .events
            .last()
            .expect("a page before the end is not empty");
        Cursor {
            ts_ms: last.ts_ms,
            device: last.device.to_string(),
            seq: last.seq,
        }
    });
    Ok(out)
}

/// The whole trajectory after `q.cursor` (`q.limit` is ignored): first `start` is told
/// how many events follow (it may decline, returning false), then `page` is handed
/// them in pages of `page_size` with where their attributes are, in trajectory order,
/// while it returns true. The count is what the runs hold past the cursor; the events
/// are merged as they are handed over, never held whole; names are resolved a page at
/// a time, so a caller that streams holds one page. Returns the number of events
/// handed over.
pub fn trajectory_pages(
    ctx: &QueryContext<'_>,
    q: &TrajectoryQuery,
    page_size: usize,
    start: impl FnOnce(usize) -> bool,
    mut page: impl FnMut(&[Sighting], &[sightline_storage::AttrsAt]) -> bool,
) -> Result<usize> {
    let mut merged = match merged(ctx, q)? {
        Some(mut m) => {
            m.skip_to_cursor(ctx)?;
            Some(m)
        }
        None => None,
    };
    let count = merged.as_ref().map_or(0, Merged::remaining);
    if !start(count) {
        return Ok(0);
    }
    let Some(merged) = merged.as_mut() else {
        return Ok(0);
    };
    let page_size = page_size.max(1);
    let mut sent = 0;
    while sent < count {
        let want = page_size.min(count - sent);
        let mut rows = Vec::with_capacity(want);
        let mut attrs = Vec::with_capacity(want);
        while rows.len() < want {
            let Some((row, Some(at))) = merged.next(true) else {
                break;
            };
            rows.push(row);
            attrs.push(at);
        }
        if rows.is_empty() {
            break;
        }
        // The dictionary lock is held only while names are resolved, not while the
        // page is consumed (a streaming caller may wait on a slow client).
        let events = {
            let dicts = ctx.store.dictionaries();
            Names { dicts: &dicts }.sightings(&rows)
        };
        sent += events.len();
        if !page(&events, &attrs) {
            break;
        }
    }
    Ok(sent)
}

/// The subject's events in the query's range and places, ready to merge; `None` when
/// the store never saw the subject.
fn merged(ctx: &QueryContext<'_>, q: &TrajectoryQuery) -> Result<Option<Merged>> {
    ctx.check_range(q.from_ms, q.to_ms)?;
    let Some(subject) = ctx.subject_id(q.kind, &q.subject)? else {
        return Ok(None);
    };
    let communities = q.communities.as_ref().map(|c| ctx.community_ids(c));
    let runs = ctx.subject_runs(subject, q.from_ms, q.to_ms, communities.as_deref());
    let dicts = ctx.store.dictionaries();
    Ok(Some(Merged::new(
        runs,
        &Names { dicts: &dicts },
        q.cursor.as_ref(),
    )))
}

/// A k-way merge of per-device runs into trajectory order: (ts, device code, seq).
/// Devices are ranked by code once (ranks doubled, so a cursor's device that holds no
/// event ranks between its neighbours); the heap holds one event per run.
struct Merged {
    runs: Vec<SubjectRun>,
    /// By run: its device's rank.
    rank: Vec<u32>,
    /// Each run's current event, smallest first.
    heap: BinaryHeap<Reverse<Head>>,
    /// The cursor's position in the same key space.
    cursor: Option<(i64, u32, u64)>,
}

/// A run's current event keyed by (ts, device rank, seq, run): unique by run.
type Head = (i64, u32, u64, usize, Row);

impl Merged {
    fn new(mut runs: Vec<SubjectRun>, names: &Names<'_>, cursor: Option<&Cursor>) -> Merged {
        let by_run: Vec<&str> = runs.iter().map(|r| names.device(r.device())).collect();
        let mut codes = by_run.clone();
        codes.sort_unstable();
        codes.dedup();
        let rank_of = |code: &str| match codes.binary_search(&code) {
            Ok(i) => 2 * i as u32 + 1,
            Err(i) => 2 * i as u32,
        };
        let rank: Vec<u32> = by_run.iter().map(|c| rank_of(c)).collect();
        let cursor = cursor.map(|c| (c.ts_ms, rank_of(&c.device), c.seq));
        let mut heap = BinaryHeap::with_capacity(runs.len());
        for (i, run) in runs.iter_mut().enumerate() {
            if let Some(r) = run.row() {
                heap.push(Reverse((r.ts_ms, rank[i], r.seq, i, r)));
            }
        }
        Merged {
            runs,
            rank,
            heap,
            cursor,
        }
    }

    /// Events not yet taken.
    fn remaining(&self) -> usize {
        self.runs.iter().map(SubjectRun::remaining).sum()
    }

    /// The next event, without taking it.
    fn peek(&self) -> Option<&Row> {
        self.heap.peek().map(|Reverse((.., row))| row)
    }

    /// Takes the next event, with where its attributes are when `attrs`.
    fn next(&mut self, attrs: bool) -> Option<(Row, Option<sightline_storage::AttrsAt>)> {
        let Reverse((.., i, row)) = self.heap.pop()?;
        let run = &mut self.runs[i];
        let at = if attrs { run.attrs() } else { None };
        run.advance();
        if let Some(r) = run.row() {
            self.heap
                .push(Reverse((r.ts_ms, self.rank[i], r.seq, i, r)));
        }
        Some((row, at))
    }

    /// Passes the events at or before the cursor (all of them are read: runs are
    /// ordered by time within a device, not across devices).
    fn skip_to_cursor(&mut self, ctx: &QueryContext<'_>) -> Result<()> {
        let Some(cursor) = self.cursor else {
            return Ok(());
        };
        let mut n = 0usize;
        while let Some(Reverse((ts, rank, seq, ..))) = self.heap.peek() {
            if (*ts, *rank, *seq) > cursor {
                break;
            }
            self.next(false);
            n += 1;
            if n.is_multiple_of(1 << 16) {
                ctx.check_deadline()?;
            }
        }
        Ok(())
    }
}

/// Stays from events in trajectory order (see SEMANTICS.md), the first [`MAX_STAYS`].
#[derive(Default)]
struct Stays {
    /// (community, in, out, how it ended).
    done: Vec<(u32, i64, Option<i64>, StayEnd)>,
    /// (community, in_ms) of the open stay.
    open: Option<(u32, i64)>,
    /// A stay past [`MAX_STAYS`] ended: the rest are not kept.
    truncated: bool,
}

impl Stays {
    fn push(&mut self, r: &Row) {
        if self.truncated {
            return;
        }
        if let Some((community, in_ms)) = self.open {
            let ended_by = if r.community != community {
                Some(StayEnd::Elsewhere)
            } else if r.direction == Direction::Out {
                Some(StayEnd::Out)
            } else {
                None
            };
            if let Some(ended_by) = ended_by {
                self.end(community, in_ms, Some(r.ts_ms), ended_by);
                self.open = None;
            }
        }
        if self.open.is_none() && !self.truncated && r.direction == Direction::In {
            self.open = Some((r.community, r.ts_ms));
        }
    }

    fn end(&mut self, community: u32, in_ms: i64, out_ms: Option<i64>, ended_by: StayEnd) {
        if self.done.len() == MAX_STAYS {
            self.truncated = true;
            self.open = None;
        } else {
            self.done.push((community, in_ms, out_ms, ended_by));
        }
    }

    fn finish(mut self, names: &Names<'_>) -> Vec<Stay> {
        if let Some((community, in_ms)) = self.open.take() {
            self.end(community, in_ms, None, StayEnd::Open);
        }
        self.done
            .into_iter()
            .map(|(community, in_ms, out_ms, ended_by)| Stay {
                community: names.community(community),
                in_ms,
                out_ms,
                ended_by,
            })
            .collect()
    }
}
