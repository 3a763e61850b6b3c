//! A small measuring harness: per-operation samples, interleaved between a floor and the paths
//! compared with it, medians and p90, ratios to the floor checked against the targets of issue
//! 17, and an SVG chart of medians.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// One measured row.
#[derive(Debug, Clone)]
pub struct Row {
    pub group: &'static str,
    pub name: &'static str,
    pub median: Duration,
    pub p90: Duration,
    /// `(ratio name, floor row name)`, when the row is compared with a floor.
    pub against: Option<(&'static str, &'static str)>,
    /// A throughput figure (operations per second) instead of a latency.
    pub ops_per_sec: Option<f64>,
}

/// Which way a target bounds its ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// Latency ratios: the product's median over the floor's, at most the value.
    AtMost,
    /// Throughput ratios: the product's operations per second over the floor's, at least it.
    AtLeast,
}

/// The targets (issue 17; the PostgreSQL and HTTP ones from earlier issues). Ratios without a
/// target are printed too, for information.
pub const TARGETS: &[(&str, Bound, f64)] = &[
    ("key_derivation_per_hash", Bound::AtMost, 1.25),
    ("memory_hit_per_hash", Bound::AtMost, 3.0),
    ("macro_hit_per_manual_hit", Bound::AtMost, 1.05),
    ("file_hit_per_read", Bound::AtMost, 1.5),
    ("redis_hit_sync_per_get", Bound::AtMost, 1.10),
    ("redis_hit_async_per_get", Bound::AtMost, 1.10),
    ("redis_miss_sync_per_set_nx", Bound::AtMost, 2.2),
    ("redis_miss_async_per_set_nx", Bound::AtMost, 2.2),
    ("redis_hit_busy_per_get", Bound::AtMost, 1.3),
    ("redis_hits_64_tasks_per_raw_get", Bound::AtLeast, 0.8),
    ("redis_misses_64_tasks_per_raw_set", Bound::AtLeast, 0.35),
    ("postgres_hit_per_select", Bound::AtMost, 1.2),
    ("postgres_miss_per_insert", Bound::AtMost, 2.5),
    ("http_layer_replay_loopback", Bound::AtMost, 1.3),
];

/// One operation of an interleaved measurement: its row name, the floor it is compared with
/// (`(ratio name, floor row name)`), and the operation.
pub type Op<'a> = (
    &'static str,
    Option<(&'static str, &'static str)>,
    &'a mut dyn FnMut(),
);

#[derive(Debug)]
pub struct Report {
    pub quick: bool,
    /// Only groups whose name starts with one of these run (all when empty).
    only: Vec<String>,
    rows: Vec<Row>,
    notes: Vec<String>,
    /// Ratios whose rows were skipped (no Redis, no PostgreSQL).
    skipped: Vec<&'static str>,
}

