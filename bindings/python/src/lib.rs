//! `ormdb._ormdb`: the native layer of the Python package. Marshalling only: values and
//! parameters in, rows and nested results out, engine errors as PEP 249 exceptions. The DB-API
//! behaviour (cursors, implicit transactions, converters) lives in the Python package.

use pyo3::prelude::*;

mod connection;
mod errors;
mod graph;
mod objects;
mod remote;
mod values;

#[pymodule]
fn _ormdb(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<connection::NativeDatabase>()?;
    m.add_class::<connection::NativeConnection>()?;
    m.add_class::<connection::NativeSubscription>()?;
    m.add_class::<remote::RemoteConnection>()?;
    m.add_function(wrap_pyfunction!(values::_set_adapters, m)?)?;
    m.add("SQLITE_VERSION", ormdb::sql::functions::SQLITE_VERSION)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
