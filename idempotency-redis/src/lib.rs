//! The Redis store of the [`idempotency`](https://docs.rs/idempotency) framework.
//!
//! **Not for direct use; depend on `idempotency` with feature `redis`** (and `cluster` for
//! Redis Cluster); this crate's API follows semantic versioning only through that facade.
//!
//! ```toml
//! [dependencies]
//! idempotency = { version = "0.1", features = ["redis"] }
//! # idempotency = { version = "0.1", features = ["redis", "cluster"] }  # + Redis Cluster
//! # idempotency = { version = "0.1", features = ["redis-tls"] }         # + `rediss://` (TLS)
//! ```
//!
//! ```no_run
//! // Through the facade these are `idempotency::{Call, ..., RedisStorage}`.
//! use idempotency_core::{Call, IdempotencyKey, IdempotencyManager};
//! use idempotency_redis::RedisStorage;
//!
//! let store = RedisStorage::open("redis://127.0.0.1:6379/0")?.prefix("billing:");
//! let manager = IdempotencyManager::new(store);
//! let call = Call::new(IdempotencyKey::derive("billing::charge", 1, &("order-1", 1200_u64))?);
//! let charged = manager.execute_sync(&call, || "charged".to_string())?;
//! # Ok::<(), idempotency_core::Error>(())
//! ```
//!
//! # Connecting
//! - [`RedisStorage::open`]`(url)`: `redis://[[user]:password@]host[:port][/db]`, or
//!   `rediss://...` for TLS (feature `redis-tls` of `idempotency`, `tls` of this crate: rustls
//!   with the ring provider and the webpki roots);
//! - [`RedisConfig`]: the same with a key prefix (default `idempotency:`), response and
//!   connection time-outs (default 5 s and 2 s), reconnection attempts, the fence retention
//!   and replicated claims ([`wait_for_replicas`](RedisConfig::wait_for_replicas));
//! - [`RedisStorage::from_client`] over an existing [`redis::Client`];
//!   [`RedisStorage::from_connection_manager`] over an existing connection manager;
//! - `RedisStorage::open_cluster` / `RedisConfig::cluster` (feature `cluster`).
//!
//! No command hops to another thread. Each call is sent on a connection suited to its caller:
//! - a **sync caller** (`execute_sync` and the rest of the sync API, i.e. a future polled by
//!   [`idempotency_core::block_on`], see [`idempotency_core::in_block_on`]) uses a sync
//!   connection from a small pool, on its own thread: the thread is blocked by the call
//!   anyway, and this works inside a tokio runtime too (current-thread or multi-thread),
//!   since no runtime has to drive that I/O;
//! - an **async caller on a tokio runtime** uses that runtime's own multiplexed connection (a
//!   [`redis::aio::ConnectionManager`], which reconnects on its own after Redis comes back),
//!   created on its first call and driven by the runtime itself; each runtime gets one, and
//!   one that ended is replaced;
//! - an **async caller under another executor** (no tokio runtime), or on a runtime built
//!   without `enable_io` or `enable_time`, uses a connection driven by a background thread
//!   running a single-threaded tokio runtime, started on first such use. (Tokio cannot be
//!   asked whether a runtime has its drivers: the store tries them once per runtime, and the
//!   panic hook prints tokio's message about the missing one; built with `panic = "abort"`,
//!   every runtime is taken to have both.)
//!
//! Opening the store makes one sync connection, so an unreachable server or refused
//! credentials fail at once. Creating or dropping a store never panics inside a runtime. A
//! store over a caller's connection manager
//! ([`from_connection_manager`](RedisStorage::from_connection_manager)) or a cluster sends
//! every call on that one connection (polled with the background runtime entered when the
//! caller has none). One configuration cannot be served: an async call awaited by another
//! executor that blocks the only thread of a current-thread tokio runtime (say,
//! `futures::executor::block_on` inside such a runtime's task), which deadlocks any I/O that
//! runtime drives; use the sync API there, or `.await`.
//!
//! # Data layout
//! One Redis string per record, at `prefix + "{" + hex(SHA-256(idempotency key)) + "}"`: the
//! idempotency key (user input) never appears in a Redis key or a `SCAN MATCH` pattern, and
//! the braces are a Cluster hash tag. Every command and script touches only that one key, so it
//! is single-slot in Redis Cluster. The value is a fixed-width part the scripts compare and
//! rewrite with `string.sub` (134 bytes: magic `IDR` + record format version + layout marker
//! `s`, status `P`/`S`/`F`, execution id, fencing token, `created`, `until`, lease, fence
//! retention, fingerprint), then a body: postcard of (idempotency key, result, error). The
//! offsets are defined once, in Rust, and written into the Lua scripts' sources as literals
//! when they load. A value that is not in this layout reads as
//! [`Error::CorruptRecord`](idempotency_core::Error::CorruptRecord) (or `IncompatibleRecord`
//! for another format version or the previous layout, `r`) and is never overwritten by a claim;
//! [`Storage::delete`](idempotency_core::Storage::delete) removes it. Needs Redis 7.0 or later
//! (`SET ... NX GET`, `PEXPIRETIME`).
//!
//! # Claims and scripts
//! A claim is **one round trip**: `TIME` and `SET key value NX PX (lease + retention) GET`,
//! pipelined. On an absent key the `SET` claims it (token 1); a pending value written so holds
//! no times: its lease deadline is the key's expiry time minus the stored retention (Redis's
//! clock, `PEXPIRETIME`), which the scripts resolve when they read it. On an existing key it
//! writes nothing and returns the value: a finished record is live (its key expires natively at
//! the end of its TTL) and is replayed with `TIME` as Redis's time. A pending value (the
//! caller's own retried claim, a conflict, an expired lease) and the cache bypass go to the
//! claim script (a second round trip). Every other transition is one Lua script, sent as
//! `EVALSHA` (the source is sent once on `NOSCRIPT`), run atomically by Redis, with time from
//! `redis.call('TIME')` (milliseconds; never the caller's clock):
//!
//! | script | does |
//! |---|---|
//! | claim | get-or-claim: returns a live record, or claims (token 1, or old token + 1 on takeover of an expired record: a compare-and-set on the value it observed) with `until = now + lease` |
//! | finish | complete or fail, iff pending with this owner and token; writes the finished value and its expiry `PXAT until` (`until = now + ttl`) in one `SET` |
//! | release | owner-checked delete of a pending record |
//! | renew | extends the lease iff the owner matches |
//! | get | reads the value with Redis's time |
//!
//! Delete is a plain `DEL`. The scripts are the `.lua` files in the crate's `src/lua/`. A hit
//! (replay) and a claim of a fresh key are each one round trip without a script; a miss is two
//! round trips (claim, then the finish script).
//!
//! # Expiry
//! Redis expires records natively: every write sets the key's expiry in the same command, so
//! [`StorageAdmin::purge_expired`](idempotency_core::StorageAdmin::purge_expired) returns `Ok(0)`.
//! A finished record's key expires with its TTL (`0 < PTTL <= ttl` right after completion).
//! A `Pending` record's key lives for the lease plus the *fence retention* (default 1 hour):
//! the scripts compare the stored lease deadline with Redis's time, so the lease ends on time,
//! while the kept fencing token lets the first takeover after a crashed holder get token 2.
//! Once the key is gone (retention over, TTL over, or released), the next claim starts again
//! at token 1; stale writers are still refused, since every write also compares the
//! execution id.
//!
//! # Errors
//! A lost connection, a time-out, a script error or an unexpected reply is
//! [`Error::Storage`](idempotency_core::Error::Storage) (kind `StoreUnavailable`) naming the
//! step (`claim`, `complete`, `fail`, `release`, `renew`, `get`, `delete`, `connect`), the
//! server and the class of the cause (`idempotency store unavailable during connect: redis
//! 127.0.0.1:6379: connection refused`; also `timed out`, `DNS lookup failed: ...`, `bad
//! database number 999: ...`, `authentication failed`; never a password), and keeping the
//! Redis error as its source; never a panic. The manager fails closed on these by
//! default (SEMANTICS.md scenario 23). A refused fenced write is
//! [`Error::LeaseLost`](idempotency_core::Error::LeaseLost). A claim whose reply was lost
//! (time-out or dropped connection after Redis applied it) is retried once: it carries the
//! caller's execution id, so the retry finds the caller's own `Pending` record and answers it
//! as acquired (scenario 5). So is every fenced transition, and each answers its own effect
//! found already applied as the lost reply would have: a complete or fail finds its own
//! finished record (same execution id, fencing token, status and bytes) and returns it
//! unchanged; a renew extends the lease again; a release that finds the key gone answers
//! `true` (another holder's record there answers `false`). A newer holder still refuses them
//! all with `LeaseLost`. Reads (`get`, listing) are retried once the same way; a delete only
//! when nothing was sent (a `DEL` applied twice would answer `false`). A sync caller's retry
//! goes on a new connection: one that failed is never reused.
//!
//! # Failover and replicated claims (SEMANTICS.md scenario 25)
//! Redis replication is asynchronous. If a primary acknowledges a claim and dies before the
//! replica has it, the promoted replica does not know the claim, and a second caller can claim
//! the same key and run the function again. The fencing token cannot be trusted across such a
//! failover either (it lives in the lost record). Fencing still keeps the stored result
//! single-valued: the first holder's later write is refused, because the new record carries
//! another execution id.
//!
//! [`RedisConfig::wait_for_replicas`] narrows this window: after a claim, a completion and a
//! renewal the store sends `WAIT numreplicas timeout` and fails closed, with a
//! [`NotReplicated`] as the error's source, when too few replicas acknowledge (the option's
//! documentation says what state each step leaves). It does not close the window: Redis can
//! still lose an acknowledged write in some failovers.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub, rust_2018_idioms)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod config;
mod conn;
mod connect;
mod error;
mod layout;
mod listing;
mod replication;
mod reply;
mod scripts;
mod server;
mod storage;
mod value;
mod worker;

pub use config::RedisConfig;
pub use replication::NotReplicated;
pub use storage::RedisStorage;

/// The `redis` crate this store is built on, for [`RedisStorage::from_client`] and friends.
pub use redis;
