//! The floor under the server-mode round trip: NNG's own REQ/REP echo on this machine, with no
//! database and no protocol work, so the `net_latency` figures can be read against it.
//!
//! Two implementations of each side, so the cost of each layer shows:
//! - `sync`: NNG's blocking calls (`nng_recvmsg`/`nng_sendmsg`, one context per server thread);
//! - `anng`: anng on a tokio runtime, the way `ormdb serve` and `net::Client` used it before the
//!   server moved to NNG callbacks (one task per context, `Context::receive`/`request`).
//!
//! Usage: `nng_floor [--ops N] [--size BYTES] [--sync-only]`, with the environment variables
//! `NNG_FLOOR_SPIN_US` (bounded spin before a blocking receive) and `NNG_FLOOR_THREADS`
//! (`task,poller`: NNG's thread counts) to try NNG's settings. The server runs in a child process (this binary
//! re-executed with `--serve MODE URL`), as `ormdb serve` does.
//!
//! Output: `RESULT floor/<server>-server/<client>-client/<transport>/<clients> ...` lines in the
//! format of `net_latency`.

use std::ffi::CString;
use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anng::protocols::reqrep0::{Rep0, Req0};
use ormdb_benches::{arg_num, percentiles, temp_dir};

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

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(mode: &str, url: &str) -> Server {
    let mut child = Command::new(std::env::current_exe().expect("exe"))
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
    init_nng();
    let mut ops = 20_000u64;
    let mut size = 160usize;
    let mut only_sync = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ops" => ops = arg_num(it.next(), "--ops"),
            "--size" => size = arg_num(it.next(), "--size") as usize,
            "--sync-only" => only_sync = true,
            "--serve" => {
                let mode = it.next().expect("mode");
                let url = it.next().expect("url");
                match mode.as_str() {
                    "sync" => serve_sync(&url),
                    "anng" => serve_anng(&url),
                    m => panic!("unknown server mode {m}"),
                }
                return;
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let dir = temp_dir("nng-floor");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let modes: &[&str] = if only_sync {
        &["sync"]
    } else {
        &["sync", "anng"]
    };
    for server_mode in modes.iter().copied() {
        let ipc = format!("ipc://{}", dir.path().join(server_mode).display());
        let tcp = format!("tcp://127.0.0.1:{}", port + (server_mode == "anng") as u16);
        for (transport, url) in [("ipc", &ipc), ("tcp", &tcp)] {
            let _server = start(server_mode, url);
            for client_mode in modes.iter().copied() {
                for clients in [1usize, 16] {
                    // Warm-up: connections established, pages touched.
                    let _ = if client_mode == "sync" {
                        client_sync(url, 1, 500, size)
                    } else {
                        client_anng(url, 1, 500, size)
                    };
                    let (wall, mut lat) = if client_mode == "sync" {
                        client_sync(url, clients, ops, size)
                    } else {
                        client_anng(url, clients, ops, size)
                    };
                    report(
                        &format!(
                            "floor/{server_mode}-server/{client_mode}-client/{transport}/{clients}"
                        ),
                        wall,
                        &mut lat,
                    );
                }
            }
        }
    }
}
