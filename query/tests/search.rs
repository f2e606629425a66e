//! Vocabulary search: recall with deliberately misread plates, every mode against a
//! brute-force scan of the vocabulary, kind filters, staleness and persistence.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use sightline_index::{ocr_distance, StoreIndex, Vocabulary};
use sightline_query::*;
use sightline_storage::{EventInput, Kind, ManualClock, Store, StoreConfig};

/// 2021-09-01T00:00:00+08:00.
const DAY0: i64 = 1_630_425_600_000;

struct City {
    _dir: tempfile::TempDir,
    store: Store,
    index: Arc<StoreIndex>,
    vocab: Arc<Vocabulary>,
}

fn city() -> City {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0 + 10 * DAY_MS));
    let store = Store::open_with_clock(dir.path(), StoreConfig::default(), clock).unwrap();
    let index = StoreIndex::attach(&store).unwrap();
    City {
        _dir: dir,
        store,
        index,
        vocab: Arc::new(Vocabulary::in_memory().unwrap()),
    }
}

impl City {
    /// Stores one sighting of each `(kind, subject, ts)`.
    fn sight(&self, sightings: &[(Kind, &str, i64)]) {
        let valid: Vec<_> = sightings
            .iter()
            .map(|&(kind, subject, ts)| {
                self.store
                    .validate(EventInput {
                        ts_ms: ts,
                        community: "3205080001".into(),
                        device: "32050801011210000001".into(),
                        kind: kind.as_str().into(),
                        subject: subject.into(),
                        direction: "in".into(),
                        ..Default::default()
                    })
                    .unwrap()
            })
            .collect();
        self.store.append(&valid).unwrap();
    }

    fn search(&self, pattern: &str, mode: SearchMode, kind: Option<Kind>) -> Vec<SubjectMatch> {
        self.try_search(pattern, mode, kind).unwrap()
    }

    fn try_search(
        &self,
        pattern: &str,
        mode: SearchMode,
        kind: Option<Kind>,
    ) -> Result<Vec<SubjectMatch>> {
        let ctx = QueryContext::new(&self.store, &self.index);
        search(
            &ctx,
            &self.vocab,
            &SearchQuery {
                pattern: pattern.into(),
                mode,
                kind,
                limit: MAX_SEARCH_LIMIT,
            },
        )
    }
}

fn subjects(found: &[SubjectMatch]) -> Vec<&str> {
    found.iter().map(|m| m.subject.as_str()).collect()
}

const FUZZY1: SearchMode = SearchMode::Fuzzy { distance: 1 };

/// Each OCR confusion pair, read one way and the other.
const MISREADS: [(char, char); 12] = [
    ('0', 'D'),
    ('D', 'Q'),
    ('0', 'Q'),
    ('8', 'B'),
    ('1', '7'),
    ('7', 'I'),
    ('1', 'I'),
    ('2', 'Z'),
    ('5', 'S'),
    ('6', 'G'),
    ('B', '8'),
    ('S', '5'),
];

#[test]
fn a_misread_plate_finds_the_true_plate_before_other_near_misses() {
    let c = city();
    // For every confusion (a → b): the true plate has `a`, the camera read `b`; a
    // distractor differs from the read by one substitution OCR does not make.
    let mut cases = Vec::new();
    let mut all = Vec::new();
    for (i, &(a, b)) in MISREADS.iter().enumerate() {
        let truth = format!("苏E{a}{i:02}X4");
        let read = format!("苏E{b}{i:02}X4");
        let distractor = format!("苏E{b}{i:02}X9");
        all.push(truth.clone());
        all.push(distractor.clone());
        cases.push((truth, read, distractor));
    }
    // The distractor is seen more often, so only the distance can put the truth first.
    let mut sightings = Vec::new();
    for (n, p) in all.iter().enumerate() {
        let times = if n % 2 == 1 { 5 } else { 1 };
        for t in 0..times {
            sightings.push((Kind::Vehicle, p.as_str(), DAY0 + t * 60_000));
        }
    }
    c.sight(&sightings);
    c.vocab.catch_up(&c.store).unwrap();

    for (truth, read, distractor) in &cases {
        let found = c.search(read, FUZZY1, Some(Kind::Vehicle));
        let names = subjects(&found);
        let t = names.iter().position(|s| s == truth);
        let d = names.iter().position(|s| s == distractor);
        assert!(
            t.is_some(),
            "{read}: true plate {truth} not found in {names:?}"
        );
        assert!(d.is_some(), "{read}: {distractor} not found in {names:?}");
        assert!(
            t < d,
            "{read}: {truth} must rank before {distractor}: {names:?}"
        );
        assert_eq!(found[t.unwrap()].distance, 0.5);
        assert_eq!(found[d.unwrap()].distance, 1.0);
    }
}

