//! A small, deterministic model of a month of gate traffic in Gusu residential
//! communities: resident vehicles commuting, residents passing face cameras and access
//! doors, visitors with Zipf popularity, couriers touring many communities, and sensor
//! noise (missed reads, duplicate reads, OCR plate misreads).
//!
//! It is the seed of the capacity-testing traffic model; `sightline demo`, the benches
//! and the storage demo use it so their figures come from realistic distributions.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use sightline_storage::{AttrValue, Attrs, EventInput};

/// 2021-09-01T00:00:00+08:00, the default first day.
pub const SEPT_2021: i64 = 1_630_425_600_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;

/// Shape of the generated city.
#[derive(Clone, Debug)]
pub struct TrafficConfig {
    pub seed: u64,
    pub communities: u32,
    /// Local midnight (epoch ms) of the first day.
    pub start_ms: i64,
    pub days: u32,
    pub households_per_community: u32,
    /// Vehicles that visit communities other than their own, shared city-wide.
    pub visitor_vehicles: u32,
    /// Attach a 48-character GA/T 1400 style `source_id` to vehicle and face events.
    pub source_ids: bool,
    /// Drivers: a resident vehicle's owner is usually also caught by the gate's face
    /// camera within ±20 s of the plate read (person–vehicle association). Off by
    /// default so the benchmark datasets stay as recorded.
    pub drivers: bool,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficConfig {
            seed: 7,
            communities: 10,
            start_ms: SEPT_2021,
            days: 30,
            households_per_community: 400,
            visitor_vehicles: 20_000,
            source_ids: false,
            drivers: false,
        }
    }
}

/// Plate characters after the province and city letters: no I or O.
const PLATE_CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";
/// OCR confusions used for misreads.
const CONFUSIONS: &[(char, char)] = &[
    ('0', 'D'),
    ('8', 'B'),
    ('1', '7'),
    ('2', 'Z'),
    ('5', 'S'),
    ('6', 'G'),
];

/// Device type codes used by the model (digits 11–13 of a GB/T 28181 code).
pub const TYPE_VEHICLE_GATE: &str = "121";
pub const TYPE_FACE_CAMERA: &str = "132";
pub const TYPE_ACCESS_DOOR: &str = "140";

/// The generator. `day_events(d)` is a pure function of the config and `d`.
pub struct Traffic {
    cfg: TrafficConfig,
}

pub fn community_code(c: u32) -> String {
    format!("320508{:04}", c + 1)
}

/// Device `n` of a type in community `c`: admin region 320508, the community as the
/// grassroots unit, industry 01, network 0.
pub fn device_code(c: u32, type_code: &str, n: u32) -> String {
    format!("320508{:02}01{type_code}0{:06}", c % 100, c * 100 + n)
}

