//! One request in, one reply out. Synchronous (the engine is): the server calls it on the
//! request thread that received the request. The reply is always a framed message: a result, or an
//! `Error` with a SQLSTATE, never silence.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::metrics::ServerMetrics;
use super::sessions::{rollback, Sessions};
use crate::api::Database;
use crate::changes::SubscriptionFilter;
use crate::error::{Error, Result, SqlState};
use crate::ir::protocol::{
    access, encode_message, Body, Message, PROTOCOL_VERSION, SUPPORTED_VERSIONS,
};
use crate::sql::session::PreparedStatement;
use crate::sql::{Session, StatementResult};

/// Largest change replay one request returns; the client asks again from the new position.
const MAX_REPLAY: u32 = 10_000;
/// Prepared statements the server keeps (clients close theirs with `ClosePrepared`).
const MAX_PREPARED: usize = 100_000;
/// A chunked reply nobody fetched for this long is dropped.
const CHUNK_TTL: Duration = Duration::from_secs(60);
/// Room for a chunk message's own framing.
const CHUNK_OVERHEAD: usize = 1024;

pub struct Shared {
    pub db: Database,
    pub sessions: Sessions,
    pub metrics: ServerMetrics,
    pub change_urls: Vec<String>,
    pub max_request_bytes: usize,
    /// Replies above this size go out in chunks of `chunk_data` bytes.
    reply_chunk: usize,
    chunk_data: usize,
    prepared: Mutex<HashMap<u64, Arc<PreparedStatement>>>,
    next_id: AtomicU64,
    /// Autocommit SQL sessions, reused so their statement caches stay warm.
    pool: Mutex<Vec<Session>>,
    chunks: Mutex<HashMap<u64, PendingReply>>,
}

/// A chunked reply being fetched: the whole frame and when it was produced.
type PendingReply = (Arc<Vec<u8>>, Instant);

impl Shared {
    pub fn new(
        db: Database,
        change_urls: Vec<String>,
        max_request_bytes: usize,
        reply_chunk: usize,
    ) -> Shared {
        let reply_chunk = reply_chunk.max(4 * CHUNK_OVERHEAD);
        Shared {
            db,
            sessions: Sessions::new(),
            metrics: ServerMetrics::default(),
            change_urls,
            max_request_bytes,
            reply_chunk,
            chunk_data: reply_chunk - CHUNK_OVERHEAD,
            prepared: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            pool: Mutex::new(Vec::new()),
            chunks: Mutex::new(HashMap::new()),
        }
    }

    /// A prepared statement by id.
    pub fn prepared(&self, id: u64) -> Option<Arc<PreparedStatement>> {
        self.prepared.lock().get(&id).cloned()
    }

    /// Drops chunked replies nobody came back for.
    pub fn expire_chunks(&self) {
        let now = Instant::now();
        self.chunks
            .lock()
            .retain(|_, (_, at)| now.duration_since(*at) < CHUNK_TTL);
    }

    pub fn metrics_text(&self) -> String {
        let mut s = self.db.metrics_text();
        s.push_str(&self.metrics.render(self.sessions.len()));
        s
    }
}

/// Answers one request; the returned bytes are the whole reply frame. The caller records the
/// request's latency ([`ServerMetrics::observe_latency`]) once the reply is
/// sent: under durability `full` that may be after a deferred commit is synced.
pub fn handle(shared: &Shared, request: &[u8]) -> Vec<u8> {
    let body = match dispatch(shared, request) {
        Ok(b) => b,
        Err(e) => {
            shared
                .metrics
                .request_errors
                .fetch_add(1, Ordering::Relaxed);
            error_body(&e)
        }
    };
    let mut bytes = encode_reply(body);
    if bytes.len() > shared.reply_chunk {
        bytes = first_chunk(shared, bytes);
    }
    shared.metrics.requests.fetch_add(1, Ordering::Relaxed);
    bytes
}

pub fn error_body(e: &Error) -> Body {
    Body::Error {
        code: e.code().to_string(),
        message: e.message.clone(),
    }
}

