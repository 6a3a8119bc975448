//! Differential harness: runs the same statements on SQLite (rusqlite, bundled: the oracle) and
//! on ORMDB's SQL front end, and compares result columns, values and their types, row order
//! where ORDER BY fixes it (multisets otherwise), changes() counts, last insert row ids and error
//! classes. Each test file compiles this module on its own, hence the dead-code allowance.
#![allow(dead_code)]

use ormdb::{Database, Durability, Options, Params, Session, SqlState, Value};
use rusqlite::types::ValueRef;

/// The `detail` column (the fourth) of an EXPLAIN QUERY PLAN result, row by row.
pub fn plan_details(rows: &[Vec<Value>]) -> Vec<String> {
    rows.iter()
        .map(|row| match &row[3] {
            Value::Text(t) => t.clone(),
            other => panic!("detail is not text: {other:?}"),
        })
        .collect()
}

/// The outcome of one statement on one engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Res {
    Rows {
        columns: Vec<String>,
        rows: Vec<Vec<Value>>,
        changes: Option<u64>,
        last_id: i64,
    },
    /// An error class: "23505", "23503", "23502", "23514", or "error" for every other failure.
    Err(String, String),
    Unsupported(String),
}

pub struct Diff {
    pub lite: rusqlite::Connection,
    pub db: Database,
    pub s: Session,
    pub statements: usize,
    pub mismatches: Vec<String>,
    pub unsupported: Vec<String>,
    /// Also compare result column names.
    pub compare_names: bool,
}

fn from_lite(v: ValueRef) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

fn to_lite(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Integer(i) => rusqlite::types::Value::Integer(*i),
        Value::Real(r) => rusqlite::types::Value::Real(*r),
        Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
        Value::Blob(b) => rusqlite::types::Value::Blob(b.clone()),
    }
}

fn is_write(sql: &str) -> bool {
    let t = sql.trim_start().to_ascii_uppercase();
    t.starts_with("INSERT")
        || t.starts_with("UPDATE")
        || t.starts_with("DELETE")
        || t.starts_with("REPLACE")
        || t.starts_with("WITH")
}

pub fn lite_class(e: &rusqlite::Error) -> String {
    if let rusqlite::Error::SqliteFailure(f, msg) = e {
        // RESTRICT actions fail through SQLite's FK triggers (SQLITE_CONSTRAINT_TRIGGER).
        if f.code == rusqlite::ErrorCode::ConstraintViolation
            && msg.as_deref().is_some_and(|m| m.contains("FOREIGN KEY"))
        {
            return "23503".into();
        }
        return match f.extended_code {
            2067 | 1555 => "23505".into(),
            1299 => "23502".into(),
            275 => "23514".into(),
            787 => "23503".into(),
            _ => "error".into(),
        };
    }
    "error".into()
}

fn ormdb_class(e: &ormdb::Error) -> Option<String> {
    match e.state {
        SqlState::FeatureNotSupported => None,
        s if s.is_integrity() => Some(s.code().to_string()),
        _ => Some("error".into()),
    }
}

pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        // Known difference (docs/COMPAT.md): a real that needs 17 significant digits may print
        // with a different last digit (SQLite's digit generation is not correctly rounded).
        (Value::Text(x), Value::Text(y)) if x != y && x.len() >= 17 && x.len() == y.len() => {
            seventeenth_digit_only(x, y)
        }
        (Value::Real(x), Value::Real(y)) => {
            x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()) || (x.is_nan() && y.is_nan())
        }
        _ => a == b,
    }
}

fn rows_equal(a: &[Vec<Value>], b: &[Vec<Value>]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| values_equal(p, q)))
}

/// Whether two texts differ only in one digit that ends a run of at least 16 significant
/// digits (a real printed with 17 digits, possibly inside a longer text).
fn seventeenth_digit_only(x: &str, y: &str) -> bool {
    let (a, b) = (x.as_bytes(), y.as_bytes());
    let diffs: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
    let [k] = diffs.as_slice() else { return false };
    if !a[*k].is_ascii_digit() || !b[*k].is_ascii_digit() {
        return false;
    }
    let digits = a[..*k]
        .iter()
        .rev()
        .take_while(|c| c.is_ascii_digit() || **c == b'.')
        .filter(|c| c.is_ascii_digit())
        .count();
    digits >= 16
}

