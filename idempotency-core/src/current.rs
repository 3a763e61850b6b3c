//! [`current()`]: what a function body can know about the idempotent call that runs it (its
//! idempotency key, execution id, fencing token, a derived key for downstream APIs, and whether
//! its lease is lost), through a thread-local set around every poll of the body (SEMANTICS.md
//! scenario 15).

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::key::IdempotencyKey;

/// The idempotent call running on this thread, if any: inside the body of an
/// [`execute`](crate::IdempotencyManager::execute) (or any of its sync and fallible forms), an
/// `#[idempotent]` function, or a [`Pipeline::run`](crate::Pipeline::run); `None` elsewhere.
///
/// Set around every poll of an async body and around the whole of a sync one, so it is seen in
/// the body and in every function and future the body calls or awaits, but not in a task or
/// thread the body spawns: call `current()` before spawning and move the [`Current`] into it.
/// Inside a nested idempotent call it is the nested call's; after that call returns, the
/// outer one's again.
///
/// ```
/// # use idempotency_core as idempotency;
/// use idempotency::{current, Call, IdempotencyKey, IdempotencyManager, MemoryStorage};
///
/// let manager = IdempotencyManager::new(MemoryStorage::new());
/// let call = Call::new(IdempotencyKey::derive("billing::charge", 1, &("order-7", 1200_u64))?);
/// assert!(current().is_none());
/// let charged = manager.execute_sync(&call, || {
///     let me = current().expect("inside an idempotent call");
///     // 1. Stripe-style: the downstream API's own idempotency key, the same for every attempt
///     //    at this call (a retry after a crash, a takeover), different for every other call.
///     let stripe_key = me.derived_key("stripe-charge");
///     // 2. Kleppmann's fencing: write the token with the downstream rows, and have the
///     //    database refuse a write whose token is older than the one stored
///     //    (`UPDATE ... SET token = $1 WHERE id = $2 AND token <= $1`), so a stale holder that
///     //    wakes up after a takeover cannot overwrite the newer holder's work.
///     let token = me.fencing_token();
///     format!("charged with key {stripe_key}, fence {token}")
/// })?;
/// assert!(charged.value.ends_with("fence 1"));
/// # Ok::<(), idempotency::Error>(())
/// ```
pub fn current() -> Option<Current> {
    CURRENT
        .try_with(|c| c.borrow().as_ref().map(|ctx| Current(Arc::clone(ctx))))
        .ok()
        .flatten()
}

/// One idempotent call, as seen from its body ([`current()`]). Cheap to clone (one `Arc`),
/// `Send` and `Sync`: move it into tasks the body spawns.
#[derive(Clone)]
pub struct Current(Arc<CallContext>);

impl Current {
    /// The idempotency key of the call, as the caller gave it (without a [`Prefixed`](crate::Prefixed) namespace).
    pub fn key(&self) -> &IdempotencyKey {
        self.0.key()
    }

    /// The execution id of this attempt: a fresh random UUID per attempt (a takeover gets a new
    /// one).
    pub fn execution_id(&self) -> Uuid {
        self.0.execution_id
    }

    /// The fencing token of this attempt: 1 for the first claim of the key, +1 for each takeover
    /// of an expired claim (Kleppmann's fencing tokens). Write it with the rows the body changes
    /// downstream and have that store refuse a write carrying an older token, so that a stale
    /// holder (paused past its lease while another caller took over) cannot overwrite the
    /// newer holder's work. `0` when the store was unreachable and the body runs unprotected
    /// (fail-open): such a run holds no claim.
    pub fn fencing_token(&self) -> u64 {
        self.0.fencing_token
    }

    /// A key for a downstream API's own idempotency (Stripe's `Idempotency-Key` header, the
    /// IETF draft's header), derived from this call's idempotency key and `label`: the same for
    /// every attempt at this call (a retry, a takeover after a crash), so the downstream API
    /// sees one operation; different for another call or another `label` (use one label per
    /// downstream request a body makes), and different in another namespace of the store
    /// ([`Storage::namespace`](crate::Storage::namespace): a [`Prefixed`](crate::Prefixed)
    /// prefix, a Redis key prefix, a PostgreSQL table), so two tenants running the same call
    /// never share a downstream key. 32 lowercase hex characters: the first 128 bits of a
    /// SHA-256 over a version tag, the store's namespace, the key and the label, each
    /// length-prefixed.
    pub fn derived_key(&self, label: &str) -> String {
        let mut h = Sha256::new();
        for part in [
            &b"idempotency/derived-key/v1"[..],
            self.0.namespace.as_bytes(),
            self.0.key.as_str().as_bytes(),
            label.as_bytes(),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        // 128 bits, in the hex of the framework's keys.
        crate::hex::encode16(&h.finalize().into()).to_string()
    }

    /// Whether this attempt may have lost its lease: a renewal found that another caller holds
    /// the key now, or no renewal succeeded for a whole lease (the store was unreachable, or
    /// renewals reached their bound). The body should stop and return an error: its completion
    /// is fenced, and refused with `Error::LeaseLost` when another caller holds the key.
    /// Always `false` for a body that runs unprotected, or whose lease is not renewed and has
    /// not been found lost.
    pub fn is_lease_lost(&self) -> bool {
        self.0.lease.loss().is_some()
    }

    /// Completes when [`is_lease_lost`](Self::is_lease_lost) becomes `true` (never, if the
    /// lease is kept): select on it to cancel the body's work.
    pub fn lease_lost(&self) -> impl Future<Output = ()> + Send + 'static {
        LeaseLostFuture(Arc::clone(&self.0))
    }
}

