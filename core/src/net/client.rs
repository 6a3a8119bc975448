//! The Rust client: a pool of REQ connections to one server, any number of requests in flight
//! at once (each on its own NNG context), dialing with backoff, a timeout per request, and
//! replies kept in the received buffer and read in place through rkyv ([`Reply`]).
//!
//! Reconnection: after the first connection NNG's dialer redials on its own when a connection
//! drops, and a request whose connection dropped before the reply is resent by REQ on the new
//! connection, so a request may run twice across a server restart; a request that gets no reply
//! within `request_timeout` fails with 08006.

use std::ffi::CString;
use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anng::protocols::reqrep0::Req0;
use anng::Socket;
use tokio::sync::Semaphore;

use super::endpoint::transport;
use super::rawnng;
use super::{io_error, state_from_code};
use crate::catalog::SchemaBundle;
use crate::changes::ChangeSet;
use crate::error::{Error, Result, SqlState};
use crate::ir::protocol::{
    encode_message, ArchivedBody, ArchivedMessage, Body, Message, SESSION_REQUESTS_VERSION,
    SUPPORTED_VERSIONS,
};
use crate::ir::{Aggregate, AggregateResult, GraphFetch, GraphResult, Mutation, MutationResult};
use crate::sql::{Params, StatementResult};

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Connections (sockets) to the server; requests are spread over them.
    pub pool_size: usize,
    /// Requests in flight at once; more wait for a free slot.
    pub max_in_flight: usize,
    pub request_timeout: Duration,
    /// How long to keep redialing a server that is not up yet.
    pub connect_timeout: Duration,
    /// Protocol versions offered in the handshake (tests offer unsupported ones).
    pub versions: Vec<u32>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            pool_size: 2,
            max_in_flight: 256,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            versions: SUPPORTED_VERSIONS.to_vec(),
        }
    }
}

struct Inner {
    url: String,
    sockets: Vec<Socket<Req0>>,
    next: AtomicUsize,
    permits: Semaphore,
    opts: ClientOptions,
    version: u32,
    change_urls: Vec<String>,
    server: String,
    /// The server's request size limit, from the handshake.
    max_request: u64,
}

/// A connection pool to one `ormdb serve`. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// A reply in its received buffer; [`Reply::body`] reads it in place (zero-copy).
pub struct Reply {
    bytes: ReplyBytes,
}

enum ReplyBytes {
    Nng(anng::Message),
    Raw(rawnng::Msg),
    Assembled(Vec<u8>),
}

impl Reply {
    fn new(bytes: ReplyBytes) -> Result<Reply> {
        let r = Reply { bytes };
        let msg = crate::ir::protocol::access(r.raw())?;
        if let ArchivedBody::Error { code, message } = &msg.body {
            return Err(Error::new(state_from_code(code.as_str()), message.as_str()));
        }
        Ok(r)
    }

    /// The whole reply frame as received.
    pub fn raw(&self) -> &[u8] {
        match &self.bytes {
            ReplyBytes::Nng(m) => m.as_slice(),
            ReplyBytes::Raw(m) => m.as_slice(),
            ReplyBytes::Assembled(v) => v,
        }
    }

    /// The archived message, read in place.
    pub fn message(&self) -> &ArchivedMessage {
        // SAFETY: `Reply::new` validated these very bytes with bytecheck (`access`), and a
        // Reply never changes its buffer.
        unsafe {
            rkyv::access_unchecked::<ArchivedMessage>(
                &self.raw()[crate::ir::protocol::FRAME_HEADER..],
            )
        }
    }

    pub fn body(&self) -> &ArchivedBody {
        &self.message().body
    }

    /// Deserializes the reply into owned types.
    pub fn to_owned_body(&self) -> Result<Body> {
        rkyv::deserialize::<Body, rkyv::rancor::Error>(self.body())
            .map_err(|e| Error::new(SqlState::ProtocolViolation, format!("invalid reply: {e}")))
    }
}

fn unexpected(what: &str, got: &Body) -> Error {
    Error::new(
        SqlState::ProtocolViolation,
        format!(
            "expected {what} in reply, got {:?}",
            std::mem::discriminant(got)
        ),
    )
}

