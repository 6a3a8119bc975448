//! The server: [`Server`] serves a database this process has open (an application embedding
//! ORMDB, or `ormdb serve` through [`serve`]): it listens on every request endpoint with one REP
//! socket, takes requests on a fixed set of NNG contexts (one request in flight each) and
//! answers them on NNG's thread (short reads) or a pool of request threads (see [`Dispatch`]),
//! publishes changes, reaps idle sessions, and on [`Server::shutdown`] (`ormdb serve`: on
//! SIGINT/SIGTERM) stops taking requests, finishes those in flight, rolls back open sessions,
//! publishes what was committed and checkpoints the database.

use std::ffi::CString;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::rawnng::{self, Aio, Ctx, Msg, Protocol};

use super::endpoint::{check_listen_url, default_change_url};
use super::handler::{encode_reply, error_body, handle, Shared};
use super::{io_error, DEFAULT_MAX_REQUEST, DEFAULT_REPLY_CHUNK, DEFAULT_REPLY_TIMEOUT};
use crate::api::{Database, Options};
use crate::error::{Error, Result, SqlState};
use crate::txn::Durability;

/// Bytes NNG's receive limit allows beyond `--max-request-bytes`: REQ's request id travels in
/// the message, and a request just over the limit still gets a clear error reply.
const REQUEST_HEADER_SLACK: usize = 64;

/// At shutdown, how long replies still waiting for a requester slow to read get before they are
/// dropped (the requests themselves are done and committed).
const SHUTDOWN_REPLY_GRACE: Duration = Duration::from_secs(1);

/// How long the oldest queued request may wait while every request thread is busy (long
/// queries, say) before the pool starts another thread, up to one per context.
const GROW_AFTER: Duration = Duration::from_millis(20);

/// A request thread beyond `--threads` ends after this long without work.
const EXTRA_THREAD_IDLE: Duration = Duration::from_secs(10);

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
    /// Requests served at once (one NNG context each).
    pub workers: usize,
    /// Threads that execute requests (None: [`default_request_threads`]; at most `workers`).
    /// Under durability `full` a thread does not wait for the disk (see `Slot::answer`), so a
    /// few per CPU keep the disk busy; more only add contention on 2 CPUs. When every one is
    /// busy and a queued request has waited 20 ms (long requests), the pool grows, up to
    /// `workers`; threads beyond this count end after 10 s without work.
    pub threads: Option<usize>,
    /// A session idle for longer is rolled back.
    pub session_idle: Duration,
    pub max_request_bytes: usize,
    /// Replies larger than this are sent in pieces.
    pub reply_chunk_bytes: usize,
    /// How long a reply may wait for its connection, busy with an earlier reply its requester
    /// has not read, before it is dropped (see [`Slot::reply`]).
    pub reply_timeout: Duration,
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
            threads: None,
            session_idle: Duration::from_secs(60),
            max_request_bytes: DEFAULT_MAX_REQUEST,
            reply_chunk_bytes: DEFAULT_REPLY_CHUNK,
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
            durability: Durability::Full,
            nng_threads: None,
        }
    }
}

/// Runs the server until SIGINT or SIGTERM: opens the database at `cfg.path`, starts a
/// [`Server`] on it, waits for the signal, then shuts the server down gracefully.
pub fn serve(cfg: ServeConfig) -> Result<()> {
    check_config(&cfg)?;
    let db = Database::open(&cfg.path, Options::default().durability(cfg.durability))?;
    let server = Server::start(db, &cfg)?;
    // Written without println!, which panics when whoever started us closed our stdout.
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "ormdb serve: listening on {} (changes on {})",
        server.listen_urls().join(", "),
        server.change_urls().join(", ")
    );
    let _ = out.flush();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| io_error("starting the tokio runtime", e))?
        .block_on(wait_for_signal());
    tracing::info!("shutting down: finishing requests in flight");
    let report = server.shutdown()?;
    let _ = writeln!(
        out,
        "ormdb serve: stopped ({} open sessions rolled back; database synced)",
        report.sessions_rolled_back
    );
    let _ = out.flush();
    Ok(())
}

/// Request threads when none are configured: 4 per CPU, at least 4.
pub fn default_request_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    (4 * cpus).max(4)
}

