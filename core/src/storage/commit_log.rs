//! The commit log: an append-only, checksummed, group-committed log of every commit's batch.
//!
//! It is the durability source. A commit is applied to sled (not flushed) and appended here; the
//! committer is acknowledged once its record is fdatasync'd (durability `full`) or written to the
//! OS (durability `normal`, synced on an interval). Concurrent committers share one sync: whoever
//! finds no sync in progress becomes the leader, writes everything buffered so far and syncs it
//! for all of them. Checkpoints flush sled and drop log segments that sled now holds durably; on
//! open, the remaining segments are replayed into sled (replay is idempotent: every key written
//! is either versioned by commit timestamp or a hint).
//!
//! Record framing: `len u32 LE | crc32 u32 LE | payload`, payload = `ts u64 LE | op count varint |
//! ops`. A torn or zeroed tail in the last segment ends replay there and is cut off.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex};

use super::row_codec::{get_bytes, get_varint, put_bytes, put_varint};
use super::segment::{Segment, PREALLOC};
use super::sled_kv::sync_dir;
use super::{Batch, BatchOp};
use crate::error::{Error, Result};

const MAX_RECORD: usize = 1 << 30;

pub struct CommitLog {
    dir: PathBuf,
    /// Segments are written with `O_DIRECT` and native AIO where possible (see `segment`).
    direct: bool,
    state: Mutex<LogState>,
    cond: Condvar,
    /// Serializes rotations (background checkpoints and explicit ones).
    rotating: Mutex<()>,
    /// Wakes the syncer thread when a record is appended behind a running round or other
    /// unwritten records.
    work: Condvar,
    /// How many appends handed their record to the syncer (the rest were written by their own
    /// committer); observable so tests can tell the lone-committer path from group commit.
    hand_offs: AtomicU64,
    /// Rounds started by [`CommitLog::write_ahead`] (record on its way to the device while its
    /// committer applies the batch); observable for tests.
    write_aheads: AtomicU64,
}

/// What a leader round does with the buffered records.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Round {
    /// Write them to the OS (durability `normal`).
    Write,
    /// Write them and start the device write without waiting for it: the committer's
    /// fdatasync after its store apply then finds the data on its way or already there.
    WriteAhead,
    /// Write them and fdatasync.
    Sync,
}

/// Called once a record is synced (`Ok`, with the highest commit timestamp that sync covered)
/// or the log failed before it was (`Err`); see [`CommitLog::on_synced`].
pub type OnSynced = Box<dyn FnOnce(Result<u64>) + Send>;

/// The result of [`CommitLog::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The record's log sequence number, for [`CommitLog::persist`].
    pub lsn: u64,
    /// No round was running and nothing else was buffered: the syncer was not woken, the
    /// committer writes (and syncs) the record itself.
    pub lone: bool,
}

struct LogState {
    buf: Vec<u8>,
    buf_last_lsn: u64,
    buf_max_ts: u64,
    next_lsn: u64,
    written_lsn: u64,
    written_ts: u64,
    synced_lsn: u64,
    synced_ts: u64,
    /// A leader is writing or syncing; it has taken `seg`.
    busy: bool,
    seg: Option<Segment>,
    /// Where the next record goes in the current segment.
    write_pos: u64,
    /// End of the zero-filled, synced region of the current segment.
    alloc_end: u64,
    segment: u64,
    bytes_since_rotation: u64,
    failed: Option<String>,
    /// Set to end [`CommitLog::run_syncer`].
    stop_syncer: bool,
    /// Callbacks waiting for their record to be synced ([`CommitLog::on_synced`]), run by the
    /// thread that finishes the round that syncs it.
    waiters: Vec<(u64, OnSynced)>,
    /// Callbacks taken from `waiters` and being run (see [`CommitLog::sync_all_and_settle`]).
    running_waiters: usize,
}

/// What replay found.
#[derive(Debug, Default, Clone)]
pub struct ReplayInfo {
    pub segments: usize,
    pub records: u64,
    pub max_ts: u64,
    pub truncated_bytes: u64,
}

/// The error every commit, persist and sync waiter gets once the log has failed (`msg` says how).
fn failure(msg: &str) -> Error {
    Error::io("commit log", std::io::Error::other(msg.to_string()))
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:016}.wal"))
}

fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut segs = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| Error::io("reading the commit log directory", e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("reading the commit log directory", e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".wal") {
            if let Ok(n) = stem.parse::<u64>() {
                segs.push((n, entry.path()));
            }
        }
    }
    segs.sort();
    Ok(segs)
}

