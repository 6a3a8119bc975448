//! Graph fetch: includes at every relation kind, filters (incl. relation predicates), order,
//! pagination, relation counts, budgets, EXPLAIN, mutations and aggregates on a real database.

mod common;

use common::{expect_err, int, text};
use ormdb::ir::graph::CmpOp;
use ormdb::GraphResult;
use ormdb::{
    AggFunc, Aggregate, Budget, Connection, CreateNode, Database, Filter, GraphFetch, Include,
    Measure, Mutation, MutationOp, NestedCreate, OrderBy, SqlState, Value,
};

/// users -> posts -> comments (comments also -> users as author), posts <-> tags through
/// post_tags. `n_users` users with `posts_per` posts with `comments_per` comments each.
pub fn blog(n_users: i64, posts_per: i64, comments_per: i64) -> (Database, Connection) {
    let db = Database::temporary().unwrap();
    let conn = db.connect();
    common::blog_schema(&conn);
    let mut tx = conn.begin().unwrap();
    for t in 1..=3 {
        tx.insert(
            "tags",
            &[("id", int(t)), ("name", text(&format!("tag{t}")))],
        )
        .unwrap();
    }
    let mut post_id = 0;
    let mut comment_id = 0;
    for u in 1..=n_users {
        tx.insert(
            "users",
            &[
                ("id", int(u)),
                ("name", text(&format!("user{u}"))),
                ("email", text(&format!("u{u}@x"))),
                (
                    "age",
                    if u % 5 == 0 {
                        Value::Null
                    } else {
                        int(20 + u % 7)
                    },
                ),
            ],
        )
        .unwrap();
    }
    for u in 1..=n_users {
        for p in 0..posts_per {
            post_id += 1;
            tx.insert(
                "posts",
                &[
                    ("id", int(post_id)),
                    ("user_id", int(u)),
                    ("title", text(&format!("post{post_id}"))),
                    ("score", int((post_id * 7) % 11)),
                ],
            )
            .unwrap();
            for t in 1..=3 {
                if (post_id + t) % 2 == 0 || p == 0 && t == 1 {
                    tx.insert(
                        "post_tags",
                        &[("post_id", int(post_id)), ("tag_id", int(t))],
                    )
                    .unwrap();
                }
            }
            for _ in 0..comments_per {
                comment_id += 1;
                let author = if comment_id % 4 == 0 {
                    Value::Null
                } else {
                    int(1 + comment_id % n_users)
                };
                tx.insert(
                    "comments",
                    &[
                        ("id", int(comment_id)),
                        ("post_id", int(post_id)),
                        ("author_id", author),
                        ("body", text(&format!("c{comment_id}"))),
                    ],
                )
                .unwrap();
            }
        }
    }
    tx.commit().unwrap();
    (db, conn)
}

fn col(r: &ormdb::GraphResult, entity: &str, field: &str, id: i64) -> Value {
    let b = r.block(entity).expect("block");
    let f = b.fields.iter().position(|x| x == field).expect("field");
    let i = b.ids.iter().position(|x| *x == id).expect("id");
    b.columns[f][i].clone()
}

#[test]
fn nested_includes_load_the_whole_graph_with_one_lookup_per_node() {
    let (_db, conn) = blog(3, 2, 3);
    let f = GraphFetch::new("users")
        .filter(Filter::eq("id", 2))
        .include(
            Include::new("posts")
                .include(Include::new("comments").include(Include::new("author")))
                .include(Include::new("tags")),
        );
    let r = conn.fetch(&f).unwrap();
    assert_eq!(r.roots, vec![2]);
    let posts = r.edges_at("posts").unwrap();
    assert_eq!(posts.parents, vec![2, 2]);
    assert_eq!(posts.children, vec![3, 4]);
    let comments = r.edges_at("posts.comments").unwrap();
    assert_eq!(comments.children, vec![7, 8, 9, 10, 11, 12]);
    let authors = r.edges_at("posts.comments.author").unwrap();
    // Comments 8 and 12 have no author.
    assert_eq!(authors.parents, vec![7, 9, 10, 11]);
    assert_eq!(r.stats.lookups, 5, "root + 4 include nodes");
    let tags = r.edges_at("posts.tags").unwrap();
    assert!(!tags.children.is_empty());
    assert_eq!(col(&r, "posts", "title", 4), text("post4"));
    // users appear as root and as authors: one block, deduplicated.
    let users = r.block("users").unwrap();
    let mut ids = users.ids.clone();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), users.ids.len());
    let nested = r.to_nested_json(&|p| p.ends_with("author"));
    assert_eq!(nested[0]["posts"][0]["comments"][0]["body"], "c7");
}

