//! Compilation of sqlparser expressions into [`SExpr`]: column names resolved against a chain of
//! scopes (innermost query first, then the queries it is nested in), parameters replaced by
//! their bound values, SQLite's comparison affinity made explicit, aggregates collected into
//! slots of their query.

use std::sync::Arc;

use sqlparser::ast::Spanned;
use sqlparser::ast::{
    self as ast, BinaryOperator, CastKind, DuplicateTreatment, Expr as AExpr, FunctionArg,
    FunctionArgExpr, FunctionArgumentClause, FunctionArguments, UnaryOperator, Value as AValue,
};

use super::params::Bound;
use super::parse::LineIndex;
use super::query::Query;
use crate::catalog::Schema;
use crate::error::{Error, Result, SqlState};
use crate::value::{DataType, Value};

/// IN lists at least this long are searched through a sorted copy (ORMs send hundreds of keys).
const IN_SET_MIN: usize = 16;

/// Binary operators of compiled expressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Is,
    IsNot,
    And,
    Or,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Concat,
    BitAnd,
    BitOr,
    Shl,
    Shr,
}

/// A compiled scalar expression.
#[derive(Debug, Clone)]
pub enum SExpr {
    Lit(Value),
    /// Parameter slot `n` of a plan compiled for reuse (see `Compiler::param_slots`): its value
    /// is taken from the statement's context when evaluated, never baked into the plan.
    Param(usize),
    /// Column `idx` of the row `up` scopes out (0: the current query's row).
    Col {
        up: usize,
        idx: usize,
    },
    /// Applies a type affinity to the value (comparison affinity, CAST-free conversions).
    Affinity(DataType, Box<SExpr>),
    Not(Box<SExpr>),
    Neg(Box<SExpr>),
    BitNot(Box<SExpr>),
    Bin(Op, Box<SExpr>, Box<SExpr>),
    IsNull(Box<SExpr>, bool),
    InList {
        expr: Box<SExpr>,
        list: Vec<SExpr>,
        negated: bool,
        /// For a long list of constants (literals, parameters): a process-unique id under
        /// which evaluation keeps the list sorted for binary search, once per statement.
        set: Option<usize>,
    },
    InQuery {
        expr: Box<SExpr>,
        query: Arc<Query>,
        negated: bool,
        /// Comparison affinity applied to the left value and to the subquery's values (as for
        /// `x = y` between the left operand and the subquery's column).
        left_conv: Option<DataType>,
        right_conv: Option<DataType>,
    },
    /// A row value IN a subquery: `(a, b) IN (SELECT x, y ...)`, one comparison per column
    /// with its (left, right) comparison affinities.
    InQueryRow {
        exprs: Vec<SExpr>,
        query: Arc<Query>,
        negated: bool,
        convs: Vec<(Option<DataType>, Option<DataType>)>,
    },
    Exists {
        query: Arc<Query>,
        negated: bool,
    },
    Scalar(Arc<Query>),
    Between {
        expr: Box<SExpr>,
        low: Box<SExpr>,
        high: Box<SExpr>,
        negated: bool,
    },
    Like {
        expr: Box<SExpr>,
        pattern: Box<SExpr>,
        escape: Option<Box<SExpr>>,
        negated: bool,
    },
    Glob {
        expr: Box<SExpr>,
        pattern: Box<SExpr>,
        negated: bool,
    },
    Case {
        operand: Option<Box<SExpr>>,
        whens: Vec<(SExpr, SExpr)>,
        else_: Option<Box<SExpr>>,
    },
    Cast(Box<SExpr>, CastType),
    Func(String, Vec<SExpr>),
}

/// The target of CAST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CastType {
    Integer,
    Real,
    Text,
    Blob,
    Numeric,
}

/// An aggregate call collected from a query's projection, HAVING or ORDER BY.
#[derive(Debug, Clone)]
pub struct AggCall {
    pub func: AggFunc,
    pub args: Vec<SExpr>,
    pub distinct: bool,
    pub filter: Option<SExpr>,
    /// For [`AggFunc::User`]: the registered aggregate.
    pub user: Option<super::user_functions::UserAggregate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    CountStar,
    Count,
    Sum,
    Total,
    Avg,
    Min,
    Max,
    GroupConcat,
    /// An aggregate registered on the session.
    User,
}

/// Window functions: ranking, offsets, and aggregates over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WinFunc {
    RowNumber,
    Rank,
    DenseRank,
    Lag,
    Lead,
    FirstValue,
    LastValue,
    Agg(AggFunc),
}

/// A window function call: `func(args) OVER (PARTITION BY ... ORDER BY ... [frame])`; the
/// default frame is the partition up to the current row's last peer when ordered, else all
/// of it.
#[derive(Debug, Clone)]
pub struct WindowCall {
    pub func: WinFunc,
    pub args: Vec<SExpr>,
    pub partition: Vec<SExpr>,
    /// (key, descending, nulls first)
    pub order: Vec<(SExpr, bool, Option<bool>)>,
    /// An explicit frame; None is SQLite's default (RANGE BETWEEN UNBOUNDED PRECEDING AND
    /// CURRENT ROW).
    pub frame: Option<FrameSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameUnits {
    Rows,
    Range,
    Groups,
}

/// One end of a window frame; offsets are constant expressions.
#[derive(Debug, Clone)]
pub enum FrameBound {
    UnboundedPreceding,
    Preceding(SExpr),
    CurrentRow,
    Following(SExpr),
    UnboundedFollowing,
}

#[derive(Debug, Clone)]
pub struct FrameSpec {
    pub units: FrameUnits,
    pub start: FrameBound,
    pub end: FrameBound,
}

/// Column references to window results are numbered from here until the query knows how
/// many aggregates precede them (see `place_windows`).
pub const WINDOW_SLOT_BASE: usize = usize::MAX / 2;

/// A column visible in a scope.
#[derive(Debug, Clone)]
pub struct ColInfo {
    /// Table name or alias (as written).
    pub table: Option<String>,
    pub name: String,
    /// Comparison affinity (None: no affinity, like an expression).
    pub affinity: Option<DataType>,
    /// Declared type, reported with result columns.
    pub decl: Option<String>,
    /// Not part of `*` (the rowid).
    pub hidden: bool,
    /// For the hidden rowid of a table with an `INTEGER PRIMARY KEY`: that column's name (SQLite
    /// names a selected rowid after it).
    pub alias_of: Option<String>,
    /// The column's declared collation (`name TEXT COLLATE NOCASE`); None is BINARY.
    pub collation: Option<Collation>,
}

/// One query level's columns plus what compiling it collected.
#[derive(Debug, Default)]
pub struct Frame {
    pub cols: Vec<ColInfo>,
    /// Aggregates collected (when `allow_agg` is set) and their slot base.
    pub aggs: Vec<AggCall>,
    /// Window function calls collected in the projection and ORDER BY.
    pub windows: Vec<WindowCall>,
    pub agg_base: usize,
    pub allow_agg: bool,
    /// Set when an expression in this frame refers to an enclosing frame.
    pub correlated: bool,
    /// USING/NATURAL join columns that unqualified names prefer (left side).
    /// With the right column too for a RIGHT / FULL JOIN: the name then means
    /// coalesce(left, right).
    pub using_cols: Vec<(String, usize, Option<usize>)>,
}

/// A named common table expression visible while compiling.
#[derive(Debug, Clone)]
pub struct CteDef {
    pub name: String,
    pub query: Arc<Query>,
    pub columns: Vec<String>,
    /// Index into the execution context's CTE result slots.
    pub slot: usize,
}

/// Compilation state for one statement.
pub struct Compiler<'a> {
    pub schema: &'a Schema,
    pub bound: &'a Bound,
    pub text: &'a LineIndex<'a>,
    pub frames: Vec<Frame>,
    pub ctes: Vec<CteDef>,
    pub cte_slots: usize,
    /// Whether the statement reads random()/changes() etc. (not cacheable by value).
    pub volatile: bool,
    /// Functions registered on the session; they take precedence over built-ins.
    pub user_functions: Option<&'a super::user_functions::UserFunctions>,
    /// Views being expanded (outermost first), to refuse a view that reads itself.
    pub view_stack: Vec<String>,
    /// The session's temporary tables (none inside a view: views read the main schema).
    pub temp: Option<&'a super::temp::TempNames>,
    /// Set while compiling an operand whose declared column collation is honoured (see
    /// `operand`); a collated column met anywhere else is refused rather than compared,
    /// grouped or deduplicated as BINARY.
    pub coll_ok: bool,
    /// The collation of the column `resolve_column` last resolved under `coll_ok`.
    pub last_coll: Option<Collation>,
    /// Nesting of `compile_query`: 1 for the statement's own query.
    pub query_depth: usize,
    /// Inside a compound SELECT (UNION etc. deduplicate by the column collation).
    pub in_compound: bool,
    /// The WINDOW clause of the SELECT being compiled: name -> its definition, each already
    /// merged with the window it names as its base.
    pub named_windows: Vec<(String, ast::WindowSpec)>,
    /// Set while compiling the query of a derived table, CTE or view: its result columns keep
    /// a declared column collation, which the reading query then honours like a table's.
    pub from_source: bool,
    /// When set, placeholders compile to [`SExpr::Param`] slots instead of their bound values,
    /// so the plan can be cached and run again with other values. One slot per compiled
    /// placeholder: (its occurrence in the text, the affinity its value gets when bound).
    pub param_slots: Option<Vec<(usize, Option<DataType>)>>,
}

