//! The value log: row versions and change records above a size threshold keep their bytes here,
//! in append-only files under `<db>/values/`, and sled's leaf holds a [`POINTER_LEN`]-byte
//! pointer instead.
//!
//! Why: a sled 0.34 leaf holds up to 16 entries and is paged in whole, every value in it
//! allocated and copied. With rows of ~1 KB and a store far larger than the cache, a point read
//! paged in ~9 KB and made nine allocations; with pointers the leaves are small enough to stay
//! cached and a read is a cached descent plus one `pread` of the row (BENCHMARKS.md, "Point
//! reads at 1M rows"). Change records go here too: sled 0.34 keeps a value above its blob size
//! (a commit of a thousand 1 KB rows writes a ~1 MB change record) in its cache while counting
//! only the blob pointer's size against the cache capacity, so such records piled up in memory.
//!
//! Pointer: `0xFF | file u32 LE | offset u64 LE | len u32 LE | crc32 u32 LE`. A row codec value
//! starts with its flags byte (0..=3) and a change record with its format byte (1), so a pointer
//! is never mistaken for either. Only values under those two prefixes are separated.
//!
//! Durability: values are written through the page cache when a commit is applied to the store,
//! not synced. The commit log record of that commit holds the full value, so until a checkpoint
//! the log is what makes it durable; [`ValueLog::sync`] runs first in every store sync (before
//! sled's flush), so a checkpoint that drops log segments has made their values durable. After
//! a crash, replay re-applies the log's records, which writes their values again (to a new
//! file: every open starts one) and overwrites the pointers sled may have kept to a lost tail.
//! A pointer whose bytes cannot be read back intact (an aborted commit's version whose tail was
//! lost) resolves to itself, which the row codec reports as damaged if anything decodes it.
//!
//! Space: [`ValueLog::compact`] counts the live bytes of every sealed file by a scan of the row
//! pointers, copies the live values of files at most half live to the active file, syncs, swaps
//! the pointers with compare-and-swap (a version garbage-collected meanwhile stays gone), makes
//! the store durable, then deletes the files. It runs from the background thread once the bytes
//! appended since the last count exceed what was live then (at least one file's worth), so the
//! scans cost O(rows) per O(live bytes) written.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::keys;
use super::sled_kv::sync_dir;
use crate::error::{Error, Result};

pub const POINTER_TAG: u8 = 0xFF;
pub const POINTER_LEN: usize = 21;
/// A file is sealed and a new one started once it holds this many bytes.
pub const FILE_BYTES: u64 = 64 << 20;

/// Where a separated value lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pointer {
    pub file: u32,
    pub offset: u64,
    pub len: u32,
    pub crc: u32,
}

impl Pointer {
    pub fn encode(&self) -> [u8; POINTER_LEN] {
        let mut p = [0u8; POINTER_LEN];
        p[0] = POINTER_TAG;
        p[1..5].copy_from_slice(&self.file.to_le_bytes());
        p[5..13].copy_from_slice(&self.offset.to_le_bytes());
        p[13..17].copy_from_slice(&self.len.to_le_bytes());
        p[17..21].copy_from_slice(&self.crc.to_le_bytes());
        p
    }

    /// The pointer a stored value is, if it is one.
    pub fn decode(v: &[u8]) -> Option<Pointer> {
        if v.len() != POINTER_LEN || v[0] != POINTER_TAG {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes(v[i..i + 4].try_into().expect("4 bytes"));
        Some(Pointer {
            file: u32_at(1),
            offset: u64::from_le_bytes(v[5..13].try_into().expect("8 bytes")),
            len: u32_at(13),
            crc: u32_at(17),
        })
    }
}

/// Whether a value stored under `key` may be a pointer (only row versions and change records
/// are separated).
#[inline]
pub fn is_separable(key: &[u8]) -> bool {
    matches!(key.first(), Some(&keys::ROW) | Some(&keys::CHANGE))
}

/// The key ranges whose values may be pointers.
const SEPARABLE: [[u8; 2]; 2] = [[keys::ROW, keys::ROW + 1], [keys::CHANGE, keys::CHANGE + 1]];

/// Every (key, value) of the ranges whose values may be pointers.
fn separable_entries(
    db: &sled::Db,
) -> impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>> + '_ {
    SEPARABLE
        .iter()
        .flat_map(move |r| db.range(&r[..1]..&r[1..]))
}

/// What [`ValueLog::compact`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompactStats {
    /// Whether it counted live bytes (false: not due yet).
    pub counted: bool,
    pub files_before: usize,
    pub files_removed: usize,
    pub values_moved: u64,
    pub bytes_moved: u64,
    pub live_bytes: u64,
    pub file_bytes_before: u64,
}

