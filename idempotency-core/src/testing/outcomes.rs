//! What a call's outcome stores and replays: scenarios 6 to 9 (success, permanent and transient
//! failures, panics and cancellation), 16, 18 and 19 (key identity: fingerprints, operations,
//! tenants), 21 (retention), 26, 28 and 29 (corrupt, large and incompatible records) and 32
//! (missing keys), and [`Storage::peek_finished`](crate::Storage::peek_finished), the read
//! a replay may take instead of a claim.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    call, claim_fresh, custom_call, kind, manager, manager_with, must, Harness, LEASE, TTL,
};
use crate::{
    Call, Claim, ClaimRequest, DynStorage, Error, ErrorKind, Fingerprint, FingerprintPolicy,
    IdempotencyKey, IdempotencyManager, KeyEncoder, Outcome, RecordError, RecordStatus,
};

/// A value with every "empty" shape, to prove replays return exactly the stored value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Falsy {
    zero: u64,
    no: bool,
    empty: String,
    list: Vec<u8>,
    none: Option<u32>,
    unit: (),
}

/// Scenario 6: a repeat replays the stored value exactly, even "empty" values, and is marked.
pub async fn scenario_6_replay_after_success<H: Harness>(h: &H) {
    let m = manager(h);
    let count = AtomicUsize::new(0);
    let v = Falsy {
        zero: 0,
        no: false,
        empty: String::new(),
        list: vec![],
        none: None,
        unit: (),
    };
    let c = call("kit::s6", &"args");
    let first = must(
        m.execute(&c, || async {
            count.fetch_add(1, Ordering::SeqCst);
            v.clone()
        })
        .await,
    );
    assert!(!first.is_replayed());
    let second: Outcome<Falsy> = must(
        m.execute(&c, || async {
            count.fetch_add(1, Ordering::SeqCst);
            Falsy {
                zero: 9,
                no: true,
                empty: "changed".into(),
                list: vec![1],
                none: Some(1),
                unit: (),
            }
        })
        .await,
    );
    assert!(second.is_replayed(), "scenario 6: marked as a replay");
    assert_eq!(second.value, v, "scenario 6: the stored value");
    assert_eq!(
        second.provenance.execution_id,
        first.provenance.execution_id
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // Plain zero-sized and empty results replay too.
    for (i, c) in [call("kit::s6-unit", &0_u8)].iter().enumerate() {
        must(m.execute(c, || async {}).await);
        let o: Outcome<()> = must(
            m.execute(c, || async { panic!("replay {i} must not run") })
                .await,
        );
        assert!(o.is_replayed());
    }
    let c = call("kit::s6-none", &0_u8);
    must(m.execute(&c, || async { None::<u8> }).await);
    let o = must(m.execute(&c, || async { Some(1_u8) }).await);
    assert_eq!(o.value, None);
}

/// Error type used by the failure checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PayError {
    /// A permanent business rejection.
    Declined(String),
    /// A retryable error.
    Timeout,
}

/// Scenario 7: a permanent error is stored for the failure TTL and replayed as an equal error.
pub async fn scenario_7_permanent_failure_is_cached<H: Harness>(h: &H) {
    let m = manager(h);
    let count = AtomicUsize::new(0);
    let c = call("kit::s7", &"card");
    for round in 0..3 {
        let o = must(
            m.try_execute_with(
                &c,
                || async {
                    count.fetch_add(1, Ordering::SeqCst);
                    Err::<u32, _>(PayError::Declined("insufficient funds".into()))
                },
                |e| matches!(e, PayError::Timeout),
            )
            .await,
        );
        assert_eq!(
            o.value,
            Err(PayError::Declined("insufficient funds".into()))
        );
        assert_eq!(o.is_replayed(), round > 0);
    }
    assert_eq!(count.load(Ordering::SeqCst), 1, "scenario 7: executions");
    let obs = must(m.status(&c.key).await).unwrap_or_else(|| panic!("scenario 7: no record"));
    assert_eq!(obs.status(), RecordStatus::Failed);
    assert!(
        obs.time_to_live() <= Duration::from_secs(300),
        "failure TTL applies"
    );
}

