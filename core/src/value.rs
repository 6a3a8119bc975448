//! Values and types, following SQLite's value model: five storage classes, column affinity on
//! write, and SQLite's cross-type ordering (NULL < numbers < text < blob). Differential tests against
//! SQLite are the oracle for these rules.

use std::cmp::Ordering;
use std::fmt;

use rkyv::{Archive, Deserialize, Serialize};

/// A stored value. Integers and reals compare numerically with each other, as in SQLite.
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
#[rkyv(derive(Debug))]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// SQLite's `typeof()` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Integer(_) => "integer",
            Value::Real(_) => "real",
            Value::Text(_) => "text",
            Value::Blob(_) => "blob",
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Integer(i) => Some(*i as f64),
            Value::Real(r) => Some(*r),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// Approximate heap + inline size, used for size limits.
    pub fn size(&self) -> usize {
        match self {
            Value::Text(s) => s.len(),
            Value::Blob(b) => b.len(),
            _ => 8,
        }
    }

    fn class_rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Integer(_) | Value::Real(_) => 1,
            Value::Text(_) => 2,
            Value::Blob(_) => 3,
        }
    }

    /// SQLite's total order over values (BINARY collation). NULLs sort first; this is the order of
    /// ORDER BY and of index keys, not the three-valued `=` of expressions.
    pub fn total_cmp(&self, other: &Value) -> Ordering {
        match (self, other) {
            (Value::Integer(a), Value::Integer(b)) => a.cmp(b),
            (Value::Integer(a), Value::Real(b)) => cmp_int_real(*a, *b),
            (Value::Real(a), Value::Integer(b)) => cmp_int_real(*b, *a).reverse(),
            (Value::Real(a), Value::Real(b)) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
            (Value::Text(a), Value::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Value::Blob(a), Value::Blob(b)) => a.cmp(b),
            _ => self.class_rank().cmp(&other.class_rank()),
        }
    }
}

