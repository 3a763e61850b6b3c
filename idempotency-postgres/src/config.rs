//! Settings of a [`PostgresStorage`](crate::PostgresStorage): where the table lives, the pool.

use std::time::Duration;

use idempotency_core::{Error, Result};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::storage::PostgresStorage;

/// Settings for a [`PostgresStorage`]: the table (and schema) holding the records, the pool
/// size and the purge batch size.
///
/// ```no_run
/// use idempotency_postgres::PostgresConfig;
///
/// let store = PostgresConfig::new()
///     .schema("billing")
///     .table("idempotency_records")
///     .connect("postgres://app@db.internal/app")?;
/// # Ok::<(), idempotency_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    pub(crate) schema: Option<String>,
    pub(crate) table: String,
    pub(crate) max_connections: u32,
    pub(crate) acquire_timeout: Duration,
    pub(crate) purge_batch: u32,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// The longest table or schema name accepted, in bytes: PostgreSQL truncates identifiers at 63
/// bytes, and the index name adds `_expires_at` to the table name.
pub const MAX_IDENTIFIER_BYTES: usize = 48;

/// Checks a table or schema name: 1 to [`MAX_IDENTIFIER_BYTES`] ASCII letters, digits and `_`,
/// not starting with a digit. Such a name never needs escaping; it is still always quoted.
pub(crate) fn validate_identifier(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IDENTIFIER_BYTES
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "invalid PostgreSQL {what} name {name:?}: use 1 to {MAX_IDENTIFIER_BYTES} ASCII \
             letters, digits and `_`, not starting with a digit"
        )))
    }
}

impl PostgresConfig {
    /// The default table name.
    pub const DEFAULT_TABLE: &'static str = "idempotency_records";
    /// The default pool size for [`connect`](Self::connect): 10 connections.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;
    /// The default time a call waits for a pooled connection: 5 s.
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
    /// The default number of rows one `purge_expired` statement deletes: 1 000.
    pub const DEFAULT_PURGE_BATCH: u32 = 1000;

    /// Default settings: table [`DEFAULT_TABLE`](Self::DEFAULT_TABLE) in the connection's
    /// `search_path` schema.
    pub fn new() -> Self {
        PostgresConfig {
            schema: None,
            table: Self::DEFAULT_TABLE.to_owned(),
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: Self::DEFAULT_ACQUIRE_TIMEOUT,
            purge_batch: Self::DEFAULT_PURGE_BATCH,
        }
    }

    /// The table holding the records (validated when the store is built: ASCII letters, digits
    /// and `_`, at most [`MAX_IDENTIFIER_BYTES`] bytes; always quoted in SQL). Stores on
    /// different tables never see each other's records.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// The schema of the table (validated like the table name); default: none, so the
    /// connection's `search_path` decides. [`PostgresStorage::ensure_schema`] creates it if
    /// missing.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// The pool size used by [`connect`](Self::connect); default 10. Ignored by
    /// [`with_pool`](Self::with_pool) (the caller's pool keeps its own size).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// How long a call waits for a free pooled connection before failing with
    /// [`Error::Storage`]; default 5 s. Used by [`connect`](Self::connect) only.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// How many expired rows one `DELETE` of
    /// [`purge_expired`](idempotency_core::StorageAdmin::purge_expired) removes (it repeats until
    /// fewer are left), so a large purge never holds many row locks at once; default 1 000.
    pub fn purge_batch(mut self, rows: u32) -> Self {
        self.purge_batch = rows;
        self
    }

