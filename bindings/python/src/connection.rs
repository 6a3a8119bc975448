//! Native handles: [`NativeDatabase`] (an open database), [`NativeConnection`] (one SQL session
//! plus the native graph API) and [`NativeSubscription`] (a change stream). Engine work runs with
//! the GIL released; each connection's session sits behind a mutex so concurrent use from
//! several threads is serialized, never undefined behaviour. Engine panics become
//! InternalError instead of unwinding into Python.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use ormdb::catalog::{RelationKind, Schema, SchemaBundle};
use ormdb::sql::{UserAggregate, UserFunction};
use ormdb::{
    Aggregate, ChangeKind, ChangeSet, Database, Durability, GraphFetch, Mutation, Options, Session,
    SqlState, Subscription, SubscriptionFilter, Value,
};

use crate::errors;
use crate::values::{self, json_to_py, ExecOut, Param};

/// Why an engine call did not produce a value.
enum Failure {
    Engine(ormdb::Error),
    Closed,
    Recursive,
    Panic(String),
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

fn guarded<T>(f: impl FnOnce() -> ormdb::Result<T>) -> Result<T, Failure> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::Engine(e)),
        Err(p) => Err(Failure::Panic(panic_message(p))),
    }
}

fn raise(f: Failure) -> PyErr {
    match f {
        Failure::Engine(e) => errors::to_py(e),
        Failure::Closed => errors::closed(),
        Failure::Recursive => errors::programming(
            "Recursive use of the connection (from a user-defined function) is not allowed",
        ),
        Failure::Panic(m) => errors::to_py(ormdb::Error::internal(format!(
            "internal error in the engine: {m}"
        ))),
    }
}

fn durability(name: &str) -> PyResult<Durability> {
    match name.to_ascii_lowercase().as_str() {
        "full" => Ok(Durability::Full),
        "normal" => Ok(Durability::Normal),
        other => Err(errors::programming(format!(
            "unknown durability {other:?}: use \"full\" or \"normal\""
        ))),
    }
}

/// An open database (a path, or a temporary one for ":memory:").
#[pyclass(module = "ormdb._ormdb", frozen)]
pub struct NativeDatabase {
    db: Database,
}

#[pymethods]
impl NativeDatabase {
    /// Opens (creating if missing) the database at `path`; `None` makes a fresh temporary
    /// database removed when its last handle closes.
    ///
    /// `cache_capacity` (sled's page cache) and `image_budget` (decoded table images) are byte
    /// limits, `value_threshold` the size above which row values and change records go to the
    /// value log (0: none), `row_head_budget` the bytes of in-memory row heads (0: none); None
    /// keeps the engine defaults. A database already open in this
    /// process keeps the settings of its first open, so different explicit values are refused.
    #[staticmethod]
    #[pyo3(signature = (path=None, durability="full", cache_capacity=None, image_budget=None, value_threshold=None, row_head_budget=None))]
    fn open(
        py: Python<'_>,
        path: Option<String>,
        durability: &str,
        cache_capacity: Option<u64>,
        image_budget: Option<u64>,
        value_threshold: Option<u64>,
        row_head_budget: Option<u64>,
    ) -> PyResult<NativeDatabase> {
        let mut opts = Options::default().durability(self::durability(durability)?);
        if let Some(b) = cache_capacity {
            opts = opts.cache_capacity(b);
        }
        if let Some(b) = image_budget {
            opts = opts.image_budget(b);
        }
        if let Some(b) = value_threshold {
            opts = opts.value_threshold(usize::try_from(b).unwrap_or(usize::MAX));
        }
        if let Some(b) = row_head_budget {
            opts = opts.row_head_budget(b);
        }
        let res = py.detach(|| {
            guarded(|| match path {
                Some(p) => Database::open(p, opts),
                None => Database::temporary_with(opts),
            })
        });
        let db = res.map_err(raise)?;
        let open = db.options();
        let clash = |name: &str, asked: Option<u64>, has: u64| match asked {
            Some(a) if a != has => Err(errors::operational(format!(
                "{name}={a} differs from {has}, the value this process opened {} with; \
                 every connection to a database in one process shares its first open's settings",
                db.path().display()
            ))),
            _ => Ok(()),
        };
        clash("cache_capacity", cache_capacity, open.cache_capacity)?;
        clash("image_budget", image_budget, open.image_budget)?;
        clash(
            "value_threshold",
            value_threshold,
            open.value_threshold as u64,
        )?;
        clash("row_head_budget", row_head_budget, open.row_head_budget)?;
        Ok(NativeDatabase { db })
    }

