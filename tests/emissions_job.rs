//! The main job (`examples/emissions_pipeline.rs`) end to end: counts against the data
//! manifest, a second run that executes nothing, crash-and-resume, and two workers at once.
//! The output ledger is checked record by record against the input file and its manifest of bad
//! rows (`examples/data/activities_bad_rows.csv`), independently of the job's own validation.
//!
//! Cross-process cases re-exec this test binary: the child runs `child_process_role`, which
//! does nothing unless `EMISSIONS_CHILD_ARGS` is set.

#[allow(dead_code)]
#[path = "../examples/emissions/mod.rs"]
mod emissions;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use emissions::data::format_kg;
use emissions::{ledger, Args, Summary};
use idempotency::{IdempotencyManager, MemoryStorage};

const CHILD_ARGS: &str = "EMISSIONS_CHILD_ARGS";
const CHILD_WAIT: &str = "EMISSIONS_CHILD_WAIT_STDIN";
const SEP: char = '\u{1f}';

/// Valid rows: 1991 data rows minus 20 bad rows (the 3 exact replays are accepted once).
const ACCEPTED: u64 = 1968;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "idempotency-emissions-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn store_url(&self) -> String {
        format!("file://{}", self.0.join("store").display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn args(out: &Path, extra: &[&str]) -> Args {
    let mut v = vec!["--out".to_owned(), out.display().to_string()];
    v.extend(extra.iter().map(|s| (*s).to_owned()));
    Args::parse(v).unwrap()
}

/// The rows the job must accept, from the input file and the manifest alone: every row whose
/// line is not listed as bad, once per record id (its first occurrence).
fn expected_records() -> BTreeMap<String, Vec<String>> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data");
    let mut manifest = csv::Reader::from_path(data.join("activities_bad_rows.csv")).unwrap();
    let bad: BTreeSet<u64> = manifest
        .records()
        .map(|r| r.unwrap())
        .filter(|r| &r[2] != "exact_duplicate_replay")
        .map(|r| r[0].parse().unwrap())
        .collect();
    assert_eq!(bad.len(), 20);
    let mut input = csv::Reader::from_path(data.join("activities_sample.csv")).unwrap();
    let mut out = BTreeMap::new();
    for rec in input.records() {
        let rec = rec.unwrap();
        let line = rec.position().unwrap().line();
        if bad.contains(&line) {
            continue;
        }
        let fields: Vec<String> = rec.iter().map(str::to_owned).collect();
        if let Some(first) = out.get(&fields[0]) {
            assert_eq!(first, &fields, "a replay must be byte-identical");
            continue;
        }
        out.insert(fields[0].clone(), fields);
    }
    out
}

/// Checks the output ledger record by record: every accepted record exactly once, nothing
/// else, each with the content of its input row and a factor.
fn check_ledger(out: &Path) {
    let entries = ledger::read(&out.join("ledger.csv")).unwrap();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for e in &entries {
        *counts.entry(e.row.record_id.as_str()).or_default() += 1;
    }
    let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "duplicated in the ledger: {duplicates:?}"
    );
    let expected = expected_records();
    let missing: Vec<_> = expected
        .keys()
        .filter(|id| !counts.contains_key(id.as_str()))
        .collect();
    assert!(missing.is_empty(), "missing from the ledger: {missing:?}");
    for e in &entries {
        let want = expected
            .get(&e.row.record_id)
            .unwrap_or_else(|| panic!("unexpected record {} in the ledger", e.row.record_id));
        let r = &e.row;
        let got = [
            &r.record_id,
            &r.org_id,
            &r.facility,
            &r.period,
            &r.activity,
            &r.quantity,
            &r.unit,
        ];
        assert_eq!(got.as_slice(), want.iter().collect::<Vec<_>>().as_slice());
        assert!(!e.factor_id.is_empty());
    }
    assert_eq!(entries.len() as u64, ACCEPTED);
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The report of a clean single run on a fresh memory store.
fn reference_report() -> (String, Summary) {
    let dir = TempDir::new("reference");
    let manager = IdempotencyManager::new(MemoryStorage::new());
    let summary = emissions::run_with_manager(&args(&dir.0, &[]), manager).unwrap();
    (read(dir.0.join("report.csv")), summary)
}