fn check_config(cfg: &ServeConfig) -> Result<()> {
    if cfg.workers == 0 || cfg.threads == Some(0) {
        return Err(Error::new(
            SqlState::InvalidParameter,
            "--workers and --threads must be at least 1",
        ));
    }
    if cfg.reply_timeout.is_zero() {
        return Err(Error::new(
            SqlState::InvalidParameter,
            "--reply-timeout must be positive",
        ));
    }
    if cfg.listen.is_empty() {
        return Err(Error::new(
            SqlState::InvalidParameter,
            "give at least one --listen endpoint (tcp://127.0.0.1:PORT or ipc:///PATH)",
        ));
    }
    for url in cfg.listen.iter().chain(&cfg.change_listen) {
        check_listen_url(url, cfg.allow_remote)?;
    }
    Ok(())
}

fn c_url(url: &str) -> Result<CString> {
    CString::new(url).map_err(|_| {
        Error::new(
            SqlState::InvalidParameter,
            format!("endpoint {url:?} contains a NUL byte"),
        )
    })
}

/// What a graceful shutdown did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Sessions (transactions spanning requests) that were still open and were rolled back.
    pub sessions_rolled_back: usize,
}

/// A running server on a database this process already has open: an application that embeds
/// ORMDB can serve the same database to other processes (its own writers keep committing in
/// process, and their commits reach remote subscribers like any other). Listening starts in
/// [`Server::start`] and stops in [`Server::shutdown`] (or when the handle is dropped); the
/// database stays open for the application either way.
pub struct Server {
    shared: Arc<Shared>,
    /// Runs the metrics endpoint and the session reaper on a tokio runtime of its own, so that
    /// neither starting nor stopping a server needs the caller's runtime (or its absence).
    background: Option<std::thread::JoinHandle<()>>,
    rep: Arc<rawnng::Socket>,
    listen: Vec<String>,
    metrics_addr: Option<std::net::SocketAddr>,
    stop_tx: watch::Sender<bool>,
    dispatch: Arc<Dispatch>,
    /// Boxed: NNG holds each slot's address for its receive callback.
    #[allow(clippy::vec_box)]
    slots: Vec<Box<Slot>>,
    /// Starts request threads when every one is busy for long (see [`pool_monitor`]); the
    /// request threads themselves are in the dispatch queue.
    pool_monitor: Option<std::thread::JoinHandle<()>>,
    reply_waiter: Option<std::thread::JoinHandle<()>>,
    publisher_stop: Arc<AtomicBool>,
    publisher: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Listens on `cfg`'s endpoints and serves `db`. `cfg.path` and `cfg.durability` are not
    /// used (the database is already open, with the options it was opened with);
    /// `cfg.nng_threads` takes effect only when this server opens the process's first NNG
    /// socket (NNG starts its threads then; [`rawnng::set_threads`]). When `start` fails
    /// nothing is left listening.
    pub fn start(db: Database, cfg: &ServeConfig) -> Result<Server> {
        check_config(cfg)?;
        if let Some((task, poller)) = cfg.nng_threads {
            rawnng::set_threads(task, poller);
        }
        let change_urls = if cfg.change_listen.is_empty() {
            cfg.listen
                .iter()
                .map(|u| default_change_url(u))
                .collect::<Result<Vec<_>>>()?
        } else {
            cfg.change_listen.clone()
        };
        let shared = Arc::new(Shared::new(
            db,
            change_urls,
            cfg.max_request_bytes,
            cfg.reply_chunk_bytes,
        ));
        rawnng::install_logger();
        let rep = Arc::new(
            rawnng::Socket::open(Protocol::Rep)
                .map_err(|e| rawnng::io("opening the REP socket", e))?,
        );
        // NNG drops a connection that announces a larger message before reading it; the slack
        // covers REQ's header. The handler still checks the exact limit (a clear 54000 reply).
        let recv_max = cfg.max_request_bytes.saturating_add(REQUEST_HEADER_SLACK);
        for url in &cfg.listen {
            rep.listen_limited(&c_url(url)?, recv_max)
                .map_err(|e| rawnng::io(&format!("cannot listen on {url}"), e))?;
        }
        let pub_socket = rawnng::Socket::open(Protocol::Pub)
            .map_err(|e| rawnng::io("opening the PUB socket", e))?;
        pub_socket
            .set_send_buffer(super::publisher::SUBSCRIBER_QUEUE)
            .map_err(|e| rawnng::io("sizing the PUB queues", e))?;
        for url in &shared.change_urls {
            pub_socket
                .listen(&c_url(url)?)
                .map_err(|e| rawnng::io(&format!("cannot publish changes on {url}"), e))?;
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        // Bound here so that a bad address fails `start`; served on the background thread.
        let metrics_listener = match &cfg.metrics {
            Some(addr) => {
                let l = std::net::TcpListener::bind(addr)
                    .and_then(|l| l.set_nonblocking(true).map(|_| l))
                    .map_err(|e| io_error(&format!("cannot serve metrics on {addr}"), e))?;
                let local = l.local_addr().map_err(|e| io_error("metrics address", e))?;
                if !local.ip().is_loopback() && !cfg.allow_remote {
                    return Err(Error::new(
                        SqlState::InsufficientPrivilege,
                        format!("--metrics {addr} is not a loopback address; add --allow-remote"),
                    ));
                }
                Some((l, local))
            }
            None => None,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| io_error("starting the tokio runtime", e))?;
        // From here on the handle exists, so an early return shuts down what already started.
        let mut server = Server {
            shared: shared.clone(),
            background: None,
            rep: rep.clone(),
            listen: cfg.listen.clone(),
            metrics_addr: metrics_listener.as_ref().map(|(_, a)| *a),
            stop_tx,
            dispatch: Arc::new(Dispatch {
                shared: shared.clone(),
                stop: AtomicBool::new(false),
                inline_busy: AtomicBool::new(false),
                inline: cfg.nng_threads.is_none_or(|(task, _)| task >= 2),
                queue: parking_lot::Mutex::new(Queue::default()),
                ready: parking_lot::Condvar::new(),
                grow: parking_lot::Condvar::new(),
                waiting: parking_lot::Mutex::new(Waiting::default()),
                sent: parking_lot::Condvar::new(),
            }),
            slots: Vec::new(),
            pool_monitor: None,
            reply_waiter: None,
            publisher_stop: Arc::new(AtomicBool::new(false)),
            publisher: None,
        };
        let (sh, stop) = (shared.clone(), server.publisher_stop.clone());
        server.publisher = Some(
            std::thread::Builder::new()
                .name("ormdb-publisher".into())
                .spawn(move || super::publisher::run(sh, pub_socket, stop))
                .map_err(|e| io_error("starting the change publisher", e))?,
        );
        let (sh, idle) = (shared.clone(), cfg.session_idle);
        server.background = Some(
            std::thread::Builder::new()
                .name("ormdb-serve".into())
                .spawn(move || rt.block_on(background(sh, idle, metrics_listener, stop_rx)))
                .map_err(|e| io_error("starting the server's background thread", e))?,
        );
        let threads = cfg
            .threads
            .unwrap_or_else(default_request_threads)
            .min(cfg.workers);
        {
            let mut q = server.dispatch.queue.lock();
            q.base = threads;
            q.max = cfg.workers;
            for _ in 0..threads {
                start_worker(&server.dispatch, &mut q)?;
            }
        }
        let d = server.dispatch.clone();
        server.pool_monitor = Some(
            std::thread::Builder::new()
                .name("ormdb-req-pool".into())
                .spawn(move || pool_monitor(d))
                .map_err(|e| io_error("starting the request pool's monitor", e))?,
        );
        let d = server.dispatch.clone();
        server.reply_waiter = Some(
            std::thread::Builder::new()
                .name("ormdb-reply-wait".into())
                .spawn(move || reply_waiter(d))
                .map_err(|e| io_error("starting the reply waiter", e))?,
        );
        for _ in 0..cfg.workers {
            server
                .slots
                .push(Slot::open(&rep, &server.dispatch, cfg.reply_timeout)?);
        }
        for slot in &server.slots {
            slot.arm();
        }
        Ok(server)
    }

    /// The request endpoints, as given.
    pub fn listen_urls(&self) -> &[String] {
        &self.listen
    }

    /// The change stream endpoints (given, or derived from the request endpoints).
    pub fn change_urls(&self) -> &[String] {
        &self.shared.change_urls
    }

    /// Where the Prometheus endpoint listens (with the port the OS chose for port 0).
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_addr
    }

