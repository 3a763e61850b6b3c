//! The claim step: from a call to a held key, a finished record to replay, or (fail-open) an
//! unprotected run. It runs no user code.

use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::key::IdempotencyKey;
use crate::record::{Owner, RecordStatus};
use crate::rt;
use crate::storage::{Claim, ClaimRequest, Observed};
use crate::telemetry::{Counters, Step, StoreTimer};

use super::attempt::{Attempt, Lease};
use super::config::Settings;
use super::options::{Call, ConflictPolicy, FingerprintPolicy, StoreErrorPolicy};
use super::IdempotencyManager;

/// What the claim step found.
pub(super) enum Claimed<'a> {
    /// This caller holds the key: run the function.
    Acquired(Attempt<'a>),
    /// The key has a finished record: replay it (`mismatch`: its fingerprint differs from the
    /// call's, under the replay policy).
    Finished {
        /// The record.
        obs: Observed,
        /// Whether its fingerprint differs from the call's.
        mismatch: bool,
    },
    /// The store is unreachable and the policy is fail-open: run the function unprotected.
    Unprotected {
        /// The execution id the refused claim carried.
        execution_id: Uuid,
    },
}

/// One claim's answer, read.
#[allow(clippy::large_enum_variant)] // Returned at once, never held across an await (issue 17).
enum Settled<'a> {
    /// The claim step is over.
    Done(Claimed<'a>),
    /// A live `Pending` record of `holder`, whose lease ends at `lease_until` (store clock).
    Conflict {
        holder: Owner,
        lease_until: crate::record::Timestamp,
    },
}

impl IdempotencyManager {
    /// Claims `call`'s key: one claim, or, under [`ConflictPolicy::Wait`], one claim per poll
    /// until the holder finishes or the wait ends.
    ///
    /// # Errors
    /// [`Error::InProgress`], [`Error::FingerprintMismatch`] (reject policy), store errors
    /// (fail-closed), `CorruptRecord`/`IncompatibleRecord`.
    pub(super) async fn claim<'a>(
        &'a self,
        call: &Call,
        key: &'a IdempotencyKey,
        settings: Settings,
    ) -> Result<Claimed<'a>> {
        let storage = &self.inner.storage;
        let counters = &self.inner.counters;
        if call.options.refresh && settings.fingerprint == FingerprintPolicy::Reject {
            // Boxed, as the wait below: rare steps kept out of every claim's future.
            Box::pin(self.refuse_refresh_of_other_inputs(call, key)).await?;
        }
        if !call.options.refresh {
            // A live finished record the store reads at once is what the claim would answer:
            // replay it without making a claim request (see `Storage::peek_finished`).
            // Only a live finished record, whatever a store answers.
            let live =
                |o: &Observed| matches!(o.status(), RecordStatus::Success | RecordStatus::Failed);
            if let Some(obs) = storage.peek_finished(key).filter(live) {
                if let Settled::Done(claimed) = self.existing(call, key, settings, obs)? {
                    return Ok(claimed);
                }
            }
        }
        let req = settings.request(call);
        let mut wait = Wait::new(settings.on_conflict, self.inner.config.poll_interval);
        loop {
            let claimed_at = Instant::now();
            let timer = StoreTimer::start();
            let claimed = storage.try_claim(key, &req).await;
            timer.stop("claim");
            // The answer is read by a plain function, so that no record is held across the
            // wait below: this future stays small, and a replay moves less (issue 17).
            let (holder, lease_until) =
                match self.settle(call, key, &req, settings, &wait, claimed_at, claimed)? {
                    Settled::Done(claimed) => return Ok(claimed),
                    Settled::Conflict {
                        holder,
                        lease_until,
                    } => (holder, lease_until),
                };
            if !Box::pin(wait.again(counters, key, &holder)).await {
                return Err(Error::InProgress {
                    key: key.clone(),
                    lease_until,
                });
            }
        }
    }

    /// What one claim's answer means: the key is held, a finished record is to be replayed, or
    /// a live `Pending` record is a conflict (`Settled::Conflict`, for the caller to wait on or
    /// report).
    ///
    /// # Errors
    /// As [`claim`](Self::claim), but never [`Error::InProgress`].
    #[allow(clippy::too_many_arguments)]
    fn settle<'a>(
        &'a self,
        call: &Call,
        key: &'a IdempotencyKey,
        req: &ClaimRequest,
        settings: Settings,
        wait: &Wait,
        claimed_at: Instant,
        claimed: Result<Claim>,
    ) -> Result<Settled<'a>> {
        let counters = &self.inner.counters;
        let claim = match claimed {
            Ok(c) => c,
            Err(e) => return self.store_down(e, key, req).map(Settled::Done),
        };
        wait.settled(&claim, counters);
        let obs = match claim {
            Claim::Acquired {
                owner, takeover, ..
            } => {
                counters.step(Step::Claimed, key, Some(&owner));
                if takeover {
                    counters.step(Step::TookOver, key, Some(&owner));
                }
                crate::fault_point!(crate::fault::AFTER_CLAIM, key.as_str());
                let lease = Lease {
                    owner,
                    claimed_at,
                    takeover,
                };
                let attempt = Attempt::new(&self.inner, key, lease, settings);
                return Ok(Settled::Done(Claimed::Acquired(attempt)));
            }
            Claim::Existing(obs) => obs,
        };
        self.existing(call, key, settings, obs)
    }

    /// What a live record found by a claim means: a finished one is replayed, a `Pending` one
    /// is a conflict; a fingerprint mismatch under the reject policy is an error first.
    ///
    /// # Errors
    /// [`Error::FingerprintMismatch`] (reject policy).
    fn existing<'a>(
        &'a self,
        call: &Call,
        key: &'a IdempotencyKey,
        settings: Settings,
        obs: Observed,
    ) -> Result<Settled<'a>> {
        let counters = &self.inner.counters;
        // The mismatch answer comes before the in-progress answer (scenario 16).
        let mismatch = obs.record.fingerprint != call.fingerprint;
        if mismatch {
            let rejected = settings.fingerprint == FingerprintPolicy::Reject;
            counters.step(Step::Mismatch { rejected }, key, None);
            if rejected {
                return Err(Error::FingerprintMismatch { key: key.clone() });
            }
        }
        match obs.record.status {
            RecordStatus::Pending | RecordStatus::Expired => Ok(Settled::Conflict {
                holder: obs.record.owner,
                lease_until: obs.record.expires_at,
            }),
            RecordStatus::Success | RecordStatus::Failed => {
                counters.step(Step::Replayed, key, Some(&obs.record.owner));
                Ok(Settled::Done(Claimed::Finished { obs, mismatch }))
            }
        }
    }

    /// A cache bypass replaces the record, so under the reject policy it must not replace a
    /// record made from other inputs (checked before the claim; the claim itself is still
    /// atomic).
    async fn refuse_refresh_of_other_inputs(
        &self,
        call: &Call,
        key: &IdempotencyKey,
    ) -> Result<()> {
        if let Some(obs) = self.inner.storage.get(key).await? {
            if obs.status() != RecordStatus::Expired && obs.record.fingerprint != call.fingerprint {
                let step = Step::Mismatch { rejected: true };
                self.inner.counters.step(step, key, None);
                return Err(Error::FingerprintMismatch { key: key.clone() });
            }
        }
        Ok(())
    }

    /// The answer to a claim the store failed: the error (fail-closed, or an error that is not
    /// an outage), or an unprotected run (fail-open).
    fn store_down<'a>(
        &self,
        e: Error,
        key: &IdempotencyKey,
        req: &ClaimRequest,
    ) -> Result<Claimed<'a>> {
        if !e.is_store_unavailable() {
            return Err(e);
        }
        let counters = &self.inner.counters;
        counters.step(Step::StoreError("claim"), key, None);
        if self.inner.config.on_store_error == StoreErrorPolicy::FailClosed {
            return Err(e);
        }
        counters.step(Step::Unprotected, key, None);
        Ok(Claimed::Unprotected {
            execution_id: req.execution_id,
        })
    }
}

