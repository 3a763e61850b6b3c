//! Per-call overrides for `#[idempotent]` functions: run one call under an explicit idempotency
//! key, or bypass (refresh) its stored result.
//!
//! An override is set for the duration of a closure ([`with_key_sync`], [`refresh_sync`]) or
//! around every poll of a future ([`with_key`], [`refresh`]), in a thread-local. The first
//! `#[idempotent]` function that *starts* inside that scope takes it (and clears it) before it
//! computes its key, so functions it calls in turn, and any later call in the same scope, run
//! with their normal keys. A scope that no idempotent function consumed simply ends.
//!
//! Scopes nest: `with_key(k, refresh(fut))` runs the first idempotent call under `k` *and*
//! refreshes it; an inner scope's key takes precedence over an outer one's.

use std::cell::Cell;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The pending override of the current thread. Used by generated code; not public API.
#[doc(hidden)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Override {
    key: Option<String>,
    refresh: bool,
}

impl Override {
    /// `self`, with the fields `self` leaves unset taken from `outer`.
    fn within(&self, outer: Option<Override>) -> Override {
        match outer {
            None => self.clone(),
            Some(outer) => Override {
                key: self.key.clone().or(outer.key),
                refresh: self.refresh || outer.refresh,
            },
        }
    }

    /// The explicit idempotency key, if any.
    pub(crate) fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// Whether the stored result is bypassed.
    pub(crate) fn refresh(&self) -> bool {
        self.refresh
    }
}

thread_local! {
    static PENDING: Cell<Option<Override>> = const { Cell::new(None) };
}

/// Takes (and clears) the current thread's pending override. Used by generated code; not
/// public API.
#[doc(hidden)]
#[inline]
pub fn take_override() -> Option<Override> {
    PENDING.with(Cell::take)
}

/// Sets `mine` (merged with any outer override) for the scope of one closure call or one poll.
/// Dropping it restores the outer override, unless an idempotent function consumed the merged
/// one, in which case the outer override is consumed too.
struct Guard {
    outer: Option<Override>,
    active: bool,
}

impl Guard {
    fn enter(mine: &Override) -> Guard {
        let outer = take_override();
        PENDING.with(|p| p.set(Some(mine.within(outer.clone()))));
        Guard {
            outer,
            active: true,
        }
    }

    /// Ends the scope; returns whether an idempotent function consumed the override.
    fn leave(mut self) -> bool {
        self.restore()
    }

