//! Building decoded table images under concurrency (`exec::table_cache`): readers that start on
//! a cold database at the same moment build each table's image once (one builder per table,
//! the others keep reading the store), build each index over an image once, get the same
//! results as a database without images, and a writer committing while images are built never
//! makes a reader see a torn, stale or future snapshot.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use common::{int, text};
use ormdb::{
    Connection, DataType, Database, Durability, EntitySpec, FieldDef, Filter, ForeignKeySpec,
    GraphFetch, GraphResult, Include, Options, Params, Value,
};

const USERS: i64 = 40;
const POSTS_PER: i64 = 5;
const COMMENTS_PER: i64 = 10;
const READERS: usize = 8;

fn open_at(path: &std::path::Path, budget: Option<u64>) -> Database {
    let mut o = Options::default().durability(Durability::Normal);
    if let Some(b) = budget {
        o = o.image_budget(b);
    }
    Database::open(path, o).expect("open")
}

/// A database holding the blog data, reopened so that it starts without images (loading it
/// may build some: foreign key checks read the parents).
fn cold_blog(dir: &tempfile::TempDir, budget: Option<u64>) -> Database {
    let path = dir.path().join(format!("blog-{budget:?}"));
    {
        let db = open_at(&path, budget);
        blog(&db.connect());
    }
    let db = open_at(&path, budget);
    assert_eq!(count(&db, "ormdb_table_images"), 0);
    db
}

fn metric(db: &Database, name: &str) -> f64 {
    db.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from metrics"))
}

fn count(db: &Database, name: &str) -> u64 {
    metric(db, name) as u64
}

/// users -> posts -> comments, ids dense from 1; the foreign keys are indexed.
fn blog(conn: &Connection) {
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("users")
            .id("id")
            .field(FieldDef::new("name", DataType::Text).not_null()),
    )
    .unwrap();
    tx.create_entity(
        &EntitySpec::new("posts")
            .id("id")
            .field(FieldDef::new("user_id", DataType::Integer).not_null())
            .field(FieldDef::new("title", DataType::Text))
            .foreign_key(ForeignKeySpec::new(&["user_id"], "users", &["id"])),
    )
    .unwrap();
    tx.create_entity(
        &EntitySpec::new("comments")
            .id("id")
            .field(FieldDef::new("post_id", DataType::Integer).not_null())
            .field(FieldDef::new("body", DataType::Text))
            .foreign_key(ForeignKeySpec::new(&["post_id"], "posts", &["id"])),
    )
    .unwrap();
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    for u in 1..=USERS {
        tx.insert("users", &[("id", int(u)), ("name", text(&format!("u{u}")))])
            .unwrap();
        for p in 0..POSTS_PER {
            let pid = (u - 1) * POSTS_PER + p + 1;
            tx.insert(
                "posts",
                &[
                    ("id", int(pid)),
                    ("user_id", int(u)),
                    ("title", text(&format!("post {pid}"))),
                ],
            )
            .unwrap();
            for c in 0..COMMENTS_PER {
                let cid = (pid - 1) * COMMENTS_PER + c + 1;
                tx.insert(
                    "comments",
                    &[
                        ("id", int(cid)),
                        ("post_id", int(pid)),
                        ("body", text(&format!("comment {cid}"))),
                    ],
                )
                .unwrap();
            }
        }
    }
    tx.commit().unwrap();
}

/// A result without its statistics (which say how rows were found, not which).
fn rows_of(r: GraphResult) -> GraphResult {
    GraphResult {
        stats: Default::default(),
        ..r
    }
}

fn user_graph(id: i64) -> GraphFetch {
    GraphFetch::new("users")
        .filter(Filter::eq("id", id))
        .include(Include::new("posts").include(Include::new("comments")))
}

