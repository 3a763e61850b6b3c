//! Error accumulation and duplicate detection shared by both macros (after serde_derive's
//! `internals/ctxt.rs` and `internals/attr.rs`): bad arguments are recorded and parsing carries
//! on, so the user sees every mistake at once rather than one per build.

use std::cell::RefCell;
use std::fmt::Display;

use proc_macro2::Span;
use quote::ToTokens;

/// Collects errors; [`Ctxt::check`] merges them into one `syn::Error`.
#[derive(Default)]
pub(crate) struct Ctxt {
    errors: RefCell<Vec<syn::Error>>,
}

impl Ctxt {
    pub(crate) fn new() -> Self {
        Ctxt::default()
    }

    /// Records an error spanned on the tokens of `obj`.
    pub(crate) fn error_spanned_by<T: ToTokens, M: Display>(&self, obj: T, msg: M) {
        self.errors
            .borrow_mut()
            .push(syn::Error::new_spanned(obj.into_token_stream(), msg));
    }

    /// Records an error at `span`.
    pub(crate) fn error_at<M: Display>(&self, span: Span, msg: M) {
        self.errors.borrow_mut().push(syn::Error::new(span, msg));
    }

    /// Records an error built elsewhere (a parse error).
    pub(crate) fn syn_error(&self, err: syn::Error) {
        self.errors.borrow_mut().push(err);
    }

    /// All recorded errors as one, or `Ok` when there were none.
    pub(crate) fn check(self) -> syn::Result<()> {
        let mut errors = self.errors.into_inner().into_iter();
        let Some(mut combined) = errors.next() else {
            return Ok(());
        };
        for rest in errors {
            combined.combine(rest);
        }
        Err(combined)
    }
}

/// One argument that may be given at most once. Every duplicate check goes through
/// [`Attr::set`], so no keyword can be forgotten (tracing-attributes' copy-paste bug).
pub(crate) struct Attr<T> {
    what: &'static str,
    name: &'static str,
    value: Option<T>,
}

impl<T> Attr<T> {
    /// An unset argument `name` of `what` (`idempotent` argument, `idempotency` attribute).
    pub(crate) fn none(what: &'static str, name: &'static str) -> Self {
        Attr {
            what,
            name,
            value: None,
        }
    }

    /// Sets the value; a second `set` records "duplicate ..." spanned on `obj` and keeps the
    /// first value.
    pub(crate) fn set<O: ToTokens>(&mut self, cx: &Ctxt, obj: O, value: T) {
        if self.value.is_some() {
            cx.error_spanned_by(obj, format!("duplicate {} `{}`", self.what, self.name));
        } else {
            self.value = Some(value);
        }
    }

    pub(crate) fn get(self) -> Option<T> {
        self.value
    }
}
