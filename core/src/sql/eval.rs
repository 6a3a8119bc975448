//! Evaluation of compiled expressions with SQLite's semantics (three-valued logic, numeric
//! comparison across integer and real, comparison affinity, LIKE/GLOB, CAST), over a row and the
//! rows of the enclosing queries.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::rc::Rc;

use super::compile::{CastType, Op, SExpr};
use super::query::{run_query, Query};
use crate::api::Transaction;
use crate::error::{Error, Result, SqlState};
use crate::ir::expr::{like_match, text_of, to_numeric, truthy};
use crate::ir::{BinaryOp, Expr};
use crate::value::{DataType, Value};

/// Connection counters that SQL functions read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub last_insert_rowid: i64,
    pub changes: i64,
    pub total_changes: i64,
}

/// Everything a statement's execution needs besides the rows.
pub struct Ctx<'t> {
    pub tx: &'t mut Transaction,
    pub counters: Counters,
    /// Full scans of tables read by this statement, with the row id as the last column.
    pub table_cache: HashMap<String, Rc<Vec<Vec<Value>>>>,
    /// Results of CTEs (by slot) and uncorrelated subqueries (by address).
    pub cte_results: HashMap<usize, Rc<Vec<Vec<Value>>>>,
    pub subquery_cache: HashMap<usize, Rc<Vec<Vec<Value>>>>,
    /// Functions registered on the session (the compiler resolved names against the same set).
    pub user_functions: Option<std::sync::Arc<super::user_functions::UserFunctions>>,
    /// Stored rows read from tables by this statement (scans, lookups), for EXPLAIN-style
    /// checks that the access path was used.
    pub rows_read: u64,
    /// Values of the plan's parameter slots ([`SExpr::Param`]).
    pub params: Vec<Value>,
    /// Rows an ordered index read may stop after: (address of the source's access path, rows),
    /// set by a query that reads its only table in ORDER BY order under a LIMIT.
    pub scan_budget: Option<(usize, usize)>,
    /// Set when such a read stopped at its budget (more rows may follow).
    pub scan_truncated: bool,
    /// Long IN lists of constants, sorted once per statement for binary search, by the list's
    /// `set` id: (sorted non-NULL items, whether a NULL was among them).
    pub in_sets: HashMap<usize, Rc<(Vec<Value>, bool)>>,
}

impl<'t> Ctx<'t> {
    pub fn new(tx: &'t mut Transaction, counters: Counters) -> Self {
        Ctx {
            tx,
            counters,
            table_cache: HashMap::new(),
            cte_results: HashMap::new(),
            subquery_cache: HashMap::new(),
            user_functions: None,
            rows_read: 0,
            params: Vec::new(),
            scan_budget: None,
            scan_truncated: false,
            in_sets: HashMap::new(),
        }
    }

    /// Forgets cached table contents after a write. Uncorrelated subqueries keep their
    /// result: SQLite evaluates them once per statement.
    pub fn invalidate(&mut self) {
        self.table_cache.clear();
    }
}

/// The row being evaluated and the rows of the queries it is nested in.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    pub row: &'a [Value],
    pub parent: Option<&'a Env<'a>>,
}

