//! Scalar SQL functions with SQLite's behaviour (NULL in, NULL out unless documented
//! otherwise). Date and time functions live in [`super::datetime`]-style helpers at the end.

use std::cmp::Ordering;

use super::compile::CastType;
use super::eval::{cast, real_to_int, Counters};
use crate::error::{Error, Result, SqlState};
use crate::ir::expr::{like_match, text_of, to_numeric};
use crate::value::{format_real, Value};

/// SQLite version the front end emulates (the differential oracle's).
pub const SQLITE_VERSION: &str = "3.54.1";

const KNOWN: &[&str] = &[
    "lower",
    "upper",
    "length",
    "octet_length",
    "substr",
    "substring",
    "instr",
    "trim",
    "ltrim",
    "rtrim",
    "replace",
    "abs",
    "round",
    "min",
    "max",
    "coalesce",
    "ifnull",
    "nullif",
    "iif",
    "typeof",
    "hex",
    "quote",
    "random",
    "randomblob",
    "printf",
    "format",
    "last_insert_rowid",
    "changes",
    "total_changes",
    "sqlite_version",
    "sqlite_compileoption_used",
    "char",
    "unicode",
    "zeroblob",
    "sign",
    "likely",
    "unlikely",
    "likelihood",
    "glob",
    "like",
    "date",
    "time",
    "datetime",
    "julianday",
    "strftime",
    "unixepoch",
    "$is_bool",
    "$nocase",
    "$rtrim_collation",
];

/// SQLite's math functions (-DSQLITE_ENABLE_MATH_FUNCTIONS).
const MATH: &[&str] = &[
    "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "ceil", "ceiling", "cos", "cosh",
    "degrees", "exp", "floor", "ln", "log", "log10", "log2", "mod", "pi", "pow", "power",
    "radians", "sin", "sinh", "sqrt", "tan", "tanh", "trunc",
];

/// Whether `name` is one of SQLite's math functions (they are pure, so CHECK and DEFAULT
/// expressions may use them too).
pub fn is_math(name: &str) -> bool {
    MATH.contains(&name)
}

/// A math function with its arity checked, for stored (CHECK / DEFAULT) expressions.
pub fn call_math(name: &str, args: &[Value]) -> Result<Value> {
    check_arity(name, args.len())?;
    Ok(math(name, args))
}

pub fn is_known(name: &str) -> bool {
    KNOWN.contains(&name) || MATH.contains(&name) || super::json::FUNCTIONS.contains(&name)
}

/// Argument counts SQLite accepts; a wrong count is an error at prepare time.
pub fn check_arity(name: &str, n: usize) -> Result<()> {
    let ok =
        match name {
            "lower"
            | "upper"
            | "length"
            | "octet_length"
            | "abs"
            | "typeof"
            | "hex"
            | "quote"
            | "randomblob"
            | "unicode"
            | "zeroblob"
            | "sign"
            | "likely"
            | "unlikely"
            | "sqlite_compileoption_used" => n == 1,
            "substr" | "substring" => n == 2 || n == 3,
            "instr" | "nullif" | "glob" | "likelihood" => n == 2,
            "trim" | "ltrim" | "rtrim" | "round" => n == 1 || n == 2,
            "replace" | "iif" => n == 3,
            "like" => n == 2 || n == 3,
            "min" | "max" => n >= 2,
            "coalesce" => n >= 2,
            "ifnull" => n == 2,
            "random" | "last_insert_rowid" | "changes" | "total_changes" | "sqlite_version"
            | "pi" => n == 0,
            "atan2" | "mod" | "pow" | "power" => n == 2,
            "log" => n == 1 || n == 2,
            m if MATH.contains(&m) => n == 1,
            "printf" | "format" | "char" | "date" | "time" | "datetime" | "julianday"
            | "unixepoch" => true,
            "strftime" => n >= 1,
            "json" | "json_valid" | "json_quote" => n == 1,
            "json_extract" => n >= 2,
            "json_type" | "json_array_length" => n == 1 || n == 2,
            _ => true,
        };
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            SqlState::SyntaxError,
            format!("wrong number of arguments to function {name}()"),
        ))
    }
}

/// The compile-time options ORMDB's SQL behaves as if SQLite had been built with.
pub const COMPILE_OPTIONS: &[&str] = &["ENABLE_MATH_FUNCTIONS"];

/// `sqlite_compileoption_used`: the `SQLITE_` prefix is optional and names compare without
/// case, up to an `=` (as SQLite compares them).
fn compile_option_used(name: &str) -> bool {
    let n = name
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("SQLITE_"))
        .map_or(name, |_| &name[7..]);
    COMPILE_OPTIONS.iter().any(|o| {
        o.eq_ignore_ascii_case(n)
            || (n.len() > o.len()
                && n.as_bytes()[o.len()] == b'='
                && n[..o.len()].eq_ignore_ascii_case(o))
    })
}

