//! Corpus replay: every statement captured from real Prisma 7/6, SQLAlchemy 2 and Django 5.2
//! runs (tests/data/corpus, copied from the shared corpus), replayed in order with its logged
//! arguments on SQLite and on ORMDB, and compared. Prints per-corpus figures; fails when a
//! corpus falls below the pass count it has reached (a regression) or when a statement that
//! both engines ran gives a different answer.

mod sqldiff;

use ormdb::Value;
use sqldiff::Diff;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/corpus/");

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{DIR}{name}")).expect("corpus file")
}

/// A statement to replay; `args` None when the log truncated them.
#[derive(Debug, Clone)]
struct Stmt {
    sql: String,
    args: Option<Vec<Value>>,
}

// ---- Prisma driver-adapter logs ----

fn json_values(s: &str) -> Option<Vec<Value>> {
    let v: serde_json::Value = serde_json::from_str(s).ok()?;
    let arr = v.as_array()?;
    Some(
        arr.iter()
            .map(|x| match x {
                serde_json::Value::Null => Value::Null,
                serde_json::Value::Bool(b) => Value::Integer(*b as i64),
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => Value::Integer(i),
                    None => Value::Real(n.as_f64().unwrap_or(0.0)),
                },
                serde_json::Value::String(s) => Value::Text(s.clone()),
                other => Value::Text(other.to_string()),
            })
            .collect(),
    )
}

fn prisma(text: &str) -> Vec<Stmt> {
    let mut out: Vec<Stmt> = Vec::new();
    let mut cur: Option<String> = None;
    let flush = |cur: &mut Option<String>, out: &mut Vec<Stmt>| {
        if let Some(s) = cur.take() {
            out.push(Stmt {
                sql: s.trim().to_string(),
                args: Some(Vec::new()),
            });
        }
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("    args=") {
            if let Some(s) = cur.take() {
                out.push(Stmt {
                    sql: s.trim().to_string(),
                    args: json_values(rest),
                });
            }
            continue;
        }
        if line.starts_with("    argTypes=") {
            continue;
        }
        if line.starts_with('[') {
            flush(&mut cur, &mut out);
            let Some((_, body)) = line.split_once("] ") else {
                continue;
            };
            if let Some(sql) = body
                .strip_prefix("queryRaw: ")
                .or_else(|| body.strip_prefix("executeRaw: "))
            {
                cur = Some(sql.to_string());
            } else if body.starts_with("startTransaction") {
                out.push(Stmt {
                    sql: "BEGIN".into(),
                    args: Some(Vec::new()),
                });
            } else if body.starts_with("commit") {
                out.push(Stmt {
                    sql: "COMMIT".into(),
                    args: Some(Vec::new()),
                });
            } else if body.starts_with("rollback") {
                out.push(Stmt {
                    sql: "ROLLBACK".into(),
                    args: Some(Vec::new()),
                });
            }
            continue;
        }
        if line.starts_with("#####") || line.trim().is_empty() {
            flush(&mut cur, &mut out);
            continue;
        }
        if let Some(c) = cur.as_mut() {
            c.push('\n');
            c.push_str(line);
        }
    }
    flush(&mut cur, &mut out);
    out
}

// ---- Python DB-API traces (Django, SQLAlchemy) ----

/// Parses a Python literal tuple/list of scalars; None when truncated or not understood.
fn python_values(s: &str) -> Option<Vec<Value>> {
    let s = s.trim();
    if s == "(none)" {
        return Some(Vec::new());
    }
    let inner = s
        .strip_prefix('(')
        .and_then(|x| x.strip_suffix(')'))
        .or_else(|| s.strip_prefix('[').and_then(|x| x.strip_suffix(']')))?;
    if inner.ends_with("...") {
        return None;
    }
    let b: Vec<char> = inner.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        while i < b.len() && (b[i] == ' ' || b[i] == ',') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let is_bytes = b[i] == 'b' && i + 1 < b.len() && (b[i + 1] == '\'' || b[i + 1] == '"');
        if is_bytes {
            i += 1;
        }
        if b[i] == '\'' || b[i] == '"' {
            let q = b[i];
            i += 1;
            let mut t = String::new();
            while i < b.len() && b[i] != q {
                if b[i] == '\\' && i + 1 < b.len() {
                    i += 1;
                    t.push(match b[i] {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        c => c,
                    });
                } else {
                    t.push(b[i]);
                }
                i += 1;
            }
            i += 1;
            out.push(if is_bytes {
                Value::Blob(t.into_bytes())
            } else {
                Value::Text(t)
            });
            continue;
        }
        let start = i;
        while i < b.len() && b[i] != ',' {
            i += 1;
        }
        let tok: String = b[start..i].iter().collect::<String>().trim().to_string();
        out.push(match tok.as_str() {
            "None" => Value::Null,
            "True" => Value::Integer(1),
            "False" => Value::Integer(0),
            t => {
                if let Ok(n) = t.parse::<i64>() {
                    Value::Integer(n)
                } else if let Ok(f) = t.parse::<f64>() {
                    Value::Real(f)
                } else {
                    return None;
                }
            }
        });
    }
    Some(out)
}

