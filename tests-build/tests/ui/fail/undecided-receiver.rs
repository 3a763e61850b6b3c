#![deny(deprecated)]

use idempotency::{idempotent, NormalizeKey};

#[derive(serde::Serialize)]
struct Billing {
    fee: u64,
}

impl Billing {
    // The receiver is `Serialize` but not in the key, and the attribute does not say so.
    #[idempotent]
    fn charge(&self, amount: u64) -> u64 {
        self.fee + amount
    }

    // Decided either way: no warning.
    #[idempotent(include_self)]
    fn keyed(&self, amount: u64) -> u64 {
        self.fee + amount
    }

    #[idempotent(include_self = false)]
    fn shared(&self, amount: u64) -> u64 {
        self.fee + amount
    }
}

#[derive(NormalizeKey)]
struct Tenant {
    id: u32,
}

impl Tenant {
    #[idempotent]
    async fn sync(self, n: u32) -> u32 {
        self.id + n
    }
}

// A receiver that can be neither serialized nor normalized (a client, a pool): no warning.
struct Client;

impl Client {
    #[idempotent]
    fn send(&self, n: u32) -> u32 {
        n
    }
}

fn main() {}
