use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;

use idempotency::{idempotent, Error, IdempotencyManager};
use serde::{Deserialize, Serialize};

static MANAGER: LazyLock<IdempotencyManager> = LazyLock::new(crate::common::store::manager);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum ShipError {
    OutOfStock,
    Framework(String),
}

impl From<Error> for ShipError {
    fn from(e: Error) -> Self {
        ShipError::Framework(e.to_string())
    }
}

static SHIPS: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
async fn ship(order: u32, qty: &u32) -> Result<String, ShipError> {
    SHIPS.fetch_add(1, Ordering::SeqCst);
    tokio::task::yield_now().await;
    if *qty == 0 {
        return Err(ShipError::OutOfStock);
    }
    Ok(format!("{order}x{qty}"))
}

#[tokio::test]
async fn scenario_06_async_replay_after_success_and_cached_error() {
    assert_eq!(ship(1, &2).await, Ok("1x2".to_owned()));
    assert_eq!(ship(1, &2).await, Ok("1x2".to_owned()));
    assert_eq!(ship(1, &0).await, Err(ShipError::OutOfStock));
    assert_eq!(ship(1, &0).await, Err(ShipError::OutOfStock));
    assert_eq!(SHIPS.load(Ordering::SeqCst), 2);
}

static PLAIN: AtomicUsize = AtomicUsize::new(0);

/// Plain `-> T` becomes `-> Result<T, idempotency::Error>`.
#[idempotent(manager = &*MANAGER)]
async fn plain(items: &[u8], label: impl AsRef<str> + Serialize) -> usize {
    PLAIN.fetch_add(1, Ordering::SeqCst);
    tokio::task::yield_now().await;
    items.len() + label.as_ref().len()
}

#[tokio::test]
async fn scenario_06_async_plain_return_and_impl_trait_param() {
    let r: Result<usize, Error> = plain(&[1, 2, 3], "ab").await;
    assert_eq!(r.unwrap(), 5);
    assert_eq!(plain(&[1, 2, 3], "ab").await.unwrap(), 5);
    assert_eq!(PLAIN.load(Ordering::SeqCst), 1);
}

static GENERIC: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
async fn generic<T>(value: T, (lo, hi): (u8, u8)) -> Result<T, ShipError>
where
    T: Serialize + for<'de> Deserialize<'de> + Send + Clone,
{
    GENERIC.fetch_add(1, Ordering::SeqCst);
    let early = lo > hi;
    if early {
        return Err(ShipError::OutOfStock);
    }
    let v: Result<T, ShipError> = Ok(value.clone());
    let v = v?;
    Ok(v)
}

#[tokio::test]
async fn scenario_17_async_generics_patterns_early_return_and_question_mark() {
    assert_eq!(generic("s".to_owned(), (1, 2)).await, Ok("s".to_owned()));
    assert_eq!(generic("s".to_owned(), (1, 2)).await, Ok("s".to_owned()));
    assert_eq!(generic(7_u64, (2, 1)).await, Err(ShipError::OutOfStock));
    assert_eq!(GENERIC.load(Ordering::SeqCst), 2);
}

struct Warehouse {
    id: u32,
    runs: AtomicUsize,
}

impl Warehouse {
    #[idempotent(manager = &*MANAGER)]
    async fn reserve(&self, sku: &str) -> u32 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.id + u32::try_from(sku.len()).unwrap_or(0)
    }

    #[idempotent(manager = &*MANAGER)]
    async fn restock(&mut self, n: u32) -> u32 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.id += n;
        self.id
    }

    #[idempotent(manager = &*MANAGER)]
    async fn close(self, reason: String) -> String {
        self.runs.fetch_add(1, Ordering::SeqCst);
        format!("{}:{reason}", self.id)
    }
}

#[tokio::test]
async fn scenario_06_async_methods_with_every_receiver() {
    let mut w = Warehouse {
        id: 100,
        runs: AtomicUsize::new(0),
    };
    assert_eq!(w.reserve("abc").await.unwrap(), 103);
    assert_eq!(w.reserve("abc").await.unwrap(), 103);
    assert_eq!(w.restock(5).await.unwrap(), 105);
    assert_eq!(w.restock(5).await.unwrap(), 105);
    assert_eq!(w.runs.load(Ordering::SeqCst), 2);
    assert_eq!(w.close("done".into()).await.unwrap(), "105:done");
}

static FACT: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
async fn factorial(n: u64) -> Result<u64, ShipError> {
    FACT.fetch_add(1, Ordering::SeqCst);
    if n <= 1 {
        return Ok(1);
    }
    Ok(n * Box::pin(factorial(n - 1)).await?)
}

#[tokio::test]
async fn scenario_06_async_recursion_and_nesting() {
    assert_eq!(factorial(10).await, Ok(3_628_800));
    assert_eq!(factorial(11).await, Ok(39_916_800));
    // 1..=10 ran once each, then 11 ran once and replayed 10.
    assert_eq!(FACT.load(Ordering::SeqCst), 11);
}