/// A math function's argument: SQLite applies numeric affinity to text and takes only
/// integers and reals; anything else makes the result NULL.
fn math_arg(v: &Value) -> Option<Value> {
    match v {
        Value::Integer(_) | Value::Real(_) => Some(v.clone()),
        Value::Text(s) => crate::value::parse_numeric(s),
        _ => None,
    }
}

fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Integer(i) => *i as f64,
        Value::Real(r) => *r,
        _ => 0.0,
    }
}

/// A real result; NaN (a domain error such as sqrt(-1)) is NULL, as SQLite stores it.
fn real_or_null(r: f64) -> Value {
    if r.is_nan() {
        Value::Null
    } else {
        Value::Real(r)
    }
}

/// SQLite's math functions, with its NULL and domain behaviour.
fn math(name: &str, args: &[Value]) -> Value {
    if name == "pi" {
        return Value::Real(std::f64::consts::PI);
    }
    let Some(x) = args.first().and_then(math_arg) else {
        return Value::Null;
    };
    let y = args.get(1).map(math_arg);
    let xf = as_f64(&x);
    match name {
        // Integers pass through unchanged; reals are rounded as reals.
        "ceil" | "ceiling" | "floor" | "trunc" => match x {
            Value::Integer(_) => x,
            _ => Value::Real(match name {
                "floor" => xf.floor(),
                "trunc" => xf.trunc(),
                _ => xf.ceil(),
            }),
        },
        "ln" | "log" | "log10" | "log2" => {
            if xf <= 0.0 {
                return Value::Null;
            }
            match y {
                // log(B, X): base first; a base <= 1 has no usable logarithm.
                Some(yv) => {
                    let Some(yv) = yv else { return Value::Null };
                    let b = xf.ln();
                    let yf = as_f64(&yv);
                    if b <= 0.0 || yf <= 0.0 {
                        return Value::Null;
                    }
                    real_or_null(yf.ln() / b)
                }
                None => Value::Real(match name {
                    "ln" => xf.ln(),
                    "log2" => xf.log2(),
                    _ => xf.log10(),
                }),
            }
        }
        "atan2" | "mod" | "pow" | "power" => {
            let Some(Some(yv)) = y else {
                return Value::Null;
            };
            let yf = as_f64(&yv);
            real_or_null(match name {
                "atan2" => xf.atan2(yf),
                "mod" => xf % yf,
                _ => xf.powf(yf),
            })
        }
        _ => real_or_null(match name {
            "acos" => xf.acos(),
            "acosh" => xf.acosh(),
            "asin" => xf.asin(),
            "asinh" => xf.asinh(),
            "atan" => xf.atan(),
            "atanh" => xf.atanh(),
            "cos" => xf.cos(),
            "cosh" => xf.cosh(),
            "degrees" => xf.to_degrees(),
            "exp" => xf.exp(),
            "radians" => xf.to_radians(),
            "sin" => xf.sin(),
            "sinh" => xf.sinh(),
            "sqrt" => xf.sqrt(),
            "tan" => xf.tan(),
            "tanh" => xf.tanh(),
            _ => f64::NAN,
        }),
    }
}

fn null_if_any(args: &[Value]) -> bool {
    args.iter().any(Value::is_null)
}