impl<'a> Env<'a> {
    pub fn root(row: &'a [Value]) -> Env<'a> {
        Env { row, parent: None }
    }

    fn column(&self, up: usize, idx: usize) -> Value {
        let mut e = self;
        for _ in 0..up {
            match e.parent {
                Some(p) => e = p,
                None => return Value::Null,
            }
        }
        e.row.get(idx).cloned().unwrap_or(Value::Null)
    }
}

pub fn bool_val(b: Option<bool>) -> Value {
    b.map_or(Value::Null, |x| Value::Integer(x as i64))
}

fn cmp3(a: &Value, b: &Value) -> Option<Ordering> {
    if a.is_null() || b.is_null() {
        None
    } else {
        Some(a.total_cmp(b))
    }
}

/// Arithmetic and concatenation through the engine's expression evaluator (one set of rules).
pub fn arith(op: Op, a: Value, b: Value) -> Result<Value> {
    let bop = match op {
        Op::Add => BinaryOp::Add,
        Op::Sub => BinaryOp::Sub,
        Op::Mul => BinaryOp::Mul,
        Op::Div => BinaryOp::Div,
        Op::Rem => BinaryOp::Rem,
        Op::Concat => BinaryOp::Concat,
        _ => return Err(Error::internal("not an arithmetic operator")),
    };
    Expr::bin(bop, Expr::Literal(a), Expr::Literal(b)).eval(&[])
}

fn int_of(v: &Value) -> Option<i64> {
    match to_numeric(v) {
        Value::Null => None,
        Value::Integer(i) => Some(i),
        Value::Real(r) => Some(real_to_int(r)),
        _ => Some(0),
    }
}

pub fn real_to_int(r: f64) -> i64 {
    if r.is_nan() {
        0
    } else if r >= 9.223_372_036_854_776e18 {
        i64::MAX
    } else if r <= -9.223_372_036_854_776e18 {
        i64::MIN
    } else {
        r as i64
    }
}

pub fn cast(v: Value, ty: CastType) -> Value {
    if v.is_null() {
        return Value::Null;
    }
    match ty {
        CastType::Text => match v {
            Value::Text(s) => Value::Text(s),
            other => Value::Text(text_of(&other)),
        },
        CastType::Blob => match v {
            Value::Blob(b) => Value::Blob(b),
            other => Value::Blob(text_of(&other).into_bytes()),
        },
        CastType::Integer => match to_numeric(&as_text_if_blob(v)) {
            Value::Integer(i) => Value::Integer(i),
            Value::Real(r) => Value::Integer(real_to_int(r)),
            _ => Value::Integer(0),
        },
        CastType::Real => match to_numeric(&as_text_if_blob(v)) {
            Value::Integer(i) => Value::Real(i as f64),
            Value::Real(r) => Value::Real(r),
            _ => Value::Real(0.0),
        },
        // Numbers stay as they are; text becomes an integer when that loses nothing.
        CastType::Numeric => match v {
            Value::Integer(_) | Value::Real(_) => v,
            other => match to_numeric(&as_text_if_blob(other)) {
                Value::Real(r) if r == r.trunc() && r.abs() < 9.2e18 => Value::Integer(r as i64),
                n => n,
            },
        },
    }
}

fn as_text_if_blob(v: Value) -> Value {
    match v {
        Value::Blob(b) => Value::Text(String::from_utf8_lossy(&b).into_owned()),
        other => other,
    }
}

/// SQLite GLOB: `*`, `?`, `[...]` classes (with `^` and ranges), case-sensitive.
pub fn glob_match(p: &[char], t: &[char]) -> bool {
    let (mut pi, mut ti) = (0, 0);
    while pi < p.len() {
        match p[pi] {
            '*' => {
                while pi < p.len() && p[pi] == '*' {
                    pi += 1;
                }
                if pi == p.len() {
                    return true;
                }
                return (ti..=t.len()).any(|k| glob_match(&p[pi..], &t[k..]));
            }
            '?' => {
                if ti >= t.len() {
                    return false;
                }
                pi += 1;
                ti += 1;
            }
            '[' => {
                if ti >= t.len() {
                    return false;
                }
                let c = t[ti];
                let mut j = pi + 1;
                let negate = j < p.len() && p[j] == '^';
                if negate {
                    j += 1;
                }
                let mut matched = false;
                let mut first = true;
                while j < p.len() && (first || p[j] != ']') {
                    first = false;
                    if j + 2 < p.len() && p[j + 1] == '-' && p[j + 2] != ']' {
                        if p[j] <= c && c <= p[j + 2] {
                            matched = true;
                        }
                        j += 3;
                    } else {
                        if p[j] == c {
                            matched = true;
                        }
                        j += 1;
                    }
                }
                if j >= p.len() {
                    return false; // unterminated class matches nothing
                }
                if matched == negate {
                    return false;
                }
                pi = j + 1;
                ti += 1;
            }
            ch => {
                if ti >= t.len() || t[ti] != ch {
                    return false;
                }
                pi += 1;
                ti += 1;
            }
        }
    }
    ti == t.len()
}

/// Rows of a subquery, cached when it does not depend on the enclosing row.
pub fn subquery_rows(q: &Query, ctx: &mut Ctx, env: &Env) -> Result<Rc<Vec<Vec<Value>>>> {
    if !q.correlated {
        let key = q.id;
        if let Some(r) = ctx.subquery_cache.get(&key) {
            return Ok(r.clone());
        }
        let rows = Rc::new(run_query(q, ctx, Some(env))?.rows);
        ctx.subquery_cache.insert(key, rows.clone());
        return Ok(rows);
    }
    Ok(Rc::new(run_query(q, ctx, Some(env))?.rows))
}

/// Applies a comparison affinity (TEXT turns numbers into text; numeric ones parse text).
pub fn convert(aff: Option<DataType>, v: Value) -> Value {
    match aff {
        None => v,
        Some(DataType::Text) => match v {
            Value::Integer(_) | Value::Real(_) => Value::Text(text_of(&v)),
            other => other,
        },
        Some(t) => t.apply_affinity(v),
    }
}

/// The sorted items of an IN list of constants (literals and parameters), built once per
/// statement; None when an item depends on the row. Items compare as `total_cmp` does, which is
/// how the linear search matches, so a binary search finds exactly the same items.
fn in_set(key: usize, list: &[SExpr], ctx: &mut Ctx) -> Result<Option<Rc<(Vec<Value>, bool)>>> {
    if let Some(s) = ctx.in_sets.get(&key) {
        return Ok(Some(s.clone()));
    }
    let mut items = Vec::with_capacity(list.len());
    let mut saw_null = false;
    for it in list {
        let v = match it {
            SExpr::Lit(v) => v.clone(),
            SExpr::Param(n) => param(ctx, *n)?.clone(),
            _ => return Ok(None),
        };
        // NaN is not ordered: leave such a list to the linear search.
        if matches!(v, Value::Real(r) if r.is_nan()) {
            return Ok(None);
        }
        if v.is_null() {
            saw_null = true;
        } else {
            items.push(v);
        }
    }
    items.sort_by(|a, b| a.total_cmp(b));
    let set = Rc::new((items, saw_null));
    ctx.in_sets.insert(key, set.clone());
    Ok(Some(set))
}

fn param<'c>(ctx: &'c Ctx, n: usize) -> Result<&'c Value> {
    ctx.params
        .get(n)
        .ok_or_else(|| Error::internal(format!("parameter slot {n} has no value")))
}

