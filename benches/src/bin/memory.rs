//! Memory and disk benchmark: load N rows of ~1 KB into ORMDB (and SQLite), then reopen in a
//! fresh process and serve random point reads while sampling the process RSS.
//!
//! Usage: `memory [--rows N] [--payload BYTES] [--batch ROWS] [--cache-mib MIB] [--reads N]
//!                [--engine ormdb|sqlite|both] [--change-retention N] [--dir DIR] [--keep]
//!                [--sled-floor]`
//!
//! Defaults: 1,000,000 rows, 1000-byte payload (plus id, a 15-byte name and an integer), 1000
//! rows per transaction, ORMDB cache 64 MiB, two passes of 200,000 reads (straight after open,
//! then steady), both engines, Durability::Normal /
//! synchronous=NORMAL for the load (the load is not what is measured; durability only changes
//! fsync counts). Each phase runs in its own child process so that RSS figures are not polluted
//! by the other phase or engine.
//!
//! `--sled-floor` adds two read phases on ORMDB's store after its own: the same random reads
//! done directly on the sled store through `SledKv` (no transaction, no decoding; values kept in
//! the value log are read from it, as ORMDB's reads do), once as the
//! seek ORMDB's read path makes (`first_in` from the newest version key at the snapshot) and
//! once as an exact-key `get` (the keys collected by a scan first, then the store reopened with
//! a cold cache). They separate what the storage engine costs from what ORMDB adds, and show
//! what a key layout that allowed a point `get` would gain.
//!
//! Output: `METRIC <engine>.<name> <value>` lines, then a summary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ormdb::Database;
use ormdb_benches::*;

