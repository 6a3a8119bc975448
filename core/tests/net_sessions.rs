//! Graph requests inside sessions that span requests, against a real `ormdb serve` over tcp://
//! and ipc://: graph fetch, explain, mutations, aggregates and the catalog see the session's
//! own uncommitted writes (SQL and mutations alike), stay invisible to other sessions and to
//! autocommit, commit or roll back with the session, and are rolled back with it when its idle
//! timeout expires. `net::connect` runs the same requests in its transaction for a path and a
//! URL alike. Version 2 requests are refused on a version 1 connection. A `RemoteSubscription`
//! delivers whole commits and resumes from a token.

mod net_support;
use net_support::*;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ormdb::ir::protocol::{encode_message, ArchivedBody, Body, Message};
use ormdb::net::{connect, BlockingClient, Client, ClientOptions, SqlConnection};
use ormdb::{
    AggFunc, Aggregate, GraphFetch, Include, Measure, Mutation, MutationOp, Params, SqlState, Value,
};

const SCHEMA: &str = "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
     CREATE TABLE posts (id INTEGER PRIMARY KEY, author_id INTEGER REFERENCES users(id), title TEXT);
     INSERT INTO users (id, name) VALUES (1, 'ada'), (2, 'bob');
     INSERT INTO posts (id, author_id, title) VALUES (10, 1, 'a1'), (11, 1, 'a2'), (12, 2, 'b1');";

fn insert_user(id: i64, name: &str) -> Mutation {
    let mut row = BTreeMap::new();
    row.insert("id".to_string(), Value::Integer(id));
    row.insert("name".to_string(), Value::from(name));
    Mutation {
        ops: vec![MutationOp::Insert {
            entity: "users".into(),
            rows: vec![row],
        }],
    }
}

fn post_count() -> Aggregate {
    Aggregate {
        entity: "posts".into(),
        filter: None,
        group_by: vec![],
        measures: vec![Measure::count(), Measure::of(AggFunc::Max, "id")],
    }
}

fn users_with_posts() -> GraphFetch {
    GraphFetch::new("users").include(Include::new("posts"))
}

fn posts_of(g: &ormdb::GraphResult) -> usize {
    g.block("posts").map_or(0, |b| b.ids.len())
}

/// "actual: rows N" of the root step of an analyzed plan.
fn actual_root_rows(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("actual: rows "))
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no actual rows in {text}"))
}

