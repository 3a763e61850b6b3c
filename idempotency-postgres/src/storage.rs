//! `PostgresStorage`: the store, its constructors, and its state transitions (`Storage`).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use idempotency_core::{
    Claim, ClaimRequest, Error, IdempotencyKey, Observed, Owner, Record, RecordError, RecordStatus,
    Result, Storage, Timestamp,
};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use tokio::runtime::Handle;

use crate::config::PostgresConfig;
use crate::row::{check_key, key_bytes, millis, timestamp, token_param, ClaimRow, RawRow};
use crate::runtime::InRuntime;
use crate::sql::{Query, Sql};

/// How many times a claim is re-run when its snapshot missed a row that its conflict check
/// saw (a concurrent commit between the two; see `try_claim`).
pub(crate) const CLAIM_ATTEMPTS: usize = 16;

/// The PostgreSQL store: one row per record in one table, every state transition one SQL
/// statement on the database's clock. See the [crate documentation](crate).
///
/// Clones share one pool. The store's futures can be driven by any executor or by
/// [`idempotency_core::block_on`] on any thread: each call is polled with the pool's tokio
/// runtime entered (the store's own background runtime after
/// [`PostgresConfig::connect`], the caller's after [`PostgresConfig::with_pool`]).
#[derive(Clone)]
pub struct PostgresStorage {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: PgPool,
    pub(crate) handle: Handle,
    pub(crate) sql: Sql,
    pub(crate) table: String,
    pub(crate) schema: Option<String>,
    pub(crate) purge_batch: i64,
    pub(crate) target: String,
    // Dropped with the last clone: ends the background thread (stores from `connect` only).
    _shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStorage")
            .field("target", &self.inner.target)
            .field("table", &self.inner.sql.table)
            .finish_non_exhaustive()
    }
}

impl PostgresStorage {
    /// Connects to `url` with default settings (table `idempotency_records`) and creates the
    /// table if needed. See [`PostgresConfig::connect`].
    ///
    /// # Errors
    /// As [`PostgresConfig::connect`].
    pub fn connect(url: &str) -> Result<PostgresStorage> {
        PostgresConfig::new().connect(url)
    }

    /// Default settings, to adjust before [`PostgresConfig::connect`] or
    /// [`PostgresConfig::with_pool`].
    pub fn builder() -> PostgresConfig {
        PostgresConfig::new()
    }

    /// A store over the caller's pool with default settings. See [`PostgresConfig::with_pool`];
    /// call [`ensure_schema`](Self::ensure_schema) once before use.
    ///
    /// # Errors
    /// As [`PostgresConfig::with_pool`].
    pub fn from_pool(pool: PgPool) -> Result<PostgresStorage> {
        PostgresConfig::new().with_pool(pool)
    }

    pub(crate) fn assemble(
        pool: PgPool,
        handle: Handle,
        shutdown: Option<tokio::sync::oneshot::Sender<()>>,
        config: &PostgresConfig,
        target: String,
    ) -> PostgresStorage {
        PostgresStorage {
            inner: Arc::new(Inner {
                pool,
                handle,
                sql: Sql::new(config.schema.as_deref(), &config.table),
                table: config.table.clone(),
                schema: config.schema.clone(),
                purge_batch: i64::from(config.purge_batch),
                target,
                _shutdown: shutdown,
            }),
        }
    }

    /// The pool the store runs on (the caller's, or its own), for the caller's own queries and
    /// transactions.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The quoted, schema-qualified table name as used in SQL (`"schema"."table"`).
    pub fn table(&self) -> &str {
        &self.inner.sql.table
    }

    /// Runs `fut` with the pool's runtime entered; maps sqlx errors to [`Error::Storage`].
    pub(crate) async fn run<T>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = sqlx::Result<T>>,
    ) -> Result<T> {
        InRuntime::new(&self.inner.handle, fut)
            .await
            .map_err(|e| Error::storage(operation, e))
    }

    pub(crate) async fn fetch_optional(
        &self,
        op: &'static str,
        q: Query<'_>,
    ) -> Result<Option<PgRow>> {
        self.run(op, q.fetch_optional(&self.inner.pool)).await
    }

    async fn finish(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        status: RecordStatus,
        result: &[u8],
        error: Option<&RecordError>,
        ttl: Duration,
    ) -> Result<Record> {
        let op = if status == RecordStatus::Success {
            "complete"
        } else {
            "fail"
        };
        let body = Record::encode_head(key, status, result, error)?;
        let q = self.inner.sql.finish_query(key, owner, status, &body, ttl);
        let Some(row) = self.fetch_optional(op, q).await? else {
            return Err(Error::LeaseLost { key: key.clone() });
        };
        let column = |c: &str| -> Result<i64> { row.try_get(c).map_err(|e| Error::storage(op, e)) };
        let (created_at, expires_at) = (column("created_at")?, column("expires_at")?);
        let fingerprint: Vec<u8> = row
            .try_get("fingerprint")
            .map_err(|e| Error::storage(op, e))?;
        RawRow {
            key: Vec::new(),
            status: crate::row::status_code(status),
            execution_id: owner.execution_id.as_bytes().to_vec(),
            fencing_token: token_param(owner),
            created_at,
            expires_at,
            lease_until: None,
            fingerprint,
            body,
        }
        .decode(&|| key.to_string())
    }

    /// The row's columns and the database's time (`now`) it was read at.
    pub(crate) fn observed(&self, row: &PgRow, with_key: bool) -> Result<(RawRow, Timestamp)> {
        let raw = RawRow::from_row(row, with_key).map_err(|e| Error::storage("get", e))?;
        let now: i64 = row.try_get("now").map_err(|e| Error::storage("get", e))?;
        Ok((raw, timestamp(now)))
    }
}