    fn connect(&self) -> NativeConnection {
        NativeConnection::new(self.db.clone())
    }

    #[getter]
    fn path(&self) -> String {
        self.db.path().display().to_string()
    }

    /// Engine counters in Prometheus text format.
    fn metrics(&self) -> String {
        self.db.metrics_text()
    }
}

type CallbackError = Arc<Mutex<Option<PyErr>>>;

/// sqlite3's wording ("user-defined function raised exception", "user-defined aggregate's
/// 'step' method raised error") plus which function and the exception itself.
fn callback_message(engine_msg: &str, cause: &PyErr) -> String {
    if engine_msg.starts_with("user-defined aggregate") {
        format!("{engine_msg}: {cause}")
    } else {
        format!("user-defined function raised exception: {cause}")
    }
}

#[pyclass(module = "ormdb._ormdb", frozen)]
pub struct NativeConnection {
    db: Database,
    session: Mutex<Option<Session>>,
    /// The thread currently running a statement (to refuse re-entrant use from callbacks,
    /// which would otherwise deadlock on `session`).
    owner: Mutex<Option<ThreadId>>,
    /// The exception a user-defined function raised during the current statement.
    callback_error: CallbackError,
    /// Set by `close` (readable without waiting for a running statement).
    is_closed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Engine panics are caught inside the lock, so poisoning only follows a bug in this file;
    // the protected state is still consistent (a session or None).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl NativeConnection {
    fn new(db: Database) -> NativeConnection {
        let session = Session::new(db.connect());
        NativeConnection {
            db,
            session: Mutex::new(Some(session)),
            owner: Mutex::new(None),
            callback_error: Arc::new(Mutex::new(None)),
            is_closed: AtomicBool::new(false),
        }
    }

    /// The current thread, unless it is already running a statement on this connection (a
    /// user-defined function calling back into it), which would deadlock on the session lock.
    fn not_recursive(&self) -> PyResult<ThreadId> {
        let me = std::thread::current().id();
        if *lock(&self.owner) == Some(me) {
            return Err(raise(Failure::Recursive));
        }
        Ok(me)
    }

    /// Runs `f` on the session with the GIL released.
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Session) -> ormdb::Result<T> + Send,
    ) -> PyResult<T> {
        let me = self.not_recursive()?;
        lock(&self.callback_error).take();
        let res = py.detach(|| {
            let mut guard = lock(&self.session);
            let Some(session) = guard.as_mut() else {
                return Err(Failure::Closed);
            };
            *lock(&self.owner) = Some(me);
            let r = guarded(|| f(session));
            *lock(&self.owner) = None;
            r
        });
        res.map_err(|f| {
            let cb = lock(&self.callback_error).take();
            match (f, cb) {
                (Failure::Engine(e), Some(cause)) => {
                    let cause_msg = e.message;
                    let e = Python::attach(|py| {
                        use pyo3::PyTypeInfo;
                        errors::with_state(
                            py,
                            errors::OperationalError::type_object(py),
                            None,
                            callback_message(&cause_msg, &cause),
                        )
                    });
                    Python::attach(|py| e.set_cause(py, Some(cause)));
                    e
                }
                (f, _) => raise(f),
            }
        })
    }

    /// A native request on the session (in its open transaction, if any) whose result goes to
    /// Python in its JSON form.
    fn session_json<'py, T: serde::Serialize + Send>(
        &self,
        py: Python<'py>,
        f: impl FnOnce(&mut Session) -> ormdb::Result<T> + Send,
    ) -> PyResult<Bound<'py, PyAny>> {
        let out = self.run(py, |s| {
            let r = f(s)?;
            serde_json::to_value(&r).map_err(|e| ormdb::Error::internal(e.to_string()))
        })?;
        json_to_py(py, &out)
    }
}

