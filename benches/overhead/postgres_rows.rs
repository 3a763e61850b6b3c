//! The PostgreSQL rows: floors (one `SELECT` and one `INSERT` round trip) on the store's own
//! pool and dispatch path (polled from the bench thread with the pool's runtime entered, as the
//! store does), each interleaved call by call with the store's hit (replay) and miss (first
//! run: claim + complete).
//!
//! The database is `IDEMPOTENCY_POSTGRES_URL`, else `postgres://postgres@127.0.0.1:5432/test`;
//! the rows work in a fresh schema that is dropped afterwards.

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use idempotency::IdempotencyManager;
use idempotency_postgres::sqlx::{self, PgPool};
use idempotency_postgres::PostgresConfig;
use tokio::runtime::{Handle, Runtime};

use crate::harness::Report;

const RATIOS: &[&str] = &[
    "postgres_hit_per_select",
    "postgres_two_statements_per_insert",
    "postgres_miss_per_insert",
];
use crate::paths::{args, call_for, receipt};

/// Polls a future with `handle`'s runtime entered (the store's own bridge, rebuilt here).
struct Entered<'h, F> {
    handle: &'h Handle,
    fut: Pin<Box<F>>,
}

impl<F: Future> Future for Entered<'_, F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let _g = this.handle.enter();
        this.fut.as_mut().poll(cx)
    }
}

fn on<F: Future>(handle: &Handle, fut: F) -> F::Output {
    idempotency::block_on(Entered {
        handle,
        fut: Box::pin(fut),
    })
}

