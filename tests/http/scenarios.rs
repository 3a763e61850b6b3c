//! The scenarios of issue 14, each run on every store (see `main.rs`).

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use idempotency::http::{IdempotencyLayer, RequestBody, DEFAULT_PROBLEM_BASE};
use idempotency::ConflictPolicy;
use tokio::sync::Semaphore;
use tower::Layer;

use crate::server::{serve, AppSpec, Http, Store};

const BODY: &str = r#"{"amount":1200,"currency":"EUR","customer":"c-1"}"#;

fn problem(slug: &str) -> String {
    format!("{DEFAULT_PROBLEM_BASE}{slug}")
}

pub async fn fifty_concurrent_identical_posts_run_once(store: Store) {
    let Some(b) = store.open() else { return };
    let gate = Arc::new(Semaphore::new(0));
    let mut srv = serve(
        IdempotencyLayer::new(b.manager.clone()),
        AppSpec {
            gate: Some(gate.clone()),
            ..AppSpec::default()
        },
    )
    .await;
    let http = Http::new(srv.addr);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..50 {
        let (http, tx) = (http.clone(), tx.clone());
        tokio::spawn(async move {
            let _ = tx.send(http.post("\"order-50\"", BODY).await);
        });
    }
    // One request runs the handler, held at the gate; the 49 others must all be refused while
    // it runs (nothing can have completed yet).
    srv.started.recv().await.expect("the handler started");
    let mut refused = 0;
    for _ in 0..49 {
        let a = rx.recv().await.expect("an answer");
        assert_eq!(a.status, 409, "{a:?}");
        assert_eq!(a.problem_type(), problem("idempotency-key-in-use"));
        assert!(a.headers.contains_key("retry-after"));
        refused += 1;
    }
    gate.add_permits(1);
    let first = rx.recv().await.expect("the runner's answer");
    assert_eq!(first.status, 201, "{first:?}");
    assert!(!first.replayed());
    assert_eq!(refused, 49);
    assert_eq!(srv.app.executions.load(Ordering::SeqCst), 1);
    let again = http.post("\"order-50\"", BODY).await;
    assert_eq!((again.status, &again.body), (201, &first.body));
    assert!(again.replayed());
    assert_eq!(srv.app.executions.load(Ordering::SeqCst), 1);
}

pub async fn fifty_concurrent_posts_under_wait_policy_get_one_replay(store: Store) {
    let Some(b) = store.open() else { return };
    let gate = Arc::new(Semaphore::new(0));
    let layer = IdempotencyLayer::new(b.manager.clone()).on_conflict(ConflictPolicy::Wait {
        timeout: Duration::from_secs(60),
    });
    let mut srv = serve(
        layer,
        AppSpec {
            gate: Some(gate.clone()),
            ..AppSpec::default()
        },
    )
    .await;
    let http = Http::new(srv.addr);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let http = http.clone();
        tasks.push(tokio::spawn(
            async move { http.post("\"order-w\"", BODY).await },
        ));
    }
    srv.started.recv().await.expect("the handler started");
    gate.add_permits(1);
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("task"));
    }
    assert_eq!(srv.app.executions.load(Ordering::SeqCst), 1);
    let originals = answers.iter().filter(|a| !a.replayed()).count();
    assert_eq!(originals, 1, "exactly one request ran");
    for a in &answers {
        assert_eq!(a.status, 201, "{a:?}");
        assert_eq!(a.body, answers[0].body);
    }
}

