//! How a path is read before it is routed (a `/VIID` one also compared with a
//! digest's `uri`):
//!
//! * percent-encoded unreserved characters are decoded (`/VIID/%46aces` is
//!   `/VIID/Faces`): RFC 3986 §6.2.2.2 makes them the same URI; other escapes stay
//!   (`/VIID%2FFaces` is not `/VIID/Faces`: `%2F` is data, not a separator);
//! * then dot segments are removed (RFC 3986 §5.2.4, as §6.2.2.3 asks after the
//!   decoding): `/VIID/%2E%2E/v1/keys` is `/v1/keys`, routed (and authorised) as that
//!   path is — never as a `/VIID` resource with `..` in it. Other paths are routed
//!   with only their escaped unreserved characters decoded (`/v1/events/%31` is
//!   `/v1/events/1`; `/v1/communities/..` names the community `..`, refused as such);
//! * one trailing slash is dropped (`/VIID/Faces/` is `/VIID/Faces`), as the Spring MVC
//!   servers most 视图库 run on (trailing-slash matching, on by default before Spring
//!   6) answer it;
//! * case is kept: paths are case-sensitive (RFC 3986 §6.2.2.1), GA/T 1400.4 spells
//!   each resource one way, and no client seen spells them otherwise; `/VIID/faces` is
//!   404 whatever the method, its status naming the resource meant.

use std::borrow::Cow;

/// Whether `path` is under `/VIID`.
pub(crate) fn is_viid(path: &str) -> bool {
    path == "/VIID" || path.starts_with("/VIID/")
}

/// The path a `/VIID` request is routed by (where its dot segments lead within
/// `/VIID`; dot segments leading out of it lead to `/VIID` itself, answered 404 in
/// GA/T 1400's shape — a front end that passes only `/VIID/*` to the device network
/// must not find the `/v1` API behind it); any other path with its escaped unreserved
/// characters decoded, otherwise as it came.
pub(crate) fn canonical(path: &str) -> Cow<'_, str> {
    let decoded = decode_unreserved(path);
    if !is_viid(&decoded) {
        // Escaped unreserved characters are the same URI anywhere (RFC 3986
        // §6.2.2.2): `/v1/events/%31` is `/v1/events/1`. Nothing else changes.
        return decoded;
    }
    let decoded = match has_dot_segment(&decoded) {
        true => Cow::Owned(remove_dot_segments(&decoded)),
        false => decoded,
    };
    if !is_viid(&decoded) {
        // Out of `/VIID` by its dot segments: nowhere.
        return Cow::Borrowed("/VIID");
    }
    match decoded.strip_suffix('/') {
        Some(trimmed) if trimmed.len() >= "/VIID".len() => Cow::Owned(trimmed.to_string()),
        _ => decoded,
    }
}

/// A request target (`path?query`) with its path made [`canonical`].
pub(crate) fn canonical_target(target: &str) -> Cow<'_, str> {
    match target.split_once('?') {
        Some((path, query)) => match canonical(path) {
            Cow::Borrowed(_) => Cow::Borrowed(target),
            Cow::Owned(p) => Cow::Owned(format!("{p}?{query}")),
        },
        None => canonical(target),
    }
}

/// The `/VIID` path `path` meant when only its case differs from a route's (for a
/// 404's status text).
pub(crate) fn meant(path: &str) -> Option<String> {
    crate::routes::routes()
        .routes
        .iter()
        .map(|r| r.path)
        .filter(|t| t.starts_with("/VIID/") && *t != "/VIID/{resource}")
        .find_map(|t| match t.find("/{") {
            None => t.eq_ignore_ascii_case(path).then(|| t.to_string()),
            Some(i) => {
                let fixed = &t[..=i];
                let head = path.get(..fixed.len())?;
                let rest = &path[fixed.len()..];
                (head.eq_ignore_ascii_case(fixed) && !rest.is_empty())
                    .then(|| format!("{fixed}{rest}"))
            }
        })
        .filter(|m| m != path)
}

/// Whether a path has a `.` or `..` segment.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|s| s == "." || s == "..")
}

/// RFC 3986 §5.2.4 `remove_dot_segments`.
fn remove_dot_segments(path: &str) -> String {
    // Drops the last segment of `out` and its `/`.
    fn pop(out: &mut String) {
        out.truncate(out.rfind('/').unwrap_or(0));
    }
    let mut input = path;
    let mut out = String::with_capacity(path.len());
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest;
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest;
        } else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") {
            input = &input[3..];
            pop(&mut out);
        } else if input == "/.." {
            input = "/";
            pop(&mut out);
        } else if input == "." || input == ".." {
            input = "";
        } else {
            let from = usize::from(input.starts_with('/'));
            let end = input[from..].find('/').map_or(input.len(), |i| i + from);
            out.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    out
}