/// A caller's wait on a conflict. Reads the caller-side monotonic clock only once a conflict
/// makes waiting possible.
struct Wait {
    policy: ConflictPolicy,
    poll_interval: Duration,
    started: Option<Instant>,
    waited: bool,
}

impl Wait {
    fn new(policy: ConflictPolicy, poll_interval: Duration) -> Self {
        Wait {
            policy,
            poll_interval,
            started: None,
            waited: false,
        }
    }

    /// After each claim: a caller that waited and now finds the key no longer `Pending` counts
    /// its lock wait.
    fn settled(&self, claim: &Claim, counters: &Counters) {
        let still_pending =
            matches!(claim, Claim::Existing(o) if o.record.status == RecordStatus::Pending);
        if let (true, false, Some(t)) = (self.waited, still_pending, self.started) {
            counters.lock_wait(t.elapsed());
        }
    }

    /// After a conflict with `holder`: sleeps until the next poll and answers `true`, or
    /// answers `false` when the caller must give up (the reject policy, or the wait is over).
    async fn again(&mut self, counters: &Counters, key: &IdempotencyKey, holder: &Owner) -> bool {
        if !self.waited {
            counters.step(Step::Conflict, key, Some(holder));
        }
        let since = *self.started.get_or_insert_with(Instant::now);
        match self.policy {
            ConflictPolicy::Wait { timeout } if since.elapsed() < timeout => {
                self.waited = true;
                let left = timeout.saturating_sub(since.elapsed());
                rt::sleep(self.poll_interval.min(left)).await;
                true
            }
            _ => {
                if self.waited {
                    counters.lock_wait(since.elapsed());
                }
                false
            }
        }
    }
}
