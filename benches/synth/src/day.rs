//! One community's day as the model generates it: its own random stream, the sensors'
//! noise (missed and duplicate reads, source ids), the gates and the vehicle visits
//! every population makes through them. The populations are in `everyday.rs` and
//! `planted.rs`.
//!
//! Everything here draws from one random stream in a fixed order, so the datasets are
//! a pure function of the config: reorder no draw without meaning to change them.

use std::ops::Range;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sightline_storage::{AttrValue, Attrs, EventInput};

use crate::codes::{community_code, device_code, plate, TYPE_VEHICLE_GATE};
use crate::config::{TrafficConfig, DAY};

/// The generator's state for community `c` on day `d`.
pub(crate) struct CommunityDay<'a> {
    pub(crate) cfg: &'a TrafficConfig,
    pub(crate) c: u32,
    pub(crate) d: u32,
    /// Local midnight starting the day (epoch ms).
    pub(crate) day0: i64,
    pub(crate) rng: SmallRng,
    code: String,
    out: &'a mut Vec<EventInput>,
}

impl<'a> CommunityDay<'a> {
    pub(crate) fn new(
        cfg: &'a TrafficConfig,
        c: u32,
        d: u32,
        out: &'a mut Vec<EventInput>,
    ) -> CommunityDay<'a> {
        let rng = SmallRng::seed_from_u64(
            cfg.seed ^ ((d as u64) << 32) ^ (c as u64).wrapping_mul(0x2545_F491_4F6C_DD1D),
        );
        CommunityDay {
            cfg,
            c,
            d,
            day0: cfg.start_ms + d as i64 * DAY,
            rng,
            code: community_code(c),
            out,
        }
    }

    /// Every population's events of the day, unordered.
    pub(crate) fn generate(&mut self) {
        self.resident_vehicles();
        self.visitors();
        self.couriers();
        self.residents_on_foot();
        if !self.cfg.planted {
            return;
        }
        self.taxis();
        self.other_provinces();
        self.companions();
        self.night_faces();
        self.collision_suspects();
    }

    /// A read of `subject` by `device` at `ts`, in this community.
    pub(crate) fn read(
        &self,
        ts: i64,
        kind: &str,
        device: String,
        subject: String,
        direction: &str,
        attrs: Attrs,
    ) -> EventInput {
        EventInput {
            ts_ms: ts,
            community: self.code.clone(),
            device,
            kind: kind.into(),
            subject,
            direction: direction.into(),
            attrs,
        }
    }

    /// `read` as the sensor reports it: missed now and then, sometimes read twice a
    /// few seconds apart, with a `source_id` per read (vehicles and faces, with
    /// `source_ids`).
    pub(crate) fn sense(&mut self, read: EventInput) {
        if self.rng.random_bool(0.03) {
            return; // missed read
        }
        let copies = if self.rng.random_bool(0.02) { 2 } else { 1 }; // duplicate read
        for k in 0..copies {
            let mut copy = read.clone();
            if self.cfg.source_ids && copy.kind != "access" {
                let id: u64 = self.rng.random();
                let source_id = format!("{}{:02}{:026}", copy.device, 2, id);
                copy.attrs
                    .insert("source_id".into(), AttrValue::Str(source_id));
            }
            copy.ts_ms += k * self.rng.random_range(800..4000);
            self.out.push(copy);
        }
    }

    /// `read` exactly as given: no miss, no duplicate, no source id (the planted
    /// answers that must be certain).
    pub(crate) fn record(&mut self, read: EventInput) {
        self.out.push(read);
    }

    /// A plate read's attributes: its colour (green for new-energy plates) and the
    /// camera's confidence.
    pub(crate) fn vehicle_attrs(&mut self, plate: &str) -> Attrs {
        let mut a = Attrs::new();
        let color = if plate.chars().count() > 7 {
            "green"
        } else if self.rng.random_bool(0.05) {
            "yellow"
        } else {
            "blue"
        };
        a.insert("plate_color".into(), AttrValue::Str(color.into()));
        a.insert(
            "confidence".into(),
            AttrValue::Float((self.rng.random_range(850..1000) as f64) / 1000.0),
        );
        a
    }

    /// The vehicle gate of pair `n` (two pairs: gates 1 and 3 in, 2 and 4 out).
    pub(crate) fn gate(&self, dir_in: bool, n: u32) -> String {
        device_code(
            self.c,
            TYPE_VEHICLE_GATE,
            (if dir_in { 1 } else { 2 }) + 2 * (n % 2),
        )
    }

    /// A vehicle read as it drives in through gate pair `n` at `in_ts` and out at
    /// `out_ts`.
    pub(crate) fn visit(&mut self, plate: &str, n: u32, in_ts: i64, out_ts: i64) {
        for (ts, dir_in) in [(in_ts, true), (out_ts, false)] {
            let a = self.vehicle_attrs(plate);
            let gate = self.gate(dir_in, n);
            self.sense(self.read(ts, "vehicle", gate, plate.to_string(), direction(dir_in), a));
        }
    }

    /// The vehicles of `fleet` that come to this community today, each visiting once.
    pub(crate) fn fleet(&mut self, fleet: &Fleet) {
        for k in 0..fleet.size {
            if !self.rng.random_bool(fleet.chance) {
                continue;
            }
            let p = plate(fleet.ids | k);
            let in_ts =
                self.day0 + fleet.arrive_from + self.rng.random_range(0..fleet.arrive_within);
            let out_ts = in_ts + self.rng.random_range(fleet.stay.clone());
            self.visit(&p, k as u32, in_ts, out_ts);
        }
    }
}

/// A city-wide fleet: `size` vehicles (plate ids `ids | k`), each at a community on a
/// day with probability `chance`, arriving `arrive_from` after midnight plus up to
/// `arrive_within`, and staying `stay`.
pub(crate) struct Fleet {
    pub(crate) size: u64,
    pub(crate) chance: f64,
    pub(crate) ids: u64,
    pub(crate) arrive_from: i64,
    pub(crate) arrive_within: i64,
    pub(crate) stay: Range<i64>,
}

/// `in` or `out`.
pub(crate) fn direction(dir_in: bool) -> &'static str {
    if dir_in {
        "in"
    } else {
        "out"
    }
}