/// The face feature id of resident `person` of community `c`.
pub fn face_id(c: u32, person: u32) -> String {
    format!(
        "F{:015x}",
        ((c as u64) << 40 | person as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 4
    )
}

/// The plate of resident vehicle `v` of community `c`.
pub fn resident_plate(c: u32, v: u32) -> String {
    plate((c as u64) << 32 | v as u64)
}

/// A Suzhou plate (苏E…) for vehicle `id`, deterministic; one in ten is a new-energy plate.
pub fn plate(id: u64) -> String {
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7;
    let mut s = String::from("苏E");
    if id.is_multiple_of(10) {
        // New-energy plate: D or F then five digits.
        s.push(if x.is_multiple_of(2) { 'D' } else { 'F' });
        for _ in 0..5 {
            x /= 2;
            s.push((b'0' + (x % 10) as u8) as char);
            x /= 10;
        }
        return s;
    }
    for _ in 0..5 {
        s.push(PLATE_CHARS[(x % PLATE_CHARS.len() as u64) as usize] as char);
        x /= PLATE_CHARS.len() as u64;
    }
    s
}

fn misread(p: &str, rng: &mut SmallRng) -> String {
    let chars: Vec<char> = p.chars().collect();
    let mut out = chars.clone();
    for (i, c) in chars.iter().enumerate().skip(2) {
        if let Some(&(a, b)) = CONFUSIONS.iter().find(|(a, b)| a == c || b == c) {
            if rng.random_bool(0.5) {
                out[i] = if *c == a { b } else { a };
                break;
            }
        }
    }
    out.into_iter().collect()
}

impl Traffic {
    pub fn new(cfg: TrafficConfig) -> Traffic {
        Traffic { cfg }
    }

    pub fn config(&self) -> &TrafficConfig {
        &self.cfg
    }

    /// All events of day `d` (0-based), ordered by time.
    pub fn day_events(&self, d: u32) -> Vec<EventInput> {
        let mut out = Vec::new();
        for c in 0..self.cfg.communities {
            self.community_day(c, d, &mut out);
        }
        out.sort_by_key(|e| e.ts_ms);
        out
    }

    /// Every day's events, one day at a time.
    pub fn days(&self) -> impl Iterator<Item = Vec<EventInput>> + '_ {
        (0..self.cfg.days).map(|d| self.day_events(d))
    }

    fn community_day(&self, c: u32, d: u32, out: &mut Vec<EventInput>) {
        let cfg = &self.cfg;
        let mut rng = SmallRng::seed_from_u64(
            cfg.seed ^ ((d as u64) << 32) ^ (c as u64).wrapping_mul(0x2545_F491_4F6C_DD1D),
        );
        let day0 = cfg.start_ms + d as i64 * DAY;
        let weekend = (d + 3) % 7 >= 5; // 2021-09-01 was a Wednesday
        let code = community_code(c);
        let mut emit = |rng: &mut SmallRng,
                        ts: i64,
                        kind: &str,
                        dev: String,
                        subject: String,
                        dir: &str,
                        attrs: Attrs| {
            if rng.random_bool(0.03) {
                return; // missed read
            }
            let copies = if rng.random_bool(0.02) { 2 } else { 1 }; // duplicate read
            for k in 0..copies {
                let mut attrs = attrs.clone();
                if cfg.source_ids && kind != "access" {
                    let id: u64 = rng.random();
                    attrs.insert(
                        "source_id".into(),
                        AttrValue::Str(format!("{dev}{:02}{:026}", 2, id)),
                    );
                }
                out.push(EventInput {
                    ts_ms: ts + k * rng.random_range(800..4000),
                    community: code.clone(),
                    device: dev.clone(),
                    kind: kind.into(),
                    subject: subject.clone(),
                    direction: dir.into(),
                    attrs,
                });
            }
        };
        let vehicle_attrs = |rng: &mut SmallRng, p: &str| {
            let mut a = Attrs::new();
            let color = if p.len() > 8 {
                "green"
            } else if rng.random_bool(0.05) {
                "yellow"
            } else {
                "blue"
            };
            a.insert("plate_color".into(), AttrValue::Str(color.into()));
            a.insert(
                "confidence".into(),
                AttrValue::Float((rng.random_range(850..1000) as f64) / 1000.0),
            );
            a
        };
        let gate = |dir_in: bool, n: u32| {
            device_code(
                c,
                TYPE_VEHICLE_GATE,
                if dir_in { 1 } else { 2 } + 2 * (n % 2),
            )
        };

        // Resident vehicles: out in the morning, back in the evening.
        let households = cfg.households_per_community;
        for v in 0..households * 3 / 5 {
            let id = (c as u64) << 32 | v as u64;
            let p = plate(id);
            if rng.random_bool(if weekend { 0.45 } else { 0.8 }) {
                let out_ts = day0
                    + if weekend { 10 * HOUR } else { 7 * HOUR }
                    + rng.random_range(0..2 * HOUR)
                    + rng.random_range(0..MINUTE);
                let in_ts = day0
                    + if weekend { 15 * HOUR } else { 17 * HOUR }
                    + rng.random_range(0..3 * HOUR)
                    + rng.random_range(0..MINUTE);
                for (ts, dir_in) in [(out_ts, false), (in_ts, true)] {
                    let read = if rng.random_bool(0.01) {
                        misread(&p, &mut rng)
                    } else {
                        p.clone()
                    };
                    let a = vehicle_attrs(&mut rng, &read);
                    emit(
                        &mut rng,
                        ts,
                        "vehicle",
                        gate(dir_in, v),
                        read,
                        if dir_in { "in" } else { "out" },
                        a,
                    );
                    if cfg.drivers && rng.random_bool(0.7) {
                        let at = ts + rng.random_range(-20_000..20_000);
                        emit(
                            &mut rng,
                            at,
                            "face",
                            device_code(c, TYPE_FACE_CAMERA, 3),
                            face_id(c, v),
                            if dir_in { "in" } else { "out" },
                            Attrs::new(),
                        );
                    }
                }
            }
        }
        // Visitors: popular vehicles come often (Zipf), stay minutes to hours.
        let zipf = Zipf::new(cfg.visitor_vehicles.max(1) as f64, 1.1).expect("valid Zipf");
        for _ in 0..households / 2 {
            let v = zipf.sample(&mut rng) as u64;
            let p = plate(1 << 48 | v);
            let in_ts = day0 + 7 * HOUR + rng.random_range(0..15 * HOUR);
            let out_ts = in_ts + rng.random_range(10 * MINUTE..4 * HOUR);
            for (ts, dir_in) in [(in_ts, true), (out_ts, false)] {
                let a = vehicle_attrs(&mut rng, &p);
                emit(
                    &mut rng,
                    ts,
                    "vehicle",
                    gate(dir_in, v as u32),
                    p.clone(),
                    if dir_in { "in" } else { "out" },
                    a,
                );
            }
        }
        // Couriers: a city-wide fleet, several short stops a day.
        for k in 0..40u64 {
            if !rng.random_bool(0.3) {
                continue;
            }
            let p = plate(2 << 48 | k);
            let in_ts = day0 + 9 * HOUR + rng.random_range(0..10 * HOUR);
            for (ts, dir_in) in [
                (in_ts, true),
                (in_ts + rng.random_range(3 * MINUTE..20 * MINUTE), false),
            ] {
                let a = vehicle_attrs(&mut rng, &p);
                emit(
                    &mut rng,
                    ts,
                    "vehicle",
                    gate(dir_in, k as u32),
                    p.clone(),
                    if dir_in { "in" } else { "out" },
                    a,
                );
            }
        }
        // Residents on foot: face cameras at the gates, cards at building doors.
        for person in 0..households * 3 / 2 {
            let face = face_id(c, person);
            let card = format!("C{:04}{:06}", c, person);
            let trips = rng.random_range(0..3u32);
            for t in 0..trips {
                let base = day0 + 6 * HOUR + (t as i64) * 5 * HOUR + rng.random_range(0..5 * HOUR);
                let cam = device_code(c, TYPE_FACE_CAMERA, 1 + person % 2);
                let mut a = Attrs::new();
                a.insert(
                    "confidence".into(),
                    AttrValue::Float((rng.random_range(700..1000) as f64) / 1000.0),
                );
                emit(
                    &mut rng,
                    base,
                    "face",
                    cam.clone(),
                    face.clone(),
                    "out",
                    a.clone(),
                );
                let back = base + rng.random_range(20 * MINUTE..4 * HOUR);
                emit(&mut rng, back, "face", cam, face.clone(), "in", a);
                let door = device_code(c, TYPE_ACCESS_DOOR, 1 + person % 8);
                let mut a = Attrs::new();
                a.insert(
                    "open_method".into(),
                    AttrValue::Str(if rng.random_bool(0.7) { "card" } else { "face" }.into()),
                );
                let at_door = base - rng.random_range(MINUTE..5 * MINUTE);
                emit(&mut rng, at_door, "access", door, card.clone(), "out", a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_storage::Validator;

    #[test]
    fn generation_is_deterministic_and_valid() {
        let t = Traffic::new(TrafficConfig {
            communities: 3,
            days: 2,
            source_ids: true,
            ..Default::default()
        });
        let a = t.day_events(1);
        assert_eq!(a, t.day_events(1));
        assert!(a.len() > 1000);
        let v = Validator::default();
        for e in &a {
            v.validate(e.clone(), SEPT_2021 + 10 * DAY)
                .unwrap_or_else(|err| panic!("{e:?}: {err}"));
        }
        assert!(a.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
        let kinds: std::collections::HashSet<&str> = a.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds.len(), 3);
    }

    #[test]
    fn plates_look_like_suzhou_plates() {
        for id in 0..100 {
            let p = plate(id);
            assert!(p.starts_with("苏E"));
            assert_eq!(p.chars().count(), if id % 10 == 0 { 8 } else { 7 }, "{p}");
            assert!(!p.contains('I') && !p.contains('O'));
        }
    }
}
