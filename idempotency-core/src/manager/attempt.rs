//! One attempt at a call: the claim this caller holds (key, owner, lease), the run of the
//! function under it, and the fenced write that finishes it.

use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::key::IdempotencyKey;
use crate::record::{Owner, Record, RecordError};
use crate::rt::{self, CatchUnwind};
use crate::telemetry::{Step, StoreTimer};

use super::codec::{Codec, Disposition};
use super::config::Settings;
use super::outcome::{Outcome, Provenance, Retention};
use super::prefix::CallKey;
use super::{kill_point, Inner};

/// A claim as the store granted it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lease {
    /// The holder: this attempt's execution id and fencing token.
    pub(super) owner: Owner,
    /// Whether the claim took over an expired record.
    pub(super) takeover: bool,
}

/// The claim this caller holds on one call's key, with what it needs to finish it.
pub(super) struct Attempt<'a> {
    inner: &'a Inner,
    key: CallKey<'a>,
    lease: Lease,
    settings: Settings,
}

impl<'a> Attempt<'a> {
    pub(super) fn new(
        inner: &'a Inner,
        key: CallKey<'a>,
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
        self.key.caller()
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
    /// A panic in `f` or in the codec releases the claim and resumes.
    ///
    /// # Errors
    /// [`Error::LeaseLost`], [`Error::CompletionNotRecorded`].
    pub(super) async fn run<R, F, Fut, K>(self, f: F, codec: &K) -> Result<Outcome<R>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
        K: Codec<R>,
    {
        let (value, nested) = match self.body(f).await {
            Ok(v) => v,
            Err(panic) => {
                self.abandon().await;
                resume_unwind(panic);
            }
        };
        kill_point("after_run", self.key());
        // The user's `Serialize`, `Deserialize` (the replay check) and transient classifier run
        // here, after the function: a panic in them is treated like a panic in the function.
        let max = self.inner.config.max_result_bytes;
        let disposition =
            match catch_unwind(AssertUnwindSafe(|| codec.dispose(&value, max, nested))) {
                Ok(d) => d,
                Err(panic) => {
                    self.abandon().await;
                    resume_unwind(panic);
                }
            };
        self.finish(value, disposition).await
    }

    /// Polls the function's body to its value, catching a panic. Also answers whether a nested
    /// idempotent call in the body failed with a framework error (a conflict, an outage,
    /// converted by `?` into an error type that cannot carry it, so `Error::is_carried_by`
    /// cannot see it): the body's failure is then not its outcome, and is never stored.
    async fn body<R, F, Fut>(&self, f: F) -> std::thread::Result<(R, bool)>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
    {
        let nested = Arc::new(AtomicBool::new(false));
        let run = CatchUnwind(Box::pin(rt::InBody {
            fut: Box::pin(async move { f().await }),
            flag: Arc::clone(&nested),
        }))
        .await;
        run.map(|value| (value, nested.load(Ordering::Relaxed)))
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
                // The caller gets its own retryable error either way; if the release fails the
                // claim blocks the key until its lease ends.
                let step = match self
                    .inner
                    .storage
                    .release(self.key.stored(), self.owner())
                    .await
                {
                    Ok(_) => Step::Released,
                    Err(_) => Step::StoreError("release"),
                };
                counters.step(step, self.key(), Some(self.owner()));
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
        let _ = self
            .inner
            .storage
            .release(self.key.stored(), self.owner())
            .await;
        let counters = &self.inner.counters;
        counters.step(Step::Released, self.key(), Some(self.owner()));
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
        let (key, owner) = (self.key.stored(), self.owner());
        let attempts = self.inner.config.complete_attempts;
        let mut backoff = Duration::from_millis(10);
        let mut attempt = 1;
        loop {
            kill_point("before_complete", self.key());
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
                    kill_point("after_complete", self.key());
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
                    rt::sleep(backoff).await;
                    backoff *= 4;
                    attempt += 1;
                }
                Err(e) => return Err(self.not_recorded(what, e)),
            }
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
