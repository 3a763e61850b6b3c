//! What the manager reports: tracing events, `metrics` counters and histograms (feature
//! `metrics`), and the [`ManagerStats`] snapshot, which works without any feature.
//!
//! Events carry the idempotency key and the execution id, never the raw inputs or results.
//! Tracing target: `idempotency`. Metric names (all prefixed `idempotency_`):
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | `idempotency_requests_total` | counter | `outcome` = `executed`, `replayed`, `conflict`, `mismatch_rejected`, `store_error`, `unprotected`, `error` | calls by outcome |
//! | `idempotency_executions_total` | counter | | functions run under a claim |
//! | `idempotency_replays_total` | counter | | stored results returned |
//! | `idempotency_conflicts_total` | counter | | `InProgress` answers and waits |
//! | `idempotency_fingerprint_mismatches_total` | counter | | key reused with other inputs |
//! | `idempotency_failures_cached_total` | counter | | errors stored as `Failed` records |
//! | `idempotency_releases_total` | counter | | claims released (transient error, panic) |
//! | `idempotency_takeovers_total` | counter | | expired records taken over |
//! | `idempotency_fenced_out_total` | counter | | late writes refused (`LeaseLost`) |
//! | `idempotency_store_errors_total` | counter | `operation` | store failures |
//! | `idempotency_lock_wait_seconds` | histogram | | time spent waiting under `ConflictPolicy::Wait` |
//! | `idempotency_store_latency_seconds` | histogram | `operation` | duration of each store step |
//!
//! A replay that the store answers without a claim ([`Storage::peek_finished`](crate::Storage::peek_finished),
//! the memory store) makes no store step, so it adds no `claim` sample to
//! `idempotency_store_latency_seconds`; count requests and replays with the counters above.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::key::IdempotencyKey;
use crate::record::Owner;

/// One thing the manager did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Claimed,
    TookOver,
    Replayed,
    Conflict,
    Mismatch {
        rejected: bool,
    },
    Completed,
    FailureCached,
    /// The function ran but its value could not be stored (SEMANTICS.md scenario 28).
    NotRetained,
    Released,
    FencedOut,
    StoreError(&'static str),
    Unprotected,
}

/// Counters behind [`ManagerStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    executions: AtomicU64,
    replays: AtomicU64,
    conflicts: AtomicU64,
    mismatches: AtomicU64,
    failures_cached: AtomicU64,
    releases: AtomicU64,
    takeovers: AtomicU64,
    fenced_out: AtomicU64,
    store_errors: AtomicU64,
    unprotected: AtomicU64,
    lock_wait_micros: AtomicU64,
}

/// A snapshot of what one manager has done since it was built, with the ratios the
/// specification asks operators to watch (hit rate, duplicate rate, failure rate, lock
/// contention). Ratios are 0.0 when their denominator is zero.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ManagerStats {
    /// Calls made (every `execute`/`try_execute` and their sync forms).
    pub requests: u64,
    /// Functions run under a claim.
    pub executions: u64,
    /// Stored results returned.
    pub replays: u64,
    /// Calls that met a live `Pending` record (answered `InProgress`, or waited).
    pub conflicts: u64,
    /// Calls whose fingerprint differed from the stored one.
    pub fingerprint_mismatches: u64,
    /// Errors stored as `Failed` records.
    pub failures_cached: u64,
    /// Claims released (transient errors, panics).
    pub releases: u64,
    /// Expired records taken over.
    pub takeovers: u64,
    /// Late writes refused because a newer holder took over.
    pub fenced_out: u64,
    /// Store failures.
    pub store_errors: u64,
    /// Functions run unprotected under the fail-open policy.
    pub unprotected: u64,
    /// Total time spent waiting for other holders under `ConflictPolicy::Wait`.
    pub lock_wait: Duration,
}

