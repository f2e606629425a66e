//! Entry points for the fuzzers in `fuzz/` (cargo-fuzz) over the server's own input
//! surfaces: ingest bodies, binary batches, GA/T 1400 requests, query strings. Each
//! takes arbitrary bytes and must return without panicking, whatever they are: errors
//! are fine, crashes are bugs. `server/tests/fuzz_corpora.rs` replays their corpora
//! (and every crash found, minimised) in `cargo test`, so CI checks them without a
//! fuzzer. The store's files and search patterns are fuzzed beside their code
//! (`sightline_storage::fuzzing`, `sightline_index::fuzzing`).

use std::sync::OnceLock;

use sightline_storage::{Store, StoreConfig};

/// An NDJSON or JSON-array ingest body, through parsing and validation.
pub fn ingest_json(data: &[u8]) {
    if let Ok(records) = crate::ingest::parse::records(data) {
        let v = sightline_storage::Validator::default();
        for (_, r) in records {
            if let Ok(input) = r {
                let _ = v.validate(input, crate::now_ms());
            }
        }
    }
}

/// A binary ingest batch, through decoding and validation.
pub fn binary_batch(data: &[u8]) {
    if let Ok(events) = crate::wire::decode(data) {
        let v = sightline_storage::Validator::default();
        for e in &events {
            let _ = v.validate_ref(e, crate::now_ms());
        }
    }
}

/// A GA/T 1400 digest `Authorization` header (the first line) and an upload body (the
/// rest): the digest check, and the body as vehicles and as faces, against a store with
/// one registered device and credential.
pub fn gat1400(data: &[u8]) {
    static STORE: OnceLock<(tempfile::TempDir, Store)> = OnceLock::new();
    let (_, store) = STORE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), StoreConfig::default()).expect("store");
        let c = store.catalog();
        c.put_community(&sightline_storage::Community {
            code: "3205080001".into(),
            name: "x".into(),
            district: String::new(),
        })
        .expect("community");
        c.put_device(&sightline_storage::Device {
            code: "32050801011210000001".into(),
            community: "3205080001".into(),
            device_kind: "gate".into(),
            direction: sightline_storage::Direction::In,
            name: String::new(),
        })
        .expect("device");
        c.put_gat1400_credential(&crate::gat1400::credential(
            "32050801011210000001",
            "32050801011210000001",
            "pw",
        ))
        .expect("credential");
        (dir, store)
    });
    let text = String::from_utf8_lossy(data);
    let (auth, body) = text.split_once('\n').unwrap_or(("", &text));
    let gateway = crate::gat1400::Gateway::default();
    let _ = gateway.check_digest(
        store,
        "POST",
        "/VIID/System/Register",
        Some(auth),
        None,
        body.as_bytes(),
    );
    let id = Some("32050801011210000001");
    let _ = gateway.check_digest(
        store,
        "POST",
        "/VIID/System/Register",
        Some(auth),
        id,
        body.as_bytes(),
    );
    use crate::gat1400::objects::Upload;
    for upload in [
        Upload::Vehicles,
        Upload::Faces,
        Upload::Persons,
        Upload::NonMotorVehicles,
    ] {
        let _ = crate::gat1400::objects::objects(
            &mut crate::gat1400::objects::Devices::new(store, None),
            upload,
            body.as_bytes(),
            "ArchiveID",
            1 << 20,
        );
    }
}

/// A query string, through every parameter parser the handlers use.
pub fn query_params(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let p = crate::params::Params::parse(Some(&text));
    let _ = p.time("from");
    let _ = p.window("window");
    let _ = p.kind("kind");
    let _ = p.limit(100, 10_000);
    let _ = p.list("community");
    let _ = p.number::<u64>("after", 0);
    let _ = crate::params::parse_time("ts", &text);
    let _ = crate::params::parse_window("window", &text);
    let _ = crate::gat1400::parse_time(&text);
    let _: Result<sightline_query::Cursor, _> = text.parse();
}
