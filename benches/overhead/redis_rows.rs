//! The Redis rows. Floors are a plain `redis` client on the caller's thread: a sync
//! `redis::Connection`, and a multiplexed async connection driven by the caller's own
//! (current-thread) runtime. Each floor is interleaved call by call with the store's path it
//! bounds: hit against `GET`, miss (claim + complete) against `SET NX PX`, sync and async; the
//! sync hit again while CPU hogs started here keep every other core busy; and throughput at 64
//! tasks (hits against raw `GET`s, misses against raw `SET`s, on one plain multiplexed
//! connection).

use std::hint::black_box;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use idempotency::IdempotencyManager;
use idempotency_redis::RedisStorage;
use redis::aio::MultiplexedConnection;
use tokio::runtime::Runtime;

use crate::harness::Report;
use crate::paths::{args, call_for, receipt};

/// Every ratio of these rows (printed as skipped when there is no Redis).
const RATIOS: &[&str] = &[
    "redis_claim_pipeline_sync_per_get",
    "redis_hit_sync_per_get",
    "redis_claim_pipeline_async_per_get",
    "redis_hit_async_per_get",
    "redis_two_round_trips_sync_per_set_nx",
    "redis_claim_and_script_sync_per_set_nx",
    "redis_miss_sync_per_set_nx",
    "redis_two_round_trips_async_per_set_nx",
    "redis_miss_async_per_set_nx",
    "redis_hit_busy_per_get",
    // The 64-task rows' ratios, from `THROUGHPUT` on.
    "redis_claim_pipeline_64_tasks_per_raw_get",
    "redis_hits_64_tasks_per_raw_get",
    "redis_two_round_trips_64_tasks_per_raw_set",
    "redis_misses_64_tasks_per_raw_set",
];

/// Where the 64-task rows' ratios start in [`RATIOS`].
const THROUGHPUT: usize = 10;

/// A Redis the bench talks to: `IDEMPOTENCY_REDIS_URL`, or a `redis-server` it started.
struct Server {
    url: String,
    child: Option<Child>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn server() -> Result<Server, String> {
    if let Ok(url) = std::env::var("IDEMPOTENCY_REDIS_URL") {
        return Ok(Server { url, child: None });
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!("IDEMPOTENCY_REDIS_URL is not set and redis-server could not start: {e}")
        })?;
    let s = Server {
        url: format!("redis://127.0.0.1:{port}/"),
        child: Some(child),
    };
    // Readiness: poll until the server accepts a connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("redis-server did not start".into());
        }
        std::thread::yield_now();
    }
    Ok(s)
}

/// The plain clients of the floors.
struct Plain {
    client: redis::Client,
    sync: redis::Connection,
    /// The caller's runtime: current-thread, driven by the bench thread in `block_on`.
    rt: Runtime,
    multiplexed: MultiplexedConnection,
}

fn plain(url: &str) -> Result<Plain, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let sync = client.get_connection().map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let multiplexed = rt
        .block_on(client.get_multiplexed_async_connection())
        .map_err(|e| e.to_string())?;
    Ok(Plain {
        client,
        sync,
        rt,
        multiplexed,
    })
}

/// The bytes of a pending value the claim fast path writes (its fixed part and a body holding
/// a key of the bench's length): what the design floor rows send.
const CLAIM_VALUE_BYTES: usize = 182;

/// What a hit sends, on a plain client: `TIME` and `SET key value NX PX ms GET` in one
/// pipeline (the claim fast path), on a key that exists, so the `SET` only returns its value.
/// The least any design that claims and replays in one round trip sends.
fn claim_pipeline(key: &str) -> redis::Pipeline {
    let mut p = redis::pipe();
    p.cmd("TIME")
        .cmd("SET")
        .arg(key)
        .arg(vec![0_u8; CLAIM_VALUE_BYTES])
        .arg("NX")
        .arg("PX")
        .arg(60_000)
        .arg("GET");
    p
}

/// `SET key <100 bytes> <condition> PX 60000` on a plain client: `NX` is the claim of a first
/// run, `XX` its second round trip (the key's value replaced). The two in turn are the least any
/// design that claims before it runs and records after costs: two round trips.
fn set_px(key: String, condition: &str) -> redis::Cmd {
    redis::cmd("SET")
        .arg(key)
        .arg(vec![0_u8; 100])
        .arg(condition)
        .arg("PX")
        .arg(60_000)
        .clone()
}

/// The replies of [`claim_pipeline`]: `TIME` and the `SET`'s previous value.
type ClaimReply = ((u64, u64), Option<Vec<u8>>);

