//! Co-occurrence across partitions, in three rounds.
//!
//! A pass is at one (community, device), so each partition finds its own passes
//! (round 1). But a candidate's events for a pass may lie in another partition (a
//! device that reports to communities of two partitions, at device scope), and hits
//! count *distinct passes*, so round 2 sends every partition the cluster's numbered
//! passes and each answers, per candidate, the set of passes it hit there and what
//! the merge needs to count distinct devices and days (sets, not counts). The merge
//! unites them, ranks and cuts at the limit. Lift needs the candidate's events at all
//! the target's locations and the number of locations, over the whole cluster: round 3
//! asks every partition for those counts for the few candidates returned.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sightline_storage::{Kind, Row};

use crate::context::{Names, QueryContext};
use crate::error::Result;
use crate::{Candidate, Cooccurrence, Scope};

/// One pass of the target, by name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Pass {
    pub first_ms: i64,
    pub device: String,
    pub community: String,
    pub last_ms: i64,
}

/// One candidate's co-occurrences in one partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidatePartial {
    pub kind: Kind,
    pub subject: String,
    /// Numbers of the passes hit here, ascending.
    pub passes: Vec<u32>,
    /// Device codes and local days of the matched events here.
    pub devices: Vec<String>,
    pub days: Vec<i64>,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// Round 1: the target's passes in this partition.
pub(crate) fn passes(ctx: &QueryContext<'_>, q: &Cooccurrence) -> Result<Vec<Pass>> {
    super::check::cooccurrence(q, ctx.max_range_days)?;
    let Some(target) = ctx.subject_id(q.kind, &q.subject)? else {
        return Ok(Vec::new());
    };
    let communities = q.communities.as_ref().map(|c| ctx.community_ids(c));
    let mut rows = ctx.subject_rows(target, q.from_ms, q.to_ms, communities.as_deref())?;
    let dicts = ctx.store.dictionaries();
    let names = Names { dicts: &dicts };
    let one = |r: &Row| Pass {
        first_ms: r.ts_ms,
        device: names.device(r.device).to_string(),
        community: names.community(r.community),
        last_ms: r.ts_ms,
    };
    let Some(gap) = q.dedup_gap_ms else {
        return Ok(rows.iter().map(one).collect());
    };
    rows.sort_unstable_by_key(|r| (r.device, r.community, r.ts_ms, r.seq));
    let mut out: Vec<(u32, u32, Pass)> = Vec::new();
    for r in &rows {
        match out.last_mut() {
            Some((d, c, p))
                if *d == r.device && *c == r.community && r.ts_ms - p.last_ms <= gap =>
            {
                p.last_ms = r.ts_ms;
            }
            _ => out.push((r.device, r.community, one(r))),
        }
    }
    Ok(out.into_iter().map(|(.., p)| p).collect())
}

/// The cluster's passes in one order (every round numbers them the same).
pub(crate) fn merge_passes(parts: Vec<Vec<Pass>>) -> Vec<Pass> {
    let mut all: Vec<Pass> = parts.into_iter().flatten().collect();
    all.sort();
    all
}

