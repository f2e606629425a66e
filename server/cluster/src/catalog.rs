//! The cluster's community and device catalog: two PostgreSQL tables every query node
//! reads and admins change through any of them, holding what `sightline serve` keeps in
//! its store's catalog (`sightline_storage::{Community, Device}`), field for field.
//!
//! ```sql
//! communities (code text PRIMARY KEY, name text, district text)
//! devices (code text PRIMARY KEY,                 -- 20-digit GB/T 28181 code
//!          community text REFERENCES communities, -- registered first
//!          device_kind text, direction text,      -- 'in' | 'out' | 'unknown'
//!          name text,
//!          relays jsonb)                          -- a platform's: {code prefix: community}
//! ```
//!
//! `relays` is what `serve` keeps in its catalog's `gat1400_relays` tree: the
//! communities a platform relays cameras into, by device-code prefix (NULL: none).
//! A catalog made before it gets the column from `Meta::create` (a checked migration,
//! `RELAYS`). A `PUT` without `relays` keeps a device's (as on `serve`); an empty map
//! clears them (NULL), as a `PUT` of a kind other than platform does.
//!
//! A `PUT` creates or replaces (as on `serve`); nothing is deleted. What a record must
//! hold (a code's shape, a device's community registered, a key's scope) is checked by
//! the server before it writes, with `serve`'s own functions; the foreign key keeps a
//! device from naming a community that is not there whatever writes the row.

use std::collections::{BTreeMap, HashMap};

use sightline_storage::{Community, Device, Direction};

use crate::error::{ClusterError, Result};
use crate::meta::Meta;

fn community_of(r: &tokio_postgres::Row) -> Community {
    Community {
        code: r.get(0),
        name: r.get(1),
        district: r.get(2),
    }
}

/// A `devices` row (code, community, device_kind, direction, name).
fn device_of(r: &tokio_postgres::Row) -> Result<Device> {
    let direction: String = r.get(3);
    Ok(Device {
        code: r.get(0),
        community: r.get(1),
        device_kind: r.get(2),
        direction: Direction::parse(&direction).ok_or_else(|| {
            ClusterError::Config(format!(
                "devices.direction = {direction:?} (the table's check allows in, out, unknown)"
            ))
        })?,
        name: r.get(4),
    })
}

const DEVICE_COLUMNS: &str = "code, community, device_kind, direction, name";

impl Meta {
    /// Every registered community, by code.
    pub async fn communities(&self) -> Result<Vec<Community>> {
        let rows = self
            .client
            .query(
                "SELECT code, name, district FROM communities ORDER BY code",
                &[],
            )
            .await
            .map_err(ClusterError::pg("read communities"))?;
        Ok(rows.iter().map(community_of).collect())
    }

    /// Community `code`, if registered.
    pub async fn community(&self, code: &str) -> Result<Option<Community>> {
        let row = self
            .client
            .query_opt(
                "SELECT code, name, district FROM communities WHERE code = $1",
                &[&code],
            )
            .await
            .map_err(ClusterError::pg("read a community"))?;
        Ok(row.as_ref().map(community_of))
    }

    /// Registers `c`, or replaces the community of its code: `true` when it created
    /// one. Told by the statement that writes (a row the `INSERT` made has no `xmax`;
    /// one `ON CONFLICT` updated has the updating transaction's), so of two puts of a
    /// new code, which the row's lock orders, exactly one says so.
    pub async fn put_community(&self, c: &Community) -> Result<bool> {
        let row = self
            .client
            .query_one(
                "INSERT INTO communities (code, name, district) VALUES ($1, $2, $3)
                 ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name,
                     district = EXCLUDED.district
                 RETURNING (xmax = 0)",
                &[&c.code, &c.name, &c.district],
            )
            .await
            .map_err(ClusterError::pg("register a community"))?;
        Ok(row.get(0))
    }