#[derive(Debug, Clone)]
struct Args {
    rows: i64,
    payload: usize,
    batch: i64,
    cache_mib: u64,
    reads: u64,
    engine: String,
    change_retention: Option<u64>,
    dir: Option<PathBuf>,
    keep: bool,
    sled_floor: bool,
    phase: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        rows: 1_000_000,
        payload: 1000,
        batch: 1000,
        cache_mib: 64,
        reads: 200_000,
        engine: "both".into(),
        change_retention: None,
        dir: None,
        keep: false,
        sled_floor: false,
        phase: None,
    };
    let mut it = std::env::args().skip(1);
    let num = ormdb_benches::arg_num;
    while let Some(x) = it.next() {
        match x.as_str() {
            "--rows" => a.rows = num(it.next(), "--rows") as i64,
            "--payload" => a.payload = num(it.next(), "--payload") as usize,
            "--batch" => a.batch = num(it.next(), "--batch") as i64,
            "--cache-mib" => a.cache_mib = num(it.next(), "--cache-mib"),
            "--reads" => a.reads = num(it.next(), "--reads"),
            "--change-retention" => a.change_retention = Some(num(it.next(), "--change-retention")),
            "--engine" => a.engine = it.next().expect("--engine ormdb|sqlite|both"),
            "--dir" => a.dir = Some(PathBuf::from(it.next().expect("--dir DIR"))),
            "--keep" => a.keep = true,
            "--sled-floor" => a.sled_floor = true,
            "--phase" => a.phase = Some(it.next().expect("--phase NAME")),
            "-h" | "--help" => {
                eprintln!(
                    "usage: memory [--rows N] [--payload BYTES] [--batch ROWS] [--cache-mib MIB] \
                     [--reads N] [--engine ormdb|sqlite|both] [--change-retention N] [--dir DIR] [--keep] [--sled-floor]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn metric(name: &str, value: impl std::fmt::Display) {
    println!("METRIC {name} {value}");
}

fn ormdb_opts(a: &Args) -> ormdb::Options {
    let mut o = ormdb_options(Mode::Normal, a.cache_mib << 20);
    if let Some(r) = a.change_retention {
        o.change_retention = r;
    }
    o
}

/// Samples RSS while `f` runs; returns the highest sample.
fn sampled<T>(mut f: impl FnMut(&mut dyn FnMut()) -> T) -> (T, u64) {
    let mut max = 0u64;
    let mut sample = || max = max.max(rss().0);
    let out = f(&mut sample);
    (out, max)
}

fn phase_load_ormdb(a: &Args, dir: &Path) {
    let t0 = Instant::now();
    let db = Database::open(dir, ormdb_opts(a)).expect("open");
    ormdb_schema(&db);
    let step = (a.rows / 10).max(a.batch);
    let (_, max_rss) = sampled(|sample| {
        ormdb_load_items(&db, a.rows, a.payload, a.batch, |done| {
            sample();
            if done % step < a.batch || done == a.rows {
                let (r, h) = rss();
                eprintln!(
                    "  ormdb load: {done} rows, {:.1} s, RSS {:.0} MiB, peak {:.0} MiB",
                    t0.elapsed().as_secs_f64(),
                    mib(r),
                    mib(h)
                );
            }
        })
    });
    let load_s = t0.elapsed().as_secs_f64();
    if a.change_retention.is_some() {
        let st = db.gc().expect("gc");
        eprintln!("  ormdb gc: {st:?}");
    }
    db.checkpoint().expect("checkpoint");
    drop(db); // closes: final checkpoint
    metric("ormdb.rows", a.rows);
    metric("ormdb.load_s", format!("{load_s:.1}"));
    metric(
        "ormdb.load_rows_per_s",
        format!("{:.0}", a.rows as f64 / load_s),
    );
    metric("ormdb.load_rss_max_mib", format!("{:.1}", mib(max_rss)));
    metric("ormdb.load_hwm_mib", format!("{:.1}", mib(rss().1)));
    metric("ormdb.disk_mib", format!("{:.1}", mib(disk_usage(dir))));
    metric(
        "ormdb.disk_apparent_mib",
        format!("{:.1}", mib(apparent_size(dir))),
    );
    for sub in ["data", "log"] {
        metric(
            &format!("ormdb.disk_{sub}_mib"),
            format!("{:.1}", mib(disk_usage(&dir.join(sub)))),
        );
    }
}

fn phase_load_sqlite(a: &Args, dir: &Path) {
    let t0 = Instant::now();
    let path = dir.join("bench.db");
    let c = sqlite_open(&path, Mode::Normal);
    sqlite_schema(&c);
    let step = (a.rows / 10).max(a.batch);
    let (_, max_rss) = sampled(|sample| {
        sqlite_load_items(&c, a.rows, a.payload, a.batch, |done| {
            sample();
            if done % step < a.batch || done == a.rows {
                eprintln!(
                    "  sqlite load: {done} rows, {:.1} s, RSS {:.0} MiB",
                    t0.elapsed().as_secs_f64(),
                    mib(rss().0)
                );
            }
        })
    });
    let load_s = t0.elapsed().as_secs_f64();
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .expect("checkpoint");
    drop(c);
    metric("sqlite.rows", a.rows);
    metric("sqlite.load_s", format!("{load_s:.1}"));
    metric(
        "sqlite.load_rows_per_s",
        format!("{:.0}", a.rows as f64 / load_s),
    );
    metric("sqlite.load_rss_max_mib", format!("{:.1}", mib(max_rss)));
    metric("sqlite.load_hwm_mib", format!("{:.1}", mib(rss().1)));
    metric("sqlite.disk_mib", format!("{:.1}", mib(disk_usage(dir))));
    metric(
        "sqlite.disk_apparent_mib",
        format!("{:.1}", mib(apparent_size(dir))),
    );
}

/// One pass of `a.reads` random point reads through `get` (ids from `seed`), sampling RSS
/// every 1000 reads into `max_rss`. Returns the wall time and each read's latency.
fn read_pass(
    engine: &str,
    a: &Args,
    seed: u64,
    get: &mut impl FnMut(i64) -> usize,
    max_rss: &mut u64,
) -> (Duration, Vec<Duration>) {
    let mut rng = Rng::new(seed);
    let mut lat = Vec::with_capacity(a.reads as usize);
    let mut sum = 0usize;
    let start = Instant::now();
    for i in 0..a.reads {
        let t0 = Instant::now();
        sum += get(rng.id(a.rows));
        lat.push(t0.elapsed());
        if i % 1000 == 999 {
            *max_rss = (*max_rss).max(rss().0);
        }
        if (i + 1) % (a.reads / 10).max(1) == 0 {
            eprintln!(
                "  {engine} read: {} reads, RSS {:.0} MiB",
                i + 1,
                mib(rss().0)
            );
        }
    }
    std::hint::black_box(sum);
    (start.elapsed(), lat)
}

/// Two passes of random point reads: the first straight after open (what a freshly started
/// process serves: caches cold, ORMDB's row heads still filling in the background), the second
/// right after it (`steady_*`: the process serving reads once it settled). RSS is sampled over
/// both.
fn read_loop(engine: &str, a: &Args, opened_at: Instant, mut get: impl FnMut(i64) -> usize) {
    let open_s = opened_at.elapsed().as_secs_f64();
    let rss_open = rss().0;
    let mut max_rss = rss_open;
    let (wall, mut lat) = read_pass(engine, a, 99, &mut get, &mut max_rss);
    let (steady_wall, mut steady_lat) = read_pass(engine, a, 7, &mut get, &mut max_rss);
    let (rss_end, hwm) = rss();
    metric(&format!("{engine}.open_s"), format!("{open_s:.2}"));
    metric(
        &format!("{engine}.read_rss_after_open_mib"),
        format!("{:.1}", mib(rss_open)),
    );
    metric(
        &format!("{engine}.read_rss_max_mib"),
        format!("{:.1}", mib(max_rss)),
    );
    metric(
        &format!("{engine}.read_rss_end_mib"),
        format!("{:.1}", mib(rss_end)),
    );
    metric(
        &format!("{engine}.read_hwm_mib"),
        format!("{:.1}", mib(hwm)),
    );
    for (pass, wall, lat) in [
        ("", wall, &mut lat),
        ("steady_", steady_wall, &mut steady_lat),
    ] {
        let p = percentiles(lat);
        metric(
            &format!("{engine}.{pass}reads_per_s"),
            format!("{:.0}", a.reads as f64 / wall.as_secs_f64()),
        );
        metric(
            &format!("{engine}.{pass}read_p50_us"),
            format!("{:.2}", p.p50_us),
        );
        metric(
            &format!("{engine}.{pass}read_p95_us"),
            format!("{:.2}", p.p95_us),
        );
        metric(
            &format!("{engine}.{pass}read_p99_us"),
            format!("{:.2}", p.p99_us),
        );
        metric(
            &format!("{engine}.{pass}read_max_us"),
            format!("{:.0}", p.max_us),
        );
    }
}

fn phase_read_ormdb(a: &Args, dir: &Path) {
    let t0 = Instant::now();
    let db = Database::open(dir, ormdb_opts(a).durability(ormdb::Durability::Full)).expect("open");
    let conn = db.connect();
    read_loop("ormdb", a, t0, |id| ormdb_get_one(&conn, id));
}

fn phase_read_sqlite(a: &Args, dir: &Path) {
    let t0 = Instant::now();
    let c = sqlite_open(&dir.join("bench.db"), Mode::Full);
    read_loop("sqlite", a, t0, |id| sqlite_get_one(&c, id));
}

/// The same random reads directly on ORMDB's sled store (see the module docs): `get` is false
/// for the seek ORMDB's read path makes, true for an exact-key point lookup.
fn phase_read_sled(a: &Args, dir: &Path, get: bool) {
    use ormdb::storage::keys;
    use ormdb::storage::sled_kv::SledKv;
    use ormdb::storage::Kv;
    let data = dir.join("data");
    let values = dir.join("values");
    // With the value log (read only: threshold 0), so that a read returns the row's bytes.
    let open = || {
        SledKv::open_with_values(&data, a.cache_mib << 20, Some(&values), 0)
            .expect("open the sled store")
    };
    let t0 = Instant::now();
    let kv = open();
    let (first, _) = kv
        .first_in(&[keys::ROW], &[keys::ROW + 1])
        .expect("seek")
        .expect("the store holds rows");
    let (table, _, _) = keys::parse_row_version_key(&first).expect("a row version key");
    let engine = if get { "sled_get" } else { "sled_seek" };
    if get {
        // The newest version key of every row, found by one scan; the store is then reopened
        // so the reads start from a cold cache like the other phases. The key table (21 bytes
        // a row) is part of this phase's RSS.
        let prefix = keys::table_prefix(table);
        let mut newest: Vec<Vec<u8>> = vec![Vec::new(); a.rows as usize + 1];
        for item in kv.scan(&prefix, &keys::prefix_end(&prefix)) {
            let (k, _) = item.expect("scan");
            if let Some((_, row, _)) = keys::parse_row_version_key(&k) {
                if let Some(slot) = newest.get_mut(row as usize) {
                    if slot.is_empty() {
                        *slot = k.to_vec();
                    }
                }
            }
        }
        drop(kv);
        let kv = open();
        read_loop(engine, a, Instant::now(), |id| {
            kv.get(&newest[id as usize])
                .expect("get")
                .expect("row exists")
                .len()
        });
    } else {
        read_loop(engine, a, t0, |id| {
            let start = keys::row_version_key(table, id, u64::MAX - 1);
            let end = keys::prefix_end(&keys::row_key(table, id));
            kv.first_in(&start, &end)
                .expect("seek")
                .expect("row exists")
                .1
                .len()
        });
    }
}

/// Runs one phase in a child process; returns its metrics (also echoed).
fn run_phase(a: &Args, phase: &str, dir: &Path, out: &mut BTreeMap<String, String>) {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--phase",
        phase,
        "--dir",
        dir.to_str().expect("utf-8 path"),
        "--rows",
        &a.rows.to_string(),
        "--payload",
        &a.payload.to_string(),
        "--batch",
        &a.batch.to_string(),
        "--cache-mib",
        &a.cache_mib.to_string(),
        "--reads",
        &a.reads.to_string(),
    ]);
    if let Some(r) = a.change_retention {
        cmd.args(["--change-retention", &r.to_string()]);
    }
    eprintln!("phase {phase} ...");
    let o = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run phase");
    let stdout = String::from_utf8_lossy(&o.stdout);
    print!("{stdout}");
    assert!(o.status.success(), "phase {phase} failed: {}", o.status);
    for l in stdout.lines() {
        let mut f = l.split_whitespace();
        if let (Some("METRIC"), Some(k), Some(v)) = (f.next(), f.next(), f.next()) {
            out.insert(k.to_string(), v.to_string());
        }
    }
}

fn main() {
    let a = parse_args();
    if let Some(phase) = &a.phase {
        let dir = a.dir.clone().expect("--dir");
        match phase.as_str() {
            "load-ormdb" => phase_load_ormdb(&a, &dir),
            "load-sqlite" => phase_load_sqlite(&a, &dir),
            "read-ormdb" => phase_read_ormdb(&a, &dir),
            "read-sqlite" => phase_read_sqlite(&a, &dir),
            "read-sled-seek" => phase_read_sled(&a, &dir, false),
            "read-sled-get" => phase_read_sled(&a, &dir, true),
            other => panic!("unknown phase {other}"),
        }
        return;
    }

    let root = match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d).expect("create --dir");
            tempfile::Builder::new()
                .prefix("memory-")
                .tempdir_in(d)
                .expect("temp dir")
        }
        None => temp_dir("memory-"),
    };
    eprintln!(
        "memory benchmark: {} rows x {} B payload, batches of {}, ORMDB cache {} MiB, {} reads, in {}",
        a.rows,
        a.payload,
        a.batch,
        a.cache_mib,
        a.reads,
        root.path().display()
    );
    let mut m = BTreeMap::new();
    let engines: Vec<&str> = match a.engine.as_str() {
        "both" => vec!["ormdb", "sqlite"],
        e @ ("ormdb" | "sqlite") => vec![e],
        other => panic!("unknown engine {other}"),
    };
    for e in &engines {
        let dir = root.path().join(e);
        std::fs::create_dir_all(&dir).expect("engine dir");
        run_phase(&a, &format!("load-{e}"), &dir, &mut m);
        // The OS page cache is left as it is (warm from the load) for both engines; it is not
        // part of the process RSS.
        std::thread::sleep(Duration::from_millis(500));
        run_phase(&a, &format!("read-{e}"), &dir, &mut m);
        if a.sled_floor && *e == "ormdb" {
            for p in ["read-sled-seek", "read-sled-get"] {
                std::thread::sleep(Duration::from_millis(500));
                run_phase(&a, p, &dir, &mut m);
            }
        }
        if !a.keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    if a.keep {
        eprintln!("kept {}", root.keep().display());
    }

    let g = |k: &str| m.get(k).cloned().unwrap_or_else(|| "-".into());
    let data_mib = (a.rows as f64) * (a.payload as f64 + 15.0 + 16.0) / (1024.0 * 1024.0);
    println!();
    println!(
        "SUMMARY memory/disk: {} rows, ~{:.0} MiB of row data, ORMDB cache_capacity {} MiB",
        a.rows, data_mib, a.cache_mib
    );
    let mut cols = vec!["ormdb", "sqlite"];
    if a.sled_floor {
        cols.extend(["sled_seek", "sled_get"]);
    }
    print!("{:<28}", "metric");
    for c in &cols {
        print!(" {c:>12}");
    }
    println!();
    for k in [
        "load_s",
        "load_rows_per_s",
        "load_rss_max_mib",
        "load_hwm_mib",
        "disk_mib",
        "disk_apparent_mib",
        "open_s",
        "read_rss_after_open_mib",
        "read_rss_max_mib",
        "read_hwm_mib",
        "reads_per_s",
        "read_p50_us",
        "read_p95_us",
        "read_p99_us",
        "steady_reads_per_s",
        "steady_read_p50_us",
        "steady_read_p95_us",
        "steady_read_p99_us",
    ] {
        print!("{k:<28}");
        for c in &cols {
            print!(" {:>12}", g(&format!("{c}.{k}")));
        }
        println!();
    }
    for k in ["reads_per_s", "steady_reads_per_s"] {
        let f = |e: &str| {
            m.get(&format!("{e}.{k}"))
                .and_then(|v| v.parse::<f64>().ok())
        };
        if let (Some(o), Some(s)) = (f("ormdb"), f("sqlite")) {
            println!("{k} ratio ormdb/sqlite: {:.2}x", o / s);
        }
    }
    if let (Some(o), Some(s)) = (m.get("ormdb.disk_mib"), m.get("sqlite.disk_mib")) {
        if let (Ok(o), Ok(s)) = (o.parse::<f64>(), s.parse::<f64>()) {
            println!("disk ratio ormdb/sqlite: {:.2}x", o / s);
        }
    }
    if let Some(r) = m
        .get("ormdb.read_rss_max_mib")
        .and_then(|v| v.parse::<f64>().ok())
    {
        println!(
            "goal RSS < 256 MiB while serving point reads: {} ({r:.0} MiB)",
            if r < 256.0 { "MET" } else { "MISSED" }
        );
    }
}