#[test]
fn filters_order_limits_and_cursors() {
    let (_db, conn) = blog(10, 3, 0);
    let f = GraphFetch::new("posts")
        .filter(Filter::and(vec![
            Filter::cmp("score", CmpOp::Ge, 3),
            Filter::not(Filter::in_list("user_id", vec![int(1), int(2)])),
        ]))
        .order(OrderBy::desc("score"))
        .limit(4);
    let mut seen = Vec::new();
    let mut page = conn.fetch(&f).unwrap();
    loop {
        seen.extend(page.roots.clone());
        match page.next_cursor.clone() {
            None => break,
            Some(c) => page = conn.fetch(&f.clone().after(c)).unwrap(),
        }
    }
    // Reference: all posts with score >= 3 and user not in (1,2), ordered by score desc, id asc.
    let all = conn
        .fetch(&GraphFetch::new("posts").select(&["score", "user_id"]))
        .unwrap();
    let b = all.block("posts").unwrap();
    assert_eq!(
        b.fields,
        vec!["user_id", "score"],
        "fields come in entity order"
    );
    let b = ormdb::ir::EntityBlock {
        columns: vec![b.columns[1].clone(), b.columns[0].clone()],
        ..b.clone()
    };
    let mut want: Vec<(i64, i64)> = b
        .ids
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            b.columns[0][*i].as_i64().unwrap() >= 3 && b.columns[1][*i].as_i64().unwrap() > 2
        })
        .map(|(i, id)| (-b.columns[0][i].as_i64().unwrap(), *id))
        .collect();
    want.sort();
    assert_eq!(seen, want.iter().map(|x| x.1).collect::<Vec<_>>());
}

#[test]
fn relation_predicates_and_counts() {
    let (_db, conn) = blog(4, 2, 2);
    // Users with some post that has tag2.
    let f = GraphFetch::new("users")
        .filter(Filter::some(
            "posts",
            Some(Filter::some("tags", Some(Filter::eq("name", "tag2")))),
        ))
        .count("posts");
    let r = conn.fetch(&f).unwrap();
    assert!(!r.roots.is_empty());
    let counts = &r.counts[0];
    assert!(counts.counts.iter().all(|c| *c == 2));
    // none / every
    let none = conn
        .fetch(&GraphFetch::new("users").filter(Filter::none("posts", None)))
        .unwrap();
    assert!(none.roots.is_empty());
    let every = conn
        .fetch(&GraphFetch::new("posts").filter(Filter::every(
            "comments",
            Some(Filter::is_null("author_id")),
        )))
        .unwrap();
    // post p has comments 2p-1, 2p; author NULL when id % 4 == 0, so no post has all NULL.
    assert!(every.roots.is_empty());
}

#[test]
fn budgets_reject_with_54000_naming_the_budget() {
    let (_db, conn) = blog(5, 4, 3);
    let base =
        GraphFetch::new("users").include(Include::new("posts").include(Include::new("comments")));
    let with = |b: Budget| base.clone().budget(b);
    let cases = [
        (
            Budget {
                max_rows: 10,
                ..Budget::default()
            },
            "max_rows",
        ),
        (
            Budget {
                max_edges: 10,
                ..Budget::default()
            },
            "max_edges",
        ),
        (
            Budget {
                max_fanout: 3,
                ..Budget::default()
            },
            "max_fanout",
        ),
        (
            Budget {
                max_depth: 1,
                ..Budget::default()
            },
            "max_depth",
        ),
    ];
    for (b, name) in &cases {
        expect_err(conn.fetch(&with(*b)), SqlState::LimitExceeded, &[name]);
    }
    // Again once repeated fetches have built table images: includes then copy whole runs of
    // image rows per key, and the budgets must still stop them.
    for _ in 0..20 {
        conn.fetch(&base).unwrap();
    }
    let m = _db.metrics_text();
    assert!(
        !m.contains("ormdb_table_image_hits_total 0\n"),
        "no table image was used: {m}"
    );
    for (b, name) in &cases {
        expect_err(conn.fetch(&with(*b)), SqlState::LimitExceeded, &[name]);
    }
    expect_err(
        conn.fetch(&GraphFetch::new("users").offset(10).budget(Budget {
            max_offset: 5,
            ..Budget::default()
        })),
        SqlState::LimitExceeded,
        &["max_offset"],
    );
    // Under budget: unaffected.
    let r = conn
        .fetch(&with(Budget {
            max_rows: 5 + 20 + 60,
            max_fanout: 4,
            ..Budget::default()
        }))
        .unwrap();
    assert_eq!(r.stats.rows, 85);
}

