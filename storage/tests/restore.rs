//! A store rebuilt from its dictionary log and segment files (what a cluster indexer
//! uploads) holds exactly the events of the store that sealed them.

use sightline_storage::{EventInput, Restore, Store, StoreConfig};

fn event(i: u32, community: &str) -> EventInput {
    EventInput {
        ts_ms: 1_630_454_400_000 + i64::from(i) * 1_000,
        community: community.into(),
        device: format!("3205080101121000{:04}", i % 7),
        kind: "vehicle".into(),
        subject: format!("苏E{:05}", i % 50),
        direction: "in".into(),
        attrs: [(
            "source_id".to_string(),
            sightline_storage::AttrValue::Str(format!("src-{community}-{i}")),
        )]
        .into_iter()
        .collect(),
    }
}

fn all_events(store: &Store) -> Vec<(i64, String, String, String)> {
    let mut out = Vec::new();
    store
        .scan_range(i64::MIN, i64::MAX, None, |row| {
            let d = store.dictionaries();
            out.push((
                row.ts_ms,
                d.community(row.community).unwrap_or("?").to_string(),
                d.device(row.device).unwrap_or("?").to_string(),
                d.subject(row.subject)
                    .map(|s| s.1.to_string())
                    .unwrap_or_default(),
            ));
        })
        .unwrap();
    out.sort();
    out
}

#[test]
fn a_store_restored_from_its_dictionary_log_and_segments_holds_the_same_events() {
    let dir = tempfile::tempdir().unwrap();
    let src = Store::open(dir.path().join("src"), StoreConfig::default()).unwrap();
    let mut dict = Vec::new();
    for round in 0..3u32 {
        let events: Vec<_> = (round * 100..round * 100 + 100)
            .map(|i| {
                src.validate(event(i, ["3205080001", "3205080002"][i as usize % 2]))
                    .unwrap()
            })
            .collect();
        src.append(&events).unwrap();
        assert!(!src.seal_all().unwrap().is_empty());
        // The increments concatenate to the whole log.
        dict.extend(src.dictionary_log_from(dict.len() as u64).unwrap());
    }
    assert!(src
        .dictionary_log_from(dict.len() as u64)
        .unwrap()
        .is_empty());
    assert!(src.dictionary_log_from(dict.len() as u64 + 1).is_err());

    let manifest = src.catalog().manifest().unwrap();
    let mut restore =
        Restore::new(&dir.path().join("copy"), &StoreConfig::default(), &dict).unwrap();
    for (key, state) in &manifest.shards {
        for entry in &state.segments {
            let bytes = std::fs::read(src.dir().join(&entry.file)).unwrap();
            restore.add_segment(*key, entry.clone(), &bytes).unwrap();
        }
    }
    restore.finish().unwrap();
    let copy = Store::open(dir.path().join("copy"), StoreConfig::default()).unwrap();
    assert_eq!(all_events(&copy), all_events(&src));
    assert_eq!(all_events(&copy).len(), 300);
    // Appending goes on after the restored sequence numbers; a re-sent event is a duplicate.
    let again = copy
        .append(&[copy.validate(event(5, "3205080002")).unwrap()])
        .unwrap();
    assert_eq!(again.duplicates(), 1);
    let new = copy
        .append(&[copy.validate(event(1000, "3205080001")).unwrap()])
        .unwrap();
    assert_eq!(new.stored(), 1);
    assert!(copy.applied_through() > src.applied_through());
}

#[test]
fn a_restore_refuses_a_torn_dictionary_log_and_a_segment_listed_under_another_shard() {
    let dir = tempfile::tempdir().unwrap();
    let src = Store::open(dir.path().join("src"), StoreConfig::default()).unwrap();
    let events: Vec<_> = (0..10)
        .map(|i| src.validate(event(i, "3205080001")).unwrap())
        .collect();
    src.append(&events).unwrap();
    src.seal_all().unwrap();
    let dict = src.dictionary_log_from(0).unwrap();
    assert!(Restore::new(
        &dir.path().join("a"),
        &StoreConfig::default(),
        &dict[..dict.len() - 1]
    )
    .is_err());
    let manifest = src.catalog().manifest().unwrap();
    let (key, state) = manifest.shards.iter().next().unwrap();
    let entry = state.segments[0].clone();
    let bytes = std::fs::read(src.dir().join(&entry.file)).unwrap();
    let mut r = Restore::new(&dir.path().join("b"), &StoreConfig::default(), &dict).unwrap();
    let other = sightline_storage::ShardKey {
        community: key.community,
        span: key.span + 1,
    };
    assert!(r.add_segment(other, entry.clone(), &bytes).is_err());
    let mut bad = entry.clone();
    bad.file = "../escape.seg".into();
    assert!(r.add_segment(*key, bad, &bytes).is_err());
}