    /// The database being served.
    pub fn database(&self) -> &Database {
        &self.shared.db
    }

    /// The server's metrics in Prometheus text (what the metrics endpoint serves).
    pub fn metrics_text(&self) -> String {
        self.shared.metrics_text()
    }

    /// Stops taking requests, finishes those in flight, rolls back open sessions, publishes
    /// every change committed so far, stops publishing and checkpoints the database. The
    /// database stays open for the application's other handles.
    pub fn shutdown(mut self) -> Result<ShutdownReport> {
        self.stop()
    }

    fn stop(&mut self) -> Result<ShutdownReport> {
        let _ = self.stop_tx.send(true);
        // No new receives; a receive pending is cancelled, one completing finishes its callback
        // (a request answered inline is answered, a queued one stays queued)...
        self.dispatch.stop.store(true, Ordering::Release);
        for slot in &self.slots {
            slot.recv().stop();
        }
        // ...then the request threads answer what is queued and end (the pool starts no more).
        let threads = {
            let mut q = self.dispatch.queue.lock();
            q.closed = true;
            std::mem::take(&mut q.threads_running)
        };
        self.dispatch.ready.notify_all();
        self.dispatch.grow.notify_all();
        if let Some(m) = self.pool_monitor.take() {
            let _ = m.join();
        }
        for (_, w) in threads {
            let _ = w.join();
        }
        // Answers waiting for their commit to be synced go out now (see `Slot::answer`), and
        // none is still being sent by another thread when the slots go.
        if let Err(e) = self.shared.db.core().log.sync_all_and_settle() {
            tracing::warn!("syncing the commit log at shutdown: {e}");
        }
        // Replies still waiting for a requester slow to read get a moment, then are dropped.
        if let Some(w) = self.reply_waiter.take() {
            self.dispatch.finish_waiting(SHUTDOWN_REPLY_GRACE);
            let _ = w.join();
        }
        for slot in &self.slots {
            slot.send.wait();
        }
        self.slots.clear();
        self.rep.close();
        if let Some(b) = self.background.take() {
            let _ = b.join();
        }
        let rolled_back = self.shared.sessions.rollback_all();
        self.publisher_stop.store(true, Ordering::Release);
        if let Some(p) = self.publisher.take() {
            let _ = p.join();
        }
        self.shared.db.checkpoint()?;
        Ok(ShutdownReport {
            sessions_rolled_back: rolled_back,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.background.is_some()
            || self.publisher.is_some()
            || self.pool_monitor.is_some()
            || self.reply_waiter.is_some()
            || !self.slots.is_empty()
        {
            if let Err(e) = self.stop() {
                tracing::warn!("stopping the server: {e}");
            }
        }
    }
}

/// The server's async side: the metrics endpoint and the reaper of idle sessions and unfetched
/// reply chunks, until `stop` turns true.
async fn background(
    shared: Arc<Shared>,
    idle: Duration,
    metrics: Option<(std::net::TcpListener, std::net::SocketAddr)>,
    mut stop: watch::Receiver<bool>,
) {
    let metrics_task = metrics.and_then(|(l, addr)| match tokio::net::TcpListener::from_std(l) {
        Ok(listener) => {
            let sh = shared.clone();
            Some(tokio::spawn(super::metrics::serve_http(
                listener,
                Arc::new(move || sh.metrics_text()),
                stop.clone(),
            )))
        }
        Err(e) => {
            tracing::error!("cannot serve metrics on {addr}: {e}");
            None
        }
    });
    let tick = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => break,
        }
        let sh = shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            sh.expire_chunks();
            sh.sessions.reap(idle, &sh.metrics.sessions_expired)
        })
        .await;
    }
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
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

