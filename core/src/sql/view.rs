//! Views. The stored definition is the CREATE VIEW text; every statement that reads a view
//! re-parses it and compiles its query in a compiler of its own, so the view's names resolve
//! against the schema alone (never against the reading statement's CTEs or columns), and a
//! view always reflects the current definitions of the tables it reads.

use sqlparser::ast::{self, Statement};

use super::compile::Compiler;
use super::params::Bound;
use super::parse::{self, LineIndex};
use super::query::{compile_query, Query};
use super::temp::{Qualifier, TempNames};
use crate::api::Transaction;
use crate::catalog::ViewDef;
use crate::error::{Error, Result, SqlState};

/// A view's query compiled for one statement, with the view's column names.
pub struct CompiledView {
    pub query: Query,
    pub columns: Vec<String>,
}

fn syntax(msg: impl Into<String>) -> Error {
    Error::new(SqlState::SyntaxError, msg)
}

/// The explicit column names and the query of a stored CREATE VIEW text.
fn parse_view(sql: &str) -> Result<(Vec<String>, ast::Query)> {
    match parse::parse_one(sql)? {
        Statement::CreateView(cv) => Ok((
            cv.columns.iter().map(|c| c.name.value.clone()).collect(),
            *cv.query,
        )),
        _ => Err(Error::corrupted(format!(
            "stored view definition is not a CREATE VIEW: {sql}"
        ))),
    }
}

/// Result column names made unique the way SQLite names a view's columns (`a`, `a:1`, ...).
fn unique_names(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for n in names {
        let mut name = n.clone();
        let mut k = 0;
        while out.iter().any(|o| o.eq_ignore_ascii_case(&name)) {
            k += 1;
            name = format!("{n}:{k}");
        }
        out.push(name);
    }
    out
}

/// Compiles view `v` for a statement being compiled by `outer`.
pub fn compile_view(outer: &mut Compiler, v: &ViewDef) -> Result<CompiledView> {
    if outer
        .view_stack
        .iter()
        .any(|n| n.eq_ignore_ascii_case(&v.name))
    {
        return Err(syntax(format!("view {} is circularly defined", v.name)));
    }
    let (explicit, q) = parse_view(&v.sql)?;
    let li = LineIndex::new(&v.sql);
    // A view holds no parameters (refused at CREATE VIEW).
    let bound = Bound::default();
    let mut c = Compiler::new(outer.schema, &bound, &li);
    c.user_functions = outer.user_functions;
    // A temporary view may read the session's temporary tables; a persistent one never does.
    if super::temp::is_temp_entity(&v.name) {
        c.temp = outer.temp;
    }
    // CTE result slots are per statement: the view's CTEs must not reuse the outer ones.
    c.cte_slots = outer.cte_slots;
    c.view_stack = outer.view_stack.clone();
    c.view_stack.push(v.name.clone());
    // A view's query is nested in the reading one (its columns would carry collations).
    c.query_depth = outer.query_depth.max(1);
    c.from_source = true;
    let query = compile_query(&mut c, &q)
        .map_err(|e| Error::new(e.state, format!("error in view {}: {}", v.name, e.message)))?;
    outer.cte_slots = c.cte_slots;
    outer.volatile |= c.volatile;
    let columns = if explicit.is_empty() {
        unique_names(&query.columns)
    } else if explicit.len() != query.columns.len() {
        return Err(syntax(format!(
            "expected {} columns for '{}' but got {}",
            explicit.len(),
            v.name,
            query.columns.len()
        )));
    } else {
        explicit
    };
    Ok(CompiledView { query, columns })
}

/// CREATE VIEW. Like SQLite, the query's names are resolved when the view is read, not now:
/// a view may name a table created later.
pub fn create_view(
    tx: &mut Transaction,
    cv: &ast::CreateView,
    sql: &str,
    temp_names: &TempNames,
) -> Result<()> {
    if cv.or_alter
        || cv.or_replace
        || cv.materialized
        || cv.secure
        || cv.to.is_some()
        || cv.params.is_some()
        || cv.with_no_schema_binding
        || cv.copy_grants
        || cv.comment.is_some()
        || !cv.cluster_by.is_empty()
        || !matches!(cv.options, ast::CreateTableOptions::None)
        || cv
            .columns
            .iter()
            .any(|c| c.data_type.is_some() || c.options.is_some())
    {
        return Err(Error::unsupported("CREATE VIEW options"));
    }
    let (qual, name) = super::temp::split(&cv.name)?;
    let is_temp = cv.temporary || qual == Qualifier::Temp;
    if name.to_ascii_lowercase().starts_with("sqlite_") {
        return Err(Error::new(
            SqlState::InsufficientPrivilege,
            format!("object name reserved for internal use: {name}"),
        ));
    }
    if !parse::placeholders(sql)?.is_empty() {
        return Err(syntax("parameters are not allowed in views"));
    }
    let schema = tx.schema().clone();
    let stored = if is_temp {
        temp_names.stored(&name)
    } else {
        name.clone()
    };
    if cv.if_not_exists && (schema.view(&stored).is_some() || schema.entity_pos(&stored).is_some())
    {
        return Ok(());
    }
    let li = LineIndex::new(sql);
    let off = li
        .offset(ast::Spanned::span(&cv.name).start)
        .ok_or_else(|| Error::internal("view name location"))?;
    let def = ViewDef {
        name: stored,
        sql: format!("CREATE VIEW {}", sql[off..].trim_end()),
    };
    tx.create_view(def, cv.if_not_exists).map(|_| ())
}
