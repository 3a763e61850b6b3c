//! Turning records into text: RFC 3339 timestamps, durations, JSON objects and tables.

use std::time::Duration;

use idempotency::{Error, Listed, Observed, RecordError, RecordStatus, Timestamp};
use serde_json::{json, Value};

use crate::error::{describe, kind_name};

/// `t` as RFC 3339 UTC with milliseconds: `2023-11-14T22:13:20.000Z`.
pub(crate) fn rfc3339(t: Timestamp) -> String {
    t.to_rfc3339()
}

/// A duration as `1d 02h 03m 04.005s`, leading zero units left out.
pub(crate) fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let (days, rem) = (ms / 86_400_000, ms % 86_400_000);
    let (h, rem) = (rem / 3_600_000, rem % 3_600_000);
    let (m, rem) = (rem / 60_000, rem % 60_000);
    let (s, ms) = (rem / 1000, rem % 1000);
    if days > 0 {
        format!("{days}d {h:02}h {m:02}m {s:02}.{ms:03}s")
    } else if h > 0 {
        format!("{h}h {m:02}m {s:02}.{ms:03}s")
    } else if m > 0 {
        format!("{m}m {s:02}.{ms:03}s")
    } else {
        format!("{s}.{ms:03}s")
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What a `Failed` record holds, as a short name.
pub(crate) fn error_kind(o: &Observed) -> Option<&'static str> {
    o.record.error.as_ref().map(|e| match e {
        RecordError::Encoded(_) => "encoded",
        RecordError::NotRetained(_) => "not_retained",
    })
}

/// One record as a JSON object.
pub(crate) fn record_json(o: &Observed) -> Value {
    let r = &o.record;
    json!({
        "key": r.key.as_str(),
        "operation": r.key.operation(),
        "status": o.status().to_string(),
        "stored_status": r.status.to_string(),
        "created_at": rfc3339(r.created_at),
        "created_at_ms": r.created_at.as_millis(),
        "expires_at": rfc3339(r.expires_at),
        "expires_at_ms": r.expires_at.as_millis(),
        "ttl_remaining_ms": millis(o.time_to_live()),
        "lease_until_ms": r.lease_until.map(Timestamp::as_millis),
        "execution_id": r.owner.execution_id.to_string(),
        "fencing_token": r.owner.fencing_token,
        "fingerprint": r.fingerprint.to_string(),
        "result_bytes": r.result.len(),
        "error_kind": error_kind(o),
        "error_reason": match &r.error {
            Some(RecordError::NotRetained(reason)) => Some(reason.as_str()),
            _ => None,
        },
        "store_now_ms": o.now.as_millis(),
    })
}

/// One unreadable entry as a JSON object.
pub(crate) fn unreadable_json(location: &str, error: &Error) -> Value {
    json!({
        "location": location,
        "error_kind": kind_name(error.kind()),
        "error": describe(error),
    })
}

/// One listed entry as a JSON object (unreadable ones carry `"status": "unreadable"`).
pub(crate) fn listed_json(l: &Listed) -> Value {
    match l {
        Listed::Record(o) => record_json(o),
        Listed::Unreadable { location, error } => {
            let mut v = unreadable_json(location, error);
            if let Some(m) = v.as_object_mut() {
                m.insert("status".into(), "unreadable".into());
            }
            v
        }
    }
}

/// The `list` table row of an entry: status, key, expires at, TTL left, result size.
pub(crate) fn listed_row(l: &Listed) -> [String; 5] {
    match l {
        Listed::Record(o) => {
            let ttl = if o.status() == RecordStatus::Expired {
                "-".to_owned()
            } else {
                human_duration(o.time_to_live())
            };
            [
                o.status().to_string(),
                o.record.key.to_string(),
                rfc3339(o.record.expires_at),
                ttl,
                format!("{} B", o.record.result.len()),
            ]
        }
        Listed::Unreadable { location, error } => [
            "unreadable".to_owned(),
            location.clone(),
            "-".to_owned(),
            "-".to_owned(),
            kind_name(error.kind()).to_owned(),
        ],
    }
}

/// A table with a header line, columns padded to their widest cell (the last one unpadded).
pub(crate) fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = header.map(str::to_owned);
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `label  value` lines, labels padded to the widest.
pub(crate) fn fields(pairs: &[(&str, String)]) -> String {
    let w = pairs.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(l, v)| format!("{l:<w$}  {v}\n"))
        .collect()
}

/// A timestamp as `RFC 3339 (N ms)`.
pub(crate) fn stamp(t: Timestamp) -> String {
    format!("{} ({} ms)", rfc3339(t), t.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(Timestamp(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(Timestamp(1_700_000_000_123)),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            rfc3339(Timestamp(951_782_400_000)),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339(Timestamp(4_102_444_799_999)),
            "2099-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn durations_drop_leading_zero_units() {
        assert_eq!(human_duration(Duration::from_millis(1_500)), "1.500s");
        assert_eq!(human_duration(Duration::from_secs(3_661)), "1h 01m 01.000s");
        assert_eq!(
            human_duration(Duration::from_secs(90_061)),
            "1d 01h 01m 01.000s"
        );
    }
}