fn syntax(msg: impl Into<String>) -> Error {
    Error::new(SqlState::SyntaxError, msg)
}

/// SQLite's built-in collating sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collation {
    Binary,
    /// ASCII letters compare without case.
    NoCase,
    /// Trailing spaces are ignored.
    RTrim,
}

impl Collation {
    pub fn name(self) -> &'static str {
        match self {
            Collation::Binary => "BINARY",
            Collation::NoCase => "NOCASE",
            Collation::RTrim => "RTRIM",
        }
    }
}

pub fn collation_of(name: &ast::ObjectName) -> Result<Collation> {
    let n = name.to_string();
    let n = n.trim_matches(|c| c == '"' || c == '`' || c == '\'' || c == '[' || c == ']');
    match n.to_ascii_uppercase().as_str() {
        "BINARY" => Ok(Collation::Binary),
        "NOCASE" => Ok(Collation::NoCase),
        "RTRIM" => Ok(Collation::RTrim),
        _ => Err(syntax(format!("no such collation sequence: {n}"))),
    }
}

fn strip_nested(e: &AExpr) -> &AExpr {
    match e {
        AExpr::Nested(x) => strip_nested(x),
        other => other,
    }
}

/// The elements of a row value `(a, b, ...)` (two or more, through parentheses).
fn row_value(e: &AExpr) -> Option<&[AExpr]> {
    match strip_nested(e) {
        AExpr::Tuple(items) if items.len() > 1 => Some(items),
        _ => None,
    }
}

/// An operand's explicit `COLLATE` (through parentheses) and the expression under it.
pub fn split_collate(e: &AExpr) -> Result<(Option<Collation>, &AExpr)> {
    match e {
        AExpr::Collate { expr, collation } => {
            let c = collation_of(collation)?;
            let (_, inner) = split_collate(expr)?;
            Ok((Some(c), inner))
        }
        AExpr::Nested(x) if matches!(x.as_ref(), AExpr::Collate { .. }) => split_collate(x),
        _ => Ok((None, e)),
    }
}

/// A bare (possibly parenthesized or qualified) column name.
pub fn is_column_ref(e: &AExpr) -> bool {
    match e {
        AExpr::Identifier(_) | AExpr::CompoundIdentifier(_) => true,
        AExpr::Nested(x) => is_column_ref(x),
        _ => false,
    }
}

/// A value as a collation compares it: comparing the folded values of two operands orders
/// them exactly as the collation would (NOCASE folds ASCII only, like SQLite).
pub fn collated(c: Option<Collation>, x: SExpr) -> SExpr {
    match c {
        None | Some(Collation::Binary) => x,
        Some(Collation::NoCase) => SExpr::Func("$nocase".into(), vec![x]),
        Some(Collation::RTrim) => SExpr::Func("$rtrim_collation".into(), vec![x]),
    }
}

/// SQLite's aggregate functions by name and argument count.
pub fn agg_func(name: &str, nargs: usize, star: bool) -> Option<AggFunc> {
    Some(match (name, nargs) {
        ("count", 0) if star => AggFunc::CountStar,
        ("count", 0) => AggFunc::CountStar,
        ("count", 1) => AggFunc::Count,
        ("sum", 1) => AggFunc::Sum,
        ("total", 1) => AggFunc::Total,
        ("avg", 1) => AggFunc::Avg,
        ("min", 1) => AggFunc::Min,
        ("max", 1) => AggFunc::Max,
        ("group_concat", 1 | 2) | ("string_agg", 2) => AggFunc::GroupConcat,
        _ => return None,
    })
}

impl<'a> Compiler<'a> {
    pub fn new(schema: &'a Schema, bound: &'a Bound, text: &'a LineIndex<'a>) -> Self {
        Compiler {
            schema,
            bound,
            text,
            frames: Vec::new(),
            ctes: Vec::new(),
            cte_slots: 0,
            volatile: false,
            user_functions: None,
            view_stack: Vec::new(),
            temp: None,
            coll_ok: false,
            last_coll: None,
            query_depth: 0,
            in_compound: false,
            named_windows: Vec::new(),
            from_source: false,
            param_slots: None,
        }
    }

    pub fn frame(&mut self) -> &mut Frame {
        self.frames
            .last_mut()
            .expect("a frame is pushed while compiling")
    }

    /// The text of an expression as written (SQLite names result columns after it).
    pub fn text_of(&self, e: &AExpr) -> String {
        self.text
            .slice(e.span())
            .map(|s| s.to_string())
            .unwrap_or_else(|| e.to_string())
    }

