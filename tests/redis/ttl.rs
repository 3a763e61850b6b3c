//! Scenario 21 on Redis: every key of a record carries an expiry, `0 < PTTL <= ttl` after a
//! completion (and a failure), and a pending record's key outlives its lease.

use std::time::Duration;

use idempotency::{Begin, Call, IdempotencyKey, IdempotencyManager, Storage};
use idempotency_redis::redis;

use crate::harness::RedisHarness;

fn keys_under(conn: &mut redis::Connection, prefix: &str) -> Vec<String> {
    redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg(format!("{prefix}*"))
        .arg("COUNT")
        .arg(1000)
        .clone()
        .iter(conn)
        .unwrap()
        .map(|k| k.unwrap())
        .collect()
}

fn pttl(conn: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query(conn).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_21_every_key_has_a_ttl_after_completion() {
    let Some(h) = RedisHarness::new() else { return };
    let ttl = Duration::from_secs(60);
    let lease = Duration::from_secs(5);
    let m = IdempotencyManager::builder(h.store.clone())
        .default_ttl(ttl)
        .pending_timeout(lease)
        .build()
        .unwrap();
    let mut conn = h.target.sync_connection();

    // Pending: the key outlives the lease (fence retention) but has an expiry.
    let c = Call::new(IdempotencyKey::derive("redis::s21", 1, &"pending").unwrap());
    let Begin::Acquired(lease_a) = m.begin_operation(&c).await.unwrap() else {
        panic!("fresh key not acquired")
    };
    let key = h.store.record_key(&c.key);
    let p = pttl(&mut conn, &key);
    assert!(
        p > lease.as_millis() as i64,
        "pending PTTL {p} outlives the lease"
    );
    m.complete_operation(&lease_a, &1_u32).await.unwrap();
    let p = pttl(&mut conn, &key);
    assert!(p > 0 && p <= ttl.as_millis() as i64, "success PTTL {p}");

    // Through execute, and a failure with the failure TTL.
    let c2 = Call::new(IdempotencyKey::derive("redis::s21", 1, &"exec").unwrap());
    m.execute(&c2, || async { "v".to_string() }).await.unwrap();
    let c3 = Call::new(IdempotencyKey::derive("redis::s21", 1, &"fail").unwrap());
    let o = m
        .try_execute_with(
            &c3,
            || async { Err::<u8, _>("declined".to_string()) },
            |_| false,
        )
        .await
        .unwrap();
    assert!(o.value.is_err());

    let keys = keys_under(&mut conn, &h.prefix);
    assert_eq!(keys.len(), 3, "one key per record: {keys:?}");
    let failure_ttl = Duration::from_secs(300); // the manager's default failure TTL
    for (c, limit) in [(&c, ttl), (&c2, ttl), (&c3, failure_ttl)] {
        let k = h.store.record_key(&c.key);
        assert!(keys.contains(&k), "{k} listed");
        let p = pttl(&mut conn, &k);
        assert!(p > 0 && p <= limit.as_millis() as i64, "{k}: PTTL {p}");
    }
    // The record read back carries the same expiry as Redis holds (Redis clock).
    let obs = h.store.get(&c2.key).await.unwrap().unwrap();
    let left = obs.time_to_live();
    assert!(left > Duration::ZERO && left <= ttl);
}

/// A TTL far beyond any real retention ("keep forever": `Duration::MAX`, or a few million
/// years) is stored, replayed and keeps a valid expiry, as on the memory and file stores: it
/// must not break the fixed-width value layout or Redis's expiry range after `f` ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_21_huge_ttls_are_stored_and_replayed() {
    let Some(h) = RedisHarness::new() else { return };
    let mut conn = h.target.sync_connection();
    let huge = [
        Duration::MAX,
        Duration::from_secs(u64::MAX / 1000),
        Duration::from_millis(100_000_000_000_000_000), // ~3 million years
    ];
    for (i, ttl) in huge.into_iter().enumerate() {
        let m = IdempotencyManager::builder(h.store.clone())
            .default_ttl(ttl)
            .failure_ttl(ttl)
            .build()
            .unwrap();
        let c = Call::new(IdempotencyKey::derive("redis::s21-huge", 1, &i).unwrap());
        let runs = std::sync::atomic::AtomicUsize::new(0);
        for round in 0..2 {
            let o = m
                .execute(&c, || async {
                    runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    7_u32
                })
                .await
                .unwrap_or_else(|e| panic!("ttl {ttl:?}, round {round}: {e}"));
            assert_eq!(o.value, 7);
            assert_eq!(o.is_replayed(), round == 1, "ttl {ttl:?}");
        }
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        let p = pttl(&mut conn, &h.store.record_key(&c.key));
        assert!(p > 0, "ttl {ttl:?}: PTTL {p}");
    }
}

