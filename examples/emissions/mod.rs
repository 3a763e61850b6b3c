//! The emissions job: every ledger row is one idempotent operation keyed by its record id.
//!
//! Shared by the example binary (`examples/emissions_pipeline.rs`) and the integration test
//! (`tests/emissions_job.rs`), which includes this module by path.

pub mod data;
pub mod ledger;
pub mod report;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use idempotency::{
    CallOptions, ConflictPolicy, ErrorKind, FingerprintPolicy, IdempotencyManager,
    IdempotentPipeline, Pipeline, StoreUrl,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use data::{evaluate, format_kg, ActivityRow, FactorTable, LedgerEntry, RowIssue};
use ledger::OutputLedger;

/// The job's settings (`--input`, `--factors`, `--out`, `--store`, `--crash-after`, `--lease-ms`).
#[derive(Debug, Clone)]
pub struct Args {
    /// The activity ledger (CSV).
    pub input: PathBuf,
    /// The emission factor table (CSV).
    pub factors: PathBuf,
    /// Where the output ledger, report, chart and errors file go.
    pub out: PathBuf,
    /// The store URL; `None`: `IDEMPOTENCY_URL`, else the file store in `<out>/store`.
    pub store: Option<String>,
    /// Abort the process right after the K-th ledger append (before its record completes).
    pub crash_after: Option<u64>,
    /// The lease of one row's call: how long a crashed worker's row blocks the others.
    pub lease: Duration,
}

impl Default for Args {
    fn default() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        Args {
            input: root.join("examples/data/activities_sample.csv"),
            factors: root.join("examples/data/emission_factors.csv"),
            out: root.join("target/emissions"),
            store: None,
            crash_after: None,
            lease: Duration::from_secs(10),
        }
    }
}

/// The job's command line (clap). Every option has a default, printed by `--help`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "emissions_pipeline",
    about = "The emissions batch: kg CO2e per ledger row, each row one idempotent operation \
             keyed by its record id; safe to re-run, to crash and to run twice at once.",
    after_help = "Prints one summary line on stdout: \
                  records=N executed=E replayed=R rejected=B mismatched=M kg_co2e=T.\n\
                  Exit codes: 0 done; 1 the job failed; 2 a usage error."
)]
struct Cli {
    /// The activity ledger (CSV).
    #[arg(long, value_name = "CSV", default_value_os_t = Args::default().input)]
    input: PathBuf,
    /// The emission factor table (CSV).
    #[arg(long, value_name = "CSV", default_value_os_t = Args::default().factors)]
    factors: PathBuf,
    /// Where the output ledger, report, chart and errors file go (and the default store).
    #[arg(long, value_name = "DIR", default_value_os_t = Args::default().out)]
    out: PathBuf,
    /// The idempotency store: `file:///path`, `memory://`, `redis://host:port/db` (feature
    /// `redis`). [default: the IDEMPOTENCY_URL environment variable, else file://<out>/store]
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Abort the process right after the K-th ledger append of this run, before its record
    /// completes (to try crash-and-resume). [default: never]
    #[arg(long, value_name = "K")]
    crash_after: Option<u64>,
    /// The lease of one row's call, in milliseconds: how long a crashed worker's row blocks
    /// the others.
    #[arg(long, value_name = "MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    lease_ms: u64,
}

impl Args {
    /// Parses command-line arguments (without the program name). `Err` is clap's error:
    /// `--help` (print it to stdout, exit 0) or a usage error naming the unknown option or
    /// stray argument (print it to stderr, exit 2); [`clap::Error::print`] and
    /// [`clap::Error::exit_code`] do both.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, clap::Error> {
        use clap::Parser as _;
        let cli =
            Cli::try_parse_from(std::iter::once("emissions_pipeline".to_owned()).chain(args))?;
        Ok(Args {
            input: cli.input,
            factors: cli.factors,
            out: cli.out,
            store: cli.store,
            crash_after: cli.crash_after,
            lease: Duration::from_millis(cli.lease_ms),
        })
    }

    /// The store URL this job uses.
    pub fn store_url(&self) -> String {
        match (&self.store, std::env::var(StoreUrl::ENV)) {
            (Some(url), _) => url.clone(),
            (None, Ok(url)) if !url.trim().is_empty() => url,
            _ => format!("file://{}", self.out.join("store").display()),
        }
    }
}

