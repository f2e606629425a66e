//! What the GA/T 1400 (视图库) gateway of the ingest nodes shares through the
//! cluster's engines, so a camera may register on one ingest node and upload to
//! another behind a load balancer:
//!
//! ```sql
//! gat1400_credentials (code PRIMARY KEY, username, realm, ha1, ha1_sha256, created_at)
//!                       -- digest credentials: HA1 only, never a password (as `serve`)
//! gat1400_registrations (code PRIMARY KEY → gat1400_credentials ON DELETE CASCADE,
//!                        address, renewed_at)
//!                       -- who registered (or kept alive) from where, when
//! gat1400_nonces (nonce, nc, used_at; PRIMARY KEY (nonce, nc))
//!                       -- digest answers seen by any ingest node (replays refused)
//! ```
//!
//! beside the catalog's `devices` (`crate::catalog`: the devices objects name, and
//! their communities),
//! and on object storage the pictures of uploaded objects and the objects as
//! uploaded, each under a content-addressed key (SHA-256 of its bytes) inside the day
//! of its event (its capture time's Asia/Shanghai day, as shards are cut) and its
//! community: `gat1400/pictures/d{YYYYMMDD}/{hex community}/{sha256}` and
//! `gat1400/objects/d{YYYYMMDD}/{hex community}/{sha256}`, written with create-only
//! puts before the events naming them are published. Their id, as events list them
//! and `GET /v1/images/{id}` / `GET /v1/objects/{id}` take it, is `{hex
//! community}.{YYYYMMDD}.{sha256}`: the community is in the id, so a query node
//! decides visibility from the id alone, as `serve` does from its own picture ids.
//!
//! The day makes retention whole prefixes, as shards are for events: the janitor
//! deletes the days past `index.gat1400_retention_days`, or when that is 0 (the
//! default) past the cluster's event retention (`crate::janitor::sweep_gat1400`; no
//! policy keeps them forever). Bytes are shared only within a (day, community): a
//! picture uploaded again by a later event of another day is stored again under that
//! day, so dropping the older day never takes a picture a newer event names. Ids of
//! before the day (`{hex community}.{sha256}`, keys
//! `gat1400/{pictures|objects}/{hex community}/{sha256}`) are still served (the
//! events stored then name them) and never swept (they have no day to go by); no
//! upload names them any more.

use sightline_storage::Gat1400Credential;

use crate::error::{ClusterError, Result};
use crate::meta::Meta;

/// Where the gateway's objects live in the bucket (never an indexer's key).
pub const PREFIX: &str = "gat1400/";

/// What a stored blob is: a picture's bytes, or an object as uploaded (JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blob {
    Picture,
    Object,
}

impl Blob {
    fn dir(self) -> &'static str {
        match self {
            Blob::Picture => "pictures",
            Blob::Object => "objects",
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lower-case hex of SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

/// A stored blob's id: its community, its event's day and the SHA-256 of its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobId {
    pub community: String,
    /// `YYYYMMDD`, the Asia/Shanghai day of the event it was uploaded with (`None`: an
    /// id of before days, never swept).
    pub day: Option<String>,
    pub sha256: String,
}

/// `YYYYMMDD`, the Asia/Shanghai (UTC+8) day of `ts_ms` (years 0–9999).
pub fn local_day(ts_ms: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let days = (ts_ms + 8 * 3_600_000).div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}")
}

fn is_day(s: &str) -> bool {
    s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit())
}

impl BlobId {
    /// The id of `bytes` stored in `community` with an event of `ts_ms`.
    pub fn of(community: &str, ts_ms: i64, bytes: &[u8]) -> BlobId {
        BlobId {
            community: community.to_string(),
            day: Some(local_day(ts_ms)),
            sha256: sha256_hex(bytes),
        }
    }