static MUT_ARGS: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
async fn mutates(mut v: Vec<u8>) -> Vec<u8> {
    MUT_ARGS.fetch_add(1, Ordering::SeqCst);
    v.push(9);
    v
}

#[tokio::test]
async fn scenario_06_async_body_mutating_its_arguments() {
    assert_eq!(mutates(vec![1]).await.unwrap(), vec![1, 9]);
    assert_eq!(mutates(vec![1]).await.unwrap(), vec![1, 9]);
    assert_eq!(MUT_ARGS.load(Ordering::SeqCst), 1);
}

static SPAWNED: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
async fn spawned(x: u32) -> u32 {
    SPAWNED.fetch_add(1, Ordering::SeqCst);
    tokio::task::yield_now().await;
    x
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_06_generated_future_is_send() {
    let a = tokio::spawn(spawned(5)).await.unwrap().unwrap();
    let b = tokio::spawn(spawned(5)).await.unwrap().unwrap();
    assert_eq!((a, b), (5, 5));
    assert_eq!(SPAWNED.load(Ordering::SeqCst), 1);
}

static OVERRIDES: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
async fn overridable(x: u32) -> u32 {
    OVERRIDES.fetch_add(1, Ordering::SeqCst);
    tokio::task::yield_now().await;
    x
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_06_with_key_and_refresh_across_awaits() {
    assert_eq!(
        idempotency::with_key("k-async", overridable(1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        idempotency::with_key("k-async", overridable(1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(OVERRIDES.load(Ordering::SeqCst), 1);
    assert_eq!(
        idempotency::refresh(idempotency::with_key("k-async", overridable(1)))
            .await
            .unwrap(),
        1
    );
    assert_eq!(OVERRIDES.load(Ordering::SeqCst), 2);
    assert_eq!(overridable(1).await.unwrap(), 1);
    assert_eq!(OVERRIDES.load(Ordering::SeqCst), 3);
}

// ---- operation identity (issue 12) ----

static ECHO: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = m)]
async fn echo<T: Serialize + serde::de::DeserializeOwned + Send>(
    #[idempotency(skip)] m: &IdempotencyManager,
    x: T,
) -> T {
    ECHO.fetch_add(1, Ordering::SeqCst);
    tokio::task::yield_now().await;
    x
}

#[tokio::test]
async fn scenario_18_async_instantiations_of_a_generic_function_never_share_a_record() {
    let m = crate::common::store::manager();
    assert_eq!(echo(&m, 5_u32).await.unwrap(), 5_u32);
    assert_eq!(echo(&m, 5_u64).await.unwrap(), 5_u64);
    assert_eq!(echo(&m, vec![200_u8]).await.unwrap(), vec![200_u8]);
    assert_eq!(echo(&m, vec![200_u16]).await.unwrap(), vec![200_u16]);
    assert_eq!(ECHO.load(Ordering::SeqCst), 4);
    assert_eq!(echo(&m, 5_u64).await.unwrap(), 5_u64);
    assert_eq!(ECHO.load(Ordering::SeqCst), 4);
}

static GETS: AtomicUsize = AtomicUsize::new(0);

struct Users;
struct Orders;

impl Users {
    #[idempotent(manager = m)]
    async fn get(&self, #[idempotency(skip)] m: &IdempotencyManager, id: u64) -> String {
        GETS.fetch_add(1, Ordering::SeqCst);
        format!("user-{id}")
    }
}

impl Orders {
    #[idempotent(manager = m)]
    async fn get(&self, #[idempotency(skip)] m: &IdempotencyManager, id: u64) -> String {
        GETS.fetch_add(1, Ordering::SeqCst);
        format!("order-{id}")
    }
}

#[tokio::test]
async fn scenario_18_async_methods_of_two_types_in_one_module_never_share_a_record() {
    let (m, store) = crate::common::store::manager_and_store();
    assert_eq!(Users.get(&m, 1).await.unwrap(), "user-1");
    assert_eq!(Orders.get(&m, 1).await.unwrap(), "order-1");
    assert_eq!(Users.get(&m, 1).await.unwrap(), "user-1");
    assert_eq!(GETS.load(Ordering::SeqCst), 2);
    // The `async` body adds no segment to the operation name.
    let page = store.list(None, 10).await.unwrap();
    let mut names: Vec<String> = page
        .items
        .iter()
        .map(|l| match l {
            idempotency::Listed::Record(o) => o.record.key.operation().to_owned(),
            idempotency::Listed::Unreadable { error, .. } => panic!("unreadable: {error}"),
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            concat!(module_path!(), "::Orders::get").to_owned(),
            concat!(module_path!(), "::Users::get").to_owned(),
        ]
    );
}
