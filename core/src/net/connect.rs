//! One entry point for a path or a server URL: [`connect`] returns a [`SqlConnection`] that runs
//! SQL, graph fetches, explains, mutations and aggregates in process (a path) or through
//! `ormdb serve` (`tcp://` or `ipc://`), with the same transaction behaviour: BEGIN / COMMIT /
//! ROLLBACK sent to a remote connection open and close a server session, and every request in
//! between runs in it (seeing its uncommitted writes; a mutation is part of its transaction).
//! As in SQLite, a SAVEPOINT outside a transaction starts one, which releasing that savepoint
//! commits.

use crate::api::{Database, Options};
use crate::catalog::SchemaBundle;
use crate::error::{Error, Result, SqlState};
use crate::ir::{Aggregate, AggregateResult, GraphFetch, GraphResult, Mutation, MutationResult};
use crate::sql::{Params, Session, StatementResult};

use super::client::{BlockingClient, Client, ClientOptions};

pub enum SqlConnection {
    Local(Box<Session>),
    Remote(RemoteSql),
}

pub struct RemoteSql {
    rt: tokio::runtime::Runtime,
    client: Client,
    /// SQL and transactions go through the blocking client: a statement is a round trip on
    /// the caller's thread, without the runtime in between.
    sql: Box<BlockingClient>,
    session: u64,
    /// The savepoints open in the session, oldest first (names unquoted and ASCII folded, as
    /// the server's `Session` compares them), and whether the first of them started the
    /// transaction: the server session was opened with BEGIN, so the client knows that
    /// releasing it ends the transaction (and the session) and the server does not.
    savepoints: Vec<String>,
    begun_by_savepoint: bool,
}

/// Opens `target`: `tcp://host:port` or `ipc:///path` connect to a server, anything else is a
/// database directory opened in process.
pub fn connect(target: &str) -> Result<SqlConnection> {
    connect_with(target, ClientOptions::default())
}

/// [`connect`] with the client's pool size and timeouts for a URL (ignored for a path).
pub fn connect_with(target: &str, opts: ClientOptions) -> Result<SqlConnection> {
    if target.starts_with("tcp://") || target.starts_with("ipc://") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| super::io_error("starting the client runtime", e))?;
        let sql = Box::new(BlockingClient::connect_with(target, opts.clone())?);
        let client = rt.block_on(Client::connect_with(target, opts))?;
        return Ok(SqlConnection::Remote(RemoteSql {
            rt,
            client,
            sql,
            session: 0,
            savepoints: Vec::new(),
            begun_by_savepoint: false,
        }));
    }
    if target.contains("://") {
        return Err(Error::new(
            SqlState::FeatureNotSupported,
            format!("{target:?}: only tcp:// and ipc:// URLs, or a path, are supported"),
        ));
    }
    let db = Database::open(target, Options::default())?;
    Ok(SqlConnection::Local(Box::new(db.connect().sql())))
}

enum TxVerb {
    Begin,
    Commit,
    Rollback,
    Savepoint(String),
    Release(String),
    RollbackTo(String),
}

/// A savepoint name as the server's `Session` compares it: unquoted, ASCII case folded.
fn savepoint_name(word: &str) -> String {
    let w = word.trim();
    let unquoted = match (w.chars().next(), w.chars().last()) {
        (Some('"'), Some('"')) | (Some('`'), Some('`')) | (Some('\''), Some('\''))
            if w.len() >= 2 =>
        {
            &w[1..w.len() - 1]
        }
        (Some('['), Some(']')) => &w[1..w.len() - 1],
        _ => w,
    };
    unquoted.to_ascii_lowercase()
}

fn tx_verb(sql: &str) -> Option<TxVerb> {
    let raw: Vec<&str> = sql
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .collect();
    let words: Vec<String> = raw.iter().map(|w| w.to_ascii_uppercase()).collect();
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["SAVEPOINT", _] => return Some(TxVerb::Savepoint(savepoint_name(raw[1]))),
        ["RELEASE", _] => return Some(TxVerb::Release(savepoint_name(raw[1]))),
        ["RELEASE", "SAVEPOINT", _] => return Some(TxVerb::Release(savepoint_name(raw[2]))),
        ["ROLLBACK", "TO", _] => return Some(TxVerb::RollbackTo(savepoint_name(raw[2]))),
        ["ROLLBACK", "TO", "SAVEPOINT", _] | ["ROLLBACK", "TRANSACTION", "TO", _] => {
            return Some(TxVerb::RollbackTo(savepoint_name(raw[3])))
        }
        ["ROLLBACK", "TRANSACTION", "TO", "SAVEPOINT", _] => {
            return Some(TxVerb::RollbackTo(savepoint_name(raw[4])))
        }
        _ => {}
    }
    match w.as_slice() {
        ["BEGIN"]
        | ["BEGIN", "TRANSACTION"]
        | ["BEGIN", "DEFERRED" | "IMMEDIATE" | "EXCLUSIVE"]
        | ["BEGIN", "DEFERRED" | "IMMEDIATE" | "EXCLUSIVE", "TRANSACTION"] => Some(TxVerb::Begin),
        ["COMMIT"] | ["END"] | ["COMMIT" | "END", "TRANSACTION"] => Some(TxVerb::Commit),
        ["ROLLBACK"] | ["ROLLBACK", "TRANSACTION"] => Some(TxVerb::Rollback),
        _ => None,
    }
}

impl SqlConnection {
    pub fn remote(&self) -> Option<&RemoteSql> {
        match self {
            SqlConnection::Remote(r) => Some(r),
            SqlConnection::Local(_) => None,
        }
    }

    pub fn is_remote(&self) -> bool {
        matches!(self, SqlConnection::Remote(_))
    }