/// Round 2: per candidate, the passes it hit here.
pub(crate) fn hits(
    ctx: &QueryContext<'_>,
    q: &Cooccurrence,
    passes: &[(u32, Pass)],
) -> Result<Vec<CandidatePartial>> {
    super::check::cooccurrence(q, ctx.max_range_days)?;
    let target = ctx.subject_id(q.kind, &q.subject)?;
    let w = q.window_ms;
    #[derive(Default)]
    struct Acc {
        passes: Vec<u32>,
        seen: HashSet<u64>,
        devices: BTreeSet<u32>,
        days: BTreeSet<i64>,
        first_ms: i64,
        last_ms: i64,
    }
    let mut acc: HashMap<u32, Acc> = HashMap::new();
    let mut window: Vec<Row> = Vec::new();
    for (i, p) in passes {
        ctx.check_deadline()?;
        window.clear();
        let (lo, hi) = (p.first_ms - w, p.last_ms + w + 1);
        match q.scope {
            Scope::Device => {
                let device = ctx.store.dictionaries().device_id(&p.device);
                if let Some(device) = device {
                    ctx.device_rows(device, lo, hi, &mut window)?;
                }
            }
            Scope::Community => {
                let here = ctx.community_ids(std::slice::from_ref(&p.community));
                if !here.is_empty() {
                    ctx.scan_range(lo, hi, Some(&here), |r| window.push(r))?;
                }
            }
        }
        for c in &window {
            if Some(c.subject) == target || q.candidate_kind.is_some_and(|k| k != c.kind) {
                continue;
            }
            let a = acc.entry(c.subject).or_insert_with(|| Acc {
                first_ms: i64::MAX,
                last_ms: i64::MIN,
                ..Acc::default()
            });
            if a.passes.last() != Some(i) {
                a.passes.push(*i);
            }
            if a.seen.insert(c.seq) {
                a.devices.insert(c.device);
                a.days.insert(ctx.local(c.ts_ms).0);
                a.first_ms = a.first_ms.min(c.ts_ms);
                a.last_ms = a.last_ms.max(c.ts_ms);
            }
        }
    }
    let dicts = ctx.store.dictionaries();
    let names = Names { dicts: &dicts };
    Ok(acc
        .into_iter()
        .map(|(id, a)| {
            let (kind, subject) = names.subject(id);
            let mut passes = a.passes;
            passes.sort_unstable();
            passes.dedup();
            CandidatePartial {
                kind,
                subject: subject.to_string(),
                passes,
                devices: a
                    .devices
                    .iter()
                    .map(|&d| names.device(d).to_string())
                    .collect(),
                days: a.days.into_iter().collect(),
                first_ms: a.first_ms,
                last_ms: a.last_ms,
            }
        })
        .collect())
}

/// The candidates of the answer, ranked and cut (lift still 0).
pub(crate) fn merge_hits(parts: Vec<Vec<CandidatePartial>>, q: &Cooccurrence) -> Vec<Candidate> {
    #[derive(Default)]
    struct Acc {
        passes: BTreeSet<u32>,
        devices: BTreeSet<String>,
        days: BTreeSet<i64>,
        first_ms: i64,
        last_ms: i64,
    }
    let mut acc: HashMap<(Kind, String), Acc> = HashMap::new();
    for c in parts.into_iter().flatten() {
        let a = acc.entry((c.kind, c.subject)).or_insert_with(|| Acc {
            first_ms: i64::MAX,
            last_ms: i64::MIN,
            ..Acc::default()
        });
        a.passes.extend(c.passes);
        a.devices.extend(c.devices);
        a.days.extend(c.days);
        a.first_ms = a.first_ms.min(c.first_ms);
        a.last_ms = a.last_ms.max(c.last_ms);
    }
    let mut out: Vec<Candidate> = acc
        .into_iter()
        .filter(|(_, a)| a.passes.len() as u32 >= q.min_count)
        .map(|((kind, subject), a)| Candidate {
            kind,
            subject,
            hits: a.passes.len() as u32,
            devices: a.devices.len() as u32,
            days: a.days.len() as u32,
            first_ms: a.first_ms,
            last_ms: a.last_ms,
            lift: 0.0,
        })
        .collect();
    out.sort_by(|a, b| {
        b.hits
            .cmp(&a.hits)
            .then(a.kind.cmp(&b.kind))
            .then(a.subject.cmp(&b.subject))
    });
    out.truncate(q.limit);
    out
}