#[test]
fn misread_separators_case_and_width_still_find_the_plate() {
    let c = city();
    c.sight(&[(Kind::Vehicle, "苏E·8D12Q", DAY0)]);
    c.vocab.catch_up(&c.store).unwrap();
    // The stored plate is 苏E8D12Q; the query is typed lower case, full width, with
    // a separator, and misread twice (B for 8, 0 for D).
    let found = c.search(
        "苏e·B０12Q",
        SearchMode::Fuzzy { distance: 2 },
        Some(Kind::Vehicle),
    );
    assert_eq!(subjects(&found), ["苏E8D12Q"]);
    assert_eq!(found[0].distance, 1.0);
    assert!(c.search("苏eB012Q", FUZZY1, Some(Kind::Vehicle)).is_empty());
}

/// With no kind asked, a plate written with a separator or a space (`苏E·8D12Q`,
/// ` 苏e 8d12q `) is searched as a plate for the vehicle kinds, and as nothing for
/// the kinds whose ids are only trimmed (where `·` is no pattern): found, not refused.
/// A pattern no kind can hold is still refused.
#[test]
fn a_plate_with_separators_is_found_when_no_kind_is_asked() {
    let c = city();
    c.sight(&[
        (Kind::Vehicle, "苏E8D12Q", DAY0),
        (Kind::Face, "FACE-8D12Q", DAY0),
    ]);
    c.vocab.catch_up(&c.store).unwrap();
    for typed in ["苏E·8D12Q", " 苏e 8d12q ", "苏E　8D12Q"] {
        for mode in [SearchMode::Exact, FUZZY1, SearchMode::Prefix] {
            let found = c.search(typed, mode, None);
            assert_eq!(subjects(&found), ["苏E8D12Q"], "{typed:?} {mode:?}");
        }
        // Asked as a face id, the separator is no pattern: refused as before.
        assert!(
            c.try_search(typed, FUZZY1, Some(Kind::Face)).is_err(),
            "{typed:?}"
        );
    }
    assert!(c.try_search("·", FUZZY1, None).is_err());
    assert!(c.try_search("$$", SearchMode::Exact, None).is_err());
}

#[test]
fn results_carry_counts_and_first_and_last_sighting() {
    let c = city();
    c.sight(&[
        (Kind::Vehicle, "苏E12345", DAY0 + 5_000),
        (Kind::Vehicle, "苏E12345", DAY0 + 1_000),
        (Kind::Vehicle, "苏E12345", DAY0 + 9_000),
        (Kind::Vehicle, "苏E12346", DAY0 + 7_000),
    ]);
    c.vocab.catch_up(&c.store).unwrap();
    let found = c.search("苏E1234", SearchMode::Prefix, Some(Kind::Vehicle));
    assert_eq!(
        found,
        vec![
            SubjectMatch {
                kind: Kind::Vehicle,
                subject: "苏E12345".into(),
                count: 3,
                first_ms: DAY0 + 1_000,
                last_ms: DAY0 + 9_000,
                distance: 0.0,
            },
            SubjectMatch {
                kind: Kind::Vehicle,
                subject: "苏E12346".into(),
                count: 1,
                first_ms: DAY0 + 7_000,
                last_ms: DAY0 + 7_000,
                distance: 0.0,
            },
        ]
    );
}

