//! SQL front-end benchmarks, ORMDB's `Session` against SQLite (rusqlite, prepared and cached
//! statements) in the same run, on the same 100k-row `items` table (index on `n` on both):
//!
//! - `sql_point_select`: `SELECT id, name, n FROM items WHERE id = ?` with random ids
//!   (autocommit: one read transaction per statement on both sides).
//! - `sql_index_eq`: `... WHERE n = ? ORDER BY id LIMIT 10` through the index on `n`.
//! - `sql_index_range`: `... WHERE n BETWEEN ? AND ? ORDER BY n LIMIT 20` and
//!   `sql_index_desc`: `... WHERE n < ? ORDER BY n DESC LIMIT 20`: filtered, ordered, limited
//!   reads that walk the index in order and stop at the LIMIT.
//! - `sql_in_list_500`: `... WHERE id IN (?, ... 500 parameters)`.
//! - `sql_plan`: the point select with its compiled plan cached (`hit`) and with a new text
//!   each time (`miss`: parse and compile; SQLite: `prepare` instead of `prepare_cached`).
//! - `sql_overhead`: `SELECT ?` (bind, run from the cached plan, empty transaction).
//! - `sql_m2m_prefetch`: Django's many-to-many prefetch query, `SELECT (book_tags.book_id),
//!   tag.* FROM tag INNER JOIN book_tags ON (tag.id = book_tags.tag_id) WHERE
//!   book_tags.book_id IN (?, ... 250 ids)`, over 5,000 tags, 2,000 books and 5 links per book
//!   (own tables, indexes as Django creates them): the join is driven by the IN list.
//! - `sql_select_related`: Django's `select_related` over a nullable foreign key, 1,000 posts
//!   `LEFT OUTER JOIN` their author (300 users, one post in ten without one) by primary key.
//! - The Prisma 7 client corpus (core/tests/data/corpus) with its logged arguments:
//!   `RESULT sql_prisma7_replay/<kind>` lines (select, insert, update, delete: median time per
//!   statement over 15 replays, each on fresh databases and sessions, so cold statement and
//!   plan caches on both sides), and `sql_prisma7_selects` (criterion: all of the corpus's
//!   SELECTs in order on the data a replay left, warm caches).
//! - `sql_writes` (issue 4, write plans): single-row INSERT, INSERT ... RETURNING id (Django's
//!   form), UPDATE by primary key and DELETE by primary key, autocommit and in explicit
//!   transactions of 100 statements, durability Normal vs SQLite WAL `synchronous=NORMAL`,
//!   fresh databases per repetition: `RESULT sql_writes/<case> rep=k` lines with the per-rep
//!   ratio, then medians. Run alone with `cargo bench -p ormdb-benches --bench sql_frontend --
//!   sql_writes` (the other groups are skipped by the filter).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ormdb::{Params, Session, Value};
use ormdb_benches::joins::*;
use ormdb_benches::prisma::{prisma_log, read as corpus_read, Stmt};
use ormdb_benches::*;

