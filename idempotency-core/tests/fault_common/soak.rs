//! The soak: 4 process slots × 16 tasks run `ops` idempotent calls over `keys` keys on one
//! store, 10% of executions failing (5% permanent: stored as `Failed` for a short failure TTL;
//! 5% transient: the claim is released), while children are killed at random kill points
//! (`abort` at the n-th hit of a random point) and replaced until every slot has done its share.
//!
//! Every child logs to its own append-only file: `claim <key>` (from the `after_claim` hook),
//! `exec <key> <value>` (inside the function; every execution returns a unique value) and one
//! `op <key> <outcome> <value> <execution id> <expires_at ms> <fencing token>` line per
//! finished call, from the outcome's provenance. TTLs are short, so keys cycle through many
//! records. At the end the parent checks, per key:
//!
//! - **executions == successful claims**: in a child that was not killed, as many `exec` as
//!   `claim` lines; in a killed child at most as many (it may die between a claim and its
//!   function);
//! - **no result overwritten**: each stored record (one execution id) always answers with one
//!   value, the value its holder returned; the live periods of a key's finished records
//!   (completion to expiry, on the store's clock) never overlap, so no record replaced a live
//!   one; a value whose completion was refused (`LeaseLost`) is never returned or stored; a
//!   record no holder reported was written by a child killed right after completing;
//! - **no record left without an expiry**: every record has a finite expiry within its TTL
//!   (plus the store's own check, e.g. Redis `PTTL > 0`).
//!
//! `IDEMPOTENCY_SOAK_OPS` sets `ops` (the default in `cargo test` is the full 100 000 over 1 000
//! keys, in a debug build: about 10 s per store here; set it higher for a longer soak).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use idempotency_core::testing::fault::{self, KILL_ACTION, KILL_AT};
use idempotency_core::{block_on, Call, IdempotencyKey, IdempotencyManager, RecordStatus};

use super::{read_lines, role, spawn, Opener};

/// Processes running at once.
pub const SLOTS: usize = 4;
/// Tasks (threads) per process.
pub const TASKS: usize = 16;
/// The lease of soak calls.
pub const LEASE: Duration = Duration::from_millis(250);
/// The failure TTL.
pub const FAILURE_TTL: Duration = Duration::from_millis(150);
/// The success TTL: short, so keys run again and again.
pub const TTL: Duration = Duration::from_millis(250);

