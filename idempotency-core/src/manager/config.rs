//! The manager's settings ([`ManagerConfig`], built by [`ManagerBuilder`]) and the settings of
//! one call resolved against them ([`Settings`]).

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::storage::{ClaimRequest, DynStorage};
use crate::telemetry::Counters;

use super::options::{Call, ConflictPolicy, FingerprintPolicy, StoreErrorPolicy};
use super::{IdempotencyManager, Inner};

/// The manager's settings. Build with [`IdempotencyManager::builder`].
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    default_ttl: Duration,
    failure_ttl: Duration,
    pending_timeout: Duration,
    on_conflict: ConflictPolicy,
    fingerprint: FingerprintPolicy,
    pub(super) on_store_error: StoreErrorPolicy,
    cache_failures: bool,
    pub(super) max_result_bytes: usize,
    pub(super) complete_attempts: u32,
    pub(super) poll_interval: Duration,
    renew_leases: bool,
    pub(super) max_lease_renewal: Duration,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            default_ttl: Duration::from_secs(3600),
            failure_ttl: Duration::from_secs(300),
            pending_timeout: Duration::from_secs(300),
            on_conflict: ConflictPolicy::Reject,
            fingerprint: FingerprintPolicy::Replay,
            on_store_error: StoreErrorPolicy::FailClosed,
            cache_failures: true,
            max_result_bytes: 128 << 20,
            complete_attempts: 3,
            poll_interval: Duration::from_millis(10),
            renew_leases: true,
            max_lease_renewal: Duration::from_secs(24 * 3600),
        }
    }
}

impl ManagerConfig {
    /// Retention of `Success` records.
    pub fn default_ttl(&self) -> Duration {
        self.default_ttl
    }
    /// Retention of `Failed` records.
    pub fn failure_ttl(&self) -> Duration {
        self.failure_ttl
    }
    /// The lease (pending timeout).
    pub fn pending_timeout(&self) -> Duration {
        self.pending_timeout
    }
    /// Whether a function's own errors are stored as `Failed` records by default (a call's
    /// [`CallOptions::cache_failures`](super::CallOptions::cache_failures) overrides it).
    pub fn cache_failures(&self) -> bool {
        self.cache_failures
    }
    /// Whether `call`'s own errors are stored as `Failed` records: its
    /// [`CallOptions::cache_failures`](super::CallOptions::cache_failures) where it sets one,
    /// else this manager's [`cache_failures`](Self::cache_failures). `try_execute_with`, which
    /// every entry point that classifies errors goes through (`try_execute`, the pipeline,
    /// `#[idempotent]`), asks this once per call.
    pub fn caches_failures_of(&self, call: &super::Call) -> bool {
        call.options.cache_failures.unwrap_or(self.cache_failures)
    }
    /// Whether a call's lease is renewed while its function runs, by default (a call's
    /// [`CallOptions::renew_lease`](super::CallOptions::renew_lease) overrides it).
    pub fn renew_leases(&self) -> bool {
        self.renew_leases
    }

    /// The settings of `call`: its own where it sets them, else the manager's. A per-call TTL
    /// shorter than the manager's lease shortens the lease to match, unless the call sets its
    /// own lease.
    ///
    /// # Errors
    /// [`Error::Config`] for durations [`validate_durations`] refuses.
    pub(super) fn resolve(&self, call: &Call) -> Result<Settings> {
        let o = &call.options;
        let ttl = o.ttl.unwrap_or(self.default_ttl);
        let failure_ttl = o.failure_ttl.unwrap_or(self.failure_ttl);
        let lease = o
            .pending_timeout
            .unwrap_or_else(|| self.pending_timeout.min(ttl));
        validate_durations(ttl, failure_ttl, lease)?;
        Ok(Settings {
            ttl,
            failure_ttl,
            lease,
            on_conflict: o.on_conflict.unwrap_or(self.on_conflict),
            fingerprint: o.fingerprint.unwrap_or(self.fingerprint),
            renew: o.renew_lease.unwrap_or(self.renew_leases),
        })
    }
}

/// The settings of one call, resolved against the manager's ([`ManagerConfig::resolve`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    /// Retention of a `Success` record, from completion.
    pub(super) ttl: Duration,
    /// Retention of a `Failed` record, from completion.
    pub(super) failure_ttl: Duration,
    /// The lease.
    pub(super) lease: Duration,
    pub(super) on_conflict: ConflictPolicy,
    pub(super) fingerprint: FingerprintPolicy,
    /// Whether the lease is renewed while the function runs.
    pub(super) renew: bool,
}

impl Settings {
    /// A claim of `call`'s key under these settings, by a fresh execution id.
    pub(super) fn request(&self, call: &Call) -> ClaimRequest {
        ClaimRequest {
            execution_id: crate::rt::execution_id(),
            fingerprint: call.fingerprint,
            lease: self.lease,
            refresh: call.options.refresh,
        }
    }
}

/// Builds an [`IdempotencyManager`]. Defaults from the specification: TTL 3600 s, failure TTL
/// 300 s, pending timeout (lease) 300 s, conflict → reject, fingerprint mismatch → replay, store
/// unavailable → fail closed, failures cached.
#[derive(Debug)]
pub struct ManagerBuilder {
    storage: Arc<dyn DynStorage>,
    config: ManagerConfig,
}

