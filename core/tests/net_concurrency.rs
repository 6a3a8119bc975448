//! 32 clients (half over tcp://, half over ipc://) mix reads, multi-request transactions,
//! rollbacks and autocommit writes against one server. Each client keeps its own counters; at
//! the end the database must hold exactly what the clients saw acknowledged: no lost and no
//! duplicated commit, and no session left open. Runs ~5 s, or 30 s with ORMDB_NET_SOAK=1.

mod net_support;
use net_support::*;

use std::time::{Duration, Instant};

use ormdb::net::{Client, ClientOptions};
use ormdb::{Params, SqlState, Value};

const CLIENTS: i64 = 32;

fn duration() -> Duration {
    if std::env::var("ORMDB_NET_SOAK").as_deref() == Ok("1") {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(5)
    }
}

fn p(v: &[i64]) -> Params {
    Params::Positional(v.iter().map(|i| Value::Integer(*i)).collect())
}

#[derive(Debug, Default)]
struct Tally {
    committed: i64,
    rolled_back: i64,
    autocommit: i64,
    reads: i64,
    conflicts: i64,
}

/// One client's loop; returns what it knows it committed.
async fn client_loop(c: Client, me: i64, until: Instant) -> Tally {
    let mut t = Tally::default();
    let mut step = 0u64;
    let (insert_hit, _) = c
        .prepare("INSERT INTO hits (client, seq) VALUES (?, ?)")
        .await
        .unwrap();
    while Instant::now() < until {
        step += 1;
        match step % 4 {
            // A transaction over several requests: bump the counter and log the step.
            0 | 1 => {
                let s = c.begin().await.unwrap();
                let seq = t.committed + 1;
                let r = async {
                    c.sql_in(
                        s,
                        "UPDATE counters SET n = n + 1 WHERE client = ?",
                        p(&[me]),
                    )
                    .await?;
                    c.sql_in(
                        s,
                        "INSERT INTO ops (client, seq) VALUES (?, ?)",
                        p(&[me, seq]),
                    )
                    .await?;
                    c.commit(s).await
                }
                .await;
                match r {
                    Ok(()) => t.committed += 1,
                    Err(e) if e.state == SqlState::SerializationFailure => {
                        t.conflicts += 1;
                        let _ = c.rollback(s).await; // may already be gone after a failed commit
                    }
                    Err(e) => panic!("client {me}: {e}"),
                }
            }
            // Started, then rolled back: must leave no trace.
            2 => {
                let s = c.begin().await.unwrap();
                c.sql_in(
                    s,
                    "UPDATE counters SET n = n + 1000 WHERE client = ?",
                    p(&[me]),
                )
                .await
                .unwrap();
                c.sql_in(s, "INSERT INTO ops (client, seq) VALUES (?, -1)", p(&[me]))
                    .await
                    .unwrap();
                c.rollback(s).await.unwrap();
                t.rolled_back += 1;
            }
            // Autocommit write through a prepared statement, then a read of our own state.
            _ => {
                t.autocommit += 1;
                c.execute_prepared(0, insert_hit, p(&[me, t.autocommit]))
                    .await
                    .unwrap();
                let r = c
                    .sql("SELECT n FROM counters WHERE client = ?", p(&[me]))
                    .await
                    .unwrap();
                assert_eq!(
                    r.rows,
                    vec![vec![Value::Integer(t.committed)]],
                    "client {me} reads its own commits"
                );
                t.reads += 1;
            }
        }
    }
    t
}