pub fn run(r: &mut Report) {
    let url = std::env::var("IDEMPOTENCY_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    // The pool's runtime: current-thread, driven by a thread of its own (as `connect` does).
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => std::sync::Arc::new(rt),
        Err(e) => return r.skip(RATIOS, format!("PostgreSQL rows SKIPPED: {e}")),
    };
    let handle = rt.handle().clone();
    let driver: std::sync::Arc<Runtime> = std::sync::Arc::clone(&rt);
    std::thread::spawn(move || driver.block_on(std::future::pending::<()>()));
    let pool: PgPool = {
        let _g = handle.enter();
        match sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect_lazy(&url)
        {
            Ok(p) => p,
            Err(e) => return r.skip(RATIOS, format!("PostgreSQL rows SKIPPED: {e}")),
        }
    };
    let schema = format!("idem_bench_{}", uuid::Uuid::new_v4().simple());
    let store = {
        let _g = handle.enter();
        match PostgresConfig::new()
            .schema(schema.clone())
            .with_pool(pool.clone())
        {
            Ok(s) => s,
            Err(e) => return r.skip(RATIOS, format!("PostgreSQL rows SKIPPED: {e}")),
        }
    };
    if let Err(e) = on(&handle, store.ensure_schema()) {
        return r.skip(
            RATIOS,
            format!("PostgreSQL rows SKIPPED: {url} is not reachable: {e}"),
        );
    }
    let floor_table = format!("\"{schema}\".\"floor\"");
    // A table of the record's shape (the store's columns and its expiry index), for the design
    // floor of a first run: one `INSERT` and one `UPDATE` of the row, two commits.
    let shaped = format!("\"{schema}\".\"shaped\"");
    let setup = on(&handle, async {
        sqlx::query(&format!(
            "CREATE TABLE {floor_table} (key bytea PRIMARY KEY, body bytea NOT NULL)"
        ))
        .execute(&pool)
        .await?;
        sqlx::query(&format!(
            "CREATE TABLE {shaped} (key bytea PRIMARY KEY, status smallint NOT NULL, \
             execution_id bytea NOT NULL, fencing_token bigint NOT NULL, \
             created_at bigint NOT NULL, expires_at bigint NOT NULL, lease_until bigint, \
             fingerprint bytea NOT NULL, body bytea NOT NULL)"
        ))
        .execute(&pool)
        .await?;
        sqlx::query(&format!("CREATE INDEX ON {shaped} (expires_at)"))
            .execute(&pool)
            .await?;
        sqlx::query(&format!("INSERT INTO {floor_table} VALUES ($1, $2)"))
            .bind(b"probe".as_slice())
            .bind(vec![0_u8; 100])
            .execute(&pool)
            .await
    });
    if let Err(e) = setup {
        return r.skip(RATIOS, format!("PostgreSQL rows SKIPPED: {e}"));
    }
    let m = IdempotencyManager::new(store);
    let a = args(1);
    if let Err(e) = m.execute_sync(&call_for("bench::postgres", &a), receipt) {
        return r.skip(RATIOS, format!("PostgreSQL rows SKIPPED: {e}"));
    }
    let select = format!("SELECT body FROM {floor_table} WHERE key = $1");
    r.interleaved(
        "postgres",
        1,
        &mut [
            ("postgres SELECT round trip", None, &mut || {
                black_box(on(
                    &handle,
                    sqlx::query_scalar::<_, Vec<u8>>(&select)
                        .bind(b"probe".as_slice())
                        .fetch_optional(&pool),
                ))
                .ok();
            }),
            (
                "postgres hit (replay)",
                Some(("postgres_hit_per_select", "postgres SELECT round trip")),
                &mut || {
                    let c = call_for("bench::postgres", black_box(&a));
                    black_box(m.execute_sync(&c, receipt).ok());
                },
            ),
        ],
    );
    let insert = format!("INSERT INTO {floor_table} VALUES ($1, $2)");
    let insert_shaped = format!("INSERT INTO {shaped} VALUES ($1, 0, $2, 1, 1, 2, 2, $3, $4)");
    let update_shaped = format!(
        "UPDATE {shaped} SET status = 1, body = $3, lease_until = NULL, expires_at = 3 \
         WHERE key = $1 AND status = 0 AND execution_id = $2 AND fencing_token = 1 \
         RETURNING created_at, expires_at, fingerprint"
    );
    let n = AtomicU64::new(0);
    let next = AtomicU64::new(1_000_000);
    r.interleaved(
        "postgres",
        1,
        &mut [
            ("postgres INSERT round trip", None, &mut || {
                let k = n.fetch_add(1, Ordering::Relaxed).to_be_bytes();
                black_box(on(
                    &handle,
                    sqlx::query(&insert)
                        .bind(k.as_slice())
                        .bind(vec![0_u8; 100])
                        .execute(&pool),
                ))
                .ok();
            }),
            (
                "postgres INSERT + UPDATE of a record-shaped row",
                Some((
                    "postgres_two_statements_per_insert",
                    "postgres INSERT round trip",
                )),
                &mut || {
                    let k = n.fetch_add(1, Ordering::Relaxed).to_be_bytes();
                    let id = [7_u8; 16];
                    black_box(on(&handle, async {
                        sqlx::query(&insert_shaped)
                            .bind(k.as_slice())
                            .bind(id.as_slice())
                            .bind([0_u8; 32].as_slice())
                            .bind(vec![0_u8; 60])
                            .execute(&pool)
                            .await?;
                        sqlx::query(&update_shaped)
                            .bind(k.as_slice())
                            .bind(id.as_slice())
                            .bind(vec![1_u8; 80])
                            .fetch_optional(&pool)
                            .await
                    }))
                    .ok();
                },
            ),
            (
                "postgres miss (claim + complete)",
                Some(("postgres_miss_per_insert", "postgres INSERT round trip")),
                &mut || {
                    let c = call_for(
                        "bench::postgres",
                        &args(next.fetch_add(1, Ordering::Relaxed)),
                    );
                    black_box(m.execute_sync(&c, receipt).ok());
                },
            ),
        ],
    );
    drop(m);
    let _ = on(
        &handle,
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&pool),
    );
}
