//! `Prefixed`: the conformance kit and the admin checks on prefixed memory and file stores whose
//! store beneath also holds the same keys in neighbouring namespaces (a longer prefix, a shorter
//! one, and no prefix), so every check also proves the namespaces never meet; then what is
//! particular to the wrapper: delimited prefixes (scenario 19 across namespaces), keys in the
//! caller's terms, listing, and the store-wide purge.
#![cfg(all(feature = "testing", feature = "file"))]

use std::sync::Arc;
use std::time::Duration;

use idempotency_core::testing::{AdminHarness, Harness};
use idempotency_core::{
    block_on, Call, Claim, ClaimRequest, Durability, Error, ErrorKind, FileStorage, Fingerprint,
    IdempotencyKey, IdempotencyManager, Listed, ManualClock, MemoryStorage, Owner, Prefixed,
    RecordStatus, Storage, StorageAdmin, Timestamp,
};

const PREFIX: &str = "tenant-a";
/// Namespaces sharing the store beneath: one whose prefix extends ours, one whose prefix ours
/// extends, and the store itself (no prefix).
const NEIGHBOURS: [Option<&str>; 3] = [Some("tenant-ab"), Some("tenant"), None];
const DAY: Duration = Duration::from_secs(86_400);

fn start() -> ManualClock {
    ManualClock::new(Timestamp(1_700_000_000_000))
}

fn claim<S: Storage>(store: &S, key: &IdempotencyKey, lease: Duration) -> Owner {
    let req = ClaimRequest {
        execution_id: uuid::Uuid::new_v4(),
        fingerprint: Fingerprint([9; 32]),
        lease,
        refresh: false,
    };
    match block_on(store.try_claim(key, &req)).unwrap() {
        Claim::Acquired { owner, .. } => owner,
        other => panic!("could not claim {key}: {other:?}"),
    }
}

/// The keys the admin checks and a few scenarios use, finished with a day's TTL in every
/// neighbouring namespace, so a leak between namespaces shows in the kit's own assertions.
fn seed_neighbours<S: Storage + Clone>(base: &S) {
    let mut keys: Vec<IdempotencyKey> = Vec::new();
    for (op, n) in [
        ("kit::admin-list", 25),
        ("kit::s30", 12),
        ("kit::admin-unreadable", 3),
    ] {
        keys.extend((0..n).map(|i| IdempotencyKey::derive(op, 1, &i).unwrap().key));
    }
    keys.push(IdempotencyKey::derive("kit::s1", 1, &"k").unwrap().key);
    for prefix in NEIGHBOURS {
        for k in &keys {
            match prefix {
                Some(p) => {
                    let store = Prefixed::new(base.clone(), p).unwrap();
                    let owner = claim(&store, k, DAY);
                    block_on(store.complete(k, &owner, b"neighbour", DAY)).unwrap();
                }
                None => {
                    let owner = claim(base, k, DAY);
                    block_on(base.complete(k, &owner, b"neighbour", DAY)).unwrap();
                }
            }
        }
    }
}

struct PrefixedMemory {
    clock: ManualClock,
    store: Prefixed<MemoryStorage>,
}

impl PrefixedMemory {
    fn new() -> Self {
        let clock = start();
        let base = MemoryStorage::with_clock(Arc::new(clock.clone()));
        seed_neighbours(&base);
        let store = Prefixed::new(base, PREFIX).unwrap();
        PrefixedMemory { clock, store }
    }
}

impl Harness for PrefixedMemory {
    fn store(&self) -> Arc<dyn idempotency_core::DynStorage> {
        Arc::new(self.store.clone())
    }
    async fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }
    fn rewind(&self, d: Duration) -> bool {
        self.clock.rewind(d);
        true
    }
}

impl AdminHarness for PrefixedMemory {
    fn admin_store(&self) -> Arc<dyn idempotency_core::DynStorageAdmin> {
        Arc::new(self.store.clone())
    }
}