pub async fn replay_is_exact_and_marked(store: Store) {
    let Some(b) = store.open() else { return };
    let layer =
        IdempotencyLayer::new(b.manager.clone()).exclude_header(axum::http::header::SET_COOKIE);
    let srv = serve(layer, AppSpec::default()).await;
    let http = Http::new(srv.addr);
    let first = http.post("\"k-exact\"", BODY).await;
    assert_eq!(first.status, 201);
    assert!(
        first.headers.contains_key("set-cookie"),
        "the first gets it"
    );
    let again = http.post("\"k-exact\"", BODY).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body);
    assert!(again.replayed());
    assert_eq!(
        again.headers.get("x-charge-execution"),
        first.headers.get("x-charge-execution")
    );
    assert_eq!(
        again.headers.get("content-type"),
        first.headers.get("content-type")
    );
    assert!(!again.headers.contains_key("set-cookie"), "excluded");
    // A bare token is the same key as the sf-string with its characters.
    let bare = http.post("k-exact", BODY).await;
    assert!(bare.replayed());
    assert_eq!(bare.body, first.body);
    // GET passes through, untouched by the layer.
    let count = http
        .send("GET", "/count", &[("idempotency-key", "\"k-exact\"")], "")
        .await;
    assert_eq!((count.status, &count.body[..]), (200, &b"1"[..]));
    assert!(!count.replayed());
    // Without a key (not required by default) a POST runs unprotected, every time.
    let a = http.send("POST", "/charges", &[], BODY).await;
    let b2 = http.send("POST", "/charges", &[], BODY).await;
    assert_eq!((a.status, b2.status), (201, 201));
    assert_eq!(srv.app.executions.load(Ordering::SeqCst), 3);
}

pub async fn two_tenants_same_key_two_executions(store: Store) {
    let Some(b) = store.open() else { return };
    let layer = IdempotencyLayer::new(b.manager.clone()).scope(|req| {
        req.headers
            .get("x-tenant")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let srv = serve(layer, AppSpec::default()).await;
    let http = Http::new(srv.addr);
    let send = |tenant: &'static str| {
        let http = http.clone();
        async move {
            http.send(
                "POST",
                "/charges",
                &[("idempotency-key", "\"shared\""), ("x-tenant", tenant)],
                BODY,
            )
            .await
        }
    };
    let a = send("acme").await;
    let b2 = send("globex").await;
    assert_eq!((a.status, b2.status), (201, 201));
    assert!(!a.replayed() && !b2.replayed());
    assert_eq!(a.json()["tenant"], "acme");
    assert_eq!(b2.json()["tenant"], "globex");
    assert_eq!(srv.app.executions.load(Ordering::SeqCst), 2);
    let a2 = send("acme").await;
    assert!(a2.replayed());
    assert_eq!(a2.body, a.body);
    assert_eq!(srv.app.executions.load(Ordering::SeqCst), 2);
}

pub async fn mismatch_is_422_while_pending_and_after_completion(store: Store) {
    let Some(b) = store.open() else { return };
    let gate = Arc::new(Semaphore::new(0));
    let mut srv = serve(
        IdempotencyLayer::new(b.manager.clone()),
        AppSpec {
            gate: Some(gate.clone()),
            ..AppSpec::default()
        },
    )
    .await;
    let http = Http::new(srv.addr);
    let h = http.clone();
    let first = tokio::spawn(async move { h.post("\"k-mismatch\"", BODY).await });
    srv.started.recv().await.expect("the handler started");
    let other = r#"{"amount":9999,"currency":"EUR","customer":"c-1"}"#;
    let pending = http.post("\"k-mismatch\"", other).await;
    assert_eq!(pending.status, 422, "{pending:?}");
    assert_eq!(pending.problem_type(), problem("idempotency-key-reused"));
    // Same body, another path or query: also another fingerprint.
    let query = http
        .send(
            "POST",
            "/charges?x=1",
            &[("idempotency-key", "\"k-mismatch\"")],
            BODY,
        )
        .await;
    assert_eq!(query.status, 422);
    // The same request while pending: 409.
    let same = http.post("\"k-mismatch\"", BODY).await;
    assert_eq!(same.status, 409);
    gate.add_permits(1);
    let first = first.await.expect("task");
    assert_eq!(first.status, 201);
    let after = http.post("\"k-mismatch\"", other).await;
    assert_eq!(after.status, 422, "{after:?}");
    assert_eq!(after.problem_type(), problem("idempotency-key-reused"));
    let replay = http.post("\"k-mismatch\"", BODY).await;
    assert!(replay.replayed());
    assert_eq!(srv.app.executions.load(Ordering::SeqCst), 1);
}

pub async fn malformed_keys_are_400_problems(store: Store) {
    let Some(b) = store.open() else { return };
    let srv = serve(IdempotencyLayer::new(b.manager.clone()), AppSpec::default()).await;
    let http = Http::new(srv.addr);
    let long = format!("\"{}\"", "k".repeat(256));
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("empty", vec![("idempotency-key", "\"\"")]),
        ("too-long", vec![("idempotency-key", long.as_str())]),
        ("list", vec![("idempotency-key", "\"a\", \"b\"")]),
        (
            "several-header-lines",
            vec![("idempotency-key", "\"a\""), ("idempotency-key", "\"a\"")],
        ),
        ("malformed", vec![("idempotency-key", "\"unterminated")]),
        ("malformed", vec![("idempotency-key", "\"a\";p=1")]),
    ];
    for (reason, headers) in cases {
        let a = http.send("POST", "/charges", &headers, BODY).await;
        assert_eq!(a.status, 400, "{reason}: {a:?}");
        assert_eq!(a.problem_type(), problem("invalid-idempotency-key"));
        assert_eq!(a.json()["reason"], reason, "{a:?}");
    }
    // The longest accepted key works.
    let max = format!("\"{}\"", "k".repeat(255));
    assert_eq!(http.post(&max, BODY).await.status, 201);
    assert_eq!(srv.app.executions.load(Ordering::SeqCst), 1);
}