impl fmt::Debug for Current {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Current")
            .field("key", &self.0.key)
            .field("execution_id", &self.0.execution_id)
            .field("fencing_token", &self.0.fencing_token)
            .field("lease_lost", &self.is_lease_lost())
            .finish()
    }
}

/// How a lease was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loss {
    /// A renewal was refused: another caller holds the key (or the record is gone).
    TakenOver,
    /// No renewal succeeded for a whole lease: the store was unreachable, or renewals reached
    /// their bound. Another caller may or may not have taken over.
    Unconfirmed,
}

/// The state of a call's lease, shared by the body ([`Current`]), the attempt and its renewal.
#[derive(Default)]
pub(crate) struct LeaseState {
    /// 0: held; 1: [`Loss::TakenOver`]; 2: [`Loss::Unconfirmed`].
    loss: AtomicU8,
    /// Set when the call is over: renewals stop.
    stopped: AtomicBool,
    /// Set while a renewal waits on the store.
    renewing: AtomicBool,
    /// Futures waiting for a loss.
    waiting: Mutex<Vec<Waker>>,
}

impl LeaseState {
    pub(crate) fn loss(&self) -> Option<Loss> {
        match self.loss.load(Ordering::SeqCst) {
            0 => None,
            1 => Some(Loss::TakenOver),
            _ => Some(Loss::Unconfirmed),
        }
    }

    /// Records a loss (the first one counts) and wakes the futures waiting for it.
    pub(crate) fn lose(&self, loss: Loss) {
        let code = match loss {
            Loss::TakenOver => 1,
            Loss::Unconfirmed => 2,
        };
        let _ = self
            .loss
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
        let waiting =
            std::mem::take(&mut *self.waiting.lock().unwrap_or_else(PoisonError::into_inner));
        for w in waiting {
            w.wake();
        }
    }

    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    pub(crate) fn set_renewing(&self, renewing: bool) {
        self.renewing.store(renewing, Ordering::SeqCst);
    }

    pub(crate) fn is_renewing(&self) -> bool {
        self.renewing.load(Ordering::SeqCst)
    }
}

/// What the body of one call shares with the manager.
pub(crate) struct CallContext {
    key: IdempotencyKey,
    /// The store's namespace (`Storage::namespace`).
    namespace: Arc<str>,
    execution_id: Uuid,
    fencing_token: u64,
    /// Set when an idempotent call nested in the body failed with a framework error.
    nested_error: AtomicBool,
    pub(crate) lease: LeaseState,
}

impl CallContext {
    pub(crate) fn new(
        key: IdempotencyKey,
        namespace: Arc<str>,
        execution_id: Uuid,
        fencing_token: u64,
    ) -> Self {
        CallContext {
            key,
            namespace,
            execution_id,
            fencing_token,
            nested_error: AtomicBool::new(false),
            lease: LeaseState::default(),
        }
    }

    /// The idempotency key as the caller gave it.
    pub(crate) fn key(&self) -> &IdempotencyKey {
        &self.key
    }

    /// Whether an idempotent call nested in the body failed with a framework error (see
    /// [`framework_error_seen`]).
    pub(crate) fn nested_error(&self) -> bool {
        self.nested_error.load(Ordering::SeqCst)
    }
}

/// Between renewals the renewal task only sleeps: it may be dropped at once. A renewal in
/// flight is let finish (never cut off inside the store).
impl crate::rt::Idle for CallContext {
    fn is_idle(&self) -> bool {
        !self.lease.is_renewing()
    }
}

struct LeaseLostFuture(Arc<CallContext>);

impl Future for LeaseLostFuture {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let lease = &self.0.lease;
        if lease.loss().is_some() {
            return Poll::Ready(());
        }
        let mut waiting = lease.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
            waiting.push(cx.waker().clone());
        }
        drop(waiting);
        // A loss recorded between the first check and the registration has woken nobody.
        if lease.loss().is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

thread_local! {
    /// The call whose body is being polled on this thread, if any ([`InCall`]).
    static CURRENT: RefCell<Option<Arc<CallContext>>> = const { RefCell::new(None) };
}

/// Polls a function body with its call as this thread's current call ([`current()`]), and
/// restores the outer call afterwards, also when the body panics.
pub(crate) struct InCall<F> {
    pub(crate) fut: Pin<Box<F>>,
    pub(crate) ctx: Arc<CallContext>,
}

impl<F: Future> Future for InCall<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let outer = CURRENT.with(|c| c.replace(Some(Arc::clone(&this.ctx))));
        struct Restore(Option<Arc<CallContext>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let outer = self.0.take();
                CURRENT.with(|c| *c.borrow_mut() = outer);
            }
        }
        let _restore = Restore(outer);
        this.fut.as_mut().poll(cx)
    }
}

/// Marks the body being polled on this thread (if any): an idempotent call inside it failed
/// with a framework error, so the body's own failure is not its outcome (a conflict, an
/// outage) and is never stored. A nested call in a task the body spawns is polled elsewhere
/// and is not seen.
pub fn framework_error_seen() {
    let _ = CURRENT.try_with(|c| {
        if let Some(ctx) = &*c.borrow() {
            ctx.nested_error.store(true, Ordering::SeqCst);
        }
    });
}
