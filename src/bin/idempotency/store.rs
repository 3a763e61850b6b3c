//! Opening the store named by `--store` / `IDEMPOTENCY_URL`, and walking its pages.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use idempotency::redis::{redis, RedisConfig};
use idempotency::{
    block_on, DynStorageAdmin, FileStorage, Listed, ManualClock, MemoryStorage, PostgresStorage,
    StoreUrl, Timestamp,
};
use std::time::Duration;

use crate::error::{CliError, Exit};

/// The largest page asked of the store.
const PAGE: usize = 1000;

/// An open store and the URL it was opened from (for messages).
pub(crate) struct Store {
    pub(crate) url: String,
    pub(crate) storage: Arc<dyn DynStorageAdmin>,
    /// The Redis URL, for a Redis store.
    redis: Option<String>,
    /// The Redis key prefix in use.
    redis_prefix: String,
}

/// The environment variable that pins the clock of a file store opened by the CLI, in
/// milliseconds since the Unix epoch, read by debug builds only. For tests that pin lease and TTL
/// boundaries only; not
/// documented for operators (a clock in the future would make `purge-expired` remove live
/// records).
const TEST_NOW_MS: &str = "IDEMPOTENCY_CLI_TEST_NOW_MS";

/// Opens the store named by `flag`, else `IDEMPOTENCY_URL`, else the file store in
/// `.idempotency`. A file store directory must exist already: an operator's command never
/// creates an empty store by mistake.
///
/// `--store` also takes a bare directory path (no `scheme://`): the file store there, said once
/// on stderr. `IDEMPOTENCY_URL` is read exactly as the library reads it ([`StoreUrl::parse`]), so
/// the CLI never looks at another store than the application would.
pub(crate) fn open(flag: Option<&str>, redis_prefix: Option<&str>) -> Result<Store, CliError> {
    let env = std::env::var(StoreUrl::ENV)
        .ok()
        .filter(|s| !s.trim().is_empty());
    let (text, url) = match (flag, env) {
        (Some(path), _) if !path.contains("://") && !path.trim().is_empty() => {
            let dir = PathBuf::from(path);
            let text = format!("file://{}", dir.display());
            eprintln!(
                "note: `{path}` has no scheme: using the file store in that directory ({text})"
            );
            (text, StoreUrl::File(dir))
        }
        (Some(text), _) => (text.to_owned(), StoreUrl::parse(text)?),
        (None, Some(text)) => {
            let url = StoreUrl::parse(&text)?;
            (text, url)
        }
        (None, None) => {
            let dir = PathBuf::from(StoreUrl::DEFAULT_DIR);
            (format!("file://{}", dir.display()), StoreUrl::File(dir))
        }
    };
    if let StoreUrl::File(dir) = &url {
        let unreachable = |why: String| {
            CliError::new(
                Exit::Unreachable,
                "store_unavailable",
                format!("no file store at `{}`: {why}", dir.display()),
            )
        };
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(unreachable("not a directory".into())),
            Err(e) => return Err(unreachable(e.to_string())),
        }
    }
    let mut redis = None;
    let storage: Arc<dyn DynStorageAdmin> = match &url {
        StoreUrl::Redis(u) => {
            let mut config = RedisConfig::new(u.clone()).reconnect_retries(1);
            if let Some(p) = redis_prefix {
                config = config.prefix(p);
            }
            redis = Some(u.clone());
            Arc::new(config.open()?)
        }
        StoreUrl::File(dir) => match test_clock()? {
            Some(clock) => Arc::new(FileStorage::builder(dir).clock(Arc::new(clock)).open()?),
            None => Arc::new(FileStorage::open(dir)?),
        },
        StoreUrl::Postgres(u) => Arc::new(PostgresStorage::connect(u)?),
        StoreUrl::Memory => Arc::new(MemoryStorage::new()),
        other => {
            return Err(CliError::new(
                Exit::Usage,
                "config",
                format!("the CLI cannot open `{other:?}`"),
            ))
        }
    };
    Ok(Store {
        url: text,
        storage,
        redis,
        redis_prefix: redis_prefix
            .unwrap_or(RedisConfig::DEFAULT_PREFIX)
            .to_owned(),
    })
}

