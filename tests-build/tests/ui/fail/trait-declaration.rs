use idempotency::idempotent;

trait Payments {
    #[idempotent]
    fn charge(&self, order: u64) -> u64;
}

fn main() {}
