//! The kill-point matrix: a child process runs one idempotent call and is crashed or paused at a kill
//! point ([`idempotency_core::testing::fault`]), either crashed there (`abort`: no cleanup at
//! all) or paused there (`pause`: it waits at the point, then is let go after another process
//! took over). A fresh process then uses the same key. Per point the test asserts what the key ends with:
//!
//! | point | function ran before the kill | record left | after restart |
//! |---|---|---|---|
//! | `after_claim` | no | `Pending` | `InProgress` within the lease; after it, one takeover runs: **exactly one execution** |
//! | `during_write#1` (file: the claim's write) | no | none (a stray temporary file) | runs at once: **exactly one execution** |
//! | `after_run`, `before_complete`, `during_write#2` (file: the completion's write) | yes | `Pending` | `InProgress` within the lease; after it, one takeover runs again: **may re-run after the lease** (2 executions, the second only after the lease) |
//! | `after_complete` | yes | `Success` | replayed: **exactly one execution** |
//!
//! A paused holder resumed after the takeover: its completion is refused (`LeaseLost`) and the
//! stored result stays the newer holder's. One more documented re-run: a holder paused right
//! after its claim runs its function when it resumes, after the takeover already ran it (a
//! process pause can fall between any check and any action; the fence keeps the *stored
//! result* single-valued, not the side effect).
//!
//! In every case the final record is `Success` with a finite expiry, replays return the one
//! stored value, and no stale holder overwrote it.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use idempotency_core::testing::fault::{KILL_ACTION, KILL_AT};
use idempotency_core::{block_on, Error, ErrorKind, RecordStatus};

use super::{
    append_line, call, expect_marker, lines, read_lines, role, say, spawn, wait_until_expired,
    Opener,
};

/// The lease of the kill-point calls: short enough to wait out, long enough for the in-lease
/// checks.
pub const LEASE: Duration = Duration::from_secs(1);

/// What a kill at a point leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Left {
    Nothing,
    Pending,
    Success,
}

/// (the function ran before the kill, what the store holds after it)
fn expectation(point: &str) -> (bool, Left) {
    match point {
        "after_claim" => (false, Left::Pending),
        "during_write#1" => (false, Left::Nothing),
        "after_run" | "before_complete" | "during_write#2" => (true, Left::Pending),
        "after_complete" => (true, Left::Success),
        p => panic!("no expectation for kill point {p}"),
    }
}

/// The child's side: one call of the key, the function appending `child <pid>` to the
/// effect log. Returns `true` when this process is a kill-matrix child (the test must return).
pub fn child(open: Opener) -> bool {
    if role().as_deref() != Some("kill") {
        return false;
    }
    let arg = super::arg();
    let (key, effects) = arg.split_once('|').unwrap();
    let m = open(&super::location(), LEASE);
    let pid = std::process::id();
    let r = m.execute_sync(&call(key), || {
        append_line(effects, &format!("child {pid}"));
        format!("child-{pid}")
    });
    match r {
        Ok(o) => say(&format!(
            "outcome ok {} replayed={}",
            o.value,
            o.is_replayed()
        )),
        Err(Error::LeaseLost { .. }) => say("outcome lease-lost"),
        Err(e) => say(&format!("outcome error {e}")),
    }
    true
}

/// The parent's next call: the function appends `parent` and returns `"parent"`.
fn parent_call(
    m: &idempotency_core::IdempotencyManager,
    key: &str,
    effects: &str,
) -> idempotency_core::Result<idempotency_core::Outcome<String>> {
    m.execute_sync(&call(key), || {
        append_line(effects, "parent");
        "parent".to_owned()
    })
}

/// Asserts the key's final state: `Success` holding `value` with a finite expiry, replayed
/// as such, and the effect log as given.
fn assert_final(
    m: &idempotency_core::IdempotencyManager,
    key: &str,
    effects: &str,
    value: &str,
    executions: &[&str],
) {
    let obs = block_on(m.status(&call(key).key))
        .unwrap()
        .expect("a record");
    assert_eq!(obs.record.status, RecordStatus::Success, "{key}");
    assert!(obs.record.lease_until.is_none());
    assert!(
        obs.time_to_live() > Duration::ZERO && obs.time_to_live() <= Duration::from_secs(3600),
        "{key}: a finite expiry within the TTL"
    );
    for _ in 0..3 {
        let o = parent_call(m, key, effects).unwrap();
        assert!(o.is_replayed(), "{key}");
        assert_eq!(o.value, value, "{key}: the stored result");
    }
    let log = read_lines(effects);
    let got: Vec<&str> = log
        .iter()
        .map(|l| {
            if l.starts_with("child") {
                "child"
            } else {
                "parent"
            }
        })
        .collect();
    assert_eq!(got, executions, "{key}: executions");
}

