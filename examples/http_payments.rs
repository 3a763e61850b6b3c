//! A payments API behind the `Idempotency-Key` layer (issue 14).
//!
//! ```text
//! cargo run --release --features http --example http_payments -- \
//!     --listen 127.0.0.1:3000 [--store URL] [--data DIR] [--lease-ms N] [--hold-ms N]
//! ```
//!
//! - `POST /charges` takes `{"amount": <int>, "currency": "<str>", "customer": "<str>"}` and
//!   answers 201 with the charge, which has a fresh `id`. An `Idempotency-Key` is required;
//!   each API key (`Authorization: Bearer ...`) is its own tenant.
//! - `GET /charges/{id}` reads a charge back (404 when there is none).
//! - Every charge is appended to `DIR/ledger.jsonl` (one JSON line, flushed and synced before
//!   the answer), so a test can count charges across a kill and a restart.
//! - `--store`: `memory://`, `file:///dir` or `redis://host:port/db` (default: the file store
//!   in `DIR/records`). `--lease-ms`: how long a request whose server died blocks its key
//!   (default 10 000). `--hold-ms`: simulated work before the charge is made (default 0); while
//!   it runs the file `DIR/inflight` exists.
//!
//! Prints `listening on ADDR` once it accepts connections.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use idempotency::http::IdempotencyLayer;
use idempotency::{FileStorage, IdempotencyManager, StoreUrl};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

#[derive(Deserialize)]
struct NewCharge {
    amount: i64,
    currency: String,
    customer: String,
}

#[derive(Serialize, Deserialize, Clone)]
struct Charge {
    id: String,
    amount: i64,
    currency: String,
    customer: String,
    tenant: String,
}

struct AppState {
    data: PathBuf,
    hold: Duration,
    ledger: Mutex<()>,
}

fn tenant(headers: &HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("anonymous")
        .to_owned()
}

async fn create(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Json(req): Json<NewCharge>,
) -> Response {
    let inflight = app.data.join("inflight");
    if !app.hold.is_zero() {
        if let Err(e) = tokio::fs::write(&inflight, b"").await {
            return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        }
        tokio::time::sleep(app.hold).await;
    }
    let charge = Charge {
        id: format!("ch_{}", uuid::Uuid::new_v4().simple()),
        amount: req.amount,
        currency: req.currency,
        customer: req.customer,
        tenant: tenant(&headers),
    };
    let line = match serde_json::to_string(&charge) {
        Ok(l) => l + "\n",
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let _guard = app.ledger.lock().await;
    let written = async {
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(app.data.join("ledger.jsonl"))
            .await?;
        f.write_all(line.as_bytes()).await?;
        f.sync_all().await
    }
    .await;
    let _ = tokio::fs::remove_file(&inflight).await;
    match written {
        Ok(()) => (StatusCode::CREATED, Json(charge)).into_response(),
        // A 5xx is not stored: the client may retry.
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn read(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let ledger = tokio::fs::read_to_string(app.data.join("ledger.jsonl"))
        .await
        .unwrap_or_default();
    ledger
        .lines()
        .filter_map(|l| serde_json::from_str::<Charge>(l).ok())
        .find(|c| c.id == id)
        .map_or_else(
            || StatusCode::NOT_FOUND.into_response(),
            |c| Json(c).into_response(),
        )
}

/// The command line.
pub struct Args {
    listen: String,
    store: Option<String>,
    data: PathBuf,
    lease: Duration,
    hold: Duration,
}

/// Parses the arguments (without the program name).
pub fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        listen: "127.0.0.1:3000".into(),
        store: None,
        data: PathBuf::from("payments-data"),
        lease: Duration::from_secs(10),
        hold: Duration::ZERO,
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let ms = |v: String| {
            v.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|e| format!("{flag}: {e}"))
        };
        match flag.as_str() {
            "--listen" => a.listen = value()?,
            "--store" => a.store = Some(value()?),
            "--data" => a.data = PathBuf::from(value()?),
            "--lease-ms" => a.lease = ms(value()?)?,
            "--hold-ms" => a.hold = ms(value()?)?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    serve(parse_args(std::env::args().skip(1))?).await
}

/// Serves the API until the process ends. (The restart test in tests/http runs this in a child
/// process that it kills.)
pub async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(&args.data)?;
    let manager = match &args.store {
        Some(url) => StoreUrl::parse(url)?.open_manager()?,
        None => IdempotencyManager::new(FileStorage::open(args.data.join("records"))?),
    };
    let layer = IdempotencyLayer::new(manager)
        .operation("payments")
        .require_key(true)
        .lease(args.lease)
        .ttl(Duration::from_secs(24 * 3600))
        .scope(|req| Some(tenant(&req.headers)));
    let state = Arc::new(AppState {
        data: args.data.clone(),
        hold: args.hold,
        ledger: Mutex::new(()),
    });
    let app = Router::new()
        .route("/charges", post(create))
        .route("/charges/{id}", get(read))
        .with_state(state)
        .layer(layer);
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    // Flushed now: a parent process waits for this line.
    std::io::Write::flush(&mut std::io::stdout())?;
    axum::serve(listener, app).await?;
    Ok(())
}
