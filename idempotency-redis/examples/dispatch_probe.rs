//! Measures the Redis store's dispatch path against a plain `redis` client on the caller's
//! thread, interleaved call by call (issue 17): the p50 of a replay (hit) through the manager
//! over the p50 of one plain `GET`, and of a first run (miss) over one plain `SET NX PX`, for
//! sync callers (`execute_sync`, a sync connection) and async ones (`execute` on a tokio
//! runtime, a multiplexed connection driven by that runtime). With `--busy`, a CPU hog runs
//! on every other core meanwhile.
//!
//! ```text
//! cargo run --release -p idempotency-redis --example dispatch_probe -- [URL] [--busy] [--n N]
//! ```
//!
//! Prints one `ratio <name> <value>` line per figure. Not a benchmark of record (that is
//! `benches/` and BENCHMARKS.md); a probe for this crate's dispatch work.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use idempotency_core::{Call, IdempotencyKey, IdempotencyManager};
use idempotency_redis::{redis, RedisConfig};

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn report(name: &str, ours: Vec<Duration>, floor: Vec<Duration>) {
    let (a, b) = (p50(ours), p50(floor));
    println!(
        "{name:<12} ours p50 {:>8.1} us   plain p50 {:>8.1} us",
        a.as_secs_f64() * 1e6,
        b.as_secs_f64() * 1e6
    );
    println!("ratio {name} {:.3}", a.as_secs_f64() / b.as_secs_f64());
}

fn time<T>(f: impl FnOnce() -> T) -> Duration {
    let t = Instant::now();
    std::hint::black_box(f());
    t.elapsed()
}

async fn time_async<T>(f: impl std::future::Future<Output = T>) -> Duration {
    let t = Instant::now();
    std::hint::black_box(f.await);
    t.elapsed()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let busy = args.iter().any(|a| a == "--busy");
    let n: usize = args
        .iter()
        .position(|a| a == "--n")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let url = args
        .iter()
        .find(|a| a.starts_with("redis://"))
        .cloned()
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());

    let stop = Arc::new(AtomicBool::new(false));
    let hogs: Vec<_> = if busy {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        (1..cores.max(2))
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0_u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                })
            })
            .collect()
    } else {
        Vec::new()
    };

    let prefix = format!("probe:{}:", uuid::Uuid::new_v4().simple());
    let store = RedisConfig::new(url.clone())
        .prefix(prefix.clone())
        .open()
        .unwrap();
    let m = IdempotencyManager::new(store);
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut plain = client.get_connection().unwrap();
    let call = |s: &str, i: usize| Call::new(IdempotencyKey::derive("probe", 1, &(s, i)).unwrap());

    // Sync: hit and miss.
    let hit = call("hit", 0);
    m.execute_sync(&hit, || 1_u64).unwrap();
    let plain_key = format!("{prefix}plain");
    let _: () = redis::cmd("SET")
        .arg(&plain_key)
        .arg(b"x".repeat(200))
        .query(&mut plain)
        .unwrap();
    for _ in 0..200 {
        m.execute_sync(&hit, || 1_u64).unwrap();
    }
    let (mut ours, mut floor) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        floor.push(time(|| {
            let v: Vec<u8> = redis::cmd("GET").arg(&plain_key).query(&mut plain).unwrap();
            v
        }));
        ours.push(time(|| m.execute_sync(&hit, || 1_u64).unwrap()));
    }
    report("sync_hit", ours, floor);
    let (mut ours, mut floor) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let k = format!("{prefix}miss:{i}");
        floor.push(time(|| {
            let v: Option<String> = redis::cmd("SET")
                .arg(&k)
                .arg("v")
                .arg("NX")
                .arg("PX")
                .arg(60_000)
                .query(&mut plain)
                .unwrap();
            v
        }));
        let c = call("sync-miss", i);
        ours.push(time(|| m.execute_sync(&c, || 1_u64).unwrap()));
    }
    report("sync_miss", ours, floor);

    // Async, on a current-thread runtime: the plain client is a multiplexed connection driven
    // by the same runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut mux = client.get_multiplexed_async_connection().await.unwrap();
        for _ in 0..200 {
            m.execute(&hit, || async { 1_u64 }).await.unwrap();
        }
        let (mut ours, mut floor) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            floor.push(
                time_async(async {
                    let v: Vec<u8> = redis::cmd("GET")
                        .arg(&plain_key)
                        .query_async(&mut mux)
                        .await
                        .unwrap();
                    v
                })
                .await,
            );
            ours.push(
                time_async(async { m.execute(&hit, || async { 1_u64 }).await.unwrap() }).await,
            );
        }
        report("async_hit", ours, floor);
        let (mut ours, mut floor) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            let k = format!("{prefix}amiss:{i}");
            floor.push(
                time_async(async {
                    let v: Option<String> = redis::cmd("SET")
                        .arg(&k)
                        .arg("v")
                        .arg("NX")
                        .arg("PX")
                        .arg(60_000)
                        .query_async(&mut mux)
                        .await
                        .unwrap();
                    v
                })
                .await,
            );
            let c = call("async-miss", i);
            ours.push(time_async(async { m.execute(&c, || async { 1_u64 }).await.unwrap() }).await);
        }
        report("async_miss", ours, floor);
    });

    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        let _ = h.join();
    }
    // Clean up this run's keys.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut plain)
        .unwrap_or_default();
    for chunk in keys.chunks(500) {
        let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(chunk).query(&mut plain);
    }
}
