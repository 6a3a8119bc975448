//! A server embedded in an application (`ormdb::net::Server` on a `Database` the process has
//! open): the application's own writers commit in process while subscribers follow over ipc://
//! and tcp://; every delta reaches each of them exactly once, in commit order, without a lag
//! notice; a graceful shutdown finishes, rolls back open sessions, frees the endpoints and
//! leaves the database open for the application; a failed start leaves nothing behind.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ormdb::net::{ChangeStream, Client, ClientOptions, ServeConfig, Server, StreamEvent};
use ormdb::{ChangeToken, Database, Durability, Options, Params, SqlState, Value};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Endpoints {
    dir: tempfile::TempDir,
    cfg: ServeConfig,
}

fn endpoints() -> Endpoints {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = ServeConfig::new(
        dir.path().join("unused"),
        vec![
            format!("ipc://{}", dir.path().join("req.sock").display()),
            format!("tcp://127.0.0.1:{}", free_port()),
        ],
    );
    cfg.change_listen = vec![
        format!("ipc://{}", dir.path().join("changes.sock").display()),
        format!("tcp://127.0.0.1:{}", free_port()),
    ];
    cfg.metrics = Some("127.0.0.1:0".into());
    cfg.workers = 4;
    Endpoints { dir, cfg }
}

fn open_db(e: &Endpoints, durability: Durability) -> Database {
    Database::open(
        e.dir.path().join("db"),
        Options::default().durability(durability),
    )
    .expect("open")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// (token, writer, seq) of every change of `events`, until `n` arrived; and the lag notices.
async fn collect(s: &mut ChangeStream, n: usize) -> (Vec<(ChangeToken, i64, i64)>, usize) {
    let mut got = Vec::new();
    let mut lagged = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} changes arrived",
            got.len()
        );
        match s
            .next_timeout(Duration::from_secs(5))
            .await
            .expect("stream")
        {
            Some(StreamEvent::Change(ev)) => {
                assert!(ev.entity.eq_ignore_ascii_case("events"), "{}", ev.entity);
                for c in &ev.changes {
                    let (Some(Value::Integer(w)), Some(Value::Integer(q))) =
                        (c.values.get(1), c.values.get(2))
                    else {
                        panic!("unexpected values {:?}", c.values);
                    };
                    got.push((ev.token, *w, *q));
                }
            }
            Some(StreamEvent::Lagged { .. }) => lagged += 1,
            None => {}
        }
    }
    (got, lagged)
}

#[test]
fn in_process_commits_reach_remote_subscribers_once_in_order_without_lag() {
    const WRITERS: i64 = 4;
    const PER_WRITER: i64 = 2500;
    for durability in [Durability::Normal, Durability::Full] {
        let e = endpoints();
        let db = open_db(&e, durability);
        db.connect()
            .sql()
            .execute_batch(
                "CREATE TABLE events (id INTEGER PRIMARY KEY, writer INTEGER NOT NULL, seq INTEGER NOT NULL)",
            )
            .expect("ddl");
        let server = Server::start(db.clone(), &e.cfg).expect("start");
        let rt = rt();
        let (ipc, tcp) = (e.cfg.listen[0].clone(), e.cfg.listen[1].clone());
        let mut streams = rt.block_on(async {
            let mut v = Vec::new();
            for url in [&ipc, &tcp] {
                let c = Client::connect(url).await.expect("connect");
                v.push(
                    ChangeStream::open(&c, &["events"], None)
                        .await
                        .expect("stream"),
                );
            }
            v
        });
        // The application's writers: autocommit inserts in process, as fast as they go.
        let started = Instant::now();
        std::thread::scope(|sc| {
            for w in 0..WRITERS {
                let db = db.clone();
                sc.spawn(move || {
                    let mut s = db.connect().sql();
                    let stmt = s
                        .prepare("INSERT INTO events (writer, seq) VALUES (?, ?)")
                        .expect("prepare");
                    for q in 0..PER_WRITER {
                        s.execute_prepared(
                            &stmt,
                            &Params::Positional(vec![Value::Integer(w), Value::Integer(q)]),
                        )
                        .expect("insert");
                    }
                });
            }
        });
        let rate = (WRITERS * PER_WRITER) as f64 / started.elapsed().as_secs_f64();
        let total = (WRITERS * PER_WRITER) as usize;
        for (i, s) in streams.iter_mut().enumerate() {
            let (got, lagged) = rt.block_on(collect(s, total));
            assert!(
                got.windows(2).all(|p| p[0].0 < p[1].0),
                "subscriber {i}: commit order"
            );
            let mut next: HashMap<i64, i64> = HashMap::new();
            for (_, w, q) in &got {
                let want = next.entry(*w).or_insert(0);
                assert_eq!(
                    *q, *want,
                    "subscriber {i}: writer {w} exactly once, in order"
                );
                *want += 1;
            }
            assert!(next.values().all(|n| *n == PER_WRITER));
            assert_eq!(
                lagged, 0,
                "subscriber {i} ({durability:?}, {rate:.0} commits/s) kept up but was told it fell behind"
            );
            let extra = rt
                .block_on(s.next_timeout(Duration::from_millis(300)))
                .expect("stream");
            assert!(extra.is_none(), "subscriber {i}: extra event {extra:?}");
        }
        eprintln!("{durability:?}: {total} commits at {rate:.0}/s in process, each delivered once to both subscribers");
        assert_eq!(server.shutdown().expect("shutdown").sessions_rolled_back, 0);
    }
}

