//! Marshalling between Python objects and engine values: None/int/float/str/bytes in (bool as
//! int, registered adapters for other types), None/int/float/str/bytes out; statement
//! parameters as a sequence (by position) or a mapping (by name); JSON trees (graph fetch
//! results) as dicts and lists.

use ormdb::{Params, Value};
use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMapping, PyMemoryView,
    PySequence, PyString, PyTuple,
};

use crate::errors;

/// Adapters registered from Python (`ormdb.register_adapter`): type -> callable.
static ADAPTERS: PyOnceLock<Py<PyDict>> = PyOnceLock::new();

#[pyfunction]
pub fn _set_adapters(py: Python<'_>, adapters: Bound<'_, PyDict>) -> PyResult<()> {
    ADAPTERS
        .set(py, adapters.unbind())
        .map_err(|_| errors::programming("adapters are already registered"))
}

/// Describes which parameter a conversion error is about.
fn label(pos: &Param<'_>) -> String {
    match pos {
        Param::Index(i) => format!("binding parameter {}", i + 1),
        Param::Name(n) => format!("binding parameter :{n}"),
        Param::Result => "converting the value returned by a user-defined function".to_string(),
    }
}

pub enum Param<'a> {
    Index(usize),
    Name(&'a str),
    /// The result of a user-defined function or aggregate.
    Result,
}

fn primitive(obj: &Bound<'_, PyAny>, at: &Param<'_>) -> PyResult<Option<Value>> {
    if obj.is_none() {
        return Ok(Some(Value::Null));
    }
    if obj.is_instance_of::<PyBool>() {
        return Ok(Some(Value::Integer(obj.is_truthy()? as i64)));
    }
    if obj.is_instance_of::<PyInt>() {
        return match obj.extract::<i64>() {
            Ok(i) => Ok(Some(Value::Integer(i))),
            Err(_) => Err(PyOverflowError::new_err(format!(
                "Python int too large to convert to SQLite INTEGER ({})",
                label(at)
            ))),
        };
    }
    if obj.is_instance_of::<PyFloat>() {
        let f: f64 = obj.extract()?;
        // SQLite stores NaN as NULL.
        return Ok(Some(if f.is_nan() {
            Value::Null
        } else {
            Value::Real(f)
        }));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Some(Value::Text(s.extract::<String>()?)));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Some(Value::Blob(b.as_bytes().to_vec())));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Some(Value::Blob(b.to_vec())));
    }
    if obj.is_instance_of::<PyMemoryView>() {
        let bytes = obj.py().get_type::<PyBytes>().call1((obj,))?;
        let b = bytes.cast::<PyBytes>()?;
        return Ok(Some(Value::Blob(b.as_bytes().to_vec())));
    }
    Ok(None)
}

/// One Python value as an engine value, applying a registered adapter for other types.
pub fn to_value(obj: &Bound<'_, PyAny>, at: Param<'_>) -> PyResult<Value> {
    if let Some(v) = primitive(obj, &at)? {
        return Ok(v);
    }
    let py = obj.py();
    let ty = obj.get_type();
    if let Some(adapters) = ADAPTERS.get(py) {
        if let Some(adapter) = adapters.bind(py).get_item(&ty)? {
            let adapted = adapter.call1((obj,))?;
            if let Some(v) = primitive(&adapted, &at)? {
                return Ok(v);
            }
            return Err(errors::programming(format!(
                "Error {}: the adapter for type '{}' returned unsupported type '{}'",
                label(&at),
                ty.name()?,
                adapted.get_type().name()?
            )));
        }
    }
    Err(errors::programming(format!(
        "Error {}: type '{}' is not supported (use None, int, float, str, bytes, or register an adapter)",
        label(&at),
        ty.name()?
    )))
}