/// The catalog's relations as `relations()` returns them (shared with remote connections).
pub(crate) fn relations_list<'py>(
    py: Python<'py>,
    schema: &Schema,
) -> PyResult<Bound<'py, PyList>> {
    let fk_fields = |entity: &str, fk: &str| -> Vec<String> {
        schema
            .entity(entity)
            .ok()
            .and_then(|e| {
                let def = e.foreign_keys.iter().find(|f| f.name == fk)?;
                Some(
                    def.fields
                        .iter()
                        .filter_map(|i| e.fields.get(*i as usize).map(|f| f.name.clone()))
                        .collect(),
                )
            })
            .unwrap_or_default()
    };
    let out = PyList::empty(py);
    for r in schema.relations() {
        let d = PyDict::new(py);
        d.set_item("name", &r.name)?;
        let kind = match r.kind {
            RelationKind::ManyToOne => "many_to_one",
            RelationKind::OneToOne => "one_to_one",
            RelationKind::OneToMany => "one_to_many",
            RelationKind::ManyToMany => "many_to_many",
        };
        d.set_item("kind", kind)?;
        d.set_item("from", &r.from)?;
        d.set_item("to", &r.to)?;
        d.set_item("forward", r.forward)?;
        d.set_item("fk_entity", &r.fk_entity)?;
        d.set_item("fk_fields", fk_fields(&r.fk_entity, &r.fk_name))?;
        let far = r
            .far_fk_name
            .as_deref()
            .map(|n| fk_fields(&r.fk_entity, n))
            .unwrap_or_default();
        d.set_item("far_fk_fields", far)?;
        out.append(d)?;
    }
    Ok(out)
}

