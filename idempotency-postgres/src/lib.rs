//! The PostgreSQL store of the [`idempotency`](https://docs.rs/idempotency) framework.
//!
//! **Not for direct use; depend on `idempotency` with feature `postgres`.**
//!
//! ```toml
//! [dependencies]
//! idempotency = { version = "0.1", features = ["postgres"] }
//! ```
//!
//! ```no_run
//! // Through the facade these are `idempotency::{Call, ..., PostgresStorage}`.
//! use idempotency_core::{Call, IdempotencyKey, IdempotencyManager};
//! use idempotency_postgres::PostgresStorage;
//!
//! let store = PostgresStorage::connect("postgres://app@127.0.0.1:5432/app")?;
//! let manager = IdempotencyManager::new(store);
//! let call = Call::new(IdempotencyKey::derive("billing::charge", 1, &("order-1", 1200_u64))?);
//! let charged = manager.execute_sync(&call, || "charged".to_string())?;
//! # Ok::<(), idempotency_core::Error>(())
//! ```
//!
//! # Connecting
//! - [`PostgresStorage::connect`]`(url)` / [`PostgresConfig::connect`]: a pool of the store's
//!   own (driven by a dedicated thread running a single-threaded tokio runtime, so the store
//!   works from any executor and from the sync API), then [`PostgresStorage::ensure_schema`];
//! - [`PostgresStorage::from_pool`] / [`PostgresConfig::with_pool`]: the caller's own
//!   [`sqlx::PgPool`], used from inside the runtime that drives it; call `ensure_schema` once.
//!
//! # Table
//! One table (default `idempotency_records`; [`PostgresConfig::table`] and
//! [`PostgresConfig::schema`] choose another, validated and always quoted), created and
//! versioned by [`PostgresStorage::ensure_schema`] (schema version [`SCHEMA_VERSION`], kept in
//! the table's comment), with an index on `expires_at` that makes purging cheap. The
//! idempotency key is stored as `bytea`: no key, whatever it holds, is ever part of SQL text
//! (every value is a bind parameter), and PostgreSQL `text` could not hold a NUL byte.
//!
//! # Statements
//! Every state transition is **one SQL statement**, with times from the database's clock
//! (`clock_timestamp()`, the time at evaluation, not the transaction's start `now()`), so
//! callers' clocks never decide a lease or a TTL (SEMANTICS.md scenario 22):
//!
//! | transition | statement |
//! |---|---|
//! | claim, takeover, cache bypass | `INSERT ... ON CONFLICT (key) DO UPDATE SET ..., fencing_token = old + 1 WHERE old.expires_at <= now OR (refresh AND finished) RETURNING`, and in the same statement the existing row when nothing was written |
//! | complete, fail | `UPDATE ... WHERE key AND status = pending AND execution_id AND fencing_token RETURNING` |
//! | renew | `UPDATE ... SET expires_at = now + lease WHERE <same fence> RETURNING` |
//! | release | `DELETE ... WHERE <same fence>` |
//!
//! The fenced writes are `UPDATE`/`DELETE` rather than `INSERT ... ON CONFLICT`: a fenced
//! write must never create a row that is absent, and an `UPDATE` with the fence in its `WHERE`
//! is the single-statement compare-and-set for that. A claim that meets a row committed by a
//! concurrent transaction after its snapshot re-runs (see [`Storage::try_claim`]).
//!
//! # Transactional mode: exactly-once effects
//! No store outside the database can make "the record says done" and "the business row exists"
//! true together. [`PostgresStorage::execute_in`] puts the claim, the function's own writes and
//! the `Success` record into **the caller's transaction**, inside a savepoint of its own: after
//! any crash or rollback either both exist (a retry replays) or neither does (a retry runs
//! again). [`PostgresStorage::execute_transaction`] does the same in a transaction it begins and
//! commits on the store's pool.
//!
//! ```no_run
//! use idempotency_core::{Call, IdempotencyKey};
//! use idempotency_postgres::{sqlx, PostgresStorage};
//!
//! # async fn charge(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresStorage::from_pool(pool.clone())?; // inside the pool's runtime
//! store.ensure_schema().await?;
//! let call = Call::new(IdempotencyKey::derive("billing::charge", 1, &("order-1", 1200_u64))?);
//! let mut tx = pool.begin().await?;
//! let charged = store
//!     .execute_in(&mut tx, &call, |conn| {
//!         Box::pin(async move {
//!             sqlx::query_scalar::<_, i64>(
//!                 "INSERT INTO charges (order_id, cents) VALUES ($1, $2) RETURNING id",
//!             )
//!             .bind("order-1")
//!             .bind(1200_i64)
//!             .fetch_one(conn)
//!             .await
//!         })
//!     })
//!     .await?;
//! tx.commit().await?; // the charge row and its record, together
//! println!("charge {} (replayed: {})", charged.value, charged.is_replayed());
//! # Ok(())
//! # }
//! ```
//!
//! Concurrent transactions on one key: exactly one commits its claim; the others wait on the
//! key's row lock (bounded per [`ConflictPolicy`](idempotency_core::ConflictPolicy)) and then
//! replay its value, or get [`Error::InProgress`](idempotency_core::Error::InProgress).
//! `READ COMMITTED` (PostgreSQL's default) suffices; see [`PostgresStorage::execute_in`] for
//! why, and for what `REPEATABLE READ` and `SERIALIZABLE` do instead.
//!
//! # TLS
//! This build links sqlx without TLS: use it over loopback, a private network or a TLS-terminating
//! proxy (`sslmode=require` in the URL fails to connect rather than falling back to plain text).
//!
//! Expired records read as absent ([`Storage::get`] returns `None`, and the next claim
//! replaces them, keeping the fencing token growing); [`StorageAdmin::purge_expired`] deletes them
//! in bounded batches.
//!
//! # Errors
//! A lost connection, a pool time-out or a database error is
//! [`Error::Storage`](idempotency_core::Error::Storage) (kind `StoreUnavailable`) naming the
//! step and keeping the sqlx error as its source; never a panic. A refused fenced write is
//! [`Error::LeaseLost`](idempotency_core::Error::LeaseLost); a row that does not decode is
//! `CorruptRecord` (or `IncompatibleRecord`) and is never overwritten by a claim. A claim whose
//! reply was lost is retried once: it carries the caller's execution id, so the retry finds the
//! caller's own `Pending` record (scenario 5).
//!
//! [`Storage::try_claim`]: idempotency_core::Storage::try_claim
//! [`Storage::get`]: idempotency_core::Storage::get
//! [`StorageAdmin::purge_expired`]: idempotency_core::StorageAdmin::purge_expired

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub, rust_2018_idioms)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod admin;
mod config;
mod row;
mod runtime;
mod schema;
mod sql;
mod storage;
mod tx;

pub use config::{PostgresConfig, MAX_IDENTIFIER_BYTES};
pub use schema::SCHEMA_VERSION;
pub use storage::PostgresStorage;
pub use tx::{
    TxError, TxFuture, DEFAULT_TX_LEASE, DEFAULT_TX_TTL, REJECT_LOCK_WAIT, WAIT_POLL_INTERVAL,
};

/// The `sqlx` crate this store is built on, for [`PostgresStorage::from_pool`] and
/// transactions.
pub use sqlx;
