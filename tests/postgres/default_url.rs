//! `IDEMPOTENCY_URL=postgres://...` for the default manager (in a child process, whose
//! environment is its own), and `StoreUrl` parsing of both PostgreSQL schemes.

use std::process::Command;

use idempotency::{Call, IdempotencyKey, StoreUrl};

use crate::harness::{available, url, Schema};

const CHILD_ENV: &str = "IDEM_POSTGRES_DEFAULT_CHILD";
const TEST: &str = "default_url::default_manager_opens_idempotency_url_postgres";

#[test]
fn store_url_parses_postgres_schemes() {
    for u in [
        "postgres://u@h/db",
        "postgresql://u:p@h:5433/db?sslmode=disable",
    ] {
        assert_eq!(
            StoreUrl::parse(u).unwrap(),
            StoreUrl::Postgres(u.to_owned())
        );
    }
    let e = StoreUrl::parse("postgres://u@h:notaport/db")
        .unwrap()
        .open_manager()
        .unwrap_err();
    assert_eq!(e.kind(), idempotency::ErrorKind::Config, "{e}");
}

#[test]
fn default_manager_opens_idempotency_url_postgres() {
    if std::env::var(CHILD_ENV).is_ok() {
        let m = idempotency::default_manager().unwrap();
        let c = Call::new(IdempotencyKey::derive("pg::default", 1, &"x").unwrap());
        let o = m.execute_sync(&c, || 42_u32).unwrap();
        println!("\nvalue={} replayed={}", o.value, o.is_replayed());
        return;
    }
    if available(TEST).is_none() {
        return;
    }
    let schema = Schema::new();
    let base = url();
    let sep = if base.contains('?') { '&' } else { '?' };
    let store = format!("{base}{sep}options=-c%20search_path%3D{}", schema.0);
    let exe = std::env::current_exe().unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let out = Command::new(&exe)
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .env("IDEMPOTENCY_URL", &store)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "child failed:\n{stdout}");
        let line = stdout
            .lines()
            .find(|l| l.starts_with("value="))
            .unwrap_or_else(|| panic!("no result:\n{stdout}"))
            .to_owned();
        seen.push(line);
    }
    assert_eq!(
        seen,
        ["value=42 replayed=false", "value=42 replayed=true"],
        "the second process replays the first one's record from PostgreSQL"
    );
}
