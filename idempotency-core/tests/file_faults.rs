//! The file store's failure modes: a missing, read-only or full directory (scenarios 23 and
//! 24), corrupt and foreign files (scenario 26), the purge under load (scenario 30),
//! permissions and the durability setting.
#![cfg(feature = "file")]

mod file_common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use idempotency_core::{
    block_on, Call, Durability, Error, ErrorKind, FileStorage, IdempotencyKey, IdempotencyManager,
    ManualClock, Record, RecordStatus, Storage, StorageAdmin, Timestamp,
};

fn call(args: &str) -> Call {
    Call::new(IdempotencyKey::derive("file::faults", 1, &args).unwrap())
}

fn manual_store(dir: &Path) -> (ManualClock, FileStorage) {
    let clock = ManualClock::new(Timestamp(1_700_000_000_000));
    let store = FileStorage::builder(dir)
        .clock(Arc::new(clock.clone()))
        .open()
        .unwrap();
    (clock, store)
}

/// Asserts `err` is an `Error::Io` whose path is `within` or under it, with its source kept.
fn assert_io_under(err: &Error, within: &Path) {
    match err {
        Error::Io { path, .. } => assert!(path.starts_with(within), "{path:?} not in {within:?}"),
        e => panic!("expected Error::Io, got {e:?}"),
    }
    assert_eq!(err.kind(), ErrorKind::StoreUnavailable);
    assert!(
        std::error::Error::source(err).is_some(),
        "the I/O error is kept"
    );
}

// ---------------------------------------------------------------------------------------------
// Missing, read-only and full directories.

#[test]
fn scenario_23_missing_directory_is_created_or_fails_naming_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    // Missing parents are created.
    let nested = tmp.path().join("a/b/store");
    let store = FileStorage::open(&nested).unwrap();
    assert!(nested.is_dir());
    assert_eq!(store.dir(), nested);
    assert_eq!(store.durability(), Durability::Fsync, "the default");
    // A path under a regular file cannot be a directory.
    let file = tmp.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let err = FileStorage::open(file.join("store")).unwrap_err();
    assert_io_under(&err, &file);
    let err = FileStorage::open(&file).unwrap_err();
    assert_io_under(&err, &file);
    // The directory vanishes after opening: fail closed, naming the path; never re-created.
    let m = IdempotencyManager::new(store.clone());
    std::fs::remove_dir_all(&nested).unwrap();
    let runs = AtomicUsize::new(0);
    let err = m
        .execute_sync(&call("gone"), || runs.fetch_add(1, Ordering::SeqCst))
        .unwrap_err();
    assert_io_under(&err, &nested);
    assert_eq!(runs.load(Ordering::SeqCst), 0, "scenario 23: fail closed");
    assert!(!nested.exists());
}

/// Whether this process can write where the mode bits say it cannot (root).
fn ignores_permissions(dir: &Path) -> bool {
    let probe = dir.join("probe");
    std::fs::create_dir(&probe).unwrap();
    set_mode(&probe, 0o500);
    let writable = std::fs::write(probe.join("x"), "x").is_ok();
    set_mode(&probe, 0o700);
    std::fs::remove_dir_all(&probe).unwrap();
    writable
}

#[cfg(unix)]
fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(unix)]
#[test]
fn scenario_23_read_only_directory_fails_closed_but_replays() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ro");
    // As root, mode bits do not stop writes: use a tmpfs remounted read-only instead.
    let mount = if ignores_permissions(tmp.path()) {
        Some(file_common::Tmpfs::mount(&dir, "4m").expect("root, but cannot mount a tmpfs"))
    } else {
        None
    };
    let store = FileStorage::open(&dir).unwrap();
    let m = IdempotencyManager::new(store.clone());
    let done = call("done-before");
    m.execute_sync(&done, || 5_u32).unwrap();
    match &mount {
        Some(t) => t.remount_read_only(),
        None => {
            for shard in std::fs::read_dir(&dir).unwrap() {
                set_mode(&shard.unwrap().path(), 0o500);
            }
            set_mode(&dir, 0o500);
        }
    }
    let runs = AtomicUsize::new(0);
    let err = m
        .execute_sync(&call("new"), || runs.fetch_add(1, Ordering::SeqCst))
        .unwrap_err();
    assert_io_under(&err, &dir);
    assert_eq!(runs.load(Ordering::SeqCst), 0, "scenario 23: fail closed");
    // A record written before still replays: the shard lock opens read-only.
    let o = m.execute_sync(&done, || 6_u32).unwrap();
    assert!(o.is_replayed());
    assert_eq!(o.value, 5);
    if mount.is_none() {
        set_mode(&dir, 0o700);
    }
}