impl ManagerStats {
    /// Replays / requests: how often a stored result answered.
    pub fn hit_rate(&self) -> f64 {
        ratio(self.replays, self.requests)
    }
    /// (Replays + conflicts) / requests: how often a call was a duplicate.
    pub fn duplicate_rate(&self) -> f64 {
        ratio(self.replays + self.conflicts, self.requests)
    }
    /// Failures cached / executions.
    pub fn failure_rate(&self) -> f64 {
        ratio(self.failures_cached, self.executions)
    }
    /// Conflicts / requests: how often callers met a live lease.
    pub fn lock_contention(&self) -> f64 {
        ratio(self.conflicts, self.requests)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl Counters {
    pub(crate) fn snapshot(&self) -> ManagerStats {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ManagerStats {
            requests: l(&self.requests),
            executions: l(&self.executions),
            replays: l(&self.replays),
            conflicts: l(&self.conflicts),
            fingerprint_mismatches: l(&self.mismatches),
            failures_cached: l(&self.failures_cached),
            releases: l(&self.releases),
            takeovers: l(&self.takeovers),
            fenced_out: l(&self.fenced_out),
            store_errors: l(&self.store_errors),
            unprotected: l(&self.unprotected),
            lock_wait: Duration::from_micros(l(&self.lock_wait_micros)),
        }
    }

    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Records `step` for `key` (and the holder, when there is one): a counter, a tracing event
    /// and, with the `metrics` feature, a metric.
    pub(crate) fn step(&self, step: Step, key: &IdempotencyKey, owner: Option<&Owner>) {
        let bump = |c: &AtomicU64| {
            c.fetch_add(1, Ordering::Relaxed);
        };
        // Formatted only when an event is enabled: nothing is allocated on the hot path.
        let execution_id = tracing::field::display(ExecutionId(owner));
        let fencing_token = owner.map_or(0, |o| o.fencing_token);
        let key = key.as_str();
        match step {
            Step::Claimed => {
                bump(&self.executions);
                tracing::debug!(target: "idempotency", key, execution_id, fencing_token, "claimed");
                outcome("executed");
                metric_counter("idempotency_executions_total");
            }
            Step::TookOver => {
                bump(&self.takeovers);
                tracing::info!(target: "idempotency", key, execution_id, fencing_token, "took over an expired record");
                metric_counter("idempotency_takeovers_total");
            }
            Step::Replayed => {
                bump(&self.replays);
                tracing::debug!(target: "idempotency", key, execution_id, fencing_token, "replayed");
                outcome("replayed");
                metric_counter("idempotency_replays_total");
            }
            Step::Conflict => {
                bump(&self.conflicts);
                tracing::debug!(target: "idempotency", key, execution_id, "conflict: in progress");
                outcome("conflict");
                metric_counter("idempotency_conflicts_total");
            }
            Step::Mismatch { rejected } => {
                bump(&self.mismatches);
                tracing::warn!(target: "idempotency", key, rejected, "fingerprint mismatch");
                if rejected {
                    outcome("mismatch_rejected");
                }
                metric_counter("idempotency_fingerprint_mismatches_total");
            }
            Step::Completed => {
                tracing::debug!(target: "idempotency", key, execution_id, fencing_token, "completed");
            }
            Step::FailureCached => {
                bump(&self.failures_cached);
                tracing::debug!(target: "idempotency", key, execution_id, fencing_token, "failed: error stored");
                metric_counter("idempotency_failures_cached_total");
            }
            Step::NotRetained => {
                // Counted with the stored failures (the record is a terminal marker), but said
                // at warn level: until the record expires, repeats get `ResultNotRetained`
                // instead of a replay, which the caller that ran never sees by itself.
                bump(&self.failures_cached);
                tracing::warn!(target: "idempotency", key, execution_id, fencing_token, "result not retained: repeats get ResultNotRetained until the record expires");
                metric_counter("idempotency_failures_cached_total");
            }
            Step::Released => {
                bump(&self.releases);
                tracing::debug!(target: "idempotency", key, execution_id, fencing_token, "released");
                metric_counter("idempotency_releases_total");
            }
            Step::FencedOut => {
                bump(&self.fenced_out);
                tracing::warn!(target: "idempotency", key, execution_id, fencing_token, "fenced out: a newer holder owns the key");
                metric_counter("idempotency_fenced_out_total");
            }
            Step::StoreError(operation) => {
                bump(&self.store_errors);
                tracing::warn!(target: "idempotency", key, operation, "store error");
                outcome("store_error");
                #[cfg(feature = "metrics")]
                metrics::counter!("idempotency_store_errors_total", "operation" => operation)
                    .increment(1);
            }
            Step::Unprotected => {
                bump(&self.unprotected);
                tracing::warn!(target: "idempotency", key, "store unavailable: running unprotected (fail-open)");
                outcome("unprotected");
            }
        }
    }

    pub(crate) fn lock_wait(&self, waited: Duration) {
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        self.lock_wait_micros.fetch_add(micros, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::histogram!("idempotency_lock_wait_seconds").record(waited.as_secs_f64());
    }
}

struct ExecutionId<'a>(Option<&'a Owner>);

impl std::fmt::Display for ExecutionId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(o) => o.execution_id.fmt(f),
            None => Ok(()),
        }
    }
}

/// A timer for one store step: reads the clock only with the `metrics` feature.
pub(crate) struct StoreTimer(#[cfg(feature = "metrics")] std::time::Instant);

impl StoreTimer {
    pub(crate) fn start() -> Self {
        StoreTimer(
            #[cfg(feature = "metrics")]
            std::time::Instant::now(),
        )
    }

    /// Records the duration of the step (feature `metrics`).
    pub(crate) fn stop(self, _operation: &'static str) {
        #[cfg(feature = "metrics")]
        metrics::histogram!("idempotency_store_latency_seconds", "operation" => _operation)
            .record(self.0.elapsed().as_secs_f64());
    }
}

fn outcome(_outcome: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("idempotency_requests_total", "outcome" => _outcome).increment(1);
}

fn metric_counter(_name: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(_name).increment(1);
}
