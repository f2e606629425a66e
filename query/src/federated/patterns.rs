//! Frequency, first seen, nocturnal, overnight and counts across partitions.
//!
//! Frequency and first seen ask about one community, which lives in one partition:
//! each partition's answer is final there, and the merge is a sorted merge cut at the
//! limit. Counts add up per (bucket, key) (a device shared by communities of two
//! partitions, or a kind, has counts in several). Nocturnal sums a subject's counts
//! and unites its nights over partitions, in two rounds (subjects seen at night,
//! then the day counts of the candidates from the partitions that did not send
//! them); overnight keeps, per night, the last evening and first morning sighting in
//! event order over partitions.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use sightline_storage::Row;

use super::id::{cluster_id, EventKey};
use crate::context::{Names, QueryContext};
use crate::error::Result;
use crate::{
    CountBucket, FirstSeen, Frequency, Night, Nocturnal, NocturnalQuery, Overnight, OvernightQuery,
    HOUR_MS,
};

/// Counts: summed per (bucket, key), ordered by bucket then key.
pub(crate) fn merge_counts(parts: Vec<Vec<CountBucket>>) -> Vec<CountBucket> {
    let mut per: BTreeMap<(i64, String), u64> = BTreeMap::new();
    for b in parts.into_iter().flatten() {
        *per.entry((b.bucket_ms, b.key)).or_default() += b.count;
    }
    per.into_iter()
        .map(|((bucket_ms, key), count)| CountBucket {
            bucket_ms,
            key,
            count,
        })
        .collect()
}

/// Frequency: one community's subjects come from one partition; by count desc, then
/// subject, the first `limit`.
pub(crate) fn merge_frequency(parts: Vec<Vec<Frequency>>, limit: usize) -> Vec<Frequency> {
    let mut out: Vec<Frequency> = parts.into_iter().flatten().collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then(a.subject.cmp(&b.subject)));
    debug_assert!(
        out.windows(2).all(|w| w[0].subject != w[1].subject),
        "a community's subjects come from one partition"
    );
    out.truncate(limit);
    out
}

/// First seen: by first sighting, then subject, the first `limit`.
pub(crate) fn merge_first_seen(parts: Vec<Vec<FirstSeen>>, limit: usize) -> Vec<FirstSeen> {
    let mut out: Vec<FirstSeen> = parts.into_iter().flatten().collect();
    out.sort_by(|a, b| a.first_ms.cmp(&b.first_ms).then(a.subject.cmp(&b.subject)));
    out.truncate(limit);
    out
}

// ---------------------------------------------------------------------------------

/// One subject's night and day sightings in one partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NocturnalPartial {
    pub subject: String,
    pub night: u32,
    pub day: u32,
    /// The nights with a sighting (local day number of the evening), ascending.
    pub nights: Vec<i64>,
}

/// One subject's night and day sightings, and its nights.
#[derive(Default)]
struct NightDay {
    night: u32,
    day: u32,
    nights: BTreeSet<i64>,
}

/// Per subject of the kind in the query's communities and range, its sightings.
fn sightings_by_subject(
    ctx: &QueryContext<'_>,
    q: &NocturnalQuery,
) -> Result<HashMap<u32, NightDay>> {
    let communities = ctx.communities(q.communities.as_deref());
    let (start, end) = (
        q.day_start_hour as i64 * HOUR_MS,
        q.day_end_hour as i64 * HOUR_MS,
    );
    let mut per: HashMap<u32, NightDay> = HashMap::new();
    ctx.scan_range(q.from_ms, q.to_ms, communities.as_deref(), |r| {
        if r.kind != q.kind {
            return;
        }
        let (day, ms) = ctx.local(r.ts_ms);
        let e = per.entry(r.subject).or_default();
        if ms >= start && ms < end {
            e.day += 1;
        } else {
            e.night += 1;
            e.nights.insert(if ms < start { day - 1 } else { day });
        }
    })?;
    Ok(per)
}

