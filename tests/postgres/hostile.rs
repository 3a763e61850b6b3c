//! Scenario 20 on PostgreSQL: hostile custom keys, operation names and namespaces never break
//! a statement (every value is a bind parameter; keys are `bytea`), and each key still runs
//! exactly once.

use std::sync::atomic::{AtomicUsize, Ordering};

use idempotency::postgres::sqlx;
use idempotency::{Call, ErrorKind, IdempotencyManager, KeyEncoder, Prefixed, Storage};

use crate::harness::{with_conn, PgHarness};

fn hostile_keys() -> Vec<String> {
    let utf8_255 = format!("{}a", "é".repeat(127));
    assert_eq!(utf8_255.len(), 255);
    vec![
        "'".into(),
        "\"".into(),
        "''; DROP TABLE idempotency_records; --".into(),
        "\"); DELETE FROM pg_class; --".into(),
        "\\x00\\' $1 $$ E'\\\\'".into(),
        "%_*?[]".into(),
        utf8_255,
        "🦀".repeat(63),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_20_hostile_custom_keys_run_once_and_replay() {
    let Some(h) = PgHarness::new() else { return };
    let namespaced = Prefixed::new(h.store.clone(), "tenant'\";--").unwrap();
    let m = IdempotencyManager::new(namespaced.clone());
    let keys = hostile_keys();
    let runs = AtomicUsize::new(0);
    for (i, k) in keys.iter().enumerate() {
        let mut enc = KeyEncoder::new("pg'op\";--", 1);
        enc.custom_key(k).arg(&i);
        let call = Call::new(enc.finish().unwrap());
        for round in 0..2 {
            let o = m
                .execute(&call, || async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    format!("value {i}")
                })
                .await
                .unwrap_or_else(|e| panic!("key {k:?}: {e}"));
            assert_eq!(o.value, format!("value {i}"));
            assert_eq!(o.is_replayed(), round == 1, "key {k:?}");
        }
        let stored = namespaced.stored_key(&call.key);
        assert!(stored.as_str().starts_with("tenant'\";--/"));
        let rec = Storage::get(&h.store, &stored).await.unwrap();
        assert!(rec.is_some(), "key {k:?} has its record");
    }
    assert_eq!(runs.load(Ordering::SeqCst), keys.len(), "one run per key");
    // The table is intact and holds exactly one row per key.
    let sql = format!("SELECT count(*) FROM {}", h.store.table());
    let n: i64 =
        with_conn(
            move |mut c| async move { sqlx::query_scalar(&sql).fetch_one(&mut c).await.unwrap() },
        )
        .unwrap();
    assert_eq!(n, keys.len() as i64);
    // A NUL byte (PostgreSQL `text` cannot hold one) or another control character in a custom
    // key is refused before any I/O, as on every store.
    for bad in ["a\u{0}b", "\u{0}", "a\nb"] {
        let mut enc = KeyEncoder::new("pg::nul", 1);
        enc.custom_key(bad);
        assert_eq!(enc.finish().unwrap_err().kind(), ErrorKind::InvalidKey);
    }
    let mut enc = KeyEncoder::new("pg::long", 1);
    let long = format!("{}ab", "é".repeat(127));
    enc.custom_key(&long);
    assert_eq!(enc.finish().unwrap_err().kind(), ErrorKind::InvalidKey);
}