pub async fn custom_fingerprint_ignores_a_timestamp_field(store: Store) {
    let Some(b) = store.open() else { return };
    // The fingerprint: method, path and the JSON body without its `sent_at` field.
    let layer = IdempotencyLayer::new(b.manager.clone()).fingerprint(|req, body, fp| {
        let mut doc: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        if let Some(o) = doc.as_object_mut() {
            o.remove("sent_at");
        }
        fp.part(req.method.as_str().as_bytes())
            .part(req.uri.path().as_bytes())
            .part(doc.to_string().as_bytes());
    });
    let srv = serve(layer, AppSpec::default()).await;
    let http = Http::new(srv.addr);
    let first = http
        .post("\"k-ts\"", r#"{"amount":1200,"sent_at":"10:00:00"}"#)
        .await;
    assert_eq!(first.status, 201);
    let retry = http
        .post("\"k-ts\"", r#"{"amount":1200,"sent_at":"10:00:05"}"#)
        .await;
    assert!(retry.replayed(), "{retry:?}");
    assert_eq!(retry.body, first.body);
    let other = http
        .post("\"k-ts\"", r#"{"amount":1300,"sent_at":"10:00:05"}"#)
        .await;
    assert_eq!(other.status, 422);
    assert_eq!(srv.app.executions.load(Ordering::SeqCst), 1);
}

pub async fn missing_required_key_is_400(store: Store) {
    let Some(b) = store.open() else { return };
    let layer = IdempotencyLayer::new(b.manager.clone()).require_key(true);
    let srv = serve(layer, AppSpec::default()).await;
    let http = Http::new(srv.addr);
    let a = http.send("POST", "/charges", &[], BODY).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.problem_type(), problem("missing-idempotency-key"));
    assert_eq!(srv.app.executions.load(Ordering::SeqCst), 0);
}

pub async fn body_over_limit_is_413(store: Store) {
    let Some(b) = store.open() else { return };
    let layer = IdempotencyLayer::new(b.manager.clone()).max_request_body(64);
    let srv = serve(layer, AppSpec::default()).await;
    let http = Http::new(srv.addr);
    let big = "x".repeat(65);
    let a = http.post("\"k-big\"", &big).await;
    assert_eq!(a.status, 413, "{a:?}");
    assert_eq!(a.problem_type(), problem("body-too-large"));
    // A chunked body (no Content-Length) is cut off at the limit as it is read.
    if let Some((status, _, body)) = curl(&[
        "-X",
        "POST",
        "-H",
        "Idempotency-Key: \"k-big\"",
        "-H",
        "Transfer-Encoding: chunked",
        "--data",
        &big,
        &format!("http://{}/charges", srv.addr),
    ]) {
        assert_eq!(status, 413, "{body}");
        assert!(body.contains("body-too-large"), "{body}");
    } else {
        eprintln!("\n!!!!! SKIPPED the chunked 413 case: curl is not on PATH !!!!!\n");
    }
    // At the limit it runs; the 413 left no record behind for the key.
    let ok = http.post("\"k-big\"", &"x".repeat(64)).await;
    assert_eq!(ok.status, 201);
    assert_eq!(srv.app.executions.load(Ordering::SeqCst), 1);
}

pub async fn server_error_is_not_stored_and_releases_the_key(store: Store) {
    let Some(b) = store.open() else { return };
    let srv = serve(
        IdempotencyLayer::new(b.manager.clone()),
        AppSpec {
            statuses: vec![
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::TOO_MANY_REQUESTS,
            ],
            ..AppSpec::default()
        },
    )
    .await;
    let http = Http::new(srv.addr);
    let first = http.post("\"k-5xx\"", BODY).await;
    assert_eq!(first.status, 503);
    assert!(!first.replayed());
    let limited = http.post("\"k-5xx\"", BODY).await;
    assert_eq!(limited.status, 429, "the 503 was not stored: {limited:?}");
    assert!(!limited.replayed());
    let retry = http.post("\"k-5xx\"", BODY).await;
    assert_eq!(retry.status, 201, "the retry runs again: {retry:?}");
    assert!(!retry.replayed());
    let again = http.post("\"k-5xx\"", BODY).await;
    assert!(again.replayed());
    assert_eq!(again.body, retry.body);
    assert_eq!(srv.app.executions.load(Ordering::SeqCst), 3);
}

pub async fn response_over_store_limit_is_not_replayed_nor_stuck(store: Store) {
    // A body of known size (Content-Length) and a streamed one of unknown size: both reach the
    // client whole, neither is stored, and the key is free for the retry.
    for chunked in [false, true] {
        let Some(b) = store.open() else { return };
        let layer = IdempotencyLayer::new(b.manager.clone()).max_stored_body(1024);
        let srv = serve(
            layer,
            AppSpec {
                padding: 4096,
                chunked,
                ..AppSpec::default()
            },
        )
        .await;
        let http = Http::new(srv.addr);
        let first = http.post("\"k-huge\"", BODY).await;
        assert_eq!(first.status, 201);
        assert_eq!(first.json()["padding"].as_str().map(str::len), Some(4096));
        let retry = http.post("\"k-huge\"", BODY).await;
        assert_eq!(retry.status, 201, "{retry:?}");
        assert!(!retry.replayed(), "never replayed (chunked: {chunked})");
        assert_eq!(retry.json()["execution"], 1);
        assert_eq!(srv.app.executions.load(Ordering::SeqCst), 2);
    }
}

pub async fn plain_hyper_service_is_protected(store: Store) {
    let Some(b) = store.open() else { return };
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r = runs.clone();
    let handler = tower::service_fn(
        move |_req: hyper::Request<RequestBody<hyper::body::Incoming>>| {
            let n = r.fetch_add(1, Ordering::SeqCst);
            async move {
                let mut res = hyper::Response::new(Full::new(Bytes::from(format!("run {n}"))));
                *res.status_mut() = hyper::StatusCode::ACCEPTED;
                Ok::<_, Infallible>(res)
            }
        },
    );
    let svc = IdempotencyLayer::new(b.manager.clone()).layer(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let svc = TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let http = Http::new(addr);
    let a = http
        .send("POST", "/x", &[("idempotency-key", "\"h\"")], "1")
        .await;
    let b2 = http
        .send("POST", "/x", &[("idempotency-key", "\"h\"")], "1")
        .await;
    assert_eq!((a.status, b2.status), (202, 202));
    assert_eq!((&a.body[..], &b2.body[..]), (&b"run 0"[..], &b"run 0"[..]));
    assert!(b2.replayed());
    let c = http
        .send("POST", "/x", &[("idempotency-key", "\"h\"")], "2")
        .await;
    assert_eq!(c.status, 422);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// `curl -i` output: status, lower-cased header lines, body.
fn curl(args: &[&str]) -> Option<(u16, String, String)> {
    let out = std::process::Command::new("curl")
        .args(["-s", "-i"])
        .args(args)
        .output()
        .ok()?;
    assert!(out.status.success(), "curl failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    Some((status, head.to_ascii_lowercase(), body.to_owned()))
}

pub async fn curl_sees_replay_409_422_and_400(store: Store) {
    let Some(b) = store.open() else { return };
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("\n!!!!! SKIPPED curl scenario: curl is not on PATH !!!!!\n");
        return;
    }
    let gate = Arc::new(Semaphore::new(0));
    let mut srv = serve(
        IdempotencyLayer::new(b.manager.clone()),
        AppSpec {
            gate: Some(gate.clone()),
            ..AppSpec::default()
        },
    )
    .await;
    let url = format!("http://{}/charges", srv.addr);
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            curl(&a).expect("curl runs")
        })
    };
    let post = |key: &str, body: &str| {
        vec![
            "-X".into(),
            "POST".into(),
            "-H".into(),
            format!("Idempotency-Key: {key}"),
            "-H".into(),
            "Content-Type: application/json".into(),
            "--data".into(),
            body.to_owned(),
            url.clone(),
        ]
    };
    let first = run(post("\"curl-1\"", BODY));
    srv.started.recv().await.expect("the handler started");
    let (s409, _, b409) = run(post("\"curl-1\"", BODY)).await.unwrap();
    assert_eq!(s409, 409, "{b409}");
    assert!(b409.contains("idempotency-key-in-use"));
    let (s422, _, b422) = run(post("\"curl-1\"", r#"{"amount":1}"#)).await.unwrap();
    assert_eq!(s422, 422, "{b422}");
    assert!(b422.contains("idempotency-key-reused"));
    gate.add_permits(2);
    let (s201, h201, b201) = first.await.unwrap();
    assert_eq!(s201, 201);
    assert!(!h201.contains("idempotent-replayed"));
    let (s, h, body) = run(post("\"curl-1\"", BODY)).await.unwrap();
    assert_eq!(s, 201);
    assert!(h.contains("idempotent-replayed: true"), "{h}");
    assert_eq!(body, b201);
    let mut two = post("\"a\"", BODY);
    two.splice(0..0, ["-H".to_owned(), "Idempotency-Key: \"b\"".to_owned()]);
    let (s400, _, b400) = run(two).await.unwrap();
    assert_eq!(s400, 400, "{b400}");
    assert!(b400.contains("invalid-idempotency-key"));
    let (s400, _, _) = run(post("\"\"", BODY)).await.unwrap();
    assert_eq!(s400, 400);
    assert_eq!(srv.app.executions.load(Ordering::SeqCst), 1);
}

pub async fn per_route_layer_covers_only_its_route(store: Store) {
    let Some(b) = store.open() else { return };
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (ra, rb) = (runs.clone(), runs.clone());
    let app = axum::Router::new()
        .route(
            "/a",
            axum::routing::post(move || {
                let n = ra.fetch_add(1, Ordering::SeqCst);
                async move { format!("a {n}") }
            })
            .layer(IdempotencyLayer::new(b.manager.clone()).require_key(true)),
        )
        .route(
            "/b",
            axum::routing::post(move || {
                let n = rb.fetch_add(1, Ordering::SeqCst);
                async move { format!("b {n}") }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = Http::new(addr);
    let key = [("idempotency-key", "\"per-route\"")];
    let a1 = http.send("POST", "/a", &key, "").await;
    let a2 = http.send("POST", "/a", &key, "").await;
    assert_eq!((&a1.body[..], a2.replayed()), (&b"a 0"[..], true));
    assert_eq!(a2.body, a1.body);
    let b1 = http.send("POST", "/b", &key, "").await;
    let b2 = http.send("POST", "/b", &key, "").await;
    assert!(!b1.replayed() && !b2.replayed());
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert_eq!(http.send("POST", "/a", &[], "").await.status, 400);
}
