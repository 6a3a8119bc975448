//! Aggregates and filtered mutations compared with SQLite on the same data: random rows with
//! NULLs, duplicates, ints, reals, numeric texts and a column without affinity holding both
//! 2 and 2.0; random filters (comparisons, IN with NULLs, LIKE, IS NULL, and / or / not);
//! count(*), count, count(DISTINCT), sum, avg, min, max (plain and DISTINCT) with 0-2 group-by
//! fields; then random update / delete / insert batches through the mutation IR, compared with
//! UPDATE / DELETE / INSERT in SQLite (affected rows, ids and the whole table after each).

mod common;

use common::{from_sql, to_sql};

use std::collections::BTreeSet;

use ormdb::ir::graph::CmpOp;
use ormdb::{
    AggFunc, Aggregate, Connection, DataType, Database, EntitySpec, FieldDef, Filter, Measure,
    Mutation, MutationOp, Value,
};
use proptest::prelude::*;
use rusqlite::types::Value as SqlValue;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// (name, ormdb type, SQLite declared type)
const FIELDS: &[(&str, DataType, &str)] = &[
    ("g", DataType::Integer, "INTEGER"),
    ("h", DataType::Text, "TEXT"),
    ("x", DataType::Integer, "INTEGER"),
    ("y", DataType::Real, "REAL"),
    ("z", DataType::Numeric, "NUMERIC"),
    ("s", DataType::Text, "TEXT"),
    ("w", DataType::Any, ""),
];

fn gen_value(rng: &mut Rng, field: &str) -> Value {
    if rng.chance(20) {
        return Value::Null;
    }
    match field {
        "g" => Value::Integer(rng.below(3) as i64),
        "h" => Value::from(*rng.pick(&["a", "B", "ab", ""])),
        "x" => Value::Integer(rng.below(9) as i64 - 3),
        "y" => Value::Real(*rng.pick(&[-1.5, 0.0, 0.25, 1.0, 2.5, 1e3])),
        "z" => match rng.below(3) {
            0 => Value::Integer(rng.below(5) as i64),
            1 => Value::Real(*rng.pick(&[2.0, 2.5, -0.5])),
            _ => Value::from(*rng.pick(&["3", "1.5", "x"])),
        },
        "s" => Value::from(*rng.pick(&["3", "1.5", "abc", "-2", "a%"])),
        _ => match rng.below(4) {
            0 => Value::Integer(2),
            1 => Value::Real(2.0),
            2 => Value::Real(0.5),
            _ => Value::from("2"),
        },
    }
}

fn gen_filter(rng: &mut Rng, depth: u32) -> Filter {
    let field = rng.pick(FIELDS).0;
    match rng.below(if depth >= 2 { 4 } else { 6 }) {
        0 => Filter::cmp(
            field,
            *rng.pick(&[
                CmpOp::Eq,
                CmpOp::Ne,
                CmpOp::Lt,
                CmpOp::Le,
                CmpOp::Gt,
                CmpOp::Ge,
            ]),
            {
                let f = rng.pick(FIELDS).0;
                match gen_value(rng, f) {
                    Value::Null => Value::Integer(1),
                    v => v,
                }
            },
        ),
        1 => Filter::In {
            field: field.into(),
            values: (0..rng.below(4))
                .map(|_| {
                    let f = rng.pick(FIELDS).0;
                    gen_value(rng, f)
                })
                .collect(),
            negated: rng.chance(40),
        },
        2 => Filter::Like {
            field: field.into(),
            pattern: rng.pick(&["a%", "%B", "_", "2%", "%.5", "%"]).to_string(),
            escape: None,
            negated: rng.chance(30),
        },
        3 => Filter::IsNull {
            field: field.into(),
            negated: rng.chance(50),
        },
        4 => Filter::not(gen_filter(rng, depth + 1)),
        _ => {
            let fs = (0..1 + rng.below(3))
                .map(|_| gen_filter(rng, depth + 1))
                .collect();
            if rng.chance(50) {
                Filter::and(fs)
            } else {
                Filter::or(fs)
            }
        }
    }
}

