//! The Redis store against a real Redis: the conformance kit, processes racing on one key,
//! an outage, an ambiguous claim reply, TTL presence, replicated claims against a local
//! replica, and (feature `cluster`) a local
//! 3-master cluster.
//!
//! Redis comes from `IDEMPOTENCY_REDIS_URL` when set, else from a `redis-server` started on a
//! free loopback port per test. Without either, tests print a loud notice and pass, unless
//! `IDEMPOTENCY_REQUIRE_REDIS=1`, which turns the skip into a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ambiguous;
mod connect_errors;
mod dispatch;
mod faults;
mod harness;
mod identity;
mod kit;
mod long_running;
mod outage;
mod processes;
mod replication;
mod ttl;

#[cfg(feature = "cluster")]
mod cluster;
