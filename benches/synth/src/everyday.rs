//! The everyday populations of a community's day: resident vehicles commuting,
//! visitors with Zipf popularity, couriers touring the city, and residents on foot
//! passing face cameras and access doors. The benchmark datasets are these alone.

use rand::Rng;
use rand_distr::{Distribution, Zipf};
use sightline_storage::{AttrValue, Attrs};

use crate::codes::{
    device_code, face_id, plate, resident_plate, TYPE_ACCESS_DOOR, TYPE_FACE_CAMERA,
};
use crate::config::{HOUR, MINUTE};
use crate::day::{direction, CommunityDay, Fleet};
use crate::ocr::misread_at_random;

impl CommunityDay<'_> {
    /// Resident vehicles: out in the morning, back in the evening (fewer and later at
    /// weekends); a plate misread now and then; with `drivers`, the driver's face at
    /// the gate.
    pub(crate) fn resident_vehicles(&mut self) {
        let weekend = (self.d + 3) % 7 >= 5; // 2021-09-01 was a Wednesday
        for v in 0..self.cfg.households_per_community * 3 / 5 {
            let p = resident_plate(self.c, v);
            if !self.rng.random_bool(if weekend { 0.45 } else { 0.8 }) {
                continue;
            }
            let out_ts = self.day0
                + if weekend { 10 * HOUR } else { 7 * HOUR }
                + self.rng.random_range(0..2 * HOUR)
                + self.rng.random_range(0..MINUTE);
            let in_ts = self.day0
                + if weekend { 15 * HOUR } else { 17 * HOUR }
                + self.rng.random_range(0..3 * HOUR)
                + self.rng.random_range(0..MINUTE);
            for (ts, dir_in) in [(out_ts, false), (in_ts, true)] {
                self.resident_vehicle_passes(v, &p, ts, dir_in);
            }
        }
    }

    /// Resident vehicle `v` (plate `p`) through its gate at `ts`, and its driver.
    fn resident_vehicle_passes(&mut self, v: u32, p: &str, ts: i64, dir_in: bool) {
        let read = if self.rng.random_bool(0.01) {
            misread_at_random(p, &mut self.rng)
        } else {
            p.to_string()
        };
        let a = self.vehicle_attrs(&read);
        let gate = self.gate(dir_in, v);
        self.sense(self.read(ts, "vehicle", gate, read, direction(dir_in), a));
        if self.cfg.drivers && self.rng.random_bool(0.7) {
            let at = ts + self.rng.random_range(-20_000..20_000);
            let camera = device_code(self.c, TYPE_FACE_CAMERA, 3);
            let face = face_id(self.c, v);
            self.sense(self.read(at, "face", camera, face, direction(dir_in), Attrs::new()));
        }
    }

    /// Visitors: popular vehicles come often (Zipf), stay minutes to hours.
    pub(crate) fn visitors(&mut self) {
        let zipf = Zipf::new(self.cfg.visitor_vehicles.max(1) as f64, 1.1).expect("valid Zipf");
        for _ in 0..self.cfg.households_per_community / 2 {
            let v = zipf.sample(&mut self.rng) as u64;
            let p = plate(1 << 48 | v);
            let in_ts = self.day0 + 7 * HOUR + self.rng.random_range(0..15 * HOUR);
            let out_ts = in_ts + self.rng.random_range(10 * MINUTE..4 * HOUR);
            self.visit(&p, v as u32, in_ts, out_ts);
        }
    }

    /// Couriers: a city-wide fleet of 40, several short stops a day.
    pub(crate) fn couriers(&mut self) {
        self.fleet(&Fleet {
            size: 40,
            chance: 0.3,
            ids: 2 << 48,
            arrive_from: 9 * HOUR,
            arrive_within: 10 * HOUR,
            stay: 3 * MINUTE..20 * MINUTE,
        });
    }

    /// Residents on foot: face cameras at the gates, cards at building doors, up to
    /// two trips a day each.
    pub(crate) fn residents_on_foot(&mut self) {
        for person in 0..self.cfg.households_per_community * 3 / 2 {
            let trips = self.rng.random_range(0..3u32);
            for t in 0..trips {
                self.resident_walks(person, t);
            }
        }
    }

    /// Trip `t` of resident `person`: out through the door, out and back in through a
    /// gate's face camera.
    fn resident_walks(&mut self, person: u32, t: u32) {
        let (c, face) = (self.c, face_id(self.c, person));
        let card = format!("C{:04}{:06}", c, person);
        let base =
            self.day0 + 6 * HOUR + (t as i64) * 5 * HOUR + self.rng.random_range(0..5 * HOUR);
        let cam = device_code(c, TYPE_FACE_CAMERA, 1 + person % 2);
        let mut a = Attrs::new();
        a.insert(
            "confidence".into(),
            AttrValue::Float((self.rng.random_range(700..1000) as f64) / 1000.0),
        );
        self.sense(self.read(base, "face", cam.clone(), face.clone(), "out", a.clone()));
        let back = base + self.rng.random_range(20 * MINUTE..4 * HOUR);
        self.sense(self.read(back, "face", cam, face, "in", a));
        let door = device_code(c, TYPE_ACCESS_DOOR, 1 + person % 8);
        let mut a = Attrs::new();
        let method = if self.rng.random_bool(0.7) {
            "card"
        } else {
            "face"
        };
        a.insert("open_method".into(), AttrValue::Str(method.into()));
        let at_door = base - self.rng.random_range(MINUTE..5 * MINUTE);
        self.sense(self.read(at_door, "access", door, card, "out", a));
    }
}