impl ManagerBuilder {
    pub(super) fn new(storage: Arc<dyn DynStorage>) -> Self {
        ManagerBuilder {
            storage,
            config: ManagerConfig::default(),
        }
    }
    /// Retention of `Success` records, from completion. Default 3600 s.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.config.default_ttl = ttl;
        self
    }
    /// Retention of `Failed` records, from completion. Default 300 s.
    pub fn failure_ttl(mut self, ttl: Duration) -> Self {
        self.config.failure_ttl = ttl;
        self
    }
    /// The lease: how long a `Pending` record blocks others before one may take over. Default
    /// 300 s. While the function runs its lease is renewed (see
    /// [`renew_leases`](Self::renew_leases)), so the lease bounds how long a crashed or stopped
    /// holder blocks the key, not how long the function may run; without renewal, set it above
    /// the function's longest run time.
    pub fn pending_timeout(mut self, lease: Duration) -> Self {
        self.config.pending_timeout = lease;
        self
    }
    /// The conflict policy. Default [`ConflictPolicy::Reject`].
    pub fn on_conflict(mut self, policy: ConflictPolicy) -> Self {
        self.config.on_conflict = policy;
        self
    }
    /// The fingerprint policy. Default [`FingerprintPolicy::Replay`].
    pub fn fingerprint_policy(mut self, policy: FingerprintPolicy) -> Self {
        self.config.fingerprint = policy;
        self
    }
    /// The store-unavailable policy. Default [`StoreErrorPolicy::FailClosed`].
    pub fn on_store_error(mut self, policy: StoreErrorPolicy) -> Self {
        self.config.on_store_error = policy;
        self
    }
    /// Whether errors are stored as `Failed` records for the failure TTL (default `true`, as
    /// Stripe and the IETF draft replay errors); `false` releases the claim on every error, as
    /// Powertools does. Per-error classification: [`IdempotencyManager::try_execute_with`].
    pub fn cache_failures(mut self, cache: bool) -> Self {
        self.config.cache_failures = cache;
        self
    }
    /// The largest encoded result (or stored error) kept, in bytes (default 128 MiB; values are
    /// CBOR, where a `Vec<u8>` takes up to 2 bytes per element, a `serde_bytes` buffer 1). A
    /// larger value is not retained: the caller that ran the function still gets it, marked
    /// [`Retention::NotRetained`](super::Retention::NotRetained); the record is finished as
    /// "result not retained", so repeats get [`Error::ResultNotRetained`] and the function does
    /// not run again.
    pub fn max_result_bytes(mut self, bytes: usize) -> Self {
        self.config.max_result_bytes = bytes;
        self
    }
    /// How many times a completion is attempted before giving up (default 3, with 10 ms then
    /// 40 ms of backoff).
    pub fn complete_attempts(mut self, attempts: u32) -> Self {
        self.config.complete_attempts = attempts.max(1);
        self
    }
    /// How often a waiting caller polls the store under [`ConflictPolicy::Wait`] (default 10 ms).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.config.poll_interval = every;
        self
    }

    /// Whether a call's lease is renewed while its function runs (SEMANTICS.md scenario 14):
    /// every third of the lease, in the background (one timer thread serves every call, sync
    /// and async), until the call finishes, panics or its future is dropped. Default `true`,
    /// so a function may run longer than its lease without being taken over; a call can opt
    /// out with [`Call::renew_lease`](super::Call::renew_lease). A renewal the store refuses
    /// (another caller took over) loses the lease: the function can see it
    /// ([`Current::is_lease_lost`](crate::Current::is_lease_lost)) and its completion is
    /// refused with [`Error::LeaseLost`]. A renewal that fails (the store unreachable) is tried
    /// again; only a whole lease without a successful renewal loses the lease.
    pub fn renew_leases(mut self, renew: bool) -> Self {
        self.config.renew_leases = renew;
        self
    }
    /// The longest a call keeps its lease by renewing, counted from its claim (default 24 h):
    /// past it, renewals stop and the lease runs out, so a function that hangs cannot hold its
    /// key for ever. The function can see the loss
    /// ([`Current::is_lease_lost`](crate::Current::is_lease_lost)).
    pub fn max_lease_renewal(mut self, bound: Duration) -> Self {
        self.config.max_lease_renewal = bound;
        self
    }

    /// Checks the settings and builds the manager.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero TTL, failure TTL or lease, a lease longer than the TTL
    /// (SEMANTICS.md scenario 21), or an invalid key prefix.
    pub fn build(self) -> Result<IdempotencyManager> {
        let c = &self.config;
        validate_durations(c.default_ttl, c.failure_ttl, c.pending_timeout)?;
        Ok(IdempotencyManager {
            inner: Arc::new(Inner {
                namespace: super::namespace_of(self.storage.as_ref()),
                storage: self.storage,
                config: self.config,
                counters: Counters::default(),
            }),
        })
    }
}

/// Checks a TTL, failure TTL and lease: each at least 1 ms (stores count milliseconds), and the
/// lease no longer than the TTL (SEMANTICS.md scenario 21).
///
/// # Errors
/// [`Error::Config`] naming the rule.
pub(super) fn validate_durations(
    ttl: Duration,
    failure_ttl: Duration,
    lease: Duration,
) -> Result<()> {
    let ms = Duration::from_millis(1);
    if ttl < ms || failure_ttl < ms || lease < ms {
        return Err(Error::Config(
            "`ttl`, `failure_ttl` and `pending_timeout` must be at least 1 ms".into(),
        ));
    }
    if lease > ttl {
        return Err(Error::Config(format!(
            "the lease (`pending_timeout`, {lease:?}) must not exceed `ttl` ({ttl:?})"
        )));
    }
    Ok(())
}
