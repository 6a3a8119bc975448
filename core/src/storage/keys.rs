//! Key layout. Every record lives in one ordered keyspace, told apart by a one-byte prefix, so a
//! commit (rows, index entries, catalog, change log, counters) is one atomic batch.
//!
//! | prefix | key                                          | value                     |
//! |--------|----------------------------------------------|---------------------------|
//! | 0x01   | catalog: commit_ts                           | rkyv schema bundle        |
//! | 0x02   | meta: name                                   | meta value                |
//! | 0x10   | row: table_id, row_id, !commit_ts            | row codec                 |
//! | 0x20   | index: index_id, encoded values, row_id      | empty                     |
//! | 0x30   | change log: commit_ts                        | change record             |
//!
//! Row versions store `!commit_ts` (bitwise not) so that, within a row, the newest version sorts
//! first: the version visible at a snapshot `s` is the first key `>= (table, row, !s)`.
//! Index entries are not versioned: they are hints that readers verify against the row version
//! visible to them, and garbage collection removes the ones no live version matches.

pub const CATALOG: u8 = 0x01;
pub const META: u8 = 0x02;
pub const ROW: u8 = 0x10;
pub const INDEX: u8 = 0x20;
pub const CHANGE: u8 = 0x30;

/// Meta key holding the last commit timestamp applied to the store.
pub const META_LAST_TS: &[u8] = b"\x02last_ts";
/// Meta key holding the on-disk format version (u64 BE; absent in format 1).
pub const META_FORMAT: &[u8] = b"\x02format";
/// The on-disk format this build writes and the newest it reads: 1 had no format mark; 2 may
/// keep large values in the value log (`storage::vlog`).
pub const FORMAT_VERSION: u64 = 2;

/// Encodes a signed row id so that byte order equals numeric order.
pub fn row_id_bytes(row_id: i64) -> [u8; 8] {
    ((row_id as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn row_id_from_bytes(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    (u64::from_be_bytes(a) ^ (1 << 63)) as i64
}

/// `ROW | table_id`: the prefix of every version of every row of a table.
pub fn table_prefix(table_id: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(5);
    k.push(ROW);
    k.extend_from_slice(&table_id.to_be_bytes());
    k
}

/// `ROW | table_id | row_id`: the logical key of a row (what conflicts are tracked on).
pub fn row_key(table_id: u32, row_id: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(21);
    k.push(ROW);
    k.extend_from_slice(&table_id.to_be_bytes());
    k.extend_from_slice(&row_id_bytes(row_id));
    k
}

/// The physical key of one version of a row.
pub fn row_version_key(table_id: u32, row_id: i64, commit_ts: u64) -> Vec<u8> {
    let mut k = row_key(table_id, row_id);
    k.extend_from_slice(&(!commit_ts).to_be_bytes());
    k
}

/// Splits a physical row version key into (table_id, row_id, commit_ts).
pub fn parse_row_version_key(k: &[u8]) -> Option<(u32, i64, u64)> {
    if k.len() != 21 || k[0] != ROW {
        return None;
    }
    let table = u32::from_be_bytes(k[1..5].try_into().ok()?);
    let row = row_id_from_bytes(&k[5..13]);
    let ts = !u64::from_be_bytes(k[13..21].try_into().ok()?);
    Some((table, row, ts))
}

/// `INDEX | index_id`: the prefix of every entry of an index.
pub fn index_prefix(index_id: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(32);
    k.push(INDEX);
    k.extend_from_slice(&index_id.to_be_bytes());
    k
}

/// `INDEX | index_id | encoded values`: entries for these values (any row).
pub fn index_values_prefix(index_id: u32, values: &[crate::value::Value]) -> Vec<u8> {
    let mut k = index_prefix(index_id);
    for v in values {
        crate::value::encode_key_value(v, &mut k);
    }
    k
}

/// A full index entry key.
pub fn index_entry_key(index_id: u32, values: &[crate::value::Value], row_id: i64) -> Vec<u8> {
    let mut k = index_values_prefix(index_id, values);
    k.extend_from_slice(&row_id_bytes(row_id));
    k
}

/// The row id at the end of an index entry key.
pub fn index_entry_row_id(k: &[u8]) -> Option<i64> {
    (k.len() >= 13).then(|| row_id_from_bytes(&k[k.len() - 8..]))
}

pub fn catalog_key(commit_ts: u64) -> Vec<u8> {
    let mut k = vec![CATALOG];
    k.extend_from_slice(&commit_ts.to_be_bytes());
    k
}

pub fn change_key(commit_ts: u64) -> Vec<u8> {
    let mut k = vec![CHANGE];
    k.extend_from_slice(&commit_ts.to_be_bytes());
    k
}

/// The smallest key greater than every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xFF; prefix.len() + 1]
}

/// Splits an encoded index prefix whose last value is an integer into (everything before it,
/// the integer); `None` for other prefixes.
pub fn trailing_int(prefix: &[u8]) -> Option<(&[u8], i64)> {
    // An encoded number is 0x10, 8 bytes of ordered f64 and 8 bytes of residual.
    if prefix.len() < 17 + 5 {
        return None;
    }
    let (head, num) = prefix.split_at(prefix.len() - 17);
    if num[0] != 0x10 {
        return None;
    }
    let bits = u64::from_be_bytes(num[1..9].try_into().ok()?);
    let f = f64::from_bits(if bits >> 63 == 1 {
        bits ^ (1 << 63)
    } else {
        !bits
    });
    let residual = (u64::from_be_bytes(num[9..17].try_into().ok()?) ^ (1 << 63)) as i64;
    if !f.is_finite() || f.fract() != 0.0 || f.abs() > 9.0e15 {
        return None;
    }
    Some((head, (f as i64).wrapping_add(residual)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_version_sorts_first() {
        let a = row_version_key(1, 5, 10);
        let b = row_version_key(1, 5, 11);
        assert!(b < a);
        assert!(row_key(1, -1) < row_key(1, 0));
        assert_eq!(parse_row_version_key(&a), Some((1, 5, 10)));
        assert_eq!(prefix_end(&[1, 0xFF]), vec![2]);
    }
}
