//! Queries: compilation of SELECT / VALUES / compound selects / CTEs into a [`Query`] and their
//! execution (nested-loop joins with primary key and index lookups for equality and IN
//! predicates, grouping and aggregates, ORDER BY, LIMIT/OFFSET).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use sqlparser::ast::{
    self as ast, Expr as AExpr, GroupByExpr, JoinConstraint, JoinOperator, LimitClause,
    OrderByKind, SelectItem, SetExpr, SetOperator, SetQuantifier, TableFactor,
};

use super::catalog_emulation;
use super::compile::{
    conjuncts, refs_unbound, walk, AggCall, AggFunc, ColInfo, Compiler, CteDef, Frame, Op, SExpr,
};
use super::eval::{eval, is_true, Ctx, Env};
use super::parse::{is_schema_table, is_temp_schema_table, table_name};
use crate::error::{Error, Result, SqlState};
use crate::ir::expr::text_of;
use crate::value::{encode_key_value, DataType, Value};

/// A compiled query.
#[derive(Debug)]
pub struct Query {
    pub body: Body,
    pub order: Vec<OrderSpec>,
    pub limit: Option<SExpr>,
    pub offset: Option<SExpr>,
    pub columns: Vec<String>,
    pub decls: Vec<Option<String>>,
    /// Comparison affinity of each result column (a table column's; None for expressions).
    pub affinities: Vec<Option<DataType>>,
    pub correlated: bool,
    /// Unique per compiled query: the key of its cached rows (addresses can be reused once a
    /// compiled expression is dropped).
    pub id: usize,
}

/// A fresh query id.
pub fn next_query_id() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    NEXT.fetch_add(1, AtomicOrdering::Relaxed)
}

