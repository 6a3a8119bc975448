//! [`Session`]: a connection speaking SQL. It owns the explicit transaction (BEGIN ... COMMIT,
//! SAVEPOINT ...), runs every other statement in its own transaction (autocommit), keeps the
//! connection counters (`changes()`, `total_changes()`, `last_insert_rowid()`) and a cache of
//! parsed statements keyed by their text, with the compiled plan of each SELECT (see
//! [`CachedPlan`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use sqlparser::ast::{SetExpr, Statement};

use super::catalog_emulation as cat;
use super::compile::Compiler;
use super::eval::{Counters, Ctx};
use super::params::{Bound, Params};
use super::parse::{self, LineIndex};
use super::pragma::{self, Pragma};
use super::temp::TempNames;
use super::user_functions::{UserAggregate, UserFunction, UserFunctions};
use super::{ddl, dml, query};
use crate::api::{Connection, Transaction};
use crate::error::{Error, Result, SqlState};
use crate::value::Value;

/// What one statement returned.
#[derive(Debug, Clone, Default, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct StatementResult {
    /// Result column names (empty for statements without rows).
    pub columns: Vec<String>,
    /// Declared type of each result column when it is a table column (for drivers that map
    /// types, like Prisma's adapters and JDBC).
    pub decl_types: Vec<Option<String>>,
    pub rows: Vec<Vec<Value>>,
    /// Rows inserted, updated or deleted by this statement (SQLite's `changes()`); 0 for others.
    pub rows_affected: u64,
    /// The connection's last insert row id after the statement.
    pub last_insert_rowid: i64,
}

/// A parsed statement and its placeholders, cached by text.
struct Parsed {
    stmt: Statement,
    placeholders: Vec<(sqlparser::tokenizer::Location, String)>,
}

/// Parsed statements shared by every session in the process, keyed by text: applications open
/// many connections (a pool, a connection per request) that send the same few hundred texts, and
/// a parse depends on nothing but the text. A session looks here when its own cache misses, so
/// a new session parses only the texts no session has parsed before. Compiled plans stay per
/// session (they depend on the schema and the session's functions).
struct SharedParses {
    map: HashMap<String, (Arc<Parsed>, u64)>,
    tick: u64,
    hits: u64,
    misses: u64,
}

/// Texts kept in the process-wide parse cache.
const SHARED_LIMIT: usize = 4096;

fn shared_parses() -> &'static Mutex<SharedParses> {
    static SHARED: OnceLock<Mutex<SharedParses>> = OnceLock::new();
    SHARED.get_or_init(|| {
        Mutex::new(SharedParses {
            map: HashMap::new(),
            tick: 0,
            hits: 0,
            misses: 0,
        })
    })
}

/// Forgets every statement in the process-wide parse cache (sessions keep their own cached
/// statements): the next session to run a text parses it again. For measuring a cold start.
pub fn clear_shared_parse_cache() {
    if let Ok(mut s) = shared_parses().lock() {
        s.map.clear();
    }
}

/// (hits, misses) of the process-wide parse cache since the process started.
pub fn shared_parse_cache_stats() -> (u64, u64) {
    shared_parses()
        .lock()
        .map_or((0, 0), |s| (s.hits, s.misses))
}

/// The parse of `text`, from the process-wide cache or parsed now (and then shared).
fn parse_shared(text: &str) -> Result<Arc<Parsed>> {
    // A poisoned lock only means another thread panicked mid-update of a plain map: parsing
    // without the cache is always correct.
    if let Ok(mut s) = shared_parses().lock() {
        s.tick += 1;
        let tick = s.tick;
        if let Some((p, used)) = s.map.get_mut(text) {
            *used = tick;
            let p = p.clone();
            s.hits += 1;
            return Ok(p);
        }
        s.misses += 1;
    }
    let (stmt, placeholders) = parse::parse_with_placeholders(text)?;
    let p = Arc::new(Parsed { stmt, placeholders });
    if let Ok(mut s) = shared_parses().lock() {
        if s.map.len() >= SHARED_LIMIT {
            // Keep the more recently used half: one pass per SHARED_LIMIT / 2 new texts, where
            // evicting one entry per insert would scan the whole map on every new text (an
            // application that never repeats a text would pay that scan on each statement).
            let mut used: Vec<u64> = s.map.values().map(|(_, u)| *u).collect();
            let mid = used.len() / 2;
            let (_, cut, _) = used.select_nth_unstable(mid);
            let cut = *cut;
            s.map.retain(|_, (_, u)| *u > cut);
        }
        let tick = s.tick;
        s.map.insert(text.to_string(), (p.clone(), tick));
    }
    Ok(p)
}

/// A SELECT, INSERT, UPDATE or DELETE compiled with parameter slots instead of values,
/// reusable while the schema it was compiled against and the session's functions are
/// unchanged. Nothing else a compilation reads can change under a session: temporary tables
/// and views are catalog entities, the temporary namespace is fixed per session, and what a
/// write checks at run time (`PRAGMA foreign_keys`, the rows) is read when it runs.
struct CachedPlan {
    /// The schema compiled against. Compared by identity (every committed version and every
    /// transaction's own DDL is a new `Arc`), and held so the address cannot be reused.
    schema: Arc<crate::catalog::Schema>,
    functions_gen: u64,
    compiled: Compiled,
    /// Per parameter slot: the placeholder occurrence it takes its value from, and the
    /// affinity applied to that value when bound.
    slots: Vec<(usize, Option<crate::value::DataType>)>,
}

enum Compiled {
    Query(query::Query),
    Write(dml::WritePlan),
}

/// A statement cache entry.
struct Entry {
    parsed: Arc<Parsed>,
    plan: Option<Arc<CachedPlan>>,
    /// Tick of the last use (least recently used entries are evicted first).
    used: u64,
}

/// The plan of one execution: the cached plan found (if any), and the one compiled.
#[derive(Default)]
struct PlanUse {
    cached: Option<Arc<CachedPlan>>,
    compiled: bool,
    /// Set once per execution: whether the cached plan was reused; whether a stale one was
    /// replaced.
    hit: Option<bool>,
    stale: bool,
    functions_gen: u64,
    /// Set when a write got past compilation: SQLite resets `changes()` to 0 when a statement
    /// fails while running, and leaves it alone when it fails to prepare.
    ran: bool,
}

