//! A small, deterministic model of a month of gate traffic in Gusu residential
//! communities: resident vehicles commuting, residents passing face cameras and access
//! doors, visitors with Zipf popularity, couriers touring many communities, and sensor
//! noise (missed reads, duplicate reads, OCR plate misreads).
//!
//! `sightline demo`, `sightline gen`, the load generator, the benches and the storage
//! demo use it so their figures come from realistic distributions. With `planted` it
//! also plants known answers — companion vehicles trailing leaders, people about only
//! at night, vehicles present at a set of places and times — plus plates of other
//! provinces and a taxi fleet; [`Traffic::truth`] lists the answers, so the queries'
//! precision and recall can be scored.

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
    /// Plant known answers ([`Truth`]) and add other provinces' plates and taxis. Off
    /// by default so the benchmark datasets stay as recorded.
    pub planted: bool,
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
            planted: false,
        }
    }
}

/// The answers planted in a city (with `planted`; person–vehicle pairs with `drivers`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Truth {
    /// A follower trails its leader through the same gates, 5–40 s behind, on the
    /// days listed (each day at three communities).
    pub companions: Vec<Companion>,
    /// A resident vehicle and its driver's face, read at the same gate within ±20 s.
    pub pairs: Vec<Pair>,
    /// Faces seen only between 23:00 and 04:00, on most days.
    pub nocturnal: Vec<String>,
    /// Vehicles present under every condition of a set (01:00–03:00 at one community
    /// on one day, three such conditions each).
    pub collisions: Vec<CollisionSet>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Companion {
    pub leader: String,
    pub follower: String,
    pub days: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pair {
    pub plate: String,
    pub face: String,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CollisionSet {
    /// (community code, from, to) for each condition.
    pub conditions: Vec<(String, i64, i64)>,
    pub subjects: Vec<String>,
}

/// Planted populations' sizes for a city of `communities`.
fn planted_sizes(communities: u32) -> (u32, u32, u32) {
    (
        (communities / 2).max(2),
        (communities / 3).max(2),
        (communities / 5).max(1),
    )
}

/// Province and city prefixes of plates from elsewhere.
const OTHER_PREFIXES: [&str; 6] = ["沪A", "浙E", "皖A", "苏A", "浙A", "苏B"];

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
    plate_in("苏E", id)
}

/// A plate with another province and city prefix (`沪A`, `浙E` …).
pub fn plate_in(prefix: &str, id: u64) -> String {
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7;
    let mut s = String::from(prefix);
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

/// One event as an NDJSON line of `POST /v1/events` (`ts` in epoch ms).
pub fn to_ndjson(e: &EventInput) -> String {
    let attrs: serde_json::Map<String, serde_json::Value> = e
        .attrs
        .iter()
        .map(|(k, v)| {
            let v = match v {
                AttrValue::Str(s) => s.clone().into(),
                AttrValue::Int(i) => (*i).into(),
                AttrValue::Float(f) => (*f).into(),
                AttrValue::Bool(b) => (*b).into(),
            };
            (k.clone(), v)
        })
        .collect();
    serde_json::json!({"ts": e.ts_ms, "community": e.community, "device": e.device,
        "kind": e.kind, "subject": e.subject, "direction": e.direction, "attrs": attrs})
    .to_string()
}

/// GA/T 1400 plate colour codes (GA 24.8 colours: 1 black, 2 white, 5 blue, 6 yellow,
/// 9 green; 99 other).
fn plate_color_code(color: &str) -> &'static str {
    match color {
        "black" => "1",
        "white" => "2",
        "blue" => "5",
        "yellow" => "6",
        "green" => "9",
        _ => "99",
    }
}

/// `YYYYMMDDhhmmssSSS` in Beijing time, as GA/T 1400 writes times (with milliseconds).
fn gat_time(ts_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ts_ms)
        .map(|t| {
            t.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("+08:00"))
                .format("%Y%m%d%H%M%S%3f")
                .to_string()
        })
        .unwrap_or_default()
}

