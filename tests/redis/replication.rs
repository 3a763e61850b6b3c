//! Scenario 25, replicated claims: a primary and a replica started here on loopback
//! (`redis-server --replicaof`), and a store that waits (`WAIT 1 timeout`) for the replica
//! after a claim, a completion and a renewal. With the replica paused (SIGSTOP) the wait times
//! out and the call fails closed with a typed error, in the state the option documents.

use std::error::Error as _;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use idempotency::{
    Begin, Call, Claim, ClaimRequest, ErrorKind, Fingerprint, IdempotencyKey, IdempotencyManager,
    RecordStatus, Storage,
};
use idempotency_redis::{redis, NotReplicated, RedisConfig, RedisStorage};

use crate::harness::{free_port, has_redis_server, skip, temp_dir, Server};

/// A primary and its replica, both this test's own servers.
struct Pair {
    primary: Server,
    replica: Server,
    /// The replica's process id (read while it runs: a paused server answers nothing).
    replica_pid: String,
}

impl Pair {
    /// Starts both and waits until the replica is in sync (`state=online` on the primary).
    fn start(test: &str) -> Option<Pair> {
        if !has_redis_server() {
            skip(
                test,
                "replicated claims need their own redis-server on PATH",
            );
            return None;
        }
        // Their files (the replica writes the synced snapshot) go under the test's target dir.
        let dir = temp_dir("replication");
        let dir = dir.to_string_lossy();
        let primary = Server::start_with(
            free_port(),
            &[
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &dir,
                // Sync the replica at once (the default waits 5 s for more replicas).
                "--repl-diskless-sync-delay",
                "0",
            ],
        );
        let primary_port = primary.port.to_string();
        let replica = Server::start_with(
            free_port(),
            &[
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &dir,
                "--replicaof",
                "127.0.0.1",
                &primary_port,
            ],
        );
        let mut conn = connect(&primary.url());
        let give_up = Instant::now() + Duration::from_secs(20);
        loop {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut conn)
                .unwrap();
            if info
                .lines()
                .any(|l| l.starts_with("slave0:") && l.contains("state=online"))
            {
                break;
            }
            assert!(
                Instant::now() < give_up,
                "the replica never synced:\n{info}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut connect(&replica.url()))
            .unwrap();
        let replica_pid = info
            .lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .expect("process_id in INFO server")
            .trim()
            .to_owned();
        let pair = Pair {
            primary,
            replica,
            replica_pid,
        };
        pair.await_replica();
        Some(pair)
    }

    /// A store on the primary that waits for one replica, `timeout` at most.
    fn store(&self, timeout: Duration) -> RedisStorage {
        RedisConfig::new(self.primary.url())
            .prefix("replicated:")
            .wait_for_replicas(1, timeout)
            .open()
            .unwrap()
    }

    /// The raw value of `key`'s record on the replica.
    fn on_replica(&self, store: &RedisStorage, key: &IdempotencyKey) -> Option<Vec<u8>> {
        redis::cmd("GET")
            .arg(store.record_key(key))
            .query(&mut connect(&self.replica.url()))
            .unwrap()
    }

    /// Resumes the paused replica and waits until it acknowledges writes again.
    fn resume_replica(&self) {
        self.signal_replica("CONT");
        self.await_replica();
    }

    /// Waits until the replica acknowledges a write on the primary (`WAIT 1` answers 1), so the
    /// test's own waits measure the store, not a replica still loading or resuming.
    fn await_replica(&self) {
        let mut conn = connect(&self.primary.url());
        let give_up = Instant::now() + Duration::from_secs(20);
        loop {
            let _: () = redis::cmd("SET")
                .arg("replication-probe")
                .arg(1)
                .query(&mut conn)
                .unwrap();
            let acked: i64 = redis::cmd("WAIT")
                .arg(1)
                .arg(1000)
                .query(&mut conn)
                .unwrap();
            if acked == 1 {
                return;
            }
            assert!(
                Instant::now() < give_up,
                "the replica never acknowledged a write"
            );
        }
    }

    /// Pauses (`STOP`) or resumes (`CONT`) the replica's process.
    fn signal_replica(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(&self.replica_pid)
            .status()
            .unwrap();
        assert!(ok.success(), "kill -{sig} {}", self.replica_pid);
    }
}

fn connect(url: &str) -> redis::Connection {
    redis::Client::open(url).unwrap().get_connection().unwrap()
}

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::derive("redis::s25", 1, &s).unwrap().key
}

fn call(s: &str) -> Call {
    Call::new(IdempotencyKey::derive("redis::s25", 1, &s).unwrap())
}

/// The `NotReplicated` behind a store error.
fn not_replicated(e: &idempotency::Error) -> &NotReplicated {
    assert_eq!(e.kind(), ErrorKind::StoreUnavailable, "{e}");
    e.source()
        .and_then(|s| s.downcast_ref::<NotReplicated>())
        .unwrap_or_else(|| panic!("not a NotReplicated: {e:?}"))
}