/// A statement checked and ready to run many times with different parameters.
#[derive(Debug, Clone)]
pub struct PreparedStatement {
    sql: String,
    /// Number of the highest parameter (`sqlite3_bind_parameter_count`).
    pub parameter_count: usize,
    /// Parameter names in number order (`None` for `?`/`?NNN`).
    pub parameter_names: Vec<Option<String>>,
}

impl PreparedStatement {
    pub fn sql(&self) -> &str {
        &self.sql
    }
}

/// Statements (with their plans) a session keeps; ORMs send a few hundred distinct texts.
const CACHE_LIMIT: usize = 512;

/// A SQL connection. `Send` but not meant for concurrent use: use one per thread (like a
/// SQLite connection), or guard it with a lock.
pub struct Session {
    conn: Connection,
    tx: Option<Transaction>,
    /// Savepoints opened by SAVEPOINT, outermost first.
    savepoints: Vec<String>,
    /// Whether the outermost SAVEPOINT started the transaction (RELEASE of it commits).
    savepoint_began: bool,
    counters: Counters,
    cache: HashMap<String, Entry>,
    cache_tick: u64,
    cache_hits: u64,
    cache_misses: u64,
    plan_hits: u64,
    plan_misses: u64,
    /// Bumped when the session's functions change (compiled plans resolved names against them).
    functions_gen: u64,
    last_rows_read: u64,
    legacy_alter_table: bool,
    /// Application functions (`create_function`); shared with running statements.
    user_functions: Arc<UserFunctions>,
    /// This session's temporary tables.
    temp: TempNames,
    /// Whether this session ever created a temporary table (closing then drops them).
    temp_created: bool,
    /// Serves autocommit requests of any client (a server's pooled session, see
    /// [`Session::set_request_scoped`]): it must not take connection state.
    request_scoped: bool,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            tx.rollback();
        }
        if self.temp_created {
            // Best effort: a table left behind (the commit failed) is invisible to every
            // other session and dropped when the database is next opened.
            let names = self.temp.clone();
            let _ = self.write_schema(|tx| {
                for n in names.owned_views(tx.schema()) {
                    tx.drop_view(&n, true)?;
                }
                for n in names.owned(tx.schema()) {
                    tx.drop_entity_if_exists(&n)?;
                }
                Ok(())
            });
        }
    }
}

impl Connection {
    /// A SQL session over this connection.
    pub fn sql(self) -> Session {
        Session::new(self)
    }
}

impl Session {
    pub fn new(conn: Connection) -> Session {
        Session {
            conn,
            tx: None,
            savepoints: Vec::new(),
            savepoint_began: false,
            counters: Counters::default(),
            cache: HashMap::new(),
            cache_tick: 0,
            cache_hits: 0,
            cache_misses: 0,
            plan_hits: 0,
            plan_misses: 0,
            functions_gen: 0,
            last_rows_read: 0,
            legacy_alter_table: false,
            user_functions: Arc::new(UserFunctions::default()),
            temp: TempNames::new(),
            temp_created: false,
            request_scoped: false,
        }
    }

    /// Marks this session as serving the autocommit requests of any client, one request after
    /// another (`ormdb serve`'s pooled sessions). Outside a transaction it then refuses, with
    /// 0A000, what would change connection state and so reach the next client's requests:
    /// turning `PRAGMA foreign_keys` off or on from its current value, and creating a
    /// temporary table or view. Inside a transaction (a server session that BEGIN opened and
    /// only its client uses) they behave as usual.
    pub fn set_request_scoped(&mut self, on: bool) {
        self.request_scoped = on;
    }

    /// The error for a statement that would leave connection state in a request-scoped session.
    fn connection_state_refused(what: &str, instead: &str) -> Error {
        Error::unsupported(format!(
            "{what} outside a transaction on a server connection: each autocommit request may \
             run on another of the server's sessions, which keep no connection state between \
             requests; {instead}"
        ))
    }

    /// Registers a scalar function for this session's statements (`nargs` `None`: any number of
    /// arguments), replacing one with the same name and argument count; it takes precedence over
    /// a built-in function of that name.
    pub fn create_function(&mut self, name: &str, nargs: Option<usize>, f: UserFunction) {
        Arc::make_mut(&mut self.user_functions).register(name, nargs, f);
        self.functions_gen += 1;
    }

    /// Unregisters a function; returns whether it was registered.
    pub fn remove_function(&mut self, name: &str, nargs: Option<usize>) -> bool {
        self.functions_gen += 1;
        Arc::make_mut(&mut self.user_functions).remove(name, nargs)
    }

    /// Registers an aggregate function (like [`Session::create_function`]); it takes precedence
    /// over a built-in aggregate of the same name and argument count.
    pub fn create_aggregate(&mut self, name: &str, nargs: Option<usize>, f: UserAggregate) {
        Arc::make_mut(&mut self.user_functions).register_aggregate(name, nargs, f);
        self.functions_gen += 1;
    }

    pub fn remove_aggregate(&mut self, name: &str, nargs: Option<usize>) -> bool {
        self.functions_gen += 1;
        Arc::make_mut(&mut self.user_functions).remove_aggregate(name, nargs)
    }

    /// The scalar function a call of `name` with `nargs` arguments would run, if registered.
    pub fn registered_function(&self, name: &str, nargs: usize) -> Option<UserFunction> {
        self.user_functions
            .get(&name.to_ascii_lowercase(), nargs)
            .cloned()
    }

