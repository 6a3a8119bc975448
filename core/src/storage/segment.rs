//! One open commit-log segment and how records reach its file.
//!
//! Two ways, chosen when the segment is created:
//! - **buffered**: records are written through the page cache; a Full commit's write-ahead starts
//!   their device write with `sync_file_range` and the fdatasync after the apply waits for it.
//! - **direct** (durability `full`, Linux): records are written with `O_DIRECT`, in whole 4 KiB
//!   blocks (the segment's last, partly filled block is kept in memory and written again with the
//!   next records), and a Full commit's write-ahead is submitted with Linux native AIO, so the
//!   device write runs while the committer applies its batch and is reaped before the fdatasync
//!   that makes it durable. No page-cache copy, no writeback pass at fdatasync time: on the
//!   benchmark VM a Full commit costs ~13 us less CPU this way, at the same latency (the device
//!   round trips and the VM's wake-ups dominate; docs/BENCHMARKS.md, stop 16).
//!
//! Durability does not depend on the mode: a committer is acknowledged only after an fdatasync
//! that follows the completed write of its record (an `O_DIRECT` write reaches the device's
//! cache; the fdatasync's cache flush makes it durable). A file system that refuses `O_DIRECT`
//! (tmpfs) or a kernel without AIO leaves the segment buffered.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The unit of direct writes: file offsets, lengths and buffer addresses are multiples of it.
const BLOCK: u64 = 4096;

/// Zero-fill steps (see `CommitLog`): segments are extended with zeros ahead of the write
/// position, this much at a time.
pub(crate) const PREALLOC: u64 = 1 << 20;

pub(crate) struct Segment {
    /// The buffered descriptor (fdatasync, buffered writes).
    file: File,
    direct: Option<Direct>,
}

impl Segment {
    /// Creates segment file `path`, zero-filled up to [`PREALLOC`] and synced; with `direct`,
    /// opens it for direct writes as well when the file system and kernel allow.
    pub(crate) fn create(path: &Path, direct: bool) -> io::Result<Segment> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)?;
        let mut seg = Segment { file, direct: None };
        if direct {
            seg.direct = Direct::open(path);
        }
        if let Err(e) = seg.extend_zeroed(0, 1) {
            // A file system may take O_DIRECT at open but refuse the write: stay buffered.
            if seg.direct.take().is_none() {
                return Err(e);
            }
            seg.extend_zeroed(0, 1)?;
        }
        Ok(seg)
    }

    pub(crate) fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Waits for a direct write still in flight (see [`Segment::write`] with `ahead`).
    pub(crate) fn finish_pending(&mut self) -> io::Result<()> {
        match &mut self.direct {
            Some(d) => d.reap(),
            None => Ok(()),
        }
    }

    /// Zero-fills the segment from `from` to past `need` (in [`PREALLOC`] steps) and syncs it,
    /// returning the new end of the allocated region. `from` is a multiple of [`PREALLOC`].
    pub(crate) fn extend_zeroed(&self, from: u64, need: u64) -> io::Result<u64> {
        let new_end = need.div_ceil(PREALLOC) * PREALLOC;
        let f = self.direct.as_ref().map_or(&self.file, |d| &d.fd);
        let zeros = AlignedBuf::zeroed(PREALLOC as usize);
        let mut at = from;
        while at < new_end {
            let n = (new_end - at).min(PREALLOC) as usize;
            f.write_all_at(&zeros.as_slice()[..n], at)?;
            at += n as u64;
        }
        f.sync_all()?;
        Ok(new_end)
    }

    /// Writes `data` (records) at `pos`, the end of what the segment holds. With `ahead`, the
    /// write is only started: a direct segment submits it asynchronously (finished by
    /// [`Segment::finish_pending`], which every later write and sync calls first), a buffered
    /// one starts the page cache's writeback.
    pub(crate) fn write(&mut self, pos: u64, data: &[u8], ahead: bool) -> io::Result<()> {
        match &mut self.direct {
            Some(d) => d.write(pos, data, ahead),
            None => {
                self.file.write_all_at(data, pos)?;
                if ahead {
                    start_writeback(&self.file, pos, pos + data.len() as u64);
                }
                Ok(())
            }
        }
    }

    /// Makes everything written so far durable.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        self.finish_pending()?;
        self.file.sync_data()
    }
}

/// A byte buffer whose start is aligned to [`BLOCK`] (what `O_DIRECT` requires of user memory).
struct AlignedBuf {
    raw: Vec<u8>,
    off: usize,
    len: usize,
}