    fn resolve_column(
        &mut self,
        table: Option<&str>,
        name: &str,
    ) -> Result<(SExpr, Option<DataType>)> {
        for (d, frame) in self.frames.iter().rev().enumerate() {
            let mut found: Option<usize> = None;
            let mut coalesce_with: Option<usize> = None;
            if table.is_none() {
                if let Some((_, i, r)) = frame
                    .using_cols
                    .iter()
                    .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
                {
                    found = Some(*i);
                    coalesce_with = *r;
                }
            }
            if found.is_none() {
                for (i, c) in frame.cols.iter().enumerate() {
                    let table_ok = match table {
                        None => true,
                        Some(t) => c
                            .table
                            .as_deref()
                            .is_some_and(|ct| ct.eq_ignore_ascii_case(t)),
                    };
                    // In an upsert, unqualified names are the target table's, not `excluded.`.
                    let pseudo = table.is_none()
                        && c.table.as_deref() == Some("excluded")
                        && frame.cols.iter().any(|o| {
                            o.table.as_deref() != Some("excluded")
                                && o.name.eq_ignore_ascii_case(name)
                        });
                    if table_ok && !pseudo && c.name.eq_ignore_ascii_case(name) {
                        if found.is_some() && table.is_none() {
                            return Err(syntax(format!("ambiguous column name: {name}")));
                        }
                        if found.is_none() {
                            found = Some(i);
                        }
                    }
                }
            }
            if found.is_none() && is_rowid_name(name) {
                // rowid/oid/_rowid_ of a table in this frame (hidden column named "rowid").
                let mut hit = None;
                for (i, c) in frame.cols.iter().enumerate() {
                    let table_ok = match table {
                        None => true,
                        Some(t) => c
                            .table
                            .as_deref()
                            .is_some_and(|ct| ct.eq_ignore_ascii_case(t)),
                    };
                    if table_ok && c.hidden {
                        if hit.is_some() && table.is_none() {
                            return Err(syntax(format!("ambiguous column name: {name}")));
                        }
                        hit.get_or_insert(i);
                    }
                }
                found = hit;
            }
            if let Some(i) = found {
                let aff = frame.cols[i].affinity;
                if !self.coll_ok {
                    if let Some(coll) = frame.cols[i].collation {
                        return Err(Error::unsupported(format!(
                            "column {} declared COLLATE {} outside a comparison, BETWEEN, \
                             IN (list), ORDER BY or a result column of the outermost SELECT",
                            frame.cols[i].name,
                            coll.name()
                        )));
                    }
                } else {
                    // A column operand has a collation even when it declares none (BINARY),
                    // and that beats the right operand's declared one.
                    self.last_coll = Some(frame.cols[i].collation.unwrap_or(Collation::Binary));
                }
                if d > 0 {
                    let n = self.frames.len();
                    for f in &mut self.frames[n - d..n] {
                        f.correlated = true;
                    }
                }
                if let Some(r) = coalesce_with {
                    return Ok((
                        SExpr::Func(
                            "coalesce".into(),
                            vec![SExpr::Col { up: d, idx: i }, SExpr::Col { up: d, idx: r }],
                        ),
                        aff,
                    ));
                }
                return Ok((SExpr::Col { up: d, idx: i }, aff));
            }
        }
        let full = match table {
            Some(t) => format!("{t}.{name}"),
            None => name.to_string(),
        };
        Err(Error::new(
            SqlState::UndefinedColumn,
            format!("no such column: {full}"),
        ))
    }

    /// Compiles an operand that honours a declared column collation (SQLite gives a column
    /// reference its column's collation); also returns that collation.
    pub fn operand(&mut self, e: &AExpr) -> Result<(SExpr, Option<DataType>, Option<Collation>)> {
        let direct = is_column_ref(e);
        self.coll_ok = direct;
        self.last_coll = None;
        let r = self.expr_aff(e);
        self.coll_ok = false;
        let coll = self.last_coll.take();
        let (x, aff) = r?;
        Ok((x, aff, coll))
    }

