//! `#[idempotency(...)]` attributes of `#[derive(NormalizeKey)]`: `skip` and `with = path` on
//! fields, `crate = path` on the type. Bad attributes are recorded and parsing carries on.

use syn::{Attribute, ExprPath, LitStr, Path};

use crate::ctxt::{Attr, Ctxt};

/// A typed attribute name (serde's `Symbol`), so names are not compared as loose strings.
#[derive(Clone, Copy)]
pub(crate) struct Symbol(pub(crate) &'static str);

pub(crate) const IDEMPOTENCY: Symbol = Symbol("idempotency");
pub(crate) const SKIP: Symbol = Symbol("skip");
pub(crate) const WITH: Symbol = Symbol("with");
pub(crate) const CRATE: Symbol = Symbol("crate");

impl PartialEq<Symbol> for syn::Path {
    fn eq(&self, s: &Symbol) -> bool {
        self.is_ident(s.0)
    }
}

const WHAT: &str = "`idempotency` attribute";

/// Field attributes.
#[derive(Default)]
pub(crate) struct FieldAttrs {
    /// `#[idempotency(skip)]`: the field is left out of the key.
    pub(crate) skip: Option<Path>,
    /// `#[idempotency(with = path)]`: the key holds `path(&field)`, which must be `Serialize`.
    pub(crate) with: Option<ExprPath>,
}

/// Container attributes.
#[derive(Default)]
pub(crate) struct ContainerAttrs {
    /// `#[idempotency(crate = path)]`: where the `idempotency` crate is, if renamed.
    pub(crate) krate: Option<Path>,
}

pub(crate) fn field(cx: &Ctxt, attrs: &[Attribute]) -> FieldAttrs {
    let mut skip = Attr::none(WHAT, SKIP.0);
    let mut with = Attr::none(WHAT, WITH.0);
    for attr in attrs.iter().filter(|a| *a.path() == IDEMPOTENCY) {
        let r = attr.parse_nested_meta(|meta| {
            if meta.path == SKIP {
                skip.set(cx, &meta.path, meta.path.clone());
            } else if meta.path == WITH {
                let value = meta.value()?;
                let path: ExprPath = if value.peek(LitStr) {
                    value.parse::<LitStr>()?.parse()?
                } else {
                    value.parse()?
                };
                with.set(cx, &meta.path, path);
            } else {
                cx.error_spanned_by(
                    &meta.path,
                    format!(
                    "unknown `idempotency` field attribute `{}`; expected `skip` or `with = path`",
                    path_name(&meta.path)
                ),
                );
                skip_value(&meta)?;
            }
            Ok(())
        });
        if let Err(e) = r {
            cx.syn_error(e);
        }
    }
    FieldAttrs {
        skip: skip.get(),
        with: with.get(),
    }
}

pub(crate) fn container(cx: &Ctxt, attrs: &[Attribute]) -> ContainerAttrs {
    let mut krate = Attr::none(WHAT, CRATE.0);
    for attr in attrs.iter().filter(|a| *a.path() == IDEMPOTENCY) {
        let r = attr.parse_nested_meta(|meta| {
            if meta.path == CRATE {
                let value = meta.value()?;
                let path: Path = if value.peek(LitStr) {
                    value.parse::<LitStr>()?.parse()?
                } else {
                    Path::parse_mod_style(value)?
                };
                krate.set(cx, &meta.path, path);
            } else {
                cx.error_spanned_by(
                    &meta.path,
                    format!(
                        "unknown `idempotency` container attribute `{}`; expected `crate = path`",
                        path_name(&meta.path)
                    ),
                );
                skip_value(&meta)?;
            }
            Ok(())
        });
        if let Err(e) = r {
            cx.syn_error(e);
        }
    }
    ContainerAttrs { krate: krate.get() }
}

/// Variant attributes: none are defined; each one is reported.
pub(crate) fn variant(cx: &Ctxt, attrs: &[Attribute]) {
    for attr in attrs.iter().filter(|a| *a.path() == IDEMPOTENCY) {
        cx.error_spanned_by(attr, "`#[idempotency(...)]` is not supported on enum variants; put `skip` or `with` on the variant's fields");
    }
}

fn path_name(p: &Path) -> String {
    quote::ToTokens::to_token_stream(p)
        .to_string()
        .replace(' ', "")
}

fn skip_value(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        let _: syn::Expr = meta.value()?.parse()?;
    }
    Ok(())
}
