//! The shape of a generated city, and the model's clock (Beijing time, +08:00).

/// 2021-09-01T00:00:00+08:00, the default first day.
pub const SEPT_2021: i64 = 1_630_425_600_000;
pub(crate) const MINUTE: i64 = 60_000;
pub(crate) const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;
/// The model's time zone, +08:00, in milliseconds east of UTC.
const TZ_OFFSET_MS: i64 = 8 * HOUR;

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
    /// Plant known answers ([`crate::Truth`]) and add other provinces' plates and
    /// taxis. Off by default so the benchmark datasets stay as recorded.
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

impl TrafficConfig {
    /// The city `sightline demo` serves: `days` days of `communities` ending at the
    /// local midnight of `now_ms`, with source ids and drivers.
    pub fn demo(now_ms: i64, days: u32, communities: u32) -> TrafficConfig {
        TrafficConfig {
            start_ms: local_midnight(now_ms) - days as i64 * DAY,
            days,
            communities,
            source_ids: true,
            drivers: true,
            ..TrafficConfig::default()
        }
    }
}

/// Local (+08:00) midnight of the day holding `now_ms`.
pub fn local_midnight(now_ms: i64) -> i64 {
    (now_ms + TZ_OFFSET_MS).div_euclid(DAY) * DAY - TZ_OFFSET_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_midnight_is_the_start_of_the_beijing_day() {
        assert_eq!(local_midnight(SEPT_2021), SEPT_2021);
        assert_eq!(local_midnight(SEPT_2021 + DAY - 1), SEPT_2021);
        assert_eq!(local_midnight(SEPT_2021 - 1), SEPT_2021 - DAY);
        let cfg = TrafficConfig::demo(SEPT_2021 + 3 * DAY + 5 * HOUR, 2, 4);
        assert_eq!((cfg.start_ms, cfg.days), (SEPT_2021 + DAY, 2));
    }
}