async fn in_sessions(c: &Client, other: &Client) {
    assert_eq!(c.protocol_version(), 2);
    c.sql(SCHEMA, Params::None).await.unwrap();
    let f = users_with_posts();

    // SQL and a mutation in one session; every request kind in it sees both.
    let s = c.begin().await.unwrap();
    c.sql_in(
        s,
        "INSERT INTO posts (id, author_id, title) VALUES (13, 2, 'b2')",
        Params::None,
    )
    .await
    .unwrap();
    let mr = c.mutate_in(s, &insert_user(3, "cy")).await.unwrap();
    assert_eq!(mr.ops[0].affected, 1);
    let inside = c.fetch_in(s, &f).await.unwrap();
    assert_eq!(inside.roots, vec![1, 2, 3]);
    assert_eq!(posts_of(&inside), 4);
    // Read in place, as the autocommit fetch is.
    let reply = c.fetch_archived_in(s, &f).await.unwrap();
    match reply.body() {
        ArchivedBody::FetchResult(g) => assert_eq!(g.roots.len(), 3),
        _ => panic!("expected a FetchResult"),
    }
    let agg = c.aggregate_in(s, &post_count()).await.unwrap();
    assert_eq!(agg.rows, vec![vec![Value::Integer(4), Value::Integer(13)]]);
    let plan = c.explain_in(s, &f, true).await.unwrap();
    assert_eq!(actual_root_rows(&plan), 3, "{plan}");
    let sql = c
        .sql_in(s, "SELECT count(*) FROM users", Params::None)
        .await
        .unwrap();
    assert_eq!(sql.rows, vec![vec![Value::Integer(3)]]);

    // Isolated: autocommit and another session see neither write.
    let outside = other.fetch_in(0, &f).await.unwrap();
    assert_eq!(outside.roots, vec![1, 2]);
    assert_eq!(posts_of(&outside), 3);
    let s2 = other.begin().await.unwrap();
    assert_eq!(other.fetch_in(s2, &f).await.unwrap().roots, vec![1, 2]);
    let agg = other.aggregate_in(s2, &post_count()).await.unwrap();
    assert_eq!(agg.rows, vec![vec![Value::Integer(3), Value::Integer(12)]]);
    let plan = other.explain_in(0, &f, true).await.unwrap();
    assert_eq!(actual_root_rows(&plan), 2, "{plan}");
    // The v1 requests (no session) read committed data too.
    assert_eq!(other.fetch(&f).await.unwrap().roots, vec![1, 2]);

    c.commit(s).await.unwrap();
    assert_eq!(other.fetch_in(0, &f).await.unwrap().roots, vec![1, 2, 3]);
    // The other session keeps its snapshot until it ends.
    assert_eq!(other.fetch_in(s2, &f).await.unwrap().roots, vec![1, 2]);
    other.rollback(s2).await.unwrap();

    // Rollback discards a session's mutations and SQL writes alike.
    let s = c.begin().await.unwrap();
    c.mutate_in(s, &insert_user(4, "dee")).await.unwrap();
    let del = Mutation {
        ops: vec![MutationOp::Delete {
            entity: "posts".into(),
            filter: None,
        }],
    };
    c.mutate_in(s, &del).await.unwrap();
    let inside = c.fetch_in(s, &f).await.unwrap();
    assert_eq!(inside.roots, vec![1, 2, 3, 4]);
    assert_eq!(posts_of(&inside), 0);
    c.rollback(s).await.unwrap();
    let after = c.fetch_in(0, &f).await.unwrap();
    assert_eq!(after.roots, vec![1, 2, 3]);
    assert_eq!(posts_of(&after), 4);
    // An ended session is gone for every request kind.
    let e = c.fetch_in(s, &f).await.unwrap_err();
    assert_eq!(e.state, SqlState::InvalidTransactionState, "{e}");
    let e = c.mutate_in(s, &insert_user(5, "x")).await.unwrap_err();
    assert_eq!(e.state, SqlState::InvalidTransactionState, "{e}");
    assert_eq!(c.fetch_in(0, &f).await.unwrap().roots, vec![1, 2, 3]);

    // A failed mutation in a session is an error, and the session goes on.
    let s = c.begin().await.unwrap();
    let e = c.mutate_in(s, &insert_user(1, "dup")).await.unwrap_err();
    assert_eq!(e.state, SqlState::UniqueViolation, "{e}");
    c.mutate_in(s, &insert_user(6, "fay")).await.unwrap();
    c.commit(s).await.unwrap();
    assert_eq!(c.fetch_in(0, &f).await.unwrap().roots, vec![1, 2, 3, 6]);

    // The catalog: a session sees its own DDL, others the committed catalog.
    let (v0, bundle) = c.schema(0, u64::MAX).await.unwrap();
    let bundle = bundle.expect("a client with no catalog gets it");
    assert_eq!(bundle.version, v0);
    assert!(bundle.entities.iter().any(|e| e.name == "posts"));
    let (v, none) = c.schema(0, v0).await.unwrap();
    assert_eq!(v, v0);
    assert!(none.is_none(), "an unchanged catalog is not sent again");
    let s = c.begin().await.unwrap();
    c.sql_in(
        s,
        "CREATE TABLE tags (id INTEGER PRIMARY KEY, post_id INTEGER REFERENCES posts(id))",
        Params::None,
    )
    .await
    .unwrap();
    let (vs, b) = c.schema(s, v0).await.unwrap();
    assert!(vs > v0);
    assert!(b.unwrap().entities.iter().any(|e| e.name == "tags"));
    let (_, b) = other.schema(0, u64::MAX).await.unwrap();
    assert!(!b.unwrap().entities.iter().any(|e| e.name == "tags"));
    let tagged = GraphFetch::new("posts").include(Include::new("tags"));
    assert_eq!(c.fetch_in(s, &tagged).await.unwrap().roots.len(), 4);
    let e = other.fetch_in(0, &tagged).await.unwrap_err();
    assert_ne!(e.state, SqlState::Internal, "{e}");
    c.rollback(s).await.unwrap();
    assert_eq!(c.schema(0, v0).await.unwrap().0, v0);
}

