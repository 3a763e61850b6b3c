//! `PostgresStorage`: the `Storage` implementation, its statements and its runtime bridge.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use idempotency_core::{
    Claim, ClaimRequest, Error, Fingerprint, IdempotencyKey, Listed, Observed, Owner, Page, Record,
    RecordError, RecordStatus, Result, Storage, StorageAdmin, Timestamp,
};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Executor, PgPool, Postgres, Row};
use tokio::runtime::Handle;

use crate::config::PostgresConfig;

/// The schema version written by this build (in the table's comment).
pub const SCHEMA_VERSION: u32 = 1;
const SCHEMA_COMMENT_PREFIX: &str = "idempotency-postgres records, schema version ";

/// The database's clock in milliseconds since the Unix epoch. `clock_timestamp()` is the
/// time at the moment of evaluation, not the start of the transaction (`now()`), so a long
/// transaction never stretches a lease (SEMANTICS.md scenario 22).
const NOW_MS: &str = "(floor(extract(epoch FROM clock_timestamp()) * 1000))::bigint";

/// The longest TTL or lease kept, in ms (about 31 700 years): `now + MAX_MILLIS` stays far
/// inside `bigint`.
const MAX_MILLIS: u64 = 1_000_000_000_000_000;

/// How many times a claim is re-run when its snapshot missed a row that its conflict check
/// saw (a concurrent commit between the two; see `try_claim`).
pub(crate) const CLAIM_ATTEMPTS: usize = 16;

const STATUS_PENDING: i16 = 0;
const STATUS_SUCCESS: i16 = 1;
const STATUS_FAILED: i16 = 2;

pub(crate) fn millis(d: Duration) -> i64 {
    let ms = u64::try_from(d.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_MILLIS);
    i64::try_from(ms).unwrap_or(i64::MAX)
}

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

/// The statements, built once from the validated, quoted table name (never from input).
pub(crate) struct Sql {
    /// `"schema"."table"` or `"table"`.
    pub(crate) table: String,
    pub(crate) claim: String,
    pub(crate) finish: String,
    release: String,
    renew: String,
    get: String,
    delete: String,
    purge: String,
    list_first: String,
    list_after: String,
    remove_unreadable: String,
}

const COLUMNS: &str = "key, status, execution_id, fencing_token, created_at, expires_at, \
                       lease_until, fingerprint, body";

