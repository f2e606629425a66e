//! HTTP Digest (RFC 2617, RFC 7616: MD5 or SHA-256, `qop=auth` or none) for GA/T 1400
//! registration: challenges with fresh nonces, and responses checked against the
//! caller's stored HA1 — from the headers alone, before any of the body is read.

use std::collections::HashMap;

use sightline_storage::{StorageError, Store};

use super::nonces::Use;
use super::{md5_hex, Gateway, REALM};

/// Why a digest was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DigestError {
    #[error("no digest credentials")]
    Missing,
    #[error("unknown or expired nonce")]
    StaleNonce,
    #[error("this nonce and nc were answered before (a replay)")]
    Replayed,
    #[error("not registered: POST /VIID/System/Register first")]
    NotRegistered,
    #[error("{0:?} has no GA/T 1400 credential for this user name")]
    UnknownUser(String),
    #[error("the digest response does not match")]
    WrongResponse,
    /// RFC 7616 §3.4.6: the digest's `uri` must name the request's own target (its
    /// path and query), or a captured answer could be replayed against another
    /// resource; answered 400 (RFC 2617 §3.2.2.5).
    #[error("the digest's uri {0:?} is not this request's target")]
    OtherUri(String),
    /// The header is not a digest this server can judge (RFC 7616 §3.4: `nc` and
    /// `cnonce` come with `qop`); answered 400.
    #[error("malformed digest credentials: {0}")]
    Malformed(&'static str),
    /// The digest answers another realm's challenge.
    #[error("the digest's realm {0:?} is not the realm challenged")]
    OtherRealm(String),
    #[error("unsupported digest algorithm (MD5, MD5-sess, SHA-256 and SHA-256-sess are)")]
    Algorithm,
    /// RFC 7616 §3.4: the client's `qop` must be one the challenge offered, and ours
    /// offer only `auth` (or none, RFC 2069). `auth-int` is not offered: it could only
    /// be judged after reading the body of a caller not yet known. Answered 401 with a
    /// fresh challenge, as a wrong response is.
    #[error("qop {0:?} was not offered: answer with qop=auth")]
    Qop(String),
    #[error("{0}")]
    Storage(#[from] StorageError),
    /// The credentials could not be read (the cluster's PostgreSQL).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    #[error("{0}")]
    Unavailable(String),
}

/// Where a gateway finds the credential of a code: `serve`'s catalog, or the
/// cluster's `gat1400_credentials` table as an ingest node last read it.
pub(crate) trait Credentials {
    fn credential(
        &self,
        code: &str,
    ) -> Result<Option<sightline_storage::Gat1400Credential>, DigestError>;

    /// The code whose user name hashes to `userhash` (RFC 7616 §3.4.4,
    /// `H(username:realm)` in MD5 or SHA-256, lower-case hex), from hashes computed
    /// when the credentials were read ([`UserHashes`]): a map lookup, never a scan.
    fn code_of_userhash(&self, _userhash: &str) -> Result<Option<String>, DigestError> {
        Ok(None)
    }
}

impl Credentials for Store {
    fn credential(
        &self,
        code: &str,
    ) -> Result<Option<sightline_storage::Gat1400Credential>, DigestError> {
        Ok(self.catalog().gat1400_credential(code)?)
    }
}

/// The user-name hashes of a set of credentials (RFC 7616 §3.4.4): `H(username:realm)`
/// in MD5 and in SHA-256, each → its code. One entry per credential and hash, so as
/// bounded as the credentials are.
/// A hash several credentials share (cameras often all log in as `admin`) names none:
/// such a device must say who it is (`User-Identify`, `DeviceID`).
#[derive(Default)]
pub(crate) struct UserHashes(HashMap<String, Option<String>>);

impl UserHashes {
    pub(crate) fn of<'a>(
        credentials: impl IntoIterator<Item = &'a sightline_storage::Gat1400Credential>,
    ) -> UserHashes {
        let mut map: HashMap<String, Option<String>> = HashMap::new();
        for c in credentials {
            let name = format!("{}:{}", c.username, c.realm);
            for hash in [md5_hex(&name), super::sha256_hex(&name)] {
                map.entry(hash)
                    .and_modify(|code| {
                        if code.as_deref() != Some(c.code.as_str()) {
                            *code = None;
                        }
                    })
                    .or_insert_with(|| Some(c.code.clone()));
            }
        }
        UserHashes(map)
    }

    pub(crate) fn code(&self, userhash: &str) -> Option<String> {
        self.0
            .get(&userhash.trim().to_ascii_lowercase())
            .cloned()
            .flatten()
    }
}

