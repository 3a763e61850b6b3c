//! Leases and fencing, at the store's level and through the manager: scenarios 5 (lost replies,
//! transitions re-applied by their owner), 10 (a crashed holder), 12 and 13 (stale holders) and
//! 22 (clock steps).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{
    call, claim_fresh, kind, manager_with, must, Harness, LostReplyStorage, PayError, Transition,
    LEASE,
};
use crate::{
    Begin, Claim, ClaimRequest, DynStorage, ErrorKind, Fingerprint, IdempotencyKey,
    IdempotencyManager, Owner, RecordStatus, Result,
};

/// Scenario 5, after the claim: a completion (and a stored failure) applied by the store whose
/// reply is lost is retried by the manager, and the retry returns the caller's own value, never
/// `LeaseLost` (no other holder ever existed); the record holds that value. A renew or release
/// whose reply is lost succeeds when the caller retries it.
pub async fn scenario_5_lost_transition_reply_is_resolved<H: Harness>(h: &H) {
    let lossy = LostReplyStorage::new(h.store());
    let m = match IdempotencyManager::builder_dyn(Arc::new(lossy.clone()))
        .default_ttl(Duration::from_secs(3600))
        .pending_timeout(Duration::from_secs(300))
        .build()
    {
        Ok(m) => m,
        Err(e) => panic!("test manager configuration: {e}"),
    };

    // complete
    let count = AtomicUsize::new(0);
    let c = call("kit::s5-complete", &"job");
    lossy.lose_next(Transition::Complete);
    let o = m
        .execute(&c, || async {
            count.fetch_add(1, Ordering::SeqCst);
            "mine".to_string()
        })
        .await;
    assert_eq!(
        lossy.lost(),
        1,
        "scenario 5: the completion's reply was lost"
    );
    let o = o.unwrap_or_else(|e| panic!("scenario 5: the retried completion answered {e}"));
    assert_eq!(o.value, "mine");
    assert!(!o.is_replayed());
    let obs = must(m.status(&c.key).await).unwrap_or_else(|| panic!("scenario 5: no record"));
    assert_eq!(obs.status(), RecordStatus::Success);
    assert_eq!(obs.record.owner.execution_id, o.provenance.execution_id);
    assert_eq!(obs.record.owner.fencing_token, 1);
    assert_eq!(
        must(IdempotencyManager::decode_value::<String>(&obs)),
        "mine"
    );
    let again = must(
        m.execute(&c, || async {
            count.fetch_add(1, Ordering::SeqCst);
            "other".to_string()
        })
        .await,
    );
    assert!(again.is_replayed());
    assert_eq!(
        again.value, "mine",
        "scenario 5: the caller's value is stored"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1, "scenario 5: executions");

    // fail (a permanent error, stored)
    let count = AtomicUsize::new(0);
    let c = call("kit::s5-fail", &"card");
    let declined = || PayError::Declined("insufficient funds".into());
    for round in 0..2 {
        if round == 0 {
            lossy.lose_next(Transition::Fail);
        }
        let o = m
            .try_execute_with(
                &c,
                || async {
                    count.fetch_add(1, Ordering::SeqCst);
                    Err::<u32, _>(declined())
                },
                |e| matches!(e, PayError::Timeout),
            )
            .await
            .unwrap_or_else(|e| panic!("scenario 5: the retried fail answered {e}"));
        assert_eq!(o.value, Err(declined()));
        assert_eq!(o.is_replayed(), round > 0);
    }
    assert_eq!(lossy.lost(), 2, "scenario 5: the fail's reply was lost");
    assert_eq!(count.load(Ordering::SeqCst), 1, "scenario 5: executions");
    let obs = must(m.status(&c.key).await).unwrap_or_else(|| panic!("scenario 5: no record"));
    assert_eq!(obs.status(), RecordStatus::Failed);

    // renew, then release, each retried by the caller after a lost reply
    let lossy_store: Arc<dyn DynStorage> = Arc::new(lossy.clone());
    let store = h.store();
    let k = must(IdempotencyKey::derive("kit::s5-lease", 1, &"job")).key;
    let long = Duration::from_secs(30);
    let owner = claim_fresh(&*store, &k, long).await;
    lossy.lose_next(Transition::Renew);
    assert_eq!(
        kind(lossy_store.renew(&k, &owner, long).await),
        ErrorKind::StoreUnavailable
    );
    let until = lossy_store
        .renew(&k, &owner, long)
        .await
        .unwrap_or_else(|e| panic!("scenario 5: the retried renew answered {e}"));
    let obs = must(store.get(&k).await).unwrap_or_else(|| panic!("scenario 5: no record"));
    assert_eq!(obs.status(), RecordStatus::Pending);
    assert_eq!(obs.record.owner, owner);
    assert_eq!(obs.record.lease_until, Some(until));
    lossy.lose_next(Transition::Release);
    assert_eq!(
        kind(lossy_store.release(&k, &owner).await),
        ErrorKind::StoreUnavailable
    );
    must(lossy_store.release(&k, &owner).await);
    assert_eq!(lossy.lost(), 4);
    assert!(
        must(store.get(&k).await).is_none(),
        "scenario 5: the claim is released"
    );
    let next = claim_fresh(&*store, &k, long).await;
    assert_ne!(next.execution_id, owner.execution_id);
}

