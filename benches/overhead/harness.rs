//! A small measuring harness: per-operation samples, median and p99, ratios to a floor, and
//! an SVG chart of medians.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// One measured row.
#[derive(Debug, Clone)]
pub struct Row {
    pub group: &'static str,
    pub name: &'static str,
    pub median: Duration,
    pub p99: Duration,
    /// `(ratio name, floor row name)`, when the row is compared with a floor.
    pub against: Option<(&'static str, &'static str)>,
    /// A throughput figure (operations per second) instead of a latency.
    pub ops_per_sec: Option<f64>,
}

#[derive(Debug)]
pub struct Report {
    pub quick: bool,
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Report {
    pub fn new(quick: bool) -> Self {
        Report {
            quick,
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Samples to take per row.
    pub fn samples(&self) -> usize {
        if self.quick {
            300
        } else {
            3000
        }
    }

    pub fn note(&mut self, s: impl Into<String>) {
        let s = s.into();
        eprintln!("bench: {s}");
        self.notes.push(s);
    }

    /// Measures `op`, called once per sample; for operations under ~2 µs, `batch` calls are
    /// timed together and the sample is their mean.
    pub fn measure(
        &mut self,
        group: &'static str,
        name: &'static str,
        batch: usize,
        against: Option<(&'static str, &'static str)>,
        mut op: impl FnMut(),
    ) {
        let batch = batch.max(1);
        // Warm up.
        for _ in 0..(self.samples() / 10).max(10) * batch {
            op();
        }
        let mut samples = Vec::with_capacity(self.samples());
        for _ in 0..self.samples() {
            let t = Instant::now();
            for _ in 0..batch {
                op();
            }
            samples.push(t.elapsed() / batch as u32);
        }
        samples.sort_unstable();
        let median = samples[samples.len() / 2];
        let p99 = samples[(samples.len() * 99 / 100).min(samples.len() - 1)];
        self.rows.push(Row {
            group,
            name,
            median,
            p99,
            against,
            ops_per_sec: None,
        });
        eprintln!("bench: {name}: median {median:?}, p99 {p99:?}");
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
            p99: Duration::ZERO,
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
            "| group | path | median | p99 | vs floor | ratio |\n|---|---|---:|---:|---|---:|"
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
                    fmt(r.p99)
                ),
            }
        }
        println!();
        for n in &self.notes {
            println!("note: {n}");
        }
        for (name, v) in self.ratios() {
            println!("ratio {name} {v:.3}");
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
