//! Weekly and monthly roll-ups: one object merging the day directories of a week
//! (Monday to Sunday) or a calendar month (Asia/Shanghai days), built once every day
//! of it has its own, so a query over a long range reads one bucket a week or month
//! instead of one a day. A roll-up is as right as its days' directories: late events
//! are noted per day (`late_days`), and a query adds the notes of every day of its
//! range whichever directory covers the day.

use std::collections::BTreeSet;

use super::catalog::DirectoryRow;
use super::format::{self, DirectoryBuilder};
use crate::error::Result;
use crate::meta::Meta;
use crate::objects::Objects;

/// The week holding `day`: its Monday and 7 (day 0, 1970-01-01, was a Thursday).
pub fn week_of(day: i32) -> (i32, i32) {
    (day - (day + 3).rem_euclid(7), 7)
}

/// The calendar month holding `day`: its first day and its length.
pub fn month_of(day: i32) -> (i32, i32) {
    let (y, m, d) = civil_from_days(i64::from(day));
    let first = day - (d as i32 - 1);
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let next = days_from_civil(ny, nm, 1) as i32;
    (first, next - first)
}

/// (year, month, day) of a day number (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The day number of (year, month, day) (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The next roll-up to build: a (kind, first day, days) whose every day has a day
/// directory and which has none of its kind yet (weeks first, oldest first).
pub fn next_rollup(
    days: &[DirectoryRow],
    rollups: &[DirectoryRow],
) -> Option<(&'static str, i32, i32)> {
    let built: BTreeSet<i32> = days.iter().map(|r| r.start_day).collect();
    for (kind, period) in [
        ("week", week_of as fn(i32) -> (i32, i32)),
        ("month", month_of),
    ] {
        let done: BTreeSet<i32> = rollups
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.start_day)
            .collect();
        let candidates: BTreeSet<(i32, i32)> = built.iter().map(|&d| period(d)).collect();
        if let Some(&(start, len)) = candidates.iter().find(|(start, len)| {
            !done.contains(start) && (*start..start + len).all(|d| built.contains(&d))
        }) {
            return Some((kind, start, len));
        }
    }
    None
}

/// Builds and registers the roll-up `(kind, start, len)` from its days' objects
/// (each read whole and checked); returns its key and subjects.
pub async fn build(
    meta: &mut Meta,
    objects: &Objects,
    days: &[DirectoryRow],
    (kind, start, len): (&'static str, i32, i32),
    partitions: u32,
    buckets: u32,
) -> Result<(String, usize)> {
    let mut merged = DirectoryBuilder::new();
    for day in start..start + len {
        let row = days
            .iter()
            .find(|r| r.start_day == day)
            .expect("next_rollup chose a period whose every day has a directory");
        let object = objects.get(&row.object_key).await?;
        let (_, bs) = format::buckets(&row.object_key, &object)?;
        bs.iter().for_each(|b| merged.add_bucket(b));
    }
    let bytes = merged.encode(partitions, buckets, start, len as u32);
    let key = super::object_key(kind, start, crate::objects::upload_nonce());
    let row = DirectoryRow {
        kind: kind.into(),
        start_day: start,
        days: len,
        object_key: key.clone(),
        object_bytes: bytes.len() as u64,
        buckets,
    };
    objects.put_create(&key, bytes.into()).await?;
    meta.register_directory(&row, merged.len() as u64).await?;
    Ok((key, merged.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(kind: &str, start_day: i32, days: i32) -> DirectoryRow {
        DirectoryRow {
            kind: kind.into(),
            start_day,
            days,
            object_key: String::new(),
            object_bytes: 0,
            buckets: 1,
        }
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_their_first() {
        // 2021-09-01 (+08:00) is day 18,871, a Wednesday.
        let sept1 = super::super::day_of(1_630_425_600_000);
        assert_eq!(sept1, 18_871);
        assert_eq!(week_of(sept1), (sept1 - 2, 7));
        assert_eq!(week_of(sept1 - 2), (sept1 - 2, 7));
        assert_eq!(week_of(sept1 + 4), (sept1 - 2, 7));
        assert_eq!(week_of(sept1 + 5), (sept1 + 5, 7));
        assert_eq!(month_of(sept1), (sept1, 30));
        assert_eq!(month_of(sept1 + 29), (sept1, 30));
        assert_eq!(month_of(sept1 - 1), (sept1 - 31, 31));
        // February of a leap year, and days before 1970.
        let feb = days_from_civil(2024, 2, 1) as i32;
        assert_eq!(month_of(feb + 28), (feb, 29));
        assert_eq!(month_of(-1), (-31, 31));
        for d in -800..800 {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn a_rollup_waits_for_every_day_of_its_period() {
        let monday = 18_869;
        let mut days: Vec<DirectoryRow> = (monday..monday + 6).map(|d| day("day", d, 1)).collect();
        assert_eq!(next_rollup(&days, &[]), None);
        days.push(day("day", monday + 6, 1));
        assert_eq!(next_rollup(&days, &[]), Some(("week", monday, 7)));
        assert_eq!(next_rollup(&days, &[day("week", monday, 7)]), None);
    }
}
