//! The output of a failed derive: the errors plus a stub impl whose body is `unreachable!()`,
//! so that uses of the type's `NormalizeKey` impl do not add spurious secondary errors
//! (thiserror-impl's `fallback.rs`).

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

pub(crate) fn expand(input: &DeriveInput, krate: &TokenStream, error: syn::Error) -> TokenStream {
    let p = quote!(#krate::__private);
    let ty = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let error = error.into_compile_error();
    quote! {
        #error
        const _: () = {
            #[automatically_derived]
            #[allow(unused_qualifications)]
            impl #impl_generics #p::NormalizeKey for #ty #ty_generics #where_clause {
                fn normalize_key(
                    &self,
                    _: &mut #p::KeyWriter<'_>,
                ) -> #p::Result<(), #p::CanonicalError> {
                    ::core::unreachable!()
                }
            }
        };
    }
}