#[test]
fn unknown_names_are_clear_errors() {
    let (_db, conn) = blog(1, 1, 1);
    expect_err(
        conn.fetch(&GraphFetch::new("nope")),
        SqlState::UndefinedTable,
        &["nope"],
    );
    expect_err(
        conn.fetch(&GraphFetch::new("users").filter(Filter::eq("nope", 1))),
        SqlState::UndefinedColumn,
        &["nope"],
    );
    expect_err(
        conn.fetch(&GraphFetch::new("users").include(Include::new("friends"))),
        SqlState::UndefinedColumn,
        &["friends", "posts"],
    );
    expect_err(
        GraphFetch::from_json(r#"{"root": "users", "limitt": 3}"#),
        SqlState::InvalidParameter,
        &["limitt"],
    );
}

#[test]
fn json_form_round_trips_and_runs() {
    let (_db, conn) = blog(3, 2, 1);
    let f = GraphFetch::from_json(
        r#"{"root": "users", "filter": {"cmp": {"field": "age", "op": "ge", "value": 21}},
            "order": [{"field": "name", "desc": true}], "page": {"limit": 2},
            "includes": [{"relation": "posts", "select": ["title"], "limit": 1}]}"#,
    )
    .unwrap();
    assert_eq!(GraphFetch::from_json(&f.to_json()).unwrap(), f);
    let r = conn.fetch(&f).unwrap();
    assert_eq!(r.roots.len(), 2);
    assert!(r.next_cursor.is_some());
    let e = conn.explain(&f, true).unwrap();
    assert!(e.text.contains("actual"), "{}", e.text);
    println!("{}", e.text);
}

#[test]
fn mutations_and_aggregates() {
    let (_db, conn) = blog(2, 2, 0);
    let m = Mutation {
        ops: vec![
            MutationOp::Create(CreateNode {
                entity: "users".into(),
                values: [
                    ("name".to_string(), text("new")),
                    ("id".to_string(), int(100)),
                ]
                .into_iter()
                .collect(),
                nested: vec![NestedCreate {
                    relation: "posts".into(),
                    rows: vec![CreateNode {
                        entity: "posts".into(),
                        values: [("title".to_string(), text("np"))].into_iter().collect(),
                        nested: vec![NestedCreate {
                            relation: "tags".into(),
                            rows: vec![CreateNode {
                                entity: "tags".into(),
                                values: [("name".to_string(), text("fresh"))].into_iter().collect(),
                                nested: vec![],
                            }],
                        }],
                    }],
                }],
            }),
            MutationOp::Update {
                entity: "posts".into(),
                filter: Some(Filter::eq("user_id", 1)),
                set: [("score".to_string(), int(50))].into_iter().collect(),
            },
            MutationOp::Upsert {
                entity: "users".into(),
                on: vec!["email".into()],
                rows: vec![[
                    ("email".to_string(), text("u1@x")),
                    ("name".to_string(), text("renamed")),
                ]
                .into_iter()
                .collect()],
                update: None,
            },
        ],
    };
    let r = conn.mutate(&m).unwrap();
    assert_eq!(r.ops[0].affected, 4); // user, post, tag, join row
    assert_eq!(r.ops[1].affected, 2);
    assert_eq!(r.ops[2].ids, vec![1]);
    let g = conn
        .fetch(
            &GraphFetch::new("users")
                .filter(Filter::eq("id", 100))
                .include(Include::new("posts").include(Include::new("tags"))),
        )
        .unwrap();
    assert_eq!(g.edges_at("posts.tags").unwrap().children.len(), 1);
    let a = conn
        .aggregate(&Aggregate {
            entity: "posts".into(),
            filter: None,
            group_by: vec!["user_id".into()],
            measures: vec![
                Measure::count(),
                Measure::of(AggFunc::Sum, "score"),
                Measure::of(AggFunc::Max, "title"),
            ],
        })
        .unwrap();
    assert_eq!(a.rows[0], vec![int(1), int(2), int(100), text("post2")]);
    assert_eq!(a.rows.len(), 3);
}

