//! Graph fetch at scale and under concurrency: the N+1 rule (internal lookups depend on the
//! fetch's shape, never on row counts), keyset pagination at the root and inside an include
//! while other threads insert, snapshot consistency against concurrent writers that preserve
//! invariants, every budget kind (54000 naming it, exact boundaries, under budget = unlimited),
//! and a fetch over its row budget refused before it holds the whole result (peak RSS).
//!
//! The library installs mimalloc as the global allocator (default feature), so this binary
//! cannot install a counting allocator; the memory test measures peak resident memory instead
//! (VmHWM, reset through /proc/self/clear_refs), in child processes of this test binary so that
//! neither the data load nor the other tests running here disturb it.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{expect_err, int, text};
use ormdb::{
    Budget, Connection, DataType, Database, Durability, EntitySpec, FieldDef, Filter,
    ForeignKeySpec, GraphFetch, GraphResult, Include, Options, OrderBy, SqlState, Value,
};

fn fast_db() -> (Database, Connection) {
    let db = Database::temporary_with(Options::default().durability(Durability::Normal)).unwrap();
    let conn = db.connect();
    (db, conn)
}

/// users -> posts -> comments (comments.author -> users, nullable), posts <-> tags through
/// post_tags. Ids are dense from 1 per table.
fn blog(conn: &Connection, users: i64, posts_per: i64, comments_per: i64) {
    common::blog_schema(conn);
    let mut tx = conn.begin().unwrap();
    for t in 1..=4 {
        tx.insert("tags", &[("id", int(t)), ("name", text(&format!("t{t}")))])
            .unwrap();
    }
    for u in 1..=users {
        tx.insert(
            "users",
            &[
                ("id", int(u)),
                ("name", text(&format!("u{u}"))),
                ("balance", int(100)),
            ],
        )
        .unwrap();
    }
    let (mut p, mut c) = (0, 0);
    for u in 1..=users {
        for _ in 0..posts_per {
            p += 1;
            tx.insert(
                "posts",
                &[("id", int(p)), ("user_id", int(u)), ("score", int(p % 7))],
            )
            .unwrap();
            for t in 1..=4 {
                if (p + t) % 3 == 0 {
                    tx.insert("post_tags", &[("post_id", int(p)), ("tag_id", int(t))])
                        .unwrap();
                }
            }
            for _ in 0..comments_per {
                c += 1;
                let author = if c % 5 == 0 {
                    Value::Null
                } else {
                    int(1 + c % users)
                };
                tx.insert(
                    "comments",
                    &[
                        ("id", int(c)),
                        ("post_id", int(p)),
                        ("author_id", author),
                        ("body", text(&format!("c{c}"))),
                    ],
                )
                .unwrap();
            }
        }
    }
    tx.commit().unwrap();
}

/// Results compared without timing and cache flags.
fn same(a: &GraphResult, b: &GraphResult) -> bool {
    let strip = |r: &GraphResult| {
        let mut r = r.clone();
        r.stats.time_us = 0;
        r.stats.plan_cached = false;
        r
    };
    strip(a) == strip(b)
}

// ---------------------------------------------------------------------------------------------
// N+1

fn shape() -> GraphFetch {
    GraphFetch::new("users").include(
        Include::new("posts")
            .include(Include::new("comments").include(Include::new("author")))
            .include(Include::new("tags")),
    )
}