fn timeout_error(url: &str, t: Duration) -> Error {
    Error::new(
        SqlState::ConnectionDoesNotExist,
        format!("no reply from {url} within {t:?} (the server is down or overloaded)"),
    )
}

/// A tcp:// or ipc:// URL as NNG takes it; anything else is refused.
fn server_url(url: &str) -> Result<CString> {
    if !matches!(transport(url), "tcp" | "ipc") {
        return Err(Error::new(
            SqlState::FeatureNotSupported,
            format!("{url:?}: only tcp:// and ipc:// server URLs are supported"),
        ));
    }
    CString::new(url).map_err(|_| {
        Error::new(
            SqlState::InvalidParameter,
            "a server URL cannot contain NUL",
        )
    })
}

impl Client {
    pub async fn connect(url: &str) -> Result<Client> {
        Client::connect_with(url, ClientOptions::default()).await
    }

    pub async fn connect_with(url: &str, opts: ClientOptions) -> Result<Client> {
        let c_url = server_url(url)?;
        let deadline = Instant::now() + opts.connect_timeout;
        let mut sockets = Vec::new();
        for _ in 0..opts.pool_size.max(1) {
            let socket = Req0::socket().map_err(|e| io_error("opening a REQ socket", e))?;
            let mut backoff = Duration::from_millis(10);
            loop {
                match socket.dial(&c_url).await {
                    Ok(_) => break,
                    Err(e) if Instant::now() + backoff < deadline => {
                        tracing::debug!("dialing {url}: {e}; retrying in {backoff:?}");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                    Err(e) => {
                        return Err(Error::new(
                            SqlState::ConnectionDoesNotExist,
                            format!("cannot connect to {url}: {e}"),
                        ))
                    }
                }
            }
            sockets.push(socket);
        }
        let mut inner = Inner {
            url: url.to_string(),
            sockets,
            next: AtomicUsize::new(0),
            permits: Semaphore::new(opts.max_in_flight.max(1)),
            version: 1,
            change_urls: Vec::new(),
            server: String::new(),
            max_request: u64::MAX,
            opts,
        };
        // The handshake is framed as version 1, which every server reads.
        let hello = Body::Hello {
            versions: inner.opts.versions.clone(),
            client: format!("ormdb-rust {}", env!("CARGO_PKG_VERSION")),
        };
        let frame = encode_message(&Message {
            version: 1,
            body: hello,
        })?;
        let reply = roundtrip(&inner, &frame).await?.to_owned_body()?;
        match reply {
            Body::HelloOk {
                version,
                change_urls,
                server,
                max_request,
                ..
            } => {
                inner.max_request = max_request;
                inner.version = version;
                inner.change_urls = change_urls;
                inner.server = server;
            }
            other => return Err(unexpected("HelloOk", &other)),
        }
        Ok(Client {
            inner: Arc::new(inner),
        })
    }

    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The protocol version agreed in the handshake.
    pub fn protocol_version(&self) -> u32 {
        self.inner.version
    }

    pub fn server_name(&self) -> &str {
        &self.inner.server
    }

    /// The change stream URL on the same transport as this client's connection.
    pub fn change_url(&self) -> Result<String> {
        let t = transport(&self.inner.url);
        self.inner
            .change_urls
            .iter()
            .find(|u| transport(u) == t)
            .or(self.inner.change_urls.first())
            .cloned()
            .ok_or_else(|| {
                Error::new(
                    SqlState::FeatureNotSupported,
                    "the server publishes no change stream",
                )
            })
    }

    /// Sends one request and returns the reply (error replies become `Err`).
    pub async fn request(&self, body: Body) -> Result<Reply> {
        let frame = encode_message(&Message {
            version: self.inner.version,
            body,
        })?;
        self.request_raw(&frame).await
    }

    /// Sends bytes as they are (diagnostics and tests of the server's validation).
    pub async fn request_raw(&self, frame: &[u8]) -> Result<Reply> {
        if frame.len() as u64 > self.inner.max_request {
            return Err(too_large(frame.len(), self.inner.max_request));
        }
        let first = roundtrip(&self.inner, frame).await?;
        let mut chunks = match Chunks::start(first, self.inner.version)? {
            Ok(whole) => return Ok(whole),
            Err(c) => c,
        };
        while let Some(next) = chunks.next_request()? {
            let part = roundtrip(&self.inner, &next).await?;
            chunks.push(part)?;
        }
        chunks.finish()
    }

    async fn owned(&self, body: Body) -> Result<Body> {
        self.request(body).await?.to_owned_body()
    }

    /// Runs SQL in autocommit (`session` 0) or in a session from [`Client::begin`].
    pub async fn sql_in(&self, session: u64, sql: &str, params: Params) -> Result<StatementResult> {
        expect_sql(
            self.owned(Body::Sql {
                session,
                sql: sql.to_string(),
                params,
            })
            .await?,
        )
    }

    pub async fn sql(&self, sql: &str, params: Params) -> Result<StatementResult> {
        self.sql_in(0, sql, params).await
    }

    /// Prepares a statement on the server; returns its id and parameter count.
    pub async fn prepare(&self, sql: &str) -> Result<(u64, u32)> {
        expect_prepared(
            self.owned(Body::Prepare {
                sql: sql.to_string(),
            })
            .await?,
        )
    }

    pub async fn execute_prepared(
        &self,
        session: u64,
        id: u64,
        params: Params,
    ) -> Result<StatementResult> {
        expect_sql(
            self.owned(Body::ExecutePrepared {
                session,
                id,
                params,
            })
            .await?,
        )
    }

    pub async fn close_prepared(&self, id: u64) -> Result<()> {
        self.owned(Body::ClosePrepared { id }).await.map(|_| ())
    }

    /// Opens a session with a transaction; pass its id to `sql_in`, then commit or roll back.
    pub async fn begin(&self) -> Result<u64> {
        expect_session(self.owned(Body::Begin).await?)
    }

    pub async fn commit(&self, session: u64) -> Result<()> {
        self.owned(Body::Commit { session }).await.map(|_| ())
    }

    pub async fn rollback(&self, session: u64) -> Result<()> {
        self.owned(Body::Rollback { session }).await.map(|_| ())
    }

    /// A graph fetch whose result stays in the reply buffer: match `reply.body()` on
    /// `ArchivedBody::FetchResult` to read it without copying.
    pub async fn fetch_archived(&self, f: &GraphFetch) -> Result<Reply> {
        self.request(Body::Fetch(f.clone())).await
    }

    pub async fn fetch(&self, f: &GraphFetch) -> Result<GraphResult> {
        match self.owned(Body::Fetch(f.clone())).await? {
            Body::FetchResult(r) => Ok(r),
            other => Err(unexpected("FetchResult", &other)),
        }
    }

    pub async fn explain(&self, f: &GraphFetch, analyze: bool) -> Result<String> {
        match self
            .owned(Body::Explain {
                fetch: f.clone(),
                analyze,
            })
            .await?
        {
            Body::ExplainResult(r) => Ok(r),
            other => Err(unexpected("ExplainResult", &other)),
        }
    }

    pub async fn mutate(&self, m: &Mutation) -> Result<MutationResult> {
        match self.owned(Body::Mutate(m.clone())).await? {
            Body::MutationResult(r) => Ok(r),
            other => Err(unexpected("MutationResult", &other)),
        }
    }

    pub async fn aggregate(&self, a: &Aggregate) -> Result<AggregateResult> {
        match self.owned(Body::Aggregate(a.clone())).await? {
            Body::AggregateResult(r) => Ok(r),
            other => Err(unexpected("AggregateResult", &other)),
        }
    }

    /// A graph fetch in session `session` (0: at a fresh snapshot), read in place like
    /// [`Client::fetch_archived`]. Sessions see their own uncommitted writes.
    pub async fn fetch_archived_in(&self, session: u64, f: &GraphFetch) -> Result<Reply> {
        needs_sessions(self.inner.version, "a graph fetch in a session")?;
        self.request(Body::FetchIn {
            session,
            fetch: Box::new(f.clone()),
        })
        .await
    }

    pub async fn fetch_in(&self, session: u64, f: &GraphFetch) -> Result<GraphResult> {
        needs_sessions(self.inner.version, "a graph fetch in a session")?;
        expect_fetch(
            self.owned(Body::FetchIn {
                session,
                fetch: Box::new(f.clone()),
            })
            .await?,
        )
    }

    pub async fn explain_in(&self, session: u64, f: &GraphFetch, analyze: bool) -> Result<String> {
        needs_sessions(self.inner.version, "explain in a session")?;
        expect_explain(
            self.owned(Body::ExplainIn {
                session,
                fetch: Box::new(f.clone()),
                analyze,
            })
            .await?,
        )
    }

    /// A mutation batch in session `session`, committed or rolled back with it (0: commits on
    /// its own).
    pub async fn mutate_in(&self, session: u64, m: &Mutation) -> Result<MutationResult> {
        needs_sessions(self.inner.version, "a mutation in a session")?;
        expect_mutation(
            self.owned(Body::MutateIn {
                session,
                mutation: Box::new(m.clone()),
            })
            .await?,
        )
    }

    pub async fn aggregate_in(&self, session: u64, a: &Aggregate) -> Result<AggregateResult> {
        needs_sessions(self.inner.version, "an aggregate in a session")?;
        expect_aggregate(
            self.owned(Body::AggregateIn {
                session,
                aggregate: Box::new(a.clone()),
            })
            .await?,
        )
    }

    /// The catalog as session `session` sees it (0: the last committed one): its version, and
    /// the bundle unless that version is `known_version`.
    pub async fn schema(
        &self,
        session: u64,
        known_version: u64,
    ) -> Result<(u64, Option<SchemaBundle>)> {
        needs_sessions(self.inner.version, "the catalog (Schema)")?;
        expect_schema(
            self.owned(Body::Schema {
                session,
                known_version,
            })
            .await?,
        )
    }

    /// The server's Prometheus text (engine and server figures).
    pub async fn metrics(&self) -> Result<String> {
        match self.owned(Body::Metrics).await? {
            Body::MetricsText(r) => Ok(r),
            other => Err(unexpected("MetricsText", &other)),
        }
    }

    /// Change sets after `from` from the server's change log (at most `limit`), and the token up
    /// to which the log was read. `from = u64::MAX` only asks for the newest token.
    pub async fn changes(
        &self,
        from: u64,
        entities: &[String],
        limit: u32,
    ) -> Result<(Vec<ChangeSet>, u64)> {
        match self
            .owned(Body::Changes {
                from,
                entities: entities.to_vec(),
                limit,
            })
            .await?
        {
            Body::ChangeBatch { sets, position } => Ok((sets, position)),
            other => Err(unexpected("ChangeBatch", &other)),
        }
    }
}

/// A reply too large for one NNG message, being fetched piece by piece with `NextChunk`.
struct Chunks {
    id: u64,
    total: usize,
    all: Vec<u8>,
    version: u32,
}

impl Chunks {
    /// `Ok(reply)` when `first` is the whole reply, else the assembler for the rest.
    fn start(first: Reply, version: u32) -> Result<std::result::Result<Reply, Chunks>> {
        let (id, total) = match first.body() {
            ArchivedBody::Chunk { id, total, .. } => (id.to_native(), total.to_native()),
            _ => return Ok(Ok(first)),
        };
        let total = usize::try_from(total).map_err(|_| {
            Error::new(SqlState::LimitExceeded, "reply too large for this platform")
        })?;
        let mut c = Chunks {
            id,
            total,
            all: Vec::with_capacity(total),
            version,
        };
        c.push(first)?;
        Ok(Err(c))
    }

