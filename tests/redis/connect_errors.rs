//! Issue 13, item 6: a Redis store error's message names the server and the cause (refused,
//! timed out, bad database number, DNS), never a password, and `source()` is the Redis error.

use std::error::Error as _;
use std::time::Duration;

use idempotency::{Error, ErrorKind, RedisStorage};
use idempotency_redis::RedisConfig;
use redis::IntoConnectionInfo;

use crate::harness::{free_port, Target};

/// Opens `url` with short time-outs and no reconnection attempts; the error it fails with.
fn open_err(url: &str) -> Error {
    match RedisConfig::new(url)
        .reconnect_retries(0)
        .connection_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_millis(500))
        .open()
    {
        Ok(_) => panic!("`{url}` connected"),
        Err(e) => e,
    }
}

/// The chain below `e`, each level's message.
fn chain(e: &Error) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push(c.to_string());
        cur = c.source();
    }
    out
}

/// The store error's source is the Redis error itself (for callers that downcast).
fn assert_redis_source(e: &Error) {
    assert_eq!(e.kind(), ErrorKind::StoreUnavailable, "{e}");
    let source = e.source().expect("a source");
    assert!(source.is::<redis::RedisError>(), "source: {source:?}");
}

#[test]
fn a_refused_connection_names_the_host_and_says_refused() {
    let port = free_port(); // nothing listens there
    let e = open_err(&format!("redis://127.0.0.1:{port}/0"));
    assert_eq!(
        e.to_string(),
        format!("idempotency store unavailable during connect: redis 127.0.0.1:{port}: connection refused")
    );
    assert_redis_source(&e);
    // The OS's own text is further down the chain, once below the summary.
    assert!(
        chain(&e).iter().any(|m| m.contains("os error")),
        "{:?}",
        chain(&e)
    );
}

#[test]
fn a_password_in_the_url_never_appears_in_the_message() {
    let port = free_port();
    let e = open_err(&format!("redis://alice:hunter2@127.0.0.1:{port}/3"));
    let all = format!("{e} {:?} {e:?}", chain(&e));
    assert!(!all.contains("hunter2"), "{all}");
    assert!(
        e.to_string()
            .contains(&format!("redis 127.0.0.1:{port}: connection refused")),
        "{e}"
    );
}

#[test]
fn an_unresolvable_host_says_dns() {
    let e = open_err("redis://no-such-host.invalid:6379/0");
    let msg = e.to_string();
    assert!(
        msg.starts_with(
            "idempotency store unavailable during connect: redis no-such-host.invalid:6379: DNS lookup failed: "
        ),
        "{msg}"
    );
    assert_redis_source(&e);
}

#[test]
fn a_silent_server_says_timed_out() {
    // Accepts the connection and never answers the connection's handshake.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::thread::spawn(move || listener.accept().map(|(socket, _)| socket));
    let e = open_err(&format!("redis://127.0.0.1:{port}/0"));
    assert_eq!(
        e.to_string(),
        format!("idempotency store unavailable during connect: redis 127.0.0.1:{port}: timed out")
    );
    assert_redis_source(&e);
    drop(accepted.join());
}

/// A `rediss://` URL facing a server that never completes the TLS handshake (a plain-text
/// Redis does exactly that) says so: the timeout alone sent a user hunting.
#[cfg(feature = "redis-tls")]
#[test]
fn a_rediss_url_that_times_out_asks_whether_the_server_speaks_tls() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::thread::spawn(move || listener.accept().map(|(socket, _)| socket));
    let e = open_err(&format!("rediss://127.0.0.1:{port}/0"));
    assert_eq!(
        e.to_string(),
        format!(
            "idempotency store unavailable during connect: rediss 127.0.0.1:{port}: timed out \
             (a `rediss://` URL speaks TLS: is the server listening for TLS on this port? use \
             `redis://` for a plain-text server)"
        )
    );
    assert_redis_source(&e);
    drop(accepted.join());
}

#[test]
fn an_out_of_range_database_says_bad_database_number() {
    let Some(target) = Target::get("an_out_of_range_database_says_bad_database_number") else {
        return;
    };
    let info = target.url.as_str().into_connection_info().unwrap();
    let addr = info.addr().to_string();
    let settings = info.redis_settings().clone().set_db(999);
    let client = redis::Client::open(info.set_redis_settings(settings)).unwrap();
    let e = match RedisStorage::from_client(client) {
        Ok(_) => panic!("db 999 accepted"),
        Err(e) => e,
    };
    assert_eq!(
        e.to_string(),
        format!(
            "idempotency store unavailable during connect: redis {addr}: bad database number 999: DB index is out of range"
        )
    );
    assert_redis_source(&e);
}
