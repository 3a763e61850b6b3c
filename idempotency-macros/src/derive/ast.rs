//! A borrowed view of the derive input with parsed attributes (thiserror-impl's `ast.rs`).

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Index, Member, Type};

use super::attr::{self, ContainerAttrs, FieldAttrs};
use crate::ctxt::Ctxt;

pub(crate) enum Input<'a> {
    Struct(Struct<'a>),
    Enum(Enum<'a>),
}

pub(crate) struct Struct<'a> {
    pub(crate) original: &'a DeriveInput,
    pub(crate) attrs: ContainerAttrs,
    pub(crate) style: Style,
    pub(crate) fields: Vec<Field<'a>>,
}

pub(crate) struct Enum<'a> {
    pub(crate) original: &'a DeriveInput,
    pub(crate) attrs: ContainerAttrs,
    pub(crate) variants: Vec<Variant<'a>>,
}

pub(crate) struct Variant<'a> {
    pub(crate) original: &'a syn::Variant,
    pub(crate) style: Style,
    pub(crate) fields: Vec<Field<'a>>,
}

pub(crate) struct Field<'a> {
    pub(crate) original: &'a syn::Field,
    pub(crate) member: Member,
    pub(crate) ty: &'a Type,
    pub(crate) attrs: FieldAttrs,
}

/// The shape serde's data model gives a struct or variant.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// `{ a: A, b: B }`: `serialize_struct`.
    Struct,
    /// `(A, B)` or `()`: `serialize_tuple_struct`.
    Tuple,
    /// `(A)`: `serialize_newtype_struct` (named, then the field).
    Newtype,
    /// No fields: `serialize_unit_struct` (or a unit variant).
    Unit,
}

impl<'a> Input<'a> {
    /// Reads the input. A union is refused here: serde has no data model for it, and reading
    /// a union field is `unsafe`.
    pub(crate) fn from_syn(cx: &Ctxt, node: &'a DeriveInput) -> syn::Result<Self> {
        let attrs = attr::container(cx, &node.attrs);
        match &node.data {
            Data::Struct(data) => {
                let (style, fields) = fields_of(cx, &data.fields);
                Ok(Input::Struct(Struct {
                    original: node,
                    attrs,
                    style,
                    fields,
                }))
            }
            Data::Enum(data) => {
                let variants = data
                    .variants
                    .iter()
                    .map(|v| {
                        attr::variant(cx, &v.attrs);
                        let (style, fields) = fields_of(cx, &v.fields);
                        Variant {
                            original: v,
                            style,
                            fields,
                        }
                    })
                    .collect();
                Ok(Input::Enum(Enum {
                    original: node,
                    attrs,
                    variants,
                }))
            }
            Data::Union(data) => Err(syn::Error::new(
                data.union_token.span(),
                "`NormalizeKey` cannot be derived for a union: which field is active is not known; write the impl by hand, or derive it for a struct or enum",
            )),
        }
    }

    pub(crate) fn original(&self) -> &'a DeriveInput {
        match self {
            Input::Struct(s) => s.original,
            Input::Enum(e) => e.original,
        }
    }

    pub(crate) fn attrs(&self) -> &ContainerAttrs {
        match self {
            Input::Struct(s) => &s.attrs,
            Input::Enum(e) => &e.attrs,
        }
    }
}

fn fields_of<'a>(cx: &Ctxt, fields: &'a Fields) -> (Style, Vec<Field<'a>>) {
    let style = match fields {
        Fields::Named(_) => Style::Struct,
        Fields::Unnamed(u) if u.unnamed.len() == 1 => Style::Newtype,
        Fields::Unnamed(_) => Style::Tuple,
        Fields::Unit => Style::Unit,
    };
    let fields = fields
        .iter()
        .enumerate()
        .map(|(i, f)| Field {
            original: f,
            member: match &f.ident {
                Some(ident) => Member::Named(ident.clone()),
                None => Member::Unnamed(Index {
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    span: f.ty.span(),
                }),
            },
            ty: &f.ty,
            attrs: attr::field(cx, &f.attrs),
        })
        .collect();
    (style, fields)
}

impl Field<'_> {
    pub(crate) fn span(&self) -> Span {
        self.original.span()
    }

    /// Whether the field enters the key.
    pub(crate) fn included(&self) -> bool {
        self.attrs.skip.is_none()
    }
}