/// Request contexts and the threads that answer on them. Each context has a receive always
/// pending, completed through an NNG callback on the NNG thread that matched the request to the
/// context. A read that cannot wait for long (a graph read or a `SELECT` outside any session,
/// see [`runs_inline`]) is answered right there when no other request is being answered that way,
/// which saves the wake-up of a request thread per request; everything else, and every read
/// arriving while one is being answered inline, goes to the request threads. So at most one of
/// NNG's task threads is ever busy with a request, and only with a short one.
struct Dispatch {
    shared: Arc<Shared>,
    stop: AtomicBool,
    inline_busy: AtomicBool,
    /// Whether requests may be answered on NNG's threads (not with a single NNG task thread,
    /// which a request would hold up).
    inline: bool,
    queue: parking_lot::Mutex<Queue>,
    /// Wakes a request thread waiting for work.
    ready: parking_lot::Condvar,
    /// Wakes the pool monitor when requests queue up with no thread free.
    grow: parking_lot::Condvar,
    /// Slots whose reply waits for its connection (see [`Slot::reply`]), watched by
    /// [`reply_waiter`].
    waiting: parking_lot::Mutex<Waiting>,
    /// Wakes the reply waiter when a slot starts waiting or the server stops, and
    /// [`Dispatch::finish_waiting`] when replies have left.
    sent: parking_lot::Condvar,
}

