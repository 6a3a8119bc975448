//! Profiling harness for SQL writes through `Session::execute`: a loop of one statement kind
//! with new parameters each time, durability Normal (so CPU, not fsync, is measured).
//! `cargo run --release --example sql_write_profile -- <insert|update|delete>[_tx] [n] [per_tx]`:
//! `_tx` runs the statements inside explicit transactions of `per_tx` statements (default: one
//! transaction for all `n`; the `sql_writes` bench uses 100), commits included. UPDATE / DELETE
//! run on `max(n, 3000)` preloaded rows. The measured loop is `run_loop` (never inlined): under
//! `valgrind --tool=callgrind`, its inclusive cost divided by `n` is the instructions per
//! statement without the setup and the database's teardown.

use std::time::Instant;

use ormdb::{Database, Durability, Options, Params, Value};

fn main() -> ormdb::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let case = args.get(1).map(String::as_str).unwrap_or("insert");
    let n: i64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let db = Database::temporary_with(Options::default().durability(Durability::Normal))?;
    let mut s = db.connect().sql();
    s.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, a INTEGER NOT NULL, b VARCHAR(40))",
    )?;
    let per_tx: i64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(n).max(1);
    let pre = if case == "insert" || case == "insert_tx" {
        0
    } else {
        n.max(3000)
    };
    s.execute_batch("BEGIN")?;
    for i in 0..pre {
        s.execute(
            "INSERT INTO t (a, b) VALUES (?, ?)",
            &Params::Positional(vec![Value::Integer(i), Value::Text(format!("row {i}"))]),
        )?;
    }
    s.execute_batch("COMMIT")?;
    let in_tx = case.ends_with("_tx");
    let start = Instant::now();
    run_loop(&mut s, case, n, in_tx.then_some(per_tx))?;
    let el = start.elapsed();
    let (hits, misses) = s.plan_cache_stats();
    println!(
        "{case}: {n} statements, {:.2} us/statement; plan cache {hits} hits, {misses} misses",
        el.as_secs_f64() * 1e6 / n as f64
    );
    Ok(())
}

/// The measured statements: `n` of `case`, in transactions of `per_tx` when given.
#[inline(never)]
fn run_loop(s: &mut ormdb::Session, case: &str, n: i64, per_tx: Option<i64>) -> ormdb::Result<()> {
    for i in 0..n {
        if per_tx.is_some_and(|k| i % k == 0) {
            s.execute_batch("BEGIN")?;
        }
        let (text, params) = match case.trim_end_matches("_tx") {
            "insert" => (
                "INSERT INTO t (a, b) VALUES (?, ?)",
                vec![Value::Integer(i), Value::Text(format!("row {i}"))],
            ),
            "update" => (
                "UPDATE t SET a = ? WHERE id = ?",
                vec![Value::Integer(i * 3), Value::Integer(i + 1)],
            ),
            "delete" => ("DELETE FROM t WHERE id = ?", vec![Value::Integer(i + 1)]),
            other => panic!("unknown case {other}: insert, update, delete (optionally _tx)"),
        };
        let r = s.execute(text, &Params::Positional(params))?;
        assert_eq!(r.rows_affected, 1);
        if per_tx.is_some_and(|k| i % k == k - 1 || i == n - 1) {
            s.execute_batch("COMMIT")?;
        }
    }
    Ok(())
}
