//! The `#[idempotent]` basics on the embedded file store, in a temporary directory: the first
//! call runs the body, a repeat replays the stored result without running it, another input
//! runs, and a new manager over the same directory (a restarted process) still replays.
//!
//! ```sh
//! cargo run --example quickstart
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};

use idempotency::{idempotent, FileStorage, IdempotencyManager};

/// How many times the body really ran.
static RUNS: AtomicUsize = AtomicUsize::new(0);

/// Charges an order at most once per (order, amount) within an hour (`ttl` in seconds). The
/// manager is a parameter left out of the key (`skip`); without `manager = ...` the
/// process-wide default manager is used (`IDEMPOTENCY_URL`, else `.idempotency`).
#[idempotent(manager = manager, ttl = 3600)]
fn charge(#[idempotency(skip)] manager: &IdempotencyManager, order: &str, cents: u64) -> String {
    let n = RUNS.fetch_add(1, Ordering::SeqCst) + 1;
    format!("charge #{n}: {order}, {cents} cents")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let manager = IdempotencyManager::new(FileStorage::open(dir.path())?);

    let first = charge(&manager, "order-1", 1200)?; // runs the body
    let again = charge(&manager, "order-1", 1200)?; // replays the stored result
    let other = charge(&manager, "order-2", 1200)?; // another input: runs
    println!("{first}\n{again}\n{other}");
    assert_eq!(first, "charge #1: order-1, 1200 cents");
    assert_eq!(again, first);
    assert_eq!(other, "charge #2: order-2, 1200 cents");

    // Records live in the directory: a new manager (another process) replays them too.
    let restarted = IdempotencyManager::new(FileStorage::open(dir.path())?);
    assert_eq!(charge(&restarted, "order-1", 1200)?, first);
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
    Ok(())
}

#[test]
fn quickstart_runs_once_per_input() {
    main().unwrap();
}
