//! The directory's rows in PostgreSQL (`Meta::create` makes them with the rest):
//!
//! ```sql
//! directory_days (day PRIMARY KEY, frozen_at, state 'frozen'|'built', through_seqs)
//!     -- a day frozen by the builder: ingest nodes note late events of it
//! late_days (day, partition, noted_at, PRIMARY KEY (day, partition))
//!     -- a partition took an event of a frozen day: always asked for that day
//! directories (kind 'day'|'week'|'month', start_day, days, object_key UNIQUE,
//!              object_bytes, buckets, subjects, built_at, PRIMARY KEY (kind, start_day))
//! directory_builder (id PRIMARY KEY, holder, expires_at)  -- one builder at a time
//! ```

use crate::error::{ClusterError, Result};
use crate::meta::Meta;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS directory_days (
    day integer PRIMARY KEY,
    frozen_at timestamptz NOT NULL DEFAULT now(),
    state text NOT NULL DEFAULT 'frozen' CHECK (state IN ('frozen', 'built')),
    through_seqs bigint[]
);
CREATE TABLE IF NOT EXISTS late_days (
    day integer NOT NULL,
    partition integer NOT NULL,
    noted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, partition)
);
CREATE TABLE IF NOT EXISTS directories (
    kind text NOT NULL CHECK (kind IN ('day', 'week', 'month')),
    start_day integer NOT NULL,
    days integer NOT NULL CHECK (days > 0),
    object_key text NOT NULL UNIQUE,
    object_bytes bigint NOT NULL,
    buckets integer NOT NULL,
    subjects bigint NOT NULL,
    built_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, start_day)
);
CREATE TABLE IF NOT EXISTS directory_builder (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    holder text,
    expires_at timestamptz NOT NULL DEFAULT 'epoch'
);
-- When the builder saw its freeze committed (a statement after the freeze's own: a
-- slow commit does not shorten the wait measured from it).
ALTER TABLE directory_days ADD COLUMN IF NOT EXISTS seen_at timestamptz;
-- The `directory.frozen_view_ms` of each ingest node, as each last said it (every
-- reading of the frozen days): the builder waits the largest, not its own.
CREATE TABLE IF NOT EXISTS directory_view_bounds (
    view_ms bigint PRIMARY KEY,
    seen_at timestamptz NOT NULL DEFAULT now()
);
";

/// A frozen day as the builder sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrozenDay {
    pub day: i32,
    /// Milliseconds since the builder saw its freeze committed (the database's
    /// clock); `None` until it has ([`Meta::saw_freeze`]).
    pub frozen_ms: Option<i64>,
    pub built: bool,
    /// Each partition's last stream sequence once the freeze was seen by every
    /// acknowledging node (`None`: not read yet).
    pub through_seqs: Option<Vec<u64>>,
}

/// A registered directory object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryRow {
    /// `day`, `week` or `month`.
    pub kind: String,
    pub start_day: i32,
    pub days: i32,
    pub object_key: String,
    pub object_bytes: u64,
    pub buckets: u32,
}

impl DirectoryRow {
    /// Whether it covers `day`.
    pub fn covers(&self, day: i32) -> bool {
        day >= self.start_day && i64::from(day) < i64::from(self.start_day) + i64::from(self.days)
    }
}

