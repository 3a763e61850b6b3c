//! A store of your own: `Storage` for a map of encoded records behind a mutex (a stand-in for a
//! key-value store), checked by the conformance kit (`idempotency::testing`, feature `testing`)
//! against the scenarios of SEMANTICS.md.
//!
//! Under one lock, each method reads the record, decides with core's helpers (`decide_claim`
//! for a claim, `apply_finish` for a fenced `complete`/`fail`) and writes the result back; a
//! store without such a lock needs a compare-and-set on the stored bytes instead.
//!
//! ```sh
//! cargo run --features testing --example custom_store     # one idempotent call on the store
//! cargo test --features testing --example custom_store    # the conformance kit
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use idempotency::{
    apply_finish, decide_claim, Call, Claim, ClaimDecision, ClaimRequest, Clock, Error, Finish,
    IdempotencyKey, IdempotencyManager, Observed, Owner, Record, RecordError, RecordStatus, Result,
    Storage, SystemClock, Timestamp,
};

/// Records as bytes (`Record::encode`), as a key-value store would hold them.
type Map = HashMap<IdempotencyKey, Vec<u8>>;

/// The store: clones share the map. Times come from `clock`, the store's clock.
#[derive(Debug, Clone)]
struct MapStore {
    map: Arc<Mutex<Map>>,
    clock: Arc<dyn Clock>,
}

impl MapStore {
    fn new(clock: Arc<dyn Clock>) -> Self {
        MapStore {
            map: Arc::default(),
            clock,
        }
    }
    fn lock(&self) -> MutexGuard<'_, Map> {
        // Every write is one insert or remove: a poisoned map is still consistent.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
    /// The record of `key`; an unreadable one is `CorruptRecord`/`IncompatibleRecord`.
    fn read(map: &Map, key: &IdempotencyKey) -> Result<Option<Record>> {
        map.get(key)
            .map(|b| Record::decode(b, key.as_str()))
            .transpose()
    }
    fn write(map: &mut Map, rec: &Record) -> Result<()> {
        map.insert(rec.key.clone(), rec.encode()?);
        Ok(())
    }
    /// `complete` and `fail`: fenced on `owner` by `apply_finish`.
    fn finish(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        f: Finish<'_>,
        ttl: Duration,
    ) -> Result<Record> {
        let mut map = self.lock();
        let rec = apply_finish(Self::read(&map, key)?, owner, f, ttl, self.clock.now())
            .ok_or_else(|| Error::LeaseLost { key: key.clone() })?;
        Self::write(&mut map, &rec)?;
        Ok(rec)
    }
}

impl Storage for MapStore {
    async fn try_claim(&self, key: &IdempotencyKey, req: &ClaimRequest) -> Result<Claim> {
        let mut map = self.lock();
        match decide_claim(key, Self::read(&map, key)?, req, self.clock.now()) {
            ClaimDecision::Write(rec, claim) => Self::write(&mut map, &rec).map(|()| claim),
            ClaimDecision::Keep(claim) => Ok(claim),
        }
    }
    async fn complete(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        value: &[u8],
        ttl: Duration,
    ) -> Result<Record> {
        self.finish(key, owner, Finish::Success(value), ttl)
    }
    async fn fail(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        e: &RecordError,
        ttl: Duration,
    ) -> Result<Record> {
        self.finish(key, owner, Finish::Failed(e), ttl)
    }
    async fn release(&self, key: &IdempotencyKey, owner: &Owner) -> Result<bool> {
        let mut map = self.lock();
        let held = Self::read(&map, key)?
            .is_some_and(|r| r.owner == *owner && r.status == RecordStatus::Pending);
        Ok(held && map.remove(key).is_some())
    }
    async fn renew(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        lease: Duration,
    ) -> Result<Timestamp> {
        let mut map = self.lock();
        match Self::read(&map, key)? {
            Some(mut r) if r.owner == *owner && r.status == RecordStatus::Pending => {
                let until = self.clock.now().saturating_add(lease);
                (r.expires_at, r.lease_until) = (until, Some(until));
                Self::write(&mut map, &r).map(|()| until)
            }
            _ => Err(Error::LeaseLost { key: key.clone() }),
        }
    }
    async fn get(&self, key: &IdempotencyKey) -> Result<Option<Observed>> {
        let now = self.clock.now();
        Ok(Self::read(&self.lock(), key)?.map(|record| Observed { record, now }))
    }
    async fn delete(&self, key: &IdempotencyKey) -> Result<bool> {
        Ok(self.lock().remove(key).is_some())
    }
}

fn main() -> Result<()> {
    let manager = IdempotencyManager::new(MapStore::new(Arc::new(SystemClock)));
    let call = Call::new(IdempotencyKey::derive("shop::ship", 1, &"order-7")?);
    let first = manager.execute_sync(&call, || "parcel-1".to_string())?;
    let again = manager.execute_sync(&call, || "parcel-2".to_string())?;
    assert!(!first.is_replayed() && again.is_replayed());
    println!("{} (replayed: {})", again.value, again.is_replayed());
    Ok(())
}

/// The conformance kit: one `#[tokio::test]` per scenario of SEMANTICS.md, named after it
/// (`kit::scenario_12_stale_holder_is_fenced`).
#[cfg(test)]
mod kit {
    use std::sync::Arc;
    use std::time::Duration;

    use idempotency::testing::Harness;
    use idempotency::{DynStorage, IdempotencyKey, ManualClock, Timestamp};

    use super::MapStore;

    /// The kit's view of the store: a fresh one per test, on a clock the kit moves.
    struct Kit {
        clock: ManualClock,
        store: MapStore,
    }

    impl Kit {
        fn new() -> Self {
            let clock = ManualClock::new(Timestamp(1_700_000_000_000));
            Kit {
                store: MapStore::new(Arc::new(clock.clone())),
                clock,
            }
        }
    }

    impl Harness for Kit {
        fn store(&self) -> Arc<dyn DynStorage> {
            Arc::new(self.store.clone())
        }
        async fn advance(&self, d: Duration) {
            self.clock.advance(d);
        }
        fn rewind(&self, d: Duration) -> bool {
            self.clock.rewind(d);
            true
        }
        /// Scenario 26: corrupt bytes in place of a record.
        async fn write_raw(&self, key: &IdempotencyKey, bytes: &[u8]) -> bool {
            self.store.lock().insert(key.clone(), bytes.to_vec());
            true
        }
    }

    idempotency::conformance_suite!(Kit::new());

    #[test]
    fn main_replays_the_second_call() {
        super::main().unwrap();
    }
}
