//! Scalar expressions over one row, evaluated with SQLite's rules: three-valued logic, numeric
//! comparison across integer and real, integer arithmetic that overflows into real, division by
//! zero giving NULL.

use std::cmp::Ordering;

use rkyv::{Archive, Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::value::{parse_numeric, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Archive, Serialize, Deserialize)]
#[rkyv(derive(Debug))]
pub enum UnaryOp {
    Not,
    Neg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Archive, Serialize, Deserialize)]
#[rkyv(derive(Debug))]
pub enum BinaryOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Concat,
    /// `IS` / `IS NOT`: NULL-safe equality.
    Is,
    IsNot,
}

/// A scalar expression. `Field(i)` is the i-th field of the row it is evaluated on.
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
#[rkyv(serialize_bounds(
    __S: rkyv::ser::Writer + rkyv::ser::Allocator,
    __S::Error: rkyv::rancor::Source,
))]
#[rkyv(deserialize_bounds(__D::Error: rkyv::rancor::Source))]
#[rkyv(bytecheck(bounds(
    __C: rkyv::validation::ArchiveContext,
    __C::Error: rkyv::rancor::Source,
)))]
pub enum Expr {
    Literal(Value),
    Field(u32),
    /// A field named but not yet resolved to its position (see [`Expr::resolve`]); evaluating
    /// it is an error.
    Named(String),
    Unary(UnaryOp, #[rkyv(omit_bounds)] Box<Expr>),
    Binary(
        BinaryOp,
        #[rkyv(omit_bounds)] Box<Expr>,
        #[rkyv(omit_bounds)] Box<Expr>,
    ),
    IsNull {
        #[rkyv(omit_bounds)]
        expr: Box<Expr>,
        negated: bool,
    },
    InList {
        #[rkyv(omit_bounds)]
        expr: Box<Expr>,
        #[rkyv(omit_bounds)]
        list: Vec<Expr>,
        negated: bool,
    },
    Between {
        #[rkyv(omit_bounds)]
        expr: Box<Expr>,
        #[rkyv(omit_bounds)]
        low: Box<Expr>,
        #[rkyv(omit_bounds)]
        high: Box<Expr>,
        negated: bool,
    },
    /// SQLite LIKE: ASCII case-insensitive, `%` and `_`, optional escape character.
    Like {
        #[rkyv(omit_bounds)]
        expr: Box<Expr>,
        #[rkyv(omit_bounds)]
        pattern: Box<Expr>,
        escape: Option<char>,
        negated: bool,
    },
    Function {
        name: String,
        #[rkyv(omit_bounds)]
        args: Vec<Expr>,
    },
}

/// Scalar functions an expression may call (checked when a constraint is defined).
/// Whether a CHECK / DEFAULT / index expression may call `name`: the list below and SQLite's
/// math functions (Django's `db_default=Pi()` stores `DEFAULT (PI())`).
pub fn is_stored_function(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    FUNCTIONS.contains(&n.as_str())
        || crate::sql::functions::is_math(&n)
        || n == CASE_FN
        || n == COLLATE_NOCASE_FN
        || n == COLLATE_RTRIM_FN
        || n == CASE_OF_FN
        || stored_cast(&n).is_some()
}

/// `CASE WHEN c1 THEN r1 ... ELSE e END` in a stored expression: a function named this with
/// the arguments c1, r1, ..., e (e is a NULL literal without ELSE). Stored as a function so the
/// catalog's expression format needs no new node; evaluated lazily like SQLite's CASE.
pub const CASE_FN: &str = "$case";
/// An index key column under a NOCASE / RTRIM collation (a UNIQUE or PRIMARY KEY on a column
/// declared `COLLATE NOCASE`): text folded so that values the collation calls equal get equal
/// keys; other storage classes, which collations do not affect, unchanged.
pub const COLLATE_NOCASE_FN: &str = "$collate_nocase";
pub const COLLATE_RTRIM_FN: &str = "$collate_rtrim";

/// The fold function of a collation name (None: BINARY, which needs none).
pub fn collation_fold_fn(collation: &str) -> Option<&'static str> {
    if collation.eq_ignore_ascii_case("nocase") {
        Some(COLLATE_NOCASE_FN)
    } else if collation.eq_ignore_ascii_case("rtrim") {
        Some(COLLATE_RTRIM_FN)
    } else {
        None
    }
}

