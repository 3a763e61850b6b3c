//! Issue 12 on Redis: `#[idempotent]` operation names with `<`, `>`, `_` and spaces are
//! accepted, and instantiations of generic functions and methods of two types never share a
//! record.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

use idempotency::{idempotent, IdempotencyManager, Listed, StorageAdmin};

use crate::harness::RedisHarness;

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = m)]
async fn twice<T: serde::Serialize + serde::de::DeserializeOwned + Clone + Send>(
    #[idempotency(skip)] m: &IdempotencyManager,
    x: T,
) -> Vec<T> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    vec![x.clone(), x]
}

trait Table {
    const NAME: &'static str;
}

struct Users;
struct Orders;

impl Table for Users {
    const NAME: &'static str = "user";
}

impl Table for Orders {
    const NAME: &'static str = "order";
}

struct Repo<T>(PhantomData<T>);

impl<T: Table> Repo<T> {
    #[idempotent(manager = m)]
    async fn get(#[idempotency(skip)] m: &IdempotencyManager, id: u64) -> String {
        RUNS.fetch_add(1, Ordering::SeqCst);
        format!("{}-{id}", T::NAME)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_18_generic_instantiations_never_share_a_record_on_redis() {
    let Some(h) = RedisHarness::new() else { return };
    let m = IdempotencyManager::new(h.store.clone());
    assert_eq!(twice(&m, 200_u8).await.unwrap(), vec![200_u8, 200]);
    assert_eq!(twice(&m, 200_u16).await.unwrap(), vec![200_u16, 200]);
    assert_eq!(Repo::<Users>::get(&m, 1).await.unwrap(), "user-1");
    assert_eq!(Repo::<Orders>::get(&m, 1).await.unwrap(), "order-1");
    assert_eq!(RUNS.load(Ordering::SeqCst), 4);
    assert_eq!(twice(&m, 200_u16).await.unwrap(), vec![200_u16, 200]);
    assert_eq!(Repo::<Orders>::get(&m, 1).await.unwrap(), "order-1");
    assert_eq!(RUNS.load(Ordering::SeqCst), 4);

    // Every page: Redis's SCAN may return a page without this store's keys (even an empty one)
    // when the server holds many other keys, so the first page alone proves nothing.
    let mut names: Vec<String> = Vec::new();
    let mut cursor = None;
    loop {
        let page = StorageAdmin::list(&h.store, cursor.as_deref(), 100)
            .await
            .unwrap();
        names.extend(page.items.iter().map(|l| match l {
            Listed::Record(o) => o.record.key.operation().to_owned(),
            Listed::Unreadable { error, .. } => panic!("unreadable record: {error}"),
        }));
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    names.sort();
    let repo = concat!(module_path!(), "::Repo<_>::get").to_owned();
    let twice = concat!(module_path!(), "::twice").to_owned();
    assert_eq!(names, vec![repo.clone(), repo, twice.clone(), twice]);
}
