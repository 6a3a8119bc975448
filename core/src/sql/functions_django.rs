//! Django's SQLite functions (`django.db.backends.sqlite3._functions`) in the engine, so a
//! Django query using Extract/Trunc/MD5/LPAD/regex lookups/StdDev runs no Python per row.
//!
//! Each native function reproduces Django's Python implementation exactly on the inputs it
//! accepts: the values Django itself stores and passes (canonical `YYYY-MM-DD HH:MM:SS[.ffffff]`
//! text, integers, plain text). For anything else (an unusual spelling Python's `int()` would
//! still accept, a time zone conversion, a float where Python's `str()` formatting would matter,
//! a regex construct whose meaning differs between Python's `re` and the `regex` crate, ...) the
//! native function hands the call to the function that was registered under the same name
//! before [`Session::install_django_functions`] ran (Django's own Python callback), so the
//! answer stays Django's. Without such a callback those calls fail with 0A000.

use std::collections::HashMap;
use std::sync::Arc;

use num_bigint::{BigInt, BigUint, Sign};
use num_integer::Integer;
use num_traits::{ToPrimitive, Zero};
use parking_lot::Mutex;

use super::session::Session;
use super::user_functions::{AggregateFn, ScalarFn, UserAggregate, UserFunction};
use crate::error::{Error, Result};
use crate::value::Value;

/// A native function's answer: a value (or Django's error), or "ask Django's Python".
enum Out {
    Done(Result<Value>),
    Delegate,
}

use Out::{Delegate, Done};

fn ok(v: Value) -> Out {
    Done(Ok(v))
}

type Native = fn(&[Value]) -> Out;

/// The scalar functions provided natively: (name, argument count, implementation).
const SCALARS: &[(&str, usize, Native)] = &[
    ("django_date_extract", 2, date_extract),
    ("django_date_trunc", 4, date_trunc),
    ("django_datetime_cast_date", 3, datetime_cast_date),
    ("django_datetime_cast_time", 3, datetime_cast_time),
    ("django_datetime_extract", 4, datetime_extract),
    ("django_datetime_trunc", 4, datetime_trunc),
    ("django_time_extract", 2, time_extract),
    ("django_time_trunc", 4, time_trunc),
    ("django_time_diff", 2, time_diff),
    ("django_timestamp_diff", 2, timestamp_diff),
    ("bitxor", 2, bitxor),
    ("cot", 1, cot),
    ("lpad", 3, lpad),
    ("rpad", 3, rpad),
    ("md5", 1, md5),
    ("sha1", 1, sha1),
    ("sha224", 1, sha224),
    ("sha256", 1, sha256),
    ("sha384", 1, sha384),
    ("sha512", 1, sha512),
    ("repeat", 2, repeat),
    ("reverse", 1, reverse),
    ("sign", 1, sign),
];

/// Aggregates provided natively (one argument each).
const AGGREGATES: &[(&str, Stat)] = &[
    ("stddev_pop", Stat::StdDevPop),
    ("stddev_samp", Stat::StdDevSamp),
    ("var_pop", Stat::VarPop),
    ("var_samp", Stat::VarSamp),
];

/// The names [`Session::install_django_functions`] provides natively, as (name, argument
/// count); `regexp` (2) included. Django's `django_format_dtdelta` and `RAND` stay Python.
pub fn native_names() -> Vec<(&'static str, usize)> {
    let mut out: Vec<(&str, usize)> = SCALARS.iter().map(|(n, a, _)| (*n, *a)).collect();
    out.push(("regexp", 2));
    out.extend(AGGREGATES.iter().map(|(n, _)| (*n, 1)));
    out
}

fn delegate_error(name: &str) -> Error {
    Error::unsupported(format!(
        "{name}() with these arguments outside the native implementation (time zone \
         conversion or an unusual value) without Django's Python function registered"
    ))
}

impl Session {
    /// Installs the native `regexp(pattern, subject)` (what `X REGEXP Y` calls) alone: Python's
    /// `re.search` semantics where the native code guarantees them, and 0A000 for the patterns
    /// and subjects it hands over. For sessions where no Python function can be registered:
    /// `ormdb serve`'s, used by SQLAlchemy's and Django's REGEXP over the network.
    pub fn install_native_regexp(&mut self) {
        self.install_regexp(|| {
            Error::unsupported(
                "REGEXP with a pattern or subject whose meaning under Python's re the native \
                 implementation does not guarantee (Unicode classes on non-ASCII text, `$` \
                 before a newline, look-around, back references, ...), and no Python \
                 regexp() to hand it to (a server connection)",
            )
        });
    }

    /// The native regexp, handing what it does not take to the `regexp` registered before (if
    /// any), else failing with `no_fallback`'s error.
    fn install_regexp(&mut self, no_fallback: fn() -> Error) {
        let fallback = self.registered_function("regexp", 2).map(|f| f.func);
        let cache = Arc::new(RegexCache::default());
        let func: ScalarFn = Arc::new(move |args: &[Value]| match regexp(&cache, args) {
            Done(r) => r,
            Delegate => match &fallback {
                Some(f) => f(args),
                None => Err(no_fallback()),
            },
        });
        self.create_function(
            "regexp",
            Some(2),
            UserFunction {
                func,
                deterministic: true,
            },
        );
    }

