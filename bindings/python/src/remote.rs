//! [`RemoteConnection`]: the same methods as [`crate::connection::NativeConnection`] over a
//! connection to `ormdb serve` (`tcp://` or `ipc://`), so the DB-API layer drives both alike.
//! Graph fetches, explains, mutations and aggregates run in the connection's server session
//! when a transaction is open (as locally); the catalog that nesting a fetch and naming change
//! fields need comes from the server (`Schema`) and is cached by version. Change streams
//! ([`RemoteSubscription`]) read whole commits from the server's change log, woken by its
//! PUB/SUB stream. What needs the engine in this process (Python callbacks called by the
//! engine) raises NotSupportedError naming the method instead of half working.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use ormdb::catalog::Schema;
use ormdb::net::{ClientOptions, SqlConnection};
use ormdb::sql::parse::split_statements;
use ormdb::{Aggregate, GraphFetch, GraphResult, Mutation, Params, SqlState, StatementResult};

use crate::errors;
use crate::values::{self, json_to_py, ExecOut};

/// Counters sqlite3 exposes on the connection; the server does not keep them per client, so
/// they are summed from the replies this connection received.
#[derive(Default)]
struct Counters {
    total_changes: i64,
    changes: i64,
    last_insert_rowid: i64,
}

struct State {
    conn: SqlConnection,
    counters: Counters,
    /// The catalog as last fetched from the server, and whether it was fetched inside a
    /// transaction (then it may hold that transaction's DDL and is dropped when it ends).
    schema: Option<(Arc<Schema>, bool)>,
}

#[pyclass(module = "ormdb._ormdb", frozen)]
pub struct RemoteConnection {
    url: String,
    timeout: Duration,
    state: Mutex<Option<State>>,
    is_closed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here panics while holding the lock except on a bug; the state stays usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn not_supported(what: &str) -> PyErr {
    errors::to_py(ormdb::Error::new(
        SqlState::FeatureNotSupported,
        format!(
            "{what} is not supported on a connection to a server (tcp:// or ipc://): \
             open the database by path to use it"
        ),
    ))
}

/// Engine errors as for a local connection, except the connection class (08xxx) and a lost
/// server session: over the network that means the server went away, timed out or expired the
/// transaction, which sqlite3 users expect as OperationalError (locally 08003 is misuse of a
/// closed connection: ProgrammingError).
fn raise(e: ormdb::Error) -> PyErr {
    // A server session that expired (idle timeout) or vanished with a restart is lost state
    // on the server's side too, not a misuse of this connection.
    let lost_session =
        e.state == SqlState::InvalidTransactionState && e.message.contains("unknown session id");
    if e.code().starts_with("08") || lost_session {
        let code = e.code();
        return Python::attach(|py| {
            use pyo3::PyTypeInfo;
            errors::with_state(
                py,
                errors::OperationalError::type_object(py),
                Some(code),
                e.message,
            )
        });
    }
    errors::to_py(e)
}

fn graph_text(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<String> {
    crate::connection::graph_json(obj, what)
}

impl RemoteConnection {
    /// Runs `f` on the connection without the GIL (network round trips can be slow).
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut State) -> ormdb::Result<T> + Send,
    ) -> PyResult<T> {
        let res = py.detach(|| {
            let mut g = lock(&self.state);
            g.as_mut().map(f)
        });
        match res {
            None => Err(errors::closed()),
            Some(r) => r.map_err(raise),
        }
    }

    fn peek<T: Send>(&self, py: Python<'_>, f: impl FnOnce(&State) -> T + Send) -> PyResult<T> {
        py.detach(|| lock(&self.state).as_ref().map(f))
            .ok_or_else(errors::closed)
    }
}

fn exec(st: &mut State, sql: &str, params: &Params) -> ormdb::Result<StatementResult> {
    let was_in_tx = st.conn.in_transaction();
    let r = st.conn.execute(sql, params);
    if was_in_tx && !st.conn.in_transaction() && matches!(st.schema, Some((_, true))) {
        st.schema = None;
    }
    let r = r?;
    st.counters.changes = r.rows_affected as i64;
    st.counters.total_changes += r.rows_affected as i64;
    if r.rows_affected > 0 && r.last_insert_rowid != 0 {
        st.counters.last_insert_rowid = r.last_insert_rowid;
    }
    Ok(r)
}

