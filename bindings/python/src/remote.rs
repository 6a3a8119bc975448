//! [`RemoteConnection`]: the same methods as [`crate::connection::NativeConnection`] over a
//! connection to `ormdb serve` (`tcp://` or `ipc://`), so the DB-API layer drives both alike.
//! What needs the engine in this process (Python callbacks called by the engine, change streams
//! read from the local change log, result shaping that needs the catalog) raises
//! NotSupportedError naming the method instead of half working.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pyo3::prelude::*;

use ormdb::net::{ClientOptions, SqlConnection};
use ormdb::sql::parse::split_statements;
use ormdb::{Aggregate, GraphFetch, Mutation, Params, SqlState, StatementResult};

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
}

#[pyclass(module = "ormdb._ormdb", frozen)]
pub struct RemoteConnection {
    url: String,
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

/// Engine errors as for a local connection, except the connection class (08xxx): over the
/// network that means the server went away or timed out, which sqlite3 users expect as
/// OperationalError (locally 08003 is misuse of a closed connection: ProgrammingError).
fn raise(e: ormdb::Error) -> PyErr {
    if e.code().starts_with("08") {
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
    let r = st.conn.execute(sql, params)?;
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
            state: Mutex::new(Some(State {
                conn,
                counters: Counters::default(),
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

    fn fetch(&self, graph: &Bound<'_, PyAny>) -> PyResult<()> {
        let _ = graph;
        Err(not_supported(
            "fetch (nesting the result needs the catalog, which the protocol does not carry yet)",
        ))
    }

    fn fetch_raw(&self, graph: &Bound<'_, PyAny>) -> PyResult<()> {
        self.fetch(graph)
    }

    fn fetch_objects(
        &self,
        graph: &Bound<'_, PyAny>,
        plan: &Bound<'_, PyAny>,
        state_cls: &Bound<'_, PyAny>,
        db: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let _ = (graph, plan, state_cls, db);
        Err(not_supported(
            "fetch_objects (building the objects needs the catalog, which the protocol does not carry yet)",
        ))
    }

    fn relations(&self) -> PyResult<()> {
        Err(not_supported("relations"))
    }

    #[pyo3(signature = (entities=None, after=None))]
    fn subscribe(&self, entities: Option<Vec<String>>, after: Option<u64>) -> PyResult<()> {
        let _ = (entities, after);
        Err(not_supported("subscribe"))
    }

    fn cache_stats(&self) -> PyResult<()> {
        Err(not_supported("cache_stats"))
    }

    /// The plan of a graph fetch as text, made by the server.
    #[pyo3(signature = (graph, analyze=false))]
    fn explain(&self, py: Python<'_>, graph: &Bound<'_, PyAny>, analyze: bool) -> PyResult<String> {
        let json = graph_text(graph, "graph fetch")?;
        self.run(py, |st| {
            let f = GraphFetch::from_json(&json)?;
            let r = remote(&st.conn)?;
            r.block_on(r.client().explain(&f, analyze))
        })
    }

    fn mutate<'py>(
        &self,
        py: Python<'py>,
        mutation: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let json = graph_text(mutation, "mutation")?;
        let out = self.run(py, |st| {
            let m = Mutation::from_json(&json)?;
            let r = remote(&st.conn)?;
            let res = r.block_on(r.client().mutate(&m))?;
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
            let a = Aggregate::from_json(&json)?;
            let r = remote(&st.conn)?;
            let res = r.block_on(r.client().aggregate(&a))?;
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