/// Whether the statement orders its result (an ORDER BY outside parentheses, so not one in a
/// subquery or a window definition).
pub fn top_level_order_by(sql: &str) -> bool {
    let up = sql.to_ascii_uppercase();
    let b = up.as_bytes();
    let mut depth = 0i32;
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                b'\'' | b'"' | b'`' => quote = Some(c),
                b'(' => depth += 1,
                b')' => depth -= 1,
                b'O' if depth == 0 && up[i..].starts_with("ORDER BY") => return true,
                _ => {}
            },
        }
        i += 1;
    }
    false
}

fn loose_equal(a: &[Vec<Value>], b: &[Vec<Value>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.len() == y.len()
                && x.iter().zip(y).all(|(p, q)| {
                    values_equal(p, q)
                        || (matches!(
                            (p, q),
                            (Value::Integer(_), Value::Real(_))
                                | (Value::Real(_), Value::Integer(_))
                        ) && p.total_cmp(q) == std::cmp::Ordering::Equal)
                })
        })
}

fn sort_rows(rows: &mut [Vec<Value>]) {
    rows.sort_by(|a, b| {
        for (x, y) in a.iter().zip(b) {
            let o = x.total_cmp(y);
            if o != std::cmp::Ordering::Equal {
                return o;
            }
            // total_cmp treats 1 and 1.0 as equal: order by type to make the sort canonical
            let t = x.type_name().cmp(y.type_name());
            if t != std::cmp::Ordering::Equal {
                return t;
            }
        }
        a.len().cmp(&b.len())
    });
}

impl Default for Diff {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `script` on both engines; any mismatch or unsupported statement fails the test.
pub fn run_clean(script: &str) {
    let mut d = Diff::new();
    d.script(script);
    d.assert_clean();
}

impl Diff {
    /// Fails the test with the report when anything differed or was unsupported.
    pub fn assert_clean(&self) {
        assert!(
            self.mismatches.is_empty() && self.unsupported.is_empty(),
            "{}",
            self.report()
        );
    }

    pub fn new() -> Diff {
        let lite = rusqlite::Connection::open_in_memory().expect("sqlite");
        lite.execute_batch("PRAGMA foreign_keys = ON")
            .expect("pragma");
        // Commits need not reach the disk in tests (durability is tested elsewhere).
        let db = Database::temporary_with(Options::default().durability(Durability::Normal))
            .expect("ormdb");
        let s = db.connect().sql();
        Diff {
            lite,
            db,
            s,
            statements: 0,
            mismatches: Vec::new(),
            unsupported: Vec::new(),
            compare_names: true,
        }
    }

    pub fn run_lite(&self, sql: &str, params: &[Value]) -> Res {
        let mut stmt = match self.lite.prepare(sql) {
            Ok(s) => s,
            Err(e) => return Res::Err(lite_class(&e), e.to_string()),
        };
        let columns: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
        let before = self.lite.total_changes();
        let p: Vec<rusqlite::types::Value> = params.iter().map(to_lite).collect();
        let mut rows = Vec::new();
        {
            let mut q = match stmt.query(rusqlite::params_from_iter(p.iter())) {
                Ok(q) => q,
                Err(e) => return Res::Err(lite_class(&e), e.to_string()),
            };
            loop {
                match q.next() {
                    Ok(Some(r)) => {
                        let mut vals = Vec::with_capacity(columns.len());
                        for i in 0..columns.len() {
                            vals.push(from_lite(r.get_ref(i).expect("column")));
                        }
                        rows.push(vals);
                    }
                    Ok(None) => break,
                    Err(e) => return Res::Err(lite_class(&e), e.to_string()),
                }
            }
        }
        let changes = if is_write(sql) && self.lite.total_changes() != before {
            Some(self.lite.changes())
        } else if is_write(sql) {
            Some(0)
        } else {
            None
        };
        Res::Rows {
            columns,
            rows,
            changes,
            last_id: self.lite.last_insert_rowid(),
        }
    }

    pub fn run_ormdb(&mut self, sql: &str, params: &[Value]) -> Res {
        let p = if params.is_empty() {
            Params::None
        } else {
            Params::Positional(params.to_vec())
        };
        match self.s.execute(sql, &p) {
            Ok(r) => Res::Rows {
                columns: r.columns,
                rows: r.rows,
                changes: if is_write(sql) {
                    Some(r.rows_affected)
                } else {
                    None
                },
                last_id: r.last_insert_rowid,
            },
            Err(e) => match ormdb_class(&e) {
                None => Res::Unsupported(e.to_string()),
                Some(c) => Res::Err(c, e.to_string()),
            },
        }
    }

