//! Functions registered on a [`Session`](super::Session) by the embedding application:
//! scalar functions (sqlite3's `create_function`) and aggregates (`create_aggregate`); bindings
//! register callbacks into their language here. A registered function takes precedence over a
//! built-in of the same name and argument count, as in SQLite.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::error::Result;
use crate::value::Value;

/// The callback: argument values in, one value (or an error) out.
pub type ScalarFn = Arc<dyn Fn(&[Value]) -> Result<Value> + Send + Sync>;

/// An aggregate callback: the argument rows of one group (after FILTER and DISTINCT), in
/// input order, to the aggregate's value. The rows are collected and handed over when the group
/// is finished, so the callback sees exactly the step calls SQLite would make.
pub type AggregateFn = Arc<dyn Fn(&[Vec<Value>]) -> Result<Value> + Send + Sync>;

#[derive(Clone)]
pub struct UserAggregate {
    /// The name it was called by (for messages).
    pub name: String,
    pub func: AggregateFn,
}

impl fmt::Debug for UserAggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserAggregate({})", self.name)
    }
}

#[derive(Clone)]
pub struct UserFunction {
    pub func: ScalarFn,
    /// Whether equal arguments always give equal results.
    pub deterministic: bool,
}

/// Entries by lower-case name and argument count (`None`: any count).
#[derive(Clone)]
struct Registry<T> {
    by_name: HashMap<String, Vec<(Option<usize>, T)>>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry {
            by_name: HashMap::new(),
        }
    }
}

impl<T> Registry<T> {
    fn register(&mut self, name: &str, nargs: Option<usize>, f: T) {
        let list = self.by_name.entry(name.to_ascii_lowercase()).or_default();
        list.retain(|(n, _)| *n != nargs);
        list.push((nargs, f));
    }

    fn remove(&mut self, name: &str, nargs: Option<usize>) -> bool {
        let key = name.to_ascii_lowercase();
        let Some(list) = self.by_name.get_mut(&key) else {
            return false;
        };
        let before = list.len();
        list.retain(|(n, _)| *n != nargs);
        let removed = list.len() != before;
        if list.is_empty() {
            self.by_name.remove(&key);
        }
        removed
    }

    fn get(&self, name: &str, nargs: usize) -> Option<&T> {
        let list = self.by_name.get(name)?;
        list.iter()
            .find(|(n, _)| *n == Some(nargs))
            .or_else(|| list.iter().find(|(n, _)| n.is_none()))
            .map(|(_, f)| f)
    }

    fn names(&self) -> Vec<&String> {
        let mut names: Vec<&String> = self.by_name.keys().collect();
        names.sort();
        names
    }
}

/// The functions and aggregates registered on a session.
#[derive(Clone, Default)]
pub struct UserFunctions {
    scalars: Registry<UserFunction>,
    aggregates: Registry<UserAggregate>,
}

impl UserFunctions {
    /// Registers (or replaces) `name` taking `nargs` arguments (`None`: any number).
    pub fn register(&mut self, name: &str, nargs: Option<usize>, f: UserFunction) {
        self.scalars.register(name, nargs, f);
    }

    /// Removes `name` with `nargs`; returns whether it was registered.
    pub fn remove(&mut self, name: &str, nargs: Option<usize>) -> bool {
        self.scalars.remove(name, nargs)
    }

    /// The function called for `name` with `nargs` arguments: an exact argument count wins over
    /// a variadic registration. `name` must be lower case.
    pub fn get(&self, name: &str, nargs: usize) -> Option<&UserFunction> {
        self.scalars.get(name, nargs)
    }

    /// Registers (or replaces) aggregate `name` taking `nargs` arguments (`None`: any number).
    pub fn register_aggregate(&mut self, name: &str, nargs: Option<usize>, f: UserAggregate) {
        self.aggregates.register(name, nargs, f);
    }

    pub fn remove_aggregate(&mut self, name: &str, nargs: Option<usize>) -> bool {
        self.aggregates.remove(name, nargs)
    }

    /// The aggregate called for `name` with `nargs` arguments (`name` in lower case).
    pub fn get_aggregate(&self, name: &str, nargs: usize) -> Option<&UserAggregate> {
        self.aggregates.get(name, nargs)
    }

    pub fn is_empty(&self) -> bool {
        self.scalars.by_name.is_empty() && self.aggregates.by_name.is_empty()
    }
}

