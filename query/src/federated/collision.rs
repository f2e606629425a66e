//! Collision across partitions: a subject may meet one condition in one partition and
//! another elsewhere (its communities in different partitions, or a device reporting
//! to communities of several), so each partition answers the conditions met *here*
//! by subject name, and the merge unites the sets before counting them.

use std::collections::HashMap;

use crate::context::{Names, QueryContext};
use crate::error::Result;
use crate::{Collision, CollisionHit};

/// (subject, bits of the conditions met here) for every subject of the kind that
/// could still meet `min_conditions` with the conditions `elsewhere` may add.
pub(crate) fn met(
    ctx: &QueryContext<'_>,
    q: &Collision,
    elsewhere: u32,
) -> Result<Vec<(String, u32)>> {
    super::check::collision(q, ctx.max_range_days)?;
    let met = crate::collision::conditions_met(ctx, q)?;
    let dicts = ctx.store.dictionaries();
    let names = Names { dicts: &dicts };
    Ok(met
        .into_iter()
        .filter(|(_, bits)| (bits | elsewhere).count_ones() as usize >= q.min_conditions)
        .map(|(id, bits)| (names.subject(id).1.to_string(), bits))
        .collect())
}

pub(crate) fn merge(parts: Vec<Vec<(String, u32)>>, q: &Collision) -> Vec<CollisionHit> {
    let mut met: HashMap<String, u32> = HashMap::new();
    for (subject, bits) in parts.into_iter().flatten() {
        *met.entry(subject).or_default() |= bits;
    }
    let n = q.conditions.len();
    let mut out: Vec<CollisionHit> = met
        .into_iter()
        .filter(|(_, bits)| bits.count_ones() as usize >= q.min_conditions)
        .map(|(subject, bits)| CollisionHit {
            kind: q.kind,
            subject,
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
    out
}
