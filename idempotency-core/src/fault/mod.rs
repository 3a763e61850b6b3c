//! Kill points: named places between two store steps where a fault test can crash or pause
//! the process. Production code marks them with [`fault_point!`](crate::fault_point), which
//! compiles to nothing without the feature `testing`; with it, each point calls `hit`.
//! Tests reach this module as `testing::fault` too (feature `testing`).
//!
//! | point | where |
//! |---|---|
//! | [`AFTER_CLAIM`] | the manager holds a fresh claim; the function has not run |
//! | [`AFTER_RUN`] | the function returned; its result is not encoded or stored yet |
//! | [`BEFORE_COMPLETE`] | right before each `complete`/`fail` store call |
//! | [`AFTER_COMPLETE`] | the result is stored; the caller has not been answered |
//! | [`DURING_WRITE`] | file store: a record's temporary file is written (and fsynced) but not yet renamed into place (the claim's write is the first hit, the completion's the second) |
//!
//! A process selects a point with the environment variable [`KILL_AT`] (`after_run`, or
//! `during_write#2` for the second time that point is reached in the process) and what happens
//! there with [`KILL_ACTION`]:
//!
//! - `abort` (the default): `std::process::abort()`, a crash with no cleanup: no destructor,
//!   no release, no flush;
//! - `pause`: the process prints `KILL-POINT:<point>` on stdout and waits there until a line
//!   arrives on its stdin (holding whatever it holds at that point), so a test can let its lease
//!   run out, take over, then let it go and watch the stale holder carry on from that exact
//!   point. (A wait on stdin rather than a self-`SIGSTOP`: nothing but the test can resume it.)
//!
//! In-process tests (and the soak's children, to log claims) can install a hook with
//! `set_hook`, called at every point with the point's name and what it concerns: the
//! idempotency key (manager points) or the record file (`during_write`).

#[cfg(feature = "testing")]
mod runtime;

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub use runtime::{hit, set_hook, Hook};

/// The function has claimed the key; it has not run yet.
pub const AFTER_CLAIM: &str = "after_claim";
/// The function returned; its result is not stored yet.
pub const AFTER_RUN: &str = "after_run";
/// Right before a `complete`/`fail` store call (each attempt).
pub const BEFORE_COMPLETE: &str = "before_complete";
/// The result is stored; the caller has not been answered yet.
pub const AFTER_COMPLETE: &str = "after_complete";
/// File store: between writing a record's temporary file and renaming it into place.
pub const DURING_WRITE: &str = "during_write";

/// Every point, in the order a call passes them.
pub const POINTS: [&str; 5] = [
    AFTER_CLAIM,
    AFTER_RUN,
    BEFORE_COMPLETE,
    DURING_WRITE,
    AFTER_COMPLETE,
];

/// The environment variable naming the kill point: `<point>` or `<point>#<n>` (the n-th hit,
/// counting from 1, in this process).
pub const KILL_AT: &str = "IDEMPOTENCY_KILL_AT";
/// The environment variable choosing the action at the kill point: `abort` (default) or
/// `pause`.
pub const KILL_ACTION: &str = "IDEMPOTENCY_KILL_ACTION";

/// Marks a kill point: `fault_point!(point, what)` passes the point named `point` (a
/// `&'static str`, one of the [`fault`](crate::fault) constants) concerning `what` (a `&str`: an
/// idempotency key or a path). With the feature `testing` of `idempotency-core` it calls
/// `fault::hit`, which may call a hook, abort or pause the process; without it, it compiles to
/// nothing and evaluates nothing (its arguments are still type-checked).
///
/// The feature is read where this macro is defined, in `idempotency-core`, so a store crate
/// marks its points the same way whatever its own features.
#[cfg(feature = "testing")]
#[macro_export]
macro_rules! fault_point {
    ($point:expr, $what:expr $(,)?) => {
        $crate::fault::hit($point, $what)
    };
}

/// Marks a kill point: `fault_point!(point, what)` passes the point named `point` (a
/// `&'static str`, one of the [`fault`](crate::fault) constants) concerning `what` (a `&str`: an
/// idempotency key or a path). With the feature `testing` of `idempotency-core` it calls
/// `fault::hit`, which may call a hook, abort or pause the process; without it (this build), it
/// compiles to nothing and evaluates nothing (its arguments are still type-checked).
#[cfg(not(feature = "testing"))]
#[macro_export]
macro_rules! fault_point {
    ($point:expr, $what:expr $(,)?) => {
        if false {
            let _: (&'static str, &str) = ($point, $what);
        }
    };
}