#[test]
fn retention_removes_dropped_events_from_search_counts_and_statistics() {
    let c = city();
    // Now is day 10. Day 0 is sealed, day 3 stays in memory, day 7 is kept.
    c.sight(&[
        (Kind::Vehicle, "苏E12345", DAY0 + 1_000),
        (Kind::Vehicle, "苏E12345", DAY0 + 2_000),
        (Kind::Vehicle, "苏E12345", DAY0 + 3 * DAY_MS),
        (Kind::Vehicle, "苏E12345", DAY0 + 7 * DAY_MS + 5_000),
        (Kind::Vehicle, "苏E12345", DAY0 + 7 * DAY_MS + 9_000),
        (Kind::Vehicle, "苏E12346", DAY0 + 4_000),
    ]);
    let day0 = ShardKeyOf::day(&c.store, DAY0);
    c.store.seal_shard(day0).unwrap();
    c.vocab.catch_up(&c.store).unwrap();
    let before = c.search("苏E1234", SearchMode::Prefix, Some(Kind::Vehicle));
    assert_eq!(
        before
            .iter()
            .map(|m| (m.subject.as_str(), m.count, m.first_ms))
            .collect::<Vec<_>>(),
        [("苏E12345", 5, DAY0 + 1_000), ("苏E12346", 1, DAY0 + 4_000)]
    );
    // Keep 5 days: days 0 to 4 go (day 0 sealed, day 3 from memory).
    c.store.set_retention_days(Some(5)).unwrap();
    assert_eq!(c.store.apply_retention().unwrap().len(), 2);
    let after = c.search("苏E1234", SearchMode::Prefix, Some(Kind::Vehicle));
    assert_eq!(
        after,
        vec![SubjectMatch {
            kind: Kind::Vehicle,
            subject: "苏E12345".into(),
            count: 2,
            first_ms: DAY0 + 7 * DAY_MS + 5_000,
            last_ms: DAY0 + 7 * DAY_MS + 9_000,
            distance: 0.0,
        }],
        "dropped events no longer count; a subject seen only in dropped shards is gone"
    );
    let id = c
        .store
        .dictionaries()
        .subject_id(Kind::Vehicle, "苏E12345")
        .unwrap();
    let view = c.index.view();
    assert_eq!(view.subject_shards(id, 0, i64::MAX, None).unwrap().len(), 1);
    let stats = view.subject_stats(id).unwrap().unwrap();
    assert_eq!(
        (stats.count, stats.first_ms),
        (2, DAY0 + 7 * DAY_MS + 5_000)
    );
    // The store agrees with the statistics.
    let shards = view.subject_shards(id, 0, i64::MAX, None).unwrap();
    assert_eq!(
        c.store
            .count_subject(shards, id, 0, i64::MAX, None)
            .unwrap(),
        stats.count
    );
}

/// A day's shard of the one community `City::sight` uses.
struct ShardKeyOf;

impl ShardKeyOf {
    fn day(store: &Store, ts: i64) -> sightline_storage::ShardKey {
        sightline_storage::ShardKey {
            community: store.dictionaries().community_id("3205080001").unwrap(),
            span: store.layout().span_of(ts),
        }
    }
}

#[test]
fn kind_filters_and_feature_ids_are_matched_as_given() {
    let c = city();
    c.sight(&[
        (Kind::Vehicle, "苏E12345", DAY0),
        (Kind::Face, "fe-12345", DAY0),
        (Kind::Face, "FE-12345", DAY0),
        (Kind::Access, "12345", DAY0),
    ]);
    c.vocab.catch_up(&c.store).unwrap();
    let wild = |kind| {
        let mut s: Vec<_> = c
            .search("*345", SearchMode::Wildcard, kind)
            .into_iter()
            .map(|m| (m.kind, m.subject))
            .collect();
        s.sort();
        s
    };
    assert_eq!(wild(Some(Kind::Face)).len(), 2);
    assert_eq!(
        wild(Some(Kind::Access)),
        [(Kind::Access, "12345".to_string())]
    );
    assert_eq!(wild(None).len(), 4);
    // Feature ids keep their case and dashes; plates are normalised.
    assert_eq!(
        subjects(&c.search("fe-12345", SearchMode::Exact, Some(Kind::Face))),
        ["fe-12345"]
    );
    assert_eq!(
        subjects(&c.search("苏e-12345", SearchMode::Exact, None)),
        ["苏E12345"]
    );
    assert_eq!(
        subjects(&c.search("fe-12345", SearchMode::Exact, None)),
        ["fe-12345"]
    );
}

#[test]
fn bad_patterns_and_limits_are_refused_with_the_field() {
    let c = city();
    c.sight(&[(Kind::Vehicle, "苏E12345", DAY0)]);
    c.vocab.catch_up(&c.store).unwrap();
    // Regex syntax no kind's spelling holds (`.` alone is a plate's separator: `苏E.*`
    // is the plate wildcard `苏E*`).
    assert_eq!(
        subjects(&c.search("苏E.*", SearchMode::Wildcard, None)),
        ["苏E12345"]
    );
    for (p, mode) in [
        ("苏E(.*)", SearchMode::Wildcard),
        ("*", SearchMode::Wildcard),
        ("苏E[0-9]", SearchMode::Prefix),
        ("苏E1", SearchMode::Fuzzy { distance: 3 }),
        ("", SearchMode::Exact),
    ] {
        let e = c.try_search(p, mode, None).unwrap_err();
        assert!(
            matches!(e, QueryError::Index(_)),
            "{p:?} {mode:?} gave {e:?}"
        );
    }
    let ctx = QueryContext::new(&c.store, &c.index);
    let q = |limit| SearchQuery {
        pattern: "苏E".into(),
        mode: SearchMode::Prefix,
        kind: None,
        limit,
    };
    for limit in [0, MAX_SEARCH_LIMIT + 1] {
        let e = search(&ctx, &c.vocab, &q(limit)).unwrap_err();
        assert!(e.to_string().contains("limit"), "{e}");
    }
    assert_eq!(search(&ctx, &c.vocab, &q(1)).unwrap().len(), 1);
}

