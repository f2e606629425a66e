//! The alerts watchlists raise: one PostgreSQL table the ingest nodes write (before
//! they answer the ingest that raised them) and the query nodes page through.
//!
//! ```sql
//! alerts (id bigserial PRIMARY KEY,     -- the cursor of GET /v1/alerts
//!         watchlist text, community text,
//!         msg_id text,                  -- the event's Nats-Msg-Id
//!         body text,                    -- the alert as `serve` answers it, but its id
//!         raised_at timestamptz,
//!         UNIQUE (watchlist, msg_id))   -- an event re-sent raises its alerts once
//! ```
//!
//! **Ids in commit order.** Readers page by id (`after`), so an alert must never
//! become visible below an id a reader has already passed. Several ingest nodes insert
//! at once, and a sequence hands out ids in the order they are asked for, not the
//! order their transactions commit; so every insert takes one transaction-scoped
//! advisory lock first ([`ALERTS_LOCK`]) and ids are drawn under it: a later id is
//! committed later. Alerts are rare (only matches are written), so serialising their
//! writes costs ingest nothing measurable.

use crate::error::{ClusterError, Result};
use crate::meta::Meta;

/// The advisory lock alert inserts take (any constant no other statement uses).
pub const ALERTS_LOCK: i64 = 0x5349_4748_544c_414c; // "SIGHTLAL"

/// An alert to record.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAlert {
    pub watchlist: String,
    pub community: String,
    /// The raising event's `Nats-Msg-Id` (`payload::message_id`).
    pub msg_id: String,
    /// The alert's JSON without its id.
    pub body: String,
}

impl Meta {
    /// Records `alerts` in their order, in one statement (so all or none); an alert of
    /// a (watchlist, message id) already recorded is skipped. How many were new.
    pub async fn add_alerts(&self, alerts: &[NewAlert]) -> Result<u64> {
        let col = |f: fn(&NewAlert) -> &String| -> Vec<&str> {
            alerts.iter().map(|a| f(a).as_str()).collect()
        };
        let (w, c, m, b) = (
            col(|a| &a.watchlist),
            col(|a| &a.community),
            col(|a| &a.msg_id),
            col(|a| &a.body),
        );
        // The lock is a materialised CTE (it is volatile), joined to every row, so it
        // is held before the first id is drawn, until the statement's commit.
        self.client
            .execute(
                "WITH lock AS (SELECT pg_advisory_xact_lock($5)),
                 new AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                         WITH ORDINALITY AS n(watchlist, community, msg_id, body, ord))
                 INSERT INTO alerts (watchlist, community, msg_id, body)
                 SELECT new.watchlist, new.community, new.msg_id, new.body
                 FROM new, lock ORDER BY new.ord
                 ON CONFLICT (watchlist, msg_id) DO NOTHING",
                &[&w, &c, &m, &b, &ALERTS_LOCK],
            )
            .await
            .map_err(ClusterError::pg("record alerts"))
    }

    /// Alerts after id `after`, at most `limit`, in order, of `communities` only when
    /// given: (id, body) each.
    pub async fn alerts_after(
        &self,
        after: u64,
        limit: usize,
        communities: Option<&[String]>,
    ) -> Result<Vec<(u64, String)>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .client
            .query(
                "SELECT id, body FROM alerts
                 WHERE id > $1 AND ($2::text[] IS NULL OR community = ANY($2))
                 ORDER BY id LIMIT $3",
                &[&after, &communities, &limit],
            )
            .await
            .map_err(ClusterError::pg("read alerts"))?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, i64>(0) as u64, r.get(1)))
            .collect())
    }
}
