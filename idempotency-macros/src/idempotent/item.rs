//! The function `#[idempotent]` is put on, parsed tolerantly, and its parameters.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{
    braced, token, Attribute, Block, Expr, ExprAsync, ExprCall, FnArg, GenericArgument, Ident, Pat,
    PatIdent, PathArguments, ReceiverKind, ReturnType, Signature, Stmt, Type, TypeParamBound,
    Visibility,
};

use crate::ctxt::{Attr, Ctxt};

/// The attribute namespace of parameter attributes: `#[idempotency(skip)]`.
pub(crate) const IDEMPOTENCY: &str = "idempotency";
pub(crate) const SKIP: &str = "skip";
pub(crate) const KEY: &str = "key";

/// A function whose body is kept as tokens when it does not parse, so the attribute still
/// expands while the user is mid-edit and rustc reports the real syntax error
/// (tracing-attributes' `MaybeItemFn`).
pub(crate) struct MaybeItemFn {
    pub(crate) outer_attrs: Vec<Attribute>,
    pub(crate) inner_attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) sig: Signature,
    pub(crate) brace: token::Brace,
    pub(crate) body: TokenStream,
    /// The body's statements, when it parses.
    pub(crate) stmts: Option<Vec<Stmt>>,
}

impl Parse for MaybeItemFn {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let outer_attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let sig: Signature = input.parse()?;
        if input.peek(token::Semi) {
            // A trait method declaration (or a foreign fn) has no body to wrap.
            let mut span = quote::quote!(#vis #sig);
            span.extend(input.parse::<TokenStream>()?);
            return Err(syn::Error::new_spanned(
                span,
                "`#[idempotent]` needs a function body: put it on the method in the `impl` block that implements this trait method, not on the declaration in the trait",
            ));
        }
        let content;
        let brace = braced!(content in input);
        let inner_attrs = content.call(Attribute::parse_inner)?;
        let body: TokenStream = content.parse()?;
        let stmts = syn::parse::Parser::parse2(Block::parse_within, body.clone()).ok();
        Ok(MaybeItemFn {
            outer_attrs,
            inner_attrs,
            vis,
            sig,
            brace,
            body,
            stmts,
        })
    }
}