impl AlignedBuf {
    fn zeroed(len: usize) -> AlignedBuf {
        let raw = vec![0u8; len + BLOCK as usize];
        let off = raw.as_ptr().align_offset(BLOCK as usize);
        AlignedBuf { raw, off, len }
    }

    /// `spare` resized to `len` bytes if it has room, else a new zeroed buffer. A reused buffer
    /// keeps its old bytes: the caller overwrites all `len` of them.
    fn reuse_or_new(spare: Option<AlignedBuf>, len: usize) -> AlignedBuf {
        match spare {
            Some(mut b) if b.raw.len() - b.off >= len => {
                b.len = len;
                b
            }
            _ => AlignedBuf::zeroed(len),
        }
    }

    fn as_slice(&self) -> &[u8] {
        &self.raw[self.off..self.off + self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.off..self.off + self.len]
    }
}

/// The direct-write side of a segment.
struct Direct {
    fd: File,
    /// The bytes of the segment's last, partly filled block: `[floor(pos, BLOCK), pos)` where
    /// `pos` is the write position. Written again in front of the next records.
    tail: Vec<u8>,
    aio: Aio,
    /// The buffer of the last finished write, reused by the next one (a commit's write would
    /// otherwise allocate and zero a fresh block-aligned buffer).
    spare: Option<AlignedBuf>,
}