/// `serve`'s catalog with the user-name hashes of its credentials, as the gateway keeps
/// them (read once, again after a credential changes: [`Gateway::forget_userhashes`]).
pub(crate) struct Catalogued<'a> {
    store: &'a Store,
    gateway: &'a Gateway,
}

impl Credentials for Catalogued<'_> {
    fn credential(
        &self,
        code: &str,
    ) -> Result<Option<sightline_storage::Gat1400Credential>, DigestError> {
        self.store.credential(code)
    }

    fn code_of_userhash(&self, userhash: &str) -> Result<Option<String>, DigestError> {
        let mut cached = self.gateway.userhashes.lock().expect("userhashes");
        if cached.is_none() {
            let all = self.store.catalog().gat1400_credentials()?;
            *cached = Some(UserHashes::of(&all));
        }
        Ok(cached.as_ref().and_then(|h| h.code(userhash)))
    }
}

/// The fields of an `Authorization: Digest …` header (or a `WWW-Authenticate` digest
/// challenge). The scheme is matched without regard to case and must be followed by
/// whitespace (RFC 9110 §11.1, RFC 7235 §2.1); names are lower-cased; quoted values
/// have their quoted-pairs (`\"`) unescaped (RFC 9110 §5.6.4). `username*` (RFC 7616
/// §3.4.4, an RFC 8187 `UTF-8''…` value) is decoded into `username`.
pub(super) fn digest_fields(header: &str) -> Option<HashMap<String, String>> {
    let header = header.trim();
    let scheme_end = header
        .find(|c: char| c.is_ascii_whitespace())
        .unwrap_or(header.len());
    if !header[..scheme_end].eq_ignore_ascii_case("digest") {
        return None;
    }
    let rest = header[scheme_end..].trim();
    let mut out = HashMap::new();
    let mut s = rest;
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'');
        let (value, next) = match quote {
            // Quoted (double, or single as some servers write); an unterminated last
            // quote (seen from a client) runs to the end.
            Some(q) => {
                let (value, used) = unquote(&after[1..], q);
                let next = after[1 + used..].trim_start().trim_start_matches(',');
                (value, next)
            }
            None => match after.find(',') {
                Some(i) => (after[..i].to_string(), &after[i + 1..]),
                None => (after.to_string(), ""),
            },
        };
        out.insert(key, value.trim().to_string());
        s = next.trim();
    }
    if let Some(ext) = out.remove("username*") {
        // RFC 7616 §3.4.4: `username` and `username*` together are an error.
        if out.contains_key("username") {
            return None;
        }
        out.insert("username".into(), ext_value(&ext)?);
    }
    Some(out)
}

/// The text of a quoted string whose opening `quote` is already consumed: quoted-pairs
/// unescaped; and how many bytes of `s` it took (its closing quote included, or all of
/// `s` when it is not closed).
fn unquote(s: &str, quote: char) -> (String, usize) {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => out.push(escaped),
                None => return (out, s.len()),
            },
            c if c == quote => return (out, i + c.len_utf8()),
            c => out.push(c),
        }
    }
    (out, s.len())
}

