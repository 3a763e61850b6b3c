//! The main job on PostgreSQL (`--store postgres://...`): the same summary line and totals as
//! on the file store, a rerun that executes nothing, and two workers at once (each record
//! executed once between them).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::emissions::{self, ledger, Args};
use crate::harness::{available, url, Schema};

const CHILD_ENV: &str = "IDEM_POSTGRES_EMISSIONS_CHILD";
const SEP: char = '\u{1f}';
const WORKERS_TEST: &str =
    "emissions_job::scenario_2_emissions_job_on_postgres_two_workers_split_the_work";
/// Valid rows: 1991 data rows minus 20 bad rows (the 3 exact replays are accepted once).
const ACCEPTED: u64 = 1968;

/// The store URL of `schema`: the default table, in that schema (through `search_path`).
fn store_url(schema: &Schema) -> String {
    let base = url();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{}", schema.0)
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "idempotency-pg-emissions-{tag}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn job(out: &std::path::Path, store: &str) -> Vec<String> {
    vec![
        "--out".into(),
        out.display().to_string(),
        "--store".into(),
        store.into(),
    ]
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn emissions_job_on_postgres_matches_the_file_store_and_a_rerun_executes_nothing() {
    if available("emissions::on_postgres").is_none() {
        return;
    }
    let file_dir = temp_dir("file");
    let file_store = format!("file://{}", file_dir.join("store").display());
    let on_file = emissions::run(&Args::parse(job(&file_dir, &file_store)).unwrap()).unwrap();

    let schema = Schema::new();
    let pg_dir = temp_dir("pg");
    let a = Args::parse(job(&pg_dir, &store_url(&schema))).unwrap();
    let first = emissions::run(&a).unwrap();
    assert_eq!(
        first.to_string(),
        on_file.to_string(),
        "the same summary line"
    );
    assert_eq!(first.co2e_mg, on_file.co2e_mg, "the same total");
    assert_eq!(first.executed, ACCEPTED);
    assert_eq!(
        read(pg_dir.join("report.csv")),
        read(file_dir.join("report.csv"))
    );
    // A new run opens the store afresh, as a new process would.
    let second = emissions::run(&a).unwrap();
    assert_eq!(second.executed, 0, "rerun: {second}");
    assert_eq!(second.replayed, ACCEPTED + 3);
    assert_eq!(second.co2e_mg, first.co2e_mg);
    assert_eq!(
        read(pg_dir.join("report.csv")),
        read(file_dir.join("report.csv"))
    );
    let _ = std::fs::remove_dir_all(&file_dir);
    let _ = std::fs::remove_dir_all(&pg_dir);
}

#[test]
fn scenario_2_emissions_job_on_postgres_two_workers_split_the_work() {
    if let Ok(raw) = std::env::var(CHILD_ENV) {
        let mut b = [0u8; 1];
        std::io::Read::read_exact(&mut std::io::stdin(), &mut b).unwrap();
        let a = Args::parse(raw.split(SEP).map(str::to_owned)).unwrap();
        let summary = emissions::run(&a).unwrap();
        println!("\nSUMMARY {summary}");
        return;
    }
    if available(WORKERS_TEST).is_none() {
        return;
    }
    let schema = Schema::new();
    let dir = temp_dir("workers");
    let spec = job(&dir, &store_url(&schema)).join(&SEP.to_string());
    let exe = std::env::current_exe().unwrap();
    let mut workers: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&exe)
                .args(["--exact", WORKERS_TEST, "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, &spec)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for w in &mut workers {
        w.stdin.take().unwrap().write_all(b"g").unwrap();
    }
    let mut executed = 0;
    for w in workers {
        let out = w.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "worker failed:\n{stdout}");
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("SUMMARY ").map(|(_, r)| r.to_owned()))
            .unwrap_or_else(|| panic!("no summary:\n{stdout}"));
        let e: u64 = line
            .split(' ')
            .find_map(|p| p.strip_prefix("executed="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(line.starts_with("records=1991 "), "{line}");
        assert!(line.contains(" rejected=17 mismatched=3 "), "{line}");
        executed += e;
    }
    assert_eq!(executed, ACCEPTED, "each accepted record executed once");
    let entries = ledger::read(&dir.join("ledger.csv")).unwrap();
    let ids: std::collections::BTreeSet<_> = entries.iter().map(|e| &e.row.record_id).collect();
    assert_eq!(entries.len() as u64, ACCEPTED);
    assert_eq!(ids.len() as u64, ACCEPTED, "no record in the ledger twice");
    let _ = std::fs::remove_dir_all(&dir);
}
