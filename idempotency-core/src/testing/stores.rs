//! Stores that misbehave on purpose, for the kit and for store tests: [`FlakyStorage`] (an
//! unreachable backend at claim or completion) and [`LostReplyStorage`] (a reply lost after the
//! store applied the request).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::{
    Claim, ClaimRequest, DynStorage, Error, IdempotencyKey, MemoryStorage, Observed, Owner, Page,
    Record, RecordError, Result, Storage, StorageAdmin, Timestamp,
};

/// A [`MemoryStorage`] whose claim and completion steps can be made to
/// fail like an unreachable backend ([`Error::Storage`]), for testing outage handling
/// (SEMANTICS.md scenarios 23 and 24): fail-closed, fail-open, completion retries. Clones share
/// the records and the switches.
#[derive(Debug, Clone, Default)]
pub struct FlakyStorage {
    inner: MemoryStorage,
    claim_down: Arc<AtomicBool>,
    complete_down: Arc<AtomicBool>,
    complete_calls: Arc<AtomicUsize>,
}

impl FlakyStorage {
    /// Makes claims fail (`true`) or work (`false`).
    pub fn set_claim_down(&self, down: bool) {
        self.claim_down.store(down, Ordering::SeqCst);
    }
    /// Makes completions (`complete` and `fail`) fail (`true`) or work (`false`).
    pub fn set_complete_down(&self, down: bool) {
        self.complete_down.store(down, Ordering::SeqCst);
    }
    /// How many times `complete` or `fail` was called.
    pub fn complete_calls(&self) -> usize {
        self.complete_calls.load(Ordering::SeqCst)
    }
    fn down(&self, flag: &AtomicBool, operation: &'static str) -> Result<()> {
        if flag.load(Ordering::SeqCst) {
            return Err(Error::storage(
                operation,
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "store down (test)"),
            ));
        }
        Ok(())
    }
}

impl Storage for FlakyStorage {
    async fn try_claim(&self, key: &IdempotencyKey, req: &ClaimRequest) -> Result<Claim> {
        self.down(&self.claim_down, "claim")?;
        Storage::try_claim(&self.inner, key, req).await
    }
    async fn complete(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        result: &[u8],
        ttl: Duration,
    ) -> Result<Record> {
        self.complete_calls.fetch_add(1, Ordering::SeqCst);
        self.down(&self.complete_down, "complete")?;
        Storage::complete(&self.inner, key, owner, result, ttl).await
    }
    async fn fail(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        error: &RecordError,
        ttl: Duration,
    ) -> Result<Record> {
        self.complete_calls.fetch_add(1, Ordering::SeqCst);
        self.down(&self.complete_down, "fail")?;
        Storage::fail(&self.inner, key, owner, error, ttl).await
    }
    async fn release(&self, key: &IdempotencyKey, owner: &Owner) -> Result<bool> {
        Storage::release(&self.inner, key, owner).await
    }
    async fn renew(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        lease: Duration,
    ) -> Result<Timestamp> {
        Storage::renew(&self.inner, key, owner, lease).await
    }
    async fn get(&self, key: &IdempotencyKey) -> Result<Option<Observed>> {
        Storage::get(&self.inner, key).await
    }
    async fn delete(&self, key: &IdempotencyKey) -> Result<bool> {
        Storage::delete(&self.inner, key).await
    }
}

/// The memory store's operator side, never down.
impl StorageAdmin for FlakyStorage {
    async fn list(&self, cursor: Option<&str>, limit: usize) -> Result<Page> {
        StorageAdmin::list(&self.inner, cursor, limit).await
    }
    async fn remove_unreadable(&self, location: &str) -> Result<bool> {
        StorageAdmin::remove_unreadable(&self.inner, location).await
    }
    async fn purge_expired(&self) -> Result<u64> {
        StorageAdmin::purge_expired(&self.inner).await
    }
}

/// A fenced transition of [`Storage`], for [`LostReplyStorage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// [`Storage::complete`](Storage::complete).
    Complete,
    /// [`Storage::fail`](Storage::fail).
    Fail,
    /// [`Storage::release`](Storage::release).
    Release,
    /// [`Storage::renew`](Storage::renew).
    Renew,
}

impl Transition {
    fn bit(self) -> u8 {
        match self {
            Transition::Complete => 1,
            Transition::Fail => 2,
            Transition::Release => 4,
            Transition::Renew => 8,
        }
    }
}

/// Any store, wrapped so that the reply to a chosen transition is lost once: the transition is
/// applied by the store, then the caller gets [`Error::Storage`] as from a connection dropped
/// after the request was sent (SEMANTICS.md scenario 5, store-independent). Clones share the
/// switches.
#[derive(Debug, Clone)]
pub struct LostReplyStorage {
    inner: Arc<dyn DynStorage>,
    armed: Arc<AtomicU8>,
    lost: Arc<AtomicUsize>,
}

impl LostReplyStorage {
    /// Wraps `inner`; nothing is lost until [`lose_next`](Self::lose_next).
    pub fn new(inner: Arc<dyn DynStorage>) -> Self {
        LostReplyStorage {
            inner,
            armed: Arc::default(),
            lost: Arc::default(),
        }
    }
    /// Loses the reply of the next call of `transition` (after the store has applied it).
    pub fn lose_next(&self, transition: Transition) {
        self.armed.fetch_or(transition.bit(), Ordering::SeqCst);
    }
    /// How many replies were lost so far.
    pub fn lost(&self) -> usize {
        self.lost.load(Ordering::SeqCst)
    }
    /// `reply`, or a lost-reply error when `transition` was armed (disarming it).
    fn deliver<T>(&self, transition: Transition, reply: Result<T>) -> Result<T> {
        let bit = transition.bit();
        if self.armed.fetch_and(!bit, Ordering::SeqCst) & bit == 0 {
            return reply;
        }
        self.lost.fetch_add(1, Ordering::SeqCst);
        Err(Error::storage(
            match transition {
                Transition::Complete => "complete",
                Transition::Fail => "fail",
                Transition::Release => "release",
                Transition::Renew => "renew",
            },
            std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "the reply was lost after the store applied the request (test)",
            ),
        ))
    }
}

impl Storage for LostReplyStorage {
    fn namespace(&self, out: &mut String) {
        self.inner.namespace(out);
    }

    async fn try_claim(&self, key: &IdempotencyKey, req: &ClaimRequest) -> Result<Claim> {
        self.inner.try_claim(key, req).await
    }
    async fn complete(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        result: &[u8],
        ttl: Duration,
    ) -> Result<Record> {
        let reply = self.inner.complete(key, owner, result, ttl).await;
        self.deliver(Transition::Complete, reply)
    }
    async fn fail(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        error: &RecordError,
        ttl: Duration,
    ) -> Result<Record> {
        let reply = self.inner.fail(key, owner, error, ttl).await;
        self.deliver(Transition::Fail, reply)
    }
    async fn release(&self, key: &IdempotencyKey, owner: &Owner) -> Result<bool> {
        let reply = self.inner.release(key, owner).await;
        self.deliver(Transition::Release, reply)
    }
    async fn renew(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        lease: Duration,
    ) -> Result<Timestamp> {
        let reply = self.inner.renew(key, owner, lease).await;
        self.deliver(Transition::Renew, reply)
    }
    async fn get(&self, key: &IdempotencyKey) -> Result<Option<Observed>> {
        self.inner.get(key).await
    }
    async fn delete(&self, key: &IdempotencyKey) -> Result<bool> {
        self.inner.delete(key).await
    }
}
