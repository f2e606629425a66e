//! Upstreams and remote subscriptions of a cluster (`serve`'s `/v1/upstreams` and
//! `/v1/remote-subscriptions`).
//!
//! An **upstream** is a row of `subscriptions` (as on `serve`, a subscription with an
//! upstream part), so its lease, epoch and cursor are the subscriptions' own: the
//! query node holding it keeps the registration there and uploads. Its registration,
//! as that holder last saw it, is a row of `upstream_sessions`, written only under
//! the subscription's lease (same epoch, unexpired) and deleted with it: ingest nodes
//! read the live ones ([`Meta::live_uppers`]: registered, their lease unexpired) to
//! let the upper platform in by `User-Identify` from its address.
//!
//! A **remote subscription** is a row of `remote_subscriptions`: its body (`serve`'s
//! `RemoteSubscription` as JSON), its `SubscribeID`, and a lease taken, renewed,
//! released and fenced as a subscription's (`subscriptions.rs`): the holder places it
//! and asserts it again; its status (`serve`'s `RemoteStatus`) is written with each
//! renewal. Notifications are taken only for the `SubscribeID` of a row that is not
//! being cancelled, from where it was placed ([`Meta::remote_subscription_senders`]).

use crate::error::{ClusterError, Result};
use crate::meta::Meta;

/// An upper platform an upstream is registered with, as its holder wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveUpper {
    /// The upstream's subscription id (an upper's subscriptions record it, and end
    /// with the upstream).
    pub id: String,
    /// The upstream's 视图库 id (its upper platform's `User-Identify`).
    pub server_id: String,
    /// Our id there.
    pub device_id: String,
    /// The communities the upstream reads (`None`: every one).
    pub scope: Option<Vec<String>>,
    /// Where its requests may come from.
    pub addresses: Vec<String>,
}

/// What a holder writes of an upstream's registration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpstreamSession {
    /// `serve`'s `SessionState`, as JSON.
    pub state_json: String,
    pub server_id: Option<String>,
    pub device_id: String,
    pub scope: Option<Vec<String>>,
    pub addresses: Vec<String>,
    pub registered: bool,
}

/// A `remote_subscriptions` row as listed.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteRow {
    pub id: String,
    pub owner: String,
    pub body_json: String,
    /// Who places it now (`None`: nobody, or its lease expired).
    pub holder: Option<String>,
    pub epoch: i64,
    /// `serve`'s `RemoteStatus`, as the holder last wrote it.
    pub status_json: Option<String>,
}

/// A remote subscription's lease, just taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteLease {
    pub id: String,
    pub epoch: i64,
    pub body_json: String,
}

fn ttl(ttl_ms: u64) -> f64 {
    ttl_ms as f64
}

const REMOTE_COLUMNS: &str = "id, owner, body::text,
    CASE WHEN expires_at > now() THEN holder END, epoch, status::text";

fn remote_of(r: &tokio_postgres::Row) -> RemoteRow {
    RemoteRow {
        id: r.get(0),
        owner: r.get(1),
        body_json: r.get(2),
        holder: r.get(3),
        epoch: r.get(4),
        status_json: r.get(5),
    }
}