    /// `{hex community}.{YYYYMMDD}.{sha256}` (or, of before days,
    /// `{hex community}.{sha256}`), or `None` for anything else.
    pub fn parse(id: &str) -> Option<BlobId> {
        let (c, rest) = id.split_once('.')?;
        let (day, sha) = match rest.split_once('.') {
            Some((day, sha)) if is_day(day) => (Some(day.to_string()), sha),
            Some(_) => return None,
            None => (None, rest),
        };
        let sha_ok = sha.len() == 64
            && sha
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !sha_ok || c.is_empty() || c.len() % 2 != 0 || c.len() > 128 {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..c.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(c.get(i..i + 2)?, 16).ok())
            .collect();
        let community = String::from_utf8(bytes?).ok()?;
        Some(BlobId {
            community,
            day,
            sha256: sha.to_string(),
        })
    }

    /// The object key of this blob as `what`.
    pub fn key(&self, what: Blob) -> String {
        let (dir, community) = (what.dir(), hex(self.community.as_bytes()));
        match &self.day {
            Some(day) => format!("{PREFIX}{dir}/d{day}/{community}/{}", self.sha256),
            None => format!("{PREFIX}{dir}/{community}/{}", self.sha256),
        }
    }
}

/// Where the blobs of `what` of every day lie (`gat1400/{pictures|objects}/`).
pub fn days_prefix(what: Blob) -> String {
    format!("{PREFIX}{}/", what.dir())
}

/// The day (`YYYYMMDD`) a prefix listed under [`days_prefix`] holds
/// (`…/d{YYYYMMDD}/`), or `None` (a community's blobs of before days).
pub fn day_of_prefix(what: Blob, prefix: &str) -> Option<&str> {
    let rest = prefix.strip_prefix(PREFIX)?.strip_prefix(what.dir())?;
    let day = rest.strip_prefix("/d")?.trim_end_matches('/');
    is_day(day).then_some(day)
}

impl std::fmt::Display for BlobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let community = hex(self.community.as_bytes());
        match &self.day {
            Some(day) => write!(f, "{community}.{day}.{}", self.sha256),
            None => write!(f, "{community}.{}", self.sha256),
        }
    }
}

/// A registration as the table holds it: who, from which address, how long ago (ms,
/// the database's clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    pub code: String,
    pub address: Option<String>,
    pub age_ms: i64,
}

const CREDENTIAL_COLUMNS: &str = "code, username, realm, ha1, ha1_sha256";

fn credential_of(r: &tokio_postgres::Row) -> Gat1400Credential {
    Gat1400Credential {
        code: r.get(0),
        username: r.get(1),
        realm: r.get(2),
        ha1: r.get(3),
        ha1_sha256: r.get(4),
    }
}

fn registration_of(r: &tokio_postgres::Row) -> Registration {
    Registration {
        code: r.get(0),
        address: r.get(1),
        age_ms: r.get(2),
    }
}

const REGISTRATION_COLUMNS: &str =
    "code, address, (extract(epoch FROM now() - renewed_at) * 1000)::bigint";

impl Meta {
    /// Every GA/T 1400 credential.
    pub async fn gat1400_credentials(&self) -> Result<Vec<Gat1400Credential>> {
        let rows = self
            .client
            .query(
                &format!("SELECT {CREDENTIAL_COLUMNS} FROM gat1400_credentials ORDER BY code"),
                &[],
            )
            .await
            .map_err(ClusterError::pg("read GA/T 1400 credentials"))?;
        Ok(rows.iter().map(credential_of).collect())
    }

    /// The credential of `code`, if it has one.
    pub async fn gat1400_credential(&self, code: &str) -> Result<Option<Gat1400Credential>> {
        let row = self
            .client
            .query_opt(
                &format!("SELECT {CREDENTIAL_COLUMNS} FROM gat1400_credentials WHERE code = $1"),
                &[&code],
            )
            .await
            .map_err(ClusterError::pg("read a GA/T 1400 credential"))?;
        Ok(row.as_ref().map(credential_of))
    }

