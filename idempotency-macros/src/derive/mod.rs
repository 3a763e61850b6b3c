//! `#[derive(NormalizeKey)]`: `ast` (borrowed input with parsed attributes) → `valid`
//! (cross-attribute rules) → `expand` (or `fallback` on error), after thiserror-impl.

pub(crate) mod ast;
pub(crate) mod attr;
pub(crate) mod expand;
mod fallback;
mod valid;