#[test]
fn graph_requests_run_in_sessions_over_tcp_and_ipc() {
    let server = Server::start(&[]);
    let rt = runtime();
    for (i, url) in [&server.tcp, &server.ipc].into_iter().enumerate() {
        rt.block_on(async {
            let c = Client::connect(url).await.unwrap();
            let other = Client::connect(url).await.unwrap();
            if i == 1 {
                // The second transport runs on the first's database: start over.
                c.sql("DROP TABLE posts; DROP TABLE users", Params::None)
                    .await
                    .unwrap();
            }
            in_sessions(&c, &other).await;
            let m = c.metrics().await.unwrap();
            assert!(m.contains("ormdb_server_open_sessions 0"), "{m}");
        });
    }
}

#[test]
fn the_blocking_client_runs_graph_requests_in_sessions() {
    let server = Server::start(&[]);
    for url in [&server.tcp, &server.ipc] {
        let c = BlockingClient::connect(url).unwrap();
        let other = BlockingClient::connect(url).unwrap();
        c.sql_in(
            0,
            "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS posts (id INTEGER PRIMARY KEY, author_id INTEGER REFERENCES users(id), title TEXT);
             DELETE FROM posts; DELETE FROM users;",
            Params::None,
        )
        .unwrap();
        let f = users_with_posts();
        let s = c.begin().unwrap();
        c.mutate_in(s, &insert_user(1, "ada")).unwrap();
        c.sql_in(
            s,
            "INSERT INTO posts (id, author_id, title) VALUES (1, 1, 'p')",
            Params::None,
        )
        .unwrap();
        let g = c.fetch_in(s, &f).unwrap();
        assert_eq!((g.roots.clone(), posts_of(&g)), (vec![1], 1));
        let agg = c.aggregate_in(s, &post_count()).unwrap();
        assert_eq!(agg.rows[0][0], Value::Integer(1));
        assert_eq!(actual_root_rows(&c.explain_in(s, &f, true).unwrap()), 1);
        assert!(other.fetch_in(0, &f).unwrap().roots.is_empty());
        c.commit(s).unwrap();
        assert_eq!(other.fetch_in(0, &f).unwrap().roots, vec![1]);
        let (_, b) = other.schema(0, u64::MAX).unwrap();
        assert!(b.unwrap().entities.iter().any(|e| e.name == "users"));
    }
}

#[test]
fn an_idle_session_is_rolled_back_with_its_mutations() {
    let server = Server::start(&["--session-idle-timeout", "1"]);
    let rt = runtime();
    rt.block_on(async {
        let c = Client::connect(&server.ipc).await.unwrap();
        c.sql(SCHEMA, Params::None).await.unwrap();
        let f = users_with_posts();
        let s = c.begin().await.unwrap();
        c.mutate_in(s, &insert_user(3, "lost")).await.unwrap();
        assert_eq!(c.fetch_in(s, &f).await.unwrap().roots, vec![1, 2, 3]);
        // Requests of every kind keep it alive past the timeout...
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(600)).await;
            c.aggregate_in(s, &post_count()).await.unwrap();
        }
        c.explain_in(s, &f, false).await.unwrap();
        // ...and without them it expires: rolled back, its id unknown.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let m = c.metrics().await.unwrap();
            if m.contains("ormdb_server_open_sessions 0") {
                break;
            }
            assert!(Instant::now() < deadline, "the session never expired");
        }
        let e = c.fetch_in(s, &f).await.unwrap_err();
        assert_eq!(e.state, SqlState::InvalidTransactionState, "{e}");
        assert!(e.message.contains("idle timeout"), "{e}");
        assert_eq!(c.fetch_in(0, &f).await.unwrap().roots, vec![1, 2]);
        // The key it held is free again.
        c.mutate_in(0, &insert_user(3, "kept")).await.unwrap();
    });
}