/// The job's counts. `executed + replayed + rejected + mismatched == records`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Data rows read.
    pub records: u64,
    /// Rows whose call ran here (including takeovers of a crashed worker's row).
    pub executed: u64,
    /// Rows whose stored result was replayed (earlier run, other worker, exact repeat).
    pub replayed: u64,
    /// Rows rejected by validation before any idempotent call.
    pub rejected: u64,
    /// Rows whose record id was already used with different content.
    pub mismatched: u64,
    /// Of `executed`: takeovers of an expired lease (a crashed worker's row).
    pub takeovers: u64,
    /// Total kg CO2e of the accepted records (each record id once), in mg.
    pub co2e_mg: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "records={} executed={} replayed={} rejected={} mismatched={} kg_co2e={}",
            self.records,
            self.executed,
            self.replayed,
            self.rejected,
            self.mismatched,
            format_kg(self.co2e_mg, 3)
        )
    }
}

/// Why the job stopped.
pub type JobError = String;

/// What one row's call can fail with. Bad input never reaches the call (it is rejected before),
/// so `Invalid` only guards against a factor table changed under a running job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RowError {
    /// The row did not validate (permanent: stored and replayed).
    Invalid(RowIssue),
    /// The output ledger could not be written (transient: the claim is released).
    Ledger(String),
}

/// One row of the emissions batch as a [`Pipeline`]: compute kg CO2e from the matching
/// factor and append it to the output ledger, exactly once per record id.
pub struct EmissionsRow<'a> {
    factors: &'a FactorTable,
    ledger: Mutex<OutputLedger>,
    lease: Duration,
    appended: AtomicU64,
    crash_after: Option<u64>,
}

impl Pipeline for EmissionsRow<'_> {
    const NAME: &'static str = "emissions::row";
    type Input = ActivityRow;
    type Output = LedgerEntry;
    type Error = RowError;

    fn ttl(&self) -> Option<Duration> {
        // The dedup window of the batch: re-runs within 30 days execute nothing.
        Some(Duration::from_secs(30 * 24 * 3600))
    }

    fn call_options(&self) -> CallOptions {
        CallOptions {
            fingerprint: Some(FingerprintPolicy::Reject),
            pending_timeout: Some(self.lease),
            ..CallOptions::default()
        }
    }

    fn is_transient(&self, error: &RowError) -> bool {
        matches!(error, RowError::Ledger(_))
    }

    fn run(&self, row: &ActivityRow) -> Result<LedgerEntry, RowError> {
        let entry = evaluate(row, self.factors).map_err(RowError::Invalid)?;
        let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        // A takeover after a crash between the append and the record's completion: the line
        // is already there, so the side effect is not repeated.
        let ledger_error = |e: std::io::Error| RowError::Ledger(e.to_string());
        if let Some(existing) = ledger.get(&row.record_id).map_err(ledger_error)? {
            return Ok(existing.clone());
        }
        ledger
            .append(&entry)
            .map_err(|e| RowError::Ledger(format!("{}: {e}", ledger.path().display())))?;
        let n = self.appended.fetch_add(1, Ordering::SeqCst) + 1;
        if self.crash_after == Some(n) {
            eprintln!("emissions: --crash-after {n}: aborting after the ledger append, before the record completes");
            std::process::abort();
        }
        Ok(entry)
    }
}

/// The whole program: parses `args` (without the program name), runs the job, prints the
/// summary line (stdout) or the error (stderr), and returns the exit code: 0 done, 1 the job
/// failed, 2 a usage error; `--help` prints every option with its default and returns 0.
pub fn main_with(args: impl IntoIterator<Item = String>) -> i32 {
    let args = match Args::parse(args) {
        Ok(a) => a,
        Err(e) => return usage_error(&e),
    };
    match run(&args) {
        Ok(summary) => {
            println!("{summary}");
            0
        }
        Err(e) => {
            eprintln!("emissions: error: {e}");
            1
        }
    }
}

/// Prints a parse error (or `--help`) and returns its exit code. An unexpected argument is
/// named for what it is: an unknown option (`--frobnicate`) or a stray argument (`report`).
fn usage_error(e: &clap::Error) -> i32 {
    use clap::error::{ContextKind, ContextValue, ErrorKind as Kind};
    if e.kind() == Kind::UnknownArgument {
        if let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) {
            let what = if arg.starts_with('-') {
                format!("unknown option `{arg}`")
            } else {
                format!(
                    "stray argument `{arg}`: this job takes no positional arguments (every \
                     setting is an option, `--name value`)"
                )
            };
            let rendered = e.render().to_string();
            let rest = rendered.split_once('\n').map_or("", |(_, r)| r);
            eprint!("error: {what}\n{rest}");
            return 2;
        }
    }
    let _ = e.print();
    e.exit_code()
}

/// Runs the job against the store named by `args` (see [`Args::store_url`]).
pub fn run(args: &Args) -> Result<Summary, JobError> {
    let url = args.store_url();
    let manager = StoreUrl::parse(&url)
        .and_then(|u| u.open_manager())
        .map_err(|e| store_error(&url, &e))?;
    eprintln!("emissions: store {url}");
    run_with_manager(args, manager)
}

