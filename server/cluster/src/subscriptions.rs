//! The cluster's subscriptions: one PostgreSQL table holding what `sightline serve`
//! keeps in its catalog's `subscriptions` and `subscription_cursors` trees, with the
//! lease that lets exactly one query node deliver each.
//!
//! ```sql
//! subscriptions (id text PRIMARY KEY,       -- as serve names it (16 hex, viid-…)
//!                body jsonb,                -- serve's Subscription, as its JSON says it
//!                owner text,                -- the creating key or platform
//!                cursor text,               -- events: a feed cursor (`p:seq.p:seq`);
//!                                           --   alerts: an alert id
//!                holder text, epoch bigint, expires_at timestamptz,   -- the lease
//!                delivered bigint, failures_in_a_row bigint, failures_total bigint,
//!                last_error text, last_success_ms bigint,             -- the status
//!                created_at timestamptz)
//! ```
//!
//! **The lease.** A query node delivers a subscription only while it holds its row's
//! lease: taken ([`Meta::acquire_subscription`]) only when nobody holds it or its
//! holder let it expire, and every take bumps the epoch. Every write a worker makes —
//! renewing, moving the cursor, recording a failure — names the epoch it took and
//! changes nothing when the epoch moved on: a holder stopped past its lease (or
//! killed) and replaced can still POST a batch, but never move the cursor its
//! successor reads from. Replacing a subscription's body (a `/VIID/Subscribes` change)
//! bumps the epoch too and frees the row, so its worker stops at its next write and
//! the body is taken again, fresh, keeping the cursor. Times are the database's.
//! The body is kept as the server's JSON (this crate does not know its shape).

use crate::error::{ClusterError, Result};
use crate::meta::Meta;

/// A `subscriptions` row as listed.
#[derive(Clone, Debug, PartialEq)]
pub struct SubscriptionRow {
    pub id: String,
    /// The subscription, a JSON object as the server wrote it.
    pub body_json: String,
    pub owner: String,
    pub cursor: String,
    /// Who delivers it now (`None`: nobody, or its lease expired).
    pub holder: Option<String>,
    pub epoch: i64,
    pub status: DeliveryStatus,
}

/// How delivery is going, as the holder last wrote it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryStatus {
    pub delivered: u64,
    pub failures_in_a_row: u64,
    pub failures_total: u64,
    pub last_error: Option<String>,
    pub last_success_ms: Option<i64>,
    /// Objects a GA/T 1400 receiver refused for good and that were passed.
    pub refused: u64,
    /// Why the last of them was refused.
    pub last_refusal: Option<String>,
    /// The receiver does not know the subscription: delivery stopped until it is
    /// changed (placed again) or its lease is taken again.
    pub stopped: bool,
}

/// What [`Meta::add_subscription`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    Added,
    /// One by that id is there (nothing written).
    Exists,
    /// Refused: the cluster's bound (`total`) or the owner's is reached.
    Full {
        total: bool,
    },
}

/// A subscription's lease, just taken: its epoch, and the body and cursor to start
/// from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionLease {
    pub id: String,
    pub epoch: i64,
    pub body_json: String,
    pub cursor: String,
}

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

const COLUMNS: &str = "id, body::text, owner, cursor,
    CASE WHEN expires_at > now() THEN holder END, epoch,
    delivered, failures_in_a_row, failures_total, last_error, last_success_ms,
    refused, last_refusal, stopped";

fn row_of(r: &tokio_postgres::Row) -> SubscriptionRow {
    SubscriptionRow {
        id: r.get(0),
        body_json: r.get(1),
        owner: r.get(2),
        cursor: r.get(3),
        holder: r.get(4),
        epoch: r.get(5),
        status: DeliveryStatus {
            delivered: count(r.get(6)),
            failures_in_a_row: count(r.get(7)),
            failures_total: count(r.get(8)),
            last_error: r.get(9),
            last_success_ms: r.get(10),
            refused: count(r.get(11)),
            last_refusal: r.get(12),
            stopped: r.get(13),
        },
    }
}

