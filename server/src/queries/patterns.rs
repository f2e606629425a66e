//! The community pattern queries: frequency (频繁出入), nocturnal (昼伏夜出), first
//! seen (首次出现), a subject's overnight base (落脚点), and event counts.

use serde_json::{json, Value};
use sightline_query::{
    counts as count, first_seen as first, frequency as often, nocturnal as night,
    overnight as base, CountBucket, CountKey, Counts, FirstSeen, FirstSeenQuery, Frequency,
    FrequencyQuery, Granularity, Nocturnal, NocturnalQuery, Overnight, OvernightQuery,
    QueryContext,
};

use super::range;
use crate::error::ApiError;
use crate::http::out::listed;
use crate::http::Body;
use crate::params::{rfc3339, Params};
use crate::App;

/// Most rows a counts answer may hold.
const MAX_COUNT_ROWS: usize = 100_000;

/// `GET /v1/frequency`.
pub(crate) fn frequency(
    app: &App,
    ctx: &QueryContext<'_>,
    p: &Params,
) -> Result<(Body, usize), ApiError> {
    let q = frequency_query(p, app.config.max_result_rows)?;
    Ok(frequency_answer(&often(ctx, &q)?))
}

/// The frequency query of the parameters (also the cluster's query role's).
pub(crate) fn frequency_query(p: &Params, max_rows: usize) -> Result<FrequencyQuery, ApiError> {
    let (from_ms, to_ms) = range(p)?;
    let opt = |name: &str| -> Result<Option<u32>, ApiError> {
        p.get(name)?.map(|_| p.number(name, 0u32)).transpose()
    };
    Ok(FrequencyQuery {
        community: p.required("community")?.to_string(),
        kind: p.kind("kind")?,
        from_ms,
        to_ms,
        min_count: opt("min_count")?,
        min_days: opt("min_days")?,
        limit: p.limit(1000, max_rows)?,
    })
}

pub(crate) fn frequency_answer(found: &[Frequency]) -> (Body, usize) {
    let subjects: Vec<Value> = found
        .iter()
        .map(|f| {
            json!({ "subject": f.subject, "count": f.count, "days": f.days,
                    "first": rfc3339(f.first_ms), "last": rfc3339(f.last_ms) })
        })
        .collect();
    listed("subjects", subjects)
}

/// `GET /v1/nocturnal`.
pub(crate) fn nocturnal(
    app: &App,
    ctx: &QueryContext<'_>,
    p: &Params,
) -> Result<(Body, usize), ApiError> {
    let q = nocturnal_query(p, app.config.max_result_rows)?;
    Ok(nocturnal_answer(&night(ctx, &q)?))
}

/// The nocturnal query of the parameters (also the cluster's query role's).
pub(crate) fn nocturnal_query(p: &Params, max_rows: usize) -> Result<NocturnalQuery, ApiError> {
    let (from_ms, to_ms) = range(p)?;
    let kind = p.kind("kind")?;
    let mut q = NocturnalQuery::new(kind, from_ms, to_ms);
    q.communities = p.list("community");
    q.day_start_hour = p.number("day_start_hour", q.day_start_hour)?;
    q.day_end_hour = p.number("day_end_hour", q.day_end_hour)?;
    q.min_night = p.number("min_night", q.min_night)?;
    q.max_day = p.number("max_day", q.max_day)?;
    q.limit = p.limit(q.limit, max_rows)?;
    Ok(q)
}

pub(crate) fn nocturnal_answer(found: &[Nocturnal]) -> (Body, usize) {
    let subjects: Vec<Value> = found
        .iter()
        .map(|n| {
            json!({ "subject": n.subject, "night": n.night, "day": n.day,
                    "night_days": n.night_days,
                    "night_ratio": (n.night_ratio * 1000.0).round() / 1000.0 })
        })
        .collect();
    listed("subjects", subjects)
}

/// `GET /v1/first-seen`.
pub(crate) fn first_seen(
    app: &App,
    ctx: &QueryContext<'_>,
    p: &Params,
) -> Result<(Body, usize), ApiError> {
    let q = first_seen_query(p, app.config.max_result_rows)?;
    Ok(first_seen_answer(&first(ctx, &q)?))
}

