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
    macro_vs_manual(r);
    file(r);
    crate::redis_rows::run(r);
    crate::postgres_rows::run(r);
}

pub static MACRO_MANAGER: std::sync::LazyLock<IdempotencyManager> =
    std::sync::LazyLock::new(|| IdempotencyManager::new(MemoryStorage::new()));

/// An annotated function: its hit path is compared with the manager called by hand.
#[idempotency::idempotent(manager = &*MACRO_MANAGER, name = "bench::macro")]
pub fn charge_annotated(a: ChargeArgs) -> Receipt {
    let _ = a;
    receipt()
}

fn macro_vs_manual(r: &mut Report) {
    let a = args(5);
    if charge_annotated(a.clone()).is_err() {
        panic!("bench macro warm-up");
    }
    let m = &*MACRO_MANAGER;
    r.measure("macro", "manager by hand, hit", 32, None, || {
        let c = call_for("bench::macro-by-hand", black_box(&a));
        black_box(m.execute_sync(&c, receipt).ok());
    });
    r.measure(
        "macro",
        "#[idempotent] hit",
        32,
        Some(("macro_hit_per_manual_hit", "manager by hand, hit")),
        || {
            black_box(charge_annotated(black_box(a.clone())).ok());
        },
    );
}

fn file(r: &mut Report) {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return r.note(format!("file rows skipped: no temp dir: {e}")),
    };
    let small = dir.path().join("floor.bin");
    let payload = vec![7_u8; 120];
    if let Err(e) = std::fs::write(&small, &payload) {
        return r.note(format!("file rows skipped: {e}"));
    }
    r.measure("floor", "small-file read", 8, None, || {
        black_box(std::fs::read(black_box(&small)).ok());
    });
    let tmp = dir.path().join("floor.tmp");
    r.measure("floor", "small-file write+fsync+rename", 1, None, || {
        let ok = std::fs::File::create(&tmp)
            .and_then(|mut f| {
                std::io::Write::write_all(&mut f, &payload)?;
                f.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &small))
            .and_then(|()| std::fs::File::open(dir.path())?.sync_all());
        black_box(ok.ok());
    });
    let store = match idempotency::FileStorage::open(dir.path().join("store")) {
        Ok(s) => s,
        Err(e) => return r.note(format!("file rows skipped: {e}")),
    };
    let m = IdempotencyManager::new(store);
    let a = args(1);
    if let Err(e) = m.execute_sync(&call_for("bench::file", &a), receipt) {
        return r.note(format!("file rows skipped: {e}"));
    }
    r.measure(
        "file",
        "file hit",
        4,
        Some(("file_hit_per_read", "small-file read")),
        || {
            let c = call_for("bench::file", black_box(&a));
            black_box(m.execute_sync(&c, receipt).ok());
        },
    );
    let next = AtomicU64::new(1_000_000);
    r.measure(
        "file",
        "file miss (claim + complete, fsync)",
        1,
        Some(("file_miss_per_write", "small-file write+fsync+rename")),
        || {
            let c = call_for("bench::file", &args(next.fetch_add(1, Ordering::Relaxed)));
            black_box(m.execute_sync(&c, receipt).ok());
        },
    );
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