/// The same script on a connection by path and by URL gives the same answers.
fn script(conn: &mut SqlConnection, other: &mut SqlConnection) {
    conn.execute(SCHEMA, &Params::None).unwrap();
    let f = users_with_posts();
    conn.execute("BEGIN", &Params::None).unwrap();
    conn.execute(
        "INSERT INTO posts (id, author_id, title) VALUES (13, 2, 'b2')",
        &Params::None,
    )
    .unwrap();
    conn.mutate(&insert_user(3, "cy")).unwrap();
    assert_eq!(conn.fetch(&f).unwrap().roots, vec![1, 2, 3]);
    let agg = conn.aggregate(&post_count()).unwrap();
    assert_eq!(agg.rows[0][0], Value::Integer(4));
    assert_eq!(actual_root_rows(&conn.explain(&f, true).unwrap()), 3);
    assert!(conn
        .schema()
        .unwrap()
        .entities
        .iter()
        .any(|e| e.name == "posts"));
    assert_eq!(other.fetch(&f).unwrap().roots, vec![1, 2]);
    conn.execute("ROLLBACK", &Params::None).unwrap();
    assert_eq!(conn.fetch(&f).unwrap().roots, vec![1, 2]);
    assert_eq!(
        conn.aggregate(&post_count()).unwrap().rows[0][0],
        Value::Integer(3)
    );

    // Outside a transaction a mutation commits on its own.
    conn.mutate(&insert_user(4, "dee")).unwrap();
    assert_eq!(other.fetch(&f).unwrap().roots, vec![1, 2, 4]);
    conn.execute("BEGIN", &Params::None).unwrap();
    conn.mutate(&insert_user(5, "eve")).unwrap();
    conn.execute("COMMIT", &Params::None).unwrap();
    assert_eq!(other.fetch(&f).unwrap().roots, vec![1, 2, 4, 5]);
}

#[test]
fn connect_runs_graph_requests_in_its_transaction_for_a_path_or_a_url() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("local");
    let path = path.to_str().unwrap();
    let mut local = connect(path).unwrap();
    let mut local2 = connect(path).unwrap();
    script(&mut local, &mut local2);

    let server = Server::start(&[]);
    let mut remote = connect(&server.tcp).unwrap();
    let mut remote2 = connect(&server.ipc).unwrap();
    script(&mut remote, &mut remote2);
}

#[test]
fn version_2_requests_need_a_version_2_connection() {
    let server = Server::start(&[]);
    let rt = runtime();
    rt.block_on(async {
        let opts = ClientOptions {
            versions: vec![1],
            ..ClientOptions::default()
        };
        let v1 = Client::connect_with(&server.tcp, opts.clone())
            .await
            .unwrap();
        assert_eq!(v1.protocol_version(), 1);
        v1.sql("CREATE TABLE t (id INTEGER PRIMARY KEY)", Params::None)
            .await
            .unwrap();
        let f = GraphFetch::new("t");
        // The v1 requests work; the client refuses v2 ones before sending them.
        assert!(v1.fetch(&f).await.unwrap().roots.is_empty());
        let e = v1.fetch_in(0, &f).await.unwrap_err();
        assert_eq!(e.state, SqlState::FeatureNotSupported, "{e}");
        assert!(e.message.contains("protocol version 2"), "{e}");
        let e = v1.schema(0, 0).await.unwrap_err();
        assert_eq!(e.state, SqlState::FeatureNotSupported, "{e}");

        // Sent anyway, framed as version 1, the server says why it refuses.
        let frame = encode_message(&Message {
            version: 1,
            body: Body::Schema {
                session: 0,
                known_version: 0,
            },
        })
        .unwrap();
        let e = v1.request_raw(&frame).await.err().expect("refused");
        assert_eq!(e.state, SqlState::ProtocolViolation, "{e}");
        assert!(e.message.contains("Schema needs protocol version 2"), "{e}");
        v1.sql("SELECT 1", Params::None).await.unwrap();
    });
}