#[test]
fn shutdown_rolls_back_sessions_frees_endpoints_and_keeps_the_database_open() {
    let e = endpoints();
    let db = open_db(&e, Durability::Full);
    db.connect()
        .sql()
        .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        .expect("ddl");
    let server = Server::start(db.clone(), &e.cfg).expect("start");
    let metrics = server.metrics_addr().expect("metrics address");
    assert_ne!(metrics.port(), 0, "the OS-chosen port is reported");
    let rt = rt();
    let url = e.cfg.listen[0].clone();
    let opts = ClientOptions {
        request_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        ..ClientOptions::default()
    };
    let c = rt
        .block_on(Client::connect_with(&url, opts.clone()))
        .expect("connect");
    rt.block_on(async {
        c.sql(
            "INSERT INTO t (id, v) VALUES (1, 'committed')",
            Params::None,
        )
        .await
        .expect("insert");
        let s = c.begin().await.expect("begin");
        c.sql_in(s, "INSERT INTO t (id, v) VALUES (2, 'open')", Params::None)
            .await
            .expect("insert in session");
        let text = c.metrics().await.expect("metrics");
        assert!(text.contains("ormdb_server_open_sessions 1"), "{text}");
    });
    // A second server cannot take the same endpoints, and failing leaves the first serving.
    let err = Server::start(db.clone(), &e.cfg)
        .err()
        .expect("endpoint in use");
    assert_eq!(err.state, SqlState::IoError, "{err}");
    rt.block_on(c.sql("SELECT count(*) FROM t", Params::None))
        .expect("the first server still serves");

    let report = server.shutdown().expect("shutdown");
    assert_eq!(report.sessions_rolled_back, 1);
    let after = rt.block_on(c.sql("SELECT 1", Params::None));
    assert!(after.is_err(), "a stopped server answered");
    // The application's handle still works, and only the committed row is there.
    let mut s = db.connect().sql();
    let r = s
        .execute("SELECT id FROM t ORDER BY id", &Params::None)
        .expect("select");
    assert_eq!(r.rows, vec![vec![Value::Integer(1)]]);
    s.execute("INSERT INTO t (id, v) VALUES (3, 'local')", &Params::None)
        .expect("the database is still writable");
    drop(c);

    // The endpoints are free again: a new server (dropped, not shut down, at the end) serves
    // the same database on them.
    let again = Server::start(db.clone(), &e.cfg).expect("restart on the same endpoints");
    let c = rt
        .block_on(Client::connect_with(&url, opts))
        .expect("connect again");
    let r = rt
        .block_on(c.sql("SELECT count(*) FROM t", Params::None))
        .expect("count");
    assert_eq!(r.rows, vec![vec![Value::Integer(2)]]);
    drop(again);
    assert!(rt.block_on(c.sql("SELECT 1", Params::None)).is_err());
    Server::start(db, &e.cfg)
        .expect("dropping the handle freed the endpoints")
        .shutdown()
        .expect("shutdown");
}