pub fn encode_reply(body: Body) -> Vec<u8> {
    let msg = Message {
        version: PROTOCOL_VERSION,
        body,
    };
    match encode_message(&msg) {
        Ok(b) => b,
        // Serializing our own reply cannot fail short of a bug; say so rather than hang.
        Err(e) => encode_message(&Message {
            version: PROTOCOL_VERSION,
            body: error_body(&e),
        })
        .unwrap_or_default(),
    }
}

fn first_chunk(shared: &Shared, bytes: Vec<u8>) -> Vec<u8> {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let all = Arc::new(bytes);
    let reply = encode_reply(chunk_body(id, &all, 0, shared.chunk_data));
    shared.chunks.lock().insert(id, (all, Instant::now()));
    reply
}

fn chunk_body(id: u64, all: &[u8], offset: usize, size: usize) -> Body {
    let end = (offset + size).min(all.len());
    Body::Chunk {
        id,
        total: all.len() as u64,
        offset: offset as u64,
        bytes: all[offset..end].to_vec(),
    }
}

fn dispatch(shared: &Shared, request: &[u8]) -> Result<Body> {
    if request.len() > shared.max_request_bytes {
        shared.metrics.bad_frames.fetch_add(1, Ordering::Relaxed);
        return Err(Error::new(
            SqlState::LimitExceeded,
            format!(
                "request of {} bytes exceeds the server's limit of {} bytes",
                request.len(),
                shared.max_request_bytes
            ),
        ));
    }
    let archived = access(request).inspect_err(|_| {
        shared.metrics.bad_frames.fetch_add(1, Ordering::Relaxed);
    })?;
    let msg: Message = rkyv::deserialize::<Message, rkyv::rancor::Error>(archived)
        .map_err(|e| Error::new(SqlState::ProtocolViolation, format!("invalid message: {e}")))?;
    if msg.body.min_version() > msg.version {
        shared.metrics.bad_frames.fetch_add(1, Ordering::Relaxed);
        return Err(Error::new(
            SqlState::ProtocolViolation,
            format!(
                "{} needs protocol version {} or later; this message is framed as version {}",
                body_name(&msg.body),
                msg.body.min_version(),
                msg.version
            ),
        ));
    }
    let db = &shared.db;
    Ok(match msg.body {
        Body::Hello { versions, client } => {
            let common = versions
                .iter()
                .copied()
                .filter(|v| SUPPORTED_VERSIONS.contains(v))
                .max();
            match common {
                Some(version) => {
                    tracing::debug!(client, version, "handshake");
                    Body::HelloOk {
                        version,
                        supported: SUPPORTED_VERSIONS.to_vec(),
                        server: format!("ormdb {}", env!("CARGO_PKG_VERSION")),
                        change_urls: shared.change_urls.clone(),
                        max_request: shared.max_request_bytes as u64,
                    }
                }
                None => {
                    shared.metrics.bad_frames.fetch_add(1, Ordering::Relaxed);
                    return Err(Error::new(
                        SqlState::ProtocolViolation,
                        format!(
                            "no common protocol version: the client speaks {versions:?}, this server supports {SUPPORTED_VERSIONS:?}"
                        ),
                    ));
                }
            }
        }
        Body::Sql {
            session,
            sql,
            params,
        } => Body::SqlResult(run_sql(shared, session, |s| s.execute(&sql, &params))?),
        Body::Prepare { sql } => {
            let stmt = with_pooled(shared, |s| s.prepare(&sql))?;
            let mut map = shared.prepared.lock();
            if map.len() >= MAX_PREPARED {
                return Err(Error::new(
                    SqlState::LimitExceeded,
                    format!("the server holds {MAX_PREPARED} prepared statements; close some with ClosePrepared"),
                ));
            }
            let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
            let parameter_count = stmt.parameter_count as u32;
            map.insert(id, Arc::new(stmt));
            Body::Prepared {
                id,
                parameter_count,
            }
        }
        Body::ExecutePrepared {
            session,
            id,
            params,
        } => {
            let stmt = shared.prepared.lock().get(&id).cloned().ok_or_else(|| {
                Error::new(
                    SqlState::InvalidParameter,
                    format!("unknown prepared statement id {id}"),
                )
            })?;
            Body::SqlResult(run_sql(shared, session, |s| {
                s.execute_prepared(&stmt, &params)
            })?)
        }
        Body::ClosePrepared { id } => {
            shared.prepared.lock().remove(&id);
            Body::Done
        }
        Body::Begin => {
            let mut s = server_session(db, false);
            s.execute_batch("BEGIN")?;
            shared
                .metrics
                .sessions_opened
                .fetch_add(1, Ordering::Relaxed);
            Body::SessionOpened {
                session: shared.sessions.insert(s),
            }
        }
        Body::Commit { session } => {
            let entry = shared.sessions.remove(session)?;
            let mut s = entry.session.lock();
            if s.in_transaction() {
                s.execute_batch("COMMIT")?;
            }
            Body::Done
        }
        Body::Rollback { session } => {
            let entry = shared.sessions.remove(session)?;
            rollback(&mut entry.session.lock());
            Body::Done
        }
        Body::Fetch(f) => Body::FetchResult(db.connect().fetch(&f)?),
        Body::Explain { fetch, analyze } => {
            Body::ExplainResult(db.connect().explain(&fetch, analyze)?.text)
        }
        Body::Mutate(m) => Body::MutationResult(db.connect().mutate(&m)?),
        Body::Aggregate(a) => Body::AggregateResult(db.connect().aggregate(&a)?),
        Body::FetchIn { session, fetch } => {
            Body::FetchResult(in_session(shared, session, |s| s.fetch(&fetch))?)
        }
        Body::ExplainIn {
            session,
            fetch,
            analyze,
        } => Body::ExplainResult(in_session(shared, session, |s| s.explain(&fetch, analyze))?.text),
        Body::MutateIn { session, mutation } => {
            Body::MutationResult(in_session(shared, session, |s| s.mutate(&mutation))?)
        }
        Body::AggregateIn { session, aggregate } => {
            Body::AggregateResult(in_session(shared, session, |s| s.aggregate(&aggregate))?)
        }
        Body::Schema {
            session,
            known_version,
        } => {
            let bundle = in_session(shared, session, |s| Ok(s.schema()))?;
            Body::SchemaResult {
                version: bundle.version,
                bundle: (bundle.version != known_version).then(|| Box::new(bundle)),
            }
        }
        Body::Metrics => Body::MetricsText(shared.metrics_text()),
        Body::Changes {
            from,
            entities,
            limit,
        } => {
            if from == u64::MAX {
                // A position query: where the change log ends now.
                return Ok(Body::ChangeBatch {
                    sets: Vec::new(),
                    position: db.last_commit(),
                });
            }
            shared
                .metrics
                .change_replays
                .fetch_add(1, Ordering::Relaxed);
            let limit = limit.clamp(1, MAX_REPLAY) as usize;
            let mut sub = db.subscribe(Some(from), SubscriptionFilter { entities })?;
            let mut sets = Vec::new();
            while sets.len() < limit {
                match sub.try_next()? {
                    Some(cs) => sets.push(cs),
                    None => break,
                }
            }
            let position = if sets.len() == limit {
                sets.last().map_or(from, |c| c.token)
            } else {
                sub.position()
            };
            Body::ChangeBatch { sets, position }
        }
        Body::NextChunk { id, offset } => {
            let mut chunks = shared.chunks.lock();
            let (all, _) = chunks.get(&id).cloned().ok_or_else(|| {
                Error::new(
                    SqlState::InvalidParameter,
                    format!("unknown or expired reply chunk id {id}"),
                )
            })?;
            let offset = usize::try_from(offset)
                .ok()
                .filter(|o| *o < all.len())
                .ok_or_else(|| {
                    Error::new(
                        SqlState::InvalidParameter,
                        format!(
                            "chunk offset {offset} is past the reply's {} bytes",
                            all.len()
                        ),
                    )
                })?;
            if offset + shared.chunk_data >= all.len() {
                chunks.remove(&id);
            }
            drop(chunks);
            chunk_body(id, &all, offset, shared.chunk_data)
        }
        other => {
            return Err(Error::new(
                SqlState::ProtocolViolation,
                format!("{} is a reply, not a request", body_name(&other)),
            ))
        }
    })
}

