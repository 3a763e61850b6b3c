use idempotency::idempotent;

#[idempotent(cache_failures = true)]
fn fetch(id: u32) -> Result<u32, std::io::Error> {
    Ok(id)
}

fn main() {}
