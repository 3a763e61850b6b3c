//! The fuzz targets' bodies, shared by the libFuzzer binaries (`fuzz_targets/`) and the stable
//! fallback test (`tests/fuzz_fallback.rs` in the workspace root).

#[path = "targets.rs"]
pub mod targets;
