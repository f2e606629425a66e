//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use sightline_storage::{
    AttrValue, Attrs, Event, EventInput, ManualClock, Store, StoreConfig, Validator,
};

/// 2021-09-01T00:00:00+08:00.
pub const DAY0: i64 = 1_630_425_600_000;
pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 24 * HOUR;

pub fn device(n: u32) -> String {
    format!("3205080101121{:07}", n)
}

pub fn input(ts_ms: i64, community: &str, dev: u32, kind: &str, subject: &str) -> EventInput {
    EventInput {
        ts_ms,
        community: community.to_string(),
        device: device(dev),
        kind: kind.to_string(),
        subject: subject.to_string(),
        direction: "in".to_string(),
        attrs: Attrs::new(),
    }
}

pub fn with_source(mut i: EventInput, source_id: &str) -> EventInput {
    i.attrs
        .insert("source_id".into(), AttrValue::Str(source_id.into()));
    i
}

/// Validates against a clock far in the future so any test timestamp passes.
pub fn ev(i: EventInput) -> Event {
    Validator::default()
        .validate(i, i64::MAX / 2)
        .expect("test event is valid")
}

pub fn open(dir: &Path, clock: &Arc<ManualClock>, config: StoreConfig) -> Store {
    Store::open_with_clock(dir, config, clock.clone()).expect("store opens")
}

pub fn all_events(store: &Store) -> Vec<sightline_storage::StoredEvent> {
    store.read_events(0, i64::MAX, None).expect("read_events")
}

/// Copies a store directory (for tests that damage files).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_with_ext(&p, ext));
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
    out.sort();
    out
}