impl Meta {
    /// The frozen days (built or not), for ingest nodes: an event of one of them is
    /// noted in `late_days` before it is acknowledged.
    pub async fn frozen_days(&self) -> Result<Vec<i32>> {
        let rows = self
            .client
            .query("SELECT day FROM directory_days ORDER BY day", &[])
            .await
            .map_err(ClusterError::pg("read frozen days"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Notes that each `(partition, day)` took an event of a frozen day.
    pub async fn note_late_days(&self, pairs: &[(u32, i32)]) -> Result<()> {
        if pairs.is_empty() {
            return Ok(());
        }
        let partitions: Vec<i32> = pairs.iter().map(|(p, _)| *p as i32).collect();
        let days: Vec<i32> = pairs.iter().map(|(_, d)| *d).collect();
        self.client
            .execute(
                "INSERT INTO late_days (day, partition)
                 SELECT * FROM unnest($1::integer[], $2::integer[]) ON CONFLICT DO NOTHING",
                &[&days, &partitions],
            )
            .await
            .map_err(ClusterError::pg("note late days"))?;
        Ok(())
    }

    /// Takes (or keeps) the builder's lease for `ttl_ms` when it is free, expired or
    /// `holder`'s; whether `holder` has it.
    pub async fn take_directory_builder(&self, holder: &str, ttl_ms: u64) -> Result<bool> {
        let ttl = ttl_ms as f64 / 1000.0;
        let n = self
            .client
            .execute(
                "INSERT INTO directory_builder (id, holder, expires_at)
                 VALUES (true, $1, now() + make_interval(secs => $2))
                 ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder,
                        expires_at = EXCLUDED.expires_at
                 WHERE directory_builder.holder = EXCLUDED.holder
                    OR directory_builder.expires_at < now()",
                &[&holder, &ttl],
            )
            .await
            .map_err(ClusterError::pg("take the directory builder's lease"))?;
        Ok(n == 1)
    }

    /// Freezes `day` (nothing when it is already).
    pub async fn freeze_day(&self, day: i32) -> Result<()> {
        self.client
            .execute(
                "INSERT INTO directory_days (day) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&day],
            )
            .await
            .map_err(ClusterError::pg("freeze a day"))?;
        Ok(())
    }

    /// Records that the builder sees `day`'s freeze committed (once; the wait for the
    /// ingest nodes to see it is measured from here).
    pub async fn saw_freeze(&self, day: i32) -> Result<()> {
        self.client
            .execute(
                "UPDATE directory_days SET seen_at = now() WHERE day = $1 AND seen_at IS NULL",
                &[&day],
            )
            .await
            .map_err(ClusterError::pg("note a freeze seen"))?;
        Ok(())
    }

    /// An ingest node's bound on the age of its frozen days' reading (its
    /// `directory.frozen_view_ms`), said at each reading.
    pub async fn note_view_bound(&self, view_ms: u64) -> Result<()> {
        let view_ms = i64::try_from(view_ms).unwrap_or(i64::MAX);
        self.client
            .execute(
                "INSERT INTO directory_view_bounds (view_ms) VALUES ($1)
                 ON CONFLICT (view_ms) DO UPDATE SET seen_at = now()",
                &[&view_ms],
            )
            .await
            .map_err(ClusterError::pg("note a view bound"))?;
        Ok(())
    }

    /// The largest bound an ingest node said in the last day (0: none said).
    pub async fn largest_view_bound(&self) -> Result<u64> {
        let row = self
            .client
            .query_one(
                "SELECT coalesce(max(view_ms), 0) FROM directory_view_bounds
                 WHERE seen_at > now() - interval '1 day'",
                &[],
            )
            .await
            .map_err(ClusterError::pg("read the view bounds"))?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    /// Every frozen day, oldest first.
    pub async fn directory_days(&self) -> Result<Vec<FrozenDay>> {
        let rows = self
            .client
            .query(
                "SELECT day, (extract(epoch FROM (now() - seen_at)) * 1000)::bigint,
                        state = 'built', through_seqs
                 FROM directory_days ORDER BY day",
                &[],
            )
            .await
            .map_err(ClusterError::pg("read frozen days"))?;
        rows.iter()
            .map(|r| {
                let seqs: Option<Vec<i64>> = r.get(3);
                Ok(FrozenDay {
                    day: r.get(0),
                    frozen_ms: r.get(1),
                    built: r.get(2),
                    through_seqs: seqs
                        .map(|s| {
                            s.into_iter()
                                .map(|v| u64::try_from(v).map_err(|_| bad_row("through_seqs")))
                                .collect::<Result<Vec<u64>>>()
                        })
                        .transpose()?,
                })
            })
            .collect()
    }

    /// Records the partitions' last stream sequences `seqs` for frozen `day`.
    pub async fn set_through_seqs(&self, day: i32, seqs: &[u64]) -> Result<()> {
        let seqs: Vec<i64> = seqs.iter().map(|&s| s as i64).collect();
        self.client
            .execute(
                "UPDATE directory_days SET through_seqs = $2 WHERE day = $1",
                &[&day, &seqs],
            )
            .await
            .map_err(ClusterError::pg("record a frozen day's sequences"))?;
        Ok(())
    }

    /// Every partition's checkpoint (the last stream sequence its commits cover), by
    /// partition.
    pub async fn checkpoints(&self) -> Result<Vec<u64>> {
        let rows = self
            .client
            .query("SELECT checkpoint_seq FROM leases ORDER BY partition", &[])
            .await
            .map_err(ClusterError::pg("read checkpoints"))?;
        rows.iter()
            .map(|r| u64::try_from(r.get::<_, i64>(0)).map_err(|_| bad_row("checkpoint_seq")))
            .collect()
    }

    /// The days (shard spans) that have committed segments and no directory.
    pub async fn days_without_directory(&self) -> Result<Vec<i32>> {
        let rows = self
            .client
            .query(
                "SELECT DISTINCT span FROM segments s
                 WHERE NOT EXISTS (SELECT 1 FROM directory_days d
                                   WHERE d.day = s.span AND d.state = 'built')
                 ORDER BY span",
                &[],
            )
            .await
            .map_err(ClusterError::pg("list days without a directory"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Registers a directory object and marks its days built, in one transaction.
    pub async fn register_directory(&mut self, row: &DirectoryRow, subjects: u64) -> Result<()> {
        let tx = self
            .client
            .transaction()
            .await
            .map_err(ClusterError::pg("begin register directory"))?;
        tx.execute(
            "INSERT INTO directories (kind, start_day, days, object_key, object_bytes, buckets, subjects)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &row.kind,
                &row.start_day,
                &row.days,
                &row.object_key,
                &(row.object_bytes as i64),
                &(row.buckets as i32),
                &(subjects as i64),
            ],
        )
        .await
        .map_err(ClusterError::pg("register a directory"))?;
        if row.kind == "day" {
            tx.execute(
                "UPDATE directory_days SET state = 'built' WHERE day = $1",
                &[&row.start_day],
            )
            .await
            .map_err(ClusterError::pg("mark a day built"))?;
        }
        tx.commit()
            .await
            .map_err(ClusterError::pg("commit register directory"))
    }

    /// What a subject query over days `first ..= last` needs, in one statement: the
    /// directories overlapping them and the partitions noted late on any of them.
    pub async fn directories_for(
        &self,
        first: i32,
        last: i32,
    ) -> Result<(Vec<DirectoryRow>, Vec<u32>)> {
        let rows = self
            .client
            .query(
                "SELECT kind, start_day, days, object_key, object_bytes, buckets, NULL::integer
                 FROM directories WHERE start_day <= $2 AND start_day + days > $1
                 UNION ALL
                 SELECT DISTINCT 'late', 0, 0, '', 0::bigint, 0, partition
                 FROM late_days WHERE day BETWEEN $1 AND $2",
                &[&first, &last],
            )
            .await
            .map_err(ClusterError::pg("read directories"))?;
        let (mut dirs, mut late) = (Vec::new(), Vec::new());
        for r in &rows {
            let kind: String = r.get(0);
            if kind == "late" {
                let p: i32 = r.get(6);
                late.push(u32::try_from(p).map_err(|_| bad_row("late_days.partition"))?);
                continue;
            }
            dirs.push(DirectoryRow {
                kind,
                start_day: r.get(1),
                days: r.get(2),
                object_key: r.get(3),
                object_bytes: u64::try_from(r.get::<_, i64>(4))
                    .map_err(|_| bad_row("directories.object_bytes"))?,
                buckets: u32::try_from(r.get::<_, i32>(5))
                    .map_err(|_| bad_row("directories.buckets"))?,
            });
        }
        Ok((dirs, late))
    }

    /// Every registered directory of `kind` (a roll-up reads its days').
    pub async fn directories_of(&self, kind: &str) -> Result<Vec<DirectoryRow>> {
        let rows = self
            .client
            .query(
                "SELECT kind, start_day, days, object_key, object_bytes, buckets
                 FROM directories WHERE kind = $1 ORDER BY start_day",
                &[&kind],
            )
            .await
            .map_err(ClusterError::pg("list directories"))?;
        rows.iter()
            .map(|r| {
                Ok(DirectoryRow {
                    kind: r.get(0),
                    start_day: r.get(1),
                    days: r.get(2),
                    object_key: r.get(3),
                    object_bytes: u64::try_from(r.get::<_, i64>(4))
                        .map_err(|_| bad_row("directories.object_bytes"))?,
                    buckets: u32::try_from(r.get::<_, i32>(5))
                        .map_err(|_| bad_row("directories.buckets"))?,
                })
            })
            .collect()
    }

    /// Drops the directories, frozen days and late notes of days before `day` (a
    /// directory is dropped once any of its days is), releasing their objects
    /// (`released_objects`: the janitor removes them after their age). Returns the
    /// keys released.
    pub async fn drop_directories_before(&mut self, day: i32) -> Result<Vec<String>> {
        let tx = self
            .client
            .transaction()
            .await
            .map_err(ClusterError::pg("begin drop directories"))?;
        let rows = tx
            .query(
                "DELETE FROM directories WHERE start_day < $1 RETURNING object_key",
                &[&day],
            )
            .await
            .map_err(ClusterError::pg("drop directories"))?;
        let keys: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        tx.execute(
            "INSERT INTO released_objects (object_key, released_at)
             SELECT unnest($1::text[]), now() ON CONFLICT DO NOTHING",
            &[&keys],
        )
        .await
        .map_err(ClusterError::pg("release directories"))?;
        tx.execute("DELETE FROM directory_days WHERE day < $1", &[&day])
            .await
            .map_err(ClusterError::pg("drop frozen days"))?;
        tx.execute("DELETE FROM late_days WHERE day < $1", &[&day])
            .await
            .map_err(ClusterError::pg("drop late days"))?;
        tx.commit()
            .await
            .map_err(ClusterError::pg("commit drop directories"))?;
        Ok(keys)
    }
}

fn bad_row(what: &str) -> ClusterError {
    ClusterError::Catalog {
        partition: 0,
        reason: format!("{what} holds an impossible value"),
    }
}