/// Scenario 8: a transient error releases the claim; the next call runs again.
pub async fn scenario_8_transient_failure_is_not_cached<H: Harness>(h: &H) {
    let m = manager(h);
    let count = AtomicUsize::new(0);
    let c = call("kit::s8", &"card");
    let transient = |e: &PayError| matches!(e, PayError::Timeout);
    let o = must(
        m.try_execute_with(
            &c,
            || async {
                count.fetch_add(1, Ordering::SeqCst);
                Err::<u32, _>(PayError::Timeout)
            },
            transient,
        )
        .await,
    );
    assert_eq!(o.value, Err(PayError::Timeout));
    assert!(
        must(m.status(&c.key).await).is_none(),
        "scenario 8: no record left"
    );
    let o = must(
        m.try_execute_with(
            &c,
            || async {
                count.fetch_add(1, Ordering::SeqCst);
                Ok::<u32, PayError>(5)
            },
            transient,
        )
        .await,
    );
    assert_eq!(o.value, Ok(5));
    assert!(!o.is_replayed());
    assert_eq!(count.load(Ordering::SeqCst), 2, "scenario 8: executions");
}

/// Scenario 9a: a panic releases the claim and is re-raised; 9b: a dropped future leaves the
/// record `Pending` until the lease ends, then one caller takes over.
pub async fn scenario_9_panic_and_cancellation<H: Harness>(h: &H) {
    let m = manager_with(h, |b| b.pending_timeout(LEASE));
    let c = call("kit::s9a", &1_u8);
    let m2 = m.clone();
    let c2 = c.clone();
    let joined =
        std::thread::spawn(move || m2.execute_sync(&c2, || -> u8 { panic!("boom") })).join();
    assert!(joined.is_err(), "scenario 9a: the panic is re-raised");
    assert!(
        must(m.status(&c.key).await).is_none(),
        "scenario 9a: no Pending left"
    );
    let o = must(m.execute(&c, || async { 3_u8 }).await);
    assert!(!o.is_replayed());

    // 9b: drop the future while the function is inside.
    let c = call("kit::s9b", &1_u8);
    {
        // Poll until the function has been entered (the claim may take several polls on a
        // store with I/O), then drop the future, as an outer `timeout` would.
        let entered = std::sync::atomic::AtomicBool::new(false);
        let fut = m.execute(&c, || {
            entered.store(true, Ordering::SeqCst);
            std::future::pending::<u8>()
        });
        let mut fut = std::pin::pin!(fut);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        while !entered.load(Ordering::SeqCst) {
            assert!(fut.as_mut().poll(&mut cx).is_pending());
            std::thread::yield_now();
        }
    }
    let obs = must(m.status(&c.key).await).unwrap_or_else(|| panic!("scenario 9b: record gone"));
    assert_eq!(obs.status(), RecordStatus::Pending);
    assert_eq!(
        kind(m.execute(&c, || async { 1_u8 }).await),
        ErrorKind::InProgress
    );
    h.advance(LEASE + Duration::from_millis(50)).await;
    let o = must(m.execute(&c, || async { 4_u8 }).await);
    assert!(
        o.provenance.takeover && o.provenance.fencing_token == 2,
        "scenario 9b: takeover"
    );
}

/// Scenario 16: a custom key reused with different inputs, after success and while pending:
/// the reject policy refuses before the in-progress check; the replay policy replays and flags.
pub async fn scenario_16_fingerprint_mismatch<H: Harness>(h: &H) {
    let m = manager(h);
    let a = custom_call("kit::s16", "order-1", &100_u32);
    let b = custom_call("kit::s16", "order-1", &200_u32);
    assert_eq!(a.key, b.key);
    must(m.execute(&a, || async { "charged 100".to_string() }).await);
    let replay = must(m.execute(&b, || async { "charged 200".to_string() }).await);
    assert!(replay.is_replayed() && replay.provenance.fingerprint_mismatch);
    assert_eq!(replay.value, "charged 100");
    let strict = b.clone().fingerprint_policy(FingerprintPolicy::Reject);
    let r = m
        .execute(&strict, || async { "charged 200".to_string() })
        .await;
    assert_eq!(kind(r), ErrorKind::FingerprintMismatch);
    // While pending: the mismatch answer comes before the in-progress answer.
    let p1 = custom_call("kit::s16", "order-2", &1_u32);
    let p2 =
        custom_call("kit::s16", "order-2", &2_u32).fingerprint_policy(FingerprintPolicy::Reject);
    must(m.begin_operation(&p1).await);
    assert_eq!(
        kind(m.execute(&p2, || async { 0_u8 }).await),
        ErrorKind::FingerprintMismatch
    );
    assert_eq!(
        kind(m.execute(&p1, || async { 0_u8 }).await),
        ErrorKind::InProgress
    );
}

