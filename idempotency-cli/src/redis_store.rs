//! The Redis store (feature `redis`): opening it, and naming the prefixes a bounded `SCAN` sees
//! when the one asked for holds nothing.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use idempotency::redis::{redis, RedisConfig};
use idempotency::DynStorageAdmin;

use crate::error::CliError;

/// How many `SCAN` calls [`prefixes_seen`] makes at most.
const PREFIX_SCAN_CALLS: usize = 20;
/// How many distinct prefixes it reports at most.
const PREFIX_MAX: usize = 10;

/// A Redis store as the command line names it: its URL and key prefix.
pub(crate) struct RedisTarget {
    url: String,
    /// The key prefix in use (`--redis-prefix`, else [`RedisConfig::DEFAULT_PREFIX`]).
    prefix: String,
}

impl RedisTarget {
    pub(crate) fn new(url: &str, prefix: Option<&str>) -> RedisTarget {
        RedisTarget {
            url: url.to_owned(),
            prefix: prefix.unwrap_or(RedisConfig::DEFAULT_PREFIX).to_owned(),
        }
    }

    /// Connects, retrying a lost connection once (an operator's command fails fast).
    pub(crate) fn open(&self) -> Result<Arc<dyn DynStorageAdmin>, CliError> {
        let config = RedisConfig::new(self.url.clone())
            .reconnect_retries(1)
            .prefix(self.prefix.clone());
        Ok(Arc::new(config.open()?))
    }

    /// For a prefix with no records: a note naming the record prefixes that a bounded `SCAN`
    /// (at most 20 calls of `COUNT 1000`) saw, so a wrong `--redis-prefix` is visible. `None`
    /// when the scan fails.
    pub(crate) fn empty_store_note(&self) -> Option<String> {
        let prefixes = prefixes_seen(&self.url).ok()?;
        let mut note = format!("note: no records under the Redis prefix `{}`", self.prefix);
        if prefixes.is_empty() {
            note.push_str("; a bounded SCAN saw no idempotency records under any prefix");
        } else {
            let list: Vec<String> = prefixes.iter().map(|p| format!("`{p}`")).collect();
            note.push_str(&format!(
                "; a bounded SCAN saw records under {} (pass one with --redis-prefix)",
                list.join(", ")
            ));
        }
        Some(note)
    }
}

/// The distinct prefixes of keys shaped like record keys (`PREFIX{64 hex}`), from a bounded
/// `SCAN`, at most [`PREFIX_MAX`].
fn prefixes_seen(url: &str) -> Result<BTreeSet<String>, redis::RedisError> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    let mut seen = BTreeSet::new();
    let mut cursor: u64 = 0;
    for _ in 0..PREFIX_SCAN_CALLS {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("*{*}")
            .arg("COUNT")
            .arg(1000)
            .query(&mut conn)?;
        for k in keys {
            if let Some(p) = record_prefix(&k) {
                seen.insert(p);
                if seen.len() >= PREFIX_MAX {
                    return Ok(seen);
                }
            }
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    Ok(seen)
}

/// The prefix of a record key `PREFIX{64 hex}` (see `RedisStorage::record_key`).
fn record_prefix(key: &[u8]) -> Option<String> {
    let tail = key.len().checked_sub(66)?;
    let (prefix, rest) = key.split_at(tail);
    let hex = rest.strip_prefix(b"{")?.strip_suffix(b"}")?;
    hex.iter()
        .all(u8::is_ascii_hexdigit)
        .then(|| String::from_utf8_lossy(prefix).into_owned())
}
