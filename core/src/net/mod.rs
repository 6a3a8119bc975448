//! Server mode: `ormdb serve` exposes one database to other processes over NNG (anng, on tokio).
//! REQ/REP carries requests and replies framed by [`crate::ir::protocol`]; PUB/SUB carries change
//! streams, one topic per entity. [`server`] runs the sockets, [`handler`] turns one request into
//! one reply on the blocking pool, [`sessions`] keeps transactions that span requests,
//! [`publisher`] turns the change log into published events, [`metrics`] counts and serves
//! Prometheus text. On the other side, [`client::Client`] pools connections and
//! [`stream::ChangeStream`] follows a change stream without gaps; [`connect`] opens a path or a
//! URL behind the same SQL interface.

pub mod client;
pub mod connect;
pub mod endpoint;
pub mod handler;
pub mod metrics;
pub mod publisher;
pub mod server;
pub mod sessions;
pub mod stream;

pub use client::{Client, ClientOptions, Reply};
pub use connect::{connect, SqlConnection};
pub use server::{serve, ServeConfig};
pub use stream::{ChangeStream, StreamEvent, StreamOptions};

use crate::error::{Error, SqlState};

/// NNG drops any message larger than this on receipt (its default `recv-size-max`, which anng
/// does not let us raise), so requests are refused above it and replies are sent in chunks.
pub const NNG_MAX_MESSAGE: usize = 1024 * 1024;
/// Size of one reply chunk: below [`NNG_MAX_MESSAGE`] with room for the chunk's own framing.
pub const REPLY_CHUNK: usize = NNG_MAX_MESSAGE - 4096;

/// The SQLSTATE named by a five-character code carried in an error reply.
pub fn state_from_code(code: &str) -> SqlState {
    use SqlState::*;
    const ALL: &[SqlState] = &[
        UniqueViolation,
        ForeignKeyViolation,
        NotNullViolation,
        CheckViolation,
        SerializationFailure,
        VersionMismatch,
        SnapshotTooOld,
        UndefinedTable,
        UndefinedColumn,
        DuplicateObject,
        SyntaxError,
        DatatypeMismatch,
        ValueTooLong,
        InvalidParameter,
        LimitExceeded,
        InsufficientPrivilege,
        FeatureNotSupported,
        InvalidTransactionState,
        ConnectionDoesNotExist,
        ObjectInUse,
        ProtocolViolation,
        DataCorrupted,
        IoError,
        Internal,
    ];
    ALL.iter()
        .copied()
        .find(|s| s.code() == code)
        .unwrap_or(Internal)
}

pub(crate) fn io_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(SqlState::IoError, format!("{what}: {e}"))
}
