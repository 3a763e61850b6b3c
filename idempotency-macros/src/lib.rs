//! Procedural macros of the `idempotency` framework (work in progress: the placeholders below
//! are replaced by the real expansion).
use proc_macro::TokenStream;

/// Placeholder.
#[proc_macro_attribute]
pub fn idempotent(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}

/// Placeholder.
#[proc_macro_derive(NormalizeKey, attributes(idempotency))]
pub fn derive_normalize_key(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}