impl Sql {
    fn new(schema: Option<&str>, table: &str) -> Sql {
        let t = match schema {
            Some(s) => format!("\"{s}\".\"{table}\""),
            None => format!("\"{table}\""),
        };
        // Claim: insert a fresh pending row, or take over the existing row iff it is expired
        // (or finished, with the cache bypass `$6`), bumping its fencing token. When the
        // statement's snapshot already shows a live row that cannot be claimed (the replay and
        // conflict paths), no insert is attempted: the statement writes and locks nothing (no
        // transaction id, no WAL flush) and returns that row. Otherwise the conflict check
        // locks the newest committed row version and decides on it; when it writes nothing,
        // the snapshot's row is returned and the caller re-runs the statement (see try_claim).
        let claim = format!(
            "WITH n AS (SELECT {NOW_MS} AS now), \
             cur AS (SELECT {COLUMNS} FROM {t} WHERE key = $1), \
             ins AS ( \
               INSERT INTO {t} AS r ({COLUMNS}) \
               SELECT $1, {STATUS_PENDING}, $2, 1, n.now, n.now + $3, n.now + $3, $4, $5 FROM n \
               WHERE NOT EXISTS (SELECT 1 FROM cur WHERE cur.expires_at > n.now \
                 AND NOT ($6 AND cur.status <> {STATUS_PENDING})) \
               ON CONFLICT (key) DO UPDATE SET status = {STATUS_PENDING}, \
                 execution_id = EXCLUDED.execution_id, fencing_token = r.fencing_token + 1, \
                 created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, \
                 lease_until = EXCLUDED.lease_until, fingerprint = EXCLUDED.fingerprint, \
                 body = EXCLUDED.body \
               WHERE r.expires_at <= EXCLUDED.created_at \
                  OR ($6 AND r.status <> {STATUS_PENDING}) \
               RETURNING r.fencing_token, r.expires_at) \
             SELECT true AS claimed, ins.fencing_token, ins.expires_at, \
               NULL::smallint AS status, NULL::bytea AS execution_id, NULL::bigint AS created_at, \
               NULL::bigint AS lease_until, NULL::bytea AS fingerprint, NULL::bytea AS body, \
               n.now FROM ins, n \
             UNION ALL \
             SELECT false, cur.fencing_token, cur.expires_at, cur.status, cur.execution_id, \
               cur.created_at, cur.lease_until, cur.fingerprint, cur.body, n.now \
             FROM cur, n WHERE NOT EXISTS (SELECT 1 FROM ins)"
        );
        // Finish (complete or fail): fenced on status, execution id and fencing token. A finish
        // this owner already applied (same status, same bytes: a retry after a lost reply) is
        // answered with the stored row and writes nothing (the Storage contract: re-application
        // by the same owner succeeds). The second branch reads the statement's snapshot, so it
        // can only match when the update matched nothing.
        let finish = format!(
            "WITH upd AS ( \
               UPDATE {t} SET status = $4, body = $5, lease_until = NULL, \
                 expires_at = {NOW_MS} + $6 \
               WHERE key = $1 AND status = {STATUS_PENDING} AND execution_id = $2 \
                 AND fencing_token = $3 \
               RETURNING created_at, expires_at, fingerprint) \
             SELECT created_at, expires_at, fingerprint FROM upd \
             UNION ALL \
             SELECT created_at, expires_at, fingerprint FROM {t} \
             WHERE key = $1 AND status = $4 AND execution_id = $2 AND fencing_token = $3 \
               AND body = $5 AND expires_at > {NOW_MS} AND NOT EXISTS (SELECT 1 FROM upd)"
        );
        let release = format!(
            "DELETE FROM {t} WHERE key = $1 AND status = {STATUS_PENDING} \
             AND execution_id = $2 AND fencing_token = $3"
        );
        let renew = format!(
            "UPDATE {t} SET expires_at = {NOW_MS} + $4, lease_until = {NOW_MS} + $4 \
             WHERE key = $1 AND status = {STATUS_PENDING} AND execution_id = $2 \
               AND fencing_token = $3 \
             RETURNING expires_at"
        );
        let get = format!(
            "SELECT {COLUMNS}, {NOW_MS} AS now FROM {t} WHERE key = $1 AND expires_at > {NOW_MS}"
        );
        let delete = format!("DELETE FROM {t} WHERE key = $1");
        // Bounded batch; rows locked by an open transaction (a claim in progress) are skipped,
        // and the outer condition is re-checked on the newest row version, so a record
        // re-claimed meanwhile survives (scenario 30).
        let purge = format!(
            "DELETE FROM {t} WHERE key IN ( \
               SELECT key FROM {t} WHERE expires_at <= {NOW_MS} \
               ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
             AND expires_at <= {NOW_MS}"
        );
        let list_first =
            format!("SELECT {COLUMNS}, {NOW_MS} AS now FROM {t} ORDER BY key LIMIT $1");
        let list_after = format!(
            "SELECT {COLUMNS}, {NOW_MS} AS now FROM {t} WHERE key > $2 ORDER BY key LIMIT $1"
        );
        let remove_unreadable = format!(
            "DELETE FROM {t} WHERE key = $1 AND status = $2 AND execution_id = $3 \
             AND fencing_token = $4 AND expires_at = $5 AND fingerprint = $6 AND body = $7"
        );
        Sql {
            table: t,
            claim,
            finish,
            release,
            renew,
            get,
            delete,
            purge,
            list_first,
            list_after,
            remove_unreadable,
        }
    }
}

/// Starts the background thread and its runtime (stores from `connect`); returns the
/// runtime's handle and the shutdown sender.
pub(crate) fn start_worker() -> Result<(Handle, tokio::sync::oneshot::Sender<()>)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::storage("start", e))?;
    let handle = runtime.handle().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("idempotency-postgres".into())
        .spawn(move || {
            runtime.block_on(async move {
                let _ = rx.await;
            });
        })
        .map_err(|e| Error::storage("start", e))?;
    Ok((handle, tx))
}

