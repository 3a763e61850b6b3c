//! The conformance kit on `RedisStorage` (all scenarios, including 26 via `write_raw`).

use crate::harness::RedisHarness;

idempotency_core::conformance_suite!(match RedisHarness::new() {
    Some(h) => h,
    None => return,
});
