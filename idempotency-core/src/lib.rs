//! Core of the [`idempotency`](https://docs.rs/idempotency) framework: key derivation, records,
//! the [`Storage`] and [`StorageAdmin`] traits, the memory and file stores, the [`Prefixed`]
//! wrapper, and the [`IdempotencyManager`].
//!
//! **Not for direct use; depend on `idempotency`.** This crate's API does not follow semantic
//! versioning on its own: only the `idempotency` facade does.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub, rust_2018_idioms)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod blocking;
pub mod canonical;
pub mod codec;
mod current;
mod error;
mod error_serde;
pub mod fault;
#[cfg(feature = "file")]
mod file;
pub mod hex;
mod key;
mod manager;
mod memory;
mod pipeline;
mod prefixed;
mod record;
mod record_columns;
mod rt;
mod storage;
pub mod telemetry;
mod time;

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use blocking::in_block_on;
#[doc(hidden)]
pub use current::framework_error_seen;
pub use current::{current, Current};
pub use error::{BoxDynError, Error, ErrorKind, Result};
#[cfg(feature = "file")]
#[cfg_attr(docsrs, doc(cfg(feature = "file")))]
pub use file::{Durability, FileStorage, FileStorageBuilder};
pub use key::{
    validate_custom_key, DerivedKey, Fingerprint, IdempotencyKey, KeyEncoder, KeyWriter,
    NormalizeKey, KEY_FORMAT_VERSION, MAX_CUSTOM_KEY_BYTES, MAX_OPERATION_BYTES,
};
pub use manager::{
    Begin, Call, CallOptions, ConflictPolicy, FingerprintPolicy, IdempotencyManager,
    ManagerBuilder, ManagerConfig, OperationLease, Outcome, Provenance, Retention,
    StoreErrorPolicy,
};
pub use memory::MemoryStorage;
pub use pipeline::{IdempotentPipeline, Pipeline, PipelineResult, PipelineStatus, RecordInfo};
pub use prefixed::Prefixed;
pub use record::{Owner, Record, RecordError, RecordStatus, Timestamp};
pub use record_columns::RecordColumns;
pub use rt::block_on;
pub use storage::{
    apply_finish, decide_claim, BoxFuture, Claim, ClaimDecision, ClaimRequest, DynStorage,
    DynStorageAdmin, Finish, Listed, Observed, Page, Storage, StorageAdmin,
};
pub use telemetry::ManagerStats;
pub use time::{Clock, ManualClock, SystemClock};
