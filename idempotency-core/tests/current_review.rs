//! Review findings on `current()` and lease renewal (SEMANTICS.md scenarios 14 and 15): the
//! derived key of a call differs between namespaces of one store, and a renewal whose store
//! call panics tells the body its lease is lost instead of stopping silently.

use std::time::Duration;

use idempotency_core::{
    current, Call, Claim, ClaimRequest, IdempotencyKey, IdempotencyManager, MemoryStorage,
    Observed, Owner, Prefixed, Record, RecordError, Result, Storage, Timestamp,
};

fn call(input: u32) -> Call {
    Call::new(
        IdempotencyKey::derive("billing::charge", 1, &input).unwrap_or_else(|e| panic!("{e}")),
    )
}

#[test]
fn scenario_15_derived_keys_differ_between_prefixed_namespaces() {
    let shared = MemoryStorage::new();
    let ns = |p: &str| Prefixed::new(shared.clone(), p).unwrap_or_else(|e| panic!("{e}"));
    let a = IdempotencyManager::new(ns("tenant-a"));
    let b = IdempotencyManager::new(ns("tenant-b"));
    let plain = IdempotencyManager::new(shared.clone());
    let nested =
        IdempotencyManager::new(Prefixed::new(ns("tenant"), "a").unwrap_or_else(|e| panic!("{e}")));
    let derive = |m: &IdempotencyManager| {
        m.execute_sync(&call(7), || {
            current()
                .map(|c| c.derived_key("stripe"))
                .unwrap_or_default()
        })
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let outcomes = [derive(&a), derive(&b), derive(&plain), derive(&nested)];
    let keys: Vec<&String> = outcomes.iter().map(|o| &o.value).collect();
    assert!(outcomes.iter().all(|o| !o.is_replayed()), "four executions");
    assert!(keys.iter().all(|k| k.len() == 32), "{keys:?}");
    for i in 0..keys.len() {
        for j in i + 1..keys.len() {
            assert_ne!(
                keys[i], keys[j],
                "namespaces {i} and {j} share a derived key"
            );
        }
    }
    // Stable within a namespace: another manager over the same namespace derives the same key.
    let again = IdempotencyManager::new(ns("tenant-a"));
    let o = again
        .execute_sync(&call(8), || current().map(|c| c.derived_key("stripe")))
        .unwrap_or_else(|e| panic!("{e}"));
    let first = a
        .execute_sync(&call(8), || current().map(|c| c.derived_key("stripe")))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(first.is_replayed(), "the same namespace and key replays");
    assert_eq!(o.value, first.value);
}

/// A store whose `renew` panics (as one needing the caller's tokio runtime does on the
/// renewal threads); every other method is the memory store's.
#[derive(Debug, Clone)]
struct PanickingRenew(MemoryStorage);

impl Storage for PanickingRenew {
    async fn try_claim(&self, key: &IdempotencyKey, req: &ClaimRequest) -> Result<Claim> {
        self.0.try_claim(key, req).await
    }
    async fn complete(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        value: &[u8],
        ttl: Duration,
    ) -> Result<Record> {
        self.0.complete(key, owner, value, ttl).await
    }
    async fn fail(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        error: &RecordError,
        ttl: Duration,
    ) -> Result<Record> {
        self.0.fail(key, owner, error, ttl).await
    }
    async fn release(&self, key: &IdempotencyKey, owner: &Owner) -> Result<bool> {
        self.0.release(key, owner).await
    }
    async fn renew(
        &self,
        _key: &IdempotencyKey,
        _owner: &Owner,
        _lease: Duration,
    ) -> Result<Timestamp> {
        panic!("this store's renew needs a runtime the renewal thread does not have")
    }
    async fn get(&self, key: &IdempotencyKey) -> Result<Option<Observed>> {
        self.0.get(key).await
    }
    async fn delete(&self, key: &IdempotencyKey) -> Result<bool> {
        self.0.delete(key).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_14_a_panicking_renewal_tells_the_body_its_lease_is_lost() {
    let manager = IdempotencyManager::builder(PanickingRenew(MemoryStorage::new()))
        .pending_timeout(Duration::from_millis(90))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let outcome = manager
        .execute(&call(1), || async {
            let me = current().unwrap_or_else(|| panic!("inside a call"));
            // The first renewal is due after a third of the lease; the bound only turns a
            // regression (renewals stopping silently) into a failure instead of a hang.
            let told = tokio::time::timeout(Duration::from_secs(10), me.lease_lost())
                .await
                .is_ok();
            (told, me.is_lease_lost())
        })
        .await;
    // Whatever the completion's fate (the store itself was never taken over), the body knew.
    let value = match outcome {
        Ok(o) => o.value,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(value, (true, true), "the body learned its lease was lost");
}
