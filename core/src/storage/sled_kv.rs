//! The sled 0.34 implementation of [`Kv`].
//!
//! sled's `flush()` ends in `sync_file_range` on Linux, which does not persist file metadata or
//! survive power loss, so [`SledKv::sync`] also fsyncs the data file and the directory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::keys;
use super::row_heads::{RowHeadStats, RowHeads};
use super::vlog::{is_separable, CompactStats, Pointer, ValueLog, POINTER_LEN};
use super::{Batch, BatchOp, Kv, KvBytes, KvIter, KvPair, RowHead};
use crate::error::{Error, Result, SqlState};

pub struct SledKv {
    db: sled::Db,
    dir: PathBuf,
    /// Large row values (see `storage::vlog`); `None` when separation is off and the store
    /// never had any.
    vlog: Option<Arc<ValueLog>>,
    /// Newest versions of rows whose value is in the value log (see `storage::row_heads`);
    /// `None` without a value log or with a zero budget.
    heads: Option<RowHeads>,
}

/// Filling the row heads skips a table none of whose first this many rows keeps its value in
/// the value log.
const SAMPLE_ROWS: u32 = 64;

/// How long [`SledKv::open`] waits for sled's file lock to be released.
const LOCK_WAIT: Duration = Duration::from_secs(2);

fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock
        || io.to_string().contains("could not acquire lock"))
}

impl SledKv {
    /// Opens the store in `dir` without a value log.
    pub fn open(dir: &Path, cache_capacity: u64) -> Result<SledKv> {
        Self::open_with_values(dir, cache_capacity, None, 0)
    }

    /// Opens the store in `dir`; row values longer than `threshold` bytes go to the value log
    /// in `values` (0: none do, but an existing value log is still read).
    pub fn open_with_values(
        dir: &Path,
        cache_capacity: u64,
        values: Option<&Path>,
        threshold: usize,
    ) -> Result<SledKv> {
        discard_unfinished_snapshots(dir)?;
        let open = || {
            sled::Config::new()
                .path(dir)
                .cache_capacity(cache_capacity)
                // The commit log is the durability source; we checkpoint sled ourselves.
                .flush_every_ms(None)
                .open()
        };
        // sled's exclusive lock on its file can outlive the close of the database that held
        // it: sled's thread pool may still be finishing a buffer write with a handle on the
        // file, and a child process that any thread of the holder is spawning shares the
        // locked file description until it execs. A reopen right after a close (in this
        // process or another one) used to fail with 55006 now and then; wait a little first.
        let deadline = Instant::now() + LOCK_WAIT;
        let mut res = open();
        while res.as_ref().is_err_and(is_lock_error) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            res = open();
        }
        let db = res.map_err(|e| match e {
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => Error::new(
                SqlState::ObjectInUse,
                format!(
                    "database {} is open in another process; share it with `ormdb serve`",
                    dir.display()
                ),
            ),
            sled::Error::Io(io) if io.to_string().contains("lock") => Error::new(
                SqlState::ObjectInUse,
                format!(
                    "database {} is locked by another process ({io}); share it with `ormdb serve`",
                    dir.display()
                ),
            ),
            other => Error::from(other),
        })?;
        // Refused before anything is written (the value log below starts a file).
        if let Some(f) = db.get(super::keys::META_FORMAT)? {
            let format = f
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| Error::corrupted("malformed format mark in the store"))?;
            if format > super::keys::FORMAT_VERSION {
                return Err(Error::new(
                    SqlState::FeatureNotSupported,
                    format!(
                        "database {} has on-disk format {format}, written by a newer ORMDB; this build reads formats up to {}",
                        dir.parent().unwrap_or(dir).display(),
                        super::keys::FORMAT_VERSION
                    ),
                ));
            }
        }
        let vlog = match values {
            Some(v) if threshold > 0 || v.exists() => Some(Arc::new(ValueLog::open(v, threshold)?)),
            _ => None,
        };
        Ok(SledKv {
            db,
            dir: dir.to_path_buf(),
            vlog,
            heads: None,
        })
    }

    /// Keeps the newest version of rows whose value is in the value log in memory, in at most
    /// `budget` bytes (see `storage::row_heads`); 0 or a store without a value log: none.
    pub fn with_row_heads(mut self, budget: u64) -> SledKv {
        self.heads = (budget > 0 && self.vlog.is_some()).then(|| RowHeads::new(budget));
        self
    }

    /// Tells the row heads that a row version was put (`Some`, with the pointer it stored if
    /// its value went to the value log) or removed (`None`).
    #[inline]
    fn note(&self, key: &[u8], put: Option<Option<Pointer>>) {
        let Some(heads) = &self.heads else {
            return;
        };
        let Some((table, row, ts)) = keys::parse_row_version_key(key) else {
            return;
        };
        match put {
            Some(p) => heads.put(table, row, ts, p.as_ref()),
            None => heads.removed(table, row, ts),
        }
    }

    /// The value to store for `key`: a value-log pointer when the value is separated.
    #[inline]
    fn stored<'a>(
        &self,
        key: &[u8],
        value: &'a [u8],
        buf: &'a mut [u8; POINTER_LEN],
    ) -> Result<&'a [u8]> {
        match &self.vlog {
            Some(vl) if vl.separates(value.len()) && is_separable(key) => {
                *buf = vl.append(value)?;
                Ok(&buf[..])
            }
            _ => Ok(value),
        }
    }

    fn resolve_pair(&self, pair: KvPair) -> Result<KvPair> {
        match &self.vlog {
            None => Ok(pair),
            Some(vl) => {
                let v = resolve(&self.db, vl, &pair.0, pair.1)?;
                Ok((pair.0, v))
            }
        }
    }
}

