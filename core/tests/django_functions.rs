//! The engine's native versions of Django's SQLite functions against the values Django's own
//! Python implementation gives (tests/data/django_functions.json, written by
//! scripts/django/gen_function_cases.py from Django 5.2's `_functions.py`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ormdb::sql::{Session, UserAggregate, UserFunction};
use ormdb::{Database, Params, Value};
use serde_json::Value as Json;

fn cases() -> Vec<Json> {
    let text = include_str!("data/django_functions.json");
    let doc: Json = serde_json::from_str(text).expect("test data is JSON");
    doc["cases"].as_array().expect("cases").clone()
}

fn decode(j: &Json) -> Value {
    if j.is_null() {
        return Value::Null;
    }
    if let Some(i) = j.get("int") {
        return Value::Integer(i.as_i64().expect("an i64"));
    }
    if let Some(b) = j.get("real_bits") {
        return Value::Real(f64::from_bits(b.as_u64().expect("u64 bits")));
    }
    if let Some(t) = j.get("text") {
        return Value::Text(t.as_str().expect("text").to_owned());
    }
    panic!("unknown value encoding {j}")
}

/// Equal, with reals compared bit for bit (NaN included).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Real(x), Value::Real(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

fn session() -> Session {
    let db = Database::temporary().expect("temporary database");
    let mut s = db.connect().sql();
    s.install_django_functions();
    s
}

fn call(s: &mut Session, name: &str, args: &[Value]) -> ormdb::Result<Value> {
    let marks = vec!["?"; args.len()].join(", ");
    let r = s.execute(
        &format!("SELECT {name}({marks})"),
        &Params::Positional(args.to_vec()),
    )?;
    Ok(r.rows[0][0].clone())
}

/// Per function: (cases answered natively and equal to Django, cases handed over).
type Tally = BTreeMap<String, (usize, usize)>;

fn check(s: &mut Session, case: &Json, got: ormdb::Result<Value>, tally: &mut Tally) {
    let name = case["name"].as_str().expect("name");
    let native = case["native"].as_bool().expect("native flag");
    let entry = tally.entry(name.to_owned()).or_default();
    let _ = s;
    match (&got, case.get("result")) {
        (Ok(v), Some(want)) => {
            let want = decode(want);
            assert!(same(v, &want), "{case}: engine gave {v:?}, Django {want:?}");
            entry.0 += 1;
        }
        (Ok(v), None) => panic!("{case}: Django raises, the engine answered {v:?}"),
        (Err(e), Some(_)) => {
            // Handed to Django's Python (absent here): only allowed off the canonical inputs.
            assert_eq!(e.code(), "0A000", "{case}: {e}");
            assert!(
                !native,
                "{case}: a canonical input must be answered natively ({e})"
            );
            entry.1 += 1;
        }
        (Err(_), None) => {
            entry.1 += 1;
        }
    }
}

