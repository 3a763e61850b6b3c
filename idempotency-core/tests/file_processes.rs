//! The file store across processes: the test binary re-executes itself as child processes on
//! one store directory (system clock, real short leases), synchronised through pipes.
//! Scenarios 2, 10, 12, 13 and 27 of SEMANTICS.md.
#![cfg(feature = "file")]

mod file_common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use file_common::{child_arg, child_dir, expect_marker, lines, role, say, signal, spawn};
use idempotency_core::{
    block_on, Begin, Call, Claim, ClaimRequest, Clock, Error, ErrorKind, FileStorage, Fingerprint,
    IdempotencyKey, IdempotencyManager, Observed, RecordStatus, Storage, StorageAdmin, SystemClock,
};
use uuid::Uuid;

/// The lease of the crash scenarios: long enough for the parent's in-lease checks, short
/// enough to wait out.
const LEASE: Duration = Duration::from_secs(3);

fn manager(dir: &std::path::Path) -> IdempotencyManager {
    let store = FileStorage::builder(dir)
        .clock(Arc::new(SystemClock))
        .open()
        .unwrap();
    IdempotencyManager::builder(store)
        .pending_timeout(LEASE)
        .build()
        .unwrap()
}

fn call(key: &str) -> Call {
    Call::new(IdempotencyKey::derive("file::processes", 1, &key).unwrap())
}

/// Waits (real time) until the system clock, the store's clock, is past the record's expiry.
fn wait_past(obs: &Observed) {
    let left = obs.record.expires_at.saturating_since(SystemClock.now());
    std::thread::sleep(left + Duration::from_millis(50));
}

// ---------------------------------------------------------------------------------------------
// Scenario 2: 8 processes, one key (and 8 shared keys), one execution each.

const S2: &str = "scenario_2_processes_execute_once";
const S2_KEYS: usize = 8;
const S2_CALLS: usize = 50;

fn append_effect(path: &str, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(format!("{line}\n").as_bytes()).unwrap();
}

fn s2_child() {
    // Start only when the parent closes stdin (every sibling has been spawned by then).
    std::io::stdin().read_to_end(&mut Vec::new()).unwrap();
    let m = manager(&child_dir());
    let effects = child_arg();
    let pid = std::process::id();
    let shared = call("shared");
    let keys: Vec<Call> = (0..S2_KEYS).map(|k| call(&format!("k{k}"))).collect();
    for _ in 0..S2_CALLS {
        for (name, c) in std::iter::once(("shared".to_owned(), &shared))
            .chain(keys.iter().enumerate().map(|(k, c)| (format!("k{k}"), c)))
        {
            match m.execute_sync(c, || {
                append_effect(&effects, &format!("{name} {pid}"));
                pid
            }) {
                Ok(_) | Err(Error::InProgress { .. }) => {}
                Err(e) => panic!("child {pid}: {name}: {e}"),
            }
        }
    }
}