fn sql(c: &mut Criterion) {
    // Building the 100k-row fixtures takes a while: skip them under a filter naming none of
    // these groups (e.g. `-- sql_writes`).
    let groups = [
        "sql_point_select",
        "sql_plan",
        "sql_index_eq",
        "sql_index_range",
        "sql_index_desc",
        "sql_in_list_500",
        "sql_overhead",
        "sql_prisma7",
    ];
    if !groups.iter().any(|g| selected(g)) {
        return;
    }
    let mode = Mode::Full;
    let o = OrmdbFixture::with_items(mode, READ_ROWS);
    let s = SqliteFixture::with_items(mode, READ_ROWS);
    let mut session = o.db.connect().sql();
    session
        .execute("CREATE INDEX items_n ON items (n)", &Params::None)
        .expect("ormdb index");
    s.conn
        .execute_batch("CREATE INDEX IF NOT EXISTS items_n ON items (n); ANALYZE")
        .expect("sqlite index");
    let mut rng = Rng::new(11);

    let mut g = c.benchmark_group("sql_point_select");
    g.throughput(Throughput::Elements(1));
    let q = "SELECT id, name, n FROM items WHERE id = ?";
    g.bench_function("ormdb", |b| {
        b.iter(|| {
            let id = rng.id(READ_ROWS);
            let r = session
                .execute(q, &Params::Positional(vec![Value::Integer(id)]))
                .expect("select");
            black_box(r.rows.len())
        })
    });
    g.bench_function("sqlite", |b| {
        let mut st = s.conn.prepare_cached(q).expect("prepare");
        b.iter(|| {
            let id = rng.id(READ_ROWS);
            let n: i64 = st.query_row([id], |r| r.get(2)).expect("row");
            black_box(n)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("sql_plan");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ormdb_hit", |b| {
        b.iter(|| {
            let id = rng.id(READ_ROWS);
            let r = session
                .execute(q, &Params::Positional(vec![Value::Integer(id)]))
                .expect("select");
            black_box(r.rows.len())
        })
    });
    let mut k = 0u64;
    g.bench_function("ormdb_miss", |b| {
        b.iter(|| {
            k += 1;
            let id = rng.id(READ_ROWS);
            let text = format!("{q} /* {k} */");
            let r = session
                .execute(&text, &Params::Positional(vec![Value::Integer(id)]))
                .expect("select");
            black_box(r.rows.len())
        })
    });
    g.bench_function("sqlite_hit", |b| {
        let mut st = s.conn.prepare_cached(q).expect("prepare");
        b.iter(|| {
            let id = rng.id(READ_ROWS);
            let n: i64 = st.query_row([id], |r| r.get(2)).expect("row");
            black_box(n)
        })
    });
    g.bench_function("sqlite_miss", |b| {
        b.iter(|| {
            k += 1;
            let id = rng.id(READ_ROWS);
            let mut st = s.conn.prepare(&format!("{q} /* {k} */")).expect("prepare");
            let n: i64 = st.query_row([id], |r| r.get(2)).expect("row");
            black_box(n)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("sql_index_eq");
    g.throughput(Throughput::Elements(1));
    let q = "SELECT id, name FROM items WHERE n = ? ORDER BY id LIMIT 10";
    g.bench_function("ormdb", |b| {
        b.iter(|| {
            let n = rng.id(READ_ROWS) * 7;
            let r = session
                .execute(q, &Params::Positional(vec![Value::Integer(n)]))
                .expect("select");
            black_box(r.rows.len())
        })
    });
    g.bench_function("sqlite", |b| {
        let mut st = s.conn.prepare_cached(q).expect("prepare");
        b.iter(|| {
            let n = rng.id(READ_ROWS) * 7;
            let rows: Vec<i64> = st
                .query_map([n], |r| r.get(0))
                .expect("query")
                .map(|r| r.expect("row"))
                .collect();
            black_box(rows.len())
        })
    });
    g.finish();

    for (group, q, lo_only) in [
        (
            "sql_index_range",
            "SELECT id, name FROM items WHERE n BETWEEN ? AND ? ORDER BY n LIMIT 20",
            false,
        ),
        (
            "sql_index_desc",
            "SELECT id, name FROM items WHERE n < ? ORDER BY n DESC LIMIT 20",
            true,
        ),
    ] {
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(1));
        let args = move |lo: i64| {
            if lo_only {
                vec![lo]
            } else {
                vec![lo, lo + 700]
            }
        };
        g.bench_function("ormdb", |b| {
            b.iter(|| {
                let lo = rng.id(READ_ROWS) * 7;
                let params = args(lo).into_iter().map(Value::Integer).collect();
                let r = session
                    .execute(q, &Params::Positional(params))
                    .expect("select");
                black_box(r.rows.len())
            })
        });
        g.bench_function("sqlite", |b| {
            let mut st = s.conn.prepare_cached(q).expect("prepare");
            b.iter(|| {
                let lo = rng.id(READ_ROWS) * 7;
                let rows: Vec<i64> = st
                    .query_map(rusqlite::params_from_iter(args(lo)), |r| r.get(0))
                    .expect("query")
                    .map(|r| r.expect("row"))
                    .collect();
                black_box(rows.len())
            })
        });
        g.finish();
    }

    let mut g = c.benchmark_group("sql_in_list_500");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    let q = format!(
        "SELECT id, name, n FROM items WHERE id IN ({})",
        vec!["?"; 500].join(", ")
    );
    g.bench_function("ormdb", |b| {
        b.iter(|| {
            let ids = (0..500)
                .map(|_| Value::Integer(rng.id(READ_ROWS)))
                .collect();
            let r = session
                .execute(&q, &Params::Positional(ids))
                .expect("select");
            black_box(r.rows.len())
        })
    });
    g.bench_function("sqlite", |b| {
        let mut st = s.conn.prepare_cached(&q).expect("prepare");
        b.iter(|| {
            let ids: Vec<i64> = (0..500).map(|_| rng.id(READ_ROWS)).collect();
            let rows: Vec<(i64, String, i64)> = st
                .query_map(rusqlite::params_from_iter(ids), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .expect("query")
                .map(|r| r.expect("row"))
                .collect();
            black_box(rows.len())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("sql_overhead");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ormdb", |b| {
        b.iter(|| {
            let r = session
                .execute("SELECT ?", &Params::Positional(vec![Value::Integer(1)]))
                .expect("select");
            black_box(r.rows.len())
        })
    });
    g.bench_function("sqlite", |b| {
        let mut st = s.conn.prepare_cached("SELECT ?").expect("prepare");
        b.iter(|| {
            let v: i64 = st.query_row([1], |r| r.get(0)).expect("row");
            black_box(v)
        })
    });
    g.finish();
    let (hits, misses) = session.cache_stats();
    let (phits, pmisses) = session.plan_cache_stats();
    println!("ormdb statement cache: {hits} hits, {misses} misses");
    println!(
        "ormdb plan cache: {phits} hits, {pmisses} misses (hit rate {:.4}; the misses are the `sql_plan/ormdb_miss` texts)",
        phits as f64 / (phits + pmisses).max(1) as f64
    );
    drop(session);
    prisma(c);
}

/// Loads a join fixture's schema and rows into both engines (one transaction each).
fn join_fixture(schema: &str, rows: &[String]) -> (OrmdbFixture, Session, SqliteFixture) {
    let o = OrmdbFixture::new(Mode::Full);
    let mut session = o.db.connect().sql();
    let s = SqliteFixture::new(Mode::Full);
    session.execute_batch(schema).expect("ormdb schema");
    s.conn.execute_batch(schema).expect("sqlite schema");
    session.execute_batch("BEGIN").expect("begin");
    s.conn.execute_batch("BEGIN").expect("begin");
    for r in rows {
        session.execute(r, &Params::None).expect("ormdb insert");
        s.conn.execute(r, []).expect("sqlite insert");
    }
    session.execute_batch("COMMIT").expect("commit");
    s.conn.execute_batch("COMMIT; ANALYZE").expect("commit");
    (o, session, s)
}

fn m2m(c: &mut Criterion) {
    if selected("sql_m2m_prefetch") {
        m2m_prefetch(c);
    }
    if selected("sql_select_related") {
        select_related(c);
    }
}

fn m2m_prefetch(c: &mut Criterion) {
    let (_o, mut session, s) = join_fixture(M2M_SCHEMA, &m2m_rows());
    let q = m2m_query();
    let mut rng = Rng::new(29);
    let mut g = c.benchmark_group("sql_m2m_prefetch");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.bench_function("ormdb", |b| {
        b.iter(|| {
            let ids = (0..M2M_IN)
                .map(|_| Value::Integer(rng.id(M2M_BOOKS)))
                .collect();
            let r = session
                .execute(&q, &Params::Positional(ids))
                .expect("select");
            black_box(r.rows.len())
        })
    });
    g.bench_function("sqlite", |b| {
        let mut st = s.conn.prepare_cached(&q).expect("prepare");
        b.iter(|| {
            let ids: Vec<i64> = (0..M2M_IN).map(|_| rng.id(M2M_BOOKS)).collect();
            let rows: Vec<(i64, i64, String)> = st
                .query_map(rusqlite::params_from_iter(ids), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .expect("query")
                .map(|r| r.expect("row"))
                .collect();
            black_box(rows.len())
        })
    });
    g.finish();
}

fn select_related(c: &mut Criterion) {
    let (_o, mut session, s) = join_fixture(SR_SCHEMA, &sr_rows());
    let mut g = c.benchmark_group("sql_select_related");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.bench_function("ormdb", |b| {
        b.iter(|| {
            let r = session.execute(SR_QUERY, &Params::None).expect("select");
            black_box(r.rows.len())
        })
    });
    g.bench_function("sqlite", |b| {
        let mut st = s.conn.prepare_cached(SR_QUERY).expect("prepare");
        b.iter(|| {
            let rows: Vec<Vec<rusqlite::types::Value>> = st
                .query_map([], |r| (0..7).map(|i| r.get(i)).collect())
                .expect("query")
                .map(|r| r.expect("row"))
                .collect();
            black_box(rows.len())
        })
    });
    g.finish();
}

fn to_lite(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Integer(i) => rusqlite::types::Value::Integer(*i),
        Value::Real(r) => rusqlite::types::Value::Real(*r),
        Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
        Value::Blob(b) => rusqlite::types::Value::Blob(b.clone()),
    }
}

/// Runs a statement on SQLite and copies every value out (as ORMDB returns them): the row
/// count, or None on error.
fn lite_run(conn: &rusqlite::Connection, st: &Stmt) -> Option<usize> {
    let mut p = conn.prepare_cached(&st.sql).ok()?;
    let n = p.column_count();
    let args: Vec<rusqlite::types::Value> = match &st.params {
        Params::Positional(v) => v.iter().map(to_lite).collect(),
        _ => Vec::new(),
    };
    let mut rows = p.query(rusqlite::params_from_iter(args)).ok()?;
    let mut count = 0;
    while let Some(r) = rows.next().ok()? {
        let vals: Vec<Value> = (0..n)
            .map(|i| match r.get_ref(i) {
                Ok(rusqlite::types::ValueRef::Integer(x)) => Value::Integer(x),
                Ok(rusqlite::types::ValueRef::Real(x)) => Value::Real(x),
                Ok(rusqlite::types::ValueRef::Text(t)) => {
                    Value::Text(String::from_utf8_lossy(t).into_owned())
                }
                Ok(rusqlite::types::ValueRef::Blob(b)) => Value::Blob(b.to_vec()),
                _ => Value::Null,
            })
            .collect();
        black_box(vals);
        count += 1;
    }
    Some(count + conn.changes() as usize * (n == 0 && is_write(st)) as usize)
}

fn ormdb_run(s: &mut Session, st: &Stmt) -> Option<usize> {
    let r = s.execute(&st.sql, &st.params).ok()?;
    Some(r.rows.len() + r.rows_affected as usize * r.columns.is_empty() as usize)
}

fn is_write(st: &Stmt) -> bool {
    matches!(st.kind, "insert" | "update" | "delete")
}

/// Fresh databases with the Prisma 7 schema (prisma7_migrate_diff.sql) on both engines.
fn prisma_dbs(schema: &str) -> (OrmdbFixture, Session, SqliteFixture) {
    let o = OrmdbFixture::new(Mode::Full);
    let s = SqliteFixture::new(Mode::Full);
    let mut session = o.db.connect().sql();
    session.execute_batch(schema).expect("ormdb prisma schema");
    s.conn.execute_batch(schema).expect("sqlite prisma schema");
    (o, session, s)
}

/// The Prisma 7 client corpus on both engines. Writes: each replay on fresh databases (ORMDB
/// never reuses a row id, SQLite does after a rollback, so a replay after a rolled-back one
/// would not do the same work on both), timed per statement kind, median over `REPLAYS`.
/// Reads: the corpus's SELECTs replayed over and over, in order with their arguments, on the
/// data a full replay left (criterion, warm caches on both sides).
fn prisma(c: &mut Criterion) {
    const REPLAYS: usize = 15;
    let read = corpus_read;
    let schema = read("prisma7_migrate_diff.sql");
    let all = prisma_log(&read("prisma7_client_sql.txt"));
    // Keep the statements both engines run with the same row counts.
    let (_o, mut session, s) = prisma_dbs(&schema);
    let mut stmts = Vec::new();
    let mut differ = 0;
    for st in all {
        match (ormdb_run(&mut session, &st), lite_run(&s.conn, &st)) {
            (Some(a), Some(b)) if a == b => stmts.push(st),
            (None, None) => {}
            (a, b) => {
                differ += 1;
                eprintln!("left out: ormdb {a:?}, sqlite {b:?}: {}", st.sql);
            }
        }
    }
    let kinds = ["select", "insert", "update", "delete", "transaction"];
    let count = |k: &str| stmts.iter().filter(|s| s.kind == k).count();
    println!(
        "prisma7 client corpus: {} statements per replay ({} select, {} insert, {} update, {} delete, {} BEGIN/COMMIT/ROLLBACK); {differ} left out (failed or differed on one engine)",
        stmts.len(),
        count("select"),
        count("insert"),
        count("update"),
        count("delete"),
        count("transaction")
    );
    // Truly cold first (the process-wide parse cache cleared before each replay), then new
    // sessions in a process whose earlier sessions ran the same texts (parses shared).
    for shared in [false, true] {
        replay(&schema, &stmts, &kinds, REPLAYS, shared);
    }

    let selects: Vec<&Stmt> = stmts.iter().filter(|s| s.kind == "select").collect();
    let (h0, m0) = session.plan_cache_stats();
    let mut g = c.benchmark_group("sql_prisma7_selects");
    g.throughput(Throughput::Elements(selects.len() as u64));
    g.bench_function("ormdb", |b| {
        b.iter(|| {
            for st in &selects {
                black_box(ormdb_run(&mut session, st));
            }
        })
    });
    g.bench_function("sqlite", |b| {
        b.iter(|| {
            for st in &selects {
                black_box(lite_run(&s.conn, st));
            }
        })
    });
    g.finish();
    let (h, m) = session.plan_cache_stats();
    println!(
        "ormdb plan cache over the repeated selects: {} hits, {} misses",
        h - h0,
        m - m0
    );
}

/// Replays the corpus `replays` times, each on fresh databases and sessions, and prints the
/// median time per statement of each kind on both engines. `shared`: the process-wide parse
/// cache keeps the texts earlier replays parsed (`RESULT sql_prisma7_replay_shared/select`);
/// otherwise it is cleared before each replay, so every ORMDB statement is parsed and
/// compiled from scratch, as every SQLite statement is prepared.
fn replay(schema: &str, stmts: &[Stmt], kinds: &[&str], replays: usize, shared: bool) {
    let suffix = if shared { "_shared" } else { "" };
    let count = |k: &str| stmts.iter().filter(|s| s.kind == k).count();
    // Per kind and engine: the time of that kind's statements in each replay.
    let mut times: Vec<[Vec<Duration>; 2]> = kinds.iter().map(|_| [vec![], vec![]]).collect();
    let mut plan = (0, 0);
    let mut disagreed = 0;
    for _ in 0..replays {
        if !shared {
            ormdb::sql::clear_shared_parse_cache();
        }
        let (_o, mut session, s) = prisma_dbs(schema);
        let mut t = [[Duration::ZERO; 2]; 5];
        for st in stmts {
            let k = kinds.iter().position(|k| *k == st.kind).unwrap_or(0);
            let start = Instant::now();
            let a = ormdb_run(&mut session, st);
            t[k][0] += start.elapsed();
            let start = Instant::now();
            let b = lite_run(&s.conn, st);
            t[k][1] += start.elapsed();
            // Left-out statements can change what later ones see: count, do not stop.
            disagreed += (a != b) as usize;
        }
        for (k, tk) in t.iter().enumerate() {
            times[k][0].push(tk[0]);
            times[k][1].push(tk[1]);
        }
        let (h, m) = session.plan_cache_stats();
        plan = (plan.0 + h, plan.1 + m);
    }
    println!(
        "prisma7 replays: {disagreed} statement runs gave different row counts on the two engines"
    );
    for (k, kind) in kinds.iter().enumerate() {
        let n = count(kind).max(1) as f64;
        if shared && *kind != "select" {
            continue;
        }
        let med = |v: &mut Vec<Duration>| {
            v.sort();
            v[v.len() / 2].as_secs_f64() * 1e6
        };
        let (o, l) = (med(&mut times[k][0]), med(&mut times[k][1]));
        println!(
            "RESULT sql_prisma7_replay{suffix}/{kind} statements={} ormdb_us_per_statement={:.2} sqlite_us_per_statement={:.2} ratio={:.2}",
            count(kind),
            o / n,
            l / n,
            o / l
        );
    }
    println!(
        "ormdb plan cache over the fresh-session replays{suffix}: {} hits, {} misses (hit rate {:.4})",
        plan.0,
        plan.1,
        plan.0 as f64 / (plan.0 + plan.1).max(1) as f64
    );
}

/// The write cases of `sql_writes`: (name, ORMDB/SQLite text, needs preloaded rows).
const WRITE_CASES: [(&str, &str); 4] = [
    ("insert", "INSERT INTO w (a, b, c) VALUES (?, ?, ?)"),
    (
        "insert_returning",
        "INSERT INTO w (a, b, c) VALUES (?, ?, ?) RETURNING id",
    ),
    ("update", "UPDATE w SET a = ?, b = ? WHERE id = ?"),
    ("delete", "DELETE FROM w WHERE id = ?"),
];
const WRITE_SCHEMA: &str =
    "CREATE TABLE w (id INTEGER PRIMARY KEY AUTOINCREMENT, a INTEGER NOT NULL, b VARCHAR(40), c REAL)";
/// Statements per case and engine in one repetition; rows preloaded for UPDATE / DELETE.
const WRITE_N: i64 = 3_000;
/// Statements per explicit transaction in the `_tx` cases.
const WRITE_TX: i64 = 100;

/// Whether criterion's name filter (the first free argument) selects `name` (no filter: all).
fn selected(name: &str) -> bool {
    std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .is_none_or(|f| name.contains(&f) || f.contains(name))
}

/// Parameters of statement `i` of a case (the same on both engines).
fn write_params(case: &str, i: i64) -> Vec<Value> {
    match case {
        "insert" | "insert_returning" => vec![
            Value::Integer(i),
            Value::Text(format!("name {i:08}")),
            Value::Real(i as f64 * 0.5),
        ],
        "update" => vec![
            Value::Integer(i * 3),
            Value::Text(format!("upd {i:08}")),
            Value::Integer((i * 7919) % WRITE_N + 1),
        ],
        _ => vec![Value::Integer(i + 1)],
    }
}

/// Runs one case on one engine: `WRITE_N` statements, autocommit or in transactions of
/// `WRITE_TX` (commit included). Returns (wall, process CPU) per statement in microseconds.
fn write_case(run: &mut dyn FnMut(&str, &[Value]), text: &str, case: &str, tx: bool) -> (f64, f64) {
    let (t0, c0) = (Instant::now(), process_cpu());
    for i in 0..WRITE_N {
        if tx && i % WRITE_TX == 0 {
            run("BEGIN", &[]);
        }
        run(text, &write_params(case, i));
        if tx && (i % WRITE_TX == WRITE_TX - 1 || i == WRITE_N - 1) {
            run("COMMIT", &[]);
        }
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / WRITE_N as f64;
    (per(t0.elapsed()), per(process_cpu() - c0))
}

/// Single-row writes through SQL, ORMDB `Session::execute` (cached statement and plan) against
/// rusqlite `prepare_cached` in the same run, durability Normal vs SQLite WAL
/// `synchronous=NORMAL` (commits reach the OS, not the disk: CPU is measured, not fsync).
/// Each repetition uses fresh databases; the two engines alternate which runs first.
/// `RESULT sql_writes/<case>[_tx] rep=k ...` per repetition, then the median of the ratios.
/// `ORMDB_BENCH_WRITE_REPS` sets the repetitions (default 5).
fn sql_writes(_c: &mut Criterion) {
    if !selected("sql_writes") {
        return;
    }
    let reps: usize = std::env::var("ORMDB_BENCH_WRITE_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mode = Mode::Normal;
    // Per case: name, wall ratios, CPU ratios, ORMDB wall microseconds (one per repetition).
    type PerCase = (String, Vec<f64>, Vec<f64>, Vec<f64>);
    let mut ratios: Vec<PerCase> = Vec::new();
    for rep in 0..reps {
        for tx in [false, true] {
            for (case, text) in WRITE_CASES {
                let name = format!("{case}{}", if tx { "_tx" } else { "" });
                let o_dir = temp_dir("ormdb-bench-");
                let db = ormdb_open(o_dir.path(), mode, 64 << 20);
                let mut session = db.connect().sql();
                session.execute_batch(WRITE_SCHEMA).expect("ormdb schema");
                let l_dir = temp_dir("sqlite-bench-");
                let lite = sqlite_open(&l_dir.path().join("w.db"), mode);
                lite.execute_batch(WRITE_SCHEMA).expect("sqlite schema");
                if case == "update" || case == "delete" {
                    let load = "INSERT INTO w (a, b, c) VALUES (?, ?, ?)";
                    session.execute_batch("BEGIN").expect("begin");
                    lite.execute_batch("BEGIN").expect("begin");
                    for i in 0..WRITE_N {
                        let p = write_params("insert", i);
                        session
                            .execute(load, &Params::Positional(p.clone()))
                            .expect("ormdb load");
                        lite.prepare_cached(load)
                            .expect("prepare")
                            .execute(rusqlite::params_from_iter(p.iter().map(to_lite)))
                            .expect("sqlite load");
                    }
                    session.execute_batch("COMMIT").expect("commit");
                    lite.execute_batch("COMMIT").expect("commit");
                }
                let (h0, m0) = session.plan_cache_stats();
                let mut run_o = |sql: &str, p: &[Value]| {
                    let params = if p.is_empty() {
                        Params::None
                    } else {
                        Params::Positional(p.to_vec())
                    };
                    let r = session.execute(sql, &params).expect("ormdb write");
                    black_box(r.rows.len());
                };
                let mut run_l = |sql: &str, p: &[Value]| {
                    let mut st = lite.prepare_cached(sql).expect("prepare");
                    let p = rusqlite::params_from_iter(p.iter().map(to_lite));
                    if sql.contains("RETURNING") {
                        let id: i64 = st.query_row(p, |r| r.get(0)).expect("sqlite returning");
                        black_box(id);
                    } else {
                        black_box(st.execute(p).expect("sqlite write"));
                    }
                };
                let (o, l) = if rep % 2 == 0 {
                    let o = write_case(&mut run_o, text, case, tx);
                    (o, write_case(&mut run_l, text, case, tx))
                } else {
                    let l = write_case(&mut run_l, text, case, tx);
                    (write_case(&mut run_o, text, case, tx), l)
                };
                let (h, m) = session.plan_cache_stats();
                let ratio = o.0 / l.0;
                println!(
                    "RESULT sql_writes/{name} rep={rep} statements={WRITE_N} ormdb_us={:.2} sqlite_us={:.2} ratio={ratio:.2} ormdb_cpu_us={:.2} sqlite_cpu_us={:.2} cpu_ratio={:.2} plan_hits={} plan_misses={} loadavg={}",
                    o.0,
                    l.0,
                    o.1,
                    l.1,
                    o.1 / l.1,
                    h - h0,
                    m - m0,
                    std::fs::read_to_string("/proc/loadavg")
                        .unwrap_or_default()
                        .split_whitespace()
                        .next()
                        .unwrap_or("?"),
                );
                match ratios.iter_mut().find(|r| r.0 == name) {
                    Some(r) => {
                        r.1.push(ratio);
                        r.2.push(o.1 / l.1);
                        r.3.push(o.0);
                    }
                    None => ratios.push((name, vec![ratio], vec![o.1 / l.1], vec![o.0])),
                }
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (name, mut r, mut cpu, mut us) in ratios {
        println!(
            "RESULT sql_writes/{name} median_of_{reps} ratio={:.2} cpu_ratio={:.2} ormdb_us={:.2}",
            median(&mut r),
            median(&mut cpu),
            median(&mut us)
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = sql_writes, m2m, sql
}
criterion_main!(benches);
