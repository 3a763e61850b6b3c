//! `overhead --callgrind <path> <iterations>`: runs one in-process path `iterations` times and
//! nothing else, for `benches/callgrind.sh` to count instructions under
//! `valgrind --tool=callgrind`. No timing, no output but errors: the script runs each path at N
//! and 2N iterations and divides the difference by N, so start-up, set-up and first-call costs
//! (lazy statics, the first allocation of a size class) cancel out.

use std::hint::black_box;

use idempotency::{IdempotencyKey, IdempotencyManager, MemoryStorage};
use sha2::{Digest, Sha256};

use crate::paths::{args, call_for, receipt};

/// The paths this mode runs, in the order the script reports them.
pub const PATHS: &[&str] = &[
    "floor",
    "key",
    "memory-hit",
    "memory-miss",
    "manual-hit",
    "macro-hit",
    "file-read",
    "file-hit",
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
        // Diagnostics (not in the script's default list; time them natively with
        // `overhead --callgrind <path> <n>` under `time`): what the floor and the key are made of.
        "sha256-7B" | "sha256-95B" => {
            // `Sha256::digest` of the floor's postcard length, and of the key's SHA-256 input.
            let n = if path == "sha256-7B" { 7 } else { 95 };
            let bytes = vec![3_u8; n];
            for _ in 0..iterations {
                black_box(Sha256::digest(black_box(&bytes[..])));
            }
        }
        "compress-1" | "compress-2" => {
            // SHA-256's compression function alone, on one or two blocks.
            let n = if path == "compress-1" { 1 } else { 2 };
            let blocks = vec![[3_u8; 64]; n];
            for _ in 0..iterations {
                let mut st = [0x6a09_e667_u32; 8];
                sha2::block_api::compress256(&mut st, black_box(&blocks[..]));
                black_box(st);
            }
        }
        "canonical-args" | "postcard-args" => {
            // The key's encoding of the argument (with its names), and the floor's.
            let a = args(42);
            for _ in 0..iterations {
                if path == "canonical-args" {
                    black_box(idempotency::canonical::to_bytes(black_box(&a)).ok());
                } else {
                    black_box(postcard::to_stdvec(black_box(&a)).ok());
                }
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
            let a = args(5);
            crate::paths::charge_by_hand(a.clone()).map_err(|e| e.to_string())?;
            for _ in 0..iterations {
                black_box(crate::paths::charge_by_hand(black_box(a.clone())).ok());
            }
        }
        "macro-hit" => {
            let a = args(5);
            crate::paths::charge_annotated(a.clone()).map_err(|e| e.to_string())?;
            for _ in 0..iterations {
                black_box(crate::paths::charge_annotated(black_box(a.clone())).ok());
            }
        }
        "file-read" => {
            // The file hit's floor (its system calls count as one instruction each).
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let small = dir.path().join("floor.bin");
            std::fs::write(&small, [7_u8; 120]).map_err(|e| e.to_string())?;
            for _ in 0..iterations {
                black_box(std::fs::read(black_box(&small)).ok());
            }
        }
        "file-hit" => {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let store = idempotency::FileStorage::open(dir.path().join("store"))
                .map_err(|e| e.to_string())?;
            let m = IdempotencyManager::new(store);
            let a = args(1);
            m.execute_sync(&call_for("bench::file", &a), receipt)
                .map_err(|e| e.to_string())?;
            for _ in 0..iterations {
                let c = call_for("bench::file", black_box(&a));
                black_box(m.execute_sync(&c, receipt).ok());
            }
        }
        // Diagnostics: the client-side instructions of a Redis hit and miss and of their floor,
        // a plain `GET`, sync or on the async API (`-async`: a current-thread runtime,
        // `block_on` per call). Redis at `IDEMPOTENCY_REDIS_URL`; the server's own work is not
        // counted. Each run works under its own key prefix and deletes it at the end.
        "redis-get" | "redis-hit" | "redis-miss" | "redis-get-async" | "redis-hit-async"
        | "redis-miss-async" => redis(path, iterations)?,
        other => {
            let diagnostics = "sha256-7B, sha256-95B, compress-1, compress-2, canonical-args, \
                               postcard-args, redis-get, redis-hit, redis-miss and their -async \
                               forms";
            return Err(format!(
                "unknown path `{other}`; one of: {}; or a diagnostic: {diagnostics}",
                PATHS.join(", ")
            ));
        }
    }
    Ok(())
}