    /// Replaces Django's SQLite functions with native ones (see the module docs). Call it after
    /// registering Django's Python callbacks: each replaced callback is kept as the fallback
    /// for the inputs the native code does not take. Returns the names installed.
    pub fn install_django_functions(&mut self) -> Vec<&'static str> {
        let mut names = Vec::new();
        for &(name, nargs, native) in SCALARS {
            let fallback = self.registered_function(name, nargs).map(|f| f.func);
            let func: ScalarFn = Arc::new(move |args: &[Value]| match native(args) {
                Done(r) => r,
                Delegate => match &fallback {
                    Some(f) => f(args),
                    None => Err(delegate_error(name)),
                },
            });
            self.create_function(
                name,
                Some(nargs),
                UserFunction {
                    func,
                    deterministic: true,
                },
            );
            names.push(name);
        }
        self.install_regexp(|| delegate_error("regexp"));
        names.push("regexp");
        for &(name, stat) in AGGREGATES {
            let fallback = self.registered_aggregate(name, 1).map(|f| f.func);
            let func: AggregateFn = Arc::new(move |rows: &[Vec<Value>]| {
                // sqlite3 never instantiates the aggregate class for a group without rows.
                if rows.is_empty() {
                    return Ok(Value::Null);
                }
                match statistic(stat, rows) {
                    Some(v) => Ok(v),
                    None => match &fallback {
                        Some(f) => f(rows),
                        None => Err(delegate_error(name)),
                    },
                }
            });
            self.create_aggregate(
                name,
                Some(1),
                UserAggregate {
                    name: name.to_owned(),
                    func,
                },
            );
            names.push(name);
        }
        names
    }
}

// ---------------------------------------------------------------------------------------------
// Dates and times: Django's typecast_timestamp / typecast_time on the strict subset of inputs
// whose Python result is certain.

/// A parsed value: `date` (hour..micro zero) or `datetime`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Dt {
    y: i64,
    mo: i64,
    d: i64,
    h: i64,
    mi: i64,
    s: i64,
    us: i64,
    date_only: bool,
}

/// What Python's parse gives.
enum Parsed<T> {
    /// A value.
    Value(T),
    /// `None` (empty text).
    None,
    /// ValueError/TypeError.
    Invalid,
    /// Not sure what Python would do: delegate.
    Unsure,
}

/// ASCII digits only (what `int()` surely reads the same), at most 18 of them.
fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

fn valid_date(y: i64, m: i64, d: i64) -> bool {
    (1..=9999).contains(&y) && (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)
}

fn valid_time(h: i64, mi: i64, s: i64, us: i64) -> bool {
    (0..24).contains(&h)
        && (0..60).contains(&mi)
        && (0..60).contains(&s)
        && (0..1_000_000).contains(&us)
}

/// `(microseconds + "000000")[:6]`, for an all-digit fraction.
fn micros(frac: &str) -> Option<i64> {
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut padded: String = frac.chars().take(6).collect();
    while padded.len() < 6 {
        padded.push('0');
    }
    padded.parse().ok()
}

/// Seconds with an optional fraction, as typecast_time/typecast_timestamp split them.
fn seconds(s: &str) -> Parsed<(i64, i64)> {
    let (sec, frac) = match s.split_once('.') {
        Some((a, b)) if b.contains('.') => {
            let _ = a;
            return Parsed::Invalid; // too many values to unpack
        }
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    match (digits(sec), micros(frac)) {
        (Some(a), Some(b)) => Parsed::Value((a, b)),
        _ => Parsed::Unsure,
    }
}

/// Whitespace other than the one separating space makes Python's split() and int() lenient.
fn plain_text(s: &str) -> bool {
    s.is_ascii() && !s.bytes().any(|b| b.is_ascii_whitespace() && b != b' ')
}

/// django.db.backends.utils.typecast_timestamp.
fn typecast_timestamp(v: &Value) -> Parsed<Dt> {
    let s = match v {
        Value::Text(s) => s.as_str(),
        _ => return Parsed::Unsure,
    };
    if s.is_empty() {
        return Parsed::None;
    }
    if !plain_text(s) {
        return Parsed::Unsure;
    }
    if !s.contains(' ') {
        // date(*map(int, s.split("-"))): a wrong count is TypeError, a part int() never
        // reads ValueError; both mean None.
        let parts: Vec<&str> = s.split('-').collect();
        let never_int = |p: &str| {
            p.is_empty()
                || p.bytes()
                    .any(|b| !b.is_ascii_digit() && b != b'+' && b != b'_')
        };
        if parts.len() != 3 || parts.iter().any(|p| never_int(p)) {
            return Parsed::Invalid;
        }
        let (Some(y), Some(m), Some(d)) = (digits(parts[0]), digits(parts[1]), digits(parts[2]))
        else {
            return Parsed::Unsure;
        };
        if !valid_date(y, m, d) {
            return Parsed::Invalid;
        }
        return Parsed::Value(Dt {
            y,
            mo: m,
            d,
            h: 0,
            mi: 0,
            s: 0,
            us: 0,
            date_only: true,
        });
    }
    let mut halves = s.split(' ');
    let (Some(date), Some(time), None) = (halves.next(), halves.next(), halves.next()) else {
        return Parsed::Unsure;
    };
    // A time zone suffix is dropped.
    let time = match time.find('-') {
        Some(i) => &time[..i],
        None => match time.find('+') {
            Some(i) => &time[..i],
            None => time,
        },
    };
    let dates: Vec<&str> = date.split('-').collect();
    let times: Vec<&str> = time.split(':').collect();
    if dates.len() != 3 || times.len() != 3 {
        return Parsed::Unsure;
    }
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi)) = (
        digits(dates[0]),
        digits(dates[1]),
        digits(dates[2]),
        digits(times[0]),
        digits(times[1]),
    ) else {
        return Parsed::Unsure;
    };
    let (sec, us) = match seconds(times[2]) {
        Parsed::Value(x) => x,
        Parsed::Invalid => return Parsed::Invalid,
        _ => return Parsed::Unsure,
    };
    if !valid_date(y, mo, d) || !valid_time(h, mi, sec, us) {
        return Parsed::Invalid;
    }
    Parsed::Value(Dt {
        y,
        mo,
        d,
        h,
        mi,
        s: sec,
        us,
        date_only: false,
    })
}

