//! `RedisStorage`: the `Storage` implementation, its background runtime and its connection.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use idempotency_core::{
    Claim, ClaimRequest, Error, Fingerprint, IdempotencyKey, Observed, Owner, Page, Record,
    RecordError, RecordStatus, Result, Storage, StorageAdmin, Timestamp,
};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, RedisError, RedisFuture, RedisResult, Value};
use sha2::{Digest, Sha256};
use tokio::runtime::Handle;

use crate::config::RedisConfig;
use crate::error::Target;
use crate::reply;
use crate::scripts::{self, CLAIM_SCRIPT, FINISH_SCRIPT, GET_SCRIPT, RELEASE_SCRIPT, RENEW_SCRIPT};

/// The Redis store: records live in Redis (or a Redis Cluster), one string per record; a claim
/// is one pipelined `TIME` + `SET NX PX GET` (falling back to a script when it meets a pending
/// record), and every other state transition is one Lua script run atomically by Redis on
/// Redis's clock.
///
/// See the [crate documentation](crate) for the data layout, the scripts and the guarantees.
/// Clones share one connection (and one background thread); [`prefix`](Self::prefix) gives a
/// clone in another namespace.
///
/// The store's futures can be driven by any executor or by [`idempotency_core::block_on`] on
/// any thread, inside or outside a tokio runtime: the connection lives on a dedicated thread
/// running its own single-threaded tokio runtime, and each call is a task spawned there whose
/// reply is awaited. Dropping the last clone stops that thread (never blocking the caller).
#[derive(Clone)]
pub struct RedisStorage {
    pub(crate) inner: Arc<Inner>,
    pub(crate) prefix: Arc<str>,
    fence_retention_ms: u64,
}

pub(crate) struct Inner {
    pub(crate) handle: Worker,
    pub(crate) conn: Conn,
    pub(crate) target: String,
    // Dropped with the last clone: ends the background thread's `block_on`.
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStorage")
            .field("target", &self.inner.target)
            .field("prefix", &self.prefix)
            .field("fence_retention_ms", &self.fence_retention_ms)
            .finish_non_exhaustive()
    }
}

/// The connection: a single server through a reconnecting `ConnectionManager`, or a cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Starts the background thread and its runtime; returns the runtime's handle and the
/// shutdown sender.
fn start_worker() -> Result<(Handle, tokio::sync::oneshot::Sender<()>)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::storage("start", e))?;
    let handle = runtime.handle().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("idempotency-redis".into())
        .spawn(move || {
            runtime.block_on(async move {
                let _ = rx.await;
            });
        })
        .map_err(|e| Error::storage("start", e))?;
    Ok((handle, tx))
}

/// The background runtime's handle and the server its connection goes to (for the messages
/// of [`Error::Storage`]).
pub(crate) struct Worker {
    handle: Handle,
    target: Target,
}

impl std::ops::Deref for Worker {
    type Target = Handle;
    fn deref(&self) -> &Handle {
        &self.handle
    }
}

/// Runs `fut` on the background runtime and waits for it from any executor. A Redis error
/// becomes [`Error::Storage`] for `operation`, naming the server and the class of the cause.
pub(crate) async fn run_on<T: Send + 'static>(
    worker: &Worker,
    operation: &'static str,
    fut: impl Future<Output = RedisResult<T>> + Send + 'static,
) -> Result<T> {
    // Polled on the caller's thread inside the background runtime's context: the connection's
    // I/O and timers are driven by the background thread, and no task is spawned per call.
    InRuntime {
        handle: &worker.handle,
        fut: Box::pin(fut),
    }
    .await
    .map_err(|e| worker.target.error(operation, e))
}

/// A future polled with `handle`'s runtime entered, so code that needs a tokio context
/// (timers, the connection manager's reconnection task) works under any executor, including
/// `idempotency_core::block_on` on a plain thread.
struct InRuntime<'h, F> {
    handle: &'h Handle,
    fut: std::pin::Pin<Box<F>>,
}

impl<F: Future> Future for InRuntime<'_, F> {
    type Output = F::Output;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.get_mut();
        let _entered = this.handle.enter();
        this.fut.as_mut().poll(cx)
    }
}