/// Whether a failed claim may have been applied by the database (its reply was lost).
fn is_ambiguous(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Io(_) | sqlx::Error::Protocol(_))
}

impl Storage for PostgresStorage {
    /// The schema-qualified table ([`PostgresStorage::table`]).
    fn namespace(&self, out: &mut String) {
        out.push_str("postgres:");
        out.push_str(self.table());
    }

    /// One statement (`INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE <expired or refresh>
    /// RETURNING`, plus the existing row when nothing was written). When a concurrent
    /// transaction committed between the statement's snapshot and its conflict check, the
    /// snapshot may miss the row (or show a claimable version that was not claimable by
    /// then): the statement is then run again (at most 16 times), which writes nothing twice.
    async fn try_claim(&self, key: &IdempotencyKey, req: &ClaimRequest) -> Result<Claim> {
        let body = Record::encode_head(key, RecordStatus::Pending, &[], None)?;
        for _ in 0..CLAIM_ATTEMPTS {
            let q = || self.inner.sql.claim_query(key, req, &body);
            let row = self
                .run("claim", async {
                    match q().fetch_optional(&self.inner.pool).await {
                        // The reply was lost: the claim may have been applied. It carries this
                        // caller's execution id, so the retry finds its own record (scenario 5).
                        Err(e) if is_ambiguous(&e) => q().fetch_optional(&self.inner.pool).await,
                        other => other,
                    }
                })
                .await?;
            let Some(row) = row else { continue };
            match ClaimRow::read(&row, key, req)? {
                ClaimRow::Claimed {
                    token, lease_until, ..
                } => {
                    return Ok(Claim::Acquired {
                        owner: Owner {
                            execution_id: req.execution_id,
                            fencing_token: token,
                        },
                        lease_until,
                        takeover: token > 1,
                    })
                }
                ClaimRow::Stale => continue,
                ClaimRow::Existing { record, now } => {
                    if record.status == RecordStatus::Pending
                        && record.owner.execution_id == req.execution_id
                    {
                        return Ok(Claim::Acquired {
                            owner: record.owner,
                            lease_until: record.expires_at,
                            takeover: false,
                        });
                    }
                    return Ok(Claim::Existing(Observed { record, now }));
                }
            }
        }
        Err(Error::storage(
            "claim",
            format!("the record kept changing during {CLAIM_ATTEMPTS} claim attempts"),
        ))
    }

    async fn complete(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        result: &[u8],
        ttl: Duration,
    ) -> Result<Record> {
        self.finish(key, owner, RecordStatus::Success, result, None, ttl)
            .await
    }

    async fn fail(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        error: &RecordError,
        ttl: Duration,
    ) -> Result<Record> {
        self.finish(key, owner, RecordStatus::Failed, &[], Some(error), ttl)
            .await
    }

    async fn release(&self, key: &IdempotencyKey, owner: &Owner) -> Result<bool> {
        let q = sqlx::query(&self.inner.sql.release)
            .bind(key_bytes(key))
            .bind(owner.execution_id.as_bytes().as_slice())
            .bind(token_param(owner));
        let done = self.run("release", q.execute(&self.inner.pool)).await?;
        Ok(done.rows_affected() > 0)
    }

    async fn renew(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        lease: Duration,
    ) -> Result<Timestamp> {
        let q = sqlx::query(&self.inner.sql.renew)
            .bind(key_bytes(key))
            .bind(owner.execution_id.as_bytes().as_slice())
            .bind(token_param(owner))
            .bind(millis(lease));
        match self.fetch_optional("renew", q).await? {
            None => Err(Error::LeaseLost { key: key.clone() }),
            Some(row) => {
                let until: i64 = row
                    .try_get("expires_at")
                    .map_err(|e| Error::storage("renew", e))?;
                Ok(timestamp(until))
            }
        }
    }

    /// Reads the record; an expired record reads as absent (`None`), whether or not it has
    /// been purged yet.
    async fn get(&self, key: &IdempotencyKey) -> Result<Option<Observed>> {
        let q = sqlx::query(&self.inner.sql.get).bind(key_bytes(key));
        let Some(row) = self.fetch_optional("get", q).await? else {
            return Ok(None);
        };
        let (raw, now) = self.observed(&row, false)?;
        let record = raw.decode(&|| key.to_string())?;
        check_key(&record, key)?;
        Ok(Some(Observed { record, now }))
    }

    async fn delete(&self, key: &IdempotencyKey) -> Result<bool> {
        let q = sqlx::query(&self.inner.sql.delete).bind(key_bytes(key));
        let done = self.run("delete", q.execute(&self.inner.pool)).await?;
        Ok(done.rows_affected() > 0)
    }
}
