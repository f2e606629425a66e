//! Co-occurrence (同行/伴随) and person–vehicle association (人车关联).

use std::collections::{BTreeSet, HashMap};

use sightline_storage::{Kind, Row};

use crate::context::{Names, QueryContext};
use crate::error::Result;

/// Longest window, either side of a target sighting.
pub const MAX_WINDOW_MS: i64 = 3_600_000;
/// Most candidates returned.
pub const MAX_LIMIT: usize = 10_000;

/// Where a candidate must be to count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Scope {
    /// At the same device as the target sighting.
    Device,
    /// Anywhere in the same community as the target sighting.
    Community,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Cooccurrence {
    pub kind: Kind,
    pub subject: String,
    pub from_ms: i64,
    pub to_ms: i64,
    /// Only target sightings in these communities; all when `None`.
    pub communities: Option<Vec<String>>,
    /// `|c.ts − t.ts| ≤ window_ms`.
    pub window_ms: i64,
    pub min_count: u32,
    pub scope: Scope,
    /// Only candidates of this kind (vehicle→face is person–vehicle association).
    pub candidate_kind: Option<Kind>,
    /// Merge the target's reads at one device no more than this far apart into one pass.
    pub dedup_gap_ms: Option<i64>,
    pub limit: usize,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Candidate {
    pub kind: Kind,
    pub subject: String,
    /// Distinct target passes with at least one co-occurring event of this candidate.
    pub hits: u32,
    /// Distinct devices among the candidate's co-occurring events.
    pub devices: u32,
    /// Distinct local days among the candidate's co-occurring events.
    pub days: u32,
    /// First and last co-occurring event of the candidate.
    pub first_ms: i64,
    pub last_ms: i64,
    /// `hits` over the hits expected by chance from the candidate's frequency.
    pub lift: f64,
}

/// One pass of the target: reads at one device merged by the dedup gap (or one read).
#[derive(Clone, Copy, Debug)]
struct Pass {
    community: u32,
    device: u32,
    first_ms: i64,
    last_ms: i64,
}

#[derive(Default)]
struct Acc {
    hits: u32,
    last_pass: Option<usize>,
    devices: BTreeSet<u32>,
    days: BTreeSet<i64>,
    first_ms: i64,
    last_ms: i64,
    seen: BTreeSet<u64>,
}

pub fn cooccurrence(ctx: &QueryContext<'_>, q: &Cooccurrence) -> Result<Vec<Candidate>> {
    crate::federated::check::cooccurrence(q, ctx.max_range_days)?;
    let Some(target) = ctx.subject_id(q.kind, &q.subject)? else {
        return Ok(Vec::new());
    };
    let communities = q.communities.as_ref().map(|c| ctx.community_ids(c));
    let sightings = ctx.subject_rows(target, q.from_ms, q.to_ms, communities.as_deref())?;
    let passes = passes(sightings, q.dedup_gap_ms);
    let w = q.window_ms;

    let mut acc: HashMap<u32, Acc> = HashMap::new();
    let mut window = Vec::new();
    for (i, p) in passes.iter().enumerate() {
        ctx.check_deadline()?;
        window.clear();
        let (lo, hi) = (p.first_ms - w, p.last_ms + w + 1);
        match q.scope {
            Scope::Device => ctx.device_rows(p.device, lo, hi, &mut window)?,
            Scope::Community => ctx.scan_range(lo, hi, Some(&[p.community]), |r| window.push(r))?,
        }
        for c in &window {
            if c.subject == target || q.candidate_kind.is_some_and(|k| k != c.kind) {
                continue;
            }
            let a = acc.entry(c.subject).or_insert_with(|| Acc {
                first_ms: i64::MAX,
                last_ms: i64::MIN,
                ..Acc::default()
            });
            if a.last_pass != Some(i) {
                a.last_pass = Some(i);
                a.hits += 1;
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
    let mut out: Vec<(u32, Candidate)> = acc
        .into_iter()
        .filter(|(_, a)| a.hits >= q.min_count)
        .map(|(id, a)| {
            let (kind, subject) = names.subject(id);
            (
                id,
                Candidate {
                    kind,
                    subject: subject.to_string(),
                    hits: a.hits,
                    devices: a.devices.len() as u32,
                    days: a.days.len() as u32,
                    first_ms: a.first_ms,
                    last_ms: a.last_ms,
                    lift: 0.0,
                },
            )
        })
        .collect();
    drop(dicts);
    out.sort_by(|(_, a), (_, b)| {
        b.hits
            .cmp(&a.hits)
            .then(a.kind.cmp(&b.kind))
            .then(a.subject.cmp(&b.subject))
    });
    out.truncate(q.limit);
    for (id, c) in &mut out {
        c.lift = lift(ctx, q, &passes, *id, c.hits)?;
    }
    Ok(out.into_iter().map(|(_, c)| c).collect())
}

/// The target's sightings as passes, in (ts, device) order of their first read.
fn passes(mut rows: Vec<Row>, dedup_gap_ms: Option<i64>) -> Vec<Pass> {
    let one = |r: &Row| Pass {
        community: r.community,
        device: r.device,
        first_ms: r.ts_ms,
        last_ms: r.ts_ms,
    };
    let Some(gap) = dedup_gap_ms else {
        return rows.iter().map(one).collect();
    };
    rows.sort_unstable_by_key(|r| (r.device, r.community, r.ts_ms, r.seq));
    let mut out: Vec<Pass> = Vec::new();
    for r in &rows {
        match out.last_mut() {
            Some(p)
                if p.device == r.device
                    && p.community == r.community
                    && r.ts_ms - p.last_ms <= gap =>
            {
                p.last_ms = r.ts_ms;
            }
            _ => out.push(one(r)),
        }
    }
    out.sort_unstable_by_key(|p| (p.first_ms, p.device));
    out
}

/// Hits over expected hits: the candidate's events at the target's locations, spread
/// evenly over those locations and the range, would fall into a pass's window with
/// probability `min(1, n / L × window / span)` (see SEMANTICS.md).
fn lift(
    ctx: &QueryContext<'_>,
    q: &Cooccurrence,
    passes: &[Pass],
    candidate: u32,
    hits: u32,
) -> Result<f64> {
    let w = q.window_ms;
    let (lo, hi) = (q.from_ms - w, q.to_ms + w);
    let span = (hi - lo) as f64;
    // The candidate's events at the target's locations in [lo, hi), counted from the
    // segments' postings (device runs are contiguous in a sealed segment).
    // The index view is held only while shard keys are looked up, never across a
    // store call (lock order: a flush holds the shards while it updates the index).
    let (locations, n) = match q.scope {
        Scope::Device => {
            let (devices, asks) = {
                let view = ctx.index.view();
                // Each target device with the communities it reports to, so every
                // shard is asked only about its own devices.
                let mut at: Vec<(u32, u32)> = passes
                    .iter()
                    .flat_map(|p| {
                        view.device_communities(p.device)
                            .into_iter()
                            .filter(|c| ctx.scope.is_none_or(|s| s.contains(c)))
                            .map(move |c| (c, p.device))
                    })
                    .collect();
                at.sort_unstable();
                at.dedup();
                let devices: std::collections::HashSet<u32> = at.iter().map(|&(_, d)| d).collect();
                let asks: Vec<(Vec<sightline_storage::ShardKey>, Vec<u32>)> = at
                    .chunk_by(|a, b| a.0 == b.0)
                    .map(|group| {
                        let here: Vec<u32> = group.iter().map(|&(_, d)| d).collect();
                        view.subject_shards(candidate, lo, hi, Some(&[group[0].0]))
                            .map(|keys| (keys, here))
                    })
                    .collect::<std::result::Result<_, _>>()?;
                (devices.len(), asks)
            };
            let n = asks
                .into_iter()
                .map(|(keys, here)| {
                    ctx.store
                        .count_subject(keys, candidate, lo, hi, Some(&here))
                })
                .sum::<std::result::Result<u64, _>>()?;
            (devices, n)
        }
        Scope::Community => {
            let mut communities: Vec<u32> = passes.iter().map(|p| p.community).collect();
            communities.sort_unstable();
            communities.dedup();
            let keys = ctx
                .index
                .view()
                .subject_shards(candidate, lo, hi, Some(&communities))?;
            let n = ctx.store.count_subject(keys, candidate, lo, hi, None)?;
            (communities.len(), n)
        }
    };
    let n = n as f64;
    let per_location = n / locations.max(1) as f64;
    let expected: f64 = passes
        .iter()
        .map(|p| (per_location * (p.last_ms - p.first_ms + 2 * w + 1) as f64 / span).min(1.0))
        .sum();
    Ok(if expected > 0.0 {
        hits as f64 / expected
    } else {
        0.0
    })
}
