//! Creating and versioning the table: [`PostgresStorage::ensure_schema`].

use idempotency_core::{Error, Result};
use sqlx::Executor;

use crate::sql::COLUMNS;
use crate::storage::PostgresStorage;

/// The schema version written by this build (in the table's comment).
pub const SCHEMA_VERSION: u32 = 1;
const SCHEMA_COMMENT_PREFIX: &str = "idempotency-postgres records, schema version ";

impl PostgresStorage {
    /// Creates the schema (if configured), the table and its expiry index if they are missing,
    /// and records the schema version in the table's comment. Idempotent, and safe to run from
    /// many processes at once (serialised by a transaction-scoped advisory lock).
    ///
    /// Table layout (schema version 1): `key bytea PRIMARY KEY` (the idempotency key's UTF-8
    /// bytes), `status smallint` (0 pending, 1 success, 2 failed), `execution_id bytea` (16
    /// bytes), `fencing_token bigint`, `created_at`, `expires_at` and `lease_until` as `bigint`
    /// milliseconds since the Unix epoch on the database's clock, `fingerprint bytea` (32
    /// bytes) and `body bytea` (the record's header, key, status, result and error in the
    /// record format); index `<table>_expires_at` on `expires_at`.
    ///
    /// # Errors
    /// [`Error::Config`] when the table exists but lacks these columns, or carries a newer
    /// schema version than [`SCHEMA_VERSION`]; [`Error::Storage`] when the database fails.
    pub async fn ensure_schema(&self) -> Result<()> {
        let t = self.inner.sql.table.clone();
        let index = format!("\"{}_expires_at\"", self.inner.table);
        let schema = self.inner.schema.clone();
        let comment: Option<String> = self
            .run("ensure_schema", async {
                let mut tx = self.inner.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7305271466105827661)")
                    .execute(&mut *tx)
                    .await?;
                if let Some(s) = &schema {
                    tx.execute(format!("CREATE SCHEMA IF NOT EXISTS \"{s}\"").as_str())
                        .await?;
                }
                tx.execute(
                    format!(
                        "CREATE TABLE IF NOT EXISTS {t} ( \
                           key bytea PRIMARY KEY, \
                           status smallint NOT NULL CHECK (status IN (0, 1, 2)), \
                           execution_id bytea NOT NULL, \
                           fencing_token bigint NOT NULL, \
                           created_at bigint NOT NULL, \
                           expires_at bigint NOT NULL, \
                           lease_until bigint, \
                           fingerprint bytea NOT NULL, \
                           body bytea NOT NULL)"
                    )
                    .as_str(),
                )
                .await?;
                tx.execute(
                    format!("CREATE INDEX IF NOT EXISTS {index} ON {t} (expires_at)").as_str(),
                )
                .await?;
                let comment: Option<String> =
                    sqlx::query_scalar("SELECT obj_description($1::regclass, 'pg_class')")
                        .bind(&t)
                        .fetch_one(&mut *tx)
                        .await?;
                // Fails with undefined column (SQLSTATE 42703) on a foreign table of the same
                // name; any other failure (a lost connection, a permission) is the store's error.
                let columns = tx
                    .execute(format!("SELECT {COLUMNS} FROM {t} LIMIT 0").as_str())
                    .await;
                if let Err(e) = columns {
                    let undefined_column = e
                        .as_database_error()
                        .and_then(|d| d.code())
                        .is_some_and(|code| code == "42703");
                    if !undefined_column {
                        return Err(e);
                    }
                    tx.rollback().await?;
                    return Ok(Some(String::new()));
                }
                let version = comment
                    .as_deref()
                    .and_then(|c| c.strip_prefix(SCHEMA_COMMENT_PREFIX))
                    .and_then(|v| v.trim().parse::<u32>().ok());
                if version.is_none_or(|v| v < SCHEMA_VERSION) {
                    // Version 1 is the first: nothing to migrate yet, only the mark to write.
                    tx.execute(
                        format!(
                            "COMMENT ON TABLE {t} IS '{SCHEMA_COMMENT_PREFIX}{SCHEMA_VERSION}'"
                        )
                        .as_str(),
                    )
                    .await?;
                }
                tx.commit().await?;
                Ok(comment)
            })
            .await?;
        match comment {
            Some(c) if c.is_empty() => Err(Error::Config(format!(
                "table {} exists but is not an idempotency table (its columns differ); choose \
                 another table name",
                self.inner.sql.table
            ))),
            Some(c) => match c
                .strip_prefix(SCHEMA_COMMENT_PREFIX)
                .and_then(|v| v.trim().parse::<u32>().ok())
            {
                Some(v) if v > SCHEMA_VERSION => Err(Error::Config(format!(
                    "table {} has schema version {v}; this build knows versions up to \
                     {SCHEMA_VERSION}",
                    self.inner.sql.table
                ))),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }
}
