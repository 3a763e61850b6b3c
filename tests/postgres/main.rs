//! The PostgreSQL store against a real PostgreSQL: the conformance kit, hostile keys, 8
//! processes racing on one key, the main job (`--store postgres://...`), and transactional mode (kill points, a terminated backend).
//!
//! The database comes from `IDEMPOTENCY_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); every harness works in a fresh schema of its own,
//! dropped afterwards. Without a reachable database, tests print a loud notice and pass, unless
//! `IDEMPOTENCY_REQUIRE_POSTGRES=1`, which turns the skip into a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "../../examples/emissions/mod.rs"]
mod emissions;

mod default_url;
mod emissions_job;
mod harness;
mod hostile;
mod kit;
mod processes;
mod store;
mod tx;
