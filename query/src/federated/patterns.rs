//! Frequency, first seen, nocturnal, overnight and counts across partitions.
//!
//! Frequency and first seen ask about one community, which lives in one partition:
//! each partition's answer is final there, and the merge is a sorted merge cut at the
//! limit. Counts add up per (bucket, key) (a device shared by communities of two
//! partitions, or a kind, has counts in several). Nocturnal sums a subject's counts
//! and unites its nights over partitions; overnight keeps, per night, the last
//! evening and first morning sighting in event order over partitions.

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

/// Every subject of the kind seen in this partition's communities of the query, with
/// its nights (none for those seen by day more than `max_day` times here: day counts
/// only grow when partitions are added up, so those are out whatever the rest).
pub(crate) fn nocturnal(
    ctx: &QueryContext<'_>,
    q: &NocturnalQuery,
) -> Result<Vec<NocturnalPartial>> {
    super::check::nocturnal(q, ctx.max_range_days)?;
    let communities = ctx.communities(q.communities.as_deref());
    let (start, end) = (
        q.day_start_hour as i64 * HOUR_MS,
        q.day_end_hour as i64 * HOUR_MS,
    );
    let mut per: HashMap<u32, (u32, u32, BTreeSet<i64>)> = HashMap::new();
    ctx.scan_range(q.from_ms, q.to_ms, communities.as_deref(), |r| {
        if r.kind != q.kind {
            return;
        }
        let (day, ms) = ctx.local(r.ts_ms);
        let e = per.entry(r.subject).or_default();
        if ms >= start && ms < end {
            e.1 += 1;
        } else {
            e.0 += 1;
            e.2.insert(if ms < start { day - 1 } else { day });
        }
    })?;
    let dicts = ctx.store.dictionaries();
    let names = Names { dicts: &dicts };
    Ok(per
        .into_iter()
        .map(|(id, (night, day, nights))| NocturnalPartial {
            subject: names.subject(id).1.to_string(),
            night,
            day,
            // Already seen by day too often: the merge drops it whatever the others
            // say, so its nights need not travel (the subject must: it vetoes).
            nights: match day > q.max_day {
                true => Vec::new(),
                false => nights.into_iter().collect(),
            },
        })
        .collect())
}

pub(crate) fn merge_nocturnal(
    parts: Vec<Vec<NocturnalPartial>>,
    q: &NocturnalQuery,
) -> Vec<Nocturnal> {
    let mut per: HashMap<String, (u32, u32, BTreeSet<i64>)> = HashMap::new();
    for p in parts.into_iter().flatten() {
        let e = per.entry(p.subject).or_default();
        e.0 += p.night;
        e.1 += p.day;
        e.2.extend(p.nights);
    }
    let mut out: Vec<Nocturnal> = per
        .into_iter()
        .filter(|(_, (night, day, _))| *night >= q.min_night && *day <= q.max_day)
        .map(|(subject, (night, day, nights))| Nocturnal {
            subject,
            night,
            day,
            night_days: nights.len() as u32,
            night_ratio: night as f64 / (night + day) as f64,
        })
        .collect();
    out.sort_by(|a, b| b.night.cmp(&a.night).then(a.subject.cmp(&b.subject)));
    out.truncate(q.limit);
    out
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
    let rows: Vec<Row> = ctx.subject_rows(subject, q.from_ms, q.to_ms, None);
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