#[derive(Debug)]
pub enum Body {
    Select(Box<SelectPlan>),
    Values(Vec<Vec<SExpr>>),
    SetOp {
        op: SetOp,
        all: bool,
        left: Box<Body>,
        right: Box<Body>,
    },
    Query(Arc<Query>),
    /// A recursive CTE: `init`, then `step` over the rows the previous round added (exposed
    /// in `work_slot`) until a round adds none.
    Recursive {
        init: Box<Body>,
        step: Box<Body>,
        all: bool,
        work_slot: usize,
        /// The CTE query's own LIMIT and OFFSET.
        cap: Option<(SExpr, Option<SExpr>)>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOp {
    Union,
    Intersect,
    Except,
}

#[derive(Debug)]
pub struct OrderSpec {
    pub key: OrderKey,
    pub desc: bool,
    pub nulls_first: Option<bool>,
}

#[derive(Debug, Clone, Copy)]
pub enum OrderKey {
    Output(usize),
    Expr(usize),
}

#[derive(Debug)]
pub struct SelectPlan {
    pub sources: Vec<Source>,
    pub width: usize,
    pub where_: Option<SExpr>,
    pub group_by: Vec<SExpr>,
    pub aggs: Vec<AggCall>,
    pub aggregate: bool,
    pub having: Option<SExpr>,
    pub projection: Vec<SExpr>,
    pub distinct: bool,
    pub order_keys: Vec<SExpr>,
    /// Comparison affinity of each result column.
    pub affinities: Vec<Option<DataType>>,
    /// Window function calls; their results follow the FROM columns and aggregates.
    pub windows: Vec<super::compile::WindowCall>,
    /// The declared collation each result column carries (derived tables, CTEs and views
    /// pass it on to the reading query).
    pub collations: Vec<Option<super::compile::Collation>>,
    /// The only source's access path returns rows in the query's ORDER BY order.
    pub presorted: bool,
    /// For a presorted read of one table through an index (see `order_by_index`): which of
    /// its columns the query reads (WHERE, result columns, ORDER BY). The rows are then built
    /// with only those values; the others stay NULL, as nothing evaluates them. None when a
    /// subquery could read the row (it is then built whole).
    pub read_cols: Option<Vec<bool>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    /// RIGHT JOIN: every row of this source is kept; unmatched ones get NULLs for all the
    /// sources before it.
    Right,
    /// FULL JOIN: LEFT and RIGHT at once.
    Full,
}

#[derive(Debug)]
pub struct Source {
    pub kind: SourceKind,
    pub offset: usize,
    pub width: usize,
    pub join: JoinKind,
    pub on: Option<SExpr>,
    pub access: Access,
}

#[derive(Debug)]
pub enum SourceKind {
    Table {
        name: String,
    },
    /// sqlite_master, or (with the session's names) sqlite_temp_master.
    SchemaTable {
        temp: Option<super::temp::TempNames>,
    },
    /// sqlite_sequence.
    SequenceTable,
    Query(Arc<Query>),
    Cte {
        slot: usize,
        query: Arc<Query>,
    },
}

/// How a table's candidate rows are found. Lookups only narrow the candidates: every
/// predicate is still evaluated on them.
#[derive(Debug)]
pub enum Access {
    Scan,
    /// By row id (one key per expression).
    RowId(Vec<SExpr>),
    /// By an index's leading fields: one key tuple per lookup.
    Index {
        name: String,
        keys: Vec<Vec<SExpr>>,
    },
    /// Row ids within bounds (`<`, `<=`, `>`, `>=`, BETWEEN on the row id): (expression,
    /// inclusive).
    RowIdRange {
        lo: Option<(SExpr, bool)>,
        hi: Option<(SExpr, bool)>,
    },
    /// Equalities on an index's leading fields, then bounds on its next field.
    IndexRange {
        name: String,
        eq: Vec<SExpr>,
        lo: Option<(SExpr, bool)>,
        hi: Option<(SExpr, bool)>,
        /// Set when the rows must come in index order (`Some(desc)`): the query's ORDER BY
        /// is that order, so it is not sorted, and a LIMIT stops the index read early (see
        /// `order_by_index`).
        order: Option<bool>,
    },
}

/// Rows produced by a query.
#[derive(Debug, Default)]
pub struct QueryRows {
    pub rows: Vec<Vec<Value>>,
}

fn syntax(msg: impl Into<String>) -> Error {
    Error::new(SqlState::SyntaxError, msg)
}

// ---------------------------------------------------------------- compilation

pub fn compile_query(c: &mut Compiler, q: &ast::Query) -> Result<Query> {
    if q.fetch.is_some() || !q.locks.is_empty() || q.for_clause.is_some() {
        return Err(Error::unsupported("FETCH/FOR clauses"));
    }
    if !q.pipe_operators.is_empty() || q.settings.is_some() || q.format_clause.is_some() {
        return Err(Error::unsupported("query pipe operators/settings"));
    }
    let ctes_before = c.ctes.len();
    let from_source = std::mem::take(&mut c.from_source);
    c.query_depth += 1;
    if let Some(with) = &q.with {
        if let Err(e) = push_ctes(c, with) {
            c.query_depth -= 1;
            c.ctes.truncate(ctes_before);
            return Err(e);
        }
    }
    c.from_source = from_source;
    let res = compile_query_body(c, q);
    c.from_source = false;
    c.query_depth -= 1;
    c.ctes.truncate(ctes_before);
    res
}

/// Compiles the common table expressions of a WITH clause onto `c.ctes` (the caller truncates
/// them when the statement is compiled).
pub fn push_ctes(c: &mut Compiler, with: &ast::With) -> Result<()> {
    for cte in &with.cte_tables {
        // As in SQLite, RECURSIVE is optional: a CTE whose FROM reads itself is recursive
        // (Django's sqlite backend relies on this when it looks for referencing tables).
        let name = &cte.alias.name.value;
        let recursive = if with.recursive {
            query_mentions(&cte.query, name)
        } else {
            reads_table(&cte.query.body, name)
        };
        if recursive {
            let def = compile_recursive_cte(c, cte)?;
            c.ctes.push(def);
            continue;
        }
        c.from_source = true;
        let sub = compile_query(c, &cte.query)?;
        let columns = cte_columns(cte, sub.columns.clone())?;
        let slot = c.cte_slots;
        c.cte_slots += 1;
        c.ctes.push(CteDef {
            name: cte.alias.name.value.clone(),
            query: Arc::new(sub),
            columns,
            slot,
        });
    }
    Ok(())
}

/// A CTE's column names: the ones in `name(a, b, ...)` when given (as many as the query's
/// columns), else the query's own.
fn cte_columns(cte: &ast::Cte, query_columns: Vec<String>) -> Result<Vec<String>> {
    if cte.alias.columns.is_empty() {
        return Ok(query_columns);
    }
    if cte.alias.columns.len() != query_columns.len() {
        return Err(syntax(format!(
            "table {} has {} values for {} columns",
            cte.alias.name.value,
            query_columns.len(),
            cte.alias.columns.len()
        )));
    }
    Ok(cte
        .alias
        .columns
        .iter()
        .map(|c| c.name.value.clone())
        .collect())
}

/// Most rows a recursive CTE may produce without a LIMIT of its own.
const RECURSION_ROW_LIMIT: usize = 1_000_000;

/// `name(cols) AS (initial UNION [ALL] recursive)`: the recursive part reads the rows the
/// previous step added (the working table, its own slot); the query reads the final result.
fn compile_recursive_cte(c: &mut Compiler, cte: &ast::Cte) -> Result<CteDef> {
    let name = cte.alias.name.value.clone();
    let q = &cte.query;
    if q.with.is_some() || q.order_by.is_some() || q.fetch.is_some() {
        return Err(Error::unsupported(format!(
            "WITH or ORDER BY inside recursive common table expression {name}"
        )));
    }
    let SetExpr::SetOperation {
        left,
        op: SetOperator::Union,
        set_quantifier,
        right,
    } = q.body.as_ref()
    else {
        return Err(Error::unsupported(format!(
            "recursive common table expression {name} that is not `initial UNION [ALL] recursive`"
        )));
    };
    let all = match set_quantifier {
        SetQuantifier::All => true,
        SetQuantifier::None | SetQuantifier::Distinct => false,
        other => return Err(Error::unsupported(format!("set quantifier {other}"))),
    };
    let (init, init_cols, decls, corr_init) = compile_set_expr(c, left)?;
    let columns = cte_columns(cte, init_cols)?;
    let work_slot = c.cte_slots;
    let final_slot = c.cte_slots + 1;
    c.cte_slots += 2;
    let affinities = body_affinities(&init);
    let placeholder = Arc::new(Query {
        body: Body::Values(Vec::new()),
        order: Vec::new(),
        limit: None,
        offset: None,
        columns: columns.clone(),
        decls: decls.clone(),
        affinities: affinities.clone(),
        correlated: false,
        id: next_query_id(),
    });
    c.ctes.push(CteDef {
        name: name.clone(),
        query: placeholder,
        columns: columns.clone(),
        slot: work_slot,
    });
    let step = compile_set_expr(c, right);
    c.ctes.pop();
    let (step, step_cols, _, corr_step) = step?;
    if step_cols.len() != columns.len() {
        return Err(syntax(format!(
            "SELECTs to the left and right of UNION do not have the same number of result columns ({name})"
        )));
    }
    // LIMIT/OFFSET of the CTE's own query bound the recursion.
    let cap = match &q.limit_clause {
        None => None,
        Some(LimitClause::LimitOffset {
            limit: Some(l),
            offset,
            limit_by,
        }) if limit_by.is_empty() => {
            c.frames.push(Frame::default());
            let l = c.expr(l);
            let o = offset.as_ref().map(|o| c.expr(&o.value)).transpose();
            c.frames.pop();
            Some((l?, o?))
        }
        Some(_) => {
            return Err(Error::unsupported(format!(
                "this LIMIT form in recursive common table expression {name}"
            )))
        }
    };
    let query = Query {
        body: Body::Recursive {
            init: Box::new(init),
            step: Box::new(step),
            all,
            work_slot,
            cap,
        },
        order: Vec::new(),
        limit: None,
        offset: None,
        columns: columns.clone(),
        decls,
        affinities,
        correlated: corr_init || corr_step,
        id: next_query_id(),
    };
    Ok(CteDef {
        name,
        query: Arc::new(query),
        columns,
        slot: final_slot,
    })
}

fn query_mentions(q: &ast::Query, name: &str) -> bool {
    // Cheap textual check: a recursive CTE names itself in its own body.
    let text = q.to_string().to_ascii_lowercase();
    let n = name.to_ascii_lowercase();
    text.split(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
        .any(|w| w == n)
}

/// Whether a FROM clause of `body` (its compound parts and derived tables included) reads the
/// table `name`: the structural test for a self-reference, where [`query_mentions`] would also
/// match a column or alias of that name.
fn reads_table(body: &ast::SetExpr, name: &str) -> bool {
    fn factor(f: &ast::TableFactor, name: &str) -> bool {
        match f {
            ast::TableFactor::Table { name: t, .. } => {
                t.0.last()
                    .and_then(|p| p.as_ident())
                    .is_some_and(|i| i.value.eq_ignore_ascii_case(name))
            }
            ast::TableFactor::Derived { subquery, .. } => reads_table(&subquery.body, name),
            ast::TableFactor::NestedJoin {
                table_with_joins, ..
            } => from(std::slice::from_ref(table_with_joins.as_ref()), name),
            _ => false,
        }
    }
    fn from(tables: &[ast::TableWithJoins], name: &str) -> bool {
        tables
            .iter()
            .any(|t| factor(&t.relation, name) || t.joins.iter().any(|j| factor(&j.relation, name)))
    }
    match body {
        ast::SetExpr::Select(sel) => from(&sel.from, name),
        ast::SetExpr::SetOperation { left, right, .. } => {
            reads_table(left, name) || reads_table(right, name)
        }
        ast::SetExpr::Query(q) => reads_table(&q.body, name),
        _ => false,
    }
}

fn compile_query_body(c: &mut Compiler, q: &ast::Query) -> Result<Query> {
    let order_exprs: Vec<&ast::OrderByExpr> = match &q.order_by {
        None => Vec::new(),
        Some(ob) => match &ob.kind {
            OrderByKind::Expressions(v) => v.iter().collect(),
            OrderByKind::All(_) => return Err(Error::unsupported("ORDER BY ALL")),
        },
    };
    for o in &order_exprs {
        if o.with_fill.is_some() {
            return Err(Error::unsupported("ORDER BY ... WITH FILL"));
        }
    }
    let (limit, offset) = match &q.limit_clause {
        None => (None, None),
        Some(LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) => {
            if !limit_by.is_empty() {
                return Err(Error::unsupported("LIMIT BY"));
            }
            (limit.clone(), offset.as_ref().map(|o| o.value.clone()))
        }
        Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
            (Some(limit.clone()), Some(offset.clone()))
        }
    };
    // LIMIT/OFFSET see no columns of the query (only enclosing ones).
    let compile_const = |c: &mut Compiler, e: &Option<AExpr>| -> Result<Option<SExpr>> {
        match e {
            None => Ok(None),
            Some(x) => {
                c.frames.push(Frame::default());
                let r = c.expr(x);
                let f = c.frames.pop();
                let correlated = f.is_some_and(|f| f.correlated);
                let r = r?;
                if correlated {
                    return Err(Error::unsupported(
                        "LIMIT/OFFSET referring to outer columns",
                    ));
                }
                Ok(Some(r))
            }
        }
    };
    let limit = compile_const(c, &limit)?;
    let offset = compile_const(c, &offset)?;
    match q.body.as_ref() {
        SetExpr::Select(s) => {
            let (mut plan, columns, decls, order, correlated) = compile_select(c, s, &order_exprs)?;
            order_by_index(c, &mut plan, &order, limit.is_some())?;
            let affinities = plan.affinities.clone();
            Ok(Query {
                body: Body::Select(Box::new(plan)),
                order,
                limit,
                offset,
                affinities,
                columns,
                decls,
                correlated,
                id: next_query_id(),
            })
        }
        other => {
            let (body, columns, decls, correlated) = compile_set_expr(c, other)?;
            let mut order = Vec::new();
            for (n, o) in order_exprs.iter().enumerate() {
                let i = match_output_column(c, &o.expr, &columns, n)?;
                order.push(OrderSpec {
                    key: OrderKey::Output(i),
                    desc: is_desc(o),
                    nulls_first: o.options.nulls_first,
                });
            }
            Ok(Query {
                affinities: body_affinities(&body),
                body,
                order,
                limit,
                offset,
                columns,
                decls,
                correlated,
                id: next_query_id(),
            })
        }
    }
}

fn body_affinities(b: &Body) -> Vec<Option<DataType>> {
    match b {
        Body::Select(s) => s.affinities.clone(),
        Body::Values(rows) => vec![None; rows.first().map_or(0, Vec::len)],
        Body::SetOp { left, .. } => body_affinities(left),
        Body::Query(q) => q.affinities.clone(),
        Body::Recursive { init, .. } => body_affinities(init),
    }
}

fn is_desc(o: &ast::OrderByExpr) -> bool {
    matches!(o.options.sort, Some(ast::OrderBySort::Desc))
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, x) if x != 11 => "st",
        (2, x) if x != 12 => "nd",
        (3, x) if x != 13 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

fn match_output_column(c: &mut Compiler, e: &AExpr, columns: &[String], n: usize) -> Result<usize> {
    if let Some(k) = integer_literal(e) {
        if k < 1 || k as usize > columns.len() {
            return Err(syntax(format!(
                "{} ORDER BY term out of range - should be between 1 and {}",
                ordinal(n + 1),
                columns.len()
            )));
        }
        return Ok(k as usize - 1);
    }
    let name = match e {
        AExpr::Identifier(i) => i.value.clone(),
        AExpr::CompoundIdentifier(p) => p.last().map(|i| i.value.clone()).unwrap_or_default(),
        other => c.text_of(other),
    };
    columns
        .iter()
        .position(|col| col.eq_ignore_ascii_case(&name))
        .ok_or_else(|| {
            syntax(format!(
                "{} ORDER BY term does not match any column in the result set",
                ordinal(n + 1)
            ))
        })
}

fn integer_literal(e: &AExpr) -> Option<i64> {
    match e {
        AExpr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

type BodyInfo = (Body, Vec<String>, Vec<Option<String>>, bool);

fn compile_set_expr(c: &mut Compiler, s: &SetExpr) -> Result<BodyInfo> {
    match s {
        SetExpr::Select(sel) => {
            let (plan, cols, decls, _, corr) = compile_select(c, sel, &[])?;
            Ok((Body::Select(Box::new(plan)), cols, decls, corr))
        }
        SetExpr::Query(q) => {
            let q = compile_query(c, q)?;
            let cols = q.columns.clone();
            let decls = q.decls.clone();
            let corr = q.correlated;
            Ok((Body::Query(Arc::new(q)), cols, decls, corr))
        }
        SetExpr::Values(v) => {
            c.frames.push(Frame::default());
            let mut rows = Vec::new();
            let mut width = None;
            let mut err = None;
            for r in &v.rows {
                if *width.get_or_insert(r.len()) != r.len() {
                    err = Some(syntax("all VALUES must have the same number of terms"));
                    break;
                }
                match r.iter().map(|e| c.expr(e)).collect::<Result<Vec<_>>>() {
                    Ok(x) => rows.push(x),
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            }
            let f = c.frames.pop().unwrap_or_default();
            if let Some(e) = err {
                return Err(e);
            }
            let w = width.unwrap_or(0);
            let cols = (1..=w).map(|i| format!("column{i}")).collect();
            Ok((Body::Values(rows), cols, vec![None; w], f.correlated))
        }
        SetExpr::SetOperation {
            left,
            op,
            set_quantifier,
            right,
        } => {
            let op2 = match op {
                SetOperator::Union => SetOp::Union,
                SetOperator::Intersect => SetOp::Intersect,
                SetOperator::Except | SetOperator::Minus => SetOp::Except,
            };
            let all = match set_quantifier {
                SetQuantifier::All => true,
                SetQuantifier::None | SetQuantifier::Distinct => false,
                other => return Err(Error::unsupported(format!("set quantifier {other}"))),
            };
            if all && op2 != SetOp::Union {
                return Err(Error::unsupported(format!("{op} ALL")));
            }
            let was = std::mem::replace(&mut c.in_compound, true);
            let l = compile_set_expr(c, left);
            let r = l.is_ok().then(|| compile_set_expr(c, right));
            c.in_compound = was;
            let (l, lc, ld, lcorr) = l?;
            let (r, rc, _, rcorr) = r.expect("compiled when the left side compiled")?;
            if lc.len() != rc.len() {
                return Err(syntax(format!(
                    "SELECTs to the left and right of {op} do not have the same number of result columns"
                )));
            }
            Ok((
                Body::SetOp {
                    op: op2,
                    all,
                    left: Box::new(l),
                    right: Box::new(r),
                },
                lc,
                ld,
                lcorr || rcorr,
            ))
        }
        other => Err(Error::unsupported(format!("query form {other}"))),
    }
}

type SelectParts = (SelectPlan, Vec<String>, Vec<Option<String>>, Vec<OrderSpec>);

type SelectInfo = (
    SelectPlan,
    Vec<String>,
    Vec<Option<String>>,
    Vec<OrderSpec>,
    bool,
);

/// Adds a FROM item's columns to the current frame and returns its source.
fn compile_factor(c: &mut Compiler, f: &TableFactor, join: JoinKind) -> Result<Source> {
    let offset = c.frame().cols.len();
    match f {
        TableFactor::Table {
            name,
            alias,
            args,
            with_hints,
            version,
            partitions,
            sample,
            index_directives,
            ..
        } => {
            if args.is_some() {
                return Err(Error::unsupported(format!("table-valued function {name}")));
            }
            if !with_hints.is_empty()
                || version.is_some()
                || !partitions.is_empty()
                || sample.is_some()
            {
                return Err(Error::unsupported(format!("table hints on {name}")));
            }
            if !index_directives.is_empty() {
                return Err(Error::unsupported("INDEXED BY / NOT INDEXED"));
            }
            if super::sequence::is_sequence_table(name)
                && !c
                    .ctes
                    .iter()
                    .any(|d| d.name.eq_ignore_ascii_case("sqlite_sequence"))
            {
                if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
                    return Err(Error::unsupported("column aliases on a table"));
                }
                let shown = alias
                    .as_ref()
                    .map_or("sqlite_sequence".to_string(), |a| a.name.value.clone());
                c.frame().cols.extend(super::sequence::column_infos(&shown));
                return Ok(Source {
                    kind: SourceKind::SequenceTable,
                    offset,
                    width: super::sequence::COLUMNS.len(),
                    join,
                    on: None,
                    access: Access::Scan,
                });
            }
            let (qual, tname) = super::temp::split(name)?;
            if let Some(a) = alias {
                if !a.columns.is_empty() {
                    return Err(Error::unsupported("column aliases on a table"));
                }
            }
            let shown = alias
                .as_ref()
                .map(|a| a.name.value.clone())
                .unwrap_or_else(|| tname.clone());
            // CTEs shadow tables (innermost first), unless the name is schema-qualified.
            let qualified = name.0.len() > 1;
            if !qualified {
                if let Some(cte) = c
                    .ctes
                    .iter()
                    .rev()
                    .find(|d| d.name.eq_ignore_ascii_case(&tname))
                    .cloned()
                {
                    push_query_columns(
                        c,
                        &cte.query,
                        cte.columns.iter().map(|n| (Some(shown.clone()), n.clone())),
                    );
                    return Ok(Source {
                        kind: SourceKind::Cte {
                            slot: cte.slot,
                            query: cte.query.clone(),
                        },
                        offset,
                        width: cte.columns.len(),
                        join,
                        on: None,
                        access: Access::Scan,
                    });
                }
            }
            // The session's temporary table comes first (SQLite searches temp, then main).
            let stored = super::temp::resolve(c.temp, c.schema, name)?;
            let is_temp = qual == super::temp::Qualifier::Temp || stored != tname;
            let temp_view = match c.temp {
                Some(t) if qual != super::temp::Qualifier::Main => {
                    c.schema.view(&t.stored(&tname)).cloned()
                }
                _ => None,
            };
            let view = if temp_view.is_some() {
                temp_view
            } else if is_temp {
                None
            } else {
                c.schema.view(&tname).cloned()
            };
            if let Some(v) = view {
                let cv = super::view::compile_view(c, &v)?;
                push_query_columns(
                    c,
                    &cv.query,
                    cv.columns.iter().map(|n| (Some(shown.clone()), n.clone())),
                );
                // A CTE slot: a view reads nothing of the outer query, so its rows are
                // computed once per statement however often the join loop asks.
                let slot = c.cte_slots;
                c.cte_slots += 1;
                return Ok(Source {
                    kind: SourceKind::Cte {
                        slot,
                        query: Arc::new(cv.query),
                    },
                    offset,
                    width: cv.columns.len(),
                    join,
                    on: None,
                    access: Access::Scan,
                });
            }
            if !is_temp && (is_schema_table(&tname) || is_temp_schema_table(&tname)) {
                for (n, t) in catalog_emulation::SCHEMA_COLUMNS {
                    c.frame().cols.push(ColInfo {
                        table: Some(shown.clone()),
                        name: n.to_string(),
                        affinity: Some(DataType::from_declared(t)),
                        decl: Some(t.to_string()),
                        hidden: false,
                        alias_of: None,
                        collation: None,
                    });
                }
                return Ok(Source {
                    kind: SourceKind::SchemaTable {
                        temp: is_temp_schema_table(&tname)
                            .then(|| c.temp.cloned().unwrap_or_default()),
                    },
                    offset,
                    width: catalog_emulation::SCHEMA_COLUMNS.len(),
                    join,
                    on: None,
                    access: Access::Scan,
                });
            }
            let e = c
                .schema
                .entity(&stored)
                .map_err(|_| Error::unknown_entity(&tname))?;
            let colls = super::ddl::declared_collations(e);
            for (fi, fd) in e.fields.iter().enumerate() {
                let aff = match fd.ty {
                    DataType::Any => DataType::Blob,
                    t => t,
                };
                c.frames.last_mut().expect("frame").cols.push(ColInfo {
                    table: Some(shown.clone()),
                    name: fd.name.clone(),
                    affinity: Some(aff),
                    decl: Some(fd.decl_type.clone()),
                    hidden: false,
                    alias_of: None,
                    collation: colls.get(fi).copied().flatten(),
                });
            }
            let ename = e.name.clone();
            let alias_of = e.rowid_alias.map(|a| e.fields[a as usize].name.clone());
            c.frame().cols.push(ColInfo {
                table: Some(shown),
                name: "rowid".into(),
                affinity: Some(DataType::Integer),
                decl: Some("INTEGER".into()),
                hidden: true,
                alias_of,
                collation: None,
            });
            let width = c.frame().cols.len() - offset;
            Ok(Source {
                kind: SourceKind::Table { name: ename },
                offset,
                width,
                join,
                on: None,
                access: Access::Scan,
            })
        }
        TableFactor::Derived {
            lateral,
            subquery,
            alias,
            sample,
        } => {
            if sample.is_some() {
                return Err(Error::unsupported("TABLESAMPLE"));
            }
            if *lateral {
                return Err(Error::unsupported("LATERAL"));
            }
            c.from_source = true;
            let q = compile_query(c, subquery)?;
            let shown = alias.as_ref().map(|a| a.name.value.clone());
            let mut names = q.columns.clone();
            if let Some(a) = alias {
                if !a.columns.is_empty() {
                    if a.columns.len() != names.len() {
                        return Err(syntax("derived table column alias count mismatch"));
                    }
                    names = a.columns.iter().map(|c| c.name.value.clone()).collect();
                }
            }
            push_query_columns(c, &q, names.iter().map(|n| (shown.clone(), n.clone())));
            if q.correlated {
                c.frame().correlated = true;
            }
            Ok(Source {
                kind: SourceKind::Query(Arc::new(q)),
                offset,
                width: names.len(),
                join,
                on: None,
                access: Access::Scan,
            })
        }
        TableFactor::NestedJoin {
            table_with_joins,
            alias,
        } => {
            if alias.is_some() {
                return Err(Error::unsupported("an alias on a parenthesized join"));
            }
            compile_nested_join(c, table_with_joins, offset, join)
        }
        other => Err(Error::unsupported(format!("FROM item {other}"))),
    }
}

/// `a LEFT JOIN (b JOIN c ON ...) ON ...` (SQLAlchemy's joined eager load of a many-to-many
/// relation): the parenthesized join runs as a derived table whose columns keep the names
/// of their tables, so the outer ON clause and the select list refer to `b.x` and `c.y` as
/// usual. Its members must be tables joined without USING / NATURAL (whose merged columns
/// would not belong to one table).
fn compile_nested_join(
    c: &mut Compiler,
    twj: &ast::TableWithJoins,
    offset: usize,
    join: JoinKind,
) -> Result<Source> {
    let mut owners: Vec<(String, String)> = Vec::new();
    for j in &twj.joins {
        let constraint = match &j.join_operator {
            JoinOperator::Join(k)
            | JoinOperator::Inner(k)
            | JoinOperator::Left(k)
            | JoinOperator::LeftOuter(k)
            | JoinOperator::CrossJoin(k) => k,
            _ => &JoinConstraint::None,
        };
        if matches!(
            constraint,
            JoinConstraint::Using(_) | JoinConstraint::Natural
        ) {
            return Err(Error::unsupported(
                "USING or NATURAL inside a parenthesized join",
            ));
        }
    }
    for f in std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation)) {
        let TableFactor::Table { name, alias, .. } = f else {
            return Err(Error::unsupported(
                "a parenthesized join of anything but tables",
            ));
        };
        let tname = table_name(name)?;
        if is_schema_table(&tname)
            || is_temp_schema_table(&tname)
            || c.ctes.iter().any(|d| d.name.eq_ignore_ascii_case(&tname))
        {
            return Err(Error::unsupported(format!(
                "{tname} inside a parenthesized join"
            )));
        }
        let shown = alias
            .as_ref()
            .map(|a| a.name.value.clone())
            .unwrap_or_else(|| tname.clone());
        for fd in &c.schema.entity(&tname)?.fields {
            owners.push((shown.clone(), fd.name.clone()));
        }
    }
    // The FROM clause is the statement's own AST (its parameters are bound by their position
    // in the statement text); only the `SELECT *` around it comes from a template.
    let mut query = match super::parse::parse_one("SELECT * FROM t")? {
        ast::Statement::Query(q) => q,
        _ => return Err(Error::internal("nested join template is not a query")),
    };
    match query.body.as_mut() {
        SetExpr::Select(sel) => sel.from = vec![twj.clone()],
        _ => return Err(Error::internal("nested join template is not a SELECT")),
    }
    let q = compile_query(c, &query)?;
    if q.columns.len() != owners.len() {
        return Err(Error::internal("parenthesized join: column count mismatch"));
    }
    push_query_columns(
        c,
        &q,
        owners.iter().map(|(t, n)| (Some(t.clone()), n.clone())),
    );
    if q.correlated {
        c.frame().correlated = true;
    }
    Ok(Source {
        kind: SourceKind::Query(Arc::new(q)),
        offset,
        width: owners.len(),
        join,
        on: None,
        access: Access::Scan,
    })
}

fn compile_join(c: &mut Compiler, j: &ast::Join, sources: &mut Vec<Source>) -> Result<()> {
    let (kind, constraint) = match &j.join_operator {
        JoinOperator::Join(k) | JoinOperator::Inner(k) => (JoinKind::Inner, Some(k)),
        JoinOperator::Left(k) | JoinOperator::LeftOuter(k) => (JoinKind::Left, Some(k)),
        JoinOperator::CrossJoin(k) => (JoinKind::Inner, Some(k)),
        JoinOperator::Right(k) | JoinOperator::RightOuter(k) => (JoinKind::Right, Some(k)),
        JoinOperator::FullOuter(k) => (JoinKind::Full, Some(k)),
        other => {
            return Err(Error::unsupported(
                format!("join {other:?}")
                    .chars()
                    .take(60)
                    .collect::<String>(),
            ))
        }
    };
    let left_cols: Vec<ColInfo> = c.frame().cols.clone();
    let mut src = compile_factor(c, &j.relation, kind)?;
    let on = match constraint {
        None | Some(JoinConstraint::None) => None,
        Some(JoinConstraint::On(e)) => Some(c.expr(e)?),
        Some(JoinConstraint::Using(names)) => {
            let names: Vec<String> = names
                .iter()
                .map(|n| n.0.last().map(|p| p.to_string()).unwrap_or_default())
                .map(|s| {
                    s.trim_matches(|ch| ch == '"' || ch == '`' || ch == '[' || ch == ']')
                        .to_string()
                })
                .collect();
            Some(using_condition(c, &left_cols, &src, &names, kind)?)
        }
        Some(JoinConstraint::Natural) => {
            let right: Vec<String> = c.frame().cols[src.offset..src.offset + src.width]
                .iter()
                .filter(|x| !x.hidden)
                .map(|x| x.name.clone())
                .collect();
            let common: Vec<String> = right
                .into_iter()
                .filter(|n| {
                    left_cols
                        .iter()
                        .any(|l| !l.hidden && l.name.eq_ignore_ascii_case(n))
                })
                .collect();
            if common.is_empty() {
                None
            } else {
                Some(using_condition(c, &left_cols, &src, &common, kind)?)
            }
        }
        Some(other) => return Err(Error::unsupported(format!("join constraint {other:?}"))),
    };
    src.on = on;
    sources.push(src);
    Ok(())
}

fn using_condition(
    c: &mut Compiler,
    left: &[ColInfo],
    src: &Source,
    names: &[String],
    kind: JoinKind,
) -> Result<SExpr> {
    let mut cond: Option<SExpr> = None;
    for n in names {
        // After a RIGHT / FULL JOIN ... USING the shared column is coalesce(left, right); a
        // later join on the same name would have to compare with that, not the left column.
        if c.frame()
            .using_cols
            .iter()
            .any(|(u, _, r)| u.eq_ignore_ascii_case(n) && r.is_some())
        {
            return Err(Error::unsupported(format!(
                "another join USING column {n} after a RIGHT/FULL JOIN USING it"
            )));
        }
        let li = left
            .iter()
            .position(|x| !x.hidden && x.name.eq_ignore_ascii_case(n))
            .ok_or_else(|| {
                syntax(format!(
                    "cannot join using column {n} - column not present in both tables"
                ))
            })?;
        let ri = c.frame().cols[src.offset..src.offset + src.width]
            .iter()
            .position(|x| !x.hidden && x.name.eq_ignore_ascii_case(n))
            .map(|i| i + src.offset)
            .ok_or_else(|| {
                syntax(format!(
                    "cannot join using column {n} - column not present in both tables"
                ))
            })?;
        let (la, ra) = (left[li].affinity, c.frame().cols[ri].affinity);
        let (a, b) = super::compile::apply_comparison_affinity(
            SExpr::Col { up: 0, idx: li },
            la,
            SExpr::Col { up: 0, idx: ri },
            ra,
        );
        // USING compares as `left = right`: the left column's collation wins, even BINARY.
        let coll = left[li].collation;
        let eq = SExpr::Bin(
            Op::Eq,
            Box::new(super::compile::collated(coll, a)),
            Box::new(super::compile::collated(coll, b)),
        );
        cond = Some(match cond {
            None => eq,
            Some(p) => SExpr::Bin(Op::And, Box::new(p), Box::new(eq)),
        });
        let outer_right = matches!(kind, JoinKind::Right | JoinKind::Full);
        if outer_right
            && c.frame()
                .using_cols
                .iter()
                .any(|(u, _, _)| u.eq_ignore_ascii_case(n))
        {
            return Err(Error::unsupported(format!(
                "RIGHT/FULL JOIN USING column {n} already shared by an earlier join"
            )));
        }
        c.frame()
            .using_cols
            .push((n.clone(), li, outer_right.then_some(ri)));
    }
    cond.ok_or_else(|| syntax("empty USING"))
}

/// Compiles the FROM clause into the current frame.
pub fn compile_from(c: &mut Compiler, from: &[ast::TableWithJoins]) -> Result<Vec<Source>> {
    let mut sources = Vec::new();
    for twj in from {
        let s = compile_factor(c, &twj.relation, JoinKind::Inner)?;
        sources.push(s);
        for j in &twj.joins {
            compile_join(c, j, &mut sources)?;
        }
    }
    Ok(sources)
}

fn compile_select(
    c: &mut Compiler,
    s: &ast::Select,
    order_by: &[&ast::OrderByExpr],
) -> Result<SelectInfo> {
    if s.top.is_some()
        || s.into.is_some()
        || !s.lateral_views.is_empty()
        || s.prewhere.is_some()
        || !s.connect_by.is_empty()
        || !s.cluster_by.is_empty()
        || !s.distribute_by.is_empty()
        || !s.sort_by.is_empty()
        || s.qualify.is_some()
        || s.value_table_mode.is_some()
        || s.exclude.is_some()
    {
        return Err(Error::unsupported("non-SQLite SELECT clause"));
    }
    let distinct = match &s.distinct {
        None | Some(ast::Distinct::All) => false,
        Some(ast::Distinct::Distinct) => true,
        Some(ast::Distinct::On(_)) => return Err(Error::unsupported("DISTINCT ON")),
    };
    // WINDOW w AS (...): each definition may name an earlier one as its base.
    let mut windows: Vec<(String, ast::WindowSpec)> = Vec::new();
    for ast::NamedWindowDefinition(name, def) in &s.named_window {
        let saved = std::mem::replace(&mut c.named_windows, windows);
        let spec = match def {
            ast::NamedWindowExpr::WindowSpec(w) => c.resolve_window(w),
            ast::NamedWindowExpr::NamedWindow(base) => c.resolve_window(&ast::WindowSpec {
                window_name: Some(base.clone()),
                partition_by: Vec::new(),
                order_by: Vec::new(),
                window_frame: None,
            }),
        };
        windows = std::mem::replace(&mut c.named_windows, saved);
        windows.push((name.value.clone(), spec?));
    }
    let outer_windows = std::mem::replace(&mut c.named_windows, windows);
    c.frames.push(Frame::default());
    let from_source = std::mem::take(&mut c.from_source);
    let res = compile_select_in_frame(c, s, order_by, distinct, from_source);
    let frame = c.frames.pop().unwrap_or_default();
    c.named_windows = outer_windows;
    let (mut plan, cols, decls, order) = res?;
    plan.aggs = frame.aggs;
    plan.aggregate = plan.aggregate || !plan.aggs.is_empty();
    if !frame.windows.is_empty() {
        let base = plan.width + plan.aggs.len();
        for p in plan.projection.iter_mut().chain(plan.order_keys.iter_mut()) {
            super::compile::place_windows(p, base);
        }
        plan.windows = frame.windows;
    }
    if !plan.aggregate && plan.having.is_some() {
        return Err(syntax("a GROUP BY clause is required before HAVING"));
    }
    Ok((plan, cols, decls, order, frame.correlated))
}

fn compile_select_in_frame(
    c: &mut Compiler,
    s: &ast::Select,
    order_by: &[&ast::OrderByExpr],
    distinct: bool,
    from_source: bool,
) -> Result<SelectParts> {
    let mut sources = compile_from(c, &s.from)?;
    let width = c.frame().cols.len();
    c.frame().agg_base = width;
    let where_ = match &s.selection {
        Some(w) => Some(c.expr(w)?),
        None => None,
    };
    // Projection (aggregates allowed).
    c.frame().allow_agg = true;
    // A declared column collation travels with a result column into derived tables, views
    // and compound SELECTs, and DISTINCT deduplicates by it; only the statement's own plain
    // SELECT returns such a column (elsewhere resolve_column refuses it).
    // (One frame: not a subquery of an UPDATE/DELETE, whose table frame encloses it.)
    let proj_coll_ok =
        (from_source || (c.query_depth == 1 && c.frames.len() == 1)) && !c.in_compound && !distinct;
    let mut proj_colls: Vec<Option<super::compile::Collation>> = Vec::new();
    let mut projection = Vec::new();
    let mut columns = Vec::new();
    let mut decls = Vec::new();
    let mut proj_ast: Vec<Option<&AExpr>> = Vec::new();
    let mut affs: Vec<Option<DataType>> = Vec::new();
    let mut item_texts: Option<Vec<String>> = None;
    for (k, item) in s.projection.iter().enumerate() {
        match item {
            SelectItem::UnnamedExpr(e) => {
                let (x, aff, coll) = projection_item(c, e, proj_coll_ok)?;
                proj_colls.push(coll);
                affs.push(aff);
                let plain_col = match (&x, e) {
                    (
                        SExpr::Col { up: 0, idx },
                        AExpr::Identifier(_) | AExpr::CompoundIdentifier(_),
                    ) => {
                        let col = &c.frame().cols[*idx];
                        Some(col.alias_of.clone().unwrap_or_else(|| col.name.clone()))
                    }
                    _ => None,
                };
                columns.push(match plain_col {
                    Some(n) => n,
                    None => match e {
                        AExpr::Identifier(i) => i.value.clone(),
                        AExpr::CompoundIdentifier(p) => {
                            p.last().map(|i| i.value.clone()).unwrap_or_default()
                        }
                        other => {
                            let texts = item_texts.get_or_insert_with(|| {
                                super::parse::select_item_texts(
                                    c.text.text(),
                                    s.select_token.0.span.start,
                                )
                            });
                            match texts.get(k) {
                                Some(t) if !t.is_empty() && texts.len() == s.projection.len() => {
                                    t.clone()
                                }
                                _ => c.text_of(other),
                            }
                        }
                    },
                });
                decls.push(decl_of(c, &x));
                projection.push(x);
                proj_ast.push(Some(e));
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                let (x, aff, coll) = projection_item(c, expr, proj_coll_ok)?;
                proj_colls.push(coll);
                affs.push(aff);
                columns.push(alias.value.clone());
                decls.push(decl_of(c, &x));
                projection.push(x);
                proj_ast.push(Some(expr));
            }
            SelectItem::Wildcard(opts) => {
                if opts.opt_exclude.is_some()
                    || opts.opt_except.is_some()
                    || opts.opt_replace.is_some()
                    || opts.opt_rename.is_some()
                    || opts.opt_ilike.is_some()
                {
                    return Err(Error::unsupported("wildcard options"));
                }
                if sources.is_empty() {
                    return Err(syntax("no tables specified"));
                }
                let using: Vec<String> = c
                    .frame()
                    .using_cols
                    .iter()
                    .map(|(n, _, _)| n.to_ascii_lowercase())
                    .collect();
                let mut seen_using = HashSet::new();
                let cols = c.frame().cols.clone();
                for (i, col) in cols.iter().enumerate() {
                    if col.hidden {
                        continue;
                    }
                    let lname = col.name.to_ascii_lowercase();
                    if using.contains(&lname) && !seen_using.insert(lname) {
                        continue; // USING columns appear once
                    }
                    check_wildcard_collation(col, proj_coll_ok)?;
                    proj_colls.push(col.collation);
                    columns.push(col.name.clone());
                    decls.push(col.decl.clone());
                    affs.push(col.affinity);
                    let partner = c
                        .frame()
                        .using_cols
                        .iter()
                        .find(|(_, l, _)| *l == i)
                        .and_then(|(_, _, r)| *r);
                    projection.push(match partner {
                        Some(r) => SExpr::Func(
                            "coalesce".into(),
                            vec![SExpr::Col { up: 0, idx: i }, SExpr::Col { up: 0, idx: r }],
                        ),
                        None => SExpr::Col { up: 0, idx: i },
                    });
                    proj_ast.push(None);
                }
            }
            SelectItem::QualifiedWildcard(kind, _) => {
                let tname = match kind {
                    ast::SelectItemQualifiedWildcardKind::ObjectName(n) => table_name(n)?,
                    ast::SelectItemQualifiedWildcardKind::Expr(e) => {
                        return Err(Error::unsupported(format!("wildcard on {e}")))
                    }
                };
                let cols = c.frame().cols.clone();
                let mut any = false;
                for (i, col) in cols.iter().enumerate() {
                    if col.hidden
                        || !col
                            .table
                            .as_deref()
                            .is_some_and(|t| t.eq_ignore_ascii_case(&tname))
                    {
                        continue;
                    }
                    any = true;
                    check_wildcard_collation(col, proj_coll_ok)?;
                    proj_colls.push(col.collation);
                    columns.push(col.name.clone());
                    decls.push(col.decl.clone());
                    affs.push(col.affinity);
                    projection.push(SExpr::Col { up: 0, idx: i });
                    proj_ast.push(None);
                }
                if !any {
                    return Err(Error::new(
                        SqlState::UndefinedTable,
                        format!("no such table: {tname}"),
                    ));
                }
            }
            SelectItem::ExprWithAliases { .. } => {
                return Err(Error::unsupported("multiple aliases"))
            }
        }
    }
    // GROUP BY (no aggregates; ordinals and aliases refer to result columns).
    c.frame().allow_agg = false;
    let mut group_by = Vec::new();
    let mut grouped = false;
    match &s.group_by {
        GroupByExpr::All(_) => return Err(Error::unsupported("GROUP BY ALL")),
        GroupByExpr::Expressions(exprs, mods) => {
            if !mods.is_empty() {
                return Err(Error::unsupported("GROUP BY modifiers"));
            }
            for g in exprs {
                grouped = true;
                let x = if let Some(k) = integer_literal(g) {
                    if k < 1 || k as usize > projection.len() {
                        return Err(syntax(format!(
                            "{} GROUP BY term out of range - should be between 1 and {}",
                            ordinal(group_by.len() + 1),
                            projection.len()
                        )));
                    }
                    match proj_ast[k as usize - 1] {
                        Some(a) => c.expr(a)?,
                        None => projection[k as usize - 1].clone(),
                    }
                } else {
                    match c.expr(g) {
                        Ok(x) => x,
                        Err(e) if e.state == SqlState::UndefinedColumn => {
                            let AExpr::Identifier(id) = g else {
                                return Err(e);
                            };
                            let pos = s.projection.iter().position(|it| matches!(it, SelectItem::ExprWithAlias { alias, .. } if alias.value.eq_ignore_ascii_case(&id.value)));
                            match pos.and_then(|p| match &s.projection[p] {
                                SelectItem::ExprWithAlias { expr, .. } => Some(expr),
                                _ => None,
                            }) {
                                Some(a) => c.expr(a)?,
                                None => return Err(e),
                            }
                        }
                        Err(e) => return Err(e),
                    }
                };
                group_by.push(x);
            }
        }
    }
    c.frame().allow_agg = true;
    let having = match &s.having {
        Some(h) => Some(c.expr(h)?),
        None => None,
    };
    // ORDER BY: ordinals and result aliases first, then expressions over the FROM columns.
    let mut order = Vec::new();
    let mut order_keys = Vec::new();
    for (n, o) in order_by.iter().enumerate() {
        let (coll, oexpr) = super::compile::split_collate(&o.expr)?;
        let mut declared = None;
        let key = if let Some(k) = integer_literal(oexpr) {
            if k < 1 || k as usize > projection.len() {
                return Err(syntax(format!(
                    "{} ORDER BY term out of range - should be between 1 and {}",
                    ordinal(n + 1),
                    projection.len()
                )));
            }
            OrderKey::Output(k as usize - 1)
        } else if let Some(i) = alias_position(oexpr, s) {
            OrderKey::Output(i)
        } else {
            let (x, _, dc) = c.operand(oexpr)?;
            declared = dc;
            order_keys.push(x);
            OrderKey::Expr(order_keys.len() - 1)
        };
        // Without an explicit COLLATE a term sorts by its column's declared collation.
        let coll = coll.or(match key {
            OrderKey::Output(i) => proj_colls.get(i).copied().flatten(),
            OrderKey::Expr(_) => declared,
        });
        // Sorting by a collation: the key is the collated value.
        let key = match (coll, key) {
            (None | Some(super::compile::Collation::Binary), k) => k,
            (Some(_), OrderKey::Output(i)) => {
                order_keys.push(super::compile::collated(coll, projection[i].clone()));
                OrderKey::Expr(order_keys.len() - 1)
            }
            (Some(_), OrderKey::Expr(j)) => {
                let x = std::mem::replace(&mut order_keys[j], SExpr::Lit(Value::Null));
                order_keys[j] = super::compile::collated(coll, x);
                OrderKey::Expr(j)
            }
        };
        order.push(OrderSpec {
            key,
            desc: is_desc(o),
            nulls_first: o.options.nulls_first,
        });
    }
    c.frame().allow_agg = false;
    // Access paths for tables, from equality and IN predicates.
    let mut where_conj = Vec::new();
    if let Some(w) = &where_ {
        conjuncts(w, &mut where_conj);
    }
    let left_from = sources
        .iter()
        .position(|s| s.join == JoinKind::Left)
        .unwrap_or(sources.len());
    let reordered = order_inner_joins(c, &mut sources, left_from, &where_conj)?;
    for (i, src) in sources.iter_mut().enumerate() {
        if i < reordered {
            continue;
        }
        let SourceKind::Table { name } = &src.kind else {
            continue;
        };
        // A preserved right side must be read whole to find its unmatched rows.
        if matches!(src.join, JoinKind::Right | JoinKind::Full) {
            continue;
        }
        let mut preds = Vec::new();
        if let Some(on) = &src.on {
            conjuncts(on, &mut preds);
        }
        if i < left_from {
            preds.extend(where_conj.iter().cloned());
        }
        let e = c.schema.entity(name)?;
        src.access = choose_access(e, src.offset, &preds);
    }
    let aggregate = grouped;
    Ok((
        SelectPlan {
            sources,
            width,
            where_,
            group_by,
            aggs: Vec::new(),
            aggregate,
            having,
            projection,
            distinct,
            order_keys,
            affinities: affs,
            windows: Vec::new(),
            collations: proj_colls,
            presorted: false,
            read_cols: None,
        },
        columns,
        decls,
        order,
    ))
}

/// Chooses which of the leading inner-joined tables drives the join, by a fixed rule: when
/// the first one has no equality or IN restriction on its row id or an index's leading
/// field (from WHERE or any ON, with keys known before the join starts) and a later one
/// has, the first such one is read first; each next one is the first remaining (in FROM
/// order) that can be reached by a row id or index lookup on the columns already joined,
/// else the first remaining. Otherwise the FROM order stands. Only inner joins of stored
/// tables before any outer join move (where the order cannot change the result), and only
/// when the FROM clause has no RIGHT or FULL join. The ON conditions of the moved sources
/// are pooled and each conjunct is checked at the first source after which all the
/// columns it reads are filled in (a subquery or volatile call: after the last one); the
/// sources get their access paths for the new order. Returns how many leading sources were
/// placed (0 when the order stands); their column offsets do not change, so expressions
/// compiled against the FROM order stay valid.
fn order_inner_joins(
    c: &Compiler,
    sources: &mut Vec<Source>,
    left_from: usize,
    where_conj: &[SExpr],
) -> Result<usize> {
    let n = left_from;
    if n < 2
        || sources
            .iter()
            .any(|s| matches!(s.join, JoinKind::Right | JoinKind::Full))
        || !sources[..n]
            .iter()
            .all(|s| matches!(s.kind, SourceKind::Table { .. }))
    {
        return Ok(0);
    }
    let mut entities = Vec::with_capacity(n);
    for s in &sources[..n] {
        let SourceKind::Table { name } = &s.kind else {
            return Ok(0);
        };
        entities.push(c.schema.entity(name)?);
    }
    let mut pool = Vec::new();
    for s in &sources[..n] {
        if let Some(on) = &s.on {
            conjuncts(on, &mut pool);
        }
    }
    let mut preds = pool.clone();
    preds.extend(where_conj.iter().cloned());
    let lookup = |a: &Access| matches!(a, Access::RowId(_) | Access::Index { .. });
    let anchored: Vec<bool> = (0..n)
        .map(|k| {
            lookup(&choose_access_with(
                entities[k],
                sources[k].offset,
                &preds,
                &|_| false,
            ))
        })
        .collect();
    if anchored[0] {
        return Ok(0);
    }
    let Some(driver) = anchored.iter().position(|a| *a) else {
        return Ok(0);
    };
    let ranges: Vec<(usize, usize)> = sources[..n]
        .iter()
        .map(|s| (s.offset, s.offset + s.width))
        .collect();
    let filled =
        |placed: &[usize], i: usize| placed.iter().any(|&k| ranges[k].0 <= i && i < ranges[k].1);
    let mut order = vec![driver];
    while order.len() < n {
        let remaining: Vec<usize> = (0..n).filter(|k| !order.contains(k)).collect();
        let mut next = remaining[0];
        for &k in &remaining {
            let a = choose_access_with(entities[k], sources[k].offset, &preds, &|i| {
                filled(&order, i)
            });
            if lookup(&a) {
                next = k;
                break;
            }
        }
        order.push(next);
    }
    let rest = sources.split_off(n);
    let mut old: Vec<Option<Source>> = std::mem::take(sources).into_iter().map(Some).collect();
    let mut checked = vec![false; pool.len()];
    for (pos, &k) in order.iter().enumerate() {
        let Some(mut src) = old[k].take() else {
            return Err(Error::internal("join order names a source twice"));
        };
        let before = &order[..pos];
        let after = &order[..=pos];
        let last = pos + 1 == n;
        let mut on: Option<SExpr> = None;
        for (j, p) in pool.iter().enumerate() {
            if checked[j] || (!last && refs_unbound(p, &|i| filled(after, i))) {
                continue;
            }
            checked[j] = true;
            on = Some(match on {
                None => p.clone(),
                Some(x) => SExpr::Bin(Op::And, Box::new(x), Box::new(p.clone())),
            });
        }
        src.on = on;
        src.access = choose_access_with(entities[k], src.offset, &preds, &|i| filled(before, i));
        sources.push(src);
    }
    sources.extend(rest);
    Ok(n)
}

fn alias_position(e: &AExpr, s: &ast::Select) -> Option<usize> {
    let AExpr::Identifier(id) = e else {
        return None;
    };
    let mut pos = 0;
    for it in &s.projection {
        match it {
            SelectItem::ExprWithAlias { alias, .. } => {
                if alias.value.eq_ignore_ascii_case(&id.value) {
                    return Some(pos);
                }
                pos += 1;
            }
            SelectItem::UnnamedExpr(_) => pos += 1,
            // Wildcards expand to several columns: stop matching aliases after them.
            _ => return None,
        }
    }
    None
}

fn decl_of(c: &Compiler, x: &SExpr) -> Option<String> {
    match x {
        SExpr::Col { up, idx } => {
            let n = c.frames.len();
            c.frames
                .get(n.checked_sub(1 + up)?)?
                .cols
                .get(*idx)?
                .decl
                .clone()
        }
        _ => None,
    }
}

/// Picks a row id or index lookup for a table from predicates `col = expr` / `col IN (...)`
/// whose other side does not depend on this table or later ones.
/// Reads the only table of a SELECT in index order when that order is the ORDER BY: the
/// terms are plain columns (no collation other than BINARY, which is how index keys compare),
/// all in one direction with NULLs where that direction puts them (first ascending, last
/// descending, as in SQLite's key order), matching the index fields after the ones the access
/// path fixes by equality, then the row id (ties within an index key are in row id order).
/// A table with no usable predicate is read through such an index only under a LIMIT: the
/// read then stops early, where a whole-table read through an index would be slower than a
/// scan and a sort.
fn order_by_index(
    c: &Compiler,
    plan: &mut SelectPlan,
    order: &[OrderSpec],
    limited: bool,
) -> Result<()> {
    let [src] = plan.sources.as_mut_slice() else {
        return Ok(());
    };
    let SourceKind::Table { name } = &src.kind else {
        return Ok(());
    };
    if order.is_empty() || plan.aggregate || plan.distinct || !plan.windows.is_empty() {
        return Ok(());
    }
    let e = c.schema.entity(name)?;
    let desc = order[0].desc;
    let nfields = e.fields.len();
    // The field position of each ORDER BY term (`nfields` for the row id).
    let mut fields = Vec::with_capacity(order.len());
    for o in order {
        if o.desc != desc || o.nulls_first.is_some_and(|f| f == desc) {
            return Ok(());
        }
        let key = match o.key {
            OrderKey::Output(i) => plan.projection.get(i),
            OrderKey::Expr(i) => plan.order_keys.get(i),
        };
        let Some(SExpr::Col { up: 0, idx }) = key else {
            return Ok(());
        };
        let Some(f) = idx.checked_sub(src.offset).filter(|f| *f <= nfields) else {
            return Ok(());
        };
        let is_rowid = f == nfields || e.rowid_alias.map(|a| a as usize) == Some(f);
        fields.push(if is_rowid { nfields } else { f });
    }
    // Whether the terms are a prefix of (index fields after `skip`, row id).
    let matches = |ix: &crate::catalog::IndexDef, skip: usize| {
        let seq: Vec<usize> = ix
            .fields
            .iter()
            .skip(skip)
            .map(|f| *f as usize)
            .chain(std::iter::once(nfields))
            .collect();
        fields.len() <= seq.len() && fields.iter().zip(&seq).all(|(a, b)| a == b)
    };
    let access = std::mem::replace(&mut src.access, Access::Scan);
    src.access = match access {
        Access::IndexRange {
            name: ix,
            eq,
            lo,
            hi,
            order: _,
        } => {
            let ordered = e
                .index_by_name(&ix)
                .is_some_and(|d| !d.fields.is_empty() && matches(d, eq.len()));
            plan.presorted = ordered;
            Access::IndexRange {
                name: ix,
                eq,
                lo,
                hi,
                order: ordered.then_some(desc),
            }
        }
        Access::Index { name: ix, mut keys } if keys.len() == 1 => {
            let used = keys[0].len();
            if e.index_by_name(&ix)
                .is_some_and(|d| !d.fields.is_empty() && used <= d.fields.len() && matches(d, used))
            {
                plan.presorted = true;
                Access::IndexRange {
                    name: ix,
                    eq: keys.pop().unwrap_or_default(),
                    lo: None,
                    hi: None,
                    order: Some(desc),
                }
            } else {
                Access::Index { name: ix, keys }
            }
        }
        Access::Scan if limited && fields[0] != nfields => {
            match e
                .indexes
                .iter()
                .find(|d| !d.fields.is_empty() && matches(d, 0))
            {
                Some(d) => {
                    plan.presorted = true;
                    Access::IndexRange {
                        name: d.name.clone(),
                        eq: Vec::new(),
                        lo: None,
                        hi: None,
                        order: Some(desc),
                    }
                }
                None => Access::Scan,
            }
        }
        other => other,
    };
    if plan.presorted && src.on.is_none() && src.offset == 0 {
        plan.read_cols = read_columns(plan);
    }
    Ok(())
}

/// The columns of the only source a single-table SELECT reads (see `SelectPlan::read_cols`);
/// None when any expression holds a subquery (a correlated one reads the row through its
/// outer scope, which this walk does not follow).
fn read_columns(plan: &SelectPlan) -> Option<Vec<bool>> {
    let mut used = vec![false; plan.width];
    let mut ok = true;
    let exprs = plan
        .projection
        .iter()
        .chain(plan.where_.iter())
        .chain(plan.order_keys.iter())
        .chain(plan.group_by.iter())
        .chain(plan.having.iter());
    for e in exprs {
        super::compile::walk(e, &mut |x| match x {
            SExpr::Col { up: 0, idx } => match used.get_mut(*idx) {
                Some(u) => *u = true,
                None => ok = false,
            },
            SExpr::InQuery { .. }
            | SExpr::InQueryRow { .. }
            | SExpr::Exists { .. }
            | SExpr::Scalar(_) => ok = false,
            _ => {}
        });
    }
    (ok && plan.aggs.is_empty() && plan.windows.is_empty()).then_some(used)
}

pub fn choose_access(e: &crate::catalog::EntityDef, offset: usize, preds: &[SExpr]) -> Access {
    choose_access_with(e, offset, preds, &|i| i < offset)
}

/// `choose_access` for a source read while the columns for which `bound` holds are filled
/// in (those of the sources joined before it): lookup keys may only read those.
fn choose_access_with(
    e: &crate::catalog::EntityDef,
    offset: usize,
    preds: &[SExpr],
    bound: &dyn Fn(usize) -> bool,
) -> Access {
    let nfields = e.fields.len();
    let rowid_col = offset + nfields;
    let alias_col = e.rowid_alias.map(|a| offset + a as usize);
    // field position -> candidate key expressions (one per lookup)
    let mut eq: Vec<(usize, Vec<SExpr>)> = Vec::new();
    for p in preds {
        match p {
            SExpr::Bin(Op::Eq, a, b) => {
                for (l, r) in [(a, b), (b, a)] {
                    if let SExpr::Col { up: 0, idx } = l.as_ref() {
                        if *idx >= offset && *idx <= rowid_col && !refs_unbound(r, bound) {
                            eq.push((*idx - offset, vec![(**r).clone()]));
                            break;
                        }
                    }
                }
            }
            SExpr::InList {
                expr,
                list,
                negated: false,
                ..
            } => {
                if let SExpr::Col { up: 0, idx } = expr.as_ref() {
                    if *idx >= offset
                        && *idx <= rowid_col
                        && !list.iter().any(|x| refs_unbound(x, bound))
                    {
                        eq.push((*idx - offset, list.clone()));
                    }
                }
            }
            _ => {}
        }
    }
    if let Some((_, keys)) = eq
        .iter()
        .find(|(f, _)| offset + f == rowid_col || Some(offset + f) == alias_col)
    {
        return Access::RowId(keys.clone());
    }
    // Range bounds per field position: (field, expression, inclusive). The access path only
    // narrows the rows; WHERE still decides, so any one bound per side is enough.
    let mut lows: Vec<(usize, SExpr, bool)> = Vec::new();
    let mut highs: Vec<(usize, SExpr, bool)> = Vec::new();
    let field_of = |x: &SExpr| match x {
        SExpr::Col { up: 0, idx } if *idx >= offset && *idx <= rowid_col => Some(*idx - offset),
        _ => None,
    };
    for p in preds {
        match p {
            SExpr::Bin(op @ (Op::Lt | Op::Le | Op::Gt | Op::Ge), a, b) => {
                for (l, r, flipped) in [(a, b, false), (b, a, true)] {
                    let Some(f) = field_of(l) else {
                        continue;
                    };
                    if refs_unbound(r, bound) {
                        continue;
                    }
                    let op = match (op, flipped) {
                        (Op::Lt, true) => Op::Gt,
                        (Op::Le, true) => Op::Ge,
                        (Op::Gt, true) => Op::Lt,
                        (Op::Ge, true) => Op::Le,
                        (op, _) => *op,
                    };
                    let b = ((**r).clone(), matches!(op, Op::Le | Op::Ge));
                    match op {
                        Op::Gt | Op::Ge => lows.push((f, b.0, b.1)),
                        _ => highs.push((f, b.0, b.1)),
                    }
                    break;
                }
            }
            SExpr::Between {
                expr,
                low,
                high,
                negated: false,
            } => {
                if let Some(f) = field_of(expr) {
                    if !refs_unbound(low, bound) && !refs_unbound(high, bound) {
                        lows.push((f, (**low).clone(), true));
                        highs.push((f, (**high).clone(), true));
                    }
                }
            }
            _ => {}
        }
    }
    let bounds = |f: usize| {
        (
            lows.iter().find(|b| b.0 == f).map(|b| (b.1.clone(), b.2)),
            highs.iter().find(|b| b.0 == f).map(|b| (b.1.clone(), b.2)),
        )
    };
    // An index whose leading field has an equality; extend with more single-key equalities.
    let mut best: Option<(usize, bool, &str, Vec<Vec<SExpr>>)> = None;
    for ix in &e.indexes {
        let mut tuple_sets: Vec<Vec<SExpr>> = vec![Vec::new()];
        let mut used = 0;
        for (k, f) in ix.fields.iter().enumerate() {
            let Some((_, keys)) = eq.iter().find(|(p, _)| *p == *f as usize) else {
                break;
            };
            if k > 0 && keys.len() != 1 {
                break;
            }
            if k == 0 {
                tuple_sets = keys.iter().map(|x| vec![x.clone()]).collect();
            } else {
                for t in &mut tuple_sets {
                    t.push(keys[0].clone());
                }
            }
            used += 1;
        }
        if used == 0 {
            continue;
        }
        let full_unique = ix.unique && used == ix.fields.len();
        let better = match &best {
            None => true,
            Some((u, fu, _, _)) => (full_unique && !fu) || (full_unique == *fu && used > *u),
        };
        if better {
            best = Some((used, full_unique, &ix.name, tuple_sets));
        }
    }
    if let Some((_, _, name, keys)) = best {
        return Access::Index {
            name: name.to_string(),
            keys,
        };
    }
    // No equality path: a range on the row id, else on an index's leading field.
    for f in [Some(nfields), e.rowid_alias.map(|a| a as usize)]
        .into_iter()
        .flatten()
    {
        let (lo, hi) = bounds(f);
        if lo.is_some() || hi.is_some() {
            return Access::RowIdRange { lo, hi };
        }
    }
    for ix in &e.indexes {
        // Keyed (expression or partial) indexes have no leading field to range over.
        let Some(&first) = ix.fields.first() else {
            continue;
        };
        let (lo, hi) = bounds(first as usize);
        if lo.is_some() || hi.is_some() {
            return Access::IndexRange {
                name: ix.name.clone(),
                eq: Vec::new(),
                lo,
                hi,
                order: None,
            };
        }
    }
    Access::Scan
}

/// The row id bound a bound value allows (unbounded when the value is not a number: WHERE
/// still decides).
fn id_bound(v: &Value, inclusive: bool, lower: bool) -> i64 {
    let f = match v {
        Value::Integer(i) => {
            return match (lower, inclusive) {
                (true, true) | (false, true) => *i,
                (true, false) => i.saturating_add(1),
                (false, false) => i.saturating_sub(1),
            }
        }
        Value::Real(r) if r.is_finite() => *r,
        _ => return if lower { i64::MIN } else { i64::MAX },
    };
    let clamp = |x: f64| x.clamp(i64::MIN as f64, i64::MAX as f64) as i64;
    match (lower, inclusive) {
        (true, true) => clamp(f.ceil()),
        (true, false) => clamp(f.floor()).saturating_add(1),
        (false, true) => clamp(f.floor()),
        (false, false) => clamp(f.ceil()).saturating_sub(1),
    }
}

// ---------------------------------------------------------------- execution

/// Runs a query; `outer` is the row of the enclosing query for correlated subqueries.
pub fn run_query(q: &Query, ctx: &mut Ctx, outer: Option<&Env>) -> Result<QueryRows> {
    if let Body::Select(s) = &q.body {
        if s.presorted {
            return run_presorted(q, s, ctx, outer);
        }
    }
    let mut keyed = body_rows(&q.body, ctx, outer, !q.order.is_empty())?;
    if !q.order.is_empty() {
        let mut err = None;
        keyed.sort_by(|(ra, ka), (rb, kb)| {
            for o in &q.order {
                let (x, y) = match o.key {
                    OrderKey::Output(i) => (ra.get(i), rb.get(i)),
                    OrderKey::Expr(i) => (ka.get(i), kb.get(i)),
                };
                let (Some(x), Some(y)) = (x, y) else {
                    err = Some(Error::internal("sort key missing"));
                    return Ordering::Equal;
                };
                let nulls_first = o.nulls_first.unwrap_or(!o.desc);
                let ord = match (x.is_null(), y.is_null()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => {
                        if nulls_first {
                            Ordering::Less
                        } else {
                            Ordering::Greater
                        }
                    }
                    (false, true) => {
                        if nulls_first {
                            Ordering::Greater
                        } else {
                            Ordering::Less
                        }
                    }
                    _ => {
                        let c = x.total_cmp(y);
                        if o.desc {
                            c.reverse()
                        } else {
                            c
                        }
                    }
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            Ordering::Equal
        });
        if let Some(e) = err {
            return Err(e);
        }
    }
    let (limit, offset) = limit_offset(q, ctx, outer)?;
    let rows = keyed.into_iter().map(|(r, _)| r).skip(offset as usize);
    let rows: Vec<Vec<Value>> = if limit < 0 {
        rows.collect()
    } else {
        rows.take(limit as usize).collect()
    };
    Ok(QueryRows { rows })
}

/// A query's LIMIT (-1: none) and OFFSET (at least 0), evaluated once per run.
fn limit_offset(q: &Query, ctx: &mut Ctx, outer: Option<&Env>) -> Result<(i64, i64)> {
    let empty: [Value; 0] = [];
    let env = Env {
        row: &empty,
        parent: outer,
    };
    let limit = match &q.limit {
        Some(l) => limit_value(eval(l, ctx, &env)?, "LIMIT")?,
        None => -1,
    };
    let offset = match &q.offset {
        Some(o) => limit_value(eval(o, ctx, &env)?, "OFFSET")?.max(0),
        None => 0,
    };
    Ok((limit, offset))
}

/// A query whose only table is read in ORDER BY order: no sort, and under a LIMIT the index is
/// read in batches until enough rows pass WHERE (each batch from the start, 4x larger: a
/// filter that rejects most rows costs at most about 4/3 of one read of the rows it needs).
fn run_presorted(
    q: &Query,
    s: &SelectPlan,
    ctx: &mut Ctx,
    outer: Option<&Env>,
) -> Result<QueryRows> {
    let (limit, offset) = limit_offset(q, ctx, outer)?;
    let need = if limit < 0 {
        None
    } else {
        Some((offset as usize).saturating_add(limit as usize))
    };
    let budget_key = s
        .sources
        .first()
        .map_or(0, |src| &src.access as *const Access as usize);
    let mut batch = need.map(|n| n.max(16));
    let rows = loop {
        ctx.scan_budget = batch.map(|b| (budget_key, b));
        ctx.scan_truncated = false;
        let keyed = match &s.read_cols {
            Some(cols) => run_single_indexed(s, cols, ctx, outer),
            None => run_select(s, ctx, outer, false),
        };
        ctx.scan_budget = None;
        let keyed = keyed?;
        match (need, batch) {
            (Some(n), Some(b)) if keyed.len() < n && ctx.scan_truncated => {
                batch = Some(b.saturating_mul(4));
            }
            _ => break keyed,
        }
    };
    let rows = rows.into_iter().map(|(r, _)| r).skip(offset as usize);
    let rows: Vec<Vec<Value>> = match need {
        None => rows.collect(),
        Some(_) => rows.take(limit as usize).collect(),
    };
    Ok(QueryRows { rows })
}

/// [`run_select`] for a presorted single-table read through an index (`SelectPlan::read_cols`
/// is set): the index rows are built with only the columns the query reads and are filtered
/// and projected in place, without the join loop's copies of each row.
fn run_single_indexed(
    s: &SelectPlan,
    cols: &[bool],
    ctx: &mut Ctx,
    outer: Option<&Env>,
) -> Result<Keyed> {
    let [src] = s.sources.as_slice() else {
        return run_select(s, ctx, outer, false);
    };
    let blank = vec![Value::Null; s.width];
    let env = Env {
        row: &blank,
        parent: outer,
    };
    let rows = match (&src.kind, &src.access) {
        (SourceKind::Table { name }, access @ Access::IndexRange { .. }) => {
            index_range_rows(src, name, access, ctx, &env, Some(cols))?
        }
        _ => return run_select(s, ctx, outer, false),
    };
    let mut out = Vec::with_capacity(rows.len());
    for mut row in rows {
        row.resize(s.width, Value::Null);
        let env = Env {
            row: &row,
            parent: outer,
        };
        if let Some(w) = &s.where_ {
            if !is_true(&eval(w, ctx, &env)?) {
                continue;
            }
        }
        let mut vals = Vec::with_capacity(s.projection.len());
        for p in &s.projection {
            vals.push(eval(p, ctx, &env)?);
        }
        out.push((vals, Vec::new()));
    }
    Ok(out)
}

fn limit_value(v: Value, what: &str) -> Result<i64> {
    match DataType::Integer.apply_affinity(v) {
        Value::Integer(i) => Ok(i),
        other => Err(Error::new(
            SqlState::DatatypeMismatch,
            format!("datatype mismatch: {what} must be an integer, got {other}"),
        )),
    }
}

type Keyed = Vec<(Vec<Value>, Vec<Value>)>;

fn key_bytes(row: &[Value]) -> Vec<u8> {
    let mut k = Vec::new();
    for v in row {
        encode_key_value(v, &mut k);
    }
    k
}

fn dedup(rows: Keyed) -> Keyed {
    let mut seen = HashSet::new();
    rows.into_iter()
        .filter(|(r, _)| seen.insert(key_bytes(r)))
        .collect()
}

fn body_rows(b: &Body, ctx: &mut Ctx, outer: Option<&Env>, want_keys: bool) -> Result<Keyed> {
    match b {
        Body::Select(s) => run_select(s, ctx, outer, want_keys),
        Body::Values(rows) => {
            let empty: [Value; 0] = [];
            let env = Env {
                row: &empty,
                parent: outer,
            };
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let mut vals = Vec::with_capacity(r.len());
                for x in r {
                    vals.push(eval(x, ctx, &env)?);
                }
                out.push((vals, Vec::new()));
            }
            Ok(out)
        }
        Body::Query(q) => Ok(run_query(q, ctx, outer)?
            .rows
            .into_iter()
            .map(|r| (r, Vec::new()))
            .collect()),
        Body::Recursive {
            init,
            step,
            all,
            work_slot,
            cap,
        } => {
            let empty: [Value; 0] = [];
            let env = Env {
                row: &empty,
                parent: outer,
            };
            let (limit, offset) = match cap {
                None => (None, 0),
                Some((l, o)) => {
                    let l = limit_value(eval(l, ctx, &env)?, "LIMIT")?;
                    let o = match o {
                        Some(o) => limit_value(eval(o, ctx, &env)?, "OFFSET")?.max(0),
                        None => 0,
                    };
                    (if l < 0 { None } else { Some(l as usize) }, o as usize)
                }
            };
            let wanted = limit.map(|l| l.saturating_add(offset));
            let mut seen = HashSet::new();
            let mut result: Keyed = Vec::new();
            let mut queue: Vec<Vec<Value>> = Vec::new();
            let admit = |r: Vec<Value>, seen: &mut HashSet<Vec<u8>>| -> Option<Vec<Value>> {
                if *all || seen.insert(key_bytes(&r)) {
                    Some(r)
                } else {
                    None
                }
            };
            for (r, _) in body_rows(init, ctx, outer, false)? {
                if let Some(r) = admit(r, &mut seen) {
                    queue.push(r.clone());
                    result.push((r, Vec::new()));
                }
            }
            while !queue.is_empty() && wanted.is_none_or(|w| result.len() < w) {
                if wanted.is_none() && result.len() > RECURSION_ROW_LIMIT {
                    return Err(Error::new(
                        SqlState::LimitExceeded,
                        format!(
                            "recursive common table expression produced more than {RECURSION_ROW_LIMIT} rows (add a LIMIT or a stop condition)"
                        ),
                    ));
                }
                ctx.cte_results
                    .insert(*work_slot, Rc::new(std::mem::take(&mut queue)));
                // Subqueries over the working table must see each round's rows.
                ctx.subquery_cache.clear();
                for (r, _) in body_rows(step, ctx, outer, false)? {
                    if let Some(r) = admit(r, &mut seen) {
                        queue.push(r.clone());
                        result.push((r, Vec::new()));
                    }
                }
            }
            ctx.cte_results.remove(work_slot);
            if let Some(w) = wanted {
                result.truncate(w);
            }
            Ok(result.into_iter().skip(offset).collect())
        }
        Body::SetOp {
            op,
            all,
            left,
            right,
        } => {
            let l = body_rows(left, ctx, outer, false)?;
            let r = body_rows(right, ctx, outer, false)?;
            Ok(match op {
                SetOp::Union if *all => l.into_iter().chain(r).collect(),
                // SQLite's UNION keeps the last of equal rows (1 and 1.0 are equal).
                SetOp::Union => {
                    let mut all: Keyed = l.into_iter().chain(r).collect();
                    all.reverse();
                    let mut kept = dedup(all);
                    kept.reverse();
                    kept
                }
                SetOp::Intersect => {
                    let rk: HashSet<Vec<u8>> = r.iter().map(|(x, _)| key_bytes(x)).collect();
                    dedup(
                        l.into_iter()
                            .filter(|(x, _)| rk.contains(&key_bytes(x)))
                            .collect(),
                    )
                }
                SetOp::Except => {
                    let rk: HashSet<Vec<u8>> = r.iter().map(|(x, _)| key_bytes(x)).collect();
                    dedup(
                        l.into_iter()
                            .filter(|(x, _)| !rk.contains(&key_bytes(x)))
                            .collect(),
                    )
                }
            })
        }
    }
}

/// Reads all rows of a table (cached for the statement), row id appended.
pub fn table_rows(ctx: &mut Ctx, name: &str) -> Result<Rc<Vec<Vec<Value>>>> {
    if let Some(r) = ctx.table_cache.get(name) {
        return Ok(r.clone());
    }
    let mut rows = Vec::new();
    let mut n = 0u64;
    for r in ctx.tx.scan(name)? {
        n += 1;
        let r = r?;
        let mut v = r.values;
        v.push(Value::Integer(r.row_id));
        rows.push(v);
    }
    ctx.rows_read += n;
    let rows = Rc::new(rows);
    ctx.table_cache.insert(name.to_string(), rows.clone());
    Ok(rows)
}

/// The `Access::RowId` read: the rows of table `name` whose row ids `keys` give (each id
/// once, in the keys' order; keys that are no integer find nothing).
pub(super) fn rows_by_id(
    name: &str,
    keys: &[SExpr],
    ctx: &mut Ctx,
    env: &Env,
    mut each: impl FnMut(crate::api::Row),
) -> Result<()> {
    let mut seen = HashSet::new();
    for k in keys {
        let v = eval(k, ctx, env)?;
        let id = match v {
            Value::Integer(i) => i,
            Value::Real(r) if r == r.trunc() && r.abs() < 9.2e18 => r as i64,
            _ => continue,
        };
        // One key (`WHERE id = ?`) needs no set of the ids seen.
        if keys.len() > 1 && !seen.insert(id) {
            continue;
        }
        if let Some(r) = ctx.tx.get(name, id)? {
            ctx.rows_read += 1;
            each(r);
        }
    }
    Ok(())
}

fn source_rows(src: &Source, ctx: &mut Ctx, env: &Env) -> Result<Rc<Vec<Vec<Value>>>> {
    match &src.kind {
        SourceKind::Table { name } => match &src.access {
            Access::Scan => table_rows(ctx, name),
            Access::RowId(keys) => {
                let mut out = Vec::new();
                rows_by_id(name, keys, ctx, env, |r| {
                    let mut vals = r.values;
                    vals.push(Value::Integer(r.row_id));
                    out.push(vals);
                })?;
                Ok(Rc::new(out))
            }
            Access::RowIdRange { lo, hi } => {
                let lo = match lo {
                    Some((x, incl)) => match eval(x, ctx, env)? {
                        Value::Null => return Ok(Rc::new(Vec::new())),
                        v => id_bound(&v, *incl, true),
                    },
                    None => i64::MIN,
                };
                let hi = match hi {
                    Some((x, incl)) => match eval(x, ctx, env)? {
                        Value::Null => return Ok(Rc::new(Vec::new())),
                        v => id_bound(&v, *incl, false),
                    },
                    None => i64::MAX,
                };
                let mut out = Vec::new();
                for r in ctx.tx.scan_id_range(name, lo, hi)? {
                    ctx.rows_read += 1;
                    let mut v = r.values;
                    v.push(Value::Integer(r.row_id));
                    out.push(v);
                }
                Ok(Rc::new(out))
            }
            access @ Access::IndexRange { .. } => Ok(Rc::new(index_range_rows(
                src, name, access, ctx, env, None,
            )?)),
            Access::Index { name: ix, keys } => {
                let mut tuples = Vec::with_capacity(keys.len());
                for tuple in keys {
                    let mut vals = Vec::with_capacity(tuple.len());
                    let mut null = false;
                    for k in tuple {
                        let v = eval(k, ctx, env)?;
                        null |= v.is_null();
                        vals.push(v);
                    }
                    if !null {
                        // `col = NULL` matches nothing
                        tuples.push(vals);
                    }
                }
                let found = match tuples.as_slice() {
                    [] => Vec::new(),
                    [one] => ctx.tx.find_by_index(name, ix, one)?,
                    // An IN list: one sorted, batched read for all its keys.
                    _ => ctx.tx.find_by_index_keys(name, ix, &tuples)?,
                };
                let mut out = Vec::with_capacity(found.len());
                for r in found {
                    ctx.rows_read += 1;
                    let mut v = r.values;
                    v.push(Value::Integer(r.row_id));
                    out.push(v);
                }
                Ok(Rc::new(out))
            }
        },
        SourceKind::SchemaTable { temp } => {
            let schema = ctx.tx.schema().clone();
            Ok(Rc::new(catalog_emulation::schema_rows(
                &schema,
                temp.as_ref(),
            )))
        }
        SourceKind::SequenceTable => Ok(Rc::new(super::sequence::rows(ctx)?)),
        SourceKind::Query(q) => Ok(Rc::new(run_query(q, ctx, env.parent)?.rows)),
        SourceKind::Cte { slot, query } => {
            if let Some(r) = ctx.cte_results.get(slot) {
                return Ok(r.clone());
            }
            let rows = Rc::new(run_query(query, ctx, env.parent)?.rows);
            if !query.correlated {
                ctx.cte_results.insert(*slot, rows.clone());
            }
            Ok(rows)
        }
    }
}

/// The rows of an index range access (`Access::IndexRange`), row id appended, stopping at the
/// budget its query set for this source (`Ctx::scan_budget`). With `cols`, only the values
/// of the columns marked there are copied (the others are NULL).
fn index_range_rows(
    src: &Source,
    name: &str,
    access: &Access,
    ctx: &mut Ctx,
    env: &Env,
    cols: Option<&[bool]>,
) -> Result<Vec<Vec<Value>>> {
    let Access::IndexRange {
        name: ix,
        eq,
        lo,
        hi,
        order,
    } = access
    else {
        return Err(Error::internal(
            "index range read without an index range access",
        ));
    };
    let mut eq_vals = Vec::with_capacity(eq.len());
    for k in eq {
        match eval(k, ctx, env)? {
            Value::Null => return Ok(Vec::new()),
            v => eq_vals.push(v),
        }
    }
    // A NULL bound matches nothing (`x > NULL` is never true).
    let mut bound = |b: &Option<(SExpr, bool)>| -> Result<Option<Option<(Value, bool)>>> {
        Ok(match b {
            None => Some(None),
            Some((x, incl)) => match eval(x, ctx, env)? {
                Value::Null => None,
                v => Some(Some((v, *incl))),
            },
        })
    };
    let (Some(lo), Some(hi)) = (bound(lo)?, bound(hi)?) else {
        return Ok(Vec::new());
    };
    // An ordered read stops at the budget its query set for this source.
    let max = match ctx.scan_budget {
        Some((key, n)) if key == &src.access as *const Access as usize => n,
        _ => usize::MAX,
    };
    let mut out: Vec<Vec<Value>> = Vec::new();
    let width = src.width;
    let n = ctx.tx.visit_index_range(
        name,
        ix,
        &eq_vals,
        lo.as_ref().map(|(v, i)| (v, *i)),
        hi.as_ref().map(|(v, i)| (v, *i)),
        order.unwrap_or(false),
        max,
        |id, _, vals| {
            let mut v = Vec::with_capacity(width.max(vals.len() + 1));
            match cols {
                None => v.extend_from_slice(vals),
                Some(cols) => v.extend(vals.iter().enumerate().map(|(i, x)| {
                    if cols.get(i).copied().unwrap_or(true) {
                        x.clone()
                    } else {
                        Value::Null
                    }
                })),
            }
            v.push(Value::Integer(id));
            out.push(v);
            Ok(())
        },
    )?;
    if n == max {
        ctx.scan_truncated = true;
    }
    ctx.rows_read += n as u64;
    Ok(out)
}

/// All joined rows that pass WHERE.
pub fn joined_rows(
    sources: &[Source],
    width: usize,
    where_: Option<&SExpr>,
    ctx: &mut Ctx,
    outer: Option<&Env>,
) -> Result<Vec<Vec<Value>>> {
    let mut out = Vec::new();
    each_joined_row(sources, width, where_, ctx, outer, &mut |_, row| {
        out.push(row.to_vec());
        Ok(())
    })?;
    Ok(out)
}

/// Calls `emit` with each joined row that passes WHERE, in join order, so a caller that
/// only projects a few columns builds no full-width copy of each row.
fn each_joined_row(
    sources: &[Source],
    width: usize,
    where_: Option<&SExpr>,
    ctx: &mut Ctx,
    outer: Option<&Env>,
    emit: Emit,
) -> Result<()> {
    if sources
        .iter()
        .any(|s| matches!(s.join, JoinKind::Right | JoinKind::Full))
    {
        for row in joined_rows_outer(sources, width, where_, ctx, outer)? {
            emit(ctx, &row)?;
        }
        return Ok(());
    }
    let mut buf = vec![Value::Null; width];
    let mut j = Join {
        sources,
        where_,
        outer,
        emit,
    };
    j.level(0, &mut buf, ctx)
}

/// The join one source at a time over materialized partial rows, for FROM clauses with a
/// RIGHT or FULL join: the rows of a preserved right side that no partial row matched are
/// only known after all partial rows were tried.
fn joined_rows_outer(
    sources: &[Source],
    width: usize,
    where_: Option<&SExpr>,
    ctx: &mut Ctx,
    outer: Option<&Env>,
) -> Result<Vec<Vec<Value>>> {
    let mut partial: Vec<Vec<Value>> = vec![vec![Value::Null; width]];
    for src in sources {
        let end = src.offset + src.width;
        let mut next = Vec::new();
        let preserved_right = matches!(src.join, JoinKind::Right | JoinKind::Full);
        // A preserved right side is read once (its access is a scan, see compile_select).
        let shared = if preserved_right {
            let blank = vec![Value::Null; width];
            let env = Env {
                row: &blank,
                parent: outer,
            };
            Some(source_rows(src, ctx, &env)?)
        } else {
            None
        };
        let mut right_matched = vec![false; shared.as_ref().map_or(0, |r| r.len())];
        for mut buf in partial {
            let rows = match &shared {
                Some(r) => r.clone(),
                None => {
                    let env = Env {
                        row: &buf,
                        parent: outer,
                    };
                    source_rows(src, ctx, &env)?
                }
            };
            let mut matched = false;
            for (j, r) in rows.iter().enumerate() {
                let n = src.width.min(r.len());
                buf[src.offset..src.offset + n].clone_from_slice(&r[..n]);
                if let Some(on) = &src.on {
                    let env = Env {
                        row: &buf,
                        parent: outer,
                    };
                    if !is_true(&eval(on, ctx, &env)?) {
                        continue;
                    }
                }
                matched = true;
                if preserved_right {
                    right_matched[j] = true;
                }
                next.push(buf.clone());
            }
            if !matched && matches!(src.join, JoinKind::Left | JoinKind::Full) {
                for v in &mut buf[src.offset..end] {
                    *v = Value::Null;
                }
                next.push(buf);
            }
        }
        if let Some(rows) = &shared {
            for (j, r) in rows.iter().enumerate() {
                if right_matched[j] {
                    continue;
                }
                let mut buf = vec![Value::Null; width];
                let n = src.width.min(r.len());
                buf[src.offset..src.offset + n].clone_from_slice(&r[..n]);
                next.push(buf);
            }
        }
        partial = next;
    }
    let Some(w) = where_ else {
        return Ok(partial);
    };
    let mut out = Vec::with_capacity(partial.len());
    for row in partial {
        let env = Env {
            row: &row,
            parent: outer,
        };
        if is_true(&eval(w, ctx, &env)?) {
            out.push(row);
        }
    }
    Ok(out)
}

/// Receives each joined row (the whole FROM row, WHERE already applied).
type Emit<'e> = &'e mut dyn FnMut(&mut Ctx, &[Value]) -> Result<()>;

/// Outer rows whose inner lookups are read together (see [`Join::prefetch`]).
const JOIN_BATCH: usize = 1024;

/// The nested-loop join of the FROM sources (no RIGHT/FULL join), depth first.
struct Join<'a, 'e> {
    sources: &'a [Source],
    where_: Option<&'a SExpr>,
    outer: Option<&'a Env<'a>>,
    emit: Emit<'e>,
}

/// The candidate rows of a source for the current outer row: everything its access path read
/// for it, or the rows picked for it out of a batch read for many outer rows.
#[derive(Clone, Copy)]
enum SrcRows<'r> {
    All(&'r [Vec<Value>]),
    Picked(&'r [Vec<Value>], &'r [u32]),
}

impl<'r> SrcRows<'r> {
    fn len(&self) -> usize {
        match self {
            SrcRows::All(r) => r.len(),
            SrcRows::Picked(_, p) => p.len(),
        }
    }

    fn get(&self, i: usize) -> &'r [Value] {
        match *self {
            SrcRows::All(r) => &r[i],
            SrcRows::Picked(r, p) => &r[p[i] as usize],
        }
    }
}

/// The next source's rows read once for a chunk of outer rows.
struct Prefetch {
    rows: Vec<Vec<Value>>,
    picks: Vec<u32>,
    /// Per outer row of the chunk: its rows (a range of `picks`), or None when its keys could
    /// not be computed ahead (an evaluation error): it is then looked up on its own when the
    /// join reaches it, so the error surfaces exactly when and if it would row by row.
    spans: Vec<Option<(u32, u32)>>,
}

/// Whether a lookup key can be computed ahead of the join reaching its row: no subquery, no
/// function call (a user function may count its calls; `random()` differs per call).
fn prefetchable_key(e: &SExpr) -> bool {
    let mut ok = true;
    walk(e, &mut |x| {
        if matches!(
            x,
            SExpr::Func(..)
                | SExpr::InQuery { .. }
                | SExpr::InQueryRow { .. }
                | SExpr::Exists { .. }
                | SExpr::Scalar(_)
        ) {
            ok = false;
        }
    });
    ok
}

/// Whether a source's rows are found by key lookups that batch across outer rows: a stored
/// table read by row id, or by one key tuple of an index.
fn batched_lookup(src: &Source) -> bool {
    if !matches!(src.kind, SourceKind::Table { .. }) {
        return false;
    }
    match &src.access {
        Access::RowId(keys) => keys.iter().all(prefetchable_key),
        Access::Index { keys, .. } => keys.len() == 1 && keys[0].iter().all(prefetchable_key),
        _ => false,
    }
}

/// A lookup key as `source_rows` converts it to a row id (None: matches no row).
fn row_id_key(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::Real(r) if *r == r.trunc() && r.abs() < 9.2e18 => Some(*r as i64),
        _ => None,
    }
}

impl Join<'_, '_> {
    fn level(&mut self, level: usize, buf: &mut Vec<Value>, ctx: &mut Ctx) -> Result<()> {
        if level == self.sources.len() {
            if let Some(w) = self.where_ {
                let env = Env {
                    row: buf,
                    parent: self.outer,
                };
                if !is_true(&eval(w, ctx, &env)?) {
                    return Ok(());
                }
            }
            return (self.emit)(ctx, buf);
        }
        let rows = {
            let env = Env {
                row: buf,
                parent: self.outer,
            };
            source_rows(&self.sources[level], ctx, &env)?
        };
        self.rows(level, SrcRows::All(&rows), buf, ctx)
    }

