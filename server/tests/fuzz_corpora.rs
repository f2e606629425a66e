//! Replays every fuzz corpus file and every minimised crash (`fuzz/corpus/<target>/`,
//! `fuzz/regressions/<target>/`) through the fuzz entry points, so CI checks them
//! without a fuzzer. `SIGHTLINE_WRITE_FUZZ_SEEDS=1 cargo test -p sightline-server
//! --test fuzz_corpora` (re)writes the seed inputs: valid files of every kind.

use std::path::{Path, PathBuf};

use sightline_server::fuzzing;

type Target = (&'static str, fn(&[u8]));

const TARGETS: [Target; 10] = [
    ("segment", fuzzing::segment),
    ("wal", fuzzing::wal),
    ("wal_records", fuzzing::wal_records),
    ("dict_log", fuzzing::dict_log),
    ("dict_records", fuzzing::dict_records),
    ("ingest_json", fuzzing::ingest_json),
    ("binary_batch", fuzzing::binary_batch),
    ("gat1400", fuzzing::gat1400),
    ("query_params", fuzzing::query_params),
    ("pattern", fuzzing::pattern),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Valid inputs of every kind, from a real store.
fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    use sightline_storage::{EventInput, ManualClock, Store, StoreConfig};
    let day0 = 1_630_425_600_000i64;
    let dir = tempfile::tempdir().unwrap();
    let clock = std::sync::Arc::new(ManualClock::new(day0 + 3 * 86_400_000));
    let store = Store::open_with_clock(dir.path(), StoreConfig::default(), clock).unwrap();
    let input = |i: i64, subject: &str| EventInput {
        ts_ms: day0 + i * 60_000,
        community: "3205080001".into(),
        device: format!("3205080101121000000{}", i % 3),
        kind: "vehicle".into(),
        subject: subject.into(),
        direction: "in".into(),
        attrs: [(
            "plate_color".to_string(),
            sightline_storage::AttrValue::Str("blue".into()),
        )]
        .into_iter()
        .collect(),
    };
    let events: Vec<_> = (0..40)
        .map(|i| {
            store
                .validate(input(i, &format!("苏E{:05}", i % 7)))
                .unwrap()
        })
        .collect();
    store.append(&events).unwrap();
    for s in store.shards() {
        store.seal_shard(s.key).unwrap();
    }
    let later: Vec<_> = (40..50)
        .map(|i| store.validate(input(i, "苏E99999")).unwrap())
        .collect();
    store.append(&later).unwrap();
    let seg = std::fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .flat_map(|span| std::fs::read_dir(span.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let wal = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::metadata(p).unwrap().len() > 0)
        .unwrap();
    let ndjson = (0..3)
        .map(|i| {
            format!("{{\"ts\":\"2021-09-01T08:0{i}:00+08:00\",\"community\":\"3205080001\",\"device\":\"32050801011210000001\",\"kind\":\"vehicle\",\"subject\":\"苏E1234{i}\",\"direction\":\"in\",\"attrs\":{{\"lane\":{i}}}}}")
        })
        .collect::<Vec<_>>();
    let binary = sightline_server::wire::encode(&[input(1, "苏E1"), input(2, "苏E2")]);
    let gat = "Digest username=\"32050801011210000001\", realm=\"Sightline\", nonce=\"n\", uri=\"/VIID/System/Register\", qop=auth, nc=00000001, cnonce=\"c\", response=\"r\"\n{\"MotorVehicleListObject\":{\"MotorVehicleObject\":[{\"MotorVehicleID\":\"320508010112100000010220210901080000000000000001\",\"DeviceID\":\"32050801011210000001\",\"PassTime\":\"20210901080000123\",\"PlateNo\":\"苏E12345\",\"PlateReliability\":\"90\",\"SubImageList\":{\"SubImageInfoObject\":[{\"StoragePath\":\"http://i/1.jpg\"}]}}]}}";
    vec![
        ("segment", "sealed-day", std::fs::read(seg).unwrap()),
        ("wal", "two-batches", std::fs::read(&wal).unwrap()),
        ("wal_records", "two-batches", std::fs::read(&wal).unwrap()),
        ("dict_log", "dictionary", std::fs::read(dir.path().join("dict.log")).unwrap()),
        ("dict_records", "dictionary", std::fs::read(dir.path().join("dict.log")).unwrap()),
        ("ingest_json", "ndjson", ndjson.join("\n").into_bytes()),
        ("ingest_json", "array", format!("[{}]", ndjson.join(",")).into_bytes()),
        ("binary_batch", "two-events", binary),
        ("gat1400", "vehicles", gat.as_bytes().to_vec()),
        ("query_params", "trajectory", b"kind=vehicle&subject=%E8%8B%8FE12345&from=2021-09-01T00:00:00%2B08:00&to=1630454400000&window=60s&limit=10&community=a,b&after=3".to_vec()),
        ("query_params", "cursor", b"1630454400000.32050801011210000001.17".to_vec()),
        ("pattern", "wildcard", "苏E1?3*".as_bytes().to_vec()),
        ("pattern", "plate", "苏ED12345".as_bytes().to_vec()),
    ]
}

#[test]
fn every_corpus_file_and_regression_replays_without_a_panic() {
    if std::env::var_os("SIGHTLINE_WRITE_FUZZ_SEEDS").is_some() {
        for (target, name, bytes) in seeds() {
            let d = fuzz_dir().join("corpus").join(target);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(format!("seed-{name}")), bytes).unwrap();
        }
    }
    for (target, run) in TARGETS {
        let mut files = Vec::new();
        for kind in ["corpus", "regressions"] {
            let d = fuzz_dir().join(kind).join(target);
            if let Ok(entries) = std::fs::read_dir(&d) {
                files.extend(entries.map(|e| e.unwrap().path()));
            }
        }
        assert!(
            files.iter().any(|f| f.to_string_lossy().contains("seed-")),
            "{target}: no seed corpus in fuzz/corpus/{target}"
        );
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            run(&bytes);
            // Truncations and a flipped byte of every seed, too.
            if f.to_string_lossy().contains("seed-") {
                for cut in [
                    0,
                    1,
                    bytes.len() / 3,
                    bytes.len() / 2,
                    bytes.len().saturating_sub(1),
                ] {
                    run(&bytes[..cut.min(bytes.len())]);
                }
                for at in (0..bytes.len()).step_by((bytes.len() / 16).max(1)) {
                    let mut b = bytes.clone();
                    b[at] ^= 0x5a;
                    run(&b);
                }
            }
        }
    }
}

/// The `wal` target's seed gets past the dictionary check into replay (it runs beside
/// the dictionary seed), so the fuzzer explores replay itself, not just its refusals.
#[test]
fn the_wal_seed_replays_events_beside_the_dictionary_seed() {
    let corpus = fuzz_dir().join("corpus");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("wal")).unwrap();
    std::fs::copy(
        corpus.join("dict_log/seed-dictionary"),
        dir.path().join("dict.log"),
    )
    .unwrap();
    std::fs::copy(
        corpus.join("wal/seed-two-batches"),
        dir.path().join("wal").join(format!("{:020}.wal", 1)),
    )
    .unwrap();
    let n = sightline_storage::fuzz_entry::replay_logs(dir.path()).unwrap();
    assert!(n > 0, "the WAL seed replays no events");
}