    /// The aggregate a call of `name` with `nargs` arguments would run, if registered.
    pub fn registered_aggregate(&self, name: &str, nargs: usize) -> Option<UserAggregate> {
        self.user_functions
            .get_aggregate(&name.to_ascii_lowercase(), nargs)
            .cloned()
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// A graph fetch on this session. Inside an open transaction it reads at that transaction's
    /// snapshot, so it sees the rows the session's own statements wrote (as a SELECT would);
    /// otherwise at a fresh snapshot.
    pub fn fetch(&mut self, f: &crate::ir::GraphFetch) -> Result<crate::ir::GraphResult> {
        match self.tx.as_mut() {
            Some(tx) => tx.fetch(f),
            None => self.conn.fetch(f),
        }
    }

    /// The plan of a graph fetch, at the open transaction's snapshot when there is one (so an
    /// `analyze` run counts the session's own uncommitted rows), else at a fresh snapshot.
    pub fn explain(
        &mut self,
        f: &crate::ir::GraphFetch,
        analyze: bool,
    ) -> Result<crate::plan::Explain> {
        match self.tx.as_mut() {
            Some(tx) => tx.explain(f, analyze),
            None => self.conn.explain(f, analyze),
        }
    }

    /// A mutation batch: inside an open transaction it becomes part of it (committed or rolled
    /// back with the session's other writes); otherwise it commits on its own.
    pub fn mutate(&mut self, m: &crate::ir::Mutation) -> Result<crate::ir::MutationResult> {
        match self.tx.as_mut() {
            Some(tx) => tx.mutate(m),
            None => self.conn.mutate(m),
        }
    }

    /// An aggregate, reading the open transaction's own writes when there is one.
    pub fn aggregate(&mut self, a: &crate::ir::Aggregate) -> Result<crate::ir::AggregateResult> {
        match self.tx.as_mut() {
            Some(tx) => tx.aggregate(a),
            None => self.conn.aggregate(a),
        }
    }

    /// The catalog this session sees: the open transaction's (its own DDL included), else the
    /// last committed one.
    pub fn schema(&self) -> crate::catalog::SchemaBundle {
        match self.tx.as_ref() {
            Some(tx) => tx.schema().bundle.clone(),
            None => self.conn.database().schema(),
        }
    }

    /// Whether an explicit transaction is open (SQLite's `!sqlite3_get_autocommit`).
    pub fn in_transaction(&self) -> bool {
        self.tx.is_some()
    }

    pub fn changes(&self) -> i64 {
        self.counters.changes
    }

    /// Sets `changes()`, `total_changes()` and `last_insert_rowid()` back to 0, as on a new
    /// connection (a server's pooled session before each client's request).
    pub fn reset_counters(&mut self) {
        self.counters = Counters::default();
    }

    pub fn total_changes(&self) -> i64 {
        self.counters.total_changes
    }

    pub fn last_insert_rowid(&self) -> i64 {
        self.counters.last_insert_rowid
    }

    /// Stored rows the last data statement read (a scan reads every row; a primary key or
    /// index lookup only the rows it finds).
    pub fn last_rows_read(&self) -> u64 {
        self.last_rows_read
    }

    /// (hits, misses) of the statement cache.
    pub fn cache_stats(&self) -> (u64, u64) {
        (self.cache_hits, self.cache_misses)
    }

    /// Forgets every cached statement and compiled plan: the next execution of each text
    /// parses and compiles it again (the counters are kept).
    pub fn clear_cache(&mut self) {
        self.cache.clear();
    }

    /// (hits, misses) of the compiled plan cache (SELECT, INSERT, UPDATE and DELETE; a
    /// WITH ... write and a write to `sqlite_sequence` are compiled per execution).
    pub fn plan_cache_stats(&self) -> (u64, u64) {
        (self.plan_hits, self.plan_misses)
    }

    /// Runs every statement of `sql` and returns the last one's result. Parameters are only
    /// allowed with a single statement.
    pub fn execute(&mut self, sql: &str, params: &Params) -> Result<StatementResult> {
        let pieces = parse::split_statements(sql);
        if pieces.is_empty() {
            return Ok(StatementResult {
                last_insert_rowid: self.counters.last_insert_rowid,
                ..Default::default()
            });
        }
        if pieces.len() > 1 && !params.is_empty() {
            return Err(Error::unsupported(
                "parameters with more than one statement in one call",
            ));
        }
        let mut last = StatementResult::default();
        for p in pieces {
            last = self.execute_one(p, params)?;
        }
        Ok(last)
    }

    /// Runs a script (several statements, no parameters), like `sqlite3_exec`.
    pub fn execute_batch(&mut self, sql: &str) -> Result<()> {
        self.execute(sql, &Params::None).map(|_| ())
    }

    /// Parses and checks one statement without running it.
    pub fn prepare(&mut self, sql: &str) -> Result<PreparedStatement> {
        let pieces = parse::split_statements(sql);
        if pieces.len() != 1 {
            return Err(Error::new(
                SqlState::SyntaxError,
                format!("prepare takes one statement, {} given", pieces.len()),
            ));
        }
        let text = pieces[0];
        let mut names: Vec<Option<String>> = Vec::new();
        if !pragma::is_pragma(text) {
            let (parsed, _) = self.parsed(text)?;
            let mut max = 0usize;
            let mut by_name: HashMap<String, usize> = HashMap::new();
            for (_, p) in &parsed.placeholders {
                let n = if p == "?" {
                    max + 1
                } else if let Some(d) = p.strip_prefix('?') {
                    d.parse().unwrap_or(max + 1)
                } else {
                    *by_name.entry(p.clone()).or_insert(max + 1)
                };
                max = max.max(n);
                if names.len() < n {
                    names.resize(n, None);
                }
                if !p.starts_with('?') {
                    names[n - 1] = Some(p.clone());
                }
            }
        }
        Ok(PreparedStatement {
            sql: text.to_string(),
            parameter_count: names.len(),
            parameter_names: names,
        })
    }

    pub fn execute_prepared(
        &mut self,
        stmt: &PreparedStatement,
        params: &Params,
    ) -> Result<StatementResult> {
        self.execute_one(&stmt.sql, params)
    }

    /// The parsed statement and its cached plan (if any).
    fn parsed(&mut self, text: &str) -> Result<(Arc<Parsed>, Option<Arc<CachedPlan>>)> {
        let m = &self.conn.database().core().query.metrics;
        self.cache_tick += 1;
        if let Some(e) = self.cache.get_mut(text) {
            e.used = self.cache_tick;
            self.cache_hits += 1;
            m.sql_cache_hits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok((e.parsed.clone(), e.plan.clone()));
        }
        self.cache_misses += 1;
        m.sql_cache_misses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = parse_shared(text)?;
        if self.cache.len() >= CACHE_LIMIT {
            // Least recently used first. A linear pass, only when parsing a new text, which
            // costs far more.
            if let Some(k) = self
                .cache
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            {
                self.cache.remove(&k);
            }
        }
        self.cache.insert(
            text.to_string(),
            Entry {
                parsed: p.clone(),
                plan: None,
                used: self.cache_tick,
            },
        );
        Ok((p, None))
    }

    fn result(
        &self,
        columns: Vec<String>,
        decls: Vec<Option<String>>,
        rows: Vec<Vec<Value>>,
        affected: u64,
    ) -> StatementResult {
        StatementResult {
            columns,
            decl_types: decls,
            rows,
            rows_affected: affected,
            last_insert_rowid: self.counters.last_insert_rowid,
        }
    }

    fn execute_one(&mut self, text: &str, params: &Params) -> Result<StatementResult> {
        let start = std::time::Instant::now();
        let res = self
            .execute_one_untimed(text, params)
            .map_err(|e| Error::new(e.state, self.temp.unmangle(&e.message)));
        let m = &self.conn.database().core().query.metrics;
        m.sql_statements
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        m.sql_latency.observe_us(start.elapsed().as_micros() as u64);
        res
    }

    fn execute_one_untimed(&mut self, text: &str, params: &Params) -> Result<StatementResult> {
        if pragma::is_pragma(text) {
            let p = pragma::parse(text)?;
            let (cols, rows) = self.pragma(&p)?;
            let n = cols.len();
            return Ok(self.result(cols, vec![None; n], rows, 0));
        }
        let (parsed, cached) = self.parsed(text)?;
        let bound = Bound::bind(&parsed.placeholders, params)?;
        if is_plain_query(&parsed.stmt) || is_plain_write(&parsed.stmt) {
            let mut plan = PlanUse {
                cached,
                functions_gen: self.functions_gen,
                ..Default::default()
            };
            let res = self.run_in_transaction(text, &parsed.stmt, &bound, &mut plan);
            if res.is_err() && plan.ran {
                self.counters.changes = 0;
            }
            self.record_plan_use(text, plan);
            return res;
        }
        match &parsed.stmt {
            Statement::StartTransaction {
                statements,
                exception,
                modifier: _,
                ..
            } => {
                if !statements.is_empty() || exception.is_some() {
                    return Err(Error::unsupported("BEGIN ... END blocks"));
                }
                if self.tx.is_some() {
                    return Err(Error::txn_state(
                        "cannot start a transaction within a transaction",
                    ));
                }
                self.tx = Some(self.conn.begin()?);
                self.savepoints.clear();
                self.savepoint_began = false;
                Ok(self.result(vec![], vec![], vec![], 0))
            }
            Statement::Commit { chain, .. } => {
                if *chain {
                    return Err(Error::unsupported("COMMIT AND CHAIN"));
                }
                let tx = self
                    .tx
                    .take()
                    .ok_or_else(|| Error::txn_state("cannot commit - no transaction is active"))?;
                self.savepoints.clear();
                tx.commit()?;
                Ok(self.result(vec![], vec![], vec![], 0))
            }
            Statement::Rollback { chain, savepoint } => {
                if *chain {
                    return Err(Error::unsupported("ROLLBACK AND CHAIN"));
                }
                match savepoint {
                    None => {
                        let tx = self.tx.take().ok_or_else(|| {
                            Error::txn_state("cannot rollback - no transaction is active")
                        })?;
                        self.savepoints.clear();
                        tx.rollback();
                    }
                    Some(name) => {
                        let pos = self
                            .savepoints
                            .iter()
                            .rposition(|s| s.eq_ignore_ascii_case(&name.value))
                            .ok_or_else(|| {
                                Error::txn_state(format!("no such savepoint: {}", name.value))
                            })?;
                        let real = self.savepoints[pos].clone();
                        self.savepoints.truncate(pos + 1);
                        let tx = self
                            .tx
                            .as_mut()
                            .ok_or_else(|| Error::internal("savepoint without transaction"))?;
                        tx.rollback_to(&real)?;
                    }
                }
                Ok(self.result(vec![], vec![], vec![], 0))
            }
            Statement::Savepoint { name } => {
                if self.tx.is_none() {
                    self.tx = Some(self.conn.begin()?);
                    self.savepoints.clear();
                    self.savepoint_began = true;
                }
                let tx = self
                    .tx
                    .as_mut()
                    .ok_or_else(|| Error::internal("transaction missing"))?;
                tx.savepoint(&name.value)?;
                self.savepoints.push(name.value.clone());
                Ok(self.result(vec![], vec![], vec![], 0))
            }
            Statement::ReleaseSavepoint { name } => {
                let pos = self
                    .savepoints
                    .iter()
                    .rposition(|s| s.eq_ignore_ascii_case(&name.value))
                    .ok_or_else(|| {
                        Error::txn_state(format!("no such savepoint: {}", name.value))
                    })?;
                let real = self.savepoints[pos].clone();
                self.savepoints.truncate(pos);
                if pos == 0 && self.savepoint_began {
                    let tx = self
                        .tx
                        .take()
                        .ok_or_else(|| Error::internal("transaction missing"))?;
                    self.savepoint_began = false;
                    tx.commit()?;
                } else {
                    let tx = self
                        .tx
                        .as_mut()
                        .ok_or_else(|| Error::internal("transaction missing"))?;
                    tx.release(&real)?;
                }
                Ok(self.result(vec![], vec![], vec![], 0))
            }
            stmt => self.run_in_transaction(text, stmt, &bound, &mut PlanUse::default()),
        }
    }

    /// Runs a data or schema statement: inside the open transaction (undoing just this
    /// statement on error) or in its own transaction (autocommit).
    /// Counts the plan lookup of one execution and keeps a freshly compiled plan.
    fn record_plan_use(&mut self, text: &str, plan: PlanUse) {
        use std::sync::atomic::Ordering::Relaxed;
        let m = &self.conn.database().core().query.metrics;
        match plan.hit {
            Some(true) => {
                self.plan_hits += 1;
                m.sql_plan_hits.fetch_add(1, Relaxed);
            }
            Some(false) => {
                self.plan_misses += 1;
                m.sql_plan_misses.fetch_add(1, Relaxed);
                if plan.stale {
                    m.sql_plan_invalidations.fetch_add(1, Relaxed);
                }
            }
            None => {}
        }
        if plan.compiled {
            if let Some(e) = self.cache.get_mut(text) {
                e.plan = plan.cached;
            }
        }
    }

    fn run_in_transaction(
        &mut self,
        text: &str,
        stmt: &Statement,
        bound: &Bound,
        plan: &mut PlanUse,
    ) -> Result<StatementResult> {
        let temp_name = |n: &sqlparser::ast::ObjectName| {
            n.0.len() > 1 && n.0[0].to_string().eq_ignore_ascii_case("temp")
        };
        let creates_temp = match stmt {
            Statement::CreateTable(ct) => ct.temporary || temp_name(&ct.name),
            Statement::CreateView(cv) => cv.temporary || temp_name(&cv.name),
            _ => false,
        };
        if creates_temp && self.request_scoped && self.tx.is_none() {
            return Err(Self::connection_state_refused(
                "a temporary table or view",
                "create it after BEGIN (it lasts until the transaction ends)",
            ));
        }
        self.temp_created |= creates_temp;
        let counters = self.counters;
        let functions = self.user_functions.clone();
        if let Some(tx) = self.tx.as_mut() {
            // Statement atomicity: on error the statement's own changes are undone and the
            // transaction's earlier ones stay.
            let mark = tx.statement_mark()?;
            let res = run_statement(
                tx, text, stmt, bound, counters, &functions, &self.temp, plan,
            );
            match &res {
                Ok(_) => tx.release_mark(mark)?,
                Err(_) => tx.rollback_to_mark(mark)?,
            }
            return self.finish(res?);
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut tx = self.conn.begin()?;
            if is_plain_query(stmt) {
                // A SELECT on its own never writes: its reads need no conflict tracking (the
                // read set would cost a hash insert per row read).
                tx.txn_mut()?.disable_read_tracking();
            }
            let res = run_statement(
                &mut tx, text, stmt, bound, counters, &functions, &self.temp, plan,
            );
            let res = match res {
                Ok(out) => tx.commit().map(|_| out),
                Err(e) => {
                    tx.rollback();
                    Err(e)
                }
            };
            match res {
                Err(e) if e.state.is_retryable() && attempts < 20 => {
                    std::thread::sleep(std::time::Duration::from_micros(50 * attempts));
                    continue;
                }
                other => return self.finish(other?),
            }
        }
    }

    fn finish(&mut self, out: Outcome) -> Result<StatementResult> {
        self.last_rows_read = out.rows_read;
        if out.write {
            self.counters.changes = out.changes;
            self.counters.total_changes += out.changes + out.cascaded;
        }
        if let Some(id) = out.last_insert_rowid {
            self.counters.last_insert_rowid = id;
        }
        Ok(self.result(out.columns, out.decls, out.rows, out.changes.max(0) as u64))
    }

    fn pragma(&mut self, p: &Pragma) -> Result<(Vec<String>, Vec<Vec<Value>>)> {
        let cols = |name: &str| {
            pragma::columns(name)
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        };
        let one = |name: &str, v: Value| (vec![name.to_string()], vec![vec![v]]);
        let none = || (Vec::new(), Vec::new());
        let temp = p
            .schema
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("temp"));
        if let Some(s) = &p.schema {
            if !s.eq_ignore_ascii_case("main") && !temp {
                return Err(Error::new(
                    SqlState::UndefinedTable,
                    format!("unknown database {s}"),
                ));
            }
        }
        let name = p.name.as_str();
        match name {
            "table_info" | "table_xinfo" | "index_list" | "foreign_key_list" => {
                let Some(t) = &p.arg else { return Ok(none()) };
                let names = self.temp.clone();
                let main = p.schema.is_some() && !temp;
                let rows = self.read(|tx| {
                    let schema = tx.schema().clone();
                    let stored = names.stored(t);
                    // `PRAGMA temp.table_info(v)` of a temporary view is answered below.
                    let temp_table = schema.entity_pos(&stored).is_some();
                    if (!main && temp_table) || (temp && schema.view(&stored).is_none()) {
                        let Ok(e) = schema.entity(&stored) else {
                            return Ok(Vec::new());
                        };
                        let mut rows = match name {
                            "table_info" => cat::table_info(e, false),
                            "table_xinfo" => cat::table_info(e, true),
                            "index_list" => cat::index_list(e),
                            _ => cat::foreign_key_list(e),
                        };
                        if name == "index_list" {
                            for r in &mut rows {
                                if let Value::Text(n) = &r[1] {
                                    r[1] = Value::Text(names.unmangle(n));
                                }
                            }
                        }
                        return Ok(rows);
                    }
                    if super::temp::is_temp_entity(t) {
                        return Ok(Vec::new());
                    }
                    let temp_view = if main { None } else { schema.view(&stored) };
                    if schema.entity_pos(t).is_none() || temp_view.is_some() {
                        let is_temp = temp_view.is_some();
                        if let Some(v) = temp_view.or_else(|| schema.view(t)) {
                            if !name.starts_with("table_") {
                                return Ok(Vec::new());
                            }
                            let bound = Bound::default();
                            let li = LineIndex::new(&v.sql);
                            let mut c = Compiler::new(&schema, &bound, &li);
                            // A temporary view reads the session's temporary tables.
                            if is_temp {
                                c.temp = Some(&names);
                            }
                            let cv = super::view::compile_view(&mut c, v)?;
                            return Ok(cat::view_info(
                                &cv.columns,
                                &cv.query.decls,
                                name == "table_xinfo",
                            ));
                        }
                    }
                    Ok(match schema.entity(t) {
                        Err(_) => Vec::new(),
                        Ok(e) => match name {
                            "table_info" => cat::table_info(e, false),
                            "table_xinfo" => cat::table_info(e, true),
                            "index_list" => cat::index_list(e),
                            _ => cat::foreign_key_list(e),
                        },
                    })
                })?;
                if rows.is_empty() && name.starts_with("table_") {
                    // SQLite returns no result set at all for an unknown table.
                    return Ok((cols(name), Vec::new()));
                }
                Ok((cols(name), rows))
            }
            "index_info" | "index_xinfo" => {
                let Some(ix) = &p.arg else { return Ok(none()) };
                let names = self.temp.clone();
                let rows = self.read(|tx| {
                    let schema = tx.schema().clone();
                    // A temporary table's autoindex is named after its stored name.
                    let stored_auto = ix
                        .get(..17)
                        .filter(|p| p.eq_ignore_ascii_case("sqlite_autoindex_"))
                        .map(|_| format!("sqlite_autoindex_{}", names.stored(&ix[17..])));
                    for e in schema.entities() {
                        if super::temp::is_temp_entity(&e.name) && names.shown(&e.name).is_none() {
                            continue;
                        }
                        let found = e
                            .index_by_name(ix)
                            .or_else(|| stored_auto.as_deref().and_then(|a| e.index_by_name(a)));
                        if let Some(d) = found {
                            return Ok(cat::index_info(e, d, name == "index_xinfo"));
                        }
                    }
                    Ok(Vec::new())
                })?;
                Ok((cols(name), rows))
            }
            "foreign_key_check" => {
                let only = p.arg.clone();
                let rows = self.read(|tx| {
                    if let Some(t) = &only {
                        tx.schema().entity(t)?;
                    }
                    cat::foreign_key_check(tx, only.as_deref())
                })?;
                Ok((cols(name), rows))
            }
            "database_list" => Ok((
                cols(name),
                vec![vec![
                    Value::Integer(0),
                    Value::from("main"),
                    Value::Text(self.conn.database().path().display().to_string()),
                ]],
            )),
            "table_list" => {
                let names = self.temp.clone();
                let rows = self.read(|tx| {
                    Ok(tx
                        .schema()
                        .entities()
                        .iter()
                        .filter_map(|e| match names.shown(&e.name) {
                            Some(n) => Some(("temp", n, e)),
                            None if super::temp::is_temp_entity(&e.name) => None,
                            None => Some(("main", e.name.as_str(), e)),
                        })
                        .map(|(db, n, e)| {
                            vec![
                                Value::from(db),
                                Value::from(n),
                                Value::from("table"),
                                Value::Integer(e.fields.len() as i64),
                                Value::Integer(0),
                                Value::Integer(e.strict as i64),
                            ]
                        })
                        .collect())
                })?;
                Ok((cols(name), rows))
            }
            "foreign_keys" => match &p.arg {
                None => Ok(one(
                    "foreign_keys",
                    Value::Integer(self.conn.foreign_keys() as i64),
                )),
                Some(a) => {
                    let on = pragma::bool_arg(a)?;
                    // SQLite ignores this PRAGMA inside a transaction.
                    if self.tx.is_none() && on != self.conn.foreign_keys() {
                        if self.request_scoped {
                            return Err(Self::connection_state_refused(
                                &format!("PRAGMA foreign_keys = {}", if on { "ON" } else { "OFF" }),
                                "foreign keys stay enforced there (the default)",
                            ));
                        }
                        self.conn.set_foreign_keys(on);
                    }
                    Ok(none())
                }
            },
            "legacy_alter_table" => match &p.arg {
                None => Ok(one(name, Value::Integer(self.legacy_alter_table as i64))),
                Some(a) => {
                    let on = pragma::bool_arg(a)?;
                    if on {
                        return Err(Error::unsupported("PRAGMA legacy_alter_table = ON"));
                    }
                    self.legacy_alter_table = on;
                    Ok(none())
                }
            },
            "user_version" => match &p.arg {
                None => {
                    let v = self.read(|tx| Ok(tx.schema().bundle.user_version))?;
                    Ok(one(name, Value::Integer(v)))
                }
                Some(a) => {
                    let v: i64 = a
                        .trim()
                        .parse()
                        .map_err(|_| Error::invalid(format!("invalid user_version {a}")))?;
                    self.write_schema(|tx| tx.set_user_version(v))?;
                    Ok(none())
                }
            },
            "schema_version" => {
                let v = self.read(|tx| Ok(tx.schema().version() as i64))?;
                Ok(one(name, Value::Integer(v)))
            }
            "journal_mode" => Ok(one(name, Value::from("wal"))),
            "read_uncommitted"
            | "recursive_triggers"
            | "reverse_unordered_selects"
            | "case_sensitive_like"
            | "ignore_check_constraints"
            | "defer_foreign_keys"
            | "count_changes"
            | "full_column_names" => match &p.arg {
                None => Ok(one(name, Value::Integer(0))),
                Some(a) => {
                    if pragma::bool_arg(a)? && name != "read_uncommitted" {
                        return Err(Error::unsupported(format!("PRAGMA {name} = ON")));
                    }
                    Ok(none())
                }
            },
            "synchronous" => match &p.arg {
                None => Ok(one(name, Value::Integer(2))),
                Some(_) => Ok(none()),
            },
            "busy_timeout" => match &p.arg {
                None => Ok(one("timeout", Value::Integer(0))),
                Some(a) => Ok(one(
                    "timeout",
                    Value::Integer(a.trim().parse().unwrap_or(0)),
                )),
            },
            "cache_size" | "temp_store" | "mmap_size" | "page_size" | "auto_vacuum"
            | "locking_mode" | "cache_spill" | "wal_autocheckpoint" | "secure_delete"
            | "optimize" | "analysis_limit" | "automatic_index" | "threads" => match &p.arg {
                // Storage tuning knobs of SQLite's pager: accepted and ignored.
                None => Ok(one(name, Value::Integer(0))),
                Some(_) => Ok(none()),
            },
            "encoding" => Ok(one(name, Value::from("UTF-8"))),
            "compile_options" => Ok((
                vec!["compile_options".into()],
                super::functions::COMPILE_OPTIONS
                    .iter()
                    .map(|o| vec![Value::from(*o)])
                    .collect(),
            )),
            "collation_list" => Ok((
                vec!["seq".into(), "name".into()],
                vec![vec![Value::Integer(0), Value::from("BINARY")]],
            )),
            "integrity_check" | "quick_check" => Ok(one(name, Value::from("ok"))),
            "wal_checkpoint" => Ok((
                vec!["busy".into(), "log".into(), "checkpoint".into()],
                vec![vec![
                    Value::Integer(0),
                    Value::Integer(0),
                    Value::Integer(0),
                ]],
            )),
            _ => Err(Error::unsupported(format!("PRAGMA {name}"))),
        }
    }