/// The least a fenced completion by a Lua script does (Redis 7 has no conditional `SET`): read
/// the value, compare the holder's 32 bytes, read Redis's clock, write the finished value until
/// `TIME + ttl`. No layout check, no `created` resolved, no result compared: what remains of
/// `finish.lua` once every guard and field but the fence is taken out.
const FENCED_SET_SKELETON: &str = "local cur = redis.call('GET', KEYS[1])
if not cur or string.sub(cur, 1, 32) ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[3], 'PXAT', until_ms)
return until_ms";

/// The bytes of the finished value [`FENCED_SET_SKELETON`] writes (a record's fixed part and
/// the bench's key and result).
const FINISHED_VALUE_BYTES: usize = 204;

pub fn run(r: &mut Report) {
    let server = match server() {
        Ok(s) => s,
        Err(e) => return r.skip(RATIOS, format!("Redis rows SKIPPED: {e}")),
    };
    let mut p = match plain(&server.url) {
        Ok(p) => p,
        Err(e) => {
            return r.skip(
                RATIOS,
                format!("Redis rows SKIPPED: cannot connect to {}: {e}", server.url),
            )
        }
    };
    let prefix = format!("bench:{}:", uuid::Uuid::new_v4().simple());
    let probe = format!("{prefix}floor");
    let set: redis::RedisResult<()> = redis::cmd("SET")
        .arg(&probe)
        .arg(vec![0_u8; 100])
        .query(&mut p.sync);
    if let Err(e) = set {
        return r.skip(RATIOS, format!("Redis rows SKIPPED: {e}"));
    }
    let store = match RedisStorage::builder(server.url.clone())
        .prefix(prefix.clone())
        .open()
    {
        Ok(s) => s,
        Err(e) => return r.skip(RATIOS, format!("Redis rows SKIPPED: {e}")),
    };
    let m = IdempotencyManager::new(store);
    let a = args(1);
    if let Err(e) = m.execute_sync(&call_for("bench::redis", &a), receipt) {
        return r.skip(RATIOS, format!("Redis rows SKIPPED: {e}"));
    }
    latency(r, &mut p, &m, &prefix, &probe);
    busy(r, &mut p, &m, &probe);
    throughput(r, &p, &m, &prefix, &probe);
    // Leave nothing behind on a shared server.
    let mut cursor = 0_u64;
    loop {
        let page: redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query(&mut p.sync);
        let Ok((next, keys)) = page else { break };
        if !keys.is_empty() {
            let _: redis::RedisResult<u64> = redis::cmd("DEL").arg(keys).query(&mut p.sync);
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    drop(server);
}

/// Hits and misses, sync and async, each interleaved call by call with its floor.
fn latency(r: &mut Report, p: &mut Plain, m: &IdempotencyManager, prefix: &str, probe: &str) {
    let a = args(1);
    let Plain {
        sync,
        rt,
        multiplexed,
        ..
    } = p;
    let claim_probe = format!("{probe}:claim");
    let put: redis::RedisResult<()> = redis::cmd("SET")
        .arg(&claim_probe)
        .arg(vec![2_u8; CLAIM_VALUE_BYTES])
        .query(sync);
    black_box(put.ok());
    let hit_pipeline = claim_pipeline(&claim_probe);
    // One connection, shared by the rows of a group in turn.
    let sync = std::cell::RefCell::new(sync);
    r.interleaved(
        "redis",
        1,
        &mut [
            ("redis GET, plain sync client", None, &mut || {
                let v: redis::RedisResult<Option<Vec<u8>>> =
                    redis::cmd("GET").arg(probe).query(&mut **sync.borrow_mut());
                black_box(v.ok());
            }),
            (
                "redis claim pipeline, plain sync client",
                Some((
                    "redis_claim_pipeline_sync_per_get",
                    "redis GET, plain sync client",
                )),
                &mut || {
                    let v: redis::RedisResult<redis::Value> =
                        hit_pipeline.query(&mut **sync.borrow_mut());
                    black_box(v.ok());
                },
            ),
            (
                "redis hit, sync",
                Some(("redis_hit_sync_per_get", "redis GET, plain sync client")),
                &mut || {
                    let c = call_for("bench::redis", black_box(&a));
                    black_box(m.execute_sync(&c, receipt).ok());
                },
            ),
        ],
    );
    r.interleaved(
        "redis",
        1,
        &mut [
            ("redis GET, plain async client", None, &mut || {
                let mut conn = multiplexed.clone();
                let v: redis::RedisResult<Option<Vec<u8>>> =
                    rt.block_on(redis::cmd("GET").arg(probe).query_async(&mut conn));
                black_box(v.ok());
            }),
            (
                "redis claim pipeline, plain async client",
                Some((
                    "redis_claim_pipeline_async_per_get",
                    "redis GET, plain async client",
                )),
                &mut || {
                    let mut conn = multiplexed.clone();
                    let v: redis::RedisResult<redis::Value> =
                        rt.block_on(hit_pipeline.query_async(&mut conn));
                    black_box(v.ok());
                },
            ),
            (
                "redis hit, async",
                Some(("redis_hit_async_per_get", "redis GET, plain async client")),
                &mut || {
                    let c = call_for("bench::redis", black_box(&a));
                    black_box(rt.block_on(m.execute(&c, || async { receipt() })).ok());
                },
            ),
        ],
    );
    let n = AtomicU64::new(0);
    let fresh = || format!("{prefix}nx:{}", n.fetch_add(1, Ordering::Relaxed));
    let next = AtomicU64::new(1_000_000);
    let fresh_call = || call_for("bench::redis", &args(next.fetch_add(1, Ordering::Relaxed)));
    let skeleton = redis::Script::new(FENCED_SET_SKELETON);
    r.interleaved(
        "redis",
        1,
        &mut [
            ("redis SET NX PX, plain sync client", None, &mut || {
                let v: redis::RedisResult<Option<String>> =
                    set_px(fresh(), "NX").query(&mut **sync.borrow_mut());
                black_box(v.ok());
            }),
            (
                "redis SET NX PX + SET XX PX, plain sync client",
                Some((
                    "redis_two_round_trips_sync_per_set_nx",
                    "redis SET NX PX, plain sync client",
                )),
                &mut || {
                    let key = fresh();
                    let v: redis::RedisResult<Option<String>> =
                        set_px(key.clone(), "NX").query(&mut **sync.borrow_mut());
                    black_box(v.ok());
                    let v: redis::RedisResult<Option<String>> =
                        set_px(key, "XX").query(&mut **sync.borrow_mut());
                    black_box(v.ok());
                },
            ),
            (
                "redis claim pipeline + script SET (skeleton), plain sync client",
                Some((
                    "redis_claim_and_script_sync_per_set_nx",
                    "redis SET NX PX, plain sync client",
                )),
                &mut || {
                    let key = fresh();
                    let mut conn = sync.borrow_mut();
                    let v: redis::RedisResult<ClaimReply> = claim_pipeline(&key).query(&mut **conn);
                    black_box(v.ok());
                    let v: redis::RedisResult<u64> = skeleton
                        .key(key)
                        .arg(&[0_u8; 32][..])
                        .arg(3_600_000)
                        .arg(&[3_u8; FINISHED_VALUE_BYTES][..])
                        .invoke(&mut **conn);
                    black_box(v.ok());
                },
            ),
            (
                "redis miss, sync (claim + complete)",
                Some((
                    "redis_miss_sync_per_set_nx",
                    "redis SET NX PX, plain sync client",
                )),
                &mut || {
                    black_box(m.execute_sync(&fresh_call(), receipt).ok());
                },
            ),
        ],
    );
    r.interleaved(
        "redis",
        1,
        &mut [
            ("redis SET NX PX, plain async client", None, &mut || {
                let mut conn = multiplexed.clone();
                let v: redis::RedisResult<Option<String>> =
                    rt.block_on(set_px(fresh(), "NX").query_async(&mut conn));
                black_box(v.ok());
            }),
            (
                "redis SET NX PX + SET XX PX, plain async client",
                Some((
                    "redis_two_round_trips_async_per_set_nx",
                    "redis SET NX PX, plain async client",
                )),
                &mut || {
                    let mut conn = multiplexed.clone();
                    let key = fresh();
                    let v: redis::RedisResult<Option<String>> = rt.block_on(async {
                        let _: Option<String> =
                            set_px(key.clone(), "NX").query_async(&mut conn).await?;
                        set_px(key, "XX").query_async(&mut conn).await
                    });
                    black_box(v.ok());
                },
            ),
            (
                "redis miss, async (claim + complete)",
                Some((
                    "redis_miss_async_per_set_nx",
                    "redis SET NX PX, plain async client",
                )),
                &mut || {
                    let c = fresh_call();
                    black_box(rt.block_on(m.execute(&c, || async { receipt() })).ok());
                },
            ),
        ],
    );
}

/// Spins on every core but one until dropped: the other cores are busy, as when a build runs
/// next to the service.
struct Hogs {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Hogs {
    fn start() -> Hogs {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..cores.saturating_sub(1).max(1))
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut x = 1_u64;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..10_000 {
                            x = black_box(
                                x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1),
                            );
                        }
                    }
                })
            })
            .collect();
        Hogs { stop, threads }
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The sync hit with the other cores busy, interleaved call by call with the plain sync `GET`
/// in the same conditions.
fn busy(r: &mut Report, p: &mut Plain, m: &IdempotencyManager, probe: &str) {
    let a = args(1);
    let sync = &mut p.sync;
    let hogs = Hogs::start();
    r.note(format!(
        "busy rows: {} CPU hog thread(s) running",
        hogs.threads.len()
    ));
    r.interleaved(
        "redis busy",
        1,
        &mut [
            (
                "redis GET, plain sync client, cores busy",
                None,
                &mut || {
                    let v: redis::RedisResult<Option<Vec<u8>>> =
                        redis::cmd("GET").arg(probe).query(sync);
                    black_box(v.ok());
                },
            ),
            (
                "redis hit, sync, cores busy",
                Some((
                    "redis_hit_busy_per_get",
                    "redis GET, plain sync client, cores busy",
                )),
                &mut || {
                    let c = call_for("bench::redis", black_box(&a));
                    black_box(m.execute_sync(&c, receipt).ok());
                },
            ),
        ],
    );
    drop(hogs);
}