pub fn call(name: &str, mut args: Vec<Value>, counters: &Counters) -> Result<Value> {
    if super::json::FUNCTIONS.contains(&name) {
        return super::json::call(name, &args);
    }
    if MATH.contains(&name) {
        return Ok(math(name, &args));
    }
    let a0 = args.first().cloned().unwrap_or(Value::Null);
    Ok(match name {
        "lower" | "upper" => match a0 {
            Value::Null => Value::Null,
            v => {
                let s = text_of(&v);
                Value::Text(if name == "lower" {
                    s.to_ascii_lowercase()
                } else {
                    s.to_ascii_uppercase()
                })
            }
        },
        "length" => match a0 {
            Value::Null => Value::Null,
            Value::Blob(b) => Value::Integer(b.len() as i64),
            Value::Text(s) => {
                Value::Integer(s.split('\0').next().unwrap_or("").chars().count() as i64)
            }
            v => Value::Integer(text_of(&v).chars().count() as i64),
        },
        "octet_length" => match a0 {
            Value::Null => Value::Null,
            Value::Blob(b) => Value::Integer(b.len() as i64),
            v => Value::Integer(text_of(&v).len() as i64),
        },
        "substr" | "substring" => substr(&args)?,
        "instr" => {
            if null_if_any(&args) {
                return Ok(Value::Null);
            }
            match (&args[0], &args[1]) {
                (Value::Blob(h), Value::Blob(n)) => Value::Integer(if n.is_empty() {
                    1
                } else {
                    h.windows(n.len())
                        .position(|w| w == n.as_slice())
                        .map_or(0, |p| p as i64 + 1)
                }),
                (h, n) => {
                    let h = text_of(h);
                    let n = text_of(n);
                    Value::Integer(match h.find(&n) {
                        Some(b) => h[..b].chars().count() as i64 + 1,
                        None => 0,
                    })
                }
            }
        }
        "trim" | "ltrim" | "rtrim" => {
            if null_if_any(&args) {
                return Ok(Value::Null);
            }
            let s = text_of(&a0);
            let set: Vec<char> = match args.get(1) {
                Some(x) => text_of(x).chars().collect(),
                None => vec![' '],
            };
            let f = |c: char| set.contains(&c);
            Value::Text(match name {
                "trim" => s.trim_matches(f).to_string(),
                "ltrim" => s.trim_start_matches(f).to_string(),
                _ => s.trim_end_matches(f).to_string(),
            })
        }
        "replace" => {
            if null_if_any(&args) {
                return Ok(Value::Null);
            }
            let s = text_of(&args[0]);
            let from = text_of(&args[1]);
            if from.is_empty() {
                return Ok(Value::Text(s));
            }
            Value::Text(s.replace(&from, &text_of(&args[2])))
        }
        // Integers stay integers; anything else is read as a real (text included).
        "abs" => match &a0 {
            Value::Integer(i) => Value::Integer(
                i.checked_abs()
                    .ok_or_else(|| Error::new(SqlState::ValueTooLong, "integer overflow"))?,
            ),
            Value::Null => Value::Null,
            other => Value::Real(match to_numeric(other) {
                Value::Integer(i) => (i as f64).abs(),
                Value::Real(r) => r.abs(),
                _ => 0.0,
            }),
        },
        "round" => round(&args),
        "min" | "max" => {
            if null_if_any(&args) {
                return Ok(Value::Null);
            }
            // Ties: min() takes the later argument, max() keeps the earlier (as SQLite).
            let mut best = args[0].clone();
            for v in &args[1..] {
                let o = v.total_cmp(&best);
                let take = if name == "min" {
                    o != Ordering::Greater
                } else {
                    o == Ordering::Greater
                };
                if take {
                    best = v.clone();
                }
            }
            best
        }
        "coalesce" | "ifnull" => args
            .into_iter()
            .find(|v| !v.is_null())
            .unwrap_or(Value::Null),
        "nullif" => {
            if args[0].total_cmp(&args[1]) == Ordering::Equal && !args[1].is_null() {
                Value::Null
            } else {
                args.swap_remove(0)
            }
        }
        "iif" => {
            if super::eval::is_true(&args[0]) {
                args.swap_remove(1)
            } else {
                args.swap_remove(2)
            }
        }
        "typeof" => Value::Text(a0.type_name().into()),
        "hex" => {
            let bytes = match &a0 {
                Value::Blob(b) => b.clone(),
                Value::Null => Vec::new(),
                v => text_of(v).into_bytes(),
            };
            Value::Text(bytes.iter().map(|b| format!("{b:02X}")).collect())
        }
        "quote" => Value::Text(match &a0 {
            Value::Null => "NULL".into(),
            Value::Real(r) => format_real(*r),
            v => v.to_string(),
        }),
        "random" => Value::Integer(random_i64()),
        "randomblob" => {
            let n = match to_numeric(&a0) {
                Value::Integer(i) => i.max(1),
                _ => 1,
            } as usize;
            Value::Blob((0..n).map(|_| random_i64() as u8).collect())
        }
        "zeroblob" => {
            let n = match to_numeric(&a0) {
                Value::Integer(i) => i.max(0),
                Value::Real(r) => real_to_int(r).max(0),
                _ => 0,
            } as usize;
            if n > 1_000_000_000 {
                return Err(Error::new(
                    SqlState::LimitExceeded,
                    "string or blob too big",
                ));
            }
            Value::Blob(vec![0; n])
        }
        "printf" | "format" => printf(&args)?,
        "last_insert_rowid" => Value::Integer(counters.last_insert_rowid),
        "changes" => Value::Integer(counters.changes),
        "total_changes" => Value::Integer(counters.total_changes),
        "sqlite_version" => Value::Text(SQLITE_VERSION.into()),
        "sqlite_compileoption_used" => match a0 {
            Value::Null => Value::Null,
            v => Value::Integer(compile_option_used(&text_of(&v)) as i64),
        },
        "char" => {
            let mut s = String::new();
            for v in &args {
                if let Value::Integer(i) = to_numeric(v) {
                    s.push(char::from_u32(i as u32).unwrap_or('\u{FFFD}'));
                }
            }
            Value::Text(s)
        }
        "unicode" => match a0 {
            Value::Null => Value::Null,
            v => match text_of(&v).chars().next() {
                Some(c) => Value::Integer(c as i64),
                None => Value::Null,
            },
        },
        "sign" => match to_numeric(&a0) {
            Value::Integer(i) => Value::Integer(i.signum()),
            Value::Real(r) => Value::Integer(if r > 0.0 {
                1
            } else if r < 0.0 {
                -1
            } else {
                0
            }),
            _ => Value::Null,
        },
        "likely" | "unlikely" | "likelihood" => a0,
        "glob" => {
            if null_if_any(&args) {
                return Ok(Value::Null);
            }
            let p: Vec<char> = text_of(&args[0]).chars().collect();
            let t: Vec<char> = text_of(&args[1]).chars().collect();
            Value::Integer(super::eval::glob_match(&p, &t) as i64)
        }
        "like" => {
            if args[..2].iter().any(Value::is_null) {
                return Ok(Value::Null);
            }
            let esc = match args.get(2) {
                Some(e) => text_of(e).chars().next(),
                None => None,
            };
            Value::Integer(like_match(&text_of(&args[0]), &text_of(&args[1]), esc) as i64)
        }
        // Collation keys (see compile::collated): only text is folded.
        "$nocase" => match a0 {
            Value::Text(t) => Value::Text(t.to_ascii_lowercase()),
            v => v,
        },
        "$rtrim_collation" => match a0 {
            Value::Text(t) => Value::Text(t.trim_end_matches(' ').to_string()),
            v => v,
        },
        "$is_bool" => {
            // x IS [NOT] TRUE/FALSE
            let want = args[1].as_i64() == Some(1);
            let neg = args[2].as_i64() == Some(1);
            let t = super::eval::is_true(&args[0]);
            let f = matches!(crate::ir::expr::truthy(&args[0]), Some(false));
            let hit = if want { t } else { f };
            Value::Integer((hit != neg) as i64)
        }
        "date" | "time" | "datetime" | "julianday" | "unixepoch" | "strftime" => {
            datetime_fn(name, &args)
        }
        other => return Err(Error::unsupported(format!("function {other}()"))),
    })
}