pub fn eval(e: &SExpr, ctx: &mut Ctx, env: &Env) -> Result<Value> {
    Ok(match e {
        SExpr::Lit(v) => v.clone(),
        SExpr::Param(n) => param(ctx, *n)?.clone(),
        SExpr::Col { up, idx } => env.column(*up, *idx),
        SExpr::Affinity(ty, x) => convert(Some(*ty), eval(x, ctx, env)?),
        SExpr::Not(x) => bool_val(truthy(&eval(x, ctx, env)?).map(|b| !b)),
        SExpr::Neg(x) => arith(Op::Sub, Value::Integer(0), {
            let v = eval(x, ctx, env)?;
            if v.is_null() {
                return Ok(Value::Null);
            }
            to_numeric(&v)
        })?,
        SExpr::BitNot(x) => match int_of(&eval(x, ctx, env)?) {
            None => Value::Null,
            Some(i) => Value::Integer(!i),
        },
        SExpr::Bin(op, a, b) => eval_bin(*op, a, b, ctx, env)?,
        SExpr::IsNull(x, neg) => Value::Integer((eval(x, ctx, env)?.is_null() != *neg) as i64),
        SExpr::InList {
            expr,
            list,
            negated,
            set,
        } => {
            let v = eval(expr, ctx, env)?;
            if list.is_empty() {
                return Ok(Value::Integer(*negated as i64));
            }
            if v.is_null() {
                return Ok(Value::Null);
            }
            if let Some(id) = set {
                if let Some(set) = in_set(*id, list, ctx)? {
                    let (items, saw_null) = set.as_ref();
                    return Ok(
                        if items.binary_search_by(|x| x.total_cmp(&v)).is_ok() {
                            Value::Integer(!*negated as i64)
                        } else if *saw_null {
                            Value::Null
                        } else {
                            Value::Integer(*negated as i64)
                        },
                    );
                }
            }
            let mut saw_null = false;
            for it in list {
                // Constants are compared in place (no copy per row and item).
                let evaluated;
                let x = match it {
                    SExpr::Lit(x) => x,
                    SExpr::Param(n) => param(ctx, *n)?,
                    other => {
                        evaluated = eval(other, ctx, env)?;
                        &evaluated
                    }
                };
                if x.is_null() {
                    saw_null = true;
                } else if v.total_cmp(x) == Ordering::Equal {
                    return Ok(Value::Integer(!*negated as i64));
                }
            }
            if saw_null {
                Value::Null
            } else {
                Value::Integer(*negated as i64)
            }
        }
        SExpr::InQuery {
            expr,
            query,
            negated,
            left_conv,
            right_conv,
        } => {
            let v = convert(*left_conv, eval(expr, ctx, env)?);
            let rows = subquery_rows(query, ctx, env)?;
            if rows.is_empty() {
                return Ok(Value::Integer(*negated as i64));
            }
            if v.is_null() {
                return Ok(Value::Null);
            }
            let mut saw_null = false;
            for r in rows.iter() {
                let x = convert(*right_conv, r.first().cloned().unwrap_or(Value::Null));
                if x.is_null() {
                    saw_null = true;
                } else if v.total_cmp(&x) == Ordering::Equal {
                    return Ok(Value::Integer(!*negated as i64));
                }
            }
            if saw_null {
                Value::Null
            } else {
                Value::Integer(*negated as i64)
            }
        }
        SExpr::InQueryRow {
            exprs,
            query,
            negated,
            convs,
        } => {
            let mut vals = Vec::with_capacity(exprs.len());
            for (x, (l, _)) in exprs.iter().zip(convs) {
                vals.push(convert(*l, eval(x, ctx, env)?));
            }
            let rows = subquery_rows(query, ctx, env)?;
            if rows.is_empty() {
                return Ok(Value::Integer(*negated as i64));
            }
            let mut saw_null = false;
            'rows: for r in rows.iter() {
                let mut row_null = false;
                for (i, v) in vals.iter().enumerate() {
                    let x = convert(convs[i].1, r.get(i).cloned().unwrap_or(Value::Null));
                    if v.is_null() || x.is_null() {
                        row_null = true;
                    } else if v.total_cmp(&x) != Ordering::Equal {
                        continue 'rows;
                    }
                }
                if !row_null {
                    return Ok(Value::Integer(!*negated as i64));
                }
                saw_null = true;
            }
            if saw_null {
                Value::Null
            } else {
                Value::Integer(*negated as i64)
            }
        }
        SExpr::Exists { query, negated } => {
            let rows = subquery_rows(query, ctx, env)?;
            Value::Integer((rows.is_empty() == *negated) as i64)
        }
        SExpr::Scalar(q) => {
            let rows = subquery_rows(q, ctx, env)?;
            rows.first()
                .and_then(|r| r.first().cloned())
                .unwrap_or(Value::Null)
        }
        SExpr::Between {
            expr,
            low,
            high,
            negated,
        } => {
            let v = eval(expr, ctx, env)?;
            let lo = eval(low, ctx, env)?;
            let hi = eval(high, ctx, env)?;
            let ge = cmp3(&v, &lo).map(|o| o != Ordering::Less);
            let le = cmp3(&v, &hi).map(|o| o != Ordering::Greater);
            let both = match (ge, le) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            };
            bool_val(both.map(|b| b != *negated))
        }
        SExpr::Like {
            expr,
            pattern,
            escape,
            negated,
        } => {
            let v = eval(expr, ctx, env)?;
            let p = eval(pattern, ctx, env)?;
            let esc = match escape {
                Some(x) => match eval(x, ctx, env)? {
                    Value::Null => return Ok(Value::Null),
                    ev => {
                        let s = text_of(&ev);
                        let mut cs = s.chars();
                        match (cs.next(), cs.next()) {
                            (Some(c), None) => Some(c),
                            _ => {
                                return Err(Error::new(
                                    SqlState::InvalidParameter,
                                    "ESCAPE expression must be a single character",
                                ))
                            }
                        }
                    }
                },
                None => None,
            };
            if v.is_null() || p.is_null() {
                return Ok(Value::Null);
            }
            let m = like_match(&text_of(&p), &text_of(&v), esc);
            Value::Integer((m != *negated) as i64)
        }
        SExpr::Glob {
            expr,
            pattern,
            negated,
        } => {
            let v = eval(expr, ctx, env)?;
            let p = eval(pattern, ctx, env)?;
            if v.is_null() || p.is_null() {
                return Ok(Value::Null);
            }
            let pc: Vec<char> = text_of(&p).chars().collect();
            let tc: Vec<char> = text_of(&v).chars().collect();
            Value::Integer((glob_match(&pc, &tc) != *negated) as i64)
        }
        SExpr::Case {
            operand,
            whens,
            else_,
        } => {
            let base = match operand {
                Some(o) => Some(eval(o, ctx, env)?),
                None => None,
            };
            for (w, r) in whens {
                let c = eval(w, ctx, env)?;
                let hit = match &base {
                    Some(b) => cmp3(b, &c) == Some(Ordering::Equal),
                    None => truthy(&c) == Some(true),
                };
                if hit {
                    return eval(r, ctx, env);
                }
            }
            match else_ {
                Some(x) => eval(x, ctx, env)?,
                None => Value::Null,
            }
        }
        SExpr::Cast(x, ty) => cast(eval(x, ctx, env)?, *ty),
        SExpr::Func(name, args) => {
            if name == "coalesce" || name == "ifnull" {
                for a in args {
                    let v = eval(a, ctx, env)?;
                    if !v.is_null() {
                        return Ok(v);
                    }
                }
                return Ok(Value::Null);
            }
            if name == "iif" && args.len() == 3 {
                let c = eval(&args[0], ctx, env)?;
                return eval(
                    if truthy(&c) == Some(true) {
                        &args[1]
                    } else {
                        &args[2]
                    },
                    ctx,
                    env,
                );
            }
            let mut vals = Vec::with_capacity(args.len());
            for a in args {
                vals.push(eval(a, ctx, env)?);
            }
            let user = ctx
                .user_functions
                .as_ref()
                .and_then(|u| u.get(name, vals.len()))
                .map(|u| u.func.clone());
            match user {
                Some(f) => f(&vals)?,
                None => super::functions::call(name, vals, &ctx.counters)?,
            }
        }
    })
}

