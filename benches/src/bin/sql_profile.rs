//! Runs one SQL front-end benchmark case (benches/benches/sql_frontend.rs) a given number of
//! times on ORMDB, for profilers: under callgrind, `--toggle-collect='*run_case*'` counts the
//! loop only (the data load is left out), so runs with N and M iterations give the
//! instructions of one statement as their difference over N - M.
//!
//! Usage: `sql_profile CASE ITERATIONS [ROWS]`, CASE one of `point`, `eq`, `range`, `desc`,
//! `in500`, `overhead`, `miss`; ROWS defaults to 20,000 (the `items` table, index on `n`).
//!
//! `sql_profile prisma_cold REPLAYS`: the Prisma 7 client corpus replayed REPLAYS times, each
//! on a fresh database and session (the cold case of `sql_prisma7_replay`); only its SELECTs
//! run inside `cold_select`, so `--toggle-collect='*cold_select*'` counts them alone. The
//! process-wide parse cache is cleared before each replay (a truly cold start);
//! `prisma_shared` keeps it (new sessions in a process that ran the texts before).
//!
//! `sql_profile m2m N` / `sql_profile select_related N`: the join cases `sql_m2m_prefetch` and
//! `sql_select_related` (benches/src/joins.rs), N statements inside `run_join`
//! (`--toggle-collect='*run_join*'`).

use std::hint::black_box;

use ormdb::{Params, Session, Value};
use ormdb_benches::joins;
use ormdb_benches::prisma::{self, prisma_log, Stmt};
use ormdb_benches::*;

#[inline(never)]
fn run_case(s: &mut Session, case: &str, iterations: u64, rows: i64, rng: &mut Rng) -> usize {
    let mut total = 0;
    let in_list = format!(
        "SELECT id, name, n FROM items WHERE id IN ({})",
        vec!["?"; 500].join(", ")
    );
    for k in 0..iterations {
        let id = rng.id(rows);
        let (sql, params): (String, Vec<Value>) = match case {
            "point" => (
                "SELECT id, name, n FROM items WHERE id = ?".into(),
                vec![Value::Integer(id)],
            ),
            "miss" => (
                format!("SELECT id, name, n FROM items WHERE id = ? /* {k} */"),
                vec![Value::Integer(id)],
            ),
            "eq" => (
                "SELECT id, name FROM items WHERE n = ? ORDER BY id LIMIT 10".into(),
                vec![Value::Integer(id * 7)],
            ),
            "range" => (
                "SELECT id, name FROM items WHERE n BETWEEN ? AND ? ORDER BY n LIMIT 20".into(),
                vec![Value::Integer(id * 7), Value::Integer(id * 7 + 700)],
            ),
            "desc" => (
                "SELECT id, name FROM items WHERE n < ? ORDER BY n DESC LIMIT 20".into(),
                vec![Value::Integer(id * 7)],
            ),
            "in500" => (
                in_list.clone(),
                (0..500).map(|_| Value::Integer(rng.id(rows))).collect(),
            ),
            "overhead" => ("SELECT ?".into(), vec![Value::Integer(1)]),
            other => panic!("unknown case {other}"),
        };
        let r = s
            .execute(&sql, &Params::Positional(params))
            .expect("statement");
        total += black_box(r.rows.len());
    }
    total
}

#[inline(never)]
fn cold_select(s: &mut Session, st: &Stmt) -> usize {
    s.execute(&st.sql, &st.params)
        .map_or(0, |r| black_box(r.rows.len()))
}

fn prisma_cold(replays: u64, shared: bool) {
    let schema = prisma::read("prisma7_migrate_diff.sql");
    let stmts = prisma_log(&prisma::read("prisma7_client_sql.txt"));
    let selects = stmts.iter().filter(|s| s.kind == "select").count();
    let mut rows = 0;
    for _ in 0..replays {
        if !shared {
            ormdb::sql::clear_shared_parse_cache();
        }
        let o = OrmdbFixture::new(Mode::Normal);
        let mut s = o.db.connect().sql();
        s.execute_batch(&schema).expect("prisma schema");
        for st in &stmts {
            if st.kind == "select" {
                rows += cold_select(&mut s, st);
            } else {
                let _ = s.execute(&st.sql, &st.params);
            }
        }
    }
    println!("prisma_cold: {replays} replays of {selects} SELECTs, {rows} rows");
}

#[inline(never)]
fn run_join(s: &mut Session, case: &str, iterations: u64) -> usize {
    let mut rng = Rng::new(29);
    let m2m = joins::m2m_query();
    let mut total = 0;
    for _ in 0..iterations {
        let (sql, params): (&str, Vec<Value>) = match case {
            "m2m" => (
                &m2m,
                (0..joins::M2M_IN)
                    .map(|_| Value::Integer(rng.id(joins::M2M_BOOKS)))
                    .collect(),
            ),
            _ => (joins::SR_QUERY, Vec::new()),
        };
        let r = s
            .execute(sql, &Params::Positional(params))
            .expect("statement");
        total += black_box(r.rows.len());
    }
    total
}

fn join_case(case: &str, iterations: u64) {
    let (schema, rows) = match case {
        "m2m" => (joins::M2M_SCHEMA, joins::m2m_rows()),
        _ => (joins::SR_SCHEMA, joins::sr_rows()),
    };
    let o = OrmdbFixture::new(Mode::Normal);
    let mut s = o.db.connect().sql();
    s.execute_batch(schema).expect("schema");
    s.execute_batch("BEGIN").expect("begin");
    for r in &rows {
        s.execute(r, &Params::None).expect("insert");
    }
    s.execute_batch("COMMIT").expect("commit");
    let plan = s
        .execute(
            &format!(
                "EXPLAIN QUERY PLAN {}",
                if case == "m2m" {
                    joins::m2m_query()
                } else {
                    joins::SR_QUERY.to_string()
                }
            ),
            &Params::Positional(if case == "m2m" {
                vec![Value::Integer(1); joins::M2M_IN]
            } else {
                Vec::new()
            }),
        )
        .map(|r| format!("{:?}", r.rows))
        .unwrap_or_else(|e| e.to_string());
    println!("plan: {plan}");
    let t = std::time::Instant::now();
    let n = run_join(&mut s, case, iterations);
    println!(
        "{case}: {iterations} statements, {n} rows, {:.3} ms per statement",
        t.elapsed().as_secs_f64() * 1e3 / iterations.max(1) as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let case = args.get(1).map(String::as_str).unwrap_or("point");
    let iterations = arg_num(args.get(2).cloned(), "ITERATIONS");
    if case == "prisma_cold" || case == "prisma_shared" {
        return prisma_cold(iterations, case == "prisma_shared");
    }
    if case == "m2m" || case == "select_related" {
        return join_case(case, iterations);
    }
    let rows = args
        .get(3)
        .map(|_| arg_num(args.get(3).cloned(), "ROWS") as i64)
        .unwrap_or(20_000);
    let o = OrmdbFixture::with_items(Mode::Normal, rows);
    let mut s = o.db.connect().sql();
    s.execute("CREATE INDEX items_n ON items (n)", &Params::None)
        .expect("index");
    let mut rng = Rng::new(11);
    let n = run_case(&mut s, case, iterations, rows, &mut rng);
    println!("{case}: {iterations} statements, {n} rows");
}