impl Meta {
    /// Adds upstream `id` (a `subscriptions` row, as [`Meta::add_subscription`]) unless
    /// another upstream has its 视图库 id `server_id` — configured in its body, or
    /// learned at its registration — decided in the insert statement (a unique index
    /// on the configured id: two creates at once on two nodes cannot both win).
    /// `Err(other)`: the upstream that has it.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_upstream(
        &self,
        id: &str,
        owner: &str,
        body_json: &str,
        cursor: &str,
        server_id: Option<&str>,
        max_total: usize,
        max_owned: usize,
    ) -> Result<std::result::Result<crate::subscriptions::Added, String>> {
        use crate::subscriptions::Added;
        let (total, owned) = (
            i64::try_from(max_total).unwrap_or(i64::MAX),
            i64::try_from(max_owned).unwrap_or(i64::MAX),
        );
        let row = self
            .client
            .query_one(
                "WITH counts AS (SELECT count(*) AS total,
                                        count(*) FILTER (WHERE owner = $2) AS owned,
                                        count(*) FILTER (WHERE id = $1) AS there
                                 FROM subscriptions),
                      taken AS (SELECT coalesce(
                                  (SELECT id FROM subscriptions
                                   WHERE body->'upstream'->>'server_id' = $7 LIMIT 1),
                                  (SELECT id FROM upstream_sessions
                                   WHERE server_id = $7 LIMIT 1)) AS other),
                      added AS (INSERT INTO subscriptions (id, owner, body, cursor)
                                SELECT $1, $2, $3::text::jsonb, $4 FROM counts, taken
                                WHERE there = 0 AND total < $5 AND owned < $6
                                  AND other IS NULL
                                ON CONFLICT DO NOTHING RETURNING 1)
                 SELECT (SELECT count(*) FROM added), total, owned, there, other
                 FROM counts, taken",
                &[&id, &owner, &body_json, &cursor, &total, &owned, &server_id],
            )
            .await
            .map_err(ClusterError::pg("add an upstream"))?;
        let (added, t, o, there): (i64, i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let other: Option<String> = row.get(4);
        if added == 1 {
            return Ok(Ok(Added::Added));
        }
        if let Some(other) = other {
            return Ok(Err(other));
        }
        if there > 0 {
            return Ok(Ok(Added::Exists));
        }
        if t >= total || o >= owned {
            return Ok(Ok(Added::Full { total: t >= total }));
        }
        // Refused by the index: another create of that id won meanwhile.
        let winner = match server_id {
            None => None,
            Some(sid) => self
                .client
                .query_opt(
                    "SELECT id FROM subscriptions WHERE body->'upstream'->>'server_id' = $1 LIMIT 1",
                    &[&sid],
                )
                .await
                .map_err(ClusterError::pg("read an upstream's server_id"))?
                .map(|r| r.get::<_, String>(0)),
        };
        Ok(winner.map_or(Ok(Added::Exists), Err))
    }

    /// Writes an upstream's registration under its lease (subscription `id` at
    /// `epoch`, unexpired); false when the lease is not that any more (nothing is
    /// written).
    pub async fn put_upstream_session(
        &self,
        id: &str,
        epoch: i64,
        s: &UpstreamSession,
    ) -> Result<bool> {
        let n = self
            .client
            .execute(
                "INSERT INTO upstream_sessions
                     (id, epoch, state, server_id, device_id, scope, addresses, registered)
                 SELECT $1, $2, $3::text::jsonb, $4, $5, $6, $7, $8 FROM subscriptions
                 WHERE id = $1 AND epoch = $2 AND expires_at > now()
                 ON CONFLICT (id) DO UPDATE SET epoch = EXCLUDED.epoch,
                     state = EXCLUDED.state, server_id = EXCLUDED.server_id,
                     device_id = EXCLUDED.device_id, scope = EXCLUDED.scope,
                     addresses = EXCLUDED.addresses, registered = EXCLUDED.registered",
                &[
                    &id,
                    &epoch,
                    &s.state_json,
                    &s.server_id,
                    &s.device_id,
                    &s.scope,
                    &s.addresses,
                    &s.registered,
                ],
            )
            .await
            .map_err(ClusterError::pg("write an upstream's registration"))?;
        Ok(n == 1)
    }

    /// Every upstream's registration as written (`serve`'s `SessionState` JSON), by
    /// subscription id.
    pub async fn upstream_sessions(&self) -> Result<Vec<(String, String)>> {
        let rows = self
            .client
            // Only what the current holder wrote: a takeover's new holder shows nothing
            // registered until it has registered, not its predecessor's session.
            .query(
                "SELECT u.id, u.state::text FROM upstream_sessions u
                 JOIN subscriptions s ON s.id = u.id AND s.epoch = u.epoch",
                &[],
            )
            .await
            .map_err(ClusterError::pg("read upstreams' registrations"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The upper platforms registered with now: upstreams whose holder wrote them
    /// registered, with a known 视图库 id, under a lease still held.
    pub async fn live_uppers(&self) -> Result<Vec<LiveUpper>> {
        let rows = self
            .client
            .query(
                "SELECT u.server_id, u.device_id, u.scope, u.addresses, u.id
                 FROM upstream_sessions u JOIN subscriptions s ON s.id = u.id
                 WHERE u.registered AND u.server_id IS NOT NULL
                   AND s.epoch = u.epoch AND s.expires_at > now()",
                &[],
            )
            .await
            .map_err(ClusterError::pg("read the live upstreams"))?;
        Ok(rows
            .iter()
            .map(|r| LiveUpper {
                server_id: r.get(0),
                device_id: r.get(1),
                scope: r.get(2),
                addresses: r.get(3),
                id: r.get(4),
            })
            .collect())
    }

    /// Adds a remote subscription; false when one by that id is there.
    pub async fn add_remote_subscription(
        &self,
        id: &str,
        owner: &str,
        body_json: &str,
        subscribe_id: &str,
    ) -> Result<bool> {
        let n = self
            .client
            .execute(
                "INSERT INTO remote_subscriptions (id, owner, body, subscribe_id)
                 VALUES ($1, $2, $3::text::jsonb, $4) ON CONFLICT (id) DO NOTHING",
                &[&id, &owner, &body_json, &subscribe_id],
            )
            .await
            .map_err(ClusterError::pg("add a remote subscription"))?;
        Ok(n == 1)
    }

    /// Every remote subscription, by id.
    pub async fn remote_subscriptions(&self) -> Result<Vec<RemoteRow>> {
        let rows = self
            .client
            .query(
                &format!("SELECT {REMOTE_COLUMNS} FROM remote_subscriptions ORDER BY id"),
                &[],
            )
            .await
            .map_err(ClusterError::pg("read remote subscriptions"))?;
        Ok(rows.iter().map(remote_of).collect())
    }

    /// Replaces a remote subscription's body (to cancel it: its lease ended, the epoch
    /// bumped, so its holder stops and whoever takes it next cancels); whether there
    /// was one.
    pub async fn replace_remote_subscription(&self, id: &str, body_json: &str) -> Result<bool> {
        let n = self
            .client
            .execute(
                "UPDATE remote_subscriptions SET body = $2::text::jsonb,
                     epoch = epoch + 1, holder = NULL, expires_at = now()
                 WHERE id = $1",
                &[&id, &body_json],
            )
            .await
            .map_err(ClusterError::pg("change a remote subscription"))?;
        Ok(n == 1)
    }

    /// Whether the lease on remote subscription `id` is still `epoch`'s and unexpired.
    pub async fn remote_subscription_held(&self, id: &str, epoch: i64) -> Result<bool> {
        let row = self
            .client
            .query_opt(
                "SELECT 1 FROM remote_subscriptions
                 WHERE id = $1 AND epoch = $2 AND expires_at > now()",
                &[&id, &epoch],
            )
            .await
            .map_err(ClusterError::pg("read a remote subscription's lease"))?;
        Ok(row.is_some())
    }

    /// Deletes a remote subscription; whether there was one.
    pub async fn delete_remote_subscription(&self, id: &str) -> Result<bool> {
        let n = self
            .client
            .execute("DELETE FROM remote_subscriptions WHERE id = $1", &[&id])
            .await
            .map_err(ClusterError::pg("delete a remote subscription"))?;
        Ok(n > 0)
    }

    /// Deletes a remote subscription under its lease (its cancel taken by its
    /// holder); whether it was.
    pub async fn forget_remote_subscription(&self, id: &str, epoch: i64) -> Result<bool> {
        let n = self
            .client
            .execute(
                "DELETE FROM remote_subscriptions WHERE id = $1 AND epoch = $2",
                &[&id, &epoch],
            )
            .await
            .map_err(ClusterError::pg("forget a remote subscription"))?;
        Ok(n > 0)
    }

    /// Of `subscribe_ids`, those of remote subscriptions not being cancelled, each
    /// with where it was placed (its URL) and the addresses its holder last wrote
    /// that host resolved to (`status.resolved`).
    pub async fn remote_subscription_senders(
        &self,
        subscribe_ids: &[String],
    ) -> Result<std::collections::HashMap<String, (String, Vec<String>)>> {
        let rows = self
            .client
            .query(
                "SELECT subscribe_id, coalesce(body->>'url', ''),
                        coalesce(ARRAY(SELECT jsonb_array_elements_text(
                            CASE jsonb_typeof(status->'resolved') WHEN 'array'
                                 THEN status->'resolved' ELSE '[]'::jsonb END)), '{}')
                 FROM remote_subscriptions WHERE subscribe_id = ANY($1)
                   AND NOT coalesce((body->>'cancelling')::boolean, false)",
                &[&subscribe_ids],
            )
            .await
            .map_err(ClusterError::pg("read remote subscriptions"))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect())
    }

    /// The remote subscriptions nobody holds now, by id.
    pub async fn free_remote_subscriptions(&self) -> Result<Vec<String>> {
        let rows = self
            .client
            .query(
                "SELECT id FROM remote_subscriptions
                 WHERE holder IS NULL OR expires_at < now() ORDER BY id",
                &[],
            )
            .await
            .map_err(ClusterError::pg("read free remote subscriptions"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Takes remote subscription `id` for `holder` for `ttl_ms` when free or expired,
    /// bumping its epoch; `None` when another holds it (or it is gone).
    pub async fn acquire_remote_subscription(
        &self,
        id: &str,
        holder: &str,
        ttl_ms: u64,
    ) -> Result<Option<RemoteLease>> {
        let row = self
            .client
            .query_opt(
                "UPDATE remote_subscriptions SET holder = $2, epoch = epoch + 1,
                        expires_at = now() + $3 * interval '1 millisecond'
                 WHERE id = $1 AND (holder IS NULL OR expires_at < now())
                 RETURNING epoch, body::text",
                &[&id, &holder, &ttl(ttl_ms)],
            )
            .await
            .map_err(ClusterError::pg("acquire a remote subscription"))?;
        Ok(row.map(|r| RemoteLease {
            id: id.to_string(),
            epoch: r.get(0),
            body_json: r.get(1),
        }))
    }

    /// Renews a lease still held (same epoch, unexpired) and writes its status;
    /// false when it is not held any more.
    pub async fn renew_remote_subscription(
        &self,
        id: &str,
        epoch: i64,
        ttl_ms: u64,
        status_json: &str,
    ) -> Result<bool> {
        let n = self
            .client
            .execute(
                "UPDATE remote_subscriptions
                 SET expires_at = now() + $3 * interval '1 millisecond', status = $4::text::jsonb
                 WHERE id = $1 AND epoch = $2 AND expires_at > now()",
                &[&id, &epoch, &ttl(ttl_ms), &status_json],
            )
            .await
            .map_err(ClusterError::pg("renew a remote subscription"))?;
        Ok(n == 1)
    }

    /// Gives a lease back (a clean stop).
    pub async fn release_remote_subscription(&self, id: &str, epoch: i64) -> Result<()> {
        self.client
            .execute(
                "UPDATE remote_subscriptions SET holder = NULL, expires_at = now()
                 WHERE id = $1 AND epoch = $2",
                &[&id, &epoch],
            )
            .await
            .map_err(ClusterError::pg("release a remote subscription"))?;
        Ok(())
    }
}
