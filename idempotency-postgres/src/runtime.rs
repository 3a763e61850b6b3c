//! The runtime bridge: the store's own background runtime (stores from `connect`) and
//! [`InRuntime`], which polls a future with a runtime entered so sqlx works under any executor.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use idempotency_core::{Error, Result};
use tokio::runtime::Handle;

/// Starts the background thread and its runtime (stores from `connect`); returns the
/// runtime's handle and the shutdown sender.
pub(crate) fn start_worker() -> Result<(Handle, tokio::sync::oneshot::Sender<()>)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::storage("start", e))?;
    let handle = runtime.handle().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("idempotency-postgres".into())
        .spawn(move || {
            runtime.block_on(async move {
                let _ = rx.await;
            });
        })
        .map_err(|e| Error::storage("start", e))?;
    Ok((handle, tx))
}

/// A future polled with `handle`'s runtime entered, so sqlx (which needs a tokio context for
/// its I/O, timers and pool tasks) works under any executor, including
/// `idempotency_core::block_on` on a plain thread.
pub(crate) struct InRuntime<'h, F> {
    handle: &'h Handle,
    fut: Pin<Box<F>>,
}

impl<'h, F: Future> InRuntime<'h, F> {
    pub(crate) fn new(handle: &'h Handle, fut: F) -> Self {
        InRuntime {
            handle,
            fut: Box::pin(fut),
        }
    }
}

impl<F: Future> Future for InRuntime<'_, F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let _entered = this.handle.enter();
        this.fut.as_mut().poll(cx)
    }
}
