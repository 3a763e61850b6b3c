//! [`Prefixed`]: a store wrapper that puts every idempotency key of its callers in a namespace
//! of the store beneath, in the manner of object_store's `PrefixStore`.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::key::IdempotencyKey;
use crate::record::{Owner, Record, RecordError, Timestamp};
use crate::storage::{Claim, ClaimRequest, Listed, Observed, Page, Storage, StorageAdmin};

/// A store wrapper that applies a constant key prefix to every idempotency key its callers use,
/// so that several services, tenants or environments share one store without ever sharing a
/// record (after object_store's `PrefixStore`, which does the same for object paths).
///
/// ```
/// # use idempotency_core as idempotency;
/// use idempotency::{IdempotencyManager, MemoryStorage, Prefixed};
///
/// let shared = MemoryStorage::new();
/// let billing = IdempotencyManager::new(Prefixed::new(shared.clone(), "billing")?);
/// let shipping = IdempotencyManager::new(Prefixed::new(shared, "shipping")?);
/// # let _ = (billing, shipping);
/// # Ok::<(), idempotency::Error>(())
/// ```
///
/// # Shape
///
/// The key `billing::charge:0f1e…` is stored as `<prefix>/billing::charge:0f1e…`: the prefix,
/// the delimiter [`DELIMITER`](Self::DELIMITER) (`/`), then the key. A prefix never contains the
/// delimiter (nor a control character, nor is it empty), so the first `/` of a stored key ends
/// its prefix: two `Prefixed` stores with different prefixes over the same store never share a
/// record, whatever their keys (`a` + `bc:…` is `a/bc:…`, never `ab/c:…`). Wrappers nest like
/// path segments: `Prefixed::new(Prefixed::new(store, "eu")?, "billing")?` stores
/// `eu/billing/<key>`, which is also what `Prefixed::new(store, "eu")?` stores for a key whose
/// operation name starts with `billing/` (as below for unprefixed callers: keep operation
/// names free of `<prefix>/` where namespaces of different depths share a store).
///
/// Records and errors come back in the caller's terms: the [`Record::key`] of a returned record
/// (a claim's existing record, a finished record, a read) and the key of
/// [`Error::LeaseLost`] are the key the caller gave, without the prefix. A record whose stored
/// key is not the one asked for (a faulty store beneath) is [`Error::CorruptRecord`], never
/// answered as the caller's.
///
/// A store shared by prefixed and unprefixed callers keeps them apart too, as long as no
/// unprefixed key's operation name starts with `<prefix>/`: keys are compared as strings, and
/// the derived part of a key (the 32 hex characters) hashes the operation name, so a derived
/// key never equals a prefixed one by accident.
///
/// # Changing the prefix
///
/// The prefix is part of every stored key: records written under one prefix are not found
/// under another (or under none). After a deploy that changes it, each operation whose record is
/// still within its TTL runs at most once more, and the old records expire on their own.
/// Replacing a manager's former `key_prefix("app-a/")` with `Prefixed::new(store, "app-a")` is
/// such a change (the old prefix was not delimited).
///
/// # The operator's side
///
/// Over a store that implements [`StorageAdmin`], `Prefixed` does too:
///
/// - [`list`](StorageAdmin::list) walks the store beneath and keeps this namespace's records,
///   with their keys stripped of the prefix; the cursor is the store's own. A page may be
///   empty while a cursor still follows (the store's page held other namespaces' records), and
///   walking this namespace costs a walk of the whole store. Entries the store cannot read are
///   listed whatever their namespace, since an unreadable entry has no key to tell it by.
/// - [`remove_unreadable`](StorageAdmin::remove_unreadable) passes the location (as listed) to
///   the store: it removes that unreadable entry, whichever namespace it was in.
/// - [`purge_expired`](StorageAdmin::purge_expired) **acts on the whole store**: it removes
///   every expired record beneath, of every namespace (expiry is the same rule for all; a
///   namespace-only purge would need a conditional delete per record), and counts them all.
#[derive(Debug, Clone)]
pub struct Prefixed<S> {
    inner: S,
    /// The prefix followed by the delimiter.
    head: String,
}

