//! Content negotiation (RFC 9110 §12.5.1): which of the representations a route offers
//! (JSON, NDJSON, Server-Sent Events) a request's `Accept` prefers, and the `Vary:
//! Accept` (§12.5.5) of an answer whose form followed it.
//!
//! `Accept` is read whole: every field line, every element (`*/*`, `type/*`,
//! `type/subtype`, parameters, a weight `q=` of 0 to 1 in thousandths),
//! case-insensitively. An offer's quality is the weight of the most specific range
//! that matches it (`type/subtype` over `type/*` over `*/*`; the highest of equally
//! specific ones), 0 when none does; the best offer wins, a tie going to the one a
//! more specific range names (`application/x-ndjson, */*` is NDJSON), then to the
//! earlier (the route's default, JSON). A request without `Accept`, or that finds nothing
//! offered acceptable, gets the default as it always has (no 406). A malformed element
//! is skipped, the rest of the field still read. Parameters other than `q` do not
//! narrow a match (`application/x-ndjson; charset=utf-8` is NDJSON: our JSON is UTF-8).

use hyper::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE, VARY};

use crate::http::Body;

/// `application/json`: every route's default.
pub(crate) const JSON: &str = "application/json";
/// Server-Sent Events (`GET /v1/feed`).
pub(crate) const SSE: &str = "text/event-stream";
pub(crate) use crate::http::body::NDJSON;

/// Of `offers` (`type/subtype`, lower case, the route's default first), the one the
/// request's `Accept` prefers (see the module's notes).
pub(crate) fn preferred(headers: &HeaderMap, offers: &[&'static str]) -> &'static str {
    let fields = headers.get_all(ACCEPT);
    offers[choose(|| fields.iter().map(HeaderValue::as_bytes), offers)]
}

/// The index in `offers` of the one `fields` (the `Accept` field values, in order,
/// read once per offer) prefer: the highest quality above 0, a tie to the one a more
/// specific range names, then to the earlier; 0 when none is acceptable or there are
/// no fields.
pub(crate) fn choose<'a, I>(fields: impl Fn() -> I, offers: &[&str]) -> usize
where
    I: IntoIterator<Item = &'a [u8]>,
{
    // (index, (quality, specificity of the range giving it)): of equal qualities the
    // offer a more specific range names wins (`application/x-ndjson, */*` is NDJSON,
    // as it was before ranges were weighed); then the earlier.
    let mut best = (0, (0, 0));
    for (i, offer) in offers.iter().enumerate() {
        let q = quality(fields(), offer.as_bytes());
        if q.0 > 0 && q > best.1 {
            best = (i, q);
        }
    }
    best.0
}

/// The quality (thousandths) `fields` give `offer` (`type/subtype`): the weight of
/// the most specific range matching it (the highest of equally specific ones), 0 when
/// none does; and that range's specificity (3 `type/subtype`, 2 `type/*`, 1 `*/*`).
fn quality<'a>(fields: impl IntoIterator<Item = &'a [u8]>, offer: &[u8]) -> (u16, u8) {
    let (ty, sub) = split_type(offer);
    // (specificity + 1, weight) of the best match so far; (0, 0): none.
    let mut best = (0u8, 0u16);
    for field in fields {
        for r in ranges(field) {
            let specificity = match (r.ty, r.sub) {
                (b"*", b"*") => 1,
                (t, b"*") if t.eq_ignore_ascii_case(ty) => 2,
                (t, s) if t.eq_ignore_ascii_case(ty) && s.eq_ignore_ascii_case(sub) => 3,
                _ => continue,
            };
            if (specificity, r.q) > best {
                best = (specificity, r.q);
            }
        }
    }
    (best.1, best.0)
}

fn split_type(media: &[u8]) -> (&[u8], &[u8]) {
    let slash = media.iter().position(|b| *b == b'/').unwrap_or(media.len());
    (&media[..slash], media.get(slash + 1..).unwrap_or(&[]))
}

/// One media range of an `Accept` element: its type and subtype as sent (`*` for
/// any) and its weight in thousandths (1000 when unweighted).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Range<'a> {
    pub ty: &'a [u8],
    pub sub: &'a [u8],
    pub q: u16,
}

/// The well-formed media ranges of one `Accept` field value, in order (malformed
/// elements skipped).
pub(crate) fn ranges(field: &[u8]) -> impl Iterator<Item = Range<'_>> {
    elements(field).filter_map(range)
}

