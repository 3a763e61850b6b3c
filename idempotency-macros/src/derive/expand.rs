//! Code generation for `#[derive(NormalizeKey)]`, mirroring serde's data model, names included,
//! so that a type with no `skip`/`with` (and no serde attribute that renames) gets the same key
//! as through its `Serialize` impl:
//!
//! | shape | written as |
//! |---|---|
//! | `struct S { a, b }` | `begin_struct("S")`, `field("a")` and its value for each field, `end` |
//! | `struct S(A)` | `newtype_struct("S")`, the field |
//! | `struct S(A, B)` / `struct S()` | `begin_tuple_struct("S")`, each field, `end` |
//! | `struct S;` | `unit_struct("S")` |
//! | `enum E { .. }` | `unit_variant`, `newtype_variant`, `begin_tuple_variant` or `begin_struct_variant` with `("E", index, "V")`, then the fields as above |
//!
//! Names are the Rust identifiers without `r#`, as serde writes them by default.
//!
//! Each field is written through its `NormalizeKey` impl when its type has one, `Serialize`
//! otherwise; `with = path` writes `path(&field)` through `Serialize`.

use std::collections::HashSet;

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{DeriveInput, GenericParam, Ident};

use super::ast::{Enum, Field, Input, Struct, Style};
use super::{attr, fallback};
use crate::ctxt::Ctxt;

pub(crate) fn derive(node: &DeriveInput) -> TokenStream {
    try_expand(node).unwrap_or_else(|err| {
        // The crate path is read again here because the input may not have made it to an `Input`.
        let krate = krate_path(attr::container(&Ctxt::new(), &node.attrs).krate.as_ref());
        fallback::expand(node, &krate, err)
    })
}

fn try_expand(node: &DeriveInput) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let input = match Input::from_syn(&cx, node) {
        Ok(input) => input,
        Err(e) => {
            cx.syn_error(e);
            return cx.check().map(|()| TokenStream::new());
        }
    };
    input.validate(&cx);
    cx.check()?;
    Ok(impl_normalize_key(&input))
}

fn krate_path(path: Option<&syn::Path>) -> TokenStream {
    match path {
        Some(p) => p.to_token_stream(),
        None => quote!(::idempotency),
    }
}