struct PrefixedFile {
    clock: ManualClock,
    store: Prefixed<FileStorage>,
    _dir: tempfile::TempDir,
}

impl PrefixedFile {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = start();
        // Buffered: the neighbours' records are many, and no check here crashes the OS.
        let base = FileStorage::builder(dir.path().join("store"))
            .clock(Arc::new(clock.clone()))
            .durability(Durability::Buffered)
            .open()
            .unwrap();
        seed_neighbours(&base);
        let store = Prefixed::new(base, PREFIX).unwrap();
        PrefixedFile {
            clock,
            store,
            _dir: dir,
        }
    }
}

impl Harness for PrefixedFile {
    fn store(&self) -> Arc<dyn idempotency_core::DynStorage> {
        Arc::new(self.store.clone())
    }
    async fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }
    fn rewind(&self, d: Duration) -> bool {
        self.clock.rewind(d);
        true
    }
    async fn write_raw(&self, key: &IdempotencyKey, bytes: &[u8]) -> bool {
        let path = self.store.inner().record_path(&self.store.stored_key(key));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).is_ok()
    }
}

impl AdminHarness for PrefixedFile {
    fn admin_store(&self) -> Arc<dyn idempotency_core::DynStorageAdmin> {
        Arc::new(self.store.clone())
    }
}

mod memory_kit {
    use super::PrefixedMemory;
    idempotency_core::conformance_suite!(PrefixedMemory::new(); without_raw_bytes);
    idempotency_core::admin_suite!(PrefixedMemory::new());
}

mod file_kit {
    use super::PrefixedFile;
    idempotency_core::conformance_suite!(PrefixedFile::new());
    idempotency_core::admin_suite!(PrefixedFile::new());
}

fn parsed(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).unwrap()
}

fn call_of(key: IdempotencyKey) -> Call {
    let derived = idempotency_core::DerivedKey {
        key,
        fingerprint: Fingerprint([1; 32]),
    };
    Call::new(derived)
}

/// Scenario 19 across namespaces: `a` + `bc:<hex>` and `ab` + `c:<hex>` would be one string
/// undelimited; through `Prefixed` they are two records, and each replays its own value.
#[test]
fn scenario_19_prefixes_never_share_a_record_even_when_their_concatenations_agree() {
    let hex = "5".repeat(32);
    let base = MemoryStorage::new();
    let a = IdempotencyManager::new(Prefixed::new(base.clone(), "a").unwrap());
    let ab = IdempotencyManager::new(Prefixed::new(base.clone(), "ab").unwrap());
    let bare = IdempotencyManager::new(base.clone());
    let (in_a, in_ab) = (
        call_of(parsed(&format!("bc:{hex}"))),
        call_of(parsed(&format!("c:{hex}"))),
    );
    let in_bare = call_of(parsed(&format!("abc:{hex}")));
    assert_eq!(a.execute_sync(&in_a, || "a".to_owned()).unwrap().value, "a");
    assert_eq!(
        ab.execute_sync(&in_ab, || "ab".to_owned()).unwrap().value,
        "ab"
    );
    assert_eq!(
        bare.execute_sync(&in_bare, || "bare".to_owned())
            .unwrap()
            .value,
        "bare"
    );
    assert_eq!(base.len(), 3, "three records, one per namespace");
    for (m, c, v) in [
        (&a, &in_a, "a"),
        (&ab, &in_ab, "ab"),
        (&bare, &in_bare, "bare"),
    ] {
        let o = m.execute_sync(c, || "again".to_owned()).unwrap();
        assert!(o.is_replayed());
        assert_eq!(o.value, v, "each namespace replays its own value");
    }
    // The records beneath, under their delimited keys.
    for stored in [
        format!("a/bc:{hex}"),
        format!("ab/c:{hex}"),
        format!("abc:{hex}"),
    ] {
        assert!(
            block_on(base.get(&parsed(&stored))).unwrap().is_some(),
            "{stored}"
        );
    }
}

