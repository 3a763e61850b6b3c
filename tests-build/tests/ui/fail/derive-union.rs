use idempotency::NormalizeKey;

#[derive(NormalizeKey)]
union U {
    a: u32,
    b: f32,
}

fn main() {}
