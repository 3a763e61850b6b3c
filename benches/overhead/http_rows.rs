//! The `Idempotency-Key` layer (feature `http`): a replayed request through the layer against
//! the same axum handler without it, on the memory store, for a 1 KB JSON response; twice:
//! in process (`tower::ServiceExt::oneshot` on the router: the layer's own cost against routing
//! and a handler that does nothing) and over a loopback socket with a real HTTP/1.1 client
//! (keep-alive), as a client sees it.

use std::hint::black_box;

use axum::body::Body;
use axum::routing::post;
use axum::Router;
use http_body_util::BodyExt;
use idempotency::http::IdempotencyLayer;
use idempotency::{IdempotencyManager, MemoryStorage};
use tower::ServiceExt;

use crate::harness::Report;

const REQUEST: &str = r#"{"amount":1200,"currency":"EUR","customer":"cus_1"}"#;

fn response_json() -> String {
    // A 1 KB JSON document.
    let mut s = String::from(r#"{"id":"ch_0344e9b49018423a9d72ca0000ebdc3e","items":["#);
    while s.len() < 1000 {
        s.push_str(r#""abcdefghijklmnopqrstuvwxyz","#);
    }
    s.push_str(r#""end"]}"#);
    s
}

fn router() -> Router {
    let body = response_json();
    Router::new().route(
        "/charges",
        post(move || {
            let body = body.clone();
            async move {
                (
                    axum::http::StatusCode::CREATED,
                    [("content-type", "application/json")],
                    body,
                )
            }
        }),
    )
}

fn request() -> axum::http::Request<Body> {
    axum::http::Request::post("/charges")
        .header(
            "idempotency-key",
            "\"8e03978e-40d5-43e8-bc93-6894a57f9324\"",
        )
        .header("content-type", "application/json")
        .body(Body::from(REQUEST))
        .unwrap_or_else(|e| panic!("bench http request: {e}"))
}

pub fn run(r: &mut Report) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("bench http runtime: {e}"));
    let bare = router();
    let layered = router().layer(IdempotencyLayer::new(IdempotencyManager::new(
        MemoryStorage::new(),
    )));
    let send = |app: &Router| {
        let app = app.clone();
        rt.block_on(async move {
            let res = app.oneshot(request()).await.unwrap_or_else(|e| match e {});
            let status = res.status();
            let body = res
                .into_body()
                .collect()
                .await
                .unwrap_or_else(|e| panic!("bench http body: {e}"))
                .to_bytes();
            (status, res_len(&body))
        })
    };
    let first = send(&layered);
    assert_eq!(first.0, 201, "bench http warm-up");
    assert!(first.1 >= 1000, "a 1 KB response");
    r.measure("http", "in process, no layer", 16, None, || {
        black_box(send(black_box(&bare)));
    });
    r.measure(
        "http",
        "in process, layer replay",
        16,
        Some(("http_layer_replay_in_process", "in process, no layer")),
        || {
            black_box(send(black_box(&layered)));
        },
    );
    drop(rt);
    loopback(r);
}

fn res_len(b: &[u8]) -> usize {
    b.len()
}

/// The same two routers served on loopback ports, driven by hyper-util's client.
fn loopback(r: &mut Report) {
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("bench http runtime: {e}"));
    let serve = |app: Router| {
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap_or_else(|e| panic!("bench http bind: {e}"));
            let addr = l
                .local_addr()
                .unwrap_or_else(|e| panic!("bench http addr: {e}"));
            tokio::spawn(async move {
                let _ = axum::serve(l, app).await;
            });
            addr
        })
    };
    let bare = serve(router());
    let layered = serve(
        router().layer(IdempotencyLayer::new(IdempotencyManager::new(
            MemoryStorage::new(),
        ))),
    );
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let send = |addr: std::net::SocketAddr| {
        let client = client.clone();
        rt.block_on(async move {
            let req = axum::http::Request::post(format!("http://{addr}/charges"))
                .header(
                    "idempotency-key",
                    "\"8e03978e-40d5-43e8-bc93-6894a57f9324\"",
                )
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(REQUEST.as_bytes())))
                .unwrap_or_else(|e| panic!("bench http request: {e}"));
            let res = client
                .request(req)
                .await
                .unwrap_or_else(|e| panic!("bench http: {e}"));
            let status = res.status();
            let body = res
                .into_body()
                .collect()
                .await
                .unwrap_or_else(|e| panic!("bench http body: {e}"))
                .to_bytes();
            (status, body.len())
        })
    };
    assert_eq!(send(layered).0, 201, "bench http warm-up");
    r.measure("http", "loopback, no layer", 1, None, || {
        black_box(send(bare));
    });
    r.measure(
        "http",
        "loopback, layer replay",
        1,
        Some(("http_layer_replay_loopback", "loopback, no layer")),
        || {
            black_box(send(layered));
        },
    );
}
