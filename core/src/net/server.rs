//! `ormdb serve`: opens the database, listens on every request endpoint with one REP socket,
//! answers requests on a fixed set of threads (each owns one NNG context and blocks in its
//! receive, so each has one request in flight, they run in parallel, and a request is handled on
//! the thread NNG woke, with no further hand-off), publishes changes, reaps idle
//! sessions, and on SIGINT/SIGTERM stops taking requests, finishes those in flight, rolls back
//! open sessions and checkpoints the database.

use std::ffi::CString;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::rawnng::{self, Ctx, Msg, Protocol};

use super::endpoint::{check_listen_url, default_change_url};
use super::handler::{encode_reply, error_body, handle, Shared};
use super::{io_error, DEFAULT_MAX_REQUEST, DEFAULT_REPLY_CHUNK};
use crate::api::{Database, Options};
use crate::error::{Error, Result, SqlState};
use crate::txn::Durability;

/// Bytes NNG's receive limit allows beyond `--max-request-bytes`: REQ's request id travels in
/// the message, and a request just over the limit still gets a clear error reply.
const REQUEST_HEADER_SLACK: usize = 64;
/// How often an idle request thread looks at the stop flag.
const WORKER_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub path: PathBuf,
    /// Request endpoints (tcp:// or ipc://).
    pub listen: Vec<String>,
    /// Change stream endpoints; empty: one beside each request endpoint.
    pub change_listen: Vec<String>,
    pub allow_remote: bool,
    /// `host:port` of the Prometheus endpoint.
    pub metrics: Option<String>,
    /// Requests served at once.
    pub workers: usize,
    /// A session idle for longer is rolled back.
    pub session_idle: Duration,
    pub max_request_bytes: usize,
    /// Replies larger than this are sent in pieces.
    pub reply_chunk_bytes: usize,
    /// How a commit is made durable before it is acknowledged.
    pub durability: Durability,
    /// NNG's task and I/O poller thread counts (None: NNG's defaults, 2 and 1 per CPU).
    pub nng_threads: Option<(usize, usize)>,
}

impl ServeConfig {
    pub fn new(path: impl Into<PathBuf>, listen: Vec<String>) -> ServeConfig {
        ServeConfig {
            path: path.into(),
            listen,
            change_listen: Vec::new(),
            allow_remote: false,
            metrics: None,
            workers: 64,
            session_idle: Duration::from_secs(60),
            max_request_bytes: DEFAULT_MAX_REQUEST,
            reply_chunk_bytes: DEFAULT_REPLY_CHUNK,
            durability: Durability::Full,
            nng_threads: None,
        }
    }
}

/// Runs the server until SIGINT or SIGTERM.
pub fn serve(cfg: ServeConfig) -> Result<()> {
    if cfg.listen.is_empty() {
        return Err(Error::new(
            SqlState::InvalidParameter,
            "give at least one --listen endpoint (tcp://127.0.0.1:PORT or ipc:///PATH)",
        ));
    }
    for url in cfg.listen.iter().chain(&cfg.change_listen) {
        check_listen_url(url, cfg.allow_remote)?;
    }
    let change_urls = if cfg.change_listen.is_empty() {
        cfg.listen
            .iter()
            .map(|u| default_change_url(u))
            .collect::<Result<Vec<_>>>()?
    } else {
        cfg.change_listen.clone()
    };
    if let Some((task, poller)) = cfg.nng_threads {
        rawnng::set_threads(task, poller);
    }
    let db = Database::open(&cfg.path, Options::default().durability(cfg.durability))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ormdb-serve")
        .build()
        .map_err(|e| io_error("starting the tokio runtime", e))?;
    let shared = Arc::new(Shared::new(
        db,
        change_urls,
        cfg.max_request_bytes,
        cfg.reply_chunk_bytes,
    ));
    rt.block_on(run(cfg, shared))
}

fn c_url(url: &str) -> Result<CString> {
    CString::new(url).map_err(|_| {
        Error::new(
            SqlState::InvalidParameter,
            format!("endpoint {url:?} contains a NUL byte"),
        )
    })
}

