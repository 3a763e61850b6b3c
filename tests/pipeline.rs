//! The pipeline base (`Pipeline` + `IdempotentPipeline`) on the memory store: execute, custom
//! key, cache bypass, status and provenance.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idempotency::{
    CallOptions, ErrorKind, FingerprintPolicy, IdempotencyManager, IdempotentPipeline, ManualClock,
    MemoryStorage, Pipeline, RecordStatus, Timestamp,
};
use serde::{Deserialize, Serialize};

/// Converts litres of diesel into kg CO2e and counts its runs. `Err` for a negative quantity
/// (permanent) and for the quantity 999 (transient, "the factor service timed out").
struct DieselCo2e {
    runs: Arc<AtomicUsize>,
    factor: f64,
    options: CallOptions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum CalcError {
    Negative(f64),
    Timeout,
}

impl Pipeline for DieselCo2e {
    const NAME: &'static str = "tests::diesel_co2e";
    type Input = f64;
    type Output = f64;
    type Error = CalcError;

    fn ttl(&self) -> Option<Duration> {
        Some(Duration::from_secs(600))
    }
    fn call_options(&self) -> CallOptions {
        self.options.clone()
    }
    fn is_transient(&self, error: &CalcError) -> bool {
        *error == CalcError::Timeout
    }
    fn run(&self, litres: &f64) -> Result<f64, CalcError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if *litres < 0.0 {
            return Err(CalcError::Negative(*litres));
        }
        if *litres == 999.0 {
            return Err(CalcError::Timeout);
        }
        Ok(litres * self.factor)
    }
}

/// A second pipeline with the same input type, to check that pipelines never share records.
struct PetrolCo2e(Arc<AtomicUsize>);

impl Pipeline for PetrolCo2e {
    const NAME: &'static str = "tests::petrol_co2e";
    type Input = f64;
    type Output = f64;
    type Error = CalcError;
    fn run(&self, litres: &f64) -> Result<f64, CalcError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(litres * 2.075)
    }
}

struct Fixture {
    runs: Arc<AtomicUsize>,
    clock: ManualClock,
    pipeline: IdempotentPipeline<DieselCo2e>,
}

const T0: Timestamp = Timestamp(1_700_000_000_000);

fn fixture_with(options: CallOptions) -> Fixture {
    let clock = ManualClock::new(T0);
    let store = MemoryStorage::with_clock(Arc::new(clock.clone()));
    let runs = Arc::new(AtomicUsize::new(0));
    let pipeline = IdempotentPipeline::new(
        DieselCo2e {
            runs: Arc::clone(&runs),
            factor: 2.58354,
            options,
        },
        IdempotencyManager::new(store),
    );
    Fixture {
        runs,
        clock,
        pipeline,
    }
}

fn fixture() -> Fixture {
    fixture_with(CallOptions::default())
}

#[test]
fn scenario_6_pipeline_execute_runs_once_then_replays() {
    let f = fixture();
    let first = f.pipeline.execute(&100.0).unwrap();
    assert!(!first.is_replayed());
    assert_eq!(first.value, Ok(100.0 * 2.58354));
    assert_eq!(f.runs.load(Ordering::SeqCst), 1);

    // Make the pipeline return something else now: the replay must still be the stored value.
    let again = IdempotentPipeline::new(
        DieselCo2e {
            runs: Arc::clone(&f.runs),
            factor: 1.0,
            options: CallOptions::default(),
        },
        f.pipeline.manager().clone(),
    )
    .execute(&100.0)
    .unwrap();
    assert!(again.is_replayed());
    assert_eq!(again.value, Ok(100.0 * 2.58354));
    assert_eq!(f.runs.load(Ordering::SeqCst), 1);

    // A different input is a different operation.
    let other = f.pipeline.execute(&10.0).unwrap();
    assert!(!other.is_replayed());
    assert_ne!(other.provenance.key, first.provenance.key);
    assert_eq!(f.runs.load(Ordering::SeqCst), 2);
}

#[test]
fn scenario_18_pipelines_with_same_input_do_not_share_records() {
    let f = fixture();
    let petrol_runs = Arc::new(AtomicUsize::new(0));
    let petrol = IdempotentPipeline::new(
        PetrolCo2e(Arc::clone(&petrol_runs)),
        f.pipeline.manager().clone(),
    );
    let diesel = f.pipeline.execute_with_key("row-1", &100.0).unwrap();
    let petrol = petrol.execute_with_key("row-1", &100.0).unwrap();
    assert!(!diesel.is_replayed() && !petrol.is_replayed());
    assert_eq!(petrol.value, Ok(100.0 * 2.075));
    assert_eq!(f.runs.load(Ordering::SeqCst), 1);
    assert_eq!(petrol_runs.load(Ordering::SeqCst), 1);
    assert!(petrol
        .provenance
        .key
        .as_str()
        .starts_with("tests::petrol_co2e:"));
    assert!(diesel
        .provenance
        .key
        .as_str()
        .starts_with("tests::diesel_co2e:"));
}

