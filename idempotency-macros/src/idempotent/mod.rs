//! `#[idempotent]`: parse → validate → expand, every step recording errors in one `Ctxt`.

mod args;
mod expand;
mod item;
mod validate;

use proc_macro2::TokenStream;

use crate::ctxt::Ctxt;
use args::IdempotentArgs;
use item::MaybeItemFn;

/// The attribute's entry point. If any step fails we still expand to an item as close to the
/// intended one as possible (tokio-macros' `token_stream_with_error`): with the settings that
/// were valid when the function itself is fine, or the function unchanged when it cannot be
/// wrapped. Either way the errors are appended, and IDEs keep working.
pub(crate) fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let item: MaybeItemFn = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(e) => return token_stream_with_error(input, e),
    };
    let cx = Ctxt::new();
    let mut args = IdempotentArgs::parse(&cx, args);
    let mut sig = item.sig.clone();
    let (receiver, mut params) = item::params(&cx, &mut sig);
    let async_trait = item::async_trait_shape(&item);
    let shape = validate::item(&cx, &item, async_trait.as_ref());
    let out = match shape {
        Err(validate::Fatal) => item.unchanged(),
        Ok(ret) => {
            validate::args(&cx, &mut args, &mut params, receiver, &ret, &item.sig.ident);
            expand::function(&expand::Input {
                item: &item,
                sig,
                args: &args,
                receiver,
                params: &params,
                ret: &ret,
                async_trait: async_trait.as_ref(),
            })
        }
    };
    match cx.check() {
        Ok(()) => out,
        Err(e) => token_stream_with_error(out, e),
    }
}

fn token_stream_with_error(mut tokens: TokenStream, error: syn::Error) -> TokenStream {
    tokens.extend(error.into_compile_error());
    tokens
}