pub(crate) fn graph_json(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<String> {
    if let Ok(s) = obj.cast::<PyString>() {
        return s.extract::<String>();
    }
    if obj.is_instance_of::<PyDict>() {
        let json = obj.py().import("json")?;
        return json
            .call_method1("dumps", (obj,))
            .and_then(|s| s.extract::<String>())
            .map_err(|e| errors::programming(format!("the {what} is not JSON-serializable: {e}")));
    }
    Err(errors::programming(format!(
        "the {what} must be a dict or a JSON string, not '{}'",
        obj.get_type().name()?
    )))
}

/// sqlite3's argument count convention: -1 for any number, else 0..=127.
fn arg_count(narg: i64) -> PyResult<Option<usize>> {
    match narg {
        -1 => Ok(None),
        n if (0..=127).contains(&n) => Ok(Some(n as usize)),
        n => Err(errors::programming(format!(
            "narg must be between -1 and 127, not {n}"
        ))),
    }
}

#[pymethods]
impl NativeConnection {
    /// Runs one statement (qmark/numbered parameters from a sequence, named ones from a
    /// mapping). Returns (columns, decl_types, rows, rows_affected, last_insert_rowid).
    #[pyo3(signature = (sql, params=None))]
    fn execute<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<ExecOut<'py>> {
        let params = values::to_params(params)?;
        values::one_statement(sql)?;
        let r = self.run(py, |s| s.execute(sql, &params))?;
        values::exec_out(py, &r, r.last_insert_rowid)
    }

    /// Runs one statement once per parameter set; returns the total rows affected.
    fn executemany(&self, py: Python<'_>, sql: &str, seq: &Bound<'_, PyAny>) -> PyResult<u64> {
        values::one_statement(sql)?;
        let all = values::params_seq(seq)?;
        self.run(py, |s| {
            let stmt = s.prepare(sql)?;
            let mut total = 0u64;
            for p in &all {
                total += s.execute_prepared(&stmt, p)?.rows_affected;
            }
            Ok(total)
        })
    }

    /// Runs a script of statements without parameters.
    fn executescript(&self, py: Python<'_>, sql: &str) -> PyResult<()> {
        self.run(py, |s| s.execute_batch(sql))
    }

    #[getter]
    fn in_transaction(&self) -> PyResult<bool> {
        self.peek(|s| s.in_transaction())
    }

    #[getter]
    fn total_changes(&self) -> PyResult<i64> {
        self.peek(|s| s.total_changes())
    }

    #[getter]
    fn changes(&self) -> PyResult<i64> {
        self.peek(|s| s.changes())
    }

    #[getter]
    fn last_insert_rowid(&self) -> PyResult<i64> {
        self.peek(|s| s.last_insert_rowid())
    }

    #[getter]
    fn closed(&self) -> bool {
        self.is_closed.load(Ordering::Acquire)
    }

    /// (hits, misses) of the statement cache.
    fn cache_stats(&self) -> PyResult<(u64, u64)> {
        self.peek(|s| s.cache_stats())
    }

    /// Rolls back an open transaction and releases the session. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.not_recursive()?;
        let res = py.detach(|| {
            let mut guard = lock(&self.session);
            self.is_closed.store(true, Ordering::Release);
            if let Some(mut s) = guard.take() {
                if s.in_transaction() {
                    return guarded(|| s.execute_batch("ROLLBACK"));
                }
            }
            Ok(())
        });
        res.map_err(raise)
    }

    /// Registers `func` as SQL function `name` with `narg` arguments (-1: any number); `None`
    /// unregisters it.
    #[pyo3(signature = (name, narg, func, deterministic=false))]
    fn create_function(
        &self,
        py: Python<'_>,
        name: &str,
        narg: i64,
        func: Option<Py<PyAny>>,
        deterministic: bool,
    ) -> PyResult<()> {
        let nargs = arg_count(narg)?;
        let name = name.to_owned();
        let Some(func) = func else {
            return self.run(py, |s| {
                s.remove_function(&name, nargs);
                Ok(())
            });
        };
        if !func.bind(py).is_callable() {
            return Err(errors::programming("func must be callable or None"));
        }
        let slot = self.callback_error.clone();
        let fname = name.clone();
        let f = UserFunction {
            func: Arc::new(move |args: &[Value]| {
                Python::attach(|py| {
                    let call = || -> PyResult<Value> {
                        let items = args
                            .iter()
                            .map(|v| values::to_py(py, v))
                            .collect::<PyResult<Vec<_>>>()?;
                        let out = func.bind(py).call1(PyTuple::new(py, items)?)?;
                        values::to_value(&out, Param::Result)
                    };
                    call().map_err(|e| {
                        *lock(&slot) = Some(e);
                        ormdb::Error::new(
                            SqlState::Internal,
                            format!("user-defined function {fname}() raised an exception"),
                        )
                    })
                })
            }),
            deterministic,
        };
        self.run(py, |s| {
            s.create_function(&name, nargs, f);
            Ok(())
        })
    }

    /// Registers `aggregate_class` (with `step(*args)` and `finalize()`) as SQL aggregate
    /// `name` with `narg` arguments (-1: any number); `None` unregisters it. One instance is
    /// created per group.
    fn create_aggregate(
        &self,
        py: Python<'_>,
        name: &str,
        narg: i64,
        aggregate_class: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let nargs = arg_count(narg)?;
        let name = name.to_owned();
        let Some(class) = aggregate_class else {
            return self.run(py, |s| {
                s.remove_aggregate(&name, nargs);
                Ok(())
            });
        };
        if !class.bind(py).is_callable() {
            return Err(errors::programming(
                "aggregate_class must be a class (with step and finalize) or None",
            ));
        }
        let slot = self.callback_error.clone();
        let fname = name.clone();
        let f = UserAggregate {
            name: name.clone(),
            func: Arc::new(move |rows: &[Vec<Value>]| {
                // The sqlite3 module creates the aggregate instance on the first step call; a
                // group with no rows never instantiates it and yields NULL (Django's
                // StdDev/Variance finalizers raise on empty input).
                if rows.is_empty() {
                    return Ok(Value::Null);
                }
                Python::attach(|py| {
                    let mut stage = "__init__";
                    let mut call = || -> PyResult<Value> {
                        let inst = class.bind(py).call0()?;
                        stage = "step";
                        let step = inst.getattr("step")?;
                        for row in rows {
                            let items = row
                                .iter()
                                .map(|v| values::to_py(py, v))
                                .collect::<PyResult<Vec<_>>>()?;
                            step.call1(PyTuple::new(py, items)?)?;
                        }
                        stage = "finalize";
                        let out = inst.call_method0("finalize")?;
                        values::to_value(&out, Param::Result)
                    };
                    call().map_err(|e| {
                        *lock(&slot) = Some(e);
                        ormdb::Error::new(
                            SqlState::Internal,
                            format!("user-defined aggregate {fname}(): its '{stage}' method raised an exception"),
                        )
                    })
                })
            }),
        };
        self.run(py, |s| {
            s.create_aggregate(&name, nargs, f);
            Ok(())
        })
    }

    /// Replaces Django's SQLite functions (registered before, as Django's backend does) with
    /// the engine's native ones; each Python callback stays the fallback for the inputs the
    /// native code hands over (time zone conversions, unusual values). Returns the names.
    fn install_django_functions(&self, py: Python<'_>) -> PyResult<Vec<&'static str>> {
        self.run(py, |s| Ok(s.install_django_functions()))
    }

    /// Graph fetch: nested rows (to-one relations as dict or None, to-many as lists).
    fn fetch<'py>(
        &self,
        py: Python<'py>,
        graph: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (r, root) = self.run_fetch(py, graph)?;
        let schema = Schema::new(self.db.schema());
        Ok(crate::graph::nested(py, &r, &schema, &root)?.into_any())
    }

    /// Graph fetch building the ORM's objects directly (see objects.rs for the plan).
    fn fetch_objects<'py>(
        &self,
        py: Python<'py>,
        graph: &Bound<'py, PyAny>,
        plan: &Bound<'py, PyAny>,
        state_cls: &Bound<'py, PyAny>,
        db: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (r, root) = self.run_fetch(py, graph)?;
        let schema = Schema::new(self.db.schema());
        let tree = crate::graph::Tree::new(py, &r, &schema, &root);
        Ok(crate::objects::objects(py, &tree, &r.roots, plan, state_cls, db)?.into_any())
    }

    /// The relations graph fetches can include, as the catalog names them: a list of dicts
    /// {name, kind, from, to, forward, fk_entity, fk_fields, far_fk_fields}. Adapters map
    /// their ORM's relations onto these names.
    fn relations<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        relations_list(py, &Schema::new(self.db.schema()))
    }

    /// Graph fetch returning {"data", "next_cursor", "stats"}.
    fn fetch_raw<'py>(
        &self,
        py: Python<'py>,
        graph: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (r, root) = self.run_fetch(py, graph)?;
        let schema = Schema::new(self.db.schema());
        let out = PyDict::new(py);
        out.set_item("data", crate::graph::nested(py, &r, &schema, &root)?)?;
        out.set_item("next_cursor", r.next_cursor.as_ref().map(|c| c.to_token()))?;
        let stats = serde_json::to_value(&r.stats).unwrap_or_default();
        out.set_item("stats", json_to_py(py, &stats)?)?;
        Ok(out.into_any())
    }

    /// The plan of a graph fetch as text; `analyze` runs it and adds actual figures.
    #[pyo3(signature = (graph, analyze=false))]
    fn explain(&self, py: Python<'_>, graph: &Bound<'_, PyAny>, analyze: bool) -> PyResult<String> {
        let json = graph_json(graph, "graph fetch")?;
        self.run(py, |s| {
            let f = GraphFetch::from_json(&json)?;
            Ok(s.explain(&f, analyze)?.text)
        })
    }

    /// Applies a mutation batch: {"ops": [{"affected", "ids"}], "token"}. Inside an open
    /// transaction it is part of it (rolled back with it); otherwise it commits on its own.
    fn mutate<'py>(
        &self,
        py: Python<'py>,
        mutation: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let json = graph_json(mutation, "mutation")?;
        self.session_json(py, |s| s.mutate(&Mutation::from_json(&json)?))
    }

    /// Runs an aggregate: {"columns", "rows", "rows_examined"}.
    fn aggregate<'py>(
        &self,
        py: Python<'py>,
        aggregate: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let json = graph_json(aggregate, "aggregate")?;
        self.session_json(py, |s| s.aggregate(&Aggregate::from_json(&json)?))
    }

    fn metrics(&self) -> PyResult<String> {
        if self.closed() {
            return Err(errors::closed());
        }
        Ok(self.db.metrics_text())
    }

    /// A change stream from now on (or after token `after`), optionally limited to entities.
    #[pyo3(signature = (entities=None, after=None))]
    fn subscribe(
        &self,
        py: Python<'_>,
        entities: Option<Vec<String>>,
        after: Option<u64>,
    ) -> PyResult<NativeSubscription> {
        if self.closed() {
            return Err(errors::closed());
        }
        let filter = SubscriptionFilter {
            entities: entities.unwrap_or_default(),
        };
        let db = self.db.clone();
        let sub = py
            .detach(|| guarded(|| db.subscribe(after, filter)))
            .map_err(raise)?;
        Ok(NativeSubscription {
            db: self.db.clone(),
            sub: Mutex::new(Some(sub)),
        })
    }
}

