use idempotency::idempotent;

#[idempotent(key = order_idd)]
fn charge(order_id: &str, cents: u64) -> u64 {
    cents
}

#[idempotent(scope = self.tenant)]
fn no_receiver(x: u8) -> u8 {
    x
}

fn main() {}
