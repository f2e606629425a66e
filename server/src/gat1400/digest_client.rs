//! HTTP Digest, the client's side (RFC 7616, RFC 2617): what this server answers an
//! upstream 视图库's `401 WWW-Authenticate: Digest …` with when it registers there.
//!
//! MD5 and SHA-256 (each with `-sess`), `qop=auth` when offered, else `qop=auth-int`
//! (the body's hash in `A2`) when only that is, else RFC 2069's form; a fresh `cnonce`
//! per answer. A nonce is reused with a growing `nc` until the
//! upstream refuses it; then the new challenge is answered from `nc=1`.

use super::digest::{digest_fields, Hash};

/// One challenge from the upstream, and how many times its nonce has been answered.
#[derive(Clone, Debug)]
pub(crate) struct Challenge {
    realm: String,
    nonce: String,
    opaque: Option<String>,
    /// The algorithm's name as the upstream spelled it (echoed back).
    algorithm: Option<String>,
    hash: Hash,
    /// `auth` offered: answered with `qop=auth`, `nc` and `cnonce`.
    qop_auth: bool,
    /// Only `auth-int` offered: answered with `qop=auth-int` (RFC 7616 §3.4.3).
    qop_auth_int: bool,
    nc: u32,
}

impl Challenge {
    /// The strongest digest challenge among `WWW-Authenticate` header values (SHA-256
    /// before MD5, RFC 7616 §3.7); `None` when none is a digest this client answers.
    pub fn pick<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
        headers
            .into_iter()
            .filter_map(Challenge::parse)
            .max_by_key(|c| c.hash.sha256)
    }

    fn parse(header: &str) -> Option<Challenge> {
        let f = digest_fields(header)?;
        let get = |k: &str| f.get(k).filter(|v| !v.is_empty()).cloned();
        let algorithm = get("algorithm");
        let hash = Hash::of(algorithm.as_deref().unwrap_or(""))?;
        let offers = |name: &str| {
            get("qop").is_some_and(|q| q.split(',').any(|o| o.trim().eq_ignore_ascii_case(name)))
        };
        let qop_auth = offers("auth");
        let qop_auth_int = !qop_auth && offers("auth-int");
        Some(Challenge {
            realm: get("realm").unwrap_or_default(),
            nonce: get("nonce")?,
            opaque: get("opaque"),
            algorithm,
            hash,
            qop_auth,
            qop_auth_int,
            nc: 0,
        })
    }

    /// The `Authorization` header for the next request (`method` to `uri` with
    /// `body`), counting this answer (`nc`) with a fresh client nonce.
    pub fn answer(
        &mut self,
        username: &str,
        password: &str,
        method: &str,
        uri: &str,
        body: &[u8],
    ) -> String {
        self.nc += 1;
        let cnonce = format!("{:016x}", rand::random::<u64>());
        self.answer_with(username, password, (method, uri, body), &cnonce)
    }

    fn answer_with(
        &self,
        username: &str,
        password: &str,
        (method, uri, body): (&str, &str, &[u8]),
        cnonce: &str,
    ) -> String {
        let h = self.hash;
        let (realm, nonce) = (&self.realm, &self.nonce);
        let mut ha1 = h.hex(&format!("{username}:{realm}:{password}"));
        if h.session {
            ha1 = h.hex(&format!("{ha1}:{nonce}:{cnonce}"));
        }
        let qop = match (self.qop_auth, self.qop_auth_int) {
            (true, _) => Some("auth"),
            (false, true) => Some("auth-int"),
            (false, false) => None,
        };
        let ha2 = match qop {
            Some("auth-int") => {
                let body_hash = match h.sha256 {
                    true => crate::auth::sha256_hex(body),
                    false => super::md5_bytes_hex(body),
                };
                h.hex(&format!("{method}:{uri}:{body_hash}"))
            }
            _ => h.hex(&format!("{method}:{uri}")),
        };
        let nc = format!("{:08x}", self.nc);
        // Quoted strings carry `"` and `\` escaped (RFC 9110 §5.6.4): the challenge's
        // values were unescaped when read, and are hashed as such.
        let q = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
        let mut out = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\"",
            q(username),
            q(realm),
            q(nonce),
            q(uri)
        );
        let response = match qop {
            Some(qop) => {
                out.push_str(&format!(", qop={qop}, nc={nc}, cnonce=\"{cnonce}\""));
                h.hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"))
            }
            None => h.hex(&format!("{ha1}:{nonce}:{ha2}")),
        };
        out.push_str(&format!(", response=\"{response}\""));
        if let Some(a) = &self.algorithm {
            out.push_str(&format!(", algorithm={a}"));
        }
        if let Some(o) = &self.opaque {
            out.push_str(&format!(", opaque=\"{}\"", q(o)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7616 §3.9.1: the same challenge answered in MD5 and in SHA-256 gives the
    /// RFC's responses.
    #[test]
    fn answers_match_rfc_7616s_example() {
        for (algorithm, response) in [
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
            (
                "SHA-256",
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ] {
            let header = format!(
                "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm={algorithm}, \
                 nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
                 opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
            );
            let mut c = Challenge::pick([header.as_str()]).unwrap();
            c.nc = 1;
            let a = c.answer_with(
                "Mufasa",
                "Circle of Life",
                ("GET", "/dir/index.html", b""),
                "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            );
            assert!(a.contains(&format!("response=\"{response}\"")), "{a}");
            assert!(a.contains("nc=00000001") && a.contains("qop=auth,"), "{a}");
            assert!(a.contains("opaque=\"FQhe/"), "{a}");
        }
    }

    /// A realm with a quote in it (sent escaped, read unescaped and hashed so) is
    /// written back escaped, and reads back as the realm hashed.
    #[test]
    fn quoted_values_are_written_back_escaped() {
        let mut c = Challenge::pick([r#"Digest realm="a\"b", qop="auth", nonce="n\\1""#]).unwrap();
        let a = c.answer("u", "p", "POST", "/x", b"");
        assert!(
            a.contains(r#"realm="a\"b""#) && a.contains(r#"nonce="n\\1""#),
            "{a}"
        );
        let fields = crate::gat1400::digest::digest_fields(&a).unwrap();
        assert_eq!(fields["realm"], "a\"b");
        assert_eq!(fields["nonce"], "n\\1");
    }

    #[test]
    fn the_strongest_challenge_is_answered_and_nc_grows() {
        let md5 = "Digest realm=\"viid\", qop=\"auth\", nonce=\"n1\", opaque=\"o\", algorithm=MD5";
        let sha = "Digest realm=\"viid\", qop=\"auth\", nonce=\"n2\", algorithm=SHA-256";
        let mut c = Challenge::pick([md5, "Basic realm=\"x\"", sha]).unwrap();
        assert!(c.hash.sha256);
        let first = c.answer("u", "p", "POST", "/VIID/System/Register", b"");
        let second = c.answer("u", "p", "POST", "/VIID/System/Register", b"");
        assert!(first.contains("nc=00000001"), "{first}");
        assert!(second.contains("nc=00000002"), "{second}");
        assert!(Challenge::pick(["Basic realm=\"x\""]).is_none());
        // No qop offered: RFC 2069's response, no nc.
        let mut old = Challenge::pick(["Digest realm=\"r\", nonce=\"n\""]).unwrap();
        let a = old.answer("u", "p", "POST", "/x", b"");
        let want = crate::gat1400::md5_hex(&format!(
            "{}:n:{}",
            crate::gat1400::md5_hex("u:r:p"),
            crate::gat1400::md5_hex("POST:/x")
        ));
        assert!(a.contains(&want) && !a.contains("nc="), "{a}");
    }

    /// RFC 7616 §3.4.3: an upstream offering only `auth-int` is answered with it, the
    /// body's hash in `A2` — and Sightline's own gateway accepts that answer.
    #[test]
    fn an_auth_int_only_challenge_is_answered_with_auth_int() {
        use crate::gat1400::md5_hex;
        let mut c =
            Challenge::pick(["Digest realm=\"r\", qop=\"auth-int\", nonce=\"n\", algorithm=MD5"])
                .unwrap();
        let body = br#"{"RegisterObject":{"DeviceID":"1"}}"#;
        let a = c.answer("u", "p", "POST", "/VIID/System/Register", body);
        assert!(
            a.contains("qop=auth-int,") && a.contains("nc=00000001"),
            "{a}"
        );
        let cnonce = a
            .split("cnonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let ha2 = md5_hex(&format!(
            "POST:/VIID/System/Register:{}",
            crate::gat1400::md5_bytes_hex(body)
        ));
        let want = md5_hex(&format!(
            "{}:n:00000001:{cnonce}:auth-int:{ha2}",
            md5_hex("u:r:p")
        ));
        assert!(a.contains(&format!("response=\"{want}\"")), "{a}");
        // Both offered: `auth`, as before.
        let mut both =
            Challenge::pick(["Digest realm=\"r\", qop=\"auth-int,auth\", nonce=\"n\""]).unwrap();
        let a = both.answer("u", "p", "POST", "/x", b"b");
        assert!(a.contains("qop=auth,"), "{a}");
    }
}
