//! A GA/T 1400 camera's side, as the gateway tests (`serve`'s and the cluster's) play
//! it: requests in the `/VIID` shape, the RFC 2617 digest (MD5, `qop=auth`) computed
//! by hand, and pictures.

use std::net::SocketAddr;

use serde_json::Value;

use crate::client::send;

/// Lower-case hex of MD5.
pub fn md5_hex(s: &str) -> String {
    sightline_server::gat1400::md5_hex(s)
}

/// A GA/T 1400 request: status, headers (lower case), JSON body.
pub fn viid(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, String, Value) {
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let answer = send(
        addr,
        format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/VIID+JSON\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    (
        answer.status,
        answer.head.to_ascii_lowercase(),
        serde_json::from_slice(&answer.body).unwrap_or(Value::Null),
    )
}

/// The digest handshake a device performs: ask, get a nonce, answer it.
pub fn register(addr: SocketAddr, path: &str, id: &str, password: &str) -> (u16, Value) {
    let body = format!("{{\"RegisterObject\":{{\"DeviceID\":\"{id}\"}}}}");
    let (status, head, _) = viid(addr, "POST", path, &[], &body);
    assert_eq!(status, 401, "{head}");
    let challenge = head
        .lines()
        .find_map(|l| l.strip_prefix("www-authenticate: "))
        .expect("a digest challenge");
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert!(challenge.contains("qop=\"auth\""), "{challenge}");
    let ha1 = md5_hex(&format!("{id}:Sightline:{password}"));
    let ha2 = md5_hex(&format!("POST:{path}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
    let auth = format!(
        "Digest username=\"{id}\", realm=\"Sightline\", nonce=\"{nonce}\", uri=\"{path}\", \
         qop=auth, nc=00000001, cnonce=\"c0ffee\", response=\"{response}\", algorithm=MD5"
    );
    let (status, _, body) = viid(addr, "POST", path, &[("Authorization", auth)], &body);
    (status, body)
}

/// A picture-sized JPEG: the JPEG magic, then `n` bytes from a seed (so every picture
/// differs, and equal seeds give equal pictures).
pub fn jpeg(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE0];
    out.extend((0..n).map(|_| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 56) as u8
    }));
    out
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The nonce of a 401's `WWW-Authenticate` challenge (`head` lower case).
pub fn nonce_of(head: &str) -> String {
    let challenge = head
        .lines()
        .find_map(|l| l.strip_prefix("www-authenticate: "))
        .expect("a digest challenge");
    nonce_in(challenge)
}

/// The nonce of one digest challenge (`Digest realm="…", nonce="…", …`).
pub fn nonce_in(challenge: &str) -> String {
    challenge
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string()
}

/// A digest response over exactly the strings a client puts in its header.
#[allow(clippy::too_many_arguments)]
pub fn digest_response(
    user: &str,
    password: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    method: &str,
    uri: &str,
) -> String {
    let ha1 = md5_hex(&format!("{user}:Sightline:{password}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
}

/// The `Authorization` header answering `nonce` as user `user` (MD5, `qop=auth`).
pub fn authorization(
    user: &str,
    password: &str,
    nonce: &str,
    nc: &str,
    method: &str,
    uri: &str,
) -> String {
    let cnonce = "0a4f113b";
    let response = digest_response(user, password, nonce, nc, cnonce, method, uri);
    format!(
        "Digest username=\"{user}\", realm=\"Sightline\", nonce=\"{nonce}\", uri=\"{uri}\", \
         qop=auth, nc={nc}, cnonce=\"{cnonce}\", response=\"{response}\", algorithm=MD5"
    )
}
