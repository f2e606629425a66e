//! HTTP Digest (RFC 2617, MD5, `qop=auth`) for GA/T 1400 registration: challenges
//! with fresh nonces, and responses checked against the caller's stored HA1.

use std::collections::HashMap;
use std::time::Instant;

use sightline_storage::{StorageError, Store};

use super::{md5_hex, Gateway, NONCE_TTL, REALM};

/// Why a digest was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DigestError {
    #[error("no digest credentials")]
    Missing,
    #[error("unknown or expired nonce")]
    StaleNonce,
    #[error("{0:?} has no GA/T 1400 credential for this user name")]
    UnknownUser(String),
    #[error("the digest response does not match")]
    WrongResponse,
    #[error("{0}")]
    Storage(#[from] StorageError),
}

/// The fields of an `Authorization: Digest …` header.
fn digest_fields(header: &str) -> Option<HashMap<String, String>> {
    let rest = header.trim().strip_prefix("Digest")?.trim();
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
                let inner = &after[1..];
                match inner.find(q) {
                    Some(end) => (
                        &inner[..end],
                        inner[end + 1..].trim_start().trim_start_matches(','),
                    ),
                    None => (inner, ""),
                }
            }
            None => match after.find(',') {
                Some(i) => (&after[..i], &after[i + 1..]),
                None => (after, ""),
            },
        };
        out.insert(key, value.trim().to_string());
        s = next.trim();
    }
    Some(out)
}

impl Gateway {
    /// A `WWW-Authenticate` challenge with a fresh nonce.
    pub(super) fn challenge(&self) -> String {
        let nonce = format!("{:032x}", rand::random::<u128>());
        let mut nonces = self.nonces.lock().expect("nonces");
        nonces.retain(|_, t| t.elapsed() < NONCE_TTL);
        nonces.insert(nonce.clone(), Instant::now());
        format!(
            "Digest realm=\"{REALM}\", qop=\"auth\", nonce=\"{nonce}\", opaque=\"{}\", algorithm=MD5",
            md5_hex(REALM)
        )
    }

    /// The caller's code if its digest response is right for a nonce we issued. The
    /// caller is `identity` (`User-Identify`, or the `RegisterObject`'s `DeviceID`) when
    /// given, else the digest's user name; its credential names the user name it must
    /// use. The hash is over the header's own `uri`, `nc` and `cnonce` strings, as
    /// clients compute it (full URLs, `nc=1` and quoted values are all seen).
    pub(crate) fn check_digest(
        &self,
        store: &Store,
        method: &str,
        authorization: Option<&str>,
        identity: Option<&str>,
    ) -> Result<String, DigestError> {
        let f = authorization
            .filter(|h| !h.trim().is_empty())
            .and_then(digest_fields)
            .ok_or(DigestError::Missing)?;
        let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
        let user = get("username");
        let code = identity.filter(|i| !i.is_empty()).unwrap_or(user);
        let fresh = self
            .nonces
            .lock()
            .expect("nonces")
            .get(get("nonce"))
            .is_some_and(|t| t.elapsed() < NONCE_TTL);
        if !fresh {
            return Err(DigestError::StaleNonce);
        }
        let cred = store
            .catalog()
            .gat1400_credential(code)?
            .filter(|c| c.username == user)
            .ok_or_else(|| DigestError::UnknownUser(code.to_string()))?;
        let ha2 = md5_hex(&format!("{method}:{}", get("uri")));
        let expected = match get("qop") {
            "" => md5_hex(&format!("{}:{}:{ha2}", cred.ha1, get("nonce"))),
            qop => md5_hex(&format!(
                "{}:{}:{}:{}:{qop}:{ha2}",
                cred.ha1,
                get("nonce"),
                get("nc"),
                get("cnonce")
            )),
        };
        if expected != get("response").to_ascii_lowercase() {
            return Err(DigestError::WrongResponse);
        }
        Ok(code.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
