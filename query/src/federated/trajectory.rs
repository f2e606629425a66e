//! Trajectory across partitions: pages and stays.
//!
//! **Pages.** The order is (ts, device code, cluster id). Each partition answers the
//! first `limit` of its events strictly after the cursor (the cluster cursor read in
//! its own ids: a cursor's id in a lower partition puts all of this partition's
//! events at the cursor's (ts, device) after it, a higher one before), and whether it
//! holds more. The merge takes the first `limit` of their union; more follow when any
//! partition held more or the union exceeds the page.
//!
//! **Stays** (first page) walk every event of the range in order, and a sighting at
//! another community closes a stay, so they depend on how the partitions' events
//! interleave. Round 1: each partition cuts its events into *runs*, maximal stretches
//! at one community in its own order, and summarises each: the stays an `out` closes
//! inside it and the stay left open at its end. A run is entered with no stay open or
//! one open elsewhere, and either way its first event closes that one and the run
//! proceeds alike, so runs that no run of another partition interleaves with are
//! stitched from their summaries alone. Round 2 (only when runs interleave): the
//! events of the interleaving stretches, walked one by one.

use serde::{Deserialize, Serialize};
use sightline_storage::{Attrs, Direction};

use super::id::{cluster_id, split_cluster_id, EventKey};
use crate::context::{QueryContext, Sighting};
use crate::error::{QueryError, Result};
use crate::{trajectory_pages, Cursor, Stay, StayEnd, TrajectoryQuery, MAX_STAYS};

/// Events resolved and handed over at a time while a partition walks its events.
const WALK_CHUNK: usize = 1000;

/// A trajectory page of a cluster: as [`crate::Trajectory`], with cluster ids
/// (`Sighting::seq`, the cursor's id) and the attributes decoded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FederatedTrajectory {
    pub events: Vec<Sighting>,
    /// Each event's attributes (same order as `events`).
    pub attrs: Vec<Attrs>,
    pub stays: Vec<Stay>,
    pub stays_truncated: bool,
    pub next_cursor: Option<Cursor>,
}

/// One partition's page: its first `limit` events after the cursor, with cluster ids.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PagePartial {
    pub events: Vec<Sighting>,
    pub attrs: Vec<Attrs>,
    /// More of its events follow the page.
    pub more: bool,
    /// Its events after the cursor, the page's included.
    pub remaining: usize,
    /// Its stay runs in order (first page only).
    pub runs: Option<Vec<StayRun>>,
}

/// A maximal stretch of a partition's events at one community, summarised for stays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StayRun {
    pub community: String,
    pub first: EventKey,
    pub last: EventKey,
    /// (in, out) of the stays an `out` closed inside the run.
    pub stays: Vec<(i64, i64)>,
    /// `in` of the stay open at the run's end.
    pub open: Option<i64>,
}

/// One event as stays need it (round 2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StayEvent {
    pub key: EventKey,
    pub community: String,
    pub direction: Direction,
}

/// The cluster cursor `c` in partition `p`'s own ids.
fn local_cursor(p: u16, c: &Cursor) -> Cursor {
    let (cp, seq) = split_cluster_id(c.seq);
    // Sequence numbers start at 1: 0 is before every event at (ts, device).
    let seq = match cp.cmp(&p) {
        std::cmp::Ordering::Equal => seq,
        std::cmp::Ordering::Less => 0,
        std::cmp::Ordering::Greater => u64::MAX,
    };
    Cursor {
        ts_ms: c.ts_ms,
        device: c.device.clone(),
        seq,
    }
}

fn key_of(s: &Sighting) -> EventKey {
    EventKey {
        ts_ms: s.ts_ms,
        device: s.device.to_string(),
        id: s.seq,
    }
}

