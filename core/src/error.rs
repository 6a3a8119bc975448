//! The one error type of the engine. Every error carries a stable SQLSTATE code so bindings can map
//! it to their ecosystem (DB-API exception classes, Prisma error kinds, JDBC SQLState) without
//! parsing messages.

use std::fmt;

/// SQLSTATE codes used by ORMDB. The string form is the five-character SQLSTATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SqlState {
    /// 23505: a unique constraint (or primary key) would be violated.
    UniqueViolation,
    /// 23503: a foreign key would be violated.
    ForeignKeyViolation,
    /// 23502: NULL written into a NOT NULL field.
    NotNullViolation,
    /// 23514: a CHECK constraint evaluated to false.
    CheckViolation,
    /// 40001: the transaction conflicted with a concurrent commit; retrying it may succeed.
    SerializationFailure,
    /// 40002-like: an optimistic version check failed (expected version did not match).
    VersionMismatch,
    /// 72000: the requested history (change log, snapshot) has been pruned.
    SnapshotTooOld,
    /// 42P01: unknown table/entity.
    UndefinedTable,
    /// 42703: unknown column/field.
    UndefinedColumn,
    /// 42P07: the object already exists.
    DuplicateObject,
    /// 42601: syntax error.
    SyntaxError,
    /// 42804: a value of the wrong type.
    DatatypeMismatch,
    /// 22001: a value too long or too large.
    ValueTooLong,
    /// 22023: an invalid parameter or option value.
    InvalidParameter,
    /// 54000: a budget or size limit was exceeded.
    LimitExceeded,
    /// 42501: not permitted.
    InsufficientPrivilege,
    /// 0A000: the feature is not supported.
    FeatureNotSupported,
    /// 25000: invalid transaction state (for example a call after commit).
    InvalidTransactionState,
    /// 08003: the connection or database is closed.
    ConnectionDoesNotExist,
    /// 55006: the database is locked by another process.
    ObjectInUse,
    /// 08P01: a malformed or unsupported wire message.
    ProtocolViolation,
    /// XX001: stored data is corrupted or not an ORMDB database.
    DataCorrupted,
    /// 58030: an I/O error from the operating system.
    IoError,
    /// XX000: an internal error (a bug).
    Internal,
}

impl SqlState {
    /// Every state, for mapping codes back.
    pub const ALL: &'static [SqlState] = &[
        SqlState::UniqueViolation,
        SqlState::ForeignKeyViolation,
        SqlState::NotNullViolation,
        SqlState::CheckViolation,
        SqlState::SerializationFailure,
        SqlState::VersionMismatch,
        SqlState::SnapshotTooOld,
        SqlState::UndefinedTable,
        SqlState::UndefinedColumn,
        SqlState::DuplicateObject,
        SqlState::SyntaxError,
        SqlState::DatatypeMismatch,
        SqlState::ValueTooLong,
        SqlState::InvalidParameter,
        SqlState::LimitExceeded,
        SqlState::InsufficientPrivilege,
        SqlState::FeatureNotSupported,
        SqlState::InvalidTransactionState,
        SqlState::ConnectionDoesNotExist,
        SqlState::ObjectInUse,
        SqlState::ProtocolViolation,
        SqlState::DataCorrupted,
        SqlState::IoError,
        SqlState::Internal,
    ];

    /// The state with this five-character code, if any.
    pub fn from_code(code: &str) -> Option<SqlState> {
        SqlState::ALL.iter().copied().find(|s| s.code() == code)
    }

    pub fn code(self) -> &'static str {
        match self {
            SqlState::UniqueViolation => "23505",
            SqlState::ForeignKeyViolation => "23503",
            SqlState::NotNullViolation => "23502",
            SqlState::CheckViolation => "23514",
            SqlState::SerializationFailure => "40001",
            SqlState::VersionMismatch => "40002",
            SqlState::SnapshotTooOld => "72000",
            SqlState::UndefinedTable => "42P01",
            SqlState::ProtocolViolation => "08P01",
            SqlState::UndefinedColumn => "42703",
            SqlState::DuplicateObject => "42P07",
            SqlState::SyntaxError => "42601",
            SqlState::DatatypeMismatch => "42804",
            SqlState::ValueTooLong => "22001",
            SqlState::InvalidParameter => "22023",
            SqlState::LimitExceeded => "54000",
            SqlState::InsufficientPrivilege => "42501",
            SqlState::FeatureNotSupported => "0A000",
            SqlState::InvalidTransactionState => "25000",
            SqlState::ConnectionDoesNotExist => "08003",
            SqlState::ObjectInUse => "55006",
            SqlState::DataCorrupted => "XX001",
            SqlState::IoError => "58030",
            SqlState::Internal => "XX000",
        }
    }

    /// Integrity violations (class 23) are what ORMs map to IntegrityError.
    pub fn is_integrity(self) -> bool {
        self.code().starts_with("23")
    }

    /// Whether retrying the whole transaction may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, SqlState::SerializationFailure)
    }
}

impl fmt::Display for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An engine error: a SQLSTATE plus a message naming the entity, field or constraint involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub state: SqlState,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(state: SqlState, message: impl Into<String>) -> Self {
        Error {
            state,
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        self.state.code()
    }

    pub fn unique(constraint: &str, entity: &str, detail: impl fmt::Display) -> Self {
        Error::new(
            SqlState::UniqueViolation,
            format!("UNIQUE constraint failed: {constraint} on {entity} ({detail})"),
        )
    }

    pub fn not_null(entity: &str, field: &str) -> Self {
        Error::new(
            SqlState::NotNullViolation,
            format!("NOT NULL constraint failed: {entity}.{field}"),
        )
    }

    pub fn unknown_entity(name: &str) -> Self {
        Error::new(SqlState::UndefinedTable, format!("no such table: {name}"))
    }

    pub fn unknown_field(entity: &str, field: &str) -> Self {
        Error::new(
            SqlState::UndefinedColumn,
            format!("table {entity} has no column named {field}"),
        )
    }

    pub fn conflict(detail: impl fmt::Display) -> Self {
        Error::new(
            SqlState::SerializationFailure,
            format!("could not serialize access due to a concurrent commit: {detail}; retry the transaction"),
        )
    }

    pub fn unsupported(construct: impl fmt::Display) -> Self {
        Error::new(
            SqlState::FeatureNotSupported,
            format!("not supported: {construct}"),
        )
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(SqlState::InvalidParameter, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(SqlState::Internal, message)
    }

    pub fn corrupted(message: impl Into<String>) -> Self {
        Error::new(SqlState::DataCorrupted, message)
    }

    pub fn io(context: &str, err: std::io::Error) -> Self {
        Error::new(SqlState::IoError, format!("{context}: {err}"))
    }

    pub fn txn_state(message: impl Into<String>) -> Self {
        Error::new(SqlState::InvalidTransactionState, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.state.code(), self.message)
    }
}

impl std::error::Error for Error {}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Io(io) => Error::io("storage", io),
            sled::Error::Corruption { at, .. } => {
                Error::corrupted(format!("storage corruption detected at {at:?}"))
            }
            other => Error::new(SqlState::IoError, format!("storage: {other}")),
        }
    }
}
