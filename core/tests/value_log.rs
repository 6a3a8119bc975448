//! Large row values kept in the value log (`storage::vlog`): what is separated, reads and
//! scans, reopen, compaction with concurrent readers and old snapshots, damaged files, the
//! on-disk format mark.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use ormdb::{DataType, Database, EntitySpec, FieldDef, Options, SqlState, Value};

fn create(path: &Path, opts: Options) -> Database {
    let db = Database::open(path, opts).unwrap();
    let mut tx = db.connect().begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("docs")
            .id("id")
            .field(FieldDef::new("body", DataType::Text).not_null()),
    )
    .unwrap();
    tx.commit().unwrap();
    db
}

/// A body of `len` bytes that says which row and which write it belongs to.
fn body(id: i64, gen: u64, len: usize) -> String {
    let head = format!("{id}:{gen}:");
    let mut s = head.repeat(len / head.len() + 1);
    s.truncate(len);
    s
}

fn insert(db: &Database, id: i64, text: &str) {
    let mut tx = db.connect().begin().unwrap();
    tx.insert(
        "docs",
        &[("id", Value::Integer(id)), ("body", Value::from(text))],
    )
    .unwrap();
    tx.commit().unwrap();
}

fn set(db: &Database, id: i64, text: &str) {
    let mut tx = db.connect().begin().unwrap();
    tx.update("docs", id, &[("body", Value::from(text))])
        .unwrap()
        .unwrap();
    tx.commit().unwrap();
}

fn get(db: &Database, id: i64) -> ormdb::Result<Option<String>> {
    let mut tx = db.connect().begin()?;
    let r = tx.get("docs", id)?;
    Ok(r.map(|r| match &r.values[1] {
        Value::Text(t) => t.to_string(),
        v => panic!("body is {v:?}"),
    }))
}

fn vlog_files(path: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(path.join("values"))
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|x| x == "vlog"));
    v.sort();
    v
}

fn vlog_bytes(path: &Path) -> u64 {
    vlog_files(path)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

/// The raw store values under a key prefix (the database must be closed).
fn raw_values(path: &Path, prefix: u8) -> Vec<Vec<u8>> {
    let db = sled::open(path.join("data")).unwrap();
    db.scan_prefix([prefix])
        .map(|r| r.unwrap().1.to_vec())
        .collect()
}

/// The raw store values of the row versions.
fn raw_row_values(path: &Path) -> Vec<Vec<u8>> {
    raw_values(path, 0x10)
}

/// Options that keep values above 64 bytes in the value log and change records of the last
/// ten commits only (GC prunes the rest, so rewritten rows leave mostly dead files).
fn small_opts() -> Options {
    Options {
        change_retention: 10,
        ..Options::default().value_threshold(64)
    }
}

#[test]
fn large_rows_live_in_the_value_log_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = create(&path, Options::default());
    let sizes: Vec<usize> = (0..120)
        .map(|i| [10, 300, 490, 530, 1000, 5000][i % 6])
        .collect();
    for (i, n) in sizes.iter().enumerate() {
        insert(&db, i as i64 + 1, &body(i as i64 + 1, 0, *n));
    }
    let check = |db: &Database| {
        for (i, n) in sizes.iter().enumerate() {
            let id = i as i64 + 1;
            assert_eq!(get(db, id).unwrap().unwrap(), body(id, 0, *n), "row {id}");
        }
        let mut tx = db.connect().begin().unwrap();
        let scanned: Vec<_> = tx
            .scan("docs")
            .unwrap()
            .collect::<ormdb::Result<_>>()
            .unwrap();
        assert_eq!(scanned.len(), sizes.len());
        let via_sql = db
            .connect()
            .sql()
            .execute(
                "SELECT sum(length(body)) FROM docs",
                &ormdb::Params::Positional(vec![]),
            )
            .unwrap();
        assert_eq!(
            via_sql.rows[0][0],
            Value::Integer(sizes.iter().sum::<usize>() as i64)
        );
    };
    check(&db);
    let large: u64 = sizes
        .iter()
        .filter(|n| **n > 512)
        .map(|n| *n as u64 + 6)
        .sum();
    let large_rows = sizes.iter().filter(|n| **n > 512).count();
    let info = db.info().unwrap();
    drop(db);
    let in_log = vlog_bytes(&path);
    // A stored row is its text and about ten bytes (flags, version, id, tags and lengths): the
    // 490-byte texts stay below the 512-byte threshold, the 530-byte ones go over it. Each
    // large row's insert also wrote a change record holding it, which goes to the log too.
    assert!(
        in_log >= 2 * (large - 6 * 60) && in_log <= 2 * large + 60 * 400,
        "value log holds {in_log} bytes for {large} bytes of large rows"
    );
    assert!(info.size_on_disk >= in_log, "{info:?}");
    // In the store: pointers for the rows above 512 bytes, the rows themselves below; the same
    // for their change records.
    let raw = raw_row_values(&path);
    let pointers = raw.iter().filter(|v| v.len() == 21 && v[0] == 0xFF).count();
    assert_eq!(pointers, large_rows);
    assert!(raw.iter().all(|v| v.len() <= 512 || v[0] == 0xFF));
    let changes = raw_values(&path, 0x30);
    assert_eq!(changes.len(), sizes.len() + 1, "a change record per commit");
    // A change record is its row and ~200 bytes of names and header: the 490-byte rows'
    // records are separated too, the 300-byte ones not.
    assert_eq!(
        changes
            .iter()
            .filter(|v| v.len() == 21 && v[0] == 0xFF)
            .count(),
        large_rows + 20
    );
    let db = Database::open(&path, Options::default()).unwrap();
    check(&db);
}

