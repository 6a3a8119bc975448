//! Per-operation latency percentiles (p50/p95/p99/max) for the engine-core cases, ORMDB vs
//! SQLite with matching durability. Each operation is timed individually with `Instant`.
//!
//! Usage: `latency [--ops N] [--rows N] [FILTER...]`
//! Cases: `point_read_txn`, `point_read_batch100`, `insert_commit`, `family_commit`, `writers`,
//! `graph_fetch` (issue 3: users -> posts -> comments, `one_user` / `hundred_users`; variants
//! `ormdb`, `sqlite` = hand-written IN-list batching, `sqlite_nplus1`, and `ormdb_after_write` /
//! `sqlite_after_write`: each fetch preceded by an untimed write to `comments` from another
//! connection; see benches/src/graph.rs).
//! A FILTER keeps the results whose id (`case/engine/mode[/threads]`) contains it.
//!
//! Output: one `RESULT <id> n=.. ops_per_s=.. mean_us=.. p50_us=.. p95_us=.. p99_us=.. max_us=..`
//! line per measurement.

use std::time::{Duration, Instant};

use ormdb_benches::*;

/// Time limits for one multi-writer measurement (stock SQLite with 16 durable writers can drop
/// to tens of commits per second).
const BUDGET: Option<Duration> = Some(Duration::from_secs(8));
const WARM_BUDGET: Option<Duration> = Some(Duration::from_secs(1));

struct Args {
    ops: u64,
    rows: i64,
    filters: Vec<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        ops: 5000,
        rows: READ_ROWS,
        filters: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--ops" => a.ops = it.next().and_then(|v| v.parse().ok()).expect("--ops N"),
            "--rows" => a.rows = it.next().and_then(|v| v.parse().ok()).expect("--rows N"),
            "-h" | "--help" => {
                eprintln!("usage: latency [--ops N] [--rows N] [FILTER...]");
                std::process::exit(0);
            }
            f => a.filters.push(f.to_string()),
        }
    }
    a
}

impl Args {
    fn wants(&self, id: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| id.contains(f.as_str()))
    }
}

/// Prints one result line. `cpu` is the process CPU time (all threads, including the engines'
/// background threads) spent during the measurement.
fn report(id: &str, wall: Duration, cpu: Duration, ops: u64, lat: &mut [Duration]) {
    let p = percentiles(lat);
    println!(
        "RESULT {id} n={} ops_per_s={:.0} cpu_us_per_op={:.1} mean_us={:.2} p50_us={:.2} p95_us={:.2} p99_us={:.2} max_us={:.1}",
        p.n,
        ops as f64 / wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / ops.max(1) as f64,
        p.mean_us,
        p.p50_us,
        p.p95_us,
        p.p99_us,
        p.max_us
    );
}

/// Times `ops` calls of `f` (after `ops / 10` warm-up calls): (wall, process CPU, latencies).
fn time_ops(ops: u64, mut f: impl FnMut()) -> (Duration, Duration, Vec<Duration>) {
    for _ in 0..ops / 10 {
        f();
    }
    let mut lat = Vec::with_capacity(ops as usize);
    let cpu0 = process_cpu();
    let start = Instant::now();
    for _ in 0..ops {
        let t0 = Instant::now();
        f();
        lat.push(t0.elapsed());
    }
    (start.elapsed(), process_cpu() - cpu0, lat)
}

