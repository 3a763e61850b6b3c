//! Issue 13, items 7 and 8: a store URL whose feature is off fails with a message naming the
//! feature and the cargo flag; with `redis-tls`, a `rediss://` URL builds a TLS client (proved
//! without a TLS server: the first bytes the store sends are a TLS handshake record).

use idempotency::ErrorKind;

#[cfg(not(feature = "redis"))]
#[test]
fn a_redis_url_without_the_redis_feature_names_the_cargo_flag() {
    let e = idempotency::StoreUrl::parse("redis://127.0.0.1:6379/5")
        .and_then(|u| u.open_manager())
        .expect_err("no Redis store without the feature");
    assert_eq!(e.kind(), ErrorKind::Config);
    assert_eq!(
        e.to_string(),
        "invalid configuration: the Redis store needs the `redis` feature of `idempotency`: \
         `features = [\"redis\"]` in Cargo.toml, or `--features redis` on the cargo command line \
         (`cargo run --features redis ...`)"
    );
}

#[cfg(not(feature = "redis-tls"))]
#[test]
fn a_rediss_url_without_the_tls_feature_names_redis_tls() {
    let e = idempotency::StoreUrl::parse("rediss://:secret@cache.example.invalid:6380/0")
        .and_then(|u| u.open_manager())
        .expect_err("no TLS without the feature");
    assert_eq!(e.kind(), ErrorKind::Config);
    let msg = e.to_string();
    assert!(
        msg.contains("the `redis-tls` feature of `idempotency`"),
        "{msg}"
    );
    assert!(msg.contains("--features redis-tls"), "{msg}");
    assert!(!msg.contains("secret"), "{msg}");
}

#[cfg(feature = "redis-tls")]
#[test]
fn a_rediss_url_with_redis_tls_speaks_tls() {
    use std::io::Read;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Reads what the store sends first, then hangs up (no TLS server here).
    let first_bytes = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut head = [0_u8; 3];
        socket.read_exact(&mut head).map(|()| head)
    });
    let e = idempotency::redis::RedisConfig::new(format!("rediss://127.0.0.1:{port}/0"))
        .reconnect_retries(0)
        .open()
        .expect_err("no TLS server to finish the handshake");
    // The URL was accepted and a connection attempted: a store error, not a configuration one.
    assert_eq!(e.kind(), ErrorKind::StoreUnavailable, "{e}");
    assert!(
        e.to_string().starts_with(&format!(
            "idempotency store unavailable during connect: rediss 127.0.0.1:{port}: "
        )),
        "{e}"
    );
    // A TLS handshake record (0x16), protocol version 3.x: a ClientHello.
    let head = first_bytes.join().unwrap().unwrap();
    assert_eq!(head[..2], [0x16, 0x03], "not a TLS ClientHello: {head:?}");
}
