//! Trajectory: where a subject was, in time order, with the stays it implies.

use std::fmt;
use std::str::FromStr;

use sightline_storage::{Direction, Kind, Row};

use crate::context::{sort_by_event_order, Names, QueryContext, Sighting};
use crate::error::{QueryError, Result};

/// Most events per page.
pub const MAX_PAGE: usize = 10_000;

#[derive(Clone, Debug)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StayEnd {
    /// An `out` at the same community.
    Out,
    /// A sighting at another community.
    Elsewhere,
    /// Nothing closed it within the range.
    Open,
}

/// A dwell interval at one community derived from gate directions.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// Stays over the whole range; on the first page only (empty when `cursor` is set).
    pub stays: Vec<Stay>,
    pub next_cursor: Option<Cursor>,
    /// Where each event's attributes are (same order as `events`); see
    /// [`Trajectory::attrs`].
    pub attrs_at: Vec<sightline_storage::AttrsAt>,
}

impl Trajectory {
    /// The page's events' attributes, decoded now (same order as `events`).
    pub fn attrs(&self) -> Result<Vec<sightline_storage::Attrs>> {
        self.attrs_at
            .iter()
            .map(|a| a.decode().map_err(QueryError::from))
            .collect()
    }
}

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
        next_cursor: None,
        attrs_at: Vec::new(),
    };
    let Some((rows, mut attrs_at)) = sorted_rows(ctx, q)? else {
        return Ok(out);
    };
    let dicts = ctx.store.dictionaries();
    let names = Names { dicts: &dicts };
    if q.cursor.is_none() {
        out.stays = stays(&rows, &names);
    }
    let start = start_of(&rows, q.cursor.as_ref(), &names);
    let end = (start + q.limit).min(rows.len());
    // Only the page is turned into strings.
    out.events = names.sightings(&rows[start..end]);
    out.next_cursor = (end < rows.len()).then(|| {
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
    attrs_at.truncate(end);
    attrs_at.drain(..start);
    out.attrs_at = attrs_at;
    Ok(out)
}

/// The whole trajectory after `q.cursor` (`q.limit` is ignored): first `start` is told
/// how many events follow (it may decline, returning false), then `page` is handed
/// them in pages of `page_size` with where their attributes are, in trajectory order,
/// while it returns true. The rows are read and sorted once; names are resolved a page
/// at a time, so a caller that streams holds one page of strings. Returns the number
/// of events handed over.
pub fn trajectory_pages(
    ctx: &QueryContext<'_>,
    q: &TrajectoryQuery,
    page_size: usize,
    start: impl FnOnce(usize) -> bool,
    mut page: impl FnMut(&[Sighting], &[sightline_storage::AttrsAt]) -> bool,
) -> Result<usize> {
    let (rows, attrs_at) = sorted_rows(ctx, q)?.unwrap_or_default();
    let first = {
        let dicts = ctx.store.dictionaries();
        start_of(&rows, q.cursor.as_ref(), &Names { dicts: &dicts })
    };
    if !start(rows.len() - first) {
        return Ok(0);
    }
    let mut sent = 0;
    for (rows, attrs) in rows[first..]
        .chunks(page_size.max(1))
        .zip(attrs_at[first..].chunks(page_size.max(1)))
    {
        // The dictionary lock is held only while names are resolved, not while the
        // page is consumed (a streaming caller may wait on a slow client).
        let events = {
            let dicts = ctx.store.dictionaries();
            Names { dicts: &dicts }.sightings(rows)
        };
        sent += events.len();
        if !page(&events, attrs) {
            break;
        }
    }
    Ok(sent)
}

/// The subject's rows in the query's range and places, in trajectory order, with
/// where their attributes are; `None` when the store never saw the subject.
#[allow(clippy::type_complexity)]
fn sorted_rows(
    ctx: &QueryContext<'_>,
    q: &TrajectoryQuery,
) -> Result<Option<(Vec<Row>, Vec<sightline_storage::AttrsAt>)>> {
    ctx.check_range(q.from_ms, q.to_ms)?;
    let Some(subject) = ctx.subject_id(q.kind, &q.subject)? else {
        return Ok(None);
    };
    let communities = q.communities.as_ref().map(|c| ctx.community_ids(c));
    let mut located = ctx.subject_rows_located(subject, q.from_ms, q.to_ms, communities.as_deref());
    let dicts = ctx.store.dictionaries();
    sort_by_event_order(&mut located, |(r, _)| r, &Names { dicts: &dicts });
    Ok(Some(located.into_iter().unzip()))
}

/// Where a page starting after `cursor` begins in `rows`.
fn start_of(rows: &[Row], cursor: Option<&Cursor>, names: &Names<'_>) -> usize {
    match cursor {
        None => 0,
        Some(c) => rows.partition_point(|r| {
            (r.ts_ms, names.device(r.device), r.seq) <= (c.ts_ms, c.device.as_str(), c.seq)
        }),
    }
}

/// Stays from rows in trajectory order (see SEMANTICS.md).
pub(crate) fn stays(rows: &[Row], names: &Names<'_>) -> Vec<Stay> {
    let mut out = Vec::new();
    let stay = |community: u32, in_ms, out_ms, ended_by| Stay {
        community: names.community(community),
        in_ms,
        out_ms,
        ended_by,
    };
    // (community, in_ms) of the open stay.
    let mut open: Option<(u32, i64)> = None;
    for r in rows {
        if let Some((community, in_ms)) = open {
            let ended_by = if r.community != community {
                Some(StayEnd::Elsewhere)
            } else if r.direction == Direction::Out {
                Some(StayEnd::Out)
            } else {
                None
            };
            if let Some(ended_by) = ended_by {
                out.push(stay(community, in_ms, Some(r.ts_ms), ended_by));
                open = None;
            }
        }
        if open.is_none() && r.direction == Direction::In {
            open = Some((r.community, r.ts_ms));
        }
    }
    if let Some((community, in_ms)) = open {
        out.push(stay(community, in_ms, None, StayEnd::Open));
    }
    out
}
