//! # idempotency
//!
//! Make any function or pipeline safe to retry. The first call with a given input runs; every
//! repeat within its TTL returns the stored result; concurrent duplicates never both run; a
//! crashed holder's lease expires and exactly one caller takes over; a stale holder can never
//! overwrite a newer result (fencing tokens).
//!
//! ```toml
//! [dependencies]
//! idempotency = "0.1"                                        # file store + macros
//! # idempotency = { version = "0.1", features = ["redis"] }  # + the Redis store
//! # idempotency = { version = "0.1", features = ["redis-tls"] }  # + the Redis store over TLS
//! ```
//!
//! ```
//! use idempotency::{Call, IdempotencyKey, IdempotencyManager, MemoryStorage};
//!
//! let manager = IdempotencyManager::new(MemoryStorage::new());
//! let call = Call::new(IdempotencyKey::derive("billing::charge", 1, &("order-1", 1200_u64))?);
//! let first = manager.execute_sync(&call, || "charged".to_string())?;
//! let again = manager.execute_sync(&call, || "charged twice!".to_string())?;
//! assert!(!first.is_replayed() && again.is_replayed());
//! assert_eq!(again.value, "charged");
//! # Ok::<(), idempotency::Error>(())
//! ```
//!
//! With the macro (`#[idempotent]`, feature `macros`), a function's parameters form the key:
//!
//! ```
//! use idempotency::{idempotent, IdempotencyManager, MemoryStorage};
//! # static MANAGER: std::sync::LazyLock<IdempotencyManager> =
//! #     std::sync::LazyLock::new(|| IdempotencyManager::new(MemoryStorage::new()));
//!
//! // `ttl` in seconds; without `manager = ...` the process-wide default manager is used.
//! #[idempotent(ttl = 3600, manager = &*MANAGER)]
//! fn invoice(order_id: u64, amount_cents: u64) -> String {
//!     format!("INV-{order_id}-{amount_cents}")
//! }
//!
//! // A plain return type `T` becomes `Result<T, idempotency::Error>`.
//! assert_eq!(invoice(7, 1200)?, "INV-7-1200");
//! assert_eq!(invoice(7, 1200)?, "INV-7-1200"); // replayed, not run
//! # Ok::<(), idempotency::Error>(())
//! ```
//!
//! ## Choosing a store
//!
//! | store | for | how |
//! |---|---|---|
//! | [`FileStorage`] (feature `file`, default) | one machine, any number of processes | `FileStorage::open(dir)`, or `IDEMPOTENCY_URL=file:///dir` |
//! | `RedisStorage` (feature `redis`; `redis-tls` for `rediss://`) | a fleet sharing a Redis (or a Redis Cluster, feature `cluster`) | `RedisStorage::open("redis://host:6379/0")`, or `IDEMPOTENCY_URL=redis://...` |
//! | `PostgresStorage` (feature `postgres`) | services whose data lives in PostgreSQL; exactly-once effects in one transaction with the business write | `PostgresStorage::connect("postgres://user@host/db")`, or `IDEMPOTENCY_URL=postgres://...` |
//! | [`MemoryStorage`] | tests and single-process services | `MemoryStorage::new()`, or `IDEMPOTENCY_URL=memory://` |
//!
//! [`default_manager`] builds the process-wide manager from `IDEMPOTENCY_URL` (see
//! [`StoreUrl`]), else the file store in `.idempotency` under the working directory. Durations
//! in the API are [`std::time::Duration`]s; the macro's `ttl`, `failure_ttl` and
//! `pending_timeout` take whole seconds (or a `Duration` expression). Every error is an
//! [`Error`]; branch on [`Error::kind`].
//!
//! ## Features
//! - `macros` (default): `#[idempotent]` and `#[derive(NormalizeKey)]`.
//! - `file` (default): the embedded file store, `FileStorage`.
//! - `redis`: the Redis store, `RedisStorage`; `redis-tls`: the same over TLS (`rediss://`
//!   URLs; rustls with the ring provider and the webpki roots); `cluster`: Redis Cluster.
//! - `postgres`: the PostgreSQL store, `PostgresStorage` (on sqlx), with transactional mode.
//! - `metrics`: counters and histograms through the `metrics` facade (see [`telemetry`]).
//! - `testing`: the conformance kit (`idempotency::testing`) for custom stores.
//! - `http`: the `Idempotency-Key` middleware for tower, axum and hyper (`idempotency::http`;
//!   IETF draft-ietf-httpapi-idempotency-key-header, Stripe).
//!
//! The `idempotency` operator binary (list, show, delete, purge-expired, stats, doctor) is its
//! own crate, `idempotency-cli`.
//!
//! ## MSRV
//! Rust 1.85; raising it is a minor-version change.