#[test]
fn scenario_25_claims_and_completions_wait_for_the_replica() {
    let Some(pair) = Pair::start("scenario_25_claims_and_completions_wait_for_the_replica") else {
        return;
    };
    let store = pair.store(Duration::from_secs(2));
    let m = IdempotencyManager::new(store.clone());
    let c = call("waited");
    let Begin::Acquired(lease) = idempotency::block_on(m.begin_operation(&c)).unwrap() else {
        panic!("a fresh key was not acquired")
    };
    // The claim returned only once the replica had it.
    let pending = pair
        .on_replica(&store, &c.key)
        .expect("the claim on the replica");
    assert_eq!(pending[5], b'P');
    idempotency::block_on(m.complete_operation(&lease, &7_u32)).unwrap();
    let done = pair
        .on_replica(&store, &c.key)
        .expect("the result on the replica");
    assert_eq!(done[5], b'S');
    let runs = AtomicUsize::new(0);
    let o = m
        .execute_sync(&c, || runs.fetch_add(1, Ordering::SeqCst) as u32)
        .unwrap();
    assert!(o.is_replayed() && o.value == 7);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    // A run through the manager, on both servers.
    let fresh = call("fresh");
    let o = m
        .execute_sync(&fresh, || runs.fetch_add(1, Ordering::SeqCst) as u32)
        .unwrap();
    assert!(!o.is_replayed());
    assert_eq!(pair.on_replica(&store, &fresh.key).unwrap()[5], b'S');
}

#[test]
fn scenario_25_a_paused_replica_fails_the_claim_closed() {
    let Some(pair) = Pair::start("scenario_25_a_paused_replica_fails_the_claim_closed") else {
        return;
    };
    let store = pair.store(Duration::from_secs(1));
    let m = IdempotencyManager::new(store.clone());
    let runs = AtomicUsize::new(0);
    let run = || runs.fetch_add(1, Ordering::SeqCst) as u32;
    let done = call("done");
    m.execute_sync(&done, run).unwrap();

    pair.signal_replica("STOP");
    let c = call("paused");
    let e = m.execute_sync(&c, run).unwrap_err();
    let typed = not_replicated(&e);
    assert_eq!(
        (typed.operation, typed.acknowledged, typed.required),
        ("claim", 0, 1),
        "{e}"
    );
    assert!(e.to_string().contains("0 of 1 replicas"), "{e}");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "fail closed: nothing ran");
    // The claim was released on the primary: no record blocks a retry.
    assert_eq!(idempotency::block_on(store.get(&c.key)).unwrap(), None);
    // A hit writes nothing and never waits: the stored result replays.
    let o = m.execute_sync(&done, run).unwrap();
    assert!(o.is_replayed() && o.value == 0);
    pair.resume_replica();

    // With the replica back, the retry claims, runs once and waits successfully.
    let o = m.execute_sync(&c, run).unwrap();
    assert!(!o.is_replayed());
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(pair.on_replica(&store, &c.key).unwrap()[5], b'S');
}

#[test]
fn scenario_25_a_paused_replica_fails_the_completion_closed() {
    let Some(pair) = Pair::start("scenario_25_a_paused_replica_fails_the_completion_closed") else {
        return;
    };
    let store = pair.store(Duration::from_secs(1));
    let k = key("completion");
    let req = ClaimRequest {
        execution_id: uuid::Uuid::new_v4(),
        fingerprint: Fingerprint([3; 32]),
        lease: Duration::from_secs(30),
        refresh: false,
    };
    let Claim::Acquired { owner, .. } = idempotency::block_on(store.try_claim(&k, &req)).unwrap()
    else {
        panic!("a fresh key was not acquired")
    };
    let ttl = Duration::from_secs(60);

    pair.signal_replica("STOP");
    let e = idempotency::block_on(store.complete(&k, &owner, b"result", ttl)).unwrap_err();
    assert_eq!(not_replicated(&e).operation, "complete", "{e}");
    // As documented: the outcome is stored on the primary, by this owner.
    let primary = idempotency::block_on(store.get(&k)).unwrap().unwrap();
    assert_eq!(primary.record.status, RecordStatus::Success);
    assert_eq!(primary.record.owner, owner);
    assert_eq!(primary.record.result, b"result");
    // A renewal of another claim fails closed the same way.
    let k2 = key("renewal");
    pair.resume_replica();
    let Claim::Acquired { owner: owner2, .. } = idempotency::block_on(store.try_claim(
        &k2,
        &ClaimRequest {
            execution_id: uuid::Uuid::new_v4(),
            ..req
        },
    ))
    .unwrap() else {
        panic!("a fresh key was not acquired")
    };
    pair.signal_replica("STOP");
    let e = idempotency::block_on(store.renew(&k2, &owner2, Duration::from_secs(30))).unwrap_err();
    assert_eq!(not_replicated(&e).operation, "renew", "{e}");
    pair.resume_replica();

    // The completion retried by its owner finds its own record, answers it as applied (the
    // same times), and now the replica acknowledges it.
    let again = idempotency::block_on(store.complete(&k, &owner, b"result", ttl)).unwrap();
    assert_eq!(again, primary.record);
    let replicated = pair
        .on_replica(&store, &k)
        .expect("the result on the replica");
    assert_eq!(replicated[5], b'S');
    // Another owner is still refused.
    let stale = idempotency::Owner {
        fencing_token: owner.fencing_token + 1,
        ..owner
    };
    let e = idempotency::block_on(store.complete(&k, &stale, b"other", ttl)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost, "{e}");
}

#[test]
fn scenario_25_wait_settings_are_checked() {
    for (replicas, timeout) in [
        (0, Duration::from_millis(100)),
        (1, Duration::ZERO),
        (1, RedisConfig::DEFAULT_RESPONSE_TIMEOUT),
    ] {
        let e = RedisConfig::new("redis://127.0.0.1:1/")
            .wait_for_replicas(replicas, timeout)
            .open()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{replicas} {timeout:?}: {e}");
    }
}