fn body_name(b: &Body) -> &'static str {
    match b {
        Body::FetchResult(_) => "FetchResult",
        Body::ExplainResult(_) => "ExplainResult",
        Body::MutationResult(_) => "MutationResult",
        Body::AggregateResult(_) => "AggregateResult",
        Body::Error { .. } => "Error",
        Body::HelloOk { .. } => "HelloOk",
        Body::SqlResult(_) => "SqlResult",
        Body::Prepared { .. } => "Prepared",
        Body::SessionOpened { .. } => "SessionOpened",
        Body::Done => "Done",
        Body::MetricsText(_) => "MetricsText",
        Body::ChangeBatch { .. } => "ChangeBatch",
        Body::Change(_) => "Change",
        Body::Chunk { .. } => "Chunk",
        Body::SchemaResult { .. } => "SchemaResult",
        Body::FetchIn { .. } => "FetchIn",
        Body::ExplainIn { .. } => "ExplainIn",
        Body::MutateIn { .. } => "MutateIn",
        Body::AggregateIn { .. } => "AggregateIn",
        Body::Schema { .. } => "Schema",
        _ => "this message",
    }
}

/// Runs SQL in the named session, or in a pooled autocommit session for session 0.
fn run_sql(
    shared: &Shared,
    session: u64,
    f: impl FnOnce(&mut Session) -> Result<StatementResult>,
) -> Result<StatementResult> {
    if session != 0 {
        return in_session(shared, session, f);
    }
    with_pooled(shared, |s| {
        let r = f(s);
        if s.in_transaction() {
            // A BEGIN sent without a session would leave a transaction in a pooled session that
            // the next request would silently join.
            rollback(s);
            return Err(Error::new(
                SqlState::InvalidTransactionState,
                "a transaction that spans requests needs a session: send Begin and pass its session id",
            ));
        }
        r
    })
}