/// A stored value in this store's layout whose fixed-width numbers are not digits is a corrupt
/// record (fail closed, never "store unavailable", which the fail-open policy would run
/// unprotected on every call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_26_layout_value_with_garbage_numbers_is_corrupt() {
    let Some(h) = RedisHarness::new() else { return };
    let mut conn = h.target.sync_connection();
    let m = IdempotencyManager::builder(h.store.clone())
        .on_store_error(idempotency::StoreErrorPolicy::FailOpen)
        .build()
        .unwrap();
    // The store's own magic, as it writes it (the first five bytes of a value).
    let probe = Call::new(IdempotencyKey::derive("redis::s26-garbage", 1, &"probe").unwrap());
    m.execute(&probe, || async { 0_u8 }).await.unwrap();
    let written: Vec<u8> = redis::cmd("GET")
        .arg(h.store.record_key(&probe.key))
        .query(&mut conn)
        .unwrap();
    assert_eq!(&written[..4], b"IDR\x02");
    for (i, status) in [b'P', b'S', b'F'].into_iter().enumerate() {
        let c = Call::new(IdempotencyKey::derive("redis::s26-garbage", 1, &i).unwrap());
        let mut value = written[..5].to_vec();
        value.push(status);
        value.resize(200, b'x');
        let _: () = redis::cmd("SET")
            .arg(h.store.record_key(&c.key))
            .arg(&value)
            .query(&mut conn)
            .unwrap();
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let r = m
            .execute(&c, || async {
                runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                1_u8
            })
            .await;
        let kind = r.as_ref().err().map(|e| e.kind());
        assert_eq!(
            kind,
            Some(idempotency::ErrorKind::CorruptRecord),
            "status {}: {r:?}",
            status as char
        );
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}

/// A value that holds another key's record (copied by an operator, restored from a backup under
/// another key) is a corrupt record for this key: never replayed as this call's result (the file
/// store checks the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_26_a_value_holding_another_keys_record_is_corrupt() {
    let Some(h) = RedisHarness::new() else { return };
    let mut conn = h.target.sync_connection();
    let m = IdempotencyManager::new(h.store.clone());
    let a = Call::new(IdempotencyKey::derive("redis::s26-moved", 1, &"a").unwrap());
    let b = Call::new(IdempotencyKey::derive("redis::s26-moved", 1, &"b").unwrap());
    let first = m
        .execute(&a, || async { "result of a".to_owned() })
        .await
        .unwrap();
    assert_eq!(first.value, "result of a");
    let _: i64 = redis::cmd("COPY")
        .arg(h.store.record_key(&a.key))
        .arg(h.store.record_key(&b.key))
        .query(&mut conn)
        .unwrap();
    let runs = std::sync::atomic::AtomicUsize::new(0);
    let r = m
        .execute(&b, || async {
            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            "result of b".to_owned()
        })
        .await;
    let kind = r.as_ref().err().map(|e| e.kind());
    assert_eq!(kind, Some(idempotency::ErrorKind::CorruptRecord), "{r:?}");
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 0);
    let read = h.store.get(&b.key).await;
    assert_eq!(
        read.as_ref().err().map(|e| e.kind()),
        Some(idempotency::ErrorKind::CorruptRecord),
        "{read:?}"
    );
}
