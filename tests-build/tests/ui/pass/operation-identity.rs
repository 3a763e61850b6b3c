//! Shapes whose default operation name and instantiation the compiler supplies: nested
//! functions, `macro_rules!`-generated impls, a trait's provided method, generic impls, and
//! every `include_self` spelling.
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

use idempotency::idempotent;

static MANAGER: std::sync::LazyLock<idempotency::IdempotencyManager> = std::sync::LazyLock::new(|| idempotency::IdempotencyManager::new(idempotency::MemoryStorage::new()));
static RUNS: AtomicUsize = AtomicUsize::new(0);

macro_rules! getter {
    ($($ty:ident => $prefix:literal),*) => {$(
        struct $ty;
        impl $ty {
            #[idempotent(manager = &*MANAGER)]
            fn get(&self, id: u64) -> String {
                RUNS.fetch_add(1, Ordering::SeqCst);
                format!("{}-{id}", $prefix)
            }
        }
    )*};
}

getter!(Users => "user", Orders => "order");

trait Named {
    const NAME: &'static str;

    #[idempotent(manager = &*MANAGER)]
    fn describe(id: u64) -> String {
        RUNS.fetch_add(1, Ordering::SeqCst);
        format!("{}-{id}", Self::NAME)
    }
}

impl Named for Users {
    const NAME: &'static str = "users";
}

impl Named for Orders {
    const NAME: &'static str = "orders";
}

struct Repo<T>(PhantomData<T>);

impl<T: Named> Repo<T> {
    #[idempotent(manager = &*MANAGER)]
    fn load(id: u64) -> String {
        RUNS.fetch_add(1, Ordering::SeqCst);
        format!("{}:{id}", T::NAME)
    }
}

#[derive(serde::Serialize)]
struct Billing {
    fee: u64,
}

impl Billing {
    #[idempotent(manager = &*MANAGER, include_self = true)]
    fn charge(&self, amount: u64) -> u64 {
        self.fee + amount
    }

    #[idempotent(manager = &*MANAGER, include_self = false)]
    fn quote(self: Box<Self>, amount: u64) -> u64 {
        self.fee + amount
    }
}

fn main() {
    #[idempotent(manager = &*MANAGER)]
    fn nested(id: u64) -> u64 {
        RUNS.fetch_add(1, Ordering::SeqCst);
        id
    }

    assert_eq!(Users.get(1).unwrap(), "user-1");
    assert_eq!(Orders.get(1).unwrap(), "order-1");
    assert_eq!(<Users as Named>::describe(1).unwrap(), "users-1");
    assert_eq!(<Orders as Named>::describe(1).unwrap(), "orders-1");
    assert_eq!(Repo::<Users>::load(1).unwrap(), "users:1");
    assert_eq!(Repo::<Orders>::load(1).unwrap(), "orders:1");
    assert_eq!(nested(1).unwrap(), 1);
    assert_eq!(RUNS.load(Ordering::SeqCst), 7);
    assert_eq!(Billing { fee: 5 }.charge(1).unwrap(), 6);
    assert_eq!(Billing { fee: 100 }.charge(1).unwrap(), 101);
    assert_eq!(Box::new(Billing { fee: 5 }).quote(1).unwrap(), 6);
    assert_eq!(Box::new(Billing { fee: 100 }).quote(1).unwrap(), 6);
}
