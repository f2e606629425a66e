//! The change feed of a cluster: events in each partition's commit (sequence) order
//! after a [`FeedCursor`], a vector of positions, one per partition.
//!
//! A single store's feed cursor is one event id, since its ids only grow and become
//! readable in id order. A cluster has no such order across partitions (each numbers
//! its own events, `partition << 48 | local seq`), but within a partition it has: so
//! the cluster's cursor is a partition's last local sequence number read, for every
//! partition (Kafka's consumer offsets, one per partition of a topic). A page is a
//! prefix of each partition's events after its position; the cursor after it moves
//! each partition to the last event of its prefix (or, when a partition was read to
//! its end, past the events the filters left out), and a partition that did not
//! answer keeps its position. So a consumer resuming from the last cursor it
//! processed misses nothing and gets nothing twice. Positions are local sequence
//! numbers, which agree whoever answers (the owner, a replica, a later owner); a
//! replica that has not yet appended as far as a cursor answers nothing past it
//! (`max(after, through)`), never an earlier position.

use std::collections::BinaryHeap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sightline_storage::{Attrs, Kind, Store};

use super::id::SEQ_BITS;
use crate::error::{QueryError, Result};
use crate::Sighting;

/// Every partition's position: the last local sequence number read (0: none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedCursor(pub Vec<u64>);

impl FeedCursor {
    /// The start of every partition.
    pub fn start(partitions: u16) -> FeedCursor {
        FeedCursor(vec![0; usize::from(partitions)])
    }

    /// Parses a cursor of a cluster of `partitions`: `0` (or nothing) for the start,
    /// else `partition:seq` pairs separated by `.`, partitions ascending, those at 0
    /// left out (what [`fmt::Display`] writes). The reason when it is not one.
    pub fn parse(text: &str, partitions: u16) -> std::result::Result<FeedCursor, String> {
        let text = text.trim();
        let mut cursor = FeedCursor::start(partitions);
        if text.is_empty() || text == "0" {
            return Ok(cursor);
        }
        let mut last: Option<u16> = None;
        for pair in text.split('.') {
            let Some((p, seq)) = pair.split_once(':') else {
                return Err(format!(
                    "{text:?} is not a cluster feed cursor: a cluster's cursor is the \
                     `next_after` of a page (`partition:seq` pairs joined by `.`), not an event id"
                ));
            };
            let p: u16 = p
                .parse()
                .map_err(|_| format!("{p:?} is not a partition number"))?;
            let seq: u64 = seq
                .parse()
                .map_err(|_| format!("{seq:?} is not a sequence number"))?;
            if p >= partitions {
                return Err(format!(
                    "partition {p}: the cluster has {partitions} partitions"
                ));
            }
            if last.is_some_and(|l| l >= p) {
                return Err(format!("partition {p} out of order or repeated"));
            }
            if seq >= 1 << SEQ_BITS {
                return Err(format!("sequence number {seq} past 2^{SEQ_BITS}"));
            }
            last = Some(p);
            cursor.0[usize::from(p)] = seq;
        }
        Ok(cursor)
    }
}

impl fmt::Display for FeedCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut any = false;
        for (p, seq) in self.0.iter().enumerate().filter(|(_, s)| **s > 0) {
            if any {
                f.write_str(".")?;
            }
            write!(f, "{p}:{seq}")?;
            any = true;
        }
        if !any {
            f.write_str("0")?;
        }
        Ok(())
    }
}

/// What one partition is asked for: its events after `after` (a local sequence
/// number), at most `limit`, of `kind` and of `communities` (codes; all when `None`),
/// within the request's scope.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FeedAsk {
    pub after: u64,
    pub limit: usize,
    pub kind: Option<Kind>,
    pub communities: Option<Vec<String>>,
}

