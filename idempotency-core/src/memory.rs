//! `MemoryStorage`: records in a process-local map.

use std::collections::hash_map::{Entry, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::key::IdempotencyKey;
use crate::record::{Clock, Owner, Record, RecordError, RecordStatus, SystemClock, Timestamp};
use crate::storage::{
    apply_finish, decide_claim, Claim, ClaimDecision, ClaimRequest, Finish, Listed, Observed, Page,
    Storage, StorageAdmin,
};

/// A store that keeps records in memory, for tests and single-process services.
///
/// Every operation runs under one mutex, so each state transition is atomic. Nothing survives
/// the process. Clones share the same records. Time comes from the store's [`Clock`] (the
/// system clock unless [`with_clock`](Self::with_clock) injects another).
#[derive(Debug, Clone)]
pub struct MemoryStorage {
    records: Arc<Mutex<Map>>,
    clock: Arc<dyn Clock>,
}

/// The records by key. Hashed with foldhash, seeded at random per store: a key's hash part is
/// a SHA-256 output its caller cannot steer, and the seed hides the buckets besides; SipHash's
/// collision resistance would cost more than the rest of a lookup.
type Map = HashMap<IdempotencyKey, Record, foldhash::fast::RandomState>;

impl Default for MemoryStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStorage {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty store on `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        MemoryStorage {
            records: Arc::new(Mutex::new(Map::default())),
            clock,
        }
    }

    /// How many records are held (expired ones included until purged).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, Map> {
        // A panic while holding the lock cannot leave a record half-written (every write is a
        // single insert), so a poisoned map is still consistent.
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn finish(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        finish: Finish<'_>,
        ttl: Duration,
    ) -> Result<Record> {
        let now = self.clock.now();
        let mut map = self.lock();
        // No record: refused, as `apply_finish(None, ..)` answers. A `Pending` record's copy
        // allocates nothing (inline key, empty result).
        let Some(slot) = map.get_mut(key) else {
            return Err(Error::LeaseLost { key: key.clone() });
        };
        match apply_finish(Some(slot.clone()), owner, finish, ttl, now) {
            Some(rec) => {
                *slot = rec.clone();
                Ok(rec)
            }
            None => Err(Error::LeaseLost { key: key.clone() }),
        }
    }
}

impl Storage for MemoryStorage {
    /// The record of `key` when it is `Success` or `Failed` and live on the store's clock: what
    /// a claim would answer, read under the same lock.
    fn peek_finished(&self, key: &IdempotencyKey) -> Option<Observed> {
        let map = self.lock();
        let record = map.get(key)?;
        if record.status == RecordStatus::Pending {
            return None;
        }
        // Read only for a finished record: an absent key (a first call) costs one lookup.
        let now = self.clock.now();
        match record.status_at(now) {
            RecordStatus::Success | RecordStatus::Failed => Some(Observed {
                record: record.clone(),
                now,
            }),
            RecordStatus::Pending | RecordStatus::Expired => None,
        }
    }

    async fn try_claim(&self, key: &IdempotencyKey, req: &ClaimRequest) -> Result<Claim> {
        let now = self.clock.now();
        let mut map = self.lock();
        // One lookup for the decision and the write.
        let entry = map.entry(key.clone());
        let current = match &entry {
            Entry::Occupied(e) => Some(e.get().clone()),
            Entry::Vacant(_) => None,
        };
        match decide_claim(key, current, req, now) {
            ClaimDecision::Write(rec, claim) => {
                entry.insert_entry(rec);
                Ok(claim)
            }
            ClaimDecision::Keep(claim) => Ok(claim),
        }
    }

    async fn complete(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        result: &[u8],
        ttl: Duration,
    ) -> Result<Record> {
        self.finish(key, owner, Finish::Success(result), ttl)
    }

    async fn fail(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        error: &RecordError,
        ttl: Duration,
    ) -> Result<Record> {
        self.finish(key, owner, Finish::Failed(error), ttl)
    }

    async fn release(&self, key: &IdempotencyKey, owner: &Owner) -> Result<bool> {
        let mut map = self.lock();
        let mine = map
            .get(key)
            .is_some_and(|r| r.owner == *owner && r.status == RecordStatus::Pending);
        if mine {
            map.remove(key);
        }
        Ok(mine)
    }

    async fn renew(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        lease: Duration,
    ) -> Result<Timestamp> {
        let now = self.clock.now();
        let mut map = self.lock();
        match map.get_mut(key) {
            Some(r) if r.owner == *owner && r.status == RecordStatus::Pending => {
                let until = now.saturating_add(lease);
                r.expires_at = until;
                r.lease_until = Some(until);
                Ok(until)
            }
            _ => Err(Error::LeaseLost { key: key.clone() }),
        }
    }

    async fn get(&self, key: &IdempotencyKey) -> Result<Option<Observed>> {
        let now = self.clock.now();
        Ok(self.lock().get(key).map(|r| Observed {
            record: r.clone(),
            now,
        }))
    }

    async fn delete(&self, key: &IdempotencyKey) -> Result<bool> {
        Ok(self.lock().remove(key).is_some())
    }
}

impl StorageAdmin for MemoryStorage {
    async fn list(&self, cursor: Option<&str>, limit: usize) -> Result<Page> {
        // Pages in key order; the cursor is the last key of the previous page.
        let now = self.clock.now();
        let map = self.lock();
        let mut keys: Vec<&IdempotencyKey> = map
            .keys()
            .filter(|k| cursor.is_none_or(|c| k.as_str() > c))
            .collect();
        keys.sort_unstable();
        let limit = limit.max(1);
        let more = keys.len() > limit;
        keys.truncate(limit);
        let next = if more {
            keys.last().map(|k| k.as_str().to_owned())
        } else {
            None
        };
        let items = keys
            .into_iter()
            .filter_map(|k| map.get(k))
            .map(|r| {
                Listed::Record(Observed {
                    record: r.clone(),
                    now,
                })
            })
            .collect();
        Ok(Page {
            items,
            cursor: next,
        })
    }

    async fn remove_unreadable(&self, _location: &str) -> Result<bool> {
        // Records are held decoded: nothing here is ever unreadable.
        Ok(false)
    }

    async fn purge_expired(&self) -> Result<u64> {
        let now = self.clock.now();
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, r| !r.is_expired_at(now));
        Ok((before - map.len()) as u64)
    }
}
