//! `#[idempotent]` on sync functions and methods, against the memory store and (compiled again
//! as `macro_sync_file`) the file store (`manager = ...`). Each test counts executions of the
//! body with an `AtomicUsize`. Tests that need an injected clock use a memory store either way.
//!
//! This binary runs the cases on the embedded file store (see `tests/common/store.rs`).

#[path = "macro_cases/sync.rs"]
mod cases;
mod common;