#[cfg(unix)]
#[test]
fn scenario_23_and_24_full_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("full");
    let Some(_mount) = file_common::Tmpfs::mount(&dir, "1m") else {
        // A full disk cannot be simulated without mounting; the error mapping is the same
        // `Error::Io` as the read-only case above.
        eprintln!("scenario 23/24 (full disk): mounting a tmpfs is not permitted here; not run");
        return;
    };
    let store = FileStorage::builder(&dir).open().unwrap();
    let m = IdempotencyManager::builder(store.clone())
        .pending_timeout(Duration::from_secs(60))
        .complete_attempts(2)
        .build()
        .unwrap();
    let filler = dir.join("filler");
    let fill = || {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0_u8; 64 << 10];
        while f.write_all(&chunk).is_ok() {}
    };
    // Scenario 24: the claim succeeds, the disk fills while the function runs, storing the
    // result fails: the caller gets the value back in a distinct error, the record stays
    // Pending (duplicates stay blocked until the lease ends).
    let c = call("full-after");
    let err = m
        .execute_sync(&c, || {
            fill();
            vec![9_u8; 200 << 10]
        })
        .unwrap_err();
    match &err {
        Error::CompletionNotRecorded {
            encoded, source, ..
        } => {
            assert!(!encoded.is_empty());
            assert_io_under(source, &dir);
        }
        e => panic!("expected CompletionNotRecorded, got {e:?}"),
    }
    let obs = block_on(store.get(&c.key)).unwrap().unwrap();
    assert_eq!(obs.record.status, RecordStatus::Pending);
    // No temporary file is left behind by the failed writes.
    assert!(file_common::temp_files(&dir).is_empty());
    // Scenario 23: with the disk full, a new claim fails closed, naming the path. (Fill the
    // last pages the failed writes released.)
    fill();
    let runs = AtomicUsize::new(0);
    let err = m
        .execute_sync(&call("full-before"), || runs.fetch_add(1, Ordering::SeqCst))
        .unwrap_err();
    assert_io_under(&err, &dir);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    // Space again: the store works.
    std::fs::remove_file(&filler).unwrap();
    assert!(!m
        .execute_sync(&call("space"), || 1_u8)
        .unwrap()
        .is_replayed());
}

// ---------------------------------------------------------------------------------------------
// Corrupt and foreign files.

#[test]
fn scenario_26_corrupt_files_name_their_path_and_fail_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let (_clock, store) = manual_store(&tmp.path().join("store"));
    let m = IdempotencyManager::new(store.clone());
    let good = call("good");
    m.execute_sync(&good, || "value".to_string()).unwrap();
    let good_bytes = std::fs::read(store.record_path(&good.key)).unwrap();
    let mut future = good_bytes.clone();
    future[3] = Record::FORMAT_VERSION + 1;
    let cases: Vec<(&str, Vec<u8>, ErrorKind)> = vec![
        ("zero-length", Vec::new(), ErrorKind::CorruptRecord),
        (
            "truncated",
            good_bytes[..good_bytes.len() / 2].to_vec(),
            ErrorKind::CorruptRecord,
        ),
        (
            "not a record",
            b"#!/bin/sh\nrm -rf /\n".to_vec(),
            ErrorKind::CorruptRecord,
        ),
        (
            "another key's record",
            good_bytes.clone(),
            ErrorKind::CorruptRecord,
        ),
        ("a future format", future, ErrorKind::IncompatibleRecord),
    ];
    for (what, bytes, kind) in cases {
        let c = call(what);
        let path = store.record_path(&c.key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let runs = AtomicUsize::new(0);
        let err = m
            .execute_sync(&c, || runs.fetch_add(1, Ordering::SeqCst))
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{what}: {err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{what}: {err}"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 0, "{what}: nothing ran");
        assert_eq!(block_on(store.get(&c.key)).unwrap_err().kind(), kind);
        // The purge leaves it; an explicit delete removes it.
        block_on(store.purge_expired()).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{what}: left in place"
        );
        assert!(block_on(store.delete(&c.key)).unwrap());
        assert!(!m.execute_sync(&c, || 1_usize).unwrap().is_replayed());
    }
    // A directory at a record path.
    let c = call("a directory");
    std::fs::create_dir_all(store.record_path(&c.key)).unwrap();
    assert_eq!(
        m.execute_sync(&c, || 1_u8).unwrap_err().kind(),
        ErrorKind::CorruptRecord
    );
}