fn parse_summary(stdout: &str) -> Summary {
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("SUMMARY ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no summary in child output:\n{stdout}"));
    let kv: HashMap<&str, &str> = line.split(' ').filter_map(|p| p.split_once('=')).collect();
    let n = |k: &str| kv[k].parse::<u64>().unwrap();
    let kg = emissions::data::parse_decimal(kv["kg_co2e"], 6).unwrap();
    Summary {
        records: n("records"),
        executed: n("executed"),
        replayed: n("replayed"),
        rejected: n("rejected"),
        mismatched: n("mismatched"),
        takeovers: 0,
        co2e_mg: u64::try_from(kg).unwrap(),
    }
}

fn child(job_args: &[String], wait_for_stdin: bool) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "child_process_role",
        "--exact",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env(CHILD_ARGS, job_args.join(&SEP.to_string()))
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    if wait_for_stdin {
        cmd.env(CHILD_WAIT, "1").stdin(Stdio::piped());
    }
    cmd
}

/// The child side of the cross-process tests: runs the job with the given arguments.
#[test]
fn child_process_role() {
    let Ok(raw) = std::env::var(CHILD_ARGS) else {
        return;
    };
    if std::env::var(CHILD_WAIT).is_ok() {
        // A start barrier: the parent writes one byte to every child at once.
        let mut b = [0u8; 1];
        std::io::stdin().read_exact(&mut b).unwrap();
    }
    let job = Args::parse(raw.split(SEP).map(str::to_owned)).unwrap();
    let summary = emissions::run(&job).unwrap();
    println!("SUMMARY {summary}");
}

#[test]
fn emissions_job_counts_match_the_manifest_and_a_second_run_executes_nothing() {
    let dir = TempDir::new("memory");
    let manager = IdempotencyManager::new(MemoryStorage::new());
    let a = args(&dir.0, &[]);
    let first = emissions::run_with_manager(&a, manager.clone()).unwrap();
    assert_eq!(
        (
            first.records,
            first.executed,
            first.replayed,
            first.rejected,
            first.mismatched
        ),
        (1991, ACCEPTED, 3, 17, 3)
    );
    check_ledger(&dir.0);
    let ledger_before = read(dir.0.join("ledger.csv"));
    let report = read(dir.0.join("report.csv"));
    let errors = read(dir.0.join("errors.csv"));

    // Every bad row of the manifest is in the errors file with its issue code, and nothing else.
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data");
    let mut manifest = csv::Reader::from_path(data.join("activities_bad_rows.csv")).unwrap();
    let want: BTreeSet<(String, String, String)> = manifest
        .records()
        .map(|r| r.unwrap())
        .filter(|r| &r[2] != "exact_duplicate_replay")
        .map(|r| (r[0].to_owned(), r[1].to_owned(), r[2].to_owned()))
        .collect();
    let mut got_rdr = csv::Reader::from_reader(errors.as_bytes());
    let got: BTreeSet<(String, String, String)> = got_rdr
        .records()
        .map(|r| r.unwrap())
        .map(|r| (r[0].to_owned(), r[1].to_owned(), r[2].to_owned()))
        .collect();
    assert_eq!(got, want);

    // The summary's total is the sum of the ledger.
    let ledger_mg: u64 = ledger::read(&dir.0.join("ledger.csv"))
        .unwrap()
        .iter()
        .map(|e| e.co2e_mg)
        .sum();
    assert_eq!(first.co2e_mg, ledger_mg);

    let second = emissions::run_with_manager(&a, manager).unwrap();
    assert_eq!(second.executed, 0);
    assert_eq!(second.replayed, ACCEPTED + 3);
    assert_eq!((second.rejected, second.mismatched), (17, 3));
    assert_eq!(second.co2e_mg, first.co2e_mg);
    assert_eq!(read(dir.0.join("report.csv")), report);
    assert_eq!(read(dir.0.join("errors.csv")), errors);
    assert_eq!(read(dir.0.join("ledger.csv")), ledger_before);
}

