//! The store's own contract on PostgreSQL, beyond the kit: fencing while a new holder's
//! record is still `Pending`, a retried claim finding its own record, expired records reading as
//! absent, and purging in bounded batches without touching live records.

use std::time::Duration;

use idempotency::postgres::sqlx;
use idempotency::{
    Claim, ClaimRequest, ErrorKind, IdempotencyKey, Owner, PostgresConfig, PostgresStorage,
    RecordError, RecordStatus, Storage, StorageAdmin,
};

use crate::harness::{url, with_conn, PgHarness};

fn lost<T: std::fmt::Debug>(r: idempotency::Result<T>) -> ErrorKind {
    r.unwrap_err().kind()
}

fn req(k: &idempotency::DerivedKey) -> ClaimRequest {
    ClaimRequest {
        execution_id: uuid::Uuid::new_v4(),
        fingerprint: k.fingerprint,
        lease: Duration::from_secs(60),
        refresh: false,
    }
}

async fn acquire(store: &PostgresStorage, key: &IdempotencyKey, r: &ClaimRequest) -> (Owner, bool) {
    match store.try_claim(key, r).await.unwrap() {
        Claim::Acquired {
            owner, takeover, ..
        } => (owner, takeover),
        other => panic!("expected to acquire, got {other:?}"),
    }
}

/// Ends every lease and TTL of `key` now, on the database (as its clock passing them would).
fn expire(store: &PostgresStorage, key: &IdempotencyKey) {
    let sql = format!("UPDATE {} SET expires_at = 0 WHERE key = $1", store.table());
    let key = key.as_str().as_bytes().to_vec();
    with_conn(move |mut c| async move {
        sqlx::query(&sql).bind(key).execute(&mut c).await.unwrap();
    })
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_12_stale_holder_is_fenced_while_the_new_holder_is_pending() {
    let Some(h) = PgHarness::new() else { return };
    let s = &h.store;
    let k = IdempotencyKey::derive("pg::fence", 1, &"x").unwrap();
    let (a, _) = acquire(s, &k.key, &req(&k)).await;
    assert_eq!(a.fencing_token, 1);
    expire(s, &k.key);
    assert!(
        s.get(&k.key).await.unwrap().is_none(),
        "expired reads as absent"
    );
    assert!(!s.exists(&k.key).await.unwrap());
    let rb = req(&k);
    let (b, takeover) = acquire(s, &k.key, &rb).await;
    assert_eq!((b.fencing_token, takeover), (2, true));
    // A's writes are refused while B's record is still pending.
    assert_eq!(
        lost(s.complete(&k.key, &a, b"a", Duration::from_secs(60)).await),
        ErrorKind::LeaseLost
    );
    let err = RecordError::NotRetained("a".into());
    assert_eq!(
        lost(s.fail(&k.key, &a, &err, Duration::from_secs(60)).await),
        ErrorKind::LeaseLost
    );
    assert_eq!(
        lost(s.renew(&k.key, &a, Duration::from_secs(60)).await),
        ErrorKind::LeaseLost
    );
    assert!(!s.release(&k.key, &a).await.unwrap());
    // The same execution id with another token is not the holder either.
    let forged = Owner {
        execution_id: b.execution_id,
        fencing_token: 1,
    };
    assert_eq!(
        lost(
            s.complete(&k.key, &forged, b"f", Duration::from_secs(60))
                .await
        ),
        ErrorKind::LeaseLost
    );
    let rec = s.get(&k.key).await.unwrap().unwrap().record;
    assert_eq!((rec.status, rec.owner), (RecordStatus::Pending, b));
    // B's retried claim (same execution id) finds its own record (scenario 5).
    let (again, takeover) = acquire(s, &k.key, &rb).await;
    assert_eq!((again, takeover), (b, false));
    let done = s
        .complete(&k.key, &b, b"b", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        (done.status, done.result.as_slice()),
        (RecordStatus::Success, &b"b"[..])
    );
    assert!(s.renew(&k.key, &b, Duration::from_secs(1)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_30_purge_removes_expired_records_in_batches_and_keeps_live_ones() {
    let Some(h) = PgHarness::new() else { return };
    // A second store on the same table with a small batch.
    let s = PostgresConfig::new()
        .schema(h.schema.0.clone())
        .purge_batch(7)
        .connect(&url())
        .unwrap();
    let mut keys = Vec::new();
    for i in 0..30_u32 {
        let k = IdempotencyKey::derive("pg::purge", 1, &i).unwrap();
        let (o, _) = acquire(&s, &k.key, &req(&k)).await;
        s.complete(&k.key, &o, b"v", Duration::from_secs(3600))
            .await
            .unwrap();
        keys.push(k.key);
    }
    for k in &keys[..23] {
        expire(&s, k);
    }
    assert_eq!(s.purge_expired().await.unwrap(), 23);
    assert_eq!(s.purge_expired().await.unwrap(), 0);
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(s.get(k).await.unwrap().is_some(), i >= 23, "key {i}");
    }
}
