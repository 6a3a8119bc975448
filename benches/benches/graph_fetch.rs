//! Graph fetch benchmarks (issue 3), ORMDB against SQLite in the same run (see
//! benches/src/graph.rs and docs/BENCHMARKS.md).
//!
//! Dataset: 100 users x 10 posts x 10 comments (11,100 rows) in both engines, checkpointed; FK
//! columns indexed in SQLite as ORMDB indexes them. Cases:
//!
//! - `one_user`: one user with its 10 posts with 10 comments each (111 rows); the user changes
//!   every iteration (cycling through all 100).
//! - `hundred_users`: all 100 users with the same shape (11,100 rows).
//!
//! Variants (ids `graph_fetch/<variant>/<case>`):
//!
//! - `ormdb`: `conn.fetch` of users -> posts -> comments; the `GraphResult` as returned (owned
//!   values in entity blocks, edge blocks).
//! - `ormdb_nested`: the same plus turning the result into the nested structs SQLite builds
//!   (what an ORM binding adds; reported, not part of the goals).
//! - `sqlite`: (a) hand-written batching, one prepared IN-list query per level, assembled into
//!   nested structs with every column copied into owned Rust values.
//! - `sqlite_nplus1`: (b) the N+1 pattern, one query per parent per level.
//!
//! SQLite reads inside `BEGIN` ... `COMMIT`, so all variants read one snapshot. Reads do not
//! depend on the durability pairing; the Full pairing is used. Default timing: 1 s warm-up,
//! 3 s measurement (override on the command line).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ormdb_benches::graph::*;
use ormdb_benches::Mode;

fn graph_fetch(c: &mut Criterion) {
    let shape = Shape::BENCH;
    let fx = BlogFixture::new(Mode::Full, shape);
    let conn = fx.db.connect();
    let per_user = 1 + shape.posts_per * (1 + shape.comments_per);
    let mut g = c.benchmark_group("graph_fetch");
    for (case, n) in [("one_user", 1i64), ("hundred_users", 100)] {
        // Same answers from every variant before timing anything.
        fx.check(&user_ids(1, n, shape.users));
        // Throughput in rows returned, so the rate is comparable across cases.
        g.throughput(Throughput::Elements((n * per_user) as u64));
        let fetches: Vec<_> = (1..=shape.users)
            .map(|first| blog_fetch(&user_ids(first, n, shape.users)))
            .collect();
        let ids: Vec<Vec<i64>> = (1..=shape.users)
            .map(|first| user_ids(first, n, shape.users))
            .collect();
        let mut k = 0usize;
        g.bench_function(format!("ormdb/{case}"), |b| {
            b.iter(|| {
                k = (k + 1) % fetches.len();
                black_box(ormdb_fetch(&conn, &fetches[k]))
            })
        });
        let mut k = 0usize;
        g.bench_function(format!("ormdb_nested/{case}"), |b| {
            b.iter(|| {
                k = (k + 1) % fetches.len();
                black_box(graph_into_nested(ormdb_fetch(&conn, &fetches[k])))
            })
        });
        let mut k = 0usize;
        g.bench_function(format!("sqlite/{case}"), |b| {
            b.iter(|| {
                k = (k + 1) % ids.len();
                black_box(fx.sqlite.fetch_batched(&ids[k]))
            })
        });
        let mut k = 0usize;
        g.bench_function(format!("sqlite_nplus1/{case}"), |b| {
            b.iter(|| {
                k = (k + 1) % ids.len();
                black_box(fx.sqlite.fetch_n_plus_1(&ids[k]))
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = graph_fetch
}
criterion_main!(benches);
