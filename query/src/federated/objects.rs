//! Objects by conditions across partitions (GA/T 1400.4's `GET /VIID/MotorVehicles?…`
//! on a cluster): a page of one ordered list, and how many match in all.
//!
//! Each partition orders its matching records as one store does, by (time, id) — on a
//! cluster the id is the cluster id, so ties in time fall by partition, then arrival
//! — and `TotalNum` is the sum of the partitions' counts. A page at the top
//! (`skip == 0`) takes one round: each partition's first `limit` records, merged and
//! cut. A page further down takes two: each partition's keys of its first
//! `skip + limit` records (16 bytes each, never the records), merged to learn which
//! of its records each partition contributes to the page (a contiguous run of its
//! own order: `skip = a`, `limit = n`), then those records alone. A partition that
//! changed between the rounds (events stored meanwhile ahead of the page) is seen in
//! its answer (the keys or the count differ) and the page is read again, at most
//! [`ROUNDS`] times.

use serde::{Deserialize, Serialize};
use sightline_storage::Attrs;

use super::cluster_id;
use crate::context::{QueryContext, Sighting};
use crate::error::{QueryError, Result};
use crate::objects::{objects, ObjectQuery};

/// Times a deep page is read before the partitions are declared too busy to page.
pub const ROUNDS: usize = 3;

/// A record's place in the answer: (time, cluster id).
pub type ObjectKey = (i64, u64);

/// One partition's keys of its first `skip + limit` records, and its count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectKeys {
    pub total: u64,
    pub keys: Vec<ObjectKey>,
}

/// One partition's records of a page (cluster ids, attributes decoded), and its count.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ObjectsPartial {
    pub total: u64,
    pub events: Vec<(Sighting, Attrs)>,
}

/// A page of objects across the cluster: the page's events (cluster ids) with their
/// attributes, and how many match in all.
#[derive(Clone, Debug, Default)]
pub struct FederatedObjects {
    pub total: u64,
    pub events: Vec<(Sighting, Attrs)>,
}

/// The keys of partition `p`'s first `skip + limit` records of `q`, and its count.
pub(crate) fn keys(ctx: &QueryContext<'_>, p: u16, q: &ObjectQuery) -> Result<ObjectKeys> {
    let depth = crate::objects::check(q)?;
    let page = objects(
        ctx,
        &ObjectQuery {
            skip: 0,
            limit: depth,
            ..q.clone()
        },
    )?;
    Ok(ObjectKeys {
        total: page.total,
        keys: page
            .events
            .iter()
            .map(|s| (s.ts_ms, cluster_id(p, s.seq)))
            .collect(),
    })
}

/// Partition `p`'s page of `q` as one store answers it, with cluster ids.
pub(crate) fn page(ctx: &QueryContext<'_>, p: u16, q: &ObjectQuery) -> Result<ObjectsPartial> {
    let found = objects(ctx, q)?;
    let events = found
        .events
        .into_iter()
        .zip(found.attrs_at)
        .map(|(mut s, at)| {
            s.seq = cluster_id(p, s.seq);
            at.decode().map(|attrs| (s, attrs))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(ObjectsPartial {
        total: found.total,
        events,
    })
}

/// The order of the answer: oldest first, ties by id; or the reverse.
pub fn order(newest_first: bool) -> impl Fn(&ObjectKey, &ObjectKey) -> std::cmp::Ordering {
    move |a, b| match newest_first {
        false => a.cmp(b),
        true => b.cmp(a),
    }
}

/// What each partition contributes to the page `[skip, skip + limit)` of the merged
/// keys: `(partition, a, n)`, its records ranked `a..a + n` in its own order (only
/// partitions with `n > 0`), and the page's keys in answer order.
pub fn shares(
    parts: &[(u16, ObjectKeys)],
    skip: usize,
    limit: usize,
    newest_first: bool,
) -> (Vec<(u16, usize, usize)>, Vec<ObjectKey>) {
    let mut all: Vec<(ObjectKey, u16)> = parts
        .iter()
        .flat_map(|(p, k)| k.keys.iter().map(move |key| (*key, *p)))
        .collect();
    let by = order(newest_first);
    all.sort_by(|a, b| by(&a.0, &b.0));
    let mut out: Vec<(u16, usize, usize)> = Vec::new();
    for (_, p) in all.iter().take(skip) {
        match out.iter_mut().find(|(q, _, _)| q == p) {
            Some(e) => e.1 += 1,
            None => out.push((*p, 1, 0)),
        }
    }
    let page: Vec<(ObjectKey, u16)> = all.into_iter().skip(skip).take(limit).collect();
    for (_, p) in &page {
        match out.iter_mut().find(|(q, _, _)| q == p) {
            Some(e) => e.2 += 1,
            None => out.push((*p, 0, 1)),
        }
    }
    out.retain(|(_, _, n)| *n > 0);
    out.sort_unstable();
    (out, page.into_iter().map(|(k, _)| k).collect())
}

/// The partitions' pages merged in answer order, cut at `limit`; their counts added.
pub fn merge(parts: Vec<ObjectsPartial>, limit: usize, newest_first: bool) -> FederatedObjects {
    let total = parts.iter().map(|p| p.total).sum();
    let mut events: Vec<(Sighting, Attrs)> = parts.into_iter().flat_map(|p| p.events).collect();
    let by = order(newest_first);
    events.sort_by(|a, b| by(&(a.0.ts_ms, a.0.seq), &(b.0.ts_ms, b.0.seq)));
    events.truncate(limit);
    FederatedObjects { total, events }
}

/// Why a deep page could not be read whole: the partitions kept changing under it.
pub(crate) fn unsettled() -> QueryError {
    QueryError::Remote {
        message: format!(
            "objects were stored ahead of the page while it was read ({ROUNDS} times): \
             ask again, or narrow the time range"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(total: u64, keys: &[(i64, u64)]) -> ObjectKeys {
        ObjectKeys {
            total,
            keys: keys.to_vec(),
        }
    }

    #[test]
    fn a_page_is_a_run_of_each_partitions_own_order() {
        // Partition 0 at times 1, 3, 5, 7; partition 2 at 2, 3, 4 (a tie at 3 falls
        // to the lower cluster id: partition 0's).
        let id = |p: u16, s: u64| cluster_id(p, s);
        let parts = vec![
            (
                0,
                keys(
                    9,
                    &[(1, id(0, 1)), (3, id(0, 2)), (5, id(0, 3)), (7, id(0, 4))],
                ),
            ),
            (2, keys(3, &[(2, id(2, 1)), (3, id(2, 2)), (4, id(2, 3))])),
        ];
        // Oldest first: 1 2 3a 3b 4 5 7; records 3..6 are 3b 4 5.
        let (asked, page) = shares(&parts, 3, 3, false);
        assert_eq!(asked, vec![(0, 2, 1), (2, 1, 2)]);
        assert_eq!(page, vec![(3, id(2, 2)), (4, id(2, 3)), (5, id(0, 3))]);
        // Newest first: 7 5 4 3b 3a 2 1; records 1..3 are 5 4.
        let (asked, page) = shares(&parts, 1, 2, true);
        assert_eq!(asked, vec![(0, 1, 1), (2, 0, 1)]);
        assert_eq!(page, vec![(5, id(0, 3)), (4, id(2, 3))]);
        // Past the end: nothing to ask.
        let (asked, page) = shares(&parts, 7, 5, false);
        assert!(asked.is_empty() && page.is_empty());
    }
}
