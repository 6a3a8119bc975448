//! Engine-core benchmarks, ORMDB against SQLite in the same run with matching durability
//! (see benches/src/lib.rs and docs/BENCHMARKS.md):
//!
//! - `point_read`: `tx.get` by identity on a 100k-row table with random ids, vs a prepared
//!   `SELECT ... WHERE id = ?`; one read transaction per lookup (`txn_per_lookup`) and 100 lookups
//!   per read transaction (`batch100`, throughput counted per lookup).
//! - `insert_commit`: one single-row insert transaction per iteration.
//! - `family_commit`: a parent and 10 children (foreign key to the parent) in one transaction.
//! - `writers`: 1, 4 and 16 threads each committing single-row inserts; one iteration is one
//!   commit per thread, so the reported throughput is commits per second. Each measurement runs
//!   at least 50 commits per thread, shared out dynamically (aggregate throughput; a starved
//!   writer does not stall the measurement), and is scaled back to the iteration count. `sqlite` is stock
//!   SQLite (busy timeout + `BEGIN IMMEDIATE`); `sqlite_mutex` additionally serializes the write
//!   transactions on an in-process mutex, avoiding the busy handler's sleeps.
//!
//! Ids are `case/engine/durability[/threads]`. Default timing: 1 s warm-up, 3 s measurement
//! (override on the command line, e.g. `-- --measurement-time 5`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use ormdb_benches::*;

const BATCH: u64 = 100;
/// Commits per thread in one writer measurement at least (steady state, not one lock round).
const MIN_PER_THREAD: u64 = 50;

fn point_read(c: &mut Criterion) {
    // Reads do not depend on the durability setting; use the Full pairing.
    let mode = Mode::Full;
    let o = OrmdbFixture::with_items(mode, READ_ROWS);
    let s = SqliteFixture::with_items(mode, READ_ROWS);
    let conn = o.db.connect();
    let mut g = c.benchmark_group("point_read");

    g.throughput(Throughput::Elements(1));
    let mut rng = Rng::new(7);
    g.bench_function("ormdb/txn_per_lookup", |b| {
        b.iter(|| black_box(ormdb_get_one(&conn, rng.id(READ_ROWS))))
    });
    let mut rng = Rng::new(7);
    g.bench_function("sqlite/txn_per_lookup", |b| {
        b.iter(|| black_box(sqlite_get_one(&s.conn, rng.id(READ_ROWS))))
    });

    g.throughput(Throughput::Elements(BATCH));
    let mut rng = Rng::new(8);
    g.bench_function("ormdb/batch100", |b| {
        b.iter(|| {
            let mut tx = conn.begin().expect("begin");
            let mut sum = 0;
            for _ in 0..BATCH {
                sum += ormdb_get_in(&mut tx, rng.id(READ_ROWS));
            }
            black_box(sum)
        })
    });
    let mut rng = Rng::new(8);
    g.bench_function("sqlite/batch100", |b| {
        b.iter(|| {
            s.conn.execute_batch("BEGIN").expect("begin");
            let mut sum = 0;
            for _ in 0..BATCH {
                sum += sqlite_get_in(&s.conn, rng.id(READ_ROWS));
            }
            s.conn.execute_batch("COMMIT").expect("commit");
            black_box(sum)
        })
    });
    g.finish();
}

fn insert_commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("insert_commit");
    g.throughput(Throughput::Elements(1));
    for mode in Mode::ALL {
        let o = OrmdbFixture::new(mode);
        let conn = o.db.connect();
        let mut rng = Rng::new(1);
        g.bench_function(format!("ormdb/{}", mode.name()), |b| {
            b.iter(|| black_box(ormdb_insert_one(&conn, &mut rng)))
        });
        drop(conn);
        drop(o);
        let s = SqliteFixture::new(mode);
        let mut rng = Rng::new(1);
        g.bench_function(format!("sqlite/{}", mode.name()), |b| {
            b.iter(|| black_box(sqlite_insert_one(&s.conn, &mut rng)))
        });
    }
    g.finish();
}

fn family_commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("family_commit");
    g.throughput(Throughput::Elements(1));
    for mode in Mode::ALL {
        let o = OrmdbFixture::new(mode);
        let conn = o.db.connect();
        let mut k = 0;
        g.bench_function(format!("ormdb/{}", mode.name()), |b| {
            b.iter(|| {
                k += 1;
                black_box(ormdb_insert_family(&conn, k))
            })
        });
        drop(conn);
        drop(o);
        let s = SqliteFixture::new(mode);
        let mut k = 0;
        g.bench_function(format!("sqlite/{}", mode.name()), |b| {
            b.iter(|| {
                k += 1;
                black_box(sqlite_insert_family(&s.conn, k))
            })
        });
    }
    g.finish();
}

fn writers(c: &mut Criterion) {
    let mut g = c.benchmark_group("writers");
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    for mode in Mode::ALL {
        for threads in [1usize, 4, 16] {
            // One iteration = one commit on every thread: throughput is commits per second.
            g.throughput(Throughput::Elements(threads as u64));
            let o = OrmdbFixture::new(mode);
            g.bench_function(format!("ormdb/{}/{threads}", mode.name()), |b| {
                b.iter_custom(|iters| {
                    writers_iter_time(iters, threads, MIN_PER_THREAD, |total| {
                        ormdb_writers(&o.db, threads, total, None, None)
                    })
                })
            });
            drop(o);
            for (engine, serialize) in [("sqlite", false), ("sqlite_mutex", true)] {
                if serialize && threads == 1 {
                    continue; // identical to plain sqlite with one writer
                }
                let s = SqliteFixture::new(mode);
                g.bench_function(format!("{engine}/{}/{threads}", mode.name()), |b| {
                    b.iter_custom(|iters| {
                        writers_iter_time(iters, threads, MIN_PER_THREAD, |total| {
                            sqlite_writers(&s.path, mode, threads, total, serialize, None, None)
                        })
                    })
                });
            }
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = point_read, insert_commit, family_commit, writers
}
criterion_main!(benches);
