//! Server mode figures (issue 7): round-trip latency of a point select and of a 1+10+100 graph
//! fetch over ipc:// and tcp:// loopback against the same operations in process, with 1 and 16
//! concurrent clients, through the async `Client` and the `BlockingClient`; change-stream delivery latency (commit acknowledged to event received)
//! and events per second; server memory per idle session and per idle subscriber.
//!
//! Usage: `net_latency [--ops N] [--cases in_process,ipc,tcp,changes,memory,change_rate,change_rate_embedded]
//! [--server-bin PATH] [--rate COMMITS_PER_S] [--rate-secs S] [--rate-writers N]
//! [--durability full|normal] [--workers N] [--threads N] [--nng-threads T,P]` (the last four
//! are passed to `ormdb serve`)
//! (`change_rate` is not in the default set: it offers `--rate` commits/s, 10,000 by default,
//! from `--rate-writers` network clients; nor is `change_rate_embedded`: the same rate from
//! writer threads committing in this process, which serves the database itself
//! (`ormdb::net::Server`), to subscribers in child processes over `--sub-transports ipc,tcp`;
//! `--durability` applies to both). It starts `ormdb serve` from the same target directory
//! (build it first: `cargo build --release -p ormdb --features cli`).
//!
//! Output: `RESULT <id> n=.. ops_per_s=.. p50_us=.. p99_us=.. max_us=..` lines, then memory lines.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ormdb::net::{BlockingClient, ChangeStream, Client, ClientOptions, StreamEvent};
use ormdb::{Database, Options, Params, Value};
use ormdb_benches::graph::{blog_fetch, ormdb_blog_load, ormdb_blog_schema, Shape};
use ormdb_benches::{arg_num, percentiles, process_cost, temp_dir, ServerProcess};

const SHAPE: Shape = Shape {
    users: 1000,
    posts_per: 10,
    comments_per: 10,
};
const POINT_SQL: &str = "SELECT name, email FROM users WHERE id = ?";

static SERVER_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Server and client CPU and context switches over a case, per operation: unlike the wall
/// times, these hardly depend on how busy the machine is.
struct Cost {
    server: (u64, u64),
    client: (u64, u64),
}

impl Cost {
    fn start() -> Cost {
        Cost {
            server: process_cost(SERVER_PID.load(std::sync::atomic::Ordering::Relaxed)),
            client: process_cost(std::process::id()),
        }
    }

    fn print(&self, n: usize) {
        let tick_us = 1e6 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let (s, c) = (
            process_cost(SERVER_PID.load(std::sync::atomic::Ordering::Relaxed)),
            process_cost(std::process::id()),
        );
        let n = n.max(1) as f64;
        println!(
            "  COST server_cpu_us={:.1} server_switches={:.2} client_cpu_us={:.1} client_switches={:.2} (per op)",
            (s.0 - self.server.0) as f64 * tick_us / n,
            s.1.saturating_sub(self.server.1) as f64 / n,
            (c.0 - self.client.0) as f64 * tick_us / n,
            c.1.saturating_sub(self.client.1) as f64 / n,
        );
    }
}

fn report(id: &str, wall: Duration, lat: &mut [Duration]) {
    let p = percentiles(lat);
    println!(
        "RESULT {id} n={} ops_per_s={:.0} p50_us={:.1} p99_us={:.1} max_us={:.1}",
        p.n,
        p.n as f64 / wall.as_secs_f64(),
        p.p50_us,
        p.p99_us,
        p.max_us
    );
}

fn id_for(i: u64) -> i64 {
    (i.wrapping_mul(2_654_435_761) % SHAPE.users as u64) as i64 + 1
}

/// Graph fetches run before a case is measured (unreported).
const GRAPH_WARMUP: u64 = 2000;

fn warm_graph_fetch(mut fetch: impl FnMut(&ormdb::ir::GraphFetch) -> ormdb::Result<()>) {
    for i in 0..GRAPH_WARMUP {
        fetch(&blog_fetch(&[id_for(i)])).expect("warm-up fetch");
    }
}

