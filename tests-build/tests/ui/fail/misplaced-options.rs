use idempotency::idempotent;

#[idempotent(cache_failures = true, ttl = 10, pending_timeout = 20)]
fn f(x: u8) -> u8 {
    x
}

#[idempotent(include_self, on_conflict = block, fingerprint = "ignore", name = "")]
fn g(x: u8) -> u8 {
    x
}

fn main() {}
