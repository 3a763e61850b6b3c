//! The admin checks: the operator's side of a store ([`StorageAdmin`](crate::StorageAdmin)),
//! through [`AdminHarness::admin_store`]. Scenario 30 (purge removes only what is expired) and
//! scenario 26's repair path (an unreadable entry is listed and removed, a readable one never).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{claim_fresh, must, AdminHarness, LEASE};
use crate::{
    Claim, ClaimRequest, DynStorageAdmin, Fingerprint, IdempotencyKey, Listed, Observed,
    RecordError, RecordStatus,
};

/// Pages listed before a walk is declared endless.
const MAX_PAGES: usize = 10_000;

/// Every entry of `store`, walking [`list`](crate::StorageAdmin::list) with pages of `limit`:
/// the readable records by key (a key listed twice must read the same both times), and the
/// unreadable entries' locations.
async fn walk(
    store: &dyn DynStorageAdmin,
    limit: usize,
) -> (BTreeMap<IdempotencyKey, Observed>, BTreeSet<String>) {
    let (mut records, mut unreadable) = (BTreeMap::new(), BTreeSet::new());
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = must(store.list(cursor.as_deref(), limit).await);
        for item in page.items {
            match item {
                Listed::Record(o) => {
                    let key = o.record.key.clone();
                    if let Some(seen) = records.insert(key.clone(), o.clone()) {
                        assert_eq!(
                            seen.record, o.record,
                            "admin list: `{key}` listed twice with different records"
                        );
                    }
                }
                Listed::Unreadable { location, .. } => {
                    unreadable.insert(location);
                }
            }
        }
        cursor = page.cursor;
        if cursor.is_none() {
            return (records, unreadable);
        }
    }
    panic!("admin list: no last page after {MAX_PAGES} pages of {limit}")
}

fn key(op: &str, i: usize) -> IdempotencyKey {
    must(IdempotencyKey::derive(op, 1, &i)).key
}

/// Listing: 25 records (10 `Pending`, 10 `Success`, 5 `Failed`) walked in pages of 7 (and in
/// one page of 1000) come back each at least once, as stored, and nothing else does.
pub async fn admin_list_walks_every_record_once<H: AdminHarness>(h: &H) {
    let store = h.admin_store();
    let long = Duration::from_secs(3600);
    let mut expected = BTreeMap::new();
    for i in 0..25 {
        let k = key("kit::admin-list", i);
        let owner = claim_fresh(&*store, &k, long).await;
        let status = match i % 5 {
            0 | 1 => RecordStatus::Pending,
            2 | 3 => {
                must(store.complete(&k, &owner, &[i as u8], long).await);
                RecordStatus::Success
            }
            _ => {
                let err = RecordError::Encoded(vec![i as u8]);
                must(store.fail(&k, &owner, &err, long).await);
                RecordStatus::Failed
            }
        };
        expected.insert(k, (owner, status));
    }
    for limit in [7, 1000] {
        let (records, unreadable) = walk(&*store, limit).await;
        assert!(
            unreadable.is_empty(),
            "admin list: unreadable entries in a fresh store: {unreadable:?}"
        );
        let listed: BTreeSet<&IdempotencyKey> = records.keys().collect();
        let written: BTreeSet<&IdempotencyKey> = expected.keys().collect();
        assert_eq!(
            listed, written,
            "admin list (pages of {limit}): every record, and nothing else"
        );
        for (k, o) in &records {
            let (owner, status) = expected[k];
            assert_eq!(o.record.owner, owner, "admin list: `{k}`'s owner");
            assert_eq!(o.status(), status, "admin list: `{k}`'s status");
            let stored = must(store.get(k).await).map(|s| s.record);
            assert_eq!(
                stored.as_ref(),
                Some(&o.record),
                "admin list: `{k}` as stored"
            );
        }
    }
}