fn test_clock() -> Result<Option<ManualClock>, CliError> {
    // Debug builds only (what `cargo test` runs): a release binary an operator installs never
    // reads it, so no stray variable can move its clock.
    if !cfg!(debug_assertions) {
        return Ok(None);
    }
    let Ok(text) = std::env::var(TEST_NOW_MS) else {
        return Ok(None);
    };
    let ms: u64 = text.trim().parse().map_err(|_| {
        CliError::new(
            Exit::Usage,
            "config",
            format!("{TEST_NOW_MS}=`{text}` is not a number of milliseconds"),
        )
    })?;
    Ok(Some(ManualClock::new(Timestamp(ms))))
}

/// How many `SCAN` calls [`Store::redis_prefixes_seen`] makes at most.
const PREFIX_SCAN_CALLS: usize = 20;
/// How many distinct prefixes it reports at most.
const PREFIX_MAX: usize = 10;

impl Store {
    /// For a Redis store with no records under its prefix: a note naming the record prefixes
    /// that a bounded `SCAN` (at most 20 calls of `COUNT 1000`) saw, so a wrong
    /// `--redis-prefix` is visible. `None` for other stores, or when the scan fails.
    pub(crate) fn empty_store_note(&self) -> Option<String> {
        let url = self.redis.as_deref()?;
        let prefixes = redis_prefixes_seen(url).ok()?;
        let mut note = format!(
            "note: no records under the Redis prefix `{}`",
            self.redis_prefix
        );
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

    /// Calls `f` on every entry of the store, a page at a time.
    pub(crate) fn for_each(&self, mut f: impl FnMut(Listed)) -> Result<(), CliError> {
        let mut cursor: Option<String> = None;
        loop {
            let page = block_on(self.storage.list(cursor.as_deref(), PAGE))?;
            page.items.into_iter().for_each(&mut f);
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(()),
            }
        }
    }

    /// The entries that `keep` accepts, from `start` on, stopping at a page boundary once
    /// `limit` were found; returns them and the cursor to continue from (`None` at the end).
    ///
    /// Page sizes adapt: they grow (up to [`PAGE`]) while pages hold few matches, and a page
    /// that holds more matches than are still wanted is read again, smaller, from the same
    /// cursor, so a returned cursor never skips a match. A store that returns more entries than
    /// asked (Redis `SCAN`'s `COUNT` is a hint) can make the result exceed `limit`.
    pub(crate) fn collect(
        &self,
        start: Option<String>,
        limit: Option<usize>,
        keep: impl Fn(&Listed) -> bool,
    ) -> Result<(Vec<Listed>, Option<String>), CliError> {
        let mut out = Vec::new();
        let mut cursor = start;
        let mut size = limit.unwrap_or(PAGE).clamp(1, PAGE);
        loop {
            let remaining = limit.map(|l| l.saturating_sub(out.len()));
            if remaining == Some(0) {
                return Ok((out, cursor));
            }
            let page = block_on(self.storage.list(cursor.as_deref(), size))?;
            let matched: Vec<Listed> = page.items.into_iter().filter(&keep).collect();
            if let Some(r) = remaining {
                if matched.len() > r && size > r {
                    size = r;
                    continue;
                }
                size = if matched.len() * 2 < size {
                    size.saturating_mul(4).min(PAGE)
                } else {
                    size.min(r.saturating_sub(matched.len()).max(1))
                };
            }
            out.extend(matched);
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => return Ok((out, None)),
            }
        }
    }
}

/// The distinct prefixes of keys shaped like record keys (`PREFIX{64 hex}`), from a bounded
/// `SCAN`, at most [`PREFIX_MAX`].
fn redis_prefixes_seen(url: &str) -> Result<BTreeSet<String>, redis::RedisError> {
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
