//! The read-only commands: `list`, `show`, `stats`.

use std::collections::BTreeMap;

use idempotency::{block_on, IdempotencyKey, Listed, RecordStatus};
use serde_json::json;

use crate::args::{ListArgs, StatusFilter};
use crate::error::{CliError, Exit};
use crate::render::{self, fields, human_duration, millis, stamp, table};
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
    human.push_str(&format!("{} entries\n", items.len()));
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

/// `show KEY`: every field of one record.
pub(crate) fn show(store: &Store, key: &str) -> Result<Output, CliError> {
    let key = parse_key(key)?;
    let Some(o) = block_on(store.storage.get(&key))? else {
        return Err(unknown_key(&key));
    };
    let r = &o.record;
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
        ("result size", format!("{} bytes", r.result.len())),
        (
            "error kind",
            render::error_kind(&o).unwrap_or("-").to_owned(),
        ),
    ]);
    if let Some(idempotency::RecordError::NotRetained(reason)) = &r.error {
        pairs.push(("error reason", reason.clone()));
    }
    Ok(Output::ok(render::record_json(&o), fields(&pairs)))
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