    /// Runs a small schema write in the open transaction, or in one of its own (retried on
    /// 40001 like any autocommit statement).
    fn write_schema(&mut self, f: impl Fn(&mut Transaction) -> Result<()>) -> Result<()> {
        if let Some(tx) = self.tx.as_mut() {
            return f(tx);
        }
        let mut attempts = 0u64;
        loop {
            attempts += 1;
            let mut tx = self.conn.begin()?;
            let res = match f(&mut tx) {
                Ok(()) => tx.commit().map(|_| ()),
                Err(e) => {
                    tx.rollback();
                    Err(e)
                }
            };
            match res {
                Err(e) if e.state.is_retryable() && attempts < 20 => {
                    std::thread::sleep(std::time::Duration::from_micros(50 * attempts));
                }
                other => return other,
            }
        }
    }

    /// Runs a read against the open transaction or a fresh snapshot.
    fn read<T>(&mut self, f: impl FnOnce(&mut Transaction) -> Result<T>) -> Result<T> {
        if let Some(tx) = self.tx.as_mut() {
            return f(tx);
        }
        let mut tx = self.conn.begin()?;
        let r = f(&mut tx);
        tx.rollback();
        r
    }
}

/// What running one statement produced.
struct Outcome {
    columns: Vec<String>,
    decls: Vec<Option<String>>,
    rows: Vec<Vec<Value>>,
    write: bool,
    changes: i64,
    cascaded: i64,
    last_insert_rowid: Option<i64>,
    rows_read: u64,
}