impl fmt::Debug for UserFunctions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserFunctions")
            .field("scalars", &self.scalars.names())
            .field("aggregates", &self.aggregates.names())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constant(v: i64) -> UserFunction {
        UserFunction {
            func: Arc::new(move |_| Ok(Value::Integer(v))),
            deterministic: true,
        }
    }

    #[test]
    fn exact_arity_wins_over_variadic_and_remove_works() {
        let mut u = UserFunctions::default();
        u.register("F", None, constant(1));
        u.register("f", Some(2), constant(2));
        let call = |u: &UserFunctions, n| (u.get("f", n).unwrap().func)(&[]).unwrap();
        assert_eq!(call(&u, 2), Value::Integer(2));
        assert_eq!(call(&u, 3), Value::Integer(1));
        assert!(u.remove("f", Some(2)));
        assert_eq!(call(&u, 2), Value::Integer(1));
        assert!(!u.remove("f", Some(2)));
        assert!(u.remove("F", None));
        assert!(u.get("f", 0).is_none());
        assert!(u.is_empty());
    }

    #[test]
    fn sessions_are_send_and_call_registered_functions() {
        fn assert_send<T: Send>() {}
        assert_send::<crate::sql::Session>();
        let db = crate::Database::temporary().unwrap();
        let mut s = db.connect().sql();
        s.execute_batch("CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (1), (2), (3);")
            .unwrap();
        s.create_function(
            "twice",
            Some(1),
            UserFunction {
                func: Arc::new(|a: &[Value]| {
                    Ok(match &a[0] {
                        Value::Integer(i) => Value::Integer(i * 2),
                        _ => Value::Null,
                    })
                }),
                deterministic: true,
            },
        );
        // A registered function overrides the built-in of the same name and arity.
        s.create_function(
            "abs",
            Some(1),
            UserFunction {
                func: Arc::new(|_| Err(crate::Error::internal("user abs called"))),
                deterministic: false,
            },
        );
        let r = s
            .execute(
                "SELECT twice(x) FROM t WHERE twice(x) > 2 ORDER BY x",
                &crate::Params::None,
            )
            .unwrap();
        assert_eq!(
            r.rows,
            vec![vec![Value::Integer(4)], vec![Value::Integer(6)]]
        );
        let e = s
            .execute("SELECT abs(-1)", &crate::Params::None)
            .unwrap_err();
        assert_eq!(e.message, "user abs called");
        // Wrong arity is not the registered function.
        let e = s
            .execute("SELECT twice(1, 2)", &crate::Params::None)
            .unwrap_err();
        assert_eq!(e.code(), "0A000");
        // sqlparser's FLOOR/CEIL special forms reach a registered function of that name.
        s.create_function(
            "floor",
            Some(1),
            UserFunction {
                func: Arc::new(|a: &[Value]| {
                    Ok(Value::Integer(a[0].as_f64().unwrap_or(0.0).floor() as i64))
                }),
                deterministic: true,
            },
        );
        let r = s
            .execute("SELECT floor(2.5)", &crate::Params::None)
            .unwrap();
        assert_eq!(r.rows, vec![vec![Value::Integer(2)]]);
        // Without a registered one, the built-in math function answers.
        let r = s.execute("SELECT ceil(2.5)", &crate::Params::None).unwrap();
        assert_eq!(r.rows, vec![vec![Value::Real(3.0)]]);
        assert!(s.remove_function("abs", Some(1)));
        let r = s.execute("SELECT abs(-1)", &crate::Params::None).unwrap();
        assert_eq!(r.rows, vec![vec![Value::Integer(1)]]);
    }
}

#[cfg(test)]
mod aggregate_tests {
    use super::*;
    use crate::Params;

    #[test]
    fn registered_aggregates_get_every_row_per_group() {
        let db = crate::Database::temporary().unwrap();
        let mut s = db.connect().sql();
        s.execute_batch(
            "CREATE TABLE t (g TEXT, x INTEGER);
             INSERT INTO t VALUES ('a', 1), ('a', NULL), ('a', 3), ('b', 4), ('b', 4);",
        )
        .unwrap();
        // Counts rows (NULLs included) and sums the non-NULL values.
        s.create_aggregate(
            "rows_and_sum",
            Some(1),
            UserAggregate {
                name: "rows_and_sum".into(),
                func: Arc::new(|rows: &[Vec<Value>]| {
                    let sum: i64 = rows.iter().filter_map(|r| r[0].as_i64()).sum();
                    Ok(Value::Text(format!("{}:{sum}", rows.len())))
                }),
            },
        );
        let r = s
            .execute(
                "SELECT g, rows_and_sum(x), rows_and_sum(DISTINCT x) FROM t GROUP BY g ORDER BY g",
                &Params::None,
            )
            .unwrap();
        assert_eq!(
            r.rows,
            vec![
                vec![Value::from("a"), Value::from("3:4"), Value::from("3:4")],
                vec![Value::from("b"), Value::from("2:8"), Value::from("1:4")],
            ]
        );
        // No rows: the aggregate still finishes once, with no rows.
        let r = s
            .execute("SELECT rows_and_sum(x) FROM t WHERE 0", &Params::None)
            .unwrap();
        assert_eq!(r.rows, vec![vec![Value::from("0:0")]]);
        // Errors propagate; removal restores "unknown function".
        s.create_aggregate(
            "bad",
            None,
            UserAggregate {
                name: "bad".into(),
                func: Arc::new(|_| Err(crate::Error::internal("bad aggregate"))),
            },
        );
        let e = s
            .execute("SELECT bad(x, g) FROM t", &Params::None)
            .unwrap_err();
        assert_eq!(e.message, "bad aggregate");
        assert!(s.remove_aggregate("bad", None));
        assert_eq!(
            s.execute("SELECT bad(x) FROM t", &Params::None)
                .unwrap_err()
                .code(),
            "0A000"
        );
        let e = s
            .execute("SELECT x FROM t WHERE rows_and_sum(x) > 0", &Params::None)
            .unwrap_err();
        assert_eq!(e.code(), "42601");
    }
}