#![cfg_attr(docsrs, feature(doc_cfg))]
// Doc tests (this crate's and the README's) fail on any warning, as a user's build would show it.
#![doc(test(attr(deny(warnings))))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub, rust_2018_idioms)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod default;
mod macro_support;
mod scoped;

pub use default::{default_manager, set_default_manager, StoreUrl};
pub use idempotency_core::{
    block_on, canonical, current, telemetry, validate_custom_key, Begin, BoxDynError, BoxFuture,
    Call, CallOptions, Claim, ClaimRequest, Clock, ConflictPolicy, Current, DerivedKey, DynStorage,
    Error, ErrorKind, Fingerprint, FingerprintPolicy, IdempotencyKey, IdempotencyManager,
    KeyEncoder, KeyWriter, ManagerBuilder, ManagerConfig, ManagerStats, ManualClock, MemoryStorage,
    NormalizeKey, Observed, OperationLease, Outcome, Owner, Prefixed, Provenance, Record,
    RecordError, RecordStatus, Result, Retention, Storage, StoreErrorPolicy, SystemClock,
    Timestamp, MAX_CUSTOM_KEY_BYTES, MAX_OPERATION_BYTES,
};
pub use scoped::{refresh, refresh_sync, with_key, with_key_sync, WithOverride};
// The operator's side of a store (the `idempotency` CLI, purge jobs).
pub use idempotency_core::{DynStorageAdmin, Listed, Page, StorageAdmin};
// Building blocks for a store that reads, decides and writes under one lock (the memory and
// file stores, `examples/custom_store.rs`): the claim decision and the fenced finish.
pub use idempotency_core::{apply_finish, decide_claim, ClaimDecision, Finish};
// The key format version hashed into every key (see SEMANTICS.md, "Call identity").
pub use idempotency_core::KEY_FORMAT_VERSION;

#[cfg(feature = "file")]
#[cfg_attr(docsrs, doc(cfg(feature = "file")))]
#[doc(inline)]
pub use idempotency_core::{Durability, FileStorage, FileStorageBuilder};

pub use idempotency_core::{
    IdempotentPipeline, Pipeline, PipelineResult, PipelineStatus, RecordInfo,
};

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
#[doc(inline)]
pub use idempotency_core::{admin_suite, conformance_suite, testing};

/// Wraps `pipeline` in an [`IdempotentPipeline`] over the process-wide
/// [`default_manager`] (`IDEMPOTENCY_URL`, else the file store in `.idempotency`).
///
/// # Errors
/// As [`default_manager`]: [`Error::Config`] for a bad `IDEMPOTENCY_URL`; the store's errors
/// when it cannot be opened.
pub fn idempotent_pipeline<P: Pipeline>(pipeline: P) -> Result<IdempotentPipeline<P>> {
    Ok(IdempotentPipeline::new(pipeline, default_manager()?))
}

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[doc(inline)]
pub use idempotency_redis::{self as redis, RedisStorage};

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
#[doc(inline)]
pub use idempotency_postgres::{self as postgres, PostgresConfig, PostgresStorage};

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
/// The `Idempotency-Key` HTTP middleware for tower, axum and hyper (IETF
/// draft-ietf-httpapi-idempotency-key-header, Stripe): [`http::IdempotencyLayer`].
pub use idempotency_http as http;

#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
#[doc(inline)]
pub use idempotency_macros::{idempotent, NormalizeKey};

/// The README's examples, compiled and run by `cargo test --doc` (each is a complete program).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// README_CLI.md's Rust example (deriving a key the CLI's JSON cannot express).
#[cfg(doctest)]
#[doc = include_str!("../README_CLI.md")]
pub struct ReadmeCliDoctests;

/// Used by generated code. Not public API; may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use core::future::Future;
    pub use core::option::Option;
    pub use core::result::Result;
    pub use core::time::Duration;
    pub use idempotency_core::canonical::CanonicalError;
    pub use idempotency_core::{
        block_on, Call, CallOptions, ConflictPolicy, Error, FingerprintPolicy, IdempotencyManager,
        KeyEncoder, KeyWriter, NormalizeKey, Outcome,
    };
    pub use serde::{de::DeserializeOwned, Serialize};

    pub use crate::default::default_manager;
    pub use crate::macro_support::{
        custom_key, duration, finish_call, manager_from, override_key, run, run_sync, CustomKey,
        ErrorProbe, FromFrameworkError, KeyArg, KeyPart, ManagerSource, Storable, StorableError,
        StoredFailures, TransientFailures, ViaFrameworkError, ViaNormalize, ViaSerialize,
        ViaStoredError, ViaTransientError,
    };
    pub use crate::macro_support::{
        NormalizeReceiver, Operation, OtherReceiver, ReceiverCheck, SerializeReceiver, Site,
    };
    pub use crate::scoped::{take_override, Override};
}