impl MaybeItemFn {
    /// The function as written, minus the `#[idempotency(...)]` parameter attributes (which
    /// would otherwise be reported as unknown): the fallback output on an error.
    pub(crate) fn unchanged(&self) -> TokenStream {
        let mut sig = self.sig.clone();
        strip_param_attrs(&mut sig);
        let (outer, inner, vis, body) =
            (&self.outer_attrs, &self.inner_attrs, &self.vis, &self.body);
        let mut out = quote::quote!(#(#outer)* #vis #sig);
        self.brace.surround(&mut out, |t| {
            t.extend(quote::quote!(#(#inner)* #body));
        });
        out
    }
}

/// Removes `#[idempotency(...)]` from every parameter.
pub(crate) fn strip_param_attrs(sig: &mut Signature) {
    for arg in &mut sig.inputs {
        if let FnArg::Typed(pt) = arg {
            pt.attrs.retain(|a| !a.path().is_ident(IDEMPOTENCY));
        }
    }
}

/// How the receiver is taken.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Receiver {
    /// `&self`, `&mut self`, `self: &Self`, ...: `&*self` reaches the value.
    ByRef,
    /// `self`, `mut self`, `self: Box<Self>`: `&self` reaches it.
    ByValue,
}

/// One typed parameter.
pub(crate) struct Param {
    /// The name the generated code reads the parameter by: the user's identifier, or
    /// `__idempotency_argN` when the parameter is a pattern.
    pub(crate) ident: Ident,
    /// For a pattern parameter, the pattern to destructure `ident` into inside the body.
    pub(crate) pattern: Option<Pat>,
    /// The identifiers the parameter binds (for `key = ...` validation).
    pub(crate) binds: Vec<Ident>,
    pub(crate) span: Span,
    pub(crate) skip: Option<Span>,
    pub(crate) key: Option<Span>,
}

/// Reads the parameters, records bad parameter attributes, and renames pattern parameters in
/// `sig` so that the key can read them before the body destructures them.
///
/// Input:  `fn f((a, b): (u32, u32), #[idempotency(skip)] mut log: Log)`
/// Output: `fn f(__idempotency_arg0: (u32, u32), mut log: Log)` with
///         `Param { ident: __idempotency_arg0, pattern: Some((a, b)) }` and `Param { ident: log, skip }`
pub(crate) fn params(cx: &Ctxt, sig: &mut Signature) -> (Option<Receiver>, Vec<Param>) {
    let mut receiver = None;
    let mut out = Vec::new();
    for (i, arg) in sig.inputs.iter_mut().enumerate() {
        match arg {
            FnArg::Receiver(r) => {
                receiver = Some(match &r.kind {
                    ReceiverKind::Reference(..) => Receiver::ByRef,
                    ReceiverKind::Typed(_, ty) if matches!(&**ty, Type::Reference(_)) => {
                        Receiver::ByRef
                    }
                    _ => Receiver::ByValue,
                });
                for a in r.attrs.iter().filter(|a| a.path().is_ident(IDEMPOTENCY)) {
                    cx.error_spanned_by(a, "`#[idempotency(...)]` does not apply to `self`; use `#[idempotent(include_self)]` to put the receiver in the key");
                }
                r.attrs.retain(|a| !a.path().is_ident(IDEMPOTENCY));
            }
            FnArg::Typed(pt) => {
                let span = pt.span();
                let (skip, key) = param_attrs(cx, &pt.attrs);
                pt.attrs.retain(|a| !a.path().is_ident(IDEMPOTENCY));
                let mut binds = Vec::new();
                collect_binds(&pt.pat, &mut binds);
                let (ident, pattern) = match &*pt.pat {
                    Pat::Ident(PatIdent {
                        ident,
                        by_ref: None,
                        subpat: None,
                        ..
                    }) => (ident.clone(), None),
                    other => {
                        let ident =
                            format_ident!("__idempotency_arg{}", i, span = Span::call_site());
                        let pattern = other.clone();
                        *pt.pat = Pat::Ident(PatIdent {
                            attrs: Vec::new(),
                            by_ref: None,
                            mutability: None,
                            ident: ident.clone(),
                            subpat: None,
                        });
                        (ident, Some(pattern))
                    }
                };
                out.push(Param {
                    ident,
                    pattern,
                    binds,
                    span,
                    skip,
                    key,
                });
            }
        }
    }
    (receiver, out)
}

fn param_attrs(cx: &Ctxt, attrs: &[Attribute]) -> (Option<Span>, Option<Span>) {
    const WHAT: &str = "`idempotency` parameter attribute";
    let mut skip = Attr::none(WHAT, SKIP);
    let mut key = Attr::none(WHAT, KEY);
    for attr in attrs.iter().filter(|a| a.path().is_ident(IDEMPOTENCY)) {
        let r = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident(SKIP) {
                skip.set(cx, &meta.path, meta.path.span());
            } else if meta.path.is_ident(KEY) {
                key.set(cx, &meta.path, meta.path.span());
            } else {
                let name = meta.path.to_token_stream().to_string().replace(' ', "");
                cx.error_spanned_by(
                    &meta.path,
                    format!("unknown `idempotency` parameter attribute `{name}`; expected `skip` or `key`"),
                );
            }
            Ok(())
        });
        if let Err(e) = r {
            cx.syn_error(e);
        }
    }
    (skip.get(), key.get())
}

fn collect_binds(pat: &Pat, out: &mut Vec<Ident>) {
    match pat {
        Pat::Ident(p) => {
            out.push(p.ident.clone());
            if let Some((_, sub)) = &p.subpat {
                collect_binds(sub, out);
            }
        }
        Pat::Tuple(t) => t.elems.iter().for_each(|p| collect_binds(p, out)),
        Pat::TupleStruct(t) => t.elems.iter().for_each(|p| collect_binds(p, out)),
        Pat::Struct(s) => s.fields.iter().for_each(|f| collect_binds(&f.pat, out)),
        Pat::Slice(s) => s.elems.iter().for_each(|p| collect_binds(p, out)),
        Pat::Reference(r) => collect_binds(&r.pat, out),
        Pat::Type(t) => collect_binds(&t.pat, out),
        Pat::Paren(p) => collect_binds(&p.pat, out),
        _ => {}
    }
}

/// What the function returns, and so which manager entry point runs it.
pub(crate) struct ReturnShape {
    /// The declared type (or the `Output` of the async-trait future); `None` for `()`.
    pub(crate) ty: Option<Type>,
    /// A type whose last path segment is `Result`: framework errors are returned through
    /// `From<idempotency::Error>`, and `Err` values are stored and replayed when the error type
    /// serializes (never stored otherwise).
    pub(crate) fallible: bool,
}