#[test]
fn threshold_zero_keeps_values_in_the_store_and_still_reads_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = create(&path, Options::default().value_threshold(0));
    insert(&db, 1, &body(1, 0, 2000));
    drop(db);
    assert!(!path.join("values").exists());
    assert!(raw_row_values(&path).iter().all(|v| v[0] != 0xFF));
    // Separation on: the old row stays where it is, the new one goes to the log.
    let db = Database::open(&path, Options::default()).unwrap();
    insert(&db, 2, &body(2, 0, 2000));
    drop(db);
    let raw = raw_row_values(&path);
    assert_eq!(raw.iter().filter(|v| v[0] == 0xFF).count(), 1);
    // Off again: both still read.
    let db = Database::open(&path, Options::default().value_threshold(0)).unwrap();
    assert_eq!(get(&db, 1).unwrap().unwrap(), body(1, 0, 2000));
    assert_eq!(get(&db, 2).unwrap().unwrap(), body(2, 0, 2000));
}

#[test]
fn compaction_moves_live_values_and_removes_dead_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let opts = small_opts;
    let db = create(&path, opts());
    for id in 1..=40 {
        insert(&db, id, &body(id, 0, 1500));
    }
    drop(db);
    // Several sessions (each writes its own file), each rewriting every row.
    let mut gen = 0;
    for _ in 0..4 {
        let db = Database::open(&path, opts()).unwrap();
        for _ in 0..3 {
            gen += 1;
            for id in 1..=40 {
                set(&db, id, &body(id, gen, 1500));
            }
        }
        drop(db);
    }
    let db = Database::open(&path, opts()).unwrap();
    // An old snapshot keeps the versions it reads alive through GC and compaction.
    let conn = db.connect();
    let mut old = conn.begin().unwrap();
    assert_eq!(
        old.get("docs", 7).unwrap().unwrap().values[1],
        Value::from(body(7, gen, 1500))
    );
    for id in 1..=40 {
        set(&db, id, &body(id, gen + 1, 1500));
    }
    db.gc().unwrap();
    let before = vlog_bytes(&path);
    let files_before = vlog_files(&path).len();
    let stats = db.compact_values().unwrap();
    assert!(stats.counted, "{stats:?}");
    assert!(stats.files_removed >= 3, "{stats:?}");
    assert!(stats.values_moved > 0, "{stats:?}");
    // Live: two versions of 40 rows (the snapshot's and the newest) and the change records
    // of the last ten commits (one row each).
    assert!(
        stats.live_bytes >= 90 * 1500 && stats.live_bytes < 90 * 1600,
        "{stats:?}"
    );
    let after = vlog_bytes(&path);
    assert!(
        after < before / 2,
        "value log {before} -> {after} bytes ({files_before} -> {} files)",
        vlog_files(&path).len()
    );
    assert_eq!(
        old.get("docs", 7).unwrap().unwrap().values[1],
        Value::from(body(7, gen, 1500)),
        "the old snapshot lost its version"
    );
    old.rollback();
    for id in 1..=40 {
        assert_eq!(get(&db, id).unwrap().unwrap(), body(id, gen + 1, 1500));
    }
    // Nothing more to remove right away.
    assert_eq!(db.compact_values().unwrap().files_removed, 0);
    drop(db);
    let db = Database::open(&path, opts()).unwrap();
    for id in 1..=40 {
        assert_eq!(get(&db, id).unwrap().unwrap(), body(id, gen + 1, 1500));
    }
}