/// One partition's page: its events in sequence order (cluster ids), the local
/// position the next page starts from, and whether its scan stopped at the limit
/// (more events, matching or not, past `next_after`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FeedPartial {
    pub events: Vec<(Sighting, Attrs)>,
    pub next_after: u64,
    /// Absent from an older node's answer: taken as more, so a poll asks again at
    /// once rather than missing a backlog.
    #[serde(default = "more_by_default")]
    pub more: bool,
}

fn more_by_default() -> bool {
    true
}

/// Partition `p`'s page (`serve`'s `feed::page`, in cluster ids). `scope`: the
/// caller's community codes (all when `None`).
pub(crate) fn page(
    store: &Store,
    p: u16,
    scope: Option<&[String]>,
    ask: &FeedAsk,
) -> Result<FeedPartial> {
    if ask.limit == 0 {
        return Err(QueryError::invalid("limit", "at least 1"));
    }
    // Before the codes are resolved: a community whose first events land between the
    // two reads is then either unknown here, its events past `through` (read by the
    // next page), or known; never resolved too late with its events already passed.
    let through = store.applied_through();
    let communities: Option<Vec<u32>> = {
        let allowed = |c: &&String| scope.is_none_or(|s| s.contains(c));
        let codes: Option<Vec<&String>> = match (&ask.communities, scope) {
            (None, None) => None,
            (Some(asked), _) => Some(asked.iter().filter(allowed).collect()),
            (None, Some(s)) => Some(s.iter().collect()),
        };
        codes.map(|codes| {
            let d = store.dictionaries();
            let mut ids: Vec<u32> = codes.iter().filter_map(|c| d.community_id(c)).collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        })
    };
    let rows = store.scan_seq_range(ask.after, through, ask.limit, communities.as_deref())?;
    let more = rows.len() == ask.limit;
    let next_after = match more {
        true => rows.last().map_or(through, |(r, _)| r.seq),
        false => through.max(ask.after),
    };
    let kept: Vec<_> = rows
        .into_iter()
        .filter(|(r, _)| ask.kind.is_none_or(|k| k == r.kind))
        .collect();
    let plain: Vec<sightline_storage::Row> = kept.iter().map(|(r, _)| *r).collect();
    let sightings = crate::sightings(store, &plain);
    let mut events = Vec::with_capacity(kept.len());
    for (mut s, (_, at)) in sightings.into_iter().zip(kept) {
        s.seq = super::cluster_id(p, s.seq);
        events.push((s, at.decode()?));
    }
    Ok(FeedPartial {
        events,
        next_after,
        more,
    })
}

/// The cluster's page: every partition's answer (`Err` where it did not answer).
#[derive(Debug)]
pub struct FeedPage {
    /// At most the page's limit, merged by capture time at each partition's head.
    pub events: Vec<(Sighting, Attrs)>,
    /// The cursor to go on from.
    pub next: FeedCursor,
    /// Partitions that did not answer, with why: their positions did not move.
    pub unavailable: Vec<(u16, QueryError)>,
    /// How many partitions were asked.
    pub asked: usize,
    /// Whether a partition that answered has events (matching the filters or not)
    /// past its new position: a poll asks again at once rather than waiting.
    pub more: bool,
}