    /// Joins each of `rows` (source `level`'s candidates for the current outer row) with the
    /// sources after it. When the next source is read by key lookups, the lookups of up to
    /// [`JOIN_BATCH`] of these rows are read in one batch first; rows then come out in the
    /// same order and with the same ON / WHERE / LEFT JOIN handling as one lookup at a time.
    fn rows(
        &mut self,
        level: usize,
        rows: SrcRows,
        buf: &mut Vec<Value>,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let src = &self.sources[level];
        let batch = rows.len() > 1 && self.sources.get(level + 1).is_some_and(batched_lookup);
        let mut matched = false;
        let mut start = 0;
        while start < rows.len() {
            let end = if batch {
                (start + JOIN_BATCH).min(rows.len())
            } else {
                rows.len()
            };
            let pre = if batch {
                Some(self.prefetch(level, rows, start..end, buf, ctx)?)
            } else {
                None
            };
            for i in start..end {
                let r = rows.get(i);
                let n = src.width.min(r.len());
                buf[src.offset..src.offset + n].clone_from_slice(&r[..n]);
                if let Some(on) = &src.on {
                    let env = Env {
                        row: buf,
                        parent: self.outer,
                    };
                    if !is_true(&eval(on, ctx, &env)?) {
                        continue;
                    }
                }
                matched = true;
                match pre
                    .as_ref()
                    .and_then(|p| p.spans[i - start].map(|s| (p, s)))
                {
                    Some((p, (a, b))) => self.rows(
                        level + 1,
                        SrcRows::Picked(&p.rows, &p.picks[a as usize..b as usize]),
                        buf,
                        ctx,
                    )?,
                    None => self.level(level + 1, buf, ctx)?,
                }
            }
            start = end;
        }
        if !matched && src.join == JoinKind::Left {
            for v in &mut buf[src.offset..src.offset + src.width] {
                *v = Value::Null;
            }
            self.level(level + 1, buf, ctx)?;
        }
        Ok(())
    }

