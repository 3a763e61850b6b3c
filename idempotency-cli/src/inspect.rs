//! The read-only commands: `list`, `show`, `stats`.

use std::collections::BTreeMap;

use idempotency::{block_on, IdempotencyKey, Listed, Record, RecordError, RecordStatus};
use serde_json::json;

use crate::args::{ListArgs, StatusFilter};
use crate::decode;
use crate::error::{CliError, Exit};
use crate::render::{self, fields, human_duration, millis, stamp, table};
use crate::select::Selector;
use crate::store::Store;
use crate::Output;

/// `list`: the entries that pass the filters, a store page at a time.
pub(crate) fn list(store: &Store, args: ListArgs) -> Result<Output, CliError> {
    let keep = |l: &Listed| matches(&args, l);
    let limit = args.limit.and_then(|l| usize::try_from(l).ok());
    let (items, next) = store.collect(args.cursor.clone(), limit, keep)?;
    let rows: Vec<[String; 5]> = items.iter().map(render::listed_row).collect();
    let mut human = table(
        ["STATUS", "KEY / LOCATION", "EXPIRES AT", "TTL", "RESULT"],
        &rows,
    );
    human.push_str(&plural(items.len() as u64, "entry", "entries"));
    human.push('\n');
    if items.is_empty() && args.cursor.is_none() {
        if let Some(note) = store.empty_store_note() {
            eprintln!("{note}");
        }
    }
    if let Some(c) = &next {
        human.push_str(&format!("more: --cursor {c}\n"));
    }
    let json = json!({
        "store": store.url,
        "items": items.iter().map(render::listed_json).collect::<Vec<_>>(),
        "count": items.len(),
        "next_cursor": next,
    });
    Ok(Output::ok(json, human))
}

fn matches(args: &ListArgs, l: &Listed) -> bool {
    match l {
        Listed::Unreadable { .. } => {
            // An unreadable entry has no status, operation or key to filter on.
            args.operation.is_none()
                && args.prefix.is_none()
                && args.status.is_none_or(|s| s == StatusFilter::Unreadable)
        }
        Listed::Record(o) => {
            let status_ok = args.status.is_none_or(|s| {
                let want = match s {
                    StatusFilter::Pending => RecordStatus::Pending,
                    StatusFilter::Success => RecordStatus::Success,
                    StatusFilter::Failed => RecordStatus::Failed,
                    StatusFilter::Expired => RecordStatus::Expired,
                    StatusFilter::Unreadable => return false,
                };
                o.status() == want
            });
            status_ok
                && args
                    .operation
                    .as_deref()
                    .is_none_or(|op| o.record.key.operation() == op)
                && args
                    .prefix
                    .as_deref()
                    .is_none_or(|p| o.record.key.as_str().starts_with(p))
        }
    }
}

/// Parses a key given on the command line.
pub(crate) fn parse_key(text: &str) -> Result<IdempotencyKey, CliError> {
    IdempotencyKey::parse(text).map_err(|e| {
        CliError::new(
            Exit::Usage,
            "invalid_key",
            format!("`{text}` is not an idempotency key ({e}); keys look like `operation:32 hex`, as `list` prints them"),
        )
    })
}

pub(crate) fn unknown_key(key: &IdempotencyKey) -> CliError {
    CliError::new(
        Exit::UnknownKey,
        "unknown_key",
        format!("no record for key `{key}`"),
    )
}

/// How many bytes of decoded text `show` prints unless `--full`.
pub(crate) const SHOW_MAX: usize = 4096;

/// The key a command works on: its positional KEY, else the one the selectors derive.
pub(crate) fn resolve(key: Option<&str>, select: &Selector) -> Result<IdempotencyKey, CliError> {
    match key {
        Some(k) => parse_key(k),
        None => Ok(select.derive()?.key),
    }
}

