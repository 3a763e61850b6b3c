//! Rules that span several parts of the input (after thiserror's `valid.rs` and serde's
//! `check.rs`). Simple checks on one argument happen while parsing; each rule here is a small
//! function that says why it exists. A rule that finds a problem records it in the `Ctxt` and
//! either marks the function as impossible to expand (`Fatal`) or drops the offending setting,
//! so that the expansion still compiles and the user sees only the real mistake.

use std::collections::HashSet;

use proc_macro2::Span;
use syn::visit::{self, Visit};
use syn::{Expr, ExprCall, ExprClosure, ExprPath, Ident, Pat, ReturnType, Type};

use super::args::{IdempotentArgs, Secs};
use super::item::{self, AsyncTraitShape, MaybeItemFn, Param, Receiver, ReturnShape};
use crate::ctxt::Ctxt;

/// The longest operation name, in bytes: a mirror of `idempotency::MAX_OPERATION_BYTES` (a
/// proc-macro crate cannot depend on the runtime crate; the test below pins that they agree).
pub(crate) const MAX_OPERATION_BYTES: usize = 200;

/// The function cannot be expanded; emit it unchanged with the errors.
pub(crate) struct Fatal;

/// Checks the function itself. `Err(Fatal)` when it cannot be wrapped at all.
pub(crate) fn item(
    cx: &Ctxt,
    item: &MaybeItemFn,
    async_trait: Option<&AsyncTraitShape>,
) -> Result<ReturnShape, Fatal> {
    let mut fatal = false;
    // A `const fn` may run at compile time, where there is no store and no clock; the wrapper
    // also calls non-const code (tracing-attributes rejects `const fn` the same way).
    if let Some(c) = &item.sig.constness {
        cx.error_spanned_by(c, "`#[idempotent]` may not be used on a `const fn`: the store and the clock are not available at compile time");
        fatal = true;
    }
    // An `extern "C" fn` is called across an ABI that cannot carry `idempotency::Error`, and a
    // variadic body cannot be moved into a closure.
    if let Some(abi) = &item.sig.abi {
        cx.error_spanned_by(abi, "`#[idempotent]` may not be used on an `extern` function; wrap a Rust function with `#[idempotent]` and call it from the `extern` one");
        fatal = true;
    }
    if let Some(v) = &item.sig.variadic {
        cx.error_spanned_by(v, "`#[idempotent]` may not be used on a variadic function");
        fatal = true;
    }
    let declared = match &item.sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => Some(&**ty),
    };
    let shape = match async_trait {
        Some(at) => item::return_shape(Some(&at.output)),
        None => item::return_shape(declared),
    };
    // A stored result is replayed by deserializing it, which needs a nameable type.
    if let Some(ty) = &shape.ty {
        if let Some(span) = impl_trait_in(ty) {
            cx.error_at(span, "`#[idempotent]` cannot store an `impl Trait` result: it is replayed by deserializing it, so return a concrete type");
            fatal = true;
        }
    }
    // Under `#[async_trait]` the signature is fixed by the trait, so a plain `-> T` cannot
    // become `-> Result<T, idempotency::Error>`: there is no way to report a conflict.
    if async_trait.is_some() && !shape.fallible {
        let span = shape
            .ty
            .as_ref()
            .map_or_else(Span::call_site, syn::spanned::Spanned::span);
        cx.error_at(span, "`#[idempotent]` under `#[async_trait]` needs a `Result<T, E>` return type with `E: From<idempotency::Error>`: the trait fixes the signature, so a plain `T` cannot be turned into `Result<T, idempotency::Error>`");
        fatal = true;
    }
    if fatal {
        Err(Fatal)
    } else {
        Ok(shape)
    }
}

fn impl_trait_in(ty: &Type) -> Option<Span> {
    struct Find(Option<Span>);
    impl Visit<'_> for Find {
        fn visit_type_impl_trait(&mut self, t: &syn::TypeImplTrait) {
            self.0.get_or_insert(syn::spanned::Spanned::span(t));
        }
    }
    let mut f = Find(None);
    f.visit_type(ty);
    f.0
}

/// Checks the arguments against the function; drops settings that could not be expanded.
pub(crate) fn args(
    cx: &Ctxt,
    args: &mut IdempotentArgs,
    params: &mut [Param],
    receiver: Option<Receiver>,
    shape: &ReturnShape,
    fn_name: &Ident,
) {
    key_params(cx, args, params);
    references(cx, args, params, receiver, fn_name);
    lease_within_ttl(cx, args);
    cache_failures_needs_result(cx, args, shape);
    include_self_needs_receiver(cx, args, receiver);
    operation_name(cx, args);
}