fn random_i64() -> i64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x9E37_79B9_7F4A_7C15)
                | 1,
        );
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x as i64
    })
}

fn substr(args: &[Value]) -> Result<Value> {
    if args.iter().any(Value::is_null) {
        return Ok(Value::Null);
    }
    let start = match to_numeric(&args[1]) {
        Value::Integer(i) => i,
        Value::Real(r) => real_to_int(r),
        _ => 0,
    };
    let len = args.get(2).map(|v| match to_numeric(v) {
        Value::Integer(i) => i,
        Value::Real(r) => real_to_int(r),
        _ => 0,
    });
    let blob = matches!(args[0], Value::Blob(_));
    let items: Vec<Vec<u8>> = match &args[0] {
        Value::Blob(b) => b.iter().map(|x| vec![*x]).collect(),
        v => text_of(v)
            .chars()
            .map(|c| c.to_string().into_bytes())
            .collect(),
    };
    let n = items.len() as i64;
    // SQLite's arithmetic on (start, len), with negative start counting from the end.
    let mut p1 = start;
    let mut p2 = len.unwrap_or(i64::MAX / 2);
    let neg_len = p2 < 0;
    if neg_len {
        p2 = -p2;
    }
    if p1 < 0 {
        p1 += n;
        if p1 < 0 {
            p2 += p1;
            if p2 < 0 {
                p2 = 0;
            }
            p1 = 0;
        }
    } else if p1 > 0 {
        p1 -= 1;
    } else if p2 > 0 {
        p2 -= 1;
    }
    if neg_len {
        p1 -= p2;
        if p1 < 0 {
            p2 += p1;
            p1 = 0;
        }
    }
    let from = p1.clamp(0, n) as usize;
    let to = (p1.saturating_add(p2)).clamp(0, n) as usize;
    let slice = if from < to {
        &items[from..to]
    } else {
        &items[0..0]
    };
    let bytes: Vec<u8> = slice.iter().flatten().copied().collect();
    Ok(if blob {
        Value::Blob(bytes)
    } else {
        Value::Text(String::from_utf8_lossy(&bytes).into_owned())
    })
}

fn round(args: &[Value]) -> Value {
    if args.iter().any(Value::is_null) {
        return Value::Null;
    }
    let x = match to_numeric(&args[0]) {
        Value::Integer(i) => i as f64,
        Value::Real(r) => r,
        _ => 0.0,
    };
    let n = match args.get(1).map(to_numeric) {
        Some(Value::Integer(i)) => i.clamp(0, 30),
        Some(Value::Real(r)) => real_to_int(r).clamp(0, 30),
        _ => 0,
    };
    if n == 0 && x.abs() < 4_503_599_627_370_496.0 {
        let r = if x < 0.0 {
            -((-x) + 0.5).floor()
        } else {
            (x + 0.5).floor()
        };
        return Value::Real(r);
    }
    if x.abs() >= 4_503_599_627_370_496.0 {
        return Value::Real(x);
    }
    let s = format!("{:.*}", n as usize, x);
    Value::Real(s.parse().unwrap_or(x))
}

