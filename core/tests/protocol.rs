//! The wire protocol and the JSON form: every message body round-trips through rkyv (owned
//! decode and zero-copy access, at any alignment); garbage, random, corrupted and truncated
//! buffers and unsupported protocol versions are rejected with 08P01 and never panic; the JSON
//! forms of GraphFetch, Mutation and Aggregate refuse unknown fields (22023, naming the field)
//! and cursor tokens that are not ours (22023).

mod common;

use common::{expect_err, int, text};
use ormdb::ir::graph::{CmpOp, Nulls, Page};
use ormdb::ir::protocol::{
    access, decode, encode, encode_message, ArchivedBody, Body, Message, PROTOCOL_VERSION,
};
use ormdb::{
    AggFunc, Aggregate, Budget, CreateNode, Cursor, DataType, Database, EntitySpec, FieldDef,
    Filter, ForeignKeySpec, GraphFetch, Include, Measure, Mutation, MutationOp, NestedCreate,
    OrderBy, SqlState, Value,
};
use proptest::prelude::*;

fn cursor() -> Cursor {
    Cursor {
        values: vec![
            Value::Null,
            int(-7),
            Value::Real(2.5),
            text("é'x"),
            Value::Blob(vec![0, 255, 3]),
        ],
        id: 42,
    }
}

/// A fetch using every feature of the IR.
fn full_fetch() -> GraphFetch {
    let leaf_filters = vec![
        Filter::cmp("a", CmpOp::Eq, 1),
        Filter::cmp("a", CmpOp::Ne, 2.5),
        Filter::cmp("b", CmpOp::Lt, "x"),
        Filter::cmp("b", CmpOp::Le, Value::Null),
        Filter::cmp("c", CmpOp::Gt, Value::Blob(vec![1, 2])),
        Filter::cmp("c", CmpOp::Ge, -3),
        Filter::In {
            field: "a".into(),
            values: vec![int(1), Value::Null, text("t")],
            negated: true,
        },
        Filter::in_list("a", vec![]),
        Filter::Like {
            field: "b".into(),
            pattern: "a!%_%".into(),
            escape: Some('!'),
            negated: true,
        },
        Filter::like("b", "%"),
        Filter::IsNull {
            field: "c".into(),
            negated: true,
        },
        Filter::some("posts", Some(Filter::every("comments", None))),
        Filter::none("tags", Some(Filter::eq("name", "x"))),
    ];
    let filter = Filter::and(vec![
        Filter::or(leaf_filters),
        Filter::not(Filter::and(vec![])),
    ]);
    GraphFetch {
        root: "users".into(),
        filter: Some(filter.clone()),
        select: Some(vec!["id".into(), "name".into()]),
        order: vec![
            OrderBy::desc("name").nulls(Nulls::First),
            OrderBy::asc("id").nulls(Nulls::Last),
            OrderBy::asc("age"),
        ],
        page: Page {
            limit: Some(10),
            after: Some(cursor()),
            offset: 3,
        },
        includes: vec![
            Include::new("posts")
                .filter(filter)
                .select(&["title"])
                .order(OrderBy::desc("score"))
                .limit(5)
                .after(Cursor {
                    values: vec![int(3)],
                    id: 9,
                })
                .count("comments")
                .include(Include::new("comments").include(Include::new("author"))),
            Include::new("profile"),
        ],
        counts: vec!["posts".into()],
        budget: Some(Budget {
            max_depth: 4,
            max_fanout: 5,
            max_rows: 6,
            max_edges: 7,
            max_time_ms: 8,
            max_offset: 9,
        }),
    }
}