#[pymethods]
impl RemoteConnection {
    /// Connects to `url`; `timeout` (seconds) bounds connecting and every request, so a server
    /// that went away gives OperationalError instead of a hang.
    #[staticmethod]
    #[pyo3(signature = (url, timeout=5.0))]
    fn connect(py: Python<'_>, url: String, timeout: f64) -> PyResult<RemoteConnection> {
        if !timeout.is_finite() || timeout <= 0.0 {
            return Err(errors::programming(
                "timeout must be a positive number of seconds",
            ));
        }
        let t = Duration::from_secs_f64(timeout);
        let opts = ClientOptions {
            pool_size: 1,
            request_timeout: t,
            connect_timeout: t,
            ..ClientOptions::default()
        };
        let conn = py
            .detach(|| ormdb::net::connect_with(&url, opts))
            .map_err(raise)?;
        Ok(RemoteConnection {
            url,
            timeout: t,
            state: Mutex::new(Some(State {
                conn,
                counters: Counters::default(),
                schema: None,
            })),
            is_closed: AtomicBool::new(false),
        })
    }

    #[getter]
    fn url(&self) -> &str {
        &self.url
    }

    #[pyo3(signature = (sql, params=None))]
    fn execute<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<ExecOut<'py>> {
        let params = values::to_params(params)?;
        values::one_statement(sql)?;
        let r = self.run(py, |st| exec(st, sql, &params))?;
        let rowid = self.peek(py, |st| st.counters.last_insert_rowid)?;
        values::exec_out(py, &r, rowid)
    }

    fn executemany(&self, py: Python<'_>, sql: &str, seq: &Bound<'_, PyAny>) -> PyResult<u64> {
        values::one_statement(sql)?;
        let all = values::params_seq(seq)?;
        self.run(py, |st| {
            let mut total = 0u64;
            for p in &all {
                total += exec(st, sql, p)?.rows_affected;
            }
            Ok(total)
        })
    }

    fn executescript(&self, py: Python<'_>, sql: &str) -> PyResult<()> {
        let stmts = split_statements(sql);
        self.run(py, |st| {
            for s in &stmts {
                exec(st, s, &Params::default())?;
            }
            Ok(())
        })
    }

    #[getter]
    fn in_transaction(&self, py: Python<'_>) -> PyResult<bool> {
        self.peek(py, |st| st.conn.in_transaction())
    }

    #[getter]
    fn total_changes(&self, py: Python<'_>) -> PyResult<i64> {
        self.peek(py, |st| st.counters.total_changes)
    }

    #[getter]
    fn changes(&self, py: Python<'_>) -> PyResult<i64> {
        self.peek(py, |st| st.counters.changes)
    }

    #[getter]
    fn last_insert_rowid(&self, py: Python<'_>) -> PyResult<i64> {
        self.peek(py, |st| st.counters.last_insert_rowid)
    }

    #[getter]
    fn closed(&self) -> bool {
        self.is_closed.load(Ordering::Acquire)
    }

    /// Rolls back an open transaction (the server session) and drops the connection.
    /// Idempotent; a server that already went away is not an error here.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| {
            let mut g = lock(&self.state);
            self.is_closed.store(true, Ordering::Release);
            if let Some(mut st) = g.take() {
                if st.conn.in_transaction() {
                    let _ = st.conn.execute("ROLLBACK", &Params::default());
                }
            }
        });
        Ok(())
    }

    #[pyo3(signature = (name, narg, func, deterministic=false))]
    fn create_function(
        &self,
        name: &str,
        narg: i64,
        func: Option<Py<PyAny>>,
        deterministic: bool,
    ) -> PyResult<()> {
        let _ = (name, narg, func, deterministic);
        Err(not_supported(
            "create_function (the server cannot call back into this Python process)",
        ))
    }

    fn install_django_functions(&self) -> PyResult<()> {
        Err(not_supported(
            "install_django_functions on a remote connection (a session option of the server)",
        ))
    }

    fn create_aggregate(
        &self,
        name: &str,
        narg: i64,
        aggregate_class: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let _ = (name, narg, aggregate_class);
        Err(not_supported(
            "create_aggregate (the server cannot call back into this Python process)",
        ))
    }

    /// Graph fetch: nested rows (to-one relations as dict or None, to-many as lists), in the
    /// open transaction when there is one.
    fn fetch<'py>(
        &self,
        py: Python<'py>,
        graph: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (r, root, schema) = self.run_fetch(py, graph)?;
        Ok(crate::graph::nested(py, &r, &schema, &root)?.into_any())
    }

    /// Graph fetch returning {"data", "next_cursor", "stats"}.
    fn fetch_raw<'py>(
        &self,
        py: Python<'py>,
        graph: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (r, root, schema) = self.run_fetch(py, graph)?;
        let out = PyDict::new(py);
        out.set_item("data", crate::graph::nested(py, &r, &schema, &root)?)?;
        out.set_item("next_cursor", r.next_cursor.as_ref().map(|c| c.to_token()))?;
        let stats = serde_json::to_value(&r.stats).unwrap_or_default();
        out.set_item("stats", json_to_py(py, &stats)?)?;
        Ok(out.into_any())
    }

    /// A graph fetch building the caller's objects (see the local connection's
    /// `fetch_objects`), in the open transaction when there is one.
    fn fetch_objects<'py>(
        &self,
        py: Python<'py>,
        graph: &Bound<'py, PyAny>,
        plan: &Bound<'py, PyAny>,
        state_cls: &Bound<'py, PyAny>,
        db: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (r, root, schema) = self.run_fetch(py, graph)?;
        let tree = crate::graph::Tree::new(py, &r, &schema, &root);
        Ok(crate::objects::objects(py, &tree, &r.roots, plan, state_cls, db)?.into_any())
    }

    /// The relations graph fetches can include, from the server's catalog (see the local
    /// connection's `relations`).
    fn relations<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let schema = self.run(py, |st| current_schema(st, true))?;
        crate::connection::relations_list(py, &schema)
    }

    /// A change stream from now on (or after token `after`), optionally limited to entities;
    /// the same dicts as a local subscription. Resuming from a token after a reconnect (or a
    /// server restart) replays what was committed since from the server's change log.
    #[pyo3(signature = (entities=None, after=None))]
    fn subscribe(
        &self,
        py: Python<'_>,
        entities: Option<Vec<String>>,
        after: Option<u64>,
    ) -> PyResult<RemoteSubscription> {
        if self.closed() {
            return Err(errors::closed());
        }
        let (url, timeout) = (self.url.clone(), self.timeout);
        let entities = entities.unwrap_or_default();
        let opts = ClientOptions {
            pool_size: 1,
            request_timeout: timeout,
            connect_timeout: timeout,
            ..ClientOptions::default()
        };
        let inner = py
            .detach(|| ormdb::net::RemoteSubscription::open(&url, opts, entities, after))
            .map_err(raise)?;
        Ok(RemoteSubscription {
            inner: Mutex::new(Some(inner)),
        })
    }

    fn cache_stats(&self) -> PyResult<()> {
        Err(not_supported("cache_stats"))
    }

    /// The plan of a graph fetch as text, made by the server.
    #[pyo3(signature = (graph, analyze=false))]
    fn explain(&self, py: Python<'_>, graph: &Bound<'_, PyAny>, analyze: bool) -> PyResult<String> {
        let json = graph_text(graph, "graph fetch")?;
        self.run(py, |st| {
            st.conn.explain(&GraphFetch::from_json(&json)?, analyze)
        })
    }

    fn mutate<'py>(
        &self,
        py: Python<'py>,
        mutation: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let json = graph_text(mutation, "mutation")?;
        let out = self.run(py, |st| {
            let res = st.conn.mutate(&Mutation::from_json(&json)?)?;
            serde_json::to_value(&res).map_err(|e| ormdb::Error::internal(e.to_string()))
        })?;
        json_to_py(py, &out)
    }

    fn aggregate<'py>(
        &self,
        py: Python<'py>,
        aggregate: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let json = graph_text(aggregate, "aggregate")?;
        let out = self.run(py, |st| {
            let res = st.conn.aggregate(&Aggregate::from_json(&json)?)?;
            serde_json::to_value(&res).map_err(|e| ormdb::Error::internal(e.to_string()))
        })?;
        json_to_py(py, &out)
    }

    /// The server's Prometheus text (engine and server figures).
    fn metrics(&self, py: Python<'_>) -> PyResult<String> {
        self.run(py, |st| {
            let r = remote(&st.conn)?;
            r.block_on(r.client().metrics())
        })
    }
}

