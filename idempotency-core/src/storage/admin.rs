//! The operator's side of a store: [`StorageAdmin`], with [`Listed`] and [`Page`].

use std::future::Future;

use super::{Observed, Storage};
use crate::error::Result;

/// One entry of a [`StorageAdmin::list`] page.
#[derive(Debug)]
pub enum Listed {
    /// A readable record (expired ones included until purged), with the store's time.
    Record(Observed),
    /// An entry that could not be read: corrupt bytes or a foreign format version.
    Unreadable {
        /// Where it lives in the store (a file path, a Redis key, a PostgreSQL key in hex),
        /// for [`StorageAdmin::remove_unreadable`].
        location: String,
        /// Why it could not be read (`CorruptRecord` or `IncompatibleRecord`).
        error: crate::error::Error,
    },
}

/// A page of [`StorageAdmin::list`].
#[derive(Debug, Default)]
pub struct Page {
    /// The entries of this page, in no particular order.
    pub items: Vec<Listed>,
    /// The cursor of the next page, or `None` when this was the last one.
    pub cursor: Option<String>,
}

/// The operator's side of a store, on top of its state transitions ([`Storage`]): walking every
/// record, removing entries that cannot be read, and purging expired records.
///
/// The manager never calls these: a store that implements only [`Storage`] serves every
/// idempotent call. They serve the `idempotency` CLI (`list`, `stats`, `doctor --fix`,
/// `purge-expired`) and purge jobs, which hold the store itself (every store in this workspace
/// is `Clone`, clones sharing their records) or an `Arc<dyn DynStorageAdmin>`
/// ([`DynStorageAdmin`](crate::DynStorageAdmin), the object-safe twin). The memory, file, Redis
/// and PostgreSQL stores implement it, and so does [`Prefixed`](crate::Prefixed) over any store
/// that does.
///
/// Times are the store's clock, as in [`Storage`].
pub trait StorageAdmin: Storage {
    /// Lists the store's entries a page at a time: start with `cursor = None`, then pass the
    /// returned cursor until it is `None`. `limit` is a hint for the page size (a page may
    /// hold fewer entries, none at all, or more, with a cursor still to follow). Unreadable
    /// entries are listed as [`Listed::Unreadable`] rather than failing the page. Not atomic
    /// across pages: entries written meanwhile may or may not appear.
    ///
    /// # Errors
    /// Store errors; [`Error::Config`](crate::Error::Config) for a cursor this store did not
    /// hand out, or from a store that cannot list at all (a Redis Cluster).
    fn list<'a>(
        &'a self,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page>> + Send + 'a;

    /// Removes an unreadable entry found by [`list`](Self::list), by its location. Returns
    /// whether something was removed. Readable records are never removed this way (use
    /// [`Storage::delete`]): the entry is re-read, and left alone when it reads (or is gone).
    ///
    /// # Errors
    /// Store errors; [`Error::Config`](crate::Error::Config) from a store that checks a
    /// location's shape (the file and Redis stores), for one that is not among its entries.
    fn remove_unreadable<'a>(
        &'a self,
        location: &'a str,
    ) -> impl Future<Output = Result<bool>> + Send + 'a;

    /// Removes records that are expired at the moment of removal, and nothing else: a record
    /// re-claimed between the scan and the removal survives (scenario 30). Returns how many
    /// were removed. Stores with native expiry (Redis) may return 0.
    ///
    /// # Errors
    /// Store errors.
    fn purge_expired(&self) -> impl Future<Output = Result<u64>> + Send + '_;
}
