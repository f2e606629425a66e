//! Request parameters: query strings, times, windows, kinds, and the response time
//! format. Every failure names the parameter.

use std::collections::HashMap;

use chrono::{DateTime, FixedOffset, SecondsFormat};
use sightline_storage::Kind;

use crate::error::ApiError;

/// Asia/Shanghai, the offset every response timestamp carries.
pub fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset")
}

/// `2021-09-01T08:00:00.123+08:00`.
pub fn rfc3339(ts_ms: i64) -> String {
    match beijing_bytes(ts_ms) {
        Some(b) => String::from_utf8(b.to_vec()).expect("ASCII"),
        None => rfc3339_chrono(ts_ms),
    }
}

/// [`rfc3339`] through chrono: years outside 0000–9999, and the reference the fast
/// path is tested against.
fn rfc3339_chrono(ts_ms: i64) -> String {
    DateTime::from_timestamp_millis(ts_ms)
        .map(|t| {
            t.with_timezone(&beijing())
                .to_rfc3339_opts(SecondsFormat::Millis, true)
        })
        .unwrap_or_else(|| ts_ms.to_string())
}

/// A timestamp that serializes as [`rfc3339`] without allocating: every event of every
/// answer carries one, and chrono's formatter was a twentieth of a trajectory's cost.
#[derive(Clone, Copy, Debug)]
pub struct Rfc3339(pub i64);

impl serde::Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match beijing_bytes(self.0) {
            Some(b) => s.serialize_str(std::str::from_utf8(&b).expect("ASCII")),
            None => s.serialize_str(&rfc3339_chrono(self.0)),
        }
    }
}

