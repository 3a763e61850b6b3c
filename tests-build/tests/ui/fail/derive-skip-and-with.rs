use idempotency::NormalizeKey;

fn f(x: &u8) -> u8 {
    *x
}

#[derive(NormalizeKey)]
struct S {
    #[idempotency(skip, with = f)]
    a: u8,
    #[idempotency(skip, skip)]
    b: u8,
    #[idempotency(rename = "c")]
    c: u8,
}

fn main() {}
