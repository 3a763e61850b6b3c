//! Transactional mode: the claim, the business write and the `Success` record in one
//! transaction. Kill points in child processes (after the claim, after the write, before and
//! after the commit), a backend terminated mid-transaction, concurrent transactions on one key,
//! and the function's error rolling back only the call.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use idempotency::postgres::sqlx::{self, PgConnection, PgPool};
use idempotency::postgres::{TxError, TxFuture};
use idempotency::{
    Call, ConflictPolicy, ErrorKind, IdempotencyKey, PostgresConfig, PostgresStorage,
};

use crate::harness::{available, exec, url, with_conn, Schema};

/// A store over a pool of this test's runtime, in `schema`, with a business table `charges`.
async fn setup(schema: &Schema) -> (PostgresStorage, PgPool) {
    let pool = PgPool::connect(&url()).await.unwrap();
    let store = PostgresConfig::new()
        .schema(schema.0.clone())
        .with_pool(pool.clone())
        .unwrap();
    store.ensure_schema().await.unwrap();
    exec(&format!(
        "CREATE TABLE IF NOT EXISTS \"{}\".charges (id bigserial PRIMARY KEY, key text NOT NULL)",
        schema.0
    ));
    (store, pool)
}

fn call(name: &str) -> Call {
    Call::new(IdempotencyKey::derive("pg::tx", 1, &name).unwrap())
}

/// The business write: one `charges` row for `name`; returns its id.
fn charge(
    schema: &str,
    name: &str,
) -> impl for<'c> FnOnce(&'c mut PgConnection) -> TxFuture<'c, Result<i64, sqlx::Error>> {
    let sql = format!("INSERT INTO \"{schema}\".charges (key) VALUES ($1) RETURNING id");
    let name = name.to_owned();
    move |c| Box::pin(async move { sqlx::query_scalar(&sql).bind(name).fetch_one(c).await })
}