/// A caller-supplied key comes from one place: two sources would make it unclear which one
/// identifies the operation. A parameter that is the key is not also "skipped": the key never
/// enters the fingerprint anyway.
fn key_params(cx: &Ctxt, args: &mut IdempotentArgs, params: &mut [Param]) {
    let mut first: Option<Span> = None;
    for p in params.iter_mut() {
        let Some(key) = p.key else { continue };
        if let Some(skip) = p.skip {
            cx.error_at(skip, "`#[idempotency(skip)]` has no effect on the `#[idempotency(key)]` parameter, which is never part of the fingerprint; remove `skip`");
            p.skip = None;
        }
        if first.is_some() {
            cx.error_at(key, "only one parameter may be `#[idempotency(key)]`; combine the parts with `#[idempotent(key = format!(...))]` instead");
            p.key = None;
            continue;
        }
        if let Some((span, _)) = &args.key {
            cx.error_at(*span, "`key = ...` and an `#[idempotency(key)]` parameter both give the idempotency key; keep one");
            args.key = None;
        }
        first = Some(key);
    }
}

/// `key = ...` and `scope = ...` are computed from the parameters before the body runs; a name
/// that is not a parameter is almost always a typo, and rustc's "cannot find value" would not
/// say which parameters exist (tracing's "attempting to skip non-existent parameter").
fn references(
    cx: &Ctxt,
    args: &mut IdempotentArgs,
    params: &[Param],
    receiver: Option<Receiver>,
    fn_name: &Ident,
) {
    let known: HashSet<String> = params
        .iter()
        .flat_map(|p| {
            p.binds
                .iter()
                .chain(p.pattern.is_none().then_some(&p.ident))
        })
        .map(ToString::to_string)
        .collect();
    let list = params
        .iter()
        .flat_map(|p| p.binds.iter())
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let check = |what: &str, expr: &Expr| -> bool {
        let mut ok = true;
        for (ident, is_self) in free_names(expr) {
            if is_self {
                if receiver.is_none() {
                    cx.error_spanned_by(
                        &ident,
                        format!("`{what}` refers to `self`, but `{fn_name}` has no receiver"),
                    );
                    ok = false;
                }
            } else if !known.contains(&ident.to_string()) {
                let params = if list.is_empty() {
                    format!("`{fn_name}` has no parameters")
                } else {
                    format!("parameters: {list}")
                };
                cx.error_spanned_by(&ident, format!("`{what}` refers to `{ident}`, which is not a parameter of `{fn_name}`; {params}"));
                ok = false;
            }
        }
        ok
    };
    if let Some((_, e)) = &args.key {
        if !check("key", e) {
            args.key = None;
        }
    }
    if let Some(e) = &args.scope {
        if !check("scope", e) {
            args.scope = None;
        }
    }
}

/// The lower-case single-segment names an expression reads that it does not bind itself
/// (closure parameters, `let`s, match arms): the candidates for parameters. Names in call
/// position (`make_key(x)`), paths with several segments and upper-case names (constants,
/// statics) are not candidates.
fn free_names(expr: &Expr) -> Vec<(Ident, bool)> {
    struct Names {
        bound: HashSet<String>,
        found: Vec<(Ident, bool)>,
    }
    impl<'a> Visit<'a> for Names {
        fn visit_expr_call(&mut self, c: &'a ExprCall) {
            if !matches!(&*c.func, Expr::Path(_)) {
                self.visit_expr(&c.func);
            }
            for a in &c.args {
                self.visit_expr(a);
            }
        }
        fn visit_expr_closure(&mut self, c: &'a ExprClosure) {
            for p in &c.inputs {
                self.bind(p);
            }
            visit::visit_expr_closure(self, c);
        }
        fn visit_local(&mut self, l: &'a syn::Local) {
            self.bind(&l.pat);
            visit::visit_local(self, l);
        }
        fn visit_arm(&mut self, a: &'a syn::Arm) {
            self.bind(&a.pat);
            visit::visit_arm(self, a);
        }
        fn visit_expr_path(&mut self, p: &'a ExprPath) {
            if p.qself.is_some() || p.path.segments.len() != 1 {
                return;
            }
            let ident = &p.path.segments[0].ident;
            let name = ident.to_string();
            if name == "self" {
                self.found.push((ident.clone(), true));
            } else if name.starts_with(|c: char| c.is_lowercase() || c == '_')
                && !self.bound.contains(&name)
            {
                self.found.push((ident.clone(), false));
            }
        }
        fn visit_macro(&mut self, _: &'a syn::Macro) {}
    }
    impl Names {
        fn bind(&mut self, p: &Pat) {
            let mut v = Vec::new();
            collect(p, &mut v);
            self.bound.extend(v);
        }
    }
    fn collect(p: &Pat, out: &mut Vec<String>) {
        struct B<'o>(&'o mut Vec<String>);
        impl Visit<'_> for B<'_> {
            fn visit_pat_ident(&mut self, i: &syn::PatIdent) {
                self.0.push(i.ident.to_string());
                visit::visit_pat_ident(self, i);
            }
        }
        B(out).visit_pat(p);
    }
    let mut n = Names {
        bound: HashSet::new(),
        found: Vec::new(),
    };
    n.visit_expr(expr);
    n.found
}

