//! Transactional mode: the claim, the caller's own writes and the completion in one
//! PostgreSQL transaction.

use std::time::{Duration, Instant};

use idempotency_core::{
    Call, ClaimRequest, Clock, ConflictPolicy, Error, FingerprintPolicy, Outcome, Owner,
    Provenance, Record, RecordError, RecordStatus, Retention, SystemClock, Timestamp,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::{Connection, PgConnection, Postgres, Row, Transaction};

use crate::row::{millis, timestamp, ClaimRow};
use crate::runtime::InRuntime;
use crate::storage::{PostgresStorage, CLAIM_ATTEMPTS};

/// A boxed, `Send` future borrowing the transaction's connection, as returned by the function
/// given to [`PostgresStorage::execute_in`] (the shape of sqlx's own `Connection::transaction`).
pub type TxFuture<'c, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'c>>;

/// Why a transactional call failed.
#[derive(Debug)]
pub enum TxError<E> {
    /// The store's error: [`Error::InProgress`] (another caller holds the key),
    /// [`Error::FingerprintMismatch`], [`Error::IncompatibleRecord`] (a stored value that does
    /// not decode as `T`, or a `Failed` record written outside transactional mode),
    /// [`Error::Storage`] (the database failed, a lost connection, or a serialization failure
    /// under `REPEATABLE READ`/`SERIALIZABLE`: roll back and retry the whole transaction).
    Store(Error),
    /// The function's own error. Everything this call wrote in the transaction (the claim and
    /// the function's writes) was rolled back to the call's savepoint; the rest of the
    /// transaction is untouched and may still be committed.
    Function(E),
}

impl<E: std::fmt::Display> std::fmt::Display for TxError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TxError::Store(e) => write!(f, "{e}"),
            TxError::Function(e) => write!(f, "{e}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for TxError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TxError::Store(e) => Some(e),
            TxError::Function(e) => Some(e),
        }
    }
}

impl<E> From<Error> for TxError<E> {
    fn from(e: Error) -> Self {
        TxError::Store(e)
    }
}

/// The default success TTL of a transactional call without [`Call::ttl`]: 1 hour (the
/// manager's default).
pub const DEFAULT_TX_TTL: Duration = Duration::from_secs(3600);
/// The default lease of a transactional call: 5 minutes. The `Pending` row is invisible to
/// others until the transaction commits, and a call completes or rolls back its claim before it
/// returns, so the lease only matters for a transaction committed after the call's future was
/// dropped (see [`PostgresStorage::execute_in`]).
pub const DEFAULT_TX_LEASE: Duration = Duration::from_secs(300);
/// How long a call under [`ConflictPolicy::Reject`] waits for the key's row lock before
/// answering [`Error::InProgress`]: 100 ms. A single statement holds it for far less; a longer
/// wait means another transaction holds the claim.
pub const REJECT_LOCK_WAIT: Duration = Duration::from_millis(100);
/// How often a call under [`ConflictPolicy::Wait`] looks again at a committed `Pending` record
/// (held by a non-transactional caller): 20 ms.
pub const WAIT_POLL_INTERVAL: Duration = Duration::from_millis(20);

const LOCK_NOT_AVAILABLE: &str = "55P03";

#[allow(clippy::large_enum_variant)] // A record holds its key inline (issue 17).
enum Claimed {
    Run { token: u64, created: Timestamp },
    Existing { record: Record, now: Timestamp },
}

fn store_err(operation: &'static str, e: sqlx::Error) -> Error {
    Error::storage(operation, e)
}

fn is_lock_timeout(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == LOCK_NOT_AVAILABLE)
}

