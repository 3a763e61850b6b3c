use idempotency::NormalizeKey;

fn normalize(s: &str) -> String { s.trim().to_lowercase() }

#[derive(NormalizeKey)]
struct Named<'a, T: Clone> { a: T, #[idempotency(with = normalize)] b: &'a str, #[idempotency(skip)] c: std::time::Instant }

#[derive(NormalizeKey)]
struct Tuple(u8, #[idempotency(skip)] std::cell::Cell<u8>);

#[derive(NormalizeKey)]
struct Unit;

#[derive(NormalizeKey)]
enum E<T> { A, B(T), C(u8, u8), D { x: u8, #[idempotency(skip)] y: std::rc::Rc<u8> } }

#[derive(NormalizeKey)]
enum Empty {}

fn main() {
    let mut enc = idempotency::KeyEncoder::new("x", 1);
    enc.arg_normalized(&Named { a: 1_u8, b: " A ", c: std::time::Instant::now() })
        .arg_normalized(&Tuple(1, std::cell::Cell::new(2)))
        .arg_normalized(&Unit)
        .arg_normalized(&E::<u8>::A)
        .arg_normalized(&E::B(1_u8))
        .arg_normalized(&E::<u8>::C(1, 2))
        .arg_normalized(&E::<u8>::D { x: 1, y: std::rc::Rc::new(1) });
    let _ = std::marker::PhantomData::<Empty>;
    assert!(enc.finish().is_ok());
}