    /// Compiles an expression; also returns its comparison affinity (columns and CASTs have one).
    pub fn expr_aff(&mut self, e: &AExpr) -> Result<(SExpr, Option<DataType>)> {
        Ok(match e {
            AExpr::Identifier(id) => {
                if id.quote_style == Some('"') {
                    // SQLite's misfeature: a double-quoted name that is no column is a string.
                    match self.resolve_column(None, &id.value) {
                        Ok(x) => x,
                        Err(err) if err.state == SqlState::UndefinedColumn => {
                            (SExpr::Lit(Value::Text(id.value.clone())), None)
                        }
                        Err(err) => return Err(err),
                    }
                } else {
                    self.resolve_column(None, &id.value)?
                }
            }
            AExpr::CompoundIdentifier(parts) => match parts.as_slice() {
                [t, c] => self.resolve_column(Some(&t.value), &c.value)?,
                [s, t, c] if s.value.eq_ignore_ascii_case("main") => {
                    self.resolve_column(Some(&t.value), &c.value)?
                }
                _ => {
                    return Err(Error::unsupported(format!(
                        "qualified column reference {e}"
                    )))
                }
            },
            AExpr::Nested(inner) => self.expr_aff(inner)?,
            AExpr::Value(v) => (self.literal(&v.value, v.span)?, None),
            AExpr::TypedString(ts) => {
                return Err(Error::unsupported(format!("typed string literal {ts}")))
            }
            AExpr::UnaryOp { op, expr } => {
                let (x, aff) = self.expr_aff(expr)?;
                match op {
                    UnaryOperator::Not => (SExpr::Not(Box::new(x)), None),
                    UnaryOperator::Minus => match x {
                        SExpr::Lit(Value::Integer(i)) if i != i64::MIN => {
                            (SExpr::Lit(Value::Integer(-i)), None)
                        }
                        SExpr::Lit(Value::Real(r)) => (SExpr::Lit(Value::Real(-r)), None),
                        x => (SExpr::Neg(Box::new(x)), None),
                    },
                    UnaryOperator::Plus => (x, aff),
                    UnaryOperator::BitwiseNot => (SExpr::BitNot(Box::new(x)), None),
                    other => return Err(Error::unsupported(format!("unary operator {other}"))),
                }
            }
            AExpr::BinaryOp { left, op, right } => (self.binary(left, op, right)?, None),
            // NULL tests and LIKE ignore collations: a collated column is fine under them.
            AExpr::IsNull(x) => (SExpr::IsNull(Box::new(self.operand(x)?.0), false), None),
            AExpr::IsNotNull(x) => (SExpr::IsNull(Box::new(self.operand(x)?.0), true), None),
            AExpr::IsDistinctFrom(a, b) => (self.compare(Op::IsNot, a, b)?, None),
            AExpr::IsNotDistinctFrom(a, b) => (self.compare(Op::Is, a, b)?, None),
            AExpr::IsTrue(x) | AExpr::IsNotTrue(x) | AExpr::IsFalse(x) | AExpr::IsNotFalse(x) => {
                let v = self.expr(x)?;
                let (want, neg) = match e {
                    AExpr::IsTrue(_) => (true, false),
                    AExpr::IsNotTrue(_) => (true, true),
                    AExpr::IsFalse(_) => (false, false),
                    _ => (false, true),
                };
                (
                    SExpr::Func(
                        "$is_bool".into(),
                        vec![
                            v,
                            SExpr::Lit(Value::Integer(want as i64)),
                            SExpr::Lit(Value::Integer(neg as i64)),
                        ],
                    ),
                    None,
                )
            }
            AExpr::In {
                expr,
                target,
                negated,
                global,
            } => {
                if *global {
                    return Err(Error::unsupported("GLOBAL IN"));
                }
                if let Some(items) = row_value(expr) {
                    return Ok((self.row_in(items, target, *negated)?, None));
                }
                // `x COLLATE c IN (list)` compares with the left operand's collation.
                let (coll, expr) = match target {
                    ast::InTarget::List(_) => split_collate(expr)?,
                    _ => (None, expr.as_ref()),
                };
                // A column's declared collation applies to IN (list) only: IN (subquery)
                // refuses a collated column (resolve_column) rather than compare it as BINARY.
                let (x, aff, dc) = match target {
                    ast::InTarget::List(_) => self.operand(expr)?,
                    _ => {
                        let (x, aff) = self.expr_aff(expr)?;
                        (x, aff, None)
                    }
                };
                let coll = coll.or(dc);
                match target {
                    ast::InTarget::List(list) => {
                        let mut items = Vec::with_capacity(list.len());
                        for it in list {
                            let (y, yaff) = self.expr_aff(it)?;
                            // The left operand's affinity applies to list items without one.
                            items.push(collated(
                                coll,
                                match (aff, yaff, y) {
                                    // A constant (a literal or a bound parameter) is converted
                                    // once here instead of for every row: ORMs send IN lists
                                    // of hundreds of parameters.
                                    (Some(a), None, SExpr::Lit(v))
                                        if is_numeric_aff(a) || a == DataType::Text =>
                                    {
                                        SExpr::Lit(super::eval::convert(Some(a), v))
                                    }
                                    // A parameter slot of a reusable plan is converted once
                                    // per execution, when its value is bound.
                                    (Some(a), None, SExpr::Param(n))
                                        if is_numeric_aff(a) || a == DataType::Text =>
                                    {
                                        if let Some(slot) =
                                            self.param_slots.as_mut().and_then(|s| s.get_mut(n))
                                        {
                                            slot.1 = Some(a);
                                        }
                                        SExpr::Param(n)
                                    }
                                    (Some(a), None, y)
                                        if is_numeric_aff(a) || a == DataType::Text =>
                                    {
                                        SExpr::Affinity(a, Box::new(y))
                                    }
                                    (_, _, y) => y,
                                },
                            ));
                        }
                        let set = (items.len() >= IN_SET_MIN
                            && items
                                .iter()
                                .all(|x| matches!(x, SExpr::Lit(_) | SExpr::Param(_))))
                        .then(super::query::next_query_id);
                        (
                            SExpr::InList {
                                expr: Box::new(collated(coll, x)),
                                list: items,
                                negated: *negated,
                                set,
                            },
                            None,
                        )
                    }
                    ast::InTarget::Subquery(subquery) => {
                        let q = self.subquery(subquery)?;
                        if q.columns.len() != 1 {
                            return Err(syntax(format!(
                                "sub-select returns {} columns - expected 1",
                                q.columns.len()
                            )));
                        }
                        let (left_conv, right_conv) =
                            comparison_conversions(aff, q.affinities.first().copied().flatten());
                        (
                            SExpr::InQuery {
                                expr: Box::new(x),
                                query: Arc::new(q),
                                negated: *negated,
                                left_conv,
                                right_conv,
                            },
                            None,
                        )
                    }
                    other => return Err(Error::unsupported(format!("IN {other}"))),
                }
            }
            AExpr::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let (xc, expr) = split_collate(expr)?;
                let (lc, low) = split_collate(low)?;
                let (hc, high) = split_collate(high)?;
                let (x, aff, xdc) = self.operand(expr)?;
                let xdc = xdc.filter(|k| *k != Collation::Binary);
                let lo = self.with_aff(low, aff)?;
                let hi = self.with_aff(high, aff)?;
                if xc.is_some() || lc.is_some() || hc.is_some() || xdc.is_some() {
                    // `x >= lo AND x <= hi`, each comparison with its own collation.
                    let (cl, ch) = (xc.or(lc).or(xdc), xc.or(hc).or(xdc));
                    let ge = SExpr::Bin(
                        Op::Ge,
                        Box::new(collated(cl, x.clone())),
                        Box::new(collated(cl, lo)),
                    );
                    let le = SExpr::Bin(
                        Op::Le,
                        Box::new(collated(ch, x)),
                        Box::new(collated(ch, hi)),
                    );
                    let both = SExpr::Bin(Op::And, Box::new(ge), Box::new(le));
                    let e = if *negated {
                        SExpr::Not(Box::new(both))
                    } else {
                        both
                    };
                    (e, None)
                } else {
                    (
                        SExpr::Between {
                            expr: Box::new(x),
                            low: Box::new(lo),
                            high: Box::new(hi),
                            negated: *negated,
                        },
                        None,
                    )
                }
            }
            AExpr::Like {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            } => {
                if *any {
                    return Err(Error::unsupported("LIKE ANY"));
                }
                let escape = match escape_char {
                    Some(x) => Some(Box::new(self.expr(x)?)),
                    None => None,
                };
                (
                    SExpr::Like {
                        expr: Box::new(self.operand(expr)?.0),
                        pattern: Box::new(self.operand(pattern)?.0),
                        escape,
                        negated: *negated,
                    },
                    None,
                )
            }
            AExpr::ILike { .. } => return Err(Error::unsupported("ILIKE")),
            AExpr::SimilarTo { .. } => return Err(Error::unsupported("SIMILAR TO")),
            AExpr::RLike {
                negated,
                expr,
                pattern,
                regexp,
            } => {
                // X REGEXP Y calls the application's regexp(Y, X), as in SQLite.
                let fname = if *regexp { "regexp" } else { "rlike" };
                let Some(f) = self.user_functions.and_then(|u| u.get(fname, 2)) else {
                    return Err(Error::unsupported(
                        "operator REGEXP (no regexp() function is registered)",
                    ));
                };
                self.volatile |= !f.deterministic;
                let call = SExpr::Func(
                    fname.to_string(),
                    vec![self.expr(pattern)?, self.expr(expr)?],
                );
                (
                    if *negated {
                        SExpr::Not(Box::new(call))
                    } else {
                        call
                    },
                    None,
                )
            }
            AExpr::Cast {
                kind,
                expr,
                data_type,
                format,
            } => {
                if format.is_some() || !matches!(kind, CastKind::Cast) {
                    return Err(Error::unsupported(format!("cast form {e}")));
                }
                let decl = data_type.to_string();
                let ty = DataType::from_declared(&decl);
                let ct = match ty {
                    DataType::Integer => CastType::Integer,
                    DataType::Real => CastType::Real,
                    DataType::Text => CastType::Text,
                    DataType::Blob => CastType::Blob,
                    DataType::Numeric | DataType::Any => CastType::Numeric,
                };
                let aff = if decl.trim().is_empty() {
                    DataType::Blob
                } else {
                    ty
                };
                (SExpr::Cast(Box::new(self.expr(expr)?), ct), Some(aff))
            }
            AExpr::Collate { expr, collation } => match collation_of(collation)? {
                Collation::Binary => self.expr_aff(expr)?,
                // A collation changes comparisons and sorting only; grouping, DISTINCT and
                // the like by a collation are not implemented.
                other => {
                    return Err(Error::unsupported(format!(
                        "COLLATE {} outside a comparison, BETWEEN or ORDER BY",
                        other.name()
                    )))
                }
            },
            AExpr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let operand = match operand {
                    Some(o) => Some(Box::new(self.expr(o)?)),
                    None => None,
                };
                let mut whens = Vec::new();
                for w in conditions {
                    whens.push((self.expr(&w.condition)?, self.expr(&w.result)?));
                }
                let else_ = match else_result {
                    Some(x) => Some(Box::new(self.expr(x)?)),
                    None => None,
                };
                (
                    SExpr::Case {
                        operand,
                        whens,
                        else_,
                    },
                    None,
                )
            }
            AExpr::Exists { subquery, negated } => {
                let q = self.subquery(subquery)?;
                (
                    SExpr::Exists {
                        query: Arc::new(q),
                        negated: *negated,
                    },
                    None,
                )
            }
            AExpr::Subquery(q) => {
                let q = self.subquery(q)?;
                if q.columns.len() != 1 {
                    return Err(syntax(format!(
                        "sub-select returns {} columns - expected 1",
                        q.columns.len()
                    )));
                }
                (SExpr::Scalar(Arc::new(q)), None)
            }
            AExpr::Function(f) => (self.function(f)?, None),
            AExpr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![self.expr(expr)?];
                if let Some(f) = substring_from {
                    args.push(self.expr(f)?);
                }
                if let Some(f) = substring_for {
                    args.push(self.expr(f)?);
                }
                (SExpr::Func("substr".into(), args), None)
            }
            AExpr::Trim {
                trim_where,
                trim_what,
                expr,
                trim_characters,
            } => {
                if trim_characters.is_some() {
                    return Err(Error::unsupported("TRIM with a character list"));
                }
                let name = match trim_where {
                    None | Some(ast::TrimWhereField::Both) => "trim",
                    Some(ast::TrimWhereField::Leading) => "ltrim",
                    Some(ast::TrimWhereField::Trailing) => "rtrim",
                };
                let mut args = vec![self.expr(expr)?];
                if let Some(w) = trim_what {
                    args.push(self.expr(w)?);
                }
                (SExpr::Func(name.into(), args), None)
            }
            // sqlparser reads `floor(x)` / `ceil(x)` as special forms; they reach a registered
            // function of that name (SQLAlchemy registers floor), else the built-in.
            AExpr::Floor {
                expr,
                field: ast::CeilFloorKind::DateTimeField(ast::DateTimeField::NoDateTime),
            }
            | AExpr::Ceil {
                expr,
                field: ast::CeilFloorKind::DateTimeField(ast::DateTimeField::NoDateTime),
            } => {
                let name = if matches!(e, AExpr::Floor { .. }) {
                    "floor"
                } else {
                    "ceil"
                };
                match self.user_call(name, &[expr.as_ref()]) {
                    Some(r) => (r?, None),
                    None => (SExpr::Func(name.into(), vec![self.expr(expr)?]), None),
                }
            }
            // Row values are only operands of comparisons and IN (see `compare_rows`).
            AExpr::Tuple(_) => return Err(syntax("row value misused")),
            AExpr::Wildcard(_) | AExpr::QualifiedWildcard(..) => {
                return Err(syntax("* is not allowed here"))
            }
            other => {
                return Err(Error::unsupported(format!("expression {other}")));
            }
        })
    }

    pub fn expr(&mut self, e: &AExpr) -> Result<SExpr> {
        Ok(self.expr_aff(e)?.0)
    }

    /// Compiles `e`, applying affinity `aff` to it when `e` has none itself.
    fn with_aff(&mut self, e: &AExpr, aff: Option<DataType>) -> Result<SExpr> {
        let (x, own) = self.expr_aff(e)?;
        Ok(match (aff, own) {
            (Some(a), None) if is_numeric_aff(a) || a == DataType::Text => {
                SExpr::Affinity(a, Box::new(x))
            }
            _ => x,
        })
    }

    fn literal(&mut self, v: &AValue, span: sqlparser::tokenizer::Span) -> Result<SExpr> {
        Ok(SExpr::Lit(match v {
            AValue::Number(n, _) => parse_number_literal(n)?,
            AValue::SingleQuotedString(s) => Value::Text(s.clone()),
            AValue::DoubleQuotedString(s) => Value::Text(s.clone()),
            AValue::HexStringLiteral(h) => Value::Blob(decode_hex(h)?),
            AValue::Boolean(b) => Value::Integer(*b as i64),
            AValue::Null => Value::Null,
            AValue::Placeholder(_) => {
                if let Some(slots) = self.param_slots.as_mut() {
                    slots.push((self.bound.occurrence_at(span.start)?, None));
                    return Ok(SExpr::Param(slots.len() - 1));
                }
                self.bound.value_at(span.start)?
            }
            other => return Err(Error::unsupported(format!("literal {other}"))),
        }))
    }

    fn compare(&mut self, op: Op, l: &AExpr, r: &AExpr) -> Result<SExpr> {
        if row_value(l).is_some() || row_value(r).is_some() {
            return self.compare_rows(op, l, r);
        }
        // SQLite: an explicit COLLATE on the left operand wins, else one on the right.
        // Then the left operand's declared column collation, then the right's.
        let (lc, l) = split_collate(l)?;
        let (rc, r) = split_collate(r)?;
        let (a, aa, ldc) = self.operand(l)?;
        let (b, ba, rdc) = self.operand(r)?;
        let coll = lc.or(rc).or(ldc).or(rdc);
        let (a, b) = apply_comparison_affinity(a, aa, b, ba);
        Ok(SExpr::Bin(
            op,
            Box::new(collated(coll, a)),
            Box::new(collated(coll, b)),
        ))
    }

    /// A comparison of two row values, element by element as SQLite defines it: `=` / IS when
    /// every pair is, `<>` / IS NOT when any pair is, and `<` ... `>=` ordered by the first
    /// pair that differs (NULL where an undecided pair holds a NULL).
    fn compare_rows(&mut self, op: Op, l: &AExpr, r: &AExpr) -> Result<SExpr> {
        let (Some(ls), Some(rs)) = (row_value(l), row_value(r)) else {
            if matches!(strip_nested(l), AExpr::Subquery(_))
                || matches!(strip_nested(r), AExpr::Subquery(_))
            {
                return Err(Error::unsupported("a row value compared with a subquery"));
            }
            return Err(syntax("row value misused"));
        };
        if ls.len() != rs.len() {
            return Err(syntax("row value misused"));
        }
        let and = |a: SExpr, b: SExpr| SExpr::Bin(Op::And, Box::new(a), Box::new(b));
        let or = |a: SExpr, b: SExpr| SExpr::Bin(Op::Or, Box::new(a), Box::new(b));
        match op {
            Op::Eq | Op::Is | Op::Ne | Op::IsNot => {
                let mut out: Option<SExpr> = None;
                for (a, b) in ls.iter().zip(rs) {
                    let c = self.compare(op, a, b)?;
                    out = Some(match (out, op) {
                        (None, _) => c,
                        (Some(p), Op::Eq | Op::Is) => and(p, c),
                        (Some(p), _) => or(p, c),
                    });
                }
                out.ok_or_else(|| syntax("row value misused"))
            }
            Op::Lt | Op::Le | Op::Gt | Op::Ge => {
                let strict = match op {
                    Op::Lt | Op::Le => Op::Lt,
                    _ => Op::Gt,
                };
                // From the last pair back: last `op`, then `a < b OR (a = b AND rest)`.
                let n = ls.len();
                let mut acc = self.compare(op, &ls[n - 1], &rs[n - 1])?;
                for i in (0..n - 1).rev() {
                    let lt = self.compare(strict, &ls[i], &rs[i])?;
                    let eq = self.compare(Op::Eq, &ls[i], &rs[i])?;
                    acc = or(lt, and(eq, acc));
                }
                Ok(acc)
            }
            _ => Err(syntax("row value misused")),
        }
    }

    /// `(a, b) IN (...)`: a list of row values becomes an OR of row equalities (SQLite's IN
    /// semantics, NULLs included); a subquery or VALUES compares column by column.
    fn row_in(&mut self, items: &[AExpr], target: &ast::InTarget, negated: bool) -> Result<SExpr> {
        match target {
            ast::InTarget::List(list) => {
                let lhs = AExpr::Tuple(items.to_vec());
                let mut out: Option<SExpr> = None;
                for it in list {
                    if row_value(it).is_none() {
                        return Err(syntax("row value misused"));
                    }
                    let c = self.compare_rows(Op::Eq, &lhs, it)?;
                    out = Some(match out {
                        None => c,
                        Some(p) => SExpr::Bin(Op::Or, Box::new(p), Box::new(c)),
                    });
                }
                let x = out.unwrap_or(SExpr::Lit(Value::Integer(0)));
                Ok(if negated { SExpr::Not(Box::new(x)) } else { x })
            }
            ast::InTarget::Subquery(subquery) => {
                let mut exprs = Vec::with_capacity(items.len());
                let mut affs = Vec::with_capacity(items.len());
                for it in items {
                    let (x, aff) = self.expr_aff(it)?;
                    exprs.push(x);
                    affs.push(aff);
                }
                let q = self.subquery(subquery)?;
                if q.columns.len() != items.len() {
                    return Err(syntax(format!(
                        "sub-select returns {} columns - expected {}",
                        q.columns.len(),
                        items.len()
                    )));
                }
                let convs = affs
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        comparison_conversions(*a, q.affinities.get(i).copied().flatten())
                    })
                    .collect();
                Ok(SExpr::InQueryRow {
                    exprs,
                    query: Arc::new(q),
                    negated,
                    convs,
                })
            }
            other => Err(Error::unsupported(format!("IN {other}"))),
        }
    }

    fn binary(&mut self, l: &AExpr, op: &BinaryOperator, r: &AExpr) -> Result<SExpr> {
        let o = match op {
            BinaryOperator::Eq => return self.compare(Op::Eq, l, r),
            BinaryOperator::NotEq => return self.compare(Op::Ne, l, r),
            BinaryOperator::Lt => return self.compare(Op::Lt, l, r),
            BinaryOperator::LtEq => return self.compare(Op::Le, l, r),
            BinaryOperator::Gt => return self.compare(Op::Gt, l, r),
            BinaryOperator::GtEq => return self.compare(Op::Ge, l, r),
            BinaryOperator::Spaceship | BinaryOperator::Is => return self.compare(Op::Is, l, r),
            BinaryOperator::IsNot => return self.compare(Op::IsNot, l, r),
            BinaryOperator::And => Op::And,
            BinaryOperator::Or => Op::Or,
            BinaryOperator::Plus => Op::Add,
            BinaryOperator::Minus => Op::Sub,
            BinaryOperator::Multiply => Op::Mul,
            BinaryOperator::Divide => Op::Div,
            BinaryOperator::Modulo => Op::Rem,
            BinaryOperator::StringConcat => Op::Concat,
            BinaryOperator::BitwiseAnd => Op::BitAnd,
            BinaryOperator::BitwiseOr => Op::BitOr,
            BinaryOperator::PGBitwiseShiftLeft => Op::Shl,
            BinaryOperator::PGBitwiseShiftRight => Op::Shr,
            BinaryOperator::Glob => {
                return Ok(SExpr::Glob {
                    expr: Box::new(self.expr(l)?),
                    pattern: Box::new(self.expr(r)?),
                    negated: false,
                })
            }
            BinaryOperator::Regexp | BinaryOperator::Match => {
                // X REGEXP Y calls the application's regexp(Y, X), as in SQLite.
                let fname = if matches!(op, BinaryOperator::Regexp) {
                    "regexp"
                } else {
                    "match"
                };
                let Some(f) = self.user_functions.and_then(|u| u.get(fname, 2)) else {
                    return Err(Error::unsupported(format!(
                        "operator {op} (no {fname}() function is registered)"
                    )));
                };
                self.volatile |= !f.deterministic;
                return Ok(SExpr::Func(
                    fname.to_string(),
                    vec![self.expr(r)?, self.expr(l)?],
                ));
            }
            BinaryOperator::Arrow | BinaryOperator::LongArrow => {
                let name = if matches!(op, BinaryOperator::Arrow) {
                    "$json_arrow"
                } else {
                    "$json_long_arrow"
                };
                return Ok(SExpr::Func(name.into(), vec![self.expr(l)?, self.expr(r)?]));
            }
            other => return Err(Error::unsupported(format!("operator {other}"))),
        };
        // IS / IS NOT arrive as special forms in some dialect paths; handled above.
        Ok(SExpr::Bin(
            o,
            Box::new(self.expr(l)?),
            Box::new(self.expr(r)?),
        ))
    }

    fn function(&mut self, f: &ast::Function) -> Result<SExpr> {
        let name = match f.name.0.as_slice() {
            [ast::ObjectNamePart::Identifier(i)] => i.value.to_ascii_lowercase(),
            _ => return Err(Error::unsupported(format!("function name {}", f.name))),
        };
        if let Some(over) = &f.over {
            return self.window_call(&name, f, over);
        }
        // The SQL-standard keywords SQLite accepts as expressions (sqlparser parses them as
        // argument-less calls): the current UTC time, as datetime()/date()/time() of 'now'.
        if matches!(f.args, FunctionArguments::None) {
            let same = match name.as_str() {
                "current_timestamp" => Some("datetime"),
                "current_date" => Some("date"),
                "current_time" => Some("time"),
                _ => None,
            };
            if let Some(func) = same {
                self.volatile = true;
                return Ok(SExpr::Func(
                    func.to_string(),
                    vec![SExpr::Lit(Value::Text("now".into()))],
                ));
            }
        }
        if !f.within_group.is_empty() || f.null_treatment.is_some() {
            return Err(Error::unsupported(format!(
                "{name}() with WITHIN GROUP/null treatment"
            )));
        }
        let mut distinct = false;
        let mut star = false;
        let mut arg_exprs: Vec<&AExpr> = Vec::new();
        let mut order_clause = false;
        match &f.args {
            FunctionArguments::None => {}
            FunctionArguments::Subquery(_) => {
                return Err(Error::unsupported(format!("{name}(subquery) form")))
            }
            FunctionArguments::List(list) => {
                distinct = matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
                for c in &list.clauses {
                    match c {
                        FunctionArgumentClause::OrderBy(_) => order_clause = true,
                        other => {
                            return Err(Error::unsupported(format!("clause {other} in {name}()")))
                        }
                    }
                }
                for a in &list.args {
                    match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => arg_exprs.push(x),
                        FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => star = true,
                        other => {
                            return Err(Error::unsupported(format!("argument {other} of {name}()")))
                        }
                    }
                }
            }
        }
        if order_clause {
            return Err(Error::unsupported(format!("ORDER BY inside {name}()")));
        }
        let user_agg = self
            .user_functions
            .and_then(|u| u.get_aggregate(&name, arg_exprs.len()))
            .filter(|_| !star)
            .cloned();
        let builtin_agg = agg_func(&name, arg_exprs.len(), star);
        if let Some(af) = user_agg.as_ref().map(|_| AggFunc::User).or(builtin_agg) {
            if star && name != "count" {
                return Err(syntax(format!("wrong use of * in {name}()")));
            }
            if !self.frames.last().is_some_and(|f| f.allow_agg) {
                return Err(Error::new(
                    SqlState::SyntaxError,
                    format!("misuse of aggregate function {name}()"),
                ));
            }
            if distinct && arg_exprs.len() != 1 {
                return Err(syntax(format!(
                    "DISTINCT aggregates must have exactly one argument ({name})"
                )));
            }
            // Arguments are compiled without aggregates allowed (no nesting).
            self.frame().allow_agg = false;
            let args: Result<Vec<SExpr>> = arg_exprs.iter().map(|a| self.expr(a)).collect();
            let filter = f.filter.as_ref().map(|x| self.expr(x));
            self.frame().allow_agg = true;
            let args = args?;
            let filter = filter.transpose()?;
            let fr = self.frame();
            let slot = fr.agg_base + fr.aggs.len();
            fr.aggs.push(AggCall {
                func: af,
                args,
                distinct,
                filter,
                user: user_agg,
            });
            return Ok(SExpr::Col { up: 0, idx: slot });
        }
        if f.filter.is_some() {
            return Err(Error::unsupported(format!(
                "FILTER on non-aggregate {name}()"
            )));
        }
        if distinct {
            return Err(syntax(format!(
                "DISTINCT in non-aggregate function {name}()"
            )));
        }
        if star {
            return Err(syntax(format!("wrong use of * in {name}()")));
        }
        if let Some(r) = self.user_call(&name, &arg_exprs) {
            return r;
        }
        if !super::functions::is_known(&name) {
            return Err(Error::unsupported(format!("function {name}()")));
        }
        if matches!(
            name.as_str(),
            "random" | "randomblob" | "changes" | "total_changes" | "last_insert_rowid"
        ) {
            self.volatile = true;
        }
        let args = arg_exprs
            .iter()
            .map(|a| self.expr(a))
            .collect::<Result<Vec<_>>>()?;
        super::functions::check_arity(&name, args.len())?;
        Ok(SExpr::Func(name, args))
    }

    /// A call of a function registered on the session, if `name` with this many arguments is.
    fn user_call(&mut self, name: &str, arg_exprs: &[&AExpr]) -> Option<Result<SExpr>> {
        let u = self.user_functions?.get(name, arg_exprs.len())?;
        self.volatile |= !u.deterministic;
        let args = arg_exprs
            .iter()
            .map(|a| self.expr(a))
            .collect::<Result<Vec<_>>>();
        Some(args.map(|args| SExpr::Func(name.to_string(), args)))
    }

    fn window_call(
        &mut self,
        name: &str,
        f: &ast::Function,
        over: &ast::WindowType,
    ) -> Result<SExpr> {
        let spec = match over {
            ast::WindowType::WindowSpec(spec) => self.resolve_window(spec)?,
            ast::WindowType::NamedWindow(w) => self.named_window(&w.value)?,
        };
        let spec = &spec;
        if f.filter.is_some() || !f.within_group.is_empty() || f.null_treatment.is_some() {
            return Err(Error::unsupported(format!("{name}() OVER with FILTER")));
        }
        if !self.frames.last().is_some_and(|fr| fr.allow_agg) {
            return Err(syntax(format!("misuse of window function {name}()")));
        }
        let mut star = false;
        let mut arg_exprs: Vec<&AExpr> = Vec::new();
        match &f.args {
            FunctionArguments::None => {}
            FunctionArguments::List(list) => {
                if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
                    return Err(Error::unsupported(format!(
                        "DISTINCT or clauses in {name}() OVER"
                    )));
                }
                for a in &list.args {
                    match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => arg_exprs.push(x),
                        FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => star = true,
                        other => {
                            return Err(Error::unsupported(format!("argument {other} of {name}()")))
                        }
                    }
                }
            }
            FunctionArguments::Subquery(_) => {
                return Err(Error::unsupported(format!("{name}(subquery) OVER")))
            }
        }
        let n = arg_exprs.len();
        let func = match (name, n) {
            ("row_number", 0) => WinFunc::RowNumber,
            ("rank", 0) => WinFunc::Rank,
            ("dense_rank", 0) => WinFunc::DenseRank,
            ("lag", 1..=3) => WinFunc::Lag,
            ("lead", 1..=3) => WinFunc::Lead,
            ("first_value", 1) => WinFunc::FirstValue,
            ("last_value", 1) => WinFunc::LastValue,
            _ => match agg_func(name, n, star) {
                Some(a) => WinFunc::Agg(a),
                None => return Err(Error::unsupported(format!("window function {name}()"))),
            },
        };
        // Arguments and window keys are evaluated on the (grouped) row, like the projection;
        // window calls cannot nest.
        let saved = std::mem::take(&mut self.frame().windows);
        let res = (|| -> Result<WindowCall> {
            let args = arg_exprs
                .iter()
                .map(|a| self.expr(a))
                .collect::<Result<Vec<_>>>()?;
            let partition = spec
                .partition_by
                .iter()
                .map(|p| self.expr(p))
                .collect::<Result<Vec<_>>>()?;
            let mut order = Vec::new();
            for o in &spec.order_by {
                let desc = matches!(o.options.sort, Some(ast::OrderBySort::Desc));
                order.push((self.expr(&o.expr)?, desc, o.options.nulls_first));
            }
            let frame = match &spec.window_frame {
                None => None,
                Some(f) => Some(self.frame_spec(f, order.len())?),
            };
            Ok(WindowCall {
                func,
                args,
                partition,
                order,
                frame,
            })
        })();
        let nested = std::mem::replace(&mut self.frame().windows, saved);
        let call = res?;
        if !nested.is_empty() {
            return Err(syntax(format!(
                "window functions cannot be nested ({name})"
            )));
        }
        let fr = self.frame();
        fr.windows.push(call);
        Ok(SExpr::Col {
            up: 0,
            idx: WINDOW_SLOT_BASE + fr.windows.len() - 1,
        })
    }

    fn named_window(&self, name: &str) -> Result<ast::WindowSpec> {
        self.named_windows
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, w)| w.clone())
            .ok_or_else(|| syntax(format!("no such window: {name}")))
    }

    /// A window specification with its base window (`OVER (w ORDER BY ...)`) merged in, under
    /// SQLite's rules: the base gives the PARTITION BY, and the ORDER BY unless it has none;
    /// the frame comes from the referring specification.
    pub fn resolve_window(&self, spec: &ast::WindowSpec) -> Result<ast::WindowSpec> {
        let Some(base_name) = &spec.window_name else {
            return Ok(spec.clone());
        };
        let base = self.named_window(&base_name.value)?;
        if !spec.partition_by.is_empty() {
            return Err(syntax(format!(
                "cannot override PARTITION clause of window: {}",
                base_name.value
            )));
        }
        if !spec.order_by.is_empty() && !base.order_by.is_empty() {
            return Err(syntax(format!(
                "cannot override ORDER BY clause of window: {}",
                base_name.value
            )));
        }
        if base.window_frame.is_some() {
            return Err(syntax(format!(
                "cannot override frame specification of window: {}",
                base_name.value
            )));
        }
        Ok(ast::WindowSpec {
            window_name: None,
            partition_by: base.partition_by.clone(),
            order_by: if spec.order_by.is_empty() {
                base.order_by.clone()
            } else {
                spec.order_by.clone()
            },
            window_frame: spec.window_frame.clone(),
        })
    }

    /// A window frame, with SQLite's rules on which bounds may be combined.
    fn frame_spec(&mut self, f: &ast::WindowFrame, order_terms: usize) -> Result<FrameSpec> {
        let units = match f.units {
            ast::WindowFrameUnits::Rows => FrameUnits::Rows,
            ast::WindowFrameUnits::Range => FrameUnits::Range,
            ast::WindowFrameUnits::Groups => FrameUnits::Groups,
        };
        let mut bound = |b: &ast::WindowFrameBound| -> Result<FrameBound> {
            Ok(match b {
                ast::WindowFrameBound::CurrentRow => FrameBound::CurrentRow,
                ast::WindowFrameBound::Preceding(None) => FrameBound::UnboundedPreceding,
                ast::WindowFrameBound::Following(None) => FrameBound::UnboundedFollowing,
                ast::WindowFrameBound::Preceding(Some(x)) => FrameBound::Preceding(self.expr(x)?),
                ast::WindowFrameBound::Following(Some(x)) => FrameBound::Following(self.expr(x)?),
            })
        };
        let start = bound(&f.start_bound)?;
        let end = match &f.end_bound {
            None => FrameBound::CurrentRow,
            Some(b) => bound(b)?,
        };
        let rank = |b: &FrameBound| match b {
            FrameBound::UnboundedPreceding => 0,
            FrameBound::Preceding(_) => 1,
            FrameBound::CurrentRow => 2,
            FrameBound::Following(_) => 3,
            FrameBound::UnboundedFollowing => 4,
        };
        if matches!(start, FrameBound::UnboundedFollowing)
            || matches!(end, FrameBound::UnboundedPreceding)
            || rank(&start) > rank(&end)
        {
            return Err(syntax("unsupported frame specification"));
        }
        let offset =
            |b: &FrameBound| matches!(b, FrameBound::Preceding(_) | FrameBound::Following(_));
        if units == FrameUnits::Range && (offset(&start) || offset(&end)) && order_terms != 1 {
            return Err(syntax(
                "RANGE with offset PRECEDING/FOLLOWING requires one ORDER BY term",
            ));
        }
        Ok(FrameSpec { units, start, end })
    }

    fn subquery(&mut self, q: &ast::Query) -> Result<Query> {
        super::query::compile_query(self, q)
    }
}

