//! libFuzzer entry point; the checks are in `idempotency_fuzz::targets::store_url`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idempotency_fuzz::targets::store_url(data));