/// The manager refuses a lease longer than the TTL at run time (SEMANTICS.md scenario 21);
/// when both are literals the mistake is visible now.
fn lease_within_ttl(cx: &Ctxt, args: &IdempotentArgs) {
    if let (Some((_, Secs::Lit(ttl, _))), Some((_, Secs::Lit(lease, span)))) =
        (&args.ttl, &args.pending_timeout)
    {
        if lease > ttl {
            cx.error_at(*span, format!("`pending_timeout` ({lease} s) may not exceed `ttl` ({ttl} s): a record must outlive the lease that protects it"));
        }
    }
}

/// `cache_failures` decides what happens to an `Err`; a function that cannot return one has
/// nothing to decide, and the setting would silently do nothing.
fn cache_failures_needs_result(cx: &Ctxt, args: &mut IdempotentArgs, shape: &ReturnShape) {
    if let Some((span, _)) = args.cache_failures {
        if !shape.fallible {
            cx.error_at(span, "`cache_failures` only applies to a function returning `Result<T, E>`; this function cannot return an `Err` of its own");
            args.cache_failures = None;
        }
    }
}

/// `include_self` decides about a receiver; without one it would silently do nothing.
fn include_self_needs_receiver(cx: &Ctxt, args: &mut IdempotentArgs, receiver: Option<Receiver>) {
    if let (Some((span, value)), None) = (args.include_self, receiver) {
        let what = if value {
            "`include_self` puts the receiver in the key"
        } else {
            "`include_self = false` leaves the receiver out of the key"
        };
        cx.error_at(
            span,
            format!("{what}, but this function has no `self` parameter; remove it"),
        );
        args.include_self = None;
    }
}

/// The operation name is the visible part of every key: the manager would refuse a bad one on
/// every call, so refuse it once, here (same rules as `KeyEncoder::finish`).
fn operation_name(cx: &Ctxt, args: &mut IdempotentArgs) {
    let Some(lit) = &args.name else { return };
    let name = lit.value();
    let problem = if name.is_empty() {
        Some("the operation `name` may not be empty".to_owned())
    } else if name.len() > MAX_OPERATION_BYTES {
        Some(format!(
            "the operation `name` may be at most {MAX_OPERATION_BYTES} bytes long"
        ))
    } else if name.chars().any(char::is_control) {
        Some("the operation `name` may not contain control characters".to_owned())
    } else {
        None
    };
    if let Some(p) = problem {
        cx.error_spanned_by(lit, p);
        args.name = None;
    }
}

#[cfg(test)]
mod tests {
    use super::{operation_name, IdempotentArgs, MAX_OPERATION_BYTES};
    use crate::ctxt::Ctxt;

    #[test]
    fn the_operation_name_limit_is_the_runtime_one() {
        // The macro refuses a pinned `name` the manager would refuse on every call: one limit.
        assert_eq!(MAX_OPERATION_BYTES, idempotency::MAX_OPERATION_BYTES);
    }

    /// The error `name = "<len bytes>"` gets, if any.
    fn name_error(len: usize) -> Option<String> {
        let name = "a".repeat(len);
        let cx = Ctxt::new();
        let mut args = IdempotentArgs::parse(&cx, quote::quote!(name = #name));
        operation_name(&cx, &mut args);
        let kept = args.name.is_some();
        let error = cx.check().err().map(|e| e.to_string());
        assert_eq!(kept, error.is_none(), "a refused name is dropped");
        error
    }

    #[test]
    fn a_pinned_name_may_be_as_long_as_the_limit_and_no_longer() {
        assert_eq!(name_error(MAX_OPERATION_BYTES), None);
        assert_eq!(
            name_error(MAX_OPERATION_BYTES + 1).as_deref(),
            Some("the operation `name` may be at most 200 bytes long")
        );
    }
}