fn record(pairs: &[(&str, Value)]) -> ormdb::ir::Record {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn full_mutation() -> Mutation {
    Mutation {
        ops: vec![
            MutationOp::Insert {
                entity: "users".into(),
                rows: vec![
                    record(&[("name", text("a")), ("age", Value::Null)]),
                    record(&[("name", text("b")), ("age", Value::Real(1.5))]),
                ],
            },
            MutationOp::Update {
                entity: "users".into(),
                filter: Some(Filter::eq("id", 1)),
                set: record(&[("age", int(3))]),
            },
            MutationOp::Update {
                entity: "users".into(),
                filter: None,
                set: record(&[]),
            },
            MutationOp::Delete {
                entity: "posts".into(),
                filter: Some(Filter::is_null("title")),
            },
            MutationOp::Upsert {
                entity: "users".into(),
                on: vec!["email".into()],
                rows: vec![record(&[("email", text("e")), ("name", text("n"))])],
                update: Some(vec!["name".into()]),
            },
            MutationOp::Create(CreateNode {
                entity: "users".into(),
                values: record(&[("name", text("root"))]),
                nested: vec![NestedCreate {
                    relation: "posts".into(),
                    rows: vec![CreateNode {
                        entity: "posts".into(),
                        values: record(&[("title", text("p"))]),
                        nested: vec![],
                    }],
                }],
            }),
        ],
    }
}

fn full_aggregate() -> Aggregate {
    Aggregate {
        entity: "posts".into(),
        filter: Some(Filter::cmp("score", CmpOp::Gt, 1)),
        group_by: vec!["user_id".into()],
        measures: vec![
            Measure::count(),
            Measure {
                func: AggFunc::Count,
                field: Some("title".into()),
                distinct: true,
                alias: Some("titles".into()),
            },
            Measure::of(AggFunc::Sum, "score"),
            Measure::of(AggFunc::Avg, "score"),
            Measure::of(AggFunc::Min, "title"),
            Measure::of(AggFunc::Max, "score"),
        ],
    }
}

/// A small database to produce real results.
fn db() -> (Database, ormdb::Connection) {
    let db = Database::temporary().unwrap();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("users")
            .id("id")
            .field(FieldDef::new("name", DataType::Text))
            .field(FieldDef::new("email", DataType::Text))
            .unique(&["email"]),
    )
    .unwrap();
    tx.create_entity(
        &EntitySpec::new("posts")
            .id("id")
            .field(FieldDef::new("user_id", DataType::Integer))
            .field(FieldDef::new("title", DataType::Text))
            .field(FieldDef::new("score", DataType::Real))
            .foreign_key(ForeignKeySpec::new(&["user_id"], "users", &["id"])),
    )
    .unwrap();
    for u in 1..=3 {
        tx.insert(
            "users",
            &[
                ("name", text(&format!("u{u}"))),
                ("email", text(&format!("{u}@x"))),
            ],
        )
        .unwrap();
        for p in 0..3 {
            tx.insert(
                "posts",
                &[
                    ("user_id", int(u)),
                    ("title", if p == 1 { Value::Null } else { text("t") }),
                    ("score", Value::Real(p as f64 * 1.5)),
                ],
            )
            .unwrap();
        }
    }
    tx.commit().unwrap();
    (db, conn)
}

/// One body of every kind, the result kinds from a real database.
fn all_bodies() -> Vec<Body> {
    let (db, conn) = db();
    let fetch = GraphFetch::new("users")
        .order(OrderBy::desc("name"))
        .limit(2)
        .count("posts")
        .include(Include::new("posts").limit(1));
    let result = conn.fetch(&fetch).unwrap();
    assert!(result.next_cursor.is_some() && !result.edges.is_empty());
    let explain = conn.explain(&fetch, true).unwrap();
    let mutation = conn
        .mutate(&Mutation {
            ops: vec![
                MutationOp::Insert {
                    entity: "users".into(),
                    rows: vec![record(&[("name", text("n"))])],
                },
                MutationOp::Update {
                    entity: "posts".into(),
                    filter: Some(Filter::eq("user_id", 1)),
                    set: record(&[("score", Value::Real(9.0))]),
                },
            ],
        })
        .unwrap();
    let aggregate = conn
        .aggregate(&Aggregate {
            entity: "posts".into(),
            filter: None,
            group_by: vec!["user_id".into()],
            measures: vec![
                Measure::count(),
                Measure::of(AggFunc::Avg, "score"),
                Measure::of(AggFunc::Min, "title"),
            ],
        })
        .unwrap();
    vec![
        Body::Fetch(full_fetch()),
        Body::Fetch(GraphFetch::new("x")),
        Body::Explain {
            fetch: full_fetch(),
            analyze: true,
        },
        Body::Mutate(full_mutation()),
        Body::Aggregate(full_aggregate()),
        Body::FetchResult(result),
        Body::FetchResult(Default::default()),
        Body::ExplainResult(explain.text),
        Body::MutationResult(mutation),
        Body::AggregateResult(aggregate),
        Body::Error {
            code: "54000".into(),
            message: "budget max_rows (1) exceeded".into(),
        },
        Body::FetchIn {
            session: 9,
            fetch: Box::new(full_fetch()),
        },
        Body::ExplainIn {
            session: 0,
            fetch: Box::new(full_fetch()),
            analyze: true,
        },
        Body::MutateIn {
            session: 9,
            mutation: Box::new(full_mutation()),
        },
        Body::AggregateIn {
            session: 9,
            aggregate: Box::new(full_aggregate()),
        },
        Body::Schema {
            session: 9,
            known_version: 3,
        },
        Body::SchemaResult {
            version: db.schema().version,
            bundle: Some(Box::new(db.schema())),
        },
        Body::SchemaResult {
            version: 3,
            bundle: None,
        },
    ]
    .into_iter()
    .chain(server_bodies())
    .collect()
}