/// Events as the two GA/T 1400 (视图库) upload bodies a platform would send:
/// `{"MotorVehicleListObject":{"MotorVehicleObject":[…]}}` for vehicle reads and
/// `{"FaceListObject":{"FaceObject":[…]}}` for face reads (access-door reads have no
/// GA/T 1400 object and are left out; a face's feature/archive id goes in `ArchiveID`,
/// the field an upstream platform would fill). Object ids are 48 characters: the device code,
/// a type code (02 vehicle, 06 face), the time to the second and a sequence number.
pub fn to_gat1400(events: &[EventInput]) -> (serde_json::Value, serde_json::Value) {
    let (mut vehicles, mut faces) = (Vec::new(), Vec::new());
    for (n, e) in events.iter().enumerate() {
        let time = gat_time(e.ts_ms);
        let id = |kind: &str| format!("{}{kind}{}{:012}", e.device, &time[..14], n);
        match e.kind.as_str() {
            "vehicle" => {
                let color = match e.attrs.get("plate_color") {
                    Some(AttrValue::Str(c)) => plate_color_code(c),
                    _ => "99",
                };
                let reliability = match e.attrs.get("confidence") {
                    Some(AttrValue::Float(f)) => format!("{}", (f * 100.0).round()),
                    _ => "0".into(),
                };
                vehicles.push(serde_json::json!({
                    "MotorVehicleID": id("02"),
                    "DeviceID": e.device,
                    "TollgateID": e.device,
                    "PassTime": time,
                    "PlateNo": e.subject,
                    "PlateColor": color,
                    "PlateReliability": reliability,
                    "StorageUrl1": format!("http://img.example/{}/{}.jpg", e.device, &time[..14]),
                }));
            }
            "face" => faces.push(serde_json::json!({
                "FaceID": id("06"),
                "DeviceID": e.device,
                "ShotTime": time,
                "FaceAppearTime": time,
                "FaceDisAppearTime": time,
                "ArchiveID": e.subject,
                "SubImageList": {"SubImageInfoObject": [{
                    "ImageID": id("06"),
                    "Type": "11",
                    "StoragePath": format!("http://img.example/{}/{}-face.jpg", e.device, &time[..14]),
                }]},
            })),
            _ => {}
        }
    }
    (
        serde_json::json!({"MotorVehicleListObject": {"MotorVehicleObject": vehicles}}),
        serde_json::json!({"FaceListObject": {"FaceObject": faces}}),
    )
}

/// Generates the city of `cfg` day by day on every core and writes it under `out`:
/// `events/day-NNN.ndjson` (with `ndjson`), `gat1400/day-NNN-motorvehicles.json` and
/// `gat1400/day-NNN-faces.json` (with `gat1400`), and `truth.json` (the planted answers).
/// Returns the number of events and the seconds it took.
pub fn write_dataset(
    cfg: &TrafficConfig,
    out: &std::path::Path,
    formats: &[String],
) -> std::io::Result<(u64, f64)> {
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    let started = std::time::Instant::now();
    let (ndjson, gat) = (
        formats.iter().any(|f| f == "ndjson"),
        formats.iter().any(|f| f == "gat1400"),
    );
    let with_path = |p: std::path::PathBuf| {
        move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", p.display()))
    };
    for (dir, on) in [("events", ndjson), ("gat1400", gat)] {
        if on {
            std::fs::create_dir_all(out.join(dir)).map_err(with_path(out.join(dir)))?;
        }
    }
    std::fs::create_dir_all(out).map_err(with_path(out.to_path_buf()))?;
    let traffic = Traffic::new(cfg.clone());
    let truth = serde_json::to_string_pretty(&traffic.truth()).expect("truth serializes");
    std::fs::write(out.join("truth.json"), truth).map_err(with_path(out.join("truth.json")))?;
    let (next, total) = (AtomicU32::new(0), AtomicU64::new(0));
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> std::io::Result<()> {
                    loop {
                        let d = next.fetch_add(1, Ordering::Relaxed);
                        if d >= cfg.days {
                            return Ok(());
                        }
                        let events = traffic.day_events(d);
                        total.fetch_add(events.len() as u64, Ordering::Relaxed);
                        if ndjson {
                            let path = out.join(format!("events/day-{d:03}.ndjson"));
                            let mut text = String::with_capacity(events.len() * 220);
                            for e in &events {
                                text.push_str(&to_ndjson(e));
                                text.push('\n');
                            }
                            std::fs::write(&path, text).map_err(with_path(path.clone()))?;
                        }
                        if gat {
                            let (v, f) = to_gat1400(&events);
                            for (name, body) in [("motorvehicles", v), ("faces", f)] {
                                let path = out.join(format!("gat1400/day-{d:03}-{name}.json"));
                                std::fs::write(&path, body.to_string())
                                    .map_err(with_path(path.clone()))?;
                            }
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("generator thread"))
    })?;
    Ok((total.into_inner(), started.elapsed().as_secs_f64()))
}

