//! Every request kind against a real `ormdb serve` over tcp:// and ipc://: handshake, SQL with
//! positional and named parameters, prepared statements, sessions (commit, rollback,
//! isolation), graph fetch read in place, mutations, aggregates, explain, metrics over the
//! protocol and over HTTP, `net::connect` for a path and a URL, and a clean SIGTERM shutdown
//! that keeps what was committed.

mod net_support;
use net_support::*;

use std::collections::BTreeMap;
use std::io::{Read, Write};

use ormdb::ir::protocol::ArchivedBody;
use ormdb::net::{connect, Client};
use ormdb::{
    AggFunc, Aggregate, GraphFetch, Include, Measure, Mutation, MutationOp, Params, SqlState, Value,
};

const SCHEMA: &str = "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
     CREATE TABLE posts (id INTEGER PRIMARY KEY, author_id INTEGER REFERENCES users(id), title TEXT);";

async fn exercise(c: &Client) {
    assert_eq!(c.protocol_version(), 2);
    assert!(c.server_name().starts_with("ormdb "), "{}", c.server_name());

    // SQL with positional and named parameters.
    c.sql(SCHEMA, Params::None).await.unwrap();
    for (id, name) in [(1, "ada"), (2, "bob")] {
        let r = c
            .sql(
                "INSERT INTO users (id, name) VALUES (?, ?)",
                Params::Positional(vec![Value::Integer(id), Value::from(name)]),
            )
            .await
            .unwrap();
        assert_eq!(r.rows_affected, 1);
    }
    let r = c
        .sql(
            "SELECT name FROM users WHERE id = :id",
            Params::Named(vec![("id".into(), Value::Integer(2))]),
        )
        .await
        .unwrap();
    assert_eq!(r.columns, vec!["name"]);
    assert_eq!(r.rows, vec![vec![Value::from("bob")]]);

    // SQL errors come back with their SQLSTATE.
    let e = c.sql("SELECT * FROM nope", Params::None).await.unwrap_err();
    assert_eq!(e.state, SqlState::UndefinedTable, "{e}");
    let e = c
        .sql(
            "INSERT INTO users (id, name) VALUES (1, 'dup')",
            Params::None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.state, SqlState::UniqueViolation, "{e}");

    // Prepared statements by id.
    let (id, n) = c
        .prepare("INSERT INTO posts (id, author_id, title) VALUES (?, ?, ?)")
        .await
        .unwrap();
    assert_eq!(n, 3);
    for p in 1..=10i64 {
        let author = if p <= 7 { 1 } else { 2 };
        c.execute_prepared(
            0,
            id,
            Params::Positional(vec![
                Value::Integer(p),
                Value::Integer(author),
                Value::from(format!("post {p}").as_str()),
            ]),
        )
        .await
        .unwrap();
    }
    c.close_prepared(id).await.unwrap();
    let e = c.execute_prepared(0, id, Params::None).await.unwrap_err();
    assert_eq!(e.state, SqlState::InvalidParameter, "{e}");
    assert!(e.message.contains("unknown prepared statement"), "{e}");

    // A transaction spanning requests: invisible to others until commit.
    let s = c.begin().await.unwrap();
    c.sql_in(
        s,
        "INSERT INTO users (id, name) VALUES (3, 'cy')",
        Params::None,
    )
    .await
    .unwrap();
    let inside = c
        .sql_in(s, "SELECT count(*) FROM users", Params::None)
        .await
        .unwrap();
    assert_eq!(inside.rows, vec![vec![Value::Integer(3)]]);
    let outside = c
        .sql("SELECT count(*) FROM users", Params::None)
        .await
        .unwrap();
    assert_eq!(outside.rows, vec![vec![Value::Integer(2)]]);
    c.commit(s).await.unwrap();
    let after = c
        .sql("SELECT count(*) FROM users", Params::None)
        .await
        .unwrap();
    assert_eq!(after.rows, vec![vec![Value::Integer(3)]]);
    // Committed sessions are gone.
    let e = c.sql_in(s, "SELECT 1", Params::None).await.unwrap_err();
    assert_eq!(e.state, SqlState::InvalidTransactionState, "{e}");

    let s = c.begin().await.unwrap();
    c.sql_in(s, "DELETE FROM posts", Params::None)
        .await
        .unwrap();
    c.rollback(s).await.unwrap();
    let posts = c
        .sql("SELECT count(*) FROM posts", Params::None)
        .await
        .unwrap();
    assert_eq!(posts.rows, vec![vec![Value::Integer(10)]]);

    // BEGIN without a session is refused rather than leaking a transaction into the pool.
    let e = c.sql("BEGIN", Params::None).await.unwrap_err();
    assert_eq!(e.state, SqlState::InvalidTransactionState, "{e}");
    let r = c
        .sql("SELECT count(*) FROM users", Params::None)
        .await
        .unwrap();
    assert_eq!(r.rows, vec![vec![Value::Integer(3)]]);

    // Graph fetch, read in place from the reply buffer.
    let f = GraphFetch::new("users").include(Include::new("posts"));
    let reply = c.fetch_archived(&f).await.unwrap();
    match reply.body() {
        ArchivedBody::FetchResult(g) => {
            assert_eq!(g.roots.len(), 3);
            let posts = g
                .entities
                .iter()
                .find(|b| b.entity.as_str() == "posts")
                .expect("posts block");
            assert_eq!(posts.ids.len(), 10);
        }
        _ => panic!("expected a FetchResult"),
    }
    let owned = c.fetch(&f).await.unwrap();
    assert_eq!(owned.roots, vec![1, 2, 3]);

    // Explain.
    let text = c.explain(&f, true).await.unwrap();
    assert!(text.contains("posts"), "{text}");

    // Mutation and aggregate.
    let mut row = BTreeMap::new();
    row.insert("id".to_string(), Value::Integer(4));
    row.insert("name".to_string(), Value::from("dee"));
    let m = Mutation {
        ops: vec![MutationOp::Insert {
            entity: "users".into(),
            rows: vec![row],
        }],
    };
    let mr = c.mutate(&m).await.unwrap();
    assert_eq!(mr.ops[0].affected, 1);
    assert!(mr.token > 0);
    let a = Aggregate {
        entity: "posts".into(),
        filter: None,
        group_by: vec!["author_id".into()],
        measures: vec![Measure::count(), Measure::of(AggFunc::Max, "id")],
    };
    let ar = c.aggregate(&a).await.unwrap();
    assert_eq!(ar.rows.len(), 2);
    let counts: Vec<Value> = ar.rows.iter().map(|r| r[1].clone()).collect();
    assert!(
        counts.contains(&Value::Integer(7)) && counts.contains(&Value::Integer(3)),
        "{ar:?}"
    );

    // Metrics over the protocol.
    let text = c.metrics().await.unwrap();
    assert!(text.contains("ormdb_server_requests_total"), "{text}");
    assert!(
        text.contains("ormdb_server_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("ormdb_last_commit_token"), "{text}");
}

fn http_get(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("metrics endpoint");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn every_request_kind_over_tcp_and_ipc() {
    for transport in ["tcp", "ipc"] {
        let mut server = Server::start(&[]);
        let url = if transport == "tcp" {
            server.tcp.clone()
        } else {
            server.ipc.clone()
        };
        let rt = runtime();
        rt.block_on(async {
            let c = Client::connect(&url).await.unwrap();
            exercise(&c).await;
        });
        let http = http_get(&server.metrics_addr);
        assert!(http.starts_with("HTTP/1.1 200 OK"), "{http}");
        assert!(http.contains("ormdb_server_open_sessions 0"), "{http}");
        assert!(
            http.contains("ormdb_server_sessions_opened_total 2"),
            "{http}"
        );
        drop(rt);
        let out = server.stop();
        assert!(out.contains("database synced"), "{out}");

        // What was committed survives the shutdown: reopen in process.
        let mut conn = connect(server.db_path.to_str().unwrap()).unwrap();
        assert!(!conn.is_remote());
        let r = conn
            .execute("SELECT count(*) FROM users", &Params::None)
            .unwrap();
        assert_eq!(r.rows, vec![vec![Value::Integer(4)]], "{transport}");
    }
}

#[test]
fn connect_takes_a_path_or_a_url_and_behaves_the_same() {
    let server = Server::start(&[]);
    let mut remote = connect(&server.ipc).unwrap();
    assert!(remote.is_remote());
    remote
        .execute(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
            &Params::None,
        )
        .unwrap();
    remote.execute("BEGIN", &Params::None).unwrap();
    assert!(remote.in_transaction());
    remote
        .execute("INSERT INTO t (id, v) VALUES (1, 'x')", &Params::None)
        .unwrap();
    remote.execute("ROLLBACK", &Params::None).unwrap();
    remote.execute("BEGIN", &Params::None).unwrap();
    remote
        .execute(
            "INSERT INTO t (id, v) VALUES (?, ?)",
            &Params::Positional(vec![Value::Integer(2), Value::from("y")]),
        )
        .unwrap();
    remote.execute("COMMIT", &Params::None).unwrap();
    let r = remote
        .execute("SELECT id, v FROM t", &Params::None)
        .unwrap();
    assert_eq!(r.rows, vec![vec![Value::Integer(2), Value::from("y")]]);
    let e = remote.execute("COMMIT", &Params::None).unwrap_err();
    assert_eq!(e.state, SqlState::InvalidTransactionState);

    let e = connect("http://127.0.0.1:1")
        .err()
        .expect("unsupported scheme");
    assert_eq!(e.state, SqlState::FeatureNotSupported);
}

#[test]
fn handshake_negotiates_the_version() {
    let server = Server::start(&[]);
    let rt = runtime();
    rt.block_on(async {
        // A client that also speaks future versions settles on the one both know.
        let opts = ormdb::net::ClientOptions {
            versions: vec![1, 2, 3],
            ..Default::default()
        };
        let c = Client::connect_with(&server.tcp, opts).await.unwrap();
        assert_eq!(c.protocol_version(), 2);

        // No version in common: a clear error naming both sides.
        let opts = ormdb::net::ClientOptions {
            versions: vec![7, 8],
            ..Default::default()
        };
        let e = Client::connect_with(&server.tcp, opts)
            .await
            .err()
            .expect("no common version");
        assert_eq!(e.state, SqlState::ProtocolViolation, "{e}");
        assert!(e.message.contains("no common protocol version"), "{e}");
        assert!(
            e.message.contains("[7, 8]") && e.message.contains("[1, 2]"),
            "{e}"
        );

        // The server keeps serving.
        let c = Client::connect(&server.ipc).await.unwrap();
        c.sql("SELECT 1", Params::None).await.unwrap();
    });
}

#[test]
fn refuses_non_loopback_without_allow_remote() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ormdb"))
        .arg("serve")
        .arg(tempfile::tempdir().unwrap().path().join("db"))
        .args(["--listen", "tcp://0.0.0.0:7450"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("--allow-remote"),
        "{err}"
    );
}

#[test]
fn refuses_bad_option_values() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (
            &["--workers", "0"][..],
            "--workers and --threads must be at least 1",
        ),
        (
            &["--threads", "0"][..],
            "--workers and --threads must be at least 1",
        ),
        (
            &["--reply-timeout", "0"][..],
            "--reply-timeout must be a positive",
        ),
        (
            &["--reply-timeout=-3"][..],
            "--reply-timeout must be a positive",
        ),
        (
            &["--reply-timeout", "1e300"][..],
            "--reply-timeout must be a positive",
        ),
        (
            &["--session-idle-timeout", "nan"][..],
            "--session-idle-timeout must be a positive",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ormdb"))
            .arg("serve")
            .arg(dir.path().join("db"))
            .args(["--listen", "tcp://127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn large_results_arrive_in_chunks() {
    let server = Server::start(&["--reply-chunk-bytes", "1048576"]);
    let rt = runtime();
    rt.block_on(async {
        let c = Client::connect(&server.tcp).await.unwrap();
        c.sql(
            "CREATE TABLE big (id INTEGER PRIMARY KEY, body TEXT)",
            Params::None,
        )
        .await
        .unwrap();
        let body = "x".repeat(200_000);
        for i in 0..16i64 {
            c.sql(
                "INSERT INTO big (id, body) VALUES (?, ?)",
                Params::Positional(vec![Value::Integer(i), Value::from(body.as_str())]),
            )
            .await
            .unwrap();
        }
        // About 3.2 MB: sent in pieces of at most 1 MiB (--reply-chunk-bytes).
        let r = c
            .sql("SELECT id, body FROM big ORDER BY id", Params::None)
            .await
            .unwrap();
        assert_eq!(r.rows.len(), 16);
        assert!(r
            .rows
            .iter()
            .all(|row| row[1] == Value::from(body.as_str())));
    });
}

/// The blocking client (what `net::connect` and the Python binding's SQL use) over both
/// transports: SQL, prepared statements, a session spanning requests, a chunked reply, and
/// clear errors, from several threads sharing one client.
#[test]
fn blocking_client_round_trips_over_tcp_and_ipc() {
    let server = Server::start(&["--reply-chunk-bytes", "65536"]);
    for (i, url) in [&server.tcp, &server.ipc].into_iter().enumerate() {
        let c = ormdb::net::BlockingClient::connect(url).unwrap();
        assert_eq!(c.protocol_version(), 2);
        let t = format!("b{i}");
        c.sql_in(
            0,
            &format!("CREATE TABLE {t} (id INTEGER PRIMARY KEY, body TEXT)"),
            Params::None,
        )
        .unwrap();
        let (ins, n) = c
            .prepare(&format!("INSERT INTO {t} (id, body) VALUES (?, ?)"))
            .unwrap();
        assert_eq!(n, 2);
        let body = "y".repeat(20_000);
        std::thread::scope(|sc| {
            for th in 0..4i64 {
                let (c, body) = (&c, &body);
                sc.spawn(move || {
                    for k in 0..4i64 {
                        c.execute_prepared(
                            0,
                            ins,
                            Params::Positional(vec![
                                Value::Integer(th * 4 + k),
                                Value::from(body.as_str()),
                            ]),
                        )
                        .unwrap();
                    }
                });
            }
        });
        // About 320 KB: fetched in pieces of at most 64 KiB.
        let r = c
            .sql_in(
                0,
                &format!("SELECT id, body FROM {t} ORDER BY id"),
                Params::None,
            )
            .unwrap();
        assert_eq!(r.rows.len(), 16);
        assert!(r
            .rows
            .iter()
            .all(|row| row[1] == Value::from(body.as_str())));

        let s = c.begin().unwrap();
        c.sql_in(s, &format!("DELETE FROM {t} WHERE id < 8"), Params::None)
            .unwrap();
        let inside = c
            .sql_in(s, &format!("SELECT count(*) FROM {t}"), Params::None)
            .unwrap();
        assert_eq!(inside.rows[0][0], Value::Integer(8));
        c.rollback(s).unwrap();
        let after = c
            .sql_in(0, &format!("SELECT count(*) FROM {t}"), Params::None)
            .unwrap();
        assert_eq!(after.rows[0][0], Value::Integer(16));

        let e = c.commit(s).unwrap_err();
        assert_eq!(e.state, SqlState::InvalidTransactionState);
        let e = c.sql_in(0, "SELEC 1", Params::None).unwrap_err();
        assert_eq!(e.state, SqlState::SyntaxError);
        // The client keeps working after error replies.
        c.sql_in(0, "SELECT 1", Params::None).unwrap();
    }
}

#[test]
fn blocking_client_refuses_a_server_that_is_not_there() {
    let opts = ormdb::net::ClientOptions {
        connect_timeout: std::time::Duration::from_millis(200),
        ..Default::default()
    };
    let url = format!("tcp://127.0.0.1:{}", free_port());
    let e = ormdb::net::BlockingClient::connect_with(&url, opts)
        .err()
        .expect("no server");
    assert_eq!(e.state, SqlState::ConnectionDoesNotExist);
}

/// The server's sessions have the native REGEXP (SQLAlchemy's `regexp_match`, Django's
/// `__regex`): Python's `re.search` where the native code guarantees it, a clear 0A000 for what
/// would need Python, in autocommit, prepared and in a session alike.
#[test]
fn regexp_is_native_on_the_server() {
    let server = Server::start(&[]);
    let rt = runtime();
    rt.block_on(async {
        let c = Client::connect(&server.ipc).await.unwrap();
        let one = |r: ormdb::StatementResult| r.rows[0][0].clone();
        let r = c
            .sql("SELECT 'abc' REGEXP 'b', 'abc' REGEXP '^b', NULL REGEXP 'a', regexp('[0-9]+', 'x42')", Params::None)
            .await
            .unwrap();
        assert_eq!(
            r.rows,
            vec![vec![Value::Integer(1), Value::Integer(0), Value::Null, Value::Integer(1)]]
        );
        let (id, _) = c.prepare("SELECT ? REGEXP ?").await.unwrap();
        let r = c
            .execute_prepared(
                0,
                id,
                Params::Positional(vec![Value::from("hello"), Value::from("l{2}")]),
            )
            .await
            .unwrap();
        assert_eq!(one(r), Value::Integer(1));
        let s = c.begin().await.unwrap();
        let r = c
            .sql_in(s, "SELECT 'Abc' REGEXP '(?i)^a'", Params::None)
            .await
            .unwrap();
        assert_eq!(one(r), Value::Integer(1));
        c.rollback(s).await.unwrap();
        // Look-behind means something only to Python's re: refused, not answered differently.
        let e = c
            .sql("SELECT 'abc' REGEXP '(?<=a)b'", Params::None)
            .await
            .unwrap_err();
        assert_eq!(e.state, SqlState::FeatureNotSupported, "{e}");
        assert!(e.message.contains("REGEXP"), "{e}");
    });
}

/// Savepoints behave as in SQLite on a path and over a server alike: one outside a transaction
/// starts it and releasing that one commits it; ROLLBACK TO keeps the savepoint; names compare
/// without quotes or case; inside BEGIN, releasing every savepoint leaves the transaction open.
#[test]
fn savepoints_behave_the_same_on_a_path_and_over_a_server() {
    let server = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    for target in [local.to_str().unwrap(), &server.tcp] {
        let mut c = connect(target).unwrap();
        {
            let mut run = |sql: &str| c.execute(sql, &Params::None).unwrap();
            run("CREATE TABLE sp (id INTEGER PRIMARY KEY)");
            run("SAVEPOINT a");
            run("INSERT INTO sp VALUES (1)");
            run("SAVEPOINT \"B\"");
            run("INSERT INTO sp VALUES (2)");
            run("ROLLBACK TO b");
            run("INSERT INTO sp VALUES (3)");
            run("ROLLBACK TRANSACTION TO SAVEPOINT B");
            run("INSERT INTO sp VALUES (4)");
            run("RELEASE SAVEPOINT b");
        }
        assert!(c.in_transaction(), "{target}: still inside savepoint a");
        let mut other = connect(target).unwrap();
        let count = |o: &mut ormdb::net::SqlConnection| {
            o.execute(
                "SELECT group_concat(id) FROM (SELECT id FROM sp ORDER BY id)",
                &Params::None,
            )
            .unwrap()
            .rows[0][0]
                .clone()
        };
        assert_eq!(
            count(&mut other),
            Value::Null,
            "{target}: nothing committed yet"
        );
        c.execute("RELEASE a", &Params::None).unwrap();
        assert!(!c.in_transaction(), "{target}: releasing a committed");
        assert_eq!(count(&mut other), Value::from("1,4"), "{target}");

        // A savepoint that started the transaction, rolled back with it.
        c.execute("SAVEPOINT x", &Params::None).unwrap();
        c.execute("INSERT INTO sp VALUES (5)", &Params::None)
            .unwrap();
        c.execute("ROLLBACK", &Params::None).unwrap();
        assert!(!c.in_transaction());
        // Inside BEGIN, releasing every savepoint leaves the transaction to COMMIT.
        c.execute("BEGIN", &Params::None).unwrap();
        c.execute("SAVEPOINT y", &Params::None).unwrap();
        c.execute("INSERT INTO sp VALUES (6)", &Params::None)
            .unwrap();
        c.execute("RELEASE y", &Params::None).unwrap();
        assert!(c.in_transaction(), "{target}");
        assert_eq!(count(&mut other), Value::from("1,4"), "{target}");
        c.execute("COMMIT", &Params::None).unwrap();
        assert_eq!(count(&mut other), Value::from("1,4,6"), "{target}");
        // Unknown savepoints are errors, in and out of a transaction.
        let e = c.execute("RELEASE nope", &Params::None).unwrap_err();
        assert!(e.message.contains("nope"), "{target}: {e}");
        c.execute("SAVEPOINT z", &Params::None).unwrap();
        let e = c.execute("ROLLBACK TO nope", &Params::None).unwrap_err();
        assert!(e.message.contains("nope"), "{target}: {e}");
        c.execute("RELEASE z", &Params::None).unwrap();
        assert!(!c.in_transaction(), "{target}");
    }
}