impl Direct {
    #[cfg(target_os = "linux")]
    fn open(path: &Path) -> Option<Direct> {
        use std::os::unix::fs::OpenOptionsExt;
        let fd = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok()?;
        let aio = Aio::new()?;
        Some(Direct {
            fd,
            tail: Vec::with_capacity(BLOCK as usize),
            aio,
            spare: None,
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn open(_path: &Path) -> Option<Direct> {
        None
    }

    /// Waits for the write in flight, if any, keeping its buffer for the next write.
    fn reap(&mut self) -> io::Result<()> {
        if let Some(buf) = self.aio.reap()? {
            self.spare = Some(buf);
        }
        Ok(())
    }

    fn write(&mut self, pos: u64, data: &[u8], ahead: bool) -> io::Result<()> {
        // Never two writes of the same block in flight: their order on the device is not theirs.
        self.reap()?;
        let start = pos - self.tail.len() as u64;
        debug_assert_eq!(start % BLOCK, 0, "the tail starts a block");
        let end = pos + data.len() as u64;
        let span = (end.div_ceil(BLOCK) * BLOCK - start) as usize;
        let mut buf = AlignedBuf::reuse_or_new(self.spare.take(), span);
        let t = self.tail.len();
        let b = buf.as_mut_slice();
        b[..t].copy_from_slice(&self.tail);
        b[t..t + data.len()].copy_from_slice(data);
        // The rest of the span is zeros, as on disk past the write position (zero-filled).
        b[t + data.len()..].fill(0);
        let last_block = ((end / BLOCK) * BLOCK - start) as usize;
        self.tail.clear();
        self.tail.extend_from_slice(&b[last_block..t + data.len()]);
        let buf = if ahead {
            match self.aio.submit(&self.fd, buf, start) {
                Ok(()) => return Ok(()),
                Err(buf) => buf,
            }
        } else {
            buf
        };
        self.fd.write_all_at(buf.as_slice(), start)?;
        self.spare = Some(buf);
        Ok(())
    }
}

/// Linux native AIO with one write in flight at a time (raw system calls; libc has no wrappers).
#[cfg(target_os = "linux")]
struct Aio {
    ctx: libc::c_ulong,
    /// The buffer of the write in flight and its length: the kernel reads it until reaped.
    inflight: Option<AlignedBuf>,
}

#[cfg(target_os = "linux")]
#[repr(C)]
#[derive(Default)]
struct Iocb {
    aio_data: u64,
    aio_key: u32,
    aio_rw_flags: i32,
    aio_lio_opcode: u16,
    aio_reqprio: i16,
    aio_fildes: u32,
    aio_buf: u64,
    aio_nbytes: u64,
    aio_offset: i64,
    aio_reserved2: u64,
    aio_flags: u32,
    aio_resfd: u32,
}

#[cfg(target_os = "linux")]
#[repr(C)]
#[derive(Default)]
struct IoEvent {
    data: u64,
    obj: u64,
    res: i64,
    res2: i64,
}

#[cfg(target_os = "linux")]
const IOCB_CMD_PWRITE: u16 = 1;

#[cfg(target_os = "linux")]
impl Aio {
    fn new() -> Option<Aio> {
        let mut ctx: libc::c_ulong = 0;
        // SAFETY: io_setup writes the new context id to `ctx`, a valid location.
        let rv = unsafe { libc::syscall(libc::SYS_io_setup, 1 as libc::c_long, &mut ctx) };
        (rv == 0).then_some(Aio {
            ctx,
            inflight: None,
        })
    }

    /// Submits a write of `buf` at `offset`; on failure hands the buffer back for a
    /// synchronous write.
    fn submit(&mut self, fd: &File, buf: AlignedBuf, offset: u64) -> Result<(), AlignedBuf> {
        use std::os::unix::io::AsRawFd;
        debug_assert!(self.inflight.is_none());
        let data = buf.as_slice();
        let cb = Iocb {
            aio_lio_opcode: IOCB_CMD_PWRITE,
            aio_fildes: fd.as_raw_fd() as u32,
            aio_buf: data.as_ptr() as u64,
            aio_nbytes: data.len() as u64,
            aio_offset: offset as i64,
            ..Iocb::default()
        };
        let mut list = [&cb as *const Iocb];
        // SAFETY: `cb` describes `buf`, which stays alive in `self.inflight` until the write is
        // reaped (`reap`, also on drop); the kernel copies the control block itself.
        let rv = unsafe {
            libc::syscall(
                libc::SYS_io_submit,
                self.ctx,
                1 as libc::c_long,
                list.as_mut_ptr(),
            )
        };
        if rv != 1 {
            return Err(buf);
        }
        self.inflight = Some(buf);
        Ok(())
    }

    /// Waits for the write in flight, if any, and reports its outcome; hands back its buffer.
    fn reap(&mut self) -> io::Result<Option<AlignedBuf>> {
        let Some(buf) = self.inflight.take() else {
            return Ok(None);
        };
        let mut ev = IoEvent::default();
        loop {
            // SAFETY: one event slot, `ev`, is provided; no timeout (NULL).
            let rv = unsafe {
                libc::syscall(
                    libc::SYS_io_getevents,
                    self.ctx,
                    1 as libc::c_long,
                    1 as libc::c_long,
                    &mut ev,
                    std::ptr::null_mut::<libc::timespec>(),
                )
            };
            if rv == 1 {
                break;
            }
            let err = io::Error::last_os_error();
            if rv < 0 && err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // The write's fate is unknown; keep its buffer alive for good rather than let the
            // kernel read freed memory.
            std::mem::forget(buf);
            return Err(if rv < 0 {
                err
            } else {
                io::Error::other("io_getevents returned no event")
            });
        }
        let want = buf.as_slice().len() as i64;
        match ev.res {
            r if r == want => Ok(Some(buf)),
            r if r < 0 => Err(io::Error::from_raw_os_error(-r as i32)),
            r => Err(io::Error::other(format!(
                "short direct write to the commit log: {r} of {want} bytes"
            ))),
        }
    }
}

#[cfg(target_os = "linux")]
impl Drop for Aio {
    fn drop(&mut self) {
        let _ = self.reap();
        // SAFETY: the context was set up by io_setup and has nothing in flight.
        unsafe {
            libc::syscall(libc::SYS_io_destroy, self.ctx);
        }
    }
}

#[cfg(not(target_os = "linux"))]
struct Aio;

#[cfg(not(target_os = "linux"))]
impl Aio {
    fn submit(&mut self, _fd: &File, buf: AlignedBuf, _offset: u64) -> Result<(), AlignedBuf> {
        Err(buf)
    }
    fn reap(&mut self) -> io::Result<Option<AlignedBuf>> {
        Ok(None)
    }
}

/// Starts the device write of `[from, to)` without waiting for it. Only a head start for the
/// fdatasync that follows: that fdatasync writes whatever is still dirty and reports any
/// writeback error (a write-only `sync_file_range` does not consume the file's error state),
/// so a failure here is ignored.
#[cfg(target_os = "linux")]
fn start_writeback(f: &File, from: u64, to: u64) {
    use std::os::unix::io::AsRawFd;
    if to <= from {
        return;
    }
    // SAFETY: a plain syscall on a descriptor `f` keeps open for the duration of the call.
    unsafe {
        libc::sync_file_range(
            f.as_raw_fd(),
            from as libc::off64_t,
            (to - from) as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Elsewhere the fdatasync that follows does the whole write.
#[cfg(not(target_os = "linux"))]
fn start_writeback(_f: &File, _from: u64, _to: u64) {}
