//! Finding or starting a Redis, and the conformance-kit harness over it.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use idempotency::{DynStorage, IdempotencyKey, RedisStorage};
use idempotency_core::testing::Harness;
use idempotency_redis::redis;

pub const URL_ENV: &str = "IDEMPOTENCY_REDIS_URL";
pub const REQUIRE_ENV: &str = "IDEMPOTENCY_REQUIRE_REDIS";

/// Skips (or, with `IDEMPOTENCY_REQUIRE_REDIS=1`, fails) a test that has no Redis.
pub fn skip(test: &str, why: &str) {
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!("{test}: Redis required ({REQUIRE_ENV}=1) but {why}");
    }
    eprintln!("\n!!!!! SKIPPED {test}: {why}; set {URL_ENV} or put redis-server on PATH !!!!!\n");
}

pub fn has_redis_server() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A fresh directory for a server's files (a cluster's node configs), under cargo's per-target
/// temporary directory rather than `/tmp`, where a static server's directory would be left.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("idem-redis-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A `redis-server` child on a loopback port, killed when dropped. It runs under a shell that
/// also kills it when this process's end of its stdin closes, so a server never outlives the
/// test process (even one held in a `static`).
pub struct Server {
    child: Child,
    _stdin: ChildStdin,
    pub port: u16,
    args: Vec<String>,
}

impl Server {
    /// Starts a server without persistence.
    pub fn start() -> Server {
        Self::start_with(free_port(), &["--save", "", "--appendonly", "no"])
    }

    /// Starts a server on `port` with extra arguments; returns once it accepts connections.
    pub fn start_with(port: u16, extra: &[&str]) -> Server {
        let mut args: Vec<String> = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--daemonize".into(),
            "no".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn(port, args)
    }

    fn spawn(port: u16, args: Vec<String>) -> Server {
        let quoted: Vec<String> = args
            .iter()
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect();
        let script = format!(
            "redis-server {} & pid=$!; read _; kill -9 $pid 2>/dev/null",
            quoted.join(" ")
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn redis-server");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut log = Vec::new();
        loop {
            match lines.next() {
                Some(Ok(line)) => {
                    let ready = line.contains("Ready to accept connections");
                    log.push(line);
                    if ready {
                        break;
                    }
                }
                _ => panic!(
                    "redis-server on port {port} did not start:\n{}",
                    log.join("\n")
                ),
            }
        }
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            _stdin: stdin,
            port,
            args,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL, through its watchdog shell) and waits for the port to close.
    pub fn stop(mut self) -> (u16, Vec<String>) {
        self.kill();
        (self.port, std::mem::take(&mut self.args))
    }

    fn kill(&mut self) {
        let _ = self._stdin.write_all(b"\n");
        let _ = self._stdin.flush();
        let _ = self.child.wait();
    }

    /// Starts a stopped server again with the same port and arguments.
    pub fn restart((port, args): (u16, Vec<String>)) -> Server {
        Self::spawn(port, args)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis to test against: the configured URL, or an own server.
pub struct Target {
    pub url: String,
    pub server: Option<Server>,
}

impl Target {
    /// `IDEMPOTENCY_REDIS_URL`, else a fresh `redis-server`, else `None` (after `skip`).
    pub fn get(test: &str) -> Option<Target> {
        if let Ok(url) = std::env::var(URL_ENV) {
            if !url.trim().is_empty() {
                return Some(Target { url, server: None });
            }
        }
        if has_redis_server() {
            let server = Server::start();
            return Some(Target {
                url: server.url(),
                server: Some(server),
            });
        }
        skip(
            test,
            "no Redis is configured and redis-server is not on PATH",
        );
        None
    }

    pub fn sync_connection(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str())
            .and_then(|c| c.get_connection())
            .expect("sync Redis connection")
    }
}

/// A unique key prefix for `test`: its name plus a random suffix (no glob characters).
pub fn unique_prefix(test: &str) -> String {
    let name: String = test
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("idem-test:{name}:{}:", uuid::Uuid::new_v4().simple())
}

/// The name of the running test (libtest names its threads after the test).
pub fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_owned()
}

/// Deletes every key under `prefix` (SCAN with the prefix, which has no glob characters).
pub fn cleanup(conn: &mut redis::Connection, prefix: &str) {
    let keys: Vec<String> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg(format!("{prefix}*"))
        .arg("COUNT")
        .arg(1000)
        .clone()
        .iter(conn)
        .map(|it| it.filter_map(|k| k.ok()).collect())
        .unwrap_or_default();
    for k in keys {
        let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(k).query(conn);
    }
}

/// The conformance-kit harness: a store under a unique prefix; time passes for real.
pub struct RedisHarness {
    pub target: Target,
    pub store: RedisStorage,
    pub prefix: String,
}

impl RedisHarness {
    pub fn new() -> Option<RedisHarness> {
        let test = test_name();
        let target = Target::get(&test)?;
        let prefix = unique_prefix(&test);
        let store = RedisStorage::builder(target.url.clone())
            .prefix(prefix.clone())
            .open()
            .expect("open the Redis store");
        Some(RedisHarness {
            target,
            store,
            prefix,
        })
    }
}

impl Drop for RedisHarness {
    fn drop(&mut self) {
        if self.target.server.is_none() {
            if let Ok(mut c) =
                redis::Client::open(self.target.url.as_str()).and_then(|c| c.get_connection())
            {
                cleanup(&mut c, &self.prefix);
            }
        }
    }
}

impl Harness for RedisHarness {
    fn store(&self) -> Arc<dyn DynStorage> {
        Arc::new(self.store.clone())
    }
    async fn advance(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
    async fn write_raw(&self, key: &IdempotencyKey, bytes: &[u8]) -> bool {
        let mut conn = self.target.sync_connection();
        // One string per record (the store's layout): overwrite the value (the test deletes
        // the key, or the cleanup does).
        let ok: String = redis::cmd("SET")
            .arg(self.store.record_key(key))
            .arg(bytes)
            .query(&mut conn)
            .expect("SET the raw value");
        ok == "OK"
    }
}