struct Active {
    id: u32,
    file: Arc<File>,
    end: u64,
}

pub struct ValueLog {
    dir: PathBuf,
    /// Values longer than this are separated; 0 separates nothing (reads still resolve).
    threshold: usize,
    /// Every file, sealed and active, by id. A file leaves the map only after no stored pointer
    /// refers to it; a reader that finds its file gone re-reads the key (see `SledKv`).
    files: RwLock<BTreeMap<u32, Arc<File>>>,
    active: Mutex<Active>,
    /// Sealed since the last sync, and whether a file was created since then.
    unsynced: Mutex<(Vec<Arc<File>>, bool)>,
    /// Anything appended to the active file since the last sync.
    dirty: AtomicBool,
    /// Held for a whole [`ValueLog::sync`]: a second caller must not return while the first
    /// still syncs the files it took (compaction relies on its sync covering its moves).
    syncing: Mutex<()>,
    /// Bytes appended since the last count of live bytes...
    appended: AtomicU64,
    /// ...and what that count found live.
    live_at_count: AtomicU64,
    compacting: Mutex<()>,
    /// Held shared by every batch apply from before its first append until its last pointer is
    /// in sled; compaction takes it exclusively once, so that every pointer into a sealed file
    /// is in sled before it counts them.
    gate: RwLock<()>,
}

fn file_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:08}.vlog"))
}

fn io(what: &str, e: std::io::Error) -> Error {
    Error::io(what, e)
}

