//! The `idempotency` CLI on a PostgreSQL store (`--store postgres://...` and `IDEMPOTENCY_URL`):
//! list, show, delete, purge-expired, stats, doctor (feature `postgres`).
//!
//! The database comes from `IDEMPOTENCY_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), in a fresh schema dropped afterwards; without one
//! the test prints a loud notice and passes, unless `IDEMPOTENCY_REQUIRE_POSTGRES=1`.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// The root package's PostgreSQL test harness, shared.
#[path = "../../tests/postgres/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::process::Command;
use std::time::Duration;

use idempotency::postgres::sqlx;
use idempotency::{ClaimRequest, IdempotencyKey, PostgresConfig, Storage};
use serde_json::Value;

use crate::harness::{available, url, with_conn, Schema};

fn run(store_url: &str, args: &[&str], via_env: bool) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_idempotency"));
    if via_env {
        cmd.env("IDEMPOTENCY_URL", store_url).args(args);
    } else {
        cmd.env_remove("IDEMPOTENCY_URL")
            .arg("--store")
            .arg(store_url)
            .args(args);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn sql(statement: String, key: &IdempotencyKey) {
    let key = key.as_str().as_bytes().to_vec();
    with_conn(move |mut c| async move {
        sqlx::query(&statement)
            .bind(key)
            .execute(&mut c)
            .await
            .unwrap();
    })
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_on_postgres_lists_shows_purges_diagnoses_and_deletes() {
    if available("cli::on_postgres").is_none() {
        return;
    }
    let schema = Schema::new();
    let store = PostgresConfig::new()
        .schema(schema.0.clone())
        .connect(&url())
        .unwrap();
    let t = store.table().to_owned();
    let key = |s: &str| IdempotencyKey::derive("pg::cli", 1, &s).unwrap();
    let (ok, old, bad) = (key("ok"), key("old"), key("bad"));
    for k in [&ok, &old, &bad] {
        let req = ClaimRequest {
            execution_id: uuid::Uuid::new_v4(),
            fingerprint: k.fingerprint,
            lease: Duration::from_secs(60),
            refresh: false,
        };
        let idempotency::Claim::Acquired { owner, .. } =
            store.try_claim(&k.key, &req).await.unwrap()
        else {
            panic!("claim")
        };
        store
            .complete(&k.key, &owner, b"hello", Duration::from_secs(3600))
            .await
            .unwrap();
    }
    sql(
        format!("UPDATE {t} SET expires_at = 0 WHERE key = $1"),
        &old.key,
    );
    sql(
        format!("UPDATE {t} SET body = 'garbage' WHERE key = $1"),
        &bad.key,
    );
    let u = format!(
        "{}{}options=-c%20search_path%3D{}",
        url(),
        if url().contains('?') { '&' } else { '?' },
        schema.0
    );

    let (code, out) = run(&u, &["list", "--json"], false);
    assert_eq!(code, 0, "{out}");
    let items = json(&out)["items"].as_array().unwrap().len();
    assert_eq!(items, 3, "{out}");
    let (code, out) = run(&u, &["show", ok.key.as_str(), "--json"], true);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json(&out)["status"], "success", "{out}");
    let (code, out) = run(&u, &["stats", "--json"], true);
    assert_eq!(code, 0, "{out}");
    let v = json(&out);
    assert_eq!(
        (v["records"].clone(), v["unreadable"].clone()),
        (2.into(), 1.into()),
        "{out}"
    );
    let (code, out) = run(&u, &["purge-expired", "--json"], false);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json(&out)["removed"], 1, "{out}");
    let (code, out) = run(&u, &["doctor"], false);
    assert_eq!(code, 1, "the corrupt row is a problem: {out}");
    let (code, out) = run(&u, &["doctor", "--fix", "--json"], false);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json(&out)["removed"], 1, "{out}");
    let (code, out) = run(&u, &["delete", ok.key.as_str()], false);
    assert_eq!(code, 0, "{out}");
    assert!(store.get(&ok.key).await.unwrap().is_none());
    let (code, out) = run(&u, &["stats", "--json"], false);
    assert_eq!(json(&out)["records"], 0, "{code} {out}");
}
