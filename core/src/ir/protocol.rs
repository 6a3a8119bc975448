//! Wire messages: every message carries the protocol version; received buffers are validated
//! by rkyv's bytecheck and then read in place (zero-copy) through [`access`].

use rkyv::{Archive, Deserialize, Serialize};

use super::aggregate::{Aggregate, AggregateResult};
use super::graph::GraphFetch;
use super::mutation::{Mutation, MutationResult};
use super::result::GraphResult;
use crate::error::{Error, Result, SqlState};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Versions this build can read.
pub const SUPPORTED_VERSIONS: &[u32] = &[1];

#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct Message {
    pub version: u32,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub enum Body {
    Fetch(GraphFetch),
    Explain { fetch: GraphFetch, analyze: bool },
    Mutate(Mutation),
    Aggregate(Aggregate),
    FetchResult(GraphResult),
    ExplainResult(String),
    MutationResult(MutationResult),
    AggregateResult(AggregateResult),
    Error { code: String, message: String },
}

/// Serializes a message with the current protocol version.
pub fn encode(body: &Body) -> Result<Vec<u8>> {
    let msg = Message {
        version: PROTOCOL_VERSION,
        body: body.clone(),
    };
    rkyv::to_bytes::<rkyv::rancor::Error>(&msg)
        .map(|b| b.to_vec())
        .map_err(|e| Error::internal(format!("serializing a message: {e}")))
}

/// Validates a received buffer and returns a zero-copy view of it. Garbage, truncated buffers
/// and unsupported protocol versions are rejected with 08P01.
pub fn access(bytes: &[u8]) -> Result<&ArchivedMessage> {
    let msg = rkyv::access::<ArchivedMessage, rkyv::rancor::Error>(bytes).map_err(|e| {
        Error::new(
            SqlState::ProtocolViolation,
            format!("invalid message ({} bytes): {e}", bytes.len()),
        )
    })?;
    let v = msg.version.to_native();
    if !SUPPORTED_VERSIONS.contains(&v) {
        return Err(Error::new(
            SqlState::ProtocolViolation,
            format!("protocol version {v} is not supported (supported: {SUPPORTED_VERSIONS:?})"),
        ));
    }
    Ok(msg)
}

/// Validates and deserializes a received buffer into owned types.
pub fn decode(bytes: &[u8]) -> Result<Message> {
    let archived = access(bytes)?;
    rkyv::deserialize::<Message, rkyv::rancor::Error>(archived)
        .map_err(|e| Error::new(SqlState::ProtocolViolation, format!("invalid message: {e}")))
}