#[test]
fn two_wrappers_with_one_prefix_share_their_records() {
    let base = MemoryStorage::new();
    let one = IdempotencyManager::new(Prefixed::new(base.clone(), "svc").unwrap());
    let two = IdempotencyManager::new(Prefixed::new(base.clone(), "svc").unwrap());
    let c = Call::new(IdempotencyKey::derive("op", 1, &1_u8).unwrap());
    assert_eq!(one.execute_sync(&c, || 1_u8).unwrap().value, 1);
    let o = two.execute_sync(&c, || 2_u8).unwrap();
    assert!(o.is_replayed());
    assert_eq!(o.value, 1);
}

#[test]
fn nested_wrappers_stack_their_prefixes_like_path_segments() {
    let base = MemoryStorage::new();
    let nested = Prefixed::new(Prefixed::new(base.clone(), "eu").unwrap(), "billing").unwrap();
    let k = IdempotencyKey::derive("charge", 1, &7_u8).unwrap().key;
    let owner = claim(&nested, &k, DAY);
    block_on(nested.complete(&k, &owner, b"v", DAY)).unwrap();
    let stored = parsed(&format!("eu/billing/{k}"));
    assert_eq!(
        block_on(base.get(&stored)).unwrap().unwrap().record.result,
        b"v"
    );
    assert_eq!(block_on(nested.get(&k)).unwrap().unwrap().record.key, k);
}