/// `CASE x WHEN v1 THEN r1 ... ELSE e END`: arguments x, v1, r1, ..., e.
pub const CASE_OF_FN: &str = "$case_of";
/// `CAST(x AS type)` in a stored expression, one function per target type (same reason).
pub const CAST_INTEGER_FN: &str = "$cast_integer";
pub const CAST_REAL_FN: &str = "$cast_real";
pub const CAST_TEXT_FN: &str = "$cast_text";
pub const CAST_BLOB_FN: &str = "$cast_blob";
pub const CAST_NUMERIC_FN: &str = "$cast_numeric";

/// The cast a `$cast_*` function name stands for.
fn stored_cast(name: &str) -> Option<crate::sql::compile::CastType> {
    use crate::sql::compile::CastType;
    Some(match name {
        CAST_INTEGER_FN => CastType::Integer,
        CAST_REAL_FN => CastType::Real,
        CAST_TEXT_FN => CastType::Text,
        CAST_BLOB_FN => CastType::Blob,
        CAST_NUMERIC_FN => CastType::Numeric,
        _ => return None,
    })
}

pub const FUNCTIONS: &[&str] = &[
    "length",
    "lower",
    "upper",
    "abs",
    "coalesce",
    "ifnull",
    "nullif",
    "typeof",
    "trim",
    "ltrim",
    "rtrim",
    "json_valid",
    "json_type",
    "json_extract",
    "replace",
];

impl Expr {
    pub fn field(i: u32) -> Expr {
        Expr::Field(i)
    }
    pub fn named(name: &str) -> Expr {
        Expr::Named(name.to_string())
    }
    pub fn lit(v: impl Into<Value>) -> Expr {
        Expr::Literal(v.into())
    }
    pub fn bin(op: BinaryOp, l: Expr, r: Expr) -> Expr {
        Expr::Binary(op, Box::new(l), Box::new(r))
    }
    pub fn negate(e: Expr) -> Expr {
        Expr::Unary(UnaryOp::Not, Box::new(e))
    }

    /// Checks that field references are in range and functions are known.
    pub fn validate(&self, field_count: usize) -> Result<()> {
        let mut err = None;
        self.visit(&mut |e| match e {
            Expr::Field(i) if *i as usize >= field_count => {
                err = Some(Error::invalid(format!(
                    "expression refers to field #{i}, which does not exist"
                )))
            }
            Expr::Function { name, .. } if !is_stored_function(name) => {
                err = Some(Error::unsupported(format!(
                    "function {name}() in a stored expression"
                )))
            }
            _ => {}
        });
        err.map_or(Ok(()), Err)
    }

    /// Replaces every [`Expr::Named`] by the position `lookup` gives for it.
    pub fn resolve(&mut self, lookup: &impl Fn(&str) -> Option<u32>) -> Result<()> {
        if let Expr::Named(n) = self {
            let i = lookup(n).ok_or_else(|| {
                Error::new(
                    crate::error::SqlState::UndefinedColumn,
                    format!("no such column: {n}"),
                )
            })?;
            *self = Expr::Field(i);
            return Ok(());
        }
        let mut err = None;
        self.for_each_child_mut(&mut |c| {
            if err.is_none() {
                if let Err(e) = c.resolve(lookup) {
                    err = Some(e);
                }
            }
        });
        err.map_or(Ok(()), Err)
    }

    fn for_each_child_mut(&mut self, f: &mut impl FnMut(&mut Expr)) {
        match self {
            Expr::Literal(_) | Expr::Field(_) | Expr::Named(_) => {}
            Expr::Unary(_, e) => f(e),
            Expr::Binary(_, l, r) => {
                f(l);
                f(r);
            }
            Expr::IsNull { expr, .. } => f(expr),
            Expr::InList { expr, list, .. } => {
                f(expr);
                list.iter_mut().for_each(f);
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                f(expr);
                f(low);
                f(high);
            }
            Expr::Like { expr, pattern, .. } => {
                f(expr);
                f(pattern);
            }
            Expr::Function { args, .. } => args.iter_mut().for_each(f),
        }
    }

