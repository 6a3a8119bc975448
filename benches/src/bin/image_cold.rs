//! Cold start of the decoded table images (branch imgflight): what the first reads of a freshly
//! opened database cost while the images of its tables are built, with 1 and 16 concurrent
//! readers. Each repetition reopens the database (in process) or restarts `ormdb serve`
//! (`ipc`), so every case starts without images.
//!
//! Cases (the dataset is net_latency's: 1,000 users x 10 posts x 10 comments):
//! - `graph`: the 1+10+100 graph fetch (a user, its posts, their comments);
//! - `point`: `SELECT title, score FROM posts WHERE id = ?` (10,000 rows: the image is built by
//!   the ski-rental rule after about 10,000 store reads);
//! - `range`: `SELECT id, body FROM comments WHERE post_id >= ? ORDER BY post_id LIMIT 20` (an
//!   ordered index range over 100,000 rows).
//!
//! Usage: `image_cold [--reps R] [--threads 1,16] [--cases graph,point,range]
//! [--transports in_process,ipc] [--server-bin PATH] [--users N] [--ops-graph N]
//! [--ops-point N] [--ops-range N] [--label L]`
//!
//! Output, per case and repetition: `RESULT <label> <case>/<transport>/<threads> rep=..
//! n=.. ttfr_us=.. (first result of any reader) ttfr_all_us=.. (every reader has one)
//! p50_us=.. p99_us=.. max_us=.. wall_ms=.. cpu_ms=.. (engine process CPU over the case)
//! builds=.. (ormdb_table_image_builds_total) build_cpu_ms=.. builds_skipped=..
//! index_builds=.. stats_scans=.. (planner statistics measured) images=..` (counters a build
//! does not have print `na`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ormdb::net::{BlockingClient, ClientOptions};
use ormdb::{Database, Options, Params, Value};
use ormdb_benches::graph::{blog_fetch, ormdb_blog_load, ormdb_blog_schema, Shape};
use ormdb_benches::{arg_num, percentiles, temp_dir, ServerProcess};

const POINT_SQL: &str = "SELECT title, score FROM posts WHERE id = ?";
const RANGE_SQL: &str =
    "SELECT id, body FROM comments WHERE post_id >= ? ORDER BY post_id LIMIT 20";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Case {
    Graph,
    Point,
    Range,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Graph => "graph",
            Case::Point => "point",
            Case::Range => "range",
        }
    }
}

/// The i-th id a reader asks for: spread over `1..=n` so readers do not repeat one another.
fn id_for(i: u64, n: i64) -> i64 {
    (i.wrapping_mul(2_654_435_761) % n as u64) as i64 + 1
}

/// CPU time of this process (user + system), microseconds.
fn self_cpu_us() -> u64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(ru.ru_utime) + us(ru.ru_stime)
}

/// CPU time of another process, microseconds (from /proc, clock-tick resolution).
fn pid_cpu_us(pid: u32) -> u64 {
    let (ticks, _) = ormdb_benches::process_cost(pid);
    let tick_us = 1e6 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks as f64 * tick_us) as u64
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// One reader's results: per operation, when it finished (since the case started) and how long
/// it took.
type Samples = Vec<(Duration, Duration)>;

struct Outcome {
    per_reader: Vec<Samples>,
    wall: Duration,
    cpu_us: u64,
    before: String,
    after: String,
}

fn print(label: &str, id: &str, rep: usize, o: Outcome) {
    let ttfr = o
        .per_reader
        .iter()
        .filter_map(|s| s.first().map(|f| f.0))
        .min()
        .unwrap_or_default();
    let ttfr_all = o
        .per_reader
        .iter()
        .filter_map(|s| s.first().map(|f| f.0))
        .max()
        .unwrap_or_default();
    let mut lat: Vec<Duration> = o.per_reader.iter().flatten().map(|s| s.1).collect();
    let p = percentiles(&mut lat);
    let delta = |name: &str, scale: f64| -> String {
        match (metric(&o.before, name), metric(&o.after, name)) {
            (Some(a), Some(b)) => format!("{:.1}", (b - a) * scale),
            _ => "na".into(),
        }
    };
    let images = metric(&o.after, "ormdb_table_images").map_or("na".into(), |v| format!("{v}"));
    println!(
        "RESULT {label} {id} rep={rep} n={} ttfr_us={:.0} ttfr_all_us={:.0} p50_us={:.1} p99_us={:.1} max_us={:.0} wall_ms={:.1} cpu_ms={:.1} builds={} build_cpu_ms={} builds_skipped={} index_builds={} stats_scans={} images={images}",
        p.n,
        ttfr.as_secs_f64() * 1e6,
        ttfr_all.as_secs_f64() * 1e6,
        p.p50_us,
        p.p99_us,
        p.max_us,
        o.wall.as_secs_f64() * 1e3,
        o.cpu_us as f64 / 1e3,
        delta("ormdb_table_image_builds_total", 1.0),
        delta("ormdb_table_image_build_seconds_total", 1e3),
        delta("ormdb_table_image_builds_skipped_total", 1.0),
        delta("ormdb_table_image_index_builds_total", 1.0),
        delta("ormdb_planner_stats_measurements_total", 1.0),
    );
}

