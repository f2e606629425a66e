//! The investigator console (`server/console/`): a page of hand-written ES modules and
//! CSS plus one vendored library (uPlot, for the charts), embedded in the binary at
//! build time, served at `/` and `/console/{file}` without a key (the assets hold no
//! data: everything the page shows it fetches from the documented `/v1` API with the
//! investigator's key). No asset is fetched from anywhere else, and the
//! Content-Security-Policy says so to the browser.

use std::sync::LazyLock;

use hyper::header::{HeaderName, HeaderValue, CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use hyper::StatusCode;

use crate::error::ApiError;
use crate::http::{Answer, Body, Call};

/// One embedded file of the console.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/console/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console; nothing else is served under `/console/`.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("i18n.js", JS),
    asset!("dom.js", JS),
    asset!("time.js", JS),
    asset!("chart.js", JS),
    asset!("timeline.js", JS),
    asset!("views/search.js", JS),
    asset!("views/subject.js", JS),
    asset!("views/companions.js", JS),
    asset!("views/collision.js", JS),
    asset!("views/community.js", JS),
    asset!("views/watch.js", JS),
    asset!("views/audit.js", JS),
    // uPlot, the charting library, as published on npm at the version pinned in
    // `console/vendor/package.json` (server/tests/console.rs checks the bytes); `chart.js`
    // loads it the first time it draws a chart.
    asset!("vendor/uPlot.iife.min.js", JS),
    asset!("vendor/uPlot.min.css", "text/css; charset=utf-8"),
];

/// The page may load only its own files, talk only to this server, and show pictures
/// it fetched itself (`blob:`): a police intranet has no internet, and a page that
/// never reaches out cannot leak what an investigator looks at.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Each asset's entity tag: a digest of its bytes (so a new build is a new tag).
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| format!("\"{}\"", &crate::auth::sha256_hex(a.bytes)[..20]))
        .collect()
});

/// `GET /`: the console's page.
pub(crate) async fn page(c: Call) -> Result<Answer, ApiError> {
    asset(&c.path, "index.html", c.header(IF_NONE_MATCH))
}

/// `GET /console/{file}`: one of its scripts, its style sheet or its icon.
pub(crate) async fn file(c: Call) -> Result<Answer, ApiError> {
    asset(&c.path, &c.arg(), c.header(IF_NONE_MATCH))
}

/// The asset `name` (asked for at `path`) with its type, tag and the console's
/// security headers; 304 when the browser already holds this version (its
/// `If-None-Match`); 404 for anything that is not an asset.
pub(crate) fn asset(
    path: &str,
    name: &str,
    if_none_match: Option<&str>,
) -> Result<Answer, ApiError> {
    let i = ASSETS
        .iter()
        .position(|a| a.name == name)
        .ok_or_else(|| ApiError::NoSuchEndpoint(path.to_string()))?;
    let (asset, etag) = (&ASSETS[i], &ETAGS[i]);
    // RFC 9110 §13.1.2: If-None-Match compares weakly (`W/"…"` matches `"…"`).
    let fresh = if_none_match.is_some_and(|v| {
        v.split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
    });
    let headers = vec![
        (ETAG, value(etag)),
        // Kept, but checked with the server on every use (a 304 costs no body): an
        // upgraded server is never run with an old page.
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            HeaderName::from_static("content-security-policy"),
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ),
        (
            HeaderName::from_static("referrer-policy"),
            HeaderValue::from_static("no-referrer"),
        ),
        (
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        ),
    ];
    let (status, bytes) = match fresh {
        true => (StatusCode::NOT_MODIFIED, &[][..]),
        false => (StatusCode::OK, asset.bytes),
    };
    let body = Body::Binary(asset.content_type, hyper::body::Bytes::from_static(bytes));
    Ok((status, Body::Headed(headers, Box::new(body))))
}

fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("an entity tag is hex in quotes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_names_is_embedded_and_nothing_is_fetched_from_elsewhere() {
        let names: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
        for a in ASSETS {
            let text = String::from_utf8_lossy(a.bytes);
            assert!(!a.bytes.is_empty(), "{} is empty", a.name);
            // No asset names another origin (a CDN, a font service); SVG's namespace
            // is a name, never fetched, and uPlot's banner comment names its home.
            let names_other = text
                .replace("http://www.w3.org/2000/svg", "")
                .replace("/*! https://github.com/leeoniya/uPlot ", "");
            for scheme in ["http://", "https://", "//cdn", "//fonts"] {
                assert!(!names_other.contains(scheme), "{} names {scheme}", a.name);
            }
            // Every module a script imports is served.
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let from = line.rsplit_once(" from ").map(|(_, f)| f).unwrap_or(line);
                let path = from.trim_matches(|c| c == '\'' || c == '"' || c == ';' || c == ' ');
                let dir = a.name.rsplit_once('/').map_or("", |(d, _)| d);
                let joined = resolve(dir, path);
                assert!(
                    names.contains(&joined.as_str()),
                    "{} imports {path}",
                    a.name
                );
            }
        }
        assert_eq!(ETAGS.len(), ASSETS.len());
    }

    /// `path` relative to `dir` (`./x.js`, `../x.js`).
    fn resolve(dir: &str, path: &str) -> String {
        let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
        for p in path.split('/') {
            match p {
                "." => {}
                ".." => {
                    parts.pop();
                }
                p => parts.push(p),
            }
        }
        parts.join("/")
    }
}