    /// Runs on both engines and compares; returns whether they agreed.
    pub fn check(&mut self, sql: &str, params: &[Value]) -> bool {
        self.statements += 1;
        let a = self.run_lite(sql, params);
        let b = self.run_ormdb(sql, params);
        let ordered = top_level_order_by(sql);
        let verdict = match (&a, &b) {
            (_, Res::Unsupported(m)) => {
                self.unsupported.push(format!(
                    "{sql}\n    params={params:?}\n    ormdb: {m}\n    sqlite: {a:?}"
                ));
                return false;
            }
            (Res::Err(x, _), Res::Err(y, _)) => x == y,
            (
                Res::Rows {
                    columns: ca,
                    rows: ra,
                    changes: xa,
                    last_id: la,
                },
                Res::Rows {
                    columns: cb,
                    rows: rb,
                    changes: xb,
                    last_id: lb,
                },
            ) => {
                let mut ra = ra.clone();
                let mut rb = rb.clone();
                // ORDER BY fixes the order up to ties, and 1 and 1.0 tie: ordered results
                // must agree row by row up to such ties and exactly as multisets.
                let ordered = ordered
                    && ra.len() == rb.len()
                    && ra.iter().zip(&rb).all(|(x, y)| {
                        x.len() == y.len()
                            && x.iter().zip(y).all(|(p, q)| {
                                p.total_cmp(q) == std::cmp::Ordering::Equal || values_equal(p, q)
                            })
                    });
                sort_rows(&mut ra);
                sort_rows(&mut rb);
                let order_ok = ordered || !top_level_order_by(sql);
                // Deduplication keeps one of several equal rows, and 1 equals 1.0: which one
                // SQLite keeps depends on its b-tree, so after DISTINCT/UNION/INTERSECT/EXCEPT/
                // GROUP BY such rows match by value, not storage class.
                let up = sql.to_ascii_uppercase();
                let dedup = ["DISTINCT", "UNION", "INTERSECT", "EXCEPT", "GROUP BY"]
                    .iter()
                    .any(|k| up.contains(k));
                if dedup && !rows_equal(&ra, &rb) {
                    let (mut la, mut lb) = (ra.clone(), rb.clone());
                    let by_value = |x: &Vec<Value>, y: &Vec<Value>| {
                        x.iter()
                            .zip(y)
                            .map(|(p, q)| p.total_cmp(q))
                            .find(|o| *o != std::cmp::Ordering::Equal)
                            .unwrap_or(std::cmp::Ordering::Equal)
                    };
                    la.sort_by(by_value);
                    lb.sort_by(by_value);
                    if loose_equal(&la, &lb) {
                        rb = ra.clone();
                    }
                }
                order_ok
                    && (!self.compare_names || ca == cb)
                    && ca.len() == cb.len()
                    && rows_equal(&ra, &rb)
                    && xa == xb
                    // The last insert id is what an INSERT reports; after other statements
                    // it is only the connection's memory of it.
                    && (la == lb || !sql.trim_start().to_ascii_uppercase().starts_with("INSERT"))
            }
            _ => false,
        };
        if !verdict {
            self.mismatches.push(format!(
                "{sql}\n    params={params:?}\n    sqlite: {a:?}\n    ormdb:  {b:?}"
            ));
        }
        verdict
    }

    /// Runs a script of statements separated by `;` lines (no parameters).
    pub fn script(&mut self, script: &str) {
        for stmt in split(script) {
            self.check(&stmt, &[]);
        }
    }

    pub fn report(&self) -> String {
        let mut s = format!(
            "{} statements, {} mismatches, {} unsupported\n",
            self.statements,
            self.mismatches.len(),
            self.unsupported.len()
        );
        for m in self.mismatches.iter().take(40) {
            s.push_str("MISMATCH ");
            s.push_str(m);
            s.push('\n');
        }
        for m in self.unsupported.iter().take(40) {
            s.push_str("UNSUPPORTED ");
            s.push_str(m);
            s.push('\n');
        }
        s
    }
}

/// Splits a script on semicolons at line ends (good enough for test scripts).
pub fn split(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in script.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with("--") {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        if t.ends_with(';') {
            let s = cur.trim().trim_end_matches(';').trim().to_string();
            if !s.is_empty() {
                out.push(s);
            }
            cur.clear();
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}
