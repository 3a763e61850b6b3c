//! `overhead --callgrind <path> <iterations>`: runs one in-process path `iterations` times and
//! nothing else, for `benches/callgrind.sh` to count instructions under
//! `valgrind --tool=callgrind`. No timing, no output but errors: the script runs each path at N
//! and 2N iterations and divides the difference by N, so start-up, set-up and first-call costs
//! (lazy statics, the first allocation of a size class) cancel out.

use std::hint::black_box;

use idempotency::{IdempotencyKey, IdempotencyManager, MemoryStorage};
use sha2::{Digest, Sha256};

use crate::paths::{args, call_for, receipt, MACRO_MANAGER};

/// The paths this mode runs, in the order the script reports them.
pub const PATHS: &[&str] = &[
    "floor",
    "key",
    "memory-hit",
    "memory-miss",
    "manual-hit",
    "macro-hit",
];

/// Runs `path` `iterations` times. Unknown paths are an error (exit code 2).
pub fn run(path: &str, iterations: u64) -> Result<(), String> {
    match path {
        "floor" => {
            let a = args(42);
            for _ in 0..iterations {
                let bytes = postcard::to_stdvec(black_box(&a)).unwrap_or_default();
                black_box(Sha256::digest(&bytes));
            }
        }
        "sha-7" | "sha-95" => {
            let n = if path == "sha-7" { 7 } else { 95 };
            let bytes = vec![3_u8; n];
            for _ in 0..iterations {
                black_box(Sha256::digest(black_box(&bytes[..])));
            }
        }
        "compress-1" | "compress-2" => {
            let n = if path == "compress-1" { 1 } else { 2 };
            let blocks = vec![[3_u8; 64]; n];
            for _ in 0..iterations {
                let mut st = [
                    0x6a09e667_u32,
                    0xbb67ae85,
                    0x3c6ef372,
                    0xa54ff53a,
                    0x510e527f,
                    0x9b05688c,
                    0x1f83d9ab,
                    0x5be0cd19,
                ];
                sha2::block_api::compress256(&mut st, black_box(&blocks[..]));
                black_box(st);
            }
        }
        "x-canon" => {
            let a = args(42);
            for _ in 0..iterations {
                black_box(idempotency::canonical::to_bytes(black_box(&a)).ok());
            }
        }
        "x-postcard" => {
            let a = args(42);
            for _ in 0..iterations {
                black_box(postcard::to_stdvec(black_box(&a)).ok());
            }
        }
        "x-noargs" => {
            for _ in 0..iterations {
                black_box(
                    idempotency::KeyEncoder::new(black_box("bench::charge"), 1)
                        .finish()
                        .ok(),
                );
            }
        }
        "x-parse" => {
            let k = IdempotencyKey::derive("bench::charge", 1, &args(42))
                .map(|d| d.key.to_string())
                .unwrap_or_default();
            for _ in 0..iterations {
                black_box(IdempotencyKey::parse(black_box(&k)).ok());
            }
        }
        "key" => {
            let a = args(42);
            for _ in 0..iterations {
                black_box(IdempotencyKey::derive("bench::charge", 1, black_box(&a)).ok());
            }
        }
        "memory-hit" => {
            let m = IdempotencyManager::new(MemoryStorage::new());
            let a = args(1);
            m.execute_sync(&call_for("bench::mem", &a), receipt)
                .map_err(|e| e.to_string())?;
            for _ in 0..iterations {
                let c = call_for("bench::mem", black_box(&a));
                black_box(m.execute_sync(&c, receipt).ok());
            }
        }
        "memory-miss" => {
            let m = IdempotencyManager::new(MemoryStorage::new());
            for i in 0..iterations {
                let c = call_for("bench::mem", &args(1_000_000 + i));
                black_box(m.execute_sync(&c, receipt).ok());
            }
        }
        "manual-hit" => {
            let m = &*MACRO_MANAGER;
            let a = args(5);
            m.execute_sync(&call_for("bench::macro-by-hand", &a), receipt)
                .map_err(|e| e.to_string())?;
            for _ in 0..iterations {
                let c = call_for("bench::macro-by-hand", black_box(&a));
                black_box(m.execute_sync(&c, receipt).ok());
            }
        }
        "macro-hit" => {
            let a = args(5);
            crate::paths::charge_annotated(a.clone()).map_err(|e| e.to_string())?;
            for _ in 0..iterations {
                black_box(crate::paths::charge_annotated(black_box(a.clone())).ok());
            }
        }
        other => {
            return Err(format!(
                "unknown path `{other}`; one of: {}",
                PATHS.join(", ")
            ))
        }
    }
    Ok(())
}