    /// Calls `f` on every node, parents first.
    pub fn visit(&self, f: &mut impl FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Literal(_) | Expr::Field(_) | Expr::Named(_) => {}
            Expr::Unary(_, e) => e.visit(f),
            Expr::Binary(_, l, r) => {
                l.visit(f);
                r.visit(f);
            }
            Expr::IsNull { expr, .. } => expr.visit(f),
            Expr::InList { expr, list, .. } => {
                expr.visit(f);
                list.iter().for_each(|e| e.visit(f));
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                expr.visit(f);
                low.visit(f);
                high.visit(f);
            }
            Expr::Like { expr, pattern, .. } => {
                expr.visit(f);
                pattern.visit(f);
            }
            Expr::Function { args, .. } => args.iter().for_each(|e| e.visit(f)),
        }
    }

    /// Rewrites field references (used when fields are dropped or reordered).
    pub fn remap_fields(&mut self, map: &impl Fn(u32) -> Option<u32>) -> Result<()> {
        if let Expr::Field(i) = self {
            *i = map(*i).ok_or_else(|| Error::invalid("expression refers to a removed field"))?;
            return Ok(());
        }
        let mut res = Ok(());
        self.for_each_child_mut(&mut |c| {
            if res.is_ok() {
                res = c.remap_fields(map);
            }
        });
        res
    }

    /// Whether the expression reads field `i`.
    pub fn references(&self, i: u32) -> bool {
        let mut found = false;
        self.visit(&mut |e| found |= matches!(e, Expr::Field(j) if *j == i));
        found
    }

    pub fn eval(&self, row: &[Value]) -> Result<Value> {
        Ok(match self {
            Expr::Literal(v) => v.clone(),
            Expr::Field(i) => row.get(*i as usize).cloned().unwrap_or(Value::Null),
            Expr::Named(n) => {
                return Err(Error::internal(format!(
                    "unresolved field name {n} in expression"
                )))
            }
            Expr::Unary(UnaryOp::Not, e) => match truthy(&e.eval(row)?) {
                None => Value::Null,
                Some(b) => Value::Integer(!b as i64),
            },
            Expr::Unary(UnaryOp::Neg, e) => match to_numeric(&e.eval(row)?) {
                Value::Integer(i) => i
                    .checked_neg()
                    .map_or(Value::Real(-(i as f64)), Value::Integer),
                Value::Real(r) => Value::Real(-r),
                other => other,
            },
            Expr::Binary(op, l, r) => eval_binary(*op, l, r, row)?,
            Expr::IsNull { expr, negated } => {
                Value::Integer((expr.eval(row)?.is_null() != *negated) as i64)
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let v = expr.eval(row)?;
                if v.is_null() {
                    // As in SQLite: `NULL IN ()` is false and `NULL NOT IN ()` true.
                    return Ok(if list.is_empty() {
                        Value::Integer(*negated as i64)
                    } else {
                        Value::Null
                    });
                }
                let mut saw_null = false;
                for item in list {
                    let x = item.eval(row)?;
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
            Expr::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let v = expr.eval(row)?;
                let ge = compare(&v, &low.eval(row)?, |o| o != Ordering::Less);
                let le = compare(&v, &high.eval(row)?, |o| o != Ordering::Greater);
                let both = and3(ge, le);
                match both {
                    None => Value::Null,
                    Some(b) => Value::Integer((b != *negated) as i64),
                }
            }
            Expr::Like {
                expr,
                pattern,
                escape,
                negated,
            } => {
                let v = expr.eval(row)?;
                let p = pattern.eval(row)?;
                if v.is_null() || p.is_null() {
                    return Ok(Value::Null);
                }
                let m = like_match(&text_of(&p), &text_of(&v), *escape);
                Value::Integer((m != *negated) as i64)
            }
            Expr::Function { name, args } if name == CASE_FN || name == CASE_OF_FN => {
                eval_case(name == CASE_OF_FN, args, row)?
            }
            Expr::Function { name, args } => {
                let vals = args
                    .iter()
                    .map(|a| a.eval(row))
                    .collect::<Result<Vec<_>>>()?;
                call_function(name, &vals)?
            }
        })
    }

    /// Evaluates as a CHECK constraint: passes unless the result is false (NULL passes).
    pub fn check_passes(&self, row: &[Value]) -> Result<bool> {
        Ok(truthy(&self.eval(row)?) != Some(false))
    }
}