impl PostgresStorage {
    /// Runs `f` at most once per idempotency key **inside the caller's transaction `tx`**: the
    /// claim, `f`'s writes (made through the connection `f` is given) and the `Success` record
    /// all belong to `tx`, so they commit together or not at all. After any crash either the
    /// business rows and the record both exist (a retry replays the stored value) or neither
    /// does (a retry runs `f` again). Commit `tx` yourself afterwards.
    ///
    /// - First call: `f` runs; its value is encoded (CBOR, checked to replay exactly) into the record; the answer is
    ///   an [`Outcome`] with `replayed == false`.
    /// - A committed `Success` record: `f` does not run; the stored value is decoded and
    ///   returned with `replayed == true`.
    /// - Another transaction holds the key (its claim is not committed yet): this call waits on
    ///   the key's row lock. When that transaction commits, this call replays its value; when it
    ///   rolls back, this call claims the key and runs `f`. How long it waits is
    ///   [`Call::on_conflict`]: [`ConflictPolicy::Reject`] (the default) waits at most
    ///   [`REJECT_LOCK_WAIT`], `Wait { timeout }` at most `timeout`; then
    ///   [`Error::InProgress`]. A committed `Pending` record (a non-transactional holder) is
    ///   answered the same way, polling every [`WAIT_POLL_INTERVAL`] under `Wait`.
    /// - The call's savepoint: everything this call writes is inside a savepoint of `tx`. When
    ///   `f` returns an error, or a store step fails, the call rolls back to it and returns
    ///   ([`TxError::Function`], [`TxError::Store`]): no claim and none of `f`'s writes remain,
    ///   and the rest of `tx` is intact. If this future is dropped before it completes, sqlx
    ///   rolls the savepoint back before the connection's next statement.
    ///
    /// Uses [`Call`]'s key, fingerprint, `ttl` (default [`DEFAULT_TX_TTL`]),
    /// `pending_timeout` (default [`DEFAULT_TX_LEASE`]), `on_conflict`, `fingerprint` policy
    /// (default: replay; `Reject` answers [`Error::FingerprintMismatch`]) and `refresh`.
    /// Errors are never stored: a failed `f` leaves no record (as Powertools).
    ///
    /// # Isolation
    /// `READ COMMITTED` (PostgreSQL's default) is all this needs. Every transition is one
    /// statement; the claim's `INSERT ... ON CONFLICT` locks the key's row (or waits on an
    /// uncommitted insert of the same key) and decides on the newest committed version, not on
    /// the transaction's snapshot, and the row lock is held until `tx` ends. So of concurrent
    /// transactions on one key exactly one claims; the others wait for it to end, then see its
    /// committed record (replay) or its rollback (and one of them claims). Nothing is decided
    /// from a value read earlier in the transaction. Under `REPEATABLE READ` or `SERIALIZABLE`
    /// the waiting callers get a serialization failure (SQLSTATE 40001) from the claim instead,
    /// as [`TxError::Store`] with [`Error::Storage`]: roll back and retry the whole
    /// transaction, which then replays.
    ///
    /// # Errors
    /// See [`TxError`].
    pub async fn execute_in<'t, T, E, F>(
        &self,
        tx: &mut Transaction<'t, Postgres>,
        call: &Call,
        f: F,
    ) -> Result<Outcome<T>, TxError<E>>
    where
        T: Serialize + DeserializeOwned,
        F: for<'c> FnOnce(&'c mut PgConnection) -> TxFuture<'c, Result<T, E>>,
    {
        let ttl = call.options.ttl.unwrap_or(DEFAULT_TX_TTL);
        let lease = call.options.pending_timeout.unwrap_or(DEFAULT_TX_LEASE);
        if ttl.is_zero() || lease.is_zero() {
            return Err(TxError::Store(Error::Config(
                "a transactional call needs a TTL and a lease greater than zero".into(),
            )));
        }
        let policy = call.options.on_conflict.unwrap_or(ConflictPolicy::Reject);
        let lock_wait = match policy {
            ConflictPolicy::Reject => REJECT_LOCK_WAIT,
            ConflictPolicy::Wait { timeout } => timeout,
        };
        let started = Instant::now();
        let req = ClaimRequest {
            execution_id: uuid::Uuid::new_v4(),
            fingerprint: call.fingerprint,
            lease,
            refresh: call.options.refresh,
        };
        let in_progress = || Error::InProgress {
            key: call.key.clone(),
            lease_until: SystemClock.now().saturating_add(lease),
        };
        loop {
            let left = lock_wait.saturating_sub(started.elapsed());
            let mut sp = Connection::begin(&mut **tx)
                .await
                .map_err(|e| store_err("claim", e))?;
            let claimed = self
                .claim_in(&mut sp, call, &req, left.max(Duration::from_millis(1)))
                .await;
            match claimed {
                Err(e) => {
                    let _ = sp.rollback().await;
                    return Err(TxError::Store(e));
                }
                Ok(None) => {
                    let _ = sp.rollback().await;
                    return Err(TxError::Store(in_progress()));
                }
                Ok(Some(Claimed::Run { token, created })) => {
                    let value = match f(&mut sp).await {
                        Ok(v) => v,
                        Err(e) => {
                            // The function's own error is the answer; a failed rollback of
                            // the savepoint leaves the transaction to the caller's rollback.
                            let _ = sp.rollback().await;
                            return Err(TxError::Function(e));
                        }
                    };
                    let done = self
                        .complete_in(&mut sp, call, &req, token, &value, ttl)
                        .await;
                    let expires = match done {
                        Ok(v) => v,
                        Err(e) => {
                            let _ = sp.rollback().await;
                            return Err(TxError::Store(e));
                        }
                    };
                    sp.commit().await.map_err(|e| store_err("complete", e))?;
                    return Ok(Outcome {
                        value,
                        provenance: Provenance {
                            replayed: false,
                            key: call.key.clone(),
                            execution_id: req.execution_id,
                            fencing_token: token,
                            created_at: created,
                            expires_at: expires,
                            time_to_live: ttl,
                            fingerprint_mismatch: false,
                            takeover: token > 1,
                            unprotected: false,
                            retention: Retention::Stored,
                        },
                    });
                }
                Ok(Some(Claimed::Existing { record, now })) => {
                    // Nothing was written; the savepoint also restores `lock_timeout`.
                    sp.rollback().await.map_err(|e| store_err("claim", e))?;
                    let mismatch = record.fingerprint != call.fingerprint;
                    if mismatch
                        && call.options.fingerprint.unwrap_or_default() == FingerprintPolicy::Reject
                    {
                        return Err(TxError::Store(Error::FingerprintMismatch {
                            key: call.key.clone(),
                        }));
                    }
                    match record.status {
                        RecordStatus::Success => {
                            let value: T = idempotency_core::codec::decode(&record.result)
                                .map_err(|e| Error::IncompatibleRecord {
                                    key: call.key.to_string(),
                                    reason: format!(
                                        "the stored value does not decode as the function's \
                                         result type: {e}"
                                    ),
                                })?;
                            return Ok(Outcome {
                                value,
                                provenance: Provenance {
                                    replayed: true,
                                    key: call.key.clone(),
                                    execution_id: record.owner.execution_id,
                                    fencing_token: record.owner.fencing_token,
                                    created_at: record.created_at,
                                    expires_at: record.expires_at,
                                    time_to_live: record.time_to_live_at(now),
                                    fingerprint_mismatch: mismatch,
                                    takeover: false,
                                    unprotected: false,
                                    retention: Retention::Stored,
                                },
                            });
                        }
                        RecordStatus::Failed => {
                            let reason = match &record.error {
                                Some(RecordError::NotRetained(r)) => {
                                    return Err(TxError::Store(Error::ResultNotRetained {
                                        key: call.key.clone(),
                                        reason: r.clone(),
                                    }))
                                }
                                _ => {
                                    "the key holds a `Failed` record written outside \
                                      transactional mode"
                                }
                            };
                            return Err(TxError::Store(Error::IncompatibleRecord {
                                key: call.key.to_string(),
                                reason: reason.into(),
                            }));
                        }
                        RecordStatus::Pending | RecordStatus::Expired => {
                            let waiting = matches!(policy, ConflictPolicy::Wait { timeout } if started.elapsed() < timeout);
                            if !waiting {
                                return Err(TxError::Store(Error::InProgress {
                                    key: call.key.clone(),
                                    lease_until: record.expires_at,
                                }));
                            }
                            tokio::time::sleep(
                                WAIT_POLL_INTERVAL.min(lock_wait.saturating_sub(started.elapsed())),
                            )
                            .await;
                        }
                    }
                }
            }
        }
    }

    /// As [`execute_in`](Self::execute_in) in a transaction of its own on the store's pool:
    /// begins it, runs the call, commits it when the call succeeded (a first run or a replay),
    /// and rolls it back otherwise.
    ///
    /// # Errors
    /// As [`execute_in`](Self::execute_in); a failed commit is [`TxError::Store`] with
    /// [`Error::Storage`] (nothing of the call remains; a retry runs again).
    pub async fn execute_transaction<T, E, F>(
        &self,
        call: &Call,
        f: F,
    ) -> Result<Outcome<T>, TxError<E>>
    where
        T: Serialize + DeserializeOwned,
        F: for<'c> FnOnce(&'c mut PgConnection) -> TxFuture<'c, Result<T, E>>,
    {
        let fut = async {
            let mut tx = self
                .inner
                .pool
                .begin()
                .await
                .map_err(|e| store_err("begin", e))?;
            let out = self.execute_in(&mut tx, call, f).await;
            match out {
                Ok(o) => {
                    tx.commit().await.map_err(|e| store_err("commit", e))?;
                    Ok(o)
                }
                Err(e) => {
                    let _ = tx.rollback().await;
                    Err(e)
                }
            }
        };
        InRuntime::new(&self.inner.handle, fut).await
    }

    /// The claim statement inside the call's savepoint, with `lock_timeout` at `wait` for it.
    /// `Ok(None)`: the row lock was not granted in time.
    async fn claim_in(
        &self,
        conn: &mut PgConnection,
        call: &Call,
        req: &ClaimRequest,
        wait: Duration,
    ) -> Result<Option<Claimed>, Error> {
        let prev: String = sqlx::query_scalar("SELECT current_setting('lock_timeout')")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| store_err("claim", e))?;
        sqlx::query("SELECT set_config('lock_timeout', $1, true)")
            .bind(format!("{}ms", millis(wait)))
            .execute(&mut *conn)
            .await
            .map_err(|e| store_err("claim", e))?;
        let body = Record::encode_head(&call.key, RecordStatus::Pending, &[], None)?;
        let mut out = None;
        for _ in 0..CLAIM_ATTEMPTS {
            let row = self
                .inner
                .sql
                .claim_query(&call.key, req, &body)
                .fetch_optional(&mut *conn)
                .await;
            let row = match row {
                Err(e) if is_lock_timeout(&e) => return Ok(None),
                Err(e) => return Err(store_err("claim", e)),
                Ok(None) => continue,
                Ok(Some(row)) => row,
            };
            match ClaimRow::read(&row, &call.key, req)? {
                ClaimRow::Claimed { token, now, .. } => {
                    out = Some(Claimed::Run {
                        token,
                        created: now,
                    });
                    break;
                }
                ClaimRow::Stale => continue,
                ClaimRow::Existing { record, now } => {
                    return Ok(Some(Claimed::Existing { record, now }))
                }
            }
        }
        let Some(claimed) = out else {
            return Err(Error::storage(
                "claim",
                "the record kept changing during the claim attempts",
            ));
        };
        // The caller's own `lock_timeout` for the rest of the call (`f` runs next). (On the
        // other paths the savepoint's rollback restores it.)
        sqlx::query("SELECT set_config('lock_timeout', $1, true)")
            .bind(prev)
            .execute(&mut *conn)
            .await
            .map_err(|e| store_err("claim", e))?;
        Ok(Some(claimed))
    }

    /// The fenced completion inside the call's savepoint. Returns the record's expiry.
    async fn complete_in<T: Serialize + DeserializeOwned>(
        &self,
        conn: &mut PgConnection,
        call: &Call,
        req: &ClaimRequest,
        token: u64,
        value: &T,
        ttl: Duration,
    ) -> Result<Timestamp, Error> {
        // The manager's rule (a value is stored only when it replays exactly), with one
        // difference: a value that cannot be stored fails the call, so the savepoint rolls back
        // the claim and the user's writes together instead of committing writes whose record
        // could not be kept.
        let encoded = idempotency_core::codec::retain(value, usize::MAX).map_err(|message| {
            Error::Encode {
                what: "the result",
                message,
            }
        })?;
        let body = Record::encode_head(&call.key, RecordStatus::Success, &encoded, None)?;
        let owner = Owner {
            execution_id: req.execution_id,
            fencing_token: token,
        };
        let row = self
            .inner
            .sql
            .finish_query(&call.key, &owner, RecordStatus::Success, &body, ttl)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| store_err("complete", e))?;
        let Some(row) = row else {
            return Err(Error::LeaseLost {
                key: call.key.clone(),
            });
        };
        let expires: i64 = row
            .try_get("expires_at")
            .map_err(|e| store_err("complete", e))?;
        Ok(timestamp(expires))
    }
}
