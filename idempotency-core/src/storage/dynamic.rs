//! The object-safe twins of the store traits: [`DynStorage`] for [`Storage`] and
//! [`DynStorageAdmin`] for [`StorageAdmin`], each implemented for every implementation of its
//! twin, with methods returning [`BoxFuture`]s (after sqlx's `AnyConnectionBackend`).

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::{Claim, ClaimRequest, Observed, Page, Storage, StorageAdmin};
use crate::error::Result;
use crate::key::IdempotencyKey;
use crate::record::{Owner, Record, RecordError, Timestamp};

/// A boxed, `Send` future, as returned by [`DynStorage`] and [`DynStorageAdmin`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe form of [`Storage`], implemented for every `Storage`; methods return boxed
/// futures and mean what [`Storage`]'s do. The manager holds its store as
/// `Arc<dyn DynStorage>`.
#[allow(missing_docs)]
pub trait DynStorage: Send + Sync + Debug + 'static {
    fn try_claim<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        req: &'a ClaimRequest,
    ) -> BoxFuture<'a, Result<Claim>>;
    fn complete<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a Owner,
        result: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Record>>;
    fn fail<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a Owner,
        error: &'a RecordError,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Record>>;
    fn release<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a Owner,
    ) -> BoxFuture<'a, Result<bool>>;
    fn renew<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a Owner,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Timestamp>>;
    fn get<'a>(&'a self, key: &'a IdempotencyKey) -> BoxFuture<'a, Result<Option<Observed>>>;
    fn delete<'a>(&'a self, key: &'a IdempotencyKey) -> BoxFuture<'a, Result<bool>>;
    fn exists<'a>(&'a self, key: &'a IdempotencyKey) -> BoxFuture<'a, Result<bool>>;
    fn namespace(&self, out: &mut String);
    fn peek_finished(&self, key: &IdempotencyKey) -> Option<Observed> {
        let _ = key;
        None
    }
}

impl<S: Storage> DynStorage for S {
    fn try_claim<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        req: &'a ClaimRequest,
    ) -> BoxFuture<'a, Result<Claim>> {
        Box::pin(Storage::try_claim(self, key, req))
    }
    fn complete<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a Owner,
        result: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Record>> {
        Box::pin(Storage::complete(self, key, owner, result, ttl))
    }
    fn fail<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a Owner,
        error: &'a RecordError,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Record>> {
        Box::pin(Storage::fail(self, key, owner, error, ttl))
    }
    fn release<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a Owner,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(Storage::release(self, key, owner))
    }
    fn renew<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a Owner,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Timestamp>> {
        Box::pin(Storage::renew(self, key, owner, lease))
    }
    fn get<'a>(&'a self, key: &'a IdempotencyKey) -> BoxFuture<'a, Result<Option<Observed>>> {
        Box::pin(Storage::get(self, key))
    }
    fn delete<'a>(&'a self, key: &'a IdempotencyKey) -> BoxFuture<'a, Result<bool>> {
        Box::pin(Storage::delete(self, key))
    }
    fn exists<'a>(&'a self, key: &'a IdempotencyKey) -> BoxFuture<'a, Result<bool>> {
        Box::pin(Storage::exists(self, key))
    }
    fn namespace(&self, out: &mut String) {
        Storage::namespace(self, out);
    }
    fn peek_finished(&self, key: &IdempotencyKey) -> Option<Observed> {
        Storage::peek_finished(self, key)
    }
}

/// The object-safe form of [`StorageAdmin`], implemented for every `StorageAdmin`; methods
/// return boxed futures and mean what [`StorageAdmin`]'s do. Its [`DynStorage`] methods reach
/// the same store, so an `Arc<dyn DynStorageAdmin>` (what the `idempotency` CLI opens) also
/// reads and deletes records.
#[allow(missing_docs)]
pub trait DynStorageAdmin: DynStorage {
    fn list<'a>(&'a self, cursor: Option<&'a str>, limit: usize) -> BoxFuture<'a, Result<Page>>;
    fn remove_unreadable<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Result<bool>>;
    fn purge_expired(&self) -> BoxFuture<'_, Result<u64>>;
}

impl<S: StorageAdmin> DynStorageAdmin for S {
    fn list<'a>(&'a self, cursor: Option<&'a str>, limit: usize) -> BoxFuture<'a, Result<Page>> {
        Box::pin(StorageAdmin::list(self, cursor, limit))
    }
    fn remove_unreadable<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(StorageAdmin::remove_unreadable(self, location))
    }
    fn purge_expired(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(StorageAdmin::purge_expired(self))
    }
}