#[test]
fn new_subjects_become_searchable_within_the_refresh_interval() {
    let c = city();
    c.sight(&[(Kind::Vehicle, "苏E11111", DAY0)]);
    c.vocab.catch_up(&c.store).unwrap();
    c.sight(&[(Kind::Vehicle, "苏E22222", DAY0)]);
    // Not yet: the vocabulary has not caught up.
    assert!(c.search("苏E22222", SearchMode::Exact, None).is_empty());
    assert_eq!(c.vocab.catch_up(&c.store).unwrap(), 1);
    assert_eq!(c.search("苏E22222", SearchMode::Exact, None).len(), 1);

    // With a refresher running, a new subject appears without any call.
    let _refresher = c
        .vocab
        .spawn_refresher(c.store.clone(), Duration::from_millis(20));
    c.sight(&[(Kind::Vehicle, "苏E33333", DAY0)]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.search("苏E33333", SearchMode::Exact, None).is_empty() {
        assert!(
            Instant::now() < deadline,
            "refresher never indexed 苏E33333"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_persistent_vocabulary_resumes_where_it_stopped() {
    let c = city();
    let vdir = tempfile::tempdir().unwrap();
    c.sight(&[(Kind::Vehicle, "苏E11111", DAY0)]);
    {
        let v = Vocabulary::open(vdir.path()).unwrap();
        assert_eq!(v.catch_up(&c.store).unwrap(), 1);
    }
    c.sight(&[(Kind::Vehicle, "苏E22222", DAY0)]);
    let v = Vocabulary::open(vdir.path()).unwrap();
    assert_eq!(v.indexed(), 1);
    assert_eq!(v.catch_up(&c.store).unwrap(), 1, "only the new subject");
    let mut ids = v
        .search("苏E", sightline_index::SearchMode::Prefix, &[])
        .unwrap();
    ids.sort();
    assert_eq!(ids.len(), 2);
}

#[test]
fn a_damaged_vocabulary_directory_is_an_error_naming_it() {
    let vdir = tempfile::tempdir().unwrap();
    std::fs::write(vdir.path().join("meta.json"), b"{not json").unwrap();
    let e = Vocabulary::open(vdir.path()).err().expect("must fail");
    assert!(
        e.to_string().contains(&vdir.path().display().to_string()),
        "{e}"
    );
}

/// Edit distance with adjacent transpositions, every edit costing 1, written plainly.
fn osa(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            d[i][j] = if i == 0 {
                j
            } else if j == 0 {
                i
            } else {
                let mut v = (d[i - 1][j] + 1)
                    .min(d[i][j - 1] + 1)
                    .min(d[i - 1][j - 1] + usize::from(a[i - 1] != b[j - 1]));
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    v = v.min(d[i - 2][j - 2] + 1);
                }
                v
            };
        }
    }
    d[a.len()][b.len()]
}

/// Does `s` match the wildcard `p` (`?` one character, `*` any run)?
fn wildcard(p: &[char], s: &[char]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some('*'), _) => wildcard(&p[1..], s) || (!s.is_empty() && wildcard(p, &s[1..])),
        (Some('?'), Some(_)) => wildcard(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => wildcard(&p[1..], &s[1..]),
        _ => false,
    }
}

/// Plates over a small alphabet rich in OCR confusions, so near misses abound.
fn plate() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!['0', 'D', '8', 'B', '1', '5', 'S']),
        1..5,
    )
    .prop_map(|cs| format!("苏E{}", cs.into_iter().collect::<String>()))
}