#[test]
fn emissions_job_on_the_file_store_second_run_executes_nothing() {
    let dir = TempDir::new("file");
    let a = args(&dir.0, &["--store", &dir.store_url()]);
    let first = emissions::run(&a).unwrap();
    assert_eq!(first.executed, ACCEPTED);
    let report = read(dir.0.join("report.csv"));
    let svg = read(dir.0.join("report.svg"));
    // A new run opens the store afresh, as a new process would.
    let second = emissions::run(&a).unwrap();
    assert_eq!(second.executed, 0);
    assert_eq!(second.replayed, ACCEPTED + 3);
    assert_eq!(second.co2e_mg, first.co2e_mg);
    assert_eq!(read(dir.0.join("report.csv")), report);
    assert_eq!(read(dir.0.join("report.svg")), svg);
    assert_eq!(report, reference_report().0);
    check_ledger(&dir.0);
}

#[test]
fn scenario_10_emissions_job_crash_and_resume_appends_every_record_once() {
    let dir = TempDir::new("crash");
    let crash_after = 100;
    let job: Vec<String> = [
        "--out",
        &dir.0.display().to_string(),
        "--store",
        &dir.store_url(),
        "--lease-ms",
        "300",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut crashing = job.clone();
    crashing.extend(["--crash-after".to_owned(), crash_after.to_string()]);
    let out = child(&crashing, false).output().unwrap();
    assert!(!out.status.success(), "the child must abort");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("SUMMARY"), "the child finished: {stdout}");
    // The crash hit after the 100th append, before its record completed.
    let partial = ledger::read(&dir.0.join("ledger.csv")).unwrap();
    assert_eq!(partial.len(), crash_after);

    let resumed = emissions::run(&Args::parse(job.clone()).unwrap()).unwrap();
    // 99 records completed before the crash and replay; the 100th is taken over once its
    // lease ends, and finds its ledger line already written.
    assert_eq!(resumed.executed, ACCEPTED - (crash_after as u64 - 1));
    assert_eq!(resumed.takeovers, 1);
    assert_eq!(resumed.replayed, (crash_after as u64 - 1) + 3);
    check_ledger(&dir.0);

    let (reference, reference_summary) = reference_report();
    assert_eq!(read(dir.0.join("report.csv")), reference);
    assert_eq!(resumed.co2e_mg, reference_summary.co2e_mg);

    let again = emissions::run(&Args::parse(job).unwrap()).unwrap();
    assert_eq!(again.executed, 0);
    assert_eq!(read(dir.0.join("report.csv")), reference);
}

