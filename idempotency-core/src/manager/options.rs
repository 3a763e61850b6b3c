//! The vocabulary of one call: the [`Call`] (key, fingerprint, per-call settings) and the
//! policies a caller can choose.

use std::time::Duration;

use crate::key::{DerivedKey, Fingerprint, IdempotencyKey};

/// What a caller does when another caller holds a live lease on the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictPolicy {
    /// Return [`Error::InProgress`] at once (the default; the IETF draft's 409, Stripe's
    /// `idempotency_key_in_use`).
    ///
    /// [`Error::InProgress`]: crate::Error::InProgress
    Reject,
    /// Poll until the holder finishes, then replay its result; if the holder released its claim
    /// (a retryable failure) exactly one waiter claims and runs. After `timeout` (caller-side
    /// monotonic time) return [`Error::InProgress`]. (Temporal's `UseExisting`, Restate's
    /// attach.)
    ///
    /// [`Error::InProgress`]: crate::Error::InProgress
    Wait {
        /// The longest time to wait.
        timeout: Duration,
    },
}

/// What happens when an idempotency key is reused with a different fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FingerprintPolicy {
    /// Replay the stored result and flag it in the provenance (the specification's default).
    #[default]
    Replay,
    /// Refuse with [`Error::FingerprintMismatch`] (Stripe, the IETF draft: 422).
    ///
    /// [`Error::FingerprintMismatch`]: crate::Error::FingerprintMismatch
    Reject,
}

/// What happens when the store cannot be reached at claim time (SEMANTICS.md scenario 23).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreErrorPolicy {
    /// The function does not run; the caller gets the store error (the default).
    #[default]
    FailClosed,
    /// The function runs unprotected; the outcome's provenance says so.
    FailOpen,
}

/// Per-call settings; unset fields take the manager's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// Retention of a `Success` record, from completion.
    pub ttl: Option<Duration>,
    /// Retention of a `Failed` record, from completion.
    pub failure_ttl: Option<Duration>,
    /// The lease (pending timeout).
    pub pending_timeout: Option<Duration>,
    /// The conflict policy.
    pub on_conflict: Option<ConflictPolicy>,
    /// The fingerprint policy.
    pub fingerprint: Option<FingerprintPolicy>,
    /// Whether errors are stored as `Failed` records (`true`) or release the claim (`false`).
    pub cache_failures: Option<bool>,
    /// Cache bypass: run even if a finished record exists, and replace it.
    pub refresh: bool,
    /// Whether the lease is renewed while the function runs (default: the manager's
    /// [`renew_leases`](super::ManagerBuilder::renew_leases), itself `true` by default).
    pub renew_lease: Option<bool>,
}

/// One idempotent call: its key, the fingerprint of its inputs, and per-call settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The idempotency key.
    pub key: IdempotencyKey,
    /// The fingerprint of the inputs.
    pub fingerprint: Fingerprint,
    /// Per-call settings.
    pub options: CallOptions,
}

impl Call {
    /// A call with default settings.
    pub fn new(derived: DerivedKey) -> Call {
        Call {
            key: derived.key,
            fingerprint: derived.fingerprint,
            options: CallOptions::default(),
        }
    }
    /// Sets the success TTL.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.options.ttl = Some(ttl);
        self
    }
    /// Sets the failure TTL.
    pub fn failure_ttl(mut self, ttl: Duration) -> Self {
        self.options.failure_ttl = Some(ttl);
        self
    }
    /// Sets the lease (pending timeout).
    pub fn pending_timeout(mut self, lease: Duration) -> Self {
        self.options.pending_timeout = Some(lease);
        self
    }
    /// Sets the conflict policy.
    pub fn on_conflict(mut self, policy: ConflictPolicy) -> Self {
        self.options.on_conflict = Some(policy);
        self
    }
    /// Sets the fingerprint policy.
    pub fn fingerprint_policy(mut self, policy: FingerprintPolicy) -> Self {
        self.options.fingerprint = Some(policy);
        self
    }
    /// Sets whether errors are cached as `Failed` records.
    pub fn cache_failures(mut self, cache: bool) -> Self {
        self.options.cache_failures = Some(cache);
        self
    }
    /// Sets whether the lease is renewed while the function runs (see
    /// [`ManagerBuilder::renew_leases`](super::ManagerBuilder::renew_leases)).
    pub fn renew_lease(mut self, renew: bool) -> Self {
        self.options.renew_lease = Some(renew);
        self
    }
    /// Bypasses the stored result: the function runs and its result replaces the record.
    pub fn refresh(mut self) -> Self {
        self.options.refresh = true;
        self
    }
}

impl From<DerivedKey> for Call {
    fn from(d: DerivedKey) -> Call {
        Call::new(d)
    }
}