/// The longest TTL or lease the store keeps, in ms (about 31 700 years; longer ones, up to
/// `Duration::MAX`, are kept this long). Times in a value are 16 decimal digits and the
/// scripts add them in Lua numbers (doubles, exact below 2^53), and Redis refuses an expiry
/// past `i64::MAX` ms: `now + MAX_MILLIS` stays well inside all three.
const MAX_MILLIS: u64 = 1_000_000_000_000_000;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_MILLIS)
}

/// Whether a claim that failed with `e` may have been applied by Redis and should be retried
/// (time-out or connection lost after sending).
fn is_ambiguous(e: &RedisError) -> bool {
    e.is_timeout()
        || e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

impl RedisStorage {
    /// Connects to the Redis server at `url` with default settings (prefix `idempotency:`),
    /// `redis://[[user]:password@]host[:port][/db]` or `rediss://...` (TLS: feature `redis-tls`
    /// of `idempotency`, `tls` of this crate). Use [`RedisConfig`] for other settings.
    ///
    /// # Errors
    /// [`Error::Config`] for a URL that does not parse, or a `rediss://` URL without the TLS
    /// feature (the message names it); [`Error::Storage`] when Redis cannot be reached or
    /// refuses the credentials, its message naming the server and the cause (`connection
    /// refused`, `timed out`, `DNS lookup failed`, `bad database number`, ...).
    pub fn open(url: &str) -> Result<RedisStorage> {
        RedisConfig::new(url).open()
    }

    /// Settings for a store at `url`, to adjust before [`RedisConfig::open`].
    pub fn builder(url: impl Into<String>) -> RedisConfig {
        RedisConfig::new(url)
    }

    /// Connects to a Redis Cluster through the seed nodes `nodes` with default settings
    /// (feature `cluster`).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub fn open_cluster<S: Into<String>>(nodes: impl IntoIterator<Item = S>) -> Result<Self> {
        RedisConfig::cluster(nodes).open()
    }

    /// A store over an existing `client`, with default settings otherwise (prefix, time-outs).
    ///
    /// # Errors
    /// [`Error::Storage`] when Redis cannot be reached.
    pub fn from_client(client: redis::Client) -> Result<RedisStorage> {
        let config = RedisConfig::new(client.get_connection_info().addr().to_string());
        Self::connect_client(client, &config)
    }

    /// A store over an existing connection manager. Its driver task runs on the runtime that
    /// created it, so that runtime must keep running while the store is used; prefer
    /// [`from_client`](Self::from_client), which drives its connection on the store's own
    /// thread.
    ///
    /// # Errors
    /// [`Error::Storage`] if the store's background thread cannot be started.
    pub fn from_connection_manager(manager: ConnectionManager) -> Result<RedisStorage> {
        let (handle, shutdown) = start_worker()?;
        let target = Target {
            name: "redis (a connection manager)".into(),
            db: manager.get_db(),
        };
        Ok(Self::assemble(
            Worker { handle, target },
            shutdown,
            Conn::Single(manager),
            "a connection manager".into(),
            &RedisConfig::new(String::new()),
        ))
    }

    /// A clone of this store (same connection) whose records live under `prefix` instead.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// The key prefix (namespace) of this store.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key holding the record of `key`: the prefix, then `{` + the hex SHA-256 of the
    /// idempotency key + `}` (the braces are a Cluster hash tag). The idempotency key itself is
    /// never part of a Redis key, so any input is binary-safe and glob-free.
    pub fn record_key(&self, key: &IdempotencyKey) -> String {
        record_key(&self.prefix, key)
    }

    pub(crate) fn connect(config: RedisConfig) -> Result<RedisStorage> {
        if let Some(url) = config
            .nodes
            .iter()
            .find(|url| !cfg!(feature = "tls") && url.trim_start().starts_with("rediss://"))
        {
            return Err(Error::Config(format!(
                "`{}`: `rediss://` (TLS) needs the `redis-tls` feature of `idempotency`: \
                 `features = [\"redis-tls\"]` in Cargo.toml, or `--features redis-tls` on the \
                 cargo command line (the `tls` feature of `idempotency-redis`)",
                redact(url)
            )));
        }
        if config.cluster {
            return Self::connect_cluster(&config);
        }
        let url = config.nodes.first().map(String::as_str).unwrap_or_default();
        let client = redis::Client::open(url)
            .map_err(|e| Error::Config(format!("invalid Redis URL `{}`: {e}", redact(url))))?;
        Self::connect_client(client, &config)
    }

    fn connect_client(client: redis::Client, config: &RedisConfig) -> Result<RedisStorage> {
        install_tls_provider();
        let target = client.get_connection_info().addr().to_string();
        let worker_target = Target::of(client.get_connection_info());
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.response_timeout))
            .set_connection_timeout(Some(config.connection_timeout))
            .set_number_of_retries(config.reconnect_retries)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(1));
        let (handle, shutdown) = start_worker()?;
        let worker = Worker {
            handle,
            target: worker_target,
        };
        let manager = idempotency_core::block_on(run_on(
            &worker,
            "connect",
            ConnectionManager::new_with_config(client, manager_config),
        ))?;
        Ok(Self::assemble(
            worker,
            shutdown,
            Conn::Single(manager),
            target,
            config,
        ))
    }

    #[cfg(feature = "cluster")]
    fn connect_cluster(config: &RedisConfig) -> Result<RedisStorage> {
        install_tls_provider();
        let client =
            redis::cluster::ClusterClient::builder(config.nodes.iter().map(String::as_str))
                .response_timeout(config.response_timeout)
                .connection_timeout(config.connection_timeout)
                .retries(u32::try_from(config.reconnect_retries).unwrap_or(u32::MAX))
                .build()
                .map_err(|e| Error::Config(format!("invalid Redis Cluster URLs: {e}")))?;
        let target = format!(
            "cluster [{}]",
            config
                .nodes
                .iter()
                .map(|n| redact(n))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let (handle, shutdown) = start_worker()?;
        let worker = Worker {
            handle,
            target: Target {
                name: format!("redis {target}"),
                db: 0,
            },
        };
        let conn = idempotency_core::block_on(run_on(&worker, "connect", async move {
            client.get_async_connection().await
        }))?;
        Ok(Self::assemble(
            worker,
            shutdown,
            Conn::Cluster(conn),
            target,
            config,
        ))
    }

    #[cfg(not(feature = "cluster"))]
    fn connect_cluster(_: &RedisConfig) -> Result<RedisStorage> {
        Err(Error::Config(
            "Redis Cluster needs the `cluster` feature".into(),
        ))
    }

    fn assemble(
        handle: Worker,
        shutdown: tokio::sync::oneshot::Sender<()>,
        conn: Conn,
        target: String,
        config: &RedisConfig,
    ) -> RedisStorage {
        RedisStorage {
            inner: Arc::new(Inner {
                handle,
                conn,
                target,
                _shutdown: shutdown,
            }),
            prefix: Arc::from(config.prefix.as_str()),
            fence_retention_ms: millis(config.fence_retention),
        }
    }

    /// Runs one script invocation (or command) on the background runtime.
    async fn script(
        &self,
        operation: &'static str,
        script: &'static redis::Script,
        key: String,
        args: Vec<Vec<u8>>,
    ) -> Result<Value> {
        let mut conn = self.inner.conn.clone();
        run_on(&self.inner.handle, operation, async move {
            let mut inv = script.prepare_invoke();
            inv.key(key);
            for a in args {
                inv.arg(a);
            }
            match inv.invoke_async::<Value>(&mut conn).await {
                // Nothing was sent (a stale failed reconnection is reported once before the
                // next one starts), so one retry is safe for every script.
                Err(e) if e.is_connection_refusal() => inv.invoke_async::<Value>(&mut conn).await,
                other => other,
            }
        })
        .await
    }

    /// A fenced transition script (complete, fail, release, renew), retried once when its reply
    /// was lost (time-out or connection dropped after sending): Redis may have applied it, and
    /// each of these scripts answers its own effect, found already applied, as applied
    /// (SEMANTICS.md scenario 5). Returns the reply and whether it is a retry's after a first
    /// attempt that may have been applied (sent, reply lost; not a refused connection).
    async fn transition(
        &self,
        operation: &'static str,
        script: &'static redis::Script,
        key: String,
        args: Vec<Vec<u8>>,
    ) -> Result<(Value, bool)> {
        let mut conn = self.inner.conn.clone();
        run_on(&self.inner.handle, operation, async move {
            let mut inv = script.prepare_invoke();
            inv.key(key);
            for a in args {
                inv.arg(a);
            }
            match inv.invoke_async::<Value>(&mut conn).await {
                Err(e) if is_ambiguous(&e) => {
                    let maybe_applied = !e.is_connection_refusal();
                    inv.invoke_async::<Value>(&mut conn)
                        .await
                        .map(|v| (v, maybe_applied))
                }
                other => other.map(|v| (v, false)),
            }
        })
        .await
    }

    /// The claim script, retried once when its reply was lost (time-out or connection dropped):
    /// Redis may have applied it, and the retry then finds the caller's own `Pending` record and
    /// answers it as acquired (SEMANTICS.md scenario 5).
    async fn claim_value(&self, key: String, args: Vec<Vec<u8>>) -> Result<Value> {
        let mut conn = self.inner.conn.clone();
        run_on(&self.inner.handle, "claim", async move {
            let mut inv = CLAIM_SCRIPT.prepare_invoke();
            inv.key(key);
            for a in args {
                inv.arg(a);
            }
            match inv.invoke_async::<Value>(&mut conn).await {
                Err(e) if is_ambiguous(&e) => inv.invoke_async::<Value>(&mut conn).await,
                other => other,
            }
        })
        .await
    }

    /// The claim fast path: `TIME` and `SET key value NX PX ms GET` in one round trip, retried
    /// once like [`claim_value`](Self::claim_value) (a retry finds the caller's own pending
    /// value and goes on to the claim script). Returns Redis's time (ms, read just before the
    /// `SET`) and the previous value (`None`: the key was absent and is now claimed), or
    /// `Err(None)` when the key holds another Redis type.
    async fn fast_claim(
        &self,
        key: String,
        value: Vec<u8>,
        px: u64,
    ) -> Result<std::result::Result<(u64, Option<Vec<u8>>), ()>> {
        let mut conn = self.inner.conn.clone();
        run_on(&self.inner.handle, "claim", async move {
            let mut pipe = redis::pipe();
            pipe.cmd("TIME")
                .cmd("SET")
                .arg(key)
                .arg(value)
                .arg("NX")
                .arg("PX")
                .arg(px)
                .arg("GET");
            let reply = match pipe
                .query_async::<((u64, u64), Option<Vec<u8>>)>(&mut conn)
                .await
            {
                Err(e) if is_ambiguous(&e) => pipe.query_async(&mut conn).await,
                other => other,
            };
            match reply {
                Ok(((secs, micros), old)) => Ok(Ok((secs * 1000 + micros / 1000, old))),
                Err(e) if e.code() == Some("WRONGTYPE") => Ok(Err(())),
                Err(e) => Err(e),
            }
        })
        .await
    }

    fn location(&self, key: &IdempotencyKey) -> String {
        format!("{} (redis {})", key, self.inner.target)
    }

    /// Decodes a stored value (`times`: its resolved `created` and `until`, when a script
    /// resolved them). A value that is not in this store's layout reads as what
    /// [`Record::decode`] makes of it: corrupt, or incompatible (another format version); one
    /// that holds another key's record is corrupt.
    fn decode(
        &self,
        key: &IdempotencyKey,
        value: &[u8],
        times: Option<(u64, u64)>,
    ) -> Result<Record> {
        match scripts::record_bytes(value, times) {
            Some(bytes) => {
                let record = Record::decode_at(&bytes, || self.location(key))?;
                if record.key != *key {
                    // Copied or restored under another key: never this call's record.
                    return Err(Error::CorruptRecord {
                        key: self.location(key),
                        reason: format!(
                            "the value holds the record of another key (`{}`)",
                            record.key
                        ),
                    });
                }
                Ok(record)
            }
            None => {
                Record::decode_at(value, || self.location(key))?;
                Err(self.not_a_record(key))
            }
        }
    }

    fn not_a_record(&self, key: &IdempotencyKey) -> Error {
        Error::CorruptRecord {
            key: self.location(key),
            reason: "not a record of this store's layout".into(),
        }
    }

    async fn finish(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        status: RecordStatus,
        result: &[u8],
        error: Option<&RecordError>,
        ttl: Duration,
    ) -> Result<Record> {
        let operation = if status == RecordStatus::Success {
            "complete"
        } else {
            "fail"
        };
        let args = vec![
            scripts::magic_pending().to_vec(),
            scripts::owner_token(owner),
            vec![scripts::status_byte_of(status)],
            millis(ttl).to_string().into_bytes(),
            scripts::head(key, status, result, error),
        ];
        let (v, _) = self
            .transition(operation, &FINISH_SCRIPT, self.record_key(key), args)
            .await?;
        let items = reply::array(&v).map_err(|e| e.into_error(operation))?;
        match reply::int_at(items, 0).map_err(|e| e.into_error(operation))? {
            0 => Err(Error::LeaseLost { key: key.clone() }),
            _ => {
                let created = reply::u64_at(items, 2).map_err(|e| e.into_error(operation))?;
                let until = reply::u64_at(items, 3).map_err(|e| e.into_error(operation))?;
                let fp_bytes = reply::bytes_at(items, 4).map_err(|e| e.into_error(operation))?;
                let fingerprint =
                    <[u8; 32]>::try_from(fp_bytes)
                        .map(Fingerprint)
                        .map_err(|_| Error::CorruptRecord {
                            key: self.location(key),
                            reason: "undecodable fingerprint".into(),
                        })?;
                Ok(Record {
                    key: key.clone(),
                    status,
                    result: result.to_vec(),
                    error: error.cloned(),
                    created_at: Timestamp(created),
                    expires_at: Timestamp(until),
                    owner: *owner,
                    lease_until: None,
                    fingerprint,
                })
            }
        }
    }
}