#[test]
fn a_server_starts_and_stops_inside_an_async_application() {
    let e = endpoints();
    let db = open_db(&e, Durability::Normal);
    let rt = rt();
    rt.block_on(async {
        let server = Server::start(db.clone(), &e.cfg).expect("start inside a runtime");
        let c = Client::connect(&e.cfg.listen[1]).await.expect("connect");
        c.sql("CREATE TABLE t (id INTEGER PRIMARY KEY)", Params::None)
            .await
            .expect("ddl");
        // Shutting down blocks this worker thread for a moment, which tokio allows.
        tokio::task::block_in_place(|| server.shutdown()).expect("shutdown");
    });
    assert!(db.schema().entities.iter().any(|t| t.name == "t"));
}

#[test]
fn bad_endpoints_fail_start_with_clear_errors() {
    let db = Database::temporary().expect("db");
    let mut cfg = ServeConfig::new("unused", Vec::new());
    let err = Server::start(db.clone(), &cfg).err().expect("no endpoint");
    assert_eq!(err.state, SqlState::InvalidParameter, "{err}");
    cfg.listen = vec!["tcp://10.1.2.3:7450".into()];
    let err = Server::start(db.clone(), &cfg).err().expect("not loopback");
    assert_eq!(err.state, SqlState::InsufficientPrivilege, "{err}");
    cfg.listen = vec!["udp://127.0.0.1:1".into()];
    let err = Server::start(db, &cfg).err().expect("unknown transport");
    assert_eq!(err.state, SqlState::FeatureNotSupported, "{err}");
}

/// A long read outside any session is answered on an NNG thread (at most one at a time); it
/// must not hold up other requests: point selects sent meanwhile go to the request threads.
#[test]
fn a_long_read_answered_inline_does_not_hold_up_other_requests() {
    let e = endpoints();
    let db = open_db(&e, Durability::Normal);
    let rows: Vec<String> = (1..=150).map(|i| format!("({i}, 'v{i}')")).collect();
    db.connect()
        .sql()
        .execute_batch(&format!(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t (id, v) VALUES {}",
            rows.join(", ")
        ))
        .expect("load");
    let server = Server::start(db.clone(), &e.cfg).expect("start");
    let url = e.cfg.listen[0].clone();
    let slow_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow = {
        let (url, done) = (url.clone(), slow_done.clone());
        std::thread::spawn(move || {
            let c = ormdb::net::BlockingClient::connect(&url).expect("connect");
            let t = Instant::now();
            let r = c
                .sql_in(0, "SELECT count(*) FROM t a, t b, t c", Params::None)
                .expect("the long read");
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            (r, t.elapsed())
        })
    };
    let c = ormdb::net::BlockingClient::connect(&url).expect("connect");
    // Wait until the long read is under way on the server.
    let deadline = Instant::now() + Duration::from_secs(10);
    let in_flight = || {
        let text = server.metrics_text();
        let line = text
            .lines()
            .find(|l| l.starts_with("ormdb_server_requests_in_flight "))
            .expect("the in-flight gauge");
        line.rsplit(' ').next().unwrap().parse::<f64>().unwrap()
    };
    while in_flight() < 1.0 {
        assert!(Instant::now() < deadline, "the long read never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    let t = Instant::now();
    for i in 1..=50 {
        let r = c
            .sql_in(0, &format!("SELECT v FROM t WHERE id = {i}"), Params::None)
            .expect("point select");
        assert_eq!(r.rows.len(), 1);
    }
    let quick = t.elapsed();
    assert!(
        !slow_done.load(std::sync::atomic::Ordering::SeqCst),
        "50 point selects ({quick:?}) should finish while the long read runs"
    );
    let (r, took) = slow.join().expect("long read thread");
    assert_eq!(r.rows[0][0], Value::Integer(150 * 150 * 150));
    eprintln!("50 point selects {quick:?} during a long read of {took:?}");
    server.shutdown().expect("shutdown");
}
