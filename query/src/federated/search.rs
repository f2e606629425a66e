//! Subject search across partitions: a subject (a plate that drives through
//! communities of several partitions) is in several vocabularies, with sightings in
//! each. Ranking is by total sightings, so a partition cannot cut its list at the
//! limit: it answers every match with its own statistics, and the merge adds them up
//! by (kind, subject), refuses what one store would refuse as too broad, sorts and
//! cuts.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use sightline_index::{IndexError, SearchMode, SubjectStats, Vocabulary, MAX_MATCHES};
use sightline_storage::Kind;

use crate::context::QueryContext;
use crate::error::Result;
use crate::{SearchQuery, SubjectMatch};

/// 2100-01-01: the end of "all time" for a scoped count (as `crate::search`).
const ALL_TIME_MS: i64 = 4_102_444_800_000;

/// [`SearchMode`] for serde (it lives in `sightline-index`, which knows no serde).
#[derive(Serialize, Deserialize)]
#[serde(remote = "SearchMode")]
pub(crate) enum SearchModeDef {
    Exact,
    Prefix,
    Wildcard,
    Fuzzy { distance: u8 },
}

/// One vocabulary match in one partition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatchPartial {
    /// The normalised pattern that matched it (one search per distinct spelling).
    pub pattern: String,
    pub kind: Kind,
    pub subject: String,
    /// (count, first, last) of its sightings here (in the scope); `None` when none.
    pub stats: Option<(u64, i64, i64)>,
}

/// Every match of the pattern in this partition's vocabulary, with its statistics.
pub(crate) fn matches(
    ctx: &QueryContext<'_>,
    vocab: &Vocabulary,
    q: &SearchQuery,
) -> Result<Vec<MatchPartial>> {
    super::check::search(q)?;
    let ids = crate::search::vocabulary_matches(vocab, q)?;
    let stats: Vec<Option<SubjectStats>> = match ctx.scope {
        None => {
            let view = ctx.index.view();
            ids.iter()
                .map(|(id, _)| view.subject_stats(*id))
                .collect::<std::result::Result<_, _>>()?
        }
        Some(_) => ids
            .iter()
            .map(|(id, _)| {
                ctx.check_deadline()?;
                let rows = ctx.subject_rows(*id, 0, ALL_TIME_MS, None)?;
                Ok((!rows.is_empty()).then(|| SubjectStats {
                    count: rows.len() as u64,
                    first_ms: rows.iter().map(|r| r.ts_ms).min().unwrap_or(0),
                    last_ms: rows.iter().map(|r| r.ts_ms).max().unwrap_or(0),
                }))
            })
            .collect::<Result<_>>()?,
    };
    let dicts = ctx.store.dictionaries();
    Ok(ids
        .into_iter()
        .zip(stats)
        .filter_map(|((id, pattern), stats)| {
            let (kind, subject) = dicts.subject(id)?;
            Some(MatchPartial {
                pattern,
                kind,
                subject: subject.to_string(),
                stats: stats.map(|s| (s.count, s.first_ms, s.last_ms)),
            })
        })
        .collect())
}

pub(crate) fn merge(parts: Vec<Vec<MatchPartial>>, q: &SearchQuery) -> Result<Vec<SubjectMatch>> {
    // Distinct subjects per search: more than one vocabulary would have matched is
    // refused, as one store refuses it.
    let mut per_pattern: HashMap<&str, BTreeSet<(Kind, &str)>> = HashMap::new();
    for m in parts.iter().flatten() {
        per_pattern
            .entry(&m.pattern)
            .or_default()
            .insert((m.kind, &m.subject));
    }
    if let Some((pattern, subjects)) = per_pattern.iter().find(|(_, s)| s.len() > MAX_MATCHES) {
        return Err(IndexError::TooBroad {
            pattern: pattern.to_string(),
            matches: subjects.len(),
            max: MAX_MATCHES,
        }
        .into());
    }
    drop(per_pattern);
    // (kind, subject) → (the pattern it matched, its statistics added up).
    type Stats = Option<(u64, i64, i64)>;
    let mut per: HashMap<(Kind, String), (String, Stats)> = HashMap::new();
    for m in parts.into_iter().flatten() {
        let e = per.entry((m.kind, m.subject)).or_insert((m.pattern, None));
        if let Some((count, first, last)) = m.stats {
            e.1 = Some(match e.1 {
                None => (count, first, last),
                Some((c, f, l)) => (c + count, f.min(first), l.max(last)),
            });
        }
    }
    let mut out: Vec<SubjectMatch> = per
        .into_iter()
        .filter_map(|((kind, subject), (pattern, stats))| {
            let (count, first_ms, last_ms) = stats?;
            let distance = crate::search::distance(q.mode, &pattern, &subject);
            Some(SubjectMatch {
                kind,
                subject,
                count,
                first_ms,
                last_ms,
                distance,
            })
        })
        .collect();
    crate::search::rank(&mut out, q.limit);
    Ok(out)
}