/// The soak's size: `IDEMPOTENCY_SOAK_OPS` (default `default_ops`) operations over
/// `ops / 100` keys, at least 50 and at most 1 000.
pub fn size(default_ops: usize) -> (usize, usize) {
    let ops = std::env::var("IDEMPOTENCY_SOAK_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_ops);
    (ops, (ops / 100).clamp(50, 1000))
}

fn soak_call(k: usize) -> Call {
    Call::new(IdempotencyKey::derive("faults::soak", 1, &k).unwrap())
}

/// A fixed-seed xorshift, so a run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(serde::Serialize, serde::Deserialize, Debug)]
enum Failure {
    Permanent(String),
    Transient(String),
}

/// The child's side. Returns `true` when this process is a soak child.
pub fn child(open: Opener) -> bool {
    if role().as_deref() != Some("soak") {
        return false;
    }
    let arg = super::arg();
    let mut it = arg.split('|');
    let log: PathBuf = it.next().unwrap().into();
    let ops: usize = it.next().unwrap().parse().unwrap();
    let keys: u64 = it.next().unwrap().parse().unwrap();
    let seed: u64 = it.next().unwrap().parse().unwrap();
    let file = Arc::new(
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log)
            .unwrap(),
    );
    let write = {
        let file = file.clone();
        move |line: String| (&*file).write_all(line.as_bytes()).unwrap()
    };
    {
        let write = write.clone();
        fault::set_hook(Some(Arc::new(move |point, key| {
            if point == fault::AFTER_CLAIM {
                write(format!("claim {key}\n"));
            }
        })));
    }
    let m = {
        let base = open(&super::location(), LEASE);
        // Same store (a namespace, if any, is a `Prefixed` store inside it), soak TTLs.
        IdempotencyManager::builder_dyn(base.storage().clone())
            .pending_timeout(LEASE)
            .default_ttl(TTL)
            .failure_ttl(FAILURE_TTL)
            .build()
            .unwrap()
    };
    let pid = std::process::id();
    std::thread::scope(|s| {
        for task in 0..TASKS {
            let share = ops / TASKS + usize::from(task < ops % TASKS);
            let (m, write) = (&m, write.clone());
            s.spawn(move || {
                let mut rng = Rng(seed ^ ((task as u64 + 1) << 32) | 1);
                for seq in 0..share {
                    let k = rng.below(keys) as usize;
                    let c = soak_call(k);
                    let key = c.key.to_string();
                    let value = format!("{pid}-{task}-{seq}");
                    let fate = rng.below(100);
                    let r = block_on(m.try_execute_with(
                        &c,
                        || {
                            write(format!("exec {key} {value}\n"));
                            std::future::ready(match fate {
                                0..=4 => Err(Failure::Permanent(value.clone())),
                                5..=9 => Err(Failure::Transient(value.clone())),
                                _ => Ok(value.clone()),
                            })
                        },
                        |e: &Failure| matches!(e, Failure::Transient(_)),
                    ));
                    let line = match r {
                        Ok(o) => {
                            let how = if o.is_replayed() {
                                "replayed"
                            } else {
                                "executed"
                            };
                            let p = &o.provenance;
                            let (what, v) = match o.value {
                                Ok(v) => ("success", v),
                                Err(Failure::Permanent(v)) => ("permanent", v),
                                Err(Failure::Transient(v)) => ("transient", v),
                            };
                            format!(
                                "op {key} {how}-{what} {v} {} {} {}\n",
                                p.execution_id.simple(),
                                p.expires_at.as_millis(),
                                p.fencing_token
                            )
                        }
                        Err(e) => {
                            let kind = format!("{:?}", e.kind());
                            let v = if matches!(e, idempotency_core::Error::LeaseLost { .. }) {
                                &value
                            } else {
                                "-"
                            };
                            format!("op {key} {kind} {v} - 0 0\n")
                        }
                    };
                    write(line);
                }
            });
        }
    });
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Success,
    Failed,
}

/// A finished record as a call saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StoredRecord {
    value: String,
    kind: Kind,
    expires_at: u64,
    fence: u64,
}

/// What the logs say about one key.
#[derive(Default, Debug)]
struct KeyLog {
    execs: BTreeSet<String>,
    killed_execs: BTreeSet<String>,
    fenced: BTreeSet<String>,
    /// Finished records by execution id.
    records: BTreeMap<String, StoredRecord>,
}

/// Figures of one soak run.
#[derive(Debug, Default)]
pub struct Figures {
    pub ops: usize,
    pub keys: usize,
    pub children: usize,
    pub killed: usize,
    pub claims: usize,
    pub executions: usize,
    /// Calls whose holder stored its result (success or permanent failure).
    pub completed: usize,
    /// Distinct finished records seen.
    pub records: usize,
    pub replays: usize,
    pub conflicts: usize,
    pub lease_lost: usize,
    pub released: usize,
    pub other_errors: BTreeMap<String, usize>,
    /// Records still present when the soak ended.
    pub stored_at_end: usize,
    pub elapsed: Duration,
}