/// Runs `ops` operations split over `threads` readers, each made by `make(reader)`: a closure
/// that runs operation `i` and returns the rows it got.
fn run_readers<M, F>(threads: usize, ops: u64, make: M) -> (Vec<Samples>, Duration)
where
    M: Fn(usize) -> F + Sync,
    F: FnMut(u64) -> usize,
{
    let barrier = std::sync::Barrier::new(threads + 1);
    let mut t0 = Instant::now();
    let mut out = Vec::new();
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let (make, barrier) = (&make, &barrier);
                sc.spawn(move || {
                    let mut op = make(t);
                    let mut l = Vec::with_capacity((ops / threads as u64) as usize);
                    barrier.wait();
                    let start = Instant::now();
                    for i in 0..ops / threads as u64 {
                        let s = Instant::now();
                        let rows = op(i + t as u64 * 7919);
                        assert!(rows > 0, "an operation returned no rows");
                        let e = Instant::now();
                        l.push((e - start, e - s));
                    }
                    (start, l)
                })
            })
            .collect();
        barrier.wait();
        t0 = Instant::now();
        for h in hs {
            let (start, l) = h.join().expect("reader thread");
            // Re-base each reader's finish times on the common start.
            let off = start.saturating_duration_since(t0);
            out.push(l.into_iter().map(|(d, x)| (d + off, x)).collect());
        }
    });
    (out, t0.elapsed())
}

fn in_process(path: &Path, case: Case, threads: usize, ops: u64, users: i64) -> Outcome {
    let db = Database::open(path, Options::default()).expect("open");
    let before = db.metrics_text();
    let posts = users * 10;
    let cpu0 = self_cpu_us();
    let (per_reader, wall) = run_readers(threads, ops, |_| {
        let conn = db.connect();
        let mut s = db.connect().sql();
        let stmt = match case {
            Case::Graph => None,
            Case::Point => Some(s.prepare(POINT_SQL).expect("prepare")),
            Case::Range => Some(s.prepare(RANGE_SQL).expect("prepare")),
        };
        move |i: u64| match case {
            Case::Graph => {
                let r = conn.fetch(&blog_fetch(&[id_for(i, users)])).expect("fetch");
                r.entities.iter().map(|b| b.ids.len()).sum()
            }
            Case::Point | Case::Range => {
                let id = id_for(i, posts);
                let r = s
                    .execute_prepared(
                        stmt.as_ref().expect("prepared"),
                        &Params::Positional(vec![Value::Integer(id)]),
                    )
                    .expect("select");
                r.rows.len()
            }
        }
    });
    let cpu_us = self_cpu_us() - cpu0;
    let after = db.metrics_text();
    drop(db);
    Outcome {
        per_reader,
        wall,
        cpu_us,
        before,
        after,
    }
}

fn over_ipc(
    bin: &Path,
    path: &Path,
    dir: &Path,
    case: Case,
    threads: usize,
    ops: u64,
    users: i64,
) -> Outcome {
    let (server, url) = start_server(bin, path, dir);
    let pid = server.id();
    let connect = || {
        let opts = ClientOptions {
            pool_size: 1,
            ..Default::default()
        };
        BlockingClient::connect_with(&url, opts).expect("connect")
    };
    let clients: Vec<BlockingClient> = (0..threads).map(|_| connect()).collect();
    let stmts: Vec<u64> = clients
        .iter()
        .map(|c| match case {
            Case::Graph => 0,
            Case::Point => c.prepare(POINT_SQL).expect("prepare").0,
            Case::Range => c.prepare(RANGE_SQL).expect("prepare").0,
        })
        .collect();
    let before = server_metrics(&clients[0]);
    let posts = users * 10;
    let cpu0 = pid_cpu_us(pid);
    let (per_reader, wall) = run_readers(threads, ops, |t| {
        let (c, stmt) = (&clients[t], stmts[t]);
        move |i: u64| match case {
            Case::Graph => {
                let reply = c
                    .fetch_archived(&blog_fetch(&[id_for(i, users)]))
                    .expect("fetch");
                match reply.body() {
                    ormdb::ir::protocol::ArchivedBody::FetchResult(g) => {
                        g.entities.iter().map(|b| b.ids.len()).sum()
                    }
                    _ => panic!("not a fetch result"),
                }
            }
            Case::Point | Case::Range => {
                let id = id_for(i, posts);
                c.execute_prepared(0, stmt, Params::Positional(vec![Value::Integer(id)]))
                    .expect("select")
                    .rows
                    .len()
            }
        }
    });
    let cpu_us = pid_cpu_us(pid) - cpu0;
    let after = server_metrics(&clients[0]);
    drop(clients);
    drop(server);
    Outcome {
        per_reader,
        wall,
        cpu_us,
        before,
        after,
    }
}

