//! The `#[crash_guarded]` attribute. Use it through the [`crashguard`](https://docs.rs/crashguard)
//! crate, which documents it and re-exports it; the code it generates calls only
//! `crashguard::__private`.

#![forbid(unsafe_code)]

mod args;
mod expand;
mod futures;

use proc_macro::TokenStream;

/// Guards `fn main` or a handler against panics. See `crashguard::crash_guarded`.
#[proc_macro_attribute]
pub fn crash_guarded(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    match expand::expand(args.into(), item.clone()) {
        Ok(expanded) => expanded.into(),
        // Keep the function so editors and the rest of the crate still see it.
        Err(error) => {
            let item = expand::fallback_expansion(item);
            let error = error.into_compile_error();
            quote::quote!(#item #error).into()
        }
    }
}