/// Merges the partitions' pages from `cursor`, at most `limit` events in all, what is
/// taken of a partition a prefix of its page. Each partition with events first gets
/// a share of the page (`limit` / those with events, at least one, taken in the order
/// of their heads' capture time while the page has room), so a partition with a
/// backlog of old capture times cannot starve the others; the rest of the page goes
/// by a k-way merge by `(ts, id)` at the partitions' heads. The page lists what is
/// taken merged by `(ts, id)` at the heads. A partition whose page was taken whole
/// moves to its `next_after`; one cut short, to its last event taken; one that
/// failed stays.
pub(crate) fn merge(
    cursor: &FeedCursor,
    answers: Vec<(u16, Result<FeedPartial>)>,
    limit: usize,
) -> FeedPage {
    let asked = answers.len();
    let mut next = cursor.clone();
    let mut unavailable = Vec::new();
    let mut pages: Vec<(u16, FeedPartial)> = Vec::new();
    for (p, a) in answers {
        match a {
            Ok(page) => pages.push((p, page)),
            Err(e) => unavailable.push((p, e)),
        }
    }
    let lens: Vec<usize> = pages.iter().map(|(_, page)| page.events.len()).collect();
    let with_events = lens.iter().filter(|&&n| n > 0).count();
    let share = (limit / with_events.max(1)).max(1);
    // The shares first, then the rest of the page by time: how much of each.
    let mut taken = vec![0usize; pages.len()];
    let mut total = 0usize;
    for quota in [Some(share), None] {
        let mut heads = heads_at(&pages, &taken);
        while total < limit {
            let Some(std::cmp::Reverse((_, _, i))) = heads.pop() else {
                break;
            };
            taken[i] += 1;
            total += 1;
            if taken[i] < lens[i] && quota.is_none_or(|q| taken[i] < q) {
                let (s, _) = &pages[i].1.events[taken[i]];
                heads.push(std::cmp::Reverse((s.ts_ms, s.seq, i)));
            }
        }
    }
    debug_assert!(total <= limit && taken.iter().zip(&lens).all(|(t, n)| t <= n));
    // What is taken, listed by a k-way merge of the prefixes at their heads.
    let mut order: Vec<(usize, usize)> = Vec::with_capacity(total);
    let mut at = vec![0usize; pages.len()];
    let mut heads = heads_at(&pages, &at);
    heads.retain(|std::cmp::Reverse((_, _, i))| taken[*i] > 0);
    while let Some(std::cmp::Reverse((_, _, i))) = heads.pop() {
        order.push((i, at[i]));
        at[i] += 1;
        if at[i] < taken[i] {
            let (s, _) = &pages[i].1.events[at[i]];
            heads.push(std::cmp::Reverse((s.ts_ms, s.seq, i)));
        }
    }
    let more = pages
        .iter()
        .zip(&taken)
        .any(|((_, page), &t)| page.more || t < page.events.len());
    for (i, (p, page)) in pages.iter().enumerate() {
        let pos = &mut next.0[usize::from(*p)];
        if taken[i] == page.events.len() {
            *pos = page.next_after.max(*pos);
        } else if taken[i] > 0 {
            *pos = super::split_cluster_id(page.events[taken[i] - 1].0.seq).1;
        }
    }
    let mut slots: Vec<Vec<Option<(Sighting, Attrs)>>> = pages
        .into_iter()
        .map(|(_, page)| page.events.into_iter().map(Some).collect())
        .collect();
    let events = order
        .into_iter()
        .filter_map(|(i, at)| slots[i][at].take())
        .collect();
    FeedPage {
        events,
        next,
        unavailable,
        asked,
        more,
    }
}

