//! Compile-time behaviour of the macros (in their own crate so the `.stderr` files see
//! `idempotency` with its default features, whatever features the workspace is built with): `pass/` cases compile and run; `fail/` cases must
//! fail with exactly the committed `.stderr` (spans and messages included). Stable only: the
//! diagnostics' wording changes between compiler channels.

#[rustversion::stable]
#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