/// An RFC 8187 `ext-value` (`UTF-8'lang'percent-encoded`) as text; `None` for another
/// charset or bytes that are not UTF-8.
fn ext_value(v: &str) -> Option<String> {
    let mut parts = v.splitn(3, '\'');
    let (charset, _language, encoded) = (parts.next()?, parts.next()?, parts.next()?);
    if !charset.eq_ignore_ascii_case("utf-8") {
        return None;
    }
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The digest's hash: MD5 (RFC 2617) or SHA-256 (RFC 7616), each with its `-sess`
/// form.
#[derive(Clone, Copy, Debug)]
pub(super) struct Hash {
    pub sha256: bool,
    pub session: bool,
}

impl Hash {
    pub(super) fn of(algorithm: &str) -> Option<Hash> {
        let a = algorithm.to_ascii_uppercase();
        let (name, session) = match a.strip_suffix("-SESS") {
            Some(n) => (n.to_string(), true),
            None => (a, false),
        };
        match name.as_str() {
            "" | "MD5" => Some(Hash {
                sha256: false,
                session,
            }),
            "SHA-256" => Some(Hash {
                sha256: true,
                session,
            }),
            _ => None,
        }
    }

    pub(super) fn hex(self, text: &str) -> String {
        match self.sha256 {
            true => super::sha256_hex(text),
            false => md5_hex(text),
        }
    }
}

/// The response a client holding the credential's password computes (RFC 7616 §3.4.1;
/// RFC 2617 without `qop`).
fn expected_response(
    cred: &sightline_storage::Gat1400Credential,
    hash: Hash,
    method: &str,
    f: &HashMap<String, String>,
) -> Result<String, DigestError> {
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let stored = match hash.sha256 {
        true => cred.ha1_sha256.as_str(),
        false => cred.ha1.as_str(),
    };
    if stored.is_empty() {
        // A credential kept without this algorithm's HA1: told as a wrong answer is
        // (an unknown user's answer is told so too), the reason logged.
        tracing::info!(
            "a GA/T 1400 digest in an algorithm this credential has no HA1 for (made before SHA-256 was kept?)"
        );
        return Err(DigestError::WrongResponse);
    }
    let (nonce, cnonce) = (get("nonce"), get("cnonce"));
    let ha1 = match hash.session {
        true => hash.hex(&format!("{stored}:{nonce}:{cnonce}")),
        false => stored.to_string(),
    };
    // `qop` is `auth` or none here (`check_digest` refuses any other): A2 is the
    // method and `uri` alone.
    let qop = get("qop");
    let ha2 = hash.hex(&format!("{method}:{}", get("uri")));
    Ok(match qop {
        "" => hash.hex(&format!("{ha1}:{nonce}:{ha2}")),
        qop => hash.hex(&format!("{ha1}:{nonce}:{}:{cnonce}:{qop}:{ha2}", get("nc"))),
    })
}

/// The target a digest's `uri` names: as sent (`/VIID/System/Register?x=1`), or of a
/// full URL (`http://host:port/VIID/…`, as some clients write it) its path and query;
/// without a fragment.
fn uri_target(uri: &str) -> String {
    // Only a `uri` not starting with `/` is a full URL: `/VIID/x?cb=http://h/VIID/y`
    // names `/VIID/x`, not `/VIID/y`.
    let full = match uri.starts_with('/') {
        true => None,
        false => uri.split_once("://"),
    };
    let target = match full {
        Some((_, rest)) => match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => rest[i..].to_string(),
            Some(i) => format!("/{}", &rest[i..]),
            None => "/".to_string(),
        },
        None => uri.to_string(),
    };
    match target.find('#') {
        Some(i) => target[..i].to_string(),
        None => target,
    }
}

/// Whether a digest's `uri` names `target` (a request's path, with `?query` when it
/// has one; RFC 7616 §3.4.6): the same path and query, the absolute form included.
fn names_target(uri: &str, target: &str) -> bool {
    // Compared as the request is routed: `/VIID/%46aces/` names `/VIID/Faces`; and, in
    // the path and the query alike, `%e8` is `%E8` and `%4D` is `M` (RFC 3986
    // §6.2.2.1–2).
    let normal = |t: &str| super::paths::canonical_target(&normal_escapes(t)).into_owned();
    normal(&uri_target(uri)) == normal(target)
}

/// `s` with its escapes normalised (RFC 3986 §6.2.2.1–2): an escaped unreserved
/// character decoded, any other escape's hex digits in upper case.
fn normal_escapes(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                let c = (h * 16 + l) as u8;
                if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                    out.push(c as char);
                } else {
                    out.push('%');
                    out.push(bytes[i + 1].to_ascii_uppercase() as char);
                    out.push(bytes[i + 2].to_ascii_uppercase() as char);
                }
                i += 3;
                continue;
            }
        }
        // Copied a character at a time (the text may hold UTF-8).
        let ch = s[i..]
            .chars()
            .next()
            .expect("a character at a char boundary");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The nonce a digest header answers and its counter (`nc`, hex; 1 without `qop`, as
/// [`super::nonces::Nonces::answer`] counts it), to record its use beyond this process.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(crate) fn answered_nonce(authorization: &str) -> Option<(String, u64)> {
    let f = digest_fields(authorization)?;
    let nonce = f.get("nonce")?.clone();
    let nc = super::nonces::counter(f.get("nc").map(String::as_str).unwrap_or(""))?;
    Some((nonce, nc))
}

impl Gateway {
    /// `store`'s credentials with the user-name hashes this gateway keeps of them.
    pub(crate) fn in_store<'a>(&'a self, store: &'a Store) -> Catalogued<'a> {
        Catalogued {
            store,
            gateway: self,
        }
    }