/// Scenario 18: two operations called with the same user key both execute.
pub async fn scenario_18_scope_by_function<H: Harness>(h: &H) {
    let m = manager(h);
    let charge = custom_call("kit::charge", "k", &());
    let refund = custom_call("kit::refund", "k", &());
    assert_ne!(charge.key, refund.key);
    let count = AtomicUsize::new(0);
    for c in [&charge, &refund] {
        let o = must(
            m.execute(c, || async {
                count.fetch_add(1, Ordering::SeqCst);
            })
            .await,
        );
        assert!(!o.is_replayed());
    }
    assert_eq!(count.load(Ordering::SeqCst), 2);
    // A version bump is a new namespace too.
    let mut enc = KeyEncoder::new("kit::charge", 2);
    enc.custom_key("k").arg(&());
    assert_ne!(must(enc.finish()).key, charge.key);
}

/// Scenario 19: tenants T1 and T2 using "order-1" execute separately and never see each
/// other's values.
pub async fn scenario_19_tenant_isolation<H: Harness>(h: &H) {
    let m = manager(h);
    let keyed = |tenant: &str| {
        let mut enc = KeyEncoder::new("kit::s19", 1);
        enc.scope(tenant).custom_key("order-1").arg(&());
        Call::new(must(enc.finish()))
    };
    let (t1, t2) = (keyed("T1"), keyed("T2"));
    assert_ne!(t1.key, t2.key);
    let o1 = must(m.execute(&t1, || async { "T1 secret".to_string() }).await);
    let o2 = must(m.execute(&t2, || async { "T2 value".to_string() }).await);
    assert!(!o1.is_replayed() && !o2.is_replayed());
    assert_eq!(o2.value, "T2 value");
}

/// Scenario 21: SUCCESS replays until `ttl` after completion, then runs again.
pub async fn scenario_21_retention_boundary<H: Harness>(h: &H) {
    let m = manager_with(h, |b| b.default_ttl(TTL).pending_timeout(LEASE));
    let c = call("kit::s21", &"x");
    let count = AtomicUsize::new(0);
    let run = || async {
        count.fetch_add(1, Ordering::SeqCst);
        1_u8
    };
    must(m.execute(&c, run).await);
    let obs = must(m.status(&c.key).await).unwrap_or_else(|| panic!("scenario 21: no record"));
    assert!(obs.time_to_live() <= TTL && obs.time_to_live() > Duration::ZERO);
    assert!(
        obs.record
            .expires_at
            .saturating_since(obs.record.created_at)
            >= TTL
    );
    h.advance(TTL / 2).await;
    assert!(
        must(m.execute(&c, run).await).is_replayed(),
        "scenario 21: within the TTL"
    );
    h.advance(TTL).await;
    assert!(
        !must(m.execute(&c, run).await).is_replayed(),
        "scenario 21: past the TTL"
    );
    assert_eq!(count.load(Ordering::SeqCst), 2);
    // Zero TTLs and a lease longer than the TTL are configuration errors.
    let bad = IdempotencyManager::builder_dyn(h.store())
        .default_ttl(Duration::from_secs(1))
        .pending_timeout(Duration::from_secs(2))
        .build();
    assert_eq!(kind(bad), ErrorKind::Config);
    let bad = IdempotencyManager::builder_dyn(h.store())
        .default_ttl(Duration::ZERO)
        .build();
    assert_eq!(kind(bad), ErrorKind::Config);
}

/// Scenario 26: a corrupt record fails closed (no execution, no panic) until deleted.
pub async fn scenario_26_corrupt_record_fails_closed<H: Harness>(h: &H) {
    let m = manager(h);
    let c = call("kit::s26", &"x");
    must(m.execute(&c, || async { 1_u8 }).await);
    let current = [
        b'I',
        b'D',
        b'R',
        crate::Record::FORMAT_VERSION,
        0xff,
        0xff,
        0xff,
    ];
    for bytes in [&b""[..], b"IDR", &current, b"garbage that is not a record"] {
        assert!(
            h.write_raw(&c.key, bytes).await,
            "scenario 26 needs Harness::write_raw"
        );
        let count = AtomicUsize::new(0);
        let r = m
            .execute(&c, || async {
                count.fetch_add(1, Ordering::SeqCst);
                2_u8
            })
            .await;
        assert_eq!(kind(r), ErrorKind::CorruptRecord, "scenario 26: {bytes:?}");
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }
    // A future format version, and a version-1 record (its value postcard, not CBOR): both
    // are incompatible, never decoded as this build's format.
    for bytes in [&b"IDR\x63rest"[..], b"IDR\x01\x0bkit::s26\x01\x01\x2a\x00"] {
        assert!(h.write_raw(&c.key, bytes).await);
        let r = m.execute(&c, || async { 2_u8 }).await;
        assert_eq!(
            kind(r),
            ErrorKind::IncompatibleRecord,
            "scenario 26: another format version: {bytes:?}"
        );
    }
    assert!(
        must(m.storage().delete(&c.key).await),
        "scenario 26: an explicit delete removes it"
    );
    assert!(!must(m.execute(&c, || async { 3_u8 }).await).is_replayed());
}