fn python_trace(text: &str) -> Vec<Stmt> {
    let mut out: Vec<Stmt> = Vec::new();
    let mut cur: Option<String> = None;
    let mut last_sql: Option<String> = None;
    for line in text.lines() {
        if let Some(c) = cur.as_mut() {
            c.push('\n');
            c.push_str(line);
        } else if let Some(rest) = line.strip_prefix("SQL  ") {
            cur = Some(rest.to_string());
        } else if let Some(eng) = line.strip_prefix("ENG  ") {
            let eng = eng.trim();
            let dup = last_sql
                .as_deref()
                .is_some_and(|l| l.trim().eq_ignore_ascii_case(eng));
            if dup {
                last_sql = None;
                continue;
            }
            let stmt = Stmt {
                sql: eng.to_string(),
                args: Some(Vec::new()),
            };
            if eng.eq_ignore_ascii_case("BEGIN") && last_sql.is_some() && !out.is_empty() {
                // The implicit BEGIN ran before the statement logged just above it.
                let at = out.len() - 1;
                out.insert(at, stmt);
            } else {
                out.push(stmt);
            }
            last_sql = None;
            continue;
        } else {
            continue;
        }
        let c = cur.as_ref().expect("set above");
        let split = c
            .rfind(" | params=")
            .map(|p| (p, " | params=".len()))
            .or_else(|| c.rfind(" | params[0]=").map(|p| (p, " | params[0]=".len())));
        if let Some((p, n)) = split {
            let sql = c[..p].to_string();
            let params = c[p + n..].to_string();
            let sql = sql.strip_prefix("[executemany x").map_or(sql.clone(), |r| {
                r.split_once("] ")
                    .map_or(sql.clone(), |(_, s)| s.to_string())
            });
            let args = python_values(&params);
            last_sql = Some(sql.clone());
            out.push(Stmt { sql, args });
            cur = None;
        }
    }
    out
}

struct Figures {
    total: usize,
    agreed: usize,
    skipped: usize,
    mismatches: usize,
    unsupported: usize,
}

/// Replays `stmts` on both engines of `d`, counting the outcomes.
fn replay_into(d: &mut Diff, stmts: &[Stmt]) -> Figures {
    let mut f = Figures {
        total: stmts.len(),
        agreed: 0,
        skipped: 0,
        mismatches: 0,
        unsupported: 0,
    };
    for s in stmts {
        let Some(args) = &s.args else {
            f.skipped += 1;
            continue;
        };
        let before_u = d.unsupported.len();
        if d.check(&s.sql, args) {
            f.agreed += 1;
        } else if d.unsupported.len() > before_u {
            f.unsupported += 1;
        } else {
            f.mismatches += 1;
        }
    }
    f
}

fn replay(name: &str, setup: &[Stmt], stmts: &[Stmt]) -> (Figures, Diff) {
    let mut d = Diff::new();
    for s in setup {
        let args = s.args.clone().unwrap_or_default();
        d.check(&s.sql, &args);
    }
    d.statements = 0;
    d.mismatches.clear();
    d.unsupported.clear();
    let f = replay_into(&mut d, stmts);
    let run = f.total - f.skipped;
    println!(
        "corpus {name}: {} statements, {} replayed, {} agree with SQLite ({:.1}%), {} differ, {} unsupported (0A000), {} skipped (arguments truncated in the log)",
        f.total,
        run,
        f.agreed,
        100.0 * f.agreed as f64 / run.max(1) as f64,
        f.mismatches,
        f.unsupported,
        f.skipped
    );
    (f, d)
}

fn migrate_setup() -> Vec<Stmt> {
    sqldiff::split(&read("prisma7_migrate_diff.sql"))
        .into_iter()
        .map(|sql| Stmt {
            sql,
            args: Some(Vec::new()),
        })
        .collect()
}