    /// Forgets the user-name hashes (a credential was put): read again when next asked.
    pub(crate) fn forget_userhashes(&self) {
        *self.userhashes.lock().expect("userhashes") = None;
    }

    /// The `WWW-Authenticate` challenges, one header each, with one fresh nonce (RFC
    /// 7616 §3.7: a challenge per algorithm, the preferred first … except here): MD5
    /// **first**, as it always was, because many cameras read only the first
    /// `WWW-Authenticate` header and know only MD5; then SHA-256 for clients that pick
    /// the strongest. Both `qop="auth"`, the same realm and opaque. The SHA-256 one
    /// also says `charset=UTF-8` (RFC 7616 §3.3: user names and passwords are hashed
    /// as UTF-8, which is how every credential is stored) and `userhash=true` (§3.4.4:
    /// a hashed user name is found by its hash, [`Credentials::code_of_userhash`]);
    /// the MD5 one is left as old firmware knows it.
    pub(crate) fn challenge(&self, stale: bool) -> Vec<String> {
        let nonce = self.nonces.lock().expect("nonces").issue();
        let stale = if stale { ", stale=true" } else { "" };
        let opaque = md5_hex(REALM);
        vec![
            format!(
                "Digest realm=\"{REALM}\", qop=\"auth\", nonce=\"{nonce}\", opaque=\"{opaque}\", algorithm=MD5{stale}"
            ),
            format!(
                "Digest realm=\"{REALM}\", qop=\"auth\", nonce=\"{nonce}\", opaque=\"{opaque}\", algorithm=SHA-256, charset=UTF-8, userhash=true{stale}"
            ),
        ]
    }

