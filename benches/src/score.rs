//! Scores the investigator queries against the answers the traffic model planted
//! ([`Truth`]): not how fast they are, but whether they find what is there.

use std::collections::HashSet;

use serde::Serialize;
use sightline_query::{
    collision, cooccurrence, nocturnal, Collision, Condition, Cooccurrence, NocturnalQuery, Place,
    QueryContext, Scope,
};
use sightline_storage::Kind;
use sightline_synth::{Truth, DAY};

/// Precision and recall of one query against its planted answers.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Score {
    /// Planted answers, answers given, and planted answers among those given.
    pub planted: usize,
    pub answered: usize,
    pub found: usize,
    pub precision: f64,
    pub recall: f64,
}

impl Score {
    fn of(planted: usize, answered: usize, found: usize) -> Score {
        Score {
            planted,
            answered,
            found,
            precision: match answered {
                0 => 1.0,
                n => found as f64 / n as f64,
            },
            recall: match planted {
                0 => 1.0,
                n => found as f64 / n as f64,
            },
        }
    }
}

/// A companion is a candidate seen with the target this many times more often than
/// chance would put it there (co-occurrence's `lift`); below it, repeated passes are
/// what a busy gate produces anyway.
pub const MIN_LIFT: f64 = 10.0;

#[derive(Clone, Debug, Serialize)]
pub struct Scores {
    /// Co-occurrence of each leader (60 s, same device, at least 3 passes together,
    /// lift at least [`MIN_LIFT`]): the candidates it returns against the follower.
    pub companions: Score,
    /// Person–vehicle association of each plate (faces within 30 s at the same
    /// community, at least 3 times): the top candidate against the driver.
    pub pairs: Score,
    /// Nocturnal faces (at least 5 night sightings, none by day).
    pub nocturnal: Score,
    /// Collision of each set's three conditions: the vehicles in all three.
    pub collisions: Score,
}

/// Runs the queries over `[from_ms, from_ms + days)` and scores them. Pairs are scored
/// on at most `max_pairs` of them (each is one query).
pub fn score(
    ctx: &QueryContext<'_>,
    truth: &Truth,
    from_ms: i64,
    days: u32,
    max_pairs: usize,
) -> sightline_query::Result<Scores> {
    let to_ms = from_ms + days as i64 * DAY;
    let cooc = |subject: &str, scope, candidate_kind, window_ms| Cooccurrence {
        kind: Kind::Vehicle,
        subject: subject.to_string(),
        from_ms,
        to_ms,
        communities: None,
        window_ms,
        min_count: 3,
        scope,
        candidate_kind,
        dedup_gap_ms: None,
        limit: 100,
    };
    let (mut answered, mut found) = (0, 0);
    for c in &truth.companions {
        let got = cooccurrence(
            ctx,
            &cooc(&c.leader, Scope::Device, Some(Kind::Vehicle), 60_000),
        )?;
        let companions: Vec<_> = got.iter().filter(|x| x.lift >= MIN_LIFT).collect();
        answered += companions.len();
        found += companions
            .iter()
            .filter(|x| x.subject == c.follower)
            .count();
    }
    let companions = Score::of(truth.companions.len(), answered, found);

    let pairs_asked = &truth.pairs[..truth.pairs.len().min(max_pairs)];
    let (mut answered, mut found) = (0, 0);
    for p in pairs_asked {
        let got = cooccurrence(
            ctx,
            &cooc(&p.plate, Scope::Community, Some(Kind::Face), 30_000),
        )?;
        if let Some(top) = got.first() {
            answered += 1;
            found += usize::from(top.subject == p.face);
        }
    }
    let pairs = Score::of(pairs_asked.len(), answered, found);

    let mut q = NocturnalQuery::new(Kind::Face, from_ms, to_ms);
    q.min_night = 5;
    q.max_day = 0;
    q.limit = 10_000;
    let night: HashSet<String> = nocturnal(ctx, &q)?.into_iter().map(|n| n.subject).collect();
    let planted: HashSet<&str> = truth.nocturnal.iter().map(String::as_str).collect();
    let nocturnal = Score::of(
        planted.len(),
        night.len(),
        night
            .iter()
            .filter(|s| planted.contains(s.as_str()))
            .count(),
    );

    let (mut answered, mut found, mut planted) = (0, 0, 0);
    for set in &truth.collisions {
        let conditions = set
            .conditions
            .iter()
            .map(|(community, from, to)| Condition {
                place: Place::Communities(vec![community.clone()]),
                from_ms: *from,
                to_ms: *to,
            })
            .collect::<Vec<_>>();
        let hits = collision(
            ctx,
            &Collision {
                kind: Kind::Vehicle,
                min_conditions: conditions.len(),
                conditions,
                limit: 1000,
            },
        )?;
        planted += set.subjects.len();
        answered += hits.len();
        found += hits
            .iter()
            .filter(|h| set.subjects.contains(&h.subject))
            .count();
    }
    let collisions = Score::of(planted, answered, found);
    Ok(Scores {
        companions,
        pairs,
        nocturnal,
        collisions,
    })
}
