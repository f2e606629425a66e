//! Vocabulary search over subject strings with tantivy: exact, prefix, wildcard and
//! fuzzy, with plate-OCR confusions ranked before other edits.
//!
//! The vocabulary holds subjects, not events: one document per dictionary entry,
//! `(id, kind, subject)`. Subject ids are dense and assigned in order, so the number
//! of committed documents is the next id to index; [`Vocabulary::catch_up`] indexes
//! the dictionary entries past it and commits. A refresher thread calls it every
//! `refresh` interval, so a new subject is searchable within that interval plus the
//! time of one commit (the *staleness bound*; default 1 s).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sightline_storage::{Kind, Store};
use tantivy::collector::DocSetCollector;
use tantivy::query::{BooleanQuery, FuzzyTermQuery, Occur, Query, RegexQuery, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, FAST, INDEXED, STRING};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, Term};

use crate::error::{IndexError, Result};

/// How a pattern matches subjects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchMode {
    Exact,
    Prefix,
    /// `?` is one character, `*` any run of characters.
    Wildcard,
    /// Within `distance` edits (1 or 2).
    Fuzzy {
        distance: u8,
    },
}

/// Bounds of a search, so no pattern can cost without limit.
pub const MAX_PATTERN_CHARS: usize = 32;
/// A pattern matching more subjects than this is refused as too broad.
pub const MAX_MATCHES: usize = 100_000;

pub struct Vocabulary {
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    id: Field,
    kind: Field,
    subject: Field,
    /// Next subject id to index.
    next: AtomicU64,
}

fn schema() -> (Schema, Field, Field, Field) {
    let mut b = Schema::builder();
    let id = b.add_u64_field("id", FAST);
    let kind = b.add_u64_field("kind", INDEXED);
    let subject = b.add_text_field("subject", STRING);
    (b.build(), id, kind, subject)
}

