//! Vocabulary search: subjects by pattern, with their sightings.

use sightline_index::{ocr_distance, SearchMode, Vocabulary};
use sightline_storage::Kind;

use crate::context::QueryContext;
use crate::error::{QueryError, Result};

/// 2100-01-01: the end of "all time" for a scoped count.
const ALL_TIME_MS: i64 = 4_102_444_800_000;

/// Most subjects one search returns.
pub const MAX_SEARCH_LIMIT: usize = 1000;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SearchQuery {
    pub pattern: String,
    #[serde(with = "crate::federated::SearchModeDef")]
    pub mode: SearchMode,
    /// Only subjects of this kind; all kinds when `None`.
    pub kind: Option<Kind>,
    pub limit: usize,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SubjectMatch {
    pub kind: Kind,
    pub subject: String,
    /// Sightings over the whole store, and the first and last.
    pub count: u64,
    pub first_ms: i64,
    pub last_ms: i64,
    /// Weighted edit distance from the pattern (fuzzy mode; 0 otherwise): OCR
    /// confusions (0/D/Q, 8/B, 1/7/I, 2/Z, 5/S, 6/G) cost 0.5, other edits 1.
    pub distance: f32,
}

/// Fuzzy results by (distance, count desc, subject); others by (count desc, subject).
pub fn search(
    ctx: &QueryContext<'_>,
    vocab: &Vocabulary,
    q: &SearchQuery,
) -> Result<Vec<SubjectMatch>> {
    if q.limit == 0 || q.limit > MAX_SEARCH_LIMIT {
        return Err(QueryError::invalid(
            "limit",
            format!("must be 1 to {MAX_SEARCH_LIMIT}"),
        ));
    }
    // The pattern is normalised the way each kind's subjects are stored: plates upper
    // case, half width, without separators; feature and card ids only trimmed. When
    // both spellings agree, one search covers every kind.
    let ids = vocabulary_matches(vocab, q)?;
    // Sightings: the index's store-wide statistics, or, for a scoped query, counted
    // from the subject's events in the scope (a subject never seen there is not a
    // match: its existence elsewhere is not revealed).
    let stats: Vec<Option<sightline_index::SubjectStats>> = match ctx.scope {
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
                Ok((!rows.is_empty()).then(|| sightline_index::SubjectStats {
                    count: rows.len() as u64,
                    first_ms: rows.iter().map(|r| r.ts_ms).min().unwrap_or(0),
                    last_ms: rows.iter().map(|r| r.ts_ms).max().unwrap_or(0),
                }))
            })
            .collect::<Result<_>>()?,
    };
    let dicts = ctx.store.dictionaries();
    let mut out: Vec<SubjectMatch> = ids
        .into_iter()
        .zip(stats)
        .filter_map(|((id, pattern), stats)| {
            let stats = stats?;
            let (kind, subject) = dicts.subject(id)?;
            let distance = distance(q.mode, &pattern, subject);
            Some(SubjectMatch {
                kind,
                subject: subject.to_string(),
                count: stats.count,
                first_ms: stats.first_ms,
                last_ms: stats.last_ms,
                distance,
            })
        })
        .collect();
    rank(&mut out, q.limit);
    Ok(out)
}

/// A match's OCR-weighted distance from the pattern (0 but for fuzzy searches).
pub(crate) fn distance(mode: SearchMode, pattern: &str, subject: &str) -> f32 {
    match mode {
        SearchMode::Fuzzy { .. } => ocr_distance(pattern, subject),
        _ => 0.0,
    }
}

/// The answer's order, cut to `limit`: closest first, then most seen, then by subject
/// and kind (one store's and a federation's alike).
pub(crate) fn rank(out: &mut Vec<SubjectMatch>, limit: usize) {
    out.sort_by(|a, b| {
        a.distance
            .total_cmp(&b.distance)
            .then(b.count.cmp(&a.count))
            .then(a.subject.cmp(&b.subject))
            .then(a.kind.cmp(&b.kind))
    });
    out.truncate(limit);
}

/// The subjects of `vocab` the query's pattern matches, each with the spelling that
/// matched it (one store's and a federation's partitions alike). With no kind asked,
/// a spelling one kind cannot hold (a plate written `苏E·12345` is a plate; as a face
/// id, only trimmed, its `·` is no pattern) is that kind's no-match, not the whole
/// search's refusal; it is refused when no spelling is a pattern.
pub(crate) fn vocabulary_matches(
    vocab: &Vocabulary,
    q: &SearchQuery,
) -> Result<Vec<(u32, String)>> {
    let searches = searches(q);
    let (mut ids, mut refused, mut searched) = (Vec::new(), None, 0);
    for (pattern, ks) in &searches {
        match vocab.search(pattern, q.mode, ks) {
            Ok(found) => {
                searched += 1;
                ids.extend(found.into_iter().map(|id| (id, pattern.clone())));
            }
            Err(e @ sightline_index::IndexError::InvalidPattern { .. })
                if q.kind.is_none() && searches.len() > 1 =>
            {
                refused.get_or_insert(e);
            }
            Err(e) => return Err(e.into()),
        }
    }
    match (refused, searched) {
        (Some(e), 0) => Err(e.into()),
        _ => Ok(ids),
    }
}

/// The vocabulary searches a query makes: the pattern normalised per kind, one search
/// per distinct spelling with its kinds (none: every kind, when one spelling serves
/// all) (one store's and a federation's alike).
pub(crate) fn searches(q: &SearchQuery) -> Vec<(String, Vec<Kind>)> {
    let kinds: Vec<Kind> = match q.kind {
        Some(k) => vec![k],
        None => Kind::ALL.to_vec(),
    };
    let mut searches: Vec<(String, Vec<Kind>)> = Vec::new();
    for k in kinds {
        let p = sightline_storage::normalize_subject(k, &q.pattern);
        match searches.iter_mut().find(|(s, _)| *s == p) {
            Some((_, ks)) => ks.push(k),
            None => searches.push((p, vec![k])),
        }
    }
    if q.kind.is_none() && searches.len() == 1 {
        searches[0].1.clear();
    }
    searches
}
