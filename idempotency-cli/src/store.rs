//! Opening the store named by `--store` / `IDEMPOTENCY_URL`, and walking its pages.

use std::path::PathBuf;
use std::sync::Arc;

use idempotency::{
    block_on, DynStorageAdmin, FileStorage, Listed, ManualClock, MemoryStorage, StoreUrl, Timestamp,
};

use crate::error::{CliError, Exit};
#[cfg(feature = "redis")]
use crate::redis_store::RedisTarget;

/// The largest page asked of the store.
const PAGE: usize = 1000;

/// An open store and the URL it was opened from (for messages).
pub(crate) struct Store {
    pub(crate) url: String,
    pub(crate) storage: Arc<dyn DynStorageAdmin>,
    /// The Redis URL and key prefix, for a Redis store.
    #[cfg(feature = "redis")]
    redis: Option<RedisTarget>,
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
///
/// A Redis or PostgreSQL URL given to a binary built without that store's feature is a usage
/// error that names the feature to build with.
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
    #[cfg(feature = "redis")]
    let mut redis = None;
    #[cfg(not(feature = "redis"))]
    let _ = redis_prefix;
    let storage: Arc<dyn DynStorageAdmin> = match &url {
        StoreUrl::Redis(u) if u.starts_with("rediss://") && !cfg!(feature = "redis-tls") => {
            return Err(not_built("`rediss://` (Redis over TLS)", "redis-tls"));
        }
        #[cfg(feature = "redis")]
        StoreUrl::Redis(u) => {
            let target = RedisTarget::new(u, redis_prefix);
            let storage = target.open()?;
            redis = Some(target);
            storage
        }
        #[cfg(not(feature = "redis"))]
        StoreUrl::Redis(_) => return Err(not_built("the Redis store", "redis")),
        #[cfg(not(feature = "postgres"))]
        StoreUrl::Postgres(_) => return Err(not_built("the PostgreSQL store", "postgres")),
        StoreUrl::File(dir) => match test_clock()? {
            Some(clock) => Arc::new(FileStorage::builder(dir).clock(Arc::new(clock)).open()?),
            None => Arc::new(FileStorage::open(dir)?),
        },
        #[cfg(feature = "postgres")]
        StoreUrl::Postgres(u) => Arc::new(idempotency::PostgresStorage::connect(u)?),
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
        #[cfg(feature = "redis")]
        redis,
    })
}

/// The error for a store URL this binary was built without: `what` needs the CLI's `feature`.
fn not_built(what: &str, feature: &str) -> CliError {
    CliError::new(
        Exit::Usage,
        "config",
        format!(
            "{what} needs the `{feature}` feature of `idempotency-cli`, which this binary was \
             built without: `cargo install --path idempotency-cli --features {feature}`"
        ),
    )
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

impl Store {
    /// For a Redis store with no records under its prefix: a note naming the record prefixes
    /// that a bounded `SCAN` saw, so a wrong `--redis-prefix` is visible (see
    /// [`RedisTarget::empty_store_note`]). `None` for other stores, or when the scan fails.
    #[cfg(feature = "redis")]
    pub(crate) fn empty_store_note(&self) -> Option<String> {
        self.redis.as_ref()?.empty_store_note()
    }

    /// A binary built without Redis has no other store that needs a note.
    #[cfg(not(feature = "redis"))]
    pub(crate) fn empty_store_note(&self) -> Option<String> {
        None
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