/// The server-mode messages (core/src/net), with every field filled.
fn server_bodies() -> Vec<Body> {
    use ormdb::changes::{EntityChange, RelationChange};
    use ormdb::ir::protocol::ChangeEvent;
    use ormdb::{ChangeKind, ChangeSet, Params, StatementResult};
    let change = EntityChange {
        entity: "posts".into(),
        table_id: 3,
        row_id: 7,
        kind: ChangeKind::Update,
        version: 12,
        changed: vec![1, 2],
        values: vec![int(7), text("t"), Value::Null],
    };
    let relation = RelationChange {
        relation: "author".into(),
        child_entity: "posts".into(),
        child_row_id: 7,
        parent_entity: "users".into(),
        parent_key: vec![int(1)],
        attached: true,
    };
    vec![
        Body::Hello {
            versions: vec![1, 2],
            client: "test".into(),
        },
        Body::HelloOk {
            version: 1,
            supported: vec![1],
            server: "ormdb".into(),
            change_urls: vec!["tcp://127.0.0.1:1".into()],
            max_request: 1 << 20,
        },
        Body::Sql {
            session: 3,
            sql: "SELECT ?".into(),
            params: Params::Named(vec![("a".into(), Value::Real(1.5))]),
        },
        Body::SqlResult(StatementResult {
            columns: vec!["a".into()],
            decl_types: vec![Some("INTEGER".into()), None],
            rows: vec![vec![int(1), Value::Blob(vec![0, 1])]],
            rows_affected: 2,
            last_insert_rowid: 9,
        }),
        Body::Prepare {
            sql: "SELECT 1".into(),
        },
        Body::Prepared {
            id: 4,
            parameter_count: 2,
        },
        Body::ExecutePrepared {
            session: 0,
            id: 4,
            params: Params::Positional(vec![text("x")]),
        },
        Body::ClosePrepared { id: 4 },
        Body::Begin,
        Body::SessionOpened { session: 77 },
        Body::Commit { session: 77 },
        Body::Rollback { session: 77 },
        Body::Done,
        Body::Metrics,
        Body::MetricsText("# HELP x".into()),
        Body::Changes {
            from: 5,
            entities: vec!["posts".into()],
            limit: 10,
        },
        Body::ChangeBatch {
            sets: vec![ChangeSet {
                token: 6,
                schema_version: 2,
                schema_changed: false,
                entities: vec![change.clone()],
                relations: vec![relation.clone()],
            }],
            position: 6,
        },
        Body::Change(ChangeEvent {
            token: 6,
            prev: 5,
            entity: "posts".into(),
            changes: vec![change],
            relations: vec![relation],
        }),
        Body::Chunk {
            id: 1,
            total: 10,
            offset: 0,
            bytes: vec![1, 2, 3],
        },
        Body::NextChunk { id: 1, offset: 3 },
    ]
}