    /// Reads the rows source `level + 1` looks up for each of `rows[range]` with one batch:
    /// the keys of every row (its columns put in `buf`; the ON condition is not evaluated
    /// here, so a row that fails it only costs a read), then all distinct keys at once
    /// (`Transaction::get_many` / `find_by_index_keys_grouped`: table images or one range scan
    /// per run of nearby keys, the transaction's own writes first).
    fn prefetch(
        &mut self,
        level: usize,
        rows: SrcRows,
        range: std::ops::Range<usize>,
        buf: &mut [Value],
        ctx: &mut Ctx,
    ) -> Result<Prefetch> {
        let src = &self.sources[level];
        let next = &self.sources[level + 1];
        let SourceKind::Table { name } = &next.kind else {
            return Err(Error::internal(
                "batched lookup of a source that is no table",
            ));
        };
        let mut spans = Vec::with_capacity(range.len());
        let mut picks = Vec::new();
        match &next.access {
            Access::RowId(keys) => {
                // Each outer row's ids (distinct, in key order) as a span of `wanted`.
                let mut wanted: Vec<i64> = Vec::new();
                for i in range {
                    let r = rows.get(i);
                    let n = src.width.min(r.len());
                    buf[src.offset..src.offset + n].clone_from_slice(&r[..n]);
                    let env = Env {
                        row: buf,
                        parent: self.outer,
                    };
                    let a = wanted.len();
                    let mut ok = true;
                    for k in keys {
                        match eval(k, ctx, &env) {
                            Ok(v) => {
                                if let Some(id) = row_id_key(&v) {
                                    if !wanted[a..].contains(&id) {
                                        wanted.push(id);
                                    }
                                }
                            }
                            Err(_) => {
                                ok = false;
                                break;
                            }
                        }
                    }
                    if !ok {
                        wanted.truncate(a);
                    }
                    spans.push(ok.then_some((a as u32, wanted.len() as u32)));
                }
                let mut ids = wanted.clone();
                ids.sort_unstable();
                ids.dedup();
                let found = ctx.tx.get_many(name, &ids)?;
                ctx.rows_read += found.len() as u64;
                let found_ids: Vec<i64> = found.iter().map(|r| r.row_id).collect();
                let fetched: Vec<Vec<Value>> = found
                    .into_iter()
                    .map(|r| {
                        let mut v = r.values;
                        v.push(Value::Integer(r.row_id));
                        v
                    })
                    .collect();
                // Re-point each span at the fetched rows its ids found.
                for span in spans.iter_mut() {
                    let Some((a, b)) = *span else { continue };
                    let p = picks.len() as u32;
                    for id in &wanted[a as usize..b as usize] {
                        if let Ok(j) = found_ids.binary_search(id) {
                            picks.push(j as u32);
                        }
                    }
                    *span = Some((p, picks.len() as u32));
                }
                Ok(Prefetch {
                    rows: fetched,
                    picks,
                    spans,
                })
            }
            Access::Index { name: ix, keys } => {
                let tuple = keys
                    .first()
                    .ok_or_else(|| Error::internal("index lookup without keys"))?;
                // Per outer row: its distinct key's number, none for a NULL key (`col = NULL`
                // matches nothing), or an evaluation error.
                let mut key_no: HashMap<Vec<u8>, u32> = HashMap::new();
                let mut distinct: Vec<Vec<Value>> = Vec::new();
                let mut per_row: Vec<std::result::Result<Option<u32>, ()>> =
                    Vec::with_capacity(range.len());
                let mut enc = Vec::new();
                for i in range {
                    let r = rows.get(i);
                    let n = src.width.min(r.len());
                    buf[src.offset..src.offset + n].clone_from_slice(&r[..n]);
                    let env = Env {
                        row: buf,
                        parent: self.outer,
                    };
                    let mut vals = Vec::with_capacity(tuple.len());
                    let mut failed = false;
                    for k in tuple {
                        match eval(k, ctx, &env) {
                            Ok(v) => vals.push(v),
                            Err(_) => {
                                failed = true;
                                break;
                            }
                        }
                    }
                    if failed {
                        per_row.push(Err(()));
                        continue;
                    }
                    if vals.iter().any(Value::is_null) {
                        per_row.push(Ok(None));
                        continue;
                    }
                    enc.clear();
                    for v in &vals {
                        encode_key_value(v, &mut enc);
                    }
                    let no = match key_no.get(&enc) {
                        Some(&no) => no,
                        None => {
                            let no = distinct.len() as u32;
                            key_no.insert(enc.clone(), no);
                            distinct.push(vals);
                            no
                        }
                    };
                    per_row.push(Ok(Some(no)));
                }
                let groups = if distinct.is_empty() {
                    Vec::new()
                } else {
                    ctx.tx.find_by_index_keys_grouped(name, ix, &distinct)?
                };
                let mut fetched = Vec::new();
                let mut group_span = Vec::with_capacity(groups.len());
                for g in groups {
                    let a = fetched.len() as u32;
                    ctx.rows_read += g.len() as u64;
                    for r in g {
                        let mut v = r.values;
                        v.push(Value::Integer(r.row_id));
                        fetched.push(v);
                    }
                    group_span.push((a, fetched.len() as u32));
                }
                for k in per_row {
                    spans.push(match k {
                        Err(()) => None,
                        Ok(None) => Some((0, 0)),
                        Ok(Some(no)) => {
                            let (a, b) = group_span[no as usize];
                            let p = picks.len() as u32;
                            picks.extend(a..b);
                            Some((p, picks.len() as u32))
                        }
                    });
                }
                Ok(Prefetch {
                    rows: fetched,
                    picks,
                    spans,
                })
            }
            _ => Err(Error::internal(
                "batched lookup of a source without key access",
            )),
        }
    }
}

#[derive(Default)]
struct AggState {
    count: i64,
    int_sum: Option<i64>,
    real_sum: f64,
    compensation: f64,
    overflow: bool,
    any_real: bool,
    best: Option<Value>,
    text: Option<String>,
    seen: HashSet<Vec<u8>>,
    /// Argument rows of a user aggregate, handed to it when the group is finished.
    user_rows: Vec<Vec<Value>>,
}

fn agg_step(a: &AggCall, st: &mut AggState, ctx: &mut Ctx, env: &Env) -> Result<()> {
    if let Some(f) = &a.filter {
        if !is_true(&eval(f, ctx, env)?) {
            return Ok(());
        }
    }
    if a.func == AggFunc::CountStar {
        st.count += 1;
        return Ok(());
    }
    if a.func == AggFunc::User {
        // User aggregates see every row, NULL arguments included (as in SQLite).
        let mut row = Vec::with_capacity(a.args.len());
        for x in &a.args {
            row.push(eval(x, ctx, env)?);
        }
        if a.distinct {
            let mut k = Vec::new();
            for v in &row {
                encode_key_value(v, &mut k);
            }
            if !st.seen.insert(k) {
                return Ok(());
            }
        }
        st.user_rows.push(row);
        return Ok(());
    }
    let v = eval(&a.args[0], ctx, env)?;
    if v.is_null() {
        return Ok(());
    }
    if a.distinct {
        let mut k = Vec::new();
        encode_key_value(&v, &mut k);
        if !st.seen.insert(k) {
            return Ok(());
        }
    }
    st.count += 1;
    match a.func {
        AggFunc::Count | AggFunc::CountStar | AggFunc::User => {}
        AggFunc::Sum | AggFunc::Total | AggFunc::Avg => {
            // Integers add exactly (overflow is an error for sum()); anything else makes the
            // result real, summed with Kahan-Babuska-Neumaier compensation as SQLite does.
            // Text that reads as a number counts as that number (SQLite's numeric type of
            // the value); other text counts as a real.
            let v = match &v {
                Value::Text(t) => crate::value::parse_numeric(t).unwrap_or(v),
                _ => v,
            };
            let x = match &v {
                Value::Integer(i) => {
                    if !st.overflow {
                        match st.int_sum.unwrap_or(0).checked_add(*i) {
                            Some(t) => st.int_sum = Some(t),
                            None => st.overflow = true,
                        }
                    }
                    *i as f64
                }
                other => {
                    st.any_real = true;
                    match crate::ir::expr::to_numeric(other) {
                        Value::Integer(i) => i as f64,
                        Value::Real(r) => r,
                        _ => 0.0,
                    }
                }
            };
            let t = st.real_sum + x;
            if st.real_sum.abs() >= x.abs() {
                st.compensation += (st.real_sum - t) + x;
            } else {
                st.compensation += (x - t) + st.real_sum;
            }
            st.real_sum = t;
        }
        AggFunc::Min | AggFunc::Max => {
            let better = match &st.best {
                None => true,
                Some(b) => {
                    let o = v.total_cmp(b);
                    if a.func == AggFunc::Min {
                        o == Ordering::Less
                    } else {
                        o == Ordering::Greater
                    }
                }
            };
            if better {
                st.best = Some(v);
            }
        }
        AggFunc::GroupConcat => {
            let sep = match a.args.get(1) {
                Some(s) => {
                    let sv = eval(s, ctx, env)?;
                    if sv.is_null() {
                        String::new()
                    } else {
                        text_of(&sv)
                    }
                }
                None => ",".to_string(),
            };
            let t = text_of(&v);
            match &mut st.text {
                None => st.text = Some(t),
                Some(acc) => {
                    acc.push_str(&sep);
                    acc.push_str(&t);
                }
            }
        }
    }
    Ok(())
}

fn agg_final(a: &AggCall, st: &AggState) -> Result<Value> {
    Ok(match a.func {
        AggFunc::Count | AggFunc::CountStar => Value::Integer(st.count),
        AggFunc::Sum => {
            if st.count == 0 {
                Value::Null
            } else if st.overflow && !st.any_real {
                return Err(Error::new(SqlState::ValueTooLong, "integer overflow"));
            } else if st.any_real {
                Value::Real(st.real_sum + st.compensation)
            } else {
                Value::Integer(st.int_sum.unwrap_or(0))
            }
        }
        AggFunc::Total => Value::Real(st.real_sum + st.compensation),
        AggFunc::Avg => {
            if st.count == 0 {
                Value::Null
            } else {
                Value::Real((st.real_sum + st.compensation) / st.count as f64)
            }
        }
        AggFunc::Min | AggFunc::Max => st.best.clone().unwrap_or(Value::Null),
        AggFunc::GroupConcat => st.text.clone().map_or(Value::Null, Value::Text),
        AggFunc::User => match &a.user {
            Some(u) => (u.func)(&st.user_rows)?,
            None => return Err(Error::internal("user aggregate without its function")),
        },
    })
}

/// Appends each window call's value to every row (rows are `base` columns wide before).
/// One row as a window sees it: (partition key, order values, argument values, row position).
type WindowRow = (Vec<u8>, Vec<Value>, Vec<Value>, usize);

/// (start, end) of each partition row's frame, as positions in the sorted partition (end
/// exclusive; start >= end is an empty frame).
fn frame_bounds(
    f: &super::compile::FrameSpec,
    part: &[WindowRow],
    peer_end: &[usize],
    ordered: bool,
    order: &[(SExpr, bool, Option<bool>)],
    ctx: &mut Ctx,
    outer: Option<&Env>,
) -> Result<Vec<(usize, usize)>> {
    use super::compile::{FrameBound as B, FrameUnits as U};
    let n = part.len();
    // Peer groups: without ORDER BY every row is a peer of every other.
    let (peer_start, peer_end): (Vec<usize>, Vec<usize>) = if ordered {
        let mut starts = vec![0; n];
        for i in 1..n {
            starts[i] = if peer_end[i] == peer_end[i - 1] {
                starts[i - 1]
            } else {
                i
            };
        }
        (starts, peer_end.to_vec())
    } else {
        (vec![0; n], vec![n; n])
    };
    let group_starts: Vec<usize> = (0..n).filter(|&i| peer_start[i] == i).collect();
    let group_of: Vec<usize> = {
        let mut g = vec![0; n];
        let mut k = 0;
        for i in 0..n {
            if i > 0 && peer_start[i] == i {
                k += 1;
            }
            g[i] = k;
        }
        g
    };
    let blank = Vec::new();
    let env = Env {
        row: part.first().map_or(&blank, |p| &p.2),
        parent: outer,
    };
    let mut offset = |x: &SExpr, units: U| -> Result<Value> {
        let v = eval(x, ctx, &env)?;
        let ok = match (&v, units) {
            (Value::Integer(i), _) => *i >= 0,
            (Value::Real(r), U::Range) => *r >= 0.0,
            _ => false,
        };
        if !ok {
            return Err(Error::new(
                SqlState::InvalidParameter,
                "frame offset must be a non-negative number (an integer for ROWS and GROUPS)",
            ));
        }
        Ok(v)
    };
    let as_usize = |v: &Value| match v {
        Value::Integer(i) => usize::try_from(*i).unwrap_or(usize::MAX),
        _ => 0,
    };
    let start_off = match &f.start {
        B::Preceding(x) | B::Following(x) => Some(offset(x, f.units)?),
        _ => None,
    };
    let end_off = match &f.end {
        B::Preceding(x) | B::Following(x) => Some(offset(x, f.units)?),
        _ => None,
    };
    let num = |v: &Value| -> Result<Option<f64>> {
        match v {
            Value::Null => Ok(None),
            Value::Integer(i) => Ok(Some(*i as f64)),
            Value::Real(r) => Ok(Some(*r)),
            _ => Err(Error::unsupported(
                "RANGE frame offsets over a text or blob ORDER BY value",
            )),
        }
    };
    let desc = order.first().is_some_and(|o| o.1);
    // RANGE offsets: the non-NULL keys in partition order (monotonic, so bounds are found by
    // binary search).
    let offsets = matches!(f.start, B::Preceding(_) | B::Following(_))
        || matches!(f.end, B::Preceding(_) | B::Following(_));
    let mut keys: Vec<(usize, f64)> = Vec::new();
    if f.units == U::Range && offsets {
        for (j, row) in part.iter().enumerate() {
            if let Some(k) = num(&row.1[0])? {
                keys.push((j, k));
            }
        }
    }
    // First row whose key is within `bound` on the far side (start of a RANGE frame).
    let first_from = |bound: f64| -> usize {
        let i = if desc {
            keys.partition_point(|(_, k)| *k > bound)
        } else {
            keys.partition_point(|(_, k)| *k < bound)
        };
        keys.get(i).map_or(n, |(j, _)| *j)
    };
    // One past the last row whose key is within `bound` (end of a RANGE frame).
    let last_to = |bound: f64| -> usize {
        let i = if desc {
            keys.partition_point(|(_, k)| *k >= bound)
        } else {
            keys.partition_point(|(_, k)| *k <= bound)
        };
        if i == 0 {
            0
        } else {
            keys[i - 1].0 + 1
        }
    };
    let mut out = Vec::with_capacity(n);
    for pos in 0..n {
        let g = group_of[pos];
        let ngroups = group_starts.len();
        let group_end = |k: usize| peer_end[group_starts[k]];
        // RANGE offsets: the rows whose key lies within the offset of this row's key.
        let range_key = |pos: usize| num(&part[pos].1[0]);
        let start = match (&f.start, f.units) {
            (B::UnboundedPreceding, _) => 0,
            (B::CurrentRow, U::Rows) => pos,
            (B::CurrentRow, _) => peer_start[pos],
            (B::Preceding(_), U::Rows) => {
                pos.saturating_sub(as_usize(start_off.as_ref().unwrap_or(&Value::Null)))
            }
            (B::Following(_), U::Rows) => pos
                .saturating_add(as_usize(start_off.as_ref().unwrap_or(&Value::Null)))
                .min(n),
            (B::Preceding(_), U::Groups) => {
                let k = as_usize(start_off.as_ref().unwrap_or(&Value::Null));
                group_starts[g.saturating_sub(k)]
            }
            (B::Following(_), U::Groups) => {
                let k = as_usize(start_off.as_ref().unwrap_or(&Value::Null));
                g.checked_add(k)
                    .filter(|&t| t < ngroups)
                    .map_or(n, |t| group_starts[t])
            }
            (b @ (B::Preceding(_) | B::Following(_)), U::Range) => match range_key(pos)? {
                None => peer_start[pos],
                Some(x) => {
                    let d = num(start_off.as_ref().unwrap_or(&Value::Null))?.unwrap_or(0.0);
                    let bound = if matches!(b, B::Preceding(_)) ^ desc {
                        x - d
                    } else {
                        x + d
                    };
                    first_from(bound)
                }
            },
            (B::UnboundedFollowing, _) => n,
        };
        let end = match (&f.end, f.units) {
            (B::UnboundedFollowing, _) => n,
            (B::CurrentRow, U::Rows) => pos + 1,
            (B::CurrentRow, _) => peer_end[pos],
            (B::Preceding(_), U::Rows) => {
                (pos + 1).saturating_sub(as_usize(end_off.as_ref().unwrap_or(&Value::Null)))
            }
            (B::Following(_), U::Rows) => pos
                .saturating_add(as_usize(end_off.as_ref().unwrap_or(&Value::Null)))
                .saturating_add(1)
                .min(n),
            (B::Preceding(_), U::Groups) => {
                let k = as_usize(end_off.as_ref().unwrap_or(&Value::Null));
                g.checked_sub(k).map_or(0, group_end)
            }
            (B::Following(_), U::Groups) => {
                let k = as_usize(end_off.as_ref().unwrap_or(&Value::Null));
                group_end(g.saturating_add(k).min(ngroups - 1))
            }
            (b @ (B::Preceding(_) | B::Following(_)), U::Range) => match range_key(pos)? {
                None => peer_end[pos],
                Some(x) => {
                    let d = num(end_off.as_ref().unwrap_or(&Value::Null))?.unwrap_or(0.0);
                    let bound = if matches!(b, B::Preceding(_)) ^ desc {
                        x - d
                    } else {
                        x + d
                    };
                    last_to(bound)
                }
            },
            (B::UnboundedPreceding, _) => 0,
        };
        out.push((start, end));
    }
    Ok(out)
}

fn compute_windows(
    windows: &[super::compile::WindowCall],
    rows: &mut [Vec<Value>],
    base: usize,
    ctx: &mut Ctx,
    outer: Option<&Env>,
) -> Result<()> {
    use super::compile::WinFunc;
    for r in rows.iter_mut() {
        r.resize(base, Value::Null);
    }
    for w in windows {
        let mut keyed: Vec<WindowRow> = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            let env = Env {
                row: r,
                parent: outer,
            };
            let mut pk = Vec::new();
            for p in &w.partition {
                encode_key_value(&eval(p, ctx, &env)?, &mut pk);
            }
            let mut ok = Vec::with_capacity(w.order.len());
            for (o, _, _) in &w.order {
                ok.push(eval(o, ctx, &env)?);
            }
            let mut args = Vec::with_capacity(w.args.len());
            for a in &w.args {
                args.push(eval(a, ctx, &env)?);
            }
            keyed.push((pk, ok, args, i));
        }
        let cmp_order = |a: &[Value], b: &[Value]| -> Ordering {
            for (k, (x, y)) in a.iter().zip(b).enumerate() {
                let (_, desc, nulls_first) = &w.order[k];
                let nf = nulls_first.unwrap_or(!desc);
                let o = match (x.is_null(), y.is_null()) {
                    (true, true) => Ordering::Equal,
                    (true, false) if nf => Ordering::Less,
                    (true, false) => Ordering::Greater,
                    (false, true) if nf => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    _ if *desc => x.total_cmp(y).reverse(),
                    _ => x.total_cmp(y),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        };
        keyed.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| cmp_order(&a.1, &b.1))
                .then(a.3.cmp(&b.3))
        });
        let mut results = vec![Value::Null; rows.len()];
        let mut start = 0;
        while start < keyed.len() {
            let mut end = start;
            while end < keyed.len() && keyed[end].0 == keyed[start].0 {
                end += 1;
            }
            let part = &keyed[start..end];
            // the end of each row's peer group (rows with equal ORDER BY values)
            let mut peer_end = vec![0usize; part.len()];
            let mut g = 0;
            while g < part.len() {
                let mut h = g + 1;
                while h < part.len() && cmp_order(&part[h].1, &part[g].1) == Ordering::Equal {
                    h += 1;
                }
                for x in peer_end.iter_mut().take(h).skip(g) {
                    *x = h;
                }
                g = h;
            }
            let ordered = !w.order.is_empty();
            let frames = match &w.frame {
                None => None,
                Some(f) => Some(frame_bounds(
                    f, part, &peer_end, ordered, &w.order, ctx, outer,
                )?),
            };
            let mut rank = 0i64;
            let mut dense = 0i64;
            for (pos, item) in part.iter().enumerate() {
                let new_peer_group =
                    pos == 0 || cmp_order(&part[pos - 1].1, &item.1) != Ordering::Equal;
                if new_peer_group {
                    rank = pos as i64 + 1;
                    dense += 1;
                }
                let (frame_start, frame_end) = match &frames {
                    Some(f) => f[pos],
                    None => (0, if ordered { peer_end[pos] } else { part.len() }),
                };
                let in_frame = &part[frame_start.min(frame_end)..frame_end];
                let v = match w.func {
                    WinFunc::RowNumber => Value::Integer(pos as i64 + 1),
                    WinFunc::Rank => Value::Integer(rank),
                    WinFunc::DenseRank => Value::Integer(dense),
                    WinFunc::Lag | WinFunc::Lead => {
                        let off = match item.2.get(1) {
                            None => 1,
                            Some(v) => match DataType::Integer.apply_affinity(v.clone()) {
                                Value::Integer(i) if i >= 0 => i,
                                _ => {
                                    return Err(Error::new(
                                        SqlState::InvalidParameter,
                                        "second argument to lag()/lead() must be a non-negative integer",
                                    ))
                                }
                            },
                        };
                        let target = if w.func == WinFunc::Lag {
                            (pos as i64).checked_sub(off)
                        } else {
                            (pos as i64).checked_add(off)
                        };
                        match target.filter(|t| *t >= 0 && (*t as usize) < part.len()) {
                            Some(t) => part[t as usize].2[0].clone(),
                            None => item.2.get(2).cloned().unwrap_or(Value::Null),
                        }
                    }
                    WinFunc::FirstValue => in_frame.first().map_or(Value::Null, |r| r.2[0].clone()),
                    WinFunc::LastValue => in_frame.last().map_or(Value::Null, |r| r.2[0].clone()),
                    WinFunc::Agg(f) => {
                        let call = AggCall {
                            func: f,
                            args: (0..item.2.len())
                                .map(|k| SExpr::Col { up: 0, idx: k })
                                .collect(),
                            distinct: false,
                            filter: None,
                            user: None,
                        };
                        let mut st = AggState::default();
                        for row in in_frame {
                            let env = Env {
                                row: &row.2,
                                parent: outer,
                            };
                            agg_step(&call, &mut st, ctx, &env)?;
                        }
                        agg_final(&call, &st)?
                    }
                };
                results[item.3] = v;
            }
            start = end;
        }
        for (r, v) in rows.iter_mut().zip(results) {
            r.push(v);
        }
    }
    Ok(())
}

