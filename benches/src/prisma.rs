//! The Prisma 7 client corpus (core/tests/data/corpus) as benchmark input: its queryRaw /
//! executeRaw statements with their logged arguments and its transaction boundaries.

use ormdb::{Params, Value};

/// The corpus directory.
pub const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../core/tests/data/corpus/");

/// A corpus file's text.
pub fn read(file: &str) -> String {
    std::fs::read_to_string(format!("{CORPUS}{file}")).expect("corpus file")
}

/// One statement of a Prisma driver-adapter log.
pub struct Stmt {
    pub sql: String,
    pub params: Params,
    /// select, insert, update, delete or transaction.
    pub kind: &'static str,
}

fn json_values(s: &str) -> Option<Vec<Value>> {
    let v: serde_json::Value = serde_json::from_str(s).ok()?;
    v.as_array()?
        .iter()
        .map(|x| {
            Some(match x {
                serde_json::Value::Null => Value::Null,
                serde_json::Value::Bool(b) => Value::Integer(*b as i64),
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => Value::Integer(i),
                    None => Value::Real(n.as_f64()?),
                },
                serde_json::Value::String(s) => Value::Text(s.clone()),
                _ => return None,
            })
        })
        .collect()
}

fn kind_of(sql: &str) -> Option<&'static str> {
    let head: String = sql
        .trim_start()
        .chars()
        .take(6)
        .collect::<String>()
        .to_ascii_uppercase();
    Some(match head.as_str() {
        "SELECT" => "select",
        "INSERT" => "insert",
        "UPDATE" => "update",
        "DELETE" => "delete",
        "BEGIN" | "COMMIT" | "ROLLBA" => "transaction",
        _ => return None,
    })
}

/// The queryRaw/executeRaw statements of a Prisma log with their arguments, and its transaction
/// boundaries (startTransaction, commit, rollback) as BEGIN / COMMIT / ROLLBACK, in order.
pub fn prisma_log(text: &str) -> Vec<Stmt> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    let push = |sql: String, args: Vec<Value>, out: &mut Vec<Stmt>| {
        if let Some(kind) = kind_of(&sql) {
            out.push(Stmt {
                sql,
                params: Params::Positional(args),
                kind,
            });
        }
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("    args=") {
            if let (Some(s), Some(args)) = (cur.take(), json_values(rest)) {
                push(s.trim().to_string(), args, &mut out);
            }
            continue;
        }
        if line.starts_with("    argTypes=") {
            continue;
        }
        let boundary = line.starts_with('[') || line.starts_with("#####") || line.trim().is_empty();
        if boundary {
            if let Some(s) = cur.take() {
                push(s.trim().to_string(), Vec::new(), &mut out);
            }
        }
        if line.starts_with('[') {
            let body = line.split_once("] ").map_or("", |(_, b)| b);
            for (prefix, sql) in [
                ("startTransaction", "BEGIN"),
                ("commit", "COMMIT"),
                ("rollback", "ROLLBACK"),
            ] {
                if body.starts_with(prefix) {
                    push(sql.to_string(), Vec::new(), &mut out);
                }
            }
            cur = body
                .strip_prefix("queryRaw: ")
                .or_else(|| body.strip_prefix("executeRaw: "))
                .map(str::to_string);
        } else if !boundary {
            if let Some(c) = cur.as_mut() {
                c.push('\n');
                c.push_str(line);
            }
        }
    }
    if let Some(s) = cur.take() {
        push(s.trim().to_string(), Vec::new(), &mut out);
    }
    out
}