/// `show`: every field of one record, the encoding and size of its stored value, and the value
/// or error decoded (bounded by [`SHOW_MAX`] unless `full`); `raw`: the stored value's bytes
/// only (the result, or for a failed record the stored error).
pub(crate) fn show(
    store: &Store,
    key: &IdempotencyKey,
    raw: bool,
    full: bool,
) -> Result<Output, CliError> {
    let Some(o) = block_on(store.storage.get(key))? else {
        return Err(unknown_key(key));
    };
    let r = &o.record;
    if raw {
        let bytes = match &r.error {
            Some(RecordError::Encoded(b)) => b.clone(),
            _ => r.result.clone(),
        };
        return Ok(Output::raw(bytes));
    }
    let max = if full { usize::MAX } else { SHOW_MAX };
    let ttl = o.time_to_live();
    let mut pairs = vec![
        ("key", r.key.to_string()),
        ("status", o.status().to_string()),
        ("stored status", r.status.to_string()),
        ("created at", stamp(r.created_at)),
        ("expires at", stamp(r.expires_at)),
        (
            "ttl remaining",
            format!("{} ({} ms)", human_duration(ttl), millis(ttl)),
        ),
    ];
    if let Some(l) = r.lease_until {
        pairs.push(("lease until", stamp(l)));
    }
    pairs.extend([
        ("execution id", r.owner.execution_id.to_string()),
        ("fencing token", r.owner.fencing_token.to_string()),
        ("fingerprint", r.fingerprint.to_string()),
        ("encoding", encoding(r.result.len())),
        ("result size", bytes(r.result.len())),
        (
            "error kind",
            render::error_kind(&o).unwrap_or("-").to_owned(),
        ),
    ]);
    let mut json = render::record_json(&o);
    let mut extra = serde_json::Map::new();
    extra.insert("encoding".into(), "cbor".into());
    extra.insert(
        "record_format_version".into(),
        Record::FORMAT_VERSION.into(),
    );
    if r.status == RecordStatus::Success {
        let (text, cut) = decoded(&r.result, max);
        pairs.push(("result", text.clone()));
        extra.insert("result".into(), text.into());
        extra.insert("result_truncated".into(), cut.into());
    }
    match &r.error {
        Some(RecordError::NotRetained(reason)) => {
            pairs.push(("error reason", reason.clone()));
            pairs.push(("error", format!("the result was not retained: {reason}")));
        }
        Some(RecordError::Encoded(b)) => {
            pairs.push(("error size", bytes(b.len())));
            let (words, value) = match decode::decode(b) {
                Ok(v) => (decode::error_words(&v, max), decode::diagnostic(&v, max).0),
                Err(e) => {
                    let t = format!("<not CBOR: {e}>");
                    (t.clone(), t)
                }
            };
            pairs.push(("error", words.clone()));
            pairs.push(("error value", value.clone()));
            extra.insert("error".into(), words.into());
            extra.insert("error_value".into(), value.into());
            extra.insert("error_bytes".into(), b.len().into());
        }
        None => {}
    }
    if let Some(m) = json.as_object_mut() {
        m.extend(extra);
    }
    Ok(Output::ok(json, fields(&pairs)))
}

fn encoding(len: usize) -> String {
    format!(
        "CBOR (RFC 8949), record format version {}; {}",
        Record::FORMAT_VERSION,
        bytes(len)
    )
}

/// The stored result as diagnostic text: `(text, cut)`.
fn decoded(result: &[u8], max: usize) -> (String, bool) {
    match decode::decode(result) {
        Ok(v) => {
            let (mut text, cut) = decode::diagnostic(&v, max);
            if cut {
                text.push_str(&format!(
                    " (cut at {max} bytes; `show --full` prints all, `show --raw` writes the stored bytes)"
                ));
            }
            (text, cut)
        }
        Err(e) => (format!("<not CBOR: {e}>"), false),
    }
}

/// "1 byte" / "N bytes".
pub(crate) fn bytes(n: usize) -> String {
    plural(n as u64, "byte", "bytes")
}

/// "1 entry" / "2 entries".
pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// What `stats` adds up while walking the store.
#[derive(Default)]
struct Totals {
    by_status: BTreeMap<&'static str, u64>,
    unreadable: u64,
    live: u64,
    live_ttl_ms: u128,
    result_bytes: u64,
}

/// `stats`: counts by status, unreadable entries, average TTL left of live records, result bytes.
pub(crate) fn stats(store: &Store) -> Result<Output, CliError> {
    let mut t = Totals::default();
    for s in ["pending", "success", "failed", "expired"] {
        t.by_status.insert(s, 0);
    }
    store.for_each(|l| match l {
        Listed::Unreadable { .. } => t.unreadable += 1,
        Listed::Record(o) => {
            let status = o.status();
            let name = match status {
                RecordStatus::Pending => "pending",
                RecordStatus::Success => "success",
                RecordStatus::Failed => "failed",
                _ => "expired",
            };
            *t.by_status.entry(name).or_default() += 1;
            if status != RecordStatus::Expired {
                t.live += 1;
                t.live_ttl_ms += o.time_to_live().as_millis();
            }
            t.result_bytes += o.record.result.len() as u64;
        }
    })?;
    let records: u64 = t.by_status.values().sum();
    if records == 0 && t.unreadable == 0 {
        if let Some(note) = store.empty_store_note() {
            eprintln!("{note}");
        }
    }
    let avg_ttl_ms =
        (t.live > 0).then(|| u64::try_from(t.live_ttl_ms / u128::from(t.live)).unwrap_or(u64::MAX));
    let json = json!({
        "store": store.url,
        "records": records,
        "by_status": t.by_status,
        "unreadable": t.unreadable,
        "live": t.live,
        "avg_ttl_remaining_ms": avg_ttl_ms,
        "result_bytes": t.result_bytes,
    });
    let mut pairs: Vec<(&str, String)> = vec![
        ("store", store.url.clone()),
        ("records", records.to_string()),
    ];
    pairs.extend(t.by_status.iter().map(|(s, n)| (*s, n.to_string())));
    pairs.extend([
        ("unreadable", t.unreadable.to_string()),
        (
            "avg ttl remaining",
            avg_ttl_ms.map_or("-".to_owned(), |ms| {
                format!(
                    "{} ({ms} ms, {} live records)",
                    human_duration(std::time::Duration::from_millis(ms)),
                    t.live
                )
            }),
        ),
        ("result bytes", t.result_bytes.to_string()),
    ]);
    Ok(Output::ok(json, fields(&pairs)))
}
