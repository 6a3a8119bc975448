//! A graph fetch result as ORM objects built here rather than in Python: `Connection.fetch_objects`.
//! The nested dicts of `fetch` cost one dict per row that an ORM then turns into an instance in
//! Python, one attribute at a time; for the Django backend's `.graph()` that was most of the
//! time after the fetch itself, and every intermediate dict was also work for the cyclic
//! garbage collector. Here each row becomes its instance directly: `object.__new__(cls)`, a
//! state object, the field values (through the column's converter where the plan names one)
//! written to the instance dict, and the relation caches filled as the plan describes.
//!
//! The plan is a tree of dicts mirroring the fetch's includes (see `Plan::parse` for the keys).
//! Everything ORM-specific that is not plain storage (a to-many relation's container, a model
//! that must go through its own constructor) is a Python callable the plan supplies.

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::graph::Tree;
use crate::values::to_py;

enum Kind<'py> {
    Root,
    /// The one include of a `Through` plan: its objects go to the join's `attach`.
    Rows,
    /// The related object (or None) goes into the parent's `fields_cache[cache]`; with `back`,
    /// the parent goes into the related object's `fields_cache[back]` (one-to-one relations).
    ToOne {
        cache: Bound<'py, PyString>,
        back: Option<Bound<'py, PyString>>,
    },
    /// The related objects, each with the parent in `fields_cache[child_cache]` when given, are
    /// handed to `attach(parent, list)`.
    ToMany {
        child_cache: Option<Bound<'py, PyString>>,
        attach: Bound<'py, PyAny>,
    },
    /// A to-many relation read through an include of a join table: its single child include
    /// holds the related objects; the join rows themselves become no objects.
    Through {
        attach: Bound<'py, PyAny>,
    },
}

/// How the rows of one include become objects.
struct Plan<'py> {
    key: Option<Bound<'py, PyString>>,
    /// With `from_db`: `from_db(values)` makes the object (a model with its own constructor).
    /// Otherwise `object.__new__(cls)` with a fresh `state_cls` object (`adding = False`,
    /// `db = db`) under `_state` and the values under their attribute names.
    cls: Bound<'py, PyAny>,
    from_db: Option<Bound<'py, PyAny>>,
    columns: Vec<String>,
    attnames: Vec<Bound<'py, PyString>>,
    converters: Vec<Option<Bound<'py, PyAny>>>,
    kind: Kind<'py>,
    children: Vec<Plan<'py>>,
}

fn get<'py>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    Ok(d.get_item(key)?.filter(|v| !v.is_none()))
}

fn need<'py>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<Bound<'py, PyAny>> {
    get(d, key)?.ok_or_else(|| PyTypeError::new_err(format!("object plan: '{key}' is missing")))
}

fn string<'py>(v: Bound<'py, PyAny>, what: &str) -> PyResult<Bound<'py, PyString>> {
    let s = v
        .cast_into::<PyString>()
        .map_err(|_| PyTypeError::new_err(format!("object plan: '{what}' must be a str")))?;
    let py = s.py();
    Ok(PyString::intern(py, &s.to_cow()?))
}