impl<S> Prefixed<S> {
    /// What separates the prefix from the key in a stored key: `/`.
    pub const DELIMITER: char = '/';

    /// Wraps `inner`, putting every key in the namespace `prefix`.
    ///
    /// # Errors
    /// [`Error::Config`] when `prefix` is empty, contains a control character, or contains the
    /// delimiter `/` (nest two wrappers for a two-level namespace).
    pub fn new(inner: S, prefix: impl Into<String>) -> Result<Self> {
        let mut head = prefix.into();
        let refuse = |why: &str| Err(Error::Config(format!("the key prefix {head:?} {why}")));
        if head.is_empty() {
            return refuse("is empty");
        }
        if crate::key::has_control(&head) {
            return refuse("contains a control character");
        }
        if head.contains(Self::DELIMITER) {
            return refuse(
                "contains `/`, the delimiter `Prefixed` puts after it (give the prefix without \
                 it; nest two `Prefixed` stores for a two-level namespace)",
            );
        }
        head.push(Self::DELIMITER);
        Ok(Prefixed { inner, head })
    }

    /// The prefix, without the delimiter.
    pub fn prefix(&self) -> &str {
        &self.head[..self.head.len() - Self::DELIMITER.len_utf8()]
    }

    /// The store beneath.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The store beneath, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The key under which the store beneath keeps the record of `key`: `<prefix>/<key>`. For
    /// operators looking a record up in the store itself.
    pub fn stored_key(&self, key: &IdempotencyKey) -> IdempotencyKey {
        key.with_prefix(&self.head)
    }

    /// The caller's key of a stored key, or `None` when it is not in this namespace.
    fn caller_key(&self, stored: &IdempotencyKey) -> Option<IdempotencyKey> {
        stored.strip_prefix(&self.head)
    }

    /// `record` (read at `stored`) in the caller's terms: its key is `key`.
    fn own(&self, key: &IdempotencyKey, stored: &IdempotencyKey, record: Record) -> Result<Record> {
        if record.key != *stored {
            return Err(Error::CorruptRecord {
                key: stored.to_string(),
                reason: format!(
                    "the store answered with the record of another key (`{}`)",
                    record.key
                ),
            });
        }
        Ok(Record {
            key: key.clone(),
            ..record
        })
    }

    fn own_observed(
        &self,
        key: &IdempotencyKey,
        stored: &IdempotencyKey,
        o: Observed,
    ) -> Result<Observed> {
        Ok(Observed {
            record: self.own(key, stored, o.record)?,
            now: o.now,
        })
    }

    /// `e` in the caller's terms: a lost lease names the caller's key.
    fn own_error(key: &IdempotencyKey, e: Error) -> Error {
        match e {
            Error::LeaseLost { .. } => Error::LeaseLost { key: key.clone() },
            e => e,
        }
    }
}

impl<S: Storage> Storage for Prefixed<S> {
    /// The inner store's namespace, then this prefix and its delimiter.
    fn namespace(&self, out: &mut String) {
        self.inner.namespace(out);
        out.push_str(&self.head);
    }

    /// The inner store's answer at the stored key. A record that is not the stored key's is
    /// left for the claim to report (`None`).
    fn peek_finished(&self, key: &IdempotencyKey) -> Option<Observed> {
        let stored = self.stored_key(key);
        let observed = self.inner.peek_finished(&stored)?;
        self.own_observed(key, &stored, observed).ok()
    }

    async fn try_claim(&self, key: &IdempotencyKey, req: &ClaimRequest) -> Result<Claim> {
        let stored = self.stored_key(key);
        match self.inner.try_claim(&stored, req).await? {
            Claim::Existing(o) => Ok(Claim::Existing(self.own_observed(key, &stored, o)?)),
            acquired => Ok(acquired),
        }
    }