fn filter_sql(f: &Filter, params: &mut Vec<SqlValue>) -> String {
    let p = |v: &Value, params: &mut Vec<SqlValue>| {
        params.push(to_sql(v));
        format!("?{}", params.len())
    };
    match f {
        Filter::And(fs) if fs.is_empty() => "1".into(),
        Filter::Or(fs) if fs.is_empty() => "0".into(),
        Filter::And(fs) | Filter::Or(fs) => {
            let sep = if matches!(f, Filter::And(_)) {
                " AND "
            } else {
                " OR "
            };
            fs.iter()
                .map(|x| format!("({})", filter_sql(x, params)))
                .collect::<Vec<_>>()
                .join(sep)
        }
        Filter::Not(x) => format!("NOT ({})", filter_sql(x, params)),
        Filter::Cmp { field, op, value } => {
            let op = match op {
                CmpOp::Eq => "=",
                CmpOp::Ne => "<>",
                CmpOp::Lt => "<",
                CmpOp::Le => "<=",
                CmpOp::Gt => ">",
                CmpOp::Ge => ">=",
            };
            format!("\"{field}\" {op} {}", p(value, params))
        }
        Filter::In {
            field,
            values,
            negated,
        } => {
            let list: Vec<String> = values.iter().map(|v| p(v, params)).collect();
            format!(
                "\"{field}\" {}IN ({})",
                if *negated { "NOT " } else { "" },
                list.join(", ")
            )
        }
        Filter::Like {
            field,
            pattern,
            negated,
            ..
        } => format!(
            "\"{field}\" {}LIKE {}",
            if *negated { "NOT " } else { "" },
            p(&Value::from(pattern.as_str()), params)
        ),
        Filter::IsNull { field, negated } => {
            format!("\"{field}\" IS {}NULL", if *negated { "NOT " } else { "" })
        }
        other => panic!("not generated: {other:?}"),
    }
}

fn setup(rng: &mut Rng, n: usize) -> (Database, Connection, rusqlite::Connection, String) {
    let db = Database::temporary().unwrap();
    let conn = db.connect();
    let lite = rusqlite::Connection::open_in_memory().unwrap();
    let mut spec = EntitySpec::new("t").id("id").lenient();
    for (name, ty, _) in FIELDS {
        spec = spec.field(FieldDef::new(name, *ty));
    }
    let mut tx = conn.begin().unwrap();
    tx.create_entity(&spec).unwrap();
    let cols: Vec<String> = FIELDS
        .iter()
        .map(|(n, _, d)| format!("\"{n}\" {d}"))
        .collect();
    let ddl = format!(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, {});",
        cols.join(", ")
    );
    lite.execute_batch(&ddl).unwrap();
    let mut data = ddl + "\n";
    for id in 1..=n as i64 {
        let vals: Vec<Value> = FIELDS.iter().map(|(f, ..)| gen_value(rng, f)).collect();
        insert_both(&mut tx, &lite, id, &vals, &mut data);
    }
    tx.commit().unwrap();
    (db, conn, lite, data)
}

fn insert_both(
    tx: &mut ormdb::Transaction,
    lite: &rusqlite::Connection,
    id: i64,
    vals: &[Value],
    log: &mut String,
) {
    let mut pairs = vec![("id", Value::Integer(id))];
    pairs.extend(FIELDS.iter().zip(vals).map(|((f, ..), v)| (*f, v.clone())));
    tx.insert("t", &pairs).unwrap();
    let mut params = vec![SqlValue::Integer(id)];
    params.extend(vals.iter().map(to_sql));
    let qs: Vec<String> = (1..=params.len()).map(|i| format!("?{i}")).collect();
    lite.execute(
        &format!("INSERT INTO t VALUES ({})", qs.join(", ")),
        rusqlite::params_from_iter(params.iter()),
    )
    .unwrap();
    log.push_str(&format!("INSERT INTO t VALUES ({id}, {vals:?});\n"));
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Real(x), Value::Real(y)) => {
            x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
        }
        _ => a == b,
    }
}