#[test]
fn thirty_two_clients_mixing_reads_and_writes() {
    let server = Server::start(&["--session-idle-timeout", "30"]);
    let rt = runtime();
    let tallies = rt.block_on(async {
        let setup = Client::connect(&server.tcp).await.unwrap();
        setup
            .sql(
                "CREATE TABLE counters (client INTEGER PRIMARY KEY, n INTEGER NOT NULL);
                 CREATE TABLE ops (id INTEGER PRIMARY KEY, client INTEGER NOT NULL, seq INTEGER NOT NULL);
                 CREATE TABLE hits (id INTEGER PRIMARY KEY, client INTEGER NOT NULL, seq INTEGER NOT NULL);",
                Params::None,
            )
            .await
            .unwrap();
        for me in 0..CLIENTS {
            setup
                .sql("INSERT INTO counters (client, n) VALUES (?, 0)", p(&[me]))
                .await
                .unwrap();
        }
        let until = Instant::now() + duration();
        let mut tasks = Vec::new();
        for me in 0..CLIENTS {
            let url = if me % 2 == 0 {
                server.tcp.clone()
            } else {
                server.ipc.clone()
            };
            let opts = ClientOptions {
                pool_size: 1,
                ..Default::default()
            };
            let c = Client::connect_with(&url, opts).await.unwrap();
            tasks.push(tokio::spawn(client_loop(c, me, until)));
        }
        let mut tallies = Vec::new();
        for t in tasks {
            tallies.push(t.await.unwrap());
        }

        // The database agrees with every client.
        for (me, t) in tallies.iter().enumerate() {
            let me = me as i64;
            let n = setup
                .sql("SELECT n FROM counters WHERE client = ?", p(&[me]))
                .await
                .unwrap();
            assert_eq!(n.rows, vec![vec![Value::Integer(t.committed)]], "client {me}: {t:?}");
            let seqs = setup
                .sql("SELECT seq FROM ops WHERE client = ? ORDER BY seq", p(&[me]))
                .await
                .unwrap();
            let want: Vec<Vec<Value>> = (1..=t.committed).map(|s| vec![Value::Integer(s)]).collect();
            assert_eq!(seqs.rows, want, "client {me}: every commit exactly once");
            let hits = setup
                .sql(
                    "SELECT count(*), count(DISTINCT seq) FROM hits WHERE client = ?",
                    p(&[me]),
                )
                .await
                .unwrap();
            assert_eq!(
                hits.rows,
                vec![vec![Value::Integer(t.autocommit), Value::Integer(t.autocommit)]],
                "client {me}"
            );
        }
        let metrics = setup.metrics().await.unwrap();
        assert!(metrics.contains("ormdb_server_open_sessions 0"), "no stuck session");
        tallies
    });
    let total: i64 = tallies.iter().map(|t| t.committed + t.autocommit).sum();
    let reads: i64 = tallies.iter().map(|t| t.reads).sum();
    let conflicts: i64 = tallies.iter().map(|t| t.conflicts).sum();
    eprintln!(
        "{CLIENTS} clients over {:?}: {total} commits, {reads} reads, {conflicts} conflicts",
        duration()
    );
    assert!(tallies
        .iter()
        .all(|t| t.committed > 0 && t.reads > 0 && t.rolled_back > 0));
}

/// A query long enough to keep a request thread busy for a while (a cross join of a 1,500-row
/// recursive CTE with itself: 2.25 million rows counted).
const LONG_QUERY: &str =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 1500) \
                          SELECT count(*) FROM c a, c b";

/// Long queries that keep every request thread busy hold up a short write only briefly: the
/// pool starts another thread (shown in the metrics) instead of queueing the write behind them.
#[test]
fn long_queries_on_every_request_thread_do_not_hold_up_a_short_write() {
    let server = Server::start(&["--threads", "2"]);
    let rt = runtime();
    rt.block_on(async {
        let c = Client::connect(&server.ipc).await.unwrap();
        c.sql("CREATE TABLE t (id INTEGER PRIMARY KEY)", Params::None)
            .await
            .unwrap();
        // In sessions, so that they run on request threads (a SELECT outside one may be
        // answered on NNG's thread).
        let mut sessions = Vec::new();
        for _ in 0..4 {
            sessions.push(c.begin().await.unwrap());
        }
        let started = Instant::now();
        let r = c
            .sql_in(sessions[0], LONG_QUERY, Params::None)
            .await
            .unwrap();
        assert_eq!(r.rows, vec![vec![Value::Integer(1500 * 1500)]]);
        let alone = started.elapsed();
        let text = c.metrics().await.unwrap();
        assert_eq!(metric(&text, "ormdb_server_request_threads"), 2, "{text}");

        // Four at once on two threads, then a write.
        let mut long = Vec::new();
        for &s in &sessions {
            let c = c.clone();
            long.push(tokio::spawn(async move {
                c.sql_in(s, LONG_QUERY, Params::None).await.unwrap();
                c.rollback(s).await.unwrap();
            }));
        }
        tokio::time::sleep(alone / 5).await;
        let write = Instant::now();
        c.sql("INSERT INTO t (id) VALUES (1)", Params::None)
            .await
            .unwrap();
        let took = write.elapsed();
        let text = c.metrics().await.unwrap();
        for t in long {
            t.await.unwrap();
        }
        eprintln!("a write behind four long queries on two threads: {took:?} (one query alone: {alone:?})");
        assert!(
            took < alone / 2,
            "the write took {took:?} behind long queries that take {alone:?} alone"
        );
        assert!(metric(&text, "ormdb_server_request_threads") > 2, "{text}");
    });
}
