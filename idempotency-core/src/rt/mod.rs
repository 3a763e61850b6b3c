//! Runtime-agnostic helpers: a minimal `block_on` for the sync API, the shared timer thread
//! ([`timer`]: sleeps and lease renewals, no runtime needed), execution ids, and panic capture
//! for futures. None of them panics inside or outside a tokio runtime.

mod timer;

pub(crate) use timer::{sleep, spawn, Idle, TaskHandle};

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

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
/// connection on this thread, so its futures complete here too. Blocking a runtime worker thread
/// this way is the caller's choice (the sync API exists for sync code).
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

#[cfg(test)]
mod tests {
    use super::*;

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
