//! The `#[idempotent]` basics against a real Redis (feature `redis`), on an async function: the
//! first call runs, a repeat replays, another input runs. Every run uses a key prefix of its
//! own, and its records expire after a minute.
//!
//! ```sh
//! cargo run --features redis --example redis        # IDEMPOTENCY_REDIS_URL, else redis://127.0.0.1:6379/0
//! ```
//!
//! Without a reachable Redis it prints a loud notice and exits successfully, unless
//! `IDEMPOTENCY_REQUIRE_REDIS=1`, which makes it fail (as CI sets it).

use std::sync::atomic::{AtomicUsize, Ordering};

use idempotency::{idempotent, ErrorKind, IdempotencyManager, RedisStorage};

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// Reserves stock at most once per (sku, quantity) within a minute (`ttl` in seconds).
#[idempotent(manager = manager, ttl = 60)]
async fn reserve(#[idempotency(skip)] manager: &IdempotencyManager, sku: &str, qty: u32) -> String {
    let n = RUNS.fetch_add(1, Ordering::SeqCst) + 1;
    format!("reservation #{n}: {qty} x {sku}")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("IDEMPOTENCY_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned());
    let prefix = format!("idempotency-example:{}:", uuid::Uuid::new_v4().simple());
    let store = match RedisStorage::builder(url.clone()).prefix(prefix).open() {
        Ok(store) => store,
        Err(e) if e.kind() == ErrorKind::StoreUnavailable && !required() => {
            eprintln!("\n!!!!! SKIPPED the redis example: no Redis at {url}: {e} !!!!!\n");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let manager = IdempotencyManager::new(store);

    let first = reserve(&manager, "sku-42", 3).await?; // runs the body
    let again = reserve(&manager, "sku-42", 3).await?; // replays the stored result
    let other = reserve(&manager, "sku-42", 4).await?; // another input: runs
    println!("{first}\n{again}\n{other}");
    assert_eq!(again, first);
    assert_ne!(other, first);
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
    Ok(())
}

/// Whether a missing Redis is a failure (`IDEMPOTENCY_REQUIRE_REDIS=1`) rather than a skip.
fn required() -> bool {
    std::env::var("IDEMPOTENCY_REQUIRE_REDIS").is_ok_and(|v| v == "1")
}

#[test]
fn redis_runs_once_per_input() {
    main().unwrap();
}
