//! Commits over the network under durability `full`, where the server answers a commit once its
//! log record is synced without keeping a request thread waiting for it: every acknowledged
//! commit survives a kill -9 of the server, nothing is acknowledged twice or lost, and a request
//! of several statements still reads its own writes.

mod net_support;
use net_support::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use ormdb::ir::protocol::Body;
use ormdb::net::{BlockingClient, ClientOptions};
use ormdb::{Database, Options, Params, Value};

fn p(v: &[i64]) -> Params {
    Params::Positional(v.iter().map(|i| Value::Integer(*i)).collect())
}

fn client(url: &str) -> BlockingClient {
    let opts = ClientOptions {
        pool_size: 1,
        request_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    BlockingClient::connect_with(url, opts).unwrap()
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Integer(i) => *i,
        other => panic!("not an integer: {other:?}"),
    }
}

/// A writer's number and its write's number.
type Write = (i64, i64);

/// 12 writers (autocommit prepared inserts, and every fourth write a two-row transaction over
/// several requests) on two request threads for 1.5 s, then `end` stops the server while they
/// write. Returns what the writers saw acknowledged and what the reopened database holds.
fn write_then(end: impl FnOnce(&mut Server)) -> (Vec<Write>, Vec<Write>) {
    let mut server = Server::start(&["--threads", "2"]);
    let setup = client(&server.ipc);
    setup
        .sql_in(
            0,
            "CREATE TABLE acks (id INTEGER PRIMARY KEY, w INTEGER NOT NULL, n INTEGER NOT NULL)",
            Params::None,
        )
        .unwrap();
    let (stmt, _) = setup
        .prepare("INSERT INTO acks (w, n) VALUES (?, ?)")
        .unwrap();
    let stop = AtomicBool::new(false);
    let acked: Mutex<Vec<(i64, i64)>> = Mutex::new(Vec::new());
    let (tcp, ipc) = (server.tcp.clone(), server.ipc.clone());
    std::thread::scope(|s| {
        for w in 0..12i64 {
            let (stop, acked) = (&stop, &acked);
            let url = if w % 2 == 0 { tcp.clone() } else { ipc.clone() };
            s.spawn(move || {
                let c = client(&url);
                let mut n = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let ok = if n % 4 == 3 {
                        // Two rows in one transaction: both or neither.
                        (|| {
                            let sid = c.begin()?;
                            c.sql_in(sid, "INSERT INTO acks (w, n) VALUES (?, ?)", p(&[w, n]))?;
                            c.sql_in(sid, "INSERT INTO acks (w, n) VALUES (?, ?)", p(&[w, n + 1]))?;
                            c.commit(sid)
                        })()
                        .map(|_| 2)
                    } else {
                        c.execute_prepared(0, stmt, p(&[w, n])).map(|_| 1)
                    };
                    match ok {
                        Ok(k) => {
                            let mut a = acked.lock().unwrap();
                            for i in 0..k {
                                a.push((w, n + i));
                            }
                            n += k;
                        }
                        // The server is gone.
                        Err(_) => break,
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(1500));
        end(&mut server);
        stop.store(true, Ordering::Relaxed);
    });
    let mut acked = acked.into_inner().unwrap();
    acked.sort_unstable();
    assert!(
        acked.len() > 100,
        "only {} writes were acknowledged",
        acked.len()
    );
    let db = Database::open(&server.db_path, Options::default()).unwrap();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    let mut stored: Vec<(i64, i64)> = tx
        .scan("acks")
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (int(&r.values[1]), int(&r.values[2]))
        })
        .collect();
    stored.sort_unstable();
    (acked, stored)
}

/// Every acknowledged write is stored, once; the only rows beyond them are each writer's last
/// write, whose acknowledgement was lost with the server.
fn check(acked: &[Write], stored: &[Write]) {
    let mut uniq = stored.to_vec();
    uniq.dedup();
    assert_eq!(uniq.len(), stored.len(), "a write was stored twice");
    let missing: Vec<_> = acked
        .iter()
        .filter(|a| stored.binary_search(a).is_err())
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    for (w, n) in stored {
        if acked.binary_search(&(*w, *n)).is_err() {
            let last = acked.iter().filter(|a| a.0 == *w).map(|a| a.1).max();
            let next = last.map_or(0, |l| l + 1);
            assert!(
                *n == next || *n == next + 1,
                "writer {w}: row {n} stored, but its last acknowledged write was {last:?}"
            );
        }
    }
}

#[test]
fn acknowledged_commits_survive_a_kill_of_the_server() {
    let (acked, stored) = write_then(|s| s.kill());
    check(&acked, &stored);
}

/// SIGTERM while commits wait for their sync: the server answers them, syncs and exits cleanly.
#[test]
fn a_graceful_stop_answers_commits_waiting_for_their_sync() {
    let (acked, stored) = write_then(|s| {
        let out = s.stop();
        assert!(!out.contains("panicked"), "{out}");
    });
    check(&acked, &stored);
}

/// A request of several statements in autocommit: each statement commits, and the next one
/// (in the same request, before any acknowledgement) reads it. Also through a session.
#[test]
fn a_request_of_several_statements_reads_its_own_commits() {
    let mut server = Server::start(&["--threads", "1"]);
    let c = client(&server.ipc);
    c.sql_in(
        0,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)",
        Params::None,
    )
    .unwrap();
    for i in 1..=5i64 {
        let r = c
            .sql_in(
                0,
                &format!("INSERT INTO t (n) VALUES ({i}); UPDATE t SET n = n + 100 WHERE n = {i}; SELECT count(*), sum(n) FROM t WHERE n > 100"),
                Params::None,
            )
            .unwrap();
        assert_eq!(r.rows.len(), 1);
        assert_eq!(int(&r.rows[0][0]), i);
        assert_eq!(int(&r.rows[0][1]), (1..=i).map(|k| k + 100).sum::<i64>());
    }
    // The same from a second connection right after each acknowledgement.
    let other = client(&server.tcp);
    for i in 6..=10i64 {
        c.sql_in(0, &format!("INSERT INTO t (n) VALUES ({i})"), Params::None)
            .unwrap();
        let r = other
            .sql_in(0, "SELECT count(*) FROM t", Params::None)
            .unwrap();
        assert_eq!(int(&r.rows[0][0]), i);
    }
    // Every request, deferred or not, is counted in the latency histogram once, when answered.
    let m = match c.request(Body::Metrics).unwrap().to_owned_body().unwrap() {
        Body::MetricsText(m) => m,
        other => panic!("not metrics: {other:?}"),
    };
    let requests = metric(&m, "ormdb_server_requests_total");
    let timed = metric(&m, "ormdb_server_request_duration_seconds_count");
    // (The metrics request itself is in neither yet.)
    assert!(
        requests >= 17 && timed == requests,
        "{requests} requests, {timed} timed"
    );
    let out = server.stop();
    assert!(!out.contains("panicked"), "{out}");
}
