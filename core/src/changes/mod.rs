//! The change log: every commit that changes data or schema appends one record, in the same
//! atomic batch, under `CHANGE | commit_ts`. A record lists entity deltas (insert, update,
//! soft delete, delete, with the row's version and after-image) and relation deltas (a child
//! attached to or detached from a parent through a foreign key). The commit timestamp is the
//! change token: subscribers resume from a token and receive every later commit, in order.

pub mod subscription;

pub use subscription::{Subscription, SubscriptionFilter};

use crate::error::{Error, Result};
use crate::storage::row_codec::{
    decode_value, encode_value, get_bytes, get_varint, put_bytes, put_varint,
};
use crate::value::Value;

/// A position in the change stream: the commit timestamp of a change set.
pub type ChangeToken = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum ChangeKind {
    Insert,
    Update,
    /// The row was marked deleted on a soft-delete entity (it still exists).
    SoftDelete,
    /// A soft-deleted row was restored.
    Restore,
    Delete,
}

impl ChangeKind {
    fn code(self) -> u8 {
        match self {
            ChangeKind::Insert => 1,
            ChangeKind::Update => 2,
            ChangeKind::SoftDelete => 3,
            ChangeKind::Restore => 4,
            ChangeKind::Delete => 5,
        }
    }
    fn from_code(c: u8) -> Result<Self> {
        Ok(match c {
            1 => ChangeKind::Insert,
            2 => ChangeKind::Update,
            3 => ChangeKind::SoftDelete,
            4 => ChangeKind::Restore,
            5 => ChangeKind::Delete,
            _ => return Err(Error::corrupted(format!("unknown change kind {c}"))),
        })
    }
}

#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct EntityChange {
    pub entity: String,
    pub table_id: u32,
    pub row_id: i64,
    pub kind: ChangeKind,
    /// The row's version token after the change (for Delete: the version that was deleted).
    pub version: u64,
    /// Positions of the fields whose values changed (all fields for Insert).
    pub changed: Vec<u32>,
    /// After-image (empty for Delete).
    pub values: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RelationChange {
    /// The many-to-one relation's name on the child entity.
    pub relation: String,
    pub child_entity: String,
    pub child_row_id: i64,
    pub parent_entity: String,
    pub parent_key: Vec<Value>,
    /// true: the child now points at the parent; false: it no longer does.
    pub attached: bool,
}

#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ChangeSet {
    pub token: ChangeToken,
    pub schema_version: u64,
    pub schema_changed: bool,
    pub entities: Vec<EntityChange>,
    pub relations: Vec<RelationChange>,
}