fn ttl(ttl_ms: u64) -> f64 {
    ttl_ms as f64
}

impl Meta {
    /// Every subscription, by id.
    pub async fn subscriptions(&self) -> Result<Vec<SubscriptionRow>> {
        let rows = self
            .client
            .query(
                &format!("SELECT {COLUMNS} FROM subscriptions ORDER BY id"),
                &[],
            )
            .await
            .map_err(ClusterError::pg("read subscriptions"))?;
        Ok(rows.iter().map(row_of).collect())
    }

    /// Subscription `id`, if there is one.
    pub async fn subscription(&self, id: &str) -> Result<Option<SubscriptionRow>> {
        let row = self
            .client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM subscriptions WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(ClusterError::pg("read a subscription"))?;
        Ok(row.as_ref().map(row_of))
    }

    /// Adds subscription `id` (its cursor `cursor`), or replaces the body of the one
    /// there (its cursor kept: nothing is sent twice or skipped across a change), its
    /// lease ended (the epoch bumped: its worker's next write is refused, and the new
    /// body is taken up by whoever takes the lease next). `owner` of a row there
    /// must be `owner` (else nothing changes); whether it was written.
    pub async fn put_subscription(
        &self,
        id: &str,
        owner: &str,
        body_json: &str,
        cursor: &str,
    ) -> Result<bool> {
        let n = self
            .client
            .execute(
                "INSERT INTO subscriptions (id, owner, body, cursor)
                 VALUES ($1, $2, $3::text::jsonb, $4)
                 ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body,
                     epoch = subscriptions.epoch + 1, holder = NULL, expires_at = now(),
                     stopped = false
                 WHERE subscriptions.owner = EXCLUDED.owner",
                &[&id, &owner, &body_json, &cursor],
            )
            .await
            .map_err(ClusterError::pg("put a subscription"))?;
        Ok(n == 1)
    }

    /// Deletes subscription `id` (its worker's next write is refused); whether there
    /// was one.
    pub async fn delete_subscription(&self, id: &str) -> Result<bool> {
        let n = self
            .client
            .execute("DELETE FROM subscriptions WHERE id = $1", &[&id])
            .await
            .map_err(ClusterError::pg("delete a subscription"))?;
        Ok(n > 0)
    }