pub fn encode_record(ts: u64, batch: &Batch, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&ts.to_le_bytes());
    put_varint(out, batch.ops.len() as u64);
    for op in &batch.ops {
        match op {
            BatchOp::Put(k, v) => {
                out.push(1);
                put_bytes(out, k);
                put_bytes(out, v);
            }
            BatchOp::Delete(k) => {
                out.push(2);
                put_bytes(out, k);
            }
        }
    }
    let payload_len = (out.len() - start - 8) as u32;
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn decode_payload(p: &[u8]) -> Result<(u64, Batch)> {
    if p.len() < 8 {
        return Err(Error::corrupted(
            "commit log record shorter than its header",
        ));
    }
    let ts = u64::from_le_bytes(p[..8].try_into().expect("8 bytes"));
    let mut pos = 8;
    let n = get_varint(p, &mut pos)? as usize;
    let mut batch = Batch::default();
    for _ in 0..n.min(p.len()) {
        let tag = *p
            .get(pos)
            .ok_or_else(|| Error::corrupted("truncated commit log record"))?;
        pos += 1;
        let k = get_bytes(p, &mut pos)?.to_vec();
        match tag {
            1 => batch.put(k, get_bytes(p, &mut pos)?.to_vec()),
            2 => batch.delete(k),
            t => return Err(Error::corrupted(format!("unknown commit log op {t}"))),
        }
    }
    Ok((ts, batch))
}

