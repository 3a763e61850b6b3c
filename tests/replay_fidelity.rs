//! Issue 12, items 5 and 6, through `#[idempotent]` and the pipeline, on the memory and the file
//! store: a result over `max_result_bytes` reaches the caller that ran the body (later callers
//! get `ResultNotRetained`, the body runs once), and an internally tagged enum replays. The
//! manager-level checks over every serde shape run in the conformance kit on every store.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use idempotency::{
    idempotent, Error, ErrorKind, FileStorage, IdempotencyManager, IdempotentPipeline,
    MemoryStorage, Pipeline, Retention,
};
use serde::{Deserialize, Serialize};

fn memory() -> IdempotencyManager {
    IdempotencyManager::builder(MemoryStorage::new())
        .max_result_bytes(1024)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn file() -> IdempotencyManager {
    let dir = tempfile::tempdir()
        .unwrap_or_else(|e| panic!("temp dir: {e}"))
        .keep();
    let store = FileStorage::open(dir).unwrap_or_else(|e| panic!("file store: {e}"));
    IdempotencyManager::builder(store)
        .max_result_bytes(1024)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

static MEMORY: LazyLock<IdempotencyManager> = LazyLock::new(memory);
static FILE: LazyLock<IdempotencyManager> = LazyLock::new(file);

/// The issue's internally tagged result type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
enum T {
    New { id: u32 },
}

/// The issue's struct with fields left out when `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct S {
    #[serde(skip_serializing_if = "Option::is_none")]
    a: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    b: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PayError(String);

impl From<Error> for PayError {
    fn from(e: Error) -> Self {
        PayError(format!("framework: {:?}", e.kind()))
    }
}

macro_rules! macro_cases {
    ($store:ident, $manager:ident, $big:ident, $big_err:ident, $tagged:ident, $skipped:ident) => {
        mod $store {
            use super::*;

            static RUNS: AtomicUsize = AtomicUsize::new(0);

            #[idempotent(manager = &*$manager)]
            fn $big(n: u32) -> String {
                RUNS.fetch_add(1, Ordering::SeqCst);
                "x".repeat(4096 + n as usize)
            }

            static ERR_RUNS: AtomicUsize = AtomicUsize::new(0);

            #[idempotent(manager = &*$manager)]
            fn $big_err(n: u32) -> Result<u8, PayError> {
                ERR_RUNS.fetch_add(1, Ordering::SeqCst);
                Err(PayError("y".repeat(4096 + n as usize)))
            }

            static TAGGED_RUNS: AtomicUsize = AtomicUsize::new(0);

            #[idempotent(manager = &*$manager)]
            fn $tagged(id: u32) -> T {
                TAGGED_RUNS.fetch_add(1, Ordering::SeqCst);
                T::New { id }
            }

            #[idempotent(manager = &*$manager)]
            fn $skipped(a: Option<u32>, b: Option<u32>) -> S {
                TAGGED_RUNS.fetch_add(1, Ordering::SeqCst);
                S { a, b }
            }

            #[test]
            fn issue_12_item_5_macro_returns_a_result_over_the_limit_to_its_caller() {
                let first = $big(0).unwrap_or_else(|e| panic!("the first caller: {e}"));
                assert_eq!(first, "x".repeat(4096), "the first caller gets its value");
                for _ in 0..2 {
                    let later = $big(0).err().unwrap_or_else(|| panic!("a later call ran"));
                    assert_eq!(later.kind(), ErrorKind::ResultNotRetained);
                }
                assert_eq!(RUNS.load(Ordering::SeqCst), 1, "the body ran once");

                assert_eq!($big_err(0), Err(PayError("y".repeat(4096))));
                assert_eq!(
                    $big_err(0),
                    Err(PayError("framework: ResultNotRetained".into()))
                );
                assert_eq!(ERR_RUNS.load(Ordering::SeqCst), 1);
            }

            #[test]
            fn issue_12_item_6_macro_replays_a_tagged_enum_and_skipped_fields() {
                assert_eq!($tagged(42).unwrap(), T::New { id: 42 });
                assert_eq!($tagged(42).unwrap(), T::New { id: 42 });
                let s = S {
                    a: Some(5),
                    b: None,
                };
                assert_eq!($skipped(Some(5), None).unwrap(), s);
                assert_eq!($skipped(Some(5), None).unwrap(), s);
                assert_eq!(TAGGED_RUNS.load(Ordering::SeqCst), 2, "each body ran once");
            }
        }
    };
}

macro_cases!(on_memory, MEMORY, big, big_err, tagged, skipped);
macro_cases!(on_file, FILE, big, big_err, tagged, skipped);

/// A pipeline whose output is 4096 bytes, or the issue's tagged enum.
struct Report(Arc<AtomicUsize>);

impl Pipeline for Report {
    const NAME: &'static str = "tests::report";
    type Input = u32;
    type Output = (String, T);
    type Error = String;

    fn run(&self, id: &u32) -> Result<(String, T), String> {
        self.0.fetch_add(1, Ordering::SeqCst);
        let body = if *id == 0 {
            "x".repeat(4096)
        } else {
            String::new()
        };
        Ok((body, T::New { id: *id }))
    }
}

#[test]
fn issue_12_item_5_pipeline_returns_a_result_over_the_limit_to_its_caller() {
    for manager in [memory(), file()] {
        let runs = Arc::new(AtomicUsize::new(0));
        let p = IdempotentPipeline::new(Report(Arc::clone(&runs)), manager);
        let first = p
            .execute(&0)
            .unwrap_or_else(|e| panic!("the first caller: {e}"));
        assert_eq!(first.value, Ok(("x".repeat(4096), T::New { id: 0 })));
        assert!(!first.is_replayed() && !first.is_retained());
        assert!(matches!(
            first.provenance.retention,
            Retention::NotRetained { .. }
        ));
        for _ in 0..2 {
            let later = p.execute(&0).err().unwrap_or_else(|| panic!("a later run"));
            assert_eq!(later.kind(), ErrorKind::ResultNotRetained);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the pipeline ran once");
    }
}

#[test]
fn issue_12_item_6_pipeline_replays_a_tagged_enum() {
    for manager in [memory(), file()] {
        let runs = Arc::new(AtomicUsize::new(0));
        let p = IdempotentPipeline::new(Report(Arc::clone(&runs)), manager);
        let first = p.execute(&42).unwrap_or_else(|e| panic!("{e}"));
        assert!(first.is_retained());
        let again = p.execute(&42).unwrap_or_else(|e| panic!("the replay: {e}"));
        assert!(again.is_replayed());
        assert_eq!(again.value, Ok((String::new(), T::New { id: 42 })));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
