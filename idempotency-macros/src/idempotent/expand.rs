//! Code generation for `#[idempotent]`. Only `quote!`: the input has been validated.
//!
//! Input:
//!     #[idempotent(ttl = 60)]
//!     fn charge(order: &Order, #[idempotency(skip)] log: &Log) -> Result<Receipt, PayError> { body }
//!
//! Output:
//!     fn charge(order: &Order, log: &Log) -> Result<Receipt, PayError> {
//!         let __idempotency_override = take_override();
//!         let __idempotency_manager = default_manager();
//!         let __idempotency_call = {
//!             fn __idempotency_fn() {}
//!             let __idempotency_op = Operation::at(&SITE, type_name_of_val(&__idempotency_fn), type_name_of_val(&|| {}));
//!             let mut __idempotency_enc = KeyEncoder::new(__idempotency_op.name(), 1);
//!             __idempotency_op.identify(&mut __idempotency_enc, true);
//!             if let Some(k) = override_key(&__idempotency_override) { __idempotency_enc.custom_key(k); }
//!             /* write `order` through NormalizeKey or Serialize */
//!             __idempotency_op.check_site(&SITE, true)?; // (as a `match`; SITE: a `static` of this expansion)
//!             finish_call(&mut __idempotency_enc, &__idempotency_override, CallOptions { ttl: Some(60 s), .. })
//!         };
//!         /* StoredFailures if PayError serializes, TransientFailures if not (see `failures`) */
//!         StoredFailures.try_run_sync(__idempotency_manager, __idempotency_call, move || -> Result<Receipt, PayError> { body })
//!     }
//!
//! Every path is absolute (`::idempotency::__private::...`, `::core::...`), and every local is
//! prefixed `__idempotency_`, so the user's imports and names cannot change the meaning.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{ReturnType, Signature};

use super::args::{Conflict, FingerprintArg, IdempotentArgs, Secs};
use super::item::{self, AsyncTraitShape, MaybeItemFn, Param, Receiver, ReturnShape};

pub(crate) struct Input<'a> {
    pub(crate) item: &'a MaybeItemFn,
    /// The signature with parameter attributes removed and pattern parameters renamed.
    pub(crate) sig: Signature,
    pub(crate) args: &'a IdempotentArgs,
    pub(crate) receiver: Option<Receiver>,
    pub(crate) params: &'a [Param],
    pub(crate) ret: &'a ReturnShape,
    pub(crate) async_trait: Option<&'a AsyncTraitShape>,
}

