//! The sled 0.34 implementation of [`Kv`].
//!
//! sled's `flush()` ends in `sync_file_range` on Linux, which does not persist file metadata or
//! survive power loss, so [`SledKv::sync`] also fsyncs the data file and the directory.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::{Batch, BatchOp, Kv, KvIter, KvPair};
use crate::error::{Error, Result, SqlState};

pub struct SledKv {
    db: sled::Db,
    dir: PathBuf,
}

impl SledKv {
    pub fn open(dir: &Path, cache_capacity: u64) -> Result<SledKv> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_capacity)
            // The commit log is the durability source; we checkpoint sled ourselves.
            .flush_every_ms(None)
            .open()
            .map_err(|e| match e {
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
        Ok(SledKv {
            db,
            dir: dir.to_path_buf(),
        })
    }
}

fn to_iter(it: sled::Iter) -> KvIter {
    Box::new(it.map(|r| r.map_err(Error::from)))
}

impl Kv for SledKv {
    fn get(&self, key: &[u8]) -> Result<Option<super::KvBytes>> {
        Ok(self.db.get(key)?)
    }

    fn scan(&self, start: &[u8], end: &[u8]) -> KvIter {
        if start >= end {
            return Box::new(std::iter::empty());
        }
        to_iter(self.db.range(start.to_vec()..end.to_vec()))
    }

    fn first_in(&self, start: &[u8], end: &[u8]) -> Result<Option<KvPair>> {
        if start >= end {
            return Ok(None);
        }
        Ok(self.db.range(start..end).next().transpose()?)
    }

    fn last_in(&self, start: &[u8], end: &[u8]) -> Result<Option<KvPair>> {
        if start >= end {
            return Ok(None);
        }
        Ok(self.db.range(start..end).next_back().transpose()?)
    }

    fn apply(&self, batch: &Batch) -> Result<()> {
        let mut b = sled::Batch::default();
        for op in &batch.ops {
            match op {
                BatchOp::Put(k, v) => b.insert(k.as_slice(), v.as_slice()),
                BatchOp::Delete(k) => b.remove(k.as_slice()),
            }
        }
        Ok(self.db.apply_batch(b)?)
    }

    fn sync(&self) -> Result<()> {
        self.db.flush()?;
        let data = self.dir.join("db");
        if data.exists() {
            File::open(&data)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io("fsync of the sled data file", e))?;
        }
        sync_dir(&self.dir)
    }

    fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }
}

/// fsync a directory so that created, renamed or removed entries are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(&format!("fsync of directory {}", dir.display()), e))
}