/// Scenario 5, as a store contract: each fenced transition applied twice by the same owner
/// (execution id and fencing token) succeeds both times and leaves the state of the first;
/// fencing is untouched: another execution id, an older token of the same execution id, or
/// the same owner with other bytes or the other status is refused, whatever bytes it carries.
pub async fn scenario_5_transitions_reapplied_by_their_owner_succeed<H: Harness>(h: &H) {
    let store = h.store();
    let long = Duration::from_secs(30);
    let ttl = Duration::from_secs(3600);
    let key = |s: &str| must(IdempotencyKey::derive("kit::s5-again", 1, &s)).key;
    let stranger = |o: Owner| Owner {
        execution_id: crate::rt::execution_id(),
        fencing_token: o.fencing_token,
    };
    let newer = |o: Owner| Owner {
        execution_id: o.execution_id,
        fencing_token: o.fencing_token + 1,
    };
    let lost = |r: Result<crate::Record>, what: &str| {
        assert_eq!(kind(r), ErrorKind::LeaseLost, "scenario 5: {what} refused");
    };

    // complete twice
    let k = key("complete");
    let a = claim_fresh(&*store, &k, long).await;
    let first = must(store.complete(&k, &a, b"v1", ttl).await);
    let second = must(store.complete(&k, &a, b"v1", ttl).await);
    assert_eq!(
        second, first,
        "scenario 5: a repeated complete answers as the first"
    );
    lost(
        store.complete(&k, &stranger(a), b"v1", ttl).await,
        "another execution id",
    );
    lost(
        store.complete(&k, &newer(a), b"v1", ttl).await,
        "another token",
    );
    lost(store.complete(&k, &a, b"v2", ttl).await, "other bytes");
    let err = crate::RecordError::Encoded(vec![1, 2]);
    lost(
        store.fail(&k, &a, &err, ttl).await,
        "a fail after the complete",
    );
    let obs = must(store.get(&k).await).unwrap_or_else(|| panic!("scenario 5: no record"));
    assert_eq!(
        obs.record, first,
        "scenario 5: the first complete's record stays"
    );

    // fail twice
    let k = key("fail");
    let a = claim_fresh(&*store, &k, long).await;
    let first = must(store.fail(&k, &a, &err, ttl).await);
    let second = must(store.fail(&k, &a, &err, ttl).await);
    assert_eq!(
        second, first,
        "scenario 5: a repeated fail answers as the first"
    );
    lost(
        store.fail(&k, &stranger(a), &err, ttl).await,
        "another execution id",
    );
    let other = crate::RecordError::NotRetained("other".into());
    lost(store.fail(&k, &a, &other, ttl).await, "another error");
    lost(
        store.complete(&k, &a, b"", ttl).await,
        "a complete after the fail",
    );
    let obs = must(store.get(&k).await).unwrap_or_else(|| panic!("scenario 5: no record"));
    assert_eq!(
        obs.record, first,
        "scenario 5: the first fail's record stays"
    );

    // renew twice
    let k = key("renew");
    let a = claim_fresh(&*store, &k, long).await;
    let u1 = must(store.renew(&k, &a, long).await);
    let u2 = must(store.renew(&k, &a, long).await);
    assert!(
        u2 >= u1,
        "scenario 5: a repeated renew never shortens the lease"
    );
    assert_eq!(
        kind(store.renew(&k, &stranger(a), long).await),
        ErrorKind::LeaseLost
    );
    let obs = must(store.get(&k).await).unwrap_or_else(|| panic!("scenario 5: no record"));
    assert_eq!(obs.record.owner, a);
    assert_eq!(obs.record.lease_until, Some(u2));

    // release twice
    let k = key("release");
    let a = claim_fresh(&*store, &k, long).await;
    assert!(!must(store.release(&k, &stranger(a)).await));
    assert!(!must(store.release(&k, &newer(a)).await));
    assert!(must(store.release(&k, &a).await));
    assert!(
        !must(store.release(&k, &a).await),
        "scenario 5: a repeated release deletes nothing"
    );
    assert!(must(store.get(&k).await).is_none());

    // the same execution id with an older token (its own claim, taken over after its lease)
    let k = key("takeover");
    let req = ClaimRequest {
        execution_id: crate::rt::execution_id(),
        fingerprint: Fingerprint([5; 32]),
        lease: LEASE,
        refresh: false,
    };
    let Claim::Acquired { owner: old, .. } = must(store.try_claim(&k, &req).await) else {
        panic!("scenario 5: could not claim")
    };
    h.advance(LEASE + Duration::from_millis(50)).await;
    let Claim::Acquired {
        owner: cur,
        takeover,
        ..
    } = must(store.try_claim(&k, &req).await)
    else {
        panic!("scenario 5: could not take over")
    };
    assert!(takeover);
    assert_eq!(cur.execution_id, old.execution_id);
    assert!(cur.fencing_token > old.fencing_token);
    lost(store.complete(&k, &old, b"v", ttl).await, "the older token");
    assert_eq!(
        kind(store.renew(&k, &old, long).await),
        ErrorKind::LeaseLost
    );
    assert!(!must(store.release(&k, &old).await));
    let done = must(store.complete(&k, &cur, b"v", ttl).await);
    lost(
        store.complete(&k, &old, b"v", ttl).await,
        "the older token with identical bytes",
    );
    lost(
        store.fail(&k, &old, &err, ttl).await,
        "the older token's fail",
    );
    let obs = must(store.get(&k).await).unwrap_or_else(|| panic!("scenario 5: no record"));
    assert_eq!(obs.record, done);
}