#[test]
fn lookups_do_not_grow_with_row_counts() {
    let mut seen = Vec::new();
    for scale in [1, 10, 100] {
        let (_db, conn) = fast_db();
        blog(&conn, 2 * scale, 3, 3);
        let r = conn.fetch(&shape()).unwrap();
        // Sanity: the result really grows with the data.
        assert_eq!(r.roots.len() as i64, 2 * scale);
        assert_eq!(
            r.edges_at("posts.comments").unwrap().children.len() as i64,
            2 * scale * 9
        );
        assert!(!r.edges_at("posts.tags").unwrap().children.is_empty());
        assert!(!r
            .edges_at("posts.comments.author")
            .unwrap()
            .children
            .is_empty());
        // Root + 4 include nodes, whatever the row counts.
        assert_eq!(r.stats.lookups, 5, "scale {scale}");
        seen.push((scale, r.stats.lookups, r.stats.rows));
        // The rule with relation predicates and counts: one more lookup each.
        let f = shape()
            .filter(Filter::some("posts", Some(Filter::eq("score", 3))))
            .count("posts");
        let r = conn.fetch(&f).unwrap();
        assert_eq!(r.stats.lookups, 7, "scale {scale}");
        let mut f = shape();
        f.includes[0].counts.push("comments".into());
        f.includes[0].filter = Some(Filter::none("tags", None));
        let r = conn.fetch(&f).unwrap();
        assert_eq!(r.stats.lookups, 7, "scale {scale}");
    }
    println!("(scale, lookups, rows): {seen:?}");
    assert!(seen[2].2 > 90 * seen[0].2);
}

// ---------------------------------------------------------------------------------------------
// pagination under concurrent inserts

/// Walks every page of `f` (limit set) by keyset cursor, calling `between` before each page
/// after the first; returns root ids in page order.
fn walk_root_pages(conn: &Connection, f: &GraphFetch, mut between: impl FnMut()) -> Vec<i64> {
    let mut out = Vec::new();
    let mut page = conn.fetch(f).unwrap();
    loop {
        out.extend(page.roots.iter().copied());
        match page.next_cursor.clone() {
            None => return out,
            Some(c) => {
                between();
                page = conn.fetch(&f.clone().after(c)).unwrap()
            }
        }
    }
}

fn exactly_once(pre: &BTreeSet<i64>, walked: &[i64], what: &str) {
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for id in walked {
        *counts.entry(*id).or_default() += 1;
    }
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "{what}: rows returned twice: {dups:?}");
    let missing: Vec<_> = pre.iter().filter(|id| !counts.contains_key(id)).collect();
    assert!(
        missing.is_empty(),
        "{what}: pre-existing rows missed: {missing:?}"
    );
}

/// Inserts posts (for `user`), 3 per commit, until stopped or 150 are in (a walk that keeps
/// meeting new rows must still end); returns how many it inserted. Returns once the first
/// commit is in, so a walk started afterwards runs while the writer is going.
fn inserter(conn: Connection, user: i64, stop: Arc<AtomicBool>) -> thread::JoinHandle<usize> {
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let h = thread::spawn(move || {
        let mut n = 0usize;
        let mut i = 0i64;
        while !stop.load(Ordering::Relaxed) && n < 150 {
            i += 1;
            thread::sleep(Duration::from_millis(1));
            let mut tx = conn.begin().unwrap();
            for k in 0..3 {
                tx.insert(
                    "posts",
                    &[("user_id", int(user)), ("score", int((i * 3 + k) % 9 - 1))],
                )
                .unwrap();
            }
            tx.commit().unwrap();
            n += 3;
            let _ = first_tx.send(());
        }
        n
    });
    first_rx.recv().expect("the writer's first commit");
    h
}

#[test]
fn root_keyset_pages_with_concurrent_inserts() {
    let (_db, conn) = fast_db();
    blog(&conn, 3, 100, 0);
    let pre: BTreeSet<i64> = (1..=300).collect();
    let orders: Vec<Vec<OrderBy>> = vec![
        vec![],
        vec![OrderBy::desc("score")],
        vec![OrderBy::asc("score"), OrderBy::desc("user_id")],
    ];
    for order in orders {
        let stop = Arc::new(AtomicBool::new(false));
        let w = inserter(conn.database().connect(), 2, stop.clone());
        let mut f = GraphFetch::new("posts").limit(7);
        f.order = order.clone();
        // A page walk is faster than the writer's 1 ms pace: give it time between pages.
        let walked = walk_root_pages(&conn, &f, || thread::sleep(Duration::from_micros(300)));
        stop.store(true, Ordering::Relaxed);
        let inserted = w.join().unwrap();
        exactly_once(&pre, &walked, &format!("order {order:?}"));
        assert!(inserted > 0, "the writer ran during the walk");
        println!(
            "order {order:?}: walked {} rows, {inserted} inserted concurrently",
            walked.len()
        );
    }
}