/// Crash (`abort`) at `point`, restart, and check the key (see the module docs).
pub fn abort_case(test: &str, location: &str, tmp: &std::path::Path, open: Opener, point: &str) {
    let key = format!("abort-{point}");
    let effects = tmp.join(format!("effects-{key}"));
    let effects = effects.to_str().unwrap();
    let mut child = spawn(
        test,
        "kill",
        location,
        &format!("{key}|{effects}"),
        &[(KILL_AT, point), (KILL_ACTION, "abort")],
    );
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(6),
        "{point}: the child must die at the kill point (SIGABRT), got {status:?}"
    );
    let (ran_before, left) = expectation(point);
    assert_eq!(
        read_lines(effects).len(),
        usize::from(ran_before),
        "{point}: executions before the kill"
    );

    // Restart: a new process's manager on the same store.
    let m = open(location, LEASE);
    let c = call(&key);
    let obs = block_on(m.status(&c.key)).unwrap();
    match left {
        Left::Nothing => {
            assert!(obs.is_none(), "{point}: no record, got {obs:?}");
            let o = parent_call(&m, &key, effects).unwrap();
            assert!(!o.is_replayed() && !o.provenance.takeover);
            assert_eq!(o.provenance.fencing_token, 1);
            assert_final(&m, &key, effects, "parent", &["parent"]);
        }
        Left::Pending => {
            let obs = obs.expect("the crashed holder's claim");
            assert_eq!(obs.record.status, RecordStatus::Pending, "{point}");
            assert_eq!(obs.record.owner.fencing_token, 1);
            // Within the lease nobody runs it.
            let r = parent_call(&m, &key, effects);
            assert_eq!(
                r.map(|o| o.value).unwrap_err().kind(),
                ErrorKind::InProgress,
                "{point}: within the lease"
            );
            assert_eq!(read_lines(effects).len(), usize::from(ran_before));
            // After it, exactly one caller takes over and runs it.
            wait_until_expired(&m, &c);
            let o = parent_call(&m, &key, effects).unwrap();
            assert!(!o.is_replayed() && o.provenance.takeover, "{point}");
            assert_eq!(o.provenance.fencing_token, 2, "{point}: fence 1 -> 2");
            let expected: &[&str] = if ran_before {
                &["child", "parent"] // may re-run after the lease
            } else {
                &["parent"]
            };
            assert_final(&m, &key, effects, "parent", expected);
        }
        Left::Success => {
            let obs = obs.expect("the completed record");
            assert_eq!(obs.record.status, RecordStatus::Success);
            let child_value: String =
                idempotency_core::IdempotencyManager::decode_value(&obs).unwrap();
            assert!(child_value.starts_with("child-"));
            assert_final(&m, &key, effects, &child_value, &["child"]);
        }
    }
}

/// Pause at `point`; once the lease is over another process takes over (or, after
/// `after_complete`, replays); then the paused holder resumes. Its late write must be refused.
pub fn pause_case(test: &str, location: &str, tmp: &std::path::Path, open: Opener, point: &str) {
    let key = format!("pause-{point}");
    let effects = tmp.join(format!("effects-{key}"));
    let effects = effects.to_str().unwrap();
    let mut child = spawn(
        test,
        "kill",
        location,
        &format!("{key}|{effects}"),
        &[(KILL_AT, point), (KILL_ACTION, "pause")],
    );
    let mut out = lines(&mut child);
    expect_marker(&mut out, &format!("KILL-POINT:{point}"));
    let (ran_before, left) = expectation(point);
    assert_eq!(read_lines(effects).len(), usize::from(ran_before));

    let m = open(location, LEASE);
    let c = call(&key);
    let (value, executions, child_outcome): (String, Vec<&str>, &str) = match left {
        Left::Pending => {
            wait_until_expired(&m, &c);
            let o = parent_call(&m, &key, effects).unwrap();
            assert!(o.provenance.takeover && o.provenance.fencing_token == 2);
            // The paused holder resumes after the takeover. From `after_claim` it still runs its
            // function (documented); from later points it has run it already. Either way its
            // completion is fenced out.
            ("parent".into(), vec!["child", "parent"], "lease-lost")
        }
        Left::Success => {
            let o = parent_call(&m, &key, effects).unwrap();
            assert!(o.is_replayed());
            (o.value, vec!["child"], "ok")
        }
        Left::Nothing => unreachable!("no pause case leaves nothing"),
    };
    writeln!(child.stdin.as_mut().unwrap(), "go").unwrap();
    let outcome = expect_marker(&mut out, "CHILD:outcome");
    assert!(
        outcome.starts_with(child_outcome),
        "{point}: the resumed holder's outcome: {outcome}"
    );
    assert!(child.wait().unwrap().success());
    // `after_claim`: the child ran after the parent; sort to compare the multiset.
    let mut executions = executions;
    if point == "after_claim" {
        executions = vec!["parent", "child"];
    }
    assert_final(&m, &key, effects, &value, &executions);
}