/// A future polled with `handle`'s runtime entered, so sqlx (which needs a tokio context for
/// its I/O, timers and pool tasks) works under any executor, including
/// `idempotency_core::block_on` on a plain thread.
pub(crate) struct InRuntime<'h, F> {
    handle: &'h Handle,
    fut: std::pin::Pin<Box<F>>,
}

impl<'h, F: Future> InRuntime<'h, F> {
    pub(crate) fn new(handle: &'h Handle, fut: F) -> Self {
        InRuntime {
            handle,
            fut: Box::pin(fut),
        }
    }
}

impl<F: Future> Future for InRuntime<'_, F> {
    type Output = F::Output;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.get_mut();
        let _entered = this.handle.enter();
        this.fut.as_mut().poll(cx)
    }
}

fn status_code(s: RecordStatus) -> i16 {
    match s {
        RecordStatus::Success => STATUS_SUCCESS,
        RecordStatus::Failed => STATUS_FAILED,
        RecordStatus::Pending | RecordStatus::Expired => STATUS_PENDING,
    }
}

/// The head of a record: everything [`Record::encode`] writes before `created_at` (header,
/// key, status, result, error). The rest of the record lives in typed columns.
pub(crate) fn head(
    key: &IdempotencyKey,
    status: RecordStatus,
    result: &[u8],
    error: Option<&RecordError>,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(16 + key.as_str().len() + result.len());
    out.extend_from_slice(b"IDR");
    out.push(Record::FORMAT_VERSION);
    postcard::to_extend(&(key, status, result, error), out).map_err(|e| Error::Encode {
        what: "a record",
        message: e.to_string(),
    })
}

/// The columns of one row, as read.
pub(crate) struct RawRow {
    pub(crate) key: Vec<u8>,
    pub(crate) status: i16,
    pub(crate) execution_id: Vec<u8>,
    pub(crate) fencing_token: i64,
    pub(crate) created_at: i64,
    pub(crate) expires_at: i64,
    pub(crate) lease_until: Option<i64>,
    pub(crate) fingerprint: Vec<u8>,
    pub(crate) body: Vec<u8>,
}

impl RawRow {
    pub(crate) fn from_row(row: &PgRow, with_key: bool) -> sqlx::Result<RawRow> {
        Ok(RawRow {
            key: if with_key {
                row.try_get("key")?
            } else {
                Vec::new()
            },
            status: row.try_get("status")?,
            execution_id: row.try_get("execution_id")?,
            fencing_token: row.try_get("fencing_token")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            lease_until: row.try_get("lease_until")?,
            fingerprint: row.try_get("fingerprint")?,
            body: row.try_get("body")?,
        })
    }

    /// Rebuilds the record: the stored head followed by the postcard encoding of the typed
    /// columns is exactly `Record::encode()`, decoded by core (so an unreadable head is
    /// `CorruptRecord`, another format version `IncompatibleRecord`). `location` names the row
    /// in errors.
    pub(crate) fn decode(&self, location: &dyn Fn() -> String) -> Result<Record> {
        let corrupt = |reason: &str| Error::CorruptRecord {
            key: location(),
            reason: reason.to_owned(),
        };
        let token =
            u64::try_from(self.fencing_token).map_err(|_| corrupt("negative fencing token"))?;
        let created = u64::try_from(self.created_at).map_err(|_| corrupt("negative time"))?;
        let expires = u64::try_from(self.expires_at).map_err(|_| corrupt("negative time"))?;
        let lease = match self.lease_until {
            Some(v) => Some(Timestamp(
                u64::try_from(v).map_err(|_| corrupt("negative time"))?,
            )),
            None => None,
        };
        let id = uuid::Uuid::from_slice(&self.execution_id)
            .map_err(|_| corrupt("an execution id is 16 bytes"))?;
        let fp: [u8; 32] = self
            .fingerprint
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("a fingerprint is 32 bytes"))?;
        let owner = Owner {
            execution_id: id,
            fencing_token: token,
        };
        let tail = (
            Timestamp(created),
            Timestamp(expires),
            owner,
            lease,
            Fingerprint(fp),
        );
        // The head must be a whole record head on its own: a head that is short, foreign or
        // of another version is reported as core reports those bytes, and one that does not
        // end exactly where the columns begin is corrupt (never decoded across the boundary).
        let b = &self.body;
        if b.len() < 4 || &b[..3] != b"IDR" || b[3] != Record::FORMAT_VERSION {
            return Err(Record::decode_at(b, location)
                .err()
                .unwrap_or_else(|| corrupt("not a record head")));
        }
        type Head<'a> = (IdempotencyKey, RecordStatus, &'a [u8], Option<RecordError>);
        match postcard::take_from_bytes::<Head<'_>>(&b[4..]) {
            Ok((_, [])) => {}
            Ok(_) => return Err(corrupt("trailing bytes after the record head")),
            Err(e) => return Err(corrupt(&format!("undecodable record head: {e}"))),
        }
        let mut bytes = self.body.clone();
        bytes = postcard::to_extend(&tail, bytes).map_err(|e| Error::Encode {
            what: "a record",
            message: e.to_string(),
        })?;
        let record = Record::decode_at(&bytes, location)?;
        if status_code(record.status) != self.status {
            return Err(corrupt("the status column disagrees with the record"));
        }
        Ok(record)
    }
}

