//! One attempt at a call: the claim this caller holds (key, owner, lease), the run of the
//! function under it, and the fenced write that finishes it.

use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::current::{CallContext, InCall, Loss};
use crate::error::{Error, Result};
use crate::key::IdempotencyKey;
use crate::record::{Owner, Record, RecordError};
use crate::rt::{self, CatchUnwind};
use crate::telemetry::{Step, StoreTimer};

use super::codec::{Codec, Disposition};
use super::config::Settings;
use super::outcome::{Outcome, Provenance, Retention};
use super::renewal::{Plan, Renewal};
use super::Inner;

/// A claim as the store granted it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lease {
    /// The holder: this attempt's execution id and fencing token.
    pub(super) owner: Owner,
    /// When the claim was sent (caller-side monotonic time): the lease runs at least until
    /// then plus the lease.
    pub(super) claimed_at: Instant,
    /// Whether the claim took over an expired record.
    pub(super) takeover: bool,
}

/// The claim this caller holds on one call's key, with what it needs to finish it.
pub(super) struct Attempt<'a> {
    inner: &'a Arc<Inner>,
    key: &'a IdempotencyKey,
    lease: Lease,
    settings: Settings,
}

impl<'a> Attempt<'a> {
    pub(super) fn new(
        inner: &'a Arc<Inner>,
        key: &'a IdempotencyKey,
        lease: Lease,
        settings: Settings,
    ) -> Self {
        Attempt {
            inner,
            key,
            lease,
            settings,
        }
    }

    /// The idempotency key as the caller named it.
    pub(super) fn key(&self) -> &IdempotencyKey {
        self.key
    }

    /// The holder.
    pub(super) fn owner(&self) -> &Owner {
        &self.lease.owner
    }

    /// Whether the claim took over an expired record.
    pub(super) fn takeover(&self) -> bool {
        self.lease.takeover
    }

    /// Runs `f` under this claim and finishes the claim with its value: stored (`Success`,
    /// `Failed`, or a "result not retained" marker) or released, as `codec` disposes of it.
    /// The lease is renewed while `f` runs (see [`renewal`](super::renewal)).
    /// A panic in `f` or in the codec releases the claim and resumes.
    ///
    /// # Errors
    /// [`Error::LeaseLost`] (a renewal found another holder, or the store refused the write),
    /// [`Error::CompletionNotRecorded`].
    pub(super) async fn run<R, F, Fut, K>(self, f: F, codec: &K) -> Result<Outcome<R>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
        K: Codec<R>,
    {
        let ctx = Arc::new(CallContext::new(
            self.key().clone(),
            Arc::clone(&self.inner.namespace),
            self.owner().execution_id,
            self.owner().fencing_token,
        ));
        let renewal = self.settings.renew.then(|| self.renew(&ctx));
        let value = body(f, &ctx).await;
        // The function is over: so are its renewals (a holder paused from here on, as a
        // stopped process would be, lets its lease run out).
        drop(renewal);
        let value = match value {
            Ok(v) => v,
            Err(panic) => {
                self.abandon().await;
                resume_unwind(panic);
            }
        };
        crate::fault_point!(crate::fault::AFTER_RUN, self.key().as_str());
        // The user's `Serialize`, `Deserialize` (the replay check) and transient classifier run
        // here, after the function: a panic in them is treated like a panic in the function.
        // A failure after a nested framework error is not the function's outcome: it is
        // released, never stored.
        let (max, nested) = (self.inner.config.max_result_bytes, ctx.nested_error());
        let disposition =
            match catch_unwind(AssertUnwindSafe(|| codec.dispose(&value, max, nested))) {
                Ok(d) => d,
                Err(panic) => {
                    self.abandon().await;
                    resume_unwind(panic);
                }
            };
        if ctx.lease.loss() == Some(Loss::TakenOver) && !matches!(disposition, Disposition::Release)
        {
            // Another caller holds the key: the store would refuse the write (fencing). The
            // refused renewal was counted as fenced out.
            return Err(Error::LeaseLost {
                key: self.key().clone(),
            });
        }
        self.finish(value, disposition).await
    }

    /// Starts renewing this claim's lease.
    fn renew(&self, ctx: &Arc<CallContext>) -> Renewal {
        let plan = Plan {
            inner: Arc::clone(self.inner),
            owner: self.lease.owner,
            lease: self.settings.lease,
            claimed_at: self.lease.claimed_at,
        };
        Renewal::start(plan, ctx)
    }