/// Decoded table images serve repeated scans; every write makes them stale, older snapshots and
/// transactions with their own writes never read them.
#[test]
fn table_images_never_serve_stale_rows() {
    let (db, conn) = blog(3, 2, 2);
    let all_posts = GraphFetch::new("users").include(Include::new("posts").select(&["title"]));
    let titles = |r: &ormdb::GraphResult| -> Vec<Value> {
        r.block("posts")
            .map(|b| b.columns[0].clone())
            .unwrap_or_default()
    };
    // An old snapshot, taken before the image exists and before the update below.
    let mut old = conn.begin().unwrap();
    let first = conn.fetch(&all_posts).unwrap(); // hash join scan: builds the image
    let again = conn.fetch(&all_posts).unwrap(); // served from it
    assert_eq!(
        first,
        GraphResult {
            stats: first.stats.clone(),
            ..again.clone()
        }
    );
    let mut w = conn.begin().unwrap();
    w.update("posts", 1, &[("title", text("changed"))]).unwrap();
    // Own writes are visible in the writing transaction, not to others yet.
    assert!(titles(&w.fetch(&all_posts).unwrap()).contains(&text("changed")));
    assert!(!titles(&conn.fetch(&all_posts).unwrap()).contains(&text("changed")));
    w.commit().unwrap();
    let after = conn.fetch(&all_posts).unwrap();
    assert!(titles(&after).contains(&text("changed")));
    // Build a new image at the new snapshot; the old snapshot must still see the old title.
    conn.fetch(&all_posts).unwrap();
    let old_view = old.fetch(&all_posts).unwrap();
    assert!(!titles(&old_view).contains(&text("changed")));
    assert_eq!(titles(&old_view), titles(&first));
    // Soft delete and insert through another connection.
    let conn2 = db.connect();
    let mut tx = conn2.begin().unwrap();
    tx.delete("post_tags", 1).ok();
    tx.insert(
        "posts",
        &[
            ("id", int(500)),
            ("user_id", int(1)),
            ("title", text("fresh")),
        ],
    )
    .unwrap();
    tx.commit().unwrap();
    assert!(titles(&conn.fetch(&all_posts).unwrap()).contains(&text("fresh")));
    let m = db.metrics_text();
    let counter = |name: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from metrics"))
    };
    assert!(counter("ormdb_table_image_hits_total") > 0);
    assert!(counter("ormdb_table_image_builds_total") >= 2);
    assert!(counter("ormdb_fetches_total") >= 8);
}

/// Random writes interleaved with fetches at old and new snapshots: what a fetch returns (from
/// table images and their overlays once they exist) always equals what a plain scan of the same
/// transaction returns.
#[test]
fn table_image_overlays_match_plain_scans_at_every_snapshot() {
    use std::collections::BTreeMap;
    let (db, conn) = blog(20, 3, 3);
    let fetch = GraphFetch::new("posts").include(Include::new("comments").select(&["body"]));
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut snapshots: Vec<ormdb::Transaction> = Vec::new();
    let mut next_comment = 10_000;
    for round in 0..300 {
        match rand(4) {
            0 | 1 => {
                let mut tx = conn.begin().unwrap();
                for _ in 0..1 + rand(3) {
                    let post = 1 + rand(60) as i64;
                    match rand(3) {
                        0 => {
                            next_comment += 1;
                            tx.insert(
                                "comments",
                                &[
                                    ("id", int(next_comment)),
                                    ("post_id", int(post)),
                                    ("body", text(&format!("n{round}"))),
                                ],
                            )
                            .unwrap();
                        }
                        1 => {
                            let id = 1 + rand(next_comment as u64) as i64;
                            let _ =
                                tx.update("comments", id, &[("body", text(&format!("u{round}")))]);
                            // Sometimes move it to another post: the join key itself changes.
                            if rand(2) == 0 {
                                let _ = tx.update("comments", id, &[("post_id", int(post))]);
                            }
                        }
                        _ => {
                            let id = 1 + rand(next_comment as u64) as i64;
                            let _ = tx.delete("comments", id);
                        }
                    }
                }
                tx.commit().unwrap();
            }
            2 => {
                snapshots.push(conn.begin().unwrap());
                if snapshots.len() > 4 {
                    snapshots.remove(0);
                }
            }
            _ => {
                // Warm: repeated connection-level fetches build images (ski rental).
                conn.fetch(&fetch).unwrap();
            }
        }
        for tx in snapshots
            .iter_mut()
            .chain(std::iter::once(&mut conn.begin().unwrap()))
        {
            let got = tx.fetch(&fetch).unwrap();
            let posts: Vec<i64> = common::ids(tx, "posts");
            let mut by_post: BTreeMap<i64, Vec<(i64, Value)>> = BTreeMap::new();
            for c in common::rows(tx, "comments") {
                by_post
                    .entry(c.values[1].as_i64().unwrap())
                    .or_default()
                    .push((c.row_id, c.values[3].clone()));
            }
            assert_eq!(got.roots, posts, "round {round}");
            let e = got.edges_at("comments").unwrap();
            let want: Vec<(i64, i64)> = posts
                .iter()
                .flat_map(|p| by_post.get(p).into_iter().flatten().map(move |c| (*p, c.0)))
                .collect();
            let have: Vec<(i64, i64)> = e
                .parents
                .iter()
                .copied()
                .zip(e.children.iter().copied())
                .collect();
            assert_eq!(have, want, "round {round}");
            let b = got.block("comments");
            for (p, cs) in &by_post {
                let _ = p;
                for (id, body) in cs {
                    if let Some(b) = b {
                        if let Some(i) = b.ids.iter().position(|x| x == id) {
                            assert_eq!(&b.columns[0][i], body, "round {round} comment {id}");
                        }
                    }
                }
            }
        }
    }
    let m = db.metrics_text();
    let hits: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("ormdb_table_image_hits_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        hits > 100,
        "images were barely used ({hits} hits): the test lost its point"
    );
}