#[test]
fn include_keyset_pages_with_concurrent_inserts() {
    let (_db, conn) = fast_db();
    blog(&conn, 2, 150, 0);
    // User 1's posts are 1..=150.
    let pre: BTreeSet<i64> = (1..=150).collect();
    for order in [vec![], vec![OrderBy::desc("score")]] {
        let stop = Arc::new(AtomicBool::new(false));
        let w = inserter(conn.database().connect(), 1, stop.clone());
        let mut inc = Include::new("posts").limit(10);
        inc.order = order.clone();
        let base = GraphFetch::new("users").include(inc);
        let mut walked = Vec::new();
        let mut f = base.clone();
        let mut pages = 0;
        loop {
            let r = conn.fetch(&f).unwrap();
            pages += 1;
            let e = r.edges_at("posts").unwrap();
            // Both users are present; follow user 1 only.
            walked.extend(
                e.parents
                    .iter()
                    .zip(&e.children)
                    .filter(|(p, _)| **p == 1)
                    .map(|(_, c)| *c),
            );
            match e.more_parents.iter().position(|p| *p == 1) {
                None => break,
                Some(i) => {
                    f = base.clone().filter(Filter::eq("id", 1));
                    f.includes[0].after = Some(e.more_cursors[i].clone());
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        let inserted = w.join().unwrap();
        exactly_once(&pre, &walked, &format!("include order {order:?}"));
        assert!(pages >= 15, "{pages} pages");
        println!(
            "include order {order:?}: {pages} pages, {} rows, {inserted} inserted concurrently",
            walked.len()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// snapshot consistency

#[test]
fn every_fetch_sees_one_snapshot_under_concurrent_writers() {
    let (_db, conn) = fast_db();
    let users = 4;
    blog(&conn, users, 5, 4);
    let score_total = |r: &GraphResult| -> HashMap<i64, i64> {
        // Sum of post scores per user, from the edges and the posts block.
        let posts = r.block("posts").unwrap();
        let f = posts.fields.iter().position(|x| x == "score").unwrap();
        let score: HashMap<i64, i64> = posts
            .ids
            .iter()
            .zip(&posts.columns[f])
            .map(|(id, v)| (*id, v.as_i64().unwrap()))
            .collect();
        let e = r.edges_at("posts").unwrap();
        let mut out = HashMap::new();
        for (u, p) in e.parents.iter().zip(&e.children) {
            *out.entry(*u).or_default() += score[p];
        }
        out
    };
    let f = GraphFetch::new("users").include(
        Include::new("posts")
            .select(&["score"])
            .include(Include::new("comments").select(&["id"])),
    );
    let before = conn.fetch(&f).unwrap();
    let totals = score_total(&before);
    let comments = before.edges_at("posts.comments").unwrap().children.len();
    assert_eq!(comments, (users * 5 * 4) as usize);

    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2i64 {
        let conn = conn.database().connect();
        let stop = stop.clone();
        writers.push(thread::spawn(move || {
            let mut i = w;
            let mut commits = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let user = 1 + i % users;
                let first = (user - 1) * 5 + 1;
                let (a, b) = (first + i % 5, first + (i + 2) % 5);
                let res = conn.transact(20, |tx| {
                    // Move 3 points between two posts of one user...
                    let pa = tx.get("posts", a)?.unwrap().values[3].as_i64().unwrap();
                    let pb = tx.get("posts", b)?.unwrap().values[3].as_i64().unwrap();
                    tx.update("posts", a, &[("score", int(pa - 3))])?;
                    thread::yield_now();
                    tx.update("posts", b, &[("score", int(pb + 3))])?;
                    // ...and a comment to another post (of any user).
                    let c = 1 + (i * 7) % (users * 20);
                    let to = 1 + (i * 3) % (users * 5);
                    tx.update("comments", c, &[("post_id", int(to))])?;
                    Ok(())
                });
                if res.is_ok() {
                    commits += 1;
                }
            }
            commits
        }));
    }
    let mut fetches = 0;
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_millis(1500) || fetches < 20 {
        let r = conn.fetch(&f).unwrap();
        assert_eq!(
            score_total(&r),
            totals,
            "fetch {fetches}: per-user score totals"
        );
        let n = r.edges_at("posts.comments").unwrap().children.len();
        assert_eq!(n, comments, "fetch {fetches}: comments across posts");
        fetches += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let commits: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();
    println!("{fetches} fetches, {commits} concurrent commits");
    assert!(
        commits > 5,
        "the writers committed during the fetches ({commits})"
    );
    let after = conn.fetch(&f).unwrap();
    assert_eq!(score_total(&after), totals);
    assert_ne!(
        after.block("posts").unwrap().columns,
        before.block("posts").unwrap().columns,
        "the writers changed scores"
    );
}

// ---------------------------------------------------------------------------------------------
// budgets

#[test]
fn each_budget_kind_rejects_with_54000_and_exact_limits_pass() {
    let (_db, conn) = fast_db();
    blog(&conn, 6, 4, 3);
    let f = GraphFetch::new("users").include(
        Include::new("posts").include(Include::new("comments").include(Include::new("author"))),
    );
    let full = conn.fetch(&f).unwrap();
    let s = full.stats.clone();
    assert!(s.rows > 0 && s.edges > 0 && s.max_fanout > 0);
    let b = Budget::default();
    let cases: Vec<(Budget, Budget, &str)> = vec![
        (
            Budget {
                max_rows: s.rows,
                ..b
            },
            Budget {
                max_rows: s.rows - 1,
                ..b
            },
            "max_rows",
        ),
        (
            Budget {
                max_edges: s.edges,
                ..b
            },
            Budget {
                max_edges: s.edges - 1,
                ..b
            },
            "max_edges",
        ),
        (
            Budget {
                max_fanout: s.max_fanout,
                ..b
            },
            Budget {
                max_fanout: s.max_fanout - 1,
                ..b
            },
            "max_fanout",
        ),
        (
            Budget { max_depth: 3, ..b },
            Budget { max_depth: 2, ..b },
            "max_depth",
        ),
    ];
    for (ok, over, name) in cases {
        let r = conn.fetch(&f.clone().budget(ok)).unwrap();
        assert!(
            same(&r, &full),
            "{name} at exactly the used amount changes the result"
        );
        let e = expect_err(
            conn.fetch(&f.clone().budget(over)),
            SqlState::LimitExceeded,
            &[name],
        );
        assert_eq!(e.code(), "54000");
        // Inside a transaction too.
        let mut tx = conn.begin().unwrap();
        expect_err(
            tx.fetch(&f.clone().budget(over)),
            SqlState::LimitExceeded,
            &[name],
        );
        tx.rollback();
    }
    // max_rows also binds on a root without a limit, and with includes that have limits.
    let mut limited = f.clone();
    limited.includes[0].limit = Some(1);
    let lr = conn.fetch(&limited).unwrap();
    expect_err(
        conn.fetch(&limited.clone().budget(Budget {
            max_rows: lr.stats.rows - 1,
            ..b
        })),
        SqlState::LimitExceeded,
        &["max_rows"],
    );
    expect_err(
        conn.fetch(&GraphFetch::new("comments").budget(Budget { max_rows: 5, ..b })),
        SqlState::LimitExceeded,
        &["max_rows"],
    );
    // Offsets.
    let page = GraphFetch::new("posts").offset(10).limit(3);
    let r = conn
        .fetch(&page.clone().budget(Budget {
            max_offset: 10,
            ..b
        }))
        .unwrap();
    assert_eq!(r.roots, vec![11, 12, 13]);
    expect_err(
        conn.fetch(&page.budget(Budget { max_offset: 9, ..b })),
        SqlState::LimitExceeded,
        &["max_offset"],
    );
    // Under every budget at once: the same result as unlimited.
    let all = Budget {
        max_rows: s.rows,
        max_edges: s.edges,
        max_fanout: s.max_fanout,
        max_depth: 3,
        max_time_ms: 60_000,
        max_offset: 0,
    };
    assert!(same(&conn.fetch(&f.clone().budget(all)).unwrap(), &full));
}

#[test]
fn max_time_rejects_a_long_fetch() {
    let (_db, conn) = fast_db();
    blog(&conn, 20, 20, 10);
    // 4,000 comments scanned with a filter nothing passes: well over a millisecond in any build.
    let f = GraphFetch::new("comments").filter(Filter::eq("body", "none"));
    let b = Budget {
        max_time_ms: 0,
        ..Budget::default()
    };
    expect_err(
        conn.fetch(&f.clone().budget(b)),
        SqlState::LimitExceeded,
        &["max_time_ms"],
    );
    // The same fetch under a generous time budget completes.
    let r = conn
        .fetch(&f.budget(Budget {
            max_time_ms: 60_000,
            ..Budget::default()
        }))
        .unwrap();
    assert!(r.roots.is_empty());
    assert!(r.stats.rows_examined >= 4000);
}

// ---------------------------------------------------------------------------------------------
// memory

const MEMORY_CHILD: &str = "ORMDB_TEST_MEMORY_CHILD";
const DOCS: i64 = 10_000;
const DOC_BYTES: usize = 2000;
const DOC_BUDGET: u64 = 500;

fn proc_status_kb(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn memory_options() -> Options {
    Options {
        durability: Durability::Normal,
        checkpoint_interval: Duration::from_secs(3600),
        gc_interval: Duration::from_secs(3600),
        ..Options::default()
    }
}

/// In a fresh process (so nothing freed earlier is reused): opens the database, warms the
/// store cache with a scan that returns nothing, then runs the fetch (`rejected`: under a row
/// budget, or `full`) and prints its peak resident memory growth.
fn memory_child(spec: &str) {
    let (path, mode) = spec.rsplit_once('|').unwrap();
    let db = Database::open(path, memory_options()).unwrap();
    let conn = db.connect();
    let f = GraphFetch::new("docs");
    // Plan and statistics warm-up; the rows are read (from disk) by the measured fetch.
    assert_eq!(conn.fetch(&f.clone().limit(1)).unwrap().roots, vec![1]);
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let base = proc_status_kb("VmRSS:").unwrap();
    let budget = Budget {
        max_rows: DOC_BUDGET,
        ..Budget::default()
    };
    // The same rows as the children of one owner.
    let owned = GraphFetch::new("owners").include(Include::new("docs"));
    let outcome = match mode {
        "rejected" => {
            let e = expect_err(
                conn.fetch(&f.budget(budget)),
                SqlState::LimitExceeded,
                &["max_rows"],
            );
            format!("error {}", e.code())
        }
        "rejected_include" => {
            let e = expect_err(
                conn.fetch(&owned.budget(budget)),
                SqlState::LimitExceeded,
                &["max_rows"],
            );
            format!("error {}", e.code())
        }
        "full_include" => {
            let r = conn.fetch(&owned).unwrap();
            format!("rows {}", r.edges[0].children.len())
        }
        _ => {
            let r = conn.fetch(&f).unwrap();
            format!("rows {}", r.roots.len())
        }
    };
    let peak = proc_status_kb("VmHWM:").unwrap();
    println!(
        "MEMORY_CHILD peak_bytes={} outcome={outcome}",
        (peak.saturating_sub(base)) * 1024
    );
}

/// Runs this test in a child process in `mode`; returns (peak bytes, outcome).
fn run_memory_child(path: &std::path::Path, mode: &str) -> (u64, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_fetch_over_its_row_budget_fails_before_materializing",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MEMORY_CHILD, format!("{}|{mode}", path.display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child {mode} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("MEMORY_CHILD ").map(|x| x.1))
        .unwrap_or_else(|| panic!("no report from child {mode}:\n{stdout}"));
    let (peak, outcome) = line.split_once(" outcome=").unwrap();
    let peak = peak.trim_start_matches("peak_bytes=").parse().unwrap();
    (peak, outcome.to_string())
}

/// A fetch that exceeds max_rows on a large result (10,000 rows of 2 KB) is refused before it
/// holds the result: its peak memory is a small fraction of the full fetch's. Peak resident
/// memory (VmHWM) is measured in child processes: the library's global allocator (mimalloc)
/// rules out a counting allocator in this binary.
#[test]
fn a_fetch_over_its_row_budget_fails_before_materializing() {
    if let Ok(spec) = std::env::var(MEMORY_CHILD) {
        memory_child(&spec);
        return;
    }
    if std::fs::write("/proc/self/clear_refs", "5").is_err() {
        println!("no /proc/self/clear_refs: peak memory is not measurable on this system");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = Database::open(&path, memory_options()).unwrap();
        let conn = db.connect();
        let mut tx = conn.begin().unwrap();
        tx.create_entity(
            &EntitySpec::new("owners")
                .id("id")
                .field(FieldDef::new("name", DataType::Text)),
        )
        .unwrap();
        tx.create_entity(
            &EntitySpec::new("docs")
                .id("id")
                .field(FieldDef::new("owner_id", DataType::Integer))
                .field(FieldDef::new("body", DataType::Text))
                .foreign_key(ForeignKeySpec::new(&["owner_id"], "owners", &["id"])),
        )
        .unwrap();
        tx.insert("owners", &[("id", int(1)), ("name", text("o"))])
            .unwrap();
        tx.commit().unwrap();
        for chunk in 0..DOCS / 500 {
            let mut tx = conn.begin().unwrap();
            for i in 0..500 {
                let id = chunk * 500 + i + 1;
                let c = (b'a' + (id % 26) as u8) as char;
                let body: String = std::iter::repeat_n(c, DOC_BYTES).collect();
                tx.insert(
                    "docs",
                    &[
                        ("id", int(id)),
                        ("owner_id", int(1)),
                        ("body", Value::Text(body)),
                    ],
                )
                .unwrap();
            }
            tx.commit().unwrap();
        }
    }
    let (rejected, outcome) = run_memory_child(&path, "rejected");
    assert_eq!(outcome, "error 54000");
    let (full, outcome) = run_memory_child(&path, "full");
    assert_eq!(outcome, format!("rows {DOCS}"));
    let result_bytes = DOCS as u64 * DOC_BYTES as u64;
    println!(
        "peak RSS growth: fetch rejected at max_rows {DOC_BUDGET}: {} KiB; full fetch: {} KiB \
         (its rows hold {} KiB of text)",
        rejected / 1024,
        full / 1024,
        result_bytes / 1024
    );
    assert!(
        full >= result_bytes,
        "the measurement sees the full result ({full} bytes)"
    );
    assert!(
        rejected * 5 < full,
        "the rejected fetch peaked at {rejected} bytes, the full one at {full}"
    );
    // The same rows as an include (one parent, 10,000 children).
    let (rejected, outcome) = run_memory_child(&path, "rejected_include");
    assert_eq!(outcome, "error 54000");
    let (full, outcome) = run_memory_child(&path, "full_include");
    assert_eq!(outcome, format!("rows {DOCS}"));
    println!(
        "include: peak RSS growth rejected at max_rows {DOC_BUDGET}: {} KiB; full: {} KiB",
        rejected / 1024,
        full / 1024
    );
    assert!(
        full >= result_bytes,
        "the measurement sees the full include"
    );
    assert!(
        rejected * 5 < full,
        "the rejected include peaked at {rejected} bytes, the full one at {full}"
    );
}