    /// The caller's code if its digest response is right for a nonce we issued. The
    /// caller is `identity` (`User-Identify`, or the `RegisterObject`'s `DeviceID`) when
    /// given, else the digest's user name; its credential names the user name it must
    /// use. The hash is over the header's own `uri`, `nc` and `cnonce` strings, as
    /// clients compute it (full URLs, `nc=1` and quoted values are all seen). `target`
    /// is the request's path, with `?query` when it has one. Only the headers are
    /// judged (`qop=auth` or none; `auth-int` is refused): `_body` is not read.
    pub(crate) fn check_digest(
        &self,
        credentials: &dyn Credentials,
        method: &str,
        target: &str,
        authorization: Option<&str>,
        identity: Option<&str>,
        _body: &[u8],
    ) -> Result<String, DigestError> {
        let f = authorization
            .filter(|h| !h.trim().is_empty())
            .and_then(digest_fields)
            .ok_or(DigestError::Missing)?;
        let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
        // RFC 7616 §3.4: with `qop`, the client's nonce and its count are required.
        if !get("qop").is_empty() && (get("nc").is_empty() || get("cnonce").is_empty()) {
            return Err(DigestError::Malformed("qop without nc and cnonce"));
        }
        // RFC 7616 §3.4: `nc` is 8 hex digits (`1` is seen too); anything else is a
        // malformed header (400), not a replay.
        if super::nonces::counter(get("nc")).is_none() {
            return Err(DigestError::Malformed("nc is not 1 to 8 hex digits"));
        }
        // RFC 7616 §3.4: the `qop` must be one the challenge offered — `auth` — or none
        // (RFC 2069). Any other (`auth-int`, `auth-conf`, an unknown token) is refused
        // before anything is hashed, and so before any of the body is read.
        let qop = get("qop");
        if !qop.is_empty() && !qop.eq_ignore_ascii_case("auth") {
            // Told back and logged: at most 32 characters of whatever the client sent.
            return Err(DigestError::Qop(qop.chars().take(32).collect()));
        }
        if f.get("realm").is_some_and(|r| r != REALM) {
            return Err(DigestError::OtherRealm(get("realm").to_string()));
        }
        // Judged once the response is known right and its nonce live: a live answer
        // for another target is a bad request (400, RFC 7616 §3.4.6), while an old
        // digest a device re-sends after its registration was lost (a restart) is
        // answered with a fresh challenge, as any other refusal, so it registers again.
        let other_uri = !names_target(get("uri"), target);
        let user = get("username");
        let userhash = get("userhash").eq_ignore_ascii_case("true");
        // RFC 7616 §3.4.4: a hashed user name that nothing else names is looked up by
        // its hash.
        let hashed_code = match (identity.filter(|i| !i.is_empty()), userhash) {
            (None, true) => credentials.code_of_userhash(user)?,
            _ => None,
        };
        let code = identity
            .filter(|i| !i.is_empty())
            .or(hashed_code.as_deref())
            .unwrap_or(user);
        // The algorithm judged before the credential is looked up: what is told of an
        // unknown algorithm must not depend on whether the code has a credential.
        let hash = Hash::of(get("algorithm")).ok_or(DigestError::Algorithm)?;
        let cred = credentials
            .credential(code)?
            .ok_or_else(|| DigestError::UnknownUser(code.to_string()))?;
        // RFC 7616 `userhash=true`: the user name is H(username:realm).
        let named = match userhash {
            true => {
                hash.hex(&format!("{}:{}", cred.username, cred.realm)) == user.to_ascii_lowercase()
            }
            false => cred.username == user,
        };
        if !named {
            return Err(DigestError::UnknownUser(code.to_string()));
        }
        let expected = expected_response(&cred, hash, method, &f)?;
        // Compared whole (constant time), not up to the first wrong digit.
        let response = get("response").to_ascii_lowercase();
        if !super::nonces::same_bytes(expected.as_bytes(), response.as_bytes()) {
            return Err(DigestError::WrongResponse);
        }
        // Checked after the response, so a stale nonce with a right response is told
        // apart (RFC 7616 `stale=true`: the client retries without asking anyone).
        let mut nonces = self.nonces.lock().expect("nonces");
        if other_uri {
            // Not recorded as used: the answer stays good for the target it names.
            return Err(match nonces.is_live(get("nonce")) {
                true => DigestError::OtherUri(get("uri").to_string()),
                false => DigestError::StaleNonce,
            });
        }
        match nonces.answer(get("nonce"), get("nc")) {
            Use::Fresh => {}
            Use::Stale => return Err(DigestError::StaleNonce),
            Use::Replayed => return Err(DigestError::Replayed),
            Use::Malformed => return Err(DigestError::Malformed("nc is not 1 to 8 hex digits")),
        }
        Ok(code.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Credentials holding one credential, whoever is asked for.
    struct One(sightline_storage::Gat1400Credential);

    impl Credentials for One {
        fn credential(
            &self,
            _: &str,
        ) -> Result<Option<sightline_storage::Gat1400Credential>, DigestError> {
            Ok(Some(self.0.clone()))
        }
    }

    /// The nonce of a challenge `gateway` issues now.
    fn fresh_nonce(gateway: &Gateway) -> String {
        sightline_testkit::gat1400::nonce_in(&gateway.challenge(false).remove(0))
    }

    #[test]
    fn a_user_name_hash_several_credentials_share_names_none() {
        let cred = |code: &str, username: &str| sightline_storage::Gat1400Credential {
            code: code.into(),
            realm: "Sightline".into(),
            ha1: String::new(),
            username: username.into(),
            ha1_sha256: String::new(),
        };
        let all = [
            cred("32050800001320000001", "admin"),
            cred("32050800001320000002", "admin"),
            cred("32050800001320000003", "gate3"),
        ];
        let hashes = UserHashes::of(&all);
        let admin = md5_hex("admin:Sightline");
        assert_eq!(hashes.code(&admin), None, "two cameras log in as admin");
        let sha = super::super::sha256_hex("admin:Sightline");
        assert_eq!(hashes.code(&sha), None);
        let gate3 = md5_hex("gate3:Sightline");
        assert_eq!(
            hashes.code(&gate3.to_ascii_uppercase()).as_deref(),
            Some("32050800001320000003")
        );
    }

    /// RFC 7616 §3.9.1's example, in MD5 and in SHA-256.
    #[test]
    fn responses_match_rfc_7616s_example() {
        let (user, realm, password) = ("Mufasa", "http-auth@example.org", "Circle of Life");
        let cred = sightline_storage::Gat1400Credential {
            code: "x".into(),
            realm: realm.into(),
            ha1: md5_hex(&format!("{user}:{realm}:{password}")),
            username: user.into(),
            ha1_sha256: super::super::sha256_hex(&format!("{user}:{realm}:{password}")),
        };
        let mut f: HashMap<String, String> = [
            ("nonce", "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"),
            ("cnonce", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"),
            ("nc", "00000001"),
            ("qop", "auth"),
            ("uri", "/dir/index.html"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let md5 = Hash::of("MD5").unwrap();
        assert_eq!(
            expected_response(&cred, md5, "GET", &f).unwrap(),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
        let sha = Hash::of("SHA-256").unwrap();
        assert_eq!(
            expected_response(&cred, sha, "GET", &f).unwrap(),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        // -sess, computed the long way.
        let sess = Hash::of("MD5-sess").unwrap();
        let ha1 = md5_hex(&format!("{}:{}:{}", cred.ha1, f["nonce"], f["cnonce"]));
        let ha2 = md5_hex(&format!("GET:{}", f["uri"]));
        assert_eq!(
            expected_response(&cred, sess, "GET", &f).unwrap(),
            md5_hex(&format!(
                "{ha1}:{}:00000001:{}:auth:{ha2}",
                f["nonce"], f["cnonce"]
            ))
        );
        // RFC 2069: no qop.
        f.remove("qop");
        assert_eq!(
            expected_response(&cred, md5, "GET", &f).unwrap(),
            md5_hex(&format!(
                "{}:{}:{}",
                cred.ha1,
                f["nonce"],
                md5_hex(&format!("GET:{}", f["uri"]))
            ))
        );
        assert!(Hash::of("SHA-512-256").is_none());
    }

    #[test]
    fn a_digest_uri_names_the_request_target_with_its_query() {
        assert!(names_target(
            "/VIID/System/Register",
            "/VIID/System/Register"
        ));
        assert!(names_target(
            "http://h:1/VIID/System/Register",
            "/VIID/System/Register"
        ));
        // RFC 7616 §3.4.6: the request-target, query included.
        assert!(names_target("/VIID/Faces?x=1", "/VIID/Faces?x=1"));
        assert!(!names_target("/VIID/Faces", "/VIID/Faces?x=1"));
        assert!(!names_target("/VIID/Faces?x=1", "/VIID/Faces"));
        assert!(names_target("http://h:1/VIID/Faces?x=1", "/VIID/Faces?x=1"));
        // Escapes compared normalised (RFC 3986 §6.2.2.1–2), in the query too; other
        // characters not.
        let plate = "/VIID/MotorVehicles?MotorVehicle.PlateNo=%E8%8B%8FE12341";
        assert!(names_target(
            "/VIID/MotorVehicles?MotorVehicle.PlateNo=%e8%8b%8fE12341",
            plate
        ));
        assert!(names_target(
            "/VIID/MotorVehicles?%4DotorVehicle.PlateNo=%E8%8B%8FE12341",
            plate
        ));
        assert!(!names_target(
            "/VIID/MotorVehicles?MotorVehicle.PlateNo=%E8%8B%8FE12342",
            plate
        ));
        assert!(!names_target("/VIID/Faces?x=%2F", "/VIID/Faces?x=/"));
        assert_eq!(normal_escapes("%zz%4d%e8苏%"), "%zzM%E8苏%");
        assert_eq!(uri_target("http://h:1"), "/");
        assert_eq!(uri_target("http://h:1?a"), "/?a");
        let a = "Digest nonce=\"n1\", nc=0000000a, qop=auth";
        assert_eq!(answered_nonce(a), Some(("n1".to_string(), 10)));
        assert_eq!(
            answered_nonce("Digest nonce=\"n2\""),
            Some(("n2".to_string(), 1))
        );
    }

    /// A captured Register answered again against another route (or the same answer
    /// with its `uri` pointing elsewhere) is refused: the `uri` must be the path.
    #[test]
    fn a_digest_for_another_path_is_refused() {
        let cred = super::super::credential("32050801011210000001", "cam", "pw");
        let gateway = Gateway::default();
        let answer = |uri: &str| {
            let nonce = fresh_nonce(&gateway);
            let ha2 = md5_hex(&format!("POST:{uri}"));
            let response = md5_hex(&format!("{}:{nonce}:00000001:c:auth:{ha2}", cred.ha1));
            format!(
                "Digest username=\"cam\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", \
                 qop=auth, nc=00000001, cnonce=\"c\", response=\"{response}\""
            )
        };
        let creds = One(cred.clone());
        let check =
            |path: &str, h: &str| gateway.check_digest(&creds, "POST", path, Some(h), None, b"");
        let register = answer("/VIID/System/Register");
        assert!(matches!(
            check("/VIID/Faces", &register),
            Err(DigestError::OtherUri(_))
        ));
        assert_eq!(check("/VIID/System/Register", &register).unwrap(), "cam");
        // The same digest re-sent on an upload once its nonce is gone (a device whose
        // registration a restart lost): a fresh challenge (stale), not a 400.
        let forgotten = Gateway::default();
        let check_forgotten =
            |path: &str, h: &str| forgotten.check_digest(&creds, "POST", path, Some(h), None, b"");
        assert!(matches!(
            check_forgotten("/VIID/Faces", &register),
            Err(DigestError::StaleNonce)
        ));
        // A `uri` with a full URL in its query names its own path.
        assert_eq!(
            uri_target("/VIID/x?cb=http://h/VIID/Faces"),
            "/VIID/x?cb=http://h/VIID/Faces"
        );
        assert_eq!(uri_target("http://h:80/VIID/Faces?a=1"), "/VIID/Faces?a=1");
        let full = answer("http://10.0.0.1:80/VIID/Faces");
        assert_eq!(check("/VIID/Faces", &full).unwrap(), "cam");
    }

    #[test]
    fn digest_headers_parse_with_and_without_quotes() {
        let f = digest_fields(
            "Digest username=\"32050801011210000001\", realm=\"Sightline\", nonce=\"abc\", \
             uri=\"/VIID/System/Register\", qop=auth, nc=00000001, cnonce=\"x,y\", response=\"9f\"",
        )
        .unwrap();
        assert_eq!(f["username"], "32050801011210000001");
        assert_eq!(f["qop"], "auth");
        assert_eq!(f["nc"], "00000001");
        assert_eq!(f["cnonce"], "x,y");
        assert_eq!(f["response"], "9f");
        assert!(digest_fields("Basic abc").is_none());
        // As clients write it: no spaces, quoted qop and nc, an unterminated last quote
        // (tsingeye/EnjoyVIID's DigestUtils), single quotes.
        let f = digest_fields(
            "Digest username=\"admin\",realm=\"r\",nonce=\"n\",uri=\"http://h:1/VIID/System/Register\",qop=\"auth\",nc=\"00000001\",cnonce=\"c\",response=\"9f\",opaque=\"null",
        )
        .unwrap();
        assert_eq!(f["username"], "admin");
        assert_eq!(f["uri"], "http://h:1/VIID/System/Register");
        assert_eq!(f["qop"], "auth");
        assert_eq!(f["opaque"], "null");
        let f = digest_fields("Digest realm='myrealm',qop='auth',nonce='abc'").unwrap();
        assert_eq!(
            (f["realm"].as_str(), f["nonce"].as_str()),
            ("myrealm", "abc")
        );
    }

    /// RFC 9110 §11.1: the scheme is case-insensitive and whitespace follows it.
    #[test]
    fn the_digest_scheme_is_matched_without_case_and_needs_whitespace() {
        for h in [
            "digest nonce=\"n\"",
            "DIGEST nonce=\"n\"",
            "DiGeSt\tnonce=\"n\"",
        ] {
            assert_eq!(digest_fields(h).unwrap()["nonce"], "n", "{h}");
        }
        assert!(digest_fields("Digestnonce=\"n\"").is_none());
        assert!(digest_fields("Digestusername=\"u\"").is_none());
        assert!(digest_fields("Digest").is_some());
    }

    /// RFC 9110 §5.6.4 quoted-pairs; RFC 7616 §3.4.4 `username*` (RFC 8187).
    #[test]
    fn quoted_pairs_unescape_and_username_star_decodes() {
        let f = digest_fields(r#"Digest username="a\"b\\c", realm="r\,s", nonce="n""#).unwrap();
        assert_eq!(f["username"], r#"a"b\c"#);
        assert_eq!(f["realm"], "r,s");
        assert_eq!(f["nonce"], "n");
        let f =
            digest_fields("Digest username*=UTF-8''J%C3%A4s%C3%B8n%20Doe, nonce=\"n\"").unwrap();
        assert_eq!(f["username"], "Jäsøn Doe");
        assert!(digest_fields("Digest username=\"a\", username*=UTF-8''b").is_none());
        assert!(digest_fields("Digest username*=ISO-8859-1''%E4").is_none());
    }

    /// `qop` without `nc`/`cnonce`, another realm, a `uri` without the query: refused.
    #[test]
    fn digests_missing_nc_of_another_realm_or_without_the_query_are_refused() {
        let cred = super::super::credential("32050801011210000001", "cam", "pw");
        let creds = One(cred.clone());
        let gateway = Gateway::default();
        let header = |uri: &str, realm: &str, extra: &str| {
            let nonce = fresh_nonce(&gateway);
            let ha2 = md5_hex(&format!("GET:{uri}"));
            let response = md5_hex(&format!("{}:{nonce}:00000001:c:auth:{ha2}", cred.ha1));
            format!(
                "Digest username=\"cam\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
                 qop=auth{extra}, response=\"{response}\""
            )
        };
        let check =
            |target: &str, h: &str| gateway.check_digest(&creds, "GET", target, Some(h), None, b"");
        let good = ", nc=00000001, cnonce=\"c\"";
        assert!(matches!(
            check("/VIID/APEs", &header("/VIID/APEs", REALM, "")),
            Err(DigestError::Malformed(_))
        ));
        assert!(matches!(
            check("/VIID/APEs", &header("/VIID/APEs", "Other", good)),
            Err(DigestError::OtherRealm(_))
        ));
        assert!(matches!(
            check("/VIID/APEs?a=1", &header("/VIID/APEs", REALM, good)),
            Err(DigestError::OtherUri(_))
        ));
        assert_eq!(
            check("/VIID/APEs?a=1", &header("/VIID/APEs?a=1", REALM, good)).unwrap(),
            "cam"
        );
    }

    /// RFC 7616 §3.4: the client's `qop` must be one the challenge offered (`auth`), or
    /// none. A response computed right for `auth-int` (over the body), `auth-conf` or
    /// an unknown token is refused before any body is looked at; an `nc` that is not 1
    /// to 8 hex digits is a malformed header (400), not a replay (401 stale).
    #[test]
    fn only_qop_auth_or_none_is_taken_and_a_malformed_nc_is_malformed() {
        let cred = super::super::credential("32050801011210000001", "cam", "pw");
        let creds = One(cred.clone());
        let gateway = Gateway::default();
        let uri = "/VIID/System/Register";
        let body = br#"{"RegisterObject":{"DeviceID":"32050801011210000001"}}"#;
        // A header answering a fresh challenge with `qop` (hashed as sent) and `nc`.
        let header = |qop: &str, nc: &str| {
            let nonce = fresh_nonce(&gateway);
            let ha2 = match qop {
                "auth-int" => md5_hex(&format!("POST:{uri}:{}", super::super::md5_bytes_hex(body))),
                _ => md5_hex(&format!("POST:{uri}")),
            };
            let response = match qop {
                "" => md5_hex(&format!("{}:{nonce}:{ha2}", cred.ha1)),
                qop => md5_hex(&format!("{}:{nonce}:{nc}:c:{qop}:{ha2}", cred.ha1)),
            };
            let qop = match qop {
                "" => String::new(),
                qop => format!(", qop={qop}, nc={nc}, cnonce=\"c\""),
            };
            format!(
                "Digest username=\"cam\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\"\
                 {qop}, response=\"{response}\""
            )
        };
        let check = |h: &str| gateway.check_digest(&creds, "POST", uri, Some(h), None, body);
        for qop in ["auth-int", "AUTH-INT", "auth-conf", "foo"] {
            match check(&header(qop, "00000001")) {
                Err(DigestError::Qop(said)) => assert_eq!(said, qop),
                other => panic!("{qop}: {other:?}"),
            }
        }
        // A long one is told back (and logged) cut to 32 characters.
        let long = "x".repeat(300_000);
        match check(&header(&long, "00000001")) {
            Err(DigestError::Qop(said)) => assert_eq!(said, long[..32]),
            other => panic!("{other:?}"),
        }
        assert_eq!(check(&header("auth", "00000001")).unwrap(), "cam");
        assert_eq!(check(&header("", "")).unwrap(), "cam", "RFC 2069");
        for nc in ["xyz", "000000001", "ffffffffffffffff", "-1"] {
            match check(&header("auth", nc)) {
                Err(DigestError::Malformed(why)) => assert!(why.contains("nc"), "{why}"),
                other => panic!("{nc}: {other:?}"),
            }
        }
        assert_eq!(check(&header("auth", "1")).unwrap(), "cam", "nc=1 as seen");
        // A wrong response, whatever digit is wrong, is a wrong response.
        let good = header("auth", "00000001");
        let at = good.find("response=\"").unwrap() + "response=\"".len();
        for i in [0, 31] {
            let mut bad = good.clone().into_bytes();
            bad[at + i] = if bad[at + i] == b'0' { b'1' } else { b'0' };
            let bad = String::from_utf8(bad).unwrap();
            assert!(
                matches!(check(&bad), Err(DigestError::WrongResponse)),
                "{bad}"
            );
        }
    }
}
