//! Behaviour patterns: frequency (频繁出入), nocturnal (昼伏夜出), first seen
//! (首次出现/陌生) and overnight base (落脚点).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sightline_storage::{Kind, Row};

use crate::context::{sort_rows, Names, QueryContext};
use crate::error::{QueryError, Result};
use crate::{DAY_MS, HOUR_MS};

/// Most subjects any pattern query returns.
pub const MAX_LIMIT: usize = 100_000;

fn check_limit(limit: usize) -> Result<()> {
    if limit == 0 || limit > MAX_LIMIT {
        return Err(QueryError::invalid(
            "limit",
            format!("must be 1 to {MAX_LIMIT}"),
        ));
    }
    Ok(())
}

/// Rows of `kind` in `[from_ms, to_ms)` in `communities` (all when `None`).
fn kind_rows(
    ctx: &QueryContext<'_>,
    kind: Kind,
    from_ms: i64,
    to_ms: i64,
    communities: Option<&[u32]>,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let communities = ctx.restrict(communities);
    ctx.scan_range(from_ms, to_ms, communities.as_deref(), |r| {
        if r.kind == kind {
            rows.push(r)
        }
    })?;
    Ok(rows)
}

// ---------------------------------------------------------------------------------

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct FrequencyQuery {
    pub community: String,
    pub kind: Kind,
    pub from_ms: i64,
    pub to_ms: i64,
    /// Qualifies with at least this many events …
    pub min_count: Option<u32>,
    /// … or on at least this many distinct local days.
    pub min_days: Option<u32>,
    pub limit: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Frequency {
    pub subject: String,
    pub count: u32,
    pub days: u32,
    pub first_ms: i64,
    pub last_ms: i64,
}

pub fn frequency(ctx: &QueryContext<'_>, q: &FrequencyQuery) -> Result<Vec<Frequency>> {
    ctx.check_range(q.from_ms, q.to_ms)?;
    check_limit(q.limit)?;
    if q.min_count.is_none() && q.min_days.is_none() {
        return Err(QueryError::invalid(
            "min_count",
            "give min_count, min_days or both",
        ));
    }
    let communities = ctx.community_ids(std::slice::from_ref(&q.community));
    if communities.is_empty() {
        return Ok(Vec::new());
    }
    let mut per: HashMap<u32, (u32, BTreeSet<i64>, i64, i64)> = HashMap::new();
    for r in kind_rows(ctx, q.kind, q.from_ms, q.to_ms, Some(&communities))? {
        let e = per
            .entry(r.subject)
            .or_insert((0, BTreeSet::new(), i64::MAX, i64::MIN));
        e.0 += 1;
        e.1.insert(ctx.local(r.ts_ms).0);
        e.2 = e.2.min(r.ts_ms);
        e.3 = e.3.max(r.ts_ms);
    }
    let dicts = ctx.store.dictionaries();
    let names = Names { dicts: &dicts };
    let mut out: Vec<Frequency> = per
        .into_iter()
        .filter(|(_, (count, days, _, _))| {
            q.min_count.is_some_and(|n| *count >= n)
                || q.min_days.is_some_and(|d| days.len() as u32 >= d)
        })
        .map(|(id, (count, days, first_ms, last_ms))| Frequency {
            subject: names.subject(id).1.to_string(),
            count,
            days: days.len() as u32,
            first_ms,
            last_ms,
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then(a.subject.cmp(&b.subject)));
    out.truncate(q.limit);
    Ok(out)
}

// ---------------------------------------------------------------------------------

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct NocturnalQuery {
    pub kind: Kind,
    pub from_ms: i64,
    pub to_ms: i64,
    /// Only these community codes; all when `None`.
    pub communities: Option<Vec<String>>,
    /// Local hours `[day_start_hour, day_end_hour)` are day; the rest is night.
    /// Defaults 6 and 18.
    pub day_start_hour: u32,
    pub day_end_hour: u32,
    /// Flag when night count ≥ this (default 5) …
    pub min_night: u32,
    /// … and day count ≤ this (default 2).
    pub max_day: u32,
    pub limit: usize,
}

impl NocturnalQuery {
    pub fn new(kind: Kind, from_ms: i64, to_ms: i64) -> NocturnalQuery {
        NocturnalQuery {
            kind,
            from_ms,
            to_ms,
            communities: None,
            day_start_hour: 6,
            day_end_hour: 18,
            min_night: 5,
            max_day: 2,
            limit: 1000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Nocturnal {
    pub subject: String,
    pub night: u32,
    pub day: u32,
    /// Distinct nights with a sighting; a night is named by the local date it begins on.
    pub night_days: u32,
    /// night / (night + day).
    pub night_ratio: f64,
}

pub fn nocturnal(ctx: &QueryContext<'_>, q: &NocturnalQuery) -> Result<Vec<Nocturnal>> {
    ctx.check_range(q.from_ms, q.to_ms)?;
    check_limit(q.limit)?;
    if !(q.day_start_hour < q.day_end_hour && q.day_end_hour <= 24) {
        return Err(QueryError::invalid(
            "day_start_hour",
            "need 0 <= day_start_hour < day_end_hour <= 24",
        ));
    }
    let communities = q.communities.as_ref().map(|c| ctx.community_ids(c));
    let (start, end) = (
        q.day_start_hour as i64 * HOUR_MS,
        q.day_end_hour as i64 * HOUR_MS,
    );
    let mut per: HashMap<u32, (u32, u32, BTreeSet<i64>)> = HashMap::new();
    for r in kind_rows(ctx, q.kind, q.from_ms, q.to_ms, communities.as_deref())? {
        let (day, ms) = ctx.local(r.ts_ms);
        let e = per.entry(r.subject).or_default();
        if ms >= start && ms < end {
            e.1 += 1;
        } else {
            e.0 += 1;
            e.2.insert(if ms < start { day - 1 } else { day });
        }
    }
    let dicts = ctx.store.dictionaries();
    let names = Names { dicts: &dicts };
    let mut out: Vec<Nocturnal> = per
        .into_iter()
        .filter(|(_, (night, day, _))| *night >= q.min_night && *day <= q.max_day)
        .map(|(id, (night, day, nights))| Nocturnal {
            subject: names.subject(id).1.to_string(),
            night,
            day,
            night_days: nights.len() as u32,
            night_ratio: night as f64 / (night + day) as f64,
        })
        .collect();
    out.sort_by(|a, b| b.night.cmp(&a.night).then(a.subject.cmp(&b.subject)));
    out.truncate(q.limit);
    Ok(out)
}

// ---------------------------------------------------------------------------------

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct FirstSeenQuery {
    pub community: String,
    pub kind: Kind,
    pub from_ms: i64,
    pub to_ms: i64,
    /// Days before `from_ms` in which the subject must not have been seen there.
    pub lookback_days: u32,
    pub limit: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FirstSeen {
    pub subject: String,
    /// First sighting in the window.
    pub first_ms: i64,
    /// Sightings in the window.
    pub count: u32,
}

pub fn first_seen(ctx: &QueryContext<'_>, q: &FirstSeenQuery) -> Result<Vec<FirstSeen>> {
    ctx.check_range(q.from_ms, q.to_ms)?;
    check_limit(q.limit)?;
    if q.lookback_days as i64 > ctx.max_range_days {
        return Err(QueryError::invalid(
            "lookback",
            format!("must be at most {} days", ctx.max_range_days),
        ));
    }
    let communities = ctx.community_ids(std::slice::from_ref(&q.community));
    if communities.is_empty() {
        return Ok(Vec::new());
    }
    let before: HashSet<u32> = kind_rows(
        ctx,
        q.kind,
        q.from_ms - q.lookback_days as i64 * DAY_MS,
        q.from_ms,
        Some(&communities),
    )?
    .into_iter()
    .map(|r| r.subject)
    .collect();
    let mut per: HashMap<u32, (i64, u32)> = HashMap::new();
    for r in kind_rows(ctx, q.kind, q.from_ms, q.to_ms, Some(&communities))? {
        if !before.contains(&r.subject) {
            let e = per.entry(r.subject).or_insert((i64::MAX, 0));
            e.0 = e.0.min(r.ts_ms);
            e.1 += 1;
        }
    }
    let dicts = ctx.store.dictionaries();
    let names = Names { dicts: &dicts };
    let mut out: Vec<FirstSeen> = per
        .into_iter()
        .map(|(id, (first_ms, count))| FirstSeen {
            subject: names.subject(id).1.to_string(),
            first_ms,
            count,
        })
        .collect();
    out.sort_by(|a, b| a.first_ms.cmp(&b.first_ms).then(a.subject.cmp(&b.subject)));
    out.truncate(q.limit);
    Ok(out)
}

// ---------------------------------------------------------------------------------

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct OvernightQuery {
    pub kind: Kind,
    pub subject: String,
    pub from_ms: i64,
    pub to_ms: i64,
    /// The evening part of a night starts at this local hour (default 19) …
    pub evening_hour: u32,
    /// … and the morning part ends at this local hour the next day (default 10).
    pub morning_hour: u32,
}

impl OvernightQuery {
    pub fn new(kind: Kind, subject: &str, from_ms: i64, to_ms: i64) -> OvernightQuery {
        OvernightQuery {
            kind,
            subject: subject.to_string(),
            from_ms,
            to_ms,
            evening_hour: 19,
            morning_hour: 10,
        }
    }
}

/// One night: the local date it begins on, the last evening and first morning sightings.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Night {
    /// Local day number (days since 1970-01-01 in local time) of the evening.
    pub day: i64,
    /// (community, ts) of the last sighting in the evening part.
    pub evening: Option<(String, i64)>,
    /// (community, ts) of the first sighting in the morning part.
    pub morning: Option<(String, i64)>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Overnight {
    pub nights: Vec<Night>,
    /// Communities by nights credited, descending, then by code.
    pub bases: Vec<(String, u32)>,
}

pub fn overnight(ctx: &QueryContext<'_>, q: &OvernightQuery) -> Result<Overnight> {
    ctx.check_range(q.from_ms, q.to_ms)?;
    if !(q.evening_hour <= 24 && q.morning_hour <= q.evening_hour) {
        return Err(QueryError::invalid(
            "evening_hour",
            "need morning_hour <= evening_hour <= 24",
        ));
    }
    let empty = Overnight {
        nights: Vec::new(),
        bases: Vec::new(),
    };
    let Some(subject) = ctx.subject_id(q.kind, &q.subject)? else {
        return Ok(empty);
    };
    let mut rows = ctx.subject_rows(subject, q.from_ms, q.to_ms, None)?;
    let dicts = ctx.store.dictionaries();
    let names = Names { dicts: &dicts };
    sort_rows(&mut rows, &names);
    let (evening, morning) = (
        q.evening_hour as i64 * HOUR_MS,
        q.morning_hour as i64 * HOUR_MS,
    );
    let mut nights: BTreeMap<i64, Night> = BTreeMap::new();
    for r in &rows {
        let (day, ms) = ctx.local(r.ts_ms);
        let night_of = |d: i64| Night {
            day: d,
            evening: None,
            morning: None,
        };
        if ms >= evening {
            // Rows are in time order: the last one wins.
            nights.entry(day).or_insert_with(|| night_of(day)).evening =
                Some((names.community(r.community), r.ts_ms));
        } else if ms < morning {
            let n = nights.entry(day - 1).or_insert_with(|| night_of(day - 1));
            if n.morning.is_none() {
                n.morning = Some((names.community(r.community), r.ts_ms));
            }
        }
    }
    let mut credit: BTreeMap<String, u32> = BTreeMap::new();
    for n in nights.values() {
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
    Ok(Overnight {
        nights: nights.into_values().collect(),
        bases,
    })
}