/// Statement parameters: None, a sequence (qmark / numbered) or a mapping (named).
pub fn to_params(params: Option<&Bound<'_, PyAny>>) -> PyResult<Params> {
    let Some(p) = params else {
        return Ok(Params::Positional(Vec::new()));
    };
    if p.is_none() {
        return Ok(Params::Positional(Vec::new()));
    }
    if let Ok(t) = p.cast::<PyTuple>() {
        let mut out = Vec::with_capacity(t.len());
        for (i, v) in t.iter().enumerate() {
            out.push(to_value(&v, Param::Index(i))?);
        }
        return Ok(Params::Positional(out));
    }
    if let Ok(l) = p.cast::<PyList>() {
        let mut out = Vec::with_capacity(l.len());
        for (i, v) in l.iter().enumerate() {
            out.push(to_value(&v, Param::Index(i))?);
        }
        return Ok(Params::Positional(out));
    }
    if let Ok(d) = p.cast::<PyDict>() {
        return named(d.items().iter());
    }
    if p.is_instance_of::<PyString>()
        || p.is_instance_of::<PyBytes>()
        || p.is_instance_of::<PyByteArray>()
    {
        return Err(errors::programming(format!(
            "parameters are of unsupported type '{}': pass a sequence (tuple or list) or a mapping",
            p.get_type().name()?
        )));
    }
    if let Ok(m) = p.cast::<PyMapping>() {
        return named(m.items()?.iter());
    }
    if let Ok(s) = p.cast::<PySequence>() {
        let n = s.len()?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            out.push(to_value(&s.get_item(i)?, Param::Index(i))?);
        }
        return Ok(Params::Positional(out));
    }
    Err(errors::programming(format!(
        "parameters are of unsupported type '{}': pass a sequence (tuple or list) or a mapping",
        p.get_type().name()?
    )))
}

fn named<'py>(items: impl Iterator<Item = Bound<'py, PyAny>>) -> PyResult<Params> {
    let mut out = Vec::new();
    for item in items {
        let (k, v): (Bound<'py, PyAny>, Bound<'py, PyAny>) = item.extract()?;
        let key = k
            .cast::<PyString>()
            .map_err(|_| errors::programming("parameter names must be strings"))?
            .extract::<String>()?;
        let value = to_value(&v, Param::Name(&key))?;
        out.push((key, value));
    }
    Ok(Params::Named(out))
}

pub fn to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Integer(i) => i.into_pyobject(py)?.into_any(),
        Value::Real(r) => PyFloat::new(py, *r).into_any(),
        Value::Text(s) => PyString::new(py, s).into_any(),
        Value::Blob(b) => PyBytes::new(py, b).into_any(),
    })
}

/// Rows as a list of tuples.
pub fn rows_to_py<'py>(py: Python<'py>, rows: &[Vec<Value>]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for row in rows {
        let items = row
            .iter()
            .map(|v| to_py(py, v))
            .collect::<PyResult<Vec<_>>>()?;
        list.append(PyTuple::new(py, items)?)?;
    }
    Ok(list)
}

/// A JSON tree as Python objects. Blobs arrive as `{"$blob": "<hex>"}` (the engine's JSON form
/// of a value) and become bytes.
pub fn json_to_py<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => py.None().into_bound(py),
        J::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN)).into_any()
            }
        }
        J::String(s) => PyString::new(py, s).into_any(),
        J::Array(a) => {
            let list = PyList::empty(py);
            for x in a {
                list.append(json_to_py(py, x)?)?;
            }
            list.into_any()
        }
        J::Object(m) => {
            if m.len() == 1 {
                if let Some(J::String(h)) = m.get("$blob") {
                    if let Some(bytes) = unhex(h) {
                        return Ok(PyBytes::new(py, &bytes).into_any());
                    }
                }
            }
            let d = PyDict::new(py);
            for (k, x) in m {
                d.set_item(k, json_to_py(py, x)?)?;
            }
            d.into_any()
        }
    })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What `execute` hands to Python: (columns, decl types, rows, rows affected, last insert row id).
pub type ExecOut<'py> = (
    Bound<'py, PyList>,
    Bound<'py, PyList>,
    Bound<'py, PyList>,
    u64,
    i64,
);

/// A statement's result as [`ExecOut`], with the last insert row id to report.
pub fn exec_out<'py>(
    py: Python<'py>,
    r: &ormdb::StatementResult,
    last_insert_rowid: i64,
) -> PyResult<ExecOut<'py>> {
    Ok((
        PyList::new(py, &r.columns)?,
        PyList::new(py, &r.decl_types)?,
        rows_to_py(py, &r.rows)?,
        r.rows_affected,
        last_insert_rowid,
    ))
}

/// sqlite3 runs one statement per `execute` / `executemany`; more is a ProgrammingError.
pub fn one_statement(sql: &str) -> PyResult<()> {
    if ormdb::sql::parse::split_statements(sql).len() > 1 {
        return Err(errors::programming(
            "You can only execute one statement at a time.",
        ));
    }
    Ok(())
}

/// The parameter sets of `executemany`, all converted before any statement runs.
pub fn params_seq(seq: &Bound<'_, PyAny>) -> PyResult<Vec<Params>> {
    seq.try_iter()?.map(|p| to_params(Some(&p?))).collect()
}
