//! The store's background runtime: a dedicated thread running a single-threaded tokio runtime,
//! which drives the I/O and timers of connections that callers without a runtime of their own
//! cannot drive.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use idempotency_core::{Error, Result};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The background thread's runtime. Dropping the last clone's owner stops the thread (never
/// blocking the caller).
#[derive(Debug)]
pub(crate) struct Worker {
    handle: Handle,
    // Dropped with the worker: ends the background thread's `block_on`.
    _shutdown: oneshot::Sender<()>,
}

impl Worker {
    /// Starts the background thread and its runtime.
    ///
    /// # Errors
    /// [`Error::Storage`] (step `start`) when the runtime or the thread cannot be created.
    pub(crate) fn start() -> Result<Worker> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::storage("start", e))?;
        let handle = runtime.handle().clone();
        let (tx, rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("idempotency-redis".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let _ = rx.await;
                });
            })
            .map_err(|e| Error::storage("start", e))?;
        Ok(Worker {
            handle,
            _shutdown: tx,
        })
    }

    /// `fut`, polled on the caller's thread with the background runtime entered: code that
    /// needs a tokio context (timers, a connection manager's reconnection task) works under
    /// any executor, including `idempotency_core::block_on` on a plain thread, while the
    /// connection's I/O is driven by the background thread. No task is spawned per call.
    pub(crate) fn run<F: Future>(&self, fut: F) -> InRuntime<'_, F> {
        InRuntime {
            handle: &self.handle,
            fut: Box::pin(fut),
        }
    }
}

/// A future polled with a runtime entered (see [`Worker::run`]).
pub(crate) struct InRuntime<'h, F> {
    handle: &'h Handle,
    fut: Pin<Box<F>>,
}

impl<F: Future> Future for InRuntime<'_, F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let _entered = this.handle.enter();
        this.fut.as_mut().poll(cx)
    }
}