impl Rfc3339 {
    /// The time as JSON (quoted) appended to `out`: what its `Serialize` writes.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        match beijing_bytes(self.0) {
            Some(b) => out.extend_from_slice(&b),
            None => out.extend_from_slice(rfc3339_chrono(self.0).as_bytes()),
        }
        out.push(b'"');
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmm+08:00` for years 0000–9999. The date is worked out once
/// a day per thread ([`LAST_DATE`]): a page's thousands of times fall on a few days.
fn beijing_bytes(ts_ms: i64) -> Option<[u8; 29]> {
    let local = ts_ms.checked_add(8 * 3_600_000)?;
    let (days, ms) = (local.div_euclid(86_400_000), local.rem_euclid(86_400_000));
    let (last, date) = LAST_DATE.with(std::cell::Cell::get);
    let date = match last == days {
        true => date,
        false => {
            let date = civil_date(days)?;
            LAST_DATE.with(|c| c.set((days, date)));
            date
        }
    };
    let mut b = *b"0000-00-00T00:00:00.000+08:00";
    b[..10].copy_from_slice(&date);
    // Two digits of 0..100 at `at`.
    let mut two = |at: usize, v: i64| {
        let d = v as usize * 2;
        b[at..at + 2].copy_from_slice(&sightline_storage::DIGIT_PAIRS[d..d + 2]);
    };
    two(11, ms / 3_600_000);
    two(14, ms / 60_000 % 60);
    two(17, ms / 1000 % 60);
    two(21, ms % 100);
    b[20] = b'0' + (ms % 1000 / 100) as u8;
    Some(b)
}

thread_local! {
    /// The day (since 1970-01-01, Beijing time) [`beijing_bytes`] last wrote on this
    /// thread, and its `YYYY-MM-DD`.
    static LAST_DATE: std::cell::Cell<(i64, [u8; 10])> =
        const { std::cell::Cell::new((i64::MIN, [0; 10])) };
}

/// Day `days` since 1970-01-01 as `YYYY-MM-DD`, for years 0000–9999 (days to civil
/// date: Howard Hinnant's algorithm).
fn civil_date(days: i64) -> Option<[u8; 10]> {
    let z = days + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut b = *b"0000-00-00";
    let mut two = |at: usize, v: i64| {
        let d = v as usize * 2;
        b[at..at + 2].copy_from_slice(&sightline_storage::DIGIT_PAIRS[d..d + 2]);
    };
    two(0, year / 100);
    two(2, year % 100);
    two(5, month);
    two(8, day);
    Some(b)
}

/// The Beijing-time calendar date of `ts_ms`, as `YYYY-MM-DD`.
pub fn local_date(ts_ms: i64) -> String {
    DateTime::from_timestamp_millis(ts_ms)
        .map(|t| t.with_timezone(&beijing()).format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| ts_ms.to_string())
}

/// A time given as RFC 3339 (any offset) or epoch milliseconds.
pub fn parse_time(field: &str, s: &str) -> Result<i64, ApiError> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            ApiError::param(
                field,
                format!("{s:?} is neither RFC 3339 (2021-09-01T08:00:00+08:00) nor epoch ms: {e}"),
            )
        })
}

/// A duration: `60s`, `5m`, `1h`, `30d`, `500ms`, or bare seconds; in milliseconds.
pub fn parse_window(field: &str, s: &str) -> Result<i64, ApiError> {
    let s = s.trim();
    let bad = || ApiError::param(field, format!("{s:?} is not a duration like 60s, 5m or 1h"));
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let scale = match unit {
        "" | "s" => 1000,
        "ms" => 1,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).ok_or_else(bad)
}

/// A `limit` of 1..=`max` rows, or an error naming the field.
pub fn check_limit(n: usize, max: usize) -> Result<usize, ApiError> {
    match n {
        1.. if n <= max => Ok(n),
        _ => Err(ApiError::param(
            "limit",
            format!("{n} rows; ask for 1 to {max} (the server's max_result_rows) and page"),
        )),
    }
}

pub fn parse_kind(field: &str, s: &str) -> Result<Kind, ApiError> {
    Kind::parse(s).ok_or_else(|| {
        ApiError::param(
            field,
            format!("unknown kind {s:?}; use vehicle, face, access, person or nonmotor"),
        )
    })
}

/// A documented request parameter: the route table lists each route's, the OpenAPI
/// document shows them, and [`Params::only_these`] refuses any other.
pub(crate) struct Param {
    pub name: &'static str,
    /// In the path (`{name}`) rather than the query string.
    pub in_path: bool,
    pub required: bool,
    pub example: &'static str,
    pub about: &'static str,
}

/// A query-string parameter.
pub(crate) const fn p(
    name: &'static str,
    required: bool,
    example: &'static str,
    about: &'static str,
) -> Param {
    Param {
        name,
        in_path: false,
        required,
        example,
        about,
    }
}

/// A path parameter (always required).
pub(crate) const fn path_p(
    name: &'static str,
    example: &'static str,
    about: &'static str,
) -> Param {
    Param {
        in_path: true,
        ..p(name, true, example, about)
    }
}

/// The decoded query string of a request.
pub struct Params {
    values: HashMap<String, Vec<String>>,
}

impl Params {
    pub fn parse(query: Option<&str>) -> Params {
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            values
                .entry(k.into_owned())
                .or_default()
                .push(v.into_owned());
        }
        Params { values }
    }

    /// A parameter that is one value (`None`: absent). Given more than once it is
    /// refused naming it, rather than one of its values taken (`q=A&q=B`: which one
    /// a proxy or a log checked is not the one searched); a list repeats ([`Self::list`]).
    pub fn get(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.values.get(name).map(Vec::as_slice) {
            None => Ok(None),
            Some([one]) => Ok(Some(one)),
            Some(_) => Err(ApiError::param(
                name,
                "given more than once; this parameter takes one value",
            )),
        }
    }

    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        match self.get(name)? {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(ApiError::missing(name)),
        }
    }

    pub fn time(&self, name: &str) -> Result<i64, ApiError> {
        parse_time(name, self.required(name)?)
    }

    pub fn kind(&self, name: &str) -> Result<Kind, ApiError> {
        parse_kind(name, self.required(name)?)
    }

    pub fn opt_kind(&self, name: &str) -> Result<Option<Kind>, ApiError> {
        self.get(name)?.map(|s| parse_kind(name, s)).transpose()
    }

    pub fn window(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)?.map(|s| parse_window(name, s)).transpose()
    }

    pub fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, ApiError> {
        match self.get(name)? {
            None => Ok(default),
            Some(s) => s
                .trim()
                .parse()
                .map_err(|_| ApiError::param(name, format!("{s:?} is not a whole number"))),
        }
    }

    /// `limit`: rows wanted, 1..=`max` (the server's `max_result_rows`); `default`
    /// (at most `max`) when absent.
    pub fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        check_limit(self.number("limit", default.min(max))?, max)
    }

    /// One of a fixed set of words (`default` when absent), as its value.
    pub fn choice<T: Copy>(
        &self,
        name: &str,
        default: &str,
        options: &[(&str, T)],
    ) -> Result<T, ApiError> {
        let given = self.get(name)?.unwrap_or(default);
        options
            .iter()
            .find(|(word, _)| *word == given)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let words: Vec<&str> = options.iter().map(|(w, _)| *w).collect();
                let (last, rest) = words.split_last().expect("at least one option");
                ApiError::param(
                    name,
                    format!("{given:?}; use {} or {last}", rest.join(", ")),
                )
            })
    }

    /// A list given as repeated parameters and/or comma-separated values.
    pub fn list(&self, name: &str) -> Option<Vec<String>> {
        let v: Vec<String> = self
            .values
            .get(name)?
            .iter()
            .flat_map(|s| s.split(','))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        Some(v)
    }

    /// Fails on any query parameter not documented in `accepted`.
    pub(crate) fn only_these(&self, accepted: &[Param]) -> Result<(), ApiError> {
        let names: Vec<&str> = accepted
            .iter()
            .filter(|p| !p.in_path)
            .map(|p| p.name)
            .collect();
        self.only(&names)
    }

    /// Fails on any parameter not in `known`, so a misspelt one is not silently ignored.
    pub fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.values.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(ApiError::param(
                k.clone(),
                format!(
                    "unknown parameter; this endpoint takes {}",
                    known.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn the_fast_timestamp_format_is_chronos(ts in -70_000_000_000_000i64..300_000_000_000_000) {
            proptest::prop_assert_eq!(rfc3339(ts), rfc3339_chrono(ts));
            let json = serde_json::to_string(&Rfc3339(ts)).unwrap();
            proptest::prop_assert_eq!(json, format!("\"{}\"", rfc3339_chrono(ts)));
        }

        /// Times a page writes one after another (the same day, the day before and
        /// after midnight, back and forth): each as chrono writes it, whatever date the
        /// thread wrote last.
        #[test]
        fn times_one_after_another_are_chronos(
            start in -70_000_000_000_000i64..300_000_000_000_000,
            steps in proptest::collection::vec(-90_000_000i64..90_000_000, 1..40),
        ) {
            let mut ts = start;
            for step in steps {
                ts = ts.saturating_add(step);
                let mut out = Vec::new();
                Rfc3339(ts).write_json(&mut out);
                proptest::prop_assert_eq!(out, format!("\"{}\"", rfc3339_chrono(ts)).into_bytes());
            }
        }
    }

    #[test]
    fn timestamps_format_at_the_edges() {
        for ts in [
            0,
            -1,
            1_630_454_400_123,
            951_782_400_000,
            253_402_271_999_999,
            i64::MAX,
            i64::MIN,
        ] {
            assert_eq!(rfc3339(ts), rfc3339_chrono(ts), "{ts}");
        }
        assert_eq!(rfc3339(1_630_454_400_123), "2021-09-01T08:00:00.123+08:00");
    }

    #[test]
    fn times_and_windows_parse_or_name_the_field() {
        assert_eq!(
            parse_time("from", "2021-09-01T08:00:00.123+08:00").unwrap(),
            1_630_454_400_123
        );
        assert_eq!(
            parse_time("from", "2021-09-01T00:00:00Z").unwrap(),
            1_630_454_400_000
        );
        assert_eq!(
            parse_time("from", "1630454400123").unwrap(),
            1_630_454_400_123
        );
        let e = parse_time("to", "yesterday").unwrap_err();
        assert_eq!(e.field(), Some("to"));
        assert_eq!(parse_window("window", "60s").unwrap(), 60_000);
        assert_eq!(parse_window("window", "5m").unwrap(), 300_000);
        assert_eq!(parse_window("window", "90").unwrap(), 90_000);
        assert_eq!(parse_window("window", "250ms").unwrap(), 250);
        assert!(parse_window("window", "5 minutes").is_err());
        assert!(parse_window("window", "-5s").is_err());
        assert_eq!(rfc3339(1_630_454_400_123), "2021-09-01T08:00:00.123+08:00");
    }

    #[test]
    fn a_singular_parameter_given_twice_is_refused_and_a_list_repeats() {
        let p = Params::parse(Some(
            "q=E12345&q=E54321&to=1&to=1&community=a&community=b,c&kind=face",
        ));
        for name in ["q", "to"] {
            let e = p.get(name).unwrap_err();
            assert_eq!((e.code(), e.field()), ("invalid_parameter", Some(name)));
            assert!(e.to_string().contains("more than once"), "{e}");
        }
        assert_eq!(p.time("to").unwrap_err().field(), Some("to"));
        assert_eq!(p.required("q").unwrap_err().field(), Some("q"));
        assert_eq!(p.number("to", 0u64).unwrap_err().field(), Some("to"));
        assert_eq!(p.window("q").unwrap_err().field(), Some("q"));
        assert_eq!(
            p.choice("q", "x", &[("x", 1)]).unwrap_err().field(),
            Some("q")
        );
        assert_eq!(p.opt_kind("kind").unwrap(), Some(Kind::Face));
        assert_eq!(p.list("community").unwrap(), ["a", "b", "c"]);
        // An empty value counts: `q=&q=x` is two.
        let p = Params::parse(Some("q=&q=x"));
        assert_eq!(p.get("q").unwrap_err().field(), Some("q"));
    }

    #[test]
    fn query_strings_decode_percent_and_plus() {
        let p = Params::parse(Some(
            "subject=%E8%8B%8FE12345&community=a,b&community=c&q=a+b",
        ));
        assert_eq!(p.get("subject").unwrap(), Some("苏E12345"));
        assert_eq!(p.list("community").unwrap(), ["a", "b", "c"]);
        assert_eq!(p.get("q").unwrap(), Some("a b"));
        assert_eq!(p.get("absent").unwrap(), None);
        assert!(p.only(&["subject", "community", "q"]).is_ok());
        assert_eq!(
            p.only(&["subject"]).unwrap_err().code(),
            "invalid_parameter"
        );
    }
}