fn remote(c: &SqlConnection) -> ormdb::Result<&ormdb::net::RemoteSql> {
    c.remote()
        .ok_or_else(|| ormdb::Error::internal("a remote connection holds a local session"))
}

impl RemoteConnection {
    /// Runs a graph fetch in the session (or autocommit) and returns it with a catalog that
    /// knows every relation it followed.
    fn run_fetch(
        &self,
        py: Python<'_>,
        graph: &Bound<'_, PyAny>,
    ) -> PyResult<(GraphResult, String, Arc<Schema>)> {
        let json = graph_text(graph, "graph fetch")?;
        self.run(py, move |st| {
            let f = GraphFetch::from_json(&json)?;
            let r = st.conn.fetch(&f)?;
            let mut schema = current_schema(st, false)?;
            if !knows_edges(&schema, &r) {
                // Cached before the relation existed (DDL since, here or elsewhere).
                schema = current_schema(st, true)?;
            }
            Ok((r, f.root, schema))
        })
    }
}

/// Whether `schema` names every relation the fetch result followed.
fn knows_edges(schema: &Schema, r: &GraphResult) -> bool {
    if r.edges.is_empty() {
        return true;
    }
    r.edges.iter().all(|e| {
        schema
            .relations_of(&e.parent_entity)
            .any(|rel| rel.name.eq_ignore_ascii_case(&e.relation))
    })
}

