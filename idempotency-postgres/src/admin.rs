//! The operator's side of the PostgreSQL store (`StorageAdmin`): listing, removing unreadable
//! rows, purging expired ones.

use idempotency_core::{Error, Listed, Observed, Page, Result, StorageAdmin};

use crate::row::{key_at, location_of};
use crate::storage::PostgresStorage;

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
                    key_at(c).ok_or_else(|| Error::Config(format!("invalid list cursor `{c}`")))?;
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
            let (raw, now) = self.observed(row, true)?;
            let location = location_of(&raw.key);
            items.push(match raw.decode_keyed(&location) {
                Ok(record) => Listed::Record(Observed { record, now }),
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
        let Some(key) = key_at(location) else {
            return Ok(false);
        };
        let q = sqlx::query(&self.inner.sql.read_any).bind(key);
        let Some(row) = self.fetch_optional("get", q).await? else {
            return Ok(false);
        };
        let (raw, _) = self.observed(&row, true)?;
        if raw.decode_keyed(location).is_ok() {
            return Ok(false);
        }
        let q = sqlx::query(&self.inner.sql.remove_unreadable)
            .bind(raw.key)
            .bind(raw.status)
            .bind(raw.execution_id)
            .bind(raw.fencing_token)
            .bind(raw.expires_at)
            .bind(raw.fingerprint)
            .bind(raw.body);
        let done = self.run("delete", q.execute(&self.inner.pool)).await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes expired rows in batches of [`PostgresConfig::purge_batch`](crate::PostgresConfig::purge_batch) rows (one statement
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