fn run_select(
    s: &SelectPlan,
    ctx: &mut Ctx,
    outer: Option<&Env>,
    want_keys: bool,
) -> Result<Keyed> {
    if !s.aggregate && s.windows.is_empty() {
        // Each joined row is projected as it comes, without a copy of the whole FROM row.
        let mut out = Vec::new();
        each_joined_row(
            &s.sources,
            s.width,
            s.where_.as_ref(),
            ctx,
            outer,
            &mut |ctx, row| {
                let env = Env { row, parent: outer };
                let mut vals = Vec::with_capacity(s.projection.len());
                for p in &s.projection {
                    vals.push(eval(p, ctx, &env)?);
                }
                let mut keys = Vec::new();
                if want_keys {
                    keys.reserve_exact(s.order_keys.len());
                    for k in &s.order_keys {
                        keys.push(eval(k, ctx, &env)?);
                    }
                }
                out.push((vals, keys));
                Ok(())
            },
        )?;
        return Ok(if s.distinct { dedup(out) } else { out });
    }
    let rows = joined_rows(&s.sources, s.width, s.where_.as_ref(), ctx, outer)?;
    let ext_rows: Vec<Vec<Value>> = if s.aggregate {
        let mut groups: BTreeMap<Vec<u8>, (Vec<Value>, Vec<AggState>)> = BTreeMap::new();
        for r in rows {
            let env = Env {
                row: &r,
                parent: outer,
            };
            let mut key = Vec::new();
            for g in &s.group_by {
                encode_key_value(&eval(g, ctx, &env)?, &mut key);
            }
            let entry = groups.entry(key).or_insert_with(|| {
                (
                    Vec::new(),
                    s.aggs.iter().map(|_| AggState::default()).collect(),
                )
            });
            for (a, st) in s.aggs.iter().zip(entry.1.iter_mut()) {
                agg_step(a, st, ctx, &env)?;
            }
            // A bare column takes the value of the row holding a lone min()/max(), else the
            // last row of the group.
            let lone_minmax =
                s.aggs.len() == 1 && matches!(s.aggs[0].func, AggFunc::Min | AggFunc::Max);
            let take = !lone_minmax || entry.0.is_empty() || {
                let v = eval(&s.aggs[0].args[0], ctx, &env)?;
                !v.is_null()
                    && entry.1[0]
                        .best
                        .as_ref()
                        .is_some_and(|b| b.total_cmp(&v) == Ordering::Equal)
            };
            if take {
                entry.0 = r;
            }
        }
        if groups.is_empty() && s.group_by.is_empty() {
            groups.insert(
                Vec::new(),
                (
                    vec![Value::Null; s.width],
                    s.aggs.iter().map(|_| AggState::default()).collect(),
                ),
            );
        }
        let mut out = Vec::with_capacity(groups.len());
        for (_, (mut rep, states)) in groups {
            rep.resize(s.width, Value::Null);
            for (a, st) in s.aggs.iter().zip(&states) {
                rep.push(agg_final(a, st)?);
            }
            if let Some(h) = &s.having {
                let env = Env {
                    row: &rep,
                    parent: outer,
                };
                if !is_true(&eval(h, ctx, &env)?) {
                    continue;
                }
            }
            out.push(rep);
        }
        out
    } else {
        rows
    };
    let mut ext_rows = ext_rows;
    if !s.windows.is_empty() {
        compute_windows(
            &s.windows,
            &mut ext_rows,
            s.width + s.aggs.len(),
            ctx,
            outer,
        )?;
    }
    let mut out = Vec::with_capacity(ext_rows.len());
    for r in &ext_rows {
        let env = Env {
            row: r,
            parent: outer,
        };
        let mut vals = Vec::with_capacity(s.projection.len());
        for p in &s.projection {
            vals.push(eval(p, ctx, &env)?);
        }
        let mut keys = Vec::new();
        if want_keys {
            for k in &s.order_keys {
                keys.push(eval(k, ctx, &env)?);
            }
        }
        out.push((vals, keys));
    }
    Ok(if s.distinct { dedup(out) } else { out })
}