    fn restore(&mut self) -> bool {
        self.active = false;
        if take_override().is_some() {
            PENDING.with(|p| p.set(self.outer.take()));
            false
        } else {
            true
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Still active only when unwinding out of the scope: put the outer override back
        // unless it was consumed.
        if self.active {
            self.restore();
        }
    }
}

fn run_sync<R>(mine: &Override, f: impl FnOnce() -> R) -> R {
    let guard = Guard::enter(mine);
    let out = f();
    guard.leave();
    out
}

/// Runs `f`; the first `#[idempotent]` function that starts inside it uses `key` as its
/// idempotency key (Stripe style) instead of its key expression or derived key. Its non-skipped
/// parameters then form the fingerprint, so reusing `key` with different inputs is detected.
///
/// An empty `key` makes that call fail with [`Error::InvalidKey`](crate::Error::InvalidKey).
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use idempotency::{idempotent, IdempotencyManager, MemoryStorage};
///
/// static MANAGER: std::sync::LazyLock<IdempotencyManager> =
///     std::sync::LazyLock::new(|| IdempotencyManager::new(MemoryStorage::new()));
/// static RUNS: AtomicUsize = AtomicUsize::new(0);
///
/// #[idempotent(manager = &*MANAGER)]
/// fn charge(cents: u64) -> u64 {
///     RUNS.fetch_add(1, Ordering::SeqCst);
///     cents
/// }
///
/// // Same key, same inputs: the second call replays.
/// idempotency::with_key_sync("req-7f3a", || charge(1200))?;
/// idempotency::with_key_sync("req-7f3a", || charge(1200))?;
/// assert_eq!(RUNS.load(Ordering::SeqCst), 1);
/// // Without the override, the derived key is a different identity: it runs.
/// charge(1200)?;
/// assert_eq!(RUNS.load(Ordering::SeqCst), 2);
/// # Ok::<(), idempotency::Error>(())
/// ```
pub fn with_key_sync<R>(key: impl Into<String>, f: impl FnOnce() -> R) -> R {
    run_sync(
        &Override {
            key: Some(key.into()),
            refresh: false,
        },
        f,
    )
}

/// Runs `f`; the first `#[idempotent]` function that starts inside it bypasses its stored result:
/// it runs even if a finished record exists, and its result replaces the record (a cache
/// refresh). Concurrent callers are still excluded by the lease.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use idempotency::{idempotent, IdempotencyManager, MemoryStorage};
///
/// static MANAGER: std::sync::LazyLock<IdempotencyManager> =
///     std::sync::LazyLock::new(|| IdempotencyManager::new(MemoryStorage::new()));
/// static RUNS: AtomicUsize = AtomicUsize::new(0);
///
/// #[idempotent(manager = &*MANAGER)]
/// fn price(sku: &str) -> usize {
///     RUNS.fetch_add(1, Ordering::SeqCst) + sku.len()
/// }
///
/// assert_eq!(price("a")?, 1);
/// assert_eq!(price("a")?, 1); // replayed
/// assert_eq!(idempotency::refresh_sync(|| price("a"))?, 2); // ran again, stored
/// assert_eq!(price("a")?, 2); // replays the refreshed value
/// # Ok::<(), idempotency::Error>(())
/// ```
pub fn refresh_sync<R>(f: impl FnOnce() -> R) -> R {
    run_sync(
        &Override {
            key: None,
            refresh: true,
        },
        f,
    )
}

/// Polls `fut` with `key` as the explicit idempotency key of the first `#[idempotent]` function
/// that starts inside it (see [`with_key_sync`]).
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use idempotency::{idempotent, IdempotencyManager, MemoryStorage};
///
/// static MANAGER: std::sync::LazyLock<IdempotencyManager> =
///     std::sync::LazyLock::new(|| IdempotencyManager::new(MemoryStorage::new()));
/// static RUNS: AtomicUsize = AtomicUsize::new(0);
///
/// #[idempotent(manager = &*MANAGER)]
/// async fn ship(order: u32) -> u32 {
///     RUNS.fetch_add(1, Ordering::SeqCst);
///     order
/// }
///
/// # idempotency::block_on(async {
/// idempotency::with_key("ship-42", ship(42)).await?;
/// idempotency::with_key("ship-42", ship(42)).await?;
/// assert_eq!(RUNS.load(Ordering::SeqCst), 1);
/// # Ok::<(), idempotency::Error>(())
/// # })?;
/// # Ok::<(), idempotency::Error>(())
/// ```
pub fn with_key<F: IntoFuture>(key: impl Into<String>, fut: F) -> WithOverride<F::IntoFuture> {
    WithOverride::new(
        Override {
            key: Some(key.into()),
            refresh: false,
        },
        fut.into_future(),
    )
}

/// Polls `fut` so that the first `#[idempotent]` function that starts inside it bypasses its
/// stored result (see [`refresh_sync`]).
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use idempotency::{idempotent, IdempotencyManager, MemoryStorage};
///
/// static MANAGER: std::sync::LazyLock<IdempotencyManager> =
///     std::sync::LazyLock::new(|| IdempotencyManager::new(MemoryStorage::new()));
/// static RUNS: AtomicUsize = AtomicUsize::new(0);
///
/// #[idempotent(manager = &*MANAGER)]
/// async fn rate(pair: &str) -> usize {
///     RUNS.fetch_add(1, Ordering::SeqCst) + pair.len()
/// }
///
/// # idempotency::block_on(async {
/// assert_eq!(rate("EURUSD").await?, 6);
/// assert_eq!(idempotency::refresh(rate("EURUSD")).await?, 7);
/// assert_eq!(rate("EURUSD").await?, 7);
/// # Ok::<(), idempotency::Error>(())
/// # })?;
/// # Ok::<(), idempotency::Error>(())
/// ```
pub fn refresh<F: IntoFuture>(fut: F) -> WithOverride<F::IntoFuture> {
    WithOverride::new(
        Override {
            key: None,
            refresh: true,
        },
        fut.into_future(),
    )
}

/// The future returned by [`with_key`] and [`refresh`]: sets its override around each poll of
/// the inner future until an `#[idempotent]` function consumes it. Boxes the inner future once
/// (this crate has no `unsafe` pin projection).
#[must_use = "futures do nothing unless awaited"]
pub struct WithOverride<F> {
    fut: Pin<Box<F>>,
    pending: Option<Override>,
}

impl<F> WithOverride<F> {
    fn new(ov: Override, fut: F) -> Self {
        WithOverride {
            fut: Box::pin(fut),
            pending: Some(ov),
        }
    }
}

impl<F> fmt::Debug for WithOverride<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithOverride")
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl<F: Future> Future for WithOverride<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        match &this.pending {
            None => this.fut.as_mut().poll(cx),
            Some(ov) => {
                let guard = Guard::enter(ov);
                let out = this.fut.as_mut().poll(cx);
                if guard.leave() {
                    this.pending = None;
                }
                out
            }
        }
    }
}
