//! `sightline demo`: a synthetic month of the 10 Gusu pilot communities, loaded into
//! the served store, and `curl` commands that work when pasted. The city is
//! `sightline_synth`'s ([`TrafficConfig::demo`]).

use std::collections::HashMap;

use sightline_storage::{Kind, StorageError, Store};
use sightline_synth::ocr::{read_digits_as, CONFUSIONS};
use sightline_synth::{community_code, Pace, Traffic, TrafficConfig, DAY};

use crate::params::rfc3339;

/// Appends the city of `cfg` day by day (each batch durable) and seals the past days.
/// Returns the number stored.
pub fn load(store: &Store, cfg: &TrafficConfig) -> Result<usize, StorageError> {
    let loaded = sightline_synth::load(store, &Traffic::new(cfg.clone()), 10_000, Pace::Free)?;
    store.maintain()?;
    Ok(loaded.stored)
}

/// The busiest plate of the first community over `[from, to)`.
fn busiest_plate(store: &Store, from: i64, to: i64) -> String {
    let first = store.dictionaries().community_id(&community_code(0));
    let mut counts: HashMap<u32, u32> = HashMap::new();
    if let Some(c) = first {
        let scanned = store.scan_range(from, to, Some(&[c]), |r| {
            if r.kind == Kind::Vehicle {
                *counts.entry(r.subject).or_default() += 1;
            }
        });
        if let Err(e) = scanned {
            // Examples only: a damaged segment leaves the default plate.
            tracing::warn!(error = %e, "choosing the demo's example plate");
            counts.clear();
        }
    }
    counts
        .iter()
        .max_by_key(|(s, n)| (**n, std::cmp::Reverse(**s)))
        .and_then(|(s, _)| store.dictionaries().subject(*s).map(|(_, p)| p.to_string()))
        .unwrap_or_else(|| "苏E12345".to_string())
}

/// A camera's misread: the plate's 0, 8, 5 and 2 read as D, B, S and Z (the first
/// four confusions); a plate with none is searched with its last character unknown.
fn misread_of(plate: &str) -> String {
    let misread = read_digits_as(plate, &CONFUSIONS[..4]);
    if misread != plate {
        return misread;
    }
    plate
        .chars()
        .take(plate.chars().count() - 1)
        .collect::<String>()
        + "?"
}

/// Example requests against `base` (`http://127.0.0.1:8080`), chosen from what the
/// store holds over `[from, to)`: the busiest plate, a face that travels with it, a
/// misreading of it.
pub fn examples(store: &Store, base: &str, from: i64, to: i64) -> Vec<(String, String)> {
    let week_from = (to - 7 * DAY).max(from);
    let plate = busiest_plate(store, week_from, to);
    let misread = misread_of(&plate);
    let (f, t, wf) = (rfc3339(from), rfc3339(to), rfc3339(week_from));
    let day2 = rfc3339(to - 2 * DAY);
    let day1 = rfc3339(to - DAY);
    let get = |path: &str, params: &[(&str, &str)]| {
        let mut s = format!("curl -sG '{base}{path}'");
        for (k, v) in params {
            s += &format!(" --data-urlencode '{k}={v}'");
        }
        s
    };
    let c0 = community_code(0);
    let resident = sightline_synth::resident_plate(0, 0);
    let c1 = community_code(1);
    let now = rfc3339(to + 9 * 3_600_000);
    vec![
        ("health and store size".into(), format!("curl -s '{base}/health'")),
        (
            format!("trajectory of {plate} over the last week, with stays"),
            get(
                "/v1/trajectory",
                &[("kind", "vehicle"), ("subject", &plate), ("from", &wf), ("to", &t), ("limit", "20")],
            ),
        ),
        (
            format!("people seen within ±60 s of resident vehicle {resident} at its community's gates (人车关联)"),
            get(
                "/v1/cooccurrence",
                &[
                    ("kind", "vehicle"),
                    ("subject", &resident),
                    ("scope", "community"),
                    ("from", &f),
                    ("to", &t),
                    ("window", "60s"),
                    ("min_count", "2"),
                    ("candidate_kind", "face"),
                    ("limit", "10"),
                ],
            ),
        ),
        (
            format!("a camera's misread {misread}: fuzzy search, OCR confusions first"),
            get(
                "/v1/search",
                &[("q", &misread), ("kind", "vehicle"), ("mode", if misread.contains('?') { "wildcard" } else { "fuzzy" })],
            ),
        ),
        (
            format!("vehicles at {c0} yesterday and at {c1} the day before (碰撞)"),
            format!(
                "curl -s '{base}/v1/collision' -H 'Content-Type: application/json' -d '{}'",
                serde_json::json!({
                    "kind": "vehicle", "min_conditions": 2, "limit": 10,
                    "conditions": [
                        {"communities": [c0], "from": day1, "to": t},
                        {"communities": [c1], "from": day2, "to": day1},
                    ]
                })
            ),
        ),
        (
            format!("vehicles in and out of {c0} on at least 20 days (频繁出入)"),
            get(
                "/v1/frequency",
                &[("community", &c0), ("kind", "vehicle"), ("from", &f), ("to", &t), ("min_days", "20"), ("limit", "10")],
            ),
        ),
        (
            "events per community per day, last week".into(),
            get("/v1/counts", &[("from", &wf), ("to", &t), ("by", "community"), ("per", "day")]),
        ),
        (
            "ingest one event (NDJSON); the answer comes after it is on disk".into(),
            format!(
                "curl -s '{base}/v1/events' -H 'Content-Type: application/x-ndjson' --data-binary '{}'",
                serde_json::json!({
                    "ts": now, "community": c0, "device": sightline_synth::device_code(0, sightline_synth::TYPE_VEHICLE_GATE, 1),
                    "kind": "vehicle", "subject": "苏E·DEMO1", "direction": "in",
                    "attrs": {"plate_color": "blue", "confidence": 0.97}
                })
            ),
        ),
    ]
}