fn location_of(key: &[u8]) -> String {
    let mut s = String::with_capacity(key.len() * 2);
    for b in key {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// Whether a failed claim may have been applied by the database (its reply was lost).
fn is_ambiguous(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Io(_) | sqlx::Error::Protocol(_))
}

type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

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
        InRuntime {
            handle: &self.inner.handle,
            fut: Box::pin(fut),
        }
        .await
        .map_err(|e| Error::storage(operation, e))
    }

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

    fn key_bytes(key: &IdempotencyKey) -> &[u8] {
        key.as_str().as_bytes()
    }

    async fn fetch_optional(&self, op: &'static str, q: Query<'_>) -> Result<Option<PgRow>> {
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
        let body = head(key, status, result, error)?;
        let q = sqlx::query(&self.inner.sql.finish)
            .bind(Self::key_bytes(key))
            .bind(owner.execution_id.as_bytes().as_slice())
            .bind(token_param(owner))
            .bind(status_code(status))
            .bind(&body)
            .bind(millis(ttl));
        let Some(row) = self.fetch_optional(op, q).await? else {
            return Err(Error::LeaseLost { key: key.clone() });
        };
        let get = |c: &str| -> Result<i64> { row.try_get(c).map_err(|e| Error::storage(op, e)) };
        let created = get("created_at")?;
        let expires = get("expires_at")?;
        let fingerprint: Vec<u8> = row
            .try_get("fingerprint")
            .map_err(|e| Error::storage(op, e))?;
        RawRow {
            key: Vec::new(),
            status: status_code(status),
            execution_id: owner.execution_id.as_bytes().to_vec(),
            fencing_token: token_param(owner),
            created_at: created,
            expires_at: expires,
            lease_until: None,
            fingerprint,
            body,
        }
        .decode(&|| key.to_string())
    }

    fn observed(&self, row: &PgRow, key: Option<&IdempotencyKey>) -> Result<(RawRow, i64)> {
        let raw = RawRow::from_row(row, key.is_none()).map_err(|e| Error::storage("get", e))?;
        let now: i64 = row.try_get("now").map_err(|e| Error::storage("get", e))?;
        Ok((raw, now))
    }
}

fn token_param(owner: &Owner) -> i64 {
    // Tokens past `i64::MAX` cannot be stored; such an owner matches no row.
    i64::try_from(owner.fencing_token).unwrap_or(-1)
}

fn now_ts(now: i64) -> Timestamp {
    Timestamp(u64::try_from(now).unwrap_or(0))
}

fn check_key(record: &Record, key: &IdempotencyKey) -> Result<()> {
    if record.key != *key {
        return Err(Error::CorruptRecord {
            key: key.to_string(),
            reason: format!("the row holds the record of another key `{}`", record.key),
        });
    }
    Ok(())
}