/// Min-heap of `(ts, id, page index)` of each page's event at `from[i]`, for the
/// pages with one there.
fn heads_at(
    pages: &[(u16, FeedPartial)],
    from: &[usize],
) -> BinaryHeap<std::cmp::Reverse<(i64, u64, usize)>> {
    pages
        .iter()
        .enumerate()
        .filter_map(|(i, (_, page))| {
            page.events
                .get(from[i])
                .map(|(s, _)| std::cmp::Reverse((s.ts_ms, s.seq, i)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_refuses_what_is_not_one() {
        let c = FeedCursor(vec![0, 12, 0, 7]);
        assert_eq!(c.to_string(), "1:12.3:7");
        assert_eq!(FeedCursor::parse("1:12.3:7", 4), Ok(c));
        assert_eq!(FeedCursor::parse("0", 4), Ok(FeedCursor::start(4)));
        assert_eq!(FeedCursor::start(4).to_string(), "0");
        for bad in [
            "12",
            "4:1",
            "1:2.1:3",
            "2:1.1:1",
            "a:1",
            "1:x",
            "1:281474976710656",
        ] {
            assert!(FeedCursor::parse(bad, 4).is_err(), "{bad} accepted");
        }
    }

    fn sighting(p: u16, seq: u64, ts_ms: i64) -> (Sighting, Attrs) {
        (
            Sighting {
                seq: super::super::cluster_id(p, seq),
                ts_ms,
                community: "c".into(),
                device: "d".into(),
                kind: Kind::Vehicle,
                subject: "s".into(),
                direction: sightline_storage::Direction::In,
            },
            Attrs::default(),
        )
    }

    #[test]
    fn a_page_takes_a_prefix_of_each_partition_and_failed_ones_stay() {
        let cursor = FeedCursor(vec![5, 0, 9]);
        let answers = vec![
            (
                0,
                Ok(FeedPartial {
                    events: vec![sighting(0, 6, 30), sighting(0, 7, 10)],
                    next_after: 8,
                    more: false,
                }),
            ),
            (
                1,
                Ok(FeedPartial {
                    events: vec![sighting(1, 1, 20), sighting(1, 2, 40)],
                    next_after: 3,
                    more: false,
                }),
            ),
            (2, Err(QueryError::invalid("partition", "down"))),
        ];
        let page = merge(&cursor, answers, 3);
        let ids: Vec<u64> = page.events.iter().map(|(s, _)| s.seq).collect();
        // Heads by time: p1 seq 1 (20), p0 seq 6 (30), then p0 seq 7 (10, now a head).
        assert_eq!(
            ids,
            vec![
                super::super::cluster_id(1, 1),
                super::super::cluster_id(0, 6),
                super::super::cluster_id(0, 7)
            ]
        );
        // p0 read whole: its next_after; p1 cut after seq 1; p2 failed: unchanged.
        assert_eq!(page.next, FeedCursor(vec![8, 1, 9]));
        assert_eq!(page.unavailable.len(), 1);
        // p1 was cut short: there is more to read.
        assert!(page.more);
    }

    fn partial(
        p: u16,
        seqs: std::ops::RangeInclusive<u64>,
        ts0: i64,
        more: bool,
    ) -> Result<FeedPartial> {
        let next_after = *seqs.end();
        Ok(FeedPartial {
            events: seqs.map(|q| sighting(p, q, ts0 + q as i64)).collect(),
            next_after,
            more,
        })
    }

    #[test]
    fn a_partition_with_a_backlog_of_old_capture_times_does_not_starve_the_others() {
        // p0 has a backlog captured long ago; p1 and p2 current events.
        let answers = || {
            vec![
                (0, partial(0, 1..=6, 1_000, true)),
                (1, partial(1, 1..=6, 9_000, false)),
                (2, partial(2, 1..=2, 8_000, false)),
            ]
        };
        let page = merge(&FeedCursor::start(3), answers(), 6);
        // Each gets its share of 6 / 3 first.
        assert_eq!(page.next, FeedCursor(vec![2, 2, 2]));
        let ids: Vec<(u16, u64)> = page
            .events
            .iter()
            .map(|(s, _)| super::super::split_cluster_id(s.seq))
            .collect();
        // Listed by capture time at the heads.
        assert_eq!(ids, vec![(0, 1), (0, 2), (2, 1), (2, 2), (1, 1), (1, 2)]);
        assert!(page.more);
        // The rest of a page beyond the shares goes by time: p2 has only 2 of its 3,
        // so the page's last place goes to the oldest head (p0's).
        let page = merge(&FeedCursor::start(3), answers(), 9);
        assert_eq!(page.next, FeedCursor(vec![4, 3, 2]));
        // A page smaller than the partitions with events: one each, oldest heads first.
        let page = merge(&FeedCursor::start(3), answers(), 2);
        assert_eq!(page.next, FeedCursor(vec![1, 0, 1]));
        // Everything taken, nothing past: no more.
        let page = merge(
            &FeedCursor::start(3),
            vec![
                (1, partial(1, 1..=2, 0, false)),
                (2, partial(2, 1..=1, 0, false)),
            ],
            10,
        );
        assert_eq!(page.events.len(), 3);
        assert!(!page.more);
    }
}