/// Why the store did not open; for a Redis URL without the `redis` feature, the command that
/// runs this job with it.
fn store_error(url: &str, e: &idempotency::Error) -> String {
    let redis =
        url.trim_start().starts_with("redis://") || url.trim_start().starts_with("rediss://");
    if redis && e.kind() == ErrorKind::Config && !cfg!(feature = "redis") {
        let feature = if url.trim_start().starts_with("rediss://") {
            "redis-tls"
        } else {
            "redis"
        };
        return format!(
            "store `{url}`: this build has no Redis store (the `{feature}` feature is off); run:\n  \
             cargo run --release --features {feature} --example emissions_pipeline -- --store {url}"
        );
    }
    format!("store `{url}`: {e}")
}

struct Progress {
    bar: ProgressBar,
    plain: bool,
}

impl Progress {
    fn new(len: u64) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(len);
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len} rows {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            Progress { bar, plain: false }
        } else {
            Progress {
                bar: ProgressBar::hidden(),
                plain: true,
            }
        }
    }
    fn tick(&self, done: u64, total: u64, s: &Summary) {
        self.bar.set_position(done);
        if self.plain && (done % 500 == 0 || done == total) {
            eprintln!(
                "emissions: {done}/{total} rows (executed={} replayed={} rejected={} mismatched={})",
                s.executed, s.replayed, s.rejected, s.mismatched
            );
        }
    }
}

/// Runs the job against `manager`'s store.
pub fn run_with_manager(args: &Args, manager: IdempotencyManager) -> Result<Summary, JobError> {
    let factors = FactorTable::load(&args.factors)?;
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let ledger_path = args.out.join("ledger.csv");
    let ledger =
        OutputLedger::open(&ledger_path).map_err(|e| format!("{}: {e}", ledger_path.display()))?;

    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(&args.input)
        .map_err(|e| format!("{}: {e}", args.input.display()))?;
    let mut rows: Vec<(u64, Result<ActivityRow, RowIssue>)> = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| format!("{}: {e}", args.input.display()))?;
        let line = rec.position().map_or(0, |p| p.line());
        rows.push((line, ActivityRow::from_record(&rec)));
    }

    eprintln!(
        "emissions: {} rows from {}, {} factors from {}",
        rows.len(),
        args.input.display(),
        factors.len(),
        args.factors.display()
    );
    let pipeline = IdempotentPipeline::new(
        EmissionsRow {
            factors: &factors,
            ledger: Mutex::new(ledger),
            lease: args.lease,
            appended: AtomicU64::new(0),
            crash_after: args.crash_after,
        },
        manager,
    );
    let mut summary = Summary {
        records: rows.len() as u64,
        ..Summary::default()
    };
    let mut accepted: HashMap<String, LedgerEntry> = HashMap::new();
    let mut errors: BTreeMap<u64, (String, RowIssue)> = BTreeMap::new();
    let progress = Progress::new(summary.records);
    let total = summary.records;
    let mut done = 0;

    // Pass 1 skips rows another worker holds (reject on conflict), so two workers leapfrog
    // and split the batch; pass 2 waits for those rows to finish and replays them.
    let mut deferred = Vec::new();
    for (line, row) in &rows {
        let row = match row
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|r| validate(r, &factors))
        {
            Ok(r) => r,
            Err(issue) => {
                let id = row.as_ref().map_or(String::new(), |r| r.record_id.clone());
                errors.insert(*line, (id, issue));
                summary.rejected += 1;
                done += 1;
                progress.tick(done, total, &summary);
                continue;
            }
        };
        let call = pipeline
            .call_with_key(&row.record_id, row)
            .map_err(|e| format!("line {line}: {e}"))?
            .on_conflict(ConflictPolicy::Reject);
        match pipeline.execute_call(&call, row) {
            Err(e) if e.kind() == ErrorKind::InProgress => {
                deferred.push((*line, row));
                continue;
            }
            r => record(r, *line, row, &mut summary, &mut accepted, &mut errors)?,
        }
        done += 1;
        progress.tick(done, total, &summary);
    }
    for (line, row) in deferred {
        let timeout = args.lease * 3 + Duration::from_secs(5);
        let call = pipeline
            .call_with_key(&row.record_id, row)
            .map_err(|e| format!("line {line}: {e}"))?
            .on_conflict(ConflictPolicy::Wait { timeout });
        let waiting = log_wait(&pipeline, &call, line, &row.record_id, timeout);
        let r = pipeline.execute_call(&call, row);
        if let Some(started) = waiting {
            eprintln!(
                "emissions: line {line} (record id `{}`): waited {:.1}s for the other worker's lease",
                row.record_id,
                started.elapsed().as_secs_f64()
            );
        }
        record(r, line, row, &mut summary, &mut accepted, &mut errors)?;
        done += 1;
        progress.tick(done, total, &summary);
    }
    progress.bar.finish_and_clear();
    if let Some(k) = args.crash_after {
        crash_not_reached(args, k, pipeline.pipeline().appended.load(Ordering::SeqCst));
    }

    summary.co2e_mg = accepted.values().map(|e| e.co2e_mg).sum();
    let totals = report::totals(accepted.values());
    let write = |name: &str, text: &str| {
        let path = args.out.join(name);
        report::write_atomic(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write("report.csv", &report::report_csv(&totals))?;
    write("report.svg", &report::chart_svg(&totals))?;
    write(
        "errors.csv",
        &report::errors_csv(&errors).map_err(|e| e.to_string())?,
    )?;
    if summary.takeovers > 0 {
        eprintln!(
            "emissions: took over {} row(s) left pending by a crashed worker",
            summary.takeovers
        );
    }
    eprintln!(
        "emissions: wrote {0}/ledger.csv, {0}/report.csv, {0}/report.svg, {0}/errors.csv",
        args.out.display()
    );
    Ok(summary)
}

/// Logs the wait on a row another worker holds: which row, until when its lease runs, and how
/// long this run waits at most. Returns when the wait started (`None`: not held any more).
fn log_wait(
    pipeline: &IdempotentPipeline<EmissionsRow<'_>>,
    call: &idempotency::Call,
    line: u64,
    record_id: &str,
    timeout: Duration,
) -> Option<std::time::Instant> {
    let info = pipeline.status_of(call).ok()?.record?;
    if info.status != idempotency::RecordStatus::Pending {
        return None;
    }
    eprintln!(
        "emissions: line {line} (record id `{record_id}`) is held by another worker (a crashed \
         one, if it never finishes): waiting {:.1}s for its lease to end (at most {}s)",
        info.time_to_live.as_secs_f64(),
        timeout.as_secs()
    );
    Some(std::time::Instant::now())
}

/// `--crash-after K` when this run appended fewer than K ledger lines, so it never crashed:
/// says so, and how to start fresh.
fn crash_not_reached(args: &Args, k: u64, appended: u64) {
    let what = if appended == 0 {
        "nothing ran: every row is already done in the store".to_owned()
    } else {
        format!("only {appended} row(s) ran; every other row is already done in the store")
    };
    let fresh = if args.store.is_none() && std::env::var(StoreUrl::ENV).is_err() {
        "pass a new --out DIR (the store lives in <out>/store)".to_owned()
    } else {
        "pass a new --out DIR and an empty store (--store)".to_owned()
    };
    eprintln!(
        "emissions: --crash-after {k}: did not crash: {what} `{}` (rows are done once per record \
         id for 30 days). To start fresh, {fresh}.",
        args.store_url()
    );
}

/// The pre-call check: a row that does not validate is rejected here, never cached, so its
/// record id stays free for a corrected row. `evaluate` runs again inside the call.
fn validate<'r>(row: &'r ActivityRow, factors: &FactorTable) -> Result<&'r ActivityRow, RowIssue> {
    evaluate(row, factors).map(|_| row)
}