/// Planted vehicles and faces, in id ranges no other population uses.
fn leader_plate(k: u32) -> String {
    plate(5 << 48 | k as u64)
}
fn follower_plate(k: u32) -> String {
    plate(6 << 48 | k as u64)
}
fn suspect_plate(k: u32) -> String {
    plate(7 << 48 | k as u64)
}
fn night_face(k: u32) -> String {
    face_id(0xFFFF, k)
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

    /// The answers planted in this city (empty unless `planted`; pairs need `drivers`).
    pub fn truth(&self) -> Truth {
        let cfg = &self.cfg;
        let mut t = Truth::default();
        if cfg.drivers {
            for c in 0..cfg.communities {
                for v in 0..cfg.households_per_community * 3 / 5 {
                    t.pairs.push(Pair {
                        plate: resident_plate(c, v),
                        face: face_id(c, v),
                    });
                }
            }
        }
        if !cfg.planted {
            return t;
        }
        let (companions, nocturnal, collisions) = planted_sizes(cfg.communities);
        for k in 0..companions {
            t.companions.push(Companion {
                leader: leader_plate(k),
                follower: follower_plate(k),
                days: (0..cfg.days).filter(|d| (d + k) % 3 == 0).collect(),
            });
        }
        for k in 0..nocturnal {
            t.nocturnal.push(night_face(k));
        }
        for j in 0..collisions {
            let conditions = (0..3)
                .map(|i| {
                    let (c, d) = self.collision_place(j, i);
                    let day0 = cfg.start_ms + d as i64 * DAY;
                    (community_code(c), day0 + HOUR, day0 + 3 * HOUR)
                })
                .collect();
            t.collisions.push(CollisionSet {
                conditions,
                subjects: vec![suspect_plate(2 * j), suspect_plate(2 * j + 1)],
            });
        }
        t
    }

    /// The community and day of condition `i` of collision set `j`.
    fn collision_place(&self, j: u32, i: u32) -> (u32, u32) {
        let cfg = &self.cfg;
        (
            (j * 3 + i) % cfg.communities,
            (j * 5 + i * 3 + 1) % cfg.days.max(1),
        )
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
            let color = if p.chars().count() > 7 {
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
        // A vehicle in at `in_ts` and out at `out_ts` through gate pair `n`.
        type Emit<'a> = dyn FnMut(&mut SmallRng, i64, &str, String, String, &str, Attrs) + 'a;
        let visit = |emit: &mut Emit, rng: &mut SmallRng, p: &str, n: u32, in_ts, out_ts| {
            for (ts, dir_in) in [(in_ts, true), (out_ts, false)] {
                let a = vehicle_attrs(rng, p);
                emit(
                    rng,
                    ts,
                    "vehicle",
                    gate(dir_in, n),
                    p.to_string(),
                    if dir_in { "in" } else { "out" },
                    a,
                );
            }
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
            visit(&mut emit, &mut rng, &p, v as u32, in_ts, out_ts);
        }
        // Couriers: a city-wide fleet, several short stops a day.
        for k in 0..40u64 {
            if !rng.random_bool(0.3) {
                continue;
            }
            let p = plate(2 << 48 | k);
            let in_ts = day0 + 9 * HOUR + rng.random_range(0..10 * HOUR);
            let out_ts = in_ts + rng.random_range(3 * MINUTE..20 * MINUTE);
            visit(&mut emit, &mut rng, &p, k as u32, in_ts, out_ts);
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
        if !cfg.planted {
            return;
        }
        // Taxis: a city-wide fleet of 60, each at a community now and then.
        for k in 0..60u64 {
            if !rng.random_bool(0.15) {
                continue;
            }
            let p = plate(4 << 48 | k);
            let in_ts = day0 + 6 * HOUR + rng.random_range(0..17 * HOUR);
            let out_ts = in_ts + rng.random_range(MINUTE..10 * MINUTE);
            visit(&mut emit, &mut rng, &p, k as u32, in_ts, out_ts);
        }
        // Visitors from other provinces.
        for _ in 0..households / 10 {
            let v: u64 = rng.random_range(0..5000);
            let p = plate_in(OTHER_PREFIXES[(v % 6) as usize], 3 << 48 | v);
            let in_ts = day0 + 8 * HOUR + rng.random_range(0..12 * HOUR);
            let out_ts = in_ts + rng.random_range(20 * MINUTE..3 * HOUR);
            visit(&mut emit, &mut rng, &p, v as u32, in_ts, out_ts);
        }
        let (companions, nocturnal, collisions) = planted_sizes(cfg.communities);
        // Companions: on their days the leader visits three communities; the follower
        // passes the same gates 5–40 s later.
        for k in 0..companions {
            if !(d + k).is_multiple_of(3) || (c + k + d) % cfg.communities.max(1) >= 3 {
                continue;
            }
            let (leader, follower) = (leader_plate(k), follower_plate(k));
            let in_ts = day0 + 9 * HOUR + rng.random_range(0..10 * HOUR);
            let out_ts = in_ts + rng.random_range(20 * MINUTE..2 * HOUR);
            for (ts, dir_in) in [(in_ts, true), (out_ts, false)] {
                let lag = rng.random_range(5_000..40_000);
                for (p, at) in [(&leader, ts), (&follower, ts + lag)] {
                    let a = vehicle_attrs(&mut rng, p);
                    emit(
                        &mut rng,
                        at,
                        "vehicle",
                        gate(dir_in, k),
                        p.clone(),
                        if dir_in { "in" } else { "out" },
                        a,
                    );
                }
            }
        }
        // People about only at night, at their home community's face cameras.
        for k in (0..nocturnal).filter(|k| k % cfg.communities.max(1) == c) {
            if !rng.random_bool(0.8) {
                continue;
            }
            let face = night_face(k);
            for _ in 0..rng.random_range(2..5u32) {
                // 23:00–24:00 or 00:00–04:00 of this day.
                let at = match rng.random_bool(0.3) {
                    true => day0 + 23 * HOUR + rng.random_range(0..HOUR),
                    false => day0 + rng.random_range(0..4 * HOUR),
                };
                let cam = device_code(c, TYPE_FACE_CAMERA, 1 + k % 2);
                emit(&mut rng, at, "face", cam, face.clone(), "in", Attrs::new());
            }
        }
        // Collision suspects: in and out between 01:00 and 03:00 at each condition's
        // community on its day (never missed, so the planted answer is certain).
        for j in 0..collisions {
            for i in 0..3 {
                if self.collision_place(j, i) != (c, d) {
                    continue;
                }
                for p in [suspect_plate(2 * j), suspect_plate(2 * j + 1)] {
                    let in_ts = day0 + HOUR + rng.random_range(0..HOUR);
                    let out_ts = in_ts + rng.random_range(MINUTE..50 * MINUTE);
                    for (ts, dir_in) in [(in_ts, true), (out_ts, false)] {
                        out.push(EventInput {
                            ts_ms: ts,
                            community: code.clone(),
                            device: gate(dir_in, j),
                            kind: "vehicle".into(),
                            subject: p.clone(),
                            direction: if dir_in { "in" } else { "out" }.into(),
                            attrs: vehicle_attrs(&mut rng, &p),
                        });
                    }
                }
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
            drivers: true,
            planted: true,
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

    #[test]
    fn gat1400_bodies_carry_every_vehicle_and_face_read() {
        let t = Traffic::new(TrafficConfig {
            communities: 2,
            days: 1,
            planted: true,
            ..Default::default()
        });
        let events = t.day_events(0);
        let (v, f) = to_gat1400(&events);
        let vehicles = v["MotorVehicleListObject"]["MotorVehicleObject"]
            .as_array()
            .unwrap();
        let faces = f["FaceListObject"]["FaceObject"].as_array().unwrap();
        let count = |k: &str| events.iter().filter(|e| e.kind == k).count();
        assert_eq!(
            (vehicles.len(), faces.len()),
            (count("vehicle"), count("face"))
        );
        let first = events.iter().find(|e| e.kind == "vehicle").unwrap();
        let obj = &vehicles[0];
        assert_eq!(obj["PlateNo"], first.subject.as_str());
        assert_eq!(obj["MotorVehicleID"].as_str().unwrap().len(), 48);
        assert_eq!(obj["PassTime"].as_str().unwrap().len(), 17);
        assert_eq!(gat_time(SEPT_2021 + 1234), "20210901000001234");
        let line: serde_json::Value = serde_json::from_str(&to_ndjson(first)).unwrap();
        assert_eq!(line["ts"], first.ts_ms);
        assert_eq!(line["subject"], first.subject.as_str());
    }
}