/// Exact comparison of an i64 with an f64 (no precision loss for large integers).
fn cmp_int_real(i: i64, r: f64) -> Ordering {
    if r.is_nan() {
        return Ordering::Greater;
    }
    if r >= 9.223_372_036_854_776e18 {
        return Ordering::Less;
    }
    if r < -9.223_372_036_854_776e18 {
        return Ordering::Greater;
    }
    let t = r.trunc();
    match i.cmp(&(t as i64)) {
        Ordering::Equal => {
            let frac = r - t;
            if frac > 0.0 {
                Ordering::Less
            } else if frac < 0.0 {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        o => o,
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Integer(i) => write!(f, "{i}"),
            Value::Real(r) => f.write_str(&format_real(*r)),
            Value::Text(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Value::Blob(b) => {
                f.write_str("X'")?;
                for byte in b {
                    write!(f, "{byte:02X}")?;
                }
                f.write_str("'")
            }
        }
    }
}

/// Formats a real the way SQLite prints it: `%!.15g`, or `%!.17g` when 15 significant digits
/// do not read back as the same value (`1.0`, `0.5`, `1.0e+20`, `0.41666666666666669`).
pub fn format_real(r: f64) -> String {
    if r == 0.0 {
        return "0.0".into(); // -0.0 prints as 0.0 in SQLite
    }
    if r.is_nan() {
        return "NaN".into();
    }
    if r.is_infinite() {
        return if r > 0.0 { "Inf".into() } else { "-Inf".into() };
    }
    let s15 = format_g(r, 15);
    if s15.parse::<f64>().ok() == Some(r) {
        s15
    } else {
        format_g(r, 17)
    }
}

/// `%!.{p}g` as SQLite prints it: `p` significant digits, trailing zeros removed but at least
/// one digit after the decimal point.
fn format_g(r: f64, p: usize) -> String {
    let e = format!("{:.*e}", p - 1, r);
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |m: &str| -> String {
        if m.contains('.') {
            let t = m.trim_end_matches('0');
            if t.ends_with('.') {
                format!("{t}0")
            } else {
                t.to_string()
            }
        } else {
            format!("{m}.0")
        }
    };
    // SQLite switches to the exponent form outside 1e-4 .. 1e16 whatever the digit count.
    if !(-4..=15).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mant), exp.abs())
    } else {
        let decimals = (p as i32 - 1 - exp).max(0) as usize;
        trim(&format!("{:.*}", decimals, r))
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Integer(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Integer(v as i64)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        if v.is_nan() {
            Value::Null
        } else {
            Value::Real(v)
        }
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Integer(v as i64)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Declared field type. `Integer`..`Numeric` are SQLite's affinities; `Any` stores values as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Archive, Serialize, Deserialize)]
#[rkyv(derive(Debug))]
pub enum DataType {
    Integer,
    Real,
    Text,
    Blob,
    Numeric,
    Any,
}

impl DataType {
    /// SQLite's affinity rules for a declared type name (section 3.1 of the datatype docs).
    pub fn from_declared(decl: &str) -> DataType {
        let d = decl.to_ascii_uppercase();
        if d.contains("INT") {
            DataType::Integer
        } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
            DataType::Text
        } else if d.contains("BLOB") || d.trim().is_empty() {
            DataType::Blob
        } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
            DataType::Real
        } else if d.trim() == "ANY" {
            DataType::Any
        } else {
            DataType::Numeric
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DataType::Integer => "INTEGER",
            DataType::Real => "REAL",
            DataType::Text => "TEXT",
            DataType::Blob => "BLOB",
            DataType::Numeric => "NUMERIC",
            DataType::Any => "ANY",
        }
    }

    /// Applies the column affinity the way SQLite does on write: lossless conversions only.
    pub fn apply_affinity(self, v: Value) -> Value {
        match (self, v) {
            (DataType::Integer | DataType::Numeric, Value::Text(s)) => match parse_numeric(&s) {
                Some(n) => numeric_to_best(n, true),
                None => Value::Text(s),
            },
            (DataType::Integer | DataType::Numeric, Value::Real(r)) => {
                numeric_to_best(Value::Real(r), true)
            }
            (DataType::Real, Value::Text(s)) => match parse_numeric(&s) {
                Some(n) => Value::Real(n.as_f64().unwrap_or(0.0)),
                None => Value::Text(s),
            },
            (DataType::Real, Value::Integer(i)) => Value::Real(i as f64),
            (DataType::Text, Value::Integer(i)) => Value::Text(i.to_string()),
            (DataType::Text, Value::Real(r)) => Value::Text(format_real(r)),
            (_, v) => v,
        }
    }

    /// Like SQLite STRICT tables: apply affinity, then refuse a value whose class does not fit.
    pub fn coerce_strict(self, v: Value) -> Result<Value, Value> {
        let v = self.apply_affinity(v);
        let ok = matches!(
            (&v, self),
            (Value::Null, _)
                | (_, DataType::Any)
                | (Value::Integer(_), DataType::Integer | DataType::Numeric)
                | (Value::Real(_), DataType::Real | DataType::Numeric)
                | (Value::Text(_), DataType::Text)
                | (Value::Blob(_), DataType::Blob)
        );
        if ok {
            Ok(v)
        } else {
            Err(v)
        }
    }
}

/// Turns a real that holds an integral value into an integer (INTEGER/NUMERIC affinity).
fn numeric_to_best(v: Value, prefer_int: bool) -> Value {
    match v {
        Value::Real(r) if prefer_int && r == r.trunc() && r.abs() < 9.2e18 => {
            let i = r as i64;
            if i as f64 == r {
                Value::Integer(i)
            } else {
                Value::Real(r)
            }
        }
        other => other,
    }
}

