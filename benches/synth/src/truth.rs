//! The answers planted in a city, so the queries' precision and recall can be scored
//! (`sightline gen` writes them as `truth.json`).

use crate::codes::{community_code, face_id, resident_plate};
use crate::config::{TrafficConfig, DAY, HOUR};
use crate::planted::{
    collision_place, follower_plate, leader_plate, night_face, planted_sizes, suspect_plate,
};

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

/// The answers planted in the city of `cfg` (empty unless `planted`; pairs need
/// `drivers`).
pub(crate) fn truth(cfg: &TrafficConfig) -> Truth {
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
                let (c, d) = collision_place(cfg, j, i);
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