impl Storage for PostgresStorage {
    /// One statement (`INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE <expired or refresh>
    /// RETURNING`, plus the existing row when nothing was written). When a concurrent
    /// transaction committed between the statement's snapshot and its conflict check, the
    /// snapshot may miss the row (or show a claimable version that was not claimable by
    /// then): the statement is then run again (at most 16 times), which writes nothing twice.
    async fn try_claim(&self, key: &IdempotencyKey, req: &ClaimRequest) -> Result<Claim> {
        let body = head(key, RecordStatus::Pending, &[], None)?;
        let lease = millis(req.lease);
        for _ in 0..CLAIM_ATTEMPTS {
            let q = || {
                sqlx::query(&self.inner.sql.claim)
                    .bind(Self::key_bytes(key))
                    .bind(req.execution_id.as_bytes().as_slice())
                    .bind(lease)
                    .bind(req.fingerprint.0.as_slice())
                    .bind(&body)
                    .bind(req.refresh)
            };
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
            let claimed: bool = row
                .try_get("claimed")
                .map_err(|e| Error::storage("claim", e))?;
            if claimed {
                let token: i64 = row
                    .try_get("fencing_token")
                    .map_err(|e| Error::storage("claim", e))?;
                let until: i64 = row
                    .try_get("expires_at")
                    .map_err(|e| Error::storage("claim", e))?;
                let token = u64::try_from(token).map_err(|_| Error::CorruptRecord {
                    key: key.to_string(),
                    reason: format!("the row's fencing token {token} is negative"),
                })?;
                return Ok(Claim::Acquired {
                    owner: Owner {
                        execution_id: req.execution_id,
                        fencing_token: token,
                    },
                    lease_until: now_ts(until),
                    takeover: token > 1,
                });
            }
            let (raw, now) = self.observed(&row, Some(key))?;
            let record = raw.decode(&|| key.to_string())?;
            check_key(&record, key)?;
            let now = now_ts(now);
            if record.is_expired_at(now) || (req.refresh && record.status != RecordStatus::Pending)
            {
                // Claimable in the snapshot, yet the conflict check wrote nothing: a newer
                // version was committed meanwhile. Look again.
                continue;
            }
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
            .bind(Self::key_bytes(key))
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
            .bind(Self::key_bytes(key))
            .bind(owner.execution_id.as_bytes().as_slice())
            .bind(token_param(owner))
            .bind(millis(lease));
        match self.fetch_optional("renew", q).await? {
            None => Err(Error::LeaseLost { key: key.clone() }),
            Some(row) => {
                let until: i64 = row
                    .try_get("expires_at")
                    .map_err(|e| Error::storage("renew", e))?;
                Ok(now_ts(until))
            }
        }
    }

    /// Reads the record; an expired record reads as absent (`None`), whether or not it has
    /// been purged yet.
    async fn get(&self, key: &IdempotencyKey) -> Result<Option<Observed>> {
        let q = sqlx::query(&self.inner.sql.get).bind(Self::key_bytes(key));
        let Some(row) = self.fetch_optional("get", q).await? else {
            return Ok(None);
        };
        let (raw, now) = self.observed(&row, Some(key))?;
        let record = raw.decode(&|| key.to_string())?;
        check_key(&record, key)?;
        Ok(Some(Observed {
            record,
            now: now_ts(now),
        }))
    }

    async fn delete(&self, key: &IdempotencyKey) -> Result<bool> {
        let q = sqlx::query(&self.inner.sql.delete).bind(Self::key_bytes(key));
        let done = self.run("delete", q.execute(&self.inner.pool)).await?;
        Ok(done.rows_affected() > 0)
    }
}

impl StorageAdmin for PostgresStorage {
    /// Lists rows in key order (keyset pagination on the primary key; the cursor is the last
    /// key of the page in hex). Expired rows are listed until purged. A row whose body or
    /// columns do not decode is [`Listed::Unreadable`], located by its key in hex.
    async fn list(&self, cursor: Option<&str>, limit: usize) -> Result<Page> {
        let limit = i64::try_from(limit.clamp(1, 10_000)).unwrap_or(10_000);
        let rows = match cursor {
            None => {
                let q = sqlx::query(&self.inner.sql.list_first).bind(limit + 1);
                self.run("list", q.fetch_all(&self.inner.pool)).await?
            }
            Some(c) => {
                let after =
                    unhex(c).ok_or_else(|| Error::Config(format!("invalid list cursor `{c}`")))?;
                let q = sqlx::query(&self.inner.sql.list_after)
                    .bind(limit + 1)
                    .bind(after);
                self.run("list", q.fetch_all(&self.inner.pool)).await?
            }
        };
        let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
        let mut items = Vec::with_capacity(rows.len());
        let mut last = None;
        for row in rows
            .iter()
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
        {
            let (raw, now) = self.observed(row, None)?;
            let location = location_of(&raw.key);
            let decoded = raw.decode(&|| location.clone()).and_then(|r| {
                if r.key.as_str().as_bytes() == raw.key.as_slice() {
                    Ok(r)
                } else {
                    Err(Error::CorruptRecord {
                        key: location.clone(),
                        reason: "the row holds the record of another key".into(),
                    })
                }
            });
            items.push(match decoded {
                Ok(record) => Listed::Record(Observed {
                    record,
                    now: now_ts(now),
                }),
                Err(error) => Listed::Unreadable {
                    location: location.clone(),
                    error,
                },
            });
            last = Some(location);
        }
        Ok(Page {
            items,
            cursor: if more { last } else { None },
        })
    }