/// The bytes of a stored value: a value-log pointer is read (see `storage::vlog`). A pointer
/// whose file a compaction removed since the read re-reads the key, which then holds the new
/// pointer; one whose bytes are damaged or lost is returned as it is, and the row codec
/// reports it as damaged if anything decodes it.
fn resolve(db: &sled::Db, vl: &ValueLog, key: &[u8], v: KvBytes) -> Result<KvBytes> {
    if !is_separable(key) {
        return Ok(v);
    }
    let mut v = v;
    for _ in 0..8 {
        let Some(p) = Pointer::decode(&v) else {
            return Ok(v);
        };
        match vl.read(&p) {
            Some(Ok(bytes)) => return Ok(KvBytes::from(bytes)),
            Some(Err(())) => return Ok(v),
            None => match db.get(key)? {
                Some(nv) if nv != v => v = nv,
                _ => return Ok(v),
            },
        }
    }
    Ok(v)
}

/// Removes the snapshot files sled was still writing when its process died.
///
/// sled 0.34 writes a snapshot to `snap.<lsn>.generating`, syncs it and renames it to
/// `snap.<lsn>`. Its recovery lists every `snap.*` file, the unfinished ones included, and reads
/// the one that sorts last: after a kill in the middle of that write, the torn `.generating`
/// file is picked, its checksum fails and the open fails with `Corruption { at: None }` for
/// good, although the previous snapshot and the log are intact (the crash test met this once
/// in about 300 kills). Without the unfinished file sled recovers from the previous snapshot
/// and the log, which is what it would have done had the kill come a moment earlier.
///
/// The files are only removed while holding the lock sled takes on its data file, so another
/// process that has the database open (and may be writing a snapshot right now) is never
/// disturbed: when the lock is taken, the open below fails as before.
fn discard_unfinished_snapshots(dir: &Path) -> Result<()> {
    use std::os::unix::io::AsRawFd;
    let Ok(data) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("db"))
    else {
        return Ok(()); // a new store, or one sled will report on itself
    };
    // SAFETY: flock on a descriptor this function owns; the lock is released when `data` closes.
    if unsafe { libc::flock(data.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Ok(());
    }
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(&format!("listing {}", dir.display()), e))?;
    let mut removed = false;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(entry.path())
                .map_err(|e| Error::io(&format!("removing {}", entry.path().display()), e))?;
            tracing::warn!(file = %name, "removed a snapshot file sled did not finish writing");
            removed = true;
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    drop(data);
    Ok(())
}

fn to_iter(
    it: impl Iterator<Item = sled::Result<KvPair>> + Send + 'static,
    db: &sled::Db,
    vlog: &Option<Arc<ValueLog>>,
) -> KvIter {
    match vlog {
        None => Box::new(it.map(|r| r.map_err(Error::from))),
        Some(vl) => {
            let (db, vl) = (db.clone(), vl.clone());
            Box::new(it.map(move |r| {
                let (k, v) = r?;
                let v = resolve(&db, &vl, &k, v)?;
                Ok((k, v))
            }))
        }
    }
}

impl Kv for SledKv {
    fn get(&self, key: &[u8]) -> Result<Option<super::KvBytes>> {
        match (self.db.get(key)?, &self.vlog) {
            (Some(v), Some(vl)) => Ok(Some(resolve(&self.db, vl, key, v)?)),
            (v, _) => Ok(v),
        }
    }

    fn scan(&self, start: &[u8], end: &[u8]) -> KvIter {
        if start >= end {
            return Box::new(std::iter::empty());
        }
        to_iter(
            self.db.range(start.to_vec()..end.to_vec()),
            &self.db,
            &self.vlog,
        )
    }

