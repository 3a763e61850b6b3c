use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;

use async_trait::async_trait;
use idempotency::{idempotent, Error, IdempotencyManager};
use serde::{Deserialize, Serialize};

static MANAGER: LazyLock<IdempotencyManager> = LazyLock::new(crate::common::store::manager);

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct GatewayError(String);

impl From<Error> for GatewayError {
    fn from(e: Error) -> Self {
        GatewayError(e.to_string())
    }
}

#[async_trait]
trait Gateway {
    async fn charge(&self, order: u32, cents: u64) -> Result<String, GatewayError>;
    async fn refund(&mut self, (order, cents): (u32, u64)) -> Result<u64, GatewayError>;
}

#[derive(Serialize)]
struct Stripe {
    tenant: String,
    #[serde(skip)]
    runs: AtomicUsize,
}

#[async_trait]
impl Gateway for Stripe {
    #[idempotent(manager = &*MANAGER, scope = self.tenant.clone(), ttl = 60, include_self = false)]
    async fn charge(&self, order: u32, cents: u64) -> Result<String, GatewayError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if cents == 0 {
            return Err(GatewayError("zero".into()));
        }
        tokio::task::yield_now().await;
        Ok(format!("{}:{order}:{cents}", self.tenant))
    }

    #[idempotent(manager = &*MANAGER, include_self)]
    async fn refund(&mut self, (order, cents): (u32, u64)) -> Result<u64, GatewayError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let _ = order;
        Ok(cents)
    }
}

fn stripe(tenant: &str) -> Stripe {
    Stripe {
        tenant: tenant.into(),
        runs: AtomicUsize::new(0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_19_async_trait_method_with_self_in_the_scope_expression() {
    let t1 = stripe("t1");
    let t2 = stripe("t2");
    assert_eq!(t1.charge(1, 100).await, Ok("t1:1:100".into()));
    assert_eq!(t1.charge(1, 100).await, Ok("t1:1:100".into()));
    assert_eq!(t2.charge(1, 100).await, Ok("t2:1:100".into()));
    assert_eq!(t1.charge(1, 0).await, Err(GatewayError("zero".into())));
    assert_eq!(t1.charge(1, 0).await, Err(GatewayError("zero".into())));
    assert_eq!(t1.runs.load(Ordering::SeqCst), 2);
    assert_eq!(t2.runs.load(Ordering::SeqCst), 1);
    // The boxed future stays `Send` (async-trait's default).
    let dynamic: Box<dyn Gateway + Send + Sync> = Box::new(stripe("t3"));
    let out = tokio::spawn(async move { dynamic.charge(2, 5).await })
        .await
        .unwrap();
    assert_eq!(out, Ok("t3:2:5".into()));
}

#[tokio::test]
async fn scenario_17_async_trait_pattern_parameter_and_include_self() {
    let mut a = stripe("a");
    assert_eq!(a.refund((1, 50)).await, Ok(50));
    assert_eq!(a.refund((1, 50)).await, Ok(50));
    assert_eq!(a.runs.load(Ordering::SeqCst), 1);
    let mut b = stripe("b");
    assert_eq!(b.refund((1, 50)).await, Ok(50));
    assert_eq!(b.runs.load(Ordering::SeqCst), 1);
}

// ---- operation identity (issue 12) ----

#[async_trait]
trait Lookup {
    async fn find(&self, id: u64) -> Result<String, GatewayError>;
}

struct Users;
struct Orders;

static FINDS: AtomicUsize = AtomicUsize::new(0);

#[async_trait]
impl Lookup for Users {
    #[idempotent(manager = &*MANAGER)]
    async fn find(&self, id: u64) -> Result<String, GatewayError> {
        FINDS.fetch_add(1, Ordering::SeqCst);
        Ok(format!("user-{id}"))
    }
}

#[async_trait]
impl Lookup for Orders {
    #[idempotent(manager = &*MANAGER)]
    async fn find(&self, id: u64) -> Result<String, GatewayError> {
        FINDS.fetch_add(1, Ordering::SeqCst);
        Ok(format!("order-{id}"))
    }
}

#[tokio::test]
async fn scenario_18_async_trait_impls_for_two_types_never_share_a_record() {
    assert_eq!(Users.find(1).await, Ok("user-1".into()));
    assert_eq!(Orders.find(1).await, Ok("order-1".into()));
    assert_eq!(Orders.find(1).await, Ok("order-1".into()));
    assert_eq!(FINDS.load(Ordering::SeqCst), 2);
}
