//! The main job: a carbon-emissions batch over a real activity ledger with published emission
//! factors (US EPA 2025, UK DESNZ 2026, Google Cloud / Our World in Data via codecarbon), safe
//! to re-run, safe to crash, safe to run twice at once.
//!
//! ```sh
//! cargo run --release --example emissions_pipeline              # file store in target/emissions/store
//! cargo run --release --example emissions_pipeline              # again: executed=0, same report
//! cargo run --release --example emissions_pipeline -- --crash-after 100   # aborts mid-batch
//! cargo run --release --example emissions_pipeline -- --help          # every option and its default
//! cargo run --release --features redis --example emissions_pipeline -- --store redis://127.0.0.1:6379/5
//! cargo run --release --features postgres --example emissions_pipeline -- --store postgres://postgres@127.0.0.1:5432/test
//! ```
//!
//! Each ledger row is one idempotent operation keyed by its record id; the row's content is the
//! fingerprint (a reused id with other content is a fingerprint mismatch, an exact repeat is a
//! replay). The result is appended to `<out>/ledger.csv`, one fsync'd line per record id, inside
//! the idempotent call. The job ends with one summary line on stdout:
//! `records=N executed=E replayed=R rejected=B mismatched=M kg_co2e=T`.

mod emissions;

fn main() {
    std::process::exit(emissions::main_with(std::env::args().skip(1)));
}
