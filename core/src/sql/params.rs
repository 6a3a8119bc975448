//! Statement parameters: `?`, `?NNN`, `:name`, `@name`, `$name`, numbered the way SQLite numbers
//! them (a bare `?` takes the largest number so far plus one; a name keeps the number it got
//! the first time it appeared), bound by position or by name.

use std::collections::HashMap;

use sqlparser::tokenizer::Location;

use crate::error::{Error, Result, SqlState};
use crate::value::Value;

/// Values bound to a statement's parameters (rkyv-archivable: the network protocol carries them).
#[derive(Debug, Clone, Default, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Params {
    /// No parameters.
    #[default]
    None,
    /// By number: the first value binds parameter 1 (`?`, `?1`, or the first name).
    Positional(Vec<Value>),
    /// By name, with or without the `:`/`@`/`$` sigil.
    Named(Vec<(String, Value)>),
}

impl Params {
    pub fn is_empty(&self) -> bool {
        match self {
            Params::None => true,
            Params::Positional(v) => v.is_empty(),
            Params::Named(v) => v.is_empty(),
        }
    }
}

impl From<Vec<Value>> for Params {
    fn from(v: Vec<Value>) -> Self {
        Params::Positional(v)
    }
}

impl From<&[Value]> for Params {
    fn from(v: &[Value]) -> Self {
        Params::Positional(v.to_vec())
    }
}

/// The values of one statement's placeholders, one per occurrence in text order, found by the
/// placeholder's source location.
#[derive(Debug, Default)]
pub struct Bound {
    /// Source location (line, column) of each occurrence, ascending (the tokenizer's order).
    locations: Vec<(u64, u64)>,
    pub values: Vec<Value>,
}

impl Bound {
    /// Numbers the placeholders (in text order) and takes their values from `params`.
    pub fn bind(placeholders: &[(Location, String)], params: &Params) -> Result<Bound> {
        Ok(Bound {
            locations: placeholders
                .iter()
                .map(|(l, _)| (l.line, l.column))
                .collect(),
            values: Self::values(placeholders, params)?,
        })
    }

    /// The value of each placeholder occurrence, in text order (what a cached plan needs: its
    /// parameter slots name occurrences).
    pub fn values(placeholders: &[(Location, String)], params: &Params) -> Result<Vec<Value>> {
        let mut numbers: Vec<usize> = Vec::with_capacity(placeholders.len());
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut max = 0usize;
        for (_, p) in placeholders {
            let n = if p == "?" {
                max + 1
            } else if let Some(d) = p.strip_prefix('?') {
                let n: usize = d.parse().map_err(|_| {
                    Error::new(SqlState::SyntaxError, format!("bad parameter number {p}"))
                })?;
                if n == 0 || n > 32766 {
                    return Err(Error::new(
                        SqlState::SyntaxError,
                        format!("variable number must be between ?1 and ?32766: {p}"),
                    ));
                }
                n
            } else {
                *names.entry(p.as_str()).or_insert(max + 1)
            };
            max = max.max(n);
            numbers.push(n);
        }
        let mut values = Vec::with_capacity(placeholders.len());
        for ((_, p), n) in placeholders.iter().zip(numbers) {
            let v = match params {
                Params::None => None,
                Params::Positional(v) => v.get(n - 1).cloned(),
                Params::Named(list) => {
                    let bare = p.trim_start_matches([':', '@', '$', '?']);
                    list.iter()
                        .find(|(k, _)| k == p || k.trim_start_matches([':', '@', '$']) == bare)
                        .map(|(_, v)| v.clone())
                }
            };
            let v = match v {
                Some(v) => v,
                None if matches!(params, Params::None) => Value::Null,
                None => {
                    return Err(Error::new(
                        SqlState::InvalidParameter,
                        format!("no value bound for parameter {p} (number {n})"),
                    ))
                }
            };
            values.push(v);
        }
        if let Params::Positional(v) = params {
            if v.len() > max {
                return Err(Error::new(
                    SqlState::InvalidParameter,
                    format!(
                        "incorrect number of bindings supplied: the statement uses {max}, {} were supplied",
                        v.len()
                    ),
                ));
            }
        }
        Ok(values)
    }

    /// Which occurrence (in text order) the placeholder at `loc` is.
    pub fn occurrence_at(&self, loc: Location) -> Result<usize> {
        self.locations
            .binary_search(&(loc.line, loc.column))
            .map_err(|_| Error::internal("a parameter whose location the tokenizer did not see"))
    }

    pub fn value_at(&self, loc: Location) -> Result<Value> {
        let i = self.occurrence_at(loc)?;
        Ok(self.values[i].clone())
    }
}
