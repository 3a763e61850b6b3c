//! The conformance kit on `PostgresStorage` (all scenarios, including 26 via `write_raw`, and
//! the admin checks), each test in a fresh schema.

use crate::harness::PgHarness;

idempotency_core::conformance_suite!(match PgHarness::new() {
    Some(h) => h,
    None => return,
});

idempotency_core::admin_suite!(match PgHarness::new() {
    Some(h) => h,
    None => return,
});
