//! Scenario 20 on the file store: hostile keys stay inside the store directory and never
//! alias; a symbolic link planted at a record path (or a shard path) is never followed.
#![cfg(feature = "file")]

mod file_common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use file_common::{raw_key, tree};
use idempotency_core::{
    block_on, Call, Claim, ClaimRequest, Error, ErrorKind, FileStorage, Fingerprint,
    IdempotencyKey, IdempotencyManager, KeyEncoder, ManualClock, Storage, StorageAdmin, Timestamp,
};
use uuid::Uuid;

const TEN_KB: usize = 10 * 1024;

fn hostile() -> Vec<String> {
    vec![
        "../../../outside".into(),
        "/etc/passwd".into(),
        "a/../../b".into(),
        "\0".into(),
        "CON".into(),
        "*?[".into(),
        "line\nbreak".into(),
        "x".repeat(TEN_KB),
        "Key".into(),
        "key".into(),
        "\u{e9}".into(),   // é, NFC
        "e\u{301}".into(), // é, NFD
        "".into(),
    ]
}

fn setup() -> (tempfile::TempDir, FileStorage, IdempotencyManager) {
    let sandbox = tempfile::tempdir().unwrap();
    let store = FileStorage::builder(sandbox.path().join("store"))
        .clock(Arc::new(ManualClock::new(Timestamp(1_700_000_000_000))))
        .open()
        .unwrap();
    let m = IdempotencyManager::new(store.clone());
    (sandbox, store, m)
}

/// Every entry of the sandbox is the store directory or inside it, and has the store's shape:
/// `<2 hex>/`, `<2 hex>/.lock`, `<2 hex>/<64 hex>`.
fn assert_only_store_layout(sandbox: &Path) {
    for p in tree(sandbox) {
        let mut parts = p
            .components()
            .map(|c| c.as_os_str().to_str().unwrap().to_owned());
        assert_eq!(
            parts.next().as_deref(),
            Some("store"),
            "outside the store: {p:?}"
        );
        let rest: Vec<String> = parts.collect();
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        match rest.as_slice() {
            [] => {}
            [shard] => assert!(hex(shard, 2), "{p:?}"),
            [shard, name] => {
                assert!(hex(shard, 2) && (name == ".lock" || hex(name, 64)), "{p:?}");
                assert!(name == ".lock" || name.starts_with(shard.as_str()), "{p:?}");
            }
            _ => panic!("unexpected depth: {p:?}"),
        }
    }
}

#[test]
fn scenario_20_hostile_custom_keys_stay_inside_the_store() {
    let (sandbox, _store, m) = setup();
    let runs = AtomicUsize::new(0);
    let mut accepted = Vec::new();
    for k in hostile() {
        let mut enc = KeyEncoder::new("file::hostile", 1);
        enc.custom_key(&k).arg(&1_u8);
        match enc.finish() {
            Ok(derived) => {
                let c = Call::new(derived);
                let o = m
                    .execute_sync(&c, || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        k.clone()
                    })
                    .unwrap();
                assert!(!o.is_replayed(), "{k:?} aliased an earlier key");
                accepted.push((k, c));
            }
            Err(e) => {
                // Control characters, over-long and empty keys are refused before any I/O.
                assert_eq!(e.kind(), ErrorKind::InvalidKey, "{k:?}");
                assert!(
                    k.is_empty() || k.len() > 255 || k.chars().any(char::is_control),
                    "{k:?} refused: {e}"
                );
            }
        }
    }
    assert_eq!(accepted.len(), 9, "the printable hostile keys are accepted");
    // Operation names can carry path syntax too.
    for op in ["../../../outside", "/etc/passwd", "a/../../b", "CON", "*?["] {
        let c = Call::new(IdempotencyKey::derive(op, 1, &()).unwrap());
        assert!(!m.execute_sync(&c, || op.to_owned()).unwrap().is_replayed());
        accepted.push((op.to_owned(), c));
    }
    // Each key replays its own value: `Key`/`key` and NFC/NFD `é` never alias.
    for (k, c) in &accepted {
        let o = m.execute_sync(c, || String::from("rerun")).unwrap();
        assert!(o.is_replayed());
        assert_eq!(&o.value, k);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 9);
    assert_only_store_layout(sandbox.path());
}