#[derive(Default)]
struct Queue {
    /// Requests to answer, with when each was queued.
    jobs: std::collections::VecDeque<(SlotRef, Msg, Instant)>,
    closed: bool,
    /// The request threads running, by number (a thread that ends removes itself).
    threads_running: std::collections::HashMap<usize, std::thread::JoinHandle<()>>,
    next_thread: usize,
    /// Threads waiting for work.
    idle: usize,
    /// Threads kept when idle (`--threads`), and at most (`--workers`).
    base: usize,
    max: usize,
    /// The pool monitor waits without a timeout (nothing queued, or a thread free) and must be
    /// woken when that changes.
    monitor_parked: bool,
}

#[derive(Default)]
struct Waiting {
    slots: Vec<SlotRef>,
    /// The server is stopping: the waiter ends once no slot waits.
    closed: bool,
}

impl Dispatch {
    /// Hands a slot whose reply is waiting for its connection to the reply waiter.
    fn wait_for_send(&self, slot: &Slot) {
        self.shared
            .metrics
            .replies_waiting
            .fetch_add(1, Ordering::Relaxed);
        self.waiting.lock().slots.push(SlotRef(slot as *const Slot));
        // All: `finish_waiting` may be waiting on the same condvar.
        self.sent.notify_all();
    }

    /// Lets waiting replies finish for up to `grace`, cancels the rest (their requesters have
    /// read nothing for all that time) and tells the reply waiter to end once none is left.
    fn finish_waiting(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let mut w = self.waiting.lock();
        while !w.slots.is_empty() && Instant::now() < deadline {
            self.sent.wait_for(&mut w, Duration::from_millis(5));
        }
        for s in &w.slots {
            // SAFETY: see SlotRef; the slots go only after the waiter has ended.
            unsafe { &*s.0 }.send.cancel();
        }
        w.closed = true;
        self.sent.notify_all();
    }
}

/// One REP context with its receive and send operations.
struct Slot {
    ctx: Ctx,
    recv: Option<Aio>,
    send: Aio,
    dispatch: Arc<Dispatch>,
}

/// A slot as the request threads see it: slots live (boxed, so at a fixed address) until
/// [`Server::stop`] has stopped every receive and joined every request thread.
#[derive(Clone, Copy)]
struct SlotRef(*const Slot);

// SAFETY: a Slot's parts are thread-safe NNG handles and an Arc; see SlotRef's lifetime above.
unsafe impl Send for SlotRef {}

impl Slot {
    fn open(
        rep: &rawnng::Socket,
        dispatch: &Arc<Dispatch>,
        reply_timeout: Duration,
    ) -> Result<Box<Slot>> {
        let io = |e| rawnng::io("opening a request context", e);
        // SAFETY: no callback.
        let send = unsafe { Aio::new(None, std::ptr::null_mut()) }.map_err(io)?;
        send.set_timeout(reply_timeout);
        let mut slot = Box::new(Slot {
            ctx: rep.context().map_err(io)?,
            recv: None,
            send,
            dispatch: dispatch.clone(),
        });
        let arg = &*slot as *const Slot as *mut std::ffi::c_void;
        // SAFETY: the slot is boxed and outlives its aio (dropped with it, and Server::stop
        // stops every receive before the slots go).
        slot.recv = Some(unsafe { Aio::new(Some(slot_received), arg) }.map_err(io)?);
        Ok(slot)
    }

    fn recv(&self) -> &Aio {
        self.recv.as_ref().expect("set in Slot::open")
    }

    /// Starts the next receive, unless the server is stopping (after [`Aio::stop`] this is a
    /// no-op anyway).
    fn arm(&self) {
        if !self.dispatch.stop.load(Ordering::Acquire) {
            self.ctx.recv_aio(self.recv());
        }
    }