fn in_process(path: &Path, ops: u64) {
    let db = Database::open(path, Options::default()).expect("open");
    let mut s = db.connect().sql();
    let stmt = s.prepare(POINT_SQL).expect("prepare");
    // Warm-up, as the remote cases get: the first graph fetches read from the store until the
    // table images are built, so a cold first case would make the in-process side look slow.
    warm_graph_fetch(|f| db.connect().fetch(f).map(|_| ()));
    for threads in [1usize, 16] {
        let t0 = Instant::now();
        let mut lat = Vec::new();
        std::thread::scope(|sc| {
            let hs: Vec<_> = (0..threads)
                .map(|t| {
                    let db = db.clone();
                    let stmt = stmt.clone();
                    sc.spawn(move || {
                        let mut s = db.connect().sql();
                        let mut l = Vec::new();
                        for i in 0..ops / threads as u64 {
                            let id = id_for(i + t as u64 * 7919);
                            let t = Instant::now();
                            let r = s
                                .execute_prepared(
                                    &stmt,
                                    &Params::Positional(vec![Value::Integer(id)]),
                                )
                                .expect("select");
                            assert_eq!(r.rows.len(), 1);
                            l.push(t.elapsed());
                        }
                        l
                    })
                })
                .collect();
            for h in hs {
                lat.extend(h.join().expect("thread"));
            }
        });
        report(
            &format!("point_select/in_process/{threads}"),
            t0.elapsed(),
            &mut lat,
        );
        let t0 = Instant::now();
        let mut lat = Vec::new();
        std::thread::scope(|sc| {
            let hs: Vec<_> = (0..threads)
                .map(|t| {
                    let db = db.clone();
                    sc.spawn(move || {
                        let conn = db.connect();
                        let mut l = Vec::new();
                        for i in 0..(ops / 10) / threads as u64 {
                            let f = blog_fetch(&[id_for(i + t as u64 * 7919)]);
                            let t = Instant::now();
                            let r = conn.fetch(&f).expect("fetch");
                            assert_eq!(r.entities.iter().map(|b| b.ids.len()).sum::<usize>(), 111);
                            l.push(t.elapsed());
                        }
                        l
                    })
                })
                .collect();
            for h in hs {
                lat.extend(h.join().expect("thread"));
            }
        });
        report(
            &format!("graph_fetch_1_10_100/in_process/{threads}"),
            t0.elapsed(),
            &mut lat,
        );
    }
}