#[test]
fn scenario_2_emissions_job_two_workers_split_the_work() {
    let dir = TempDir::new("workers");
    let job: Vec<String> = [
        "--out",
        &dir.0.display().to_string(),
        "--store",
        &dir.store_url(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut workers: Vec<_> = (0..2).map(|_| child(&job, true).spawn().unwrap()).collect();
    for w in &mut workers {
        w.stdin.take().unwrap().write_all(b"g").unwrap();
    }
    let summaries: Vec<Summary> = workers
        .into_iter()
        .map(|w| {
            let out = w.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(out.status.success(), "worker failed:\n{stdout}");
            parse_summary(&stdout)
        })
        .collect();
    eprintln!(
        "two workers executed {} and {} records",
        summaries[0].executed, summaries[1].executed
    );
    // No record ran twice: together the workers executed each accepted record once.
    assert_eq!(summaries[0].executed + summaries[1].executed, ACCEPTED);
    let (reference, reference_summary) = reference_report();
    for s in &summaries {
        assert_eq!(s.records, 1991);
        assert_eq!(s.executed + s.replayed, ACCEPTED + 3);
        assert_eq!((s.rejected, s.mismatched), (17, 3));
        // The summary line prints kg to 3 places.
        assert_eq!(
            format_kg(s.co2e_mg, 3),
            format_kg(reference_summary.co2e_mg, 3)
        );
    }
    check_ledger(&dir.0);
    assert_eq!(read(dir.0.join("report.csv")), reference);
}

#[test]
fn scenario_10_emissions_job_worker_crash_is_taken_over_by_the_other_worker() {
    let dir = TempDir::new("workers-crash");
    let job: Vec<String> = [
        "--out",
        &dir.0.display().to_string(),
        "--store",
        &dir.store_url(),
        "--lease-ms",
        "300",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut crashing = job.clone();
    crashing.extend(["--crash-after".to_owned(), "20".to_owned()]);
    let mut workers = [
        child(&crashing, true).spawn().unwrap(),
        child(&job, true).spawn().unwrap(),
    ];
    for w in &mut workers {
        w.stdin.take().unwrap().write_all(b"g").unwrap();
    }
    let [a, b] = workers.map(|w| w.wait_with_output().unwrap());
    assert!(!a.status.success(), "worker A must abort after 20 appends");
    let b_out = String::from_utf8_lossy(&b.stdout).into_owned();
    assert!(b.status.success(), "worker B failed:\n{b_out}");
    let survivor = parse_summary(&b_out);
    // B took over A's pending row once its lease ended; the row's ledger line, written by A
    // just before it crashed, is not written again.
    check_ledger(&dir.0);
    assert_eq!(survivor.executed + survivor.replayed, ACCEPTED + 3);
    assert_eq!(read(dir.0.join("report.csv")), reference_report().0);
}

// ---------------------------------------------------------------------------------------------
// The job's command line, as a user meets it: `--help`, unknown options and stray arguments,
// `--crash-after` when nothing runs, the log line of a wait on a crashed worker's lease, and a
// Redis URL in a build without the `redis` feature. The child runs the program's own entry
// point (`emissions::main_with`) and exits with its code.

const CLI_ARGS: &str = "EMISSIONS_CLI_ARGS";

/// The child side: the whole program with the given arguments.
#[test]
fn cli_process_role() {
    let Ok(raw) = std::env::var(CLI_ARGS) else {
        return;
    };
    let args: Vec<String> = if raw.is_empty() {
        Vec::new()
    } else {
        raw.split(SEP).map(str::to_owned).collect()
    };
    std::process::exit(emissions::main_with(args));
}

struct Program {
    code: i32,
    stdout: String,
    stderr: String,
}

fn program(args: &[&str]) -> Program {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "cli_process_role",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CLI_ARGS, args.join(&SEP.to_string()))
        .env_remove("IDEMPOTENCY_URL")
        .output()
        .unwrap();
    Program {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A small input: the header and the first `rows` data rows of the sample ledger.
fn small_input(dir: &Path, rows: usize) -> PathBuf {
    let sample =
        read(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/activities_sample.csv"));
    let text: String = sample
        .lines()
        .take(rows + 1)
        .map(|l| format!("{l}\n"))
        .collect();
    let path = dir.join("input.csv");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn main_job_help_prints_every_option_with_its_default_and_exits_0() {
    let p = program(&["--help"]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    for option in [
        "--input",
        "--factors",
        "--out",
        "--store",
        "--crash-after",
        "--lease-ms",
    ] {
        let line = p
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(option))
            .unwrap_or_else(|| panic!("{option} missing from --help:\n{}", p.stdout));
        assert!(
            line.contains("[default: "),
            "{option} has no default: {line}"
        );
    }
    assert!(p.stdout.contains("[default: 10000]"), "{}", p.stdout);
    assert!(p.stdout.contains("activities_sample.csv"), "{}", p.stdout);
    assert!(!p.stderr.contains("error"), "{}", p.stderr);
}

#[test]
fn main_job_names_unknown_options_and_stray_arguments() {
    let p = program(&["--frobnicate", "1"]);
    assert_eq!(p.code, 2);
    assert!(
        p.stderr.contains("unknown option `--frobnicate`"),
        "{}",
        p.stderr
    );
    // Once "needs a value": an unknown flag is unknown, with or without a value after it.
    let p = program(&["--frobnicate"]);
    assert_eq!(p.code, 2);
    assert!(
        p.stderr.contains("unknown option `--frobnicate`"),
        "{}",
        p.stderr
    );
    assert!(!p.stderr.contains("needs a value"), "{}", p.stderr);
    let p = program(&["report"]);
    assert_eq!(p.code, 2);
    assert!(p.stderr.contains("stray argument `report`"), "{}", p.stderr);
    let p = program(&["--out", "/tmp/x", "extra"]);
    assert_eq!(p.code, 2);
    assert!(p.stderr.contains("stray argument `extra`"), "{}", p.stderr);
    // A known option without its value says so.
    let p = program(&["--lease-ms"]);
    assert_eq!(p.code, 2);
    assert!(p.stderr.contains("--lease-ms"), "{}", p.stderr);
    let p = program(&["--lease-ms", "0"]);
    assert_eq!(p.code, 2, "a lease of 0 ms is refused: {}", p.stderr);
}

#[test]
fn main_job_crash_after_when_nothing_runs_says_so_and_how_to_start_fresh() {
    let dir = TempDir::new("crash-nothing");
    let input = small_input(&dir.0, 4);
    let input = input.display().to_string();
    let out = dir.0.display().to_string();
    let first = program(&["--input", &input, "--out", &out]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        first.stdout.contains("records=4 executed=4"),
        "{}",
        first.stdout
    );

    let again = program(&["--input", &input, "--out", &out, "--crash-after", "100"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stdout.contains("executed=0 replayed=4"),
        "{}",
        again.stdout
    );
    assert!(
        again
            .stderr
            .contains("--crash-after 100: did not crash: nothing ran"),
        "{}",
        again.stderr
    );
    assert!(again.stderr.contains("new --out DIR"), "{}", again.stderr);
    assert!(again.stderr.contains(&dir.store_url()), "{}", again.stderr);

    // Following the advice crashes as asked.
    let fresh = dir.0.join("fresh").display().to_string();
    let crash = program(&["--input", &input, "--out", &fresh, "--crash-after", "2"]);
    assert_ne!(crash.code, 0, "{}", crash.stderr);
    assert!(
        crash.stderr.contains("--crash-after 2: aborting"),
        "{}",
        crash.stderr
    );
}

#[test]
fn main_job_waiting_on_a_crashed_workers_lease_logs_the_row_and_how_long() {
    let dir = TempDir::new("crash-wait");
    let input = small_input(&dir.0, 3);
    let input = input.display().to_string();
    let out = dir.0.display().to_string();
    let lease = ["--lease-ms", "800"];
    let mut crashing = vec!["--input", &input, "--out", &out, "--crash-after", "1"];
    crashing.extend(lease);
    let crash = program(&crashing);
    assert_ne!(crash.code, 0, "{}", crash.stderr);

    let mut resume = vec!["--input", &input, "--out", &out];
    resume.extend(lease);
    let resumed = program(&resume);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    // Row 1 (file line 2) was left pending by the crashed run.
    let line = resumed
        .stderr
        .lines()
        .find(|l| l.contains("is held by another worker"))
        .unwrap_or_else(|| panic!("no wait logged:\n{}", resumed.stderr));
    assert!(
        line.contains("line 2 (record id `ACM-202401-00001`)"),
        "{line}"
    );
    assert!(
        line.contains("waiting") && line.contains("s for its lease to end"),
        "{line}"
    );
    assert!(
        resumed
            .stderr
            .contains("line 2 (record id `ACM-202401-00001`): waited "),
        "{}",
        resumed.stderr
    );
    assert!(
        resumed.stdout.contains("records=3 executed=3"),
        "{}",
        resumed.stdout
    );
}

#[test]
fn main_job_redis_store_without_the_feature_prints_the_command_that_works() {
    let dir = TempDir::new("redis-feature");
    let out = dir.0.display().to_string();
    // Port 1: nothing listens, so a build with the feature fails to connect instead.
    let p = program(&["--out", &out, "--store", "redis://127.0.0.1:1/0"]);
    assert_eq!(p.code, 1, "{}", p.stderr);
    if cfg!(feature = "redis") {
        assert!(!p.stderr.contains("--features redis"), "{}", p.stderr);
    } else {
        assert!(
            p.stderr.contains(
                "cargo run --release --features redis --example emissions_pipeline -- --store redis://127.0.0.1:1/0"
            ),
            "{}",
            p.stderr
        );
    }
}