/// Runs the soak on the store at `location` (files under `tmp`), with `points` the kill
/// points this store passes, and checks the invariants. `extra_check` runs on every record
/// key (as stored) at the end, for a store's own expiry check.
pub fn run(
    test: &str,
    location: &str,
    tmp: &Path,
    open: Opener,
    points: &[&str],
    (ops, keys): (usize, usize),
    extra_check: &dyn Fn(&IdempotencyKey),
) -> Figures {
    let started = Instant::now();
    let per_slot = ops / SLOTS;
    let killed = std::sync::atomic::AtomicUsize::new(0);
    let children = std::sync::atomic::AtomicUsize::new(0);
    let logs: Vec<(PathBuf, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..SLOTS)
            .map(|slot| {
                let (killed, children) = (&killed, &children);
                s.spawn(move || {
                    let mut rng = Rng(0x50a6 + slot as u64 * 7919);
                    let mut logs = Vec::new();
                    let mut done = 0;
                    for generation in 0.. {
                        assert!(generation < 200, "slot {slot}: too many generations");
                        let left = per_slot - done;
                        if left == 0 {
                            break;
                        }
                        let log = tmp.join(format!("soak-{slot}-{generation}.log"));
                        // Most children are killed at the n-th hit of a random point; the
                        // last few ops run without a kill so the soak ends.
                        let kill = (left > TASKS * 4 && rng.below(4) != 0).then(|| {
                            let p = points[rng.below(points.len() as u64) as usize];
                            format!("{p}#{}", 1 + rng.below(40))
                        });
                        let mut env = vec![(KILL_ACTION, "abort")];
                        if let Some(k) = &kill {
                            env.push((KILL_AT, k.as_str()));
                        }
                        let arg = format!("{}|{left}|{keys}|{}", log.display(), rng.next() | 1);
                        let mut child = spawn(test, "soak", location, &arg, &env);
                        drop(child.stdin.take());
                        let mut out = child.stdout.take().unwrap();
                        std::io::copy(&mut out, &mut std::io::sink()).unwrap();
                        let status = child.wait().unwrap();
                        children.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let aborted = status.signal() == Some(6);
                        assert!(
                            status.success() || aborted,
                            "soak child failed: {status:?} (kill {kill:?})"
                        );
                        if aborted {
                            killed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        done += read_lines(log.to_str().unwrap())
                            .iter()
                            .filter(|l| l.starts_with("op "))
                            .count();
                        logs.push((log, aborted));
                    }
                    logs
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });

    // Per key, across every child.
    let mut fig = Figures {
        ops: per_slot * SLOTS,
        keys,
        children: children.into_inner(),
        killed: killed.into_inner(),
        ..Figures::default()
    };
    let mut per_key: BTreeMap<String, KeyLog> = BTreeMap::new();
    for (log, aborted) in &logs {
        let mut mine: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for line in read_lines(log.to_str().unwrap()) {
            let f: Vec<&str> = line.split(' ').collect();
            let entry = per_key.entry(f[1].to_owned()).or_default();
            match f[0] {
                "claim" => {
                    mine.entry(f[1].to_owned()).or_default().0 += 1;
                    fig.claims += 1;
                }
                "exec" => {
                    assert!(
                        entry.execs.insert(f[2].to_owned()),
                        "{line}: a value ran twice"
                    );
                    mine.entry(f[1].to_owned()).or_default().1 += 1;
                    fig.executions += 1;
                    if *aborted {
                        entry.killed_execs.insert(f[2].to_owned());
                    }
                }
                "op" => {
                    let (outcome, value) = (f[2], f[3]);
                    let kind = match outcome {
                        "executed-success" | "replayed-success" => Some(Kind::Success),
                        "executed-permanent" | "replayed-permanent" => Some(Kind::Failed),
                        "executed-transient" => {
                            fig.released += 1;
                            assert!(entry.execs.contains(value), "{line}: never executed");
                            None
                        }
                        "InProgress" => {
                            fig.conflicts += 1;
                            None
                        }
                        "LeaseLost" => {
                            entry.fenced.insert(value.to_owned());
                            fig.lease_lost += 1;
                            None
                        }
                        other => {
                            *fig.other_errors.entry(other.to_owned()).or_default() += 1;
                            None
                        }
                    };
                    let Some(kind) = kind else { continue };
                    let holder = outcome.starts_with("executed");
                    if holder {
                        fig.completed += 1;
                    } else {
                        fig.replays += 1;
                    }
                    let rec = StoredRecord {
                        value: value.to_owned(),
                        kind,
                        expires_at: f[5].parse().unwrap(),
                        fence: f[6].parse().unwrap(),
                    };
                    match entry.records.get(f[4]) {
                        // One record, one answer: never a value but its holder's.
                        Some(seen) => assert_eq!(seen, &rec, "{line}: the record changed"),
                        None => {
                            entry.records.insert(f[4].to_owned(), rec);
                        }
                    }
                }
                other => panic!("unknown log line {other:?} in {}", log.display()),
            }
        }
        // Executions == successful claims, per key, in each child (a killed child may have
        // died between a claim and its function).
        for (key, (claims, execs)) in mine {
            if *aborted {
                assert!(
                    execs <= claims,
                    "{key}: {execs} executions, {claims} claims"
                );
            } else {
                assert_eq!(
                    execs,
                    claims,
                    "{key}: executions != claims in {}",
                    log.display()
                );
            }
        }
    }
    assert!(
        fig.other_errors.is_empty(),
        "unexpected errors: {:?}",
        fig.other_errors
    );

    let m = open(location, LEASE);
    let mut stored_keys = 0;
    for k in 0..keys {
        let c = soak_call(k);
        let name = c.key.to_string();
        let log = per_key.remove(&name).unwrap_or_default();
        // Every answered record holds a value that ran, was not fenced out, and its live
        // period (completion to expiry) does not overlap another record's of the same key.
        let mut periods: Vec<(u64, u64, &str)> = Vec::new();
        for (id, rec) in &log.records {
            assert!(log.execs.contains(&rec.value), "{name}: {rec:?} never ran");
            assert!(
                !log.fenced.contains(&rec.value),
                "{name}: fenced-out {rec:?} answered"
            );
            let ttl = match rec.kind {
                Kind::Success => TTL,
                Kind::Failed => FAILURE_TTL,
            };
            let end = rec.expires_at;
            periods.push((end - ttl.as_millis() as u64, end, id));
        }
        periods.sort();
        for w in periods.windows(2) {
            assert!(
                w[1].0 >= w[0].1,
                "{name}: record {} completed at {} while record {} was live until {}: \
                 a result was overwritten",
                w[1].2,
                w[1].0,
                w[0].2,
                w[0].1
            );
        }
        fig.records += periods.len();
        let Some(obs) = block_on(m.status(&c.key)).unwrap() else {
            continue;
        };
        stored_keys += 1;
        let (bound, kind) = match obs.record.status {
            RecordStatus::Success => (TTL, Some(Kind::Success)),
            RecordStatus::Failed => (FAILURE_TTL, Some(Kind::Failed)),
            _ => (LEASE, None),
        };
        assert!(
            obs.record.expires_at.saturating_since(obs.now) <= bound,
            "{name}: expiry beyond its TTL: {obs:?}"
        );
        assert!(
            obs.record.expires_at.as_millis() < u64::MAX,
            "{name}: no expiry"
        );
        extra_check(&obs.record.key);
        let Some(kind) = kind else { continue };
        let value = match kind {
            Kind::Success => IdempotencyManager::decode_value::<String>(&obs).unwrap(),
            Kind::Failed => match IdempotencyManager::decode_error::<Failure>(&obs) {
                Ok(Some(Failure::Permanent(v) | Failure::Transient(v))) => v,
                e => panic!("{name}: a failed record holds {e:?}"),
            },
        };
        let id = obs.record.owner.execution_id.simple().to_string();
        let stored = StoredRecord {
            value,
            kind,
            expires_at: obs.record.expires_at.as_millis(),
            fence: obs.record.owner.fencing_token,
        };
        match log.records.get(&id) {
            Some(seen) => assert_eq!(seen, &stored, "{name}: the stored record changed"),
            None => assert!(
                log.killed_execs.contains(&stored.value),
                "{name}: stored {stored:?}, which no call returned and no killed child ran"
            ),
        }
        assert!(
            !log.fenced.contains(&stored.value),
            "{name}: a fenced-out value is stored"
        );
    }
    assert!(per_key.is_empty(), "log lines for unknown keys");
    // (A store with native expiry, Redis, may hold none of the short-lived records by now.)
    fig.stored_at_end = stored_keys;
    fig.elapsed = started.elapsed();
    eprintln!("soak figures: {fig:#?}");
    fig
}
