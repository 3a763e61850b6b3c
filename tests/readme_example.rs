//! The README's `#[idempotent]` example, compiled and run as written (with a memory store).

use std::sync::atomic::{AtomicUsize, Ordering};

use idempotency::idempotent;
use serde::{Deserialize, Serialize};

static RUNS: AtomicUsize = AtomicUsize::new(0);
static MANAGER: std::sync::LazyLock<idempotency::IdempotencyManager> =
    std::sync::LazyLock::new(|| {
        idempotency::IdempotencyManager::new(idempotency::MemoryStorage::new())
    });

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub charge_id: String,
    pub amount_cents: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum PaymentError {
    Declined(String),
    Idempotency(idempotency::Error),
}

impl From<idempotency::Error> for PaymentError {
    fn from(e: idempotency::Error) -> Self {
        PaymentError::Idempotency(e)
    }
}

/// Charges a customer at most once per (customer, order) within an hour.
#[idempotent(ttl = 3600, manager = &*MANAGER)]
pub async fn charge(
    customer_id: u64,
    order_id: String,
    amount_cents: u64,
) -> Result<Receipt, PaymentError> {
    let _ = customer_id;
    RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(Receipt {
        charge_id: format!("ch_{order_id}"),
        amount_cents,
    })
}

#[tokio::test]
async fn readme_charge_example_runs_once() {
    let a = charge(7, "order-1".into(), 1200)
        .await
        .map_err(|e| format!("{e:?}"));
    let b = charge(7, "order-1".into(), 1200)
        .await
        .map_err(|e| format!("{e:?}"));
    assert_eq!(a, b);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
}
