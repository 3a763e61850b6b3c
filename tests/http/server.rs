//! A test server (axum, or plain hyper) on a loopback socket, a real HTTP client, and the stores.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use idempotency::http::IdempotencyLayer;
use idempotency::{IdempotencyManager, MemoryStorage};
use tokio::sync::{mpsc, Semaphore};

use crate::harness::RedisHarness;

/// The stores every scenario runs on.
#[derive(Debug, Clone, Copy)]
pub enum Store {
    Memory,
    File,
    Redis,
}

/// A manager over one store, with what keeps that store alive.
pub struct Backend {
    pub manager: IdempotencyManager,
    _dir: Option<tempfile::TempDir>,
    _redis: Option<RedisHarness>,
}

impl Store {
    /// `None` when Redis is not available (after a loud skip notice, or a failure under
    /// `IDEMPOTENCY_REQUIRE_REDIS=1`).
    pub fn open(self) -> Option<Backend> {
        match self {
            Store::Memory => Some(Backend {
                manager: IdempotencyManager::new(MemoryStorage::new()),
                _dir: None,
                _redis: None,
            }),
            Store::File => {
                let dir = tempfile::tempdir().expect("temp dir");
                let store = idempotency::FileStorage::open(dir.path()).expect("file store");
                Some(Backend {
                    manager: IdempotencyManager::new(store),
                    _dir: Some(dir),
                    _redis: None,
                })
            }
            Store::Redis => {
                let h = RedisHarness::new()?;
                Some(Backend {
                    manager: IdempotencyManager::new(h.store.clone()),
                    _dir: None,
                    _redis: Some(h),
                })
            }
        }
    }
}

/// What the handler does: count, optionally hold until released, answer a status.
pub struct App {
    pub executions: AtomicUsize,
    /// Each handler run sends here when it starts.
    pub started: mpsc::UnboundedSender<()>,
    /// When set, a handler run waits for one permit before answering.
    pub gate: Option<Arc<Semaphore>>,
    /// The status of the n-th execution (0-based); 201 beyond the list.
    pub statuses: Vec<StatusCode>,
    /// Bytes of padding in each response body.
    pub padding: usize,
    /// Whether the body is streamed in chunks of unknown total size (no size hint).
    pub chunked: bool,
}

/// A response body of 512-byte chunks with no size hint, as a streaming handler sends it.
struct Chunks(Vec<Bytes>);

impl axum::body::HttpBody for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        let next = if self.0.is_empty() {
            None
        } else {
            Some(Ok(hyper::body::Frame::data(self.0.remove(0))))
        };
        std::task::Poll::Ready(next)
    }
}

async fn charge(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let n = app.executions.fetch_add(1, Ordering::SeqCst);
    let _ = app.started.send(());
    if let Some(g) = &app.gate {
        g.acquire().await.expect("gate").forget();
    }
    let status = app.statuses.get(n).copied().unwrap_or(StatusCode::CREATED);
    let tenant = headers
        .get("x-tenant")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let json = serde_json::json!({
        "execution": n,
        "tenant": tenant,
        "request": String::from_utf8_lossy(&body),
        "padding": "x".repeat(app.padding),
    });
    let head = [
        ("content-type", "application/json".to_owned()),
        ("x-charge-execution", n.to_string()),
        ("set-cookie", "session=abc".to_owned()),
    ];
    if app.chunked {
        let bytes = Bytes::from(json.to_string());
        let chunks = (0..bytes.len())
            .step_by(512)
            .map(|i| bytes.slice(i..(i + 512).min(bytes.len())))
            .collect();
        return (status, head, axum::body::Body::new(Chunks(chunks))).into_response();
    }
    (status, head, json.to_string()).into_response()
}

async fn read(State(app): State<Arc<App>>) -> String {
    app.executions.load(Ordering::SeqCst).to_string()
}

/// A running server and its handler's state.
pub struct Server {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    pub started: mpsc::UnboundedReceiver<()>,
}

#[derive(Default)]
pub struct AppSpec {
    pub gate: Option<Arc<Semaphore>>,
    pub statuses: Vec<StatusCode>,
    pub padding: usize,
    pub chunked: bool,
}

/// Serves `POST /charges` (and `GET /count`) behind `layer` with axum on a loopback port.
pub async fn serve(layer: IdempotencyLayer, spec: AppSpec) -> Server {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Arc::new(App {
        executions: AtomicUsize::new(0),
        started: tx,
        gate: spec.gate,
        statuses: spec.statuses,
        padding: spec.padding,
        chunked: spec.chunked,
    });
    let router = Router::new()
        .route("/charges", post(charge))
        .route("/count", get(read))
        .with_state(app.clone())
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    Server {
        addr,
        app,
        started: rx,
    }
}

/// A response as the client saw it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn replayed(&self) -> bool {
        self.headers
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true")
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
    /// The problem document's `type`, checking the media type (RFC 9457).
    pub fn problem_type(&self) -> String {
        assert_eq!(
            self.headers.get("content-type").expect("content-type"),
            "application/problem+json",
            "{self:?}"
        );
        let doc = self.json();
        assert_eq!(doc["status"], self.status, "{doc}");
        doc["type"].as_str().expect("type").to_owned()
    }
}

/// A real HTTP/1.1 client (hyper-util's) over TCP.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Http {
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: format!("http://{addr}"),
        }
    }

    /// Sends `method path` with `headers` (several entries with one name become several lines).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("request");
        let res = self.client.request(req).await.expect("response");
        let (parts, body) = res.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    }

    pub async fn post(&self, key: &str, body: &str) -> Answer {
        self.send("POST", "/charges", &[("idempotency-key", key)], body)
            .await
    }
}
