//! Intentionally empty: this crate holds the trybuild UI tests in `tests/`, and
//! `tests/error_types.rs`, which runs `#[idempotent]` with every common error type (anyhow,
//! boxed, io, String, `idempotency::Error`, a user enum) from outside the library's crates.

#![forbid(unsafe_code)]