    fn scan_raw(&self, start: &[u8], end: &[u8]) -> KvIter {
        if start >= end {
            return Box::new(std::iter::empty());
        }
        to_iter(self.db.range(start.to_vec()..end.to_vec()), &self.db, &None)
    }

    fn scan_rev(&self, start: &[u8], end: &[u8]) -> KvIter {
        if start >= end {
            return Box::new(std::iter::empty());
        }
        to_iter(
            self.db.range(start.to_vec()..end.to_vec()).rev(),
            &self.db,
            &self.vlog,
        )
    }

    fn first_in(&self, start: &[u8], end: &[u8]) -> Result<Option<KvPair>> {
        if start >= end {
            return Ok(None);
        }
        self.db
            .range(start..end)
            .next()
            .transpose()?
            .map(|p| self.resolve_pair(p))
            .transpose()
    }

    fn last_in(&self, start: &[u8], end: &[u8]) -> Result<Option<KvPair>> {
        if start >= end {
            return Ok(None);
        }
        self.db
            .range(start..end)
            .next_back()
            .transpose()?
            .map(|p| self.resolve_pair(p))
            .transpose()
    }

    fn row_head(&self, table: u32, row: i64) -> Result<Option<RowHead>> {
        let (Some(heads), Some(vl)) = (&self.heads, &self.vlog) else {
            return Ok(None);
        };
        let epoch = match heads.lookup(table, row) {
            Err(epoch) => epoch,
            Ok((ts, p)) => {
                if let Some(Ok(bytes)) = vl.read(&p) {
                    heads.hit();
                    return Ok(Some(RowHead::Newest(ts, KvBytes::from(bytes))));
                }
                // Moved by a compaction since, or unreadable: the store tells.
                heads.epoch(table, row)
            }
        };
        let start = keys::row_key(table, row);
        let end = keys::prefix_end(&start);
        let Some((k, v)) = self.db.range(start..end).next().transpose()? else {
            return Ok(Some(RowHead::Absent));
        };
        let Some((_, _, ts)) = keys::parse_row_version_key(&k) else {
            return Ok(None);
        };
        if let Some(p) = Pointer::decode(&v) {
            heads.fill(table, row, epoch, ts, &p);
        }
        Ok(Some(RowHead::Newest(ts, resolve(&self.db, vl, &k, v)?)))
    }

    fn row_head_stats(&self) -> RowHeadStats {
        self.heads
            .as_ref()
            .map_or_else(Default::default, RowHeads::stats)
    }

    fn warm_row_heads(&self, from: &[u8], rows: usize) -> Result<Option<Vec<u8>>> {
        let Some(heads) = &self.heads else {
            return Ok(None);
        };
        // Taken before the scan reads anything: a removal, move or inline put in a shard
        // after this drops the fills of that shard (see `RowHeads::fill`).
        let epochs = heads.epochs();
        let start = if from.is_empty() {
            &[keys::ROW][..]
        } else {
            from
        };
        // The table this call resumes in passed the check below in an earlier call.
        let resumed =
            (from.len() > 5).then(|| u32::from_be_bytes([from[1], from[2], from[3], from[4]]));
        let mut last = None;
        let mut seen = 0;
        // Rows and value-log rows seen of the current table.
        let (mut in_table, mut separated) = (0u32, 0u32);
        let mut found = Vec::with_capacity(rows.min(4096));
        let mut next = None;
        for item in self.db.range(start..&[keys::ROW + 1][..]) {
            let (k, v) = item?;
            let Some((table, row, ts)) = keys::parse_row_version_key(&k) else {
                continue;
            };
            if last == Some((table, row)) {
                continue; // an older version
            }
            if last.is_none_or(|(t, _)| t != table) {
                (in_table, separated) = (0, 0);
            }
            if in_table == SAMPLE_ROWS && separated == 0 && Some(table) != resumed {
                // A table of small rows: nothing to fill; its reads find it so themselves.
                next = Some(keys::prefix_end(&keys::table_prefix(table)));
                break;
            }
            in_table += 1;
            if seen == rows {
                // From the row's key, not this version's: a version put meanwhile sorts first.
                next = Some(keys::row_key(table, row));
                break;
            }
            last = Some((table, row));
            seen += 1;
            if let Some(p) = Pointer::decode(&v) {
                separated += 1;
                found.push((table, row, ts, p));
            }
        }
        heads.fill_from(&epochs, &found);
        Ok(next.filter(|_| !heads.is_full()))
    }