    /// Deletes the subscriptions an upper platform made through upstream `upstream`
    /// (their `viid.via_upstream`): their `SubscribeID`s.
    pub async fn end_upper_subscriptions(&self, upstream: &str) -> Result<Vec<String>> {
        let rows = self
            .client
            .query(
                "DELETE FROM subscriptions WHERE body->'viid'->>'via_upstream' = $1
                 RETURNING coalesce(body->'viid'->>'subscribe_id', id)",
                &[&upstream],
            )
            .await
            .map_err(ClusterError::pg("end an upper platform's subscriptions"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The subscriptions nobody delivers now (never taken, released, or whose
    /// holder's lease expired), by id.
    pub async fn free_subscriptions(&self) -> Result<Vec<String>> {
        let rows = self
            .client
            .query(
                "SELECT id FROM subscriptions WHERE holder IS NULL OR expires_at < now()
                 ORDER BY id",
                &[],
            )
            .await
            .map_err(ClusterError::pg("read free subscriptions"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Takes subscription `id` for `holder` for `ttl_ms` when it is free or its lease
    /// expired, bumping its epoch; `None` when another holds it (or it is gone).
    pub async fn acquire_subscription(
        &self,
        id: &str,
        holder: &str,
        ttl_ms: u64,
    ) -> Result<Option<SubscriptionLease>> {
        let row = self
            .client
            .query_opt(
                "UPDATE subscriptions SET holder = $2, epoch = epoch + 1,
                        expires_at = now() + $3 * interval '1 millisecond',
                        failures_in_a_row = 0, stopped = false
                 WHERE id = $1 AND (holder IS NULL OR expires_at < now())
                 RETURNING epoch, body::text, cursor",
                &[&id, &holder, &ttl(ttl_ms)],
            )
            .await
            .map_err(ClusterError::pg("acquire a subscription"))?;
        Ok(row.map(|r| SubscriptionLease {
            id: id.to_string(),
            epoch: r.get(0),
            body_json: r.get(1),
            cursor: r.get(2),
        }))
    }

    /// Extends a lease still held (same epoch); false when it is not any more.
    pub async fn renew_subscription(&self, id: &str, epoch: i64, ttl_ms: u64) -> Result<bool> {
        let n = self
            .client
            .execute(
                "UPDATE subscriptions SET expires_at = now() + $3 * interval '1 millisecond'
                 WHERE id = $1 AND epoch = $2 AND expires_at > now()",
                &[&id, &epoch, &ttl(ttl_ms)],
            )
            .await
            .map_err(ClusterError::pg("renew a subscription"))?;
        Ok(n == 1)
    }

    /// Gives a lease back (a clean stop): free at once for another node.
    pub async fn release_subscription(&self, id: &str, epoch: i64) -> Result<()> {
        self.client
            .execute(
                "UPDATE subscriptions SET holder = NULL, expires_at = now()
                 WHERE id = $1 AND epoch = $2",
                &[&id, &epoch],
            )
            .await
            .map_err(ClusterError::pg("release a subscription"))?;
        Ok(())
    }

    /// The fenced cursor write, after the receiver took a batch of `delivered` items
    /// (0: items skipped, none matching): only while the lease is still `epoch` and
    /// unexpired. False when it is not (the cursor is not moved: the lease's next
    /// holder delivers from where this one last wrote).
    pub async fn advance_subscription(
        &self,
        id: &str,
        epoch: i64,
        cursor: &str,
        delivered: u64,
        at_ms: Option<i64>,
    ) -> Result<bool> {
        self.advance_subscription_past(id, epoch, cursor, delivered, at_ms, 0, None)
            .await
    }

    /// [`Meta::advance_subscription`] past a batch of which the receiver refused
    /// `refused` objects for good (`last_refusal` saying why the last one was): they
    /// count as refused, not delivered. A batch taken clears `stopped`.
    #[allow(clippy::too_many_arguments)]
    pub async fn advance_subscription_past(
        &self,
        id: &str,
        epoch: i64,
        cursor: &str,
        delivered: u64,
        at_ms: Option<i64>,
        refused: u64,
        last_refusal: Option<&str>,
    ) -> Result<bool> {
        let delivered = i64::try_from(delivered).unwrap_or(i64::MAX);
        let refused = i64::try_from(refused).unwrap_or(i64::MAX);
        let n = self
            .client
            .execute(
                "UPDATE subscriptions SET cursor = $3, delivered = delivered + $4,
                        failures_in_a_row = CASE WHEN $4 + $6 > 0 THEN 0 ELSE failures_in_a_row END,
                        last_error = CASE WHEN $4 + $6 > 0 THEN NULL ELSE last_error END,
                        last_success_ms = coalesce($5, last_success_ms),
                        refused = refused + $6, last_refusal = coalesce($7, last_refusal),
                        stopped = CASE WHEN $4 + $6 > 0 THEN false ELSE stopped END
                 WHERE id = $1 AND epoch = $2 AND expires_at > now()",
                &[
                    &id,
                    &epoch,
                    &cursor,
                    &delivered,
                    &at_ms,
                    &refused,
                    &last_refusal,
                ],
            )
            .await
            .map_err(ClusterError::pg("move a subscription's cursor"))?;
        Ok(n == 1)
    }

    /// Records that the receiver does not know the subscription (a failure, and
    /// `stopped`; fenced as [`Meta::advance_subscription`]); false when the lease is not
    /// `epoch`'s any more.
    pub async fn subscription_stopped(&self, id: &str, epoch: i64, error: &str) -> Result<bool> {
        let n = self
            .client
            .execute(
                "UPDATE subscriptions SET failures_in_a_row = failures_in_a_row + 1,
                        failures_total = failures_total + 1, last_error = $3, stopped = true
                 WHERE id = $1 AND epoch = $2 AND expires_at > now()",
                &[&id, &epoch, &error],
            )
            .await
            .map_err(ClusterError::pg("record a stopped delivery"))?;
        Ok(n == 1)
    }

    /// Records a failed delivery (fenced as [`Meta::advance_subscription`]); false
    /// when the lease is not `epoch`'s any more.
    pub async fn subscription_failed(&self, id: &str, epoch: i64, error: &str) -> Result<bool> {
        let n = self
            .client
            .execute(
                "UPDATE subscriptions SET failures_in_a_row = failures_in_a_row + 1,
                        failures_total = failures_total + 1, last_error = $3
                 WHERE id = $1 AND epoch = $2 AND expires_at > now()",
                &[&id, &epoch, &error],
            )
            .await
            .map_err(ClusterError::pg("record a failed delivery"))?;
        Ok(n == 1)
    }

    /// Replaces the body of `owner`'s subscription `id` (its cursor kept, its lease
    /// ended as [`Meta::put_subscription`]'s); false when `owner` has none by that id
    /// (never made, another's, or cancelled meanwhile: nothing is written).
    pub async fn change_subscription(
        &self,
        id: &str,
        owner: &str,
        body_json: &str,
    ) -> Result<bool> {
        let n = self
            .client
            .execute(
                "UPDATE subscriptions SET body = $3::text::jsonb,
                     epoch = epoch + 1, holder = NULL, expires_at = now(), stopped = false
                 WHERE id = $1 AND owner = $2",
                &[&id, &owner, &body_json],
            )
            .await
            .map_err(ClusterError::pg("change a subscription"))?;
        Ok(n == 1)
    }

    /// Adds subscription `id` of `owner` from `cursor`, while the cluster holds
    /// fewer than `max_total` subscriptions and `owner` fewer than `max_owned`
    /// (counted in the insert's own statement: creations at the same instant may
    /// pass the bounds together, by at most their number).
    pub async fn add_subscription(
        &self,
        id: &str,
        owner: &str,
        body_json: &str,
        cursor: &str,
        max_total: usize,
        max_owned: usize,
    ) -> Result<Added> {
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
                      added AS (INSERT INTO subscriptions (id, owner, body, cursor)
                                SELECT $1, $2, $3::text::jsonb, $4 FROM counts
                                WHERE there = 0 AND total < $5 AND owned < $6
                                ON CONFLICT (id) DO NOTHING RETURNING 1)
                 SELECT (SELECT count(*) FROM added), total, owned, there FROM counts",
                &[&id, &owner, &body_json, &cursor, &total, &owned],
            )
            .await
            .map_err(ClusterError::pg("add a subscription"))?;
        let (added, t, o, there): (i64, i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        Ok(if added == 1 {
            Added::Added
        } else if there > 0 || (t < total && o < owned) {
            Added::Exists
        } else if t >= total {
            Added::Full { total: true }
        } else {
            Added::Full { total: false }
        })
    }

    /// Renews every lease of `held` (id, epoch) still held, in one statement: the
    /// ids renewed.
    pub async fn renew_subscriptions(
        &self,
        held: &[(String, i64)],
        ttl_ms: u64,
    ) -> Result<Vec<String>> {
        let (ids, epochs): (Vec<&str>, Vec<i64>) =
            held.iter().map(|(i, e)| (i.as_str(), *e)).unzip();
        let rows = self
            .client
            .query(
                "UPDATE subscriptions s SET expires_at = now() + $3 * interval '1 millisecond'
                 FROM unnest($1::text[], $2::bigint[]) AS h(id, epoch)
                 WHERE s.id = h.id AND s.epoch = h.epoch AND s.expires_at > now()
                 RETURNING s.id",
                &[&ids, &epochs, &ttl(ttl_ms)],
            )
            .await
            .map_err(ClusterError::pg("renew subscriptions"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Gives every lease of `held` (id, epoch) back, in one statement.
    pub async fn release_subscriptions(&self, held: &[(String, i64)]) -> Result<()> {
        let (ids, epochs): (Vec<&str>, Vec<i64>) =
            held.iter().map(|(i, e)| (i.as_str(), *e)).unzip();
        self.client
            .execute(
                "UPDATE subscriptions s SET holder = NULL, expires_at = now()
                 FROM unnest($1::text[], $2::bigint[]) AS h(id, epoch)
                 WHERE s.id = h.id AND s.epoch = h.epoch",
                &[&ids, &epochs],
            )
            .await
            .map_err(ClusterError::pg("release subscriptions"))?;
        Ok(())
    }

    /// Cancels `owner`'s subscription `id` (GA/T 1400 取消订阅) while its row still
    /// holds `body_json` (as read): the row deleted and, in the same statement,
    /// `object` kept in `cancelled_subscribes` for the owner to list; then the owner's
    /// cancelled beyond the `keep` latest forgotten. Whether it was cancelled (false:
    /// not there, or changed since it was read).
    pub async fn cancel_subscription_of(
        &self,
        id: &str,
        owner: &str,
        body_json: &str,
        object_json: &str,
        keep: i64,
    ) -> Result<bool> {
        let n = self
            .client
            .execute(
                "WITH gone AS (DELETE FROM subscriptions
                               WHERE id = $1 AND owner = $2 AND body = $3::text::jsonb
                               RETURNING id)
                 INSERT INTO cancelled_subscribes (owner, id, object)
                 SELECT $2, $1, $4::text::jsonb FROM gone
                 ON CONFLICT (owner, id) DO UPDATE
                 SET object = EXCLUDED.object, cancelled_at = now()",
                &[&id, &owner, &body_json, &object_json],
            )
            .await
            .map_err(ClusterError::pg("cancel a subscription"))?;
        self.client
            .execute(
                "DELETE FROM cancelled_subscribes WHERE owner = $1 AND id NOT IN
                 (SELECT id FROM cancelled_subscribes WHERE owner = $1
                  ORDER BY cancelled_at DESC, id LIMIT $2)",
                &[&owner, &keep],
            )
            .await
            .map_err(ClusterError::pg("forget cancelled subscriptions"))?;
        Ok(n > 0)
    }

    /// Whether `owner` has cancelled subscription `id` kept.
    pub async fn cancelled_subscribe_exists(&self, id: &str, owner: &str) -> Result<bool> {
        let row = self
            .client
            .query_opt(
                "SELECT 1 FROM cancelled_subscribes WHERE owner = $1 AND id = $2",
                &[&owner, &id],
            )
            .await
            .map_err(ClusterError::pg("read a cancelled subscription"))?;
        Ok(row.is_some())
    }

    /// `owner`'s cancelled subscriptions (their objects, as JSON), by id.
    pub async fn cancelled_subscribes(&self, owner: &str) -> Result<Vec<String>> {
        let rows = self
            .client
            .query(
                "SELECT object::text FROM cancelled_subscribes WHERE owner = $1 ORDER BY id",
                &[&owner],
            )
            .await
            .map_err(ClusterError::pg("read cancelled subscriptions"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Forgets `owner`'s cancelled subscription `id` (as [`Meta::cancel_subscription_of`]
    /// names it); whether there was one.
    pub async fn forget_cancelled_subscribe(&self, id: &str, owner: &str) -> Result<bool> {
        let n = self
            .client
            .execute(
                "DELETE FROM cancelled_subscribes WHERE owner = $1 AND id = $2",
                &[&owner, &id],
            )
            .await
            .map_err(ClusterError::pg("forget a cancelled subscription"))?;
        Ok(n > 0)
    }

    /// Deletes `owner`'s subscription `id`; whether there was one.
    pub async fn delete_subscription_of(&self, id: &str, owner: &str) -> Result<bool> {
        let n = self
            .client
            .execute(
                "DELETE FROM subscriptions WHERE id = $1 AND owner = $2",
                &[&id, &owner],
            )
            .await
            .map_err(ClusterError::pg("delete a subscription"))?;
        Ok(n > 0)
    }
}
