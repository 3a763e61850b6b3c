//! The file store's operator side: `list` pages through record files in a stable order and
//! reports corrupt and foreign-version files as unreadable (scenario 26); `remove_unreadable`
//! removes only such files, only inside the store, and only when still unreadable under the
//! shard lock.
#![cfg(feature = "file")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use idempotency_core::{
    block_on, Call, Clock, Error, ErrorKind, FileStorage, IdempotencyKey, IdempotencyManager,
    Listed, ManualClock, Page, RecordStatus, Storage, StorageAdmin, Timestamp,
};

fn manual_store(dir: &Path) -> (ManualClock, FileStorage) {
    let clock = ManualClock::new(Timestamp(1_700_000_000_000));
    let store = FileStorage::builder(dir)
        .clock(Arc::new(clock.clone()))
        .open()
        .unwrap();
    (clock, store)
}

/// Stores a `Success` record for each of `0..n`.
fn seed(store: &FileStorage, n: usize) -> Vec<IdempotencyKey> {
    let manager = IdempotencyManager::new(store.clone());
    (0..n)
        .map(|i| {
            let derived = IdempotencyKey::derive("file::list", 1, &i).unwrap();
            let k = derived.key.clone();
            manager
                .execute_sync(&Call::new(derived), || i as u64)
                .unwrap();
            k
        })
        .collect()
}

/// Walks every page with `limit`, checking page sizes and the order of cursors.
fn list_all(store: &FileStorage, limit: usize) -> Vec<Listed> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let Page {
            items,
            cursor: next,
        } = block_on(store.list(cursor.as_deref(), limit)).unwrap();
        assert!(
            items.len() <= limit.max(1),
            "page of {} > {limit}",
            items.len()
        );
        pages += 1;
        assert!(pages < 10_000, "the listing does not end");
        all.extend(items);
        match next {
            Some(c) => {
                assert!(
                    cursor.as_deref().is_none_or(|prev| prev < c.as_str()),
                    "cursor moves forward"
                );
                cursor = Some(c);
            }
            None => return all,
        }
    }
}

fn listed_path(l: &Listed, store: &FileStorage) -> PathBuf {
    match l {
        Listed::Record(o) => store.record_path(&o.record.key),
        Listed::Unreadable { location, .. } => PathBuf::from(location),
    }
}

fn unreadable(all: &[Listed]) -> Vec<(String, ErrorKind)> {
    all.iter()
        .filter_map(|l| match l {
            Listed::Unreadable { location, error } => Some((location.clone(), error.kind())),
            Listed::Record(_) => None,
        })
        .collect()
}

#[test]
fn list_pages_through_every_record_once_in_a_stable_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (_clock, store) = manual_store(tmp.path());
    let keys = seed(&store, 23);
    for limit in [1, 4, 23, 100] {
        let all = list_all(&store, limit);
        let listed: Vec<PathBuf> = all.iter().map(|l| listed_path(l, &store)).collect();
        let mut sorted = listed.clone();
        sorted.sort();
        assert_eq!(listed, sorted, "name order, limit {limit}");
        let got: BTreeSet<String> = all
            .iter()
            .map(|l| match l {
                Listed::Record(o) => o.record.key.to_string(),
                Listed::Unreadable { location, .. } => panic!("unreadable {location}"),
            })
            .collect();
        let want: BTreeSet<String> = keys.iter().map(ToString::to_string).collect();
        assert_eq!(got, want, "limit {limit}");
    }
    // The last page says there is no next one.
    let page = block_on(store.list(None, 23)).unwrap();
    assert_eq!(page.items.len(), 23);
    assert!(page.cursor.is_none());
}

