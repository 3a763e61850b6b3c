//! Kill points: named places between two store steps where a fault test can crash or pause
//! the process (feature `testing`; without the feature the points compile to nothing).
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
//! [`set_hook`], called at every point with the point's name and what it concerns: the
//! idempotency key (manager points) or the record file (`during_write`).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

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

/// A programmatic hook, called at every point with the point's name and the idempotency key
/// (manager points, as the call names it) or the record file's path (`during_write`).
pub type Hook = Arc<dyn Fn(&'static str, &str) + Send + Sync>;

static HOOK: RwLock<Option<Hook>> = RwLock::new(None);

struct Target {
    point: String,
    nth: usize,
    pause: bool,
    hits: Mutex<HashMap<&'static str, usize>>,
}

fn target() -> Option<&'static Target> {
    static TARGET: OnceLock<Option<Target>> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            let spec = std::env::var(KILL_AT).ok()?;
            let (point, nth) = match spec.split_once('#') {
                Some((p, n)) => (p.to_owned(), n.parse().unwrap_or(1)),
                None => (spec, 1),
            };
            let pause = std::env::var(KILL_ACTION).is_ok_and(|a| a == "pause");
            Some(Target {
                point,
                nth,
                pause,
                hits: Mutex::new(HashMap::new()),
            })
        })
        .as_ref()
}

/// Installs (or, with `None`, removes) the process-wide hook called at every point.
pub fn set_hook(hook: Option<Hook>) {
    *HOOK.write().unwrap_or_else(PoisonError::into_inner) = hook;
}

/// Passes the point `point` concerning `what` (a key or a path): calls the hook, then aborts
/// or pauses the process if [`KILL_AT`] selects this point (and hit).
pub fn hit(point: &'static str, what: &str) {
    let hook = HOOK.read().unwrap_or_else(PoisonError::into_inner).clone();
    if let Some(h) = hook {
        h(point, what);
    }
    let Some(t) = target() else { return };
    if t.point != point {
        return;
    }
    let n = {
        let mut hits = t.hits.lock().unwrap_or_else(PoisonError::into_inner);
        let n = hits.entry(point).or_insert(0);
        *n += 1;
        *n
    };
    if n != t.nth {
        return;
    }
    if t.pause {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "KILL-POINT:{point}");
        let _ = out.flush();
        drop(out);
        let _ = std::io::stdin().read_line(&mut String::new());
    } else {
        let _ = writeln!(std::io::stderr(), "kill point {point}: aborting");
        std::process::abort();
    }
}