    fn push(&mut self, part: Reply) -> Result<()> {
        match part.body() {
            ArchivedBody::Chunk { offset, bytes, .. }
                if offset.to_native() as usize == self.all.len() && !bytes.is_empty() =>
            {
                self.all.extend_from_slice(bytes.as_slice());
                Ok(())
            }
            _ => Err(Error::new(
                SqlState::ProtocolViolation,
                "a chunked reply arrived out of order",
            )),
        }
    }

    /// The request for the next piece, or None when the reply is complete.
    fn next_request(&self) -> Result<Option<Vec<u8>>> {
        if self.all.len() >= self.total {
            return Ok(None);
        }
        encode_message(&Message {
            version: self.version,
            body: Body::NextChunk {
                id: self.id,
                offset: self.all.len() as u64,
            },
        })
        .map(Some)
    }

    fn finish(self) -> Result<Reply> {
        Reply::new(ReplyBytes::Assembled(self.all))
    }
}

async fn roundtrip(inner: &Inner, frame: &[u8]) -> Result<Reply> {
    let _permit = inner
        .permits
        .acquire()
        .await
        .map_err(|_| Error::internal("client closed"))?;
    let i = inner.next.fetch_add(1, Ordering::Relaxed) % inner.sockets.len();
    let mut ctx = inner.sockets[i].context();
    let mut msg = anng::Message::with_capacity(frame.len());
    msg.write_all(frame)
        .map_err(|e| io_error("building a request", e))?;
    let exchange = async {
        let reply = ctx
            .request(msg)
            .await
            .map_err(|(e, _)| io_error(&format!("sending to {}", inner.url), e))?;
        reply
            .await
            .map_err(|e| io_error(&format!("receiving from {}", inner.url), e))
    };
    let reply = tokio::time::timeout(inner.opts.request_timeout, exchange)
        .await
        .map_err(|_| timeout_error(&inner.url, inner.opts.request_timeout))??;
    Reply::new(ReplyBytes::Nng(reply))
}

/// A client whose calls block the calling thread: the request is sent and the reply received on
/// that thread through NNG's blocking calls, with no async runtime between NNG and the caller
/// (one thread wake-up per reply instead of a task wake-up on a runtime thread and then the
/// caller's). [`connect`](super::connect) uses it for SQL. Thread-safe; each call in flight
/// holds one NNG context, taken from a pool.
pub struct BlockingClient {
    url: String,
    sockets: Vec<rawnng::Socket>,
    contexts: parking_lot::Mutex<Vec<rawnng::Ctx>>,
    next: AtomicUsize,
    opts: ClientOptions,
    version: u32,
    max_request: u64,
}

impl BlockingClient {
    pub fn connect(url: &str) -> Result<BlockingClient> {
        BlockingClient::connect_with(url, ClientOptions::default())
    }

