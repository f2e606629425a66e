//! Trajectory: where a subject was, in time order, with the stays it implies.

use std::fmt;
use std::str::FromStr;

use std::cmp::Reverse;
use std::collections::binary_heap::{BinaryHeap, PeekMut};
use std::sync::Arc;

use compact_str::CompactString;

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
    pub community: Arc<str>,
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
    let mut stays = q
        .cursor
        .is_none()
        .then(|| Stays::with_capacity(merged.remaining()));
    let page = q.limit.min(merged.remaining());
    out.events.reserve(page);
    out.attrs_at.reserve(page);
    let mut seen = 0usize;
    loop {
        if out.events.len() == q.limit && stays.as_ref().is_none_or(|s| s.truncated) {
            break;
        }
        let Some(next) = merged.next()? else {
            break;
        };
        if let Some(s) = stays.as_mut() {
            s.push(&next.row);
        }
        if out.events.len() < q.limit {
            out.events.push(merged.sighting(&next));
            out.attrs_at.push(merged.attrs(&next));
        }
        seen += 1;
        if seen.is_multiple_of(1 << 16) {
            ctx.check_deadline()?;
        }
    }
    // Events past the page: passed for the stays, or next in line.
    let more = seen > out.events.len() || merged.peek()?.is_some();
    if let Some(s) = stays {
        out.stays_truncated = s.truncated;
        out.stays = s.finish(&merged);
    }
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
/// are merged as they are handed over, never held whole, so a caller that streams
/// holds one page (names were resolved once, before the first). Returns the number of
/// events handed over.
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
        let mut events = Vec::with_capacity(want);
        let mut attrs = Vec::with_capacity(want);
        while events.len() < want {
            let Some(next) = merged.next()? else {
                break;
            };
            events.push(merged.sighting(&next));
            attrs.push(merged.attrs(&next));
        }
        if events.is_empty() {
            break;
        }
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
    let runs = ctx.subject_runs(subject, q.from_ms, q.to_ms, communities.as_deref())?;
    let dicts = ctx.store.dictionaries();
    Ok(Some(Merged::new(
        runs,
        subject,
        &Names { dicts: &dicts },
        q.cursor.as_ref(),
    )))
}

/// A position in trajectory order: (ts, device rank, seq).
type Key = (i64, u32, u64);

/// One event the merge hands over: its row, its run and its position there.
struct Next {
    row: Row,
    run: usize,
    position: u32,
}

/// Events a run decodes at a time ([`SubjectRun::drain`]).
const CHUNK: usize = 512;

/// A k-way merge of per-device runs into trajectory order: (ts, device code, seq).
/// Devices are ranked by code once (ranks doubled, so a cursor's device that holds no
/// event ranks between its neighbours). A run is decoded [`CHUNK`] events at a time,
/// and its first chunk only when the merge reaches its first event, so runs of later
/// days wait undecoded: the heap holds the runs that overlap in time (a few, however
/// long the history; all of a shard's delta segments when late events made many) and
/// memory at most a chunk of each. Names are resolved once, by run, when the merge is
/// built.
struct Merged {
    runs: Vec<SubjectRun>,
    subject: u32,
    /// By run: its device's rank.
    rank: Vec<u32>,
    /// By run: its community's and its device's names.
    names: Vec<(CompactString, CompactString)>,
    /// The subject's kind and name.
    subject_name: (Kind, Arc<str>),
    /// The runs' communities' names, by id, sorted.
    communities: Vec<(u32, Arc<str>)>,
    /// Runs not yet decoded by a key at or before their first event's (their time's
    /// lower bound), the earliest last.
    pending: Vec<(i64, usize)>,
    /// By run: its decoded chunk and the index of the next event in it.
    decoded: Vec<(Vec<(Row, u32)>, usize)>,
    /// Buffers of finished runs, for the next runs decoded.
    spare: Vec<Vec<(Row, u32)>>,
    /// The decoded runs' next events, smallest first (keys are unique: seq is).
    heap: BinaryHeap<Reverse<(Key, usize)>>,
    /// The cursor's position in the same key space.
    cursor: Option<Key>,
    /// Events not yet handed over.
    remaining: usize,
}

impl Merged {
    fn new(
        runs: Vec<SubjectRun>,
        subject: u32,
        names: &Names<'_>,
        cursor: Option<&Cursor>,
    ) -> Merged {
        // Devices ranked by code: the few distinct ones sorted, then each run's found.
        let mut ids: Vec<u32> = runs.iter().map(SubjectRun::device).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut codes: Vec<(&str, u32)> = ids.iter().map(|&d| (names.device(d), d)).collect();
        codes.sort_unstable();
        let mut rank_by_id: Vec<(u32, u32)> = codes
            .iter()
            .enumerate()
            .map(|(i, &(_, d))| (d, 2 * i as u32 + 1))
            .collect();
        rank_by_id.sort_unstable();
        let rank: Vec<u32> = runs
            .iter()
            .map(|r| {
                let i = rank_by_id.partition_point(|&(d, _)| d < r.device());
                rank_by_id[i].1
            })
            .collect();
        let cursor = cursor.map(|c| {
            let rank = match codes.binary_search_by(|&(code, _)| code.cmp(c.device.as_str())) {
                Ok(i) => 2 * i as u32 + 1,
                Err(i) => 2 * i as u32,
            };
            (c.ts_ms, rank, c.seq)
        });
        let device_names: Vec<CompactString> =
            codes.iter().map(|&(c, _)| CompactString::from(c)).collect();
        let mut community_names: Vec<(u32, Arc<str>)> = Vec::new();
        let mut run_names = Vec::with_capacity(runs.len());
        let mut pending = Vec::with_capacity(runs.len());
        let mut remaining = 0;
        for (i, run) in runs.iter().enumerate() {
            let c = run.community();
            let community = match community_names.binary_search_by_key(&c, |n| n.0) {
                Ok(at) => community_names[at].1.clone(),
                Err(at) => {
                    let name: Arc<str> = Arc::from(names.community_str(c));
                    community_names.insert(at, (c, name.clone()));
                    name
                }
            };
            let community = CompactString::from(&*community);
            let device = device_names[(rank[i] / 2) as usize].clone();
            run_names.push((community, device));
            // Before every event of the run: it is decoded once the merge gets there.
            pending.push((run.ts_lower_bound(), i));
            remaining += run.remaining();
        }
        pending.sort_unstable_by_key(|&(ts, _)| Reverse(ts));
        let (kind, name) = names.subject(subject);
        Merged {
            decoded: (0..runs.len()).map(|_| (Vec::new(), 0)).collect(),
            runs,
            subject,
            rank,
            names: run_names,
            subject_name: (kind, Arc::from(name)),
            communities: community_names,
            pending,
            spare: Vec::new(),
            heap: BinaryHeap::new(),
            cursor,
            remaining,
        }
    }