/// Adds the columns of a compiled query read as a source (CTE, view, derived table,
/// parenthesized join) to the current frame: each (table, name) in order, with the query's
/// affinity and declared type for that position.
/// A result column: a bare column keeps its declared collation where `coll_ok` allows it.
fn projection_item(
    c: &mut Compiler,
    e: &AExpr,
    coll_ok: bool,
) -> Result<(SExpr, Option<DataType>, Option<super::compile::Collation>)> {
    if coll_ok {
        c.operand(e)
    } else {
        let (x, aff) = c.expr_aff(e)?;
        Ok((x, aff, None))
    }
}

fn check_wildcard_collation(col: &ColInfo, coll_ok: bool) -> Result<()> {
    match col.collation {
        Some(coll) if !coll_ok => Err(Error::unsupported(format!(
            "column {} declared COLLATE {} in a DISTINCT, compound or nested SELECT",
            col.name,
            coll.name()
        ))),
        _ => Ok(()),
    }
}

fn push_query_columns(
    c: &mut Compiler,
    q: &Query,
    cols: impl Iterator<Item = (Option<String>, String)>,
) {
    for (i, (table, name)) in cols.enumerate() {
        c.frame().cols.push(ColInfo {
            table,
            name,
            affinity: q.affinities.get(i).copied().flatten(),
            decl: q.decls.get(i).cloned().flatten(),
            hidden: false,
            alias_of: None,
            // BINARY is what a column without a declared collation has anyway.
            collation: match &q.body {
                Body::Select(p) => p
                    .collations
                    .get(i)
                    .copied()
                    .flatten()
                    .filter(|k| *k != super::compile::Collation::Binary),
                _ => None,
            },
        });
    }
}