#[test]
fn list_reports_statuses_on_the_store_clock() {
    let tmp = tempfile::tempdir().unwrap();
    let (clock, store) = manual_store(tmp.path());
    let manager = IdempotencyManager::new(store.clone());
    let ok = IdempotencyKey::derive("file::list", 1, &"ok").unwrap();
    manager
        .execute_sync(
            &Call::new(ok.clone()).ttl(Duration::from_secs(3600)),
            || 1_u8,
        )
        .unwrap();
    let short = IdempotencyKey::derive("file::list", 1, &"short").unwrap();
    manager
        .execute_sync(
            &Call::new(short.clone()).ttl(Duration::from_secs(10)),
            || 2_u8,
        )
        .unwrap();
    clock.advance(Duration::from_secs(60));
    let all = list_all(&store, 10);
    let status_of = |k: &IdempotencyKey| {
        all.iter()
            .find_map(|l| match l {
                Listed::Record(o) if o.record.key == *k => Some((o.status(), o.now)),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(status_of(&ok.key), (RecordStatus::Success, clock.now()));
    assert_eq!(status_of(&short.key), (RecordStatus::Expired, clock.now()));
}

#[test]
fn scenario_26_list_reports_corrupt_and_foreign_version_files_as_unreadable() {
    let tmp = tempfile::tempdir().unwrap();
    let (_clock, store) = manual_store(tmp.path());
    let keys = seed(&store, 6);
    let garbage = store.record_path(&keys[0]);
    std::fs::write(&garbage, b"not a record at all").unwrap();
    let truncated = store.record_path(&keys[1]);
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let foreign = store.record_path(&keys[2]);
    let mut bytes = std::fs::read(&foreign).unwrap();
    bytes[3] = 99; // a format version this build does not read
    std::fs::write(&foreign, &bytes).unwrap();
    // Another key's record under this key's name.
    let swapped = store.record_path(&keys[3]);
    std::fs::copy(store.record_path(&keys[4]), &swapped).unwrap();
    // Temporary files, lock files and foreign names are not entries.
    let shard = garbage.parent().unwrap();
    let name = garbage.file_name().unwrap().to_str().unwrap();
    std::fs::write(shard.join(format!(".{name}.{}.tmp", "0".repeat(32))), b"x").unwrap();
    std::fs::write(shard.join("notes.txt"), b"x").unwrap();
    std::fs::write(tmp.path().join("README"), b"x").unwrap();

    for limit in [1, 3, 50] {
        let all = list_all(&store, limit);
        assert_eq!(all.len(), 6, "limit {limit}");
        let mut bad = unreadable(&all);
        bad.sort_by(|a, b| a.0.cmp(&b.0));
        let mut want = vec![
            (garbage.display().to_string(), ErrorKind::CorruptRecord),
            (truncated.display().to_string(), ErrorKind::CorruptRecord),
            (foreign.display().to_string(), ErrorKind::IncompatibleRecord),
            (swapped.display().to_string(), ErrorKind::CorruptRecord),
        ];
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(bad, want, "limit {limit}");
    }
}

#[cfg(unix)]
#[test]
fn scenario_20_a_symbolic_link_at_a_record_path_is_unreadable_and_removed_as_a_link() {
    let tmp = tempfile::tempdir().unwrap();
    let (_clock, store) = manual_store(tmp.path().join("store").as_path());
    let keys = seed(&store, 1);
    let target = tmp.path().join("precious");
    std::fs::write(&target, b"keep me").unwrap();
    let link = store.record_path(&keys[0]);
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let all = list_all(&store, 10);
    assert_eq!(
        unreadable(&all),
        vec![(link.display().to_string(), ErrorKind::CorruptRecord)]
    );
    assert!(block_on(store.remove_unreadable(&link.display().to_string())).unwrap());
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "the link is gone"
    );
    assert_eq!(
        std::fs::read(&target).unwrap(),
        b"keep me",
        "its target is not"
    );
}

#[test]
fn scenario_26_remove_unreadable_removes_only_unreadable_record_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (_clock, store) = manual_store(tmp.path());
    let keys = seed(&store, 3);
    let corrupt = store.record_path(&keys[0]);
    std::fs::write(&corrupt, b"garbage").unwrap();
    let loc = corrupt.display().to_string();
    assert!(block_on(store.remove_unreadable(&loc)).unwrap());
    assert!(!corrupt.exists());
    assert!(
        !block_on(store.remove_unreadable(&loc)).unwrap(),
        "already gone"
    );

    // A readable record is never removed this way.
    let good = store.record_path(&keys[1]);
    assert!(!block_on(store.remove_unreadable(&good.display().to_string())).unwrap());
    assert!(block_on(store.get(&keys[1])).unwrap().is_some());

    // After the repair, the key runs again.
    let manager = IdempotencyManager::new(store.clone());
    let derived = IdempotencyKey::derive("file::list", 1, &0_usize).unwrap();
    let out = manager.execute_sync(&Call::new(derived), || 7_u64).unwrap();
    assert!(!out.is_replayed());
}

#[test]
fn remove_unreadable_refuses_paths_that_are_not_record_files_of_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("store");
    let (_clock, store) = manual_store(&store_dir);
    let keys = seed(&store, 1);
    let record = store.record_path(&keys[0]);
    let shard = record.parent().unwrap().to_path_buf();
    let name = record.file_name().unwrap().to_str().unwrap().to_owned();

    // A garbage file with a record name outside the store, and one in the wrong shard.
    let outside = tmp.path().join(&name);
    std::fs::write(&outside, b"garbage").unwrap();
    let other_shard = store_dir.join(if name.starts_with("00") { "01" } else { "00" });
    std::fs::create_dir_all(&other_shard).unwrap();
    let wrong_shard = other_shard.join(&name);
    std::fs::write(&wrong_shard, b"garbage").unwrap();
    // Temporary and lock files, and a `..` detour back to a valid record path.
    let temp = shard.join(format!(".{name}.{}.tmp", "0".repeat(32)));
    std::fs::write(&temp, b"garbage").unwrap();
    let lock = shard.join(".lock");
    let detour = shard.join("..").join(&name[..2]).join(&name);

    for path in [&outside, &wrong_shard, &temp, &lock, &detour] {
        let err = block_on(store.remove_unreadable(&path.display().to_string())).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{path:?}: {err:?}");
        assert!(path.exists(), "{path:?} left in place");
    }
    let err = block_on(store.remove_unreadable("relative/name")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(block_on(store.get(&keys[0])).unwrap().is_some());
}

#[test]
fn remove_unreadable_rechecks_under_the_lock_and_spares_a_repaired_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (_clock, store) = manual_store(tmp.path());
    let keys = seed(&store, 1);
    let path = store.record_path(&keys[0]);
    let good = std::fs::read(&path).unwrap();
    std::fs::write(&path, b"garbage").unwrap();
    let all = list_all(&store, 10);
    let bad = unreadable(&all);
    assert_eq!(bad.len(), 1, "{bad:?}");
    let (location, kind) = bad[0].clone();
    assert_eq!(kind, ErrorKind::CorruptRecord);
    // Between the listing and the removal, the record is written again (a repair, a new claim).
    std::fs::write(&path, &good).unwrap();
    assert!(!block_on(store.remove_unreadable(&location)).unwrap());
    assert!(block_on(store.get(&keys[0])).unwrap().is_some());
}

#[test]
fn list_rejects_a_foreign_cursor_and_handles_an_empty_store() {
    let tmp = tempfile::tempdir().unwrap();
    let (_clock, store) = manual_store(tmp.path());
    let page = block_on(store.list(None, 10)).unwrap();
    assert!(page.items.is_empty() && page.cursor.is_none());
    for bad in ["../x", "zz", "", &"A".repeat(64)] {
        let err = block_on(store.list(Some(bad), 10)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{bad:?}");
    }
    // A cursor past every name ends the listing.
    seed(&store, 3);
    let page = block_on(store.list(Some(&"f".repeat(64)), 10)).unwrap();
    assert!(page.items.is_empty() && page.cursor.is_none());
}
