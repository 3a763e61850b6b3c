//! Issue 17: the store serves every kind of caller on the caller's own thread or runtime, and
//! none deadlocks, panics or blocks a runtime's only thread on I/O only that thread can drive:
//! a sync call (`execute_sync`) from inside a current-thread and a multi-thread tokio runtime,
//! async calls on two runtimes at once and on a runtime started after another ended, on
//! runtimes built without I/O or timers, and an async call driven by another executor (a plain
//! `block_on` with no tokio runtime).
//!
//! Each scenario runs on its own thread under a watchdog: a deadlock fails the test after
//! `LIMIT` instead of hanging the suite.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use idempotency::{Call, IdempotencyKey, IdempotencyManager};

use crate::harness::RedisHarness;

/// How long a scenario may take before it counts as a deadlock.
const LIMIT: Duration = Duration::from_secs(60);

/// Runs `f` on its own thread; fails if it panics or does not finish within [`LIMIT`].
fn watchdog(name: &str, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(()) => handle.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{name}: deadlocked (no answer in {LIMIT:?})")
        }
    }
}

/// Another executor: drives a future on this thread by parking between polls, with no tokio
/// runtime and without `idempotency::block_on` (what `futures::executor::block_on` does).
fn foreign_block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

fn call(test: &str, i: usize) -> Call {
    Call::new(IdempotencyKey::derive("redis::dispatch", 1, &(test, i)).unwrap())
}

/// A manager on a fresh harness store, or `None` (after a loud skip) without Redis.
fn manager() -> Option<(RedisHarness, IdempotencyManager)> {
    let h = RedisHarness::new()?;
    let m = IdempotencyManager::new(h.store.clone());
    Some((h, m))
}

/// Runs `calls` calls on `m` (each key twice: a run, then a replay) and checks each ran once.
async fn run_and_replay(m: &IdempotencyManager, test: &str, calls: usize) {
    let runs = AtomicUsize::new(0);
    for round in 0..2 {
        for i in 0..calls {
            let o = m
                .execute(&call(test, i), || async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    i
                })
                .await
                .unwrap();
            assert_eq!((o.value, o.is_replayed()), (i, round == 1), "{test} {i}");
        }
    }
    assert_eq!(runs.load(Ordering::SeqCst), calls);
}

#[test]
fn issue_17_a_sync_call_inside_a_current_thread_runtime() {
    let Some((h, m)) = manager() else { return };
    watchdog("current-thread", move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // The runtime's only thread blocks in `execute_sync`: the call must not wait on
            // I/O that this runtime would have to drive.
            let runs = AtomicUsize::new(0);
            let c = call("ct-sync", 0);
            for round in 0..2 {
                let o = m
                    .execute_sync(&c, || runs.fetch_add(1, Ordering::SeqCst))
                    .unwrap();
                assert_eq!(o.is_replayed(), round == 1);
            }
            // Async calls on the same runtime, then sync again in between.
            run_and_replay(&m, "ct-async", 3).await;
            let o = m
                .execute_sync(&c, || runs.fetch_add(1, Ordering::SeqCst))
                .unwrap();
            assert!(o.is_replayed());
            // And from a task spawned on it.
            let m2 = m.clone();
            tokio::spawn(async move {
                let c = call("ct-task", 0);
                m2.execute_sync(&c, || 5_u8).unwrap();
                assert!(m2
                    .execute(&c, || async { 6_u8 })
                    .await
                    .unwrap()
                    .is_replayed());
            })
            .await
            .unwrap();
            assert_eq!(runs.load(Ordering::SeqCst), 1);
        });
        drop(h);
    });
}

#[test]
fn issue_17_sync_and_async_calls_inside_a_multi_thread_runtime() {
    let Some((h, m)) = manager() else { return };
    watchdog("multi-thread", move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let runs = Arc::new(AtomicUsize::new(0));
            // 16 tasks on one key: sync and async callers mixed, one execution.
            let key = call("mt-shared", 0);
            let tasks: Vec<_> = (0..16)
                .map(|i| {
                    let (m, runs, key) = (m.clone(), Arc::clone(&runs), key.clone());
                    tokio::spawn(async move {
                        loop {
                            let r = if i % 2 == 0 {
                                m.execute_sync(&key, || runs.fetch_add(1, Ordering::SeqCst))
                            } else {
                                m.execute(&key, || async { runs.fetch_add(1, Ordering::SeqCst) })
                                    .await
                            };
                            match r {
                                Ok(o) => return o.value,
                                Err(e) if e.kind() == idempotency::ErrorKind::InProgress => {
                                    tokio::task::yield_now().await
                                }
                                Err(e) => panic!("{e}"),
                            }
                        }
                    })
                })
                .collect();
            for t in tasks {
                assert_eq!(t.await.unwrap(), 0);
            }
            assert_eq!(runs.load(Ordering::SeqCst), 1);
            run_and_replay(&m, "mt-async", 3).await;
        });
        drop(h);
    });
}

#[test]
fn issue_17_async_calls_on_two_runtimes_and_after_one_ended() {
    let Some((h, m)) = manager() else { return };
    watchdog("runtimes", move || {
        let first = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        first.block_on(run_and_replay(&m, "rt-first", 2));
        // A second runtime at the same time, on another thread.
        let m2 = m.clone();
        std::thread::spawn(move || {
            let second = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            second.block_on(run_and_replay(&m2, "rt-second", 2));
        })
        .join()
        .unwrap();
        // The first runtime again, then ended; a third runtime after it.
        first.block_on(run_and_replay(&m, "rt-first-again", 2));
        drop(first);
        let third = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        third.block_on(run_and_replay(&m, "rt-third", 2));
        // The store dropped inside a runtime: no panic.
        third.block_on(async move {
            drop(m);
            drop(h);
        });
    });
}

#[test]
fn issue_17_an_async_call_under_another_executor() {
    let Some((h, m)) = manager() else { return };
    watchdog("foreign executor", move || {
        foreign_block_on(run_and_replay(&m, "foreign", 3));
        // Mixed with sync calls on the same thread.
        let o = m.execute_sync(&call("foreign", 0), || 9).unwrap();
        assert!(o.is_replayed() && o.value == 0);
        // And on a thread of its own.
        let m2 = m.clone();
        std::thread::spawn(move || foreign_block_on(run_and_replay(&m2, "foreign-thread", 2)))
            .join()
            .unwrap();
        drop(h);
    });
}

#[test]
fn issue_17_async_calls_on_runtimes_without_io_or_timers() {
    let Some((h, m)) = manager() else { return };
    watchdog("bare runtimes", move || {
        // Neither I/O nor timers, then timers without I/O, then I/O without timers: the
        // store cannot drive a connection on these, and must neither panic nor hang.
        let bare = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        bare.block_on(run_and_replay(&m, "bare", 2));
        let timers = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        timers.block_on(run_and_replay(&m, "timers-only", 2));
        let io = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_io()
            .build()
            .unwrap();
        io.block_on(run_and_replay(&m, "io-only", 2));
        drop(h);
    });
}
