//! Finding PostgreSQL, fresh schemas, and the conformance-kit harness over them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use idempotency::postgres::sqlx::{self, Connection, PgConnection};
use idempotency::{DynStorage, DynStorageAdmin, IdempotencyKey, PostgresConfig, PostgresStorage};
use idempotency_core::testing::{AdminHarness, Harness};

pub const URL_ENV: &str = "IDEMPOTENCY_POSTGRES_URL";
pub const REQUIRE_ENV: &str = "IDEMPOTENCY_REQUIRE_POSTGRES";
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Skips (or, with `IDEMPOTENCY_REQUIRE_POSTGRES=1`, fails) a test that has no database.
pub fn skip(test: &str, why: &str) {
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!("{test}: PostgreSQL required ({REQUIRE_ENV}=1) but {why}");
    }
    eprintln!("\n!!!!! SKIPPED {test}: {why}; set {URL_ENV} or start PostgreSQL !!!!!\n");
}

/// The database URL to test against.
pub fn url() -> String {
    std::env::var(URL_ENV)
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

/// Runs `f` on a fresh connection, on a current-thread runtime of its own on a new thread (so
/// it works from sync code and from inside any runtime).
pub fn with_conn<T: Send + 'static, Fut: Future<Output = T> + Send + 'static>(
    f: impl FnOnce(PgConnection) -> Fut + Send + 'static,
) -> Result<T, String> {
    let url = url();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let conn = tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&url))
                .await
                .map_err(|_| "connection timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            Ok(f(conn).await)
        })
    })
    .join()
    .map_err(|_| "the helper thread panicked".to_owned())?
}

/// Runs one SQL statement (no parameters) on a fresh connection; panics on failure.
pub fn exec(sql: &str) {
    let sql = sql.to_owned();
    with_conn(move |mut c| async move {
        sqlx::query(&sql)
            .execute(&mut c)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .unwrap()
    .unwrap();
}

/// Whether the database answers; `None` after `skip` when it does not.
pub fn available(test: &str) -> Option<()> {
    match with_conn(|mut c| async move { sqlx::query("SELECT 1").execute(&mut c).await.is_ok() }) {
        Ok(true) => Some(()),
        Ok(false) => {
            skip(test, &format!("`SELECT 1` failed on {}", url()));
            None
        }
        Err(e) => {
            skip(
                test,
                &format!("PostgreSQL at {} is not reachable ({e})", url()),
            );
            None
        }
    }
}

/// The name of the running test (libtest names its threads after the test).
pub fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_owned()
}

/// A fresh schema name (ASCII letters, digits and `_`).
pub fn fresh_schema() -> String {
    format!("idem_test_{}", uuid::Uuid::new_v4().simple())
}

/// A schema created for one test and dropped (with everything in it) when this is dropped.
pub struct Schema(pub String);

impl Schema {
    pub fn new() -> Schema {
        let name = fresh_schema();
        exec(&format!("CREATE SCHEMA \"{name}\""));
        Schema(name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.0);
        let _ = with_conn(move |mut c| async move {
            let _ = sqlx::query(&sql).execute(&mut c).await;
        });
    }
}

/// The conformance-kit harness: a store in a fresh schema; time passes for real (the store's
/// clock is the database's).
pub struct PgHarness {
    pub store: PostgresStorage,
    pub schema: Schema,
}

impl PgHarness {
    pub fn new() -> Option<PgHarness> {
        available(&test_name())?;
        let schema = Schema::new();
        let store = PostgresConfig::new()
            .schema(schema.0.clone())
            .connect(&url())
            .expect("open the PostgreSQL store");
        Some(PgHarness { store, schema })
    }
}

impl Harness for PgHarness {
    fn store(&self) -> Arc<dyn DynStorage> {
        Arc::new(self.store.clone())
    }
    fn advance(&self, d: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(d)
    }
    async fn write_raw(&self, key: &IdempotencyKey, bytes: &[u8]) -> bool {
        // The record's head lives in `body`: overwrite it.
        let sql = format!("UPDATE {} SET body = $2 WHERE key = $1", self.store.table());
        let (key, bytes) = (key.as_str().as_bytes().to_vec(), bytes.to_vec());
        with_conn(move |mut c| async move {
            sqlx::query(&sql)
                .bind(key)
                .bind(bytes)
                .execute(&mut c)
                .await
                .map(|r| r.rows_affected() == 1)
        })
        .unwrap()
        .unwrap()
    }
}

impl AdminHarness for PgHarness {
    fn admin_store(&self) -> Arc<dyn DynStorageAdmin> {
        Arc::new(self.store.clone())
    }
}