/// Runs a graph request in the named session (at its transaction's snapshot, its own writes
/// included, and for a mutation as part of its transaction), or for session 0 in a pooled
/// autocommit session: reads at a fresh snapshot, a mutation commits on its own.
fn in_session<T>(
    shared: &Shared,
    session: u64,
    f: impl FnOnce(&mut Session) -> Result<T>,
) -> Result<T> {
    if session != 0 {
        let entry = shared.sessions.get(session)?;
        let mut s = entry.session.lock();
        let r = f(&mut s);
        entry.touch();
        return r;
    }
    with_pooled(shared, f)
}

/// A SQL session for requests: the database's, with the native REGEXP (a remote client
/// cannot register Python functions, and SQLAlchemy's and Django's REGEXP need one). A pooled
/// one serves any client's autocommit requests, so it refuses connection state (see
/// [`Session::set_request_scoped`]): one client's `PRAGMA foreign_keys = OFF` must not reach
/// the next client's statements.
fn server_session(db: &Database, pooled: bool) -> Session {
    let mut s = db.connect().sql();
    s.install_native_regexp();
    s.set_request_scoped(pooled);
    s
}

fn with_pooled<T>(shared: &Shared, f: impl FnOnce(&mut Session) -> Result<T>) -> Result<T> {
    let pooled = shared.pool.lock().pop();
    let mut s = pooled.unwrap_or_else(|| server_session(&shared.db, true));
    // The counters SQL reads (last_insert_rowid(), changes(), total_changes()) and every reply
    // carries are this request's, not those of whichever client used the session before.
    s.reset_counters();
    let r = f(&mut s);
    let mut pool = shared.pool.lock();
    if pool.len() < 64 {
        pool.push(s);
    }
    r
}
