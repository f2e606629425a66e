//! The populations a planted city adds (with `planted`): a taxi fleet and other
//! provinces' plates as background, and the answers `truth.rs` lists — companions,
//! people about only at night, collision suspects — in id ranges no other population
//! uses.

use rand::Rng;
use sightline_storage::Attrs;

use crate::codes::{device_code, face_id, plate, plate_in, OTHER_PREFIXES, TYPE_FACE_CAMERA};
use crate::config::{TrafficConfig, HOUR, MINUTE};
use crate::day::{direction, CommunityDay, Fleet};

/// How many companion pairs, night faces and collision sets a city of `communities`
/// holds.
pub(crate) fn planted_sizes(communities: u32) -> (u32, u32, u32) {
    (
        (communities / 2).max(2),
        (communities / 3).max(2),
        (communities / 5).max(1),
    )
}

pub(crate) fn leader_plate(k: u32) -> String {
    plate(5 << 48 | k as u64)
}
pub(crate) fn follower_plate(k: u32) -> String {
    plate(6 << 48 | k as u64)
}
pub(crate) fn suspect_plate(k: u32) -> String {
    plate(7 << 48 | k as u64)
}
pub(crate) fn night_face(k: u32) -> String {
    face_id(0xFFFF, k)
}

/// The community and day of condition `i` of collision set `j`.
pub(crate) fn collision_place(cfg: &TrafficConfig, j: u32, i: u32) -> (u32, u32) {
    (
        (j * 3 + i) % cfg.communities,
        (j * 5 + i * 3 + 1) % cfg.days.max(1),
    )
}

impl CommunityDay<'_> {
    /// Taxis: a city-wide fleet of 60, each at a community now and then.
    pub(crate) fn taxis(&mut self) {
        self.fleet(&Fleet {
            size: 60,
            chance: 0.15,
            ids: 4 << 48,
            arrive_from: 6 * HOUR,
            arrive_within: 17 * HOUR,
            stay: MINUTE..10 * MINUTE,
        });
    }

    /// Visitors from other provinces.
    pub(crate) fn other_provinces(&mut self) {
        for _ in 0..self.cfg.households_per_community / 10 {
            let v: u64 = self.rng.random_range(0..5000);
            let p = plate_in(OTHER_PREFIXES[(v % 6) as usize], 3 << 48 | v);
            let in_ts = self.day0 + 8 * HOUR + self.rng.random_range(0..12 * HOUR);
            let out_ts = in_ts + self.rng.random_range(20 * MINUTE..3 * HOUR);
            self.visit(&p, v as u32, in_ts, out_ts);
        }
    }

    /// Companions: on their days the leader visits three communities; the follower
    /// passes the same gates 5–40 s later.
    pub(crate) fn companions(&mut self) {
        let (c, d, communities) = (self.c, self.d, self.cfg.communities.max(1));
        for k in 0..planted_sizes(self.cfg.communities).0 {
            if !(d + k).is_multiple_of(3) || (c + k + d) % communities >= 3 {
                continue;
            }
            let (leader, follower) = (leader_plate(k), follower_plate(k));
            let in_ts = self.day0 + 9 * HOUR + self.rng.random_range(0..10 * HOUR);
            let out_ts = in_ts + self.rng.random_range(20 * MINUTE..2 * HOUR);
            for (ts, dir_in) in [(in_ts, true), (out_ts, false)] {
                let lag = self.rng.random_range(5_000..40_000);
                for (p, at) in [(&leader, ts), (&follower, ts + lag)] {
                    let a = self.vehicle_attrs(p);
                    let gate = self.gate(dir_in, k);
                    self.sense(self.read(at, "vehicle", gate, p.clone(), direction(dir_in), a));
                }
            }
        }
    }

    /// People about only at night, at their home community's face cameras.
    pub(crate) fn night_faces(&mut self) {
        let (c, communities) = (self.c, self.cfg.communities.max(1));
        let nocturnal = planted_sizes(self.cfg.communities).1;
        for k in (0..nocturnal).filter(|k| k % communities == c) {
            if !self.rng.random_bool(0.8) {
                continue;
            }
            let face = night_face(k);
            for _ in 0..self.rng.random_range(2..5u32) {
                // 23:00–24:00 or 00:00–04:00 of this day.
                let at = match self.rng.random_bool(0.3) {
                    true => self.day0 + 23 * HOUR + self.rng.random_range(0..HOUR),
                    false => self.day0 + self.rng.random_range(0..4 * HOUR),
                };
                let cam = device_code(c, TYPE_FACE_CAMERA, 1 + k % 2);
                self.sense(self.read(at, "face", cam, face.clone(), "in", Attrs::new()));
            }
        }
    }

    /// Collision suspects: in and out between 01:00 and 03:00 at each condition's
    /// community on its day (never missed, so the planted answer is certain).
    pub(crate) fn collision_suspects(&mut self) {
        for j in 0..planted_sizes(self.cfg.communities).2 {
            for i in 0..3 {
                if collision_place(self.cfg, j, i) != (self.c, self.d) {
                    continue;
                }
                for p in [suspect_plate(2 * j), suspect_plate(2 * j + 1)] {
                    let in_ts = self.day0 + HOUR + self.rng.random_range(0..HOUR);
                    let out_ts = in_ts + self.rng.random_range(MINUTE..50 * MINUTE);
                    for (ts, dir_in) in [(in_ts, true), (out_ts, false)] {
                        let gate = self.gate(dir_in, j);
                        let a = self.vehicle_attrs(&p);
                        let read = self.read(ts, "vehicle", gate, p.clone(), direction(dir_in), a);
                        self.record(read);
                    }
                }
            }
        }
    }
}