/// The metrics that say how many builds ran: each table's image and each index over an image
/// is built once when nothing invalidates them.
fn assert_one_build_per_image(db: &Database) {
    for l in db
        .metrics_text()
        .lines()
        .filter(|l| l.starts_with("ormdb_table_image"))
    {
        eprintln!("{l}");
    }
    let builds = count(db, "ormdb_table_image_builds_total");
    let images = count(db, "ormdb_table_images");
    assert!(images >= 1, "no image was built");
    assert_eq!(
        builds, images,
        "{builds} image builds for {images} images: some table was built twice"
    );
    assert_eq!(count(db, "ormdb_table_image_builds_discarded_total"), 0);
    assert_eq!(count(db, "ormdb_table_image_invalidations_total"), 0);
    assert!(metric(db, "ormdb_table_image_build_seconds_total") > 0.0);
}

#[test]
fn concurrent_cold_graph_fetches_build_each_image_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = cold_blog(&dir, None);
    let plain = cold_blog(&dir, Some(0));
    // What every reader must get, from the store alone.
    let pconn = plain.connect();
    let whole = GraphFetch::new("comments");
    let expect_whole = rows_of(pconn.fetch(&whole).unwrap());
    let expect: Vec<GraphResult> = (1..=USERS)
        .map(|u| rows_of(pconn.fetch(&user_graph(u)).unwrap()))
        .collect();
    assert_eq!(count(&plain, "ormdb_table_image_builds_total"), 0);

    let start = Barrier::new(READERS);
    thread::scope(|s| {
        for t in 0..READERS {
            let (db, start, expect, expect_whole, whole) =
                (&db, &start, &expect, &expect_whole, &whole);
            s.spawn(move || {
                let conn = db.connect();
                start.wait();
                // Every reader scans the whole comments table at once (a complete scan builds
                // the image on the way), then fetches users with their posts and comments
                // (store reads until the ski-rental rule builds the images of the targets).
                assert_eq!(&rows_of(conn.fetch(whole).unwrap()), expect_whole);
                for pass in 0..6 {
                    for k in 0..USERS {
                        let u = (k + t as i64 * 7 + pass) % USERS + 1;
                        let got = rows_of(conn.fetch(&user_graph(u)).unwrap());
                        assert_eq!(got, expect[(u - 1) as usize], "user {u}");
                    }
                }
            });
        }
    });
    assert_one_build_per_image(&db);
    // The planner's statistics (row counts, distinct keys) are measured once per figure, as
    // by the one reader that computed the expected results.
    assert_eq!(
        count(&db, "ormdb_planner_stats_measurements_total"),
        count(&plain, "ormdb_planner_stats_measurements_total"),
    );
    // Each include's equality index over its target's image (posts.user_id,
    // comments.post_id) is built at most once.
    let index_builds = count(&db, "ormdb_table_image_index_builds_total");
    assert!(
        index_builds <= 2,
        "{index_builds} index builds for 2 indexes"
    );
    eprintln!(
        "graph: builds={} skipped={} index_builds={index_builds}",
        count(&db, "ormdb_table_image_builds_total"),
        count(&db, "ormdb_table_image_builds_skipped_total")
    );
}

type Rows = Vec<Vec<Value>>;

fn sql_rows(s: &mut ormdb::Session, sql: &str, p: i64) -> Rows {
    s.execute(sql, &Params::Positional(vec![int(p)]))
        .unwrap()
        .rows
}

const POINT: &str = "SELECT id, user_id, title FROM posts WHERE id = ?";
const RANGE: &str = "SELECT id, body FROM comments WHERE post_id >= ? ORDER BY post_id LIMIT 20";

#[test]
fn concurrent_cold_sql_reads_build_each_image_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = cold_blog(&dir, None);
    let plain = cold_blog(&dir, Some(0));
    let posts = USERS * POSTS_PER;
    let mut ps = plain.connect().sql();
    let expect: Vec<(Rows, Rows)> = (1..=posts)
        .map(|p| (sql_rows(&mut ps, POINT, p), sql_rows(&mut ps, RANGE, p)))
        .collect();
    let start = Barrier::new(READERS);
    thread::scope(|s| {
        for t in 0..READERS {
            let (db, start, expect) = (&db, &start, &expect);
            s.spawn(move || {
                let mut sess = db.connect().sql();
                start.wait();
                for pass in 0..3 {
                    for k in 0..posts {
                        let p = (k + t as i64 * 13 + pass) % posts + 1;
                        let (point, range) = &expect[(p - 1) as usize];
                        assert_eq!(&sql_rows(&mut sess, POINT, p), point, "post {p}");
                        assert_eq!(&sql_rows(&mut sess, RANGE, p), range, "range from {p}");
                    }
                }
            });
        }
    });
    assert_one_build_per_image(&db);
    assert!(
        count(&db, "ormdb_table_image_ordered_reads_total") > 0,
        "no range read was served from an image"
    );
    // One ordered index (comments by post_id) over one image.
    assert_eq!(count(&db, "ormdb_table_image_index_builds_total"), 1);
}

