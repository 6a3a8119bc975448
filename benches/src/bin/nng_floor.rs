//! The floor under the server-mode round trip: NNG's own REQ/REP echo on this machine, with no
//! database and no protocol work, so the `net_latency` figures can be read against it.
//!
//! Two implementations of each side, so the cost of each layer shows:
//! - `sync`: NNG's blocking calls (`nng_recvmsg`/`nng_sendmsg`, one context per server thread);
//! - `anng`: anng on a tokio runtime, the way `ormdb serve` and `net::Client` used it before the
//!   server moved to NNG callbacks (one task per context, `Context::receive`/`request`).
//!
//! A third, `uds`, is the kernel's floor under any of them: the same echo over a plain UNIX
//! stream socket (a 4-byte length, then the payload; the server a thread per connection), so
//! NNG's own cost per round trip is the difference.
//!
//! Usage: `nng_floor [--ops N] [--size BYTES] [--sync-only] [--modes sync,anng,uds]
//! [--pin CPU] [--pin-server CPU]`; `--pin` binds this process, its NNG threads and the server
//! child to one CPU (`sched_setaffinity`, like running both under `taskset -c CPU`), to see what
//! a round trip costs without crossing vCPUs; `--pin-server` then moves the server child to
//! another CPU (`--pin 0 --pin-server 1`: every round trip crosses vCPUs, which an unpinned run
//! does only when the scheduler happens to wake the peer on the other one). Environment variables:
//! `NNG_FLOOR_SPIN_US` (bounded spin before a blocking receive) and `NNG_FLOOR_THREADS`
//! (`task,poller`: NNG's thread counts) to try NNG's settings. The server runs in a child process (this binary
//! re-executed with `--serve MODE URL`), as `ormdb serve` does.
//!
//! Output: `RESULT floor/<server>-server/<client>-client/<transport>/<clients> ...` lines in the
//! format of `net_latency`, each followed by a `COST` line: CPU time and context switches per
//! round trip of the server child and of this (client) process, from /proc.

use std::ffi::CString;
use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anng::protocols::reqrep0::{Rep0, Req0};
use ormdb_benches::{arg_num, percentiles, process_cost, temp_dir, tick_us};

const SERVER_THREADS: usize = 16;

