//! Graph fetch memory (issue 3): peak RSS of a fetch that its `max_rows` budget refuses, against
//! the same fetch run in full, on a large users -> posts -> comments dataset.
//!
//! Usage: `graph_memory [--users N] [--posts N] [--comments N] [--refuse-at ROWS]
//!                      [--cache-mib MIB] [--dir DIR] [--keep] [--explain]`
//!
//! Defaults: 2,000 users x 10 posts x 40 comments (822,000 rows; 820,000 edges, inside the default
//! budget of 1M rows / 1M edges), refused fetch with `max_rows` 10,000, ORMDB cache 64 MiB,
//! `Durability::Normal` for the load. The fetch is all users with their posts and the posts'
//! comments, every field. After the load (in this process), each measurement runs in a fresh
//! child process: open the database, read a few rows (so the open's own allocations are done),
//! reset the peak-RSS counter (`/proc/self/clear_refs` 5), run the fetch, read `VmHWM`.
//! Phases: `open` (no fetch: the baseline), `refused`, `full`, in that order.
//! `--explain` prints EXPLAIN ANALYZE of the benchmark fetches on the criterion dataset instead.
//!
//! Output: `METRIC graph.<phase>.<name> <value>` lines, then a summary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ormdb::{Budget, Database, GraphFetch, Include, SqlState};
use ormdb_benches::graph::*;
use ormdb_benches::*;