#[test]
fn readers_see_every_value_while_compaction_moves_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    // No table images: every read goes to the store and the value log.
    let db = create(&path, small_opts().image_budget(0));
    const ROWS: i64 = 30;
    for id in 1..=ROWS {
        insert(&db, id, &body(id, 0, 800));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|t| {
            let db = db.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let conn = db.connect();
                    let mut tx = conn.begin().unwrap();
                    if t == 0 {
                        for id in 1..=ROWS {
                            let r = tx.get("docs", id).unwrap().unwrap();
                            let Value::Text(b) = &r.values[1] else {
                                panic!("{r:?}")
                            };
                            assert_eq!(b.len(), 800);
                            assert!(b.starts_with(&format!("{id}:")), "row {id}: {b:.40}");
                            reads += 1;
                        }
                    } else {
                        let n = tx
                            .scan("docs")
                            .unwrap()
                            .map(|r| {
                                let r = r.unwrap();
                                let Value::Text(b) = &r.values[1] else {
                                    panic!("{r:?}")
                                };
                                assert_eq!(b.len(), 800);
                            })
                            .count();
                        assert_eq!(n as i64, ROWS);
                        reads += n as u64;
                    }
                }
                reads
            })
        })
        .collect();
    let mut removed = 0;
    for gen in 1..=12 {
        for id in 1..=ROWS {
            set(&db, id, &body(id, gen, 800));
        }
        db.checkpoint().unwrap();
        db.gc().unwrap();
        removed += db.compact_values().unwrap().files_removed;
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert!(removed >= 10, "{removed} files removed");
    for id in 1..=ROWS {
        assert_eq!(get(&db, id).unwrap().unwrap(), body(id, 12, 800));
    }
}

#[test]
fn damaged_value_log_is_reported_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let opts = || Options::default().value_threshold(64);
    let db = create(&path, opts());
    for id in 1..=20 {
        insert(&db, id, &body(id, 0, 1000));
    }
    drop(db);
    let files = vlog_files(&path);
    let file = files
        .iter()
        .find(|p| fs::metadata(p).unwrap().len() > 0)
        .unwrap();
    let len = fs::metadata(file).unwrap().len();
    // Cut the file in half and flip a byte in the first value.
    let f = fs::OpenOptions::new().write(true).open(file).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let mut bytes = fs::read(file).unwrap();
    bytes[10] ^= 0x55;
    fs::write(file, &bytes).unwrap();
    let db = Database::open(&path, opts()).unwrap();
    let mut ok = 0;
    let mut damaged = 0;
    for id in 1..=20 {
        match get(&db, id) {
            Ok(Some(b)) => {
                assert_eq!(b, body(id, 0, 1000), "a damaged value was misread");
                ok += 1;
            }
            Ok(None) => panic!("row {id} vanished"),
            Err(e) => {
                assert_eq!(e.state, SqlState::DataCorrupted, "{e}");
                assert!(e.message.contains("value log"), "{e}");
                damaged += 1;
            }
        }
    }
    assert!(ok >= 5 && damaged >= 10, "{ok} intact, {damaged} damaged");
    // Writes still work, and the intact rows stay readable.
    insert(&db, 100, &body(100, 0, 1000));
    assert_eq!(get(&db, 100).unwrap().unwrap(), body(100, 0, 1000));
}