// ---------------------------------------------------------------------------------------------
// Scenario 30: the purge removes only what is expired when it removes it.

#[test]
fn scenario_30_purge_under_load_keeps_fresh_records() {
    const KEYS: usize = 400;
    const WORKERS: usize = 4;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let (clock, store) = manual_store(&dir);
    let m = IdempotencyManager::builder(store.clone())
        .default_ttl(Duration::from_secs(10))
        .pending_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let calls: Vec<Call> = (0..KEYS).map(|i| call(&format!("reap-{i}"))).collect();
    for c in &calls {
        m.execute_sync(c, || 0_u32).unwrap();
    }
    // A stale temporary file (a writer that died) and a corrupt record.
    let some_shard = store
        .record_path(&calls[0].key)
        .parent()
        .unwrap()
        .to_path_buf();
    let stale = some_shard.join(format!(".{}.{}.tmp", "a".repeat(64), "0".repeat(32)));
    std::fs::write(&stale, "partial").unwrap();
    let corrupt = some_shard.join("f".repeat(64));
    std::fs::write(&corrupt, "garbage").unwrap();

    clock.advance(Duration::from_secs(11)); // every record is expired now
    let executed = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(WORKERS + 1));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (m, calls, executed, barrier) =
                (m.clone(), calls.clone(), executed.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for c in calls.iter().skip(w).step_by(WORKERS) {
                    let o = m.execute_sync(c, || 1_u32).unwrap();
                    assert!(!o.is_replayed(), "an expired record was replayed");
                    executed.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let reaper = {
        let (store, barrier) = (store.clone(), barrier.clone());
        std::thread::spawn(move || {
            barrier.wait();
            (0..3)
                .map(|_| block_on(store.purge_expired()).unwrap())
                .sum::<u64>()
        })
    };
    for w in workers {
        w.join().unwrap();
    }
    let purged = reaper.join().unwrap();
    assert!(purged <= KEYS as u64);
    assert_eq!(executed.load(Ordering::SeqCst), KEYS);
    // No fresh record was lost: every key replays its new value.
    for c in &calls {
        let o = m.execute_sync(c, || 2_u32).unwrap();
        assert!(o.is_replayed(), "scenario 30: a fresh record was purged");
        assert_eq!(o.value, 1);
    }
    assert_eq!(
        block_on(store.purge_expired()).unwrap(),
        0,
        "nothing is expired"
    );
    assert!(!stale.exists(), "the stale temporary file is purged");
    assert!(corrupt.exists(), "a corrupt record is left for `delete`");
    clock.advance(Duration::from_secs(11));
    assert_eq!(block_on(store.purge_expired()).unwrap(), KEYS as u64);
    assert!(block_on(store.get(&calls[0].key)).unwrap().is_none());
}

// ---------------------------------------------------------------------------------------------
// Permissions and durability.

#[cfg(unix)]
#[test]
fn store_creates_owner_only_directories_and_files() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = FileStorage::open(&dir).unwrap();
    let m = IdempotencyManager::new(store.clone());
    let c = call("perm");
    m.execute_sync(&c, || 1_u8).unwrap();
    let record = store.record_path(&c.key);
    let shard = record.parent().unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir) & 0o077, 0, "store directory");
    assert_eq!(mode(shard) & 0o077, 0, "shard directory");
    assert_eq!(mode(&record) & 0o077, 0, "record file");
    assert_eq!(mode(&shard.join(".lock")) & 0o077, 0, "lock file");
    assert_eq!(mode(&record) & 0o600, 0o600);
}

#[test]
fn buffered_durability_stores_and_replays_across_instances() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let a = FileStorage::builder(&dir)
        .durability(Durability::Buffered)
        .open()
        .unwrap();
    assert_eq!(a.durability(), Durability::Buffered);
    let c = call("buffered");
    let first = IdempotencyManager::new(a)
        .execute_sync(&c, || 7_u64)
        .unwrap();
    assert!(!first.is_replayed());
    // A second instance (another process would do the same) on the same directory.
    let b = FileStorage::open(&dir).unwrap();
    let again = IdempotencyManager::new(b)
        .execute_sync(&c, || 8_u64)
        .unwrap();
    assert!(again.is_replayed());
    assert_eq!(again.value, 7);
}