    /// Finishes the claim as `disposition` says.
    async fn finish<R>(&self, value: R, disposition: Disposition) -> Result<Outcome<R>> {
        let counters = &self.inner.counters;
        let (step, finished, ttl, retention) = match disposition {
            Disposition::Success(bytes) => {
                let rec = self.write(Ok(&bytes)).await?;
                (Step::Completed, rec, self.settings.ttl, Retention::Stored)
            }
            Disposition::Failure(bytes) => {
                let rec = self.write(Err(&RecordError::Encoded(bytes))).await?;
                let ttl = self.settings.failure_ttl;
                (Step::FailureCached, rec, ttl, Retention::Stored)
            }
            Disposition::NotRetained(reason) => {
                // The function ran (its side effects are done) but its value cannot be
                // replayed: the record becomes a terminal marker, so later callers get
                // `ResultNotRetained` and never run it again, while this caller gets the value.
                let rec = self
                    .write(Err(&RecordError::NotRetained(reason.clone())))
                    .await?;
                let retention = Retention::NotRetained { reason };
                (Step::NotRetained, rec, self.settings.failure_ttl, retention)
            }
            Disposition::Release => {
                // The caller gets its own retryable error either way.
                self.release().await;
                let provenance =
                    Provenance::fresh(self, None, Duration::ZERO, Retention::NotStored);
                return Ok(Outcome { value, provenance });
            }
        };
        counters.step(step, self.key(), Some(self.owner()));
        Ok(Outcome {
            provenance: Provenance::fresh(self, Some(&finished), ttl, retention),
            value,
        })
    }

    /// Releases the claim after a panic (a panic is retryable), before the panic resumes.
    async fn abandon(&self) {
        self.release().await;
    }

    /// Releases the claim, counted as released or, when the store fails (the claim then blocks
    /// the key until its lease ends), as a store error.
    async fn release(&self) {
        let step = match self.inner.storage.release(self.key, self.owner()).await {
            Ok(_) => Step::Released,
            Err(_) => Step::StoreError("release"),
        };
        self.inner
            .counters
            .step(step, self.key(), Some(self.owner()));
    }

    /// Writes the fenced completion (`Ok`: the result; `Err`: the stored error), retrying a
    /// store outage with backoff up to `complete_attempts` times.
    ///
    /// # Errors
    /// [`Error::LeaseLost`] when the store refused it (a newer holder);
    /// [`Error::CompletionNotRecorded`], carrying the encoded value, when the store stayed down.
    async fn write(&self, what: std::result::Result<&[u8], &RecordError>) -> Result<Record> {
        let storage = &self.inner.storage;
        let counters = &self.inner.counters;
        let (key, owner) = (self.key, self.owner());
        let attempts = self.inner.config.complete_attempts;
        let mut backoff = Duration::from_millis(10);
        let mut attempt = 1;
        loop {
            crate::fault_point!(crate::fault::BEFORE_COMPLETE, self.key().as_str());
            // Decided in a scope of its own, so that no record or error is held across the
            // backoff's sleep (the future of every first run stays smaller).
            {
                let timer = StoreTimer::start();
                let r = match what {
                    Ok(bytes) => storage.complete(key, owner, bytes, self.settings.ttl).await,
                    Err(err) => {
                        storage
                            .fail(key, owner, err, self.settings.failure_ttl)
                            .await
                    }
                };
                timer.stop("complete");
                match r {
                    Ok(rec) => {
                        crate::fault_point!(crate::fault::AFTER_COMPLETE, self.key().as_str());
                        return Ok(rec);
                    }
                    Err(Error::LeaseLost { .. }) => {
                        counters.step(Step::FencedOut, self.key(), Some(owner));
                        return Err(Error::LeaseLost {
                            key: self.key().clone(),
                        });
                    }
                    Err(e) if e.is_store_unavailable() => {
                        counters.step(Step::StoreError("complete"), self.key(), Some(owner));
                        if attempt >= attempts {
                            return Err(self.not_recorded(what, e));
                        }
                    }
                    Err(e) => return Err(self.not_recorded(what, e)),
                }
            }
            rt::sleep(backoff).await;
            backoff *= 4;
            attempt += 1;
        }
    }

    /// The error of a completion the store did not take, carrying the encoded value.
    fn not_recorded(&self, what: std::result::Result<&[u8], &RecordError>, e: Error) -> Error {
        let encoded = match what {
            Ok(bytes) => bytes.to_vec(),
            Err(RecordError::Encoded(bytes)) => bytes.clone(),
            Err(RecordError::NotRetained(_)) => Vec::new(),
        };
        Error::CompletionNotRecorded {
            key: self.key().clone(),
            encoded,
            source: Box::new(e),
        }
    }
}

/// Polls the function's body to its value as the current call ([`current`](crate::current)),
/// catching a panic.
pub(super) async fn body<R, F, Fut>(f: F, ctx: &Arc<CallContext>) -> std::thread::Result<R>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = R>,
{
    CatchUnwind(Box::pin(InCall {
        fut: Box::pin(async move { f().await }),
        ctx: Arc::clone(ctx),
    }))
    .await
}