impl NativeConnection {
    /// Reads session state; waits (without the GIL) for a statement running on another thread.
    fn peek<T: Send>(&self, f: impl FnOnce(&Session) -> T + Send) -> PyResult<T> {
        self.not_recursive()?;
        Python::attach(|py| py.detach(|| lock(&self.session).as_ref().map(f)))
            .ok_or_else(errors::closed)
    }

    /// Runs a graph fetch (without the GIL); returns the result and the root entity name.
    fn run_fetch(
        &self,
        py: Python<'_>,
        graph: &Bound<'_, PyAny>,
    ) -> PyResult<(ormdb::GraphResult, String)> {
        let json = graph_json(graph, "graph fetch")?;
        self.run(py, move |s| {
            let f = GraphFetch::from_json(&json)?;
            Ok((s.fetch(&f)?, f.root))
        })
    }
}

#[pyclass(module = "ormdb._ormdb", frozen)]
pub struct NativeSubscription {
    db: Database,
    sub: Mutex<Option<Subscription>>,
}

fn kind_name(k: ChangeKind) -> &'static str {
    match k {
        ChangeKind::Insert => "insert",
        ChangeKind::Update => "update",
        ChangeKind::SoftDelete => "soft_delete",
        ChangeKind::Restore => "restore",
        ChangeKind::Delete => "delete",
    }
}