/// `NNG_FLOOR_SPIN_US`: before blocking in a receive, poll with NNG's non-blocking receive for
/// up to this long (both sides of the `sync` modes; the server child inherits it).
fn spin() -> Duration {
    Duration::from_micros(
        std::env::var("NNG_FLOOR_SPIN_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    )
}

/// `NNG_FLOOR_THREADS=task,poller`: NNG's task and I/O poller thread counts
/// (`nng_init_set_parameter`, before the first socket), in this process and the server child.
fn init_nng() {
    let Ok(v) = std::env::var("NNG_FLOOR_THREADS") else {
        return;
    };
    let mut it = v
        .split(',')
        .map(|x| x.trim().parse::<u64>().expect("thread count"));
    let (task, poller) = (it.next().expect("task"), it.next().expect("poller"));
    // SAFETY: called before any socket exists, as NNG requires.
    unsafe {
        nng_sys::nng_init_set_parameter(nng_sys::NNG_INIT_NUM_TASK_THREADS as i32, task);
        nng_sys::nng_init_set_parameter(nng_sys::NNG_INIT_MAX_TASK_THREADS as i32, task);
        nng_sys::nng_init_set_parameter(nng_sys::NNG_INIT_NUM_EXPIRE_THREADS as i32, 1);
        nng_sys::nng_init_set_parameter(nng_sys::NNG_INIT_NUM_POLLER_THREADS as i32, poller);
        nng_sys::nng_init_set_parameter(nng_sys::NNG_INIT_MAX_POLLER_THREADS as i32, poller);
    }
}

/// Receives on a context (server) or a socket (client, `ctx` None): non-blocking polls for up to
/// `spin`, then NNG's blocking receive.
unsafe fn recv_spin(
    sock: nng_sys::nng_socket,
    ctx: Option<nng_sys::nng_ctx>,
    spin: Duration,
) -> Result<*mut nng_sys::nng_msg, i32> {
    let mut m: *mut nng_sys::nng_msg = std::ptr::null_mut();
    let call = |m: &mut *mut nng_sys::nng_msg, flags: i32| match ctx {
        Some(c) => nng_sys::nng_ctx_recvmsg(c, m, flags),
        None => nng_sys::nng_recvmsg(sock, m, flags),
    };
    if !spin.is_zero() {
        let until = Instant::now() + spin;
        loop {
            let rv = call(&mut m, nng_sys::NNG_FLAG_NONBLOCK as i32);
            if rv == 0 {
                return Ok(m);
            }
            if rv != nng_sys::NNG_EAGAIN as i32 && rv != nng_sys::NNG_ETIMEDOUT as i32 {
                return Err(rv);
            }
            if Instant::now() >= until {
                break;
            }
            std::hint::spin_loop();
        }
    }
    match call(&mut m, 0) {
        0 => Ok(m),
        rv => Err(rv),
    }
}

fn report(id: &str, wall: Duration, lat: &mut [Duration], cost: Cost) {
    let p = percentiles(lat);
    println!(
        "RESULT {id} n={} ops_per_s={:.0} p50_us={:.1} p99_us={:.1} max_us={:.1}",
        p.n,
        p.n as f64 / wall.as_secs_f64(),
        p.p50_us,
        p.p99_us,
        p.max_us
    );
    let n = p.n.max(1) as f64;
    println!(
        "  COST server_cpu_us={:.1} server_switches={:.2} client_cpu_us={:.1} client_switches={:.2} (per op)",
        cost.server.0 as f64 * tick_us() / n,
        cost.server.1 as f64 / n,
        cost.client.0 as f64 * tick_us() / n,
        cost.client.1 as f64 / n,
    );
}

/// CPU ticks and context switches of the server child and of this process over a case.
struct Cost {
    server: (u64, u64),
    client: (u64, u64),
}

fn measure<T>(server_pid: u32, f: impl FnOnce() -> T) -> (T, Cost) {
    let exited = || EXITED_SWITCHES.load(std::sync::atomic::Ordering::Relaxed);
    let client = || {
        let (t, s) = process_cost(std::process::id());
        (t, s + exited())
    };
    let (s0, c0) = (process_cost(server_pid), client());
    let out = f();
    let (s1, c1) = (process_cost(server_pid), client());
    let d = |a: (u64, u64), b: (u64, u64)| (b.0.saturating_sub(a.0), b.1.saturating_sub(a.1));
    (
        out,
        Cost {
            server: d(s0, s1),
            client: d(c0, c1),
        },
    )
}

/// Context switches of client threads that have exited (their /proc entries are gone).
static EXITED_SWITCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Adds the calling thread's context switches to `EXITED_SWITCHES` (call just before it ends).
fn count_thread_switches() {
    // SAFETY: getrusage fills the zeroed struct for the calling thread.
    let n = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        (ru.ru_nvcsw + ru.ru_nivcsw) as u64
    };
    EXITED_SWITCHES.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
}

/// Binds this process (threads started later and children inherit it) to one CPU.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET stays within it for cpu < 1024.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let rv = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(
            rv,
            0,
            "sched_setaffinity to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The kernel's echo: a thread per connection reads a length-prefixed message and writes it
/// back whole.
fn serve_uds(path: &str) {
    let listener = std::os::unix::net::UnixListener::bind(path).expect("bind");
    println!("listening");
    let _ = std::io::stdout().flush();
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = Vec::new();
            loop {
                let mut head = [0u8; 4];
                if conn.read_exact(&mut head).is_err() {
                    break;
                }
                let len = u32::from_le_bytes(head) as usize;
                buf.resize(4 + len, 0);
                buf[..4].copy_from_slice(&head);
                if conn.read_exact(&mut buf[4..]).is_err() || conn.write_all(&buf).is_err() {
                    break;
                }
            }
            // Stays (parked) after its peer closed, so its context switches still count in
            // /proc when the case is measured.
            loop {
                std::thread::park();
            }
        });
    }
}

