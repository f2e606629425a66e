//! Preconditions of a change (RFC 9110 §13.1.1 `If-Match`, §13.1.2 `If-None-Match`)
//! on resources that carry no entity tag (the catalog's communities and devices):
//! `*` asks whether the resource exists (`If-None-Match: *` creates only, `If-Match: *`
//! replaces only); a list of tags matches no current one, for there is none. Judged
//! in the same step as the write (the catalog's compare-and-swap), so a precondition
//! holds for the state the change is made to.

use hyper::HeaderMap;

use crate::error::ApiError;

/// What one precondition header asks.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tags {
    /// `*`: any current representation.
    Any,
    /// Entity tags, as sent.
    Listed(Vec<String>),
}

/// The preconditions of a request (none: always met).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Preconditions {
    if_match: Option<Tags>,
    if_none_match: Option<Tags>,
}

impl Preconditions {
    /// The request's `If-Match` and `If-None-Match` (each may be sent as several
    /// field lines, RFC 9110 §5.3).
    pub(crate) fn of(headers: &HeaderMap) -> Preconditions {
        let read = |name: hyper::header::HeaderName| -> Option<Tags> {
            let mut values = headers.get_all(name).iter().peekable();
            values.peek()?;
            let joined: Vec<String> = values
                .flat_map(|v| {
                    String::from_utf8_lossy(v.as_bytes())
                        .split(',')
                        .map(|t| t.trim().to_string())
                        .collect::<Vec<_>>()
                })
                .filter(|t| !t.is_empty())
                .collect();
            Some(match joined.iter().any(|t| t == "*") {
                true => Tags::Any,
                false => Tags::Listed(joined),
            })
        };
        Preconditions {
            if_match: read(hyper::header::IF_MATCH),
            if_none_match: read(hyper::header::IF_NONE_MATCH),
        }
    }

    /// What the preconditions need of the resource, for a store that judges them in
    /// its write (a cluster's `INSERT … DO NOTHING` or `UPDATE`): `Ok(None)` nothing,
    /// `Ok(Some(exists))` that it exists or not, `Err` the 412 whatever it is.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn demand(&self, what: &str) -> Result<Option<bool>, ApiError> {
        let must_exist = match &self.if_match {
            Some(Tags::Listed(_)) => return self.check(what, true).map(|()| None),
            Some(Tags::Any) => Some(true),
            None => None,
        };
        match (must_exist, &self.if_none_match) {
            (Some(true), Some(Tags::Any)) => self.check(what, true).map(|()| None),
            (Some(true), _) => Ok(Some(true)),
            (_, Some(Tags::Any)) => Ok(Some(false)),
            _ => Ok(None),
        }
    }

    /// Ok unless `If-Match` names entity tags, which no `/v1` resource carries (a
    /// change so conditioned is never made: 412).
    pub(crate) fn tags_match(&self) -> Result<(), ApiError> {
        match &self.if_match {
            Some(Tags::Listed(tags)) => Err(ApiError::PreconditionFailed(format!(
                "If-Match: {} matches no entity tag (this API's resources carry none): nothing was changed",
                tags.join(", ")
            ))),
            _ => Ok(()),
        }
    }

    /// Ok when the change may be made to `what` as it is (`exists`: it has a current
    /// representation); else the 412 (RFC 9110 §13.2.2: `If-Match` first, then
    /// `If-None-Match`, which for a change is 412 too).
    pub(crate) fn check(&self, what: &str, exists: bool) -> Result<(), ApiError> {
        match &self.if_match {
            Some(Tags::Any) if !exists => {
                return Err(ApiError::PreconditionFailed(format!(
                    "If-Match: * and {what} does not exist: nothing was changed"
                )))
            }
            Some(Tags::Listed(tags)) => {
                return Err(ApiError::PreconditionFailed(format!(
                    "If-Match: {} matches no entity tag of {what} (it carries none): nothing was changed",
                    tags.join(", ")
                )))
            }
            _ => {}
        }
        match &self.if_none_match {
            Some(Tags::Any) if exists => Err(ApiError::PreconditionFailed(format!(
                "If-None-Match: * and {what} exists: nothing was changed"
            ))),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pre(lines: &[(&str, &str)]) -> Preconditions {
        let mut h = HeaderMap::new();
        for (name, value) in lines {
            h.append(
                hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        Preconditions::of(&h)
    }

    #[test]
    fn star_asks_for_existence_and_tags_match_nothing() {
        let none = pre(&[]);
        assert!(none.check("x", true).is_ok() && none.check("x", false).is_ok());
        let create_only = pre(&[("if-none-match", "*")]);
        assert!(create_only.check("x", false).is_ok());
        assert!(create_only.check("x", true).is_err());
        let replace_only = pre(&[("if-match", "*")]);
        assert!(replace_only.check("x", true).is_ok());
        assert!(replace_only.check("x", false).is_err());
        // No current entity tag: a listed one never matches; If-None-Match of tags is
        // then always met.
        let tagged = pre(&[("if-match", "\"a\", W/\"b\"")]);
        assert!(tagged.check("x", true).is_err() && tagged.check("x", false).is_err());
        let not_tagged = pre(&[("if-none-match", "\"a\"")]);
        assert!(not_tagged.check("x", true).is_ok());
        // Several field lines are one list; `*` among them is `*`.
        let lines = pre(&[("if-none-match", "\"a\""), ("if-none-match", "*")]);
        assert!(lines.check("x", true).is_err());
        // If-Match is judged first.
        let both = pre(&[("if-match", "*"), ("if-none-match", "*")]);
        let e = both.check("device 1", false).unwrap_err().to_string();
        assert!(e.contains("If-Match"), "{e}");
        assert_eq!(
            both.check("device 1", true).unwrap_err().to_string(),
            "If-None-Match: * and device 1 exists: nothing was changed"
        );
        // What a store judging them in its write is asked for: the same verdicts.
        for p in [
            none,
            create_only,
            replace_only,
            tagged,
            not_tagged,
            lines,
            both,
        ] {
            for exists in [false, true] {
                let by_demand = match p.demand("x") {
                    Err(_) => false,
                    Ok(None) => true,
                    Ok(Some(needed)) => needed == exists,
                };
                assert_eq!(by_demand, p.check("x", exists).is_ok(), "{p:?} {exists}");
            }
        }
    }
}