    pub fn connect_with(url: &str, opts: ClientOptions) -> Result<BlockingClient> {
        let c_url = server_url(url)?;
        let deadline = Instant::now() + opts.connect_timeout;
        let mut sockets = Vec::new();
        for _ in 0..opts.pool_size.max(1) {
            let socket = rawnng::Socket::open(rawnng::Protocol::Req)
                .map_err(|e| rawnng::io("opening a REQ socket", e))?;
            let mut backoff = Duration::from_millis(10);
            loop {
                match socket.dial(&c_url) {
                    Ok(()) => break,
                    Err(e) if Instant::now() + backoff < deadline => {
                        tracing::debug!("dialing {url}: {e}; retrying in {backoff:?}");
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                    Err(e) => {
                        return Err(Error::new(
                            SqlState::ConnectionDoesNotExist,
                            format!("cannot connect to {url}: {e}"),
                        ))
                    }
                }
            }
            sockets.push(socket);
        }
        let mut c = BlockingClient {
            url: url.to_string(),
            sockets,
            contexts: parking_lot::Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
            version: 1,
            max_request: u64::MAX,
            opts,
        };
        let hello = Body::Hello {
            versions: c.opts.versions.clone(),
            client: format!("ormdb-rust {}", env!("CARGO_PKG_VERSION")),
        };
        let frame = encode_message(&Message {
            version: 1,
            body: hello,
        })?;
        match c.roundtrip(&frame)?.to_owned_body()? {
            Body::HelloOk {
                version,
                max_request,
                ..
            } => {
                c.version = version;
                c.max_request = max_request;
            }
            other => return Err(unexpected("HelloOk", &other)),
        }
        Ok(c)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn protocol_version(&self) -> u32 {
        self.version
    }

    fn context(&self) -> Result<rawnng::Ctx> {
        if let Some(c) = self.contexts.lock().pop() {
            return Ok(c);
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.sockets.len();
        let ctx = self.sockets[i]
            .context()
            .map_err(|e| rawnng::io("opening a request context", e))?;
        ctx.set_recv_timeout(self.opts.request_timeout)
            .and_then(|_| ctx.set_send_timeout(self.opts.request_timeout))
            .map_err(|e| rawnng::io("setting the request timeout", e))?;
        Ok(ctx)
    }

    fn roundtrip(&self, frame: &[u8]) -> Result<Reply> {
        let mut ctx = self.context()?;
        let msg =
            rawnng::Msg::from_slice(frame).map_err(|e| rawnng::io("building a request", e))?;
        let reply = ctx
            .send(msg)
            .map_err(|e| (e, "sending to"))
            .and_then(|_| ctx.recv().map_err(|e| (e, "receiving from")));
        match reply {
            Ok(m) => {
                // Only a context whose exchange completed goes back: one that timed out may
                // still get the late reply.
                let mut pool = self.contexts.lock();
                if pool.len() < self.opts.max_in_flight.max(1) {
                    pool.push(ctx);
                }
                drop(pool);
                Reply::new(ReplyBytes::Raw(m))
            }
            Err((e, _)) if e.is_timeout() => {
                Err(timeout_error(&self.url, self.opts.request_timeout))
            }
            Err((e, what)) => Err(rawnng::io(&format!("{what} {}", self.url), e)),
        }
    }

    /// Sends one request and returns the reply (error replies become `Err`).
    pub fn request(&self, body: Body) -> Result<Reply> {
        let frame = encode_message(&Message {
            version: self.version,
            body,
        })?;
        self.request_raw(&frame)
    }

    /// Sends bytes as they are.
    pub fn request_raw(&self, frame: &[u8]) -> Result<Reply> {
        if frame.len() as u64 > self.max_request {
            return Err(too_large(frame.len(), self.max_request));
        }
        let first = self.roundtrip(frame)?;
        let mut chunks = match Chunks::start(first, self.version)? {
            Ok(whole) => return Ok(whole),
            Err(c) => c,
        };
        while let Some(next) = chunks.next_request()? {
            chunks.push(self.roundtrip(&next)?)?;
        }
        chunks.finish()
    }

    fn owned(&self, body: Body) -> Result<Body> {
        self.request(body)?.to_owned_body()
    }

    pub fn sql_in(&self, session: u64, sql: &str, params: Params) -> Result<StatementResult> {
        expect_sql(self.owned(Body::Sql {
            session,
            sql: sql.to_string(),
            params,
        })?)
    }

    pub fn prepare(&self, sql: &str) -> Result<(u64, u32)> {
        expect_prepared(self.owned(Body::Prepare {
            sql: sql.to_string(),
        })?)
    }

    pub fn execute_prepared(
        &self,
        session: u64,
        id: u64,
        params: Params,
    ) -> Result<StatementResult> {
        expect_sql(self.owned(Body::ExecutePrepared {
            session,
            id,
            params,
        })?)
    }

    pub fn begin(&self) -> Result<u64> {
        expect_session(self.owned(Body::Begin)?)
    }

    pub fn commit(&self, session: u64) -> Result<()> {
        self.owned(Body::Commit { session }).map(|_| ())
    }

    pub fn rollback(&self, session: u64) -> Result<()> {
        self.owned(Body::Rollback { session }).map(|_| ())
    }

    /// A graph fetch read in place from the reply (see [`Client::fetch_archived`]).
    pub fn fetch_archived(&self, f: &GraphFetch) -> Result<Reply> {
        self.request(Body::Fetch(f.clone()))
    }

    pub fn fetch(&self, f: &GraphFetch) -> Result<GraphResult> {
        match self.owned(Body::Fetch(f.clone()))? {
            Body::FetchResult(r) => Ok(r),
            other => Err(unexpected("FetchResult", &other)),
        }
    }

    pub fn mutate(&self, m: &Mutation) -> Result<MutationResult> {
        match self.owned(Body::Mutate(m.clone()))? {
            Body::MutationResult(r) => Ok(r),
            other => Err(unexpected("MutationResult", &other)),
        }
    }

    /// See [`Client::fetch_archived_in`].
    pub fn fetch_archived_in(&self, session: u64, f: &GraphFetch) -> Result<Reply> {
        needs_sessions(self.version, "a graph fetch in a session")?;
        self.request(Body::FetchIn {
            session,
            fetch: Box::new(f.clone()),
        })
    }

    pub fn fetch_in(&self, session: u64, f: &GraphFetch) -> Result<GraphResult> {
        needs_sessions(self.version, "a graph fetch in a session")?;
        expect_fetch(self.owned(Body::FetchIn {
            session,
            fetch: Box::new(f.clone()),
        })?)
    }

    pub fn explain_in(&self, session: u64, f: &GraphFetch, analyze: bool) -> Result<String> {
        needs_sessions(self.version, "explain in a session")?;
        expect_explain(self.owned(Body::ExplainIn {
            session,
            fetch: Box::new(f.clone()),
            analyze,
        })?)
    }

    pub fn mutate_in(&self, session: u64, m: &Mutation) -> Result<MutationResult> {
        needs_sessions(self.version, "a mutation in a session")?;
        expect_mutation(self.owned(Body::MutateIn {
            session,
            mutation: Box::new(m.clone()),
        })?)
    }

    pub fn aggregate_in(&self, session: u64, a: &Aggregate) -> Result<AggregateResult> {
        needs_sessions(self.version, "an aggregate in a session")?;
        expect_aggregate(self.owned(Body::AggregateIn {
            session,
            aggregate: Box::new(a.clone()),
        })?)
    }

    /// See [`Client::schema`].
    pub fn schema(&self, session: u64, known_version: u64) -> Result<(u64, Option<SchemaBundle>)> {
        needs_sessions(self.version, "the catalog (Schema)")?;
        expect_schema(self.owned(Body::Schema {
            session,
            known_version,
        })?)
    }

    /// See [`Client::changes`].
    pub fn changes(
        &self,
        from: u64,
        entities: &[String],
        limit: u32,
    ) -> Result<(Vec<ChangeSet>, u64)> {
        match self.owned(Body::Changes {
            from,
            entities: entities.to_vec(),
            limit,
        })? {
            Body::ChangeBatch { sets, position } => Ok((sets, position)),
            other => Err(unexpected("ChangeBatch", &other)),
        }
    }
}

/// Refuses a version 2 request on a connection that agreed on version 1, before sending it.
fn needs_sessions(version: u32, what: &str) -> Result<()> {
    if version < SESSION_REQUESTS_VERSION {
        return Err(Error::new(
            SqlState::FeatureNotSupported,
            format!(
                "{what} needs protocol version {SESSION_REQUESTS_VERSION}; this connection speaks version {version} (an older server): upgrade the server"
            ),
        ));
    }
    Ok(())
}

fn expect_fetch(b: Body) -> Result<GraphResult> {
    match b {
        Body::FetchResult(r) => Ok(r),
        other => Err(unexpected("FetchResult", &other)),
    }
}

fn expect_explain(b: Body) -> Result<String> {
    match b {
        Body::ExplainResult(r) => Ok(r),
        other => Err(unexpected("ExplainResult", &other)),
    }
}

fn expect_mutation(b: Body) -> Result<MutationResult> {
    match b {
        Body::MutationResult(r) => Ok(r),
        other => Err(unexpected("MutationResult", &other)),
    }
}

fn expect_aggregate(b: Body) -> Result<AggregateResult> {
    match b {
        Body::AggregateResult(r) => Ok(r),
        other => Err(unexpected("AggregateResult", &other)),
    }
}

fn expect_schema(b: Body) -> Result<(u64, Option<SchemaBundle>)> {
    match b {
        Body::SchemaResult { version, bundle } => Ok((version, bundle.map(|b| *b))),
        other => Err(unexpected("SchemaResult", &other)),
    }
}

fn too_large(len: usize, max: u64) -> Error {
    Error::new(
        SqlState::LimitExceeded,
        format!(
            "a request of {len} bytes exceeds the server's limit of {max} bytes; split the batch"
        ),
    )
}

fn expect_sql(b: Body) -> Result<StatementResult> {
    match b {
        Body::SqlResult(r) => Ok(r),
        other => Err(unexpected("SqlResult", &other)),
    }
}

fn expect_prepared(b: Body) -> Result<(u64, u32)> {
    match b {
        Body::Prepared {
            id,
            parameter_count,
        } => Ok((id, parameter_count)),
        other => Err(unexpected("Prepared", &other)),
    }
}

fn expect_session(b: Body) -> Result<u64> {
    match b {
        Body::SessionOpened { session } => Ok(session),
        other => Err(unexpected("SessionOpened", &other)),
    }
}
