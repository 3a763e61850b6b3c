//! Outputs derived from the accepted records: the report (kg CO2e per org and period), a small
//! SVG chart, and the errors file. All are pure functions of their inputs (sorted maps), so a
//! re-run produces byte-identical files, and each is written atomically (temp file + rename).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::data::{format_kg, LedgerEntry, RowIssue};

/// kg CO2e (in mg) and record count per `(org_id, period)`.
pub type Totals = BTreeMap<(String, String), (u64, u64)>;

/// Sums accepted records (one entry per record id) per org and period.
pub fn totals<'a>(entries: impl IntoIterator<Item = &'a LedgerEntry>) -> Totals {
    let mut t = Totals::new();
    for e in entries {
        let slot = t
            .entry((e.row.org_id.clone(), e.row.period.clone()))
            .or_insert((0, 0));
        slot.0 += 1;
        slot.1 += e.co2e_mg;
    }
    t
}

/// The report CSV: `org_id,period,records,kg_co2e` sorted by org then period, kg to 3 places.
pub fn report_csv(totals: &Totals) -> String {
    let mut s = String::from("org_id,period,records,kg_co2e\n");
    for ((org, period), (n, mg)) in totals {
        let _ = writeln!(s, "{org},{period},{n},{}", format_kg(*mg, 3));
    }
    s
}

/// The errors CSV: `line,record_id,issue,detail`, sorted by line.
pub fn errors_csv(errors: &BTreeMap<u64, (String, RowIssue)>) -> io::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["line", "record_id", "issue", "detail"])?;
    for (line, (id, issue)) in errors {
        w.write_record([&line.to_string(), id, &issue.code, &issue.detail])?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| io::Error::other(e.to_string()))?;
    String::from_utf8(bytes).map_err(io::Error::other)
}

const COLOURS: [&str; 6] = [
    "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02",
];

/// A stacked bar chart of t CO2e per period, one colour per org, as a standalone SVG.
pub fn chart_svg(totals: &Totals) -> String {
    let mut orgs: Vec<&str> = totals.keys().map(|(o, _)| o.as_str()).collect();
    orgs.dedup();
    let mut periods: Vec<&str> = totals.keys().map(|(_, p)| p.as_str()).collect();
    periods.sort_unstable();
    periods.dedup();
    let per_period = |p: &str| -> u64 {
        totals
            .iter()
            .filter(|((_, q), _)| q == p)
            .map(|(_, (_, mg))| *mg)
            .sum()
    };
    let max_mg = periods
        .iter()
        .map(|p| per_period(p))
        .max()
        .unwrap_or(0)
        .max(1);
    // A "nice" axis maximum in tonnes: 1, 2 or 5 × 10^k.
    let max_t = max_mg as f64 / 1e9;
    let mut step = 10f64.powf((max_t / 5.0).log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if step * m * 5.0 >= max_t {
            step *= m;
            break;
        }
    }
    let axis_t = step * 5.0;
    let (w, h, left, right, top, bottom) = (900.0, 420.0, 70.0, 170.0, 40.0, 70.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let bar = plot_w / periods.len().max(1) as f64;
    let y = |t: f64| top + plot_h * (1.0 - t / axis_t);

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="22" font-size="14">Emissions per period (t CO2e), stacked by organisation</text>"#
    );
    for i in 0..=5 {
        let t = step * f64::from(i);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + plot_w,
            y(t),
            y(t),
            left - 6.0,
            y(t) + 4.0,
            trim_float(t)
        );
    }
    for (i, period) in periods.iter().enumerate() {
        let x = left + bar * i as f64;
        let mut base = 0.0;
        for (j, org) in orgs.iter().enumerate() {
            let mg = totals
                .get(&((*org).to_owned(), (*period).to_owned()))
                .map_or(0, |v| v.1);
            let t = mg as f64 / 1e9;
            let _ = writeln!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{org} {period}: {} kg CO2e</title></rect>"#,
                x + 1.0,
                y(base + t),
                (bar - 2.0).max(1.0),
                y(base) - y(base + t),
                COLOURS[j % COLOURS.len()],
                format_kg(mg, 3)
            );
            base += t;
        }
        if i % 3 == 0 {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" transform="rotate(45 {:.1} {:.1})">{period}</text>"#,
                x + 2.0,
                top + plot_h + 14.0,
                x + 2.0,
                top + plot_h + 14.0
            );
        }
    }
    for (j, org) in orgs.iter().enumerate() {
        let ly = top + 20.0 * j as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{ly:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}">{org}</text>"#,
            w - right + 20.0,
            COLOURS[j % COLOURS.len()],
            w - right + 38.0,
            ly + 10.0
        );
    }
    s.push_str("</svg>\n");
    s
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Writes `contents` to `path` atomically: a temp file named after this process, `fsync`,
/// then `rename` over the target. Two workers writing the same report never leave a mix.
pub fn write_atomic(path: &Path, contents: &str) -> io::Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}