fn kind(b: &ArchivedBody) -> &'static str {
    match b {
        ArchivedBody::Fetch(_) => "fetch",
        ArchivedBody::Explain { .. } => "explain",
        ArchivedBody::Mutate(_) => "mutate",
        ArchivedBody::Aggregate(_) => "aggregate",
        ArchivedBody::FetchResult(_) => "fetch_result",
        ArchivedBody::ExplainResult(_) => "explain_result",
        ArchivedBody::MutationResult(_) => "mutation_result",
        ArchivedBody::AggregateResult(_) => "aggregate_result",
        ArchivedBody::Error { .. } => "error",
        ArchivedBody::Hello { .. } => "hello",
        ArchivedBody::HelloOk { .. } => "hello_ok",
        ArchivedBody::Sql { .. } => "sql",
        ArchivedBody::SqlResult(_) => "sql_result",
        ArchivedBody::Prepare { .. } => "prepare",
        ArchivedBody::Prepared { .. } => "prepared",
        ArchivedBody::ExecutePrepared { .. } => "execute_prepared",
        ArchivedBody::ClosePrepared { .. } => "close_prepared",
        ArchivedBody::Begin => "begin",
        ArchivedBody::SessionOpened { .. } => "session_opened",
        ArchivedBody::Commit { .. } => "commit",
        ArchivedBody::Rollback { .. } => "rollback",
        ArchivedBody::Done => "done",
        ArchivedBody::Metrics => "metrics",
        ArchivedBody::MetricsText(_) => "metrics_text",
        ArchivedBody::Changes { .. } => "changes",
        ArchivedBody::ChangeBatch { .. } => "change_batch",
        ArchivedBody::Change(_) => "change",
        ArchivedBody::Chunk { .. } => "chunk",
        ArchivedBody::NextChunk { .. } => "next_chunk",
        ArchivedBody::FetchIn { .. } => "fetch_in",
        ArchivedBody::ExplainIn { .. } => "explain_in",
        ArchivedBody::MutateIn { .. } => "mutate_in",
        ArchivedBody::AggregateIn { .. } => "aggregate_in",
        ArchivedBody::Schema { .. } => "schema",
        ArchivedBody::SchemaResult { .. } => "schema_result",
    }
}

fn body_kind(b: &Body) -> &'static str {
    match b {
        Body::Fetch(_) => "fetch",
        Body::Explain { .. } => "explain",
        Body::Mutate(_) => "mutate",
        Body::Aggregate(_) => "aggregate",
        Body::FetchResult(_) => "fetch_result",
        Body::ExplainResult(_) => "explain_result",
        Body::MutationResult(_) => "mutation_result",
        Body::AggregateResult(_) => "aggregate_result",
        Body::Error { .. } => "error",
        Body::Hello { .. } => "hello",
        Body::HelloOk { .. } => "hello_ok",
        Body::Sql { .. } => "sql",
        Body::SqlResult(_) => "sql_result",
        Body::Prepare { .. } => "prepare",
        Body::Prepared { .. } => "prepared",
        Body::ExecutePrepared { .. } => "execute_prepared",
        Body::ClosePrepared { .. } => "close_prepared",
        Body::Begin => "begin",
        Body::SessionOpened { .. } => "session_opened",
        Body::Commit { .. } => "commit",
        Body::Rollback { .. } => "rollback",
        Body::Done => "done",
        Body::Metrics => "metrics",
        Body::MetricsText(_) => "metrics_text",
        Body::Changes { .. } => "changes",
        Body::ChangeBatch { .. } => "change_batch",
        Body::Change(_) => "change",
        Body::Chunk { .. } => "chunk",
        Body::NextChunk { .. } => "next_chunk",
        Body::FetchIn { .. } => "fetch_in",
        Body::ExplainIn { .. } => "explain_in",
        Body::MutateIn { .. } => "mutate_in",
        Body::AggregateIn { .. } => "aggregate_in",
        Body::Schema { .. } => "schema",
        Body::SchemaResult { .. } => "schema_result",
    }
}

/// Rejected with 08P01, whatever the bytes (and without panicking).
fn assert_rejected(bytes: &[u8], what: &str) {
    match decode(bytes) {
        Ok(m) => panic!("{what}: {} bytes decoded as {m:?}", bytes.len()),
        Err(e) => assert_eq!(e.code(), "08P01", "{what}: {e}"),
    }
    let e = access(bytes).map(|_| ()).unwrap_err();
    assert_eq!(e.state, SqlState::ProtocolViolation, "{what}");
}

#[test]
fn every_body_kind_round_trips() {
    for body in all_bodies() {
        let bytes = encode(&body).unwrap();
        let msg = decode(&bytes).unwrap();
        assert_eq!(msg.version, PROTOCOL_VERSION);
        assert_eq!(msg.body, body);
        // Zero-copy view, also from a buffer at an odd address.
        let archived = access(&bytes).unwrap();
        assert_eq!(archived.version.to_native(), PROTOCOL_VERSION);
        assert_eq!(kind(&archived.body), body_kind(&body));
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(&bytes);
        assert_eq!(decode(&shifted[1..]).unwrap().body, body);
        if let (ArchivedBody::Fetch(f), Body::Fetch(g)) = (&archived.body, &body) {
            assert_eq!(f.root.as_str(), g.root);
            assert_eq!(f.includes.len(), g.includes.len());
        }
    }
}