    pub fn in_transaction(&self) -> bool {
        match self {
            SqlConnection::Local(s) => s.in_transaction(),
            SqlConnection::Remote(r) => r.session != 0,
        }
    }

    pub fn execute(&mut self, sql: &str, params: &Params) -> Result<StatementResult> {
        let r = match self {
            SqlConnection::Local(s) => return s.execute(sql, params),
            SqlConnection::Remote(r) => r,
        };
        match tx_verb(sql) {
            Some(TxVerb::Begin) => {
                if r.session != 0 {
                    return Err(Error::new(
                        SqlState::InvalidTransactionState,
                        "cannot start a transaction within a transaction",
                    ));
                }
                r.session = r.sql.begin()?;
                r.savepoints.clear();
                r.begun_by_savepoint = false;
                Ok(StatementResult::default())
            }
            Some(TxVerb::Commit) | Some(TxVerb::Rollback) if r.session == 0 => Err(Error::new(
                SqlState::InvalidTransactionState,
                "cannot commit or roll back: no transaction is active",
            )),
            Some(TxVerb::Commit) => {
                let s = std::mem::take(&mut r.session);
                r.savepoints.clear();
                r.sql.commit(s)?;
                Ok(StatementResult::default())
            }
            Some(TxVerb::Rollback) => {
                let s = std::mem::take(&mut r.session);
                r.savepoints.clear();
                match r.sql.rollback(s) {
                    // The server already rolled it back (idle timeout, restart): done.
                    Err(e) if e.state == SqlState::InvalidTransactionState => {
                        Ok(StatementResult::default())
                    }
                    other => other.map(|_| StatementResult::default()),
                }
            }
            Some(TxVerb::Savepoint(name)) => {
                let begins = r.session == 0;
                if begins {
                    r.session = r.sql.begin()?;
                    r.savepoints.clear();
                    r.begun_by_savepoint = true;
                }
                match r.sql.sql_in(r.session, sql, params.clone()) {
                    Ok(res) => {
                        r.savepoints.push(name);
                        Ok(res)
                    }
                    Err(e) => {
                        if begins {
                            let _ = r.sql.rollback(std::mem::take(&mut r.session));
                        }
                        Err(e)
                    }
                }
            }
            Some(TxVerb::Release(name)) if r.session != 0 => {
                let res = r.sql.sql_in(r.session, sql, params.clone())?;
                // RELEASE takes the newest savepoint of that name and every one after it;
                // releasing the one that started the transaction commits it.
                if let Some(at) = r.savepoints.iter().rposition(|n| *n == name) {
                    r.savepoints.truncate(at);
                    if r.savepoints.is_empty() && r.begun_by_savepoint {
                        r.sql.commit(std::mem::take(&mut r.session))?;
                    }
                }
                Ok(res)
            }
            Some(TxVerb::RollbackTo(name)) if r.session != 0 => {
                let res = r.sql.sql_in(r.session, sql, params.clone())?;
                // The savepoint itself stays; the ones after it are gone.
                if let Some(at) = r.savepoints.iter().rposition(|n| *n == name) {
                    r.savepoints.truncate(at + 1);
                }
                Ok(res)
            }
            Some(TxVerb::Release(_) | TxVerb::RollbackTo(_)) | None => {
                r.sql.sql_in(r.session, sql, params.clone())
            }
        }
    }
}

impl SqlConnection {
    /// A graph fetch: in the open transaction (its own writes visible) or at a fresh snapshot.
    pub fn fetch(&mut self, f: &GraphFetch) -> Result<GraphResult> {
        match self {
            SqlConnection::Local(s) => s.fetch(f),
            SqlConnection::Remote(r) => r.sql.fetch_in(r.session, f),
        }
    }

    /// The plan of a fetch as text (with `analyze`, run and measured).
    pub fn explain(&mut self, f: &GraphFetch, analyze: bool) -> Result<String> {
        match self {
            SqlConnection::Local(s) => Ok(s.explain(f, analyze)?.text),
            SqlConnection::Remote(r) => r.sql.explain_in(r.session, f, analyze),
        }
    }

    /// A mutation batch: part of the open transaction, or committed on its own.
    pub fn mutate(&mut self, m: &Mutation) -> Result<MutationResult> {
        match self {
            SqlConnection::Local(s) => s.mutate(m),
            SqlConnection::Remote(r) => r.sql.mutate_in(r.session, m),
        }
    }

    pub fn aggregate(&mut self, a: &Aggregate) -> Result<AggregateResult> {
        match self {
            SqlConnection::Local(s) => s.aggregate(a),
            SqlConnection::Remote(r) => r.sql.aggregate_in(r.session, a),
        }
    }

    /// The catalog this connection sees (the open transaction's, its DDL included).
    pub fn schema(&mut self) -> Result<SchemaBundle> {
        match self {
            SqlConnection::Local(s) => Ok(s.schema()),
            SqlConnection::Remote(r) => r
                .sql
                .schema(r.session, u64::MAX)?
                .1
                .ok_or_else(|| Error::internal("the server left out a schema nobody had")),
        }
    }
}

impl RemoteSql {
    /// The blocking client SQL and session requests go through.
    pub fn blocking(&self) -> &BlockingClient {
        &self.sql
    }

    /// The server session of the open transaction (0: none).
    pub fn session(&self) -> u64 {
        self.session
    }

    /// The connection pool, for requests outside any transaction session (graph fetch,
    /// explain, metrics); run them with [`RemoteSql::block_on`].
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Waits for `f` on this connection's runtime (the client's sockets live there).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

impl Drop for RemoteSql {
    fn drop(&mut self) {
        if self.session != 0 {
            // Best effort: the server's idle timeout rolls it back anyway.
            let _ = self.sql.rollback(self.session);
        }
    }
}