impl Outcome {
    /// The outcome of an INSERT/UPDATE/DELETE; only an INSERT moves `last_insert_rowid`.
    fn written(o: dml::WriteOutcome, sets_last_id: bool, rows_read: u64) -> Outcome {
        Outcome {
            columns: o.columns,
            decls: o.decls,
            rows: o.rows,
            write: true,
            changes: o.changes,
            cascaded: o.cascaded,
            last_insert_rowid: if sets_last_id {
                o.last_insert_rowid
            } else {
                None
            },
            rows_read,
        }
    }
}

fn statement_ctx<'t>(
    tx: &'t mut Transaction,
    counters: Counters,
    functions: &Option<Arc<UserFunctions>>,
) -> Ctx<'t> {
    let mut ctx = Ctx::new(tx, counters);
    ctx.user_functions = functions.clone();
    ctx
}

/// A SELECT (or VALUES, or a compound), as opposed to WITH ... INSERT/UPDATE/DELETE: the
/// statements whose compiled plan is cached.
fn is_plain_query(stmt: &Statement) -> bool {
    matches!(stmt, Statement::Query(q) if !matches!(
        q.body.as_ref(),
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_)
    ))
}

/// An INSERT, UPDATE or DELETE not preceded by WITH: the writes whose compiled plan is cached
/// (a WITH ... write is compiled per execution).
fn is_plain_write(stmt: &Statement) -> bool {
    matches!(
        stmt,
        Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_)
    )
}

