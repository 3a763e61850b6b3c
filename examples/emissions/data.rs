//! Input data: the emission factor table, ledger rows, validation and exact fixed-point
//! arithmetic (quantity × factor, rounded to milligrams).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Decimal places kept for a quantity.
const QTY_DECIMALS: u32 = 6;
/// Decimal places kept for a factor (the table has at most 14).
const FACTOR_DECIMALS: u32 = 14;

/// One emission factor: kg CO2e per unit of activity, as an exact scaled integer.
#[derive(Debug, Clone)]
pub struct Factor {
    /// Stable id from the table (`epa2025.t1.diesel.gal_us`, ...).
    pub factor_id: String,
    /// kg CO2e per unit × 10^14.
    pub scaled: i128,
}

/// The factor table, keyed by `(activity, unit)`.
#[derive(Debug, Default)]
pub struct FactorTable {
    by_key: HashMap<(String, String), Factor>,
    activities: HashSet<String>,
    units: HashSet<String>,
}

impl FactorTable {
    /// Loads `emission_factors.csv` (columns `factor_id, activity, unit, ..., kg_co2e_per_unit`).
    pub fn load(path: &Path) -> Result<FactorTable, String> {
        let mut rdr =
            csv::Reader::from_path(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let headers = rdr.headers().map_err(|e| e.to_string())?.clone();
        let col = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| format!("{}: no `{name}` column", path.display()))
        };
        let (id, act, unit, kg) = (
            col("factor_id")?,
            col("activity")?,
            col("unit")?,
            col("kg_co2e_per_unit")?,
        );
        let mut table = FactorTable::default();
        for row in rdr.records() {
            let row = row.map_err(|e| format!("{}: {e}", path.display()))?;
            let field = |i: usize| row.get(i).unwrap_or("").to_owned();
            let scaled = parse_decimal(&field(kg), FACTOR_DECIMALS)
                .map_err(|e| format!("{}: factor `{}`: {e}", path.display(), field(id)))?;
            table.activities.insert(field(act));
            table.units.insert(field(unit));
            let key = (field(act), field(unit));
            let factor = Factor {
                factor_id: field(id),
                scaled,
            };
            if table.by_key.insert(key, factor).is_some() {
                return Err(format!(
                    "{}: duplicate (activity, unit) {} / {}",
                    path.display(),
                    field(act),
                    field(unit)
                ));
            }
        }
        Ok(table)
    }

    /// The number of factors.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }
}

/// One row of the activity ledger, exactly as read (all fields as strings). Its canonical
/// encoding is the fingerprint of the idempotent call keyed by `record_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityRow {
    /// The idempotency key.
    pub record_id: String,
    /// Organisation.
    pub org_id: String,
    /// Site, fleet or cloud project.
    pub facility: String,
    /// `YYYY-MM`.
    pub period: String,
    /// `fuel:<name>`, `electricity:...`, `cloud:gcp:<region>`.
    pub activity: String,
    /// Plain decimal string.
    pub quantity: String,
    /// Unit of the quantity.
    pub unit: String,
}

impl ActivityRow {
    /// Reads a row from CSV fields in the order of the file's header.
    pub fn from_record(rec: &csv::StringRecord) -> Result<ActivityRow, RowIssue> {
        if rec.len() != 7 {
            return Err(RowIssue::new(
                "malformed_row",
                format!("expected 7 fields, found {}", rec.len()),
            ));
        }
        let f = |i: usize| rec.get(i).unwrap_or("").trim().to_owned();
        Ok(ActivityRow {
            record_id: f(0),
            org_id: f(1),
            facility: f(2),
            period: f(3),
            activity: f(4),
            quantity: f(5),
            unit: f(6),
        })
    }
}

/// Why a row was rejected: an issue code (as in `activities_bad_rows.csv`) and a detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowIssue {
    /// `empty_field:<column>`, `negative_quantity`, `malformed_quantity`, `malformed_period`,
    /// `unknown_activity`, `unknown_unit`, `activity_unit_mismatch`, `malformed_row`,
    /// `conflicting_duplicate_record_id`.
    pub code: String,
    /// Human-readable detail.
    pub detail: String,
}

impl RowIssue {
    /// A new issue.
    pub fn new(code: &str, detail: String) -> RowIssue {
        RowIssue {
            code: code.to_owned(),
            detail,
        }
    }
}

impl fmt::Display for RowIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

/// The result of one row: what goes into the output ledger (one line per record id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The row as read.
    pub row: ActivityRow,
    /// The factor used.
    pub factor_id: String,
    /// kg CO2e in milligrams (kg × 10^6), rounded half up.
    pub co2e_mg: u64,
}

