//! `#[idempotent]` on async functions and methods, against a memory store (`manager = ...`).
//!
//! This binary runs the cases on the memory store (see `tests/common/store.rs`).

#[path = "macro_cases/async_fns.rs"]
mod cases;
mod common;
