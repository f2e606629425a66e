//! Collision (碰撞): subjects present under several conditions.

use std::collections::HashMap;

use sightline_storage::Kind;

use crate::context::{Names, QueryContext};
use crate::error::Result;

/// Most conditions in one query.
pub const MAX_CONDITIONS: usize = 32;
/// Most subjects returned.
pub const MAX_LIMIT: usize = 100_000;

/// Where a condition holds.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Place {
    /// Community codes.
    Communities(Vec<String>),
    /// 20-digit device codes.
    Devices(Vec<String>),
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Condition {
    pub place: Place,
    pub from_ms: i64,
    pub to_ms: i64,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Collision {
    pub kind: Kind,
    pub conditions: Vec<Condition>,
    /// A subject qualifies when seen under at least this many conditions.
    pub min_conditions: usize,
    pub limit: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CollisionHit {
    pub kind: Kind,
    pub subject: String,
    /// Indexes of the conditions met, ascending.
    pub conditions: Vec<usize>,
}

pub fn collision(ctx: &QueryContext<'_>, q: &Collision) -> Result<Vec<CollisionHit>> {
    crate::federated::check::collision(q, ctx.max_range_days)?;
    let met = conditions_met(ctx, q)?;
    let n = q.conditions.len();
    let dicts = ctx.store.dictionaries();
    let names = Names { dicts: &dicts };
    let mut out: Vec<CollisionHit> = met
        .into_iter()
        .filter(|(_, bits)| bits.count_ones() as usize >= q.min_conditions)
        .map(|(id, bits)| CollisionHit {
            kind: q.kind,
            subject: names.subject(id).1.to_string(),
            conditions: (0..n).filter(|i| bits & (1 << i) != 0).collect(),
        })
        .collect();
    out.sort_by(|a, b| {
        b.conditions
            .len()
            .cmp(&a.conditions.len())
            .then(a.subject.cmp(&b.subject))
    });
    out.truncate(q.limit);
    Ok(out)
}

/// Subject id → bit set of the conditions it met (one bit a condition, in order).
pub(crate) fn conditions_met(ctx: &QueryContext<'_>, q: &Collision) -> Result<HashMap<u32, u32>> {
    let mut met: HashMap<u32, u32> = HashMap::new();
    let mut rows = Vec::new();
    for (i, c) in q.conditions.iter().enumerate() {
        rows.clear();
        match &c.place {
            Place::Communities(codes) => {
                let ids = ctx.community_ids(codes);
                ctx.scan_range(c.from_ms, c.to_ms, Some(&ids), |r| rows.push(r))?;
            }
            Place::Devices(codes) => {
                let ids: Vec<u32> = {
                    let d = ctx.store.dictionaries();
                    codes.iter().filter_map(|c| d.device_id(c)).collect()
                };
                for id in ids {
                    ctx.check_deadline()?;
                    ctx.device_rows(id, c.from_ms, c.to_ms, &mut rows)?;
                }
            }
        }
        for r in &rows {
            if r.kind == q.kind {
                *met.entry(r.subject).or_default() |= 1 << i;
            }
        }
    }
    Ok(met)
}