pub fn is_rowid_name(n: &str) -> bool {
    ["rowid", "oid", "_rowid_"]
        .iter()
        .any(|r| r.eq_ignore_ascii_case(n))
}

pub fn is_numeric_aff(a: DataType) -> bool {
    matches!(a, DataType::Integer | DataType::Real | DataType::Numeric)
}

/// Which affinity to apply to (left, right) operands of a comparison, by SQLite's rules.
pub fn comparison_conversions(
    aa: Option<DataType>,
    ba: Option<DataType>,
) -> (Option<DataType>, Option<DataType>) {
    let num = |x: Option<DataType>| x.is_some_and(is_numeric_aff);
    let texty =
        |x: Option<DataType>| matches!(x, Some(DataType::Text) | Some(DataType::Blob) | None);
    if num(aa) && texty(ba) {
        (None, Some(DataType::Numeric))
    } else if num(ba) && texty(aa) {
        (Some(DataType::Numeric), None)
    } else if aa == Some(DataType::Text) && ba.is_none() {
        (None, Some(DataType::Text))
    } else if ba == Some(DataType::Text) && aa.is_none() {
        (Some(DataType::Text), None)
    } else {
        (None, None)
    }
}

/// SQLite's comparison affinity: a numeric-affinity operand converts the other one (when that
/// one has TEXT/BLOB/no affinity) to numeric; a TEXT operand converts an operand without
/// affinity to text.
pub fn apply_comparison_affinity(
    a: SExpr,
    aa: Option<DataType>,
    b: SExpr,
    ba: Option<DataType>,
) -> (SExpr, SExpr) {
    let num = |x: Option<DataType>| x.is_some_and(is_numeric_aff);
    let texty =
        |x: Option<DataType>| matches!(x, Some(DataType::Text) | Some(DataType::Blob) | None);
    if num(aa) && texty(ba) {
        return (a, SExpr::Affinity(DataType::Numeric, Box::new(b)));
    }
    if num(ba) && texty(aa) {
        return (SExpr::Affinity(DataType::Numeric, Box::new(a)), b);
    }
    if aa == Some(DataType::Text) && ba.is_none() {
        return (a, SExpr::Affinity(DataType::Text, Box::new(b)));
    }
    if ba == Some(DataType::Text) && aa.is_none() {
        return (SExpr::Affinity(DataType::Text, Box::new(a)), b);
    }
    (a, b)
}