fn server_metrics(c: &BlockingClient) -> String {
    match c
        .request(ormdb::ir::protocol::Body::Metrics)
        .and_then(|r| r.to_owned_body())
        .expect("metrics")
    {
        ormdb::ir::protocol::Body::MetricsText(t) => t,
        _ => panic!("not a metrics reply"),
    }
}

fn start_server(bin: &Path, db: &Path, dir: &Path) -> (ServerProcess, String) {
    let sock = dir.join("req.sock");
    let _ = std::fs::remove_file(&sock);
    let ipc = format!("ipc://{}", sock.display());
    let server = ServerProcess::start(bin, db, &["--listen".to_string(), ipc.clone()]);
    (server, ipc)
}

fn list(v: Option<String>, what: &str) -> Vec<String> {
    v.unwrap_or_else(|| panic!("{what} needs a list"))
        .split(',')
        .map(String::from)
        .collect()
}

fn main() {
    let mut reps = 3usize;
    let mut threads = vec![1usize, 16];
    let mut cases = vec![Case::Graph, Case::Point, Case::Range];
    let mut transports = vec!["in_process".to_string()];
    let mut server_bin: Option<PathBuf> = None;
    let mut users = 1000i64;
    let (mut ops_graph, mut ops_point, mut ops_range) = (4000u64, 24_000u64, 12_000u64);
    let mut label = "run".to_string();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--reps" => reps = arg_num(it.next(), "--reps") as usize,
            "--users" => users = arg_num(it.next(), "--users") as i64,
            "--ops-graph" => ops_graph = arg_num(it.next(), "--ops-graph"),
            "--ops-point" => ops_point = arg_num(it.next(), "--ops-point"),
            "--ops-range" => ops_range = arg_num(it.next(), "--ops-range"),
            "--server-bin" => server_bin = it.next().map(PathBuf::from),
            "--label" => label = it.next().expect("--label needs a name"),
            "--threads" => {
                threads = list(it.next(), "--threads")
                    .iter()
                    .map(|t| arg_num(Some(t.clone()), "--threads") as usize)
                    .collect()
            }
            "--transports" => transports = list(it.next(), "--transports"),
            "--cases" => {
                cases = list(it.next(), "--cases")
                    .iter()
                    .map(|c| match c.as_str() {
                        "graph" => Case::Graph,
                        "point" => Case::Point,
                        "range" => Case::Range,
                        other => panic!("unknown case {other}"),
                    })
                    .collect()
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let shape = Shape {
        users,
        posts_per: 10,
        comments_per: 10,
    };
    let dir = temp_dir("imgcold");
    let db_path = dir.path().join("db");
    {
        let db = Database::open(&db_path, Options::default()).expect("open");
        ormdb_blog_schema(&db);
        ormdb_blog_load(&db, shape, 100);
    }
    let bin: PathBuf = server_bin.unwrap_or_else(|| {
        std::env::current_exe()
            .expect("exe")
            .parent()
            .expect("dir")
            .join("ormdb")
    });
    for rep in 0..reps {
        for transport in &transports {
            for &case in &cases {
                let ops = match case {
                    Case::Graph => ops_graph,
                    Case::Point => ops_point,
                    Case::Range => ops_range,
                };
                for &t in &threads {
                    let o = match transport.as_str() {
                        "in_process" => in_process(&db_path, case, t, ops, users),
                        "ipc" => over_ipc(&bin, &db_path, dir.path(), case, t, ops, users),
                        other => panic!("unknown transport {other}"),
                    };
                    print(&label, &format!("{}/{transport}/{t}", case.name()), rep, o);
                }
            }
        }
    }
}