/// Scenario 28: results of 0 B, 1 MB and 8 MB replay bit-exact; one over the limit is stored as
/// "result not retained" and never re-runs.
pub async fn scenario_28_large_results<H: Harness>(h: &H) {
    let m = manager_with(h, |b| b.max_result_bytes(16 << 20));
    for (i, size) in [0_usize, 1 << 20, 8 << 20].into_iter().enumerate() {
        let c = call("kit::s28", &i);
        let data: Vec<u8> = (0..size).map(|j| (j % 251) as u8).collect();
        must(m.execute(&c, || async { data.clone() }).await);
        let o = must(m.execute(&c, || async { Vec::<u8>::new() }).await);
        assert!(o.is_replayed());
        assert!(
            o.value == data,
            "scenario 28: {size} bytes replayed bit-exact"
        );
    }
    let c = call("kit::s28", &"over");
    let count = AtomicUsize::new(0);
    for i in 0..2 {
        let r = m
            .execute(&c, || async {
                count.fetch_add(1, Ordering::SeqCst);
                vec![7_u8; 17 << 20]
            })
            .await;
        if i == 0 {
            // The caller that ran the function gets its value, marked not retained.
            let o = must(r);
            assert!(!o.is_retained() && o.value.len() == 17 << 20, "scenario 28");
        } else {
            assert_eq!(kind(r), ErrorKind::ResultNotRetained);
        }
    }
    assert_eq!(count.load(Ordering::SeqCst), 1, "scenario 28: no re-run");
    // A result whose Serialize fails is not retained either.
    #[derive(Debug)]
    struct Unencodable;
    impl Serialize for Unencodable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> std::result::Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("cannot encode"))
        }
    }
    impl<'de> Deserialize<'de> for Unencodable {
        fn deserialize<D: serde::Deserializer<'de>>(_: D) -> std::result::Result<Self, D::Error> {
            Ok(Unencodable)
        }
    }
    let c = call("kit::s28", &"unencodable");
    let r = m.execute(&c, || async { Unencodable }).await;
    assert!(!must(r).is_retained(), "scenario 28: an unencodable value");
    let r = m.execute(&c, || async { Unencodable }).await;
    assert_eq!(kind(r), ErrorKind::ResultNotRetained);
    let obs = must(m.status(&c.key).await).unwrap_or_else(|| panic!("scenario 28: no record"));
    assert_eq!(
        obs.status(),
        RecordStatus::Failed,
        "scenario 28: never left Pending"
    );
}

/// Scenario 29: a stored value that no longer decodes as the result type is an
/// `IncompatibleRecord`, with no silent re-execution; a version bump starts over.
pub async fn scenario_29_incompatible_result_type<H: Harness>(h: &H) {
    #[derive(Serialize, Deserialize)]
    struct V1 {
        amount: String,
    }
    #[derive(Debug, Serialize, Deserialize)]
    struct V2 {
        amount: u64,
        currency: String,
    }
    let m = manager(h);
    let c = call("kit::s29", &"x");
    must(
        m.execute(&c, || async {
            V1 {
                amount: "12.50".into(),
            }
        })
        .await,
    );
    let count = AtomicUsize::new(0);
    let r = m
        .execute(&c, || async {
            count.fetch_add(1, Ordering::SeqCst);
            V2 {
                amount: 1250,
                currency: "EUR".into(),
            }
        })
        .await;
    assert_eq!(kind(r), ErrorKind::IncompatibleRecord);
    assert_eq!(count.load(Ordering::SeqCst), 0);
    let bumped = Call::new(must(IdempotencyKey::derive("kit::s29", 2, &"x")));
    assert!(!must(
        m.execute(&bumped, || async {
            V2 {
                amount: 1,
                currency: "EUR".into(),
            }
        })
        .await
    )
    .is_replayed());
}

