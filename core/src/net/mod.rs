//! Server mode: `ormdb serve` exposes one database to other processes over NNG: anng on tokio
//! for SUB and the async client, NNG's own calls ([`rawnng`]) on the request path and for PUB.
//! REQ/REP carries requests and replies framed by [`crate::ir::protocol`]; PUB/SUB carries change
//! streams, one topic per entity. [`server`] runs the sockets, [`handler`] turns one request into
//! one reply, [`sessions`] keeps transactions that span requests,
//! [`publisher`] turns the change log into published events, [`metrics`] counts and serves
//! Prometheus text. On the other side, [`client::Client`] pools connections (async),
//! [`client::BlockingClient`] sends from the caller's thread, and
//! [`stream::ChangeStream`] follows a change stream without gaps,
//! [`subscription::RemoteSubscription`] reads whole commits from the server's change log like
//! an in-process subscription; [`connect`] opens a path or a URL behind the same interface.

pub mod client;
pub mod connect;
pub mod endpoint;
pub mod handler;
pub mod metrics;
pub mod publisher;
pub mod rawnng;
pub mod server;
pub mod sessions;
pub mod stream;
pub mod subscription;

pub use client::{BlockingClient, Client, ClientOptions, Reply};
pub use connect::{connect, connect_with, RemoteSql, SqlConnection};
pub use server::{serve, ServeConfig, Server, ShutdownReport};
pub use stream::{ChangeStream, StreamEvent, StreamOptions, StreamStats};
pub use subscription::RemoteSubscription;

use crate::error::{Error, SqlState};

/// Largest request the server accepts unless told otherwise. Enforced by NNG's `recv-size-max`
/// on every listener (a connection announcing a larger message is dropped before its body is
/// read) and again, exactly, by the handler; clients learn it in the handshake and refuse to
/// send more.
pub const DEFAULT_MAX_REQUEST: usize = 64 << 20;
/// Replies larger than this are sent in pieces the client fetches one by one, so one huge
/// result does not have to fit in a single message on both sides.
pub const DEFAULT_REPLY_CHUNK: usize = 16 << 20;
/// How long a reply may wait for a requester that reads none of its replies (the server's
/// `--reply-timeout`).
pub const DEFAULT_REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The SQLSTATE named by a five-character code carried in an error reply (XX000 for a code
/// this build does not know).
pub fn state_from_code(code: &str) -> SqlState {
    SqlState::from_code(code).unwrap_or(SqlState::Internal)
}

pub(crate) fn io_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(SqlState::IoError, format!("{what}: {e}"))
}