impl CommitLog {
    /// Replays every segment in `dir` through `apply`, in log order, cutting off a torn tail of
    /// the last segment. A damaged record anywhere else is reported as corruption.
    pub fn replay(
        dir: &Path,
        mut apply: impl FnMut(u64, Batch) -> Result<()>,
    ) -> Result<ReplayInfo> {
        let mut info = ReplayInfo::default();
        if !dir.exists() {
            return Ok(info);
        }
        let segs = list_segments(dir)?;
        info.segments = segs.len();
        for (i, (_, path)) in segs.iter().enumerate() {
            let last = i + 1 == segs.len();
            let mut data = Vec::new();
            File::open(path)
                .and_then(|mut f| f.read_to_end(&mut data))
                .map_err(|e| Error::io("reading a commit log segment", e))?;
            let mut pos = 0usize;
            let valid_end = loop {
                if pos + 8 > data.len() {
                    break pos;
                }
                let len = u32::from_le_bytes(data[pos..pos + 4].try_into().expect("4")) as usize;
                let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().expect("4"));
                if len == 0 && crc == 0 {
                    break pos; // zeroed tail
                }
                let end = pos + 8 + len;
                if len > MAX_RECORD
                    || end > data.len()
                    || crc32fast::hash(&data[pos + 8..end]) != crc
                {
                    break pos;
                }
                let (ts, batch) = decode_payload(&data[pos + 8..end])?;
                apply(ts, batch)?;
                info.records += 1;
                info.max_ts = info.max_ts.max(ts);
                pos = end;
            };
            if valid_end < data.len() {
                let rest = &data[valid_end..];
                if !last && rest.iter().any(|b| *b != 0) {
                    return Err(Error::corrupted(format!(
                        "commit log segment {} is damaged at byte {valid_end} and is not the last segment",
                        path.display()
                    )));
                }
                info.truncated_bytes += rest.len() as u64;
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| Error::io("opening a commit log segment", e))?;
                f.set_len(valid_end as u64)
                    .and_then(|_| f.sync_all())
                    .map_err(|e| Error::io("truncating the torn tail of the commit log", e))?;
            }
        }
        Ok(info)
    }

    /// Opens a fresh log in `dir`, after the caller replayed and checkpointed the old segments,
    /// writing through the page cache.
    pub fn create(dir: &Path, last_ts: u64) -> Result<CommitLog> {
        Self::create_with(dir, last_ts, false)
    }

    /// [`CommitLog::create`], with `direct`: segments written with `O_DIRECT` and native AIO
    /// where the file system and kernel allow (durability `full`; see `storage::segment`).
    pub fn create_with(dir: &Path, last_ts: u64, direct: bool) -> Result<CommitLog> {
        fs::create_dir_all(dir).map_err(|e| Error::io("creating the commit log directory", e))?;
        let segs = list_segments(dir)?;
        let next = segs.last().map_or(1, |(n, _)| n + 1);
        for (_, p) in &segs {
            fs::remove_file(p).map_err(|e| Error::io("removing a checkpointed log segment", e))?;
        }
        let seg = new_segment(dir, next, direct)?;
        Ok(CommitLog {
            dir: dir.to_path_buf(),
            direct,
            state: Mutex::new(LogState {
                buf: Vec::with_capacity(1 << 16),
                buf_last_lsn: 0,
                buf_max_ts: last_ts,
                next_lsn: 1,
                written_lsn: 0,
                written_ts: last_ts,
                synced_lsn: 0,
                synced_ts: last_ts,
                busy: false,
                seg: Some(seg),
                write_pos: 0,
                alloc_end: PREALLOC,
                segment: next,
                bytes_since_rotation: 0,
                failed: None,
                stop_syncer: false,
                waiters: Vec::new(),
                running_waiters: 0,
            }),
            cond: Condvar::new(),
            rotating: Mutex::new(()),
            work: Condvar::new(),
            hand_offs: AtomicU64::new(0),
            write_aheads: AtomicU64::new(0),
        })
    }

    /// Appends a commit record to the in-memory buffer. Callers append in commit-timestamp
    /// order (under the commit lock), then call [`CommitLog::persist`] for it (a lone Full
    /// committer first calls [`CommitLog::write_ahead`]).
    pub fn append(&self, ts: u64, batch: &Batch) -> Result<Appended> {
        let mut st = self.state.lock();
        if let Some(f) = &st.failed {
            return Err(failure(f));
        }
        let before = st.buf.len();
        // A lone committer (no round running, nothing else buffered) writes and syncs its own
        // record in `persist`: handing it to the syncer costs a wake-up of that thread and
        // another of this one when the sync ends, each ~28 us when the other thread sleeps on
        // the other CPU, more than the store apply the hand-off would overlap. Once records
        // queue behind a running round, the syncer takes them: it starts the next round the
        // moment the current one ends, with no wake-up in between (group commit).
        let hand_off = st.busy || before > 0;
        encode_record(ts, batch, &mut st.buf);
        st.bytes_since_rotation += (st.buf.len() - before) as u64;
        let lsn = st.next_lsn;
        st.next_lsn += 1;
        st.buf_last_lsn = lsn;
        st.buf_max_ts = st.buf_max_ts.max(ts);
        drop(st);
        if hand_off {
            self.hand_offs.fetch_add(1, Ordering::Relaxed);
            self.work.notify_one();
        }
        Ok(Appended {
            lsn,
            lone: !hand_off,
        })
    }

    /// Whether the current segment is written with `O_DIRECT` (asked for with
    /// [`CommitLog::create_with`] and allowed by the file system and kernel).
    pub fn is_direct(&self) -> bool {
        self.state
            .lock()
            .seg
            .as_ref()
            .is_some_and(Segment::is_direct)
    }

    /// Appends so far whose record was left to the syncer thread (see [`CommitLog::append`]).
    pub fn hand_offs(&self) -> u64 {
        self.hand_offs.load(Ordering::Relaxed)
    }

    /// Rounds started by [`CommitLog::write_ahead`] so far.
    pub fn write_aheads(&self) -> u64 {
        self.write_aheads.load(Ordering::Relaxed)
    }

    /// For a lone Full committer, between its append and its store apply: writes the buffered
    /// records (its own and any appended since) to the OS and starts their device write, so
    /// the apply overlaps the device write (a 4 KiB write costs ~55 us on the benchmark VM, the
    /// cache flush of the fdatasync ~35 us). Durability is unchanged: the committer is
    /// acknowledged only after [`CommitLog::persist`] with `sync`, whose fdatasync covers every
    /// record written before it started. Does nothing when the record is already written or a
    /// round is running (that round or the next one takes it). Returns whether it wrote.
    pub fn write_ahead(&self, lsn: u64) -> Result<bool> {
        let mut st = self.state.lock();
        if st.busy || st.written_lsn >= lsn || st.failed.is_some() {
            return Ok(false);
        }
        self.lead(&mut st, Round::WriteAhead)?;
        self.write_aheads.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Waits until record `lsn` is written to the OS (`sync == false`) or synced to disk
    /// (`sync == true`). Returns the highest commit timestamp known to be persisted that far.
    pub fn persist(&self, lsn: u64, sync: bool) -> Result<u64> {
        let mut st = self.state.lock();
        loop {
            if let Some(f) = &st.failed {
                return Err(failure(f));
            }
            if sync && st.synced_lsn >= lsn {
                return Ok(st.synced_ts);
            }
            if !sync && st.written_lsn >= lsn {
                return Ok(st.written_ts);
            }
            if st.busy {
                self.cond.wait(&mut st);
                continue;
            }
            self.lead(&mut st, if sync { Round::Sync } else { Round::Write })?;
        }
    }

    /// Runs `done` once record `lsn` is synced to disk, without waiting for it here when a round
    /// is running: then the thread that finishes the round that syncs the record runs it (the
    /// syncer thread, or a committer leading a round). When no round is running this thread
    /// leads one (as [`CommitLog::persist`] would). Runs at once when the record is already synced
    /// or the log has failed. `done` must not block for long: it holds up whoever runs it.
    pub fn on_synced(&self, lsn: u64, done: OnSynced) {
        let mut st = self.state.lock();
        if let Some(f) = &st.failed {
            let e = failure(f);
            drop(st);
            return done(Err(e));
        }
        if st.synced_lsn >= lsn {
            let ts = st.synced_ts;
            drop(st);
            return done(Ok(ts));
        }
        st.waiters.push((lsn, done));
        if st.busy {
            // The running round may not hold the record: the syncer takes the next one (it waits
            // for this round to end); waking it covers a record appended before it last looked.
            drop(st);
            self.work.notify_one();
            return;
        }
        // Errors reach every waiter, this one included.
        let _ = self.lead(&mut st, Round::Sync);
    }

    /// Runs `waiters` in record order with the state lock released (`failed`: the log failed),
    /// counted in `running_waiters` meanwhile.
    fn run_waiters(
        &self,
        st: &mut parking_lot::MutexGuard<'_, LogState>,
        mut waiters: Vec<(u64, OnSynced)>,
        synced_ts: u64,
        failed: Option<&str>,
    ) {
        if waiters.is_empty() {
            return;
        }
        let n = waiters.len();
        waiters.sort_by_key(|(lsn, _)| *lsn);
        st.running_waiters += n;
        parking_lot::MutexGuard::unlocked(st, || {
            for (lsn, done) in waiters {
                let r = match failed {
                    None => Ok(synced_ts),
                    Some(m) => Err(failure(m)),
                };
                // A callback that panics must not take the syncer thread (or a committer) with
                // it, nor leave `running_waiters` up.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| done(r))).is_err() {
                    tracing::error!(lsn, "a commit log callback panicked");
                }
            }
        });
        st.running_waiters -= n;
        if st.running_waiters == 0 {
            self.cond.notify_all();
        }
    }

    /// [`CommitLog::sync_all_pending`], then waits until every [`CommitLog::on_synced`]
    /// callback that sync made due has finished running, on whichever thread runs it. After it,
    /// with no new appends, no callback runs any more (a server stops on it before its request
    /// contexts go away).
    pub fn sync_all_and_settle(&self) -> Result<u64> {
        let synced = self.sync_all_pending();
        let mut st = self.state.lock();
        while st.running_waiters > 0 {
            self.cond.wait(&mut st);
        }
        synced
    }

    /// Waiters on [`CommitLog::on_synced`] not yet run (for tests).
    #[cfg(test)]
    pub(crate) fn sync_waiters(&self) -> usize {
        self.state.lock().waiters.len()
    }

    /// Loop of the syncer thread (durability `full`): leads a write+sync round whenever records
    /// are waiting and no round is in progress, so the committers that appended them can apply
    /// their batches to the store meanwhile. It is woken only for records appended while a
    /// round runs or others wait (see [`CommitLog::append`]); committers still lead a round
    /// themselves if they find none running.
    pub fn run_syncer(&self) {
        let mut st = self.state.lock();
        loop {
            if st.stop_syncer || st.failed.is_some() {
                return;
            }
            let pending = st.next_lsn - 1 > st.synced_lsn;
            if !pending {
                self.work
                    .wait_for(&mut st, std::time::Duration::from_millis(200));
                continue;
            }
            if st.busy {
                // A committer leads the current round: take the next one as soon as it ends.
                self.cond
                    .wait_for(&mut st, std::time::Duration::from_millis(200));
                continue;
            }
            let _ = self.lead(&mut st, Round::Sync);
        }
    }

    pub fn stop_syncer(&self) {
        self.state.lock().stop_syncer = true;
        self.work.notify_all();
        self.cond.notify_all();
    }

    /// Writes (and syncs) everything appended so far.
    pub fn sync_all_pending(&self) -> Result<u64> {
        let lsn = self.state.lock().next_lsn - 1;
        self.persist(lsn, true)
    }

    /// One leader round: write the buffer, start its device write or fdatasync it as `round`
    /// asks, publish the new marks.
    fn lead(&self, st: &mut parking_lot::MutexGuard<'_, LogState>, round: Round) -> Result<()> {
        st.busy = true;
        let buf = std::mem::take(&mut st.buf);
        let last = st.buf_last_lsn.max(st.written_lsn);
        let max_ts = st.buf_max_ts;
        let mut seg = st.seg.take();
        let (pos, alloc) = (st.write_pos, st.alloc_end);
        let res = parking_lot::MutexGuard::unlocked(st, || -> std::io::Result<(u64, u64)> {
            let seg = seg
                .as_mut()
                .ok_or_else(|| std::io::Error::other("commit log segment is not open"))?;
            // A write-ahead still in flight ends before anything else touches the file.
            seg.finish_pending()?;
            let end = pos + buf.len() as u64;
            let alloc = if end > alloc {
                seg.extend_zeroed(alloc, end)?
            } else {
                alloc
            };
            if !buf.is_empty() {
                seg.write(pos, &buf, round == Round::WriteAhead)?;
            }
            if round == Round::Sync {
                seg.sync()?;
            }
            Ok((end, alloc))
        });
        st.seg = seg;
        st.busy = false;
        if st.buf.is_empty() {
            let mut buf = buf;
            buf.clear();
            st.buf = buf;
        }
        match res {
            Ok((pos, alloc)) => {
                st.write_pos = pos;
                st.alloc_end = alloc;
                st.written_lsn = last;
                st.written_ts = max_ts;
                if round == Round::Sync {
                    st.synced_lsn = last;
                    st.synced_ts = max_ts;
                }
                self.cond.notify_all();
                if round == Round::Sync && !st.waiters.is_empty() {
                    let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut st.waiters)
                        .into_iter()
                        .partition(|(lsn, _)| *lsn <= last);
                    st.waiters = waiting;
                    self.run_waiters(st, ready, max_ts, None);
                }
                Ok(())
            }
            Err(e) => {
                // After a failed write or fsync the log's state on disk is unknown: refuse
                // every further commit rather than acknowledge one that may not survive.
                let msg = format!("commit log write failed: {e}");
                st.failed = Some(msg.clone());
                self.cond.notify_all();
                let all = std::mem::take(&mut st.waiters);
                self.run_waiters(st, all, 0, Some(&msg));
                Err(failure(&msg))
            }
        }
    }

    /// Bytes appended since the last rotation (the checkpoint trigger).
    pub fn bytes_since_rotation(&self) -> u64 {
        self.state.lock().bytes_since_rotation
    }

    /// Syncs the current segment and starts a new one. Returns the paths of the segments that
    /// will be redundant once the store is synced (all records in them are already applied).
    pub fn rotate(&self) -> Result<Vec<PathBuf>> {
        let _rotating = self.rotating.lock();
        // Prepare the next segment before taking the state lock: committers keep going.
        let next = self.state.lock().segment + 1;
        let seg = new_segment(&self.dir, next, self.direct)?;
        let mut st = self.state.lock();
        while st.busy {
            self.cond.wait(&mut st);
        }
        self.lead(&mut st, Round::Sync)?;
        while st.busy {
            self.cond.wait(&mut st);
        }
        st.seg = Some(seg);
        st.write_pos = 0;
        st.alloc_end = PREALLOC;
        st.segment = next;
        st.bytes_since_rotation = 0;
        drop(st);
        Ok(list_segments(&self.dir)?
            .into_iter()
            .filter(|(n, _)| *n < next)
            .map(|(_, p)| p)
            .collect())
    }

    /// Removes checkpointed segments (after the store was synced).
    pub fn remove_segments(&self, paths: &[PathBuf]) -> Result<()> {
        for p in paths {
            match fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("removing a checkpointed log segment", e)),
            }
        }
        sync_dir(&self.dir)
    }
}