/// The first-seen query of the parameters (also the cluster's query role's).
pub(crate) fn first_seen_query(p: &Params, max_rows: usize) -> Result<FirstSeenQuery, ApiError> {
    let (from_ms, to_ms) = range(p)?;
    let lookback = p.window("lookback")?.unwrap_or(30 * 86_400_000);
    if lookback % 86_400_000 != 0 || lookback < 0 {
        return Err(ApiError::param(
            "lookback",
            "must be whole days, like 30d or 720h",
        ));
    }
    Ok(FirstSeenQuery {
        community: p.required("community")?.to_string(),
        kind: p.kind("kind")?,
        from_ms,
        to_ms,
        lookback_days: (lookback / 86_400_000) as u32,
        limit: p.limit(1000, max_rows)?,
    })
}

pub(crate) fn first_seen_answer(found: &[FirstSeen]) -> (Body, usize) {
    let subjects: Vec<Value> = found
        .iter()
        .map(|f| json!({ "subject": f.subject, "first": rfc3339(f.first_ms), "count": f.count }))
        .collect();
    listed("subjects", subjects)
}

/// `GET /v1/overnight`.
pub(crate) fn overnight(
    _: &App,
    ctx: &QueryContext<'_>,
    p: &Params,
) -> Result<(Body, usize), ApiError> {
    Ok(overnight_answer(&base(ctx, &overnight_query(p)?)?))
}

/// The overnight query of the parameters (also the cluster's query role's).
pub(crate) fn overnight_query(p: &Params) -> Result<OvernightQuery, ApiError> {
    let (from_ms, to_ms) = range(p)?;
    let mut q = OvernightQuery::new(p.kind("kind")?, p.required("subject")?, from_ms, to_ms);
    q.evening_hour = p.number("evening_hour", q.evening_hour)?;
    q.morning_hour = p.number("morning_hour", q.morning_hour)?;
    Ok(q)
}

pub(crate) fn overnight_answer(o: &Overnight) -> (Body, usize) {
    let at = |x: &Option<(String, i64)>| {
        x.as_ref()
            .map(|(c, ts)| json!({ "community": c, "ts": rfc3339(*ts) }))
    };
    let nights: Vec<Value> = o
        .nights
        .iter()
        .map(|n| json!({ "date": local_date(n.day), "evening": at(&n.evening), "morning": at(&n.morning) }))
        .collect();
    let bases: Vec<Value> = o
        .bases
        .iter()
        .map(|(c, n)| json!({ "community": c, "nights": n }))
        .collect();
    let n = nights.len();
    (json!({ "nights": nights, "bases": bases }).into(), n)
}

/// `GET /v1/counts`.
pub(crate) fn counts(
    _: &App,
    ctx: &QueryContext<'_>,
    p: &Params,
) -> Result<(Body, usize), ApiError> {
    counts_answer(&count(ctx, &counts_query(p)?)?)
}

/// The counts query of the parameters (also the cluster's query role's).
pub(crate) fn counts_query(p: &Params) -> Result<Counts, ApiError> {
    let (from_ms, to_ms) = range(p)?;
    let by = p.choice(
        "by",
        "community",
        &[
            ("community", CountKey::Community),
            ("device", CountKey::Device),
            ("kind", CountKey::Kind),
        ],
    )?;
    let per = p.choice(
        "per",
        "day",
        &[("hour", Granularity::Hour), ("day", Granularity::Day)],
    )?;
    Ok(Counts {
        from_ms,
        to_ms,
        communities: p.list("community"),
        kind: p.opt_kind("kind")?,
        by,
        per,
    })
}

/// Counts' answer, refused past [`MAX_COUNT_ROWS`] buckets.
pub(crate) fn counts_answer(buckets: &[CountBucket]) -> Result<(Body, usize), ApiError> {
    if buckets.len() > MAX_COUNT_ROWS {
        return Err(ApiError::param(
            "to",
            format!(
                "{} buckets; at most {MAX_COUNT_ROWS}: narrow the range, count per day, or name communities",
                buckets.len()
            ),
        ));
    }
    let rows: Vec<Value> = buckets
        .iter()
        .map(|b| json!({ "bucket": rfc3339(b.bucket_ms), "key": b.key, "count": b.count }))
        .collect();
    Ok(listed("counts", rows))
}

/// `2021-09-01` for a local day number.
fn local_date(day: i64) -> String {
    chrono::DateTime::from_timestamp_millis(day * 86_400_000)
        .map(|t| t.date_naive().to_string())
        .unwrap_or_else(|| day.to_string())
}