/// Round 1: the subjects seen here at night (every subject when `min_night` is 0)
/// and by day at most `max_day` times. Those left out are either seen here by day
/// only, adding nothing but day sightings, or seen by day too often here, out
/// whatever the rest: round 2 asks for their day counts if they become candidates.
pub(crate) fn nocturnal(
    ctx: &QueryContext<'_>,
    q: &NocturnalQuery,
) -> Result<Vec<NocturnalPartial>> {
    super::check::nocturnal(q, ctx.max_range_days)?;
    let per = sightings_by_subject(ctx, q)?;
    let dicts = ctx.store.dictionaries();
    let names = Names { dicts: &dicts };
    Ok(per
        .into_iter()
        .filter(|(_, x)| (x.night > 0 || q.min_night == 0) && x.day <= q.max_day)
        .map(|(id, x)| NocturnalPartial {
            subject: names.subject(id).1.to_string(),
            night: x.night,
            day: x.day,
            nights: x.nights.into_iter().collect(),
        })
        .collect())
}

/// Round 2: the day sightings here of `subjects` (in order; 0 for names not seen).
pub(crate) fn nocturnal_days(
    ctx: &QueryContext<'_>,
    q: &NocturnalQuery,
    subjects: &[String],
) -> Result<Vec<u32>> {
    super::check::nocturnal(q, ctx.max_range_days)?;
    let per = sightings_by_subject(ctx, q)?;
    let dicts = ctx.store.dictionaries();
    Ok(subjects
        .iter()
        .map(|s| {
            dicts
                .subject_id(q.kind, s)
                .and_then(|id| per.get(&id))
                .map_or(0, |x| x.day)
        })
        .collect())
}

/// A subject after round 1: its sums over the partitions that sent it (nights
/// united), and which partitions those were.
struct NocturnalCandidate {
    subject: String,
    night: u32,
    day: u32,
    nights: usize,
    sent: Vec<bool>,
}

/// Round 1's merge: the candidates, with enough nights and not too many days among
/// the partitions that sent them.
pub(crate) struct NocturnalCandidates {
    per: Vec<NocturnalCandidate>,
}

