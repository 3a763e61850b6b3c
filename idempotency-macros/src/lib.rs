//! Procedural macros of the [`idempotency`](https://docs.rs/idempotency) framework:
//! `#[idempotent]` and `#[derive(NormalizeKey)]`.
//!
//! **Not for direct use; depend on `idempotency`**, which re-exports both and provides the
//! runtime the generated code calls (`idempotency::__private`, not public API).

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub, rust_2018_idioms)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ctxt;
mod derive;
mod idempotent;

use proc_macro::TokenStream;

#[doc = include_str!("idempotent.md")]
#[proc_macro_attribute]
pub fn idempotent(args: TokenStream, item: TokenStream) -> TokenStream {
    idempotent::expand(args.into(), item.into()).into()
}

#[doc = include_str!("derive.md")]
#[proc_macro_derive(NormalizeKey, attributes(idempotency))]
pub fn derive_normalize_key(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    derive::expand::derive(&input).into()
}