/// Checks a row and computes its emissions. Checks run in a fixed order so that every bad row
/// gets one deterministic issue code.
pub fn evaluate(row: &ActivityRow, factors: &FactorTable) -> Result<LedgerEntry, RowIssue> {
    let fields = [
        ("record_id", &row.record_id),
        ("org_id", &row.org_id),
        ("facility", &row.facility),
        ("period", &row.period),
        ("activity", &row.activity),
        ("quantity", &row.quantity),
        ("unit", &row.unit),
    ];
    for (name, value) in fields {
        if value.is_empty() {
            return Err(RowIssue::new(
                &format!("empty_field:{name}"),
                format!("`{name}` is empty"),
            ));
        }
    }
    if !valid_period(&row.period) {
        return Err(RowIssue::new(
            "malformed_period",
            format!("`{}` is not YYYY-MM with a month 01-12", row.period),
        ));
    }
    let qty = parse_decimal(&row.quantity, QTY_DECIMALS)
        .map_err(|e| RowIssue::new("malformed_quantity", format!("`{}`: {e}", row.quantity)))?;
    if qty < 0 || row.quantity.starts_with('-') {
        return Err(RowIssue::new(
            "negative_quantity",
            format!("{} {}", row.quantity, row.unit),
        ));
    }
    if !factors.activities.contains(&row.activity) {
        return Err(RowIssue::new(
            "unknown_activity",
            format!("no factor for activity `{}`", row.activity),
        ));
    }
    if !factors.units.contains(&row.unit) {
        return Err(RowIssue::new(
            "unknown_unit",
            format!("`{}` is not a unit of the factor table", row.unit),
        ));
    }
    let key = (row.activity.clone(), row.unit.clone());
    let Some(factor) = factors.by_key.get(&key) else {
        return Err(RowIssue::new(
            "activity_unit_mismatch",
            format!("no factor for `{}` in `{}`", row.activity, row.unit),
        ));
    };
    let co2e_mg = multiply_to_mg(qty, factor.scaled)
        .ok_or_else(|| RowIssue::new("malformed_quantity", "quantity too large".to_owned()))?;
    Ok(LedgerEntry {
        row: row.clone(),
        factor_id: factor.factor_id.clone(),
        co2e_mg,
    })
}

fn valid_period(p: &str) -> bool {
    let b = p.as_bytes();
    if b.len() != 7
        || b[4] != b'-'
        || !b
            .iter()
            .enumerate()
            .all(|(i, c)| i == 4 || c.is_ascii_digit())
    {
        return false;
    }
    matches!(
        &p[5..],
        "01" | "02" | "03" | "04" | "05" | "06" | "07" | "08" | "09" | "10" | "11" | "12"
    )
}

/// Parses a plain decimal (`-12.5`, `3`, `0.001`) into an integer scaled by 10^`decimals`.
/// No thousands separators, exponents or signs other than a leading `-`.
pub fn parse_decimal(s: &str, decimals: u32) -> Result<i128, String> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |t: &str| t.bytes().all(|c| c.is_ascii_digit());
    if int.is_empty()
        || !all_digits(int)
        || !all_digits(frac)
        || (digits.contains('.') && frac.is_empty())
    {
        return Err("not a plain decimal number".to_owned());
    }
    if frac.len() > decimals as usize {
        return Err(format!("more than {decimals} decimal places"));
    }
    if int.len() > 18 {
        return Err("too many digits".to_owned());
    }
    let mut v: i128 = 0;
    for c in int.bytes().chain(frac.bytes()) {
        v = v * 10 + i128::from(c - b'0');
    }
    v *= 10_i128.pow(decimals - frac.len() as u32);
    Ok(if neg { -v } else { v })
}

/// quantity (×10^6) × factor (×10^14) = kg × 10^20; milligrams are kg × 10^6, so divide by
/// 10^14, rounding half up. Both inputs are non-negative here.
fn multiply_to_mg(qty: i128, factor: i128) -> Option<u64> {
    let product = qty.checked_mul(factor)?;
    let div = 10_i128.pow(QTY_DECIMALS + FACTOR_DECIMALS - 6);
    u64::try_from((product + div / 2) / div).ok()
}

/// Formats milligrams as kg with `decimals` places (0..=6), rounding half up.
pub fn format_kg(mg: u64, decimals: u32) -> String {
    let drop = 10_u64.pow(6 - decimals);
    let v = (u128::from(mg) + u128::from(drop / 2)) / u128::from(drop);
    let scale = u128::from(10_u64.pow(decimals));
    if decimals == 0 {
        return v.to_string();
    }
    format!(
        "{}.{:0width$}",
        v / scale,
        v % scale,
        width = decimals as usize
    )
}
