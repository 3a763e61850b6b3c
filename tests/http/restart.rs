//! The `http_payments` example killed while its handler runs, then restarted: the retry after
//! the lease runs once and no charge is made twice. On the file and Redis stores (a memory
//! store does not outlive the process).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::Http;

const CHARGE: &str = r#"{"amount":1200,"currency":"EUR","customer":"cus_1"}"#;

/// The environment variable that turns [`payments_child`] into the example server; it holds
/// the example's arguments, separated by U+001F.
const CHILD_ARGS: &str = "IDEMPOTENCY_HTTP_PAYMENTS_CHILD_ARGS";

/// The example server in a child process: this test binary re-runs itself with only this test
/// selected and [`CHILD_ARGS`] set (so the child runs the example's code as built now, not a
/// possibly stale `target/*/examples` binary). Without the variable it does nothing.
#[test]
fn payments_child() {
    let Ok(args) = std::env::var(CHILD_ARGS) else {
        return;
    };
    let args = crate::payments::parse_args(args.split('\u{1f}').map(str::to_owned))
        .expect("child arguments");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("child runtime");
    rt.block_on(crate::payments::serve(args))
        .expect("the payments server");
}

struct Payments {
    child: Child,
    addr: std::net::SocketAddr,
}

impl Drop for Payments {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(store: &str, data: &Path, hold_ms: u64) -> Payments {
    let data = data.to_str().expect("a UTF-8 path");
    let hold = hold_ms.to_string();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--store",
        store,
        "--data",
        data,
        "--lease-ms",
        "3000",
        "--hold-ms",
        &hold,
    ]
    .join("\u{1f}");
    let mut child = Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "--exact",
            "restart::payments_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ARGS, args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the payments child");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    let addr = loop {
        line.clear();
        let n = out.read_line(&mut line).expect("read the child's output");
        assert!(n > 0, "the payments child exited before listening");
        // libtest prints `test restart::payments_child ... ` before it on the same line.
        if let Some((_, a)) = line.trim().split_once("listening on ") {
            break a.parse().expect("an address");
        }
    };
    Payments { child, addr }
}

fn ledger(data: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(data.join("ledger.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a ledger line"))
        .collect()
}

async fn post(http: &Http, key: &str) -> crate::server::Answer {
    http.send(
        "POST",
        "/charges",
        &[
            ("idempotency-key", key),
            ("authorization", "Bearer sk_test_1"),
            ("content-type", "application/json"),
        ],
        CHARGE,
    )
    .await
}

async fn killed_while_running_then_restarted(store_url: &str, data: &Path) {
    let key = format!("\"order-crash-{}\"", uuid::Uuid::new_v4().simple());
    let key = key.as_str();
    let first = start(store_url, data, 600_000);
    let http = Http::new(first.addr);
    let h = http.clone();
    let k = key.to_owned();
    // The request the crash interrupts; its connection dies with the server.
    let lost = tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(120), async {
            h.send(
                "POST",
                "/charges",
                &[
                    ("idempotency-key", k.as_str()),
                    ("authorization", "Bearer sk_test_1"),
                    ("content-type", "application/json"),
                ],
                CHARGE,
            )
            .await
        })
        .await;
    });
    // The handler is running once it has written its in-flight marker.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !data.join("inflight").exists() {
        assert!(Instant::now() < deadline, "the handler never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(first); // SIGKILL while the handler runs
    lost.abort();
    assert!(
        ledger(data).is_empty(),
        "no charge was made before the kill"
    );

    let second = start(store_url, data, 0);
    let http = Http::new(second.addr);
    // Retries get 409 while the dead request's lease runs, then exactly one runs.
    let deadline = Instant::now() + Duration::from_secs(60);
    let created = loop {
        let a = post(&http, key).await;
        match a.status {
            201 => break a,
            409 => {
                assert_eq!(
                    a.json()["type"],
                    format!(
                        "{}idempotency-key-in-use",
                        idempotency::http::DEFAULT_PROBLEM_BASE
                    )
                );
                assert!(Instant::now() < deadline, "the key stayed blocked");
                // The client honours Retry-After (1 s) as a real client would.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            s => panic!("unexpected status {s}: {a:?}"),
        }
    };
    assert!(!created.replayed());
    let charge = created.json();
    assert_eq!(ledger(data).len(), 1);
    // Further retries replay the same charge; none is made twice.
    for _ in 0..3 {
        let again = post(&http, key).await;
        assert_eq!(again.status, 201);
        assert!(again.replayed());
        assert_eq!(again.json()["id"], charge["id"]);
    }
    let read = http
        .send(
            "GET",
            &format!("/charges/{}", charge["id"].as_str().unwrap()),
            &[],
            "",
        )
        .await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["id"], charge["id"]);
    let book = ledger(data);
    assert_eq!(book.len(), 1, "{book:?}");
    assert_eq!(book[0]["id"], charge["id"]);
    // The same key from another tenant is another charge.
    let other = http
        .send(
            "POST",
            "/charges",
            &[
                ("idempotency-key", key),
                ("authorization", "Bearer sk_test_2"),
                ("content-type", "application/json"),
            ],
            CHARGE,
        )
        .await;
    assert_eq!(other.status, 201);
    assert_ne!(other.json()["id"], charge["id"]);
    assert_eq!(ledger(data).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_kill_and_restart_charges_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("file://{}", dir.path().join("records").display());
    killed_while_running_then_restarted(&url, &dir.path().join("data")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_kill_and_restart_charges_once() {
    let Some(target) = crate::harness::Target::get(&crate::harness::test_name()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    // On a shared Redis the key is unique to this run (see `killed_while_running_then_restarted`).
    killed_while_running_then_restarted(&target.url, &dir.path().join("data")).await;
}