async fn run(cfg: ServeConfig, shared: Arc<Shared>) -> Result<()> {
    rawnng::install_logger();
    let rep = Arc::new(
        rawnng::Socket::open(Protocol::Rep).map_err(|e| rawnng::io("opening the REP socket", e))?,
    );
    // NNG drops a connection that announces a larger message before reading it; the slack
    // covers REQ's header. The handler still checks the exact limit (a clear 54000 reply).
    let recv_max = cfg.max_request_bytes.saturating_add(REQUEST_HEADER_SLACK);
    for url in &cfg.listen {
        rep.listen_limited(&c_url(url)?, recv_max)
            .map_err(|e| rawnng::io(&format!("cannot listen on {url}"), e))?;
    }
    let pub_socket =
        rawnng::Socket::open(Protocol::Pub).map_err(|e| rawnng::io("opening the PUB socket", e))?;
    pub_socket
        .set_send_buffer(super::publisher::SUBSCRIBER_QUEUE)
        .map_err(|e| rawnng::io("sizing the PUB queues", e))?;
    for url in &shared.change_urls {
        pub_socket
            .listen(&c_url(url)?)
            .map_err(|e| rawnng::io(&format!("cannot publish changes on {url}"), e))?;
    }
    let (stop_tx, stop_rx) = watch::channel(false);

    let metrics_task = match &cfg.metrics {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| io_error(&format!("cannot serve metrics on {addr}"), e))?;
            let ip = listener
                .local_addr()
                .map_err(|e| io_error("metrics address", e))?
                .ip();
            if !ip.is_loopback() && !cfg.allow_remote {
                return Err(Error::new(
                    SqlState::InsufficientPrivilege,
                    format!("--metrics {addr} is not a loopback address; add --allow-remote"),
                ));
            }
            let sh = shared.clone();
            Some(tokio::spawn(super::metrics::serve_http(
                listener,
                Arc::new(move || sh.metrics_text()),
                stop_rx.clone(),
            )))
        }
        None => None,
    };

    let publisher_stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (sh, stop) = (shared.clone(), publisher_stop.clone());
        std::thread::Builder::new()
            .name("ormdb-publisher".into())
            .spawn(move || super::publisher::run(sh, pub_socket, stop))
            .map_err(|e| io_error("starting the change publisher", e))?
    };

    let reaper = {
        let (sh, idle, mut stop) = (shared.clone(), cfg.session_idle, stop_rx.clone());
        tokio::spawn(async move {
            let tick = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(tick) => {}
                    _ = stop.changed() => return,
                }
                let sh2 = sh.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    sh2.expire_chunks();
                    sh2.sessions.reap(idle, &sh2.metrics.sessions_expired)
                })
                .await;
            }
        })
    };

    let workers_stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for i in 0..cfg.workers.max(1) {
        let ctx = rep
            .context()
            .and_then(|c| c.set_recv_timeout(WORKER_POLL).map(|_| c))
            .map_err(|e| rawnng::io("opening a request context", e));
        let (sh, stop) = (shared.clone(), workers_stop.clone());
        workers.push(
            std::thread::Builder::new()
                .name(format!("ormdb-req-{i}"))
                .spawn(move || worker(ctx, sh, stop))
                .map_err(|e| io_error("starting a request thread", e))?,
        );
    }

    // Written without println!, which panics when whoever started us closed our stdout.
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "ormdb serve: listening on {} (changes on {})",
        cfg.listen.join(", "),
        shared.change_urls.join(", ")
    );
    let _ = out.flush();

    wait_for_signal().await;
    tracing::info!("shutting down: finishing requests in flight");
    let _ = stop_tx.send(true);
    workers_stop.store(true, Ordering::Release);
    let _ = tokio::task::spawn_blocking(move || {
        for w in workers {
            let _ = w.join();
        }
    })
    .await;
    rep.close();
    let _ = reaper.await;
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    let sh = shared.clone();
    let rolled_back = tokio::task::spawn_blocking(move || sh.sessions.rollback_all())
        .await
        .unwrap_or(0);
    publisher_stop.store(true, Ordering::Release);
    let _ = tokio::task::spawn_blocking(move || publisher.join()).await;
    let sh = shared.clone();
    tokio::task::spawn_blocking(move || sh.db.checkpoint())
        .await
        .map_err(|e| Error::internal(format!("checkpoint task: {e}")))??;
    let _ = writeln!(
        out,
        "ormdb serve: stopped ({rolled_back} open sessions rolled back; database synced)"
    );
    let _ = out.flush();
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// One request thread: blocked in a receive on its own context, answers on the same thread.
/// The receive times out now and then so the thread sees `stop`; a request already received is
/// always answered.
fn worker(ctx: Result<Ctx>, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    let mut ctx = match ctx {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("request worker: {e}");
            return;
        }
    };
    while !stop.load(Ordering::Acquire) {
        let request = match ctx.recv() {
            Ok(m) => m,
            Err(e) if e.is_timeout() => continue,
            Err(e) if e.is_closed() => return,
            Err(e) => {
                tracing::debug!("receiving a request: {e}");
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        shared.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handle(&shared, request.as_slice())
        }))
        .unwrap_or_else(|_| {
            encode_reply(error_body(&Error::internal(
                "the request handler panicked (a bug); the server keeps serving",
            )))
        });
        drop(request);
        shared.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
        let msg = match Msg::from_slice(&reply) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("allocating a reply of {} bytes: {e}", reply.len());
                continue;
            }
        };
        if let Err(e) = ctx.send(msg) {
            // The requester went away; nothing to tell it.
            tracing::debug!("sending a reply: {e}");
        }
    }
}