fn record(
    result: idempotency::PipelineResult<EmissionsRow<'_>>,
    line: u64,
    row: &ActivityRow,
    summary: &mut Summary,
    accepted: &mut HashMap<String, LedgerEntry>,
    errors: &mut BTreeMap<u64, (String, RowIssue)>,
) -> Result<(), JobError> {
    match result {
        Ok(outcome) => {
            let replayed = outcome.is_replayed();
            let takeover = outcome.provenance.takeover;
            match outcome.value {
                Ok(entry) => {
                    if replayed {
                        summary.replayed += 1;
                    } else {
                        summary.executed += 1;
                        summary.takeovers += u64::from(takeover);
                    }
                    accepted.insert(entry.row.record_id.clone(), entry);
                    Ok(())
                }
                Err(RowError::Invalid(issue)) => {
                    summary.rejected += 1;
                    errors.insert(line, (row.record_id.clone(), issue));
                    Ok(())
                }
                Err(RowError::Ledger(e)) => Err(format!("line {line}: output ledger: {e}")),
            }
        }
        Err(e) if e.kind() == ErrorKind::FingerprintMismatch => {
            summary.mismatched += 1;
            let issue = RowIssue::new(
                "conflicting_duplicate_record_id",
                format!(
                    "record id `{}` was already used with different content (quantity here: {})",
                    row.record_id, row.quantity
                ),
            );
            errors.insert(line, (row.record_id.clone(), issue));
            Ok(())
        }
        Err(e) => Err(format!("line {line} (`{}`): {e}", row.record_id)),
    }
}