/// Scenario 30: `purge_expired` removes the records that are expired when it runs and nothing
/// else: live `Success` and `Pending` records survive, and so do expired records re-claimed
/// before the purge. A store with native expiry may report 0 (its expired records are gone
/// already); any other store reports exactly what it removed, and a second purge removes
/// nothing.
pub async fn scenario_30_purge_removes_only_expired_records<H: AdminHarness>(h: &H) {
    let store = h.admin_store();
    let long = Duration::from_secs(3600);
    let (mut expiring, mut live) = (Vec::new(), Vec::new());
    for i in 0..12 {
        let k = key("kit::s30", i);
        // Even: expires after LEASE; odd: lives for an hour. Every third: left `Pending`.
        let span = if i % 2 == 0 { LEASE } else { long };
        let owner = claim_fresh(&*store, &k, span).await;
        if i % 3 != 0 {
            must(store.complete(&k, &owner, b"v", span).await);
        }
        if i % 2 == 0 {
            expiring.push(k);
        } else {
            live.push(k);
        }
    }
    h.advance(LEASE + Duration::from_millis(100)).await;
    // Two expired records are claimed again before the purge: they are live again.
    let mut reclaimed = Vec::new();
    for k in expiring.drain(..2) {
        let req = ClaimRequest {
            execution_id: crate::rt::execution_id(),
            fingerprint: Fingerprint([5; 32]),
            lease: long,
            refresh: false,
        };
        match must(store.try_claim(&k, &req).await) {
            Claim::Acquired { owner, .. } => reclaimed.push((k, owner)),
            other => panic!("scenario 30: an expired record could not be claimed: {other:?}"),
        }
    }
    let removed = must(store.purge_expired().await);
    assert!(
        removed == expiring.len() as u64 || removed == 0,
        "scenario 30: purge removed {removed} records; {} were expired",
        expiring.len()
    );
    for k in &expiring {
        assert!(
            must(store.get(k).await).is_none(),
            "scenario 30: expired `{k}` is gone after the purge"
        );
    }
    for k in &live {
        let o = must(store.get(k).await)
            .unwrap_or_else(|| panic!("scenario 30: live `{k}` was purged"));
        assert_ne!(o.status(), RecordStatus::Expired);
    }
    for (k, owner) in &reclaimed {
        let o = must(store.get(k).await)
            .unwrap_or_else(|| panic!("scenario 30: re-claimed `{k}` was purged"));
        assert_eq!(
            (o.status(), o.record.owner),
            (RecordStatus::Pending, *owner)
        );
    }
    let (records, _) = walk(&*store, 1000).await;
    let expected: BTreeSet<&IdempotencyKey> = live
        .iter()
        .chain(reclaimed.iter().map(|(k, _)| k))
        .collect();
    assert_eq!(
        records.keys().collect::<BTreeSet<_>>(),
        expected,
        "scenario 30: the listing after the purge"
    );
    assert_eq!(
        must(store.purge_expired().await),
        0,
        "scenario 30: a second purge"
    );
}

/// Scenario 26's repair path: an unreadable entry is listed as such (with no readable record
/// for its key) and `remove_unreadable` removes it, once; an entry repaired after it was listed
/// is re-read and left alone; readable records are untouched. Needs
/// [`Harness::write_raw`](super::Harness::write_raw); without it (a store holding decoded
/// records), only checks that nothing is listed as unreadable.
pub async fn admin_remove_unreadable_removes_only_unreadable_entries<H: AdminHarness>(h: &H) {
    let store = h.admin_store();
    let long = Duration::from_secs(3600);
    let keys: Vec<IdempotencyKey> = (0..3).map(|i| key("kit::admin-unreadable", i)).collect();
    for k in &keys {
        let owner = claim_fresh(&*store, k, long).await;
        must(store.complete(k, &owner, b"good", long).await);
    }
    let (good, corrupt, repaired) = (&keys[0], &keys[1], &keys[2]);
    if !h.write_raw(corrupt, b"garbage that is not a record").await {
        let (records, unreadable) = walk(&*store, 1000).await;
        assert!(unreadable.is_empty());
        assert_eq!(records.len(), keys.len());
        return;
    }
    assert!(h.write_raw(repaired, b"IDR").await);
    let (records, unreadable) = walk(&*store, 1000).await;
    assert_eq!(
        records.keys().collect::<Vec<_>>(),
        vec![good],
        "admin: only the good record reads"
    );
    assert_eq!(
        unreadable.len(),
        2,
        "admin: both corrupt entries are listed as unreadable"
    );
    // Repair one (delete, then write it anew) before removing the unreadable entries.
    assert!(must(store.delete(repaired).await));
    let owner = claim_fresh(&*store, repaired, long).await;
    let fixed = must(store.complete(repaired, &owner, b"fixed", long).await);
    let mut removed = 0;
    for location in &unreadable {
        if must(store.remove_unreadable(location).await) {
            removed += 1;
        }
        assert!(
            !must(store.remove_unreadable(location).await),
            "admin: a second removal of `{location}` removes nothing"
        );
    }
    assert_eq!(
        removed, 1,
        "admin: only the entry still unreadable is removed"
    );
    assert!(must(store.get(corrupt).await).is_none());
    let o = must(store.get(repaired).await).unwrap_or_else(|| panic!("admin: repaired removed"));
    assert_eq!(o.record, fixed);
    let o = must(store.get(good).await).unwrap_or_else(|| panic!("admin: good record removed"));
    assert_eq!(o.record.result, b"good");
    let (records, unreadable) = walk(&*store, 1000).await;
    assert!(unreadable.is_empty(), "admin: {unreadable:?} still listed");
    assert_eq!(records.len(), 2);
}