/// The catalog as the connection sees it: the cached one, or (when `refresh` or none is
/// cached) the server's, sent only when its version differs from the cached one.
fn current_schema(st: &mut State, refresh: bool) -> ormdb::Result<Arc<Schema>> {
    if let (Some((b, _)), false) = (&st.schema, refresh) {
        return Ok(b.clone());
    }
    let r = remote(&st.conn)?;
    let session = r.session();
    let known = st
        .schema
        .as_ref()
        .map_or(u64::MAX, |(s, _)| s.bundle.version);
    let (_, fresh) = r.blocking().schema(session, known)?;
    if let Some(b) = fresh {
        st.schema = Some((Arc::new(Schema::new(b)), session != 0));
    }
    st.schema
        .as_ref()
        .map(|(b, _)| b.clone())
        .ok_or_else(|| ormdb::Error::internal("the server left out a schema this client lacks"))
}

/// How long one wait of `next` lasts before it checks for Ctrl-C (and the timeout).
const POLL: Duration = Duration::from_millis(200);

#[pyclass(module = "ormdb._ormdb", frozen)]
pub struct RemoteSubscription {
    inner: Mutex<Option<ormdb::net::RemoteSubscription>>,
}

fn sub_closed() -> PyErr {
    errors::programming("Cannot operate on a closed subscription.")
}

#[pymethods]
impl RemoteSubscription {
    /// The next change set as a dict, waiting up to `timeout` seconds (None: until one
    /// arrives, still answering Ctrl-C); None when the timeout passed.
    #[pyo3(signature = (timeout=None))]
    fn next<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        if let Some(t) = timeout {
            if !t.is_finite() || t < 0.0 {
                return Err(errors::programming(
                    "timeout must be a non-negative number of seconds",
                ));
            }
        }
        let mut left = timeout.map(Duration::from_secs_f64);
        loop {
            let wait = left.map_or(POLL, |l| l.min(POLL));
            let res = py.detach(|| {
                let mut g = lock(&self.inner);
                let st = g.as_mut().ok_or(None)?;
                match st.next_timeout(wait) {
                    Ok(Some(cs)) => Ok(Some((cs, st.schema().clone()))),
                    Ok(None) => Ok(None),
                    Err(e) => Err(Some(e)),
                }
            });
            match res {
                Err(None) => return Err(sub_closed()),
                Err(Some(e)) => return Err(raise(e)),
                Ok(Some((cs, schema))) => {
                    return Ok(Some(crate::connection::change_to_py(py, &schema, &cs)?))
                }
                Ok(None) => {
                    py.check_signals()?;
                    if let Some(l) = left.as_mut() {
                        *l = l.saturating_sub(wait);
                        if l.is_zero() {
                            return Ok(None);
                        }
                    }
                }
            }
        }
    }

    /// The token of the last change delivered; `subscribe(after=position)` resumes after it.
    #[getter]
    fn position(&self) -> PyResult<u64> {
        lock(&self.inner)
            .as_ref()
            .map(|s| s.position())
            .ok_or_else(sub_closed)
    }

    fn close(&self, py: Python<'_>) {
        // Dropping it stops its runtime and waits for its thread: not under the GIL.
        let st = lock(&self.inner).take();
        py.detach(move || drop(st));
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.next(py, None)
    }
}
