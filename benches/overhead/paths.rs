//! What is measured: the floors, then each path of the product.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use idempotency::{Call, IdempotencyKey, IdempotencyManager, MemoryStorage};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::harness::Report;

/// The small argument struct every path hashes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChargeArgs {
    pub user_id: u64,
    pub amount_cents: u64,
    pub currency: String,
}

/// The small result struct every path stores and replays.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    pub id: u64,
    pub status: String,
}

pub fn args(user_id: u64) -> ChargeArgs {
    ChargeArgs {
        user_id,
        amount_cents: 1250,
        currency: "EUR".to_owned(),
    }
}

pub fn receipt() -> Receipt {
    Receipt {
        id: 7,
        status: "paid".to_owned(),
    }
}

pub fn call_for(op: &str, a: &ChargeArgs) -> Call {
    match IdempotencyKey::derive(op, 1, a) {
        Ok(k) => Call::new(k),
        Err(e) => panic!("bench key: {e}"),
    }
}

pub fn run_all(r: &mut Report) {
    floors_cpu(r);
    memory(r);
}

fn floors_cpu(r: &mut Report) {
    let a = args(42);
    r.measure("floor", "postcard+sha256", 64, None, || {
        let bytes = postcard::to_stdvec(black_box(&a)).unwrap_or_default();
        black_box(Sha256::digest(&bytes));
    });
    r.measure(
        "core",
        "key derivation",
        64,
        Some(("key_derivation_per_hash", "postcard+sha256")),
        || {
            black_box(IdempotencyKey::derive("bench::charge", 1, black_box(&a)).ok());
        },
    );
}

fn memory(r: &mut Report) {
    let m = IdempotencyManager::new(MemoryStorage::new());
    let a = args(1);
    if let Err(e) = m.execute_sync(&call_for("bench::mem", &a), receipt) {
        panic!("bench memory warm-up: {e}");
    }
    r.measure(
        "memory",
        "memory hit",
        32,
        Some(("memory_hit_per_hash", "postcard+sha256")),
        || {
            let c = call_for("bench::mem", black_box(&a));
            black_box(m.execute_sync(&c, receipt).ok());
        },
    );
    let next = AtomicU64::new(1_000_000);
    r.measure(
        "memory",
        "memory miss",
        16,
        Some(("memory_miss_per_hash", "postcard+sha256")),
        || {
            let c = call_for("bench::mem", &args(next.fetch_add(1, Ordering::Relaxed)));
            black_box(m.execute_sync(&c, receipt).ok());
        },
    );
}
