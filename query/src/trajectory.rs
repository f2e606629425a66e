//! Trajectory: where a subject was, in time order, with the stays it implies.

use std::fmt;
use std::str::FromStr;

use sightline_storage::{Direction, Kind};

use crate::context::{sort_rows, Names, QueryContext, Sighting};
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trajectory {
    pub events: Vec<Sighting>,
    /// Stays over the whole range; on the first page only (empty when `cursor` is set).
    pub stays: Vec<Stay>,
    pub next_cursor: Option<Cursor>,
}

pub fn trajectory(ctx: &QueryContext<'_>, q: &TrajectoryQuery) -> Result<Trajectory> {
    ctx.check_range(q.from_ms, q.to_ms)?;
    if q.limit == 0 || q.limit > MAX_PAGE {
        return Err(QueryError::invalid(
            "limit",
            format!("must be 1 to {MAX_PAGE}, got {}", q.limit),
        ));
    }
    let empty = Trajectory {
        events: Vec::new(),
        stays: Vec::new(),
        next_cursor: None,
    };
    let Some(subject) = ctx.subject_id(q.kind, &q.subject)? else {
        return Ok(empty);
    };
    let communities = q.communities.as_ref().map(|c| ctx.community_ids(c));
    let mut rows = ctx.subject_rows(subject, q.from_ms, q.to_ms, communities.as_deref());
    let dicts = ctx.store.dictionaries();
    let names = Names { dicts: &dicts };
    sort_rows(&mut rows, &names);
    let all: Vec<Sighting> = rows.iter().map(|r| names.sighting(r)).collect();
    let stays = if q.cursor.is_none() {
        stays(&all)
    } else {
        Vec::new()
    };
    let start = match &q.cursor {
        None => 0,
        Some(c) => all.partition_point(|s| {
            (s.ts_ms, s.device.as_str(), s.seq) <= (c.ts_ms, c.device.as_str(), c.seq)
        }),
    };
    let end = (start + q.limit).min(all.len());
    let next_cursor = (end < all.len()).then(|| {
        let last = &all[end - 1];
        Cursor {
            ts_ms: last.ts_ms,
            device: last.device.clone(),
            seq: last.seq,
        }
    });
    Ok(Trajectory {
        events: all[start..end].to_vec(),
        stays,
        next_cursor,
    })
}

/// Stays from sightings in trajectory order (see SEMANTICS.md).
pub(crate) fn stays(events: &[Sighting]) -> Vec<Stay> {
    let mut out = Vec::new();
    let mut open: Option<(String, i64)> = None;
    for e in events {
        if let Some((community, in_ms)) = &open {
            let ended_by = if e.community != *community {
                Some(StayEnd::Elsewhere)
            } else if e.direction == Direction::Out {
                Some(StayEnd::Out)
            } else {
                None
            };
            if let Some(ended_by) = ended_by {
                out.push(Stay {
                    community: community.clone(),
                    in_ms: *in_ms,
                    out_ms: Some(e.ts_ms),
                    ended_by,
                });
                open = None;
            }
        }
        if open.is_none() && e.direction == Direction::In {
            open = Some((e.community.clone(), e.ts_ms));
        }
    }
    if let Some((community, in_ms)) = open {
        out.push(Stay {
            community,
            in_ms,
            out_ms: None,
            ended_by: StayEnd::Open,
        });
    }
    out
}