fn printf(args: &[Value]) -> Result<Value> {
    let fmt = match args.first() {
        None | Some(Value::Null) => return Ok(Value::Null),
        Some(v) => text_of(v),
    };
    let mut out = String::new();
    let mut ai = 1;
    let next = |ai: &mut usize| {
        let v = args.get(*ai).cloned().unwrap_or(Value::Null);
        *ai += 1;
        v
    };
    let cs: Vec<char> = fmt.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        if cs[i] != '%' {
            out.push(cs[i]);
            i += 1;
            continue;
        }
        i += 1;
        let mut left = false;
        let mut zero = false;
        let mut plus = false;
        let mut space = false;
        while i < cs.len() && matches!(cs[i], '-' | '0' | '+' | ' ' | '#' | ',' | '!') {
            match cs[i] {
                '-' => left = true,
                '0' => zero = true,
                '+' => plus = true,
                ' ' => space = true,
                _ => {}
            }
            i += 1;
        }
        let mut width = 0usize;
        if i < cs.len() && cs[i] == '*' {
            width = match to_numeric(&next(&mut ai)) {
                Value::Integer(w) => w.unsigned_abs() as usize,
                _ => 0,
            };
            i += 1;
        }
        while i < cs.len() && cs[i].is_ascii_digit() {
            width = width * 10 + cs[i] as usize - '0' as usize;
            i += 1;
        }
        let mut prec: Option<usize> = None;
        if i < cs.len() && cs[i] == '.' {
            i += 1;
            let mut p = 0;
            if i < cs.len() && cs[i] == '*' {
                p = match to_numeric(&next(&mut ai)) {
                    Value::Integer(w) => w.max(0) as usize,
                    _ => 0,
                };
                i += 1;
            }
            while i < cs.len() && cs[i].is_ascii_digit() {
                p = p * 10 + cs[i] as usize - '0' as usize;
                i += 1;
            }
            prec = Some(p);
        }
        while i < cs.len() && matches!(cs[i], 'l' | 'h') {
            i += 1;
        }
        let Some(&conv) = cs.get(i) else { break };
        i += 1;
        let num_sign = |neg: bool| {
            if neg {
                "-"
            } else if plus {
                "+"
            } else if space {
                " "
            } else {
                ""
            }
        };
        let body: String = match conv {
            '%' => {
                out.push('%');
                continue;
            }
            'd' | 'i' | 'u' => {
                let v = cast(next(&mut ai), CastType::Integer);
                let n = v.as_i64().unwrap_or(0);
                let digits = n.unsigned_abs().to_string();
                let digits = match prec {
                    Some(p) if digits.len() < p => {
                        format!("{}{digits}", "0".repeat(p - digits.len()))
                    }
                    _ => digits,
                };
                let sign = num_sign(n < 0);
                if zero && !left && width > sign.len() + digits.len() {
                    format!(
                        "{sign}{}{digits}",
                        "0".repeat(width - sign.len() - digits.len())
                    )
                } else {
                    format!("{sign}{digits}")
                }
            }
            'x' | 'X' | 'o' => {
                let n = cast(next(&mut ai), CastType::Integer).as_i64().unwrap_or(0) as u64;
                let s = match conv {
                    'x' => format!("{n:x}"),
                    'X' => format!("{n:X}"),
                    _ => format!("{n:o}"),
                };
                if zero && !left && width > s.len() {
                    format!("{}{s}", "0".repeat(width - s.len()))
                } else {
                    s
                }
            }
            'f' | 'F' | 'e' | 'E' | 'g' | 'G' => {
                let v = next(&mut ai);
                let x = match cast(v, CastType::Real) {
                    Value::Real(r) => r,
                    _ => 0.0,
                };
                let p = prec.unwrap_or(6);
                let s = match conv {
                    'f' | 'F' => format!("{:.*}", p, x.abs()),
                    'e' | 'E' => c_exp(x.abs(), p, conv == 'E'),
                    _ => c_general(x.abs(), p.max(1), conv == 'G'),
                };
                let sign = num_sign(x.is_sign_negative() && x != 0.0);
                if zero && !left && width > sign.len() + s.len() {
                    format!("{sign}{}{s}", "0".repeat(width - sign.len() - s.len()))
                } else {
                    format!("{sign}{s}")
                }
            }
            's' | 'z' => {
                let v = next(&mut ai);
                let s = if v.is_null() {
                    String::new()
                } else {
                    text_of(&v)
                };
                match prec {
                    Some(p) => s.chars().take(p).collect(),
                    None => s,
                }
            }
            'c' => {
                let v = next(&mut ai);
                text_of(&v)
                    .chars()
                    .next()
                    .map(String::from)
                    .unwrap_or_default()
            }
            'q' | 'Q' | 'w' => {
                let v = next(&mut ai);
                if v.is_null() {
                    if conv == 'Q' {
                        "NULL".into()
                    } else {
                        "(NULL)".into()
                    }
                } else {
                    let q = if conv == 'w' { '"' } else { '\'' };
                    let esc = text_of(&v).replace(q, &format!("{q}{q}"));
                    if conv == 'Q' {
                        format!("'{esc}'")
                    } else {
                        esc
                    }
                }
            }
            other => {
                return Err(Error::unsupported(format!("printf conversion %{other}")));
            }
        };
        let len = body.chars().count();
        if len < width {
            let pad = " ".repeat(width - len);
            if left {
                out.push_str(&body);
                out.push_str(&pad);
            } else {
                out.push_str(&pad);
                out.push_str(&body);
            }
        } else {
            out.push_str(&body);
        }
    }
    Ok(Value::Text(out))
}