#[test]
fn scenario_16_pipeline_custom_key_same_input_replays_different_input_is_flagged() {
    let f = fixture();
    let first = f
        .pipeline
        .execute_with_key("ACM-202401-00026", &1745.6)
        .unwrap();
    let repeat = f
        .pipeline
        .execute_with_key("ACM-202401-00026", &1745.6)
        .unwrap();
    assert!(repeat.is_replayed());
    assert!(!repeat.provenance.fingerprint_mismatch);
    assert_eq!(repeat.value, first.value);

    // Default policy: replay the first result and say the fingerprint differed.
    let reused = f
        .pipeline
        .execute_with_key("ACM-202401-00026", &1920.2)
        .unwrap();
    assert!(reused.is_replayed());
    assert!(reused.provenance.fingerprint_mismatch);
    assert_eq!(reused.value, first.value);
    assert_eq!(f.runs.load(Ordering::SeqCst), 1);

    // The custom key, not the input, identifies the operation.
    assert_eq!(reused.provenance.key, first.provenance.key);
    let by_input = f.pipeline.execute(&1745.6).unwrap();
    assert!(!by_input.is_replayed());
    assert_ne!(by_input.provenance.key, first.provenance.key);
}

#[test]
fn scenario_16_pipeline_custom_key_reject_policy_refuses_different_input() {
    let f = fixture_with(CallOptions {
        fingerprint: Some(FingerprintPolicy::Reject),
        ..CallOptions::default()
    });
    f.pipeline
        .execute_with_key("BOR-202410-00280", &2118.5)
        .unwrap();
    let err = f
        .pipeline
        .execute_with_key("BOR-202410-00280", &1059.2)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FingerprintMismatch);
    assert_eq!(f.runs.load(Ordering::SeqCst), 1);
    // The stored record is unchanged: the original input still replays.
    let again = f
        .pipeline
        .execute_with_key("BOR-202410-00280", &2118.5)
        .unwrap();
    assert!(again.is_replayed());
    assert_eq!(again.value, Ok(2118.5 * 2.58354));
}

#[test]
fn scenario_32_pipeline_empty_custom_key_is_invalid() {
    let f = fixture();
    let err = f.pipeline.execute_with_key("", &1.0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidKey);
    assert_eq!(f.runs.load(Ordering::SeqCst), 0);
}

#[test]
fn pipeline_refresh_bypasses_and_replaces_stored_result() {
    let f = fixture();
    let first = f.pipeline.execute(&50.0).unwrap();
    f.clock.advance(Duration::from_secs(60));
    let refreshed = f.pipeline.execute_refresh(&50.0).unwrap();
    assert!(!refreshed.is_replayed());
    assert_eq!(f.runs.load(Ordering::SeqCst), 2);
    assert_ne!(
        refreshed.provenance.execution_id,
        first.provenance.execution_id
    );
    assert_eq!(refreshed.provenance.key, first.provenance.key);
    assert_eq!(refreshed.provenance.created_at, Timestamp(T0.0 + 60_000));

    // Later plain calls replay the refreshed record, not the first one.
    let after = f.pipeline.execute(&50.0).unwrap();
    assert!(after.is_replayed());
    assert_eq!(
        after.provenance.execution_id,
        refreshed.provenance.execution_id
    );
    assert_eq!(f.runs.load(Ordering::SeqCst), 2);
}

#[test]
fn pipeline_status_reports_status_ttl_and_execution_id() {
    let f = fixture();
    let before = f.pipeline.status(&7.0).unwrap();
    assert_eq!(before.status(), None);
    assert_eq!(before.time_to_live(), Duration::ZERO);

    let out = f.pipeline.execute(&7.0).unwrap();
    let status = f.pipeline.status(&7.0).unwrap();
    assert_eq!(status.key, out.provenance.key);
    assert_eq!(status.status(), Some(RecordStatus::Success));
    assert_eq!(status.execution_id(), Some(out.provenance.execution_id));
    assert_eq!(status.time_to_live(), Duration::from_secs(600));
    let record = status.record.unwrap();
    assert!(record.fingerprint_matches);
    assert_eq!(record.fencing_token, 1);

    f.clock.advance(Duration::from_secs(100));
    assert_eq!(
        f.pipeline.status(&7.0).unwrap().time_to_live(),
        Duration::from_secs(500)
    );

    // With a custom key, status compares the fingerprint of the given input.
    f.pipeline.execute_with_key("row-9", &7.0).unwrap();
    let other = f.pipeline.status_with_key("row-9", &8.0).unwrap();
    assert_eq!(other.status(), Some(RecordStatus::Success));
    assert!(!other.record.unwrap().fingerprint_matches);

    // Past the pipeline's TTL the record reads as expired, and the next call runs again.
    f.clock.advance(Duration::from_secs(500));
    assert_eq!(
        f.pipeline.status(&7.0).unwrap().status(),
        Some(RecordStatus::Expired)
    );
    let rerun = f.pipeline.execute(&7.0).unwrap();
    assert!(!rerun.is_replayed());
    assert!(rerun.provenance.takeover);
    assert_eq!(rerun.provenance.fencing_token, 2);
}

