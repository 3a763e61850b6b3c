//! The commands that change the store: `delete`, `purge-expired`, `doctor --fix`.

use idempotency::{block_on, ErrorKind, IdempotencyKey, Listed, RecordStatus};
use serde_json::json;

use crate::error::{describe, kind_name, CliError, Exit};
use crate::inspect::{plural, unknown_key};
use crate::render::{fields, rfc3339, unreadable_json};
use crate::store::Store;
use crate::Output;

/// `delete KEY [--force]`.
///
/// A `Pending` record is removed with the store's compare-and-delete on its holder (`release`),
/// so a record claimed again between the read and the removal is never removed by mistake. A
/// live `Pending` record needs `--force`. A finished (or unreadable) record is deleted outright.
pub(crate) fn delete(store: &Store, key: &IdempotencyKey, force: bool) -> Result<Output, CliError> {
    let key = key.clone();
    let (status, deleted) = match block_on(store.storage.get(&key)) {
        Ok(None) => return Err(unknown_key(&key)),
        Ok(Some(o)) if o.record.status == RecordStatus::Pending => {
            let live = o.status() == RecordStatus::Pending;
            if live && !force {
                return Err(CliError::new(
                    Exit::Problems,
                    "refused",
                    format!(
                        "refused: `{key}` is pending (a call holds it until {}); pass --force to delete it anyway",
                        rfc3339(o.record.expires_at)
                    ),
                ));
            }
            let deleted = block_on(store.storage.release(&key, &o.record.owner))?;
            if !deleted {
                return Err(CliError::new(
                    Exit::Problems,
                    "changed",
                    format!("`{key}` changed while it was being deleted (a new holder or a result); not deleted, run again"),
                ));
            }
            (o.status().to_string(), deleted)
        }
        Ok(Some(o)) => (
            o.status().to_string(),
            block_on(store.storage.delete(&key))?,
        ),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::CorruptRecord | ErrorKind::IncompatibleRecord
            ) =>
        {
            (
                "unreadable".to_owned(),
                block_on(store.storage.delete(&key))?,
            )
        }
        Err(e) => return Err(e.into()),
    };
    if !deleted {
        return Err(unknown_key(&key));
    }
    let json = json!({ "key": key.as_str(), "deleted": true, "status": status });
    Ok(Output::ok(json, format!("deleted {key} ({status})\n")))
}

/// `purge-expired`.
pub(crate) fn purge_expired(store: &Store) -> Result<Output, CliError> {
    let removed = block_on(store.storage.purge_expired())?;
    let json = json!({ "store": store.url, "removed": removed });
    Ok(Output::ok(
        json,
        format!(
            "removed {}\n",
            plural(removed, "expired record", "expired records")
        ),
    ))
}

/// `doctor [--fix]`: unreadable entries (and, for information, expired records).
pub(crate) fn doctor(store: &Store, fix: bool) -> Result<Output, CliError> {
    let mut found = Vec::new();
    let mut expired = 0_u64;
    let mut records = 0_u64;
    store.for_each(|l| match l {
        Listed::Unreadable { location, error } => found.push((location, error)),
        Listed::Record(o) => {
            records += 1;
            expired += u64::from(o.status() == RecordStatus::Expired);
        }
    })?;
    let mut problems = Vec::new();
    let mut entries = Vec::new();
    let mut removed = 0_u64;
    let mut human = String::new();
    for (location, error) in &found {
        let mut entry = unreadable_json(location, error);
        let action = if fix {
            match block_on(store.storage.remove_unreadable(location)) {
                // Removed, or no longer unreadable (repaired or gone meanwhile): not a problem.
                Ok(true) => {
                    removed += 1;
                    "removed".to_owned()
                }
                Ok(false) => "no longer unreadable; left alone".to_owned(),
                Err(e) => {
                    problems.push(location.clone());
                    format!("not removed: {}", describe(&e))
                }
            }
        } else {
            problems.push(location.clone());
            "found".to_owned()
        };
        human.push_str(&format!(
            "{}  {location}\n    {}\n    {action}\n",
            kind_name(error.kind()),
            describe(error)
        ));
        if let Some(m) = entry.as_object_mut() {
            m.insert("action".into(), action.into());
        }
        entries.push(entry);
    }
    let remaining = problems.len();
    let mut summary = vec![
        ("records", records.to_string()),
        ("unreadable", found.len().to_string()),
        ("removed", removed.to_string()),
        ("problems left", remaining.to_string()),
        (
            "expired",
            format!("{expired} (not a problem; `purge-expired` removes them)"),
        ),
    ];
    if remaining > 0 && !fix {
        summary.push((
            "hint",
            "run `doctor --fix` to remove the unreadable entries".to_owned(),
        ));
    }
    human.push_str(&fields(&summary));
    let json = json!({
        "store": store.url,
        "records": records,
        "unreadable": entries,
        "removed": removed,
        "problems_remaining": remaining,
        "expired": expired,
        "fixed": fix,
    });
    let exit = if remaining == 0 {
        Exit::Ok
    } else {
        Exit::Problems
    };
    Ok(Output {
        json,
        human,
        exit,
        raw: None,
    })
}