    /// Answers `request`, sends the reply on this slot's context and starts the next receive.
    /// A request already received is always answered. Under durability `full` a request whose
    /// commit is not yet durable is answered later, by the thread that finishes the log round
    /// that syncs it, so this thread goes on to the next request instead of waiting for the disk.
    fn answer(&self, request: Msg) {
        let shared = &self.dispatch.shared;
        let started = Instant::now();
        shared.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        let core = shared.db.core();
        let defer = core.durability == Durability::Full;
        if defer {
            crate::txn::core::defer_durable_commit();
        }
        let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handle(shared, request.as_slice())
        }))
        .unwrap_or_else(|_| {
            encode_reply(error_body(&Error::internal(
                "the request handler panicked (a bug); the server keeps serving",
            )))
        });
        drop(request);
        shared.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
        let ticket = if defer {
            crate::txn::core::take_deferred_commit()
        } else {
            None
        };
        match ticket {
            None => {
                shared.metrics.observe_latency(started.elapsed());
                self.reply(&reply);
            }
            Some(t) => {
                let me = SlotRef(self as *const Slot);
                core.when_durable(t, move |r| {
                    // The whole SlotRef (Send), not just its pointer field.
                    let me = me;
                    // SAFETY: see SlotRef; `Server::stop` syncs the log and waits for every
                    // acknowledgement being run (`sync_all_and_settle`) before the slots go.
                    let slot = unsafe { &*me.0 };
                    let metrics = &slot.dispatch.shared.metrics;
                    metrics.observe_latency(started.elapsed());
                    let reply = match r {
                        Ok(()) => reply,
                        Err(e) => {
                            metrics.request_errors.fetch_add(1, Ordering::Relaxed);
                            encode_reply(error_body(&e))
                        }
                    };
                    slot.reply(&reply);
                });
            }
        }
    }

    /// Sends `reply` on this slot's context and starts the next receive. Never waits: REP hands
    /// a reply to its connection at once unless that connection is still sending an earlier
    /// reply (its requester reads slowly, or not at all); then this slot takes no request until
    /// its reply has left, or was dropped after `--reply-timeout`, and the reply waiter watches
    /// it. So a requester that stops reading holds up its own replies, nobody else's requests,
    /// and never a thread (the commit log's thread sends deferred replies).
    fn reply(&self, reply: &[u8]) {
        // A slot takes a request only once its previous reply has left (or was dropped), so the
        // aio is idle; a send that failed left its message in it.
        debug_assert!(!self.send.busy(), "a slot with a reply still waiting");
        drop(self.send.take_msg());
        match Msg::from_slice(reply) {
            Ok(m) => {
                self.send.set_msg(m);
                // A requester that went away gets nothing, which is all there is to tell it.
                self.ctx.send_aio(&self.send);
                if self.send.busy() {
                    self.dispatch.wait_for_send(self);
                    return;
                }
            }
            Err(e) => tracing::warn!("allocating a reply of {} bytes: {e}", reply.len()),
        }
        self.arm();
    }

    /// The reply this slot was waiting to send has left, or was dropped: takes requests again.
    fn sent(&self) {
        let metrics = &self.dispatch.shared.metrics;
        metrics.replies_waiting.fetch_sub(1, Ordering::Relaxed);
        if let Err(e) = self.send.result() {
            drop(self.send.take_msg());
            metrics.replies_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("a reply its requester did not read was dropped: {e}");
        }
        self.arm();
    }
}

/// A slot's receive completed (on an NNG thread).
unsafe extern "C" fn slot_received(arg: *mut std::ffi::c_void) {
    // SAFETY: `arg` is the slot this aio belongs to, alive while its receive can complete.
    let slot = unsafe { &*(arg as *const Slot) };
    // Nothing may unwind into NNG.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| received(slot)));
}

fn received(slot: &Slot) {
    let d = &*slot.dispatch;
    if let Err(e) = slot.recv().result() {
        if d.stop.load(Ordering::Acquire) || e.is_closed() || e.is_canceled() {
            return;
        }
        tracing::debug!("receiving a request: {e}");
        slot.arm();
        return;
    }
    let Some(request) = slot.recv().take_msg() else {
        slot.arm();
        return;
    };
    if d.inline
        && runs_inline(&d.shared, request.as_slice())
        && d.inline_busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    {
        slot.answer(request);
        d.inline_busy.store(false, Ordering::Release);
        return;
    }
    let mut q = d.queue.lock();
    q.jobs
        .push_back((SlotRef(slot as *const Slot), request, Instant::now()));
    let wake_monitor = q.idle == 0 && std::mem::take(&mut q.monitor_parked);
    drop(q);
    d.ready.notify_one();
    if wake_monitor {
        d.grow.notify_one();
    }
}