#[test]
fn records_and_errors_name_the_callers_key() {
    let clock = start();
    let base = MemoryStorage::with_clock(Arc::new(clock.clone()));
    let store = Prefixed::new(base.clone(), PREFIX).unwrap();
    let k = IdempotencyKey::derive("op", 1, &"x").unwrap().key;
    let owner = claim(&store, &k, Duration::from_secs(1));
    // A claim's existing record.
    let again = ClaimRequest {
        execution_id: uuid::Uuid::new_v4(),
        fingerprint: Fingerprint([9; 32]),
        lease: Duration::from_secs(1),
        refresh: false,
    };
    match block_on(store.try_claim(&k, &again)).unwrap() {
        Claim::Existing(o) => assert_eq!(o.record.key, k),
        other => panic!("expected the existing record, got {other:?}"),
    }
    // A lost lease, after a takeover.
    clock.advance(Duration::from_secs(2));
    let newer = claim(&store, &k, DAY);
    match block_on(store.complete(&k, &owner, b"late", DAY)) {
        Err(Error::LeaseLost { key }) => assert_eq!(key, k),
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    match block_on(store.renew(&k, &owner, DAY)) {
        Err(Error::LeaseLost { key }) => assert_eq!(key, k),
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    // A finished record and a read.
    let done = block_on(store.complete(&k, &newer, b"v", DAY)).unwrap();
    assert_eq!(done.key, k);
    assert_eq!(block_on(store.get(&k)).unwrap().unwrap().record, done);
    assert!(block_on(store.exists(&k)).unwrap());
    // Beneath, the record carries the stored key.
    let beneath = block_on(base.get(&store.stored_key(&k))).unwrap().unwrap();
    assert_eq!(beneath.record.key, store.stored_key(&k));
    assert!(block_on(base.get(&k)).unwrap().is_none());
    assert!(block_on(store.delete(&k)).unwrap());
    assert!(base.is_empty());
}

/// A store beneath that answers with the record of another key: never the caller's answer.
#[test]
fn a_record_of_another_key_from_the_store_beneath_is_corrupt() {
    #[derive(Debug, Clone, Default)]
    struct Confused(MemoryStorage);
    impl Storage for Confused {
        async fn try_claim(
            &self,
            k: &IdempotencyKey,
            r: &ClaimRequest,
        ) -> idempotency_core::Result<Claim> {
            self.0.try_claim(k, r).await
        }
        async fn complete(
            &self,
            k: &IdempotencyKey,
            o: &Owner,
            b: &[u8],
            t: Duration,
        ) -> idempotency_core::Result<idempotency_core::Record> {
            self.0.complete(k, o, b, t).await
        }
        async fn fail(
            &self,
            k: &IdempotencyKey,
            o: &Owner,
            e: &idempotency_core::RecordError,
            t: Duration,
        ) -> idempotency_core::Result<idempotency_core::Record> {
            self.0.fail(k, o, e, t).await
        }
        async fn release(&self, k: &IdempotencyKey, o: &Owner) -> idempotency_core::Result<bool> {
            self.0.release(k, o).await
        }
        async fn renew(
            &self,
            k: &IdempotencyKey,
            o: &Owner,
            l: Duration,
        ) -> idempotency_core::Result<Timestamp> {
            self.0.renew(k, o, l).await
        }
        /// Answers every read with the record of `other:<hex>`.
        async fn get(
            &self,
            _: &IdempotencyKey,
        ) -> idempotency_core::Result<Option<idempotency_core::Observed>> {
            self.0
                .get(&parsed(&format!("other:{}", "0".repeat(32))))
                .await
        }
        async fn delete(&self, k: &IdempotencyKey) -> idempotency_core::Result<bool> {
            self.0.delete(k).await
        }
    }
    let confused = Confused::default();
    let other = parsed(&format!("other:{}", "0".repeat(32)));
    let owner = claim(&confused.0, &other, DAY);
    block_on(confused.0.complete(&other, &owner, b"not yours", DAY)).unwrap();
    let store = Prefixed::new(confused, PREFIX).unwrap();
    let k = IdempotencyKey::derive("op", 1, &1_u8).unwrap().key;
    let e = block_on(store.get(&k)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CorruptRecord);
}

#[test]
fn listing_keeps_the_namespace_strips_the_prefix_and_pages_through_the_store() {
    let base = MemoryStorage::new();
    seed_neighbours(&base);
    let store = Prefixed::new(base.clone(), PREFIX).unwrap();
    let mine: Vec<IdempotencyKey> = (0..5)
        .map(|i| IdempotencyKey::derive("mine", 1, &i).unwrap().key)
        .collect();
    for k in &mine {
        claim(&store, k, DAY);
    }
    let (mut seen, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let page = block_on(StorageAdmin::list(&store, cursor.as_deref(), 4)).unwrap();
        pages += 1;
        for item in page.items {
            match item {
                Listed::Record(o) => {
                    assert_eq!(o.status(), RecordStatus::Pending);
                    seen.push(o.record.key);
                }
                Listed::Unreadable { location, .. } => panic!("unreadable {location}"),
            }
        }
        cursor = page.cursor;
        if cursor.is_none() {
            break;
        }
    }
    seen.sort();
    let mut expected = mine.clone();
    expected.sort();
    assert_eq!(
        seen, expected,
        "only this namespace, keys without the prefix"
    );
    // The store beneath holds 3 × 41 neighbours besides: its pages were walked too.
    assert!(pages > 30, "{pages} pages");
}

#[test]
fn purge_acts_on_the_whole_store_beneath() {
    let clock = start();
    let base = MemoryStorage::with_clock(Arc::new(clock.clone()));
    let short = Duration::from_secs(1);
    let mine = Prefixed::new(base.clone(), "mine").unwrap();
    let theirs = Prefixed::new(base.clone(), "theirs").unwrap();
    for store in [&mine, &theirs] {
        for i in 0..3 {
            let k = IdempotencyKey::derive("op", 1, &i).unwrap().key;
            let o = claim(store, &k, short);
            block_on(store.complete(&k, &o, b"v", short)).unwrap();
        }
    }
    clock.advance(short * 2);
    assert_eq!(block_on(StorageAdmin::purge_expired(&mine)).unwrap(), 6);
    assert!(base.is_empty());
}