    /// [`Meta::put_community`] only while a community of the code is there
    /// (`existing`: true) or is not (false), in one statement; `None` when it was not
    /// written for that, else whether it created one (an HTTP precondition, `If-Match:
    /// *` or `If-None-Match: *`, judged with the write).
    pub async fn put_community_when(&self, c: &Community, existing: bool) -> Result<Option<bool>> {
        let sql = match existing {
            true => {
                "UPDATE communities SET name = $2, district = $3 WHERE code = $1 RETURNING false"
            }
            false => {
                "INSERT INTO communities (code, name, district) VALUES ($1, $2, $3)
                 ON CONFLICT (code) DO NOTHING RETURNING true"
            }
        };
        let row = self
            .client
            .query_opt(sql, &[&c.code, &c.name, &c.district])
            .await
            .map_err(ClusterError::pg("register a community"))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Every registered device (only `community`'s when given), by code.
    pub async fn devices(&self, community: Option<&str>) -> Result<Vec<Device>> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices
                     WHERE $1::text IS NULL OR community = $1 ORDER BY code"
                ),
                &[&community],
            )
            .await
            .map_err(ClusterError::pg("read devices"))?;
        rows.iter().map(device_of).collect()
    }

    /// Device `code`, if registered.
    pub async fn device(&self, code: &str) -> Result<Option<Device>> {
        let row = self
            .client
            .query_opt(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE code = $1"),
                &[&code],
            )
            .await
            .map_err(ClusterError::pg("read a device"))?;
        row.as_ref().map(device_of).transpose()
    }

    /// Registers `d` (its community registered already: the foreign key refuses it
    /// otherwise), or replaces the device of its code; with `relays`, the platform's
    /// relays replaced too, in the same statement (an empty map clears them: NULL;
    /// without, they stay as they were).
    pub async fn put_device(
        &self,
        d: &Device,
        relays: Option<&BTreeMap<String, String>>,
    ) -> Result<()> {
        let replace = relays.is_some();
        let relays = relays
            .filter(|r| !r.is_empty())
            .map(|r| serde_json::to_string(r).expect("a map of strings"));
        self.client
            .execute(
                &format!(
                    "INSERT INTO devices ({DEVICE_COLUMNS}, relays)
                     VALUES ($1, $2, $3, $4, $5, $6::text::jsonb)
                     ON CONFLICT (code) DO UPDATE SET community = EXCLUDED.community,
                         device_kind = EXCLUDED.device_kind, direction = EXCLUDED.direction,
                         name = EXCLUDED.name,
                         relays = CASE WHEN $7 THEN EXCLUDED.relays ELSE devices.relays END"
                ),
                &[
                    &d.code,
                    &d.community,
                    &d.device_kind,
                    &d.direction.as_str(),
                    &d.name,
                    &relays,
                    &replace,
                ],
            )
            .await
            .map_err(ClusterError::pg("register a device"))?;
        Ok(())
    }

    /// Device `code` as a `PUT` checks it, read in one statement: the row and its
    /// relays as stored (their text, `None`: none; [`parse_relays`] reads them), or
    /// `None` when it is not registered. [`Meta::put_device_if`] writes only while
    /// the device is still as read here.
    pub async fn device_seen(&self, code: &str) -> Result<Option<(Device, Option<String>)>> {
        let row = self
            .client
            .query_opt(
                &format!("SELECT {DEVICE_COLUMNS}, relays::text FROM devices WHERE code = $1"),
                &[&code],
            )
            .await
            .map_err(ClusterError::pg("read a device"))?;
        row.map(|r| Ok((device_of(&r)?, r.get(5)))).transpose()
    }

    /// [`Meta::put_device`], and `credential` (a GA/T 1400 login) with it, in one
    /// statement that writes only while device `d.code` is as `seen` (as
    /// [`Meta::device_seen`] read it: its community and its relays' text; `None`:
    /// not registered): whoever checked the caller's scope against that state
    /// writes against it, and a change in between (an unscoped admin moving the
    /// device) makes this write nothing. Whether it wrote.
    pub async fn put_device_if(
        &self,
        d: &Device,
        relays: Option<&BTreeMap<String, String>>,
        seen: Option<(&str, Option<&str>)>,
        credential: Option<&sightline_storage::Gat1400Credential>,
    ) -> Result<bool> {
        let replace = relays.is_some();
        let relays = relays
            .filter(|r| !r.is_empty())
            .map(|r| serde_json::to_string(r).expect("a map of strings"));
        let device = match seen {
            None => format!(
                "INSERT INTO devices ({DEVICE_COLUMNS}, relays)
                 VALUES ($1, $2, $3, $4, $5, $6::text::jsonb)
                 ON CONFLICT (code) DO NOTHING
                 RETURNING code, $7::boolean, $8::text, $9::text"
            ),
            Some(_) => "UPDATE devices SET community = $2, device_kind = $3, direction = $4,
                     name = $5,
                     relays = CASE WHEN $7 THEN $6::text::jsonb ELSE relays END
                 WHERE code = $1 AND community = $8
                     AND relays::text IS NOT DISTINCT FROM $9::text
                 RETURNING code"
                .to_string(),
        };
        // The login goes only with the device's row (`d`, empty when it was not
        // written); the foreign keys are checked at the statement's end.
        let sql = format!(
            "WITH d AS ({device}),
             c AS (INSERT INTO gat1400_credentials (code, username, realm, ha1, ha1_sha256)
                   SELECT code, $10::text, $11::text, $12::text, $13::text FROM d
                   WHERE $10::text IS NOT NULL
                   ON CONFLICT (code) DO UPDATE SET username = EXCLUDED.username,
                       realm = EXCLUDED.realm, ha1 = EXCLUDED.ha1,
                       ha1_sha256 = EXCLUDED.ha1_sha256
                   RETURNING 1)
             SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM c)"
        );
        let (community, stored) = seen.unwrap_or(("", None));
        let login = |f: fn(&sightline_storage::Gat1400Credential) -> &str| credential.map(f);
        let row = self
            .client
            .query_one(
                &sql,
                &[
                    &d.code,
                    &d.community,
                    &d.device_kind,
                    &d.direction.as_str(),
                    &d.name,
                    &relays,
                    &replace,
                    &community,
                    &stored,
                    &login(|c| &c.username),
                    &login(|c| &c.realm),
                    &login(|c| &c.ha1),
                    &login(|c| &c.ha1_sha256),
                ],
            )
            .await
            .map_err(ClusterError::pg("register a device"))?;
        let written: i64 = row.get(0);
        Ok(written == 1)
    }

    /// Registers each of `devices` unless its code is registered already (a relaying
    /// platform's cameras, catalogued on their first object), in one statement; the
    /// rows as stored, one for each code: a device registered meanwhile (by an admin,
    /// or by another ingest node under another community) is left as it is and
    /// returned as it is.
    pub async fn add_devices(&self, devices: &[Device]) -> Result<Vec<Device>> {
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        let column = |f: fn(&Device) -> String| devices.iter().map(f).collect::<Vec<String>>();
        let codes = column(|d| d.code.clone());
        let inserted = self
            .client
            .query(
                &format!(
                    "INSERT INTO devices ({DEVICE_COLUMNS})
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                                          $5::text[])
                     ON CONFLICT (code) DO NOTHING RETURNING code"
                ),
                &[
                    &codes,
                    &column(|d| d.community.clone()),
                    &column(|d| d.device_kind.clone()),
                    &column(|d| d.direction.as_str().to_string()),
                    &column(|d| d.name.clone()),
                ],
            )
            .await
            .map_err(ClusterError::pg("catalogue relayed devices"))?;
        let inserted: std::collections::HashSet<String> =
            inserted.iter().map(|r| r.get(0)).collect();
        let mut stored: Vec<Device> = devices
            .iter()
            .filter(|d| inserted.contains(&d.code))
            .cloned()
            .collect();
        let rest: Vec<String> = codes
            .iter()
            .filter(|c| !inserted.contains(*c))
            .cloned()
            .collect();
        if !rest.is_empty() {
            let rows = self
                .client
                .query(
                    &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE code = ANY($1)"),
                    &[&rest],
                )
                .await
                .map_err(ClusterError::pg("read devices registered meanwhile"))?;
            for r in &rows {
                stored.push(device_of(r)?);
            }
        }
        Ok(stored)
    }

    /// The relays of device `code` (empty: none, or not registered).
    pub async fn relays(&self, code: &str) -> Result<BTreeMap<String, String>> {
        self.relays_as_stored(code)
            .await?
            .map_err(ClusterError::Config)
    }

    /// As [`Meta::relays`], a stored value that does not parse (written by hand) given
    /// as `Ok(Err(why))`: a `PUT` by an unscoped admin may replace it.
    pub async fn relays_as_stored(
        &self,
        code: &str,
    ) -> Result<std::result::Result<BTreeMap<String, String>, String>> {
        let row = self
            .client
            .query_opt(
                "SELECT relays::text FROM devices WHERE code = $1 AND relays IS NOT NULL",
                &[&code],
            )
            .await
            .map_err(ClusterError::pg("read a platform's relays"))?;
        Ok(match row {
            None => Ok(BTreeMap::new()),
            Some(r) => relays_of(code, r.get(0)).map_err(|e| match e {
                ClusterError::Config(why) => why,
                other => other.to_string(),
            }),
        })
    }

    /// Every device's relays, by device code (those with none left out), and the codes
    /// of rows whose relays do not parse (skipped: one bad row, written by hand, must
    /// not keep every other platform's from the ingest nodes).
    pub async fn all_relays(
        &self,
    ) -> Result<(HashMap<String, BTreeMap<String, String>>, Vec<String>)> {
        let rows = self
            .client
            .query(
                "SELECT code, relays::text FROM devices WHERE relays IS NOT NULL",
                &[],
            )
            .await
            .map_err(ClusterError::pg("read platforms' relays"))?;
        let (mut good, mut bad) = (HashMap::new(), Vec::new());
        for r in &rows {
            let code: String = r.get(0);
            match relays_of(&code, r.get(1)) {
                Ok(relays) => {
                    good.insert(code, relays);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a platform's relays skipped");
                    bad.push(code);
                }
            }
        }
        Ok((good, bad))
    }
}

/// A `devices.relays` value as stored (text): `Err(why)` when it is not an object of
/// code prefix → community (written by hand).
pub fn parse_relays(
    code: &str,
    text: Option<&str>,
) -> std::result::Result<BTreeMap<String, String>, String> {
    match text {
        None => Ok(BTreeMap::new()),
        Some(t) => relays_of(code, t.to_string()).map_err(|e| match e {
            ClusterError::Config(why) => why,
            other => other.to_string(),
        }),
    }
}

/// A `devices.relays` value: a JSON object of code prefix → community.
fn relays_of(code: &str, text: String) -> Result<BTreeMap<String, String>> {
    serde_json::from_str(&text).map_err(|e| {
        ClusterError::Config(format!(
            "devices.relays of {code} is not an object of code prefix → community: {e}"
        ))
    })
}