fn c_exp(x: f64, p: usize, upper: bool) -> String {
    let s = format!("{:.*e}", p, x);
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let ev: i32 = e.parse().unwrap_or(0);
    let r = format!("{m}e{}{:02}", if ev < 0 { '-' } else { '+' }, ev.abs());
    if upper {
        r.to_uppercase()
    } else {
        r
    }
}

fn c_general(x: f64, p: usize, upper: bool) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let exp = x.abs().log10().floor() as i32;
    if exp < -4 || exp >= p as i32 {
        let s = c_exp(x, p - 1, upper);
        let (m, e) = s.split_once(['e', 'E']).unwrap_or((&s, ""));
        let m = if m.contains('.') {
            m.trim_end_matches('0').trim_end_matches('.')
        } else {
            m
        };
        format!("{m}{}{e}", if upper { 'E' } else { 'e' })
    } else {
        let decimals = (p as i32 - 1 - exp).max(0) as usize;
        let s = format!("{:.*}", decimals, x);
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
}

/// `%.16g`: 16 significant digits, trailing zeros dropped (strftime's %J).
fn format_g16(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let exp = x.abs().log10().floor() as i32;
    if !(-4..16).contains(&exp) {
        return format!("{x:.15e}");
    }
    let s = format!("{:.*}", (15 - exp).max(0) as usize, x);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

// ---- date and time ----

/// A point in time as a Julian day number in milliseconds (SQLite's iJD).
type Jd = i64;

fn ymd_to_jd(y: i64, m: i64, d: i64) -> Jd {
    let (mut y, mut m) = (y, m);
    if m <= 2 {
        y -= 1;
        m += 12;
    }
    let a = y / 100;
    let b = 2 - a + a / 4;
    let x1 = (36525 * (y + 4716)) / 100;
    let x2 = (306001 * (m + 1)) / 10000;
    (((x1 + x2 + d + b) as f64 - 1524.5) * 86_400_000.0) as i64
}

fn jd_to_parts(jd: Jd) -> (i64, i64, i64, i64, i64, f64) {
    let z = (jd + 43_200_000) / 86_400_000;
    let alpha = ((z as f64 + 32044.75) / 36524.25) as i64 - 52;
    let a = z + 1 + alpha - ((alpha + 100) / 4) + 25;
    let b = a + 1524;
    let c = ((b as f64 - 122.1) / 365.25) as i64;
    let d = (36525 * (c & 32767)) / 100;
    let e = ((b - d) as f64 / 30.6001) as i64;
    let x1 = (30.6001 * e as f64) as i64;
    let day = b - d - x1;
    let month = if e < 14 { e - 1 } else { e - 13 };
    let year = if month > 2 { c - 4716 } else { c - 4715 };
    let ms_of_day = (jd + 43_200_000) % 86_400_000;
    let h = ms_of_day / 3_600_000;
    let mi = (ms_of_day / 60_000) % 60;
    let s = (ms_of_day % 60_000) as f64 / 1000.0;
    (year, month, day, h, mi, s)
}

fn parse_time_of_day(t: &str) -> Option<(i64, i64, f64, &str)> {
    let b = t.as_bytes();
    if b.len() < 5 || b[2] != b':' {
        return None;
    }
    let h: i64 = t.get(0..2)?.parse().ok()?;
    let mi: i64 = t.get(3..5)?.parse().ok()?;
    let mut rest = &t[5..];
    let mut s = 0.0;
    if rest.starts_with(':') && rest.len() >= 3 {
        let mut end = 3;
        let rb = rest.as_bytes();
        if rb.len() > 3 && rb[3] == b'.' {
            end = 4;
            while end < rb.len() && rb[end].is_ascii_digit() {
                end += 1;
            }
        }
        s = rest.get(1..end)?.parse().ok()?;
        rest = &rest[end..];
    }
    if h > 24 || mi > 59 || s >= 60.0 {
        return None;
    }
    Some((h, mi, s, rest))
}

fn parse_tz(rest: &str) -> Option<i64> {
    let r = rest.trim();
    if r.is_empty() {
        return Some(0);
    }
    if r.eq_ignore_ascii_case("z") {
        return Some(0);
    }
    let (sign, body) = match r.as_bytes()[0] {
        b'+' => (1, &r[1..]),
        b'-' => (-1, &r[1..]),
        _ => return None,
    };
    let (h, m) = body.split_once(':').unwrap_or((body, "0"));
    let h: i64 = h.parse().ok()?;
    let m: i64 = m.parse().ok()?;
    Some(sign * (h * 60 + m))
}

fn parse_datetime(v: &Value) -> Option<Jd> {
    match v {
        Value::Integer(i) => Some((*i as f64 * 86_400_000.0) as i64),
        Value::Real(r) => Some((r * 86_400_000.0).round() as i64),
        Value::Text(s) => {
            let s = s.trim();
            if s.eq_ignore_ascii_case("now") {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()?;
                return Some(now.as_millis() as i64 + 210_866_760_000_000);
            }
            if let Some(Value::Integer(_) | Value::Real(_)) = crate::value::parse_numeric(s) {
                let f: f64 = s.parse().ok()?;
                return Some((f * 86_400_000.0).round() as i64);
            }
            let b = s.as_bytes();
            if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' {
                let y: i64 = s.get(0..4)?.parse().ok()?;
                let m: i64 = s.get(5..7)?.parse().ok()?;
                let d: i64 = s.get(8..10)?.parse().ok()?;
                if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
                    return None;
                }
                let mut jd = ymd_to_jd(y, m, d);
                let rest = &s[10..];
                let rest = rest.strip_prefix(['T', ' ']).unwrap_or(rest);
                if rest.is_empty() {
                    return Some(jd);
                }
                let (h, mi, sec, tail) = parse_time_of_day(rest)?;
                let tz = parse_tz(tail)?;
                jd += h * 3_600_000 + mi * 60_000 + (sec * 1000.0).round() as i64 - tz * 60_000;
                return Some(jd);
            }
            let (h, mi, sec, tail) = parse_time_of_day(s)?;
            let tz = parse_tz(tail)?;
            Some(
                ymd_to_jd(2000, 1, 1) + h * 3_600_000 + mi * 60_000 + (sec * 1000.0).round() as i64
                    - tz * 60_000,
            )
        }
        _ => None,
    }
}

