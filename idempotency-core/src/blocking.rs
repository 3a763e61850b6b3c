//! Whether the current thread is blocked in [`block_on`](crate::block_on), for stores that
//! can serve such a caller with blocking I/O on its own thread.

use std::cell::Cell;

thread_local! {
    /// How many [`block_on`](crate::block_on) calls are polling on this thread.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as inside [`block_on`](crate::block_on) until dropped.
pub(crate) struct InBlockOn(());

impl InBlockOn {
    pub(crate) fn enter() -> InBlockOn {
        let _ = DEPTH.try_with(|d| d.set(d.get().saturating_add(1)));
        InBlockOn(())
    }
}

impl Drop for InBlockOn {
    fn drop(&mut self) {
        let _ = DEPTH.try_with(|d| d.set(d.get().saturating_sub(1)));
    }
}

impl std::fmt::Debug for InBlockOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InBlockOn")
    }
}

/// Whether the current thread is inside [`block_on`](crate::block_on) (the sync API:
/// `execute_sync` and friends), polling the future it was given.
///
/// Such a thread waits for that one future and drives nothing else, so a store polled there
/// may do blocking I/O right in `poll` (as the Redis store does with a sync connection on the
/// caller's thread) instead of awaiting I/O that a runtime must drive: inside a tokio runtime
/// the thread is one of the runtime's (perhaps its only one), blocked by the caller, and could
/// not drive that I/O. `false` on threads that are not in `block_on`, including every async
/// caller on a runtime and futures driven by other executors.
pub fn in_block_on() -> bool {
    DEPTH.try_with(|d| d.get() > 0).unwrap_or(false)
}