/// Walks the partition's events of the query after its cursor in order, with cluster
/// ids, while `each` returns true. Returns how many the partition holds there.
fn walk(
    ctx: &QueryContext<'_>,
    partition: u16,
    q: &TrajectoryQuery,
    mut each: impl FnMut(Sighting, &sightline_storage::AttrsAt) -> Result<bool>,
) -> Result<usize> {
    let local = TrajectoryQuery {
        cursor: q.cursor.as_ref().map(|c| local_cursor(partition, c)),
        ..q.clone()
    };
    let mut total = 0;
    let mut failed = None;
    trajectory_pages(
        ctx,
        &local,
        WALK_CHUNK,
        |n| {
            total = n;
            true
        },
        |events, attrs| {
            for (s, at) in events.iter().zip(attrs) {
                let mut s = s.clone();
                s.seq = cluster_id(partition, s.seq);
                match each(s, at) {
                    Ok(true) => {}
                    Ok(false) => return false,
                    Err(e) => {
                        failed = Some(e);
                        return false;
                    }
                }
            }
            true
        },
    )?;
    match failed {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

pub(crate) fn page(
    ctx: &QueryContext<'_>,
    partition: u16,
    q: &TrajectoryQuery,
    with_runs: bool,
) -> Result<PagePartial> {
    super::check::trajectory(q, ctx.max_range_days)?;
    if with_runs && q.cursor.is_some() {
        return Err(QueryError::invalid("cursor", "stays are of the first page"));
    }
    let mut out = PagePartial {
        events: Vec::new(),
        attrs: Vec::new(),
        more: false,
        remaining: 0,
        runs: None,
    };
    let mut runs = with_runs.then(Runs::default);
    let mut seen = 0usize;
    let total = walk(ctx, partition, q, |s, at| {
        if let Some(r) = runs.as_mut() {
            r.push(key_of(&s), &s.community, s.direction);
        }
        if out.events.len() < q.limit {
            out.attrs.push(at.decode()?);
            out.events.push(s);
        }
        seen += 1;
        if seen.is_multiple_of(1 << 16) {
            ctx.check_deadline()?;
        }
        Ok(runs.is_some() || out.events.len() < q.limit)
    })?;
    out.more = total > out.events.len();
    out.remaining = total;
    out.runs = runs.map(|r| r.runs);
    Ok(out)
}

/// The partition's events (as stays need them) with keys inside `within` (sorted,
/// disjoint, inclusive ranges).
pub(crate) fn stay_events(
    ctx: &QueryContext<'_>,
    partition: u16,
    q: &TrajectoryQuery,
    within: &[(EventKey, EventKey)],
) -> Result<Vec<StayEvent>> {
    super::check::trajectory(q, ctx.max_range_days)?;
    let q = TrajectoryQuery {
        cursor: None,
        ..q.clone()
    };
    let mut out = Vec::new();
    let mut at = 0;
    walk(ctx, partition, &q, |s, _| {
        let key = key_of(&s);
        while at < within.len() && within[at].1 < key {
            at += 1;
        }
        if at == within.len() {
            return Ok(false);
        }
        if within[at].0 <= key {
            out.push(StayEvent {
                key,
                community: s.community.to_string(),
                direction: s.direction,
            });
        }
        Ok(true)
    })?;
    Ok(out)
}

/// Cuts a partition's events into runs. Stops after the stay that makes more than
/// [`MAX_STAYS`] here: the merged stays, which hold at least these, are cut by then.
#[derive(Default)]
struct Runs {
    runs: Vec<StayRun>,
    stays: usize,
    full: bool,
}

impl Runs {
    fn push(&mut self, key: EventKey, community: &str, direction: Direction) {
        if self.full {
            return;
        }
        let ts = key.ts_ms;
        match self.runs.last_mut() {
            Some(r) if r.community == community => r.last = key,
            _ => self.runs.push(StayRun {
                community: community.to_string(),
                first: key.clone(),
                last: key,
                stays: Vec::new(),
                open: None,
            }),
        }
        let r = self.runs.last_mut().expect("pushed above");
        match direction {
            Direction::Out => {
                if let Some(in_ms) = r.open.take() {
                    r.stays.push((in_ms, ts));
                    self.stays += 1;
                    self.full = self.stays > MAX_STAYS;
                }
            }
            Direction::In => {
                r.open.get_or_insert(ts);
            }
            Direction::Unknown => {}
        }
    }
}

/// The first `limit` of the partitions' pages, and the cursor after them.
pub(crate) fn merge_page(
    parts: &mut [PagePartial],
    limit: usize,
) -> (Vec<Sighting>, Vec<Attrs>, Option<Cursor>) {
    let mut more = parts.iter().any(|p| p.more);
    let mut all: Vec<(Sighting, Attrs)> = parts
        .iter_mut()
        .flat_map(|p| {
            std::mem::take(&mut p.events)
                .into_iter()
                .zip(std::mem::take(&mut p.attrs))
        })
        .collect();
    all.sort_by(|(a, _), (b, _)| (a.ts_ms, &*a.device, a.seq).cmp(&(b.ts_ms, &*b.device, b.seq)));
    more |= all.len() > limit;
    all.truncate(limit);
    let cursor = more.then(|| {
        let (last, _) = all.last().expect("a page before the end is not empty");
        Cursor {
            ts_ms: last.ts_ms,
            device: last.device.to_string(),
            seq: last.seq,
        }
    });
    let (events, attrs) = all.into_iter().unzip();
    (events, attrs, cursor)
}

/// All partitions' runs in order of their first events, and the key ranges where runs
/// of different partitions interleave (sorted, disjoint): round 2 reads those.
pub(crate) fn interleaved(runs: &mut [StayRun]) -> Vec<(EventKey, EventKey)> {
    runs.sort_by(|a, b| a.first.cmp(&b.first));
    let mut out: Vec<(EventKey, EventKey, usize)> = Vec::new();
    for r in runs.iter() {
        match out.last_mut() {
            // Runs of one partition never overlap: an overlap is another partition's.
            Some((_, last, n)) if r.first < *last => {
                if r.last > *last {
                    *last = r.last.clone();
                }
                *n += 1;
            }
            _ => out.push((r.first.clone(), r.last.clone(), 1)),
        }
    }
    out.into_iter()
        .filter(|(.., n)| *n > 1)
        .map(|(a, b, _)| (a, b))
        .collect()
}

/// Whether one of `runs` starts inside `within` (sorted, disjoint, inclusive): its
/// partition holds events there.
pub(crate) fn touches(runs: &[StayRun], within: &[(EventKey, EventKey)]) -> bool {
    runs.iter().any(|r| inside(within, &r.first))
}

fn inside(within: &[(EventKey, EventKey)], k: &EventKey) -> bool {
    let i = within.partition_point(|(_, last)| last < k);
    i < within.len() && within[i].0 <= *k
}

/// The stays: runs outside `within` from their summaries, `events` (those inside)
/// one by one, in event order.
pub(crate) fn stays(
    runs: &[StayRun],
    within: &[(EventKey, EventKey)],
    events: &[StayEvent],
) -> (Vec<Stay>, bool) {
    enum Item<'a> {
        Run(&'a StayRun),
        Event(&'a StayEvent),
    }
    let mut items: Vec<(&EventKey, Item<'_>)> = runs
        .iter()
        .filter(|r| !inside(within, &r.first))
        .map(|r| (&r.first, Item::Run(r)))
        .chain(events.iter().map(|e| (&e.key, Item::Event(e))))
        .collect();
    items.sort_by(|a, b| a.0.cmp(b.0));
    let mut m = Machine::default();
    for (_, item) in items {
        match item {
            Item::Run(r) => m.run(r),
            Item::Event(e) => m.event(e),
        }
    }
    m.finish()
}

/// The stay rules of SEMANTICS.md over runs and events in order.
#[derive(Default)]
struct Machine {
    done: Vec<Stay>,
    open: Option<(String, i64)>,
    truncated: bool,
}

impl Machine {
    fn end(&mut self, community: String, in_ms: i64, out_ms: Option<i64>, ended_by: StayEnd) {
        if self.done.len() == MAX_STAYS {
            self.truncated = true;
            self.open = None;
        } else {
            self.done.push(Stay {
                community: community.into(),
                in_ms,
                out_ms,
                ended_by,
            });
        }
    }

    fn event(&mut self, e: &StayEvent) {
        if self.truncated {
            return;
        }
        if let Some((community, in_ms)) = self.open.take() {
            let ended_by = if e.community != community {
                Some(StayEnd::Elsewhere)
            } else if e.direction == Direction::Out {
                Some(StayEnd::Out)
            } else {
                None
            };
            match ended_by {
                Some(how) => self.end(community, in_ms, Some(e.key.ts_ms), how),
                None => self.open = Some((community, in_ms)),
            }
        }
        if self.open.is_none() && !self.truncated && e.direction == Direction::In {
            self.open = Some((e.community.clone(), e.key.ts_ms));
        }
    }

    /// A run no other partition interleaves with: entered with no stay open or one
    /// open at another community, which its first event closes.
    fn run(&mut self, r: &StayRun) {
        if self.truncated {
            return;
        }
        if let Some((community, in_ms)) = self.open.take() {
            debug_assert_ne!(community, r.community, "runs are maximal");
            self.end(community, in_ms, Some(r.first.ts_ms), StayEnd::Elsewhere);
        }
        for &(in_ms, out_ms) in &r.stays {
            if self.truncated {
                return;
            }
            self.end(r.community.clone(), in_ms, Some(out_ms), StayEnd::Out);
        }
        if !self.truncated {
            self.open = r.open.map(|in_ms| (r.community.clone(), in_ms));
        }
    }

    fn finish(mut self) -> (Vec<Stay>, bool) {
        if let Some((community, in_ms)) = self.open.take() {
            self.end(community, in_ms, None, StayEnd::Open);
        }
        (self.done, self.truncated)
    }
}