fn apply_modifier(jd: Jd, m: &str, first_numeric: bool, orig: &Value) -> Option<Jd> {
    let m = m.trim().to_ascii_lowercase();
    match m.as_str() {
        "start of day" => return Some(jd - (jd + 43_200_000) % 86_400_000),
        "start of month" => {
            let (y, mo, _, _, _, _) = jd_to_parts(jd);
            return Some(ymd_to_jd(y, mo, 1));
        }
        "start of year" => {
            let (y, _, _, _, _, _) = jd_to_parts(jd);
            return Some(ymd_to_jd(y, 1, 1));
        }
        "unixepoch" if first_numeric => {
            let secs = match orig {
                Value::Integer(i) => *i as f64,
                Value::Real(r) => *r,
                Value::Text(t) => t.trim().parse().ok()?,
                _ => return None,
            };
            if !secs.is_finite() || secs.abs() > 1e14 {
                return None;
            }
            return ((secs * 1000.0).round() as i64).checked_add(210_866_760_000_000);
        }
        "utc" | "localtime" | "auto" | "subsec" | "subsecond" => return Some(jd),
        _ => {}
    }
    if let Some(n) = m.strip_prefix("weekday ") {
        let n: i64 = n.trim().parse().ok()?;
        let day = (jd + 129_600_000) / 86_400_000 % 7;
        let add = (n - day).rem_euclid(7);
        return Some(jd + add * 86_400_000);
    }
    let (num, unit) = m.split_once(' ')?;
    let unit = unit.trim().trim_end_matches('s');
    let x: f64 = num.trim().parse().ok()?;
    if !x.is_finite() || x.abs() > 1e12 {
        return None;
    }
    let ms = match unit {
        "day" => x * 86_400_000.0,
        "hour" => x * 3_600_000.0,
        "minute" => x * 60_000.0,
        "second" => x * 1000.0,
        "month" | "year" => {
            let (y, mo, d, h, mi, s) = jd_to_parts(jd);
            let months = if unit == "year" {
                x as i64 * 12
            } else {
                x as i64
            };
            let total = y * 12 + (mo - 1) + months;
            let (ny, nm) = (total.div_euclid(12), total.rem_euclid(12) + 1);
            let base = ymd_to_jd(ny, nm, 1) + (d - 1) * 86_400_000;
            return Some(base + h * 3_600_000 + mi * 60_000 + (s * 1000.0).round() as i64);
        }
        _ => return None,
    };
    jd.checked_add(ms.round() as i64)
}

/// Julian day numbers SQLite accepts: 0000-01-01 to 9999-12-31.
fn jd_in_range(jd: Jd) -> bool {
    (0..=464_269_060_799_999).contains(&jd)
}

fn fmt_date(jd: Jd) -> String {
    let (y, m, d, _, _, _) = jd_to_parts(jd);
    format!("{y:04}-{m:02}-{d:02}")
}

fn fmt_time(jd: Jd) -> String {
    let (_, _, _, h, mi, s) = jd_to_parts(jd);
    format!("{h:02}:{mi:02}:{:02}", s.floor() as i64)
}

