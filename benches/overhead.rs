//! `cargo bench --bench overhead`: every path of the framework measured against its physical
//! floor, in one run (see BENCHMARKS.md for how to read the output).
//!
//! Options (after `--`): `--quick` (fewer samples; also `BENCH_QUICK=1`), `--only <group>`
//! (repeatable: `core`, `memory`, `macro`, `file`, `redis`, `postgres`, `http`), and
//! `--callgrind <path> <iterations>` (one in-process path, for `benches/callgrind.sh`).
//!
//! Output: a table (median, p90, ratio of medians to the row's floor), then one machine-readable
//! line per ratio, `ratio <name> <value> [<= | >=] <target> met|missed` (or `ratio <name>
//! skipped`). Redis rows use `IDEMPOTENCY_REDIS_URL`, else a `redis-server` the bench starts on a
//! free loopback port, else they say why they were skipped. PostgreSQL rows use
//! `IDEMPOTENCY_POSTGRES_URL`, else `postgres://postgres@127.0.0.1:5432/test`, in a fresh schema
//! dropped afterwards.

#[path = "overhead/callgrind.rs"]
mod callgrind;
#[path = "overhead/harness.rs"]
mod harness;
#[cfg(feature = "http")]
#[path = "overhead/http_rows.rs"]
mod http_rows;
#[path = "overhead/paths.rs"]
mod paths;
#[path = "overhead/postgres_rows.rs"]
mod postgres_rows;
#[path = "overhead/redis_rows.rs"]
mod redis_rows;

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if let Some(i) = argv.iter().position(|a| a == "--callgrind") {
        let path = argv.get(i + 1).map(String::as_str).unwrap_or("");
        let iterations = argv.get(i + 2).and_then(|n| n.parse().ok()).unwrap_or(1000);
        if let Err(e) = callgrind::run(path, iterations) {
            eprintln!("bench: {e}");
            std::process::exit(2);
        }
        return;
    }
    let quick = argv.iter().any(|a| a == "--quick") || std::env::var_os("BENCH_QUICK").is_some();
    let only: Vec<String> = argv
        .windows(2)
        .filter(|w| w[0] == "--only")
        .map(|w| w[1].clone())
        .collect();
    let mut report = harness::Report::new(quick, only);
    paths::run_all(&mut report);
    #[cfg(feature = "http")]
    if report.wants("http") {
        http_rows::run(&mut report);
    }
    report.print();
    if let Err(e) = report.write_svg("target/bench/overhead.svg") {
        eprintln!("bench: could not write the chart: {e}");
    }
}