const ACCOUNTS: i64 = 1500;
const BALANCE: i64 = 100;

/// What a reader saw of the accounts at one snapshot: the balances must sum to the total (no
/// commit seen in part) and the newest commit a row names must be the counter's (no version
/// from before or after the snapshot).
fn check_accounts(rows: &[(i64, i64, i64)], counter: i64, what: &str) {
    assert_eq!(rows.len() as i64, ACCOUNTS, "{what}: rows");
    let sum: i64 = rows.iter().map(|r| r.1).sum();
    assert_eq!(sum, ACCOUNTS * BALANCE, "{what}: a commit seen in part");
    let newest = rows.iter().map(|r| r.2).max().unwrap_or(0);
    assert_eq!(
        newest, counter,
        "{what}: rows from another snapshot than the counter's"
    );
}

fn accounts_schema(conn: &Connection) {
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("counter")
            .id("id")
            .field(FieldDef::new("n", DataType::Integer).not_null()),
    )
    .unwrap();
    tx.create_entity(
        &EntitySpec::new("accounts")
            .id("id")
            .field(FieldDef::new("counter_id", DataType::Integer).not_null())
            .field(FieldDef::new("balance", DataType::Integer).not_null())
            .field(FieldDef::new("last", DataType::Integer).not_null())
            .foreign_key(ForeignKeySpec::new(&["counter_id"], "counter", &["id"])),
    )
    .unwrap();
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    tx.insert("counter", &[("id", int(1)), ("n", int(0))])
        .unwrap();
    for a in 1..=ACCOUNTS {
        tx.insert(
            "accounts",
            &[
                ("id", int(a)),
                ("counter_id", int(1)),
                ("balance", int(BALANCE)),
                ("last", int(0)),
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// (id, balance, last) of every account in a fetch result, in id order.
fn account_rows(r: &GraphResult) -> Vec<(i64, i64, i64)> {
    let b = r.entities.iter().find(|b| b.entity == "accounts").unwrap();
    let col = |name: &str| b.fields.iter().position(|f| f == name).unwrap();
    let (bal, last) = (col("balance"), col("last"));
    let mut out: Vec<(i64, i64, i64)> = (0..b.ids.len())
        .map(|i| {
            (
                b.ids[i],
                as_int(&b.columns[bal][i]),
                as_int(&b.columns[last][i]),
            )
        })
        .collect();
    out.sort_unstable();
    out
}

fn as_int(v: &Value) -> i64 {
    match v {
        Value::Integer(i) => *i,
        other => panic!("not an integer: {other:?}"),
    }
}

#[test]
fn a_writer_racing_image_builds_never_shows_another_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = open_at(&path, None);
    accounts_schema(&db.connect());
    let stop = AtomicBool::new(false);
    let commits = AtomicU64::new(0);
    let checks = AtomicU64::new(0);
    let deadline = Instant::now() + Duration::from_millis(1500);
    thread::scope(|s| {
        // The writer: each commit moves an amount between two accounts, stamps both with its
        // sequence number and sets the counter to it.
        s.spawn(|| {
            let conn = db.connect();
            let mut k = 0i64;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                let a = (k * 7919) % ACCOUNTS + 1;
                let b = (k * 104_729 + 1) % ACCOUNTS + 1;
                if a == b {
                    continue;
                }
                let mut tx = conn.begin().unwrap();
                let ra = tx.get("accounts", a).unwrap().unwrap();
                let rb = tx.get("accounts", b).unwrap().unwrap();
                let amount = k % 9 + 1;
                let (ba, bb) = (as_int(&ra.values[2]), as_int(&rb.values[2]));
                tx.update(
                    "accounts",
                    a,
                    &[("balance", int(ba - amount)), ("last", int(k))],
                )
                .unwrap();
                tx.update(
                    "accounts",
                    b,
                    &[("balance", int(bb + amount)), ("last", int(k))],
                )
                .unwrap();
                tx.update("counter", 1, &[("n", int(k))]).unwrap();
                tx.commit().unwrap();
                commits.fetch_add(1, Ordering::Relaxed);
                // Leave gaps in which a reader can claim a build at a current snapshot.
                thread::sleep(Duration::from_micros(300));
            }
        });
        for t in 0..4 {
            let (db, stop, checks) = (&db, &stop, &checks);
            s.spawn(move || {
                let conn = db.connect();
                let mut i = 0u64;
                while Instant::now() < deadline {
                    i += 1;
                    if (i + t).is_multiple_of(2) {
                        // A complete scan in one fetch (builds the image on the way), and the
                        // counter with all accounts in another (one snapshot each).
                        let r = conn.fetch(&GraphFetch::new("accounts")).unwrap();
                        let rows = account_rows(&r);
                        let sum: i64 = rows.iter().map(|r| r.1).sum();
                        assert_eq!(sum, ACCOUNTS * BALANCE, "root scan: a commit seen in part");
                        let f = GraphFetch::new("counter").include(Include::new("accounts"));
                        let r = conn.fetch(&f).unwrap();
                        let c = r.entities.iter().find(|b| b.entity == "counter").unwrap();
                        let n = c.fields.iter().position(|f| f == "n").unwrap();
                        check_accounts(&account_rows(&r), as_int(&c.columns[n][0]), "include");
                    }
                    // Point reads of every account in one transaction (the ski-rental rule
                    // builds the image in the middle of one of them).
                    let mut tx = conn.begin().unwrap();
                    let counter = as_int(&tx.get("counter", 1).unwrap().unwrap().values[1]);
                    let rows: Vec<(i64, i64, i64)> = (1..=ACCOUNTS)
                        .map(|a| {
                            let r = tx.get("accounts", a).unwrap().unwrap();
                            (a, as_int(&r.values[2]), as_int(&r.values[3]))
                        })
                        .collect();
                    check_accounts(&rows, counter, "point reads");
                    // The same snapshot again, through the image if one exists by now.
                    let again: Vec<(i64, i64, i64)> = (1..=ACCOUNTS)
                        .map(|a| {
                            let r = tx.get("accounts", a).unwrap().unwrap();
                            (a, as_int(&r.values[2]), as_int(&r.values[3]))
                        })
                        .collect();
                    assert_eq!(rows, again, "one transaction read two snapshots");
                    checks.fetch_add(1, Ordering::Relaxed);
                }
                stop.store(true, Ordering::Relaxed);
            });
        }
    });
    let (commits, checks) = (commits.into_inner(), checks.into_inner());
    assert!(
        commits > 10 && checks > 4,
        "commits {commits}, checks {checks}"
    );
    assert!(
        count(&db, "ormdb_table_image_builds_total") >= 1,
        "no image was built while the writer ran"
    );
    // The images' final state against the store alone (reopened without images).
    let read_all = |db: &Database| -> Vec<(i64, i64, i64)> {
        let mut tx = db.connect().begin().unwrap();
        (1..=ACCOUNTS)
            .map(|a| {
                let r = tx.get("accounts", a).unwrap().unwrap();
                (a, as_int(&r.values[2]), as_int(&r.values[3]))
            })
            .collect()
    };
    eprintln!(
        "race: commits={commits} checks={checks} builds={} discarded={} skipped={} invalidations={}",
        count(&db, "ormdb_table_image_builds_total"),
        count(&db, "ormdb_table_image_builds_discarded_total"),
        count(&db, "ormdb_table_image_builds_skipped_total"),
        count(&db, "ormdb_table_image_invalidations_total"),
    );
    let imaged = read_all(&db);
    let hits = count(&db, "ormdb_table_image_hits_total");
    assert!(hits > 0);
    drop(db);
    let plain = open_at(&path, Some(0));
    assert_eq!(imaged, read_all(&plain));
}