#[test]
fn a_remote_subscription_delivers_whole_commits_and_resumes_from_a_token() {
    use ormdb::net::RemoteSubscription;
    let server = Server::start(&[]);
    let mut w = connect(&server.tcp).unwrap();
    w.execute(SCHEMA, &Params::None).unwrap();
    let wait = Duration::from_secs(10);
    let mut sub =
        RemoteSubscription::open(&server.ipc, ClientOptions::default(), vec![], None).unwrap();
    assert!(sub
        .next_timeout(Duration::from_millis(200))
        .unwrap()
        .is_none());
    // One commit touching two entities is one change set, as in process.
    w.execute("BEGIN", &Params::None).unwrap();
    w.execute(
        "INSERT INTO users (id, name) VALUES (3, 'cy')",
        &Params::None,
    )
    .unwrap();
    w.mutate(&Mutation {
        ops: vec![MutationOp::Delete {
            entity: "posts".into(),
            filter: None,
        }],
    })
    .unwrap();
    w.execute("COMMIT", &Params::None).unwrap();
    let started = Instant::now();
    let cs = sub.next_timeout(wait).unwrap().expect("the commit");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "prompt delivery"
    );
    let mut entities: Vec<&str> = cs.entities.iter().map(|e| e.entity.as_str()).collect();
    entities.sort_unstable();
    entities.dedup();
    assert_eq!(entities, vec!["posts", "users"], "{cs:?}");
    assert_eq!(cs.entities.len(), 4);
    assert_eq!(sub.position(), cs.token);
    let pos = sub.position();
    drop(sub);

    // Committed while nobody listened, including a new table: a new subscription (filtered)
    // resumes after the token and names the new table's fields from the refreshed catalog.
    w.execute(
        "CREATE TABLE late (id INTEGER PRIMARY KEY, label TEXT)",
        &Params::None,
    )
    .unwrap();
    w.execute(
        "INSERT INTO late (id, label) VALUES (1, 'a')",
        &Params::None,
    )
    .unwrap();
    w.execute(
        "INSERT INTO users (id, name) VALUES (4, 'dee')",
        &Params::None,
    )
    .unwrap();
    w.execute(
        "INSERT INTO late (id, label) VALUES (2, 'b')",
        &Params::None,
    )
    .unwrap();
    let mut sub = RemoteSubscription::open(
        &server.tcp,
        ClientOptions::default(),
        vec!["late".into()],
        Some(pos),
    )
    .unwrap();
    // The CREATE TABLE comes first, as a schema-only change set (as in process).
    let ddl = sub.next_timeout(wait).unwrap().expect("the DDL commit");
    assert!(ddl.schema_changed && ddl.entities.is_empty(), "{ddl:?}");
    let a = sub.next_timeout(wait).unwrap().expect("first late row");
    let b = sub.next_timeout(wait).unwrap().expect("second late row");
    assert_eq!(a.entities[0].values[1], Value::from("a"));
    assert_eq!(b.entities[0].values[1], Value::from("b"));
    assert!(a.token < b.token);
    assert!(sub
        .next_timeout(Duration::from_millis(300))
        .unwrap()
        .is_none());
    let late = sub
        .schema()
        .entities
        .iter()
        .find(|e| e.name == "late")
        .expect("the catalog knows the new table");
    assert_eq!(late.fields[1].name, "label");
    // Live after the replay.
    w.execute(
        "INSERT INTO late (id, label) VALUES (3, 'c')",
        &Params::None,
    )
    .unwrap();
    let c = sub.next_timeout(wait).unwrap().expect("live row");
    assert_eq!(c.entities[0].values[1], Value::from("c"));
}