#[test]
fn garbage_is_rejected_with_08p01() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "empty"),
        (vec![0], "one zero byte"),
        (vec![0xff; 3], "three 0xff"),
        (vec![0xff; 64], "64 x 0xff"),
        (b"{\"root\": \"users\"}".to_vec(), "JSON"),
        (b"SELECT * FROM users".to_vec(), "SQL"),
        ((0..=255u8).collect(), "all byte values"),
        (vec![0x7f; 4096], "4 KiB of 0x7f"),
    ];
    for (bytes, what) in cases {
        assert_rejected(&bytes, what);
    }
}

#[test]
fn truncated_buffers_are_rejected_at_every_length() {
    for body in all_bodies() {
        let bytes = encode(&body).unwrap();
        for n in 0..bytes.len() {
            assert_rejected(&bytes[..n], &format!("{} cut to {n}", body_kind(&body)));
        }
        // Cut from the front, too.
        for n in 1..bytes.len().min(64) {
            assert_rejected(
                &bytes[n..],
                &format!("{} without its first {n}", body_kind(&body)),
            );
        }
    }
}

#[test]
fn other_protocol_versions_are_rejected() {
    for version in [0, PROTOCOL_VERSION + 1, u32::MAX] {
        let msg = Message {
            version,
            body: Body::Fetch(full_fetch()),
        };
        let bytes = encode_message(&msg).unwrap();
        let e = expect_err(decode(&bytes), SqlState::ProtocolViolation, &["version"]);
        assert_eq!(e.code(), "08P01");
        assert!(access(&bytes).is_err());
    }
    // The same message at the current version is fine.
    let msg = Message {
        version: PROTOCOL_VERSION,
        body: Body::Fetch(full_fetch()),
    };
    let bytes = encode_message(&msg).unwrap();
    assert_eq!(decode(&bytes).unwrap(), msg);
    // A bare rkyv buffer (no frame) is refused: truncation would otherwise go unnoticed.
    let bare = rkyv::to_bytes::<rkyv::rancor::Error>(&msg).unwrap();
    assert_rejected(&bare, "unframed rkyv bytes");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random bytes: rejected with 08P01 or (if they happen to form a valid message) decoded;
    /// never a panic.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        match decode(&bytes) {
            Ok(m) => prop_assert!(access(&bytes).is_ok(), "decoded {:?}", m),
            Err(e) => prop_assert_eq!(e.code(), "08P01"),
        }
    }

    /// A valid message with bytes overwritten: rejected with 08P01 or decoded to some message
    /// (when the change hit payload bytes); never a panic.
    #[test]
    fn corrupted_messages_never_panic(
        which in 0usize..31,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        thread_local! {
            static ENCODED: Vec<Vec<u8>> = all_bodies().iter().map(|b| encode(b).unwrap()).collect();
        }
        let mut bytes = ENCODED.with(|e| e[which % e.len()].clone());
        for (i, b) in edits {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        match decode(&bytes) {
            Ok(m) => prop_assert_eq!(m.version, PROTOCOL_VERSION),
            Err(e) => prop_assert_eq!(e.code(), "08P01"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON

#[test]
fn json_forms_round_trip() {
    let f = full_fetch();
    assert_eq!(GraphFetch::from_json(&f.to_json()).unwrap(), f);
    let m = full_mutation();
    assert_eq!(
        Mutation::from_json(&serde_json::to_string(&m).unwrap()).unwrap(),
        m
    );
    let a = full_aggregate();
    assert_eq!(
        Aggregate::from_json(&serde_json::to_string(&a).unwrap()).unwrap(),
        a
    );
}

#[test]
fn json_unknown_fields_are_refused_naming_them() {
    let fetches = [
        r#"{"root": "users", "bogus": 1}"#,
        r#"{"root": "users", "page": {"limit": 1, "bogus": 1}}"#,
        r#"{"root": "users", "order": [{"field": "id", "bogus": true}]}"#,
        r#"{"root": "users", "budget": {"max_rows": 1, "bogus": 1}}"#,
        r#"{"root": "users", "includes": [{"relation": "posts", "bogus": 1}]}"#,
        r#"{"root": "users", "includes": [{"relation": "posts", "includes": [{"relation": "c", "bogus": 1}]}]}"#,
        r#"{"root": "users", "filter": {"cmp": {"field": "id", "op": "eq", "value": 1, "bogus": 1}}}"#,
        r#"{"root": "users", "filter": {"is_null": {"field": "id", "bogus": 1}}}"#,
        r#"{"root": "users", "filter": {"some": {"relation": "posts", "bogus": 1}}}"#,
        r#"{"root": "users", "filter": {"bogus": {"field": "id"}}}"#,
    ];
    for j in fetches {
        let e = expect_err(
            GraphFetch::from_json(j),
            SqlState::InvalidParameter,
            &["bogus"],
        );
        assert_eq!(e.code(), "22023", "{j}");
    }
    let mutations = [
        r#"{"ops": [], "bogus": 1}"#,
        r#"{"ops": [{"insert": {"entity": "users", "rows": [], "bogus": 1}}]}"#,
        r#"{"ops": [{"delete": {"entity": "users", "bogus": 1}}]}"#,
        r#"{"ops": [{"create": {"entity": "users", "values": {}, "bogus": 1}}]}"#,
        r#"{"ops": [{"create": {"entity": "users", "values": {}, "nested": [{"relation": "posts", "rows": [], "bogus": 1}]}}]}"#,
        r#"{"ops": [{"bogus": {"entity": "users"}}]}"#,
    ];
    for j in mutations {
        let e = expect_err(
            Mutation::from_json(j),
            SqlState::InvalidParameter,
            &["bogus"],
        );
        assert_eq!(e.code(), "22023", "{j}");
    }
    let aggregates = [
        r#"{"entity": "posts", "measures": [], "bogus": 1}"#,
        r#"{"entity": "posts", "measures": [{"func": "count", "bogus": 1}]}"#,
        r#"{"entity": "posts", "measures": [{"func": "bogus"}]}"#,
    ];
    for j in aggregates {
        let e = expect_err(
            Aggregate::from_json(j),
            SqlState::InvalidParameter,
            &["bogus"],
        );
        assert_eq!(e.code(), "22023", "{j}");
    }
    // Not JSON at all, or the wrong shape: 22023 too.
    for j in ["", "{", "[]", "null", r#"{"root": 5}"#] {
        expect_err(GraphFetch::from_json(j), SqlState::InvalidParameter, &[]);
    }
}

#[test]
fn cursor_tokens_that_are_not_ours_are_refused() {
    let c = cursor();
    let token = c.to_token();
    assert_eq!(Cursor::from_token(&token).unwrap(), c);
    let mut bad: Vec<String> = vec![
        String::new(),
        "0".into(),
        "zz".into(),
        "é".into(),
        "not a cursor".into(),
        "00".repeat(8),
        "ff".repeat(40),
        token.to_uppercase().replace('A', "G"),
        format!("{token}0"),
    ];
    for n in (0..token.len()).step_by(2) {
        bad.push(token[..n].to_string());
    }
    for t in &bad {
        match Cursor::from_token(t) {
            Err(e) => assert_eq!(e.code(), "22023", "{t:?}: {e}"),
            Ok(c) => panic!("token {t:?} accepted as {c:?}"),
        }
        let j = format!(r#"{{"root": "users", "page": {{"after": "{t}"}}}}"#);
        let e = expect_err(
            GraphFetch::from_json(&j),
            SqlState::InvalidParameter,
            &["cursor"],
        );
        assert_eq!(e.code(), "22023");
        let j = format!(
            r#"{{"root": "users", "includes": [{{"relation": "posts", "after": "{t}"}}]}}"#
        );
        expect_err(
            GraphFetch::from_json(&j),
            SqlState::InvalidParameter,
            &["cursor"],
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any string as a cursor token: 22023 or a cursor that re-encodes to the same token.
    #[test]
    fn random_cursor_tokens_never_panic(t in "[0-9a-fA-Fz ]{0,80}") {
        match Cursor::from_token(&t) {
            Err(e) => prop_assert_eq!(e.code(), "22023"),
            Ok(c) => prop_assert_eq!(Cursor::from_token(&c.to_token()).unwrap(), c),
        }
    }
}