async fn remote(url: &str, transport: &str, ops: u64) {
    for clients in [1usize, 16] {
        let mut cs = Vec::new();
        for _ in 0..clients {
            let opts = ClientOptions {
                pool_size: 1,
                ..Default::default()
            };
            cs.push(Client::connect_with(url, opts).await.expect("connect"));
        }
        let (stmt, _) = cs[0].prepare(POINT_SQL).await.expect("prepare");
        // Warm-up.
        for i in 0..200 {
            cs[0]
                .execute_prepared(0, stmt, Params::Positional(vec![Value::Integer(id_for(i))]))
                .await
                .expect("select");
        }
        for i in 0..GRAPH_WARMUP {
            cs[0]
                .fetch_archived(&blog_fetch(&[id_for(i)]))
                .await
                .expect("fetch");
        }
        let cost = Cost::start();
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for (t, c) in cs.iter().enumerate() {
            let c = c.clone();
            let n = ops / clients as u64;
            tasks.push(tokio::spawn(async move {
                let mut l = Vec::new();
                for i in 0..n {
                    let id = id_for(i + t as u64 * 7919);
                    let s = Instant::now();
                    let r = c
                        .execute_prepared(0, stmt, Params::Positional(vec![Value::Integer(id)]))
                        .await
                        .expect("select");
                    assert_eq!(r.rows.len(), 1);
                    l.push(s.elapsed());
                }
                l
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.expect("task"));
        }
        report(
            &format!("point_select/{transport}/{clients}"),
            t0.elapsed(),
            &mut lat,
        );
        cost.print(lat.len());

        let cost = Cost::start();
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for (t, c) in cs.iter().enumerate() {
            let c = c.clone();
            let n = (ops / 10) / clients as u64;
            tasks.push(tokio::spawn(async move {
                let mut l = Vec::new();
                for i in 0..n {
                    let f = blog_fetch(&[id_for(i + t as u64 * 7919)]);
                    let s = Instant::now();
                    let reply = c.fetch_archived(&f).await.expect("fetch");
                    match reply.body() {
                        ormdb::ir::protocol::ArchivedBody::FetchResult(g) => {
                            let rows: usize = g.entities.iter().map(|b| b.ids.len()).sum();
                            assert_eq!(rows, 111);
                        }
                        _ => panic!("not a fetch result"),
                    }
                    l.push(s.elapsed());
                }
                l
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.expect("task"));
        }
        report(
            &format!("graph_fetch_1_10_100/{transport}/{clients}"),
            t0.elapsed(),
            &mut lat,
        );
        cost.print(lat.len());
    }
}

/// The same operations through `BlockingClient` (the client `net::connect` and the Python
/// binding's SQL use): each client is a thread that sends and receives on itself.
fn remote_blocking(url: &str, transport: &str, ops: u64) {
    for clients in [1usize, 16] {
        let cs: Vec<BlockingClient> = (0..clients)
            .map(|_| {
                let opts = ClientOptions {
                    pool_size: 1,
                    ..Default::default()
                };
                BlockingClient::connect_with(url, opts).expect("connect")
            })
            .collect();
        let (stmt, _) = cs[0].prepare(POINT_SQL).expect("prepare");
        for i in 0..200 {
            cs[0]
                .execute_prepared(0, stmt, Params::Positional(vec![Value::Integer(id_for(i))]))
                .expect("select");
        }
        warm_graph_fetch(|f| cs[0].fetch_archived(f).map(|_| ()));
        let run = |fetch: bool| {
            let cost = Cost::start();
            let t0 = Instant::now();
            let mut lat = Vec::new();
            std::thread::scope(|sc| {
                let hs: Vec<_> = cs
                    .iter()
                    .enumerate()
                    .map(|(t, c)| {
                        sc.spawn(move || {
                            let n = if fetch { ops / 10 } else { ops } / clients as u64;
                            let mut l = Vec::new();
                            for i in 0..n {
                                let id = id_for(i + t as u64 * 7919);
                                if fetch {
                                    let f = blog_fetch(&[id]);
                                    let s = Instant::now();
                                    let reply = c.fetch_archived(&f).expect("fetch");
                                    match reply.body() {
                                        ormdb::ir::protocol::ArchivedBody::FetchResult(g) => {
                                            let rows: usize =
                                                g.entities.iter().map(|b| b.ids.len()).sum();
                                            assert_eq!(rows, 111);
                                        }
                                        _ => panic!("not a fetch result"),
                                    }
                                    l.push(s.elapsed());
                                } else {
                                    let s = Instant::now();
                                    let r = c
                                        .execute_prepared(
                                            0,
                                            stmt,
                                            Params::Positional(vec![Value::Integer(id)]),
                                        )
                                        .expect("select");
                                    assert_eq!(r.rows.len(), 1);
                                    l.push(s.elapsed());
                                }
                            }
                            l
                        })
                    })
                    .collect();
                for h in hs {
                    lat.extend(h.join().expect("client thread"));
                }
            });
            (t0.elapsed(), lat, cost)
        };
        // Each COST line follows its RESULT line, as in the other cases.
        let (wall, mut lat, cost) = run(false);
        report(
            &format!("point_select/{transport}-blocking/{clients}"),
            wall,
            &mut lat,
        );
        cost.print(lat.len());
        let (wall, mut lat, cost) = run(true);
        report(
            &format!("graph_fetch_1_10_100/{transport}-blocking/{clients}"),
            wall,
            &mut lat,
        );
        cost.print(lat.len());
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Writers commit rows carrying the time they sent the insert; the subscriber subtracts it from
/// the time the event arrived (so the figure includes the commit itself).
async fn change_delivery(url: &str, writers: usize, commits: u64) {
    let c = Client::connect(url).await.expect("connect");
    c.sql(
        "CREATE TABLE IF NOT EXISTS ticks (id INTEGER PRIMARY KEY, at INTEGER NOT NULL)",
        Params::None,
    )
    .await
    .expect("ddl");
    let mut stream = ChangeStream::open(&c, &["ticks"], None)
        .await
        .expect("stream");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let c = Client::connect(url).await.expect("connect");
        let n = commits / writers as u64;
        tasks.push(tokio::spawn(async move {
            for _ in 0..n {
                c.sql(
                    "INSERT INTO ticks (at) VALUES (?)",
                    Params::Positional(vec![Value::Integer(now_ns())]),
                )
                .await
                .expect("insert");
            }
        }));
    }
    let total = (commits / writers as u64) * writers as u64;
    let mut lat = Vec::new();
    let mut lagged = 0;
    while (lat.len() as u64) < total {
        match stream
            .next_timeout(Duration::from_secs(10))
            .await
            .expect("stream")
        {
            Some(StreamEvent::Change(ev)) => {
                let arrived = now_ns();
                for ch in &ev.changes {
                    if let Some(Value::Integer(at)) = ch.values.get(1) {
                        lat.push(Duration::from_nanos((arrived - at).max(0) as u64));
                    }
                }
            }
            Some(StreamEvent::Lagged { .. }) => lagged += 1,
            None => panic!("change stream stalled at {} of {total}", lat.len()),
        }
    }
    let wall = start.elapsed();
    for t in tasks {
        t.await.expect("writer");
    }
    report(
        &format!("change_delivery/{}/{writers}_writers", transport_of(url)),
        wall,
        &mut lat,
    );
    println!("  lag notices: {lagged}");
}

/// Change delivery at a fixed offered rate: `writers` threads (each a `BlockingClient`) send
/// autocommit inserts on a schedule that adds up to `rate` commits/s for `secs` seconds, whatever
/// the latency (open loop: a writer that falls behind sends at once and the achieved rate shows
/// it); one `ChangeStream` subscriber takes the events. Reported: the achieved commit rate, the
/// delivery latency from the moment the insert was sent to the event's arrival (so it includes
/// the commit), the writers' commit round trip, and lag notices.
fn change_rate(rt: &tokio::runtime::Runtime, url: &str, rate: u64, secs: f64, writers: usize) {
    let c = rt.block_on(Client::connect(url)).expect("connect");
    rt.block_on(c.sql(
        "CREATE TABLE IF NOT EXISTS rate_ticks (id INTEGER PRIMARY KEY, at INTEGER NOT NULL)",
        Params::None,
    ))
    .expect("ddl");
    let mut stream = rt
        .block_on(ChangeStream::open(&c, &["rate_ticks"], None))
        .expect("stream");
    let per_writer = ((rate as f64 * secs) as u64 / writers as u64).max(1);
    let total = per_writer * writers as u64;
    let interval = Duration::from_secs_f64(writers as f64 / rate as f64);
    let clients: Vec<BlockingClient> = (0..writers)
        .map(|_| {
            let opts = ClientOptions {
                pool_size: 1,
                ..Default::default()
            };
            BlockingClient::connect_with(url, opts).expect("connect")
        })
        .collect();
    let (stmt, _) = clients[0]
        .prepare("INSERT INTO rate_ticks (at) VALUES (?)")
        .expect("prepare");
    let cost = Cost::start();
    let t0 = Instant::now() + Duration::from_millis(50);
    let (lat, lagged, results) = std::thread::scope(|sc| {
        let hs: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(w, c)| {
                sc.spawn(move || {
                    let offset = interval.mul_f64(w as f64 / writers as f64);
                    let mut commit = Vec::with_capacity(per_writer as usize);
                    let mut late = 0u64;
                    for i in 0..per_writer {
                        pace(t0 + offset + interval.mul_f64(i as f64), &mut late);
                        let s = Instant::now();
                        c.execute_prepared(
                            0,
                            stmt,
                            Params::Positional(vec![Value::Integer(now_ns())]),
                        )
                        .expect("insert");
                        commit.push((s.saturating_duration_since(t0), s.elapsed()));
                    }
                    (commit, late, Instant::now())
                })
            })
            .collect();
        let mut lat = Vec::with_capacity(total as usize);
        let mut lagged = 0;
        rt.block_on(async {
            while (lat.len() as u64) < total {
                match stream
                    .next_timeout(Duration::from_secs(10))
                    .await
                    .expect("stream")
                {
                    Some(StreamEvent::Change(ev)) => {
                        let arrived = now_ns();
                        for ch in &ev.changes {
                            if let Some(Value::Integer(at)) = ch.values.get(1) {
                                lat.push(Duration::from_nanos((arrived - at).max(0) as u64));
                            }
                        }
                    }
                    Some(StreamEvent::Lagged { .. }) => lagged += 1,
                    None => panic!("change stream stalled at {} of {total}", lat.len()),
                }
            }
        });
        let results: Vec<_> = hs.into_iter().map(|h| h.join().expect("writer")).collect();
        (lat, lagged, results)
    });
    let end = results.iter().map(|r| r.2).max().unwrap_or(t0);
    let late: u64 = results.iter().map(|r| r.1).sum();
    let mut commit = commit_times(results.into_iter().flat_map(|r| r.0).collect());
    let achieved = total as f64 / end.saturating_duration_since(t0).as_secs_f64();
    let mut lat = lat;
    let p = percentiles(&mut lat);
    let cp = percentiles(&mut commit);
    let st = stream.stats();
    println!(
        "RESULT change_rate/{}/{writers}_writers offered_per_s={rate} achieved_per_s={achieved:.0} n={} p50_us={:.1} p95_us={:.1} p99_us={:.1} max_us={:.1} commit_p50_us={:.1} commit_p99_us={:.1} late_sends={late} lag_notices={lagged} messages={} overflows={} gaps={} idle_resyncs={}",
        transport_of(url),
        p.n,
        p.p50_us,
        p.p95_us,
        p.p99_us,
        p.max_us,
        cp.p50_us,
        cp.p99_us,
        st.messages,
        st.overflows,
        st.gaps,
        st.idle_resyncs,
    );
    cost.print(total as usize);
}

/// The commits' round trips from `(sent, round trip)` pairs (sent = time after the run's start).
/// With `ORMDB_BENCH_TRACE=FILE` they are also written there, one `sent_us round_trip_us` line
/// per commit in send order, to tell a tail made of stalls (clustered in time) from one made of
/// queueing (spread over the run).
fn commit_times(mut timed: Vec<(Duration, Duration)>) -> Vec<Duration> {
    if let Ok(path) = std::env::var("ORMDB_BENCH_TRACE") {
        timed.sort();
        let text: String = timed
            .iter()
            .map(|(at, d)| format!("{} {}\n", at.as_micros(), d.as_micros()))
            .collect();
        std::fs::write(&path, text).expect("writing ORMDB_BENCH_TRACE");
    }
    timed.into_iter().map(|(_, d)| d).collect()
}

/// The subscriber side of `change_rate_embedded`, run as a child process of the benchmark
/// (`net_latency --subscribe URL --expect N`): follows `rate_ticks` with a `ChangeStream` over
/// `URL`, prints `READY` once subscribed, then one `SUB` line with the delivery latency of `N`
/// changes (commit sent -> event received, across processes through the shared wall clock),
/// the events per second while they arrived, its lag notices and what caused them, and its own
/// CPU and context switches per change.
fn subscriber_child(url: &str, expect: u64, arrivals: Option<&str>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let c = Client::connect(url).await.expect("connect");
        let mut stream = ChangeStream::open(&c, &["rate_ticks"], None)
            .await
            .expect("stream");
        println!("READY");
        let _ = std::io::Write::flush(&mut std::io::stdout());
        let cost0 = process_cost(std::process::id());
        let mut lat = Vec::with_capacity(expect as usize);
        let mut arrived_at: Vec<(i64, i64)> = Vec::with_capacity(expect as usize);
        let (mut first, mut last) = (None, Instant::now());
        while (lat.len() as u64) < expect {
            match stream
                .next_timeout(Duration::from_secs(20))
                .await
                .expect("stream")
            {
                Some(StreamEvent::Change(ev)) => {
                    let arrived = now_ns();
                    last = Instant::now();
                    first.get_or_insert(last);
                    for ch in &ev.changes {
                        if let Some(Value::Integer(at)) = ch.values.get(1) {
                            lat.push(Duration::from_nanos((arrived - at).max(0) as u64));
                            arrived_at.push((ch.row_id, arrived));
                        }
                    }
                }
                Some(StreamEvent::Lagged { .. }) => {}
                None => panic!("change stream stalled at {} of {expect}", lat.len()),
            }
        }
        let cost = process_cost(std::process::id());
        let tick_us = 1e6 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let span = last.duration_since(first.unwrap_or(last)).as_secs_f64();
        if let Some(path) = arrivals {
            let text: String = arrived_at.iter().map(|(id, t)| format!("{id} {t}\n")).collect();
            std::fs::write(path, text).expect("write arrivals");
        }
        let st = stream.stats();
        let p = percentiles(&mut lat);
        println!(
            "SUB n={} p50_us={:.1} p95_us={:.1} p99_us={:.1} max_us={:.1} events_per_s={:.0} messages={} lag_notices={} overflows={} gaps={} idle_resyncs={} cpu_us={:.1} switches={:.2}",
            p.n,
            p.p50_us,
            p.p95_us,
            p.p99_us,
            p.max_us,
            p.n as f64 / span.max(1e-9),
            st.messages,
            st.lag_notices,
            st.overflows,
            st.gaps,
            st.idle_resyncs,
            (cost.0 - cost0.0) as f64 * tick_us / p.n.max(1) as f64,
            cost.1.saturating_sub(cost0.1) as f64 / p.n.max(1) as f64,
        );
    });
}

/// Change delivery where the commit rate is reachable: the topology of an application that
/// embeds the database and also serves it. This process opens the database, starts
/// `ormdb::net::Server` on it, and its `writers` threads commit in process (prepared autocommit
/// insert, open loop at `rate` commits/s for `secs` s); one subscriber per URL of `sub_urls`
/// runs in a child process (`--subscribe`) and follows the changes over the network.
/// Reported: commits/s reached, the writers' commit latency, and per subscriber the delivery
/// latency (insert sent -> event received in the other process), events/s, lag notices (and
/// their cause), with the CPU per commit of this process (engine, server, publisher, writers)
/// and of the subscriber.
fn change_rate_embedded(
    dir: &Path,
    durability: ormdb::Durability,
    rate: u64,
    secs: f64,
    writers: usize,
    transports: &[String],
) {
    let db_path = dir.join(format!("embedded-{}", now_ns()));
    let db = Database::open(&db_path, Options::default().durability(durability)).expect("open");
    db.connect()
        .sql()
        .execute_batch("CREATE TABLE rate_ticks (id INTEGER PRIMARY KEY, at INTEGER NOT NULL)")
        .expect("ddl");
    let ipc = format!("ipc://{}", db_path.with_extension("req.sock").display());
    let tcp = format!("tcp://127.0.0.1:{}", free_port());
    let mut cfg = ormdb::net::ServeConfig::new(&db_path, vec![ipc.clone(), tcp.clone()]);
    cfg.change_listen = vec![
        format!("ipc://{}", db_path.with_extension("ch.sock").display()),
        format!("tcp://127.0.0.1:{}", free_port()),
    ];
    let server = ormdb::net::Server::start(db.clone(), &cfg).expect("start the embedded server");
    let per_writer = ((rate as f64 * secs) as u64 / writers as u64).max(1);
    let total = per_writer * writers as u64;
    let exe = std::env::current_exe().expect("exe");
    let mut subs: Vec<(String, Child, BufReader<std::process::ChildStdout>)> = transports
        .iter()
        .map(|t| {
            let url = match t.as_str() {
                "ipc" => ipc.clone(),
                "tcp" => tcp.clone(),
                other => panic!("--sub-transports: unknown transport {other}"),
            };
            let arrivals = db_path.with_extension(format!("{t}.arrivals"));
            let mut child = Command::new(&exe)
                .args(["--subscribe", &url, "--expect", &total.to_string()])
                .arg("--arrivals")
                .arg(&arrivals)
                .stdout(Stdio::piped())
                .spawn()
                .expect("start the subscriber process");
            let mut out = BufReader::new(child.stdout.take().expect("stdout"));
            let mut line = String::new();
            out.read_line(&mut line).expect("subscriber ready");
            assert!(line.starts_with("READY"), "subscriber said {line:?}");
            (t.clone(), child, out)
        })
        .collect();
    let interval = Duration::from_secs_f64(writers as f64 / rate as f64);
    let me = std::process::id();
    let cost0 = process_cost(me);
    let t0 = Instant::now() + Duration::from_millis(50);
    type WriterResult = (Vec<(Duration, Duration)>, Vec<(i64, i64)>, u64, Instant);
    let results: Vec<WriterResult> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..writers)
            .map(|w| {
                let db = db.clone();
                sc.spawn(move || {
                    let mut s = db.connect().sql();
                    let stmt = s
                        .prepare("INSERT INTO rate_ticks (at) VALUES (?)")
                        .expect("prepare");
                    let offset = interval.mul_f64(w as f64 / writers as f64);
                    let mut commit = Vec::with_capacity(per_writer as usize);
                    let mut acked = Vec::with_capacity(per_writer as usize);
                    let mut late = 0u64;
                    for i in 0..per_writer {
                        pace(t0 + offset + interval.mul_f64(i as f64), &mut late);
                        let started = Instant::now();
                        s.execute_prepared(
                            &stmt,
                            &Params::Positional(vec![Value::Integer(now_ns())]),
                        )
                        .expect("insert");
                        acked.push((s.last_insert_rowid(), now_ns()));
                        commit.push((started.saturating_duration_since(t0), started.elapsed()));
                    }
                    (commit, acked, late, Instant::now())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("writer")).collect()
    });
    let end = results.iter().map(|r| r.3).max().unwrap_or(t0);
    let cost1 = process_cost(me);
    let late: u64 = results.iter().map(|r| r.2).sum();
    let acked: std::collections::HashMap<i64, i64> =
        results.iter().flat_map(|r| r.1.iter().copied()).collect();
    let mut commit = commit_times(results.into_iter().flat_map(|r| r.0).collect());
    let achieved = total as f64 / end.saturating_duration_since(t0).as_secs_f64();
    let cp = percentiles(&mut commit);
    let tick_us = 1e6 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let label = match durability {
        ormdb::Durability::Full => "full",
        ormdb::Durability::Normal => "normal",
    };
    for (t, child, out) in &mut subs {
        let mut line = String::new();
        out.read_line(&mut line).expect("subscriber result");
        let status = child.wait().expect("subscriber exit");
        assert!(status.success(), "subscriber over {t} failed: {status}");
        let sub = line.trim().strip_prefix("SUB ").unwrap_or(line.trim());
        // Commit acknowledged -> event received: the publisher, NNG and the subscriber alone
        // (an event can arrive before its writer thread runs again to note the ack: 0).
        let arrivals = db_path.with_extension(format!("{t}.arrivals"));
        let mut after_ack: Vec<Duration> = std::fs::read_to_string(&arrivals)
            .expect("arrivals")
            .lines()
            .filter_map(|l| {
                let (id, at) = l.split_once(' ')?;
                let ack = acked.get(&id.parse::<i64>().ok()?)?;
                Some(Duration::from_nanos(
                    (at.parse::<i64>().ok()? - ack).max(0) as u64
                ))
            })
            .collect();
        let ap = percentiles(&mut after_ack);
        println!(
            "RESULT change_rate_embedded/{label}/{t}/{writers}_writers offered_per_s={rate} achieved_per_s={achieved:.0} commit_p50_us={:.1} commit_p99_us={:.1} late_sends={late} {sub} ack_to_event_n={} ack_to_event_p50_us={:.1} ack_to_event_p95_us={:.1} ack_to_event_p99_us={:.1}",
            cp.p50_us, cp.p99_us, ap.n, ap.p50_us, ap.p95_us, ap.p99_us,
        );
    }
    println!(
        "  COST embedding_process_cpu_us={:.1} switches={:.2} (per commit: engine, server, publisher and writers; the subscriber's own is cpu_us above)",
        (cost1.0 - cost0.0) as f64 * tick_us / total as f64,
        cost1.1.saturating_sub(cost0.1) as f64 / total as f64,
    );
    server.shutdown().expect("shutdown");
}

fn transport_of(url: &str) -> &str {
    url.split("://").next().unwrap_or("")
}

fn server_rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The server's glibc heap in use, from its metrics (mallinfo2). The engine allocates through
/// mimalloc, so this is NNG's C side (pipes, queues, messages); RSS covers both.
async fn server_heap(c: &Client) -> u64 {
    let text = c.metrics().await.expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("ormdb_server_heap_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Server memory per idle session, per idle subscriber and per idle client connection: heap in
/// use (and RSS) before and after opening `n` of them, the figure per item being the delta / n.
async fn memory(url: &str, pid: u32) {
    let c = Client::connect(url).await.expect("connect");
    let settle = || tokio::time::sleep(Duration::from_millis(300));
    let line = |what: &str, n: usize, heap: (u64, u64), rss: (u64, u64)| {
        println!(
            "MEMORY {what} heap_bytes_each={} rss_bytes_each={} (heap {} -> {}, RSS {} -> {} over {n})",
            heap.1.saturating_sub(heap.0) / n as u64,
            (rss.1 as i64 - rss.0 as i64) / n as i64,
            heap.0,
            heap.1,
            rss.0,
            rss.1
        )
    };
    let n = 1000;
    // The first round pays one-time costs (table images, the allocator's per-thread pages,
    // grown tables) and is closed again; the second round's delta is what a session costs.
    for round in ["warm-up", "measured"] {
        settle().await;
        let (h0, r0) = (server_heap(&c).await, server_rss(pid));
        let mut sessions = Vec::new();
        for _ in 0..n {
            let s = c.begin().await.expect("begin");
            c.sql_in(s, "SELECT count(*) FROM users", Params::None)
                .await
                .expect("select");
            sessions.push(s);
        }
        settle().await;
        if round == "measured" {
            line(
                "idle_session",
                n,
                (h0, server_heap(&c).await),
                (r0, server_rss(pid)),
            );
        }
        for s in sessions {
            c.rollback(s).await.expect("rollback");
        }
    }
    // Subscribers share one request connection, so the figure is the subscription alone.
    let n = 200;
    settle().await;
    let (h0, r0) = (server_heap(&c).await, server_rss(pid));
    let mut streams = Vec::new();
    for _ in 0..n {
        streams.push(
            ChangeStream::open(&c, &["ticks"], None)
                .await
                .expect("stream"),
        );
    }
    settle().await;
    line(
        "idle_subscriber",
        n,
        (h0, server_heap(&c).await),
        (r0, server_rss(pid)),
    );
    let (h0, r0) = (server_heap(&c).await, server_rss(pid));
    let mut clients = Vec::new();
    for _ in 0..n {
        let opts = ClientOptions {
            pool_size: 1,
            ..Default::default()
        };
        clients.push(Client::connect_with(url, opts).await.expect("connect"));
    }
    settle().await;
    line(
        "idle_client_connection",
        n,
        (h0, server_heap(&c).await),
        (r0, server_rss(pid)),
    );
    drop(streams);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

fn start_server(
    bin: &Path,
    db: &Path,
    dir: &Path,
    extra: &[String],
) -> (ServerProcess, String, String) {
    let tcp = format!("tcp://127.0.0.1:{}", free_port());
    let ipc = format!("ipc://{}", dir.join("req.sock").display());
    let mut args: Vec<String> = vec![
        "--listen".into(),
        tcp.clone(),
        "--listen".into(),
        ipc.clone(),
        "--changes-listen".into(),
        format!("tcp://127.0.0.1:{}", free_port()),
        "--changes-listen".into(),
        format!("ipc://{}", dir.join("ch.sock").display()),
    ];
    args.extend_from_slice(extra);
    (ServerProcess::start(bin, db, &args), tcp, ipc)
}

fn main() {
    let mut ops = 20_000u64;
    let mut cases: Vec<String> = ["in_process", "ipc", "tcp", "changes", "memory"]
        .map(String::from)
        .to_vec();
    let mut server_bin: Option<PathBuf> = None;
    let mut rate = 10_000u64;
    let mut rate_secs = 3u64;
    let mut rate_writers = 32usize;
    let mut server_args: Vec<String> = Vec::new();
    let mut durability = ormdb::Durability::Full;
    let mut sub_transports = vec!["ipc".to_string()];
    let mut subscribe: Option<String> = None;
    let mut expect = 0u64;
    let mut arrivals: Option<String> = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ops" => ops = arg_num(it.next(), "--ops"),
            "--server-bin" => server_bin = it.next().map(PathBuf::from),
            "--rate" => rate = arg_num(it.next(), "--rate"),
            "--rate-secs" => rate_secs = arg_num(it.next(), "--rate-secs"),
            "--rate-writers" => rate_writers = arg_num(it.next(), "--rate-writers") as usize,
            // Passed to `ormdb serve`: full (default) or normal.
            "--durability" => {
                let d = it.next().expect("--durability full|normal");
                durability = match d.as_str() {
                    "full" => ormdb::Durability::Full,
                    "normal" => ormdb::Durability::Normal,
                    other => panic!("--durability {other}: expected full or normal"),
                };
                server_args.push("--durability".into());
                server_args.push(d);
            }
            // change_rate_embedded: one subscriber process per transport listed.
            "--sub-transports" => {
                sub_transports = it
                    .next()
                    .expect("--sub-transports ipc,tcp")
                    .split(',')
                    .map(String::from)
                    .collect()
            }
            // The subscriber child of change_rate_embedded.
            "--subscribe" => subscribe = it.next(),
            "--expect" => expect = arg_num(it.next(), "--expect"),
            "--arrivals" => arrivals = it.next(),
            "--nng-threads" => {
                server_args.push("--nng-threads".into());
                server_args.push(it.next().expect("--nng-threads TASK,POLLER"));
            }
            "--workers" => {
                server_args.push("--workers".into());
                server_args.push(it.next().expect("--workers N"));
            }
            "--threads" => {
                server_args.push("--threads".into());
                server_args.push(it.next().expect("--threads N"));
            }
            "--cases" => {
                cases = it
                    .next()
                    .expect("--cases needs a list")
                    .split(',')
                    .map(String::from)
                    .collect()
            }
            other => panic!("unknown argument {other}"),
        }
    }
    if let Some(url) = subscribe {
        subscriber_child(&url, expect, arrivals.as_deref());
        return;
    }
    let bin: PathBuf = server_bin.unwrap_or_else(|| {
        std::env::current_exe()
            .expect("exe")
            .parent()
            .expect("dir")
            .join("ormdb")
    });
    let dir = temp_dir("net");
    let db_path = dir.path().join("db");
    let on = |c: &str| cases.iter().any(|x| x == c);
    // The change cases write a table of their own; only the others read the blog data.
    if ["in_process", "ipc", "tcp", "memory"].iter().any(|c| on(c)) {
        let db = Database::open(&db_path, Options::default()).expect("open");
        ormdb_blog_schema(&db);
        ormdb_blog_load(&db, SHAPE, 100);
    }
    if on("in_process") {
        in_process(&db_path, ops);
    }
    if on("change_rate_embedded") {
        change_rate_embedded(
            dir.path(),
            durability,
            rate,
            rate_secs as f64,
            rate_writers,
            &sub_transports,
        );
        if cases.iter().all(|c| c == "change_rate_embedded") {
            return;
        }
    }
    let (server, tcp, ipc) = start_server(&bin, &db_path, dir.path(), &server_args);
    SERVER_PID.store(server.id(), std::sync::atomic::Ordering::Relaxed);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        if on("ipc") {
            remote(&ipc, "ipc", ops).await;
            remote_blocking(&ipc, "ipc", ops);
        }
        if on("tcp") {
            remote(&tcp, "tcp", ops).await;
            remote_blocking(&tcp, "tcp", ops);
        }
        if on("changes") {
            change_delivery(&ipc, 1, ops / 4).await;
            change_delivery(&ipc, 16, ops / 2).await;
            change_delivery(&tcp, 16, ops / 2).await;
        }
        if on("memory") {
            memory(&ipc, server.id()).await;
        }
    });
    if on("change_rate") {
        change_rate(&rt, &ipc, rate, rate_secs as f64, rate_writers);
    }
    drop(server);
}

/// Open-loop pacing: sleeps until `due`; a send more than 1 ms behind its schedule counts as
/// late (the writer could not keep the offered rate).
fn pace(due: Instant, late: &mut u64) {
    let now = Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    } else if now - due > Duration::from_millis(1) {
        *late += 1;
    }
}
