//! Query parameters checked before any work: a federated query checks them once, on
//! the query node, before any partition is asked (partitions check again, their own
//! queries do), and the single-store co-occurrence and collision call the same
//! functions, so both refuse alike, in the same order.

use crate::error::{check_range, QueryError, Result};
use crate::{
    Collision, Cooccurrence, FirstSeenQuery, FrequencyQuery, NocturnalQuery, OvernightQuery,
    SearchQuery, TrajectoryQuery, MAX_SEARCH_LIMIT,
};

fn limit(limit: usize, max: usize, field_reason: impl Fn() -> String) -> Result<()> {
    if limit == 0 || limit > max {
        return Err(QueryError::invalid("limit", field_reason()));
    }
    Ok(())
}

pub(crate) fn trajectory(q: &TrajectoryQuery, max_days: i64) -> Result<()> {
    let max = crate::trajectory::MAX_PAGE;
    limit(q.limit, max, || {
        format!("must be 1 to {max}, got {}", q.limit)
    })?;
    check_range(q.from_ms, q.to_ms, max_days)
}

pub(crate) fn cooccurrence(q: &Cooccurrence, max_days: i64) -> Result<()> {
    use crate::cooccurrence::{MAX_LIMIT, MAX_WINDOW_MS};
    check_range(q.from_ms, q.to_ms, max_days)?;
    if !(0..=MAX_WINDOW_MS).contains(&q.window_ms) {
        return Err(QueryError::invalid(
            "window",
            format!("must be 0 to {} s", MAX_WINDOW_MS / 1000),
        ));
    }
    limit(q.limit, MAX_LIMIT, || format!("must be 1 to {MAX_LIMIT}"))?;
    if q.min_count == 0 {
        return Err(QueryError::invalid("min_count", "must be at least 1"));
    }
    if let Some(g) = q.dedup_gap_ms {
        if !(0..=MAX_WINDOW_MS).contains(&g) {
            return Err(QueryError::invalid(
                "dedup_gap",
                format!("must be 0 to {} s", MAX_WINDOW_MS / 1000),
            ));
        }
    }
    Ok(())
}

pub(crate) fn collision(q: &Collision, max_days: i64) -> Result<()> {
    use crate::collision::{MAX_CONDITIONS, MAX_LIMIT};
    let n = q.conditions.len();
    if n == 0 || n > MAX_CONDITIONS {
        return Err(QueryError::invalid(
            "conditions",
            format!("need 1 to {MAX_CONDITIONS} conditions, got {n}"),
        ));
    }
    if q.min_conditions == 0 || q.min_conditions > n {
        return Err(QueryError::invalid(
            "min_conditions",
            format!("must be 1 to the number of conditions ({n})"),
        ));
    }
    limit(q.limit, MAX_LIMIT, || format!("must be 1 to {MAX_LIMIT}"))?;
    for c in &q.conditions {
        check_range(c.from_ms, c.to_ms, max_days)?;
    }
    Ok(())
}

fn pattern_limit(n: usize) -> Result<()> {
    let max = crate::patterns::MAX_LIMIT;
    limit(n, max, || format!("must be 1 to {max}"))
}

pub(crate) fn frequency(q: &FrequencyQuery, max_days: i64) -> Result<()> {
    check_range(q.from_ms, q.to_ms, max_days)?;
    pattern_limit(q.limit)?;
    if q.min_count.is_none() && q.min_days.is_none() {
        return Err(QueryError::invalid(
            "min_count",
            "give min_count, min_days or both",
        ));
    }
    Ok(())
}

pub(crate) fn nocturnal(q: &NocturnalQuery, max_days: i64) -> Result<()> {
    check_range(q.from_ms, q.to_ms, max_days)?;
    pattern_limit(q.limit)?;
    if !(q.day_start_hour < q.day_end_hour && q.day_end_hour <= 24) {
        return Err(QueryError::invalid(
            "day_start_hour",
            "need 0 <= day_start_hour < day_end_hour <= 24",
        ));
    }
    Ok(())
}

pub(crate) fn first_seen(q: &FirstSeenQuery, max_days: i64) -> Result<()> {
    check_range(q.from_ms, q.to_ms, max_days)?;
    pattern_limit(q.limit)?;
    if q.lookback_days as i64 > max_days {
        return Err(QueryError::invalid(
            "lookback",
            format!("must be at most {max_days} days"),
        ));
    }
    Ok(())
}

pub(crate) fn overnight(q: &OvernightQuery, max_days: i64) -> Result<()> {
    check_range(q.from_ms, q.to_ms, max_days)?;
    if !(q.evening_hour <= 24 && q.morning_hour <= q.evening_hour) {
        return Err(QueryError::invalid(
            "evening_hour",
            "need morning_hour <= evening_hour <= 24",
        ));
    }
    Ok(())
}

pub(crate) fn search(q: &SearchQuery) -> Result<()> {
    limit(q.limit, MAX_SEARCH_LIMIT, || {
        format!("must be 1 to {MAX_SEARCH_LIMIT}")
    })
}