fn eval_binary(op: BinaryOp, l: &Expr, r: &Expr, row: &[Value]) -> Result<Value> {
    if op == BinaryOp::And || op == BinaryOp::Or {
        let a = truthy(&l.eval(row)?);
        if op == BinaryOp::And && a == Some(false) {
            return Ok(Value::Integer(0));
        }
        if op == BinaryOp::Or && a == Some(true) {
            return Ok(Value::Integer(1));
        }
        let b = truthy(&r.eval(row)?);
        let res = if op == BinaryOp::And {
            and3(a, b)
        } else {
            or3(a, b)
        };
        return Ok(res.map_or(Value::Null, |x| Value::Integer(x as i64)));
    }
    let a = l.eval(row)?;
    let b = r.eval(row)?;
    Ok(match op {
        BinaryOp::Eq => bool_val(compare(&a, &b, |o| o == Ordering::Equal)),
        BinaryOp::Ne => bool_val(compare(&a, &b, |o| o != Ordering::Equal)),
        BinaryOp::Lt => bool_val(compare(&a, &b, |o| o == Ordering::Less)),
        BinaryOp::Le => bool_val(compare(&a, &b, |o| o != Ordering::Greater)),
        BinaryOp::Gt => bool_val(compare(&a, &b, |o| o == Ordering::Greater)),
        BinaryOp::Ge => bool_val(compare(&a, &b, |o| o != Ordering::Less)),
        BinaryOp::Is => Value::Integer((a.total_cmp(&b) == Ordering::Equal) as i64),
        BinaryOp::IsNot => Value::Integer((a.total_cmp(&b) != Ordering::Equal) as i64),
        BinaryOp::Concat => {
            if a.is_null() || b.is_null() {
                Value::Null
            } else {
                Value::Text(text_of(&a) + &text_of(&b))
            }
        }
        BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => {
            arith(op, &a, &b)
        }
        BinaryOp::And | BinaryOp::Or => unreachable!("handled above"),
    })
}

fn bool_val(b: Option<bool>) -> Value {
    b.map_or(Value::Null, |x| Value::Integer(x as i64))
}

/// Evaluates a stored CASE (see [`CASE_FN`]): only the branch taken is evaluated.
fn eval_case(has_operand: bool, args: &[Expr], row: &[Value]) -> Result<Value> {
    let (operand, rest) = if has_operand {
        match args.split_first() {
            Some((o, rest)) => (Some(o.eval(row)?), rest),
            None => return Err(Error::internal("stored CASE without an operand")),
        }
    } else {
        (None, args)
    };
    let Some((else_result, arms)) = rest.split_last() else {
        return Err(Error::internal("stored CASE without an ELSE slot"));
    };
    if arms.len() % 2 != 0 {
        return Err(Error::internal(
            "stored CASE with an odd number of WHEN/THEN arguments",
        ));
    }
    for arm in arms.chunks(2) {
        let w = arm[0].eval(row)?;
        // A simple CASE compares with `=` (NULL never matches); a searched one tests truth.
        let hit = match &operand {
            Some(x) => compare(x, &w, |o| o == Ordering::Equal) == Some(true),
            None => truthy(&w) == Some(true),
        };
        if hit {
            return arm[1].eval(row);
        }
    }
    else_result.eval(row)
}

fn compare(a: &Value, b: &Value, f: impl Fn(Ordering) -> bool) -> Option<bool> {
    if a.is_null() || b.is_null() {
        None
    } else {
        Some(f(a.total_cmp(b)))
    }
}

fn and3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

fn or3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    }
}

/// SQLite truth value: NULL is unknown, numbers are true when non-zero, text is converted.
pub fn truthy(v: &Value) -> Option<bool> {
    match to_numeric(v) {
        Value::Null => None,
        Value::Integer(i) => Some(i != 0),
        Value::Real(r) => Some(r != 0.0),
        _ => Some(false),
    }
}

/// Converts text or blob to a number the way SQLite's arithmetic does (longest numeric prefix,
/// else 0).
pub fn to_numeric(v: &Value) -> Value {
    match v {
        Value::Text(s) => numeric_prefix(s),
        Value::Blob(b) => numeric_prefix(&String::from_utf8_lossy(b)),
        other => other.clone(),
    }
}

fn numeric_prefix(s: &str) -> Value {
    let t = s.trim_start();
    let mut end = 0;
    let b = t.as_bytes();
    if end < b.len() && (b[end] == b'+' || b[end] == b'-') {
        end += 1;
    }
    while end < b.len() && b[end].is_ascii_digit() {
        end += 1;
    }
    if end < b.len() && b[end] == b'.' {
        end += 1;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
    }
    if end < b.len() && (b[end] == b'e' || b[end] == b'E') {
        let mut e = end + 1;
        if e < b.len() && (b[e] == b'+' || b[e] == b'-') {
            e += 1;
        }
        if e < b.len() && b[e].is_ascii_digit() {
            while e < b.len() && b[e].is_ascii_digit() {
                e += 1;
            }
            end = e;
        }
    }
    parse_numeric(&t[..end]).unwrap_or(Value::Integer(0))
}

