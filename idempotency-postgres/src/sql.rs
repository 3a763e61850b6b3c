//! The statements, built once per store from its validated, quoted table name, the constants
//! they share with the Rust side (status codes, the clock expression), and the two statements
//! that both the store and transactional mode run, with their parameters bound.

use std::time::Duration;

use idempotency_core::{ClaimRequest, IdempotencyKey, Owner, RecordStatus};
use sqlx::postgres::PgArguments;
use sqlx::Postgres;

use crate::row::{key_bytes, millis, status_code, token_param};

/// A statement with its parameters bound.
pub(crate) type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// The database's clock in milliseconds since the Unix epoch. `clock_timestamp()` is the
/// time at the moment of evaluation, not the start of the transaction (`now()`), so a long
/// transaction never stretches a lease (SEMANTICS.md scenario 22).
const NOW_MS: &str = "(floor(extract(epoch FROM clock_timestamp()) * 1000))::bigint";

pub(crate) const STATUS_PENDING: i16 = 0;
pub(crate) const STATUS_SUCCESS: i16 = 1;
pub(crate) const STATUS_FAILED: i16 = 2;

/// The statements, built once from the validated, quoted table name (never from input).
pub(crate) struct Sql {
    /// `"schema"."table"` or `"table"`.
    pub(crate) table: String,
    pub(crate) claim: String,
    pub(crate) finish: String,
    pub(crate) release: String,
    pub(crate) renew: String,
    pub(crate) get: String,
    pub(crate) delete: String,
    pub(crate) purge: String,
    pub(crate) list_first: String,
    pub(crate) list_after: String,
    /// The row of a key whatever its expiry, to judge whether it is still unreadable.
    pub(crate) read_any: String,
    pub(crate) remove_unreadable: String,
}

pub(crate) const COLUMNS: &str =
    "key, status, execution_id, fencing_token, created_at, expires_at, \
                       lease_until, fingerprint, body";

impl Sql {
    pub(crate) fn new(schema: Option<&str>, table: &str) -> Sql {
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
        let read_any = format!("SELECT {COLUMNS}, 0::bigint AS now FROM {t} WHERE key = $1");
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
            read_any,
            remove_unreadable,
        }
    }
}

impl Sql {
    /// The claim statement for `key` and `req`, the pending record's head being `body`.
    pub(crate) fn claim_query<'q>(
        &'q self,
        key: &'q IdempotencyKey,
        req: &'q ClaimRequest,
        body: &'q [u8],
    ) -> Query<'q> {
        sqlx::query(&self.claim)
            .bind(key_bytes(key))
            .bind(req.execution_id.as_bytes().as_slice())
            .bind(millis(req.lease))
            .bind(req.fingerprint.0.as_slice())
            .bind(body)
            .bind(req.refresh)
    }

    /// The fenced finish statement: `owner`'s record of `key` becomes `status` with the head
    /// `body`, kept for `ttl`.
    pub(crate) fn finish_query<'q>(
        &'q self,
        key: &'q IdempotencyKey,
        owner: &'q Owner,
        status: RecordStatus,
        body: &'q [u8],
        ttl: Duration,
    ) -> Query<'q> {
        sqlx::query(&self.finish)
            .bind(key_bytes(key))
            .bind(owner.execution_id.as_bytes().as_slice())
            .bind(token_param(owner))
            .bind(status_code(status))
            .bind(body)
            .bind(millis(ttl))
    }
}
