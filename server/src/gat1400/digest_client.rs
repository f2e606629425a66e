//! HTTP Digest, the client's side (RFC 7616, RFC 2617): what this server answers an
//! upstream 视图库's `401 WWW-Authenticate: Digest …` with when it registers there.
//!
//! MD5 and SHA-256 (each with `-sess`), `qop=auth` when offered, else `qop=auth-int`
//! (the body's hash in `A2`) when only that is, else RFC 2069's form; a fresh `cnonce`
//! per answer. (Sightline's own gateway offers and takes only `qop=auth`: `auth-int`
//! is answered here for upstreams that offer nothing else.) A nonce is reused with a
//! growing `nc` until the upstream refuses it; then the new challenge is answered from
//! `nc=1`.

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
    /// `stale=true`: the upstream refused only the nonce of the answer before (RFC
    /// 7616 §3.3), not the password.
    stale: bool,
    nc: u32,
}

/// The challenges of one `WWW-Authenticate` value (RFC 9110 §11.6.1, §11.2): a
/// comma-separated list whose elements are either a new challenge (`scheme`, then
/// whitespace and its `token68` or first `auth-param`, or the scheme alone) or one
/// more `name = value` of the challenge before. Commas inside quoted strings (with
/// their `\"` quoted-pairs) separate nothing.
pub(crate) fn challenges_in(value: &str) -> Vec<&str> {
    // Where each top-level element starts (after its comma).
    let mut starts = vec![0];
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in value.char_indices() {
        match (quoted, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, false, '"') => quoted = !quoted,
            (false, _, ',') => starts.push(i + 1),
            _ => {}
        }
    }
    // An element begins a challenge when its first token is not followed by `=`.
    let begins_challenge = |element: &str| {
        let e = element.trim_start();
        let token_end = e
            .find(|c: char| c.is_ascii_whitespace() || c == '=')
            .unwrap_or(e.len());
        token_end > 0 && !e[token_end..].trim_start().starts_with('=')
    };
    let mut out = Vec::new();
    let mut current: Option<usize> = None;
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).map_or(value.len(), |next| next - 1);
        if !begins_challenge(&value[start..end]) {
            continue;
        }
        if let Some(begun) = current {
            out.push(value[begun..start - 1].trim());
        }
        current = Some(start);
    }
    if let Some(begun) = current {
        out.push(value[begun..].trim());
    }
    out.retain(|c| !c.is_empty());
    out
}

