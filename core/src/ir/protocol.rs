//! Wire messages: every message carries the protocol version and is framed with its length and
//! CRC-32; received buffers are checked against the frame, validated by rkyv's bytecheck and
//! then read in place (zero-copy) through [`access`].

use rkyv::{Archive, Deserialize, Serialize};

use super::aggregate::{Aggregate, AggregateResult};
use super::graph::GraphFetch;
use super::mutation::{Mutation, MutationResult};
use super::result::GraphResult;
use crate::catalog::SchemaBundle;
use crate::changes::{ChangeSet, EntityChange, RelationChange};
use crate::error::{Error, Result, SqlState};
use crate::sql::{Params, StatementResult};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 2;
/// Versions this build can read. Version 2 added the requests from [`Body::FetchIn`] on
/// (graph requests in a session, the catalog); a version 1 peer never sends or gets them.
pub const SUPPORTED_VERSIONS: &[u32] = &[1, 2];
/// The first version with session-bound graph requests and [`Body::Schema`].
pub const SESSION_REQUESTS_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct Message {
    pub version: u32,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub enum Body {
    Fetch(GraphFetch),
    Explain {
        fetch: GraphFetch,
        analyze: bool,
    },
    Mutate(Mutation),
    Aggregate(Aggregate),
    FetchResult(GraphResult),
    ExplainResult(String),
    MutationResult(MutationResult),
    AggregateResult(AggregateResult),
    Error {
        code: String,
        message: String,
    },

    // Server mode (core/src/net). A request names `session: 0` to run in autocommit; any other
    // value names a session opened by `Begin`.
    /// Always framed as version 1 so that any server can read it; lists the client's versions.
    Hello {
        versions: Vec<u32>,
        client: String,
    },
    /// The version both sides will speak, every version the server reads, and where the server
    /// publishes change streams (one URL per transport it listens on).
    HelloOk {
        version: u32,
        supported: Vec<u32>,
        server: String,
        change_urls: Vec<String>,
        /// Requests larger than this many bytes are refused.
        max_request: u64,
    },
    Sql {
        session: u64,
        sql: String,
        params: Params,
    },
    SqlResult(StatementResult),
    Prepare {
        sql: String,
    },
    Prepared {
        id: u64,
        parameter_count: u32,
    },
    ExecutePrepared {
        session: u64,
        id: u64,
        params: Params,
    },
    ClosePrepared {
        id: u64,
    },
    Begin,
    SessionOpened {
        session: u64,
    },
    Commit {
        session: u64,
    },
    Rollback {
        session: u64,
    },
    Done,
    Metrics,
    MetricsText(String),
    /// Replays the change log after `from` (for resuming a change stream), at most `limit`
    /// change sets; `entities` empty means all.
    Changes {
        from: u64,
        entities: Vec<String>,
        limit: u32,
    },
    /// `position`: every change up to this token has been considered (filtered sets are absent).
    ChangeBatch {
        sets: Vec<ChangeSet>,
        position: u64,
    },
    /// Published on the change stream: one entity's part of a commit.
    Change(ChangeEvent),
    /// A reply too large for one NNG message: `bytes` is the piece of the whole reply frame
    /// starting at `offset`; the client asks for the rest with `NextChunk`.
    Chunk {
        id: u64,
        total: u64,
        offset: u64,
        bytes: Vec<u8>,
    },
    NextChunk {
        id: u64,
        offset: u64,
    },

    // Version 2. New variants only go at the end, and their payloads are boxed, so neither the
    // discriminants nor the size of the archived `Body` (which fixes where rkyv finds the root
    // of every message) change for version 1 peers (checked by a test below).
    /// A graph fetch in a session (`session` 0: at a fresh snapshot, as `Fetch`); the reply is
    /// `FetchResult`.
    FetchIn {
        session: u64,
        fetch: Box<GraphFetch>,
    },
    /// The reply is `ExplainResult`.
    ExplainIn {
        session: u64,
        fetch: Box<GraphFetch>,
        analyze: bool,
    },
    /// A mutation batch in a session (part of its transaction); `session` 0 commits it on its
    /// own, as `Mutate`. The reply is `MutationResult`.
    MutateIn {
        session: u64,
        mutation: Box<Mutation>,
    },
    /// The reply is `AggregateResult`.
    AggregateIn {
        session: u64,
        aggregate: Box<Aggregate>,
    },
    /// The catalog as the session sees it (`session` 0: the last committed one). When its
    /// version is `known_version`, the reply leaves the bundle out.
    Schema {
        session: u64,
        known_version: u64,
    },
    SchemaResult {
        version: u64,
        bundle: Option<Box<SchemaBundle>>,
    },
}

impl Body {
    /// The first protocol version that has this message.
    pub fn min_version(&self) -> u32 {
        match self {
            Body::FetchIn { .. }
            | Body::ExplainIn { .. }
            | Body::MutateIn { .. }
            | Body::AggregateIn { .. }
            | Body::Schema { .. }
            | Body::SchemaResult { .. } => SESSION_REQUESTS_VERSION,
            _ => 1,
        }
    }
}

/// One entity's deltas of one commit, as published on the change stream under the topic
/// [`change_topic`]. `prev` is the newest earlier token that touched this entity as far as the
/// publisher knows (at least the token the publisher started from), so a subscriber whose last
/// token for the entity is older than `prev` knows it missed something.
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct ChangeEvent {
    pub token: u64,
    pub prev: u64,
    pub entity: String,
    pub changes: Vec<EntityChange>,
    /// Relation deltas whose child is this entity.
    pub relations: Vec<RelationChange>,
}

/// Topic bytes in front of a published change: the lowercase entity name closed by a NUL, so a
/// subscription to `users` does not also match `users_archive`.
pub fn change_topic(entity: &str) -> Vec<u8> {
    let mut t = Vec::with_capacity(CHANGE_TOPIC_PREFIX.len() + entity.len() + 1);
    t.extend_from_slice(CHANGE_TOPIC_PREFIX);
    t.extend_from_slice(entity.to_ascii_lowercase().as_bytes());
    t.push(0);
    t
}

/// Every change topic starts with this; subscribing to it alone receives all entities.
pub const CHANGE_TOPIC_PREFIX: &[u8] = b"ch/";

/// Bytes before the rkyv payload: its length and its CRC-32, both u32 little-endian. rkyv reads
/// a buffer from its end, so without them a truncated buffer can validate as another message.
pub const FRAME_HEADER: usize = 8;

/// Serializes a message with the current protocol version.
pub fn encode(body: &Body) -> Result<Vec<u8>> {
    encode_message(&Message {
        version: PROTOCOL_VERSION,
        body: body.clone(),
    })
}

/// Serializes a message as given (any version), framed with its length and checksum.
pub fn encode_message(msg: &Message) -> Result<Vec<u8>> {
    let payload = rkyv::to_bytes::<rkyv::rancor::Error>(msg)
        .map_err(|e| Error::internal(format!("serializing a message: {e}")))?;
    let len = u32::try_from(payload.len())
        .map_err(|_| Error::internal("a message is limited to 4 GiB"))?;
    let mut out = Vec::with_capacity(FRAME_HEADER + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

fn le_u32(b: &[u8]) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[..4]);
    u32::from_le_bytes(x)
}

/// Validates a received buffer and returns a zero-copy view of it. Garbage, truncated buffers
/// and unsupported protocol versions are rejected with 08P01.
pub fn access(bytes: &[u8]) -> Result<&ArchivedMessage> {
    let bad = |why: String| {
        Error::new(
            SqlState::ProtocolViolation,
            format!("invalid message ({} bytes): {why}", bytes.len()),
        )
    };
    if bytes.len() < FRAME_HEADER {
        return Err(bad("shorter than the frame header".into()));
    }
    let (len, crc) = (le_u32(&bytes[0..4]) as usize, le_u32(&bytes[4..8]));
    let payload = &bytes[FRAME_HEADER..];
    if payload.len() != len {
        return Err(bad(format!(
            "the frame announces {len} payload bytes, {} arrived",
            payload.len()
        )));
    }
    if crc32fast::hash(payload) != crc {
        return Err(bad("payload checksum mismatch".into()));
    }
    let msg = rkyv::access::<ArchivedMessage, rkyv::rancor::Error>(payload)
        .map_err(|e| bad(e.to_string()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The message as version 1 defined it: the variants of [`Body`] before version 2, in the
    /// same order. A version 1 peer built from this must read and be read by this build.
    #[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
    struct MessageV1 {
        version: u32,
        body: BodyV1,
    }

    #[allow(dead_code)]
    #[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
    enum BodyV1 {
        Fetch(GraphFetch),
        Explain {
            fetch: GraphFetch,
            analyze: bool,
        },
        Mutate(Mutation),
        Aggregate(Aggregate),
        FetchResult(GraphResult),
        ExplainResult(String),
        MutationResult(MutationResult),
        AggregateResult(AggregateResult),
        Error {
            code: String,
            message: String,
        },
        Hello {
            versions: Vec<u32>,
            client: String,
        },
        HelloOk {
            version: u32,
            supported: Vec<u32>,
            server: String,
            change_urls: Vec<String>,
            max_request: u64,
        },
        Sql {
            session: u64,
            sql: String,
            params: Params,
        },
        SqlResult(StatementResult),
        Prepare {
            sql: String,
        },
        Prepared {
            id: u64,
            parameter_count: u32,
        },
        ExecutePrepared {
            session: u64,
            id: u64,
            params: Params,
        },
        ClosePrepared {
            id: u64,
        },
        Begin,
        SessionOpened {
            session: u64,
        },
        Commit {
            session: u64,
        },
        Rollback {
            session: u64,
        },
        Done,
        Metrics,
        MetricsText(String),
        Changes {
            from: u64,
            entities: Vec<String>,
            limit: u32,
        },
        ChangeBatch {
            sets: Vec<ChangeSet>,
            position: u64,
        },
        Change(ChangeEvent),
        Chunk {
            id: u64,
            total: u64,
            offset: u64,
            bytes: Vec<u8>,
        },
        NextChunk {
            id: u64,
            offset: u64,
        },
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn version_2_keeps_the_version_1_layout() {
        assert_eq!(
            std::mem::size_of::<ArchivedMessageV1>(),
            std::mem::size_of::<ArchivedMessage>()
        );
        // A version 1 request reads as the same request here...
        let v1 = MessageV1 {
            version: 1,
            body: BodyV1::Sql {
                session: 7,
                sql: "SELECT 1".into(),
                params: Params::Positional(vec![crate::Value::Integer(3)]),
            },
        };
        let bytes = frame(&rkyv::to_bytes::<rkyv::rancor::Error>(&v1).unwrap());
        let m = decode(&bytes).unwrap();
        assert_eq!(m.version, 1);
        assert_eq!(
            m.body,
            Body::Sql {
                session: 7,
                sql: "SELECT 1".into(),
                params: Params::Positional(vec![crate::Value::Integer(3)]),
            }
        );
        // ...and a reply from this build reads in a version 1 peer.
        let reply = encode_message(&Message {
            version: 1,
            body: Body::SessionOpened { session: 42 },
        })
        .unwrap();
        let back =
            rkyv::from_bytes::<MessageV1, rkyv::rancor::Error>(&reply[FRAME_HEADER..]).unwrap();
        assert_eq!(back.body, BodyV1::SessionOpened { session: 42 });
    }

    #[test]
    fn version_2_messages_round_trip() {
        let f = GraphFetch::new("users");
        for body in [
            Body::FetchIn {
                session: 3,
                fetch: Box::new(f.clone()),
            },
            Body::Schema {
                session: 0,
                known_version: 9,
            },
            Body::SchemaResult {
                version: 9,
                bundle: None,
            },
        ] {
            assert_eq!(body.min_version(), SESSION_REQUESTS_VERSION);
            let m = decode(&encode(&body).unwrap()).unwrap();
            assert_eq!(m.body, body);
        }
        assert_eq!(Body::Fetch(f).min_version(), 1);
    }
}