/// The cached plan when it is still valid for `schema`, else a new one compiled by `compile`
/// with parameter slots (kept in `plan` for the session to cache). `compile` returning `None`
/// means the statement is not planned ahead: nothing is cached and the caller runs it directly.
fn cached_plan(
    c: &mut Compiler,
    schema: &Arc<crate::catalog::Schema>,
    plan: &mut PlanUse,
    compile: impl FnOnce(&mut Compiler) -> Result<Option<Compiled>>,
) -> Result<Option<Arc<CachedPlan>>> {
    if let Some(p) = &plan.cached {
        if Arc::ptr_eq(&p.schema, schema) && p.functions_gen == plan.functions_gen {
            plan.hit.get_or_insert(true);
            return Ok(Some(p.clone()));
        }
    }
    let counted = plan.hit.is_none();
    if counted {
        plan.hit = Some(false);
        plan.stale = plan.cached.is_some();
    }
    c.param_slots = Some(Vec::new());
    let compiled = compile(c);
    let slots = c.param_slots.take().unwrap_or_default();
    let Some(compiled) = compiled? else {
        if counted {
            // Not a plan: neither a hit nor a miss.
            plan.hit = None;
            plan.stale = false;
        }
        return Ok(None);
    };
    let p = Arc::new(CachedPlan {
        schema: schema.clone(),
        functions_gen: plan.functions_gen,
        compiled,
        slots,
    });
    plan.cached = Some(p.clone());
    plan.compiled = true;
    Ok(Some(p))
}

