//! Opening the store named by `--store` / `IDEMPOTENCY_URL`, and walking its pages.

use std::path::PathBuf;
use std::sync::Arc;

use idempotency::redis::RedisConfig;
use idempotency::{block_on, DynStorage, Listed, StoreUrl};

use crate::error::{CliError, Exit};

/// The largest page asked of the store.
const PAGE: usize = 1000;

/// An open store and the URL it was opened from (for messages).
pub(crate) struct Store {
    pub(crate) url: String,
    pub(crate) storage: Arc<dyn DynStorage>,
}

/// Opens the store named by `flag`, else `IDEMPOTENCY_URL`, else the file store in
/// `.idempotency`. A file store directory must exist already: an operator's command never
/// creates an empty store by mistake.
pub(crate) fn open(flag: Option<&str>, redis_prefix: Option<&str>) -> Result<Store, CliError> {
    let env = std::env::var(StoreUrl::ENV)
        .ok()
        .filter(|s| !s.trim().is_empty());
    let (text, url) = match flag.map(str::to_owned).or(env) {
        Some(text) => {
            let url = StoreUrl::parse(&text)?;
            (text, url)
        }
        None => {
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
    let storage: Arc<dyn DynStorage> = match &url {
        StoreUrl::Redis(u) => {
            let mut config = RedisConfig::new(u.clone()).reconnect_retries(1);
            if let Some(p) = redis_prefix {
                config = config.prefix(p);
            }
            Arc::new(config.open()?)
        }
        _ => url.open_manager()?.storage().clone(),
    };
    Ok(Store { url: text, storage })
}

impl Store {
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
