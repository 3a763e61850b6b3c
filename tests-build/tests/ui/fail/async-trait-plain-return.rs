use idempotency::idempotent;

#[async_trait::async_trait]
trait T {
    async fn f(&self, x: u8) -> u8;
}

struct S;

#[async_trait::async_trait]
impl T for S {
    #[idempotent]
    async fn f(&self, x: u8) -> u8 {
        x
    }
}

fn main() {}