pub fn parse_number_literal(n: &str) -> Result<Value> {
    if let Some(h) = n.strip_prefix("0x").or_else(|| n.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16)
            .map(|u| Value::Integer(u as i64))
            .map_err(|_| syntax(format!("hex literal too big: {n}")));
    }
    if n.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = n.parse::<i64>() {
            return Ok(Value::Integer(i));
        }
    }
    n.parse::<f64>()
        .map(Value::Real)
        .map_err(|_| syntax(format!("malformed number {n}")))
}

pub fn decode_hex(h: &str) -> Result<Vec<u8>> {
    if !h.len().is_multiple_of(2) || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(syntax(format!("malformed blob literal X'{h}'")));
    }
    (0..h.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&h[i..i + 2], 16)
                .map_err(|_| syntax(format!("malformed blob literal X'{h}'")))
        })
        .collect()
}

/// Whether an expression refers to the current row (depth 0) at or beyond column `from`, or to
/// any subquery/volatile function; used to decide which predicates can drive index lookups.
pub fn refs_current_at_or_after(e: &SExpr, from: usize) -> bool {
    refs_unbound(e, &|i| i < from)
}

/// Whether `e` cannot be evaluated while only the current query's columns for which `bound`
/// holds are filled in: it reads another of its columns, runs a subquery (which may read
/// any of them) or calls a function whose result changes per call.
pub fn refs_unbound(e: &SExpr, bound: &dyn Fn(usize) -> bool) -> bool {
    let mut hit = false;
    walk(e, &mut |x| match x {
        SExpr::Col { up: 0, idx } if !bound(*idx) => hit = true,
        SExpr::InQuery { .. }
        | SExpr::InQueryRow { .. }
        | SExpr::Exists { .. }
        | SExpr::Scalar(_) => hit = true,
        SExpr::Func(n, _)
            if matches!(
                n.as_str(),
                "random" | "randomblob" | "changes" | "total_changes" | "last_insert_rowid"
            ) =>
        {
            hit = true
        }
        _ => {}
    });
    hit
}