fn client_uds(path: &str, clients: usize, ops: u64, size: usize) -> (Duration, Vec<Duration>) {
    let t0 = Instant::now();
    let hs: Vec<_> = (0..clients)
        .map(|_| {
            let path = path.to_string();
            std::thread::spawn(move || {
                use std::io::Read;
                let mut s = std::os::unix::net::UnixStream::connect(&path).expect("connect");
                let mut msg = (size as u32).to_le_bytes().to_vec();
                msg.extend(std::iter::repeat_n(7u8, size));
                let mut back = vec![0u8; msg.len()];
                let mut lat = Vec::new();
                for _ in 0..ops / clients as u64 {
                    let t = Instant::now();
                    s.write_all(&msg).expect("send");
                    s.read_exact(&mut back).expect("recv");
                    lat.push(t.elapsed());
                }
                assert_eq!(back, msg);
                count_thread_switches();
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in hs {
        all.extend(h.join().expect("client thread"));
    }
    (t0.elapsed(), all)
}

fn check(rv: i32, what: &str) {
    assert_eq!(rv, 0, "{what}: nng error {rv}");
}

#[derive(Clone, Copy)]
struct Sock(nng_sys::nng_socket);
// SAFETY: NNG sockets and contexts are thread-safe handles (integers naming NNG objects).
unsafe impl Send for Sock {}
unsafe impl Sync for Sock {}

fn serve_sync(url: &str) {
    let c_url = CString::new(url).expect("url");
    let mut s = nng_sys::nng_socket {
        _bindgen_opaque_blob: 0,
    };
    // SAFETY: plain NNG calls on handles this function owns.
    unsafe {
        check(nng_sys::nng_rep0_open(&mut s), "rep0_open");
        check(
            nng_sys::nng_listen(s, c_url.as_ptr(), std::ptr::null_mut(), 0),
            "listen",
        );
    }
    let sock = Sock(s);
    println!("listening");
    let _ = std::io::stdout().flush();
    let hs: Vec<_> = (0..SERVER_THREADS)
        .map(|_| {
            std::thread::spawn(move || unsafe {
                let sock = sock;
                let mut ctx = nng_sys::nng_ctx {
                    _bindgen_opaque_blob: 0,
                };
                check(nng_sys::nng_ctx_open(&mut ctx, sock.0), "ctx_open");
                let spin = spin();
                loop {
                    let Ok(m) = recv_spin(sock.0, Some(ctx), spin) else {
                        return;
                    };
                    if nng_sys::nng_ctx_sendmsg(ctx, m, 0) != 0 {
                        nng_sys::nng_msg_free(m);
                    }
                }
            })
        })
        .collect();
    for h in hs {
        let _ = h.join();
    }
}

fn serve_anng(url: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let rep = std::sync::Arc::new(Rep0::socket().expect("rep"));
        rep.listen(CString::new(url).expect("url"))
            .await
            .expect("listen");
        println!("listening");
        let _ = std::io::stdout().flush();
        let ws: Vec<_> = (0..SERVER_THREADS)
            .map(|_| {
                let rep = rep.clone();
                tokio::spawn(async move {
                    let mut ctx = rep.context();
                    loop {
                        let Ok((req, responder)) = ctx.receive().await else {
                            return;
                        };
                        let _ = responder.reply(req).await;
                    }
                })
            })
            .collect();
        for w in ws {
            let _ = w.await;
        }
    });
}

fn client_sync(url: &str, clients: usize, ops: u64, size: usize) -> (Duration, Vec<Duration>) {
    let c_url = CString::new(url).expect("url");
    let t0 = Instant::now();
    let hs: Vec<_> = (0..clients)
        .map(|_| {
            let c_url = c_url.clone();
            std::thread::spawn(move || unsafe {
                let spin = spin();
                let mut s = nng_sys::nng_socket {
                    _bindgen_opaque_blob: 0,
                };
                check(nng_sys::nng_req0_open(&mut s), "req0_open");
                check(
                    nng_sys::nng_dial(s, c_url.as_ptr(), std::ptr::null_mut(), 0),
                    "dial",
                );
                let payload = vec![7u8; size];
                let mut lat = Vec::new();
                for _ in 0..ops / clients as u64 {
                    let t = Instant::now();
                    let mut m: *mut nng_sys::nng_msg = std::ptr::null_mut();
                    check(nng_sys::nng_msg_alloc(&mut m, 0), "msg_alloc");
                    check(
                        nng_sys::nng_msg_append(m, payload.as_ptr().cast(), payload.len()),
                        "append",
                    );
                    check(nng_sys::nng_sendmsg(s, m, 0), "sendmsg");
                    let r = recv_spin(s, None, spin).unwrap_or_else(|rv| panic!("recv: {rv}"));
                    assert_eq!(nng_sys::nng_msg_len(r), size);
                    nng_sys::nng_msg_free(r);
                    lat.push(t.elapsed());
                }
                nng_sys::nng_close(s);
                count_thread_switches();
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in hs {
        all.extend(h.join().expect("client thread"));
    }
    (t0.elapsed(), all)
}

fn client_anng(url: &str, clients: usize, ops: u64, size: usize) -> (Duration, Vec<Duration>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut socks = Vec::new();
        for _ in 0..clients {
            let s = Req0::socket().expect("req");
            s.dial(CString::new(url).expect("url")).await.expect("dial");
            socks.push(std::sync::Arc::new(s));
        }
        let t0 = Instant::now();
        let tasks: Vec<_> = socks
            .into_iter()
            .map(|s| {
                tokio::spawn(async move {
                    let payload = vec![7u8; size];
                    let mut lat = Vec::new();
                    for _ in 0..ops / clients as u64 {
                        let t = Instant::now();
                        let mut ctx = s.context();
                        let mut m = anng::Message::with_capacity(size);
                        m.write_all(&payload).expect("write");
                        let reply = ctx
                            .request(m)
                            .await
                            .map_err(|(e, _)| e)
                            .expect("send")
                            .await
                            .expect("recv");
                        assert_eq!(reply.as_slice().len(), size);
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("task"));
        }
        (t0.elapsed(), all)
    })
}

struct Server(Child);

impl Server {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(mode: &str, url: &str, pin_server: Option<usize>) -> Server {
    let pin: Vec<String> = pin_server
        .map(|c| vec!["--pin".to_string(), c.to_string()])
        .unwrap_or_default();
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args(&pin)
        .args(["--serve", mode, url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready");
    assert!(line.contains("listening"));
    Server(child)
}

fn main() {
    let mut ops = 20_000u64;
    let mut size = 160usize;
    let mut only_sync = false;
    let mut modes_arg: Option<Vec<String>> = None;
    let mut pin_server: Option<usize> = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ops" => ops = arg_num(it.next(), "--ops"),
            "--size" => size = arg_num(it.next(), "--size") as usize,
            "--sync-only" => only_sync = true,
            "--modes" => {
                modes_arg = Some(
                    it.next()
                        .expect("--modes sync,anng,uds")
                        .split(',')
                        .map(String::from)
                        .collect(),
                )
            }
            "--pin" => pin_to(arg_num(it.next(), "--pin") as usize),
            "--pin-server" => pin_server = Some(arg_num(it.next(), "--pin-server") as usize),
            "--serve" => {
                let mode = it.next().expect("mode");
                let url = it.next().expect("url");
                init_nng();
                match mode.as_str() {
                    "uds" => serve_uds(&url),
                    "sync" => serve_sync(&url),
                    "anng" => serve_anng(&url),
                    m => panic!("unknown server mode {m}"),
                }
                return;
            }
            other => panic!("unknown argument {other}"),
        }
    }
    init_nng();
    let dir = temp_dir("nng-floor");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let modes: Vec<String> = modes_arg.unwrap_or_else(|| {
        let m: &[&str] = if only_sync {
            &["sync"]
        } else {
            &["sync", "anng", "uds"]
        };
        m.iter().map(|s| s.to_string()).collect()
    });
    let nng_modes: Vec<&str> = modes
        .iter()
        .map(String::as_str)
        .filter(|m| *m != "uds")
        .collect();
    let run = |client_mode: &str, url: &str, clients: usize, ops: u64| match client_mode {
        "sync" => client_sync(url, clients, ops, size),
        "anng" => client_anng(url, clients, ops, size),
        _ => client_uds(url, clients, ops, size),
    };
    let mut cases: Vec<(&str, &str, String, &str)> = Vec::new();
    for server_mode in nng_modes.iter().copied() {
        let ipc = format!("ipc://{}", dir.path().join(server_mode).display());
        let tcp = format!("tcp://127.0.0.1:{}", port + (server_mode == "anng") as u16);
        cases.push((server_mode, "ipc", ipc, ""));
        cases.push((server_mode, "tcp", tcp, ""));
    }
    if modes.iter().any(|m| m == "uds") {
        let path = dir.path().join("uds.sock").display().to_string();
        cases.push(("uds", "uds", path, "uds"));
    }
    for (server_mode, transport, url, only_client) in &cases {
        let server = start(server_mode, url, pin_server);
        let clients_modes: Vec<&str> = if only_client.is_empty() {
            nng_modes.clone()
        } else {
            vec![*only_client]
        };
        for client_mode in clients_modes {
            for clients in [1usize, 16] {
                // Warm-up: connections established, pages touched.
                let _ = run(client_mode, url, 1, 500);
                let ((wall, mut lat), cost) =
                    measure(server.pid(), || run(client_mode, url, clients, ops));
                report(
                    &format!(
                        "floor/{server_mode}-server/{client_mode}-client/{transport}/{clients}"
                    ),
                    wall,
                    &mut lat,
                    cost,
                );
            }
        }
    }
}
