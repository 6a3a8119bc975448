//! The keys and key ranges a transaction read, checked at commit against the keys written by
//! transactions that committed after its snapshot.

use std::collections::HashSet;

/// Past this many point reads, a transaction's point reads are widened to whole tables or
/// indexes: memory stays bounded for long read transactions at the price of coarser conflicts.
const MAX_POINTS: usize = 1 << 16;

#[derive(Debug, Default, Clone)]
pub struct ReadSet {
    points: HashSet<Vec<u8>>,
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
    sorted: bool,
    /// Table/index prefixes already widened to full ranges.
    widened: HashSet<Vec<u8>>,
}

/// The table (`ROW | table_id`) or index (`INDEX | index_id`) prefix of a key.
fn owner_prefix(key: &[u8]) -> &[u8] {
    &key[..key.len().min(5)]
}

impl ReadSet {
    pub fn add_point(&mut self, key: Vec<u8>) {
        if !self.widened.is_empty() && self.widened.contains(owner_prefix(&key)) {
            return;
        }
        self.points.insert(key);
        if self.points.len() > MAX_POINTS {
            self.widen();
        }
    }

    fn widen(&mut self) {
        for key in std::mem::take(&mut self.points) {
            let prefix = owner_prefix(&key).to_vec();
            if self.widened.insert(prefix.clone()) {
                let end = crate::storage::keys::prefix_end(&prefix);
                self.add_range(prefix, end);
            }
        }
    }

    /// Records a read of every key in `[start, end)`.
    pub fn add_range(&mut self, start: Vec<u8>, end: Vec<u8>) {
        self.ranges.push((start, end));
        self.sorted = false;
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty() && self.ranges.is_empty()
    }

    /// Sorts and merges ranges so lookups are binary searches.
    pub fn seal(&mut self) {
        if self.sorted {
            return;
        }
        self.ranges.sort();
        let mut merged: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(self.ranges.len());
        for (s, e) in self.ranges.drain(..) {
            match merged.last_mut() {
                Some(last) if s <= last.1 => {
                    if e > last.1 {
                        last.1 = e;
                    }
                }
                _ => merged.push((s, e)),
            }
        }
        self.ranges = merged;
        self.sorted = true;
    }

    /// Whether `key` was read. Call [`ReadSet::seal`] first.
    pub fn contains(&self, key: &[u8]) -> bool {
        if self.points.contains(key) {
            return true;
        }
        let i = self.ranges.partition_point(|(s, _)| s.as_slice() <= key);
        i > 0 && key < self.ranges[i - 1].1.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_match() {
        let mut r = ReadSet::default();
        r.add_range(vec![5], vec![8]);
        r.add_range(vec![1], vec![3]);
        r.add_range(vec![2], vec![6]);
        r.add_point(vec![10, 1]);
        r.seal();
        assert!(r.contains(&[1]));
        assert!(r.contains(&[7, 9]));
        assert!(!r.contains(&[8]));
        assert!(r.contains(&[10, 1]));
        assert!(!r.contains(&[10]));
    }

    #[test]
    fn many_points_widen_to_their_tables() {
        let mut r = ReadSet::default();
        for i in 0..(MAX_POINTS as u64 + 10) {
            let mut k = vec![0x10, 0, 0, 0, 7];
            k.extend_from_slice(&i.to_be_bytes());
            r.add_point(k);
        }
        r.add_point(vec![0x10, 0, 0, 0, 7, 9, 9]);
        assert!(r.points.len() <= 1);
        r.seal();
        assert!(r.contains(&[0x10, 0, 0, 0, 7, 0xFF]));
        assert!(!r.contains(&[0x10, 0, 0, 0, 8]));
    }
}