impl NocturnalCandidates {
    pub(crate) fn merge(
        parts: Vec<(u16, Vec<NocturnalPartial>)>,
        partitions: usize,
        q: &NocturnalQuery,
    ) -> Self {
        let mut per: HashMap<String, (NightDay, Vec<bool>)> = HashMap::new();
        for (p, part) in parts {
            for x in part {
                let (e, sent) = per
                    .entry(x.subject)
                    .or_insert_with(|| (NightDay::default(), vec![false; partitions]));
                e.night += x.night;
                e.day += x.day;
                e.nights.extend(x.nights);
                sent[p as usize] = true;
            }
        }
        NocturnalCandidates {
            per: per
                .into_iter()
                .filter(|(_, (x, _))| x.night >= q.min_night && x.day <= q.max_day)
                .map(|(subject, (x, sent))| NocturnalCandidate {
                    subject,
                    night: x.night,
                    day: x.day,
                    nights: x.nights.len(),
                    sent,
                })
                .collect(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.per.is_empty()
    }

    /// The candidates partition `p` did not send: round 2 asks it for their days.
    pub(crate) fn unsent(&self, p: u16) -> Vec<String> {
        self.per
            .iter()
            .filter(|c| !c.sent[p as usize])
            .map(|c| c.subject.clone())
            .collect()
    }

    /// With round 2's day counts (`(p, days of unsent(p))`), the answer.
    pub(crate) fn finish(
        mut self,
        days: Vec<(u16, Vec<u32>)>,
        q: &NocturnalQuery,
    ) -> Vec<Nocturnal> {
        for (p, days) in days {
            let unsent = self.per.iter_mut().filter(|c| !c.sent[p as usize]);
            for (c, d) in unsent.zip(days) {
                c.day += d;
            }
        }
        let mut out: Vec<Nocturnal> = self
            .per
            .into_iter()
            .filter(|c| c.day <= q.max_day)
            .map(|c| Nocturnal {
                subject: c.subject,
                night: c.night,
                day: c.day,
                night_days: c.nights as u32,
                night_ratio: c.night as f64 / (c.night + c.day) as f64,
            })
            .collect();
        out.sort_by(|a, b| b.night.cmp(&a.night).then(a.subject.cmp(&b.subject)));
        out.truncate(q.limit);
        out
    }
}

// ---------------------------------------------------------------------------------

/// One night of the subject in one partition: its last evening and first morning
/// sightings here, each with its place in event order and its community.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NightPartial {
    pub day: i64,
    pub evening: Option<(EventKey, String)>,
    pub morning: Option<(EventKey, String)>,
}

pub(crate) fn overnight(
    ctx: &QueryContext<'_>,
    partition: u16,
    q: &OvernightQuery,
) -> Result<Vec<NightPartial>> {
    super::check::overnight(q, ctx.max_range_days)?;
    let Some(subject) = ctx.subject_id(q.kind, &q.subject)? else {
        return Ok(Vec::new());
    };
    let rows: Vec<Row> = ctx.subject_rows(subject, q.from_ms, q.to_ms, None)?;
    let (evening, morning) = (
        q.evening_hour as i64 * HOUR_MS,
        q.morning_hour as i64 * HOUR_MS,
    );
    let dicts = ctx.store.dictionaries();
    let names = Names { dicts: &dicts };
    let mut nights: BTreeMap<i64, NightPartial> = BTreeMap::new();
    let night_of = |day| NightPartial {
        day,
        evening: None,
        morning: None,
    };
    for r in &rows {
        let (day, ms) = ctx.local(r.ts_ms);
        let key = || EventKey {
            ts_ms: r.ts_ms,
            device: names.device(r.device).to_string(),
            id: cluster_id(partition, r.seq),
        };
        if ms >= evening {
            let n = nights.entry(day).or_insert_with(|| night_of(day));
            let k = key();
            if n.evening.as_ref().is_none_or(|(e, _)| *e < k) {
                n.evening = Some((k, names.community(r.community)));
            }
        } else if ms < morning {
            let n = nights.entry(day - 1).or_insert_with(|| night_of(day - 1));
            let k = key();
            if n.morning.as_ref().is_none_or(|(m, _)| k < *m) {
                n.morning = Some((k, names.community(r.community)));
            }
        }
    }
    Ok(nights.into_values().collect())
}

pub(crate) fn merge_overnight(parts: Vec<Vec<NightPartial>>) -> Overnight {
    let mut nights: BTreeMap<i64, NightPartial> = BTreeMap::new();
    for p in parts.into_iter().flatten() {
        let n = nights.entry(p.day).or_insert_with(|| NightPartial {
            day: p.day,
            evening: None,
            morning: None,
        });
        if let Some(e) = p.evening {
            if n.evening.as_ref().is_none_or(|(k, _)| *k < e.0) {
                n.evening = Some(e);
            }
        }
        if let Some(m) = p.morning {
            if n.morning.as_ref().is_none_or(|(k, _)| m.0 < *k) {
                n.morning = Some(m);
            }
        }
    }
    let nights: Vec<Night> = nights
        .into_values()
        .map(|n| Night {
            day: n.day,
            evening: n.evening.map(|(k, c)| (c, k.ts_ms)),
            morning: n.morning.map(|(k, c)| (c, k.ts_ms)),
        })
        .collect();
    let mut credit: BTreeMap<String, u32> = BTreeMap::new();
    for n in &nights {
        let mut here: Vec<&String> = n
            .evening
            .iter()
            .chain(n.morning.iter())
            .map(|(c, _)| c)
            .collect();
        here.dedup();
        for c in here {
            *credit.entry(c.clone()).or_default() += 1;
        }
    }
    let mut bases: Vec<(String, u32)> = credit.into_iter().collect();
    bases.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Overnight { nights, bases }
}