impl Challenge {
    /// The strongest digest challenge among `WWW-Authenticate` header values (SHA-256
    /// before MD5, and the first of equally strong ones: RFC 7616 §3.7, the server
    /// lists its preferred first); `None` when none is a digest this client answers.
    /// Each header value may hold several challenges (RFC 9110 §11.6.1:
    /// `Basic realm="x", Digest realm="y", …`): they are split first
    /// ([`challenges_in`]).
    pub fn pick<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
        headers
            .into_iter()
            .flat_map(challenges_in)
            .filter_map(Challenge::parse)
            .reduce(|best, c| match (best.hash.sha256, c.hash.sha256) {
                (false, true) => c,
                _ => best,
            })
    }

    /// Whether the upstream said `stale=true`: its nonce, not our password, was
    /// refused, so the answer is worth sending again with this challenge's nonce.
    pub fn stale(&self) -> bool {
        self.stale
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
            // Echoed unchanged, an empty one too (RFC 7616 §3.4).
            opaque: f.get("opaque").cloned(),
            algorithm,
            hash,
            qop_auth,
            qop_auth_int,
            stale: get("stale").is_some_and(|v| v.eq_ignore_ascii_case("true")),
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

    /// RFC 9110 §11.6.1: one field may carry several challenges; commas in quoted
    /// strings do not split them; the strongest digest is answered.
    #[test]
    fn several_challenges_in_one_field_are_split_and_the_strongest_digest_picked() {
        let one = r#"Basic realm="a, b", Digest realm="r", qop="auth,auth-int", nonce="n1", algorithm=MD5, Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth", Negotiate abc=="#;
        let parts = challenges_in(one);
        assert_eq!(
            parts,
            [
                r#"Basic realm="a, b""#,
                r#"Digest realm="r", qop="auth,auth-int", nonce="n1", algorithm=MD5"#,
                r#"Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth""#,
                "Negotiate abc==",
            ]
        );
        let picked = Challenge::pick([one]).unwrap();
        assert_eq!((picked.nonce.as_str(), picked.hash.sha256), ("n2", true));
        // A quoted-pair quote does not end the string; BWS around `=` is a parameter.
        let escaped = r#"Digest realm="x\", Basic y", nonce = "n3", Bearer"#;
        assert_eq!(
            challenges_in(escaped),
            [r#"Digest realm="x\", Basic y", nonce = "n3""#, "Bearer"]
        );
        assert_eq!(Challenge::pick([escaped]).unwrap().nonce, "n3");
        // One challenge per header, as before.
        let two = [
            "Basic realm=\"x\"",
            "Digest realm=\"r\", nonce=\"n4\", qop=auth",
        ];
        assert_eq!(Challenge::pick(two).unwrap().nonce, "n4");
        assert!(challenges_in("").is_empty());
    }

    /// RFC 7616 §3.4.3: an upstream offering only `auth-int` is answered with it, the
    /// body's hash in `A2` (Sightline's own gateway never offers it, and refuses it).
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

    /// RFC 7616 §3.7: of equally strong challenges the first is answered (the server
    /// lists its preferred first); SHA-256 still wins over an MD5 before it.
    #[test]
    fn the_first_of_equally_strong_challenges_is_answered() {
        let md5 =
            |n: &str| format!("Digest realm=\"r\", qop=\"auth\", nonce=\"{n}\", algorithm=MD5");
        let sha =
            |n: &str| format!("Digest realm=\"r\", qop=\"auth\", nonce=\"{n}\", algorithm=SHA-256");
        let pick = |all: &[String]| {
            Challenge::pick(all.iter().map(String::as_str))
                .unwrap()
                .nonce
        };
        assert_eq!(pick(&[md5("m1"), md5("m2")]), "m1");
        assert_eq!(pick(&[sha("s1"), sha("s2")]), "s1");
        assert_eq!(pick(&[md5("m1"), sha("s1"), md5("m2"), sha("s2")]), "s1");
        assert_eq!(pick(&[format!("{}, {}", md5("m1"), md5("m2"))]), "m1");
    }

    /// RFC 7616 §3.4: `opaque` is echoed unchanged — an empty one too; none when the
    /// challenge had none.
    #[test]
    fn an_empty_opaque_is_echoed() {
        let mut c = Challenge::pick(["Digest realm=\"r\", qop=\"auth\", nonce=\"n\", opaque=\"\""])
            .unwrap();
        let a = c.answer("u", "p", "POST", "/x", b"");
        assert!(a.contains(", opaque=\"\""), "{a}");
        let mut c = Challenge::pick(["Digest realm=\"r\", qop=\"auth\", nonce=\"n\""]).unwrap();
        let a = c.answer("u", "p", "POST", "/x", b"");
        assert!(!a.contains("opaque"), "{a}");
    }

    #[test]
    fn stale_is_read_from_the_challenge() {
        let stale = Challenge::pick(["Digest realm=\"r\", nonce=\"n\", stale=TRUE"]).unwrap();
        assert!(stale.stale());
        let fresh = Challenge::pick(["Digest realm=\"r\", nonce=\"n\", stale=false"]).unwrap();
        assert!(!fresh.stale());
        assert!(!Challenge::pick(["Digest realm=\"r\", nonce=\"n\""])
            .unwrap()
            .stale());
    }
}