impl<'py> Plan<'py> {
    /// Keys: `cls`, optional `from_db`, `columns`, `attnames`, optional `converters` (None or a
    /// one-argument callable per column), `kind` ("root", "to_one", "to_many", "through"),
    /// `key` (the include alias, not for the root; "rows" is the kind of a through plan's one include), `cache` and optional `back` (to_one),
    /// optional `child_cache` and `attach` (to_many, through), `includes` (child plans).
    fn parse(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        let d = obj
            .cast::<PyDict>()
            .map_err(|_| PyTypeError::new_err("object plan: each plan must be a dict"))?;
        let kind_name: String = need(d, "kind")?.extract()?;
        let kind = match kind_name.as_str() {
            "root" => Kind::Root,
            "rows" => Kind::Rows,
            "to_one" => Kind::ToOne {
                cache: string(need(d, "cache")?, "cache")?,
                back: get(d, "back")?.map(|b| string(b, "back")).transpose()?,
            },
            "to_many" => Kind::ToMany {
                child_cache: get(d, "child_cache")?
                    .map(|c| string(c, "child_cache"))
                    .transpose()?,
                attach: need(d, "attach")?,
            },
            "through" => Kind::Through {
                attach: need(d, "attach")?,
            },
            other => {
                return Err(PyTypeError::new_err(format!(
                    "object plan: unknown kind '{other}'"
                )))
            }
        };
        let key = match kind {
            Kind::Root => None,
            _ => Some(string(need(d, "key")?, "key")?),
        };
        let columns: Vec<String> = need(d, "columns")?.extract()?;
        let attnames = need(d, "attnames")?
            .try_iter()?
            .map(|a| string(a?, "attnames"))
            .collect::<PyResult<Vec<_>>>()?;
        if attnames.len() != columns.len() {
            return Err(PyTypeError::new_err(
                "object plan: 'columns' and 'attnames' differ in length",
            ));
        }
        let converters = match get(d, "converters")? {
            None => vec![None; columns.len()],
            Some(c) => c
                .try_iter()?
                .map(|f| f.map(|f| (!f.is_none()).then_some(f)))
                .collect::<PyResult<Vec<_>>>()?,
        };
        if converters.len() != columns.len() {
            return Err(PyTypeError::new_err(
                "object plan: 'converters' and 'columns' differ in length",
            ));
        }
        let children = match get(d, "includes")? {
            None => Vec::new(),
            Some(list) => list
                .try_iter()?
                .map(|c| Plan::parse(&c?))
                .collect::<PyResult<Vec<_>>>()?,
        };
        if matches!(kind, Kind::Through { .. })
            && (children.len() != 1 || !matches!(children[0].kind, Kind::Rows))
        {
            return Err(PyTypeError::new_err(
                "object plan: a 'through' plan has exactly one include, of kind 'rows'",
            ));
        }
        let nested_ok = |c: &Plan| match c.kind {
            Kind::Root => false,
            Kind::Rows => matches!(kind, Kind::Through { .. }),
            _ => true,
        };
        if !children.iter().all(nested_ok) {
            return Err(PyTypeError::new_err(
                "object plan: 'root' only at the top and 'rows' only under 'through'",
            ));
        }
        Ok(Plan {
            key,
            cls: need(d, "cls")?,
            from_db: get(d, "from_db")?,
            columns,
            attnames,
            converters,
            kind,
            children,
        })
    }
}

/// A plan bound to the fetch result: its tree node and each column's index in the block.
struct Bind {
    node: Option<usize>,
    cols: Vec<Option<usize>>,
    children: Vec<Bind>,
}

struct Builder<'t, 'a, 'py> {
    py: Python<'py>,
    tree: &'t Tree<'a, 'py>,
    new: Bound<'py, PyAny>,
    state_cls: Bound<'py, PyAny>,
    db: Bound<'py, PyAny>,
}