/// 64 tasks on a 2-worker runtime: raw `GET`s and `SET`s on one plain multiplexed connection,
/// against the store's hits and misses through the async API.
fn throughput(r: &mut Report, p: &Plain, m: &IdempotencyManager, prefix: &str, probe: &str) {
    const TASKS: u64 = 64;
    // About a second a row for the slowest (misses), so that one scheduling hiccup does not
    // decide a row; `--quick` keeps them short.
    let per_task: u64 = if r.quick { 50 } else { 1000 };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return r.skip(
                &RATIOS[THROUGHPUT..],
                format!("Redis throughput rows SKIPPED: {e}"),
            )
        }
    };
    let conn = match rt.block_on(p.client.get_multiplexed_async_connection()) {
        Ok(c) => c,
        Err(e) => {
            return r.skip(
                &RATIOS[THROUGHPUT..],
                format!("Redis throughput rows SKIPPED: {e}"),
            )
        }
    };
    // Where each row's time goes: CPU per operation of this process and of the server (when it
    // runs on this machine), since both share the same cores.
    let server_pid = server_pid(&p.client);
    let mut cpu = Cpu {
        server_pid,
        notes: Vec::new(),
    };
    let (c, probe_key) = (conn.clone(), probe.to_owned());
    let raw_get = cpu.measure("redis raw GET, 64 tasks", TASKS * per_task, || {
        run_tasks(&rt, TASKS, per_task, move |_, _| {
            let (mut c, probe) = (c.clone(), probe_key.clone());
            async move {
                let _: redis::RedisResult<Option<Vec<u8>>> =
                    redis::cmd("GET").arg(probe).query_async(&mut c).await;
            }
        })
    });
    r.throughput("redis 64 tasks", "redis raw GET, 64 tasks", raw_get, None);
    let claim_probe = format!("{probe}:claim");
    let c = conn.clone();
    let raw_claim = cpu.measure(
        "redis raw claim pipeline, 64 tasks",
        TASKS * per_task,
        || {
            run_tasks(&rt, TASKS, per_task, move |_, _| {
                let (mut c, pipe) = (c.clone(), claim_pipeline(&claim_probe));
                async move {
                    let _: redis::RedisResult<redis::Value> = pipe.query_async(&mut c).await;
                }
            })
        },
    );
    r.throughput(
        "redis 64 tasks",
        "redis raw claim pipeline, 64 tasks",
        raw_claim,
        Some((
            "redis_claim_pipeline_64_tasks_per_raw_get",
            "redis raw GET, 64 tasks",
        )),
    );
    let mm = m.clone();
    let ours_hit = cpu.measure("redis hits, 64 tasks", TASKS * per_task, || {
        run_tasks(&rt, TASKS, per_task, move |_, _| {
            let m = mm.clone();
            async move {
                let c = call_for("bench::redis", &args(1));
                let _ = m.execute(&c, || async { receipt() }).await;
            }
        })
    });
    r.throughput(
        "redis 64 tasks",
        "redis hits, 64 tasks",
        ours_hit,
        Some(("redis_hits_64_tasks_per_raw_get", "redis raw GET, 64 tasks")),
    );
    let (c, prefix_raw) = (conn.clone(), prefix.to_owned());
    let raw_set = cpu.measure("redis raw SET, 64 tasks", TASKS * per_task, || {
        run_tasks(&rt, TASKS, per_task, move |t, i| {
            let mut c = c.clone();
            let k = format!("{prefix_raw}raw:{t}:{i}");
            async move {
                let _: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(k)
                    .arg(vec![0_u8; 100])
                    .query_async(&mut c)
                    .await;
            }
        })
    });
    r.throughput("redis 64 tasks", "redis raw SET, 64 tasks", raw_set, None);
    let (c, prefix_two) = (conn.clone(), prefix.to_owned());
    let two = cpu.measure(
        "redis raw SET NX PX + SET XX PX, 64 tasks",
        TASKS * per_task,
        || {
            run_tasks(&rt, TASKS, per_task, move |t, i| {
                let mut c = c.clone();
                let k = format!("{prefix_two}two:{t}:{i}");
                async move {
                    let _: redis::RedisResult<Option<String>> =
                        set_px(k.clone(), "NX").query_async(&mut c).await;
                    let _: redis::RedisResult<Option<String>> =
                        set_px(k, "XX").query_async(&mut c).await;
                }
            })
        },
    );
    r.throughput(
        "redis 64 tasks",
        "redis raw SET NX PX + SET XX PX, 64 tasks",
        two,
        Some((
            "redis_two_round_trips_64_tasks_per_raw_set",
            "redis raw SET, 64 tasks",
        )),
    );
    let mm = m.clone();
    let ours_miss = cpu.measure("redis misses, 64 tasks", TASKS * per_task, || {
        run_tasks(&rt, TASKS, per_task, move |t, i| {
            let m = mm.clone();
            async move {
                let c = call_for("bench::redis-tp", &args(t * 1_000_000 + i));
                let _ = m.execute(&c, || async { receipt() }).await;
            }
        })
    });
    r.throughput(
        "redis 64 tasks",
        "redis misses, 64 tasks",
        ours_miss,
        Some((
            "redis_misses_64_tasks_per_raw_set",
            "redis raw SET, 64 tasks",
        )),
    );
    for n in cpu.notes {
        r.note(n);
    }
}

