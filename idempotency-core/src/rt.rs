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

/// Drives `fut` to completion on the current thread, parking it between polls.
///
/// Works inside or outside a tokio runtime. The futures of the memory and file stores never
/// wait on a runtime; the Redis store drives its connection on a runtime it owns, so its futures
/// complete here too. Blocking a runtime worker thread this way is the caller's choice (the sync
/// API exists for sync code).
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
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

pub(crate) fn sleep(d: Duration) -> Sleep {
    Sleep {
        deadline: Instant::now() + d,
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
