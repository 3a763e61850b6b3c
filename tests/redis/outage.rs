//! Scenario 23 (and 24) on Redis: the harness's own server is killed in the middle of a run
//! and started again on the same port. During the outage calls fail closed with the typed
//! store error and nothing runs; afterwards the same store (no restart of the process)
//! replays what was stored before and still blocks the claim that was pending.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use idempotency::{Begin, Call, ErrorKind, IdempotencyKey, IdempotencyManager, Storage};
use idempotency_redis::RedisConfig;

use crate::harness::{free_port, has_redis_server, skip, temp_dir, unique_prefix, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_23_redis_outage_fails_closed_and_recovers() {
    let test = "scenario_23_redis_outage_fails_closed_and_recovers";
    if !has_redis_server() {
        skip(test, "the outage test needs its own redis-server on PATH");
        return;
    }
    // Persistence on, so what was written before the kill is there after the restart.
    let dir = temp_dir("outage");
    let dir_s = dir.to_string_lossy().into_owned();
    let server = Server::start_with(
        free_port(),
        &[
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            &dir_s,
        ],
    );
    let store = RedisConfig::new(server.url())
        .prefix(unique_prefix(test))
        .response_timeout(Duration::from_secs(1))
        .connection_timeout(Duration::from_millis(500))
        .reconnect_retries(1)
        .open()
        .unwrap();
    let m = IdempotencyManager::builder(store.clone())
        .pending_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let count = AtomicUsize::new(0);
    let run = || async {
        count.fetch_add(1, Ordering::SeqCst);
        42_u32
    };
    let done = Call::new(IdempotencyKey::derive("redis::s23", 1, &"done").unwrap());
    let fresh = Call::new(IdempotencyKey::derive("redis::s23", 1, &"fresh").unwrap());
    let held = Call::new(IdempotencyKey::derive("redis::s23", 1, &"held").unwrap());
    assert_eq!(m.execute(&done, run).await.unwrap().value, 42);
    let Begin::Acquired(lease) = m.begin_operation(&held).await.unwrap() else {
        panic!("held: not acquired")
    };

    let stopped = server.stop();

    for c in [&done, &fresh] {
        let e = m.execute(c, run).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::StoreUnavailable, "{e}");
    }
    assert_eq!(
        store.get(&done.key).await.unwrap_err().kind(),
        ErrorKind::StoreUnavailable
    );
    // The holder's completion cannot be recorded: the record stays Pending (scenario 24).
    let e = m.complete_operation(&lease, &7_u32).await.unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::StoreUnavailable | ErrorKind::CompletionNotRecorded
        ),
        "{e}"
    );
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "nothing ran during the outage"
    );

    let _server = Server::restart(stopped);

    // Same store, same process: the connection manager reconnects.
    let o = m.execute(&done, run).await.unwrap();
    assert!(
        o.is_replayed() && o.value == 42,
        "replayed after the restart"
    );
    assert_eq!(
        m.execute(&held, run).await.unwrap_err().kind(),
        ErrorKind::InProgress,
        "the claim made before the outage still holds"
    );
    let o = m.execute(&fresh, run).await.unwrap();
    assert!(!o.is_replayed());
    assert_eq!(count.load(Ordering::SeqCst), 2, "no second execution");
    let _ = std::fs::remove_dir_all(dir);
}