impl Vocabulary {
    /// Opens the vocabulary kept in `dir`, creating it if missing.
    pub fn open(dir: &Path) -> Result<Vocabulary> {
        std::fs::create_dir_all(dir).map_err(|source| IndexError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let (schema, ..) = schema();
        let mmap = tantivy::directory::MmapDirectory::open(dir)
            .map_err(|e| IndexError::vocabulary(dir, e.to_string()))?;
        let index = Index::open_or_create(mmap, schema)
            .map_err(|e| IndexError::vocabulary(dir, e.to_string()))?;
        Self::with_index(index).map_err(|e| IndexError::vocabulary(dir, e.to_string()))
    }

    /// Opens the vocabulary kept in `dir` for `store` and checks that it is this
    /// store's: no more documents than the store has durable subjects, and its first
    /// and last documents are the dictionary's strings under their ids. A vocabulary
    /// that cannot be opened or fails the check is removed and rebuilt empty (it is
    /// derived from the dictionary; [`Vocabulary::catch_up`] fills it); the reason is
    /// returned. tantivy writes its own files (its commit is atomic), outside the
    /// store's file-system seam.
    pub fn open_checked(dir: &Path, store: &Store) -> Result<(Vocabulary, Option<String>)> {
        let why = match Vocabulary::open(dir) {
            Ok(v) => match v.check(store) {
                Ok(()) => return Ok((v, None)),
                Err(why) => why,
            },
            Err(e) => e.to_string(),
        };
        tracing::warn!(dir = %dir.display(), reason = %why, "vocabulary rebuilt");
        std::fs::remove_dir_all(dir).map_err(|source| IndexError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok((Vocabulary::open(dir)?, Some(why)))
    }

    /// Whether the committed documents are `store`'s subjects (see
    /// [`Vocabulary::open_checked`]).
    fn check(&self, store: &Store) -> std::result::Result<(), String> {
        let docs = self.indexed();
        let durable = store.durable_subjects() as u64;
        if docs > durable {
            return Err(format!(
                "{docs} subjects indexed, the store has {durable} durable ones"
            ));
        }
        for id in [0, docs.saturating_sub(1)].into_iter().filter(|_| docs > 0) {
            let (kind, subject) = {
                let d = store.dictionaries();
                match d.subject(id as u32) {
                    Some((k, s)) => (k, s.to_string()),
                    None => return Err(format!("subject {id} is not in the dictionary")),
                }
            };
            let hits = self
                .search_exact_unchecked(&subject, kind)
                .map_err(|e| e.to_string())?;
            if !hits.contains(&(id as u32)) {
                return Err(format!("subject {id} is not indexed under its string"));
            }
        }
        Ok(())
    }

    /// The ids indexed under exactly `subject` of `kind`, without the pattern rules
    /// (stored subjects may hold characters patterns may not).
    fn search_exact_unchecked(&self, subject: &str, kind: Kind) -> Result<Vec<u32>> {
        let query = BooleanQuery::new(vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(self.subject, subject),
                    IndexRecordOption::Basic,
                )) as Box<dyn Query>,
            ),
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_u64(self.kind, kind.code() as u64),
                    IndexRecordOption::Basic,
                )),
            ),
        ]);
        self.ids(&query, subject)
    }

    /// A vocabulary in memory only, rebuilt from the dictionaries on each start.
    pub fn in_memory() -> Result<Vocabulary> {
        let (schema, ..) = schema();
        Self::with_index(Index::create_in_ram(schema))
            .map_err(|e| IndexError::vocabulary(Path::new("(memory)"), e.to_string()))
    }

    fn with_index(index: Index) -> tantivy::Result<Vocabulary> {
        let s = index.schema();
        let field = |name: &str| s.get_field(name);
        let (id, kind, subject) = (field("id")?, field("kind")?, field("subject")?);
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        // One indexing thread and a small arena: subjects are short and arrive slowly.
        let writer = index.writer_with_num_threads(1, 32 << 20)?;
        let next = reader.searcher().num_docs();
        Ok(Vocabulary {
            index,
            reader,
            writer: Mutex::new(writer),
            id,
            kind,
            subject,
            next: AtomicU64::new(next),
        })
    }

    /// Subjects indexed so far (all ids below this are searchable).
    pub fn indexed(&self) -> u64 {
        self.next.load(Ordering::Acquire)
    }

    /// Indexes the dictionary entries added since the last call and commits them.
    /// Returns how many were added.
    pub fn catch_up(&self, store: &Store) -> Result<usize> {
        let mut writer = self.writer.lock().expect("vocabulary writer poisoned");
        let from = self.next.load(Ordering::Acquire);
        let batch: Vec<(u32, Kind, String)> = {
            let d = store.dictionaries();
            // Only durable entries: an id past them may be given to another string if
            // its group commit fails, and a vocabulary on disk would keep the old one.
            let durable = store.durable_subjects().min(d.len_subjects());
            (from as u32..durable as u32)
                .filter_map(|id| d.subject(id).map(|(k, s)| (id, k, s.to_string())))
                .collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let err = |e: tantivy::TantivyError| {
            IndexError::vocabulary(Path::new("vocabulary"), e.to_string())
        };
        for (id, kind, s) in &batch {
            writer
                .add_document(doc!(
                    self.id => *id as u64,
                    self.kind => kind.code() as u64,
                    self.subject => s.as_str(),
                ))
                .map_err(err)?;
        }
        writer.commit().map_err(err)?;
        self.reader.reload().map_err(err)?;
        self.next
            .store(from + batch.len() as u64, Ordering::Release);
        Ok(batch.len())
    }

    /// Keeps the vocabulary current from a background thread, every `every`.
    pub fn spawn_refresher(self: &Arc<Self>, store: Store, every: Duration) -> Refresher {
        let stop = Arc::new(AtomicBool::new(false));
        let (vocab, flag) = (self.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("vocabulary".into())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    if let Err(e) = vocab.catch_up(&store) {
                        tracing::warn!(error = %e, "vocabulary refresh failed; retrying");
                    }
                    std::thread::park_timeout(every);
                }
            })
            .expect("spawning the vocabulary thread");
        Refresher {
            stop,
            handle: Some(handle),
        }
    }

    /// Ids of the subjects of one of `kinds` (any kind when empty) matching `pattern`
    /// in `mode`, unordered. `pattern` must already be normalised like stored subjects.
    pub fn search(&self, pattern: &str, mode: SearchMode, kinds: &[Kind]) -> Result<Vec<u32>> {
        check_pattern(pattern, mode)?;
        let term = |s: &str| Term::from_field_text(self.subject, s);
        let matcher: Box<dyn Query> = match mode {
            SearchMode::Exact => Box::new(TermQuery::new(term(pattern), IndexRecordOption::Basic)),
            SearchMode::Prefix => Box::new(self.regex(&format!("{}.*", literal(pattern)))?),
            SearchMode::Wildcard => {
                let w = crate::wildcard::Wildcard::new(pattern).ok_or_else(|| {
                    IndexError::invalid_pattern(pattern, "too many characters for a wildcard")
                })?;
                Box::new(crate::wildcard::WildcardQuery::new(self.subject, w))
            }
            SearchMode::Fuzzy { distance } => {
                Box::new(FuzzyTermQuery::new(term(pattern), distance, true))
            }
        };
        let query: Box<dyn Query> = if kinds.is_empty() {
            matcher
        } else {
            let any_kind = kinds
                .iter()
                .map(|k| {
                    let q: Box<dyn Query> = Box::new(TermQuery::new(
                        Term::from_field_u64(self.kind, k.code() as u64),
                        IndexRecordOption::Basic,
                    ));
                    (Occur::Should, q)
                })
                .collect();
            Box::new(BooleanQuery::new(vec![
                (Occur::Must, matcher),
                (Occur::Must, Box::new(BooleanQuery::new(any_kind))),
            ]))
        };
        self.ids(&*query, pattern)
    }

    /// The `id` of every document `query` matches (at most [`MAX_MATCHES`]).
    fn ids(&self, query: &dyn Query, pattern: &str) -> Result<Vec<u32>> {
        let searcher = self.reader.searcher();
        let err = |e: tantivy::TantivyError| {
            IndexError::vocabulary(Path::new("vocabulary"), e.to_string())
        };
        let docs = searcher.search(query, &DocSetCollector).map_err(err)?;
        if docs.len() > MAX_MATCHES {
            return Err(IndexError::TooBroad {
                pattern: pattern.to_string(),
                matches: docs.len(),
                max: MAX_MATCHES,
            });
        }
        let columns = searcher
            .segment_readers()
            .iter()
            .map(|r| r.fast_fields().u64("id"))
            .collect::<tantivy::Result<Vec<_>>>()
            .map_err(err)?;
        let hits = docs
            .into_iter()
            .filter_map(|addr| columns[addr.segment_ord as usize].first(addr.doc_id))
            .map(|id| id as u32)
            .collect();
        Ok(hits)
    }

    fn regex(&self, re: &str) -> Result<RegexQuery> {
        RegexQuery::from_pattern(re, self.subject)
            .map_err(|e| IndexError::invalid_pattern(re, e.to_string()))
    }

    /// The index itself, for inspection.
    pub fn tantivy_index(&self) -> &Index {
        &self.index
    }
}