    /// Removes the row at `location` (a key in hex, as listed) iff it is still unreadable and
    /// unchanged since it was read: the delete compares every column with what was read.
    async fn remove_unreadable(&self, location: &str) -> Result<bool> {
        let Some(key) = unhex(location) else {
            return Ok(false);
        };
        let sql = format!(
            "SELECT {COLUMNS}, 0::bigint AS now FROM {} WHERE key = $1",
            self.inner.sql.table
        );
        let q = sqlx::query(&sql).bind(key.clone());
        let Some(row) = self.run("get", q.fetch_optional(&self.inner.pool)).await? else {
            return Ok(false);
        };
        let (raw, _) = self.observed(&row, None)?;
        let readable = raw
            .decode(&|| location.to_owned())
            .is_ok_and(|r| r.key.as_str().as_bytes() == key.as_slice());
        if readable {
            return Ok(false);
        }
        let q = sqlx::query(&self.inner.sql.remove_unreadable)
            .bind(key)
            .bind(raw.status)
            .bind(raw.execution_id)
            .bind(raw.fencing_token)
            .bind(raw.expires_at)
            .bind(raw.fingerprint)
            .bind(raw.body);
        let done = self.run("delete", q.execute(&self.inner.pool)).await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes expired rows in batches of [`PostgresConfig::purge_batch`] rows (one statement
    /// each, using the `expires_at` index) until a batch comes back short. Each row is
    /// re-checked against the database's clock as it is deleted: a record re-claimed meanwhile
    /// survives (scenario 30); rows locked by an open transaction are left for the next purge.
    async fn purge_expired(&self) -> Result<u64> {
        let mut total = 0_u64;
        loop {
            let q = sqlx::query(&self.inner.sql.purge).bind(self.inner.purge_batch);
            let n = self
                .run("purge_expired", q.execute(&self.inner.pool))
                .await?
                .rows_affected();
            total += n;
            if n < u64::try_from(self.inner.purge_batch).unwrap_or(u64::MAX) {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_plus_columns_is_the_record_encoding() {
        let key = IdempotencyKey::derive("op", 1, &"x").unwrap().key;
        let owner = Owner {
            execution_id: uuid::Uuid::new_v4(),
            fencing_token: 7,
        };
        let mut rec = Record::pending(
            key.clone(),
            Fingerprint([3; 32]),
            owner,
            Timestamp(1000),
            Duration::from_secs(1),
        );
        rec.finish(
            RecordStatus::Success,
            Timestamp(1500),
            Duration::from_secs(9),
        );
        rec.result = vec![1, 2, 3];
        let raw = RawRow {
            key: Vec::new(),
            status: STATUS_SUCCESS,
            execution_id: owner.execution_id.as_bytes().to_vec(),
            fencing_token: 7,
            created_at: 1000,
            expires_at: 10_500,
            lease_until: None,
            fingerprint: vec![3; 32],
            body: head(&key, RecordStatus::Success, &[1, 2, 3], None).unwrap(),
        };
        assert_eq!(raw.decode(&|| "l".into()).unwrap(), rec);
        let mut bad = raw;
        bad.status = STATUS_FAILED;
        assert_eq!(
            bad.decode(&|| "l".into()).unwrap_err().kind(),
            idempotency_core::ErrorKind::CorruptRecord
        );
    }

    #[test]
    fn hex_round_trips() {
        let k = b"op:\x00'\"\xff";
        assert_eq!(unhex(&location_of(k)).unwrap(), k.to_vec());
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
    }
}
