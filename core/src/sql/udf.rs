//! Application-defined scalar functions (`sqlite3_create_function`): the DB-API, JDBC and Node
//! bindings register their language's callables here (Django's `django_*` helpers, REGEXP,
//! SQLAlchemy's `floor`). A registered function takes precedence over a built-in of the same
//! name and arity, as in SQLite.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::error::Result;
use crate::value::Value;

/// The callable behind a function: it gets the argument values and returns one value.
pub type ScalarFn = Arc<dyn Fn(&[Value]) -> Result<Value> + Send + Sync>;

/// One registered function, shared with the compiled expressions that call it.
#[derive(Clone)]
pub struct UserFunction {
    pub name: String,
    /// Number of arguments, or -1 for any number.
    pub n_args: i32,
    /// Whether the same arguments always give the same result.
    pub deterministic: bool,
    pub f: ScalarFn,
}

impl fmt::Debug for UserFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.name, self.n_args)
    }
}

/// The functions of one session, by lower-case name.
#[derive(Clone, Default)]
pub struct UserFunctions {
    by_name: HashMap<String, Vec<UserFunction>>,
}

impl UserFunctions {
    pub fn register(&mut self, func: UserFunction) {
        let list = self
            .by_name
            .entry(func.name.to_ascii_lowercase())
            .or_default();
        list.retain(|g| g.n_args != func.n_args);
        list.push(func);
    }

    /// Removes every registration of `name` with `n_args` arguments.
    pub fn remove(&mut self, name: &str, n_args: i32) {
        if let Some(list) = self.by_name.get_mut(&name.to_ascii_lowercase()) {
            list.retain(|g| g.n_args != n_args);
        }
    }

    /// The function to call for `name` with `n` arguments: an exact arity wins over -1.
    pub fn find(&self, name: &str, n: usize) -> Option<&UserFunction> {
        let list = self.by_name.get(&name.to_ascii_lowercase())?;
        list.iter()
            .find(|g| g.n_args >= 0 && g.n_args as usize == n)
            .or_else(|| list.iter().find(|g| g.n_args < 0))
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.values().all(Vec::is_empty)
    }
}