#[test]
fn a_newer_on_disk_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(create(&path, Options::default()));
    {
        let s = sled::open(path.join("data")).unwrap();
        assert_eq!(
            s.get(b"\x02format").unwrap().map(|v| v.to_vec()),
            Some(2u64.to_be_bytes().to_vec())
        );
        s.insert(b"\x02format", &3u64.to_be_bytes()).unwrap();
        s.flush().unwrap();
    }
    let files = vlog_files(&path);
    let e = Database::open(&path, Options::default()).err().unwrap();
    assert_eq!(e.state, SqlState::FeatureNotSupported, "{e}");
    assert!(e.message.contains("format 3"), "{e}");
    assert_eq!(
        vlog_files(&path),
        files,
        "the refused open wrote to the value log"
    );
}

#[test]
fn a_scan_open_across_a_compaction_reads_the_moved_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = create(&path, small_opts().image_budget(0));
    for id in 1..=10 {
        insert(&db, id, &body(id, 0, 700));
    }
    for gen in 1..=3 {
        for id in 1..=10 {
            set(&db, id, &body(id, gen, 700));
        }
    }
    db.gc().unwrap();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    let mut rows = tx.scan("docs").unwrap();
    let first = rows.next().unwrap().unwrap();
    assert_eq!(first.values[1], Value::from(body(1, 3, 700)));
    // The scan has the first leaf in hand, pointers into a file the compaction removes.
    let stats = db.compact_values().unwrap();
    assert!(
        stats.files_removed >= 1 && stats.values_moved >= 10,
        "{stats:?}"
    );
    let rest: Vec<_> = rows.collect::<ormdb::Result<_>>().unwrap();
    assert_eq!(rest.len(), 9);
    for (i, r) in rest.iter().enumerate() {
        let id = i as i64 + 2;
        assert_eq!(r.values[1], Value::from(body(id, 3, 700)), "row {id}");
    }
}

#[test]
fn the_background_thread_compacts_once_enough_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let opts = Options {
        gc_interval: std::time::Duration::from_millis(200),
        ..small_opts()
    };
    let db = create(&path, opts);
    // 40 rows of 64 KiB rewritten 60 times in commits of 40 rows: ~300 MiB appended (the rows
    // and their change records; files rotate at 64 MiB), of which the newest versions (2.5
    // MiB) and the change records of the last ten commits (25 MiB) stay live. A count comes
    // once 64 MiB were appended since the last one, so at most the active file and one sealed
    // since the last count hold dead values at the end.
    const ROWS: i64 = 40;
    const LEN: usize = 64 << 10;
    for id in 1..=ROWS {
        insert(&db, id, &body(id, 0, LEN));
    }
    for gen in 1..=60 {
        let mut tx = db.connect().begin().unwrap();
        for id in 1..=ROWS {
            tx.update("docs", id, &[("body", Value::from(body(id, gen, LEN)))])
                .unwrap()
                .unwrap();
        }
        tx.commit().unwrap();
    }
    // Incremental GC, then the count and the compaction, run on their own.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let first = path.join("values").join("00000001.vlog");
    while first.exists() || vlog_bytes(&path) > 160 << 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "the value log still holds {} bytes ({} files)",
            vlog_bytes(&path),
            vlog_files(&path).len()
        );
        thread::sleep(std::time::Duration::from_millis(100));
    }
    for id in 1..=ROWS {
        assert_eq!(get(&db, id).unwrap().unwrap(), body(id, 60, LEN));
    }
    drop(db);
    let db = Database::open(&path, small_opts()).unwrap();
    for id in 1..=ROWS {
        assert_eq!(get(&db, id).unwrap().unwrap(), body(id, 60, LEN));
    }
}