/// Creates segment `n` (see [`Segment::create`]).
fn new_segment(dir: &Path, n: u64, direct: bool) -> Result<Segment> {
    let seg = Segment::create(&segment_path(dir, n), direct)
        .map_err(|e| Error::io("creating a commit log segment", e))?;
    sync_dir(dir)?;
    Ok(seg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn append_sync_replay_and_torn_tail(direct: bool) {
        let dir = tempfile::tempdir().unwrap();
        let log = new_log(dir.path(), direct);
        for ts in 1..=5u64 {
            let mut b = Batch::default();
            b.put(vec![ts as u8], vec![1, 2, 3]);
            b.delete(vec![9]);
            let lsn = log.append(ts, &b).unwrap().lsn;
            assert_eq!(log.persist(lsn, true).unwrap(), ts);
        }
        drop(log);
        // Tear the last record: zero its final bytes, as a write cut short would leave them.
        let seg = list_segments(dir.path()).unwrap().pop().unwrap().1;
        let data = fs::read(&seg).unwrap();
        let end = data.iter().rposition(|b| *b != 0).unwrap() + 1;
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&[0, 0, 0], end as u64 - 3).unwrap();
        let mut seen = Vec::new();
        let info = CommitLog::replay(dir.path(), |ts, b| {
            assert_eq!(b.ops.len(), 2);
            seen.push(ts);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![1, 2, 3, 4]);
        assert_eq!(info.max_ts, 4);
        assert!(info.truncated_bytes > 0);
    }

    fn one_op(ts: u64) -> Batch {
        let mut b = Batch::default();
        b.put(ts.to_be_bytes().to_vec(), vec![7; 40]);
        b
    }

    fn lone_committer_syncs_its_own_record(direct: bool) {
        let dir = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(new_log(dir.path(), direct));
        let l = log.clone();
        let syncer = std::thread::spawn(move || l.run_syncer());
        for ts in 1..=20u64 {
            let lsn = log.append(ts, &one_op(ts)).unwrap().lsn;
            assert_eq!(log.persist(lsn, true).unwrap(), ts);
        }
        // Each append found no round running and nothing buffered: no wake-up of the syncer.
        assert_eq!(log.hand_offs(), 0);
        log.stop_syncer();
        syncer.join().unwrap();
        let mut n = 0;
        CommitLog::replay(dir.path(), |_, _| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 20);
    }

    fn records_queued_behind_others_go_to_the_syncer(direct: bool) {
        let dir = tempfile::tempdir().unwrap();
        let log = new_log(dir.path(), direct);
        let a = log.append(1, &one_op(1)).unwrap().lsn;
        assert_eq!(log.hand_offs(), 0);
        let b = log.append(2, &one_op(2)).unwrap().lsn;
        assert_eq!(
            log.hand_offs(),
            1,
            "the second record queued behind the first"
        );
        // With no syncer running, the committer of the later record writes both in one round.
        assert_eq!(log.persist(b, true).unwrap(), 2);
        assert_eq!(log.persist(a, true).unwrap(), 2);
    }

    fn concurrent_committers_all_become_durable_with_the_syncer(direct: bool) {
        let dir = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(new_log(dir.path(), direct));
        let l = log.clone();
        let syncer = std::thread::spawn(move || l.run_syncer());
        // The commit lock of `DbCore` orders appends by timestamp; a mutex stands in for it.
        let commit_lock = std::sync::Arc::new(Mutex::new(0u64));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (log, lock) = (log.clone(), commit_lock.clone());
                std::thread::spawn(move || {
                    for _ in 0..15 {
                        let (ts, lsn) = {
                            let mut next = lock.lock();
                            *next += 1;
                            (*next, log.append(*next, &one_op(*next)).unwrap().lsn)
                        };
                        assert!(log.persist(lsn, true).unwrap() >= ts);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        log.stop_syncer();
        syncer.join().unwrap();
        let mut seen = Vec::new();
        CommitLog::replay(dir.path(), |ts, _| {
            seen.push(ts);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, (1..=90).collect::<Vec<_>>());
    }

    fn replayed(dir: &Path) -> Vec<u64> {
        let mut seen = Vec::new();
        CommitLog::replay(dir, |ts, _| {
            seen.push(ts);
            Ok(())
        })
        .unwrap();
        seen
    }

    /// A lone committer's record is written before its apply but acknowledged only after the
    /// fdatasync that follows; what replays is exactly the records appended, in order.
    fn write_ahead_is_acknowledged_only_after_the_sync(direct: bool) {
        let dir = tempfile::tempdir().unwrap();
        let log = new_log(dir.path(), direct);
        for ts in 1..=30u64 {
            let a = log.append(ts, &one_op(ts)).unwrap();
            assert!(a.lone);
            assert!(log.write_ahead(a.lsn).unwrap());
            {
                let st = log.state.lock();
                assert_eq!(st.written_lsn, a.lsn);
                assert!(st.synced_lsn < a.lsn, "written ahead, not yet synced");
                assert!(!st.busy);
            }
            assert_eq!(log.persist(a.lsn, true).unwrap(), ts);
            assert_eq!(log.state.lock().synced_lsn, a.lsn);
        }
        assert_eq!(log.write_aheads(), 30);
        drop(log);
        assert_eq!(replayed(dir.path()), (1..=30).collect::<Vec<_>>());
    }

    /// A record appended behind a lone one (handed off) is written by the lone committer's
    /// write-ahead too, and a record already written is not written again.
    fn write_ahead_takes_records_queued_behind_and_skips_written_ones(direct: bool) {
        let dir = tempfile::tempdir().unwrap();
        let log = new_log(dir.path(), direct);
        let a = log.append(1, &one_op(1)).unwrap();
        let b = log.append(2, &one_op(2)).unwrap();
        assert!(a.lone && !b.lone);
        assert!(log.write_ahead(a.lsn).unwrap());
        assert_eq!(log.state.lock().written_lsn, b.lsn);
        assert!(!log.write_ahead(b.lsn).unwrap(), "already written");
        assert_eq!(log.persist(b.lsn, true).unwrap(), 2);
        assert_eq!(log.persist(a.lsn, true).unwrap(), 2);
        // Persisted without a write-ahead, then asked: nothing to do.
        let c = log.append(3, &one_op(3)).unwrap();
        assert_eq!(log.persist(c.lsn, true).unwrap(), 3);
        assert!(!log.write_ahead(c.lsn).unwrap());
        assert_eq!(log.write_aheads(), 1);
        drop(log);
        assert_eq!(replayed(dir.path()), vec![1, 2, 3]);
    }

    /// Many committers mixing write-aheads, their own syncs and the syncer thread: every
    /// acknowledged record replays, in timestamp order, and nothing else does.
    fn write_ahead_with_concurrent_committers_and_the_syncer(direct: bool) {
        let dir = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(new_log(dir.path(), direct));
        let l = log.clone();
        let syncer = std::thread::spawn(move || l.run_syncer());
        let commit_lock = std::sync::Arc::new(Mutex::new(0u64));
        let threads: Vec<_> = (0..5)
            .map(|_| {
                let (log, lock) = (log.clone(), commit_lock.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let (ts, a) = {
                            let mut next = lock.lock();
                            *next += 1;
                            (*next, log.append(*next, &one_op(*next)).unwrap())
                        };
                        if a.lone {
                            log.write_ahead(a.lsn).unwrap();
                        }
                        assert!(log.persist(a.lsn, true).unwrap() >= ts);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        log.stop_syncer();
        syncer.join().unwrap();
        drop(log);
        assert_eq!(replayed(dir.path()), (1..=100).collect::<Vec<_>>());
    }

    fn on_synced_runs_once_the_record_is_synced(direct: bool) {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(new_log(dir.path(), direct));
        // No round running: this thread leads one and runs the callback before returning.
        let lsn = log.append(1, &one_op(1)).unwrap().lsn;
        let ran = Arc::new(AtomicUsize::new(0));
        let (l, r) = (log.clone(), ran.clone());
        log.on_synced(
            lsn,
            Box::new(move |res| {
                res.unwrap();
                assert!(l.state.lock().synced_lsn >= lsn);
                r.fetch_add(1, SeqCst);
            }),
        );
        assert_eq!(ran.load(SeqCst), 1);
        // Already synced: at once.
        let r = ran.clone();
        log.on_synced(
            lsn,
            Box::new(move |res| drop(res.map(|_| r.fetch_add(1, SeqCst)))),
        );
        assert_eq!(ran.load(SeqCst), 2);
        // Many threads, each record's callback run by whoever syncs it (the syncer thread or a
        // thread that found no round running), after its sync, exactly once.
        let l = log.clone();
        let syncer = std::thread::spawn(move || l.run_syncer());
        let next = Arc::new(Mutex::new(2u64));
        let synced_seen = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (log, next, seen) = (log.clone(), next.clone(), synced_seen.clone());
                std::thread::spawn(move || {
                    for _ in 0..30 {
                        let lsn = {
                            let mut next = next.lock();
                            *next += 1;
                            log.append(*next - 1, &one_op(*next - 1)).unwrap().lsn
                        };
                        let (l, seen) = (log.clone(), seen.clone());
                        log.on_synced(
                            lsn,
                            Box::new(move |res| {
                                res.unwrap();
                                assert!(l.state.lock().synced_lsn >= lsn);
                                seen.lock().push(lsn);
                            }),
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while synced_seen.lock().len() < 180 {
            assert!(
                std::time::Instant::now() < deadline,
                "callbacks did not all run"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let mut seen = synced_seen.lock().clone();
        seen.sort_unstable();
        assert_eq!(seen, (2..=181).collect::<Vec<u64>>());
        assert_eq!(log.sync_waiters(), 0);
        log.stop_syncer();
        syncer.join().unwrap();
    }

    fn sync_all_and_settle_waits_for_callbacks_running_elsewhere(direct: bool) {
        use std::sync::atomic::{AtomicU8, Ordering::SeqCst};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(new_log(dir.path(), direct));
        let stage = Arc::new(AtomicU8::new(0));
        let lsn = log.append(1, &one_op(1)).unwrap().lsn;
        let (l, st) = (log.clone(), stage.clone());
        // This thread leads the round and runs the (slow) callback.
        let runner = std::thread::spawn(move || {
            let st2 = st.clone();
            l.on_synced(
                lsn,
                Box::new(move |r| {
                    r.unwrap();
                    st2.store(1, SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    st2.store(2, SeqCst);
                }),
            );
        });
        while stage.load(SeqCst) == 0 {
            std::thread::yield_now();
        }
        // The record is synced already; settling still waits for the callback to end.
        log.sync_all_and_settle().unwrap();
        assert_eq!(stage.load(SeqCst), 2);
        runner.join().unwrap();
    }

    fn a_panicking_callback_does_not_stop_the_others(direct: bool) {
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let log = new_log(dir.path(), direct);
        let a = log.append(1, &one_op(1)).unwrap().lsn;
        let b = log.append(2, &one_op(2)).unwrap().lsn;
        log.state.lock().busy = true;
        log.on_synced(a, Box::new(|_| panic!("a callback's bug")));
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        log.on_synced(b, Box::new(move |res| r.store(res.is_ok(), SeqCst)));
        log.state.lock().busy = false;
        // Runs both on this thread: the first panics, the second still runs, nothing is stuck.
        log.sync_all_and_settle().unwrap();
        assert!(ran.load(SeqCst));
        assert_eq!(log.sync_waiters(), 0);
        assert_eq!(log.state.lock().running_waiters, 0);
    }

    fn on_synced_reports_a_failed_round_to_every_waiter(direct: bool) {
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let log = new_log(dir.path(), direct);
        let errs = Arc::new(Mutex::new(Vec::new()));
        let a = log.append(1, &one_op(1)).unwrap().lsn;
        // A round is "running": the callback waits.
        log.state.lock().busy = true;
        let e = errs.clone();
        log.on_synced(a, Box::new(move |r| e.lock().push((1, r.is_err()))));
        assert!(errs.lock().is_empty());
        assert_eq!(log.sync_waiters(), 1);
        // The next round fails (its segment is gone): both waiters hear of it.
        {
            let mut st = log.state.lock();
            st.busy = false;
            st.seg = None;
        }
        let b = log.append(2, &one_op(2)).unwrap().lsn;
        let e = errs.clone();
        log.on_synced(b, Box::new(move |r| e.lock().push((2, r.is_err()))));
        assert_eq!(*errs.lock(), vec![(1, true), (2, true)]);
        // Later ones fail at once.
        let e = errs.clone();
        log.on_synced(b + 1, Box::new(move |r| e.lock().push((3, r.is_err()))));
        assert_eq!(errs.lock().len(), 3);
        assert_eq!(log.sync_waiters(), 0);
    }

    /// Every test above runs against a buffered and a direct log.
    macro_rules! both_modes {
        ($($name:ident),* $(,)?) => {
            mod buffered {
                $(#[test] fn $name() { super::$name(false) })*
            }
            mod direct {
                $(#[test] fn $name() { super::$name(true) })*
            }
        };
    }

    both_modes!(
        append_sync_replay_and_torn_tail,
        lone_committer_syncs_its_own_record,
        records_queued_behind_others_go_to_the_syncer,
        concurrent_committers_all_become_durable_with_the_syncer,
        write_ahead_is_acknowledged_only_after_the_sync,
        write_ahead_takes_records_queued_behind_and_skips_written_ones,
        write_ahead_with_concurrent_committers_and_the_syncer,
        records_spanning_blocks_and_extensions_replay_intact,
        rotation_keeps_every_record,
        on_synced_runs_once_the_record_is_synced,
        on_synced_reports_a_failed_round_to_every_waiter,
        sync_all_and_settle_waits_for_callbacks_running_elsewhere,
        a_panicking_callback_does_not_stop_the_others,
    );

    /// A log asking for direct writes gets them where the file system takes `O_DIRECT` (the
    /// test's temporary directory is probed the same way); the buffered one never does.
    fn new_log(dir: &Path, direct: bool) -> CommitLog {
        let log = CommitLog::create_with(dir, 0, direct).unwrap();
        assert_eq!(log.is_direct(), direct && direct_io_works(dir));
        log
    }

    #[cfg(target_os = "linux")]
    fn direct_io_works(dir: &Path) -> bool {
        use std::os::unix::fs::OpenOptionsExt;
        let probe = dir.join("probe");
        let ok = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&probe)
            .and_then(|f| {
                let v = vec![0u8; 8192];
                let off = v.as_ptr().align_offset(4096);
                f.write_all_at(&v[off..off + 4096], 0)
            })
            .is_ok();
        let _ = fs::remove_file(probe);
        ok
    }

    #[cfg(not(target_os = "linux"))]
    fn direct_io_works(_dir: &Path) -> bool {
        false
    }

    fn sized_op(ts: u64) -> Batch {
        // Sizes from a few bytes to several blocks, so records start and end anywhere in a block.
        let len = ((ts * 7919) % 9000) as usize;
        let mut b = Batch::default();
        b.put(ts.to_be_bytes().to_vec(), vec![(ts % 251) as u8; len]);
        b
    }

    fn check_sized(ts: u64, b: &Batch) {
        let want = sized_op(ts);
        assert_eq!(b.ops.len(), 1);
        match (&b.ops[0], &want.ops[0]) {
            (BatchOp::Put(k, v), BatchOp::Put(wk, wv)) => {
                assert_eq!(k, wk, "key of record {ts}");
                assert!(v == wv, "value of record {ts}");
            }
            _ => panic!("record {ts} is not the put it was"),
        }
    }

    fn replay_sized(dir: &Path) -> u64 {
        let mut next = 1u64;
        CommitLog::replay(dir, |ts, b| {
            assert_eq!(ts, next);
            check_sized(ts, &b);
            next += 1;
            Ok(())
        })
        .unwrap();
        next - 1
    }

    /// Records of every size, written ahead or synced directly, across block boundaries and
    /// past several zero-filled extensions (~2.6 MiB): each replays byte for byte, in order.
    fn records_spanning_blocks_and_extensions_replay_intact(direct: bool) {
        let dir = tempfile::tempdir().unwrap();
        let log = new_log(dir.path(), direct);
        for ts in 1..=600u64 {
            let a = log.append(ts, &sized_op(ts)).unwrap();
            if ts % 3 != 0 {
                log.write_ahead(a.lsn).unwrap();
            }
            assert_eq!(log.persist(a.lsn, true).unwrap(), ts);
        }
        drop(log);
        assert_eq!(replay_sized(dir.path()), 600);
    }

    /// Rotation starts a new segment (a new direct descriptor and an empty tail block) while
    /// a write-ahead of the old one is in flight; replay reads both segments.
    fn rotation_keeps_every_record(direct: bool) {
        let dir = tempfile::tempdir().unwrap();
        let log = new_log(dir.path(), direct);
        for ts in 1..=200u64 {
            let a = log.append(ts, &sized_op(ts)).unwrap();
            log.write_ahead(a.lsn).unwrap();
            if ts == 100 {
                assert_eq!(log.rotate().unwrap().len(), 1);
            }
            log.persist(a.lsn, true).unwrap();
        }
        assert_eq!(log.is_direct(), direct && direct_io_works(dir.path()));
        drop(log);
        assert_eq!(list_segments(dir.path()).unwrap().len(), 2);
        assert_eq!(replay_sized(dir.path()), 200);
    }
}
