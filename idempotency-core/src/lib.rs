//! Core of the [`idempotency`](https://docs.rs/idempotency) framework: key derivation, records,
//! the [`Storage`] trait, the memory and file stores, and the [`IdempotencyManager`].
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
mod error;
mod error_serde;
#[cfg(feature = "file")]
mod file;
mod key;
mod manager;
mod memory;
mod pipeline;
mod record;
mod rt;
mod storage;
pub mod telemetry;

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use blocking::in_block_on;
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
pub use record::{
    Clock, ManualClock, Owner, Record, RecordError, RecordStatus, SystemClock, Timestamp,
};
pub use rt::block_on;
#[doc(hidden)]
pub use rt::framework_error_seen;
pub use storage::{
    apply_finish, decide_claim, BoxFuture, Claim, ClaimDecision, ClaimRequest, DynStorage, Finish,
    Listed, Observed, Page, Storage,
};
pub use telemetry::ManagerStats;