/// django.db.backends.utils.typecast_time: (hour, minute, second, microsecond).
fn typecast_time(v: &Value) -> Parsed<[i64; 4]> {
    let s = match v {
        Value::Text(s) => s.as_str(),
        _ => return Parsed::Unsure,
    };
    if s.is_empty() {
        return Parsed::None;
    }
    if !plain_text(s) || s.contains(' ') {
        return Parsed::Unsure;
    }
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 3 {
        return Parsed::Invalid;
    }
    let (Some(h), Some(mi)) = (digits(parts[0]), digits(parts[1])) else {
        return Parsed::Unsure;
    };
    let (sec, us) = match seconds(parts[2]) {
        Parsed::Value(x) => x,
        Parsed::Invalid => return Parsed::Invalid,
        _ => return Parsed::Unsure,
    };
    if !valid_time(h, mi, sec, us) {
        return Parsed::Invalid;
    }
    Parsed::Value([h, mi, sec, us])
}

/// Whether `_sqlite_datetime_parse(dt, tzname, conn_tzname)` converts nothing: no time zone,
/// or the connection's own (UTC). Anything else needs zoneinfo: delegate.
fn no_conversion(tzname: &Value, conn: &Value) -> bool {
    let conn_ok = match conn {
        Value::Null => true,
        Value::Text(c) => c == "UTC",
        _ => false,
    };
    conn_ok
        && match (tzname, conn) {
            (Value::Null, _) => true,
            (Value::Text(t), Value::Text(c)) => t == c,
            _ => false,
        }
}