fn same_rows(a: &[Vec<Value>], b: &[Vec<Value>]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q)))
}

fn sql_rows(lite: &rusqlite::Connection, sql: &str, params: &[SqlValue]) -> Vec<Vec<Value>> {
    let mut st = lite.prepare(sql).unwrap_or_else(|e| panic!("{e}: {sql}"));
    let n = st.column_count();
    st.query_map(rusqlite::params_from_iter(params.iter()), |r| {
        Ok((0..n)
            .map(|i| from_sql(r.get::<_, SqlValue>(i).unwrap()))
            .collect())
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

fn gen_aggregate(rng: &mut Rng) -> Aggregate {
    let mut group_by: Vec<String> = Vec::new();
    for _ in 0..rng.below(3) {
        let g = rng.pick(&["g", "h", "z", "w"]).to_string();
        if !group_by.contains(&g) {
            group_by.push(g);
        }
    }
    let measures = (0..1 + rng.below(5))
        .map(|_| {
            let func = *rng.pick(&[
                AggFunc::Count,
                AggFunc::Sum,
                AggFunc::Avg,
                AggFunc::Min,
                AggFunc::Max,
            ]);
            let field = if func == AggFunc::Count && rng.chance(40) {
                None
            } else {
                Some(rng.pick(FIELDS).0.to_string())
            };
            Measure {
                func,
                distinct: field.is_some() && rng.chance(25),
                field,
                alias: None,
            }
        })
        .collect();
    Aggregate {
        entity: "t".into(),
        filter: if rng.chance(60) {
            Some(gen_filter(rng, 0))
        } else {
            None
        },
        group_by,
        measures,
    }
}

fn aggregate_sql(a: &Aggregate, params: &mut Vec<SqlValue>) -> String {
    let mut cols: Vec<String> = a.group_by.iter().map(|g| format!("\"{g}\"")).collect();
    for m in &a.measures {
        let f = match m.func {
            AggFunc::Count => "count",
            AggFunc::Sum => "sum",
            AggFunc::Avg => "avg",
            AggFunc::Min => "min",
            AggFunc::Max => "max",
        };
        let arg = match &m.field {
            None => "*".to_string(),
            Some(x) => format!("{}\"{x}\"", if m.distinct { "DISTINCT " } else { "" }),
        };
        cols.push(format!("{f}({arg})"));
    }
    let mut sql = format!("SELECT {} FROM t", cols.join(", "));
    if let Some(f) = &a.filter {
        sql.push_str(&format!(" WHERE {}", filter_sql(f, params)));
    }
    if !a.group_by.is_empty() {
        let g: Vec<String> = a.group_by.iter().map(|g| format!("\"{g}\"")).collect();
        sql.push_str(&format!(
            " GROUP BY {} ORDER BY {}",
            g.join(", "),
            g.join(", ")
        ));
    }
    sql
}

fn run_aggregates(seed: u64, n: usize, count: usize) -> Result<(), String> {
    let mut rng = Rng(seed);
    let (_db, conn, lite, data) = setup(&mut rng, n);
    for _ in 0..count {
        let a = gen_aggregate(&mut rng);
        let mut params = Vec::new();
        let sql = aggregate_sql(&a, &mut params);
        let want = sql_rows(&lite, &sql, &params);
        let got = conn.aggregate(&a).map_err(|e| format!("{e} for {a:?}"))?;
        // Group values: SQLite reports the key of some row of the group, so 2 and 2.0 (one
        // group) may come back as either; compare keys numerically, measures exactly.
        let g = a.group_by.len();
        let keys_equal = |x: &[Value], y: &[Value]| {
            x[..g]
                .iter()
                .zip(&y[..g])
                .all(|(p, q)| match (p.as_f64(), q.as_f64()) {
                    (Some(p), Some(q)) => p == q,
                    _ => p == q,
                })
        };
        let matches = got.rows.len() == want.len()
            && got.rows.iter().zip(&want).all(|(x, y)| {
                x.len() == y.len()
                    && keys_equal(x, y)
                    && x[g..].iter().zip(&y[g..]).all(|(p, q)| same_value(p, q))
            });
        if got.columns.len() != g + a.measures.len() || !matches {
            return Err(format!(
                "aggregate {}\nsql: {sql}\ngot  {:?}\nwant {want:?}\ndata:\n{data}",
                serde_json::to_string(&a).unwrap(),
                got.rows
            ));
        }
    }
    Ok(())
}

fn table(conn: &Connection) -> Vec<Vec<Value>> {
    let mut tx = conn.begin().unwrap();
    let rows = common::rows(&mut tx, "t");
    rows.into_iter()
        .map(|r| r.values)
        .collect::<Vec<Vec<Value>>>()
}

fn run_mutations(seed: u64, n: usize, count: usize) -> Result<(), String> {
    let mut rng = Rng(seed);
    let (_db, conn, lite, mut data) = setup(&mut rng, n);
    let mut next_id = n as i64 + 1;
    for step in 0..count {
        let filter = if rng.chance(85) {
            Some(gen_filter(&mut rng, 0))
        } else {
            None
        };
        let mut params = Vec::new();
        let where_sql = filter
            .as_ref()
            .map(|f| format!(" WHERE {}", filter_sql(f, &mut params)))
            .unwrap_or_default();
        let matching: BTreeSet<i64> =
            sql_rows(&lite, &format!("SELECT id FROM t{where_sql}"), &params)
                .into_iter()
                .map(|r| r[0].as_i64().unwrap())
                .collect();
        let (op, desc) = match rng.below(3) {
            0 => {
                let field = rng.pick(FIELDS).0;
                let v = gen_value(&mut rng, field);
                let mut p2 = params.clone();
                p2.push(to_sql(&v));
                let n = lite
                    .execute(
                        &format!("UPDATE t SET \"{field}\" = ?{}{where_sql}", p2.len()),
                        rusqlite::params_from_iter(p2.iter()),
                    )
                    .unwrap();
                assert_eq!(n, matching.len());
                (
                    MutationOp::Update {
                        entity: "t".into(),
                        filter: filter.clone(),
                        set: [(field.to_string(), v)].into_iter().collect(),
                    },
                    "update",
                )
            }
            1 => {
                lite.execute(
                    &format!("DELETE FROM t{where_sql}"),
                    rusqlite::params_from_iter(params.iter()),
                )
                .unwrap();
                (
                    MutationOp::Delete {
                        entity: "t".into(),
                        filter: filter.clone(),
                    },
                    "delete",
                )
            }
            _ => {
                let mut rows = Vec::new();
                let mut log = String::new();
                for _ in 0..1 + rng.below(3) {
                    let vals: Vec<Value> = FIELDS
                        .iter()
                        .map(|(f, ..)| gen_value(&mut rng, f))
                        .collect();
                    let mut params = vec![SqlValue::Integer(next_id)];
                    params.extend(vals.iter().map(to_sql));
                    let qs: Vec<String> = (1..=params.len()).map(|i| format!("?{i}")).collect();
                    lite.execute(
                        &format!("INSERT INTO t VALUES ({})", qs.join(", ")),
                        rusqlite::params_from_iter(params.iter()),
                    )
                    .unwrap();
                    log.push_str(&format!("{next_id}: {vals:?}; "));
                    let mut rec: ormdb::ir::Record = FIELDS
                        .iter()
                        .zip(&vals)
                        .map(|((f, ..), v)| (f.to_string(), v.clone()))
                        .collect();
                    rec.insert("id".into(), Value::Integer(next_id));
                    rows.push(rec);
                    next_id += 1;
                }
                data.push_str(&format!("-- insert {log}\n"));
                (
                    MutationOp::Insert {
                        entity: "t".into(),
                        rows,
                    },
                    "insert",
                )
            }
        };
        let res = conn
            .mutate(&Mutation {
                ops: vec![op.clone()],
            })
            .map_err(|e| format!("step {step}: {e} for {op:?}"))?;
        if desc != "insert" {
            let ids: BTreeSet<i64> = res.ops[0].ids.iter().copied().collect();
            if ids != matching || res.ops[0].affected as usize != matching.len() {
                return Err(format!(
                    "step {step} {desc} with {}: got ids {:?}, want {matching:?}\ndata:\n{data}",
                    serde_json::to_string(&filter).unwrap(),
                    res.ops[0].ids
                ));
            }
        }
        data.push_str(&format!(
            "-- {desc} where {}\n",
            serde_json::to_string(&filter).unwrap()
        ));
        let want = sql_rows(&lite, "SELECT * FROM t ORDER BY id", &[]);
        let got = table(&conn);
        if !same_rows(&got, &want) {
            return Err(format!(
                "step {step} {desc}: table differs\ngot  {got:?}\nwant {want:?}\n{data}"
            ));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { // PROPTEST_CASES overrides the count (e.g. for a longer soak).
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn aggregates_match_sqlite(seed in any::<u64>(), n in 0usize..30) {
        if let Err(e) = run_aggregates(seed, n, 20) {
            prop_assert!(false, "seed {}: {}", seed, e);
        }
    }

    #[test]
    fn filtered_mutations_match_sqlite(seed in any::<u64>(), n in 0usize..20) {
        if let Err(e) = run_mutations(seed, n, 12) {
            prop_assert!(false, "seed {}: {}", seed, e);
        }
    }
}

#[test]
fn aggregates_over_an_empty_table_and_all_null_inputs() {
    let mut rng = Rng(7);
    let (_db, conn, lite, _) = setup(&mut rng, 0);
    let a = Aggregate {
        entity: "t".into(),
        filter: None,
        group_by: vec![],
        measures: vec![
            Measure::count(),
            Measure::of(AggFunc::Count, "x"),
            Measure::of(AggFunc::Sum, "x"),
            Measure::of(AggFunc::Avg, "y"),
            Measure::of(AggFunc::Min, "s"),
        ],
    };
    let mut p = Vec::new();
    let want = sql_rows(&lite, &aggregate_sql(&a, &mut p), &p);
    assert_eq!(conn.aggregate(&a).unwrap().rows, want);
    assert_eq!(
        want,
        vec![vec![
            Value::Integer(0),
            Value::Integer(0),
            Value::Null,
            Value::Null,
            Value::Null
        ]]
    );
}

/// Minimal regression: sum/avg over text took every text as a number (to_numeric), so
/// sum('') was the integer 0 where SQLite gives 0.0; text that is entirely an integer ('3')
/// stays on the integer path, as in SQLite.
#[test]
fn sum_of_text_follows_sqlite_numeric_types() {
    let cases: &[(&[&str], Value)] = &[
        (&["3", "-2"], Value::Integer(1)),
        (&["3", "abc"], Value::Real(3.0)),
        (&[""], Value::Real(0.0)),
        (&["1.5", "2"], Value::Real(3.5)),
        (&["12abc"], Value::Real(12.0)),
    ];
    for (texts, want) in cases {
        let db = Database::temporary().unwrap();
        let conn = db.connect();
        let lite = rusqlite::Connection::open_in_memory().unwrap();
        lite.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT)")
            .unwrap();
        let mut tx = conn.begin().unwrap();
        tx.create_entity(
            &EntitySpec::new("t")
                .id("id")
                .field(FieldDef::new("s", DataType::Text)),
        )
        .unwrap();
        for t in texts.iter() {
            tx.insert("t", &[("s", Value::from(*t))]).unwrap();
            lite.execute("INSERT INTO t (s) VALUES (?1)", [t]).unwrap();
        }
        tx.commit().unwrap();
        let sql = sql_rows(&lite, "SELECT sum(s) FROM t", &[]);
        assert_eq!(&sql[0][0], want, "SQLite, {texts:?}");
        let got = conn
            .aggregate(&Aggregate {
                entity: "t".into(),
                filter: None,
                group_by: vec![],
                measures: vec![Measure::of(AggFunc::Sum, "s")],
            })
            .unwrap();
        assert_eq!(&got.rows[0][0], want, "ormdb, {texts:?}");
    }
}
