//! Scenario 5: the claim is applied by Redis but its reply is lost (the connection drops);
//! the store retries once and the retry finds the caller's own claim.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idempotency::{Claim, ClaimRequest, Fingerprint, IdempotencyKey, RecordStatus, Storage};
use idempotency_redis::RedisConfig;

use crate::harness::{unique_prefix, Target};

/// A loopback TCP proxy to Redis that, when armed, swallows the next reply and drops the
/// connection (Redis has applied the command; the client never hears back).
struct Proxy {
    port: u16,
    armed: Arc<AtomicBool>,
    dropped: Arc<AtomicUsize>,
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    armed: Option<(Arc<AtomicBool>, Arc<AtomicUsize>)>,
) {
    let mut buf = vec![0_u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((armed, dropped)) = &armed {
            if armed.swap(false, Ordering::SeqCst) {
                dropped.fetch_add(1, Ordering::SeqCst);
                break;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

impl Proxy {
    fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (a, d) = (armed.clone(), dropped.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pump(client, server, None));
                let tap = Some((a.clone(), d.clone()));
                std::thread::spawn(move || pump(s2, c2, tap));
            }
        });
        Proxy {
            port,
            armed,
            dropped,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_5_ambiguous_claim_reply_is_resolved() {
    let test = "scenario_5_ambiguous_claim_reply_is_resolved";
    let Some(target) = Target::get(test) else {
        return;
    };
    // `redis://host:port[/db]`: the proxy forwards to host:port; the store keeps the db.
    let rest = target.url.trim_start_matches("redis://");
    let (addr, db) = match rest.split_once('/') {
        Some((a, d)) => (a.to_owned(), d.to_owned()),
        None => (rest.to_owned(), String::new()),
    };
    if addr.contains('@') || target.url.starts_with("rediss://") {
        crate::harness::skip(test, "the proxy test needs a plain redis://host:port URL");
        return;
    }
    let proxy = Proxy::start(addr);
    let prefix = unique_prefix(test);
    let store = RedisConfig::new(format!("redis://127.0.0.1:{}/{db}", proxy.port))
        .prefix(prefix.clone())
        .open()
        .unwrap();
    let key = |s: &str| IdempotencyKey::derive("redis::s5", 1, &s).unwrap().key;
    let req = |lease| ClaimRequest {
        execution_id: uuid::Uuid::new_v4(),
        fingerprint: Fingerprint([5; 32]),
        lease,
        refresh: false,
    };
    // Warm up: the connection is up and the claim script is cached.
    let warm = store
        .try_claim(&key("warm"), &req(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(matches!(warm, Claim::Acquired { .. }));

    let k = key("ambiguous");
    let r = req(Duration::from_secs(30));
    proxy.armed.store(true, Ordering::SeqCst);
    let claim = store.try_claim(&k, &r).await.unwrap();
    assert_eq!(
        proxy.dropped.load(Ordering::SeqCst),
        1,
        "the first reply was lost"
    );
    match claim {
        Claim::Acquired {
            owner, takeover, ..
        } => {
            assert_eq!(owner.execution_id, r.execution_id, "our own claim");
            assert_eq!(owner.fencing_token, 1);
            assert!(!takeover);
        }
        other => panic!("scenario 5: the retried claim answered {other:?}"),
    }
    let obs = store.get(&k).await.unwrap().unwrap();
    assert_eq!(obs.status(), RecordStatus::Pending);
    assert_eq!(obs.record.owner.execution_id, r.execution_id);
    // Another caller still sees it held.
    let other = store
        .try_claim(&k, &req(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(matches!(other, Claim::Existing(_)));
    crate::harness::cleanup(&mut target.sync_connection(), &prefix);
}
