//! Concurrent callers on one key: scenarios 1 (threads and tasks), 4 (no read-then-write
//! claim), 11 (the takeover race) and 31 (wait mode).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use super::{call, kind, manager, manager_with, must, Harness, PayError, LEASE};
use crate::{ConflictPolicy, Error, ErrorKind};

/// Scenario 1: 64 threads pass a barrier and call one key; the function runs once.
pub async fn scenario_1_threads_execute_once<H: Harness>(h: &H) {
    let m = manager(h);
    let count = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(64));
    let release = Arc::new(Barrier::new(2));
    let c = call("kit::s1", &"k");
    let threads: Vec<_> = (0..64)
        .map(|i| {
            let (m, count, barrier, release, c) = (
                m.clone(),
                count.clone(),
                barrier.clone(),
                release.clone(),
                c.clone(),
            );
            std::thread::spawn(move || {
                barrier.wait();
                let r = m.execute_sync(&c, || {
                    count.fetch_add(1, Ordering::SeqCst);
                    // Hold the claim until every other thread has been answered.
                    release.wait();
                    7_u32
                });
                (i, r)
            })
        })
        .collect();
    // The 63 losers answer InProgress without waiting for anything; count them, then let the
    // winner finish.
    let mut in_progress = 0;
    let mut executed = 0;
    let mut pending: Vec<_> = threads;
    let mut released = false;
    while !pending.is_empty() {
        let (done, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|t| t.is_finished());
        pending = rest;
        for t in done {
            match t.join() {
                Ok((_, Err(Error::InProgress { .. }))) => in_progress += 1,
                Ok((_, Ok(o))) => {
                    assert!(!o.is_replayed());
                    assert_eq!(o.value, 7);
                    executed += 1;
                }
                Ok((i, Err(e))) => panic!("scenario 1: thread {i}: {e}"),
                Err(_) => panic!("scenario 1: a thread panicked"),
            }
        }
        if !released && in_progress == 63 {
            release.wait();
            released = true;
        }
        std::thread::yield_now();
    }
    assert_eq!(count.load(Ordering::SeqCst), 1, "scenario 1: executions");
    assert_eq!((executed, in_progress), (1, 63), "scenario 1: outcomes");
}

/// Scenario 1 with 1000 tokio tasks on one key.
pub async fn scenario_1_tasks_execute_once<H: Harness>(h: &H) {
    let m = manager_with(h, |b| {
        b.on_conflict(ConflictPolicy::Wait {
            timeout: Duration::from_secs(30),
        })
    });
    let count = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Barrier::new(1000));
    let c = call("kit::s1-tasks", &"k");
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let (m, count, gate, c) = (m.clone(), count.clone(), gate.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            gate.wait().await;
            m.execute(&c, || async {
                count.fetch_add(1, Ordering::SeqCst);
                11_u64
            })
            .await
        }));
    }
    let mut replayed = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(o)) => {
                assert_eq!(o.value, 11);
                replayed += usize::from(o.is_replayed());
            }
            Ok(Err(e)) => panic!("scenario 1 (tasks): {e}"),
            Err(e) => panic!("scenario 1 (tasks): join: {e}"),
        }
    }
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "scenario 1 (tasks): executions"
    );
    assert_eq!(replayed, 999, "scenario 1 (tasks): replays");
}

/// Scenario 4: while caller A holds the key (paused inside its function), caller B runs in
/// full; the function still runs once.
pub async fn scenario_4_no_read_then_write_claim<H: Harness>(h: &H) {
    let m = manager(h);
    let count = Arc::new(AtomicUsize::new(0));
    let c = call("kit::s4", &1_u8);
    let a = {
        let (m, count, c) = (m.clone(), count.clone(), c.clone());
        Holder::start(move |pause| {
            m.execute_sync(&c, || {
                count.fetch_add(1, Ordering::SeqCst);
                pause.here();
                1_u8
            })
        })
    };
    let b = m.execute_sync(&c, || {
        count.fetch_add(1, Ordering::SeqCst);
        2_u8
    });
    assert_eq!(
        kind(b),
        ErrorKind::InProgress,
        "scenario 4: B while A holds"
    );
    assert_eq!(must(a.finish()).value, 1);
    assert_eq!(count.load(Ordering::SeqCst), 1, "scenario 4: executions");
}