#[test]
fn scalar_functions_match_django() {
    let mut s = session();
    let mut tally = Tally::new();
    let mut n = 0;
    for case in cases().iter().filter(|c| c.get("args").is_some()) {
        let args: Vec<Value> = case["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(decode)
            .collect();
        let got = call(&mut s, case["name"].as_str().expect("name"), &args);
        check(&mut s, case, got, &mut tally);
        n += 1;
    }
    assert!(n > 3000, "the test data has {n} scalar cases");
    // Every function answers most of its cases itself.
    for (name, (native, handed)) in &tally {
        assert!(
            *native >= 4 && native > handed,
            "{name}: {native} native, {handed} handed over"
        );
    }
    eprintln!("{tally:?}");
}

#[test]
fn aggregates_match_django() {
    let mut s = session();
    s.execute_batch("CREATE TABLE t (k INTEGER, x)")
        .expect("table");
    let cases: Vec<Json> = cases()
        .into_iter()
        .filter(|c| c.get("rows").is_some())
        .collect();
    for (k, case) in cases.iter().enumerate() {
        for v in case["rows"].as_array().expect("rows") {
            s.execute(
                "INSERT INTO t VALUES (?, ?)",
                &Params::Positional(vec![Value::Integer(k as i64), decode(v)]),
            )
            .expect("insert");
        }
    }
    let mut tally = Tally::new();
    for (k, case) in cases.iter().enumerate() {
        let name = case["name"].as_str().expect("name");
        let got = s
            .execute(
                &format!("SELECT {name}(x) FROM t WHERE k = ?"),
                &Params::Positional(vec![Value::Integer(k as i64)]),
            )
            .map(|r| r.rows[0][0].clone());
        check(&mut s, case, got, &mut tally);
    }
    assert_eq!(tally.len(), 4);
    for (name, (native, _)) in &tally {
        assert!(*native >= 9, "{name}: only {native} native");
    }
    // A group without rows is NULL, as sqlite3 never instantiates the aggregate then.
    let r = s
        .execute(
            "SELECT var_pop(x), stddev_samp(x) FROM t WHERE k < 0",
            &Params::None,
        )
        .expect("empty group");
    assert_eq!(r.rows, vec![vec![Value::Null, Value::Null]]);
}

/// What the native function cannot answer goes to the function registered before it
/// (Django's Python callback); what it answers never does.
#[test]
fn off_canonical_inputs_reach_the_previous_registration() {
    let db = Database::temporary().expect("temporary database");
    let mut s = db.connect().sql();
    let calls = Arc::new(AtomicUsize::new(0));
    for (name, n) in [("django_datetime_trunc", 4), ("regexp", 2), ("md5", 1)] {
        let calls = calls.clone();
        s.create_function(
            name,
            Some(n),
            UserFunction {
                func: Arc::new(move |_| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok(Value::Text("python".into()))
                }),
                deterministic: true,
            },
        );
    }
    let agg_calls = calls.clone();
    s.create_aggregate(
        "var_samp",
        Some(1),
        UserAggregate {
            name: "var_samp".into(),
            func: Arc::new(move |_| {
                agg_calls.fetch_add(1, Ordering::SeqCst);
                Ok(Value::Text("python".into()))
            }),
        },
    );
    let names = s.install_django_functions();
    assert!(names.contains(&"django_datetime_trunc") && names.contains(&"stddev_pop"));
    let t = |v: &str| Value::Text(v.into());
    let got = call(
        &mut s,
        "django_datetime_trunc",
        &[
            t("month"),
            t("2024-05-17 10:11:12"),
            Value::Null,
            Value::Null,
        ],
    )
    .expect("native");
    assert_eq!(got, t("2024-05-01 00:00:00"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // A conversion to another time zone is zoneinfo's business: Python.
    let got = call(
        &mut s,
        "django_datetime_trunc",
        &[
            t("month"),
            t("2024-05-17 10:11:12"),
            t("Europe/Paris"),
            t("UTC"),
        ],
    )
    .expect("delegated");
    assert_eq!(got, t("python"));
    // A backreference is outside the shared regex subset.
    assert_eq!(
        call(&mut s, "regexp", &[t(r"(.)\1"), t("aa")]).expect("delegated"),
        t("python")
    );
    assert_eq!(
        call(&mut s, "regexp", &[t("^a+$"), t("aa")]).expect("native"),
        Value::Integer(1)
    );
    // md5 of an integer raises in Django (int has no encode): Python decides.
    assert_eq!(
        call(&mut s, "md5", &[Value::Integer(5)]).expect("delegated"),
        t("python")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    s.execute_batch("CREATE TABLE v (x); INSERT INTO v VALUES (1), ('a');")
        .expect("table");
    let r = s
        .execute("SELECT var_samp(x) FROM v", &Params::None)
        .expect("delegated aggregate");
    assert_eq!(r.rows, vec![vec![t("python")]]);
    let r = s
        .execute(
            "SELECT var_samp(x) FROM v WHERE x = 1 OR x = 1",
            &Params::None,
        )
        .expect("one row");
    assert_eq!(
        r.rows,
        vec![vec![t("python")]],
        "one row: Python's StatisticsError"
    );
    // Without a previous registration the unsupported input is a clear 0A000.
    let e = call(&mut s, "reverse", &[Value::Integer(5)]).unwrap_err();
    assert_eq!(e.code(), "0A000");
    assert!(e.message.contains("reverse()"), "{}", e.message);
}
