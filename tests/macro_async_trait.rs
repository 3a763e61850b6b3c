//! `#[idempotent]` on methods inside `#[async_trait]` impls: async-trait expands first and hands
//! over `fn ..(&self) -> Pin<Box<dyn Future<Output = R> + Send>> { Box::pin(async move { .. }) }`,
//! which the macro detects and wraps.
//!
//! This binary runs the cases on the memory store (see `tests/common/store.rs`).

#[path = "macro_cases/async_trait_impls.rs"]
mod cases;
mod common;
