//! Scenario 5: a command is applied by Redis but its reply is lost (the connection drops).
//! The store retries once, and the retry recognises the caller's own effect: its claim, its
//! completion or stored failure, its renewed lease, its release. A stale holder is still
//! refused through the same ambiguity.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idempotency::{
    Claim, ClaimRequest, ErrorKind, Fingerprint, IdempotencyKey, IdempotencyManager, Owner,
    RecordStatus, Storage,
};
use idempotency_redis::{RedisConfig, RedisStorage};

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

impl Proxy {
    /// Loses the reply to the next command sent through the proxy.
    fn lose_next_reply(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }
    fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

/// A Redis, a proxy to it, and a store under a unique prefix that talks through the proxy.
/// `None` (after a skip) without Redis, or with a URL the proxy cannot forward.
struct Proxied {
    target: Target,
    proxy: Proxy,
    store: RedisStorage,
    prefix: String,
}

impl Proxied {
    fn start(test: &str) -> Option<Proxied> {
        let target = Target::get(test)?;
        // `redis://host:port[/db]`: the proxy forwards to host:port; the store keeps the db.
        let rest = target.url.trim_start_matches("redis://");
        let (addr, db) = match rest.split_once('/') {
            Some((a, d)) => (a.to_owned(), d.to_owned()),
            None => (rest.to_owned(), String::new()),
        };
        if addr.contains('@') || target.url.starts_with("rediss://") {
            crate::harness::skip(test, "the proxy test needs a plain redis://host:port URL");
            return None;
        }
        let proxy = Proxy::start(addr);
        let prefix = unique_prefix(test);
        let store = RedisConfig::new(format!("redis://127.0.0.1:{}/{db}", proxy.port))
            .prefix(prefix.clone())
            .open()
            .unwrap();
        Some(Proxied {
            target,
            proxy,
            store,
            prefix,
        })
    }
}

impl Drop for Proxied {
    fn drop(&mut self) {
        crate::harness::cleanup(&mut self.target.sync_connection(), &self.prefix);
    }
}

fn request(lease: Duration) -> ClaimRequest {
    ClaimRequest {
        execution_id: uuid::Uuid::new_v4(),
        fingerprint: Fingerprint([5; 32]),
        lease,
        refresh: false,
    }
}

async fn claim(store: &RedisStorage, key: &IdempotencyKey, lease: Duration) -> Owner {
    match store.try_claim(key, &request(lease)).await.unwrap() {
        Claim::Acquired { owner, .. } => owner,
        other => panic!("expected to claim, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_5_ambiguous_claim_reply_is_resolved() {
    let test = "scenario_5_ambiguous_claim_reply_is_resolved";
    let Some(p) = Proxied::start(test) else {
        return;
    };
    let (proxy, store) = (&p.proxy, &p.store);
    let key = |s: &str| IdempotencyKey::derive("redis::s5", 1, &s).unwrap().key;
    let req = request;
    // Warm up: the connection is up and the claim script is cached.
    let warm = store
        .try_claim(&key("warm"), &req(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(matches!(warm, Claim::Acquired { .. }));

    let k = key("ambiguous");
    let r = req(Duration::from_secs(30));
    proxy.lose_next_reply();
    let claim = store.try_claim(&k, &r).await.unwrap();
    assert_eq!(proxy.dropped(), 1, "the first reply was lost");
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
}

/// Runs every fenced transition once through the proxy, so the connection is up and each
/// script is cached: the next command sent is then the one whose reply a test loses (a lost
/// `NOSCRIPT` reply would test nothing, since Redis applied nothing).
async fn warm_up(store: &RedisStorage) {
    let key = |s: &str| IdempotencyKey::derive("redis::s5-warm", 1, &s).unwrap().key;
    let long = Duration::from_secs(30);
    let a = claim(store, &key("a"), long).await;
    store.renew(&key("a"), &a, long).await.unwrap();
    store
        .complete(&key("a"), &a, b"w", Duration::from_secs(60))
        .await
        .unwrap();
    let b = claim(store, &key("b"), long).await;
    assert!(store.release(&key("b"), &b).await.unwrap());
    store.get(&key("a")).await.unwrap().unwrap();
}

/// Issue 12: a worker's completion is written (its record is `Success`, token 1, and it is the
/// only writer), but the reply never arrives. The call returns the caller's value, as if the
/// first reply had arrived, never "lost to a newer holder"; the record holds that value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_5_ambiguous_complete_reply_is_resolved() {
    let test = "scenario_5_ambiguous_complete_reply_is_resolved";
    let Some(p) = Proxied::start(test) else {
        return;
    };
    warm_up(&p.store).await;
    let m = IdempotencyManager::new(p.store.clone());
    let derived = IdempotencyKey::derive("redis::s5-complete", 1, &"main job").unwrap();
    let key = derived.key.clone();
    let call = idempotency::Call::from(derived);
    let runs = AtomicUsize::new(0);
    let o = m
        .execute(&call, || async {
            runs.fetch_add(1, Ordering::SeqCst);
            // The body has run: the next command is its completion, whose reply is lost.
            p.proxy.lose_next_reply();
            "mine".to_string()
        })
        .await;
    assert_eq!(p.proxy.dropped(), 1, "the completion's reply was lost");
    let o = o.unwrap_or_else(|e| panic!("scenario 5: the retried completion answered {e}"));
    assert_eq!(o.value, "mine");
    assert!(!o.is_replayed());
    let obs = m.status(&key).await.unwrap().expect("the record");
    assert_eq!(obs.status(), RecordStatus::Success);
    assert_eq!(obs.record.owner.execution_id, o.provenance.execution_id);
    assert_eq!(obs.record.owner.fencing_token, 1);
    assert_eq!(
        IdempotencyManager::decode_value::<String>(&obs).unwrap(),
        "mine",
        "the stored value is the caller's"
    );
    let again = m
        .execute(&call, || async {
            runs.fetch_add(1, Ordering::SeqCst);
            "other".to_string()
        })
        .await
        .unwrap();
    assert!(again.is_replayed());
    assert_eq!(again.value, "mine");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the body ran once");
}

/// As the completion: a stored failure whose reply is lost is answered as stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_5_ambiguous_fail_reply_is_resolved() {
    let test = "scenario_5_ambiguous_fail_reply_is_resolved";
    let Some(p) = Proxied::start(test) else {
        return;
    };
    warm_up(&p.store).await;
    let m = IdempotencyManager::new(p.store.clone());
    let derived = IdempotencyKey::derive("redis::s5-fail", 1, &"card").unwrap();
    let key = derived.key.clone();
    let call = idempotency::Call::from(derived);
    let runs = AtomicUsize::new(0);
    let transient = |e: &String| e == "timeout";
    let o = m
        .try_execute_with(
            &call,
            || async {
                runs.fetch_add(1, Ordering::SeqCst);
                p.proxy.lose_next_reply();
                Err::<u32, _>("declined".to_string())
            },
            transient,
        )
        .await;
    assert_eq!(p.proxy.dropped(), 1, "the fail's reply was lost");
    let o = o.unwrap_or_else(|e| panic!("scenario 5: the retried fail answered {e}"));
    assert_eq!(o.value, Err("declined".to_string()));
    assert!(!o.is_replayed());
    let obs = m.status(&key).await.unwrap().expect("the record");
    assert_eq!(obs.status(), RecordStatus::Failed);
    assert_eq!(obs.record.owner.execution_id, o.provenance.execution_id);
    let again = m
        .try_execute_with(
            &call,
            || async {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<u32, String>(1)
            },
            transient,
        )
        .await
        .unwrap();
    assert!(again.is_replayed());
    assert_eq!(again.value, Err("declined".to_string()));
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the body ran once");
}

/// A renewal whose reply is lost: the lease is extended, and the answer is the new deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_5_ambiguous_renew_reply_is_resolved() {
    let test = "scenario_5_ambiguous_renew_reply_is_resolved";
    let Some(p) = Proxied::start(test) else {
        return;
    };
    warm_up(&p.store).await;
    let store = &p.store;
    let k = IdempotencyKey::derive("redis::s5-renew", 1, &"job")
        .unwrap()
        .key;
    let a = claim(store, &k, Duration::from_secs(30)).await;
    let before = store.get(&k).await.unwrap().unwrap().record.expires_at;
    p.proxy.lose_next_reply();
    let until = store
        .renew(&k, &a, Duration::from_secs(600))
        .await
        .unwrap_or_else(|e| panic!("scenario 5: the retried renew answered {e}"));
    assert_eq!(p.proxy.dropped(), 1, "the renew's reply was lost");
    assert!(until.0 >= before.0 + 570_000, "the lease was extended");
    let obs = store.get(&k).await.unwrap().unwrap();
    assert_eq!(obs.status(), RecordStatus::Pending);
    assert_eq!(obs.record.owner, a);
    assert_eq!(obs.record.lease_until, Some(until));
}

/// A release whose reply is lost: the claim is gone and the answer is "released".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_5_ambiguous_release_reply_is_resolved() {
    let test = "scenario_5_ambiguous_release_reply_is_resolved";
    let Some(p) = Proxied::start(test) else {
        return;
    };
    warm_up(&p.store).await;
    let store = &p.store;
    let k = IdempotencyKey::derive("redis::s5-release", 1, &"job")
        .unwrap()
        .key;
    let a = claim(store, &k, Duration::from_secs(30)).await;
    p.proxy.lose_next_reply();
    let released = store
        .release(&k, &a)
        .await
        .unwrap_or_else(|e| panic!("scenario 5: the retried release answered {e}"));
    assert_eq!(p.proxy.dropped(), 1, "the release's reply was lost");
    assert!(released, "answered as the lost reply: released");
    assert!(store.get(&k).await.unwrap().is_none());
    let next = claim(store, &k, Duration::from_secs(30)).await;
    assert_ne!(next.execution_id, a.execution_id);
}

/// Scenario 12 through lost replies: a stale holder's complete (with the newer holder's exact
/// bytes), fail, renew and release, each retried after a lost reply, are still refused, and
/// the newer holder's record is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_12_stale_holder_is_fenced_through_lost_replies() {
    let test = "scenario_12_stale_holder_is_fenced_through_lost_replies";
    let Some(p) = Proxied::start(test) else {
        return;
    };
    warm_up(&p.store).await;
    let store = &p.store;
    let k = IdempotencyKey::derive("redis::s12-lost", 1, &"job")
        .unwrap()
        .key;
    let lease = Duration::from_millis(300);
    let ttl = Duration::from_secs(3600);
    let a = claim(store, &k, lease).await;
    // Let A's lease end on Redis's clock, then B takes over.
    tokio::time::sleep(lease + Duration::from_millis(50)).await;
    let b = claim(store, &k, Duration::from_secs(30)).await;
    assert_eq!(b.fencing_token, a.fencing_token + 1);

    p.proxy.lose_next_reply();
    assert!(
        !store.release(&k, &a).await.unwrap(),
        "A's release is a no-op"
    );
    p.proxy.lose_next_reply();
    assert_eq!(
        store.renew(&k, &a, lease).await.unwrap_err().kind(),
        ErrorKind::LeaseLost
    );
    assert_eq!(store.get(&k).await.unwrap().unwrap().record.owner, b);

    let done = store.complete(&k, &b, b"vB", ttl).await.unwrap();
    p.proxy.lose_next_reply();
    assert_eq!(
        store.complete(&k, &a, b"vB", ttl).await.unwrap_err().kind(),
        ErrorKind::LeaseLost,
        "A's write of B's exact bytes is refused"
    );
    p.proxy.lose_next_reply();
    let err = idempotency::RecordError::Encoded(vec![1]);
    assert_eq!(
        store.fail(&k, &a, &err, ttl).await.unwrap_err().kind(),
        ErrorKind::LeaseLost
    );
    assert_eq!(p.proxy.dropped(), 4);
    assert_eq!(store.get(&k).await.unwrap().unwrap().record, done);
}