fn check(name: &str, setup: &[Stmt], stmts: &[Stmt], min_agreed: usize) {
    let (f, d) = replay(name, setup, stmts);
    if f.agreed < min_agreed || std::env::var("CORPUS_VERBOSE").is_ok() {
        println!("{}", d.report());
    }
    assert!(
        f.agreed >= min_agreed,
        "{name}: {} agree, expected at least {min_agreed}\n{}",
        f.agreed,
        d.report()
    );
}

#[test]
fn prisma7_migrate_diff() {
    check("prisma7_migrate_diff.sql", &[], &migrate_setup(), 9);
}

#[test]
fn prisma7_schema_engine() {
    check(
        "prisma7_schema_engine_sql.txt",
        &[],
        &prisma(&read("prisma7_schema_engine_sql.txt")),
        36,
    );
}

#[test]
fn prisma7_client() {
    check(
        "prisma7_client_sql.txt",
        &migrate_setup(),
        &prisma(&read("prisma7_client_sql.txt")),
        82,
    );
}

#[test]
fn prisma6_client() {
    check(
        "prisma6_client_sql.txt",
        &migrate_setup(),
        &prisma(&read("prisma6_client_sql.txt")),
        91,
    );
}

#[test]
fn prisma7_relationmode() {
    check(
        "prisma7_relationmode_prisma_sql.txt",
        &migrate_setup(),
        &prisma(&read("prisma7_relationmode_prisma_sql.txt")),
        118,
    );
}

#[test]
fn django52() {
    check(
        "django52_sqlite_trace.txt",
        &[],
        &python_trace(&read("django52_sqlite_trace.txt")),
        485,
    );
}

#[test]
fn sqlalchemy2() {
    check(
        "sqlalchemy2_sqlite_trace.txt",
        &[],
        &python_trace(&read("sqlalchemy2_sqlite_trace.txt")),
        176,
    );
}

/// Every corpus replayed twice on one session, whose second pass runs its SELECTs from cached
/// compiled plans with that pass's arguments, against the same two passes on a session that
/// forgets its cache before every statement (everything compiled afresh): identical results
/// (values, types, columns, counts, ids, error classes) statement by statement. (A second pass
/// cannot be compared with SQLite: the first leaves row ids that differ where COMPAT.md says
/// row ids are never reused.)
#[test]
fn replayed_twice_with_cached_plans() {
    let corpora = [
        (
            "prisma7_client_sql.txt",
            migrate_setup(),
            prisma(&read("prisma7_client_sql.txt")),
        ),
        (
            "prisma6_client_sql.txt",
            migrate_setup(),
            prisma(&read("prisma6_client_sql.txt")),
        ),
        (
            "prisma7_relationmode_prisma_sql.txt",
            migrate_setup(),
            prisma(&read("prisma7_relationmode_prisma_sql.txt")),
        ),
        (
            "django52_sqlite_trace.txt",
            Vec::new(),
            python_trace(&read("django52_sqlite_trace.txt")),
        ),
        (
            "sqlalchemy2_sqlite_trace.txt",
            Vec::new(),
            python_trace(&read("sqlalchemy2_sqlite_trace.txt")),
        ),
    ];
    for (name, setup, stmts) in corpora {
        let mut cached = Diff::new();
        let mut fresh = Diff::new();
        for d in [&mut cached, &mut fresh] {
            for s in &setup {
                d.run_ormdb(&s.sql, s.args.as_deref().unwrap_or_default());
            }
        }
        let (hits0, _) = cached.s.plan_cache_stats();
        let mut compared = 0;
        for pass in 1..=2 {
            for s in &stmts {
                let Some(args) = &s.args else { continue };
                let a = cached.run_ormdb(&s.sql, args);
                fresh.s.clear_cache();
                let b = fresh.run_ormdb(&s.sql, args);
                compared += 1;
                assert_eq!(
                    a, b,
                    "{name}, pass {pass}: cached plan vs compiled afresh\n{}\n{args:?}",
                    s.sql
                );
            }
        }
        let (hits, misses) = cached.s.plan_cache_stats();
        println!(
            "corpus {name}: {compared} statements compared over two passes; plan cache {} hits, {misses} misses",
            hits - hits0
        );
        assert!(hits - hits0 > 0, "{name}: no plan reused");
        assert_eq!(fresh.s.plan_cache_stats().0, 0, "{name}: the fresh session reused a plan");
    }
}