fn main() {
    let args = parse_args();
    let ops = args.ops;

    const READ_IDS: [&str; 4] = [
        "point_read_txn/ormdb/full",
        "point_read_txn/sqlite/full",
        "point_read_batch100/ormdb/full",
        "point_read_batch100/sqlite/full",
    ];
    if READ_IDS.iter().any(|id| args.wants(id)) {
        let mode = Mode::Full;
        let rows = args.rows;
        let o = OrmdbFixture::with_items(mode, rows);
        let s = SqliteFixture::with_items(mode, rows);
        let conn = o.db.connect();
        let read_ops = ops * 20;
        if args.wants(READ_IDS[0]) {
            let mut rng = Rng::new(7);
            let (w, cpu, mut l) = time_ops(read_ops, || {
                std::hint::black_box(ormdb_get_one(&conn, rng.id(rows)));
            });
            report("point_read_txn/ormdb/full", w, cpu, read_ops, &mut l);
        }
        if args.wants(READ_IDS[1]) {
            let mut rng = Rng::new(7);
            let (w, cpu, mut l) = time_ops(read_ops, || {
                std::hint::black_box(sqlite_get_one(&s.conn, rng.id(rows)));
            });
            report("point_read_txn/sqlite/full", w, cpu, read_ops, &mut l);
        }
        // Batch: latency of a whole 100-lookup transaction; throughput counted per lookup.
        let batches = (read_ops / 100).max(10);
        if args.wants(READ_IDS[2]) {
            let mut rng = Rng::new(8);
            let (w, cpu, mut l) = time_ops(batches, || {
                let mut tx = conn.begin().expect("begin");
                for _ in 0..100 {
                    std::hint::black_box(ormdb_get_in(&mut tx, rng.id(rows)));
                }
            });
            report(
                "point_read_batch100/ormdb/full",
                w,
                cpu,
                batches * 100,
                &mut l,
            );
        }
        if args.wants(READ_IDS[3]) {
            let mut rng = Rng::new(8);
            let (w, cpu, mut l) = time_ops(batches, || {
                s.conn.execute_batch("BEGIN").expect("begin");
                for _ in 0..100 {
                    std::hint::black_box(sqlite_get_in(&s.conn, rng.id(rows)));
                }
                s.conn.execute_batch("COMMIT").expect("commit");
            });
            report(
                "point_read_batch100/sqlite/full",
                w,
                cpu,
                batches * 100,
                &mut l,
            );
        }
    }

    graph_fetch(&args);

    for mode in Mode::ALL {
        let m = mode.name();
        // Fewer durable commits: each costs an fsync.
        let write_ops = if mode == Mode::Full { ops / 2 } else { ops * 2 };
        if args.wants(&format!("insert_commit/ormdb/{m}")) {
            let o = OrmdbFixture::new(mode);
            let conn = o.db.connect();
            let mut rng = Rng::new(1);
            let (w, cpu, mut l) = time_ops(write_ops, || {
                ormdb_insert_one(&conn, &mut rng);
            });
            report(
                &format!("insert_commit/ormdb/{m}"),
                w,
                cpu,
                write_ops,
                &mut l,
            );
        }
        if args.wants(&format!("insert_commit/sqlite/{m}")) {
            let s = SqliteFixture::new(mode);
            let mut rng = Rng::new(1);
            let (w, cpu, mut l) = time_ops(write_ops, || {
                sqlite_insert_one(&s.conn, &mut rng);
            });
            report(
                &format!("insert_commit/sqlite/{m}"),
                w,
                cpu,
                write_ops,
                &mut l,
            );
        }
        let fam_ops = write_ops / 2;
        if args.wants(&format!("family_commit/ormdb/{m}")) {
            let o = OrmdbFixture::new(mode);
            let conn = o.db.connect();
            let mut k = 0;
            let (w, cpu, mut l) = time_ops(fam_ops, || {
                k += 1;
                ormdb_insert_family(&conn, k);
            });
            report(&format!("family_commit/ormdb/{m}"), w, cpu, fam_ops, &mut l);
        }
        if args.wants(&format!("family_commit/sqlite/{m}")) {
            let s = SqliteFixture::new(mode);
            let mut k = 0;
            let (w, cpu, mut l) = time_ops(fam_ops, || {
                k += 1;
                sqlite_insert_family(&s.conn, k);
            });
            report(
                &format!("family_commit/sqlite/{m}"),
                w,
                cpu,
                fam_ops,
                &mut l,
            );
        }
        for threads in [1usize, 4, 16] {
            // Total commits per measurement, shared out dynamically between the threads. Longer
            // than the single-writer cases: short multi-writer runs on a fresh database are
            // dominated by start-up effects (2,500 commits gave half the steady-state rate).
            let total = (write_ops * 4).max(50 * threads as u64);
            let warm = total / 5;
            let id = format!("writers/ormdb/{m}/{threads}");
            if args.wants(&id) {
                let o = OrmdbFixture::new(mode);
                ormdb_writers(&o.db, threads, warm, WARM_BUDGET, None);
                let mut l = Vec::new();
                let cpu0 = process_cpu();
                let r = ormdb_writers(&o.db, threads, total, BUDGET, Some(&mut l));
                let cpu = process_cpu() - cpu0;
                report(&id, r.elapsed, cpu, r.commits, &mut l);
            }
            for (engine, serialize) in [("sqlite", false), ("sqlite_mutex", true)] {
                let id = format!("writers/{engine}/{m}/{threads}");
                if !args.wants(&id) || (serialize && threads == 1) {
                    continue;
                }
                let s = SqliteFixture::new(mode);
                sqlite_writers(&s.path, mode, threads, warm, serialize, WARM_BUDGET, None);
                let mut l = Vec::new();
                let cpu0 = process_cpu();
                let r = sqlite_writers(
                    &s.path,
                    mode,
                    threads,
                    total,
                    serialize,
                    BUDGET,
                    Some(&mut l),
                );
                let cpu = process_cpu() - cpu0;
                report(&id, r.elapsed, cpu, r.commits, &mut l);
            }
        }
    }
}