/// Scenario 32: an empty or missing custom key is `InvalidKey`; nothing runs, nothing is stored.
pub async fn scenario_32_missing_or_empty_key<H: Harness>(h: &H) {
    let _ = h.store();
    for bad in ["", "\n", "a\u{0}b", &"x".repeat(256)] {
        let mut enc = KeyEncoder::new("kit::s32", 1);
        enc.custom_key(bad).arg(&());
        assert_eq!(
            kind(enc.finish()),
            ErrorKind::InvalidKey,
            "scenario 32: {bad:?}"
        );
    }
    let none: Option<&str> = None;
    let r = none
        .ok_or(Error::InvalidKey { reason: "no key" })
        .and_then(|k| {
            let mut enc = KeyEncoder::new("kit::s32", 1);
            enc.custom_key(k);
            enc.finish()
        });
    assert_eq!(kind(r), ErrorKind::InvalidKey);
}

/// A store's [`peek_finished`](crate::Storage::peek_finished) answers only what a claim would
/// answer at that moment: nothing for an absent, `Pending`, deleted or expired record (also at
/// the exact end of its TTL), and a live `Success` or `Failed` record exactly as
/// [`Claim::Existing`] returns it, the newest one after a cache bypass replaced it (never a
/// stale copy). (A store that always answers `None`, the default, passes.)
pub async fn peek_finished_answers_what_a_claim_would<H: Harness>(h: &H) {
    let store = h.store();
    let key = call("kit::peek", &"success").key;
    peek_agrees(&*store, &key, "absent").await;
    let owner = claim_fresh(&*store, &key, LEASE).await;
    peek_agrees(&*store, &key, "pending").await;
    must(store.complete(&key, &owner, b"\x01", TTL).await);
    peek_agrees(&*store, &key, "success").await;

    let failed = call("kit::peek", &"failed").key;
    let owner = claim_fresh(&*store, &failed, LEASE).await;
    let error = RecordError::Encoded(vec![2]);
    must(store.fail(&failed, &owner, &error, TTL).await);
    peek_agrees(&*store, &failed, "failed").await;
    must(store.delete(&failed).await);
    peek_agrees(&*store, &failed, "deleted").await;

    // A cache bypass replaces the record: a peek must not answer the old one.
    let bypass = ClaimRequest {
        execution_id: crate::rt::execution_id(),
        fingerprint: Fingerprint([5; 32]),
        lease: LEASE,
        refresh: true,
    };
    let owner = match must(store.try_claim(&key, &bypass).await) {
        Claim::Acquired { owner, .. } => owner,
        other => panic!("peek_finished: a cache bypass did not claim `{key}`: {other:?}"),
    };
    peek_agrees(&*store, &key, "replaced, pending").await;
    must(store.complete(&key, &owner, b"\x03", TTL).await);
    peek_agrees(&*store, &key, "replaced").await;

    // At exactly the end of its TTL (on an injected clock; later on a real one) the record is
    // expired.
    h.advance(TTL).await;
    peek_agrees(&*store, &key, "at the end of its TTL").await;
    h.advance(Duration::from_millis(50)).await;
    peek_agrees(&*store, &key, "expired").await;
}

/// Checks one state of `key` (`state` names it): a peeked record must be live and finished, and
/// a claim made now must find exactly it. A claim is made only when the peek answered.
async fn peek_agrees<S: DynStorage + ?Sized>(store: &S, key: &IdempotencyKey, state: &str) {
    let Some(peeked) = store.peek_finished(key) else {
        return;
    };
    assert!(
        matches!(
            peeked.status(),
            RecordStatus::Success | RecordStatus::Failed
        ),
        "peek_finished ({state}): answered a record that is not live and finished: {peeked:?}"
    );
    let req = ClaimRequest {
        execution_id: crate::rt::execution_id(),
        fingerprint: Fingerprint([6; 32]),
        lease: LEASE,
        refresh: false,
    };
    match must(store.try_claim(key, &req).await) {
        Claim::Existing(obs) => assert_eq!(
            obs.record, peeked.record,
            "peek_finished ({state}): a claim found another record"
        ),
        other => panic!("peek_finished ({state}): answered {peeked:?}, a claim {other:?}"),
    }
}