fn pattern_and_mode() -> impl Strategy<Value = (String, SearchMode)> {
    let chars = vec!['0', 'D', '8', 'B', '1', '5', 'S', '?', '*'];
    prop_oneof![
        plate().prop_map(|p| (p, SearchMode::Exact)),
        plate().prop_map(|p| (p, SearchMode::Fuzzy { distance: 1 })),
        plate().prop_map(|p| (p, SearchMode::Fuzzy { distance: 2 })),
        prop::collection::vec(prop::sample::select(chars.clone()), 0..3).prop_map(|cs| (
            format!(
                "苏E{}",
                cs.into_iter()
                    .filter(|c| c.is_alphanumeric())
                    .collect::<String>()
            ),
            SearchMode::Prefix
        )),
        (
            prop::bool::ANY,
            prop::collection::vec(prop::sample::select(chars), 2..6)
        )
            .prop_map(|(lead, cs)| {
                let tail: String = cs.into_iter().collect();
                let p = if lead {
                    format!("*{tail}")
                } else {
                    format!("苏E{tail}")
                };
                (p, SearchMode::Wildcard)
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_mode_matches_a_scan_of_the_vocabulary(
        seen in prop::collection::vec((plate(), 0i64..1000), 1..40),
        (pattern, mode) in pattern_and_mode(),
        catch_up_between in prop::bool::ANY,
    ) {
        let c = city();
        // Model: per plate, (count, first, last).
        let mut model: BTreeMap<String, (u64, i64, i64)> = BTreeMap::new();
        let half = seen.len() / 2;
        for (n, (p, t)) in seen.iter().enumerate() {
            let ts = DAY0 + t * 1000;
            c.sight(&[(Kind::Vehicle, p, ts)]);
            let e = model.entry(p.clone()).or_insert((0, ts, ts));
            e.0 += 1;
            e.1 = e.1.min(ts);
            e.2 = e.2.max(ts);
            if catch_up_between && n == half {
                c.vocab.catch_up(&c.store).unwrap();
            }
        }
        c.vocab.catch_up(&c.store).unwrap();

        let pchars: Vec<char> = pattern.chars().collect();
        let wild_literals = pchars.iter().filter(|c| !matches!(c, '?' | '*')).count();
        let found = c.try_search(&pattern, mode, Some(Kind::Vehicle));
        if mode == SearchMode::Wildcard && wild_literals < 2 {
            prop_assert!(found.is_err());
            return Ok(());
        }
        let found = found.unwrap();
        let expected: BTreeSet<&String> = model
            .keys()
            .filter(|s| match mode {
                SearchMode::Exact => **s == pattern,
                SearchMode::Prefix => s.starts_with(&pattern),
                SearchMode::Wildcard => {
                    wildcard(&pchars, &s.chars().collect::<Vec<_>>())
                }
                SearchMode::Fuzzy { distance } => osa(&pattern, s) <= distance as usize,
            })
            .collect();
        let got: BTreeSet<&String> = found.iter().map(|m| &m.subject).collect();
        prop_assert_eq!(&got, &expected, "{} {:?}", pattern, mode);
        for m in &found {
            let (count, first, last) = model[&m.subject];
            prop_assert_eq!((m.count, m.first_ms, m.last_ms), (count, first, last));
            let want = match mode {
                SearchMode::Fuzzy { .. } => ocr_distance(&pattern, &m.subject),
                _ => 0.0,
            };
            prop_assert_eq!(m.distance, want);
        }
        for w in found.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            prop_assert!(
                a.distance < b.distance
                    || (a.distance == b.distance
                        && (a.count > b.count
                            || (a.count == b.count && a.subject < b.subject))),
                "order: {:?} before {:?}", a, b
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Retention against a model of the events kept: sightings over ten days, some days
    /// sealed and the others still in memory, retention of 1 to 10 days (now is day 10),
    /// then sightings that came after it. Search's count, first and last of every plate
    /// are those of the events kept, and a plate seen only on dropped days is not found.
    #[test]
    fn search_counts_after_retention_are_those_of_the_events_kept(
        seen in prop::collection::vec((plate(), 0i64..10, 0i64..86_400), 1..40),
        sealed in prop::collection::btree_set(0i64..10, 0..10),
        days in 1u32..11,
        later in prop::collection::vec((plate(), 0i64..86_400), 0..10),
    ) {
        let c = city();
        let mut model: Vec<(String, i64)> = Vec::new();
        for (p, d, s) in &seen {
            let ts = DAY0 + d * DAY_MS + s * 1000;
            c.sight(&[(Kind::Vehicle, p, ts)]);
            model.push((p.clone(), ts));
        }
        for d in &sealed {
            c.store.seal_shard(ShardKeyOf::day(&c.store, DAY0 + d * DAY_MS)).unwrap();
        }
        c.vocab.catch_up(&c.store).unwrap();
        c.store.set_retention_days(Some(days)).unwrap();
        let dropped = c.store.apply_retention().unwrap();
        // A day's shard goes once its end is at or before now − days.
        let horizon = DAY0 + 10 * DAY_MS - days as i64 * DAY_MS;
        let layout = c.store.layout();
        let expired: BTreeSet<i32> = model
            .iter()
            .map(|(_, ts)| layout.span_of(*ts))
            .filter(|span| layout.end_ms(*span) <= horizon)
            .collect();
        prop_assert_eq!(dropped.len(), expired.len());
        model.retain(|(_, ts)| layout.end_ms(layout.span_of(*ts)) > horizon);
        // Day 9 is never dropped (retention keeps at least a day back from day 10).
        for (p, s) in &later {
            let ts = DAY0 + 9 * DAY_MS + s * 1000;
            c.sight(&[(Kind::Vehicle, p, ts)]);
            model.push((p.clone(), ts));
        }
        c.vocab.catch_up(&c.store).unwrap();

        let mut want: BTreeMap<String, (u64, i64, i64)> = BTreeMap::new();
        for (p, ts) in &model {
            let e = want.entry(p.clone()).or_insert((0, *ts, *ts));
            e.0 += 1;
            e.1 = e.1.min(*ts);
            e.2 = e.2.max(*ts);
        }
        let got: BTreeMap<String, (u64, i64, i64)> = c
            .search("苏E", SearchMode::Prefix, Some(Kind::Vehicle))
            .into_iter()
            .map(|m| (m.subject, (m.count, m.first_ms, m.last_ms)))
            .collect();
        prop_assert_eq!(got, want, "retention of {} days", days);
    }
}

#[test]
fn swapped_adjacent_characters_are_one_edit() {
    let c = city();
    c.sight(&[(Kind::Vehicle, "苏E12345", DAY0)]);
    c.vocab.catch_up(&c.store).unwrap();
    let found = c.search("苏E13245", FUZZY1, Some(Kind::Vehicle));
    assert_eq!(subjects(&found), ["苏E12345"]);
    assert_eq!(found[0].distance, 1.0);
}

#[test]
fn a_trajectory_page_carries_each_event_s_attributes_sealed_or_not() {
    use sightline_storage::AttrValue;
    let c = city();
    let mut inputs = Vec::new();
    for i in 0..6i64 {
        let mut attrs = sightline_storage::Attrs::new();
        attrs.insert("lane".into(), AttrValue::Int(i));
        attrs.insert("plate_color".into(), AttrValue::Str(format!("c{i}")));
        inputs.push(
            c.store
                .validate(EventInput {
                    ts_ms: DAY0 + i * 60_000,
                    community: "3205080001".into(),
                    device: "32050801011210000001".into(),
                    kind: "vehicle".into(),
                    subject: "苏E12345".into(),
                    direction: "in".into(),
                    attrs,
                })
                .unwrap(),
        );
    }
    // Half sealed, half in memory.
    c.store.append(&inputs[..3]).unwrap();
    for s in c.store.shards() {
        c.store.seal_shard(s.key).unwrap();
    }
    c.store.append(&inputs[3..]).unwrap();
    let ctx = QueryContext::new(&c.store, &c.index);
    let q = TrajectoryQuery {
        kind: Kind::Vehicle,
        subject: "苏E12345".into(),
        from_ms: DAY0,
        to_ms: DAY0 + DAY_MS,
        communities: None,
        cursor: None,
        limit: 4,
    };
    let mut lanes = Vec::new();
    let mut page = trajectory(&ctx, &q).unwrap();
    loop {
        let attrs = page.attrs().unwrap();
        assert_eq!(attrs.len(), page.events.len());
        for a in &attrs {
            let AttrValue::Int(lane) = a["lane"] else {
                panic!("{a:?}")
            };
            assert_eq!(a["plate_color"], AttrValue::Str(format!("c{lane}")));
            lanes.push(lane);
        }
        let Some(cursor) = page.next_cursor.take() else {
            break;
        };
        page = trajectory(
            &ctx,
            &TrajectoryQuery {
                cursor: Some(cursor),
                ..q.clone()
            },
        )
        .unwrap();
    }
    assert_eq!(lanes, [0, 1, 2, 3, 4, 5]);
}