/// Parses text as a SQLite numeric literal (surrounding spaces allowed). Returns None when the
/// text is not entirely a number.
pub fn parse_numeric(s: &str) -> Option<Value> {
    let t = s.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\n' || c == '\r');
    if t.is_empty() {
        return None;
    }
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = t.parse::<i64>() {
            return Some(Value::Integer(i));
        }
    }
    let bytes = digits.as_bytes();
    let starts_ok = bytes
        .first()
        .is_some_and(|b| b.is_ascii_digit() || *b == b'.');
    if !starts_ok || t.contains(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E') {
        return None;
    }
    t.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Value::Real)
}

/// Order-preserving, self-delimiting encoding of a value for index keys: the byte order of the
/// encodings equals [`Value::total_cmp`]. Integers and reals share one numeric encoding so that
/// `1` and `1.0` are the same key, as SQLite's unique indexes treat them.
pub fn encode_key_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(0x05),
        Value::Integer(i) => {
            out.push(0x10);
            let approx = *i as f64;
            out.extend_from_slice(&ordered_f64(approx).to_be_bytes());
            // Residual keeps large integers exact: (approx, residual) orders like the integer.
            let approx_i = if approx >= 9.223_372_036_854_776e18 {
                i64::MAX
            } else {
                approx as i64
            };
            let residual = i.wrapping_sub(approx_i);
            out.extend_from_slice(&((residual as u64) ^ (1 << 63)).to_be_bytes());
        }
        Value::Real(r) => {
            out.push(0x10);
            out.extend_from_slice(&ordered_f64(*r).to_be_bytes());
            out.extend_from_slice(&(1u64 << 63).to_be_bytes());
        }
        Value::Text(s) => {
            out.push(0x20);
            escape_bytes(s.as_bytes(), out);
        }
        Value::Blob(b) => {
            out.push(0x30);
            escape_bytes(b, out);
        }
    }
}

fn ordered_f64(f: f64) -> u64 {
    let f = if f == 0.0 { 0.0 } else { f }; // -0.0 == 0.0
    let bits = f.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

fn escape_bytes(b: &[u8], out: &mut Vec<u8>) {
    for &byte in b {
        out.push(byte);
        if byte == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_key_value(v, &mut out);
        out
    }

    #[test]
    fn key_encoding_orders_like_values() {
        let vals = vec![
            Value::Null,
            Value::Integer(i64::MIN),
            Value::Real(-1e300),
            Value::Integer(-5),
            Value::Real(-4.5),
            Value::Integer(0),
            Value::Real(0.5),
            Value::Integer(1),
            Value::Integer(9_007_199_254_740_993),
            Value::Integer(i64::MAX),
            Value::Real(1e300),
            Value::Text(String::new()),
            Value::Text("a".into()),
            Value::Text("a\0b".into()),
            Value::Text("ab".into()),
            Value::Blob(vec![]),
            Value::Blob(vec![0, 1]),
            Value::Blob(vec![1]),
        ];
        for a in &vals {
            for b in &vals {
                assert_eq!(key(a).cmp(&key(b)), a.total_cmp(b), "{a:?} vs {b:?}");
            }
        }
        assert_eq!(key(&Value::Integer(1)), key(&Value::Real(1.0)));
    }

    #[test]
    fn affinity_follows_sqlite() {
        assert_eq!(
            DataType::Integer.apply_affinity("12".into()),
            Value::Integer(12)
        );
        assert_eq!(
            DataType::Integer.apply_affinity(" 3.0 ".into()),
            Value::Integer(3)
        );
        assert_eq!(
            DataType::Integer.apply_affinity("x1".into()),
            Value::Text("x1".into())
        );
        assert_eq!(
            DataType::Real.apply_affinity(Value::Integer(2)),
            Value::Real(2.0)
        );
        assert_eq!(
            DataType::Text.apply_affinity(Value::Integer(2)),
            Value::Text("2".into())
        );
        assert_eq!(DataType::from_declared("VARCHAR(20)"), DataType::Text);
        assert_eq!(DataType::from_declared("BIGINT"), DataType::Integer);
        assert_eq!(DataType::from_declared("DECIMAL(10,2)"), DataType::Numeric);
        assert!(DataType::Integer.coerce_strict("abc".into()).is_err());
    }
}
