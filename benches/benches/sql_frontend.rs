//! SQL front-end benchmarks, ORMDB's `Session` against SQLite (rusqlite, prepared and cached
//! statements) on the same 100k-row `items` table:
//!
//! - `sql_point_select`: `SELECT id, name, n FROM items WHERE id = ?` with random ids
//!   (autocommit: one read transaction per statement on both sides).
//! - `sql_index_eq`: `... WHERE n = ? ORDER BY id LIMIT 10` through the index on `n`.
//! - `sql_index_range`: `... WHERE n BETWEEN ? AND ? ORDER BY n LIMIT 20` (ORMDB reads the
//!   index range, then sorts and limits; SQLite walks the index in order and stops at 20).
//! - `sql_overhead`: `SELECT ?` (parse-cache hit, bind, compile, empty transaction).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ormdb::{Params, Value};
use ormdb_benches::*;

fn sql(c: &mut Criterion) {
    let mode = Mode::Full;
    let o = OrmdbFixture::with_items(mode, READ_ROWS);
    let s = SqliteFixture::with_items(mode, READ_ROWS);
    let mut session = o.db.connect().sql();
    session
        .execute("CREATE INDEX items_n ON items (n)", &Params::None)
        .expect("ormdb index");
    s.conn
        .execute_batch("CREATE INDEX IF NOT EXISTS items_n ON items (n)")
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

    let mut g = c.benchmark_group("sql_index_range");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    let q = "SELECT id, name FROM items WHERE n BETWEEN ? AND ? ORDER BY n LIMIT 20";
    g.bench_function("ormdb", |b| {
        b.iter(|| {
            let lo = rng.id(READ_ROWS) * 7;
            let r = session
                .execute(
                    q,
                    &Params::Positional(vec![Value::Integer(lo), Value::Integer(lo + 700)]),
                )
                .expect("select");
            black_box(r.rows.len())
        })
    });
    g.bench_function("sqlite", |b| {
        let mut st = s.conn.prepare_cached(q).expect("prepare");
        b.iter(|| {
            let lo = rng.id(READ_ROWS) * 7;
            let rows: Vec<i64> = st
                .query_map([lo, lo + 700], |r| r.get(0))
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
    println!("ormdb statement cache: {hits} hits, {misses} misses");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = sql
}
criterion_main!(benches);