fn arith(op: BinaryOp, a: &Value, b: &Value) -> Value {
    if a.is_null() || b.is_null() {
        return Value::Null;
    }
    let (a, b) = (to_numeric(a), to_numeric(b));
    if let (Value::Integer(x), Value::Integer(y)) = (&a, &b) {
        let (x, y) = (*x, *y);
        let r = match op {
            BinaryOp::Add => x.checked_add(y),
            BinaryOp::Sub => x.checked_sub(y),
            BinaryOp::Mul => x.checked_mul(y),
            BinaryOp::Div => {
                if y == 0 {
                    return Value::Null;
                }
                x.checked_div(y)
            }
            BinaryOp::Rem => {
                if y == 0 {
                    return Value::Null;
                }
                Some(x.wrapping_rem(y))
            }
            _ => None,
        };
        if let Some(r) = r {
            return Value::Integer(r);
        }
    }
    let x = a.as_f64().unwrap_or(0.0);
    let y = b.as_f64().unwrap_or(0.0);
    let r = match op {
        BinaryOp::Add => x + y,
        BinaryOp::Sub => x - y,
        BinaryOp::Mul => x * y,
        BinaryOp::Div => {
            if y == 0.0 {
                return Value::Null;
            }
            x / y
        }
        BinaryOp::Rem => {
            let (xi, yi) = (x as i64, y as i64);
            if yi == 0 {
                return Value::Null;
            }
            return Value::Real((xi % yi) as f64);
        }
        _ => return Value::Null,
    };
    Value::from(r)
}

/// Text form of a value as SQLite's string functions see it.
pub fn text_of(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => crate::value::format_real(*r),
        Value::Text(s) => s.clone(),
        Value::Blob(b) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// SQLite LIKE matching (ASCII case folding only, like SQLite without ICU).
pub fn like_match(pattern: &str, text: &str, escape: Option<char>) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    fn eq(a: char, b: char) -> bool {
        a.eq_ignore_ascii_case(&b)
    }
    fn rec(p: &[char], t: &[char], esc: Option<char>) -> bool {
        let mut pi = 0;
        let mut ti = 0;
        while pi < p.len() {
            let c = p[pi];
            if Some(c) == esc {
                let Some(&lit) = p.get(pi + 1) else {
                    return false;
                };
                if ti < t.len() && eq(lit, t[ti]) {
                    pi += 2;
                    ti += 1;
                    continue;
                }
                return false;
            }
            match c {
                '%' => {
                    while pi < p.len() && p[pi] == '%' {
                        pi += 1;
                    }
                    if pi == p.len() {
                        return true;
                    }
                    return (ti..=t.len()).any(|k| rec(&p[pi..], &t[k..], esc));
                }
                '_' => {
                    if ti >= t.len() {
                        return false;
                    }
                }
                _ => {
                    if ti >= t.len() || !eq(c, t[ti]) {
                        return false;
                    }
                }
            }
            pi += 1;
            ti += 1;
        }
        ti == t.len()
    }
    rec(&p, &t, escape)
}

