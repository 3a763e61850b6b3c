//! Scenarios 1-3 across connections and processes: 4 OS processes x 50 tasks on one key run
//! the function once (counted with `INCR` in Redis); 1000 rounds of two stores (separate
//! connections) racing on fresh keys run it once per key.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use idempotency::{Call, ConflictPolicy, IdempotencyKey, IdempotencyManager, RedisStorage};
use idempotency_redis::redis;

use crate::harness::{unique_prefix, Target};

const CHILD_ENV: &str = "IDEM_REDIS_CHILD";
const PROCESSES: usize = 4;
const TASKS: usize = 50;
const TEST: &str = "processes::scenario_3_four_processes_fifty_tasks_execute_once";

/// The child role: open a store, wait for the parent's go, run 50 tasks on one key, report.
async fn child(spec: &str) {
    let mut parts = spec.splitn(3, '|');
    let (url, prefix, counter) = (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
    );
    let store = RedisStorage::builder(url.clone())
        .prefix(prefix)
        .open()
        .unwrap();
    let m = IdempotencyManager::builder(store)
        .on_conflict(ConflictPolicy::Wait {
            timeout: Duration::from_secs(30),
        })
        .build()
        .unwrap();
    println!("\nready");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    let c = Call::new(IdempotencyKey::derive("redis::s3", 1, &"one key").unwrap());
    let gate = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (m, c, gate, url, counter) = (
                m.clone(),
                c.clone(),
                gate.clone(),
                url.clone(),
                counter.clone(),
            );
            tokio::spawn(async move {
                gate.wait().await;
                m.execute(&c, || async move {
                    tokio::task::spawn_blocking(move || {
                        let mut conn = redis::Client::open(url.as_str())
                            .and_then(|c| c.get_connection())
                            .unwrap();
                        let n: i64 = redis::cmd("INCR").arg(&counter).query(&mut conn).unwrap();
                        n
                    })
                    .await
                    .unwrap()
                })
                .await
            })
        })
        .collect();
    let (mut executed, mut replayed) = (0, 0);
    for t in tasks {
        let o = t.await.unwrap().unwrap();
        assert_eq!(o.value, 1, "every caller sees the one execution's value");
        if o.is_replayed() {
            replayed += 1;
        } else {
            executed += 1;
        }
    }
    println!("\nexecuted={executed} replayed={replayed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scenario_3_four_processes_fifty_tasks_execute_once() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec).await;
        return;
    }
    let Some(target) = Target::get(TEST) else {
        return;
    };
    let prefix = unique_prefix(TEST);
    let counter = format!("{prefix}counter");
    let spec = format!("{}|{prefix}|{counter}", target.url);
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, &spec)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut outputs: Vec<_> = children
        .iter_mut()
        .map(|c| BufReader::new(c.stdout.take().unwrap()).lines())
        .collect();
    // A barrier across processes: every child has connected before any starts.
    for out in &mut outputs {
        loop {
            let line = out.next().expect("child output").unwrap();
            // libtest may print "test <name> ... " on the same line first.
            if line.ends_with("ready") {
                break;
            }
        }
    }
    for c in &mut children {
        c.stdin.take().unwrap().write_all(b"go\n").unwrap();
    }
    let (mut executed, mut replayed) = (0, 0);
    for (child, out) in children.iter_mut().zip(outputs) {
        for line in out {
            let line = line.unwrap();
            if let Some((_, rest)) = line.split_once("executed=") {
                let (e, r) = rest.split_once(" replayed=").unwrap();
                executed += e.parse::<usize>().unwrap();
                replayed += r.parse::<usize>().unwrap();
            }
        }
        assert!(child.wait().unwrap().success(), "a child failed");
    }
    let mut conn = target.sync_connection();
    let count: i64 = redis::cmd("GET").arg(&counter).query(&mut conn).unwrap();
    assert_eq!(
        count, 1,
        "scenario 3: one execution across {PROCESSES} processes"
    );
    assert_eq!((executed, replayed), (1, PROCESSES * TASKS - 1));
    crate::harness::cleanup(&mut conn, &prefix);
}

#[test]
fn scenario_3_two_clients_race_on_fresh_keys() {
    let test = "scenario_3_two_clients_race_on_fresh_keys";
    let Some(target) = Target::get(test) else {
        return;
    };
    let prefix = unique_prefix(test);
    const ROUNDS: usize = 1000;
    let counts: Arc<Vec<AtomicU8>> = Arc::new((0..ROUNDS).map(|_| AtomicU8::new(0)).collect());
    let barrier = Arc::new(Barrier::new(2));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            // Separate stores: separate connections and background threads.
            let store = RedisStorage::builder(target.url.clone())
                .prefix(prefix.clone())
                .open()
                .unwrap();
            let m = IdempotencyManager::new(store);
            let (counts, barrier) = (counts.clone(), barrier.clone());
            std::thread::spawn(move || {
                for round in 0..ROUNDS {
                    let c = Call::new(IdempotencyKey::derive("redis::s3-race", 1, &round).unwrap());
                    barrier.wait();
                    match m.execute_sync(&c, || {
                        counts[round].fetch_add(1, Ordering::SeqCst);
                        round
                    }) {
                        Ok(o) => assert_eq!(o.value, round),
                        Err(e) => assert_eq!(e.kind(), idempotency::ErrorKind::InProgress, "{e}"),
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    for (round, n) in counts.iter().enumerate() {
        assert_eq!(n.load(Ordering::SeqCst), 1, "scenario 3: round {round}");
    }
    if target.server.is_none() {
        crate::harness::cleanup(&mut target.sync_connection(), &prefix);
    }
}
