//! Row version encoding: `flags u8 | version varint | field count varint | values`.
//! Values: tag byte then payload (zigzag varint for integers, 8 bytes for reals, length-prefixed
//! bytes for text and blobs). Rows written before a field was added are shorter; readers fill the
//! missing trailing fields from the field defaults.

use crate::error::{Error, Result};
use crate::value::Value;

pub const FLAG_TOMBSTONE: u8 = 1;
pub const FLAG_SOFT_DELETED: u8 = 2;

/// One decoded row version.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    pub flags: u8,
    pub version: u64,
    pub values: Vec<Value>,
}

impl StoredRow {
    pub fn is_tombstone(&self) -> bool {
        self.flags & FLAG_TOMBSTONE != 0
    }
    pub fn is_soft_deleted(&self) -> bool {
        self.flags & FLAG_SOFT_DELETED != 0
    }
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = *buf
            .get(*pos)
            .ok_or_else(|| Error::corrupted("truncated varint in stored record"))?;
        *pos += 1;
        if shift >= 64 {
            return Err(Error::corrupted("varint overflow in stored record"));
        }
        v |= ((b & 0x7F) as u64) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
    }
}

pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

pub fn get_bytes<'a>(buf: &'a [u8], pos: &mut usize) -> Result<&'a [u8]> {
    let len = get_varint(buf, pos)? as usize;
    let end = pos
        .checked_add(len)
        .filter(|e| *e <= buf.len())
        .ok_or_else(|| Error::corrupted("truncated bytes in stored record"))?;
    let s = &buf[*pos..end];
    *pos = end;
    Ok(s)
}

pub fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(0),
        Value::Integer(i) => {
            out.push(1);
            put_varint(out, ((i << 1) ^ (i >> 63)) as u64);
        }
        Value::Real(r) => {
            out.push(2);
            out.extend_from_slice(&r.to_le_bytes());
        }
        Value::Text(s) => {
            out.push(3);
            put_bytes(out, s.as_bytes());
        }
        Value::Blob(b) => {
            out.push(4);
            put_bytes(out, b);
        }
    }
}

pub fn decode_value(buf: &[u8], pos: &mut usize) -> Result<Value> {
    let tag = *buf
        .get(*pos)
        .ok_or_else(|| Error::corrupted("truncated value in stored record"))?;
    *pos += 1;
    Ok(match tag {
        0 => Value::Null,
        1 => {
            let z = get_varint(buf, pos)?;
            Value::Integer(((z >> 1) as i64) ^ -((z & 1) as i64))
        }
        2 => {
            let b = buf
                .get(*pos..*pos + 8)
                .ok_or_else(|| Error::corrupted("truncated real in stored record"))?;
            *pos += 8;
            Value::Real(f64::from_le_bytes(b.try_into().expect("8 bytes")))
        }
        3 => {
            let b = get_bytes(buf, pos)?;
            Value::Text(
                String::from_utf8(b.to_vec())
                    .map_err(|_| Error::corrupted("invalid UTF-8 text in stored record"))?,
            )
        }
        4 => Value::Blob(get_bytes(buf, pos)?.to_vec()),
        t => {
            return Err(Error::corrupted(format!(
                "unknown value tag {t} in stored record"
            )))
        }
    })
}

pub fn encode_row(flags: u8, version: u64, values: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + values.iter().map(|v| v.size() + 2).sum::<usize>());
    out.push(flags);
    put_varint(&mut out, version);
    put_varint(&mut out, values.len() as u64);
    for v in values {
        encode_value(v, &mut out);
    }
    out
}

/// The flags byte of a stored row; a value-log pointer that did not resolve (its bytes lost or
/// damaged, see `storage::vlog`) is reported as such.
fn row_flags(buf: &[u8]) -> Result<u8> {
    match buf.first() {
        None => Err(Error::corrupted("empty stored row")),
        Some(&super::vlog::POINTER_TAG) => Err(Error::corrupted(
            "a row value kept in the value log could not be read back intact (its file is missing or damaged)",
        )),
        Some(f) => Ok(*f),
    }
}

pub fn decode_row(buf: &[u8]) -> Result<StoredRow> {
    let flags = row_flags(buf)?;
    let mut pos = 1;
    let version = get_varint(buf, &mut pos)?;
    let n = get_varint(buf, &mut pos)? as usize;
    if n > buf.len() {
        return Err(Error::corrupted("stored row field count exceeds its size"));
    }
    let mut values = Vec::with_capacity(n);
    for _ in 0..n {
        values.push(decode_value(buf, &mut pos)?);
    }
    Ok(StoredRow {
        flags,
        version,
        values,
    })
}

/// Reads only the flags and version of a stored row (no value decoding).
pub fn decode_header(buf: &[u8]) -> Result<(u8, u64)> {
    let flags = row_flags(buf)?;
    let mut pos = 1;
    Ok((flags, get_varint(buf, &mut pos)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let vals = vec![
            Value::Null,
            Value::Integer(-3),
            Value::Integer(i64::MIN),
            Value::Real(2.5),
            Value::Text("héllo".into()),
            Value::Blob(vec![0, 255]),
        ];
        let enc = encode_row(FLAG_SOFT_DELETED, 7, &vals);
        let dec = decode_row(&enc).unwrap();
        assert_eq!(dec.values, vals);
        assert_eq!(dec.version, 7);
        assert!(dec.is_soft_deleted());
        for cut in 0..enc.len() {
            let _ = decode_row(&enc[..cut]);
        }
    }
}
