//! Counts of events per community, device or kind, per local hour or day.

use std::collections::BTreeMap;

use sightline_storage::Kind;

use crate::context::{Names, QueryContext};
use crate::error::Result;
use crate::{DAY_MS, HOUR_MS};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CountKey {
    Community,
    Device,
    Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Granularity {
    Hour,
    Day,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub from_ms: i64,
    pub to_ms: i64,
    pub communities: Option<Vec<String>>,
    pub kind: Option<Kind>,
    pub by: CountKey,
    pub per: Granularity,
}

/// Events of one key in one bucket (a local hour or day starting at `bucket_ms`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CountBucket {
    pub bucket_ms: i64,
    pub key: String,
    pub count: u64,
}

/// Buckets with at least one event, ordered by bucket then key.
pub fn counts(ctx: &QueryContext<'_>, q: &Counts) -> Result<Vec<CountBucket>> {
    ctx.check_range(q.from_ms, q.to_ms)?;
    let communities = ctx.communities(q.communities.as_deref());
    let tz = ctx.store.layout().tz_offset_ms;
    let width = match q.per {
        Granularity::Hour => HOUR_MS,
        Granularity::Day => DAY_MS,
    };
    let mut per: BTreeMap<(i64, u32), u64> = BTreeMap::new();
    ctx.scan_range(q.from_ms, q.to_ms, communities.as_deref(), |r| {
        if q.kind.is_some_and(|k| k != r.kind) {
            return;
        }
        let bucket = (r.ts_ms + tz).div_euclid(width) * width - tz;
        let key = match q.by {
            CountKey::Community => r.community,
            CountKey::Device => r.device,
            CountKey::Kind => r.kind.code() as u32,
        };
        *per.entry((bucket, key)).or_default() += 1;
    })?;
    let dicts = ctx.store.dictionaries();
    let names = Names { dicts: &dicts };
    let mut out: Vec<CountBucket> = per
        .into_iter()
        .map(|((bucket_ms, key), count)| CountBucket {
            bucket_ms,
            key: match q.by {
                CountKey::Community => names.community(key),
                CountKey::Device => names.device(key).to_string(),
                CountKey::Kind => Kind::from_code(key as u8)
                    .map_or("?", |k| k.as_str())
                    .to_string(),
            },
            count,
        })
        .collect();
    out.sort_by(|a, b| a.bucket_ms.cmp(&b.bucket_ms).then(a.key.cmp(&b.key)));
    Ok(out)
}
