use idempotency::idempotent;

struct Connection;

#[idempotent]
fn query(conn: &Connection, sql: &str) -> usize {
    let _ = conn;
    sql.len()
}

fn main() {}