    async fn complete(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        result: &[u8],
        ttl: Duration,
    ) -> Result<Record> {
        let stored = self.stored_key(key);
        let record = self.inner.complete(&stored, owner, result, ttl).await;
        self.own(key, &stored, record.map_err(|e| Self::own_error(key, e))?)
    }

    async fn fail(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        error: &RecordError,
        ttl: Duration,
    ) -> Result<Record> {
        let stored = self.stored_key(key);
        let record = self.inner.fail(&stored, owner, error, ttl).await;
        self.own(key, &stored, record.map_err(|e| Self::own_error(key, e))?)
    }

    async fn release(&self, key: &IdempotencyKey, owner: &Owner) -> Result<bool> {
        self.inner.release(&self.stored_key(key), owner).await
    }

    async fn renew(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        lease: Duration,
    ) -> Result<Timestamp> {
        let renewed = self.inner.renew(&self.stored_key(key), owner, lease).await;
        renewed.map_err(|e| Self::own_error(key, e))
    }

    async fn get(&self, key: &IdempotencyKey) -> Result<Option<Observed>> {
        let stored = self.stored_key(key);
        match self.inner.get(&stored).await? {
            Some(o) => Ok(Some(self.own_observed(key, &stored, o)?)),
            None => Ok(None),
        }
    }

    async fn delete(&self, key: &IdempotencyKey) -> Result<bool> {
        self.inner.delete(&self.stored_key(key)).await
    }
}

/// See [the operator's side](Prefixed#the-operators-side): listing keeps this namespace,
/// removing an unreadable entry and purging act on the store beneath.
impl<S: StorageAdmin> StorageAdmin for Prefixed<S> {
    async fn list(&self, cursor: Option<&str>, limit: usize) -> Result<Page> {
        let page = self.inner.list(cursor, limit).await?;
        let items = page
            .items
            .into_iter()
            .filter_map(|item| match item {
                Listed::Record(o) => {
                    let key = self.caller_key(&o.record.key)?;
                    let record = Record { key, ..o.record };
                    Some(Listed::Record(Observed { record, now: o.now }))
                }
                unreadable @ Listed::Unreadable { .. } => Some(unreadable),
            })
            .collect();
        Ok(Page {
            items,
            cursor: page.cursor,
        })
    }

    async fn remove_unreadable(&self, location: &str) -> Result<bool> {
        self.inner.remove_unreadable(location).await
    }

    async fn purge_expired(&self) -> Result<u64> {
        self.inner.purge_expired().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> IdempotencyKey {
        IdempotencyKey::parse(s).unwrap()
    }

    #[test]
    fn stored_keys_are_delimited_so_prefixes_never_meet() {
        let hex = "0".repeat(32);
        let a = Prefixed::new((), "a").unwrap();
        let ab = Prefixed::new((), "ab").unwrap();
        let left = a.stored_key(&key(&format!("bc:{hex}")));
        let right = ab.stored_key(&key(&format!("c:{hex}")));
        assert_eq!(left.as_str(), format!("a/bc:{hex}"));
        assert_eq!(right.as_str(), format!("ab/c:{hex}"));
        assert_ne!(left, right);
        assert_eq!(a.caller_key(&right), None);
        assert_eq!(ab.caller_key(&left), None);
        assert_eq!(a.caller_key(&left), Some(key(&format!("bc:{hex}"))));
        assert_eq!(a.prefix(), "a");
    }

    #[test]
    fn a_bad_prefix_is_a_config_error() {
        for bad in ["", "a/b", "tenant/", "/", "tab\there", "new\nline", "nul\0"] {
            let e = Prefixed::new((), bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Config, "{bad:?}");
        }
        for good in ["tenant-42", "tenant'\";--", "é", "a b", "a:b"] {
            assert_eq!(Prefixed::new((), good).unwrap().prefix(), good);
        }
    }
}
