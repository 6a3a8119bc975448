//! The keys and key ranges a transaction read, checked at commit against the keys written by
//! transactions that committed after its snapshot.

use std::collections::HashSet;

#[derive(Debug, Default, Clone)]
pub struct ReadSet {
    points: HashSet<Vec<u8>>,
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
    sorted: bool,
}

impl ReadSet {
    pub fn add_point(&mut self, key: Vec<u8>) {
        self.points.insert(key);
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
}