/// Graph fetch latencies on the criterion dataset (100 users x 10 posts x 10 comments): the
/// one-user case rotates through the users; `ops` fetches of one user, `ops / 20` of 100 users.
fn graph_fetch(args: &Args) {
    use ormdb_benches::graph::*;
    const CASES: [(&str, i64); 2] = [("one_user", 1), ("hundred_users", 100)];
    const VARIANTS: [&str; 5] = [
        "ormdb",
        "sqlite",
        "sqlite_nplus1",
        "ormdb_after_write",
        "sqlite_after_write",
    ];
    let wanted = |case: &str, v: &str| args.wants(&format!("graph_fetch/{v}/{case}"));
    if !CASES
        .iter()
        .any(|(c, _)| VARIANTS.iter().any(|v| wanted(c, v)))
    {
        return;
    }
    let shape = Shape::BENCH;
    let fx = BlogFixture::new(Mode::Full, shape);
    let conn = fx.db.connect();
    for (case, n) in CASES {
        fx.check(&user_ids(1, n, shape.users));
        let ops = if n == 1 {
            args.ops
        } else {
            (args.ops / 20).max(50)
        };
        let ids: Vec<Vec<i64>> = (1..=shape.users)
            .map(|first| user_ids(first, n, shape.users))
            .collect();
        let fetches: Vec<_> = ids.iter().map(|i| blog_fetch(i)).collect();
        for v in &VARIANTS[..3] {
            let v = *v;
            if !wanted(case, v) {
                continue;
            }
            let mut k = 0usize;
            let (w, cpu, mut l) = time_ops(ops, || {
                k = (k + 1) % ids.len();
                match v {
                    "ormdb" => {
                        std::hint::black_box(ormdb_fetch(&conn, &fetches[k]));
                    }
                    "sqlite" => {
                        std::hint::black_box(fx.sqlite.fetch_batched(&ids[k]));
                    }
                    _ => {
                        std::hint::black_box(fx.sqlite.fetch_n_plus_1(&ids[k]));
                    }
                }
            });
            report(&format!("graph_fetch/{v}/{case}"), w, cpu, ops, &mut l);
        }
        // After a write: before each (timed) fetch, another connection rewrites one comment
        // (untimed), so ORMDB cannot use a decoded image of `comments` and SQLite's reader
        // sees a changed WAL. Wall time and CPU are of the fetches only.
        for v in &VARIANTS[3..] {
            let v = *v;
            if !wanted(case, v) {
                continue;
            }
            let ormdb_writer = fx.db.connect();
            let sqlite_writer = fx.sqlite_writer();
            let ops = (ops / 4).max(50);
            let mut lat = Vec::with_capacity(ops as usize);
            let mut cpu = Duration::ZERO;
            for i in 0..ops + ops / 10 {
                let k = (i as usize) % ids.len();
                let cid =
                    (i as i64 * 7919) % (shape.users * shape.posts_per * shape.comments_per) + 1;
                if v == "ormdb_after_write" {
                    ormdb_touch_comment(&ormdb_writer, cid);
                    let (c1, t1) = (process_cpu(), Instant::now());
                    std::hint::black_box(ormdb_fetch(&conn, &fetches[k]));
                    if i >= ops / 10 {
                        lat.push(t1.elapsed());
                        cpu += process_cpu() - c1;
                    }
                } else {
                    sqlite_touch_comment(&sqlite_writer, cid);
                    let (c1, t1) = (process_cpu(), Instant::now());
                    std::hint::black_box(fx.sqlite.fetch_batched(&ids[k]));
                    if i >= ops / 10 {
                        lat.push(t1.elapsed());
                        cpu += process_cpu() - c1;
                    }
                }
            }
            let wall: Duration = lat.iter().sum();
            report(&format!("graph_fetch/{v}/{case}"), wall, cpu, ops, &mut lat);
        }
    }
}
