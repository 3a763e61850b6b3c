//! The Redis rows: floors (one GET, one `SET NX PX` round trip) on the store's own client type
//! and dispatch path, the store's hit and miss, and throughput at 64 concurrent tasks.

use std::hint::black_box;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use idempotency::IdempotencyManager;
use idempotency_redis::RedisStorage;
use redis::aio::ConnectionManager;
use tokio::runtime::{Handle, Runtime};

use crate::harness::Report;
use crate::paths::{args, call_for, receipt};

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

/// The floor client: a `ConnectionManager` driven by a current-thread runtime on its own
/// thread, each command a task spawned there and awaited from the caller, as the store does.
struct Floor {
    _rt: Arc<Runtime>,
    handle: Handle,
    conn: ConnectionManager,
}

fn floor_client(url: &str) -> Result<Floor, String> {
    let rt = Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?,
    );
    let handle = rt.handle().clone();
    let driver = Arc::clone(&rt);
    std::thread::spawn(move || driver.block_on(std::future::pending::<()>()));
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let conn =
        idempotency::block_on(handle.spawn(async move { ConnectionManager::new(client).await }))
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    Ok(Floor {
        _rt: rt,
        handle,
        conn,
    })
}

impl Floor {
    fn run<T: redis::FromRedisValue + Send + 'static>(&self, cmd: redis::Cmd) -> Option<T> {
        let mut conn = self.conn.clone();
        idempotency::block_on(
            self.handle
                .spawn(async move { cmd.query_async::<T>(&mut conn).await }),
        )
        .ok()
        .and_then(Result::ok)
    }
}

pub fn run(r: &mut Report) {
    let server = match server() {
        Ok(s) => s,
        Err(e) => return r.note(format!("Redis rows skipped: {e}")),
    };
    let floor = match floor_client(&server.url) {
        Ok(f) => f,
        Err(e) => {
            return r.note(format!(
                "Redis rows skipped: cannot connect to {}: {e}",
                server.url
            ))
        }
    };
    let prefix = format!("bench:{}:", uuid::Uuid::new_v4().simple());
    let probe = format!("{prefix}floor");
    let _: Option<()> = floor.run(redis::cmd("SET").arg(&probe).arg(vec![0_u8; 100]).clone());
    r.measure("floor", "redis GET round trip", 1, None, || {
        black_box(floor.run::<Option<Vec<u8>>>(redis::cmd("GET").arg(&probe).clone()));
    });
    let n = AtomicU64::new(0);
    r.measure("floor", "redis SET NX PX round trip", 1, None, || {
        let k = format!("{prefix}nx:{}", n.fetch_add(1, Ordering::Relaxed));
        let cmd = redis::cmd("SET")
            .arg(k)
            .arg(vec![0_u8; 100])
            .arg("NX")
            .arg("PX")
            .arg(60_000)
            .clone();
        black_box(floor.run::<Option<String>>(cmd));
    });

    let store = match RedisStorage::builder(server.url.clone())
        .prefix(prefix.clone())
        .open()
    {
        Ok(s) => s,
        Err(e) => return r.note(format!("Redis rows skipped: {e}")),
    };
    let m = IdempotencyManager::new(store);
    let a = args(1);
    if let Err(e) = m.execute_sync(&call_for("bench::redis", &a), receipt) {
        return r.note(format!("Redis rows skipped: {e}"));
    }
    r.measure(
        "redis",
        "redis hit",
        1,
        Some(("redis_hit_per_rtt", "redis GET round trip")),
        || {
            let c = call_for("bench::redis", black_box(&a));
            black_box(m.execute_sync(&c, receipt).ok());
        },
    );
    let next = AtomicU64::new(1_000_000);
    r.measure(
        "redis",
        "redis miss (claim + complete)",
        1,
        Some(("redis_miss_per_rtt", "redis SET NX PX round trip")),
        || {
            let c = call_for("bench::redis", &args(next.fetch_add(1, Ordering::Relaxed)));
            black_box(m.execute_sync(&c, receipt).ok());
        },
    );
    throughput(r, &floor, &m, &prefix);
    // Leave nothing behind on a shared server.
    let mut cursor = 0_u64;
    loop {
        let page: Option<(u64, Vec<String>)> = floor.run(
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000)
                .clone(),
        );
        let Some((next, keys)) = page else { break };
        if !keys.is_empty() {
            let _: Option<u64> = floor.run(redis::cmd("DEL").arg(keys).clone());
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    drop(server);
}

fn throughput(r: &mut Report, floor: &Floor, m: &IdempotencyManager, prefix: &str) {
    const TASKS: u64 = 64;
    let per_task: u64 = if r.quick { 100 } else { 500 };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return r.note(format!("throughput skipped: {e}")),
    };
    // Raw SET with the same client type, 64 concurrent tasks.
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let mut conn = floor.conn.clone();
            let prefix = prefix.to_owned();
            tasks.push(tokio::spawn(async move {
                for i in 0..per_task {
                    let k = format!("{prefix}raw:{t}:{i}");
                    let _: redis::RedisResult<()> = redis::cmd("SET")
                        .arg(k)
                        .arg(vec![0_u8; 100])
                        .query_async(&mut conn)
                        .await;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let raw = (TASKS * per_task) as f64 / started.elapsed().as_secs_f64();
    r.throughput("floor", "redis raw SET, 64 tasks", raw, None);
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let m = m.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..per_task {
                    let c = call_for("bench::redis-tp", &args(t * 1_000_000 + i));
                    let _ = m.execute(&c, || async { receipt() }).await;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let ours = (TASKS * per_task) as f64 / started.elapsed().as_secs_f64();
    r.throughput(
        "redis",
        "redis miss, 64 tasks",
        ours,
        Some(("redis_throughput_per_raw_set", "redis raw SET, 64 tasks")),
    );
}