    /// Adds or replaces the credential of `c.code`.
    pub async fn put_gat1400_credential(&self, c: &Gat1400Credential) -> Result<()> {
        self.client
            .execute(
                "INSERT INTO gat1400_credentials (code, username, realm, ha1, ha1_sha256)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (code) DO UPDATE SET username = $2, realm = $3, ha1 = $4,
                     ha1_sha256 = $5",
                &[&c.code, &c.username, &c.realm, &c.ha1, &c.ha1_sha256],
            )
            .await
            .map_err(ClusterError::pg("put a GA/T 1400 credential"))?;
        Ok(())
    }

    /// Removes the GA/T 1400 login of `code` (its credential and registration; the
    /// device stays in the catalog, as on `serve`); whether it had one.
    pub async fn remove_gat1400_login(&self, code: &str) -> Result<bool> {
        let mut removed = 0;
        for table in ["gat1400_credentials", "gat1400_registrations"] {
            removed += self
                .client
                .execute(&format!("DELETE FROM {table} WHERE code = $1"), &[&code])
                .await
                .map_err(ClusterError::pg("remove a GA/T 1400 login"))?;
        }
        Ok(removed > 0)
    }

    /// Registrations renewed within `ttl_ms`.
    pub async fn gat1400_registrations(&self, ttl_ms: i64) -> Result<Vec<Registration>> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT {REGISTRATION_COLUMNS} FROM gat1400_registrations
                     WHERE renewed_at > now() - $1 * interval '1 millisecond'"
                ),
                &[&(ttl_ms as f64)],
            )
            .await
            .map_err(ClusterError::pg("read GA/T 1400 registrations"))?;
        Ok(rows.iter().map(registration_of).collect())
    }

    /// The registration of `code`, however old.
    pub async fn gat1400_registration(&self, code: &str) -> Result<Option<Registration>> {
        let row = self
            .client
            .query_opt(
                &format!(
                    "SELECT {REGISTRATION_COLUMNS} FROM gat1400_registrations WHERE code = $1"
                ),
                &[&code],
            )
            .await
            .map_err(ClusterError::pg("read a GA/T 1400 registration"))?;
        Ok(row.as_ref().map(registration_of))
    }

    /// Registers (or registers again) `code` from `address`, now; `false` when `code`
    /// has no credential (its login was removed meanwhile: nothing written).
    pub async fn gat1400_register(&self, code: &str, address: Option<&str>) -> Result<bool> {
        let n = self
            .client
            .execute(
                "INSERT INTO gat1400_registrations (code, address, renewed_at)
                 SELECT $1, $2, now()
                 WHERE EXISTS (SELECT 1 FROM gat1400_credentials WHERE code = $1)
                 ON CONFLICT (code) DO UPDATE SET address = $2, renewed_at = now()",
                &[&code, &address],
            )
            .await
            .map_err(ClusterError::pg("register a GA/T 1400 caller"))?;
        Ok(n > 0)
    }

    /// Renews the registration of `code` from `address`, if there is one (a
    /// keepalive, an upload: never creates one, so a login removed while a node still
    /// remembers it stays removed); whether there was.
    pub async fn gat1400_renew(&self, code: &str, address: Option<&str>) -> Result<bool> {
        let n = self
            .client
            .execute(
                "UPDATE gat1400_registrations SET renewed_at = now()
                 WHERE code = $1 AND address IS NOT DISTINCT FROM $2",
                &[&code, &address],
            )
            .await
            .map_err(ClusterError::pg("renew a GA/T 1400 registration"))?;
        Ok(n > 0)
    }

    /// Records the first use of a digest nonce with counter `nc`, cluster-wide;
    /// `false` when it was used before (a replay, to this node or another).
    pub async fn gat1400_nonce_first_use(&self, nonce: &str, nc: i64) -> Result<bool> {
        let n = self
            .client
            .execute(
                "INSERT INTO gat1400_nonces (nonce, nc) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&nonce, &nc],
            )
            .await
            .map_err(ClusterError::pg("record a GA/T 1400 nonce"))?;
        Ok(n > 0)
    }

    /// Forgets nonce uses older than `age_ms` (past every nonce's life, they cannot
    /// verify again); how many.
    pub async fn gat1400_sweep_nonces(&self, age_ms: i64) -> Result<u64> {
        self.client
            .execute(
                "DELETE FROM gat1400_nonces WHERE used_at < now() - $1 * interval '1 millisecond'",
                &[&(age_ms as f64)],
            )
            .await
            .map_err(ClusterError::pg("sweep GA/T 1400 nonces"))
    }

    /// Ends the registration of `code`.
    pub async fn gat1400_unregister(&self, code: &str) -> Result<()> {
        self.client
            .execute(
                "DELETE FROM gat1400_registrations WHERE code = $1",
                &[&code],
            )
            .await
            .map_err(ClusterError::pg("unregister a GA/T 1400 caller"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_asia_shanghai_calendar_days() {
        let dec1 = 1_764_518_400_000; // 2025-12-01T00:00:00+08:00
        assert_eq!(local_day(dec1), "20251201");
        assert_eq!(local_day(dec1 - 1), "20251130");
        assert_eq!(local_day(dec1 + 86_400_000 - 1), "20251201");
        assert_eq!(local_day(951_753_600_000), "20000229"); // 2000-02-29T00:00+08:00
        assert_eq!(local_day(-8 * 3_600_000), "19700101");
        assert_eq!(local_day(-8 * 3_600_000 - 1), "19691231");
    }

    #[test]
    fn blob_ids_carry_their_community_and_day_and_name_their_keys() {
        let dec1 = 1_764_518_400_000; // 2025-12-01T00:00:00+08:00
        let id = BlobId::of("3205080001", dec1 + 3_600_000, b"\xff\xd8\xffpicture");
        let text = id.to_string();
        assert_eq!(BlobId::parse(&text), Some(id.clone()));
        assert!(text.starts_with("33323035303830303031.20251201."), "{text}");
        let key = id.key(Blob::Picture);
        assert_eq!(
            key,
            format!(
                "gat1400/pictures/d20251201/33323035303830303031/{}",
                id.sha256
            )
        );
        assert!(id
            .key(Blob::Object)
            .starts_with("gat1400/objects/d20251201/"));
        assert_eq!(
            day_of_prefix(Blob::Picture, "gat1400/pictures/d20251201/"),
            Some("20251201")
        );
        assert_eq!(
            day_of_prefix(Blob::Object, "gat1400/pictures/d20251201/"),
            None
        );
        assert_eq!(
            day_of_prefix(Blob::Picture, "gat1400/pictures/33323035303830303031/"),
            None
        );
        // The same bytes with an event of another day: another key.
        let later = BlobId::of("3205080001", dec1 + 86_400_000, b"\xff\xd8\xffpicture");
        assert_ne!(later.key(Blob::Picture), key);
        // An id of before days: still served, under its old key.
        let sha = &id.sha256;
        let old = BlobId::parse(&format!("33.{sha}")).unwrap();
        assert_eq!(old.day, None);
        assert_eq!(old.key(Blob::Picture), format!("gat1400/pictures/33/{sha}"));
        assert_eq!(old.to_string(), format!("33.{sha}"));
        for bad in [
            "",
            "33.12.1",                             // a serve picture id
            &format!("33.2025120.{sha}"),          // a short day
            &format!("33.2025120x.{sha}"),         // not a day
            &format!("3.{sha}"),                   // odd hex
            &format!("zz.{sha}"),                  // not hex
            &format!("33.{}", &sha[1..]),          // short digest
            &format!("33.{}", sha.to_uppercase()), // upper case
            &format!("ff.{sha}"),                  // not UTF-8
        ] {
            assert_eq!(BlobId::parse(bad), None, "{bad}");
        }
    }
}