impl Report {
    pub fn new(quick: bool, only: Vec<String>) -> Self {
        Report {
            quick,
            only,
            rows: Vec::new(),
            notes: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// Whether the rows of `group` run in this invocation (`--only`).
    pub fn wants(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| group.starts_with(o.as_str()))
    }

    /// Samples to take per row.
    pub fn samples(&self) -> usize {
        if self.quick {
            300
        } else {
            2000
        }
    }

    /// The longest an interleaved measurement takes once it has 100 samples.
    pub fn budget(&self) -> Duration {
        Duration::from_secs(if self.quick { 2 } else { 8 })
    }

    pub fn note(&mut self, s: impl Into<String>) {
        let s = s.into();
        eprintln!("bench: {s}");
        self.notes.push(s);
    }

    /// Notes that the rows behind `ratios` were skipped, and why: each ratio is then printed as
    /// `ratio <name> skipped`.
    pub fn skip(&mut self, ratios: &[&'static str], why: impl Into<String>) {
        self.note(why);
        self.skipped.extend_from_slice(ratios);
    }

    /// Measures `op` alone: `batch` calls per sample (for operations under ~2 µs), the sample
    /// their mean.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub fn measure(
        &mut self,
        group: &'static str,
        name: &'static str,
        batch: usize,
        against: Option<(&'static str, &'static str)>,
        mut op: impl FnMut(),
    ) {
        self.interleaved(group, batch, &mut [(name, against, &mut op)]);
    }

    /// Measures `ops` sample by sample in turn (a floor and the paths compared with it see the
    /// same moments of a noisy machine): each sample is `batch` calls of one operation, and the
    /// order rotates from sample to sample. Slow operations (fsync, remote commits) stop early,
    /// after at least 100 samples, once the measurement took [`Report::budget`].
    pub fn interleaved(&mut self, group: &'static str, batch: usize, ops: &mut [Op<'_>]) {
        let batch = batch.max(1);
        let n = self.samples();
        for (_, _, op) in ops.iter_mut() {
            for _ in 0..(n / 20).max(10) * batch {
                op();
            }
        }
        let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(n); ops.len()];
        let started = Instant::now();
        for s in 0..n {
            if s >= 100 && started.elapsed() > self.budget() {
                break;
            }
            for k in 0..ops.len() {
                let i = (s + k) % ops.len();
                let op = &mut ops[i].2;
                let t = Instant::now();
                for _ in 0..batch {
                    op();
                }
                samples[i].push(t.elapsed() / batch as u32);
            }
        }
        for ((name, against, _), mut s) in ops.iter().zip(samples) {
            s.sort_unstable();
            let median = s[s.len() / 2];
            let p90 = s[(s.len() * 9 / 10).min(s.len() - 1)];
            self.rows.push(Row {
                group,
                name,
                median,
                p90,
                against: *against,
                ops_per_sec: None,
            });
            eprintln!("bench: {name}: median {median:?}, p90 {p90:?}");
        }
    }

    /// Records a throughput row.
    pub fn throughput(
        &mut self,
        group: &'static str,
        name: &'static str,
        ops_per_sec: f64,
        against: Option<(&'static str, &'static str)>,
    ) {
        self.rows.push(Row {
            group,
            name,
            median: Duration::ZERO,
            p90: Duration::ZERO,
            against,
            ops_per_sec: Some(ops_per_sec),
        });
        eprintln!("bench: {name}: {ops_per_sec:.0} ops/s");
    }

    fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.name == name)
    }

    /// `(ratio name, value)` for every row compared with a floor that was measured.
    pub fn ratios(&self) -> Vec<(&'static str, f64)> {
        let mut out = Vec::new();
        for r in &self.rows {
            let Some((ratio, floor)) = r.against else {
                continue;
            };
            let Some(f) = self.row(floor) else { continue };
            let v = match (r.ops_per_sec, f.ops_per_sec) {
                (Some(a), Some(b)) if b > 0.0 => a / b,
                (None, None) if !f.median.is_zero() => {
                    r.median.as_secs_f64() / f.median.as_secs_f64()
                }
                _ => continue,
            };
            out.push((ratio, v));
        }
        out
    }

    pub fn print(&self) {
        let ratios: BTreeMap<_, _> = self.ratios().into_iter().collect();
        println!();
        println!(
            "| group | path | median | p90 | vs floor | ratio |\n|---|---|---:|---:|---|---:|"
        );
        for r in &self.rows {
            let (vs, ratio) = match r.against {
                Some((ratio, floor)) => (
                    floor.to_string(),
                    ratios
                        .get(ratio)
                        .map(|v| format!("{v:.2}"))
                        .unwrap_or("-".into()),
                ),
                None => ("(floor)".to_string(), String::new()),
            };
            match r.ops_per_sec {
                Some(ops) => println!(
                    "| {} | {} | {:.0} ops/s | | {vs} | {ratio} |",
                    r.group, r.name, ops
                ),
                None => println!(
                    "| {} | {} | {} | {} | {vs} | {ratio} |",
                    r.group,
                    r.name,
                    fmt(r.median),
                    fmt(r.p90)
                ),
            }
        }
        println!();
        for n in &self.notes {
            println!("note: {n}");
        }
        for (name, v) in self.ratios() {
            match TARGETS.iter().find(|t| t.0 == name) {
                Some(&(_, bound, target)) => {
                    let (sign, met) = match bound {
                        Bound::AtMost => ("<=", v <= target),
                        Bound::AtLeast => (">=", v >= target),
                    };
                    let verdict = if met { "met" } else { "missed" };
                    println!("ratio {name} {v:.3} {sign} {target} {verdict}");
                }
                None => println!("ratio {name} {v:.3}"),
            }
        }
        for name in &self.skipped {
            println!("ratio {name} skipped");
        }
    }

    /// A horizontal bar chart of medians (log scale), grouped by store.
    pub fn write_svg(&self, path: &str) -> std::io::Result<()> {
        let rows: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.ops_per_sec.is_none())
            .collect();
        let (w, bar_h, left) = (900.0, 22.0, 300.0);
        let h = 60.0 + bar_h * rows.len() as f64;
        let max_ns = rows
            .iter()
            .map(|r| r.median.as_nanos() as f64)
            .fold(1.0, f64::max);
        let scale =
            |ns: f64| ((ns.max(1.0)).log10() / max_ns.log10().max(1.0)) * (w - left - 120.0);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            s,
            r#"<text x="10" y="20" font-size="14">Median latency per path (log scale; floors in grey)</text>"#
        );
        for (i, r) in rows.iter().enumerate() {
            let y = 40.0 + bar_h * i as f64;
            let ns = r.median.as_nanos() as f64;
            let color = if r.against.is_none() {
                "#9e9e9e"
            } else {
                "#1f77b4"
            };
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="end">{} / {}</text><rect x="{left}" y="{}" width="{:.1}" height="{}" fill="{color}"/><text x="{:.1}" y="{}">{}</text>"#,
                left - 8.0,
                y + 15.0,
                r.group,
                r.name,
                y + 3.0,
                scale(ns),
                bar_h - 6.0,
                left + scale(ns) + 6.0,
                y + 15.0,
                fmt(r.median)
            );
        }
        s.push_str("</svg>\n");
        if let Some(dir) = std::path::Path::new(path).parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, s)
    }
}

pub fn fmt(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 10_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{:.1} ms", ns as f64 / 1e6)
    }
}