fn impl_normalize_key(input: &Input<'_>) -> TokenStream {
    let node = input.original();
    let krate = krate_path(input.attrs().krate.as_ref());
    let p = quote!(#krate::__private);
    let body = match input {
        // An empty enum has no values: the match is the whole body (no `Ok(())` after it,
        // which would be unreachable).
        Input::Enum(e) if e.variants.is_empty() => quote!(match *self {}),
        Input::Struct(s) => {
            let writes = struct_body(&p, s);
            quote!(#writes #p::Result::Ok(()))
        }
        Input::Enum(e) => {
            let writes = enum_body(&p, e);
            quote!(#writes #p::Result::Ok(()))
        }
    };
    let ty = &node.ident;
    let mut generics = node.generics.clone();
    let bounded = bounded_type_params(input);
    if !bounded.is_empty() {
        let where_clause = generics.make_where_clause();
        for ident in &bounded {
            where_clause
                .predicates
                .push(syn::parse_quote!(#ident: #p::Serialize));
        }
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    quote! {
        const _: () = {
            #[automatically_derived]
            #[allow(unused_qualifications)]
            impl #impl_generics #p::NormalizeKey for #ty #ty_generics #where_clause {
                fn normalize_key(
                    &self,
                    __idempotency_w: &mut #p::KeyWriter<'_>,
                ) -> #p::Result<(), #p::CanonicalError> {
                    #[allow(unused_imports)]
                    use #p::{ViaNormalize as _, ViaSerialize as _};
                    #body
                }
            }
        };
    }
}

/// Type parameters used by a field written through dispatch get `T: Serialize` (serde's rule):
/// inside a generic impl the compiler only knows what the bounds say.
fn bounded_type_params(input: &Input<'_>) -> Vec<Ident> {
    let params: HashSet<Ident> = input
        .original()
        .generics
        .params
        .iter()
        .filter_map(|g| match g {
            GenericParam::Type(t) => Some(t.ident.clone()),
            _ => None,
        })
        .collect();
    struct Uses<'p> {
        params: &'p HashSet<Ident>,
        found: Vec<Ident>,
    }
    impl<'a> Visit<'a> for Uses<'_> {
        fn visit_path(&mut self, path: &'a syn::Path) {
            if let Some(first) = path.segments.first() {
                if self.params.contains(&first.ident) && !self.found.contains(&first.ident) {
                    self.found.push(first.ident.clone());
                }
            }
            syn::visit::visit_path(self, path);
        }
    }
    let mut uses = Uses {
        params: &params,
        found: Vec::new(),
    };
    let fields: Vec<&Field<'_>> = match input {
        Input::Struct(s) => s.fields.iter().collect(),
        Input::Enum(e) => e.variants.iter().flat_map(|v| v.fields.iter()).collect(),
    };
    for f in fields {
        if f.included() && f.attrs.with.is_none() {
            uses.visit_type(f.ty);
        }
    }
    uses.found
}

fn struct_body(p: &TokenStream, s: &Struct<'_>) -> TokenStream {
    let accesses: Vec<TokenStream> = s
        .fields
        .iter()
        .map(|f| {
            let member = &f.member;
            quote!(&self.#member)
        })
        .collect();
    let name = s.original.ident.unraw().to_string();
    shape(p, s.style, &name, &s.fields, &accesses)
}

fn enum_body(p: &TokenStream, e: &Enum<'_>) -> TokenStream {
    let ty = &e.original.ident;
    let enum_name = ty.unraw().to_string();
    let arms = e.variants.iter().enumerate().map(|(index, v)| {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        let ident = &v.original.ident;
        let bindings: Vec<Ident> = (0..v.fields.len())
            .map(|i| format_ident!("__idempotency_field{}", i))
            .collect();
        let pattern = match v.style {
            Style::Unit => quote!(#ty::#ident),
            Style::Struct => {
                let members = v.fields.iter().map(|f| &f.member);
                quote!(#ty::#ident { #(#members: #bindings),* })
            }
            Style::Tuple | Style::Newtype => quote!(#ty::#ident(#(#bindings),*)),
        };
        let accesses: Vec<TokenStream> = bindings.iter().map(|b| quote!(#b)).collect();
        let variant = ident.unraw().to_string();
        let writes = field_writes(p, &v.fields, &accesses);
        let fields = match v.style {
            Style::Unit => quote! {
                __idempotency_w.unit_variant(#enum_name, #index, #variant);
            },
            Style::Newtype if v.fields.iter().all(Field::included) => quote! {
                __idempotency_w.newtype_variant(#enum_name, #index, #variant);
                #(#writes)*
            },
            Style::Struct => quote! {
                __idempotency_w.begin_struct_variant(#enum_name, #index, #variant);
                #(#writes)*
                __idempotency_w.end();
            },
            Style::Newtype | Style::Tuple => quote! {
                __idempotency_w.begin_tuple_variant(#enum_name, #index, #variant);
                #(#writes)*
                __idempotency_w.end();
            },
        };
        // Skipped fields are still bound (to keep one pattern shape); silence their warning.
        quote! {
            #[allow(unused_variables)]
            #pattern => {
                #fields
            }
        }
    });
    quote! {
        match self {
            #(#arms)*
        }
    }
}

/// The included fields' writes: a named field is preceded by `field("name")`.
/// `accesses[i]` is a `&FieldType`.
fn field_writes(
    p: &TokenStream,
    fields: &[Field<'_>],
    accesses: &[TokenStream],
) -> Vec<TokenStream> {
    fields
        .iter()
        .zip(accesses)
        .filter(|(f, _)| f.included())
        .map(|(f, access)| {
            let write = write_field(p, f, access);
            match &f.member {
                syn::Member::Named(ident) => {
                    let name = ident.unraw().to_string();
                    quote! {
                        __idempotency_w.field(#name);
                        #write
                    }
                }
                syn::Member::Unnamed(_) => write,
            }
        })
        .collect()
}

/// The fields of a struct named `name` in serde's shape. `accesses[i]` is a `&FieldType`.
fn shape(
    p: &TokenStream,
    style: Style,
    name: &str,
    fields: &[Field<'_>],
    accesses: &[TokenStream],
) -> TokenStream {
    let writes = field_writes(p, fields, accesses);
    match style {
        Style::Unit => quote!(__idempotency_w.unit_struct(#name);),
        Style::Newtype if fields.iter().all(Field::included) => quote! {
            __idempotency_w.newtype_struct(#name);
            #(#writes)*
        },
        Style::Struct => quote! {
            __idempotency_w.begin_struct(#name);
            #(#writes)*
            __idempotency_w.end();
        },
        Style::Newtype | Style::Tuple => quote! {
            __idempotency_w.begin_tuple_struct(#name);
            #(#writes)*
            __idempotency_w.end();
        },
    }
}

fn write_field(p: &TokenStream, f: &Field<'_>, access: &TokenStream) -> TokenStream {
    match &f.attrs.with {
        Some(path) => quote_spanned! {path.span()=>
            __idempotency_w.value(&#path(#access))?;
        },
        None => quote_spanned! {f.span()=>
            (&#p::KeyArg(#access)).__idempotency_write(__idempotency_w)?;
        },
    }
}