impl ChangeSet {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(1); // record format
        put_varint(&mut out, self.schema_version);
        out.push(self.schema_changed as u8);
        put_varint(&mut out, self.entities.len() as u64);
        for e in &self.entities {
            put_bytes(&mut out, e.entity.as_bytes());
            put_varint(&mut out, e.table_id as u64);
            out.extend_from_slice(&e.row_id.to_le_bytes());
            out.push(e.kind.code());
            put_varint(&mut out, e.version);
            put_varint(&mut out, e.changed.len() as u64);
            for c in &e.changed {
                put_varint(&mut out, *c as u64);
            }
            put_varint(&mut out, e.values.len() as u64);
            for v in &e.values {
                encode_value(v, &mut out);
            }
        }
        put_varint(&mut out, self.relations.len() as u64);
        for r in &self.relations {
            put_bytes(&mut out, r.relation.as_bytes());
            put_bytes(&mut out, r.child_entity.as_bytes());
            out.extend_from_slice(&r.child_row_id.to_le_bytes());
            put_bytes(&mut out, r.parent_entity.as_bytes());
            put_varint(&mut out, r.parent_key.len() as u64);
            for v in &r.parent_key {
                encode_value(v, &mut out);
            }
            out.push(r.attached as u8);
        }
        out
    }

    pub fn decode(token: ChangeToken, buf: &[u8]) -> Result<ChangeSet> {
        fn string(buf: &[u8], pos: &mut usize) -> Result<String> {
            String::from_utf8(get_bytes(buf, pos)?.to_vec())
                .map_err(|_| Error::corrupted("invalid UTF-8 in change record"))
        }
        fn i64_at(buf: &[u8], pos: &mut usize) -> Result<i64> {
            let b = buf
                .get(*pos..*pos + 8)
                .ok_or_else(|| Error::corrupted("truncated change record"))?;
            *pos += 8;
            Ok(i64::from_le_bytes(b.try_into().expect("8 bytes")))
        }
        fn byte(buf: &[u8], pos: &mut usize) -> Result<u8> {
            let b = *buf
                .get(*pos)
                .ok_or_else(|| Error::corrupted("truncated change record"))?;
            *pos += 1;
            Ok(b)
        }
        let mut pos = 0;
        match byte(buf, &mut pos)? {
            1 => {}
            crate::storage::vlog::POINTER_TAG => {
                return Err(Error::corrupted(
                    "a change record kept in the value log could not be read back intact (its file is missing or damaged)",
                ))
            }
            _ => return Err(Error::corrupted("unknown change record format")),
        }
        let schema_version = get_varint(buf, &mut pos)?;
        let schema_changed = byte(buf, &mut pos)? != 0;
        let n = get_varint(buf, &mut pos)? as usize;
        let mut entities = Vec::with_capacity(n.min(buf.len()));
        for _ in 0..n {
            let entity = string(buf, &mut pos)?;
            let table_id = get_varint(buf, &mut pos)? as u32;
            let row_id = i64_at(buf, &mut pos)?;
            let kind = ChangeKind::from_code(byte(buf, &mut pos)?)?;
            let version = get_varint(buf, &mut pos)?;
            let nc = get_varint(buf, &mut pos)? as usize;
            let mut changed = Vec::with_capacity(nc.min(buf.len()));
            for _ in 0..nc {
                changed.push(get_varint(buf, &mut pos)? as u32);
            }
            let nv = get_varint(buf, &mut pos)? as usize;
            let mut values = Vec::with_capacity(nv.min(buf.len()));
            for _ in 0..nv {
                values.push(decode_value(buf, &mut pos)?);
            }
            entities.push(EntityChange {
                entity,
                table_id,
                row_id,
                kind,
                version,
                changed,
                values,
            });
        }
        let n = get_varint(buf, &mut pos)? as usize;
        let mut relations = Vec::with_capacity(n.min(buf.len()));
        for _ in 0..n {
            let relation = string(buf, &mut pos)?;
            let child_entity = string(buf, &mut pos)?;
            let child_row_id = i64_at(buf, &mut pos)?;
            let parent_entity = string(buf, &mut pos)?;
            let nk = get_varint(buf, &mut pos)? as usize;
            let mut parent_key = Vec::with_capacity(nk.min(buf.len()));
            for _ in 0..nk {
                parent_key.push(decode_value(buf, &mut pos)?);
            }
            let attached = byte(buf, &mut pos)? != 0;
            relations.push(RelationChange {
                relation,
                child_entity,
                child_row_id,
                parent_entity,
                parent_key,
                attached,
            });
        }
        Ok(ChangeSet {
            token,
            schema_version,
            schema_changed,
            entities,
            relations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_set_roundtrip() {
        let cs = ChangeSet {
            token: 9,
            schema_version: 3,
            schema_changed: false,
            entities: vec![EntityChange {
                entity: "posts".into(),
                table_id: 2,
                row_id: -4,
                kind: ChangeKind::Update,
                version: 2,
                changed: vec![1],
                values: vec![Value::Integer(1), Value::Text("x".into())],
            }],
            relations: vec![RelationChange {
                relation: "author".into(),
                child_entity: "posts".into(),
                child_row_id: -4,
                parent_entity: "users".into(),
                parent_key: vec![Value::Integer(1)],
                attached: true,
            }],
        };
        let enc = cs.encode();
        assert_eq!(ChangeSet::decode(9, &enc).unwrap(), cs);
        for cut in 0..enc.len() {
            assert!(ChangeSet::decode(9, &enc[..cut]).is_err());
        }
    }
}