impl ValueLog {
    /// Opens the files in `dir` (creating it) and starts a new active file after them.
    pub fn open(dir: &Path, threshold: usize) -> Result<ValueLog> {
        fs::create_dir_all(dir).map_err(|e| io("creating the value log directory", e))?;
        let mut files = BTreeMap::new();
        let mut existing = 0u64;
        let mut empty = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| io("reading the value log directory", e))? {
            let entry = entry.map_err(|e| io("reading the value log directory", e))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".vlog"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let f = File::open(entry.path()).map_err(|e| io("opening a value log file", e))?;
            let len = f
                .metadata()
                .map_err(|e| io("reading a value log file", e))?
                .len();
            if len == 0 {
                empty.push(id);
            }
            existing += len;
            files.insert(id, Arc::new(f));
        }
        // An empty file holds no value; the newest is kept so that ids are never reused.
        let newest = files.keys().next_back().copied();
        for id in empty {
            if Some(id) != newest {
                files.remove(&id);
                fs::remove_file(file_path(dir, id))
                    .map_err(|e| io("removing an empty value log file", e))?;
            }
        }
        let id = newest.map_or(1, |n| n + 1);
        let file = Arc::new(create_file(dir, id)?);
        files.insert(id, file.clone());
        sync_dir(dir)?;
        Ok(ValueLog {
            dir: dir.to_path_buf(),
            threshold,
            files: RwLock::new(files),
            active: Mutex::new(Active { id, file, end: 0 }),
            unsynced: Mutex::new((Vec::new(), false)),
            dirty: AtomicBool::new(false),
            syncing: Mutex::new(()),
            // Taken as live until counted: the first count comes once as much again was
            // written (a count at every open would scan every pointer of a large store).
            appended: AtomicU64::new(0),
            live_at_count: AtomicU64::new(existing),
            compacting: Mutex::new(()),
            gate: RwLock::new(()),
        })
    }

    /// Taken by a batch apply for as long as it appends values and stores their pointers.
    pub fn apply_guard(&self) -> parking_lot::RwLockReadGuard<'_, ()> {
        self.gate.read()
    }

    /// Whether a value of `len` bytes is kept here rather than in sled's leaf.
    #[inline]
    pub fn separates(&self, len: usize) -> bool {
        self.threshold > 0 && len > self.threshold
    }

    /// Appends `value` and returns its pointer (written to the OS, not synced).
    pub fn append(&self, value: &[u8]) -> Result<[u8; POINTER_LEN]> {
        let len = value.len() as u64;
        let (id, file, offset) = {
            let mut a = self.active.lock();
            if a.end > 0 && a.end + len > FILE_BYTES {
                self.rotate(&mut a)?;
            }
            let off = a.end;
            a.end += len;
            (a.id, a.file.clone(), off)
        };
        file.write_all_at(value, offset)
            .map_err(|e| io("writing to the value log", e))?;
        self.dirty.store(true, Ordering::Release);
        self.appended.fetch_add(len, Ordering::Relaxed);
        Ok(Pointer {
            file: id,
            offset,
            len: value.len() as u32,
            crc: crc32fast::hash(value),
        }
        .encode())
    }

    fn rotate(&self, a: &mut Active) -> Result<()> {
        let id = a.id + 1;
        let file = Arc::new(create_file(&self.dir, id)?);
        self.files.write().insert(id, file.clone());
        let old = std::mem::replace(a, Active { id, file, end: 0 });
        let mut u = self.unsynced.lock();
        u.0.push(old.file);
        u.1 = true;
        Ok(())
    }

    /// The file a pointer refers to, if it is still there.
    pub fn file(&self, id: u32) -> Option<Arc<File>> {
        self.files.read().get(&id).cloned()
    }

    /// Reads a pointer's value. `None` when its file is gone (the caller re-reads the key: a
    /// compaction moved it) or the bytes are not intact (see the module doc).
    pub fn read(&self, p: &Pointer) -> Option<std::result::Result<Vec<u8>, ()>> {
        let f = self.file(p.file)?;
        let mut buf = vec![0u8; p.len as usize];
        Some(match f.read_exact_at(&mut buf, p.offset) {
            Ok(()) if crc32fast::hash(&buf) == p.crc => Ok(buf),
            _ => Err(()),
        })
    }

    /// Makes every value appended so far durable.
    pub fn sync(&self) -> Result<()> {
        let _one_at_a_time = self.syncing.lock();
        let (sealed, created) = {
            let mut u = self.unsynced.lock();
            (std::mem::take(&mut u.0), std::mem::replace(&mut u.1, false))
        };
        for (i, f) in sealed.iter().enumerate() {
            if let Err(e) = f.sync_data() {
                // Keep what was not synced for the next attempt.
                let mut u = self.unsynced.lock();
                u.0.extend(sealed[i..].iter().cloned());
                u.1 |= created;
                return Err(io("syncing a value log file", e));
            }
        }
        if self.dirty.swap(false, Ordering::AcqRel) {
            let f = self.active.lock().file.clone();
            if let Err(e) = f.sync_data() {
                self.dirty.store(true, Ordering::Release);
                return Err(io("syncing the value log", e));
            }
        }
        if created {
            if let Err(e) = sync_dir(&self.dir) {
                self.unsynced.lock().1 = true;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Bytes in the value log files.
    pub fn size_on_disk(&self) -> u64 {
        let files: Vec<_> = self.files.read().values().cloned().collect();
        files
            .iter()
            .filter_map(|f| f.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    pub fn file_count(&self) -> usize {
        self.files.read().len()
    }

    /// Whether enough was appended since the last count for [`ValueLog::compact`] to run.
    pub fn compaction_due(&self) -> bool {
        let since = self.appended.load(Ordering::Relaxed);
        since > FILE_BYTES.max(self.live_at_count.load(Ordering::Relaxed))
    }

    /// Counts live bytes per file over `db`'s pointers and moves the live values out of
    /// sealed files at most half live, then deletes those files (see the module doc). With
    /// `force` it runs even when not due and seals the active file first. `sync_store` makes sled durable (the pointer swaps
    /// must be durable before a file goes).
    pub fn compact(
        &self,
        db: &sled::Db,
        force: bool,
        sync_store: impl Fn() -> Result<()>,
        on_move: impl Fn(&[u8], &Pointer, &Pointer),
    ) -> Result<CompactStats> {
        let _guard = self.compacting.lock();
        let mut stats = CompactStats::default();
        if !force && !self.compaction_due() {
            return Ok(stats);
        }
        stats.counted = true;
        if force {
            // Seal the active file, so that everything written so far can be compacted.
            let mut a = self.active.lock();
            if a.end > 0 {
                self.rotate(&mut a)?;
            }
        }
        let active = self.active.lock().id;
        // Applies still storing pointers into files sealed before now finish first.
        drop(self.gate.write());
        let sealed: BTreeMap<u32, u64> = self
            .files
            .read()
            .iter()
            .filter(|(id, _)| **id < active)
            .map(|(id, f)| (*id, f.metadata().map_or(0, |m| m.len())))
            .collect();
        stats.files_before = sealed.len() + 1;
        stats.file_bytes_before = sealed.values().sum();
        self.appended.store(0, Ordering::Relaxed);
        let mut live: BTreeMap<u32, u64> = BTreeMap::new();
        for item in separable_entries(db) {
            let (_, v) = item?;
            if let Some(p) = Pointer::decode(&v) {
                *live.entry(p.file).or_default() += p.len as u64;
            }
        }
        stats.live_bytes = live.values().sum();
        self.live_at_count
            .store(stats.live_bytes, Ordering::Relaxed);
        let victims: std::collections::BTreeSet<u32> = sealed
            .iter()
            .filter(|(id, size)| live.get(id).copied().unwrap_or(0) * 2 <= **size)
            .map(|(id, _)| *id)
            .collect();
        if victims.is_empty() {
            return Ok(stats);
        }
        // Move the live values of the victims. A value that cannot be read back keeps its file.
        let mut moved = Vec::new();
        let mut stuck = std::collections::BTreeSet::new();
        for item in separable_entries(db) {
            let (k, v) = item?;
            let Some(p) = Pointer::decode(&v) else {
                continue;
            };
            if !victims.contains(&p.file) {
                continue;
            }
            match self.read(&p) {
                Some(Ok(value)) => {
                    let np = self.append(&value)?;
                    moved.push((k, v, np, p));
                }
                _ => {
                    stuck.insert(p.file);
                }
            }
        }
        // The moved values are durable before any pointer refers to them.
        self.sync()?;
        for (k, old, new, p) in moved {
            if db.compare_and_swap(&k, Some(&old), Some(&new[..]))?.is_ok() {
                stats.values_moved += 1;
                stats.bytes_moved += p.len as u64;
                if let Some(np) = Pointer::decode(&new) {
                    on_move(&k, &p, &np);
                }
            }
        }
        sync_store()?;
        let gone: Vec<u32> = victims.difference(&stuck).copied().collect();
        {
            let mut files = self.files.write();
            for id in &gone {
                files.remove(id);
            }
        }
        for id in &gone {
            fs::remove_file(file_path(&self.dir, *id))
                .map_err(|e| io("removing a compacted value log file", e))?;
        }
        if !gone.is_empty() {
            sync_dir(&self.dir)?;
        }
        stats.files_removed = gone.len();
        Ok(stats)
    }
}

fn create_file(dir: &Path, id: u32) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(file_path(dir, id))
        .map_err(|e| io("creating a value log file", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_roundtrip_and_rows_are_never_pointers() {
        let p = Pointer {
            file: 7,
            offset: 1 << 40,
            len: 1234,
            crc: 0xDEAD_BEEF,
        };
        assert_eq!(Pointer::decode(&p.encode()), Some(p));
        // A row codec value of pointer length starts with its flags byte.
        let row = crate::storage::row_codec::encode_row(
            3,
            1,
            &[crate::value::Value::Text("x".repeat(16))],
        );
        assert_eq!(row.len(), POINTER_LEN);
        assert_eq!(Pointer::decode(&row), None);
    }

    #[test]
    fn append_read_rotate_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let vl = ValueLog::open(dir.path(), 16).unwrap();
        assert!(!vl.separates(16));
        assert!(vl.separates(17));
        let a = Pointer::decode(&vl.append(b"hello, value log").unwrap()).unwrap();
        let b = Pointer::decode(&vl.append(&[9u8; 100]).unwrap()).unwrap();
        assert_eq!(a.file, b.file);
        assert_eq!(b.offset, 16);
        assert_eq!(vl.read(&a), Some(Ok(b"hello, value log".to_vec())));
        assert_eq!(vl.read(&b), Some(Ok(vec![9u8; 100])));
        // A damaged pointer (wrong checksum) or one past the end does not read.
        let bad = Pointer {
            crc: a.crc ^ 1,
            ..a
        };
        assert_eq!(vl.read(&bad), Some(Err(())));
        let past = Pointer {
            offset: 1 << 30,
            ..a
        };
        assert_eq!(vl.read(&past), Some(Err(())));
        assert_eq!(vl.read(&Pointer { file: 99, ..a }), None);
        vl.sync().unwrap();
        drop(vl);
        let vl = ValueLog::open(dir.path(), 16).unwrap();
        assert_eq!(vl.read(&b), Some(Ok(vec![9u8; 100])));
        let c = Pointer::decode(&vl.append(&[1u8; 40]).unwrap()).unwrap();
        assert!(c.file > b.file, "every open starts a new file");
        assert_eq!(vl.file_count(), 2);
        drop(vl);
        // The empty newest file is kept (ids are never reused), older empty ones go: reopening
        // without writes does not pile up files.
        let counts: Vec<usize> = (0..4)
            .map(|_| ValueLog::open(dir.path(), 16).unwrap().file_count())
            .collect();
        assert_eq!(counts[2], counts[3], "{counts:?}");
        assert!(counts[3] <= 4, "{counts:?}");
        let vl = ValueLog::open(dir.path(), 16).unwrap();
        assert_eq!(vl.read(&c), Some(Ok(vec![1u8; 40])));
    }
}