pub(crate) fn function(input: &Input<'_>) -> TokenStream {
    let krate = match &input.args.krate {
        Some(path) => path.to_token_stream(),
        None => quote!(::idempotency),
    };
    let p = quote!(#krate::__private);
    let item = input.item;
    let mut sig = input.sig.clone();
    // Input:  fn f() -> T        (T not named `Result`)
    // Output: fn f() -> Result<T, idempotency::Error>: a conflict or an unreachable store must
    //         be reportable. Under `#[async_trait]` the signature stays (validated as fallible).
    if !input.ret.fallible && input.async_trait.is_none() {
        let t = input
            .ret
            .ty
            .as_ref()
            .map_or_else(|| quote!(()), ToTokens::to_token_stream);
        let arrow = match &sig.output {
            ReturnType::Type(arrow, _) => quote!(#arrow),
            ReturnType::Default => quote!(->),
        };
        sig.output = syn::parse_quote!(#arrow #p::Result<#t, #p::Error>);
    }
    let prologue = prologue(input, &p);
    let run = run(input, &p);
    let outer = &item.outer_attrs;
    let inner = &item.inner_attrs;
    let vis = &item.vis;
    let body = match input.async_trait {
        None => quote!(#prologue #run),
        Some(at) => {
            // Input:  fn f(&self) -> Pin<Box<dyn Future<Output = R> + Send>> { Box::pin(async move { .. }) }
            // Output: the same signature; the key is computed inside a new outer `async move`,
            //         where `self` is still the receiver (async-trait's `__self` is bound inside
            //         the inner block, which becomes the body closure).
            let before = &at.before;
            let func = &at.call.func;
            let async_token = &at.inner.async_token;
            quote!(#(#before)* #func(#async_token move { #prologue #run }))
        }
    };
    let mut out = quote!(#(#outer)* #vis #sig);
    item.brace
        .surround(&mut out, |t| t.extend(quote!(#(#inner)* #body)));
    out
}

/// The override, the manager and the call, computed before the body runs (so a body that
/// mutates its arguments does not change its own key).
fn prologue(input: &Input<'_>, p: &TokenStream) -> TokenStream {
    let args = input.args;
    let manager = match &args.manager {
        Some(expr) => quote_spanned!(at(expr.span())=> #p::manager_from(&(#expr))),
        None => quote!(#p::default_manager()),
    };
    // The operation identity (`Operation`): the default name is the function's path as the
    // compiler prints the nested item's type (`app::Users::get`), and the instantiation
    // (`<u64>`, `app::W<u32>::get`) comes from a closure's type. Both are read here, outside
    // the body's closure, so an `async` body adds only `{{closure}}` segments, which
    // `Operation::new` removes.
    let (name, default_name) = match &args.name {
        Some(lit) => (quote!(#lit), false),
        None => (quote!(__idempotency_op.name()), true),
    };
    let operation = quote! {
        fn __idempotency_fn() {}
        static __IDEMPOTENCY_SITE: #p::Site = #p::Site::new();
        let __idempotency_op = #p::Operation::at(
            &__IDEMPOTENCY_SITE,
            ::core::any::type_name_of_val(&__idempotency_fn),
            ::core::any::type_name_of_val(&|| {}),
        );
    };
    let version = Literal::u32_unsuffixed(args.version.unwrap_or(1));
    let scope = args
        .scope
        .as_ref()
        .map(|e| quote_spanned!(at(e.span())=> __idempotency_enc.scope(&(#e));));
    let key_param = input.params.iter().find(|q| q.key.is_some());
    let key_src = match (&args.key, key_param) {
        (Some((_, expr)), _) => Some(quote_spanned!(at(expr.span())=> &(#expr))),
        (None, Some(q)) => {
            let ident = &q.ident;
            Some(quote_spanned!(at(q.span)=> &#ident))
        }
        (None, None) => None,
    };
    let custom = match key_src {
        Some(src) => quote! {
            let __idempotency_key_src = #src;
            match #p::override_key(&__idempotency_override) {
                #p::Option::Some(__idempotency_k) => { __idempotency_enc.custom_key(__idempotency_k); }
                #p::Option::None => { __idempotency_enc.custom_key(#p::custom_key(__idempotency_key_src)); }
            }
        },
        None => quote! {
            if let #p::Option::Some(__idempotency_k) = #p::override_key(&__idempotency_override) {
                __idempotency_enc.custom_key(__idempotency_k);
            }
        },
    };
    let receiver_value = match input.receiver {
        Some(Receiver::ByRef) => Some(quote!(&*self)),
        Some(Receiver::ByValue) => Some(quote!(&self)),
        None => None,
    };
    let receiver = match (args.include_self, &receiver_value) {
        (Some((span, true)), Some(value)) => Some(write_arg(p, span, value)),
        // Undecided: a warning at the receiver when its type could be part of the key.
        (None, Some(value)) => Some(receiver_warning(input, p, value)),
        _ => None,
    };
    let writes: Vec<TokenStream> = input
        .params
        .iter()
        .filter(|q| q.skip.is_none() && q.key.is_none())
        .map(|q| {
            let ident = &q.ident;
            write_arg(p, q.span, &quote!(&#ident))
        })
        .collect();
    let dispatch = (receiver.is_some() || !writes.is_empty())
        .then(|| quote!(use #p::{ViaNormalize as _, ViaSerialize as _};));
    let options = options(args, p);
    quote! {
        let __idempotency_override = #p::take_override();
        let __idempotency_manager = #manager;
        let __idempotency_call = {
            #operation
            #dispatch
            let mut __idempotency_enc = #p::KeyEncoder::new(#name, #version);
            __idempotency_op.identify(&mut __idempotency_enc, #default_name);
            #scope
            #custom
            #receiver
            #(#writes)*
            match __idempotency_op.check_site(&__IDEMPOTENCY_SITE, #default_name) {
                #p::Result::Ok(()) => #p::finish_call(&mut __idempotency_enc, &__idempotency_override, #options),
                #p::Result::Err(__idempotency_e) => #p::Result::Err(__idempotency_e),
            }
        };
    }
}

/// A method whose attribute does not say whether the receiver is part of the key: a
/// deprecation warning (the one warning a macro can raise on stable) at the receiver when its
/// type implements `NormalizeKey` or `Serialize`, silence otherwise (see `ReceiverCheck`).
fn receiver_warning(input: &Input<'_>, p: &TokenStream, value: &TokenStream) -> TokenStream {
    let span = input
        .item
        .sig
        .inputs
        .first()
        .map_or_else(Span::call_site, Spanned::span);
    let call = quote_spanned! {at(span)=>
        (&&&#p::ReceiverCheck(#value)).receiver_is_not_in_the_key()
    };
    quote! {
        {
            use #p::{NormalizeReceiver as _, OtherReceiver as _, SerializeReceiver as _};
            #call;
        }
    }
}

/// Writes one value into the key through `NormalizeKey` when its type has it, `Serialize`
/// otherwise. Spanned at the parameter, so "cannot be part of an idempotency key" points there.
fn write_arg(p: &TokenStream, span: Span, value: &TokenStream) -> TokenStream {
    let call = quote_spanned! {at(span)=>
        (&#p::KeyArg(#value)).__idempotency_write(&mut __idempotency_enc.writer())
    };
    quote! {
        let __idempotency_r = #call;
        __idempotency_enc.record_error(__idempotency_r);
    }
}

fn duration(p: &TokenStream, secs: &Secs) -> TokenStream {
    match secs {
        Secs::Lit(n, span) => {
            let n = Literal::u64_unsuffixed(*n);
            quote_spanned!(at(*span)=> #p::Duration::from_secs(#n))
        }
        Secs::Expr(e) => quote_spanned!(at(e.span())=> #p::duration(#e)),
    }
}

fn options(args: &IdempotentArgs, p: &TokenStream) -> TokenStream {
    let some = |v: TokenStream| quote!(#p::Option::Some(#v));
    let mut fields = Vec::new();
    if let Some((_, s)) = &args.ttl {
        let v = some(duration(p, s));
        fields.push(quote!(ttl: #v));
    }
    if let Some((_, s)) = &args.failure_ttl {
        let v = some(duration(p, s));
        fields.push(quote!(failure_ttl: #v));
    }
    if let Some((_, s)) = &args.pending_timeout {
        let v = some(duration(p, s));
        fields.push(quote!(pending_timeout: #v));
    }
    if let Some(c) = &args.on_conflict {
        let policy = match c {
            Conflict::Reject => quote!(#p::ConflictPolicy::Reject),
            Conflict::Wait(s) => {
                let d = duration(p, s);
                quote!(#p::ConflictPolicy::Wait { timeout: #d })
            }
        };
        let v = some(policy);
        fields.push(quote!(on_conflict: #v));
    }
    if let Some(f) = args.fingerprint {
        let policy = match f {
            FingerprintArg::Replay => quote!(#p::FingerprintPolicy::Replay),
            FingerprintArg::Reject => quote!(#p::FingerprintPolicy::Reject),
        };
        let v = some(policy);
        fields.push(quote!(fingerprint: #v));
    }
    if let Some((_, b)) = args.cache_failures {
        let v = some(quote!(#b));
        fields.push(quote!(cache_failures: #v));
    }
    if let Some(b) = args.renew_lease {
        let v = some(quote!(#b));
        fields.push(quote!(renew_lease: #v));
    }
    if fields.is_empty() {
        quote!(<#p::CallOptions as ::core::default::Default>::default())
    } else {
        quote!(#p::CallOptions { #(#fields,)* ..<#p::CallOptions as ::core::default::Default>::default() })
    }
}

/// Runs the body through the manager: `run`/`try_run` for async bodies, `run_sync`/`try_run_sync`
/// for sync ones. The entry point is spanned at the return type, so "cannot be stored" and
/// "cannot carry an `idempotency::Error`" point there.
fn run(input: &Input<'_>, p: &TokenStream) -> TokenStream {
    let item = input.item;
    let ret = &input.ret;
    let ret_span = ret.ty.as_ref().map_or_else(Span::call_site, Spanned::span);
    let rebinds: Vec<TokenStream> = input
        .params
        .iter()
        .filter_map(|q| {
            let pat = q.pattern.as_ref()?;
            let ident = &q.ident;
            Some(quote!(let #pat = #ident;))
        })
        .collect();
    // The user's statements go straight into the closure's block (inside the user's own
    // braces), after the generated rebinds: no nested block for `unused_braces` to flag.
    let body = &item.body;
    let with_body = |prefix: TokenStream| {
        let mut block = TokenStream::new();
        item.brace.surround(&mut block, |t| {
            t.extend(prefix);
            t.extend(rebinds.iter().cloned());
            t.extend(body.clone());
        });
        block
    };
    let is_async = item.sig.asyncness.is_some() || input.async_trait.is_some();
    // A fallible function runs through a method of its failure policy
    // (`StoredFailures`/`TransientFailures`, see `failures`).
    let entry = match (is_async, ret.fallible) {
        (true, true) => quote!(try_run),
        (true, false) => quote!(#p::run),
        (false, true) => quote!(try_run_sync),
        (false, false) => quote!(#p::run_sync),
    };
    let closure = match (input.async_trait, is_async) {
        // async-trait's inner block already pins its output type and binds `__self`.
        (Some(at), _) => {
            let inner = &at.inner;
            quote!(move || #inner)
        }
        (None, true) => {
            // A fake return edge so that `?` and `return` in the body see the declared type
            // (dtolnay/async-trait: `transform_block`).
            let pin = ret.ty.as_ref().map(|t| {
                quote! {
                    if let #p::Option::Some(__idempotency_ret) = #p::Option::None::<#t> {
                        #[allow(unreachable_code)]
                        return __idempotency_ret;
                    }
                }
            });
            let block = with_body(pin.unwrap_or_default());
            quote!(move || async move #block)
        }
        (None, false) => {
            let arrow = ret.ty.as_ref().map(|t| quote!(-> #t));
            let block = with_body(TokenStream::new());
            quote!(move || #arrow #block)
        }
    };
    let entry = respan(entry, at(ret_span));
    let policy = ret.fallible.then(|| failures(input, p, ret_span));
    let entry = match policy {
        Some(policy) => quote_spanned!(at(ret_span)=> #policy.#entry),
        None => entry,
    };
    let call =
        quote_spanned!(at(ret_span)=> #entry(__idempotency_manager, __idempotency_call, #closure));
    if is_async {
        quote!(#call.await)
    } else {
        call
    }
}

/// Whether a fallible function's `Err` values are stored: the policy whose `try_run` or
/// `try_run_sync` runs it:
/// - `cache_failures = false`: never (`E` needs no `Serialize`);
/// - `cache_failures = true`, or an error type naming a type parameter of the function (whose
///   `Serialize` impl is unknown here): stored, and `E` must serialize (`StorableError`);
/// - otherwise the error type decides, by autoderef dispatch on `ErrorProbe<R>`: never for
///   `idempotency::Error`, stored when it is `Serialize + DeserializeOwned`, never otherwise.
fn failures(input: &Input<'_>, p: &TokenStream, ret_span: Span) -> TokenStream {
    let ret = input.ret;
    let generic = item::error_type(ret)
        .is_some_and(|e| item::mentions_type_param(e, &input.item.sig.generics));
    let span = at(ret_span);
    match input.args.cache_failures {
        Some((_, false)) => quote_spanned!(span=> #p::TransientFailures),
        Some((_, true)) => quote_spanned!(span=> #p::StoredFailures),
        None if generic => quote_spanned!(span=> #p::StoredFailures),
        None => {
            let ty = ret
                .ty
                .as_ref()
                .map_or_else(|| quote!(()), ToTokens::to_token_stream);
            quote_spanned! {span=> {
                use #p::{ViaFrameworkError as _, ViaStoredError as _, ViaTransientError as _};
                (&&&#p::ErrorProbe::<#ty>::new()).__idempotency_failures()
            }}
        }
    }
}

/// `span`'s location with call-site hygiene: errors land on the user's tokens, while the
/// generated locals (`__idempotency_enc`) still resolve, even when the tokens came from another
/// macro with mixed-site hygiene (async-trait's `__argN`).
fn at(span: Span) -> Span {
    Span::call_site().located_at(span)
}

/// `tokens` with every span set to `span` (used on the entry-point path, so that the whole call
/// expression, whose span a trait-bound error reports, lies on the return type).
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            if let proc_macro2::TokenTree::Group(g) = &tt {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                tt = proc_macro2::TokenTree::Group(group);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}