/// Stops the refresher thread when dropped.
pub struct Refresher {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Refresher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

/// Patterns hold letters, digits, CJK characters, `-` and `_` (feature ids), plus
/// `?`/`*` in wildcard mode; everything else is refused, so user input never reaches
/// the regex engine raw.
fn check_pattern(pattern: &str, mode: SearchMode) -> Result<()> {
    let n = pattern.chars().count();
    if n == 0 || n > MAX_PATTERN_CHARS {
        return Err(IndexError::invalid_pattern(
            pattern,
            format!("must be 1 to {MAX_PATTERN_CHARS} characters"),
        ));
    }
    let wild = |c: char| matches!(c, '?' | '*');
    if let Some(c) = pattern
        .chars()
        .find(|&c| !(literal_char(c) || (mode == SearchMode::Wildcard && wild(c))))
    {
        return Err(IndexError::invalid_pattern(
            pattern,
            format!(
                "character {c:?} is not allowed; use letters, digits, - and _, and ? or * in wildcard mode"
            ),
        ));
    }
    if mode == SearchMode::Wildcard && pattern.chars().filter(|&c| !wild(c)).count() < 2 {
        return Err(IndexError::invalid_pattern(
            pattern,
            "a wildcard pattern needs at least 2 literal characters",
        ));
    }
    if let SearchMode::Fuzzy { distance } = mode {
        if !(1..=2).contains(&distance) {
            return Err(IndexError::invalid_pattern(
                pattern,
                "fuzzy distance must be 1 or 2",
            ));
        }
    }
    Ok(())
}

fn literal_char(c: char) -> bool {
    c.is_alphanumeric() || c == '-' || c == '_'
}

/// `s` as a regex matching itself (only alphanumerics, `-` and `_` reach here; escape
/// the rest anyway).
fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if !c.is_alphanumeric() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Characters plate OCR confuses, by class.
const CONFUSIONS: [&str; 6] = ["0DQ", "8B", "17I", "2Z", "5S", "6G"];

fn confusable(a: char, b: char) -> bool {
    CONFUSIONS.iter().any(|c| c.contains(a) && c.contains(b))
}

/// Edit distance (with adjacent transpositions) where a substitution between
/// characters OCR confuses costs 0.5 and every other edit 1.
pub fn ocr_distance(a: &str, b: &str) -> f32 {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0f32; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i as f32;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j as f32;
    }
    for i in 1..=n {
        for j in 1..=m {
            let sub = if a[i - 1] == b[j - 1] {
                0.0
            } else if confusable(a[i - 1], b[j - 1]) {
                0.5
            } else {
                1.0
            };
            let mut best = (d[i - 1][j] + 1.0)
                .min(d[i][j - 1] + 1.0)
                .min(d[i - 1][j - 1] + sub);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1.0);
            }
            d[i][j] = best;
        }
    }
    d[n][m]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ocr_confusions_cost_less_than_other_edits() {
        assert_eq!(ocr_distance("苏E12345", "苏E12345"), 0.0);
        assert_eq!(ocr_distance("苏E12345", "苏E1234S"), 0.5);
        assert_eq!(ocr_distance("苏E12345", "苏E12348"), 1.0);
        assert_eq!(ocr_distance("苏E12345", "苏E1245"), 1.0);
        assert_eq!(ocr_distance("苏E12345", "苏E13245"), 1.0);
        assert_eq!(ocr_distance("苏E80D12", "苏EB0012"), 1.0);
    }

    #[test]
    fn patterns_outside_the_alphabet_are_refused_with_the_reason() {
        for (p, mode) in [
            ("", SearchMode::Exact),
            ("a.*b", SearchMode::Wildcard),
            ("*", SearchMode::Wildcard),
            ("?*", SearchMode::Wildcard),
            ("苏E(1|2)", SearchMode::Prefix),
            ("苏E1", SearchMode::Fuzzy { distance: 3 }),
        ] {
            assert!(check_pattern(p, mode).is_err(), "{p:?} {mode:?}");
        }
        let long = "A".repeat(MAX_PATTERN_CHARS + 1);
        assert!(check_pattern(&long, SearchMode::Exact).is_err());
        assert!(check_pattern("苏E1?3*", SearchMode::Wildcard).is_ok());
    }
}