/// rustls needs a process-wide crypto provider for `rediss://`; install ring's unless the
/// application installed one already (then this is a no-op).
fn install_tls_provider() {
    #[cfg(feature = "tls")]
    {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// `prefix` + `{` + hex(SHA-256(key)) + `}`.
pub(crate) fn record_key(prefix: &str, key: &IdempotencyKey) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(key.as_str().as_bytes());
    let mut out = String::with_capacity(prefix.len() + 66);
    out.push_str(prefix);
    out.push('{');
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out.push('}');
    out
}

/// A URL with its password replaced by `***`, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

impl Storage for RedisStorage {
    async fn try_claim(&self, key: &IdempotencyKey, req: &ClaimRequest) -> Result<Claim> {
        let lease_ms = millis(req.lease);
        let redis_key = self.record_key(key);
        if !req.refresh {
            let value = scripts::fast_pending_value(
                key,
                &req.execution_id,
                &req.fingerprint,
                lease_ms,
                self.fence_retention_ms,
            );
            let px = lease_ms.saturating_add(self.fence_retention_ms);
            match self.fast_claim(redis_key.clone(), value, px).await? {
                Err(()) => return Err(self.not_a_record(key)),
                // Absent: claimed with token 1. The lease ends at the SET's time + lease, at or
                // after `now + lease` (TIME ran just before the SET): the holder's view is
                // never longer than the lease Redis keeps.
                Ok((now, None)) => {
                    return Ok(Claim::Acquired {
                        owner: Owner {
                            execution_id: req.execution_id,
                            fencing_token: 1,
                        },
                        lease_until: Timestamp(now.saturating_add(lease_ms)),
                        takeover: false,
                    })
                }
                // A finished value exists, so it is live: its key expires at its `until`.
                Ok((now, Some(old))) if scripts::status_byte(&old) != Some(b'P') => {
                    let record = self.decode(key, &old, None)?;
                    return Ok(Claim::Existing(Observed {
                        record,
                        now: Timestamp(now),
                    }));
                }
                // A pending value: the caller's retried claim, a conflict or an expired lease.
                Ok((_, Some(_))) => {}
            }
        }
        let retention = scripts::n16(self.fence_retention_ms).to_vec();
        let args = vec![
            scripts::magic().to_vec(),
            scripts::owner_id(&req.execution_id),
            scripts::fingerprint(&req.fingerprint),
            scripts::n16(lease_ms).to_vec(),
            if req.refresh {
                b"1".to_vec()
            } else {
                b"0".to_vec()
            },
            retention,
            scripts::head(key, RecordStatus::Pending, &[], None),
        ];
        let v = self.claim_value(redis_key, args).await?;
        let items = reply::array(&v).map_err(|e| e.into_error("claim"))?;
        let code = reply::int_at(items, 0).map_err(|e| e.into_error("claim"))?;
        let now = Timestamp(reply::u64_at(items, 1).map_err(|e| e.into_error("claim"))?);
        match code {
            0 => {
                let value = reply::bytes_at(items, 2).map_err(|e| e.into_error("claim"))?;
                let times = match items.get(4) {
                    Some(_) => Some((
                        reply::u64_at(items, 3).map_err(|e| e.into_error("claim"))?,
                        reply::u64_at(items, 4).map_err(|e| e.into_error("claim"))?,
                    )),
                    None => None,
                };
                let record = self.decode(key, value, times)?;
                Ok(Claim::Existing(Observed { record, now }))
            }
            1 | 2 => {
                let until = reply::u64_at(items, 2).map_err(|e| e.into_error("claim"))?;
                let (takeover, token) = if code == 1 {
                    (
                        reply::int_at(items, 3).map_err(|e| e.into_error("claim"))? == 1,
                        reply::u64_at(items, 4).map_err(|e| e.into_error("claim"))?,
                    )
                } else {
                    (
                        false,
                        reply::u64_at(items, 3).map_err(|e| e.into_error("claim"))?,
                    )
                };
                Ok(Claim::Acquired {
                    owner: Owner {
                        execution_id: req.execution_id,
                        fencing_token: token,
                    },
                    lease_until: Timestamp(until),
                    takeover,
                })
            }
            _ => Err(self.not_a_record(key)),
        }
    }

    async fn complete(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        result: &[u8],
        ttl: Duration,
    ) -> Result<Record> {
        self.finish(key, owner, RecordStatus::Success, result, None, ttl)
            .await
    }

    async fn fail(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        error: &RecordError,
        ttl: Duration,
    ) -> Result<Record> {
        self.finish(key, owner, RecordStatus::Failed, &[], Some(error), ttl)
            .await
    }

    async fn release(&self, key: &IdempotencyKey, owner: &Owner) -> Result<bool> {
        let args = vec![
            scripts::magic_pending().to_vec(),
            scripts::owner_token(owner),
        ];
        let (v, lost_reply) = self
            .transition("release", &RELEASE_SCRIPT, self.record_key(key), args)
            .await?;
        // 1: deleted now. 0: no record; after a lost reply, that is the first attempt's delete
        // (answered as it would have been). -1: another record is there (a newer holder, or a
        // finish): nothing was released, or it was and the key was claimed again since; both
        // read as "not released by this call", which never overstates what the caller held.
        Ok(match reply::int(&v).map_err(|e| e.into_error("release"))? {
            1 => true,
            0 => lost_reply,
            _ => false,
        })
    }

    async fn renew(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        lease: Duration,
    ) -> Result<Timestamp> {
        let args = vec![
            scripts::magic_pending().to_vec(),
            scripts::owner_token(owner),
            scripts::n16(millis(lease)).to_vec(),
            scripts::n16(self.fence_retention_ms).to_vec(),
        ];
        let (v, _) = self
            .transition("renew", &RENEW_SCRIPT, self.record_key(key), args)
            .await?;
        let items = reply::array(&v).map_err(|e| e.into_error("renew"))?;
        match reply::int_at(items, 0).map_err(|e| e.into_error("renew"))? {
            0 => Err(Error::LeaseLost { key: key.clone() }),
            _ => Ok(Timestamp(
                reply::u64_at(items, 2).map_err(|e| e.into_error("renew"))?,
            )),
        }
    }

    async fn get(&self, key: &IdempotencyKey) -> Result<Option<Observed>> {
        let v = self
            .script(
                "get",
                &GET_SCRIPT,
                self.record_key(key),
                vec![scripts::magic().to_vec()],
            )
            .await?;
        let items = reply::array(&v).map_err(|e| e.into_error("get"))?;
        let now = Timestamp(reply::u64_at(items, 0).map_err(|e| e.into_error("get"))?);
        match items.get(1) {
            None => Ok(None),
            Some(Value::BulkString(value)) => {
                let times = match items.get(3) {
                    Some(_) => Some((
                        reply::u64_at(items, 2).map_err(|e| e.into_error("get"))?,
                        reply::u64_at(items, 3).map_err(|e| e.into_error("get"))?,
                    )),
                    None => None,
                };
                let record = self.decode(key, value, times)?;
                Ok(Some(Observed { record, now }))
            }
            Some(_) => Err(self.not_a_record(key)),
        }
    }

    async fn delete(&self, key: &IdempotencyKey) -> Result<bool> {
        let mut conn = self.inner.conn.clone();
        let redis_key = self.record_key(key);
        let n: i64 = run_on(&self.inner.handle, "delete", async move {
            let del = redis::cmd("DEL").arg(redis_key).clone();
            match del.query_async(&mut conn).await {
                Err(e) if e.is_connection_refusal() => del.query_async(&mut conn).await,
                other => other,
            }
        })
        .await?;
        Ok(n > 0)
    }
}

impl StorageAdmin for RedisStorage {
    /// Lists this store's records with `SCAN` (`COUNT limit`, a hint: a page may hold more or
    /// fewer entries), matching only this store's own key shape (`prefix{<64 hex>}`, the prefix
    /// glob-escaped; never user input), then reads the page's records in one script with
    /// Redis's time. The cursor is Redis's `SCAN` cursor: a record present for the whole listing
    /// is returned at least once (possibly twice). Hashes whose `rec` does not decode, hashes
    /// without `rec`, other types at a record key and records of another key are
    /// [`Listed::Unreadable`](idempotency_core::Listed::Unreadable), located by their Redis key.
    /// A Redis Cluster cannot be listed ([`Error::Config`]).
    async fn list(&self, cursor: Option<&str>, limit: usize) -> Result<Page> {
        self.list_page(cursor, limit).await
    }

    /// Removes the Redis key `location` (as listed) iff it is a record key of this store
    /// (`prefix{<64 hex>}`) and still holds exactly the unreadable content it was judged on:
    /// the check and the `DEL` run in one script, so a key rewritten meanwhile survives.
    async fn remove_unreadable(&self, location: &str) -> Result<bool> {
        self.remove_unreadable_at(location).await
    }

    /// Redis expires records natively (`PEXPIREAT` on every write), so there is nothing to
    /// purge: always `Ok(0)`.
    async fn purge_expired(&self) -> Result<u64> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_20_record_keys_are_prefixed_hashed_and_hash_tagged() {
        let hostile = IdempotencyKey::derive("op", 1, &"*?[\n../x").unwrap().key;
        let key = record_key("p:", &hostile);
        assert!(key.starts_with("p:{") && key.ends_with('}'));
        assert_eq!(key.len(), 2 + 66);
        assert!(key[3..67].bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!key.contains(hostile.as_str()));
        let other = IdempotencyKey::derive("op", 1, &"*?[\n../y").unwrap().key;
        assert_ne!(record_key("p:", &other), key);
        assert_ne!(record_key("q:", &hostile), key);
    }

    #[test]
    fn redact_hides_the_password() {
        assert_eq!(redact("redis://u:secret@h:1/2"), "redis://u:***@h:1/2");
        assert_eq!(redact("redis://:secret@h"), "redis://:***@h");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }

    #[test]
    fn a_bad_url_is_a_config_error() {
        let e = RedisStorage::open("redis://[::1").unwrap_err();
        assert_eq!(e.kind(), idempotency_core::ErrorKind::Config);
    }

    #[test]
    fn an_unreachable_server_is_store_unavailable() {
        // Port 1 on loopback: nothing listens there.
        let e = RedisConfig::new("redis://127.0.0.1:1/")
            .reconnect_retries(0)
            .open()
            .unwrap_err();
        assert_eq!(e.kind(), idempotency_core::ErrorKind::StoreUnavailable);
    }
}