/// Scenario 11: after the lease expired, 16 callers race to take over; exactly one does.
pub async fn scenario_11_takeover_race<H: Harness>(h: &H) {
    let m = manager_with(h, |b| b.pending_timeout(LEASE));
    let c = call("kit::s11", &"job");
    must(m.begin_operation(&c).await);
    h.advance(LEASE + Duration::from_millis(50)).await;
    let count = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(16));
    let hold = Arc::new(Barrier::new(2));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (m, c, count, barrier, hold) = (
                m.clone(),
                c.clone(),
                count.clone(),
                barrier.clone(),
                hold.clone(),
            );
            std::thread::spawn(move || {
                barrier.wait();
                m.execute_sync(&c, || {
                    count.fetch_add(1, Ordering::SeqCst);
                    hold.wait();
                    1_u8
                })
            })
        })
        .collect();
    let mut results = Vec::new();
    let mut pending = threads;
    let mut released = false;
    while !pending.is_empty() {
        let (done, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|t| t.is_finished());
        pending = rest;
        for t in done {
            results.push(
                t.join()
                    .unwrap_or_else(|_| panic!("scenario 11: thread panicked")),
            );
        }
        if !released && results.len() == 15 {
            hold.wait();
            released = true;
        }
        std::thread::yield_now();
    }
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "scenario 11: one takeover");
    assert_eq!(winners[0].provenance.fencing_token, 2);
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| e.kind() == ErrorKind::InProgress));
    assert_eq!(count.load(Ordering::SeqCst), 1, "scenario 11: executions");
}

/// Scenario 31: in wait mode, waiters replay the first caller's value; if it releases, exactly
/// one waiter runs; past the bound, a waiter gets `InProgress`.
pub async fn scenario_31_wait_mode<H: Harness>(h: &H) {
    let m = manager_with(h, |b| {
        b.on_conflict(ConflictPolicy::Wait {
            timeout: Duration::from_secs(20),
        })
    });
    let c = call("kit::s31", &"x");
    let count = Arc::new(AtomicUsize::new(0));
    let holder = {
        let (m, c, count) = (m.clone(), c.clone(), count.clone());
        Holder::start(move |pause| {
            m.execute_sync(&c, || {
                count.fetch_add(1, Ordering::SeqCst);
                pause.here();
                "v".to_string()
            })
        })
    };
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let (m, c, count) = (m.clone(), c.clone(), count.clone());
            std::thread::spawn(move || {
                m.execute_sync(&c, || {
                    count.fetch_add(1, Ordering::SeqCst);
                    "w".to_string()
                })
            })
        })
        .collect();
    must(holder.finish());
    for w in waiters {
        let o = must(w.join().unwrap_or_else(|_| panic!("waiter panicked")));
        assert_eq!(o.value, "v");
    }
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "scenario 31: waiters replay"
    );

    // The holder fails transiently: exactly one waiter runs.
    let c = call("kit::s31", &"transient");
    let count = Arc::new(AtomicUsize::new(0));
    let holder = {
        let (m, c, count) = (m.clone(), c.clone(), count.clone());
        Holder::start(move |pause| {
            crate::block_on(m.try_execute_with(
                &c,
                || async {
                    count.fetch_add(1, Ordering::SeqCst);
                    pause.here();
                    Err::<String, _>(PayError::Timeout)
                },
                |_| true,
            ))
        })
    };
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let (m, c, count) = (m.clone(), c.clone(), count.clone());
            std::thread::spawn(move || {
                m.try_execute_sync(&c, || {
                    count.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, PayError>("w".to_string())
                })
            })
        })
        .collect();
    must(holder.finish());
    let mut executed = 0;
    for w in waiters {
        let o = must(w.join().unwrap_or_else(|_| panic!("waiter panicked")));
        assert_eq!(o.value, Ok("w".to_string()));
        executed += usize::from(!o.is_replayed());
    }
    assert_eq!(executed, 1, "scenario 31: one waiter runs after a release");
    assert_eq!(count.load(Ordering::SeqCst), 2);

    // Past the bound: InProgress.
    let quick = manager_with(h, |b| {
        b.on_conflict(ConflictPolicy::Wait {
            timeout: Duration::from_millis(30),
        })
    });
    let c = call("kit::s31", &"bound");
    must(quick.begin_operation(&c).await);
    assert_eq!(
        kind(quick.execute(&c, || async { 0_u8 }).await),
        ErrorKind::InProgress
    );
}

/// Where a [`Holder`]'s function pauses: [`here`](Self::here) signals that the function runs,
/// then waits until the holder is [finished](Holder::finish).
#[derive(Clone)]
struct Pause {
    running: Arc<Barrier>,
    release: Arc<Barrier>,
}

impl Pause {
    fn here(&self) {
        self.running.wait();
        self.release.wait();
    }
}

/// A caller paused inside its function, on a thread of its own: it holds its claim (a live
/// `Pending` record) until [`finish`](Self::finish).
struct Holder<T> {
    release: Arc<Barrier>,
    thread: std::thread::JoinHandle<T>,
}

impl<T: Send + 'static> Holder<T> {
    /// Runs `call` on a new thread and returns once its function has reached
    /// [`Pause::here`].
    fn start(call: impl FnOnce(Pause) -> T + Send + 'static) -> Self {
        let pause = Pause {
            running: Arc::new(Barrier::new(2)),
            release: Arc::new(Barrier::new(2)),
        };
        let (running, release) = (pause.running.clone(), pause.release.clone());
        let thread = std::thread::spawn(move || call(pause));
        running.wait();
        Holder { release, thread }
    }

    /// Lets the function return; the call's answer.
    fn finish(self) -> T {
        self.release.wait();
        self.thread
            .join()
            .unwrap_or_else(|_| panic!("the holder's thread panicked"))
    }
}