    /// Events not yet taken.
    fn remaining(&self) -> usize {
        self.remaining
    }

    /// Decodes the runs that may hold an event before every decoded run's next one.
    fn activate(&mut self) -> Result<()> {
        while let Some(&(bound, run)) = self.pending.last() {
            // Every key at `bound` ms is past (bound, 0, 0): device ranks start at 1.
            if self
                .heap
                .peek()
                .is_some_and(|Reverse((next, _))| *next < (bound, 0, 0))
            {
                break;
            }
            self.pending.pop();
            let mut buf = self.spare.pop().unwrap_or_default();
            buf.clear();
            self.runs[run].drain(self.subject, CHUNK, &mut buf)?;
            match buf.first() {
                Some((r, _)) => {
                    self.heap
                        .push(Reverse(((r.ts_ms, self.rank[run], r.seq), run)));
                    self.decoded[run] = (buf, 0);
                }
                None => self.spare.push(buf),
            }
        }
        Ok(())
    }

    /// The next event's key, without taking it.
    fn peek(&mut self) -> Result<Option<Key>> {
        self.activate()?;
        Ok(self.heap.peek().map(|Reverse((key, _))| *key))
    }

    /// Takes the next event.
    fn next(&mut self) -> Result<Option<Next>> {
        self.activate()?;
        // The smallest run's next key replaces its taken one in place (one sift down),
        // rather than a pop and a push.
        let Some(mut top) = self.heap.peek_mut() else {
            return Ok(None);
        };
        let run = top.0 .1;
        let (buf, at) = &mut self.decoded[run];
        let (row, position) = buf[*at];
        *at += 1;
        if *at == buf.len() {
            buf.clear();
            *at = 0;
            self.runs[run].drain(self.subject, CHUNK, buf)?;
        }
        match buf.get(*at) {
            Some((r, _)) => top.0 = ((r.ts_ms, self.rank[run], r.seq), run),
            None => {
                PeekMut::pop(top);
                self.spare.push(std::mem::take(buf));
            }
        }
        self.remaining -= 1;
        Ok(Some(Next { row, run, position }))
    }

    /// The event as a sighting, its names shared with the run's.
    fn sighting(&self, next: &Next) -> Sighting {
        let (community, device) = &self.names[next.run];
        Sighting {
            seq: next.row.seq,
            ts_ms: next.row.ts_ms,
            community: community.clone(),
            device: device.clone(),
            kind: self.subject_name.0,
            subject: self.subject_name.1.clone(),
            direction: next.row.direction,
        }
    }

    /// Where the event's attributes are.
    fn attrs(&self, next: &Next) -> sightline_storage::AttrsAt {
        self.runs[next.run].attrs_of(next.position)
    }

    /// A community's name (one of the runs').
    fn community(&self, id: u32) -> Arc<str> {
        match self.communities.binary_search_by_key(&id, |n| n.0) {
            Ok(at) => self.communities[at].1.clone(),
            Err(_) => Arc::from("?"),
        }
    }

    /// Passes the events at or before the cursor (all of them are read: runs are
    /// ordered by time within a device, not across devices).
    fn skip_to_cursor(&mut self, ctx: &QueryContext<'_>) -> Result<()> {
        let Some(cursor) = self.cursor else {
            return Ok(());
        };
        let mut n = 0usize;
        while let Some(key) = self.peek()? {
            if key > cursor {
                break;
            }
            self.next()?;
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
    /// Room for the stays `events` events can make (each begins with an entry), at
    /// most [`MAX_STAYS`]: the list is not copied as it grows.
    fn with_capacity(events: usize) -> Stays {
        Stays {
            done: Vec::with_capacity((events / 2 + 1).min(MAX_STAYS)),
            ..Stays::default()
        }
    }

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

    fn finish(mut self, merged: &Merged) -> Vec<Stay> {
        if let Some((community, in_ms)) = self.open.take() {
            self.end(community, in_ms, None, StayEnd::Open);
        }
        self.done
            .into_iter()
            .map(|(community, in_ms, out_ms, ended_by)| Stay {
                community: merged.community(community),
                in_ms,
                out_ms,
                ended_by,
            })
            .collect()
    }
}