fn datetime_fn(name: &str, args: &[Value]) -> Value {
    let (fmt, rest) = if name == "strftime" {
        match args.first() {
            Some(Value::Null) | None => return Value::Null,
            Some(f) => (Some(text_of(f)), &args[1..]),
        }
    } else {
        (None, args)
    };
    let (mut jd, mods) = match rest.first() {
        None => (parse_datetime(&Value::Text("now".into())), &rest[0..0]),
        Some(v) => (parse_datetime(v), &rest[1..]),
    };
    let Some(mut j) = jd.take() else {
        return Value::Null;
    };
    let first_numeric = matches!(rest.first(), Some(Value::Integer(_) | Value::Real(_)));
    for (i, m) in mods.iter().enumerate() {
        if m.is_null() {
            return Value::Null;
        }
        let m = text_of(m);
        // `unixepoch` reinterprets the original number, which need not be a valid day.
        let reinterpret = i == 0 && first_numeric && m.trim().eq_ignore_ascii_case("unixepoch");
        if !reinterpret && !jd_in_range(j) {
            return Value::Null;
        }
        match apply_modifier(j, &m, i == 0 && first_numeric, &rest[0]) {
            Some(x) => j = x,
            None => return Value::Null,
        }
    }
    if !jd_in_range(j) {
        return Value::Null;
    }
    match name {
        "date" => Value::Text(fmt_date(j)),
        "time" => Value::Text(fmt_time(j)),
        "datetime" => Value::Text(format!("{} {}", fmt_date(j), fmt_time(j))),
        "julianday" => Value::Real(j as f64 / 86_400_000.0),
        "unixepoch" => Value::Integer((j - 210_866_760_000_000).div_euclid(1000)),
        _ => {
            let f = fmt.unwrap_or_default();
            let (y, m, d, h, mi, s) = jd_to_parts(j);
            let mut out = String::new();
            let mut it = f.chars();
            while let Some(c) = it.next() {
                if c != '%' {
                    out.push(c);
                    continue;
                }
                match it.next() {
                    Some('d') => out.push_str(&format!("{d:02}")),
                    Some('e') => out.push_str(&format!("{d:2}")),
                    Some('f') => out.push_str(&format!("{:06.3}", s)),
                    Some('H') => out.push_str(&format!("{h:02}")),
                    Some('k') => out.push_str(&format!("{h:2}")),
                    Some('m') => out.push_str(&format!("{m:02}")),
                    Some('M') => out.push_str(&format!("{mi:02}")),
                    Some('S') => out.push_str(&format!("{:02}", s.floor() as i64)),
                    Some('Y') => out.push_str(&format!("{y:04}")),
                    Some('F') => out.push_str(&fmt_date(j)),
                    Some('T') => out.push_str(&fmt_time(j)),
                    Some('R') => out.push_str(&format!("{h:02}:{mi:02}")),
                    Some('s') => {
                        out.push_str(&(j - 210_866_760_000_000).div_euclid(1000).to_string())
                    }
                    Some('J') => out.push_str(&format_g16(j as f64 / 86_400_000.0)),
                    Some('w') => out.push_str(&((j + 129_600_000) / 86_400_000 % 7).to_string()),
                    Some('u') => {
                        let w = (j + 129_600_000) / 86_400_000 % 7;
                        out.push_str(&(if w == 0 { 7 } else { w }).to_string())
                    }
                    Some('j') => {
                        let doy = (j - ymd_to_jd(y, 1, 1)) / 86_400_000 + 1;
                        out.push_str(&format!("{doy:03}"))
                    }
                    Some('%') => out.push('%'),
                    _ => return Value::Null,
                }
            }
            Value::Text(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        let c = Counters::default();
        let v = call(
            "datetime",
            vec!["2024-02-29 13:45:10".into(), "+1 day".into()],
            &c,
        )
        .unwrap();
        assert_eq!(v, Value::Text("2024-03-01 13:45:10".into()));
        let v = call(
            "date",
            vec!["2024-01-31".into(), "start of month".into()],
            &c,
        )
        .unwrap();
        assert_eq!(v, Value::Text("2024-01-01".into()));
        let v = call(
            "strftime",
            vec!["%Y/%m/%d %H".into(), "2026-11-25T19:16:59.661Z".into()],
            &c,
        )
        .unwrap();
        assert_eq!(v, Value::Text("2026/11/25 19".into()));
    }

    #[test]
    fn substr_like_sqlite() {
        let c = Counters::default();
        let s = |a: Vec<Value>| call("substr", a, &c).unwrap();
        assert_eq!(
            s(vec!["hello".into(), 2.into(), 3.into()]),
            Value::Text("ell".into())
        );
        assert_eq!(
            s(vec!["hello".into(), (-3).into()]),
            Value::Text("llo".into())
        );
        assert_eq!(
            s(vec!["hello".into(), 0.into(), 2.into()]),
            Value::Text("h".into())
        );
        assert_eq!(
            s(vec!["hello".into(), 3.into(), (-2).into()]),
            Value::Text("he".into())
        );
    }
}