/// Scenario 10: a holder that vanished (crash) blocks others until its lease ends; then the
/// first caller takes over with fencing token 2 and its result is the one stored.
pub async fn scenario_10_crash_while_pending<H: Harness>(h: &H) {
    let m = manager_with(h, |b| b.pending_timeout(LEASE));
    let c = call("kit::s10", &"job");
    let lease = match must(m.begin_operation(&c).await) {
        Begin::Acquired(l) => l,
        Begin::Existing(o) => panic!("scenario 10: fresh key answered {o:?}"),
    };
    assert_eq!(lease.owner.fencing_token, 1);
    drop(lease); // the holder "crashes": it never finishes.
    assert_eq!(
        kind(m.execute(&c, || async { 1_u8 }).await),
        ErrorKind::InProgress
    );
    h.advance(LEASE + Duration::from_millis(50)).await;
    let count = AtomicUsize::new(0);
    let o = must(
        m.execute(&c, || async {
            count.fetch_add(1, Ordering::SeqCst);
            2_u8
        })
        .await,
    );
    assert_eq!(o.provenance.fencing_token, 2, "scenario 10: fence 1 -> 2");
    let o = must(m.execute(&c, || async { 3_u8 }).await);
    assert!(
        o.is_replayed() && o.value == 2,
        "scenario 10: the takeover's result is stored"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

/// Scenario 12: a stale holder (fence 1) finishing after a takeover (fence 2) is refused; the
/// newer result stays.
pub async fn scenario_12_stale_holder_is_fenced<H: Harness>(h: &H) {
    let m = manager_with(h, |b| b.pending_timeout(LEASE));
    let c = call("kit::s12", &"job");
    let Begin::Acquired(a) = must(m.begin_operation(&c).await) else {
        panic!("scenario 12: A could not claim")
    };
    h.advance(LEASE + Duration::from_millis(50)).await;
    let b = must(m.execute(&c, || async { "vB".to_string() }).await);
    assert_eq!(b.provenance.fencing_token, 2);
    let late = m.complete_operation(&a, &"vA".to_string()).await;
    assert_eq!(
        kind(late),
        ErrorKind::LeaseLost,
        "scenario 12: A's write refused"
    );
    let late = m.fail_operation(&a, &"err".to_string()).await;
    assert_eq!(
        kind(late),
        ErrorKind::LeaseLost,
        "scenario 12: A's fail refused"
    );
    // Fencing compares the holder, not the bytes: B's exact value from A is refused too.
    let late = m.complete_operation(&a, &"vB".to_string()).await;
    assert_eq!(
        kind(late),
        ErrorKind::LeaseLost,
        "scenario 12: A's write of B's value refused"
    );
    let o = must(m.execute(&c, || async { "vC".to_string() }).await);
    assert_eq!(o.value, "vB", "scenario 12: the record still holds vB");

    // The same while the newer holder is still working (its record `Pending`): a store whose
    // finish forgot the fence would let the stale holder finish the newer holder's claim.
    let c = call("kit::s12-pending", &"job");
    let Begin::Acquired(mut a) = must(m.begin_operation(&c).await) else {
        panic!("scenario 12: A could not claim")
    };
    h.advance(LEASE + Duration::from_millis(50)).await;
    let Begin::Acquired(b) = must(m.begin_operation(&c).await) else {
        panic!("scenario 12: B could not take over")
    };
    assert_eq!(b.owner.fencing_token, 2);
    for (what, late) in [
        ("write", m.complete_operation(&a, &"vA".to_string()).await),
        ("fail", m.fail_operation(&a, &"err".to_string()).await),
    ] {
        assert_eq!(
            kind(late),
            ErrorKind::LeaseLost,
            "scenario 12: A's {what} refused while B holds the key"
        );
    }
    assert_eq!(
        kind(m.renew_operation(&mut a, LEASE).await),
        ErrorKind::LeaseLost,
        "scenario 12: A's renewal refused while B holds the key"
    );
    let obs =
        must(m.status(&c.key).await).unwrap_or_else(|| panic!("scenario 12: B's record gone"));
    assert_eq!(
        obs.status(),
        RecordStatus::Pending,
        "scenario 12: B still pending"
    );
    assert_eq!(obs.record.owner, b.owner, "scenario 12: B still the holder");
    must(m.complete_operation(&b, &"vB".to_string()).await);
    let o = must(m.execute(&c, || async { "vC".to_string() }).await);
    assert_eq!(o.value, "vB", "scenario 12: B's value is the record's");
}

/// Scenario 13: a stale holder's release deletes nothing; the newer holder's record survives.
pub async fn scenario_13_stale_holder_release_is_noop<H: Harness>(h: &H) {
    let m = manager_with(h, |b| b.pending_timeout(LEASE));
    let c = call("kit::s13", &"job");
    let Begin::Acquired(a) = must(m.begin_operation(&c).await) else {
        panic!("scenario 13: A could not claim")
    };
    h.advance(LEASE + Duration::from_millis(50)).await;
    let Begin::Acquired(b) = must(m.begin_operation(&c).await) else {
        panic!("scenario 13: B could not take over")
    };
    assert!(
        !must(m.release_operation(&a).await),
        "scenario 13: A's release is a no-op"
    );
    let obs =
        must(m.status(&c.key).await).unwrap_or_else(|| panic!("scenario 13: B's record gone"));
    assert_eq!(obs.record.owner, b.owner);
    must(m.complete_operation(&b, &1_u8).await);
    assert!(!must(m.release_operation(&a).await));
    let o = must(m.execute(&c, || async { 2_u8 }).await);
    assert_eq!(o.value, 1);
}

/// Scenario 22: leases are decided on the store's clock; a clock step past the lease lets a
/// second caller take over, but the first caller's late write is still fenced.
pub async fn scenario_22_clock_steps_are_fenced<H: Harness>(h: &H) {
    let m = manager_with(h, |b| b.pending_timeout(LEASE));
    let c = call("kit::s22", &"x");
    let Begin::Acquired(a) = must(m.begin_operation(&c).await) else {
        panic!("scenario 22: A could not claim")
    };
    if h.rewind(Duration::from_secs(600)) {
        // A store clock stepping backward never frees a live lease.
        assert_eq!(
            kind(m.execute(&c, || async { 0_u8 }).await),
            ErrorKind::InProgress
        );
        h.advance(Duration::from_secs(600)).await;
    }
    assert_eq!(
        kind(m.execute(&c, || async { 0_u8 }).await),
        ErrorKind::InProgress
    );
    h.advance(LEASE * 3).await; // the store clock jumps past the lease
    let b = must(m.execute(&c, || async { 2_u8 }).await);
    assert_eq!(b.provenance.fencing_token, 2);
    assert_eq!(
        kind(m.complete_operation(&a, &1_u8).await),
        ErrorKind::LeaseLost
    );
    assert_eq!(must(m.execute(&c, || async { 3_u8 }).await).value, 2);
}