fn call_function(name: &str, args: &[Value]) -> Result<Value> {
    let n = name.to_ascii_lowercase();
    let arg = |i: usize| args.get(i).cloned().unwrap_or(Value::Null);
    let want = |k: usize| -> Result<()> {
        if args.len() == k {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "wrong number of arguments to function {name}()"
            )))
        }
    };
    Ok(match n.as_str() {
        COLLATE_NOCASE_FN => {
            want(1)?;
            match arg(0) {
                Value::Text(t) => Value::Text(t.to_ascii_lowercase()),
                v => v,
            }
        }
        COLLATE_RTRIM_FN => {
            want(1)?;
            match arg(0) {
                Value::Text(t) => Value::Text(t.trim_end_matches(' ').to_string()),
                v => v,
            }
        }
        "length" => {
            want(1)?;
            match arg(0) {
                Value::Null => Value::Null,
                Value::Blob(b) => Value::Integer(b.len() as i64),
                v => Value::Integer(text_of(&v).chars().count() as i64),
            }
        }
        "lower" | "upper" => {
            want(1)?;
            match arg(0) {
                Value::Null => Value::Null,
                v => {
                    let s = text_of(&v);
                    Value::Text(if n == "lower" {
                        s.to_ascii_lowercase()
                    } else {
                        s.to_ascii_uppercase()
                    })
                }
            }
        }
        "abs" => {
            want(1)?;
            match to_numeric(&arg(0)) {
                Value::Integer(i) => Value::Integer(
                    i.checked_abs()
                        .ok_or_else(|| Error::invalid("integer overflow in abs()"))?,
                ),
                Value::Real(r) => Value::Real(r.abs()),
                other => other,
            }
        }
        "coalesce" | "ifnull" => args
            .iter()
            .find(|v| !v.is_null())
            .cloned()
            .unwrap_or(Value::Null),
        "nullif" => {
            want(2)?;
            if arg(0).total_cmp(&arg(1)) == Ordering::Equal {
                Value::Null
            } else {
                arg(0)
            }
        }
        "typeof" => {
            want(1)?;
            Value::Text(arg(0).type_name().into())
        }
        "trim" | "ltrim" | "rtrim" => match arg(0) {
            Value::Null => Value::Null,
            v => {
                let s = text_of(&v);
                let set: Vec<char> = match args.get(1) {
                    Some(x) => text_of(x).chars().collect(),
                    None => vec![' '],
                };
                let f = |c: char| set.contains(&c);
                Value::Text(match n.as_str() {
                    "trim" => s.trim_matches(f).to_string(),
                    "ltrim" => s.trim_start_matches(f).to_string(),
                    _ => s.trim_end_matches(f).to_string(),
                })
            }
        },
        "replace" => {
            want(3)?;
            let (x, y, z) = (arg(0), arg(1), arg(2));
            if x.is_null() || y.is_null() || z.is_null() {
                Value::Null
            } else {
                let (x, y) = (text_of(&x), text_of(&y));
                // SQLite returns X unchanged for an empty pattern.
                Value::Text(if y.is_empty() {
                    x
                } else {
                    x.replace(&y, &text_of(&z))
                })
            }
        }
        // Django's JSONField declares CHECK (JSON_VALID(col) OR col IS NULL): one JSON
        // implementation for statements and constraints, so both agree on what is valid.
        "json_valid" | "json_type" | "json_extract" => crate::sql::json::call(n.as_str(), args)?,
        c if stored_cast(c).is_some() => {
            want(1)?;
            match stored_cast(c) {
                Some(ty) => crate::sql::eval::cast(arg(0), ty),
                None => Value::Null,
            }
        }
        m if crate::sql::functions::is_math(m) => crate::sql::functions::call_math(m, args)?,
        _ => return Err(Error::unsupported(format!("function {name}()"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_valued_logic_and_arith() {
        let row = vec![Value::Integer(5), Value::Null, Value::Text("abc".into())];
        let gt = Expr::bin(BinaryOp::Gt, Expr::field(0), Expr::lit(0));
        assert_eq!(gt.eval(&row).unwrap(), Value::Integer(1));
        let null_cmp = Expr::bin(BinaryOp::Gt, Expr::field(1), Expr::lit(0));
        assert!(null_cmp.check_passes(&row).unwrap());
        let and = Expr::bin(BinaryOp::And, null_cmp.clone(), Expr::lit(0));
        assert_eq!(and.eval(&row).unwrap(), Value::Integer(0));
        let div = Expr::bin(BinaryOp::Div, Expr::lit(7), Expr::lit(2));
        assert_eq!(div.eval(&row).unwrap(), Value::Integer(3));
        let div0 = Expr::bin(BinaryOp::Div, Expr::lit(7), Expr::lit(0));
        assert_eq!(div0.eval(&row).unwrap(), Value::Null);
        let len = Expr::Function {
            name: "length".into(),
            args: vec![Expr::field(2)],
        };
        assert_eq!(len.eval(&row).unwrap(), Value::Integer(3));
        assert!(like_match("a%c", "ABC", None));
        assert!(like_match("a\\%", "a%", Some('\\')));
        assert!(!like_match("a_", "a", None));
    }

    #[test]
    fn rkyv_roundtrip() {
        let e = Expr::bin(
            BinaryOp::And,
            Expr::IsNull {
                expr: Box::new(Expr::field(1)),
                negated: true,
            },
            Expr::InList {
                expr: Box::new(Expr::field(0)),
                list: vec![Expr::lit(1), Expr::lit("x")],
                negated: false,
            },
        );
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&e).unwrap();
        let back: Expr = rkyv::from_bytes::<Expr, rkyv::rancor::Error>(&bytes).unwrap();
        assert_eq!(back, e);
    }
}
