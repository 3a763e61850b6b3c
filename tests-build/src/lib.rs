//! Intentionally empty: this crate only holds the trybuild UI tests in `tests/`.
