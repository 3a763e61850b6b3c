use idempotency::idempotent;

struct Handle;

#[idempotent]
fn open(path: &str) -> Handle {
    let _ = path;
    Handle
}

fn main() {}