/// Deletes every key under `prefix` (a run's own), so that no run leaves keys in a shared Redis.
fn delete_prefixed(url: &str, prefix: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = client.get_connection().map_err(|e| e.to_string())?;
    let mut cursor = 0_u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query(&mut conn)
            .map_err(|e| e.to_string())?;
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(keys)
                .query::<u64>(&mut conn)
                .map_err(|e| e.to_string())?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// The Redis paths of [`run`]: `redis-{get,hit,miss}[-async]`.
fn redis(path: &str, iterations: u64) -> Result<(), String> {
    let url = std::env::var("IDEMPOTENCY_REDIS_URL")
        .map_err(|_| "set IDEMPOTENCY_REDIS_URL".to_string())?;
    // A run's own prefix, 16 characters as `bench:callgrind:` was when the counts in
    // BENCHMARKS.md were taken (longer keys cost more instructions to send and hash).
    let prefix = format!("bcg:{:011x}:", uuid::Uuid::new_v4().as_u64_pair().0 >> 20);
    let on_async = path.ends_with("-async");
    // Only the async paths have a runtime: one that merely exists changes the heap the sync
    // paths allocate from (a few hundred instructions a call under callgrind).
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    };
    if path.starts_with("redis-get") {
        let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
        let probe = format!("{prefix}floor");
        let set = redis::cmd("SET").arg(&probe).arg(vec![0_u8; 100]).clone();
        // The `GET` is built per call, as a caller (and the bench's floor rows) does.
        if on_async {
            let rt = rt()?;
            let mut conn = rt
                .block_on(client.get_multiplexed_async_connection())
                .map_err(|e| e.to_string())?;
            rt.block_on(set.query_async::<()>(&mut conn))
                .map_err(|e| e.to_string())?;
            for _ in 0..iterations {
                let v: redis::RedisResult<Option<Vec<u8>>> =
                    rt.block_on(redis::cmd("GET").arg(&probe).query_async(&mut conn));
                black_box(v.ok());
            }
        } else {
            let mut conn = client.get_connection().map_err(|e| e.to_string())?;
            set.query::<()>(&mut conn).map_err(|e| e.to_string())?;
            for _ in 0..iterations {
                let v: redis::RedisResult<Option<Vec<u8>>> =
                    redis::cmd("GET").arg(&probe).query(&mut conn);
                black_box(v.ok());
            }
        }
    } else {
        let store = idempotency_redis::RedisStorage::builder(url.clone())
            .prefix(prefix.clone())
            .open()
            .map_err(|e| e.to_string())?;
        let m = IdempotencyManager::new(store);
        let a = args(1);
        let hit = path.starts_with("redis-hit");
        let run = uuid::Uuid::new_v4().as_u64_pair().0;
        // Iteration `i`'s call: the stored one for a hit, a fresh one for a miss.
        let call = |i: u64| match hit {
            true => call_for("bench::redis", black_box(&a)),
            false => call_for("bench::redis", &args(run.wrapping_add(i))),
        };
        let stored = call_for("bench::redis", &a);
        if on_async {
            let rt = rt()?;
            let first = rt.block_on(m.execute(&stored, || async { receipt() }));
            first.map_err(|e| e.to_string())?;
            for i in 0..iterations {
                black_box(
                    rt.block_on(m.execute(&call(i), || async { receipt() }))
                        .ok(),
                );
            }
        } else {
            m.execute_sync(&stored, receipt)
                .map_err(|e| e.to_string())?;
            for i in 0..iterations {
                black_box(m.execute_sync(&call(i), receipt).ok());
            }
        }
    }
    delete_prefixed(&url, &prefix)
}