/// Calls `f` on every node (not descending into subqueries).
pub fn walk(e: &SExpr, f: &mut impl FnMut(&SExpr)) {
    f(e);
    match e {
        SExpr::Lit(_)
        | SExpr::Param(_)
        | SExpr::Col { .. }
        | SExpr::Exists { .. }
        | SExpr::Scalar(_) => {}
        SExpr::Affinity(_, x)
        | SExpr::Not(x)
        | SExpr::Neg(x)
        | SExpr::BitNot(x)
        | SExpr::IsNull(x, _)
        | SExpr::Cast(x, _) => walk(x, f),
        SExpr::Bin(_, a, b) => {
            walk(a, f);
            walk(b, f);
        }
        SExpr::InList { expr, list, .. } => {
            walk(expr, f);
            list.iter().for_each(|x| walk(x, f));
        }
        SExpr::InQuery { expr, .. } => walk(expr, f),
        SExpr::InQueryRow { exprs, .. } => exprs.iter().for_each(|x| walk(x, f)),
        SExpr::Between {
            expr, low, high, ..
        } => {
            walk(expr, f);
            walk(low, f);
            walk(high, f);
        }
        SExpr::Like {
            expr,
            pattern,
            escape,
            ..
        } => {
            walk(expr, f);
            walk(pattern, f);
            if let Some(x) = escape {
                walk(x, f);
            }
        }
        SExpr::Glob { expr, pattern, .. } => {
            walk(expr, f);
            walk(pattern, f);
        }
        SExpr::Case {
            operand,
            whens,
            else_,
        } => {
            if let Some(o) = operand {
                walk(o, f);
            }
            for (a, b) in whens {
                walk(a, f);
                walk(b, f);
            }
            if let Some(x) = else_ {
                walk(x, f);
            }
        }
        SExpr::Func(_, args) => args.iter().for_each(|x| walk(x, f)),
    }
}

