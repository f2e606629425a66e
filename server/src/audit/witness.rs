//! The witness: the chain head, signed with a key the data directory does not hold.
//!
//! With `--audit-witness-key FILE`, each sync that moves the head appends
//! `{"seq":N,"hash":"…","mac":"…"}` to `DIR/audit.witness`, where `mac` is
//! HMAC-SHA256 (RFC 2104) under the key of `sightline audit witness v1 {seq} {hash}`.
//! Someone who can write the data directory but not read the key can rewrite the log,
//! re-hash its chain and set the catalog's head, but cannot make a witness line for
//! the new chain: `sightline audit verify --witness-key FILE` finds every witness line
//! that no longer matches its entry. What the witness cannot show is lines removed from
//! `audit.witness` itself together with the log's tail (a roll-back to an earlier,
//! truly witnessed state): copy the witness lines off the machine for that
//! (RELIABILITY.md, "Security").

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::AuditError;

/// The witness lines, in the data directory.
pub const WITNESS_FILE: &str = "audit.witness";

/// The shortest key accepted, in bytes (HMAC-SHA256 wants at least the hash's 32).
pub const MIN_KEY_BYTES: usize = 32;

/// A witness key, read from a file outside the data directory.
#[derive(Clone)]
pub struct WitnessKey {
    key: Vec<u8>,
    pub path: PathBuf,
}

impl std::fmt::Debug for WitnessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WitnessKey({})", self.path.display())
    }
}

impl WitnessKey {
    /// Reads the key file: its bytes, at least [`MIN_KEY_BYTES`] of them (e.g. `head -c
    /// 32 /dev/urandom > key`, or 64 hex digits).
    pub fn load(path: &Path) -> Result<WitnessKey, AuditError> {
        let key = std::fs::read(path).map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if key.len() < MIN_KEY_BYTES {
            return Err(AuditError::Witness {
                path: path.to_path_buf(),
                line: 0,
                reason: format!(
                    "a witness key holds at least {MIN_KEY_BYTES} bytes; this one {}",
                    key.len()
                ),
            });
        }
        Ok(WitnessKey {
            key,
            path: path.to_path_buf(),
        })
    }

    /// A key from bytes (tests).
    pub fn from_bytes(key: &[u8]) -> WitnessKey {
        WitnessKey {
            key: key.to_vec(),
            path: PathBuf::from("(in memory)"),
        }
    }

    /// The MAC of head `(seq, hash)`, hex.
    pub fn mac(&self, seq: u64, hash: &str) -> String {
        hex(&hmac_sha256(
            &self.key,
            format!("sightline audit witness v1 {seq} {hash}").as_bytes(),
        ))
    }

    /// The witness line for head `(seq, hash)`, with its newline.
    pub fn line(&self, seq: u64, hash: &str) -> String {
        format!(
            "{{\"seq\":{seq},\"hash\":\"{hash}\",\"mac\":\"{}\"}}\n",
            self.mac(seq, hash)
        )
    }

    /// Whether `mac` is the MAC of `(seq, hash)`, compared in constant time.
    pub fn verifies(&self, seq: u64, hash: &str, mac: &str) -> bool {
        let want = self.mac(seq, hash);
        want.len() == mac.len()
            && want
                .bytes()
                .zip(mac.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// One witness line as read back: where in the file and what it claims.
#[derive(Clone, Debug, PartialEq)]
pub struct WitnessLine {
    pub line: usize,
    pub seq: u64,
    pub hash: String,
}

/// Reads and authenticates every complete line of `path` (a last line without its
/// newline is a write cut short and is skipped); missing file: no lines. Sequence
/// numbers must not go down.
pub fn read_lines(path: &Path, key: &WitnessKey) -> Result<Vec<WitnessLine>, AuditError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(AuditError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut out: Vec<WitnessLine> = Vec::new();
    if complete == 0 {
        return Ok(out);
    }
    // Without the last newline, so that splitting yields no empty piece after it.
    for (i, line) in bytes[..complete - 1].split(|&b| b == b'\n').enumerate() {
        let broken = |reason: &str| AuditError::Witness {
            path: path.to_path_buf(),
            line: i + 1,
            reason: reason.to_string(),
        };
        let v: serde_json::Value =
            serde_json::from_slice(line).map_err(|_| broken("not a witness line (JSON)"))?;
        let (Some(seq), Some(hash), Some(mac)) =
            (v["seq"].as_u64(), v["hash"].as_str(), v["mac"].as_str())
        else {
            return Err(broken("not a witness line (seq, hash, mac)"));
        };
        if !key.verifies(seq, hash, mac) {
            return Err(broken(
                "its MAC does not match the witness key: forged, or made with another key",
            ));
        }
        if out.last().is_some_and(|w| w.seq > seq) {
            return Err(broken("its entry is older than the line before it"));
        }
        out.push(WitnessLine {
            line: i + 1,
            seq,
            hash: hash.to_string(),
        });
    }
    Ok(out)
}

/// HMAC-SHA256 (RFC 2104) over `sha2`: no crate in the lock file provides it.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test cases 1, 2 and 6 (a key longer than a block).
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn a_line_verifies_under_its_key_only() {
        let key = WitnessKey::from_bytes(&[7; 32]);
        let other = WitnessKey::from_bytes(&[8; 32]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(WITNESS_FILE);
        std::fs::write(
            &path,
            format!("{}{}{{\"seq\":", key.line(3, "ab"), key.line(5, "cd")),
        )
        .unwrap();
        let lines = read_lines(&path, &key).unwrap();
        assert_eq!(
            lines
                .iter()
                .map(|l| (l.seq, l.hash.as_str()))
                .collect::<Vec<_>>(),
            [(3, "ab"), (5, "cd")],
            "the torn last line is skipped"
        );
        assert!(read_lines(&path, &other).is_err());
        std::fs::write(&path, key.line(3, "ab").replace("\"ab\"", "\"ac\"")).unwrap();
        assert!(read_lines(&path, &key).is_err());
    }
}
