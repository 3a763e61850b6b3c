//! Measures the Redis store's dispatch path against a plain `redis` client on the caller's
//! thread, interleaved call by call (issue 17): the p50 of a replay (hit) through the manager
//! over the p50 of one plain `GET`, and of a first run (miss) over one plain `SET NX PX`, for
//! sync callers (`execute_sync`, a sync connection) and async ones (`execute` on a tokio
//! runtime, a multiplexed connection driven by that runtime); the allocations per sync hit;
//! and the throughput of 64 tasks against a plain multiplexed connection's. With `--busy`, a
//! CPU hog runs on every other core meanwhile; `--profile-hits` only runs 64 tasks replaying
//! (for `perf record`).
//!
//! ```text
//! cargo run --release -p idempotency-redis --example dispatch_probe -- [URL] [--busy] [--n N]
//!     [--profile-hits]
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

/// Counts allocations, to report how many each path makes.
struct Counting;

static ALLOCS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { std::alloc::System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (and reallocations) per call of `f`, over `n` calls.
fn allocs_per_call(n: u64, mut f: impl FnMut()) -> f64 {
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..n {
        f();
    }
    (ALLOCS.load(Ordering::Relaxed) - before) as f64 / n as f64
}

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

/// Operations per second of 64 tasks each running `per_task` operations `op(task, i)`.
async fn throughput<F, Fut>(per_task: usize, op: F) -> f64
where
    F: Fn(usize, usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let ops: Vec<Fut> = (0..per_task).map(|i| op(t, i)).collect();
            tokio::spawn(async move {
                for o in ops {
                    o.await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (64 * per_task) as f64 / start.elapsed().as_secs_f64()
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
    let m = IdempotencyManager::new(store.clone());
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut plain = client.get_connection().unwrap();
    let call = |s: &str, i: usize| Call::new(IdempotencyKey::derive("probe", 1, &(s, i)).unwrap());

    // Sync: hit and miss.
    let hit = call("hit", 0);
    m.execute_sync(&hit, || 1_u64).unwrap();
    if args.iter().any(|a| a == "--profile-hits") {
        // Only 64 tasks replaying, for a profiler.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            for _ in 0..20 {
                throughput(n, |_, _| {
                    let (m, hit) = (m.clone(), hit.clone());
                    async move {
                        m.execute(&hit, || async { 1_u64 }).await.unwrap();
                    }
                })
                .await;
            }
        });
        cleanup(&mut plain, &prefix);
        return;
    }
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
    println!(
        "allocs       sync hit {:.1} per call, plain sync GET {:.1}",
        allocs_per_call(500, || {
            m.execute_sync(&hit, || 1_u64).unwrap();
        }),
        allocs_per_call(500, || {
            let _: Vec<u8> = redis::cmd("GET").arg(&plain_key).query(&mut plain).unwrap();
        })
    );
    {
        use idempotency_core::Storage;
        let req = idempotency_core::ClaimRequest {
            execution_id: uuid::Uuid::new_v4(),
            fingerprint: idempotency_core::Fingerprint([0; 32]),
            lease: Duration::from_secs(30),
            refresh: false,
        };
        println!(
            "allocs       store try_claim (hit) {:.1} per call",
            allocs_per_call(500, || {
                idempotency_core::block_on(store.try_claim(&hit.key, &req)).unwrap();
            })
        );
    }
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

    // 64 tasks at once on a multi-thread runtime: throughput against the plain multiplexed
    // connection, alternating rounds.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mux = client.get_multiplexed_async_connection().await.unwrap();
        let per_task = (n / 64).max(20);
        let (mut ours_hit, mut plain_get, mut ours_miss, mut plain_set) = (0.0, 0.0, 0.0, 0.0);
        for round in 0..3_usize {
            plain_get += throughput(per_task, |_, _| {
                let (mut mux, key) = (mux.clone(), plain_key.clone());
                async move {
                    let _: Vec<u8> = redis::cmd("GET").arg(&key).query_async(&mut mux).await.unwrap();
                }
            })
            .await;
            ours_hit += throughput(per_task, |_, _| {
                let (m, hit) = (m.clone(), hit.clone());
                async move {
                    m.execute(&hit, || async { 1_u64 }).await.unwrap();
                }
            })
            .await;
            plain_set += throughput(per_task, |t, i| {
                let (mut mux, key) = (mux.clone(), format!("{prefix}tset:{round}:{t}:{i}"));
                async move {
                    let _: Option<String> = redis::cmd("SET")
                        .arg(&key)
                        .arg("v")
                        .arg("NX")
                        .arg("PX")
                        .arg(60_000)
                        .query_async(&mut mux)
                        .await
                        .unwrap();
                }
            })
            .await;
            ours_miss += throughput(per_task, |t, i| {
                let m = m.clone();
                let c = call("tmiss", round * 1_000_000 + t * 10_000 + i);
                async move {
                    m.execute(&c, || async { 1_u64 }).await.unwrap();
                }
            })
            .await;
        }
        println!(
            "tasks64      hits {:>8.0}/s   plain GET {:>8.0}/s   misses {:>8.0}/s   plain SET {:>8.0}/s",
            ours_hit / 3.0,
            plain_get / 3.0,
            ours_miss / 3.0,
            plain_set / 3.0
        );
        println!("ratio tasks64_hit_throughput {:.3}", ours_hit / plain_get);
        println!("ratio tasks64_miss_throughput {:.3}", ours_miss / plain_set);
    });

    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        let _ = h.join();
    }
    cleanup(&mut plain, &prefix);
}

/// Deletes this run's keys (all under its own random prefix, which has no glob characters).
fn cleanup(plain: &mut redis::Connection, prefix: &str) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(plain)
        .unwrap_or_default();
    for chunk in keys.chunks(500) {
        let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(chunk).query(plain);
    }
}
