//! The kill points' runtime (feature `testing`): the hook and [`hit`]. See the
//! [module docs](super).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use super::{KILL_ACTION, KILL_AT};

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
