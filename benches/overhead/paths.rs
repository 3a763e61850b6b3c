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
    if r.wants("core") {
        core(r);
    }
    if r.wants("memory") {
        memory(r);
    }
    if r.wants("macro") {
        macro_vs_manual(r);
    }
    if r.wants("file") {
        file(r);
    }
    if r.wants("redis") {
        crate::redis_rows::run(r);
    }
    if r.wants("postgres") {
        crate::postgres_rows::run(r);
    }
}

/// The floor of every in-process path: postcard + SHA-256 of the same argument.
fn hash_floor(a: &ChargeArgs) {
    let bytes = postcard::to_stdvec(black_box(a)).unwrap_or_default();
    black_box(Sha256::digest(&bytes));
}

pub static MACRO_MANAGER: std::sync::LazyLock<IdempotencyManager> =
    std::sync::LazyLock::new(|| IdempotencyManager::new(MemoryStorage::new()));

/// An annotated function: its hit path is compared with the manager called by hand.
#[idempotency::idempotent(manager = &*MACRO_MANAGER, name = "bench::macro")]
pub fn charge_annotated(a: ChargeArgs) -> Receipt {
    let _ = a;
    receipt()
}

/// `charge_annotated` written by hand, the floor of the `#[idempotent]` row: the same
/// signature (the argument by value, so its caller clones it as the annotated function's
/// does), the call derived from the argument, the manager run directly.
pub fn charge_by_hand(a: ChargeArgs) -> idempotency::Result<Receipt> {
    let c = call_for("bench::macro-by-hand", &a);
    MACRO_MANAGER
        .execute_sync(&c, move || {
            let _ = a;
            receipt()
        })
        .map(idempotency::Outcome::into_value)
}

fn macro_vs_manual(r: &mut Report) {
    let a = args(5);
    if charge_annotated(a.clone()).is_err() || charge_by_hand(a.clone()).is_err() {
        panic!("bench macro warm-up");
    }
    r.interleaved(
        "macro",
        32,
        &mut [
            ("manager by hand, hit", None, &mut || {
                black_box(charge_by_hand(black_box(a.clone())).ok());
            }),
            (
                "#[idempotent] hit",
                Some(("macro_hit_per_manual_hit", "manager by hand, hit")),
                &mut || {
                    black_box(charge_annotated(black_box(a.clone())).ok());
                },
            ),
        ],
    );
}

fn file(r: &mut Report) {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            return r.skip(
                &["file_hit_per_read"],
                format!("file rows SKIPPED: no temp dir: {e}"),
            )
        }
    };
    let small = dir.path().join("floor.bin");
    let payload = vec![7_u8; 120];
    if let Err(e) = std::fs::write(&small, &payload) {
        return r.skip(&["file_hit_per_read"], format!("file rows SKIPPED: {e}"));
    }
    let store = match idempotency::FileStorage::open(dir.path().join("store")) {
        Ok(s) => s,
        Err(e) => return r.skip(&["file_hit_per_read"], format!("file rows SKIPPED: {e}")),
    };
    let m = IdempotencyManager::new(store);
    let a = args(1);
    if let Err(e) = m.execute_sync(&call_for("bench::file", &a), receipt) {
        return r.skip(&["file_hit_per_read"], format!("file rows SKIPPED: {e}"));
    }
    r.interleaved(
        "file",
        4,
        &mut [
            ("small-file read", None, &mut || {
                black_box(std::fs::read(black_box(&small)).ok());
            }),
            (
                "file hit",
                Some(("file_hit_per_read", "small-file read")),
                &mut || {
                    let c = call_for("bench::file", black_box(&a));
                    black_box(m.execute_sync(&c, receipt).ok());
                },
            ),
        ],
    );
    let (tmp, written) = (dir.path().join("floor.tmp"), dir.path().join("floor-w.bin"));
    let next = AtomicU64::new(1_000_000);
    r.interleaved(
        "file",
        1,
        &mut [
            ("small-file write+fsync+rename", None, &mut || {
                let ok = std::fs::File::create(&tmp)
                    .and_then(|mut f| {
                        std::io::Write::write_all(&mut f, &payload)?;
                        f.sync_all()
                    })
                    .and_then(|()| std::fs::rename(&tmp, &written))
                    .and_then(|()| std::fs::File::open(dir.path())?.sync_all());
                black_box(ok.ok());
            }),
            (
                "file miss (claim + complete, fsync)",
                Some(("file_miss_per_write", "small-file write+fsync+rename")),
                &mut || {
                    let c = call_for("bench::file", &args(next.fetch_add(1, Ordering::Relaxed)));
                    black_box(m.execute_sync(&c, receipt).ok());
                },
            ),
        ],
    );
}

fn core(r: &mut Report) {
    let a = args(42);
    r.interleaved(
        "core",
        64,
        &mut [
            ("postcard+sha256", None, &mut || hash_floor(&a)),
            (
                "key derivation",
                Some(("key_derivation_per_hash", "postcard+sha256")),
                &mut || {
                    black_box(IdempotencyKey::derive("bench::charge", 1, black_box(&a)).ok());
                },
            ),
        ],
    );
}

/// The memory store's hit and miss, interleaved with their floor (measured again here, so that
/// the ratios compare moments of the same load).
fn memory(r: &mut Report) {
    let m = IdempotencyManager::new(MemoryStorage::new());
    let a = args(1);
    if let Err(e) = m.execute_sync(&call_for("bench::mem", &a), receipt) {
        panic!("bench memory warm-up: {e}");
    }
    let next = AtomicU64::new(1_000_000);
    let stored = idempotency_core::codec::encode(&receipt()).unwrap_or_default();
    r.interleaved(
        "memory",
        32,
        &mut [
            ("postcard+sha256 (memory)", None, &mut || hash_floor(&a)),
            // What a hit is made of, next to it: the key, and the decode of the stored result
            // (CBOR, self-describing: see `codec`) that every replay does.
            (
                "key derivation (memory)",
                Some(("memory_key_per_hash", "postcard+sha256 (memory)")),
                &mut || {
                    black_box(IdempotencyKey::derive("bench::mem", 1, black_box(&a)).ok());
                },
            ),
            (
                "result decode (CBOR)",
                Some(("memory_decode_per_hash", "postcard+sha256 (memory)")),
                &mut || {
                    let r = idempotency_core::codec::decode::<Receipt>(black_box(&stored));
                    black_box(r.ok());
                },
            ),
            (
                "memory hit",
                Some(("memory_hit_per_hash", "postcard+sha256 (memory)")),
                &mut || {
                    let c = call_for("bench::mem", black_box(&a));
                    black_box(m.execute_sync(&c, receipt).ok());
                },
            ),
            (
                "memory miss",
                Some(("memory_miss_per_hash", "postcard+sha256 (memory)")),
                &mut || {
                    let c = call_for("bench::mem", &args(next.fetch_add(1, Ordering::Relaxed)));
                    black_box(m.execute_sync(&c, receipt).ok());
                },
            ),
        ],
    );
}
