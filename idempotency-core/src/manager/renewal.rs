//! Lease renewal (SEMANTICS.md scenario 14): while a body runs, its lease is extended every
//! third of the lease, as a task of the shared timer (`rt::spawn`), for sync and async bodies
//! alike. A renewal is "extend iff the record still carries this owner" ([`Storage::renew`]).
//!
//! - A renewal the store refuses (another caller holds the key, or the record is gone) loses
//!   the lease ([`Loss::TakenOver`]): renewals stop, the body can see it ([`Current`]), and the
//!   completion is not written (the caller gets `Error::LeaseLost`).
//! - A renewal that fails (the store is unreachable) is not a loss: the next one is tried a
//!   third of a lease later. Only when no renewal has succeeded for a whole lease is the lease
//!   lost ([`Loss::Unconfirmed`]); the completion is then still tried, fenced by the store.
//! - Renewals stop when the call is over: finished, panicked, or its future dropped
//!   ([`Renewal`]'s drop, which never blocks). They are bounded by
//!   [`ManagerBuilder::max_lease_renewal`](super::ManagerBuilder::max_lease_renewal) in total.
//!
//! [`Storage::renew`]: crate::Storage::renew
//! [`Current`]: crate::Current

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::current::{CallContext, Loss};
use crate::error::Error;
use crate::record::Owner;
use crate::rt::{self, TaskHandle};
use crate::telemetry::{Step, StoreTimer};

use super::Inner;

/// The shortest time between two renewals, whatever the lease.
const MIN_EVERY: Duration = Duration::from_millis(1);

/// The renewals of one call's lease, running until this is dropped.
pub(super) struct Renewal {
    ctx: Arc<CallContext>,
    _task: Option<TaskHandle>,
}

impl Drop for Renewal {
    fn drop(&mut self) {
        // The task sees this before its next renewal; dropping `_task` then cancels it.
        self.ctx.lease.stop();
    }
}

/// What one renewal task needs.
pub(super) struct Plan {
    /// The manager (its store and counters).
    pub(super) inner: Arc<Inner>,
    pub(super) owner: Owner,
    /// The lease each renewal asks for.
    pub(super) lease: Duration,
    /// When the claim was sent: the lease runs at least until then plus `lease`.
    pub(super) claimed_at: Instant,
}

impl Renewal {
    /// Starts renewing. Without a timer thread (none could be started) the lease is not
    /// renewed, as before renewals existed.
    pub(super) fn start(plan: Plan, ctx: &Arc<CallContext>) -> Renewal {
        let task = rt::spawn(
            Box::pin(renew_or_lose(plan, Arc::clone(ctx))),
            Arc::clone(ctx) as _,
        );
        if task.is_none() {
            tracing::warn!(target: "idempotency", "no timer thread: the lease is not renewed");
        }
        Renewal {
            ctx: Arc::clone(ctx),
            _task: task,
        }
    }
}

/// The renewal loop of one call, guarded: when it ends without returning (a store's `renew`
/// future panicked, e.g. one that needs the caller's tokio runtime, which the renewal threads
/// are not on, and the task was dropped), the lease is lost ([`Loss::Unconfirmed`]) unless the
/// call is already over, so the body can learn it (`Current::is_lease_lost`) instead of the
/// renewals stopping silently while the lease runs out.
async fn renew_or_lose(plan: Plan, ctx: Arc<CallContext>) {
    struct LoseIfUnfinished(Option<Arc<CallContext>>);
    impl Drop for LoseIfUnfinished {
        fn drop(&mut self) {
            if let Some(ctx) = self.0.take() {
                if !ctx.lease.is_stopped() {
                    tracing::warn!(
                        target: "idempotency",
                        key = ctx.key().as_str(),
                        "lease renewal ended abnormally (the store's renew panicked): the lease \
                         is treated as lost"
                    );
                    ctx.lease.lose(Loss::Unconfirmed);
                }
            }
        }
    }
    let mut guard = LoseIfUnfinished(Some(Arc::clone(&ctx)));
    renew(plan, ctx).await;
    guard.0 = None;
}

/// The renewal loop of one call.
async fn renew(plan: Plan, ctx: Arc<CallContext>) {
    let Plan {
        inner,
        owner,
        lease,
        claimed_at,
    } = plan;
    let key = ctx.key();
    let lease_state = &ctx.lease;
    let every = (lease / 3).max(MIN_EVERY);
    let bound = inner.config.max_lease_renewal;
    // The lease runs at least until `confirmed + lease` (caller-side monotonic time).
    let mut confirmed = claimed_at;
    // Renewals are due every third of a lease from the last one sent, however long a store
    // call took.
    let mut last = claimed_at;
    loop {
        rt::sleep(every.saturating_sub(last.elapsed())).await;
        if lease_state.is_stopped() {
            return;
        }
        if claimed_at.elapsed() >= bound {
            // Renewals are bounded: let the lease run out, then say so.
            let left = lease.saturating_sub(confirmed.elapsed());
            rt::sleep(left).await;
            if !lease_state.is_stopped() {
                lease_state.lose(Loss::Unconfirmed);
            }
            return;
        }
        if confirmed.elapsed() >= lease {
            lease_state.lose(Loss::Unconfirmed);
            let key = key.as_str();
            tracing::warn!(target: "idempotency", key, "lease lost: no renewal for a whole lease");
            return;
        }
        let sent = Instant::now();
        last = sent;
        lease_state.set_renewing(true);
        let timer = StoreTimer::start();
        let renewed = inner.storage.renew(key, &owner, lease).await;
        timer.stop("renew");
        lease_state.set_renewing(false);
        if lease_state.is_stopped() {
            return;
        }
        match renewed {
            Ok(_) => confirmed = sent,
            Err(Error::LeaseLost { .. }) => {
                inner.counters.step(Step::FencedOut, key, Some(&owner));
                lease_state.lose(Loss::TakenOver);
                return;
            }
            // A failed renewal is not a loss: the next one may succeed in time.
            Err(_) => inner
                .counters
                .step(Step::StoreError("renew"), key, Some(&owner)),
        }
    }
}