/// The error type of a fallible return type, when it is written out: `E` of `Result<T, E>` (or
/// of any `...Result<T, E>` alias with two type arguments). `None` for `io::Result<T>` and
/// one-argument aliases, whose error type is fixed by the alias.
pub(crate) fn error_type(shape: &ReturnShape) -> Option<&Type> {
    let Some(Type::Path(p)) = shape.ty.as_ref().filter(|_| shape.fallible) else {
        return None;
    };
    let PathArguments::AngleBracketed(args) = &p.path.segments.last()?.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    });
    match (types.next(), types.next(), types.next()) {
        (Some(_), Some(e), None) => Some(e),
        _ => None,
    }
}

/// Whether `ty` names one of the function's type parameters (`E`, `Box<E>`, `E::Error`): its
/// `Serialize` impl is then unknown where the macro expands.
pub(crate) fn mentions_type_param(ty: &Type, generics: &syn::Generics) -> bool {
    struct Find<'g> {
        params: Vec<&'g Ident>,
        found: bool,
    }
    impl syn::visit::Visit<'_> for Find<'_> {
        fn visit_path(&mut self, p: &syn::Path) {
            if let Some(first) = p.segments.first() {
                if self.params.iter().any(|i| **i == first.ident) {
                    self.found = true;
                }
            }
            syn::visit::visit_path(self, p);
        }
    }
    let params: Vec<&Ident> = generics.type_params().map(|t| &t.ident).collect();
    if params.is_empty() {
        return false;
    }
    let mut f = Find {
        params,
        found: false,
    };
    syn::visit::Visit::visit_type(&mut f, ty);
    f.found
}

pub(crate) fn return_shape(ty: Option<&Type>) -> ReturnShape {
    let fallible = matches!(ty, Some(Type::Path(p)) if p.qself.is_none()
    && p.path.segments.last().is_some_and(|s| {
        // `Result<T, E>`, `io::Result<T>`, and aliases such as `AppResult<T>`.
        s.ident == "Result"
            || (s.ident.to_string().ends_with("Result")
                && matches!(s.arguments, PathArguments::AngleBracketed(_)))
    }));
    ReturnShape {
        ty: ty.cloned(),
        fallible,
    }
}

/// The output of `#[async_trait]`, which expands before `#[idempotent]` (it sits on the impl):
/// a non-async fn returning `Pin<Box<dyn Future<Output = R> + ...>>` whose body is
/// `Box::pin(async move { ... })` (tracing-attributes' `AsyncInfo`).
pub(crate) struct AsyncTraitShape {
    /// The future's `Output`.
    pub(crate) output: Type,
    /// Statements before the `Box::pin(...)` (none in current async-trait output).
    pub(crate) before: Vec<Stmt>,
    /// The `Box::pin(...)` call, whose argument gets replaced.
    pub(crate) call: ExprCall,
    /// The inner `async move { ... }` block.
    pub(crate) inner: ExprAsync,
}

pub(crate) fn async_trait_shape(item: &MaybeItemFn) -> Option<AsyncTraitShape> {
    if item.sig.asyncness.is_some() {
        return None;
    }
    let output = boxed_future_output(&item.sig.output)?;
    let stmts = item.stmts.as_ref()?;
    let (last, before) = stmts.split_last()?;
    let Stmt::Expr(Expr::Call(call), None) = last else {
        return None;
    };
    let Expr::Path(func) = &*call.func else {
        return None;
    };
    let mut segs = func.path.segments.iter().rev();
    if segs.next()?.ident != "pin" || segs.next()?.ident != "Box" || call.args.len() != 1 {
        return None;
    }
    let Some(Expr::Async(inner)) = call.args.first() else {
        return None;
    };
    inner.capture?;
    Some(AsyncTraitShape {
        output,
        before: before.to_vec(),
        call: call.clone(),
        inner: inner.clone(),
    })
}

/// `R` of `Pin<Box<dyn Future<Output = R> + ...>>`.
fn boxed_future_output(ret: &ReturnType) -> Option<Type> {
    let ReturnType::Type(_, ty) = ret else {
        return None;
    };
    let pin = last_generic(ty, "Pin")?;
    let boxed = last_generic(pin, "Box")?;
    let Type::TraitObject(obj) = boxed else {
        return None;
    };
    obj.bounds.iter().find_map(|b| match b {
        TypeParamBound::Trait(t) => {
            let seg = t.path.segments.last()?;
            if seg.ident != "Future" {
                return None;
            }
            let PathArguments::AngleBracketed(args) = &seg.arguments else {
                return None;
            };
            args.args.iter().find_map(|a| match a {
                GenericArgument::AssocType(at) if at.ident == "Output" => Some(at.ty.clone()),
                _ => None,
            })
        }
        _ => None,
    })
}

/// The one type argument of `Name<T>`.
fn last_generic<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last()?;
    if seg.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &seg.arguments else {
        return None;
    };
    args.args.iter().find_map(|a| match a {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    })
}