/// Round 3: each candidate's events here at the target's locations (the passes'
/// devices or communities), in `[from − w, to + w)`.
pub(crate) fn counts(
    ctx: &QueryContext<'_>,
    q: &Cooccurrence,
    passes: &[Pass],
    candidates: &[(Kind, String)],
) -> Result<Vec<u64>> {
    super::check::cooccurrence(q, ctx.max_range_days)?;
    let w = q.window_ms;
    let (lo, hi) = (q.from_ms - w, q.to_ms + w);
    // Candidates and locations by this store's ids; names it never saw hold nothing.
    let (ids, devices, communities) = {
        let d = ctx.store.dictionaries();
        let ids: Vec<Option<u32>> = candidates
            .iter()
            .map(|(k, s)| d.subject_id(*k, s))
            .collect();
        let mut devices: Vec<u32> = passes
            .iter()
            .filter_map(|p| d.device_id(&p.device))
            .collect();
        devices.sort_unstable();
        devices.dedup();
        let mut communities: Vec<u32> = passes
            .iter()
            .filter_map(|p| d.community_id(&p.community))
            .filter(|c| ctx.scope.is_none_or(|s| s.contains(c)))
            .collect();
        communities.sort_unstable();
        communities.dedup();
        (ids, devices, communities)
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        ctx.check_deadline()?;
        let Some(candidate) = id else {
            out.push(0);
            continue;
        };
        // The index view is held only while shard keys are looked up, never across a
        // store call (lock order, as in `crate::cooccurrence`).
        let n = match q.scope {
            Scope::Device => {
                let asks: Vec<(Vec<sightline_storage::ShardKey>, Vec<u32>)> = {
                    let view = ctx.index.view();
                    let mut at: Vec<(u32, u32)> = devices
                        .iter()
                        .flat_map(|&d| {
                            view.device_communities(d)
                                .into_iter()
                                .filter(|c| ctx.scope.is_none_or(|s| s.contains(c)))
                                .map(move |c| (c, d))
                        })
                        .collect();
                    at.sort_unstable();
                    at.dedup();
                    at.chunk_by(|a, b| a.0 == b.0)
                        .map(|group| {
                            let here: Vec<u32> = group.iter().map(|&(_, d)| d).collect();
                            view.subject_shards(candidate, lo, hi, Some(&[group[0].0]))
                                .map(|keys| (keys, here))
                        })
                        .collect::<std::result::Result<Vec<_>, _>>()?
                };
                asks.into_iter()
                    .map(|(keys, here)| {
                        ctx.store
                            .count_subject(keys, candidate, lo, hi, Some(&here))
                    })
                    .sum::<std::result::Result<u64, _>>()?
            }
            Scope::Community if communities.is_empty() => 0,
            Scope::Community => {
                let keys =
                    ctx.index
                        .view()
                        .subject_shards(candidate, lo, hi, Some(&communities))?;
                ctx.store.count_subject(keys, candidate, lo, hi, None)?
            }
        };
        out.push(n);
    }
    Ok(out)
}

/// Lift of each candidate from the cluster's passes and its events at their locations
/// (`n`, summed over partitions), as SEMANTICS.md defines it.
pub(crate) fn set_lift(candidates: &mut [Candidate], n: &[u64], q: &Cooccurrence, passes: &[Pass]) {
    let w = q.window_ms;
    let span = (q.to_ms - q.from_ms + 2 * w) as f64;
    let locations = match q.scope {
        Scope::Device => passes
            .iter()
            .map(|p| &p.device)
            .collect::<HashSet<_>>()
            .len(),
        Scope::Community => passes
            .iter()
            .map(|p| &p.community)
            .collect::<HashSet<_>>()
            .len(),
    };
    for (c, &n) in candidates.iter_mut().zip(n) {
        let per_location = n as f64 / locations.max(1) as f64;
        let expected: f64 = passes
            .iter()
            .map(|p| (per_location * (p.last_ms - p.first_ms + 2 * w + 1) as f64 / span).min(1.0))
            .sum();
        c.lift = if expected > 0.0 {
            c.hits as f64 / expected
        } else {
            0.0
        };
    }
}
