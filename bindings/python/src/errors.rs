//! The PEP 249 exception hierarchy and the mapping from engine SQLSTATEs onto it. Every
//! exception raised for an engine error carries the code in `.sqlstate`.

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::{create_exception, PyErr};

create_exception!(ormdb, Warning, PyException, "Important warnings (PEP 249).");
create_exception!(
    ormdb,
    Error,
    PyException,
    "Base class of every ORMDB error (PEP 249)."
);
create_exception!(
    ormdb,
    InterfaceError,
    Error,
    "Misuse of the driver interface itself."
);
create_exception!(
    ormdb,
    DatabaseError,
    Error,
    "Errors reported by the database engine."
);
create_exception!(
    ormdb,
    DataError,
    DatabaseError,
    "Invalid or out-of-range data (SQLSTATE 22xxx)."
);
create_exception!(
    ormdb,
    OperationalError,
    DatabaseError,
    "Errors in the database's operation: unknown tables or columns, syntax, conflicts, limits."
);
create_exception!(
    ormdb,
    IntegrityError,
    DatabaseError,
    "A constraint would be violated (SQLSTATE 23xxx)."
);
create_exception!(
    ormdb,
    InternalError,
    DatabaseError,
    "An internal engine error (a bug)."
);
create_exception!(
    ormdb,
    ProgrammingError,
    DatabaseError,
    "Wrong use of the API: closed connections, bad parameters, invalid transaction state."
);
create_exception!(
    ormdb,
    NotSupportedError,
    DatabaseError,
    "A feature ORMDB does not support (SQLSTATE 0A000)."
);

/// The exception class for a SQLSTATE, following what sqlite3 raises for the same condition.
fn class_for<'py>(py: Python<'py>, code: &str) -> Bound<'py, pyo3::types::PyType> {
    use pyo3::PyTypeInfo;
    match code {
        "42804" => IntegrityError::type_object(py),
        c if c.starts_with("23") => IntegrityError::type_object(py),
        "42601" | "42P01" | "42703" | "42P07" | "40001" | "40002" | "54000" | "55006" | "72000"
        | "08P01" | "58030" => OperationalError::type_object(py),
        "0A000" => NotSupportedError::type_object(py),
        "25000" | "08003" | "22023" => ProgrammingError::type_object(py),
        c if c.starts_with("22") => DataError::type_object(py),
        "XX000" => InternalError::type_object(py),
        _ => DatabaseError::type_object(py),
    }
}

/// A Python exception for an engine error, with `.sqlstate` set.
pub fn to_py(err: ormdb::Error) -> PyErr {
    Python::attach(|py| with_state(py, class_for(py, err.code()), Some(err.code()), err.message))
}

/// An exception of `class` with `message` and `.sqlstate = code` (None when the binding, not
/// the engine, detected the problem).
pub fn with_state(
    _py: Python<'_>,
    class: Bound<'_, pyo3::types::PyType>,
    code: Option<&str>,
    message: String,
) -> PyErr {
    match class.call1((message,)) {
        Ok(inst) => {
            if let Err(e) = inst.setattr("sqlstate", code) {
                return e;
            }
            PyErr::from_value(inst)
        }
        Err(e) => e,
    }
}

/// ProgrammingError for misuse detected by the binding itself.
pub fn programming(message: impl Into<String>) -> PyErr {
    Python::attach(|py| {
        use pyo3::PyTypeInfo;
        with_state(py, ProgrammingError::type_object(py), None, message.into())
    })
}

/// OperationalError for a request the binding cannot honour in the current state.
pub fn operational(message: impl Into<String>) -> PyErr {
    Python::attach(|py| {
        use pyo3::PyTypeInfo;
        with_state(py, OperationalError::type_object(py), None, message.into())
    })
}

pub fn closed() -> PyErr {
    Python::attach(|py| {
        use pyo3::PyTypeInfo;
        with_state(
            py,
            ProgrammingError::type_object(py),
            Some("08003"),
            "Cannot operate on a closed database.".into(),
        )
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Warning", py.get_type::<Warning>())?;
    m.add("Error", py.get_type::<Error>())?;
    m.add("InterfaceError", py.get_type::<InterfaceError>())?;
    m.add("DatabaseError", py.get_type::<DatabaseError>())?;
    m.add("DataError", py.get_type::<DataError>())?;
    m.add("OperationalError", py.get_type::<OperationalError>())?;
    m.add("IntegrityError", py.get_type::<IntegrityError>())?;
    m.add("InternalError", py.get_type::<InternalError>())?;
    m.add("ProgrammingError", py.get_type::<ProgrammingError>())?;
    m.add("NotSupportedError", py.get_type::<NotSupportedError>())?;
    Ok(())
}