/// The elements of a comma-separated list (RFC 9110 §5.6.1), split at the commas
/// outside quoted strings; empty ones included (the caller skips them).
fn elements(field: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(field);
    std::iter::from_fn(move || {
        let s = rest?;
        let (mut quoted, mut escaped) = (false, false);
        for (i, &b) in s.iter().enumerate() {
            match (quoted, escaped, b) {
                (true, true, _) => escaped = false,
                (true, false, b'\\') => escaped = true,
                (_, _, b'"') => quoted = !quoted,
                (false, _, b',') => {
                    rest = Some(&s[i + 1..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

/// One element: `media-range [ weight ]`, with OWS around (RFC 9110 §12.5.1):
///
/// ```text
/// media-range = ( "*/*" / ( type "/" "*" ) / ( type "/" subtype ) ) parameters
/// parameters  = *( OWS ";" OWS [ parameter ] )
/// parameter   = token "=" ( token / quoted-string )
/// weight      = OWS ";" OWS "q=" qvalue     ; the name case-insensitive
/// ```
///
/// `None` for an empty or malformed element. Parameters after the weight (RFC 7231's
/// accept-ext) are read and ignored.
fn range(element: &[u8]) -> Option<Range<'_>> {
    let e = trim_ows(element);
    let ty_end = e.iter().position(|b| !is_tchar(*b)).unwrap_or(e.len());
    let (ty, rest) = e.split_at(ty_end);
    let rest = rest.strip_prefix(b"/")?;
    let sub_end = rest
        .iter()
        .position(|b| !is_tchar(*b))
        .unwrap_or(rest.len());
    let (sub, mut params) = rest.split_at(sub_end);
    if ty.is_empty() || sub.is_empty() || (ty == b"*" && sub != b"*") {
        return None;
    }
    let mut q = None;
    loop {
        params = trim_ows(params);
        if params.is_empty() {
            break;
        }
        params = trim_ows(params.strip_prefix(b";")?);
        if params.is_empty() || params[0] == b';' {
            continue;
        }
        let name_end = params
            .iter()
            .position(|b| !is_tchar(*b))
            .unwrap_or(params.len());
        let (name, after) = params.split_at(name_end);
        let after = after.strip_prefix(b"=")?;
        let (value, quoted, after) = match after.first() {
            Some(b'"') => {
                let (value, after) = quoted_string(after)?;
                (value, true, after)
            }
            _ => {
                let end = after
                    .iter()
                    .position(|b| !is_tchar(*b))
                    .unwrap_or(after.len());
                (&after[..end], false, &after[end..])
            }
        };
        if name.is_empty() || (value.is_empty() && !quoted) {
            return None;
        }
        if name.eq_ignore_ascii_case(b"q") && q.is_none() {
            q = Some(match quoted {
                true => return None,
                false => qvalue(value)?,
            });
        }
        params = after;
    }
    Some(Range {
        ty,
        sub,
        q: q.unwrap_or(1000),
    })
}

/// A quoted string at the start of `s` (which begins `"`): its content as sent (escapes
/// kept) and what follows it; `None` when it does not end.
fn quoted_string(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut escaped = false;
    for (i, &b) in s.iter().enumerate().skip(1) {
        match (escaped, b) {
            (true, _) => escaped = false,
            (false, b'\\') => escaped = true,
            (false, b'"') => return Some((&s[1..i], &s[i + 1..])),
            _ => {}
        }
    }
    None
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` (RFC 9110 §12.4.2),
/// in thousandths.
fn qvalue(v: &[u8]) -> Option<u16> {
    let (whole, fraction) = match v.iter().position(|b| *b == b'.') {
        Some(dot) => (&v[..dot], &v[dot + 1..]),
        None => (v, &[][..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let thousandths = fraction
        .iter()
        .chain(std::iter::repeat(&b'0'))
        .take(3)
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// `tchar` (RFC 9110 §5.6.2): what a token is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `s` without leading and trailing spaces and tabs (OWS).
fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let Some(start) = start else { return &[] };
    let end = s
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(start);
    &s[start..=end]
}

/// `body` with `Vary: Accept` when its form followed `Accept` (RFC 9110 §12.5.5): JSON
/// that could have been NDJSON lines, NDJSON, a Server-Sent Events stream. A body of
/// its own type (a picture, `/metrics`, the console, GA/T 1400's `VIID+JSON`) is as
/// it is.
pub(crate) fn vary_accept(body: Body) -> Body {
    if !negotiable(&body) {
        return body;
    }
    let vary = (VARY, HeaderValue::from_static("accept"));
    match body {
        Body::Headed(mut h, b) => {
            h.push(vary);
            Body::Headed(h, b)
        }
        b => Body::Headed(vec![vary], Box::new(b)),
    }
}

/// Whether `body` is one whose form `Accept` chooses.
fn negotiable(body: &Body) -> bool {
    match body {
        Body::Value(_)
        | Body::Text(_)
        | Body::Json(_)
        | Body::Lines(_)
        | Body::Stream(_)
        | Body::Events(_) => true,
        Body::Serialized(_, b) => negotiable(b),
        Body::Headed(h, b) => !h.iter().any(|(n, _)| n == CONTENT_TYPE) && negotiable(b),
        Body::Typed(..) | Body::Binary(..) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FEED: [&str; 3] = [JSON, SSE, NDJSON];
    const LIST: [&str; 2] = [JSON, NDJSON];

    fn pick(accept: &[&str], offers: &[&'static str]) -> &'static str {
        offers[choose(|| accept.iter().map(|s| s.as_bytes()), offers)]
    }

    #[test]
    fn what_real_clients_send_keeps_its_answer() {
        // No Accept, curl, axios, a browser's navigation, fetch's default.
        assert_eq!(pick(&[], &LIST), JSON);
        assert_eq!(pick(&["*/*"], &LIST), JSON);
        assert_eq!(pick(&["application/json, text/plain, */*"], &LIST), JSON);
        let browser =
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
        assert_eq!(pick(&[browser], &FEED), JSON);
        assert_eq!(pick(&["application/x-ndjson"], &LIST), NDJSON);
        // EventSource.
        assert_eq!(pick(&["text/event-stream"], &FEED), SSE);
        assert_eq!(pick(&["text/event-stream"], &LIST), JSON);
        // Java-style clients append `*/*`: the type they name still wins the tie.
        assert_eq!(pick(&["application/x-ndjson, */*"], &LIST), NDJSON);
        assert_eq!(
            pick(&["application/x-ndjson, application/json"], &LIST),
            JSON
        );
        assert_eq!(pick(&["text/event-stream, */*"], &FEED), SSE);
        assert_eq!(
            pick(&["application/*, application/x-ndjson"], &LIST),
            NDJSON
        );
    }

    #[test]
    fn the_probes_findings_are_negotiated_as_rfc_9110_says() {
        assert_eq!(pick(&["Application/X-NDJSON"], &LIST), NDJSON);
        assert_eq!(pick(&["application/x-ndjson;q=0"], &LIST), JSON);
        assert_eq!(
            pick(&["application/json, application/x-ndjson;q=0.1"], &LIST),
            JSON
        );
        assert_eq!(
            pick(&["text/event-stream;q=0, application/json"], &FEED),
            JSON
        );
    }

    #[test]
    fn ranges_weights_and_fields_combine() {
        // The most specific range decides, whatever its place or weight.
        assert_eq!(pick(&["*/*;q=0.1, application/x-ndjson"], &LIST), NDJSON);
        assert_eq!(pick(&["application/x-ndjson;q=0, */*"], &LIST), JSON);
        assert_eq!(pick(&["application/*;q=0, */*"], &LIST), JSON);
        assert_eq!(
            pick(&["application/*;q=0, application/x-ndjson"], &LIST),
            NDJSON
        );
        assert_eq!(pick(&["text/*", "application/json;q=0.5"], &FEED), SSE);
        // Several field lines are one list.
        assert_eq!(
            pick(&["application/json;q=0.2", "application/x-ndjson"], &LIST),
            NDJSON
        );
        // Equal ranges: the highest weight.
        assert_eq!(
            pick(&["application/x-ndjson;q=0.1, application/x-ndjson;q=0.9, application/json;q=0.5"], &LIST),
            NDJSON
        );
        // Ties go to the earlier offer.
        assert_eq!(
            pick(&["application/x-ndjson, application/json"], &LIST),
            JSON
        );
        assert_eq!(
            pick(&["text/event-stream, application/x-ndjson"], &FEED),
            SSE
        );
        assert_eq!(
            pick(&["text/event-stream;q=0.5, application/x-ndjson"], &FEED),
            NDJSON
        );
        // Nothing acceptable: the default, never a refusal.
        assert_eq!(pick(&["image/png"], &FEED), JSON);
        assert_eq!(pick(&[""], &LIST), JSON);
        assert_eq!(pick(&["*/*;q=0"], &LIST), JSON);
    }

    #[test]
    fn the_grammar_is_followed_and_a_bad_element_is_skipped() {
        let parsed = |s: &str| -> Vec<(String, String, u16)> {
            ranges(s.as_bytes())
                .map(|r| {
                    let t = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
                    (t(r.ty), t(r.sub), r.q)
                })
                .collect()
        };
        let one = |t: &str, s: &str, q| vec![(t.to_string(), s.to_string(), q)];
        assert_eq!(
            parsed(" text/html ; level=1 ;Q=0.5 "),
            one("text", "html", 500)
        );
        assert_eq!(parsed("a/b;q=1.000"), one("a", "b", 1000));
        assert_eq!(parsed("a/b;q=0.25"), one("a", "b", 250));
        assert_eq!(parsed("a/b;q=0."), one("a", "b", 0));
        assert_eq!(parsed("a/b;;q=0.3;"), one("a", "b", 300));
        // A quoted string may hold commas, semicolons and escaped quotes.
        assert_eq!(
            parsed(r#"a/b;x="1,2;q=0\"x";q=0.7, c/d"#),
            [one("a", "b", 700), one("c", "d", 1000)].concat()
        );
        // Parameters after the weight are ignored; a second q too.
        assert_eq!(parsed("a/b;q=0.2;ext=1;q=0.9"), one("a", "b", 200));
        // Empty list elements are allowed.
        assert_eq!(parsed(", ,a/b,,"), one("a", "b", 1000));
        for bad in [
            "a/b;q=1.5",
            "a/b;q=2",
            "a/b;q=0.1234",
            "a/b;q=1.001",
            "a/b;q=-0",
            "a/b;q=",
            "a/b;q=\"0.5\"",
            "a/b;q=.5",
            "*/b",
            "a/",
            "/b",
            "a",
            "a b/c",
            "a/b c",
            "a/b;=1",
            "a/b;x",
            "a/b;x=\"open",
            "a/b/c",
            "a/b;x=y z",
        ] {
            assert_eq!(parsed(bad), [], "{bad:?}");
            // The rest of the field is still read.
            assert_eq!(
                parsed(&format!("c/d;q=0.5, {bad}")).first(),
                Some(&("c".into(), "d".into(), 500)),
                "{bad:?}"
            );
        }
        assert_eq!(qvalue(b"0"), Some(0));
        assert_eq!(qvalue(b"1."), Some(1000));
        assert_eq!(qvalue(b"0.001"), Some(1));
        assert_eq!(qvalue(b"0.999"), Some(999));
    }

    #[test]
    fn vary_is_said_of_negotiated_bodies_only() {
        let says = |b: Body| {
            let r = crate::http::body::respond(hyper::StatusCode::OK, vary_accept(b));
            r.headers()
                .get(VARY)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let accept = Some("accept".to_string());
        assert_eq!(says(Body::Value(serde_json::json!({"a": 1}))), accept);
        assert_eq!(says(Body::Lines("{}\n".into())), accept);
        let located = Body::Value(serde_json::json!({"id": "x"})).located("/v1/keys");
        assert_eq!(says(located), accept);
        assert_eq!(says(Body::Typed("text/plain", String::new())), None);
        assert_eq!(says(Body::Binary("image/jpeg", Default::default())), None);
        let viid = vec![(
            CONTENT_TYPE,
            HeaderValue::from_static("application/VIID+JSON"),
        )];
        assert_eq!(
            says(Body::Headed(viid, Box::new(Body::Text("{}".into())))),
            None
        );
    }

    /// A media range the model knows: type, subtype, other parameters, weight.
    #[derive(Clone, Debug)]
    struct Element {
        ty: String,
        sub: String,
        params: Vec<(String, String)>,
        q: Option<u16>,
    }

    /// Writes `q` (thousandths) in one of the spellings the grammar allows.
    fn spell_q(q: u16, style: u8) -> String {
        match (q, style % 3) {
            (1000, 0) => "1".into(),
            (1000, 1) => "1.0".into(),
            (1000, _) => "1.000".into(),
            (0, 0) => "0".into(),
            (q, 0) if q % 100 == 0 => format!("0.{}", q / 100),
            (q, 1) if q % 10 == 0 => format!("0.{:02}", q / 10),
            (q, _) => format!("0.{q:03}"),
        }
    }

    /// A case of a word chosen by `mask`, bit by letter.
    fn recase(s: &str, mask: u32) -> String {
        s.chars()
            .enumerate()
            .map(|(i, c)| match (mask >> (i % 32)) & 1 {
                1 => c.to_ascii_uppercase(),
                _ => c,
            })
            .collect()
    }

    fn element() -> impl Strategy<Value = Element> {
        let types = prop_oneof![
            Just(("*", "*")),
            Just(("application", "*")),
            Just(("text", "*")),
            Just(("application", "json")),
            Just(("application", "x-ndjson")),
            Just(("text", "event-stream")),
            Just(("text", "html")),
            Just(("application", "x-ndjsonx")),
            Just(("image", "png")),
        ];
        let param = (
            "[a-pr-z][a-z0-9-]{0,5}",
            prop_oneof!["[a-z0-9.]{1,6}", "\"[a-z ,;=0-9]{0,6}\""],
        );
        (
            types,
            any::<u32>(),
            proptest::collection::vec(param, 0..3),
            proptest::option::of(0u16..=1000),
        )
            .prop_map(|((ty, sub), mask, params, q)| Element {
                ty: recase(ty, mask),
                sub: recase(sub, mask.rotate_left(7)),
                params,
                q,
            })
    }

    /// The model: RFC 9110 §12.5.1 over the elements as they were made.
    fn model(fields: &[Vec<Element>], offers: &[&'static str]) -> usize {
        let all: Vec<&Element> = fields.iter().flatten().collect();
        let quality = |offer: &str| {
            let (ty, sub) = offer.split_once('/').unwrap();
            let specificity = |e: &Element| {
                let (et, es) = (e.ty.to_ascii_lowercase(), e.sub.to_ascii_lowercase());
                if et == ty && es == sub {
                    Some(3)
                } else if et == ty && es == "*" {
                    Some(2)
                } else if et == "*" && es == "*" {
                    Some(1)
                } else {
                    None
                }
            };
            let top = all.iter().filter_map(|e| specificity(e)).max();
            let q = all
                .iter()
                .filter(|e| top.is_some() && specificity(e) == top)
                .map(|e| e.q.unwrap_or(1000))
                .max()
                .unwrap_or(0);
            (q, top.unwrap_or(0))
        };
        let qs: Vec<(u16, u8)> = offers.iter().map(|o| quality(o)).collect();
        let best = *qs.iter().max().unwrap();
        match best.0 {
            0 => 0,
            _ => qs.iter().position(|q| *q == best).unwrap(),
        }
    }

    /// An element as a client might write it, with optional whitespace `ws`.
    fn write(e: &Element, ws: &str, style: u8) -> String {
        let mut s = format!("{}/{}", e.ty, e.sub);
        for (name, value) in &e.params {
            s.push_str(&format!("{ws};{ws}{name}={value}"));
        }
        if let Some(q) = e.q {
            let name = if style.is_multiple_of(2) { "q" } else { "Q" };
            s.push_str(&format!("{ws};{ws}{name}={}", spell_q(q, style)));
        }
        s
    }

    proptest! {
        #[test]
        fn the_choice_is_the_models(
            fields in proptest::collection::vec(proptest::collection::vec(element(), 0..5), 0..3),
            ws in prop_oneof![Just(""), Just(" "), Just("\t"), Just(" \t ")],
            style in any::<u8>(),
            garbage in proptest::option::of("[a-z*/=;. ]{0,8}"),
        ) {
            let mut written: Vec<String> = fields
                .iter()
                .map(|f| {
                    f.iter()
                        .map(|e| write(e, ws, style))
                        .collect::<Vec<_>>()
                        .join(&format!("{ws},{ws}"))
                })
                .collect();
            // An element that is no media range at all (or is one the model is then
            // given): skipped, the rest read.
            if let Some(g) = garbage {
                let parses = ranges(g.as_bytes()).next().is_some();
                match (parses, written.first_mut()) {
                    (true, _) => {}
                    (false, Some(first)) => first.push_str(&format!(",{g}")),
                    (false, None) => written.push(g),
                }
            }
            let bytes: Vec<&[u8]> = written.iter().map(|s| s.as_bytes()).collect();
            for offers in [&LIST[..], &FEED[..]] {
                let got = choose(|| bytes.iter().copied(), offers);
                prop_assert_eq!(offers[got], offers[model(&fields, offers)], "{:?}", written);
            }
        }

        /// Any bytes at all: an answer, never a panic.
        #[test]
        fn any_field_is_answered(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let got = choose(|| [&bytes[..]], &FEED);
            prop_assert!(got < FEED.len());
        }
    }
}