/// Gives window result references their final column: after the FROM columns and aggregates.
pub fn place_windows(e: &mut SExpr, base: usize) {
    match e {
        SExpr::Col { up: 0, idx } if *idx >= WINDOW_SLOT_BASE => {
            *idx = base + (*idx - WINDOW_SLOT_BASE)
        }
        SExpr::Lit(_)
        | SExpr::Param(_)
        | SExpr::Col { .. }
        | SExpr::Exists { .. }
        | SExpr::Scalar(_) => {}
        SExpr::Affinity(_, x)
        | SExpr::Not(x)
        | SExpr::Neg(x)
        | SExpr::BitNot(x)
        | SExpr::IsNull(x, _)
        | SExpr::Cast(x, _) => place_windows(x, base),
        SExpr::Bin(_, a, b) => {
            place_windows(a, base);
            place_windows(b, base);
        }
        SExpr::InList { expr, list, .. } => {
            place_windows(expr, base);
            list.iter_mut().for_each(|x| place_windows(x, base));
        }
        SExpr::InQuery { expr, .. } => place_windows(expr, base),
        SExpr::InQueryRow { exprs, .. } => exprs.iter_mut().for_each(|x| place_windows(x, base)),
        SExpr::Between {
            expr, low, high, ..
        } => {
            place_windows(expr, base);
            place_windows(low, base);
            place_windows(high, base);
        }
        SExpr::Like {
            expr,
            pattern,
            escape,
            ..
        } => {
            place_windows(expr, base);
            place_windows(pattern, base);
            if let Some(x) = escape {
                place_windows(x, base);
            }
        }
        SExpr::Glob { expr, pattern, .. } => {
            place_windows(expr, base);
            place_windows(pattern, base);
        }
        SExpr::Case {
            operand,
            whens,
            else_,
        } => {
            if let Some(o) = operand {
                place_windows(o, base);
            }
            for (a, b) in whens {
                place_windows(a, base);
                place_windows(b, base);
            }
            if let Some(x) = else_ {
                place_windows(x, base);
            }
        }
        SExpr::Func(_, args) => args.iter_mut().for_each(|x| place_windows(x, base)),
    }
}

/// Splits an AND tree into its conjuncts.
pub fn conjuncts(e: &SExpr, out: &mut Vec<SExpr>) {
    if let SExpr::Bin(Op::And, a, b) = e {
        conjuncts(a, out);
        conjuncts(b, out);
    } else {
        out.push(e.clone());
    }
}