#[test]
fn scenario_20_raw_hostile_keys_map_to_hashed_paths() {
    let (sandbox, store, _m) = setup();
    let keys: Vec<IdempotencyKey> = hostile().iter().map(|s| raw_key(s)).collect();
    let mut paths = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let path = store.record_path(key);
        assert_eq!(path.parent().unwrap().parent().unwrap(), store.dir());
        paths.push(path);
        let req = ClaimRequest {
            execution_id: Uuid::new_v4(),
            fingerprint: Fingerprint([0; 32]),
            lease: Duration::from_secs(60),
            refresh: false,
        };
        let Claim::Acquired { owner, .. } = block_on(store.try_claim(key, &req)).unwrap() else {
            panic!("{key:?} was already claimed: aliasing")
        };
        block_on(store.complete(key, &owner, &[i as u8], Duration::from_secs(60))).unwrap();
    }
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), keys.len(), "distinct keys, distinct files");
    for (i, key) in keys.iter().enumerate() {
        let obs = block_on(store.get(key)).unwrap().unwrap();
        assert_eq!(obs.record.result, vec![i as u8]);
        assert_eq!(&obs.record.key, key);
    }
    assert_only_store_layout(sandbox.path());
    for key in &keys {
        assert!(block_on(store.delete(key)).unwrap());
    }
}

#[cfg(unix)]
#[test]
fn scenario_20_planted_symlink_is_never_written_through() {
    use std::os::unix::fs::symlink;

    let (sandbox, store, m) = setup();
    let victim = sandbox.path().join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    let runs = AtomicUsize::new(0);
    let run = || {
        runs.fetch_add(1, Ordering::SeqCst);
        1_u8
    };

    // A link to an existing file outside the store.
    let c = Call::new(IdempotencyKey::derive("file::symlink", 1, &"a").unwrap());
    let path = store.record_path(&c.key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    symlink(&victim, &path).unwrap();
    let err = m.execute_sync(&c, run).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CorruptRecord, "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    let err = block_on(store.get(&c.key)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CorruptRecord);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");

    // A dangling link: nothing is created at its target.
    let c2 = Call::new(IdempotencyKey::derive("file::symlink", 1, &"b").unwrap());
    let path2 = store.record_path(&c2.key);
    std::fs::create_dir_all(path2.parent().unwrap()).unwrap();
    let nowhere = sandbox.path().join("nowhere");
    symlink(&nowhere, &path2).unwrap();
    assert_eq!(
        m.execute_sync(&c2, run).unwrap_err().kind(),
        ErrorKind::CorruptRecord
    );
    assert!(!nowhere.exists() && std::fs::symlink_metadata(&nowhere).is_err());
    assert_eq!(runs.load(Ordering::SeqCst), 0, "nothing ran");

    // `delete` removes the link itself, never its target; then the key works again.
    assert!(block_on(store.delete(&c.key)).unwrap());
    assert!(std::fs::symlink_metadata(&path).is_err());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(!m.execute_sync(&c, run).unwrap().is_replayed());

    // A link planted in place of a shard directory.
    let outside = sandbox.path().join("elsewhere");
    std::fs::create_dir(&outside).unwrap();
    let c3 = (0..)
        .map(|i| Call::new(IdempotencyKey::derive("file::symlink", 1, &i).unwrap()))
        .find(|c| !store.record_path(&c.key).parent().unwrap().exists())
        .unwrap();
    let shard = store.record_path(&c3.key).parent().unwrap().to_path_buf();
    symlink(&outside, &shard).unwrap();
    let err = m.execute_sync(&c3, run).unwrap_err();
    match &err {
        Error::Io { path, .. } => assert_eq!(path, &shard),
        e => panic!("expected Error::Io naming the shard, got {e:?}"),
    }
    assert_eq!(
        block_on(store.get(&c3.key)).unwrap_err().kind(),
        ErrorKind::StoreUnavailable
    );
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written outside"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // The purge skips the planted link.
    block_on(store.purge_expired()).unwrap();
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}
