//! The generated code must not depend on the user's imports or prelude: this crate shadows
//! `Result`, `Ok`, `Err`, `Option`, `Some`, `None`, `Duration`, `Box`, `Future`, `From` and
//! `core` (serde's `test_gen.rs`, async-trait's `mod core {}`). Compiling is the test; the
//! test functions also run the expansions once.

#![allow(dead_code, non_camel_case_types, clippy::upper_case_acronyms)]
#![no_implicit_prelude]

extern crate idempotency as idem;
extern crate serde;
extern crate std;

mod core {}

struct Result;
struct Ok;
struct Err;
struct Option;
struct Some;
struct None;
struct Duration;
struct Future;
struct From;
struct Into;
struct Default;
struct concat;
struct module_path;

mod renamed {
    // `crate = path` for a renamed dependency.
    pub(crate) use ::idempotency as idem_again;
}

static MANAGER: std::sync::LazyLock<idem::IdempotencyManager> =
    std::sync::LazyLock::new(|| idem::IdempotencyManager::new(idem::MemoryStorage::new()));

#[idem::idempotent(manager = &*MANAGER, ttl = 60, failure_ttl = 5, pending_timeout = 30, on_conflict = wait(1), fingerprint = "reject", version = 3)]
fn sync_fn(a: u32, b: &str, #[idempotency(skip)] c: u8) -> std::string::String {
    let _ = c;
    std::format!("{a}{b}")
}

#[idem::idempotent(manager = &*MANAGER, key = k, scope = "tenant", cache_failures = false)]
fn fallible(k: &str, x: u32) -> std::result::Result<u32, Failure> {
    if x == 0 {
        return std::result::Result::Err(Failure);
    }
    std::result::Result::Ok(x)
}

// No `cache_failures`: the error type is probed (stored for `Failure`, never for `io::Error`).
#[idem::idempotent(manager = &*MANAGER)]
fn probed_stored(x: u32) -> std::result::Result<u32, Failure> {
    std::result::Result::Ok(x)
}

#[idem::idempotent(manager = &*MANAGER)]
fn probed_transient(x: u32) -> std::io::Result<u32> {
    std::result::Result::Ok(x)
}

#[idem::idempotent(crate = renamed::idem_again, manager = &*MANAGER)]
async fn async_fn((a, b): (u32, u32)) -> u32 {
    a + b
}

#[derive(serde::Serialize, serde::Deserialize, std::fmt::Debug, std::cmp::PartialEq)]
struct Failure;

impl std::convert::From<idem::Error> for Failure {
    fn from(_: idem::Error) -> Self {
        Failure
    }
}

#[derive(idem::NormalizeKey)]
struct Derived<T> {
    a: T,
    #[idempotency(skip)]
    b: u8,
}

#[derive(idem::NormalizeKey)]
#[idempotency(crate = renamed::idem_again)]
enum DerivedEnum {
    A,
    B(u8),
    C { x: u8 },
}

#[test]
fn hygiene_expansions_run() {
    std::assert_eq!(sync_fn(1, "x", 0).unwrap(), "1x");
    std::assert_eq!(fallible("k", 2), std::result::Result::Ok(2));
    std::assert_eq!(probed_stored(2), std::result::Result::Ok(2));
    std::assert_eq!(probed_transient(2).ok(), std::option::Option::Some(2));
    std::assert_eq!(idem::block_on(async_fn((1, 2))).unwrap(), 3);
}
