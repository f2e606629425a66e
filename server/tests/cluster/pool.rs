//! The node's bounded PostgreSQL pool (`postgres_pool_size`, `postgres_wait_ms`):
//! under concurrent catalog requests a query node never opens more connections than
//! its bound, and a request that waits past `postgres_wait_ms` for one answers 503
//! naming the bound, not a hang.

use std::time::{Duration, Instant};

use super::{ask_as, Env, SERIAL};

/// The connections of node `name` open now, as PostgreSQL sees them
/// (`application_name` = `sightline <owner>`).
fn connections_of(env: &Env, name: &str) -> usize {
    env.pg
        .psql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sightline {name}'"
        ))
        .parse()
        .unwrap()
}

/// A query node with a pool of 2 (waits of 500 ms): while a test session holds
/// `communities` locked for 2 s, twelve concurrent `GET /v1/communities` take the
/// two connections (their statements wait on the lock) or wait for one: those past
/// the wait answer 503 `storage_unavailable` naming `postgres_pool_size`, within a
/// second; PostgreSQL never counts more than 2 connections of the node; the two
/// that had a connection answer 200 once the lock goes, and the node answers as
/// before afterwards.
#[test]
fn a_query_node_never_opens_more_connections_than_its_pool_and_answers_503_past_the_wait() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    let token = "sl_cfg_pool_test_token_of_32_chars_at_least";
    env.top_extra = "postgres_pool_size = 2\npostgres_wait_ms = 500".into();
    env.query_extra = format!(
        "replicas = 0\ntoken_sha256 = [\"{}\"]",
        sightline_server::auth::sha256_hex(token.as_bytes())
    );
    let (q1, qa) = env.query_node("query-1");
    env.pg
        .psql("INSERT INTO communities (code, name) VALUES ('3205080001', 'community one')");
    let (status, v) = ask_as(qa, Some(token), "GET", "/v1/communities", "");
    assert_eq!(status, 200, "{v}");

    // A session of the test's own holds the table locked for 2 s.
    let pg_port = env.pg.port;
    let locker = std::thread::spawn(move || {
        std::process::Command::new(sightline_testkit::cluster::pg_bin("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &pg_port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-Atc"])
            .arg(
                "BEGIN; LOCK TABLE communities IN ACCESS EXCLUSIVE MODE; \
                 SELECT pg_sleep(2); COMMIT;",
            )
            .output()
            .unwrap()
    });
    assert!(
        sightline_testkit::wait_until(Duration::from_secs(10), || {
            env
            .pg
            .psql("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'communities' AND l.mode = 'AccessExclusiveLock' AND l.granted")
            == "1"
        }),
        "the lock was not taken"
    );
    let asking: Vec<_> = (0..12)
        .map(|_| {
            let token = token.to_string();
            std::thread::spawn(move || {
                let started = Instant::now();
                let answer = ask_as(qa, Some(&token), "GET", "/v1/communities", "");
                (answer, started.elapsed())
            })
        })
        .collect();
    let mut most = 0;
    while !asking.iter().all(|t| t.is_finished()) {
        most = most.max(connections_of(&env, "query-1"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let answers: Vec<_> = asking.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(locker.join().unwrap().status.success());
    eprintln!("at most {most} connections of query-1 seen; answers: {answers:?}");
    assert!(
        most <= 2,
        "query-1 held {most} connections with a pool of 2"
    );
    let refused: Vec<_> = answers.iter().filter(|((s, _), _)| *s == 503).collect();
    let served = answers.iter().filter(|((s, _), _)| *s == 200).count();
    assert_eq!(refused.len() + served, answers.len(), "{answers:?}");
    assert!(refused.len() >= 8, "{answers:?}");
    assert!(served >= 1, "{answers:?}");
    for ((_, body), took) in &refused {
        assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("postgres_pool_size"), "{message}");
        assert!(*took < Duration::from_millis(1_500), "a 503 after {took:?}");
    }
    // The node as before once the lock went.
    let (status, v) = ask_as(qa, Some(token), "GET", "/v1/communities", "");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["communities"].as_array().map(Vec::len), Some(1), "{v}");
    assert!(connections_of(&env, "query-1") <= 2);
    drop(q1);
}
