//! Random differential testing in the spirit of SQLancer/sqlsmith: random schemas and data,
//! then random queries (expressions, predicates, joins, grouping, subqueries, set operations,
//! ordering and limits) and random UPDATE/DELETE statements, each run on SQLite and ORMDB and
//! compared. A mismatch is shrunk (rows removed while it persists) and printed as a
//! self-contained reproducer script.
//!
//! `SQL_RANDOM_QUERIES` (default 10000) and `SQL_RANDOM_SEED` (default fixed) tune a run.

mod sqldiff;

use sqldiff::Diff;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, pct: usize) -> bool {
        self.below(100) < pct
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

#[derive(Clone)]
struct Table {
    name: String,
    /// (column name, declared type); column 0 is `id INTEGER PRIMARY KEY`
    cols: Vec<(String, &'static str)>,
    rows: Vec<Vec<String>>,
    index: Option<String>,
    /// A generated column `g` (the last of `cols`): its definition after the name.
    generated: Option<String>,
}

impl Table {
    /// The columns INSERT and UPDATE may write (not the id, not the generated column).
    fn writable(&self) -> &[(String, &'static str)] {
        &self.cols[1..self.cols.len() - self.generated.is_some() as usize]
    }
}

/// Generation expressions over c0 and c1 (every table has both).
const GENERATED: &[&str] = &[
    "c0 + c1",
    "c0 || 'x'",
    "coalesce(c0, c1)",
    "c0 * 2",
    "lower(c1)",
    "length(c0)",
    "CASE WHEN c0 > 2 THEN c1 ELSE c0 END",
    "c0 = c1",
    "c0 IS NULL",
    "abs(c1)",
    "c1 IN (1, 'a', 2.5)",
    "c0 BETWEEN 1 AND 'b'",
    "nullif(c0, 1)",
    "upper(c0) || c1",
    "c0 < '5'",
    "c1 >= 2",
    "typeof(c0)",
    "trim(c1)",
    "replace(c1, 'a', 'b')",
    "substr(c0, 2)",
];

const TYPES: &[&str] = &["INTEGER", "REAL", "TEXT", "NUMERIC", "", "VARCHAR(10)"];

fn literal(r: &mut Rng) -> String {
    match r.below(9) {
        0 => "NULL".into(),
        1..=3 => format!("{}", r.below(12) as i64 - 3),
        4 => format!("{}.5", r.below(6) as i64 - 2),
        _ => format!(
            "'{}'",
            r.pick(&["a", "b", "ab", "B", "1", "10", "", "a%", "2.0", " 3"])
        ),
    }
}

fn schema(r: &mut Rng) -> Vec<Table> {
    let n = 2 + r.below(2);
    (0..n)
        .map(|t| {
            let ncols = 2 + r.below(3);
            let mut cols = vec![("id".to_string(), "INTEGER")];
            for c in 0..ncols {
                cols.push((format!("c{c}"), *r.pick(TYPES)));
            }
            let nrows = 4 + r.below(12);
            let rows = (0..nrows)
                .map(|i| {
                    let mut row = vec![format!("{}", i + 1)];
                    for _ in 0..ncols {
                        row.push(literal(r));
                    }
                    row
                })
                .collect();
            let index = if r.chance(50) {
                Some(format!("c{}", r.below(ncols)))
            } else {
                None
            };
            let generated = r.chance(40).then(|| {
                let ty = *r.pick(TYPES);
                cols.push(("g".to_string(), ty));
                let kind = *r.pick(&["", " STORED", " VIRTUAL"]);
                format!("{ty} AS ({}){kind}", r.pick(GENERATED))
                    .trim()
                    .to_string()
            });
            Table {
                name: format!("t{t}"),
                cols,
                rows,
                index,
                generated,
            }
        })
        .collect()
}

fn setup_sql(tables: &[Table]) -> Vec<String> {
    let mut out = Vec::new();
    for t in tables {
        let cols: Vec<String> = t
            .cols
            .iter()
            .enumerate()
            .map(|(i, (n, ty))| {
                if i == 0 {
                    format!("{n} INTEGER PRIMARY KEY")
                } else if let (true, Some(g)) = (i == t.cols.len() - 1, &t.generated) {
                    format!("{n} {g}")
                } else {
                    format!("{n} {ty}").trim().to_string()
                }
            })
            .collect();
        out.push(format!("CREATE TABLE {} ({})", t.name, cols.join(", ")));
        if let Some(c) = &t.index {
            out.push(format!("CREATE INDEX ix_{}_{c} ON {}({c})", t.name, t.name));
            // Keyed and DESC indexes are maintained by every mutation (never used to read).
            out.push(format!(
                "CREATE INDEX ixk_{}_{c} ON {}(lower({c}) DESC, id) WHERE {c} IS NOT NULL",
                t.name, t.name
            ));
        }
        // A view over the table: queries read it like a derived table.
        out.push(format!(
            "CREATE VIEW v_{} AS SELECT * FROM {} WHERE id % 3 <> 0",
            t.name, t.name
        ));
        for row in &t.rows {
            out.push(format!(
                "INSERT INTO {} VALUES ({})",
                t.name,
                row.join(", ")
            ));
        }
    }
    out
}

/// Columns in scope: (qualified name).
struct Scope {
    cols: Vec<String>,
}

fn expr(r: &mut Rng, s: &Scope, tables: &[Table], depth: usize) -> String {
    if depth == 0 || r.chance(30) {
        return if r.chance(70) && !s.cols.is_empty() {
            r.pick(&s.cols).clone()
        } else {
            literal(r)
        };
    }
    let d = depth - 1;
    // Without tables (UPDATE ... SET values) no subqueries: when a subquery reads the table
    // being updated, SQLite's choice between evaluating it once and per row is not something
    // ORMDB reproduces (docs/COMPAT.md).
    let kinds = if tables.is_empty() { 19 } else { 22 };
    match r.below(kinds) {
        0..=3 => format!(
            "({} {} {})",
            expr(r, s, tables, d),
            r.pick(&["+", "-", "*", "/", "%", "||"]),
            expr(r, s, tables, d)
        ),
        4..=7 => format!(
            "({} {} {})",
            expr(r, s, tables, d),
            r.pick(&["=", "<>", "<", "<=", ">", ">=", "IS", "IS NOT"]),
            expr(r, s, tables, d)
        ),
        8 => format!(
            "({} {} {})",
            expr(r, s, tables, d),
            r.pick(&["AND", "OR"]),
            expr(r, s, tables, d)
        ),
        9 => format!("(NOT {})", expr(r, s, tables, d)),
        10 => format!(
            "({} IS {}NULL)",
            expr(r, s, tables, d),
            if r.chance(50) { "NOT " } else { "" }
        ),
        11 => {
            let n = 1 + r.below(4);
            let items: Vec<String> = (0..n).map(|_| literal(r)).collect();
            format!(
                "({} {}IN ({}))",
                expr(r, s, tables, d),
                if r.chance(30) { "NOT " } else { "" },
                items.join(", ")
            )
        }
        12 => format!(
            "({} {}BETWEEN {} AND {})",
            expr(r, s, tables, d),
            if r.chance(30) { "NOT " } else { "" },
            literal(r),
            literal(r)
        ),
        13 => format!(
            "({} {}LIKE '{}')",
            expr(r, s, tables, d),
            if r.chance(30) { "NOT " } else { "" },
            r.pick(&["a%", "%b", "_", "%", "A_", "1%"])
        ),
        14 => format!(
            "CASE WHEN {} THEN {} ELSE {} END",
            expr(r, s, tables, d),
            expr(r, s, tables, d),
            expr(r, s, tables, d)
        ),
        15 => format!(
            "{}({}, {})",
            r.pick(&["coalesce", "ifnull", "nullif", "max", "min"]),
            expr(r, s, tables, d),
            expr(r, s, tables, d)
        ),
        16 => format!(
            "{}({})",
            r.pick(&["abs", "length", "lower", "upper", "typeof", "quote"]),
            expr(r, s, tables, d)
        ),
        17 => format!(
            "CAST({} AS {})",
            expr(r, s, tables, d),
            r.pick(&["INTEGER", "REAL", "TEXT", "NUMERIC"])
        ),
        18 => format!(
            "substr({}, {}, {})",
            expr(r, s, tables, d),
            r.below(4) as i64 - 1,
            r.below(4)
        ),
        19 => {
            let t = r.pick(tables);
            let c = &r.pick(&t.cols[1..]).0;
            let outer = if s.cols.is_empty() {
                literal(r)
            } else {
                r.pick(&s.cols).clone()
            };
            format!(
                "(SELECT {} FROM {} x WHERE x.{c} = {outer})",
                r.pick(&["count(*)", "max(x.id)", "min(x.id)"]),
                t.name
            )
        }
        20 => {
            let t = r.pick(tables);
            let c = &r.pick(&t.cols[1..]).0;
            let outer = if s.cols.is_empty() {
                literal(r)
            } else {
                r.pick(&s.cols).clone()
            };
            format!(
                "({}EXISTS (SELECT 1 FROM {} x WHERE x.{c} = {outer}))",
                if r.chance(30) { "NOT " } else { "" },
                t.name
            )
        }
        _ => {
            let t = r.pick(tables);
            let c = &r.pick(&t.cols[1..]).0;
            format!(
                "({} {}IN (SELECT {c} FROM {}))",
                expr(r, s, tables, d),
                if r.chance(30) { "NOT " } else { "" },
                t.name
            )
        }
    }
}

fn query(r: &mut Rng, tables: &[Table]) -> String {
    let t1 = r.pick(tables).clone();
    let first = if r.chance(15) {
        format!("v_{}", t1.name)
    } else {
        t1.name.clone()
    };
    let mut from = format!("{first} a");
    let mut cols: Vec<String> = t1.cols.iter().map(|(n, _)| format!("a.{n}")).collect();
    if r.chance(40) {
        let t2 = r.pick(tables).clone();
        let kind = *r.pick(&[
            "JOIN",
            "LEFT JOIN",
            "CROSS JOIN",
            "JOIN",
            "LEFT JOIN",
            "RIGHT JOIN",
            "FULL JOIN",
        ]);
        let on = if kind == "CROSS JOIN" {
            String::new()
        } else {
            format!(" ON a.{} = b.{}", r.pick(&t1.cols).0, r.pick(&t2.cols).0)
        };
        from = format!("{from} {kind} {} b{on}", t2.name);
        cols.extend(t2.cols.iter().map(|(n, _)| format!("b.{n}")));
    }
    let scope = Scope { cols };
    let where_ = if r.chance(70) {
        format!(" WHERE {}", expr(r, &scope, tables, 3))
    } else {
        String::new()
    };
    let grouped = r.chance(25);
    if grouped {
        let g = r.pick(&scope.cols).clone();
        let agg_arg = r.pick(&scope.cols).clone();
        let agg = match r.below(7) {
            0 => "count(*)".to_string(),
            1 => format!("count({agg_arg})"),
            2 => format!("count(DISTINCT {agg_arg})"),
            3 => format!("sum({agg_arg})"),
            4 => format!("min({agg_arg})"),
            5 => format!("max({agg_arg})"),
            _ => format!("total({agg_arg})"),
        };
        let having = if r.chance(30) {
            " HAVING count(*) > 1".to_string()
        } else {
            String::new()
        };
        return format!("SELECT {g}, {agg} FROM {from}{where_} GROUP BY {g}{having} ORDER BY 1, 2");
    }
    let n = 1 + r.below(3);
    let mut items: Vec<String> = (0..n).map(|_| expr(r, &scope, tables, 2)).collect();
    if r.chance(10) {
        // A window function; its ORDER BY ends with the row ids so that row_number() and
        // friends have one answer.
        let part = r.pick(&scope.cols).clone();
        let ord = r.pick(&scope.cols).clone();
        let ids = if from.contains(" b") {
            "a.id, b.id"
        } else {
            "a.id"
        };
        let arg = r.pick(&scope.cols).clone();
        let f = match r.below(8) {
            0 => "row_number()".to_string(),
            1 => "rank()".to_string(),
            2 => "dense_rank()".to_string(),
            3 => format!("count({arg})"),
            4 => format!("max({arg})"),
            5 => format!("lag({arg})"),
            6 => format!("first_value({arg})"),
            _ => "count(*)".to_string(),
        };
        let over = match r.below(3) {
            0 => format!("PARTITION BY {part} ORDER BY {ord}, {ids}"),
            1 => format!(
                "ORDER BY {ord}{}, {ids}",
                if r.chance(50) { " DESC" } else { "" }
            ),
            _ => format!("PARTITION BY {part}"),
        };
        let f = if over.starts_with("PARTITION BY")
            && !over.contains("ORDER")
            && !f.starts_with("count")
            && !f.starts_with("max")
        {
            "count(*)".to_string()
        } else {
            f
        };
        let frame = if over.contains("ORDER") && r.chance(40) {
            let units = *r.pick(&["ROWS", "GROUPS", "RANGE"]);
            let a = r.below(3);
            let b = r.below(3);
            match r.below(4) {
                0 => format!(" {units} BETWEEN {a} PRECEDING AND {b} FOLLOWING"),
                1 => format!(" {units} {a} PRECEDING"),
                2 => format!(" {units} BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING"),
                _ => format!(" {units} BETWEEN {a} FOLLOWING AND {} FOLLOWING", a + b),
            }
        } else {
            String::new()
        };
        items[0] = format!("{f} OVER ({over}{frame})");
    }
    let distinct = if r.chance(15) { "DISTINCT " } else { "" };
    let mut q = format!("SELECT {distinct}{} FROM {from}{where_}", items.join(", "));
    let joined = from.contains(" b");
    if distinct.is_empty() && r.chance(20) {
        // LIMIT picks rows by the order, so the order must be total: break ties by row ids
        // (1 and 1.0 tie, and SQLite's top-N sorter does not keep ties in input order).
        let order: Vec<String> = (1..=n)
            .map(|i| format!("{i}{}", if r.chance(30) { " DESC" } else { "" }))
            .collect();
        let ids = if joined { "a.id, b.id" } else { "a.id" };
        return format!(
            "{q} ORDER BY {}, {ids} LIMIT {} OFFSET {}",
            order.join(", "),
            r.below(5) as i64 - 1,
            r.below(3)
        );
    }
    if r.chance(10) {
        let t = r.pick(tables);
        let other: Vec<String> = (0..n)
            .map(|_| format!("{}.{}", t.name, r.pick(&t.cols).0))
            .collect();
        q = format!(
            "{q} {} SELECT {} FROM {}",
            r.pick(&["UNION", "UNION ALL", "INTERSECT", "EXCEPT"]),
            other.join(", "),
            t.name
        );
    }
    if r.chance(50) {
        let order: Vec<String> = (1..=n)
            .map(|i| format!("{i}{}", if r.chance(30) { " DESC" } else { "" }))
            .collect();
        q = format!("{q} ORDER BY {}", order.join(", "));
    }
    q
}

fn mutation(r: &mut Rng, tables: &[Table]) -> String {
    let t = r.pick(tables);
    if r.chance(30) {
        // Inserts name their ids (row id allocation after deletes differs by design).
        let vals: Vec<String> = t.writable().iter().map(|_| literal(r)).collect();
        let id = 1 + r.below(20);
        let c = &r.pick(t.writable()).0;
        return match r.below(4) {
            0 => format!("INSERT INTO {} VALUES ({id}, {})", t.name, vals.join(", ")),
            1 => format!("INSERT OR IGNORE INTO {} VALUES ({id}, {})", t.name, vals.join(", ")),
            2 => format!("INSERT OR REPLACE INTO {} VALUES ({id}, {})", t.name, vals.join(", ")),
            _ => format!(
                "INSERT INTO {} VALUES ({id}, {}) ON CONFLICT (id) DO UPDATE SET {c} = excluded.{c} WHERE {c} IS NOT excluded.{c}",
                t.name,
                vals.join(", ")
            ),
        };
    }
    let scope = Scope {
        cols: t.cols.iter().map(|(n, _)| n.clone()).collect(),
    };
    let w = expr(r, &scope, tables, 2);
    if r.chance(50) {
        let c = &r.pick(t.writable()).0;
        format!(
            "UPDATE {} SET {c} = {} WHERE {w}",
            t.name,
            expr(r, &scope, &[], 2)
        )
    } else {
        format!("DELETE FROM {} WHERE {w}", t.name)
    }
}

fn fresh(setup: &[String]) -> Diff {
    let mut d = Diff::new();
    for s in setup {
        d.check(s, &[]);
    }
    d
}

/// Removes rows while the mismatch persists; returns the reproducer script.
fn shrink(tables: &[Table], history: &[String], stmts: &[String]) -> String {
    let fails = |ts: &[Table]| {
        let mut d = fresh(&setup_sql(ts));
        for h in history {
            d.check(h, &[]);
        }
        d.mismatches.clear();
        stmts
            .iter()
            .map(|s| d.check(s, &[]))
            .collect::<Vec<_>>()
            .contains(&false)
    };
    let mut cur: Vec<Table> = tables.to_vec();
    let mut tries = 0;
    'outer: loop {
        for ti in 0..cur.len() {
            for ri in 0..cur[ti].rows.len() {
                tries += 1;
                if tries > 80 {
                    break 'outer;
                }
                let mut cand = cur.clone();
                cand[ti].rows.remove(ri);
                if fails(&cand) {
                    cur = cand;
                    continue 'outer;
                }
            }
        }
        break;
    }
    let mut script: Vec<String> = setup_sql(&cur);
    script.extend(history.iter().cloned());
    script.extend(stmts.iter().cloned());
    script.join(";\n") + ";"
}

#[test]
fn random_queries_match_sqlite() {
    let total: usize = std::env::var("SQL_RANDOM_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let seed: u64 = std::env::var("SQL_RANDOM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EED_0DB5);
    let mut r = Rng(seed | 1);
    let per_schema = 250;
    let mut run = 0;
    let mut failures = Vec::new();
    let mut unsupported = 0;
    while run < total {
        let tables = schema(&mut r);
        let setup = setup_sql(&tables);
        let mut d = fresh(&setup);
        assert!(
            d.mismatches.is_empty() && d.unsupported.is_empty(),
            "setup differs:\n{}",
            d.report()
        );
        let mut history: Vec<String> = Vec::new();
        for _ in 0..per_schema {
            if run >= total {
                break;
            }
            run += 1;
            let stmt = if r.chance(4) {
                mutation(&mut r, &tables)
            } else {
                query(&mut r, &tables)
            };
            let before_u = d.unsupported.len();
            if !d.check(&stmt, &[]) {
                if d.unsupported.len() > before_u {
                    unsupported += 1;
                    if unsupported <= 5 {
                        eprintln!(
                            "unsupported: {}",
                            d.unsupported.last().map(String::as_str).unwrap_or("")
                        );
                    }
                } else if failures.len() < 5 {
                    let detail = d.mismatches.last().cloned().unwrap_or_default();
                    failures.push(format!(
                        "{detail}\n-- reproducer:\n{}",
                        shrink(&tables, &history, std::slice::from_ref(&stmt))
                    ));
                }
            }
            if stmt.starts_with("UPDATE")
                || stmt.starts_with("DELETE")
                || stmt.starts_with("INSERT")
            {
                // A mutation must leave the same rows: compare the table right away, so a
                // difference is reported at the statement that caused it.
                let table = stmt
                    .split_whitespace()
                    .find(|w| {
                        w.starts_with('t')
                            && w[1..].chars().all(|c| c.is_ascii_digit())
                            && w.len() > 1
                    })
                    .unwrap_or("t0");
                let dump = format!("SELECT * FROM {table} ORDER BY id");
                if d.mismatches.is_empty()
                    && d.unsupported.is_empty()
                    && !d.check(&dump, &[])
                    && failures.len() < 5
                {
                    let detail = d.mismatches.last().cloned().unwrap_or_default();
                    failures.push(format!(
                        "after {stmt}:\n{detail}\n-- reproducer:\n{}",
                        shrink(&tables, &history, &[stmt.clone(), dump.clone()])
                    ));
                }
                if d.mismatches.len() + d.unsupported.len() > 0 {
                    break; // the two databases may now differ: start a new schema
                }
                history.push(stmt);
            }
        }
    }
    println!(
        "random differential: {run} statements, {} mismatches, {unsupported} unsupported",
        failures.len()
    );
    assert!(
        failures.is_empty() && unsupported == 0,
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
