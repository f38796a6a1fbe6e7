//! `#[kmod_runtime::tests]`: a module of in-kernel tests, the way the
//! kernel's `#[kunit_tests]` marks a KUnit suite. Used through
//! `kmod-runtime`, which re-exports it and documents it.

use proc_macro::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{parse_macro_input, Item, ItemMod};

/// Marks an inline module whose `#[test]` functions (no arguments,
/// returning `()` or `kmod_runtime::Result`) are the crate's in-kernel
/// tests. Outside a test build (`cargo kmod test`) the module compiles to
/// nothing; in one it also defines the crate's suite, which the module's
/// init runs.
#[proc_macro_attribute]
pub fn tests(args: TokenStream, input: TokenStream) -> TokenStream {
    let args = proc_macro2::TokenStream::from(args);
    if !args.is_empty() {
        return syn::Error::new(args.span(), "#[tests] takes no arguments")
            .to_compile_error()
            .into();
    }
    let module = parse_macro_input!(input as ItemMod);
    match expand(module) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

fn expand(mut module: ItemMod) -> syn::Result<proc_macro2::TokenStream> {
    let mod_name = module.ident.to_string();
    let Some((_, items)) = module.content.as_mut() else {
        return Err(syn::Error::new(
            module.span(),
            "#[kmod_runtime::tests] needs the tests in the module: `mod tests { ... }`",
        ));
    };
    let mut entries = Vec::new();
    let mut wrappers = Vec::new();
    for item in items.iter_mut() {
        let Item::Fn(function) = item else { continue };
        let before = function.attrs.len();
        function.attrs.retain(|attr| !attr.path().is_ident("test"));
        if function.attrs.len() == before {
            continue;
        }
        let signature = &function.sig;
        if !signature.inputs.is_empty() || !signature.generics.params.is_empty() {
            return Err(syn::Error::new(
                signature.span(),
                "a #[test] function takes no arguments and no generics",
            ));
        }
        if signature.asyncness.is_some() || signature.unsafety.is_some() {
            return Err(syn::Error::new(
                signature.span(),
                "a #[test] function is neither async nor unsafe",
            ));
        }
        let name = &signature.ident;
        let wrapper = format_ident!("__kmod_test_{}", name);
        let full_name = format!("{mod_name}::{name}");
        // The return type's span: a test returning neither `()` nor
        // `Result` is an error there.
        let span = signature.output.span();
        wrappers.push(quote_spanned! {span=>
            fn #wrapper() -> ::kmod_runtime::Result {
                ::kmod_runtime::test::TestResult::into_result(#name())
            }
        });
        entries.push(quote! {
            ::kmod_runtime::test::Test { name: #full_name, run: #wrapper }
        });
    }
    items.push(syn::parse_quote! {
        const _: () = {
            #(#wrappers)*
            /// The crate's suite, which the test build's init looks up
            /// by this name.
            #[unsafe(no_mangle)]
            pub static __kmod_test_suite: ::kmod_runtime::test::Suite =
                ::kmod_runtime::test::Suite { tests: &[#(#entries),*] };
        };
    });
    Ok(quote! {
        ::kmod_runtime::__kmod_if_test! { #module }
    })
}