    fn apply(&self, batch: &Batch) -> Result<()> {
        let _gate = self.vlog.as_ref().map(|v| v.apply_guard());
        let mut b = sled::Batch::default();
        let mut ptr = [0u8; POINTER_LEN];
        // What to tell the row heads once the batch is in: (key, Some(stored pointer or
        // None for an inline value)) for a put, (key, None) for a removal.
        type Noted<'k> = (&'k [u8], Option<Option<Pointer>>);
        let mut noted: Vec<Noted> = Vec::new();
        let track = |k: &[u8]| self.heads.is_some() && k.first() == Some(&keys::ROW);
        for op in &batch.ops {
            match op {
                BatchOp::Put(k, v) => {
                    let stored = self.stored(k, v, &mut ptr)?;
                    if track(k) {
                        noted.push((k, Some(Pointer::decode(stored))));
                    }
                    b.insert(k.as_slice(), stored)
                }
                BatchOp::Delete(k) => {
                    if track(k) {
                        noted.push((k, None));
                    }
                    b.remove(k.as_slice())
                }
            }
        }
        self.db.apply_batch(b)?;
        for (k, put) in noted {
            self.note(k, put);
        }
        Ok(())
    }

    fn apply_unordered(&self, batch: &Batch) -> Result<()> {
        // Plain inserts: sled's atomic batches roll its write buffer twice, each a synchronous
        // write (pwrite + sync_file_range with wait), which dominated commit cost.
        let _gate = self.vlog.as_ref().map(|v| v.apply_guard());
        let mut ptr = [0u8; POINTER_LEN];
        for op in &batch.ops {
            match op {
                BatchOp::Put(k, v) => {
                    let stored = self.stored(k, v, &mut ptr)?;
                    self.db.insert(k.as_slice(), stored)?;
                    self.note(k, Some(Pointer::decode(stored)));
                }
                BatchOp::Delete(k) => {
                    self.db.remove(k.as_slice())?;
                    self.note(k, None);
                }
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        // Values first: once sled's pointers are durable, what they point to must be.
        if let Some(vl) = &self.vlog {
            vl.sync()?;
        }
        self.sync_sled()
    }

    fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()? + self.vlog.as_ref().map_or(0, |v| v.size_on_disk()))
    }

    fn compact_values(&self, force: bool) -> Result<CompactStats> {
        match &self.vlog {
            None => Ok(CompactStats::default()),
            Some(vl) => vl.compact(
                &self.db,
                force,
                || self.sync(),
                |k, old, new| {
                    if let (Some(heads), Some((table, row, ts))) =
                        (&self.heads, keys::parse_row_version_key(k))
                    {
                        heads.moved(table, row, ts, old, new);
                    }
                },
            ),
        }
    }
}

impl SledKv {
    fn sync_sled(&self) -> Result<()> {
        self.db.flush()?;
        let data = self.dir.join("db");
        if data.exists() {
            File::open(&data)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io("fsync of the sled data file", e))?;
        }
        sync_dir(&self.dir)
    }
}

/// fsync a directory so that created, renamed or removed entries are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(&format!("fsync of directory {}", dir.display()), e))
}

/// Whether the sled data directory `dir` holds a data file sled can recover anything from: at
/// least one segment with an intact header. sled 0.34 takes a data file without one for an
/// unfinished first write and re-initializes it in place, destroying whatever it held. The
/// engine asks first when the store is known to hold checkpointed data, so that a damaged file
/// is reported and left as it is. Layout (sled 0.34 `SegmentHeader`): every segment of
/// `segment_size` bytes (sled's `conf`, default 512 KiB) starts with 20 bytes: the LE u32
/// `crc32(bytes[4..20]) ^ 0xFFFF_FFFF`, then the lsn and max stable lsn.
pub fn has_intact_segment(dir: &Path) -> Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match File::open(dir.join("db")) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("opening the sled data file", e)),
    };
    let len = f
        .metadata()
        .map_err(|e| Error::io("reading the sled data file", e))?
        .len();
    let segment = std::fs::read_to_string(dir.join("conf"))
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("segment_size: ")?.trim().parse::<u64>().ok())
        })
        .filter(|s| *s >= 20)
        .unwrap_or(512 * 1024);
    let mut header = [0u8; 20];
    let mut off = 0;
    while off + 20 <= len {
        f.seek(SeekFrom::Start(off))
            .and_then(|_| f.read_exact(&mut header))
            .map_err(|e| Error::io("reading the sled data file", e))?;
        let stored = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) ^ 0xFFFF_FFFF;
        if crc32fast::hash(&header[4..]) == stored {
            return Ok(true);
        }
        off += segment;
    }
    Ok(false)
}
