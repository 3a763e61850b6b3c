//! Runtime-agnostic helpers: a minimal `block_on` for the sync API, a timer that needs no
//! runtime, and panic capture for futures. None of them panics inside or outside a tokio runtime.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

thread_local! {
    /// One waker per thread, reused by every `block_on` on it.
    static THREAD_WAKER: Waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    /// Per-thread generator state for execution ids, seeded from the OS once per thread and
    /// again in a forked child: `(process id, state, state)`.
    static ID_STATE: std::cell::Cell<(u32, u64, u64)> = std::cell::Cell::new(seed());
}

fn seed() -> (u32, u64, u64) {
    let b = uuid::Uuid::new_v4().as_u64_pair();
    (std::process::id(), b.0 | 1, b.1 | 1)
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A fresh random (version 4) execution id without a system call per id: 128 bits from a
/// per-thread SplitMix64 pair seeded from the OS random source once per thread, and reseeded
/// when the process id changed (a `fork` without `exec` copies the state: parent and child
/// would otherwise make the same ids, and each would take the other's claim for its own).
/// Execution ids must be unique, not secret.
pub(crate) fn execution_id() -> uuid::Uuid {
    ID_STATE
        .try_with(|cell| {
            let mut state = cell.get();
            if state.0 != std::process::id() {
                state = seed();
            }
            let (pid, mut a, mut b) = state;
            let hi = splitmix(&mut a);
            let lo = splitmix(&mut b);
            cell.set((pid, a, b));
            let bits = (u128::from(hi) << 64) | u128::from(lo);
            uuid::Builder::from_random_bytes(bits.to_be_bytes()).into_uuid()
        })
        // During thread teardown the thread-local is gone: ask the OS instead.
        .unwrap_or_else(|_| uuid::Uuid::new_v4())
}

/// Drives `fut` to completion on the current thread, parking it between polls.
///
/// Works inside or outside a tokio runtime. The futures of the memory and file stores never
/// wait on a runtime; the Redis store sees [`in_block_on`](crate::in_block_on) and uses a sync
/// connection on this thread, so its futures complete here too. Blocking a runtime worker thread this way is the caller's choice (the sync
/// API exists for sync code).
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let _in_block_on = crate::blocking::InBlockOn::enter();
    let mut fut = std::pin::pin!(fut);
    let waker = THREAD_WAKER
        .try_with(Waker::clone)
        .unwrap_or_else(|_| Waker::from(Arc::new(ThreadWaker(thread::current()))));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}

#[derive(Default)]
struct SleepState {
    done: bool,
    waker: Option<Waker>,
}

/// A future that completes after a duration, using a helper thread instead of a runtime's
/// timer, so it works under any executor (or none). Used only for polling waits and retry
/// backoff, never on the hot path.
pub(crate) struct Sleep {
    deadline: Instant,
    state: Option<Arc<Mutex<SleepState>>>,
}

/// The longest sleep: longer ones (a `poll_interval` of `Duration::MAX`) are cut to this, as
/// `Instant + Duration::MAX` overflows.
const MAX_SLEEP: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

pub(crate) fn sleep(d: Duration) -> Sleep {
    let now = Instant::now();
    Sleep {
        deadline: now.checked_add(d.min(MAX_SLEEP)).unwrap_or(now),
        state: None,
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if Instant::now() >= this.deadline {
            return Poll::Ready(());
        }
        match &this.state {
            Some(state) => {
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                if s.done {
                    return Poll::Ready(());
                }
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
            None => {
                let state = Arc::new(Mutex::new(SleepState {
                    done: false,
                    waker: Some(cx.waker().clone()),
                }));
                let remote = Arc::clone(&state);
                let deadline = this.deadline;
                let spawned = thread::Builder::new()
                    .name("idempotency-sleep".into())
                    .spawn(move || {
                        let now = Instant::now();
                        if deadline > now {
                            thread::sleep(deadline - now);
                        }
                        let mut s = remote.lock().unwrap_or_else(|p| p.into_inner());
                        s.done = true;
                        if let Some(w) = s.waker.take() {
                            w.wake();
                        }
                    });
                if spawned.is_err() {
                    // No thread could be started: wait here instead of failing.
                    let now = Instant::now();
                    if deadline > now {
                        thread::sleep(deadline - now);
                    }
                    return Poll::Ready(());
                }
                this.state = Some(state);
                Poll::Pending
            }
        }
    }
}

/// Wraps a future so that a panic while polling it is returned as `Err(payload)`.
pub(crate) struct CatchUnwind<F>(pub(crate) Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = thread::Result<F::Output>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.get_mut().0.as_mut();
        match catch_unwind(AssertUnwindSafe(move || inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

thread_local! {
    /// The flag of the function body being polled on this thread, if any ([`InBody`]).
    static CURRENT_BODY: std::cell::RefCell<Option<Arc<std::sync::atomic::AtomicBool>>> =
        const { std::cell::RefCell::new(None) };
}

/// Polls a function body with its flag as this thread's current body, so that an idempotent
/// call nested in the body that fails with a framework error ([`framework_error_seen`]) marks
/// the body: its own failure is then not its outcome (a conflict, an outage) and is never
/// stored. A nested call in a task the body spawns is polled elsewhere and is not seen.
pub(crate) struct InBody<F> {
    pub(crate) fut: Pin<Box<F>>,
    pub(crate) flag: Arc<std::sync::atomic::AtomicBool>,
}

impl<F: Future> Future for InBody<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let outer = CURRENT_BODY.with(|c| c.replace(Some(Arc::clone(&this.flag))));
        // Restored even when the body panics (the panic is caught further out).
        struct Restore(Option<Arc<std::sync::atomic::AtomicBool>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let outer = self.0.take();
                CURRENT_BODY.with(|c| *c.borrow_mut() = outer);
            }
        }
        let _restore = Restore(outer);
        this.fut.as_mut().poll(cx)
    }
}

/// Marks the body being polled on this thread (if any): an idempotent call inside it failed
/// with a framework error.
pub fn framework_error_seen() {
    CURRENT_BODY.with(|c| {
        if let Some(flag) = &*c.borrow() {
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_sleep_of_duration_max_does_not_panic() {
        // `ConflictPolicy::Wait { timeout: Duration::MAX }` with `poll_interval(Duration::MAX)`
        // sleeps this long: it must wait (Pending), not overflow `Instant + Duration`.
        let mut s = std::pin::pin!(sleep(Duration::MAX));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(s.as_mut().poll(&mut cx).is_pending());
        assert!(s.as_mut().poll(&mut cx).is_pending());
    }

    #[test]
    fn execution_ids_are_unique_across_threads() {
        let ids: Vec<uuid::Uuid> = (0..8)
            .map(|_| thread::spawn(|| (0..1000).map(|_| execution_id()).collect::<Vec<_>>()))
            .flat_map(|h| h.join().unwrap_or_default())
            .collect();
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), 8000);
        assert!(ids.iter().all(|id| id.get_version_num() == 4));
    }
}