/// Autocommit requests run on pooled server sessions shared by every client, so connection
/// state set there would reach other clients' statements: turning foreign keys off and
/// creating temporary objects outside a transaction are refused (0A000) instead, and nobody
/// else's statements change. Inside a transaction (a session of one client's own) temporary
/// tables work and end with it.
#[test]
fn connection_state_never_leaks_between_clients() {
    let server = Server::start(&[]);
    let rt = runtime();
    rt.block_on(async {
        let a = Client::connect(&server.ipc).await.unwrap();
        let b = Client::connect(&server.tcp).await.unwrap();
        a.sql(
            "CREATE TABLE p (id INTEGER PRIMARY KEY); \
             CREATE TABLE c (id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id))",
            Params::None,
        )
        .await
        .unwrap();
        // Enough requests to go round the pooled sessions.
        for _ in 0..4 {
            let e = a
                .sql("PRAGMA foreign_keys = OFF", Params::None)
                .await
                .unwrap_err();
            assert_eq!(e.state, SqlState::FeatureNotSupported, "{e}");
            assert!(e.message.contains("PRAGMA foreign_keys = OFF"), "{e}");
            // Setting the value it already has is fine (Django and SQLAlchemy setups do).
            a.sql("PRAGMA foreign_keys = ON", Params::None)
                .await
                .unwrap();
            let e = a
                .sql("CREATE TEMP TABLE tt (x INTEGER)", Params::None)
                .await
                .unwrap_err();
            assert_eq!(e.state, SqlState::FeatureNotSupported, "{e}");
            assert!(e.message.contains("temporary"), "{e}");
        }
        let r = b.sql("PRAGMA foreign_keys", Params::None).await.unwrap();
        assert_eq!(r.rows, vec![vec![Value::Integer(1)]]);
        // Nor do the counters: b's insert is not a's last insert, and a reply carries only
        // its own request's; within one request they work as in SQLite.
        a.sql("INSERT INTO p VALUES (5)", Params::None)
            .await
            .unwrap();
        for _ in 0..4 {
            let r = b
                .sql("INSERT INTO p VALUES (1000)", Params::None)
                .await
                .unwrap();
            assert_eq!((r.rows_affected, r.last_insert_rowid), (1, 1000));
            b.sql("DELETE FROM p WHERE id = 1000", Params::None)
                .await
                .unwrap();
            let r = a
                .sql(
                    "SELECT last_insert_rowid(), changes(), total_changes()",
                    Params::None,
                )
                .await
                .unwrap();
            assert_eq!(r.rows, vec![vec![Value::Integer(0); 3]]);
            let r = a
                .sql("UPDATE p SET id = id WHERE id = 5", Params::None)
                .await
                .unwrap();
            assert_eq!((r.rows_affected, r.last_insert_rowid), (1, 0));
        }
        let r = a
            .sql(
                "INSERT INTO p VALUES (6); SELECT last_insert_rowid(), changes(), total_changes()",
                Params::None,
            )
            .await
            .unwrap();
        assert_eq!(
            r.rows,
            vec![vec![
                Value::Integer(6),
                Value::Integer(1),
                Value::Integer(1)
            ]]
        );
        let e = b
            .sql("INSERT INTO c VALUES (1, 999)", Params::None)
            .await
            .unwrap_err();
        assert_eq!(e.state, SqlState::ForeignKeyViolation, "{e}");
        let e = b.sql("SELECT * FROM tt", Params::None).await.unwrap_err();
        assert!(e.message.contains("tt"), "{e}");

        // In a transaction: a temporary table of its own, gone when it ends.
        let s = a.begin().await.unwrap();
        a.sql_in(s, "CREATE TEMP TABLE tt (x INTEGER)", Params::None)
            .await
            .unwrap();
        a.sql_in(s, "INSERT INTO tt VALUES (7)", Params::None)
            .await
            .unwrap();
        let r = a.sql_in(s, "SELECT x FROM tt", Params::None).await.unwrap();
        assert_eq!(r.rows, vec![vec![Value::Integer(7)]]);
        // As in SQLite, foreign_keys does not change inside a transaction.
        a.sql_in(s, "PRAGMA foreign_keys = OFF", Params::None)
            .await
            .unwrap();
        let e = a
            .sql_in(s, "INSERT INTO c VALUES (2, 999)", Params::None)
            .await
            .unwrap_err();
        assert_eq!(e.state, SqlState::ForeignKeyViolation, "{e}");
        assert!(b.sql("SELECT * FROM tt", Params::None).await.is_err());
        a.commit(s).await.unwrap();
        assert!(a.sql("SELECT * FROM tt", Params::None).await.is_err());
    });
}