pub(crate) fn change_to_py<'py>(
    py: Python<'py>,
    schema: &SchemaBundle,
    cs: &ChangeSet,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("token", cs.token)?;
    d.set_item("schema_version", cs.schema_version)?;
    d.set_item("schema_changed", cs.schema_changed)?;
    let entities = PyList::empty(py);
    for e in &cs.entities {
        let def = schema.entities.iter().find(|d| d.id == e.table_id);
        let field = |pos: usize| -> String {
            def.and_then(|d| d.fields.get(pos))
                .map(|f| f.name.clone())
                .unwrap_or_else(|| format!("#{pos}"))
        };
        let x = PyDict::new(py);
        x.set_item("entity", &e.entity)?;
        x.set_item("row_id", e.row_id)?;
        x.set_item("kind", kind_name(e.kind))?;
        x.set_item("version", e.version)?;
        let changed = PyList::empty(py);
        for p in &e.changed {
            changed.append(field(*p as usize))?;
        }
        x.set_item("changed", changed)?;
        let vals = PyDict::new(py);
        for (i, v) in e.values.iter().enumerate() {
            vals.set_item(field(i), values::to_py(py, v)?)?;
        }
        x.set_item("values", vals)?;
        entities.append(x)?;
    }
    d.set_item("entities", entities)?;
    let relations = PyList::empty(py);
    for r in &cs.relations {
        let x = PyDict::new(py);
        x.set_item("relation", &r.relation)?;
        x.set_item("child_entity", &r.child_entity)?;
        x.set_item("child_row_id", r.child_row_id)?;
        x.set_item("parent_entity", &r.parent_entity)?;
        let key = r
            .parent_key
            .iter()
            .map(|v| values::to_py(py, v))
            .collect::<PyResult<Vec<_>>>()?;
        x.set_item("parent_key", PyList::new(py, key)?)?;
        x.set_item("attached", r.attached)?;
        relations.append(x)?;
    }
    d.set_item("relations", relations)?;
    Ok(d)
}

#[pymethods]
impl NativeSubscription {
    /// The next change set as a dict, waiting up to `timeout` seconds (None: wait until one
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
        let step = Duration::from_millis(200);
        let mut left = timeout.map(Duration::from_secs_f64);
        loop {
            let wait = left.map_or(step, |l| l.min(step));
            let res = py.detach(|| {
                let mut g = lock(&self.sub);
                let Some(sub) = g.as_mut() else {
                    return Err(Failure::Closed);
                };
                guarded(|| sub.next_timeout(wait))
            });
            match res.map_err(|f| match f {
                Failure::Closed => errors::programming("Cannot operate on a closed subscription."),
                f => raise(f),
            })? {
                Some(cs) => return Ok(Some(change_to_py(py, &self.db.schema(), &cs)?)),
                None => {
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

    /// The token of the last change delivered.
    #[getter]
    fn position(&self) -> PyResult<u64> {
        lock(&self.sub)
            .as_ref()
            .map(|s| s.position())
            .ok_or_else(|| errors::programming("Cannot operate on a closed subscription."))
    }

    fn close(&self) {
        lock(&self.sub).take();
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.next(py, None)
    }
}