#[test]
fn scenario_2_processes_execute_once() {
    if role().as_deref() == Some("s2") {
        return s2_child();
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let effects = tmp.path().join("effects.log");
    let mut children: Vec<_> = (0..8)
        .map(|_| spawn(S2, "s2", &store, effects.to_str().unwrap()))
        .collect();
    for c in &mut children {
        drop(c.stdin.take()); // go
    }
    for c in &mut children {
        std::io::copy(&mut c.stdout.take().unwrap(), &mut std::io::sink()).unwrap();
        assert!(c.wait().unwrap().success(), "a child failed");
    }
    let text = std::fs::read_to_string(&effects).unwrap();
    let mut per_key: BTreeMap<&str, usize> = BTreeMap::new();
    for line in text.lines() {
        *per_key.entry(line.split(' ').next().unwrap()).or_default() += 1;
    }
    assert_eq!(per_key.len(), 1 + S2_KEYS, "every key ran: {per_key:?}");
    for (key, n) in &per_key {
        assert_eq!(*n, 1, "scenario 2: key {key} executed {n} times");
    }
}

// ---------------------------------------------------------------------------------------------
// Scenario 10: a child claims and is SIGKILLed while running.

const S10: &str = "scenario_10_crash_while_pending_across_processes";

#[test]
fn scenario_10_crash_while_pending_across_processes() {
    let c = call("s10");
    if role().as_deref() == Some("s10") {
        let m = manager(&child_dir());
        let _ = m.execute_sync(&c, || -> u32 {
            say("running");
            loop {
                std::thread::park(); // until SIGKILL
            }
        });
        unreachable!("the holder is killed inside its function");
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let mut child = spawn(S10, "s10", &store, "");
    let mut out = lines(&mut child);
    expect_marker(&mut out, "running");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let m = manager(&store);
    let obs = block_on(m.status(&c.key))
        .unwrap()
        .expect("the crashed claim");
    assert_eq!(obs.record.status, RecordStatus::Pending);
    assert_eq!(obs.record.owner.fencing_token, 1);
    let r = m.execute_sync(&c, || 0_u32);
    assert_eq!(
        r.map(|o| o.value).unwrap_err().kind(),
        ErrorKind::InProgress,
        "scenario 10: within the lease"
    );
    wait_past(&obs);
    let mut runs = 0;
    let o = m
        .execute_sync(&c, || {
            runs += 1;
            42_u32
        })
        .unwrap();
    assert!(!o.is_replayed() && o.provenance.takeover);
    assert_eq!(o.provenance.fencing_token, 2, "scenario 10: fence 1 -> 2");
    let again = m.execute_sync(&c, || 0_u32).unwrap();
    assert!(again.is_replayed());
    assert_eq!(again.value, 42);
    assert_eq!(runs, 1);
}

// ---------------------------------------------------------------------------------------------
// Scenarios 12 and 13: a holder SIGSTOPped past its lease, resumed after a takeover.

const S12: &str = "scenario_12_stale_holder_is_fenced_across_processes";
const S13: &str = "scenario_13_stale_holder_release_is_noop_across_processes";

fn wait_for_go() {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
}

#[test]
fn scenario_12_stale_holder_is_fenced_across_processes() {
    let c = call("s12");
    if role().as_deref() == Some("s12") {
        let m = manager(&child_dir());
        let r = m.execute_sync(&c, || {
            say("running");
            wait_for_go();
            "vA".to_string()
        });
        match r {
            Err(Error::LeaseLost { .. }) => say("outcome lease-lost"),
            Ok(o) => say(&format!(
                "outcome ok {} replayed={}",
                o.value,
                o.is_replayed()
            )),
            Err(e) => say(&format!("outcome error {e}")),
        }
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let mut a = spawn(S12, "s12", &store, "");
    let mut out = lines(&mut a);
    expect_marker(&mut out, "running");
    signal(a.id(), "STOP");

    let m = manager(&store);
    let obs = block_on(m.status(&c.key)).unwrap().expect("A's claim");
    wait_past(&obs);
    let b = m.execute_sync(&c, || "vB".to_string()).unwrap();
    assert_eq!(b.provenance.fencing_token, 2);

    signal(a.id(), "CONT");
    writeln!(a.stdin.as_mut().unwrap(), "go").unwrap();
    let outcome = expect_marker(&mut out, "outcome");
    assert_eq!(
        outcome, "lease-lost",
        "scenario 12: A's late write is refused"
    );
    assert!(a.wait().unwrap().success());

    let obs = block_on(m.status(&c.key)).unwrap().unwrap();
    assert_eq!(obs.record.status, RecordStatus::Success);
    assert_eq!(obs.record.owner.fencing_token, 2);
    for _ in 0..3 {
        let o = m.execute_sync(&c, || "again".to_string()).unwrap();
        assert!(o.is_replayed());
        assert_eq!(o.value, "vB", "scenario 12: the record still holds vB");
    }
}

#[test]
fn scenario_13_stale_holder_release_is_noop_across_processes() {
    let c = call("s13");
    if role().as_deref() == Some("s13") {
        let m = manager(&child_dir());
        let r = block_on(m.try_execute_with(
            &c,
            || async {
                say("running");
                wait_for_go();
                Err::<String, String>("timeout".into())
            },
            |_| true, // transient: release the claim
        ));
        match r {
            Ok(o) => say(&format!("outcome {:?}", o.value)),
            Err(e) => say(&format!("outcome error {e}")),
        }
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let mut a = spawn(S13, "s13", &store, "");
    let mut out = lines(&mut a);
    expect_marker(&mut out, "running");
    signal(a.id(), "STOP");

    let m = manager(&store);
    let obs = block_on(m.status(&c.key)).unwrap().expect("A's claim");
    wait_past(&obs);
    // B takes over and is still running (Pending, fence 2) when A wakes up.
    let Begin::Acquired(b) = block_on(m.begin_operation(&c)).unwrap() else {
        panic!("B could not take over")
    };
    assert_eq!(b.owner.fencing_token, 2);

    signal(a.id(), "CONT");
    writeln!(a.stdin.as_mut().unwrap(), "go").unwrap();
    let outcome = expect_marker(&mut out, "outcome");
    assert_eq!(outcome, r#"Err("timeout")"#);
    assert!(a.wait().unwrap().success());

    let obs = block_on(m.status(&c.key))
        .unwrap()
        .expect("B's claim survives");
    assert_eq!(obs.record.status, RecordStatus::Pending);
    assert_eq!(
        obs.record.owner, b.owner,
        "scenario 13: A's release deleted nothing"
    );
    block_on(m.complete_operation(&b, &"vB".to_string())).unwrap();
    let o = m.execute_sync(&c, || "again".to_string()).unwrap();
    assert_eq!(o.value, "vB");
}

// ---------------------------------------------------------------------------------------------
// Scenario 27: a writer SIGKILLed while writing a 10 MB result leaves the old record or the new
// one, never a partial one.

const S27: &str = "scenario_27_torn_write_on_crash";
const BIG: usize = 10 << 20;

fn s27_child() {
    let store = FileStorage::open(child_dir()).unwrap();
    let key = IdempotencyKey::parse(&child_arg()).unwrap();
    for i in 0_u64.. {
        let req = ClaimRequest {
            execution_id: Uuid::new_v4(),
            fingerprint: Fingerprint([0; 32]),
            // A 1 ms lease: the Pending left by a killed writer is taken over by the next.
            lease: Duration::from_millis(1),
            refresh: true,
        };
        let Claim::Acquired { owner, .. } = block_on(store.try_claim(&key, &req)).unwrap() else {
            panic!("the writer could not claim")
        };
        let result = vec![(i % 251) as u8; BIG];
        say(&format!("writing {i}"));
        block_on(store.complete(&key, &owner, &result, Duration::from_secs(3600))).unwrap();
    }
}

#[derive(Debug, Clone, Copy)]
enum KillAt {
    TempAppears,
    TempFull,
    AfterRename,
}

/// Polls the store directory until the writer reaches the kill point `at` (the writer loops,
/// so a point missed in one write is caught in a later one). A writer that never gets there
/// (one that writes in place, without a temporary file) fails the test after two minutes.
fn wait_for_kill_point(dir: &std::path::Path, at: KillAt) {
    let mut seen_temp = false;
    let give_up = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            std::time::Instant::now() < give_up,
            "scenario 27: the writer never reached {at:?}"
        );
        let temps = if dir.exists() {
            file_common::temp_files(dir)
        } else {
            Vec::new()
        };
        let full = temps
            .iter()
            .any(|t| std::fs::metadata(dir.join(t)).is_ok_and(|m| m.len() >= BIG as u64));
        match at {
            KillAt::TempAppears if !temps.is_empty() => return,
            KillAt::TempFull if full => return,
            KillAt::AfterRename if seen_temp && temps.is_empty() => return,
            _ => {}
        }
        seen_temp |= full;
        std::thread::yield_now();
    }
}

#[test]
fn scenario_27_torn_write_on_crash() {
    if role().as_deref() == Some("s27") {
        return s27_child();
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let key = call("s27").key;
    let store = FileStorage::open(&dir).unwrap();
    // The "old" record of the first round: a finished 10 MB result.
    let req = ClaimRequest {
        execution_id: Uuid::new_v4(),
        fingerprint: Fingerprint([0; 32]),
        lease: Duration::from_millis(1),
        refresh: false,
    };
    let Claim::Acquired { owner, .. } = block_on(store.try_claim(&key, &req)).unwrap() else {
        panic!("fresh key")
    };
    block_on(store.complete(&key, &owner, &vec![250; BIG], Duration::from_secs(3600))).unwrap();
    let (mut pending, mut success, mut torn_temp) = (0, 0, 0);
    // Kill points, two rounds each: as soon as a temporary file appears (the write has begun),
    // once it holds the whole 10 MB (during its fsync, before the rename), and just after it
    // vanished (renamed; the directory fsync).
    let points = [KillAt::TempAppears, KillAt::TempFull, KillAt::AfterRename];
    for (round, at) in points.iter().chain(points.iter()).enumerate() {
        let mut child = spawn(S27, "s27", &dir, key.as_str());
        let out = lines(&mut child);
        // Drain the child's progress lines so it never blocks on a full pipe.
        let drain = std::thread::spawn(move || out.count());
        wait_for_kill_point(&dir, *at);
        child.kill().unwrap();
        child.wait().unwrap();
        drain.join().unwrap();
        torn_temp += file_common::temp_files(&dir).len();

        let obs = block_on(store.get(&key))
            .unwrap_or_else(|e| panic!("scenario 27: round {round}: {e}"))
            .expect("a record");
        let status = obs.record.status;
        match status {
            RecordStatus::Pending => {
                assert!(obs.record.result.is_empty());
                pending += 1;
            }
            RecordStatus::Success => {
                let r = &obs.record.result;
                assert_eq!(r.len(), BIG, "scenario 27: a complete result");
                assert!(
                    r.iter().all(|b| *b == r[0]),
                    "scenario 27: one write's bytes"
                );
                success += 1;
            }
            s => panic!("scenario 27: status {s}"),
        }
        // Stale temporary files are purged; so is an expired Pending (its lease was 1 ms), but
        // a live Success is kept.
        let expired = u64::from(status == RecordStatus::Pending);
        assert_eq!(block_on(store.purge_expired()).unwrap(), expired);
        assert!(file_common::temp_files(&dir).is_empty());
    }
    eprintln!(
        "scenario 27: after the kills: {pending} pending, {success} success; \
         {torn_temp} interrupted temporary files purged"
    );
    assert!(
        torn_temp >= 2,
        "scenario 27: some kills interrupted a write"
    );
}