/// (business rows for `name`, record rows for its key, of which `Success`).
fn counts(schema: &str, store: &PostgresStorage, name: &str) -> (i64, i64, i64) {
    let rows_sql = format!("SELECT count(*) FROM \"{schema}\".charges WHERE key = $1");
    let rec_sql = format!(
        "SELECT count(*), count(*) FILTER (WHERE status = 1) FROM {} WHERE key = $1",
        store.table()
    );
    let key = call(name).key.as_str().as_bytes().to_vec();
    let name = name.to_owned();
    with_conn(move |mut c| async move {
        let rows: i64 = sqlx::query_scalar(&rows_sql)
            .bind(name)
            .fetch_one(&mut c)
            .await
            .unwrap();
        let (recs, ok): (i64, i64) = sqlx::query_as(&rec_sql)
            .bind(key)
            .fetch_one(&mut c)
            .await
            .unwrap();
        (rows, recs, ok)
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_first_run_commits_row_and_record_then_replays() {
    if available("tx::first_run").is_none() {
        return;
    }
    let schema = Schema::new();
    let (store, pool) = setup(&schema).await;
    let mut tx = pool.begin().await.unwrap();
    let o = store
        .execute_in(&mut tx, &call("a"), charge(&schema.0, "a"))
        .await
        .unwrap();
    assert!(!o.is_replayed());
    // Nothing is visible outside the transaction before it commits.
    assert_eq!(counts(&schema.0, &store, "a"), (0, 0, 0));
    tx.commit().await.unwrap();
    assert_eq!(counts(&schema.0, &store, "a"), (1, 1, 1));
    let again = store
        .execute_transaction(&call("a"), charge(&schema.0, "a"))
        .await
        .unwrap();
    assert!(again.is_replayed());
    assert_eq!(again.value, o.value);
    assert_eq!(counts(&schema.0, &store, "a"), (1, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_rollback_leaves_neither_row_nor_record() {
    if available("tx::rollback").is_none() {
        return;
    }
    let schema = Schema::new();
    let (store, pool) = setup(&schema).await;
    let mut tx = pool.begin().await.unwrap();
    store
        .execute_in(&mut tx, &call("b"), charge(&schema.0, "b"))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(counts(&schema.0, &store, "b"), (0, 0, 0));
    let o = store
        .execute_transaction(&call("b"), charge(&schema.0, "b"))
        .await
        .unwrap();
    assert!(!o.is_replayed(), "rolled back: the retry runs");
    assert_eq!(counts(&schema.0, &store, "b"), (1, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_function_error_rolls_back_only_the_call() {
    if available("tx::function_error").is_none() {
        return;
    }
    let schema = Schema::new();
    let (store, pool) = setup(&schema).await;
    let mut tx = pool.begin().await.unwrap();
    // The caller's own write before the call survives the call's failure.
    sqlx::query(&format!(
        "INSERT INTO \"{}\".charges (key) VALUES ('mine')",
        schema.0
    ))
    .execute(&mut *tx)
    .await
    .unwrap();
    let sql = format!("INSERT INTO \"{}\".charges (key) VALUES ('c')", schema.0);
    let r = store
        .execute_in(
            &mut tx,
            &call("c"),
            move |c: &mut PgConnection| -> TxFuture<'_, Result<i64, String>> {
                Box::pin(async move {
                    sqlx::query(&sql).execute(c).await.unwrap();
                    Err("declined".to_owned())
                })
            },
        )
        .await;
    assert!(matches!(r, Err(TxError::Function(ref e)) if e == "declined"));
    tx.commit().await.unwrap();
    assert_eq!(counts(&schema.0, &store, "c"), (0, 0, 0));
    assert_eq!(counts(&schema.0, &store, "mine").0, 1);
    let o = store
        .execute_transaction(&call("c"), charge(&schema.0, "c"))
        .await
        .unwrap();
    assert!(!o.is_replayed());
    assert_eq!(counts(&schema.0, &store, "c"), (1, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactional_concurrent_callers_exactly_one_commits_the_others_replay() {
    if available("tx::concurrent").is_none() {
        return;
    }
    let schema = Schema::new();
    let (store, _pool) = setup(&schema).await;
    const CALLERS: usize = 8;
    let gate = Arc::new(tokio::sync::Barrier::new(CALLERS));
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (store, gate, schema) = (store.clone(), gate.clone(), schema.0.clone());
            tokio::spawn(async move {
                let c = call("d").on_conflict(ConflictPolicy::Wait {
                    timeout: Duration::from_secs(30),
                });
                gate.wait().await;
                store.execute_transaction(&c, charge(&schema, "d")).await
            })
        })
        .collect();
    let mut executed = 0;
    let mut values = std::collections::BTreeSet::new();
    for t in tasks {
        let o = t.await.unwrap().unwrap();
        values.insert(o.value);
        executed += usize::from(!o.is_replayed());
    }
    assert_eq!(executed, 1);
    assert_eq!(values.len(), 1);
    assert_eq!(counts(&schema.0, &store, "d"), (1, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_reject_answers_in_progress_while_a_transaction_holds_the_key() {
    if available("tx::reject").is_none() {
        return;
    }
    let schema = Schema::new();
    let (store, pool) = setup(&schema).await;
    let mut holder = pool.begin().await.unwrap();
    let first = store
        .execute_in(&mut holder, &call("e"), charge(&schema.0, "e"))
        .await
        .unwrap();
    // The holder has not committed: a second transaction is refused (Reject is the default).
    let r = store
        .execute_transaction(&call("e"), charge(&schema.0, "e"))
        .await;
    match r {
        Err(TxError::Store(e)) => assert_eq!(e.kind(), ErrorKind::InProgress, "{e}"),
        other => panic!("expected InProgress, got {other:?}"),
    }
    // The non-transactional API sees no record yet (the claim is not committed).
    assert!(idempotency::Storage::get(&store, &call("e").key)
        .await
        .unwrap()
        .is_none());
    holder.commit().await.unwrap();
    let o = store
        .execute_transaction(&call("e"), charge(&schema.0, "e"))
        .await
        .unwrap();
    assert!(o.is_replayed());
    assert_eq!(o.value, first.value);
    assert_eq!(counts(&schema.0, &store, "e"), (1, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_terminated_backend_leaves_no_pending_record_and_no_row() {
    if available("tx::terminate").is_none() {
        return;
    }
    let schema = Schema::new();
    let (store, pool) = setup(&schema).await;
    let (pid_tx, pid_rx) = tokio::sync::oneshot::channel::<i32>();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let sql = format!("INSERT INTO \"{}\".charges (key) VALUES ('f')", schema.0);
    let victim = {
        let (store, pool) = (store.clone(), pool.clone());
        tokio::spawn(async move {
            let mut tx = pool.begin().await.unwrap();
            let r = store
                .execute_in(
                    &mut tx,
                    &call("f"),
                    move |c: &mut PgConnection| -> TxFuture<'_, Result<i64, sqlx::Error>> {
                        Box::pin(async move {
                            sqlx::query(&sql).execute(&mut *c).await?;
                            let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                                .fetch_one(&mut *c)
                                .await?;
                            pid_tx.send(pid).unwrap();
                            go_rx.await.unwrap();
                            // The backend is gone: this fails.
                            sqlx::query_scalar("SELECT 1::bigint")
                                .fetch_one(&mut *c)
                                .await
                        })
                    },
                )
                .await;
            let committed = tx.commit().await.is_ok();
            (r.is_ok(), committed)
        })
    };
    let pid = pid_rx.await.unwrap();
    let killed: bool = with_conn(move |mut c| async move {
        sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&mut c)
            .await
            .unwrap()
    })
    .unwrap();
    assert!(killed);
    go_tx.send(()).unwrap();
    let (ok, committed) = victim.await.unwrap();
    assert!(
        !ok && !committed,
        "the terminated transaction cannot succeed"
    );
    // No record (not even `Pending`) and no business row.
    assert_eq!(counts(&schema.0, &store, "f"), (0, 0, 0));
    let o = store
        .execute_transaction(&call("f"), charge(&schema.0, "f"))
        .await
        .unwrap();
    assert!(!o.is_replayed());
    assert_eq!(counts(&schema.0, &store, "f"), (1, 1, 1));
}

const KILL_ENV: &str = "IDEM_POSTGRES_KILL";
const KILL_TEST: &str = "tx::transactional_kill_points_leave_rows_and_records_in_agreement";
const KILL_POINTS: [&str; 4] = [
    "after_claim",
    "after_write",
    "before_commit",
    "after_commit",
];

/// The child role: one transactional call that dies (`abort`) at the kill point.
async fn kill_child(spec: &str) {
    let (schema, point) = spec.split_once('|').unwrap();
    let pool = PgPool::connect(&url()).await.unwrap();
    let store = PostgresConfig::new()
        .schema(schema)
        .with_pool(pool.clone())
        .unwrap();
    let sql = format!("INSERT INTO \"{schema}\".charges (key) VALUES ($1) RETURNING id");
    let point = point.to_owned();
    let mut tx = pool.begin().await.unwrap();
    let p = point.clone();
    store
        .execute_in(
            &mut tx,
            &call(&point),
            move |c: &mut PgConnection| -> TxFuture<'_, Result<i64, sqlx::Error>> {
                Box::pin(async move {
                    if p == "after_claim" {
                        std::process::abort();
                    }
                    let id = sqlx::query_scalar(&sql).bind(&p).fetch_one(c).await?;
                    if p == "after_write" {
                        std::process::abort();
                    }
                    Ok(id)
                })
            },
        )
        .await
        .unwrap();
    if point == "before_commit" {
        std::process::abort();
    }
    tx.commit().await.unwrap();
    if point == "after_commit" {
        std::process::abort();
    }
    println!("\nsurvived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_kill_points_leave_rows_and_records_in_agreement() {
    if let Ok(spec) = std::env::var(KILL_ENV) {
        kill_child(&spec).await;
        return;
    }
    if available(KILL_TEST).is_none() {
        return;
    }
    let schema = Schema::new();
    let (store, _pool) = setup(&schema).await;
    let exe = std::env::current_exe().unwrap();
    for point in KILL_POINTS {
        let mut child = Command::new(&exe)
            .args(["--exact", KILL_TEST, "--nocapture", "--test-threads=1"])
            .env(KILL_ENV, format!("{}|{point}", schema.0))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out: Vec<String> = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map(|l| l.unwrap())
            .collect();
        let status = child.wait().unwrap();
        assert!(!status.success(), "{point}: the child must die");
        assert!(!out.iter().any(|l| l.contains("survived")), "{point}");
        let committed = point == "after_commit";
        let expect = if committed { (1, 1, 1) } else { (0, 0, 0) };
        assert_eq!(
            counts(&schema.0, &store, point),
            expect,
            "{point}: business rows and records agree right after the crash"
        );
        // The retry: runs again iff the crash came before the commit; then exactly once.
        let o = store
            .execute_transaction(&call(point), charge(&schema.0, point))
            .await
            .unwrap();
        assert_eq!(o.is_replayed(), committed, "{point}");
        assert_eq!(counts(&schema.0, &store, point), (1, 1, 1), "{point}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_call_dropped_mid_function_leaves_nothing_even_if_the_transaction_commits() {
    if available("tx::dropped").is_none() {
        return;
    }
    let schema = Schema::new();
    let (store, pool) = setup(&schema).await;
    let mut tx = pool.begin().await.unwrap();
    let (wrote_tx, wrote_rx) = tokio::sync::oneshot::channel::<()>();
    let sql = format!("INSERT INTO \"{}\".charges (key) VALUES ('g')", schema.0);
    {
        let call_g = call("g");
        let running = store.execute_in(
            &mut tx,
            &call_g,
            move |c: &mut PgConnection| -> TxFuture<'_, Result<i64, sqlx::Error>> {
                Box::pin(async move {
                    sqlx::query(&sql).execute(&mut *c).await?;
                    wrote_tx.send(()).unwrap();
                    std::future::pending::<()>().await;
                    Ok(0)
                })
            },
        );
        tokio::select! {
            _ = running => panic!("the function never returns"),
            r = wrote_rx => r.unwrap(),
        }
        // `running` (claim done, business row written) is dropped here: a cancelled call.
    }
    // The caller goes on and commits its transaction anyway.
    tx.commit().await.unwrap();
    assert_eq!(
        counts(&schema.0, &store, "g"),
        (0, 0, 0),
        "the call's savepoint was rolled back: neither its row nor its claim committed"
    );
    let o = store
        .execute_transaction(&call("g"), charge(&schema.0, "g"))
        .await
        .unwrap();
    assert!(!o.is_replayed());
    assert_eq!(counts(&schema.0, &store, "g"), (1, 1, 1));
}

/// Waits until some backend waits on a lock (the second transaction's claim is blocked on the
/// holder's uncommitted row), by observing `pg_stat_activity`.
async fn until_a_claim_waits_on_the_row_lock(schema: &str) {
    for _ in 0..10_000 {
        let pattern = format!("%{schema}%");
        let waiting: i64 = with_conn(|mut c| async move {
            sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND query LIKE $1",
            )
            .bind(pattern)
            .fetch_one(&mut c)
            .await
            .unwrap()
        })
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the second claim never waited on the row lock");
}

/// Isolation: a second transaction waiting on the holder's row lock replays after the holder
/// commits under READ COMMITTED, and gets a serialization failure (then replays on retry) under
/// REPEATABLE READ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_waiter_replays_under_read_committed_and_must_retry_under_repeatable_read() {
    if available("tx::isolation").is_none() {
        return;
    }
    let schema = Schema::new();
    let (store, pool) = setup(&schema).await;
    for (name, repeatable) in [("h_rc", false), ("h_rr", true)] {
        let mut holder = pool.begin().await.unwrap();
        let first = store
            .execute_in(&mut holder, &call(name), charge(&schema.0, name))
            .await
            .unwrap();
        let waiter = {
            let (store, pool, schema) = (store.clone(), pool.clone(), schema.0.clone());
            tokio::spawn(async move {
                let mut tx = pool.begin().await.unwrap();
                if repeatable {
                    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                }
                let c = call(name).on_conflict(ConflictPolicy::Wait {
                    timeout: Duration::from_secs(30),
                });
                let r = store.execute_in(&mut tx, &c, charge(&schema, name)).await;
                let _ = tx.rollback().await;
                r
            })
        };
        until_a_claim_waits_on_the_row_lock(&schema.0).await;
        holder.commit().await.unwrap();
        let r = waiter.await.unwrap();
        if repeatable {
            let Err(TxError::Store(e)) = r else {
                panic!("{name}: expected a serialization failure, got {r:?}")
            };
            assert_eq!(e.kind(), ErrorKind::StoreUnavailable, "{e}");
            let source = std::error::Error::source(&e).map(|s| s.to_string());
            assert!(
                source
                    .as_deref()
                    .is_some_and(|s| s.contains("could not serialize")),
                "{name}: {source:?}"
            );
            // The retry, in a new transaction, replays.
            let again = store
                .execute_transaction(&call(name), charge(&schema.0, name))
                .await
                .unwrap();
            assert!(again.is_replayed());
            assert_eq!(again.value, first.value);
        } else {
            let o = r.unwrap();
            assert!(o.is_replayed(), "{name}");
            assert_eq!(o.value, first.value);
        }
        assert_eq!(counts(&schema.0, &store, name), (1, 1, 1), "{name}");
    }
}

/// Transactional mode and the manager encode values alike (CBOR, checked to replay): a record
/// written by one is replayed by the other on the same key, in both directions, with a result
/// shape postcard could not replay (an internally tagged enum).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_and_manager_records_replay_each_other() {
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(tag = "type")]
    enum Charge {
        New { id: i64 },
    }
    if available("tx::manager_interop").is_none() {
        return;
    }
    let schema = Schema::new();
    let (store, pool) = setup(&schema).await;
    let manager = idempotency::IdempotencyManager::new(store.clone());

    // Transactional first, then the manager replays.
    let sql = format!(
        "INSERT INTO \"{}\".charges (key) VALUES ($1) RETURNING id",
        schema.0
    );
    let mut tx = pool.begin().await.unwrap();
    let first = store
        .execute_in(&mut tx, &call("tx-first"), move |c: &mut PgConnection| {
            Box::pin(async move {
                let id: i64 = sqlx::query_scalar(&sql)
                    .bind("tx-first")
                    .fetch_one(c)
                    .await?;
                Ok::<_, sqlx::Error>(Charge::New { id })
            }) as TxFuture<'_, Result<Charge, sqlx::Error>>
        })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let replay = manager
        .execute(&call("tx-first"), || async { Charge::New { id: -1 } })
        .await
        .unwrap();
    assert!(replay.is_replayed());
    assert_eq!(replay.value, first.value);

    // The manager first, then transactional mode replays.
    let by_manager = manager
        .execute(&call("manager-first"), || async { Charge::New { id: 42 } })
        .await
        .unwrap();
    assert!(!by_manager.is_replayed());
    let replay = store
        .execute_transaction(&call("manager-first"), |_c: &mut PgConnection| {
            Box::pin(async { Ok::<_, sqlx::Error>(Charge::New { id: -1 }) })
                as TxFuture<'_, Result<Charge, sqlx::Error>>
        })
        .await
        .unwrap();
    assert!(replay.is_replayed());
    assert_eq!(replay.value, Charge::New { id: 42 });
}