fn eval_bin(op: Op, a: &SExpr, b: &SExpr, ctx: &mut Ctx, env: &Env) -> Result<Value> {
    if op == Op::And || op == Op::Or {
        let x = truthy(&eval(a, ctx, env)?);
        if op == Op::And && x == Some(false) {
            return Ok(Value::Integer(0));
        }
        if op == Op::Or && x == Some(true) {
            return Ok(Value::Integer(1));
        }
        let y = truthy(&eval(b, ctx, env)?);
        let r = if op == Op::And {
            match (x, y) {
                (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            }
        } else {
            match (x, y) {
                (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            }
        };
        return Ok(bool_val(r));
    }
    let x = eval(a, ctx, env)?;
    let y = eval(b, ctx, env)?;
    Ok(match op {
        Op::Eq => bool_val(cmp3(&x, &y).map(|o| o == Ordering::Equal)),
        Op::Ne => bool_val(cmp3(&x, &y).map(|o| o != Ordering::Equal)),
        Op::Lt => bool_val(cmp3(&x, &y).map(|o| o == Ordering::Less)),
        Op::Le => bool_val(cmp3(&x, &y).map(|o| o != Ordering::Greater)),
        Op::Gt => bool_val(cmp3(&x, &y).map(|o| o == Ordering::Greater)),
        Op::Ge => bool_val(cmp3(&x, &y).map(|o| o != Ordering::Less)),
        Op::Is => Value::Integer((x.total_cmp(&y) == Ordering::Equal) as i64),
        Op::IsNot => Value::Integer((x.total_cmp(&y) != Ordering::Equal) as i64),
        Op::BitAnd | Op::BitOr | Op::Shl | Op::Shr => match (int_of(&x), int_of(&y)) {
            (Some(i), Some(j)) => Value::Integer(match op {
                Op::BitAnd => i & j,
                Op::BitOr => i | j,
                Op::Shl => shift(i, j),
                _ => shift(i, j.checked_neg().unwrap_or(i64::MAX)),
            }),
            _ => Value::Null,
        },
        Op::Rem => remainder(x, y),
        _ => arith(op, x, y)?,
    })
}

/// SQLite's `%`: integer remainder; when either side is not an integer both are read as
/// integers (text by its integer prefix) and the result is real.
fn remainder(x: Value, y: Value) -> Value {
    if x.is_null() || y.is_null() {
        return Value::Null;
    }
    let (nx, ny) = (to_numeric(&x), to_numeric(&y));
    let int_of = |v: &Value, n: &Value| -> i64 {
        match (v, n) {
            (Value::Text(s), _) => atoi_prefix(s),
            (Value::Blob(b), _) => atoi_prefix(&String::from_utf8_lossy(b)),
            (_, Value::Integer(i)) => *i,
            (_, Value::Real(r)) => real_to_int(*r),
            _ => 0,
        }
    };
    if let (Value::Integer(a), Value::Integer(b)) = (&nx, &ny) {
        if *b == 0 {
            return Value::Null;
        }
        return Value::Integer(if *b == -1 { 0 } else { a % b });
    }
    let (a, b) = (int_of(&x, &nx), int_of(&y, &ny));
    if b == 0 {
        return Value::Null;
    }
    Value::Real(if b == -1 { 0.0 } else { (a % b) as f64 })
}

/// The integer a text starts with (leading spaces and sign allowed), saturating.
fn atoi_prefix(s: &str) -> i64 {
    let t = s.trim_start();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut v: i128 = 0;
    for b in digits.bytes() {
        if !b.is_ascii_digit() {
            break;
        }
        v = (v * 10 + (b - b'0') as i128).min(i64::MAX as i128 + 1);
    }
    let v = if neg { -v } else { v };
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

fn shift(i: i64, by: i64) -> i64 {
    if by >= 64 {
        0
    } else if by >= 0 {
        ((i as u64) << by) as i64
    } else if by <= -64 {
        if i < 0 {
            -1
        } else {
            0
        }
    } else {
        i >> (-by)
    }
}

/// Whether a WHERE/ON/HAVING value counts as true.
pub fn is_true(v: &Value) -> bool {
    truthy(v) == Some(true)
}