#[derive(Debug, Clone)]
struct Args {
    shape: Shape,
    refuse_at: u64,
    cache_mib: u64,
    dir: Option<PathBuf>,
    keep: bool,
    explain: bool,
    phase: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        shape: Shape {
            users: 2000,
            posts_per: 10,
            comments_per: 40,
        },
        refuse_at: 10_000,
        cache_mib: 64,
        dir: None,
        keep: false,
        explain: false,
        phase: None,
    };
    let mut it = std::env::args().skip(1);
    let num = ormdb_benches::arg_num;
    while let Some(x) = it.next() {
        match x.as_str() {
            "--users" => a.shape.users = num(it.next(), "--users") as i64,
            "--posts" => a.shape.posts_per = num(it.next(), "--posts") as i64,
            "--comments" => a.shape.comments_per = num(it.next(), "--comments") as i64,
            "--refuse-at" => a.refuse_at = num(it.next(), "--refuse-at"),
            "--cache-mib" => a.cache_mib = num(it.next(), "--cache-mib"),
            "--dir" => a.dir = Some(PathBuf::from(it.next().expect("--dir DIR"))),
            "--keep" => a.keep = true,
            "--explain" => a.explain = true,
            "--phase" => a.phase = Some(it.next().expect("--phase NAME")),
            "-h" | "--help" => {
                eprintln!(
                    "usage: graph_memory [--users N] [--posts N] [--comments N] [--refuse-at ROWS] \
                     [--cache-mib MIB] [--dir DIR] [--keep] [--explain]"
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

fn all_users() -> GraphFetch {
    GraphFetch::new("users").include(Include::new("posts").include(Include::new("comments")))
}

fn open(a: &Args, dir: &Path) -> Database {
    Database::open(dir, ormdb_options(Mode::Normal, a.cache_mib << 20)).expect("open")
}

/// Resets VmHWM to the current RSS (Linux >= 4.0).
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM via /proc/self/clear_refs");
}

fn phase(a: &Args, dir: &Path, name: &str) {
    let db = open(a, dir);
    let conn = db.connect();
    // Touch the tables so the open's lazy work is not attributed to the fetch.
    let small = GraphFetch::new("users")
        .limit(2)
        .include(Include::new("posts").include(Include::new("comments")));
    conn.fetch(&small).expect("warm fetch");
    let (rss0, _) = rss();
    reset_peak();
    let t0 = Instant::now();
    let (rows, refused) = match name {
        "open" => (0, false),
        "refused" => {
            let f = all_users().budget(Budget {
                max_rows: a.refuse_at,
                ..Budget::default()
            });
            match conn.fetch(&f) {
                Err(e) if e.state == SqlState::LimitExceeded => {
                    eprintln!("  refused as expected: {e}");
                    (0, true)
                }
                Err(e) => panic!("unexpected error {e}"),
                Ok(r) => panic!("fetch of {} rows was not refused", graph_rows(&r)),
            }
        }
        "full" => {
            let r = conn.fetch(&all_users()).expect("full fetch");
            let n = graph_rows(&r);
            let (rss_held, _) = rss();
            metric(
                &format!("graph.{name}.rss_holding_result_mib"),
                format!("{:.1}", mib(rss_held)),
            );
            drop(r);
            (n, false)
        }
        other => panic!("unknown phase {other}"),
    };
    let secs = t0.elapsed().as_secs_f64();
    let (rss1, hwm) = rss();
    metric(&format!("graph.{name}.rows"), rows);
    metric(&format!("graph.{name}.refused"), refused as u8);
    metric(
        &format!("graph.{name}.time_ms"),
        format!("{:.1}", secs * 1e3),
    );
    metric(
        &format!("graph.{name}.rss_before_mib"),
        format!("{:.1}", mib(rss0)),
    );
    metric(
        &format!("graph.{name}.peak_rss_mib"),
        format!("{:.1}", mib(hwm)),
    );
    metric(
        &format!("graph.{name}.peak_over_before_mib"),
        format!("{:.1}", mib(hwm.saturating_sub(rss0))),
    );
    metric(
        &format!("graph.{name}.rss_after_mib"),
        format!("{:.1}", mib(rss1)),
    );
}

fn explain() {
    let fx = BlogFixture::new(Mode::Full, Shape::BENCH);
    let conn = fx.db.connect();
    for ids in [vec![42], user_ids(1, 100, 100)] {
        let f = blog_fetch(&ids);
        conn.fetch(&f).expect("fetch"); // plan cached
        let e = conn.explain(&f, true).expect("explain");
        println!("ORMDB, {} user(s):\n{}", ids.len(), e.text);
    }
    println!("SQLite batched statements:");
    for l in fx.sqlite.explain() {
        println!("  {l}");
    }
}

fn main() {
    let a = parse_args();
    if a.explain {
        explain();
        return;
    }
    if let (Some(p), Some(dir)) = (&a.phase, &a.dir) {
        phase(&a, dir, p);
        return;
    }
    let tmp;
    let dir = match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d).expect("create dir");
            d.clone()
        }
        None => {
            tmp = temp_dir("ormdb-graph-memory-");
            tmp.path().to_path_buf()
        }
    };
    let s = a.shape;
    eprintln!(
        "loading {} users x {} posts x {} comments ({} rows) into {}",
        s.users,
        s.posts_per,
        s.comments_per,
        s.rows(),
        dir.display()
    );
    let t0 = Instant::now();
    {
        let db = open(&a, &dir);
        ormdb_blog_schema(&db);
        ormdb_blog_load(&db, s, 10);
        db.checkpoint().expect("checkpoint");
    }
    metric("graph.rows", s.rows());
    metric("graph.load_s", format!("{:.1}", t0.elapsed().as_secs_f64()));
    metric("graph.refuse_at", a.refuse_at);
    metric("graph.disk_mib", format!("{:.1}", mib(disk_usage(&dir))));
    let exe = std::env::current_exe().expect("current exe");
    let mut out = String::new();
    for p in ["open", "refused", "full"] {
        let o = Command::new(&exe)
            .args([
                "--phase",
                p,
                "--dir",
                dir.to_str().expect("utf-8 dir"),
                "--cache-mib",
                &a.cache_mib.to_string(),
                "--refuse-at",
                &a.refuse_at.to_string(),
            ])
            .output()
            .expect("run phase");
        eprint!("{}", String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success(), "phase {p} failed");
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        print!("{text}");
        out.push_str(&text);
    }
    let get = |k: &str| -> f64 {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("METRIC graph.{k} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN)
    };
    println!(
        "summary: {} rows; full fetch peak +{:.1} MiB over RSS before ({:.0} ms, {} rows returned); \
         refused at max_rows={} peak +{:.1} MiB ({:.1} ms); no fetch +{:.1} MiB",
        s.rows(),
        get("full.peak_over_before_mib"),
        get("full.time_ms"),
        get("full.rows"),
        a.refuse_at,
        get("refused.peak_over_before_mib"),
        get("refused.time_ms"),
        get("open.peak_over_before_mib"),
    );
    if a.keep {
        eprintln!("kept {}", dir.display());
    }
}