/// Starts a request thread (the caller holds the queue's lock).
fn start_worker(d: &Arc<Dispatch>, q: &mut Queue) -> Result<()> {
    let id = q.next_thread;
    q.next_thread += 1;
    let dd = d.clone();
    let handle = std::thread::Builder::new()
        .name(format!("ormdb-req-{id}"))
        .spawn(move || worker(dd, id))
        .map_err(|e| io_error("starting a request thread", e))?;
    q.threads_running.insert(id, handle);
    d.shared
        .metrics
        .request_threads
        .store(q.threads_running.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// The request pool's monitor: while requests are queued and no request thread is free (each
/// busy with a long query, say), starts another thread once the oldest has waited
/// [`GROW_AFTER`], up to one per context. It sleeps while nothing waits, and otherwise checks
/// at most every 20 ms: under a steady load of short requests the queue drains well within that
/// and the pool stays at `--threads` (fewer threads contend less on 2 CPUs).
fn pool_monitor(d: Arc<Dispatch>) {
    let mut q = d.queue.lock();
    loop {
        if q.closed {
            return;
        }
        let wait = match q.jobs.front() {
            Some(&(_, _, queued)) if q.idle == 0 => {
                let waited = queued.elapsed();
                if waited < GROW_AFTER {
                    Some(GROW_AFTER - waited)
                } else {
                    if q.threads_running.len() < q.max {
                        if let Err(e) = start_worker(&d, &mut q) {
                            tracing::warn!("growing the request pool: {e}");
                        } else {
                            tracing::debug!(
                                threads = q.threads_running.len(),
                                "every request thread busy for {waited:?}: started another"
                            );
                        }
                    }
                    Some(GROW_AFTER)
                }
            }
            _ => None,
        };
        match wait {
            Some(t) => {
                d.grow.wait_for(&mut q, t);
            }
            None => {
                q.monitor_parked = true;
                d.grow.wait(&mut q);
                q.monitor_parked = false;
            }
        }
    }
}

/// The reply waiter: watches the slots whose reply waits for its connection and lets each take
/// requests again once its reply has left (or was dropped). It polls, every millisecond and only
/// while some slot waits: a send without a callback completes on the thread that freed the
/// connection, and one with a callback would cost every reply a hand-off to NNG's task threads.
fn reply_waiter(d: Arc<Dispatch>) {
    let mut done = Vec::new();
    loop {
        {
            let mut w = d.waiting.lock();
            loop {
                w.slots.retain(|s| {
                    // SAFETY: see SlotRef; the slots go only after this thread has ended.
                    let waiting = unsafe { &*s.0 }.send.busy();
                    if !waiting {
                        done.push(*s);
                    }
                    waiting
                });
                if !done.is_empty() {
                    break;
                }
                if w.slots.is_empty() {
                    if w.closed {
                        return;
                    }
                    d.sent.wait(&mut w);
                } else {
                    d.sent.wait_for(&mut w, Duration::from_millis(1));
                }
            }
        }
        for s in done.drain(..) {
            // SAFETY: as above.
            unsafe { &*s.0 }.sent();
        }
        // `finish_waiting` waits on the same condvar for the list to empty.
        d.sent.notify_all();
    }
}

/// A request thread: answers queued requests until the queue is closed and empty. A thread
/// beyond `--threads` ends after [`EXTRA_THREAD_IDLE`] without work.
fn worker(d: Arc<Dispatch>, id: usize) {
    loop {
        let job = {
            let mut q = d.queue.lock();
            loop {
                if let Some(j) = q.jobs.pop_front() {
                    if !q.jobs.is_empty() && q.idle == 0 && std::mem::take(&mut q.monitor_parked) {
                        d.grow.notify_one();
                    }
                    break Some(j);
                }
                if q.closed {
                    break None;
                }
                q.idle += 1;
                let extra = q.threads_running.len() > q.base;
                let timed_out = if extra {
                    d.ready.wait_for(&mut q, EXTRA_THREAD_IDLE).timed_out()
                } else {
                    d.ready.wait(&mut q);
                    false
                };
                q.idle -= 1;
                if timed_out && q.jobs.is_empty() && !q.closed && q.threads_running.len() > q.base {
                    // Ending: dropping its own handle detaches it.
                    q.threads_running.remove(&id);
                    d.shared
                        .metrics
                        .request_threads
                        .store(q.threads_running.len() as u64, Ordering::Relaxed);
                    return;
                }
            }
        };
        match job {
            None => return,
            // SAFETY: see SlotRef.
            Some((slot, request, _)) => unsafe { &*slot.0 }.answer(request),
        }
    }
}

/// Whether a request may be answered on NNG's thread: reads outside any session (graph reads,
/// a `SELECT`, the handshake, metrics, reply chunks), which take no lock a transaction holds
/// and never wait for a commit. Anything else could wait for long and goes to a request thread.
fn runs_inline(shared: &Shared, request: &[u8]) -> bool {
    use crate::ir::protocol::ArchivedBody as B;
    let Ok(msg) = crate::ir::protocol::access(request) else {
        return false;
    };
    match &msg.body {
        B::Fetch(_)
        | B::Explain { .. }
        | B::Aggregate(_)
        | B::Hello { .. }
        | B::Metrics
        | B::NextChunk { .. } => true,
        B::Sql { session, sql, .. } => *session == 0 && is_single_select(sql.as_str()),
        B::ExecutePrepared { session, id, .. } => {
            *session == 0
                && shared
                    .prepared(id.to_native())
                    .is_some_and(|p| is_single_select(p.sql()))
        }
        _ => false,
    }
}

/// One `SELECT` statement (a trailing `;` allowed).
fn is_single_select(sql: &str) -> bool {
    let s = sql.trim();
    let s = s.strip_suffix(';').unwrap_or(s);
    s.get(..6).is_some_and(|k| k.eq_ignore_ascii_case("select")) && !s.contains(';')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::protocol::{decode, encode, Body};
    use crate::sql::Params;

    fn shared() -> Shared {
        let sh = Shared::new(Database::temporary().unwrap(), Vec::new(), 1 << 20, 1 << 20);
        let reply = handle(
            &sh,
            &sql(0, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"),
        );
        assert!(matches!(decode(&reply).unwrap().body, Body::SqlResult(_)));
        sh
    }

    fn sql(session: u64, sql: &str) -> Vec<u8> {
        encode(&Body::Sql {
            session,
            sql: sql.into(),
            params: Params::Positional(Vec::new()),
        })
        .unwrap()
    }

    fn prepare(sh: &Shared, sql: &str) -> u64 {
        let reply = handle(sh, &encode(&Body::Prepare { sql: sql.into() }).unwrap());
        match decode(&reply).unwrap().body {
            Body::Prepared { id, .. } => id,
            other => panic!("preparing {sql}: {other:?}"),
        }
    }

    fn execute(session: u64, id: u64) -> Vec<u8> {
        encode(&Body::ExecutePrepared {
            session,
            id,
            params: Params::Positional(Vec::new()),
        })
        .unwrap()
    }

    #[test]
    fn one_select_statement() {
        for s in [
            "SELECT 1",
            "select * from t where id = ?",
            "  SeLeCt v FROM t ;  ",
            "SELECT 'a;b'",
        ] {
            // A `;` inside a literal sends the statement to a request thread: conservative.
            assert_eq!(is_single_select(s), !s.contains("'a;b'"), "{s}");
        }
        for s in [
            "",
            "SELEC",
            "INSERT INTO t VALUES (1, 'a')",
            "SELECT 1; DELETE FROM t",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "BEGIN",
        ] {
            assert!(!is_single_select(s), "{s}");
        }
    }

    #[test]
    fn only_short_reads_outside_sessions_run_inline() {
        let sh = shared();
        assert!(runs_inline(&sh, &sql(0, "SELECT * FROM t WHERE id = 1")));
        assert!(runs_inline(&sh, &encode(&Body::Metrics).unwrap()));
        // In a session (it may wait on the session's lock or a commit), writes, several
        // statements, transaction control and garbage go to the request threads.
        assert!(!runs_inline(&sh, &sql(7, "SELECT * FROM t")));
        assert!(!runs_inline(&sh, &sql(0, "INSERT INTO t VALUES (1, 'a')")));
        assert!(!runs_inline(&sh, &sql(0, "SELECT 1; DELETE FROM t")));
        assert!(!runs_inline(&sh, &encode(&Body::Begin).unwrap()));
        assert!(!runs_inline(
            &sh,
            &encode(&Body::Commit { session: 0 }).unwrap()
        ));
        assert!(!runs_inline(&sh, b"\x01\x02garbage"));
        assert!(!runs_inline(&sh, &[]));
        // Prepared statements by what they are; an unknown id is not guessed at.
        let select = prepare(&sh, "SELECT v FROM t WHERE id = 1");
        let insert = prepare(&sh, "INSERT INTO t VALUES (2, 'b')");
        assert!(runs_inline(&sh, &execute(0, select)));
        assert!(!runs_inline(&sh, &execute(3, select)));
        assert!(!runs_inline(&sh, &execute(0, insert)));
        assert!(!runs_inline(&sh, &execute(0, select + insert + 100)));
    }
}