impl<'py> Builder<'_, '_, 'py> {
    fn bind(&self, plan: &Plan<'py>, node: Option<usize>) -> PyResult<Bind> {
        let block = node
            .and_then(|n| self.tree.nodes[n].block)
            .map(|b| &self.tree.blocks[b]);
        let cols = plan
            .columns
            .iter()
            .map(|c| block.and_then(|b| b.data.fields.iter().position(|f| f == c)))
            .collect();
        let children = plan
            .children
            .iter()
            .map(|cp| {
                let key = cp.key.as_ref().map(|k| k.to_cow()).transpose()?;
                let mut found = None;
                if let Some(n) = node {
                    for &ch in &self.tree.nodes[n].children {
                        let ck = self.tree.nodes[ch]
                            .key
                            .as_ref()
                            .map(|k| k.to_cow())
                            .transpose()?;
                        if ck.is_some() && ck == key {
                            found = Some(ch);
                            break;
                        }
                    }
                }
                self.bind(cp, found)
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Bind {
            node,
            cols,
            children,
        })
    }

    /// The object of row `id`; `parent` = (an object this one caches, under that name).
    fn make(
        &self,
        plan: &Plan<'py>,
        bind: &Bind,
        id: i64,
        parent: Option<(&Bound<'py, PyAny>, &Bound<'py, PyString>)>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        let block = bind
            .node
            .and_then(|n| self.tree.nodes[n].block)
            .map(|b| &self.tree.blocks[b]);
        let row = block.and_then(|b| b.pos.get(&id).copied());
        let mut values = Vec::with_capacity(plan.columns.len());
        for (ci, conv) in bind.cols.iter().zip(&plan.converters) {
            let v = match (block, row, ci) {
                (Some(b), Some(r), Some(c)) => to_py(py, &b.data.columns[*c][r])?,
                _ => py.None().into_bound(py),
            };
            values.push(match conv {
                Some(f) => f.call1((v,))?,
                None => v,
            });
        }
        let own_state = plan.from_db.is_none();
        let (obj, state) = match &plan.from_db {
            Some(f) => {
                let obj = f.call1((PyList::new(py, values)?,))?;
                let state = obj.getattr(intern!(py, "_state"))?;
                (obj, state)
            }
            None => {
                let obj = self.new.call1((&plan.cls,))?;
                let state = self.new.call1((&self.state_cls,))?;
                state.setattr(intern!(py, "adding"), false)?;
                state.setattr(intern!(py, "db"), &self.db)?;
                let d = obj
                    .getattr(intern!(py, "__dict__"))?
                    .cast_into::<PyDict>()?;
                d.set_item(intern!(py, "_state"), &state)?;
                for (name, v) in plan.attnames.iter().zip(values) {
                    d.set_item(name, v)?;
                }
                (obj, state)
            }
        };
        // The relation caches of this object, created only when one is set (as the state
        // class creates its fields_cache on first use); a state made here gets a plain dict.
        let mut cache: Option<Bound<'py, PyDict>> = None;
        let cache_of = |cache: &mut Option<Bound<'py, PyDict>>| -> PyResult<Bound<'py, PyDict>> {
            if let Some(c) = cache {
                return Ok(c.clone());
            }
            let c = if own_state {
                let c = PyDict::new(py);
                state.setattr(intern!(py, "fields_cache"), &c)?;
                c
            } else {
                state
                    .getattr(intern!(py, "fields_cache"))?
                    .cast_into::<PyDict>()?
            };
            *cache = Some(c.clone());
            Ok(c)
        };
        if let Some((p, name)) = parent {
            cache_of(&mut cache)?.set_item(name, p)?;
        }
        for (cp, cb) in plan.children.iter().zip(&bind.children) {
            let kids = cb
                .node
                .and_then(|c| self.tree.nodes[c].kids.get(&id))
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            match &cp.kind {
                // A root below the root, or rows outside a join: refused by `parse`.
                Kind::Root | Kind::Rows => {}
                Kind::ToOne { cache: name, back } => {
                    let link = back.as_ref().map(|b| (&obj, b));
                    let related = match kids.first() {
                        Some(&k) => Some(self.make(cp, cb, k, link)?),
                        None => None,
                    };
                    cache_of(&mut cache)?.set_item(name, &related)?;
                }
                Kind::ToMany {
                    child_cache,
                    attach,
                } => {
                    let link = child_cache.as_ref().map(|c| (&obj, c));
                    let list = kids
                        .iter()
                        .map(|&k| self.make(cp, cb, k, link))
                        .collect::<PyResult<Vec<_>>>()?;
                    attach.call1((&obj, PyList::new(py, list)?))?;
                }
                Kind::Through { attach } => {
                    let (tp, tb) = (&cp.children[0], &cb.children[0]);
                    let targets = tb.node.map(|t| &self.tree.nodes[t].kids);
                    let mut list = Vec::with_capacity(kids.len());
                    for j in kids {
                        if let Some(&t) = targets.and_then(|m| m.get(j)).and_then(|v| v.first()) {
                            list.push(self.make(tp, tb, t, None)?);
                        }
                    }
                    attach.call1((&obj, PyList::new(py, list)?))?;
                }
            }
        }
        Ok(obj)
    }
}

/// The root objects of `tree` built by `plan`; `state_cls` and `db` as `Plan` describes.
pub fn objects<'py>(
    py: Python<'py>,
    tree: &Tree<'_, 'py>,
    roots: &[i64],
    plan: &Bound<'py, PyAny>,
    state_cls: &Bound<'py, PyAny>,
    db: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let plan = Plan::parse(plan)?;
    if !matches!(plan.kind, Kind::Root) {
        return Err(PyTypeError::new_err(
            "object plan: the outermost plan must have kind 'root'",
        ));
    }
    let new = py
        .import(intern!(py, "builtins"))?
        .getattr(intern!(py, "object"))?
        .getattr(intern!(py, "__new__"))?;
    let builder = Builder {
        py,
        tree,
        new,
        state_cls: state_cls.clone(),
        db: db.clone(),
    };
    let bind = builder.bind(&plan, Some(0))?;
    let items = roots
        .iter()
        .map(|&id| builder.make(&plan, &bind, id, None))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}