#[test]
fn pipeline_provenance_of_executed_and_replayed_results() {
    let f = fixture();
    let first = f.pipeline.execute(&3.0).unwrap();
    let p = &first.provenance;
    assert!(!p.replayed && !p.takeover && !p.unprotected && !p.fingerprint_mismatch);
    assert!(p.key.as_str().starts_with("tests::diesel_co2e:"));
    assert_eq!(p.key.hash_hex().len(), 32);
    assert_eq!(p.created_at, T0);
    assert_eq!(p.expires_at, Timestamp(T0.0 + 600_000));
    assert_eq!(p.time_to_live, Duration::from_secs(600));

    f.clock.advance(Duration::from_secs(30));
    let again = f.pipeline.execute(&3.0).unwrap();
    let q = &again.provenance;
    assert!(q.replayed);
    assert_eq!(q.key, p.key);
    assert_eq!(q.execution_id, p.execution_id);
    assert_eq!(q.created_at, p.created_at);
    assert_eq!(q.expires_at, p.expires_at);
    assert_eq!(q.time_to_live, Duration::from_secs(570));
}

#[test]
fn scenario_7_pipeline_permanent_error_is_stored_and_replayed() {
    let f = fixture();
    let first = f.pipeline.execute(&-5.0).unwrap();
    assert_eq!(first.value, Err(CalcError::Negative(-5.0)));
    let again = f.pipeline.execute(&-5.0).unwrap();
    assert!(again.is_replayed());
    assert_eq!(again.value, Err(CalcError::Negative(-5.0)));
    assert_eq!(f.runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        f.pipeline.status(&-5.0).unwrap().status(),
        Some(RecordStatus::Failed)
    );
}

#[test]
fn scenario_8_pipeline_transient_error_releases_the_claim() {
    let f = fixture();
    let first = f.pipeline.execute(&999.0).unwrap();
    assert_eq!(first.value, Err(CalcError::Timeout));
    assert_eq!(f.pipeline.status(&999.0).unwrap().status(), None);
    let again = f.pipeline.execute(&999.0).unwrap();
    assert!(!again.is_replayed());
    assert_eq!(f.runs.load(Ordering::SeqCst), 2);

    // `cache_failures = false` makes every error transient, even a permanent one.
    let g = fixture_with(CallOptions {
        cache_failures: Some(false),
        ..CallOptions::default()
    });
    g.pipeline.execute(&-1.0).unwrap();
    g.pipeline.execute(&-1.0).unwrap();
    assert_eq!(g.runs.load(Ordering::SeqCst), 2);
}

/// A manager built with `cache_failures(false)` makes every pipeline error transient, as it
/// does for `try_execute` and `#[idempotent]`: nothing is stored, the next call runs again.
#[test]
fn scenario_8_pipeline_follows_the_managers_cache_failures() {
    let runs = Arc::new(AtomicUsize::new(0));
    let manager = IdempotencyManager::builder(MemoryStorage::new())
        .cache_failures(false)
        .build()
        .unwrap();
    let pipeline = IdempotentPipeline::new(
        DieselCo2e {
            runs: Arc::clone(&runs),
            factor: 2.58354,
            options: CallOptions::default(),
        },
        manager,
    );
    let first = pipeline.execute(&-1.0).unwrap();
    assert_eq!(first.value, Err(CalcError::Negative(-1.0)));
    assert_eq!(pipeline.status(&-1.0).unwrap().status(), None, "stored");
    let again = pipeline.execute(&-1.0).unwrap();
    assert!(!again.is_replayed());
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    // A call's own option still wins over the manager's.
    let call = pipeline.call(&-2.0).unwrap().cache_failures(true);
    pipeline.execute_call(&call, &-2.0).unwrap();
    assert!(pipeline.execute_call(&call, &-2.0).unwrap().is_replayed());
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

#[test]
fn pipeline_call_can_be_adjusted_before_execute() {
    let f = fixture();
    let call = f
        .pipeline
        .call_with_key("row-1", &4.0)
        .unwrap()
        .ttl(Duration::from_secs(5))
        .pending_timeout(Duration::from_secs(1));
    let out = f.pipeline.execute_call(&call, &4.0).unwrap();
    assert_eq!(out.provenance.time_to_live, Duration::from_secs(5));
    let status = f.pipeline.status_of(&call).unwrap();
    assert_eq!(status.time_to_live(), Duration::from_secs(5));
}