/// CPU time per operation of the throughput rows: this process's and the Redis server's.
struct Cpu {
    server_pid: Option<u32>,
    notes: Vec<String>,
}

impl Cpu {
    /// Runs `f` (which does `ops` operations) and notes the CPU time per operation it took.
    fn measure(&mut self, row: &str, ops: u64, f: impl FnOnce() -> f64) -> f64 {
        let (ours, server) = (cpu_ns(std::process::id()), self.server_pid.and_then(cpu_ns));
        let v = f();
        let per_op = |before: Option<u64>, after: Option<u64>| match (before, after) {
            (Some(b), Some(a)) => {
                format!("{:.2} µs", a.saturating_sub(b) as f64 / ops as f64 / 1e3)
            }
            _ => "unknown".into(),
        };
        let server_after = self.server_pid.and_then(cpu_ns);
        self.notes.push(format!(
            "{row}: CPU per operation: this process {}, Redis server {}",
            per_op(ours, cpu_ns(std::process::id())),
            per_op(server, server_after),
        ));
        v
    }
}

/// The CPU time of every thread of process `pid` so far, in ns (`/proc/<pid>/task/*/schedstat`,
/// Linux), or `None` where it cannot be read.
fn cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0_u64;
    for t in tasks.flatten() {
        // A thread that ended meanwhile has no file any more: it counts for nothing (the
        // rows' threads, the runtime's workers and Redis's, live through every row).
        let Ok(stat) = std::fs::read_to_string(t.path().join("schedstat")) else {
            continue;
        };
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// The Redis server's process id, when it runs on this machine (`INFO server`'s `process_id`
/// names a live local process whose name says redis).
fn server_pid(client: &redis::Client) -> Option<u32> {
    let mut conn = client.get_connection().ok()?;
    let info: String = redis::cmd("INFO").arg("server").query(&mut conn).ok()?;
    let pid: u32 = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))?
        .trim()
        .parse()
        .ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    comm.contains("redis").then_some(pid)
}

/// Runs `op(task, i)` for `i` in `0..per_task` in each of `tasks` tasks on `rt`; the operations
/// per second over the whole run.
fn run_tasks<F, Fut>(rt: &Runtime, tasks: u64, per_task: u64, op: F) -> f64
where
    F: Fn(u64, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let started = Instant::now();
    rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let op = op.clone();
                tokio::spawn(async move {
                    for i in 0..per_task {
                        op(t, i).await;
                    }
                })
            })
            .collect();
        for h in handles {
            let _ = h.await;
        }
    });
    (tasks * per_task) as f64 / started.elapsed().as_secs_f64()
}
