//! The events the tests ingest: two gates of one community, a sample of passes, the
//! range that holds them.

use serde_json::json;

pub const GATE: &str = "32050801011210000001";
pub const OTHER_GATE: &str = "32050801011210000002";

pub fn ev(ts: &str, device: &str, kind: &str, subject: &str, direction: &str) -> String {
    json!({"ts": ts, "community": "3205080001", "device": device, "kind": kind,
           "subject": subject, "direction": direction})
    .to_string()
}

/// A vehicle and a person who pass the same gate together three times, and a
/// bystander once.
pub fn sample() -> String {
    [
        ev(
            "2021-09-01T08:00:00+08:00",
            GATE,
            "vehicle",
            "苏E·12345",
            "in",
        ),
        ev("2021-09-01T08:00:30+08:00", GATE, "face", "F001", "in"),
        ev(
            "2021-09-01T12:00:00+08:00",
            OTHER_GATE,
            "vehicle",
            "苏E12345",
            "out",
        ),
        ev(
            "2021-09-01T11:59:10+08:00",
            OTHER_GATE,
            "face",
            "F001",
            "out",
        ),
        ev(
            "2021-09-02T08:00:00+08:00",
            GATE,
            "vehicle",
            "苏e12345",
            "in",
        ),
        ev("2021-09-02T08:00:59+08:00", GATE, "face", "F001", "in"),
        ev("2021-09-02T08:01:00+08:00", GATE, "face", "F999", "in"),
    ]
    .join("\n")
}

pub const RANGE: &str = "from=2021-09-01T00:00:00%2B08:00&to=2021-09-03T00:00:00%2B08:00";
