//! Temporary tables (CREATE TEMP TABLE). They are ordinary catalog entities whose stored name
//! carries the owning session's tag (`sqlite_temp_<n>_<name>`): names starting with `sqlite_`
//! are reserved, so a tag can never meet a user's table. Only the owning session resolves its
//! tagged names (temp first, as SQLite resolves unqualified names); every other session and
//! `sqlite_master` skip all tagged entities. The session drops its tables when it closes, and
//! opening a database drops any a crash left behind, so they never outlive their session
//! visibly.

use std::sync::atomic::{AtomicU64, Ordering};

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

use super::parse::refuse_sequence_table;
use crate::catalog::Schema;
use crate::error::{Error, Result};

pub use crate::catalog::{
    is_temp_entity_name as is_temp_entity, TEMP_ENTITY_PREFIX as TEMP_PREFIX,
};

/// One session's temporary namespace.
#[derive(Debug, Clone)]
pub struct TempNames {
    tag: String,
}

/// A table name as written: which schema it was qualified with, and the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    None,
    Main,
    Temp,
}

impl Default for TempNames {
    fn default() -> Self {
        Self::new()
    }
}

impl TempNames {
    pub fn new() -> TempNames {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        TempNames {
            tag: format!("{TEMP_PREFIX}{}_", NEXT.fetch_add(1, Ordering::Relaxed)),
        }
    }

    /// The stored name of this session's temporary table `name`.
    pub fn stored(&self, name: &str) -> String {
        format!("{}{name}", self.tag)
    }

    /// The name as the session knows it, when `stored` is one of its temporary tables.
    pub fn shown<'a>(&self, stored: &'a str) -> Option<&'a str> {
        stored
            .get(..self.tag.len())
            .filter(|p| p.eq_ignore_ascii_case(&self.tag))
            .map(|_| &stored[self.tag.len()..])
    }

    /// Replaces stored names in a message (constraint errors name the entity).
    pub fn unmangle(&self, text: &str) -> String {
        text.replace(&self.tag, "")
    }

    /// The stored name of the table `name` refers to: a `temp.` name is this session's
    /// temporary table, a `main.` name never is, and an unqualified name is the temporary
    /// table when one exists (SQLite looks in temp first).
    pub fn resolve(&self, schema: &Schema, name: &ObjectName) -> Result<String> {
        let (q, t) = split(name)?;
        Ok(match q {
            Qualifier::Temp => self.stored(&t),
            Qualifier::Main => t,
            Qualifier::None => {
                let s = self.stored(&t);
                if schema.entity_pos(&s).is_some() {
                    s
                } else {
                    t
                }
            }
        })
    }

    /// Stored names of this session's temporary views.
    pub fn owned_views(&self, schema: &Schema) -> Vec<String> {
        schema
            .views()
            .iter()
            .filter(|v| self.shown(&v.name).is_some())
            .map(|v| v.name.clone())
            .collect()
    }

    /// Stored names of this session's temporary tables.
    pub fn owned(&self, schema: &Schema) -> Vec<String> {
        schema
            .entities()
            .iter()
            .filter(|e| self.shown(&e.name).is_some())
            .map(|e| e.name.clone())
            .collect()
    }
}

/// Splits a possibly schema-qualified table name.
pub fn split(name: &ObjectName) -> Result<(Qualifier, String)> {
    let parts: Vec<&Ident> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Ok(i),
            ObjectNamePart::Function(_) => Err(Error::unsupported(format!("object name {name}"))),
        })
        .collect::<Result<_>>()?;
    let (q, t) = match parts.as_slice() {
        [t] => (Qualifier::None, t),
        [s, t] if s.value.eq_ignore_ascii_case("main") => (Qualifier::Main, t),
        [s, t]
            if s.value.eq_ignore_ascii_case("temp")
                || s.value.eq_ignore_ascii_case("temporary") =>
        {
            (Qualifier::Temp, t)
        }
        _ => return Err(Error::unsupported(format!("schema-qualified name {name}"))),
    };
    refuse_sequence_table(&t.value)?;
    if is_temp_entity(&t.value) {
        // Another session's temporary table, named by its stored name.
        return Err(Error::unknown_entity(&t.value));
    }
    Ok((q, t.value.clone()))
}

/// The stored name of the table `name` refers to, for a session with temporary tables
/// `temp` (none: the name as written, `temp.` names unknown).
pub fn resolve(temp: Option<&TempNames>, schema: &Schema, name: &ObjectName) -> Result<String> {
    match temp {
        Some(t) => t.resolve(schema, name),
        None => match split(name)? {
            (Qualifier::Temp, t) => Err(Error::unknown_entity(&format!("temp.{t}"))),
            (_, t) => Ok(t),
        },
    }
}