    pub(crate) fn check(&self) -> Result<()> {
        validate_identifier("table", &self.table)?;
        if let Some(s) = &self.schema {
            validate_identifier("schema", s)?;
        }
        if self.max_connections == 0 || self.purge_batch == 0 || self.acquire_timeout.is_zero() {
            return Err(Error::Config(
                "the PostgreSQL pool size, acquire time-out and purge batch must be greater \
                 than zero"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Connects to the database at `url` (`postgres://[user[:password]@]host[:port]/database`
    /// with libpq-style query parameters such as `?sslmode=`), with a pool of its own driven by
    /// a dedicated thread, then runs [`PostgresStorage::ensure_schema`]. Blocks the calling
    /// thread until the table is ready; callable inside or outside a tokio runtime.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad table or schema name, a zero setting, a URL that does not
    /// parse, or a table that exists but is not an idempotency table (or was written by a newer
    /// schema version); [`Error::Storage`] when the database cannot be reached.
    pub fn connect(self, url: &str) -> Result<PostgresStorage> {
        self.check()?;
        let options: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| {
            Error::Config(format!("invalid PostgreSQL URL `{}`: {e}", redact(url)))
        })?;
        let (handle, shutdown) = crate::runtime::start_worker()?;
        let pool = {
            let _entered = handle.enter();
            PgPoolOptions::new()
                .max_connections(self.max_connections)
                .acquire_timeout(self.acquire_timeout)
                .connect_lazy_with(options)
        };
        let store = PostgresStorage::assemble(pool, handle, Some(shutdown), &self, redact(url));
        idempotency_core::block_on(store.ensure_schema())?;
        Ok(store)
    }

    /// A store over the caller's own pool. Must be called inside the tokio runtime that drives
    /// `pool` (its handle is kept, so the store's futures also work from the sync API on other
    /// threads while that runtime runs). Touches no database: call
    /// [`PostgresStorage::ensure_schema`] once before use.
    ///
    /// The sync API (`execute_sync`) blocks its thread until the database answers: never call
    /// it on the thread of a current-thread runtime that drives the pool (it would wait on
    /// itself); a multi-thread runtime, or [`connect`](Self::connect), has no such limit.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad table or schema name, or when called outside a tokio runtime.
    pub fn with_pool(self, pool: PgPool) -> Result<PostgresStorage> {
        self.check()?;
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Config(
                "PostgresConfig::with_pool must be called inside the tokio runtime that drives \
                 the pool"
                    .into(),
            )
        })?;
        Ok(PostgresStorage::assemble(
            pool,
            handle,
            None,
            &self,
            "caller's pool".into(),
        ))
    }
}

/// `url` with its password replaced by `***`, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_validated() {
        for good in ["t", "_t", "idempotency_records", "T2", &"a".repeat(48)] {
            assert!(validate_identifier("table", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1t",
            "a-b",
            "a\"b",
            "a b",
            "a;drop table x",
            "a\u{0}b",
            "é",
            &"a".repeat(49),
        ] {
            let e = validate_identifier("table", bad).unwrap_err();
            assert_eq!(e.kind(), idempotency_core::ErrorKind::Config, "{bad:?}");
        }
    }

    #[test]
    fn redact_hides_the_password() {
        assert_eq!(
            redact("postgres://u:secret@h:1/d"),
            "postgres://u:***@h:1/d"
        );
        assert_eq!(redact("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(redact("postgres://h/d"), "postgres://h/d");
    }

    #[test]
    fn a_bad_url_or_setting_is_a_config_error() {
        let e = PostgresConfig::new().connect("not a url").unwrap_err();
        assert_eq!(e.kind(), idempotency_core::ErrorKind::Config);
        let e = PostgresConfig::new()
            .table("x\"; drop")
            .connect("postgres://h/d")
            .unwrap_err();
        assert_eq!(e.kind(), idempotency_core::ErrorKind::Config);
        let e = PostgresConfig::new()
            .purge_batch(0)
            .connect("postgres://h/d")
            .unwrap_err();
        assert_eq!(e.kind(), idempotency_core::ErrorKind::Config);
    }

    #[test]
    fn with_pool_outside_a_runtime_is_a_config_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let pool = {
            let _g = rt.enter();
            sqlx::postgres::PgPoolOptions::new().connect_lazy("postgres://h/d")
        }
        .unwrap();
        let e = PostgresConfig::new().with_pool(pool).unwrap_err();
        assert_eq!(e.kind(), idempotency_core::ErrorKind::Config);
    }
}
