//! The process-wide default manager and store URLs.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use idempotency_core::{Error, IdempotencyManager, MemoryStorage, Result};

/// Where records live, as configured by a URL (`--store URL`, `IDEMPOTENCY_URL`):
///
/// - `file:///absolute/path` or `file://relative/path`: the embedded file store in that directory;
/// - `memory://`: a process-local memory store (nothing survives the process);
/// - `redis://[user:password@]host[:port][/db]`: the Redis store (feature `redis`);
/// - `rediss://...`: the Redis store over TLS (feature `redis-tls`: rustls with the ring provider
///   and the webpki roots, what managed Redis services need).
///
/// Opening a URL whose store's feature is off is an [`Error::Config`] that names the feature and
/// the cargo flag (`--features redis`, `--features redis-tls`).
/// - `postgres://[user[:password]@]host[:port]/database` or `postgresql://...`: the PostgreSQL
///   store (feature `postgres`), in table `idempotency_records`, created if missing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreUrl {
    /// The embedded file store in this directory.
    File(PathBuf),
    /// A memory store.
    Memory,
    /// A Redis server (the URL as given).
    Redis(String),
    /// A PostgreSQL database (the URL as given).
    Postgres(String),
}

impl StoreUrl {
    /// The environment variable read by [`default_manager`].
    pub const ENV: &'static str = "IDEMPOTENCY_URL";
    /// The file store directory used when no URL is configured: `.idempotency` under the
    /// working directory.
    pub const DEFAULT_DIR: &'static str = ".idempotency";

    /// Parses a store URL.
    ///
    /// # Errors
    /// [`Error::Config`] for an unknown scheme or an empty path.
    pub fn parse(url: &str) -> Result<StoreUrl> {
        let url = url.trim();
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return Err(Error::Config(format!(
                    "`{url}`: a file store URL needs a path"
                )));
            }
            return Ok(StoreUrl::File(PathBuf::from(path)));
        }
        if url == "memory://" || url == "memory:" {
            return Ok(StoreUrl::Memory);
        }
        if url.starts_with("redis://") || url.starts_with("rediss://") {
            return Ok(StoreUrl::Redis(url.to_owned()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(url.to_owned()));
        }
        Err(Error::Config(format!(
            "unknown store URL `{url}`; expected `file:///path`, `memory://`, `redis://host:port/db` or `postgres://user@host/db`"
        )))
    }

    /// Opens the store this URL names and builds a manager over it with default settings.
    ///
    /// # Errors
    /// [`Error::Config`] when the store's feature is not enabled (the message names it and the
    /// cargo flag); the store's own errors when it cannot be opened (an unwritable directory,
    /// an unreachable Redis or PostgreSQL: [`Error::Io`], [`Error::Storage`]).
    pub fn open_manager(&self) -> Result<IdempotencyManager> {
        match self {
            StoreUrl::Memory => Ok(IdempotencyManager::new(MemoryStorage::new())),
            StoreUrl::File(path) => open_file(path),
            StoreUrl::Redis(url) => open_redis(url),
            StoreUrl::Postgres(url) => open_postgres(url),
        }
    }
}

/// Opens the embedded file store in `path` (created with mode 0700 if missing; see
/// [`FileStorage`](idempotency_core::FileStorage) for the layout and the default durability).
#[cfg(feature = "file")]
fn open_file(path: &std::path::Path) -> Result<IdempotencyManager> {
    Ok(IdempotencyManager::new(
        idempotency_core::FileStorage::open(path)?,
    ))
}

#[cfg(not(feature = "file"))]
fn open_file(_: &std::path::Path) -> Result<IdempotencyManager> {
    Err(Error::Config(
        "the file store needs the `file` feature of `idempotency`".into(),
    ))
}

#[cfg(feature = "redis")]
fn open_redis(url: &str) -> Result<IdempotencyManager> {
    Ok(IdempotencyManager::new(
        idempotency_redis::RedisStorage::open(url)?,
    ))
}

#[cfg(not(feature = "redis"))]
fn open_redis(url: &str) -> Result<IdempotencyManager> {
    let feature = if url.starts_with("rediss://") {
        "redis-tls"
    } else {
        "redis"
    };
    Err(Error::Config(format!(
        "the Redis store needs the `{feature}` feature of `idempotency`: \
         `features = [\"{feature}\"]` in Cargo.toml, or `--features {feature}` on the cargo \
         command line (`cargo run --features {feature} ...`)"
    )))
}

#[cfg(feature = "postgres")]
fn open_postgres(url: &str) -> Result<IdempotencyManager> {
    Ok(IdempotencyManager::new(
        idempotency_postgres::PostgresStorage::connect(url)?,
    ))
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(_: &str) -> Result<IdempotencyManager> {
    Err(Error::Config(
        "the PostgreSQL store needs the `postgres` feature of `idempotency`: \
         `features = [\"postgres\"]` in Cargo.toml, or `--features postgres` on the cargo \
         command line (`cargo run --features postgres ...`)"
            .into(),
    ))
}

static DEFAULT: OnceLock<IdempotencyManager> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// Sets the process-wide default manager, used by `#[idempotent]` functions and pipelines that
/// name no manager. Returns the manager back if a default was already set (or already built).
///
/// # Errors
/// `Err(manager)` when a default exists already.
pub fn set_default_manager(
    manager: IdempotencyManager,
) -> std::result::Result<(), IdempotencyManager> {
    DEFAULT.set(manager)
}

/// The process-wide default manager: the one given to [`set_default_manager`], else one built
/// on first use from `IDEMPOTENCY_URL` (see [`StoreUrl`]), else the embedded file store in
/// `.idempotency` under the working directory. Cheap after the first call (a clone of an `Arc`).
///
/// # Errors
/// [`Error::Config`] for a bad `IDEMPOTENCY_URL`; the store's errors when it cannot be opened.
/// A failed first use is not remembered: the next call tries again.
pub fn default_manager() -> Result<IdempotencyManager> {
    if let Some(m) = DEFAULT.get() {
        return Ok(m.clone());
    }
    let _guard = INIT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(m) = DEFAULT.get() {
        return Ok(m.clone());
    }
    let url = match std::env::var(StoreUrl::ENV) {
        Ok(s) if !s.trim().is_empty() => StoreUrl::parse(&s)?,
        _ => StoreUrl::File(PathBuf::from(StoreUrl::DEFAULT_DIR)),
    };
    let manager = url.open_manager()?;
    Ok(DEFAULT.get_or_init(|| manager).clone())
}