/// The values of a plan's parameter slots for this execution.
fn slot_values(p: &CachedPlan, bound: &Bound) -> Result<Vec<Value>> {
    p.slots
        .iter()
        .map(|(occ, aff)| {
            let v = bound.values.get(*occ).cloned().ok_or_else(|| {
                Error::internal("a plan's parameter slot names a missing placeholder")
            })?;
            Ok(super::eval::convert(*aff, v))
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn run_statement(
    tx: &mut Transaction,
    text: &str,
    stmt: &Statement,
    bound: &Bound,
    counters: Counters,
    functions: &Arc<UserFunctions>,
    temp: &TempNames,
    plan: &mut PlanUse,
) -> Result<Outcome> {
    let schema = tx.schema().clone();
    let li = LineIndex::new(text);
    let mut c = Compiler::new(&schema, bound, &li);
    c.temp = Some(temp);
    let user_functions = (!functions.is_empty()).then(|| functions.clone());
    c.user_functions = user_functions.as_deref();
    let plain = |columns, decls, rows| Outcome {
        columns,
        decls,
        rows,
        write: false,
        changes: 0,
        cascaded: 0,
        last_insert_rowid: None,
        rows_read: 0,
    };
    match stmt {
        // WITH ... INSERT / UPDATE / DELETE: the common table expressions are visible to the
        // statement (its SELECT, FROM or subqueries).
        Statement::Query(q)
            if matches!(
                q.body.as_ref(),
                SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_)
            ) =>
        {
            if q.order_by.is_some() || q.limit_clause.is_some() || q.fetch.is_some() {
                return Err(Error::unsupported(
                    "ORDER BY / LIMIT after a WITH ... DML statement",
                ));
            }
            if let Some(with) = &q.with {
                query::push_ctes(&mut c, with)?;
            }
            let mut ctx = statement_ctx(tx, counters, &user_functions);
            let (o, sets_last_id) = match q.body.as_ref() {
                SetExpr::Insert(Statement::Insert(ins)) => {
                    (dml::insert(&mut c, ins, &mut ctx)?, true)
                }
                SetExpr::Update(Statement::Update(u)) => (dml::update(&mut c, u, &mut ctx)?, false),
                SetExpr::Delete(Statement::Delete(d)) => (dml::delete(&mut c, d, &mut ctx)?, false),
                _ => return Err(Error::unsupported("WITH before this statement")),
            };
            Ok(Outcome::written(o, sets_last_id, ctx.rows_read))
        }
        Statement::Query(q) => {
            let p = cached_plan(&mut c, &schema, plan, |c| {
                query::compile_query(c, q).map(|q| Some(Compiled::Query(q)))
            })?
            .ok_or_else(|| Error::internal("a SELECT without a plan"))?;
            let Compiled::Query(compiled) = &p.compiled else {
                return Err(Error::internal("a SELECT's cached plan is not a query"));
            };
            let mut ctx = statement_ctx(tx, counters, &user_functions);
            ctx.params = slot_values(&p, bound)?;
            let rows = query::run_query(compiled, &mut ctx, None)?.rows;
            let read = ctx.rows_read;
            let mut out = plain(compiled.columns.clone(), compiled.decls.clone(), rows);
            out.rows_read = read;
            Ok(out)
        }
        Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => {
            let p = cached_plan(&mut c, &schema, plan, |c| {
                Ok(dml::compile_write(c, stmt)?.map(Compiled::Write))
            })?;
            let sets_last_id = matches!(stmt, Statement::Insert(_));
            plan.ran = true;
            let mut ctx = statement_ctx(tx, counters, &user_functions);
            let o = match &p {
                Some(p) => {
                    let Compiled::Write(w) = &p.compiled else {
                        return Err(Error::internal("a write's cached plan is not a write"));
                    };
                    ctx.params = slot_values(p, bound)?;
                    dml::run_write(w, &mut ctx)?
                }
                // Writes to sqlite_sequence: compiled and run in one step.
                None => match stmt {
                    Statement::Insert(ins) => dml::insert(&mut c, ins, &mut ctx)?,
                    Statement::Update(u) => dml::update(&mut c, u, &mut ctx)?,
                    Statement::Delete(d) => dml::delete(&mut c, d, &mut ctx)?,
                    _ => return Err(Error::internal("not a write statement")),
                },
            };
            Ok(Outcome::written(o, sets_last_id, ctx.rows_read))
        }
        Statement::CreateTable(ct) => {
            ddl::create_table(tx, ct, text, temp)?;
            Ok(plain(vec![], vec![], vec![]))
        }
        Statement::CreateIndex(ci) => {
            ddl::create_index(tx, ci, text, temp)?;
            Ok(plain(vec![], vec![], vec![]))
        }
        Statement::Drop {
            object_type,
            if_exists,
            names,
            cascade,
            restrict,
            purge,
            temporary,
            table,
        } => {
            if *cascade || *restrict || *purge || *temporary || table.is_some() {
                return Err(Error::unsupported("DROP options"));
            }
            ddl::drop(tx, object_type, *if_exists, names, temp)?;
            Ok(plain(vec![], vec![], vec![]))
        }
        Statement::AlterTable(at) => {
            ddl::alter_table(tx, at, text, temp)?;
            Ok(plain(vec![], vec![], vec![]))
        }
        Statement::CreateView(cv) => {
            super::view::create_view(tx, cv, text, temp)?;
            Ok(plain(vec![], vec![], vec![]))
        }
        Statement::Explain {
            query_plan: true,
            analyze: false,
            statement,
            ..
        } => match statement.as_ref() {
            // Compiled, never run: the plan of what the SELECT would do.
            Statement::Query(q) => {
                let compiled = query::compile_query(&mut c, q)?;
                let rows = super::explain::plan_rows(&compiled)
                    .into_iter()
                    .map(|(id, parent, detail)| {
                        vec![
                            Value::Integer(id),
                            Value::Integer(parent),
                            Value::Integer(0),
                            Value::Text(detail),
                        ]
                    })
                    .collect();
                let columns = ["id", "parent", "notused", "detail"]
                    .map(String::from)
                    .to_vec();
                Ok(plain(columns, vec![None; 4], rows))
            }
            _ => Err(Error::unsupported(
                "EXPLAIN QUERY PLAN of a statement other than SELECT",
            )),
        },
        Statement::Explain { .. } | Statement::ExplainTable { .. } => Err(Error::unsupported(
            "EXPLAIN (SQLite's bytecode listing); EXPLAIN QUERY PLAN works for SELECT",
        )),
        other => {
            let kind = other.to_string();
            let head: String = kind
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ");
            Err(Error::unsupported(format!("statement {head}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_are_shared_until_cleared() {
        // A text no other test uses: the cache is process-wide and tests run in parallel.
        let text = "SELECT 1 AS shared_parse_probe_7f3a";
        let a = parse_shared(text).expect("parse");
        let b = parse_shared(text).expect("parse");
        assert!(
            Arc::ptr_eq(&a, &b),
            "second parse of a text must come from the cache"
        );
        clear_shared_parse_cache();
        let c = parse_shared(text).expect("parse");
        assert!(!Arc::ptr_eq(&a, &c), "a cleared cache parses again");
        assert_eq!(a.stmt, c.stmt);
        assert!(parse_shared("SELEC 1").is_err());
        assert!(
            parse_shared("SELEC 1").is_err(),
            "errors are not cached as statements"
        );
    }
}
