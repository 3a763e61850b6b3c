//! Scenario 3 across processes: 8 OS processes x 50 calls on one key run the function once.
//! Each execution inserts a row into a business table, so the count is PostgreSQL's own.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use idempotency::postgres::sqlx;
use idempotency::{Call, ConflictPolicy, IdempotencyKey, IdempotencyManager, PostgresConfig};

use crate::harness::{available, exec, url, with_conn, Schema};

const CHILD_ENV: &str = "IDEM_POSTGRES_CHILD";
const PROCESSES: usize = 8;
const CALLS: usize = 50;
const TEST: &str = "processes::scenario_3_eight_processes_fifty_calls_execute_once";

/// The child role: open a store, wait for the parent's go, make 50 concurrent calls on one key,
/// report.
async fn child(schema: &str) {
    let store = PostgresConfig::new()
        .schema(schema)
        .connect(&url())
        .unwrap();
    let m = IdempotencyManager::builder(store)
        .on_conflict(ConflictPolicy::Wait {
            timeout: Duration::from_secs(60),
        })
        .build()
        .unwrap();
    println!("\nready");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    let c = Call::new(IdempotencyKey::derive("pg::s3", 1, &"one key").unwrap());
    let gate = std::sync::Arc::new(tokio::sync::Barrier::new(CALLS));
    let insert = format!("INSERT INTO \"{schema}\".executions (pid) VALUES ($1) RETURNING id");
    let tasks: Vec<_> = (0..CALLS)
        .map(|_| {
            let (m, c, gate, insert) = (m.clone(), c.clone(), gate.clone(), insert.clone());
            tokio::spawn(async move {
                gate.wait().await;
                m.execute(&c, || async move {
                    // The side effect: one business row per execution.
                    insert_row(insert).await
                })
                .await
            })
        })
        .collect();
    let (mut executed, mut replayed) = (0, 0);
    let mut values = std::collections::BTreeSet::new();
    for t in tasks {
        let o = t.await.unwrap().unwrap();
        values.insert(o.value);
        if o.is_replayed() {
            replayed += 1;
        } else {
            executed += 1;
        }
    }
    assert_eq!(
        values.len(),
        1,
        "every caller sees the one execution's value"
    );
    println!(
        "\nexecuted={executed} replayed={replayed} value={}",
        values.first().unwrap()
    );
}

/// Inserts the business row on a connection of its own; returns its id.
async fn insert_row(insert: String) -> i64 {
    tokio::task::spawn_blocking(move || {
        with_conn(move |mut c| async move {
            sqlx::query_scalar(&insert)
                .bind(i64::from(std::process::id()))
                .fetch_one(&mut c)
                .await
                .unwrap()
        })
        .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scenario_3_eight_processes_fifty_calls_execute_once() {
    if let Ok(schema) = std::env::var(CHILD_ENV) {
        child(&schema).await;
        return;
    }
    if available(TEST).is_none() {
        return;
    }
    let schema = Schema::new();
    exec(&format!(
        "CREATE TABLE \"{}\".executions (id bigserial PRIMARY KEY, pid bigint NOT NULL)",
        schema.0
    ));
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, &schema.0)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut outputs: Vec<_> = children
        .iter_mut()
        .map(|c| BufReader::new(c.stdout.take().unwrap()).lines())
        .collect();
    // A barrier across processes: every child has connected (and the table exists) before
    // any starts.
    for out in &mut outputs {
        loop {
            let line = out.next().expect("child output").unwrap();
            if line.ends_with("ready") {
                break;
            }
        }
    }
    for c in &mut children {
        c.stdin.take().unwrap().write_all(b"go\n").unwrap();
    }
    let (mut executed, mut replayed) = (0, 0);
    let mut values = std::collections::BTreeSet::new();
    for (child, out) in children.iter_mut().zip(outputs) {
        for line in out {
            let line = line.unwrap();
            if let Some((_, rest)) = line.split_once("executed=") {
                let (e, rest) = rest.split_once(" replayed=").unwrap();
                let (r, v) = rest.split_once(" value=").unwrap();
                executed += e.parse::<usize>().unwrap();
                replayed += r.parse::<usize>().unwrap();
                values.insert(v.trim().parse::<i64>().unwrap());
            }
        }
        assert!(child.wait().unwrap().success(), "a child failed");
    }
    let sql = format!("SELECT count(*) FROM \"{}\".executions", schema.0);
    let rows: i64 =
        with_conn(
            move |mut c| async move { sqlx::query_scalar(&sql).fetch_one(&mut c).await.unwrap() },
        )
        .unwrap();
    assert_eq!(
        rows, 1,
        "scenario 3: one execution across {PROCESSES} processes"
    );
    assert_eq!((executed, replayed), (1, PROCESSES * CALLS - 1));
    assert_eq!(values.len(), 1, "every process saw the same value");
}