/// `%XX` escapes of unreserved characters (ALPHA, DIGIT, `-`, `.`, `_`, `~`) decoded.
fn decode_unreserved(path: &str) -> Cow<'_, str> {
    if !path.contains('%') {
        return Cow::Borrowed(path);
    }
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(c) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                    out.push(c as char);
                    i += 3;
                    continue;
                }
            }
        }
        // Copy one whole character (the path may hold UTF-8 sent raw).
        let len = path[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&path[i..i + len]);
        i += len;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viid_paths_are_read_as_rfc_3986_makes_them_equal() {
        assert_eq!(canonical("/VIID/%46aces"), "/VIID/Faces");
        assert_eq!(canonical("/VIID/%46aces/"), "/VIID/Faces");
        assert_eq!(canonical("/%56IID/Faces"), "/VIID/Faces");
        assert_eq!(canonical("/VIID/Faces/"), "/VIID/Faces");
        assert_eq!(canonical("/VIID/"), "/VIID");
        assert_eq!(canonical("/VIID/Faces/F%31"), "/VIID/Faces/F1");
        // Reserved characters stay escaped; case stays.
        assert_eq!(canonical("/VIID%2FFaces"), "/VIID%2FFaces");
        assert_eq!(canonical("/VIID/Faces%2F"), "/VIID/Faces%2F");
        assert_eq!(canonical("/VIID/faces"), "/VIID/faces");
        assert_eq!(canonical("/VIID/Faces/%E8%8B%8F"), "/VIID/Faces/%E8%8B%8F");
        // Truncated escapes and other paths are left alone.
        assert_eq!(canonical("/VIID/Faces%4"), "/VIID/Faces%4");
        assert_eq!(canonical("/VIID/Faces%"), "/VIID/Faces%");
        // Elsewhere only escaped unreserved characters are decoded.
        assert_eq!(canonical("/v1/events/%31"), "/v1/events/1");
        assert_eq!(
            canonical("/v1/communities/%33205080001"),
            "/v1/communities/3205080001"
        );
        assert_eq!(canonical("/v1/devices/a%2Fb"), "/v1/devices/a%2Fb");
        assert_eq!(canonical("/v1/%2E%2E/keys"), "/v1/../keys");
        assert_eq!(canonical("/v1/events/"), "/v1/events/");
        assert_eq!(
            canonical_target("/VIID/%46aces/?a=%46"),
            "/VIID/Faces?a=%46"
        );
    }

    #[test]
    fn dot_segments_are_removed_after_decoding() {
        // `%2E` is `.`, unreserved: `%2E%2E` is `..`, and goes as `..` goes.
        // Out of `/VIID` by them: `/VIID` itself (404), never the `/v1` API.
        assert_eq!(canonical("/VIID/%2E%2E/v1/keys"), "/VIID");
        assert_eq!(canonical("/VIID/%2e%2E/%2E%2e/v1/keys"), "/VIID");
        assert_eq!(canonical("/VIID/../v1/keys"), "/VIID");
        assert_eq!(
            canonical("/VIID/Faces/%2E%2E/Subscribes"),
            "/VIID/Subscribes"
        );
        assert_eq!(canonical("/VIID/Faces/./F1"), "/VIID/Faces/F1");
        assert_eq!(canonical("/VIID/Faces/%2E"), "/VIID/Faces");
        assert_eq!(canonical("/VIID/Faces/.."), "/VIID");
        // Other paths are routed as they came.
        assert_eq!(canonical("/v1/../VIID/Faces"), "/v1/../VIID/Faces");
        assert_eq!(canonical("/v1/communities/.."), "/v1/communities/..");
        assert_eq!(canonical("/VIID/%2E%2E/%2E%2E/%2E%2E/etc"), "/VIID");
        assert_eq!(canonical("/VIID/../VIID/Faces"), "/VIID/Faces");
        // Dots inside a segment are data, as is an escaped `/`.
        assert_eq!(canonical("/VIID/Faces/F1..2"), "/VIID/Faces/F1..2");
        assert_eq!(canonical("/VIID/Faces/.hidden"), "/VIID/Faces/.hidden");
        assert_eq!(canonical("/VIID/Faces%2F..%2Fx"), "/VIID/Faces%2F..%2Fx");
        assert_eq!(canonical("/v1/events/"), "/v1/events/");
        assert_eq!(
            canonical_target("/VIID/Faces/%2E%2E/Faces?x=../y"),
            "/VIID/Faces?x=../y"
        );
        assert_eq!(remove_dot_segments("/a/b/c/./../../g"), "/a/g");
        assert_eq!(remove_dot_segments("mid/content=5/../6"), "mid/6");
    }
}