/// `_sqlite_datetime_parse`: `Ok(None)` is Python's None, `Err(())` delegate.
fn datetime_parse(dt: &Value, tzname: &Value, conn: &Value) -> std::result::Result<Option<Dt>, ()> {
    if dt.is_null() {
        return Ok(None);
    }
    // Python parses first: a value that does not parse is None whatever the time zones.
    match typecast_timestamp(dt) {
        Parsed::Value(_) if !no_conversion(tzname, conn) => Err(()),
        // date.replace(tzinfo=...) raises TypeError outside the try.
        Parsed::Value(d) if d.date_only && !conn.is_null() => Err(()),
        Parsed::Value(d) => Ok(Some(d)),
        // ValueError/TypeError: None at once.
        Parsed::Invalid => Ok(None),
        // typecast gave None without raising: Python goes on to the time zone steps, which
        // fail on None unless there are none.
        Parsed::None if tzname.is_null() && conn.is_null() => Ok(None),
        Parsed::None | Parsed::Unsure => Err(()),
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// ISO weekday, Monday = 1.
fn isoweekday(y: i64, m: i64, d: i64) -> i64 {
    // 1970-01-01 was a Thursday.
    (days_from_civil(y, m, d) + 3).rem_euclid(7) + 1
}

/// date.isocalendar(): (ISO year, ISO week).
fn isocalendar(y: i64, m: i64, d: i64) -> (i64, i64) {
    let week1_monday = |year: i64| {
        let jan4 = days_from_civil(year, 1, 4);
        jan4 - (isoweekday(year, 1, 4) - 1)
    };
    let day = days_from_civil(y, m, d);
    let mut year = y;
    if day >= week1_monday(y + 1) {
        year = y + 1;
    } else if day < week1_monday(y) {
        year = y - 1;
    }
    (year, (day - week1_monday(year)) / 7 + 1)
}

/// `_sqlite_datetime_extract` on a parsed value; `None`: delegate (an attribute a date lacks,
/// or a lookup outside Django's).
fn extract(lookup: &str, dt: &Dt) -> Option<i64> {
    Some(match lookup {
        "week_day" => isoweekday(dt.y, dt.mo, dt.d) % 7 + 1,
        "iso_week_day" => isoweekday(dt.y, dt.mo, dt.d),
        "week" => isocalendar(dt.y, dt.mo, dt.d).1,
        "iso_year" => isocalendar(dt.y, dt.mo, dt.d).0,
        "quarter" => (dt.mo + 2) / 3,
        "year" => dt.y,
        "month" => dt.mo,
        "day" => dt.d,
        "hour" | "minute" | "second" | "microsecond" if dt.date_only => return None,
        "hour" => dt.h,
        "minute" => dt.mi,
        "second" => dt.s,
        "microsecond" => dt.us,
        _ => return None,
    })
}

fn text_arg(v: &Value) -> Option<&str> {
    match v {
        Value::Text(s) => Some(s),
        _ => None,
    }
}

fn extract_call(lookup: &Value, dt: &Value, tz: &Value, conn: &Value) -> Out {
    let Some(lookup) = text_arg(lookup) else {
        return Delegate;
    };
    match datetime_parse(dt, tz, conn) {
        Ok(None) => ok(Value::Null),
        Ok(Some(d)) => match extract(lookup, &d) {
            Some(v) => ok(Value::Integer(v)),
            None => Delegate,
        },
        Err(()) => Delegate,
    }
}

fn date_extract(a: &[Value]) -> Out {
    extract_call(&a[0], &a[1], &Value::Null, &Value::Null)
}

fn datetime_extract(a: &[Value]) -> Out {
    extract_call(&a[0], &a[1], &a[2], &a[3])
}

/// The Monday of `dt`'s week; `None` before 0001-01-01 (Python's OverflowError).
fn week_start(dt: &Dt) -> Option<(i64, i64, i64)> {
    let day = days_from_civil(dt.y, dt.mo, dt.d) - (isoweekday(dt.y, dt.mo, dt.d) - 1);
    (day >= days_from_civil(1, 1, 1)).then(|| civil_from_days(day))
}

fn date_trunc(a: &[Value]) -> Out {
    let Some(lookup) = text_arg(&a[0]) else {
        return Delegate;
    };
    let dt = match datetime_parse(&a[1], &a[2], &a[3]) {
        Ok(Some(d)) => d,
        Ok(None) => return ok(Value::Null),
        Err(()) => return Delegate,
    };
    let text = match lookup {
        "year" => format!("{:04}-01-01", dt.y),
        "quarter" => format!("{:04}-{:02}-01", dt.y, dt.mo - (dt.mo - 1) % 3),
        "month" => format!("{:04}-{:02}-01", dt.y, dt.mo),
        "week" => match week_start(&dt) {
            Some((y, m, d)) => format!("{y:04}-{m:02}-{d:02}"),
            None => return Delegate,
        },
        "day" => format!("{:04}-{:02}-{:02}", dt.y, dt.mo, dt.d),
        _ => return Delegate,
    };
    ok(Value::Text(text))
}

fn datetime_trunc(a: &[Value]) -> Out {
    let Some(lookup) = text_arg(&a[0]) else {
        return Delegate;
    };
    let dt = match datetime_parse(&a[1], &a[2], &a[3]) {
        Ok(Some(d)) => d,
        Ok(None) => return ok(Value::Null),
        Err(()) => return Delegate,
    };
    let day = |y: i64, m: i64, d: i64| format!("{y:04}-{m:02}-{d:02}");
    let text = match lookup {
        "year" => format!("{:04}-01-01 00:00:00", dt.y),
        "quarter" => format!("{:04}-{:02}-01 00:00:00", dt.y, dt.mo - (dt.mo - 1) % 3),
        "month" => format!("{:04}-{:02}-01 00:00:00", dt.y, dt.mo),
        "week" => match week_start(&dt) {
            Some((y, m, d)) => format!("{} 00:00:00", day(y, m, d)),
            None => return Delegate,
        },
        "day" => format!("{} 00:00:00", day(dt.y, dt.mo, dt.d)),
        "hour" | "minute" | "second" if dt.date_only => return Delegate,
        "hour" => format!("{} {:02}:00:00", day(dt.y, dt.mo, dt.d), dt.h),
        "minute" => format!("{} {:02}:{:02}:00", day(dt.y, dt.mo, dt.d), dt.h, dt.mi),
        "second" => format!(
            "{} {:02}:{:02}:{:02}",
            day(dt.y, dt.mo, dt.d),
            dt.h,
            dt.mi,
            dt.s
        ),
        _ => return Delegate,
    };
    ok(Value::Text(text))
}

fn datetime_cast_date(a: &[Value]) -> Out {
    match datetime_parse(&a[0], &a[1], &a[2]) {
        Ok(Some(d)) if !d.date_only => {
            ok(Value::Text(format!("{:04}-{:02}-{:02}", d.y, d.mo, d.d)))
        }
        Ok(None) => ok(Value::Null),
        _ => Delegate,
    }
}

/// time.isoformat().
fn time_iso(h: i64, mi: i64, s: i64, us: i64) -> String {
    if us == 0 {
        format!("{h:02}:{mi:02}:{s:02}")
    } else {
        format!("{h:02}:{mi:02}:{s:02}.{us:06}")
    }
}

fn datetime_cast_time(a: &[Value]) -> Out {
    match datetime_parse(&a[0], &a[1], &a[2]) {
        Ok(Some(d)) if !d.date_only => ok(Value::Text(time_iso(d.h, d.mi, d.s, d.us))),
        Ok(None) => ok(Value::Null),
        _ => Delegate,
    }
}

fn time_extract(a: &[Value]) -> Out {
    let Some(lookup) = text_arg(&a[0]) else {
        return Delegate;
    };
    if a[1].is_null() {
        return ok(Value::Null);
    }
    let [h, mi, s, us] = match typecast_time(&a[1]) {
        Parsed::Value(t) => t,
        Parsed::Invalid => return ok(Value::Null),
        // None.hour raises.
        Parsed::None | Parsed::Unsure => return Delegate,
    };
    ok(Value::Integer(match lookup {
        "hour" => h,
        "minute" => mi,
        "second" => s,
        "microsecond" => us,
        _ => return Delegate,
    }))
}

fn time_trunc(a: &[Value]) -> Out {
    let Some(lookup) = text_arg(&a[0]) else {
        return Delegate;
    };
    if a[1].is_null() {
        return ok(Value::Null);
    }
    let (h, mi, s) = match datetime_parse(&a[1], &a[2], &a[3]) {
        Ok(Some(d)) if !d.date_only => (d.h, d.mi, d.s),
        Ok(Some(_)) | Err(()) => return Delegate,
        // Not a timestamp: typecast_time. A canonical time has no '-', so the date parse
        // above failed on it (Python's None) without looking at any time zone.
        Ok(None) => match typecast_time(&a[1]) {
            Parsed::Value([h, mi, s, _]) => (h, mi, s),
            Parsed::Invalid => return ok(Value::Null),
            Parsed::None | Parsed::Unsure => return Delegate,
        },
    };
    let text = match lookup {
        "hour" => format!("{h:02}:00:00"),
        "minute" => format!("{h:02}:{mi:02}:00"),
        "second" => format!("{h:02}:{mi:02}:{s:02}"),
        _ => return Delegate,
    };
    ok(Value::Text(text))
}

fn time_diff(a: &[Value]) -> Out {
    if a[0].is_null() || a[1].is_null() {
        return ok(Value::Null);
    }
    match (typecast_time(&a[0]), typecast_time(&a[1])) {
        (Parsed::Value(l), Parsed::Value(r)) => {
            let us = |t: [i64; 4]| ((t[0] * 60 + t[1]) * 60 + t[2]) * 1_000_000 + t[3];
            ok(Value::Integer(us(l) - us(r)))
        }
        _ => Delegate,
    }
}

fn timestamp_diff(a: &[Value]) -> Out {
    if a[0].is_null() || a[1].is_null() {
        return ok(Value::Null);
    }
    match (typecast_timestamp(&a[0]), typecast_timestamp(&a[1])) {
        (Parsed::Value(l), Parsed::Value(r)) if l.date_only == r.date_only => {
            let us = |t: &Dt| {
                ((days_from_civil(t.y, t.mo, t.d) * 24 + t.h) * 60 + t.mi) * 60_000_000
                    + t.s * 1_000_000
                    + t.us
            };
            ok(Value::Integer(us(&l) - us(&r)))
        }
        _ => Delegate,
    }
}

// ---------------------------------------------------------------------------------------------
// Text, hashes and numbers.

fn bitxor(a: &[Value]) -> Out {
    match (&a[0], &a[1]) {
        (Value::Null, _) | (_, Value::Null) => ok(Value::Null),
        (Value::Integer(x), Value::Integer(y)) => ok(Value::Integer(x ^ y)),
        _ => Delegate,
    }
}

fn cot(a: &[Value]) -> Out {
    let x = match &a[0] {
        Value::Null => return ok(Value::Null),
        Value::Integer(i) => *i as f64,
        Value::Real(r) => *r,
        _ => return Delegate,
    };
    let t = x.tan();
    // 1 / 0.0 raises ZeroDivisionError in Python; tan of inf/nan raises ValueError.
    if t == 0.0 || !t.is_finite() {
        return Delegate;
    }
    ok(Value::Real(1.0 / t))
}

/// Python's `s[:n]` in code points (a negative n counts from the end).
fn slice_to(s: &str, n: i64) -> String {
    let len = s.chars().count() as i64;
    let end = if n < 0 { (len + n).max(0) } else { n.min(len) };
    s.chars().take(end as usize).collect()
}

/// (text, length, fill) when all three have the types Django's functions expect.
fn pad_args(a: &[Value]) -> Option<std::result::Result<(&str, i64, &str), ()>> {
    if a.iter().any(Value::is_null) {
        return Some(Err(()));
    }
    match (&a[0], &a[1], &a[2]) {
        (Value::Text(t), Value::Integer(n), Value::Text(f)) => Some(Ok((t, *n, f))),
        _ => None,
    }
}

/// Caps the text a pad or repeat may build: beyond it, Python's own (memory) behaviour.
const MAX_BUILT_CHARS: i64 = 1 << 28;

fn lpad(a: &[Value]) -> Out {
    let (text, length, fill) = match pad_args(a) {
        Some(Ok(x)) => x,
        Some(Err(())) => return ok(Value::Null),
        None => return Delegate,
    };
    let delta = length - text.chars().count() as i64;
    if delta <= 0 {
        return ok(Value::Text(slice_to(text, length)));
    }
    if length > MAX_BUILT_CHARS {
        return Delegate;
    }
    // (fill_text * length)[:delta] + text
    let mut out: String = fill
        .chars()
        .cycle()
        .take(if fill.is_empty() { 0 } else { delta as usize })
        .collect();
    out.push_str(text);
    ok(Value::Text(out))
}

fn rpad(a: &[Value]) -> Out {
    let (text, length, fill) = match pad_args(a) {
        Some(Ok(x)) => x,
        Some(Err(())) => return ok(Value::Null),
        None => return Delegate,
    };
    if length > MAX_BUILT_CHARS {
        return Delegate;
    }
    // (text + fill_text * length)[:length]
    let mut s = text.to_owned();
    if length > 0 && !fill.is_empty() {
        s.extend(fill.chars().cycle().take(length as usize));
    }
    ok(Value::Text(slice_to(&s, length)))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn hash_with<D: sha2::Digest>(a: &[Value]) -> Out {
    match &a[0] {
        Value::Null => ok(Value::Null),
        Value::Text(t) => ok(Value::Text(hex(&D::digest(t.as_bytes())))),
        _ => Delegate,
    }
}

fn md5(a: &[Value]) -> Out {
    hash_with::<md5::Md5>(a)
}
fn sha1(a: &[Value]) -> Out {
    hash_with::<sha1::Sha1>(a)
}
fn sha224(a: &[Value]) -> Out {
    hash_with::<sha2::Sha224>(a)
}
fn sha256(a: &[Value]) -> Out {
    hash_with::<sha2::Sha256>(a)
}
fn sha384(a: &[Value]) -> Out {
    hash_with::<sha2::Sha384>(a)
}
fn sha512(a: &[Value]) -> Out {
    hash_with::<sha2::Sha512>(a)
}

fn repeat(a: &[Value]) -> Out {
    match (&a[0], &a[1]) {
        (Value::Null, _) | (_, Value::Null) => ok(Value::Null),
        (Value::Text(t), Value::Integer(n)) => {
            if *n <= 0 || t.is_empty() {
                return ok(Value::Text(String::new()));
            }
            if (t.chars().count() as i64).saturating_mul(*n) > MAX_BUILT_CHARS {
                return Delegate;
            }
            ok(Value::Text(t.repeat(*n as usize)))
        }
        _ => Delegate,
    }
}

fn reverse(a: &[Value]) -> Out {
    match &a[0] {
        Value::Null => ok(Value::Null),
        Value::Text(t) => ok(Value::Text(t.chars().rev().collect())),
        _ => Delegate,
    }
}

fn sign(a: &[Value]) -> Out {
    match &a[0] {
        Value::Null => ok(Value::Null),
        Value::Integer(i) => ok(Value::Integer(i.signum())),
        // (x > 0) - (x < 0): NaN is 0.
        Value::Real(r) => ok(Value::Integer((*r > 0.0) as i64 - (*r < 0.0) as i64)),
        _ => Delegate,
    }
}

// ---------------------------------------------------------------------------------------------
// regexp: Python's re.search on the patterns whose meaning the regex crate shares.

#[derive(Default)]
struct RegexCache {
    compiled: Mutex<HashMap<String, Option<Arc<regex::Regex>>>>,
}

const REGEX_CACHE_LIMIT: usize = 256;

/// What a pattern uses that can differ between Python and the regex crate on some subjects.
#[derive(Clone, Copy, Default)]
struct PatternTraits {
    /// \d \w \s \b and their negations, or (?i): Unicode tables differ outside plain ASCII.
    classes: bool,
    /// `$` also matches before a trailing newline in Python.
    dollar: bool,
}

/// What the previous token of a pattern was, for where a quantifier may follow: Python
/// refuses "nothing to repeat" in places the regex crate may accept.
#[derive(Clone, Copy, PartialEq)]
enum Prev {
    Atom,
    Quantifier,
    Other,
}

/// `None` if the pattern uses a construct outside the shared subset.
fn pattern_traits(p: &str) -> Option<PatternTraits> {
    // Non-ASCII literals match by code point in both, but case folding beyond ASCII differs.
    if !p.is_ascii() && p.starts_with("(?i)") {
        return None;
    }
    let mut t = PatternTraits::default();
    let b = p.as_bytes();
    let mut i = 0;
    let mut in_class = false;
    let mut prev = Prev::Other;
    if p.starts_with("(?i)") {
        t.classes = true;
        i = 4;
    }
    while i < b.len() {
        let c = b[i];
        if in_class {
            match c {
                b'\\' => {
                    match *b.get(i + 1)? {
                        b'd' | b'D' | b'w' | b'W' | b's' | b'S' => t.classes = true,
                        b'.' | b'\\' | b'[' | b']' | b'^' | b'-' | b'/' | b'n' | b't' => {}
                        _ => return None,
                    }
                    i += 2;
                    continue;
                }
                b'[' => return None,
                b']' => {
                    in_class = false;
                    prev = Prev::Atom;
                }
                b'&' | b'-' | b'~' if b.get(i + 1) == Some(&c) => return None,
                _ => {}
            }
            i += 1;
            continue;
        }
        match c {
            b'\\' => {
                match *b.get(i + 1)? {
                    b'd' | b'D' | b'w' | b'W' | b's' | b'S' => {
                        t.classes = true;
                        prev = Prev::Atom;
                    }
                    b'b' | b'B' => {
                        t.classes = true;
                        prev = Prev::Other;
                    }
                    b'.' | b'\\' | b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'*' | b'+' | b'?'
                    | b'|' | b'^' | b'$' | b'-' | b'/' | b'n' | b't' => prev = Prev::Atom,
                    _ => return None,
                }
                i += 2;
                continue;
            }
            b'[' => {
                in_class = true;
                if b.get(i + 1) == Some(&b'^') {
                    i += 1;
                }
                // A leading ']' is literal in both, but keep to the plain forms.
                if b.get(i + 1) == Some(&b']') {
                    return None;
                }
            }
            b'(' => {
                if b.get(i + 1) == Some(&b'?') {
                    if b.get(i + 2) != Some(&b':') {
                        return None;
                    }
                    i += 2;
                }
                prev = Prev::Other;
            }
            b'*' | b'+' | b'?' | b'{' => {
                match prev {
                    Prev::Atom => {}
                    // A lazy quantifier.
                    Prev::Quantifier if c == b'?' => {
                        prev = Prev::Other;
                        i += 1;
                        continue;
                    }
                    _ => return None,
                }
                if c == b'{' {
                    let close = p[i..].find('}')? + i;
                    let body = &p[i + 1..close];
                    let (lo, hi) = match body.split_once(',') {
                        Some((lo, hi)) => (lo, Some(hi)),
                        None => (body, None),
                    };
                    if digits(lo).is_none()
                        || hi.is_some_and(|h| !h.is_empty() && digits(h).is_none())
                    {
                        return None;
                    }
                    i = close;
                }
                prev = Prev::Quantifier;
            }
            b'$' => {
                t.dollar = true;
                prev = Prev::Other;
            }
            b'^' | b'|' => prev = Prev::Other,
            _ => prev = Prev::Atom,
        }
        i += 1;
    }
    (!in_class).then_some(t)
}

fn regexp(cache: &RegexCache, a: &[Value]) -> Out {
    let (pattern, subject) = match (&a[0], &a[1]) {
        (Value::Null, _) | (_, Value::Null) => return ok(Value::Null),
        (Value::Text(p), Value::Text(s)) => (p.as_str(), std::borrow::Cow::Borrowed(s.as_str())),
        (Value::Text(p), Value::Integer(i)) => (p.as_str(), std::borrow::Cow::Owned(i.to_string())),
        _ => return Delegate,
    };
    let Some(traits) = pattern_traits(pattern) else {
        return Delegate;
    };
    // Python's \s also takes \x1c-\x1f, its \w/\d/case folding go beyond ASCII differently.
    let plain = subject
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) || matches!(b, b'\t' | b'\n' | b'\r' | 0x0b | 0x0c));
    if traits.classes && !plain {
        return Delegate;
    }
    if traits.dollar && subject.contains('\n') {
        return Delegate;
    }
    let re = {
        let mut map = cache.compiled.lock();
        match map.get(pattern) {
            Some(r) => r.clone(),
            None => {
                let r = regex::Regex::new(pattern).ok().map(Arc::new);
                if map.len() >= REGEX_CACHE_LIMIT {
                    map.clear();
                }
                map.insert(pattern.to_owned(), r.clone());
                r
            }
        }
    };
    match re {
        Some(re) => ok(Value::Integer(re.is_match(&subject) as i64)),
        None => Delegate,
    }
}

// ---------------------------------------------------------------------------------------------
// STDDEV_POP/STDDEV_SAMP/VAR_POP/VAR_SAMP: Python's statistics module computes these exactly
// with fractions and rounds once; so does this, with big integers.

#[derive(Clone, Copy, Debug)]
enum Stat {
    StdDevPop,
    StdDevSamp,
    VarPop,
    VarSamp,
}

/// A finite value as `m * 2^e`.
fn dyadic(v: &Value) -> Option<(BigInt, i64)> {
    match v {
        Value::Integer(i) => Some((BigInt::from(*i), 0)),
        Value::Real(r) if r.is_finite() => {
            if *r == 0.0 {
                return Some((BigInt::zero(), 0));
            }
            let bits = r.to_bits();
            let exp = ((bits >> 52) & 0x7ff) as i64;
            let frac = bits & ((1u64 << 52) - 1);
            let (m, e) = if exp == 0 {
                (frac, -1074)
            } else {
                (frac | (1u64 << 52), exp - 1075)
            };
            let m = BigInt::from(m);
            Some((if *r < 0.0 { -m } else { m }, e))
        }
        _ => None,
    }
}

/// `f * 2^e` exactly, or `None` when the result is not a normal float (there scaling would
/// round a second time).
fn scale(mut f: f64, mut e: i64) -> Option<f64> {
    while e != 0 {
        let step = e.clamp(-1000, 1000);
        f *= f64::from_bits(((step + 1023) as u64) << 52);
        e -= step;
    }
    (f == 0.0 || (f.is_finite() && f.abs() >= f64::MIN_POSITIVE)).then_some(f)
}

/// float(Fraction(n, d)), correctly rounded; `None` outside the normal range.
fn frac_to_f64(n: &BigUint, d: &BigUint) -> Option<f64> {
    if n.is_zero() {
        return Some(0.0);
    }
    // A 55-56 bit quotient rounded to odd, then one rounding to 53 bits.
    let shift = n.bits() as i64 - d.bits() as i64 - 55;
    let (q, r) = if shift >= 0 {
        n.div_rem(&(d << shift as u64))
    } else {
        (n << (-shift) as u64).div_rem(d)
    };
    let q = q.to_u64()? | u64::from(!r.is_zero());
    scale(q as f64, shift)
}

/// statistics._float_sqrt_of_frac: sqrt(n/d) correctly rounded.
fn sqrt_frac_to_f64(n: &BigUint, d: &BigUint) -> Option<f64> {
    if n.is_zero() {
        return Some(0.0);
    }
    let rto = |n: BigUint, m: &BigUint| -> BigUint {
        let a = (&n / m).sqrt();
        let exact = &a * &a * m == n;
        if exact {
            a
        } else {
            a | BigUint::from(1u8)
        }
    };
    let q = (n.bits() as i64 - d.bits() as i64 - 109).div_euclid(2);
    if q >= 0 {
        let num = rto(n.clone(), &(d << (2 * q) as u64));
        // num << q as a float: the integer part is exact up to 2^53 ulps, rounding in to_f64.
        scale(num.to_u128()? as f64, q)
    } else {
        let num = rto(n << (-2 * q) as u64, d);
        scale(num.to_u128()? as f64, q)
    }
}

/// The statistic, or `None` to delegate (a NULL, text, too few rows: Python raises).
fn statistic(stat: Stat, rows: &[Vec<Value>]) -> Option<Value> {
    let n = rows.len() as i64;
    let sample = matches!(stat, Stat::StdDevSamp | Stat::VarSamp);
    if n < if sample { 2 } else { 1 } {
        return None;
    }
    let mut all_int = true;
    let mut parts = Vec::with_capacity(rows.len());
    for row in rows {
        let v = row.first()?;
        all_int &= matches!(v, Value::Integer(_));
        parts.push(dyadic(v)?);
    }
    let k = parts.iter().map(|(_, e)| *e).min()?;
    let (mut s1, mut s2) = (BigInt::zero(), BigInt::zero());
    for (m, e) in parts {
        let a = m << (e - k) as u64;
        s2 += &a * &a;
        s1 += a;
    }
    // variance = (n*S2 - S1^2) * 2^(2k) / (n * (n or n-1))
    let p = BigInt::from(n) * s2 - &s1 * &s1;
    let (sign, p) = p.into_parts();
    if sign == Sign::Minus {
        return None;
    }
    let mut num = p;
    let mut den = BigUint::from(n as u64) * BigUint::from(if sample { n - 1 } else { n } as u64);
    if k >= 0 {
        num <<= (2 * k) as u64;
    } else {
        den <<= (-2 * k) as u64;
    }
    let g = num.gcd(&den);
    if !g.is_zero() {
        num /= &g;
        den /= &g;
    }
    if num.is_zero() {
        den = BigUint::from(1u8);
    }
    match stat {
        Stat::VarPop | Stat::VarSamp => {
            if all_int && den == BigUint::from(1u8) {
                return Some(Value::Integer(num.to_i64()?));
            }
            frac_to_f64(&num, &den).map(Value::Real)
        }
        Stat::StdDevPop | Stat::StdDevSamp => sqrt_frac_to_f64(&num, &den).map(Value::Real),
    }
}
