//! libFuzzer entry point; the checks are in `idempotency_fuzz::targets::canonical_injectivity`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idempotency_fuzz::targets::canonical_injectivity(data));