#[test]
fn one_relation_twice_needs_an_alias() {
    let (_db, conn) = blog(3, 4, 0);
    let twice = GraphFetch::new("users")
        .filter(Filter::eq("id", 1))
        .include(Include::new("posts").order(OrderBy::desc("score")).limit(1))
        .include(Include::new("posts").order(OrderBy::asc("score")).limit(1));
    expect_err(
        conn.fetch(&twice),
        SqlState::InvalidParameter,
        &["posts", "alias"],
    );
    let aliased = GraphFetch::new("users")
        .filter(Filter::eq("id", 1))
        .include(
            Include::new("posts")
                .alias("best")
                .order(OrderBy::desc("score"))
                .limit(1),
        )
        .include(
            Include::new("posts")
                .alias("worst")
                .order(OrderBy::asc("score"))
                .limit(1),
        );
    let r = conn.fetch(&aliased).unwrap();
    let best = r.edges_at("best").unwrap();
    let worst = r.edges_at("worst").unwrap();
    assert_eq!(best.relation, "posts");
    let score = |id: i64| col(&r, "posts", "score", id).as_i64().unwrap();
    assert!(score(best.children[0]) >= score(worst.children[0]));
    let nested = r.to_nested_json(&|_| false);
    assert!(nested[0]["best"].is_array() && nested[0]["worst"].is_array());
    expect_err(
        conn.fetch(&GraphFetch::new("users").include(Include::new("posts").alias("a.b"))),
        SqlState::InvalidParameter,
        &["alias"],
    );
}

#[test]
fn plan_cache_reuses_plans_by_shape_and_schema_version() {
    let (db, conn) = blog(3, 2, 1);
    let f = |id: i64| {
        GraphFetch::new("users")
            .filter(Filter::eq("id", id))
            .include(Include::new("posts"))
    };
    assert!(!conn.fetch(&f(1)).unwrap().stats.plan_cached);
    // Same shape, other values: the cached plan.
    assert!(conn.fetch(&f(2)).unwrap().stats.plan_cached);
    assert!(conn.explain(&f(3), false).unwrap().plan_cached);
    // Another shape: a new plan.
    assert!(
        !conn
            .fetch(&f(1).include(Include::new("comments")))
            .unwrap()
            .stats
            .plan_cached
    );
    // A schema change: a new plan.
    let mut tx = conn.begin().unwrap();
    tx.add_field("users", ormdb::FieldDef::new("nick", ormdb::DataType::Text))
        .unwrap();
    tx.commit().unwrap();
    let r = conn.fetch(&f(1)).unwrap();
    assert!(!r.stats.plan_cached);
    assert!(r
        .block("users")
        .unwrap()
        .fields
        .contains(&"nick".to_string()));
    let m = db.metrics_text();
    for name in [
        "ormdb_plan_cache_hits_total 2",
        "ormdb_plan_cache_misses_total 3",
        "ormdb_fetch_duration_seconds_count",
        "ormdb_fetch_lookups_total",
    ] {
        assert!(m.contains(name), "metrics lack {name:?}:\n{m}");
    }
}
