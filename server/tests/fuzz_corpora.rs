//! Replays every fuzz corpus file and every minimised crash of the server's targets
//! (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`: ingest bodies, binary
//! batches, GA/T 1400 requests, query strings) through their entry points, so CI checks
//! them without a fuzzer. `SIGHTLINE_WRITE_FUZZ_SEEDS=1 cargo test -p sightline-server
//! --test fuzz_corpora` (re)writes their seed inputs: valid inputs of every kind.

use sightline_server::fuzzing;
use sightline_storage::fuzzing::corpus::{replay_corpora, seed_event, Seed, Target};

const TARGETS: [Target; 4] = [
    ("ingest_json", fuzzing::ingest_json),
    ("binary_batch", fuzzing::binary_batch),
    ("gat1400", fuzzing::gat1400),
    ("query_params", fuzzing::query_params),
];

/// Valid inputs of every kind.
fn seeds() -> Vec<Seed> {
    let ndjson = (0..3)
        .map(|i| {
            format!("{{\"ts\":\"2021-09-01T08:0{i}:00+08:00\",\"community\":\"3205080001\",\"device\":\"32050801011210000001\",\"kind\":\"vehicle\",\"subject\":\"苏E1234{i}\",\"direction\":\"in\",\"attrs\":{{\"lane\":{i}}}}}")
        })
        .collect::<Vec<_>>();
    let binary = sightline_server::wire::encode(&[seed_event(1, "苏E1"), seed_event(2, "苏E2")]);
    let gat = "Digest username=\"32050801011210000001\", realm=\"Sightline\", nonce=\"n\", uri=\"/VIID/System/Register\", qop=auth, nc=00000001, cnonce=\"c\", response=\"r\"\n{\"MotorVehicleListObject\":{\"MotorVehicleObject\":[{\"MotorVehicleID\":\"320508010112100000010220210901080000000000000001\",\"DeviceID\":\"32050801011210000001\",\"PassTime\":\"20210901080000123\",\"PlateNo\":\"苏E12345\",\"PlateReliability\":\"90\",\"SubImageList\":{\"SubImageInfoObject\":[{\"StoragePath\":\"http://i/1.jpg\"}]}}]}}";
    vec![
        ("ingest_json", "ndjson", ndjson.join("\n").into_bytes()),
        ("ingest_json", "array", format!("[{}]", ndjson.join(",")).into_bytes()),
        ("binary_batch", "two-events", binary),
        ("gat1400", "vehicles", gat.as_bytes().to_vec()),
        ("query_params", "trajectory", b"kind=vehicle&subject=%E8%8B%8FE12345&from=2021-09-01T00:00:00%2B08:00&to=1630454400000&window=60s&limit=10&community=a,b&after=3".to_vec()),
        ("query_params", "cursor", b"1630454400000.32050801011210000001.17".to_vec()),
    ]
}

#[test]
fn every_corpus_file_and_regression_replays_without_a_panic() {
    replay_corpora(&TARGETS, seeds);
}
