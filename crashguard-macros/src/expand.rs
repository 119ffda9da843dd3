//! One expansion core (the body as a closure or an async block, with its name) and three thin
//! front ends: `main`, handlers answering HTTP, and functions with a custom fallback.
//!
//! The user's signature is re-emitted untouched (except `async` on a `main` whose runtime
//! crashguard builds), so callers, inference and docs see the function they wrote.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{parse_quote, Attribute, ItemFn, Path, ReturnType};

use crate::args::{Args, Flavor};

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let args: Args = syn::parse2(args)?;
    expand_with(&args, item)
}

/// What to emit beside an error so that editors and the rest of the crate still see a working
/// function: a `main` expanded with no arguments (an `async fn main` stays runnable), otherwise
/// the item exactly as written.
pub(crate) fn fallback_expansion(item: TokenStream) -> TokenStream {
    match parse_function(item.clone()) {
        Ok(function) if function.sig.ident == "main" => {
            expand_with(&Args::default(), item.clone()).unwrap_or(item)
        }
        _ => item,
    }
}

fn expand_with(args: &Args, item: TokenStream) -> syn::Result<TokenStream> {
    let function = parse_function(item)?;
    if let Some(repeat) = function
        .attrs
        .iter()
        .find(|attr| is_named(attr, "crash_guarded"))
    {
        return Err(syn::Error::new_spanned(
            repeat,
            "`#[crash_guarded]` is already on this function; keep one",
        ));
    }
    if let Some(constness) = &function.sig.constness {
        return Err(syn::Error::new(
            constness.span,
            "a `const fn` cannot catch panics; remove `const` or `#[crash_guarded]`",
        ));
    }
    let krate = args
        .krate
        .as_ref()
        .map_or_else(|| parse_quote!(::crashguard), |krate| krate.value.clone());

    let on_panic = match (args.http, &args.fallback) {
        (Some(_), Some(fallback)) => {
            return Err(syn::Error::new(
                fallback.span,
                "`http` and `fallback` both say what a panic becomes; keep one",
            ))
        }
        (Some(_), None) => OnPanic::Http,
        (None, Some(fallback)) => OnPanic::Fallback(&fallback.value),
        (None, None) => return expand_main(function, &krate, args),
    };
    if let Some((name, span)) = args.main_options().first() {
        return Err(syn::Error::new(
            *span,
            format!("`{name}` applies to `#[crash_guarded]` on `fn main` only"),
        ));
    }
    expand_handler(function, &krate, on_panic)
}

fn parse_function(item: TokenStream) -> syn::Result<ItemFn> {
    match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Fn(function)) => Ok(function),
        Ok(other) => Err(syn::Error::new(
            item_keyword_span(&other),
            "`#[crash_guarded]` goes on a function: `fn main`, or a handler with `#[crash_guarded(http)]`",
        )),
        // A method inside an `impl` block is not an `Item`, but it is an `ItemFn`.
        Err(error) => syn::parse2::<ItemFn>(item).map_err(|_| error),
    }
}

/// The span of an item's keyword (`struct`, `mod`, …), where "this is not a function" belongs.
fn item_keyword_span(item: &syn::Item) -> Span {
    let tokens = item.to_token_stream();
    let mut tokens = tokens.into_iter();
    // Skip outer attributes (`#` and `[...]`) and visibility to reach the keyword.
    let mut span = item.span();
    while let Some(token) = tokens.next() {
        match token {
            proc_macro2::TokenTree::Punct(punct) if punct.as_char() == '#' => {
                tokens.next();
            }
            proc_macro2::TokenTree::Ident(ident) if ident == "pub" => {}
            proc_macro2::TokenTree::Group(_) => {}
            other => {
                span = other.span();
                break;
            }
        }
    }
    span
}

fn is_named(attr: &Attribute, name: &str) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|segment| segment.ident == name)
}

/// An attribute such as `#[tokio::main]` that runs an `async fn main` itself.
fn is_runtime_attribute(attr: &Attribute) -> bool {
    attr.path().segments.len() >= 2 && is_named(attr, "main")
}

/// The core: the function's name for records, and its body as a value that runs it later: a
/// `move` closure, or an `async move` block, either one made to return the declared type so
/// that `?` and `return` keep their meaning.
struct GuardedBody {
    name: TokenStream,
    body: TokenStream,
}

fn guarded_body(function: &ItemFn) -> GuardedBody {
    let ident = &function.sig.ident;
    let block = &function.block;
    let span = block.span();
    // A body that always panics would otherwise make the closure's type `!`, and `?` needs to
    // know the error type. `impl Trait` cannot be written there: it becomes `_`.
    let declared: Option<syn::Type> = match &function.sig.output {
        ReturnType::Default => Some(parse_quote!(())),
        ReturnType::Type(_, ty) if is_impl_trait(ty) => None,
        ReturnType::Type(_, ty) => Some(impl_trait_inferred(ty)),
    };
    let return_hint = match declared {
        Some(ty) => quote_spanned! {ty.span()=>
            #[allow(
                unknown_lints,
                unreachable_code,
                clippy::diverging_sub_expression,
                clippy::empty_loop,
                clippy::needless_return
            )]
            if false {
                let __crashguard_return: #ty = loop {};
                return __crashguard_return;
            }
        },
        None => TokenStream::new(),
    };
    // The body's statements, not its block: `{ { "x" } }` would make rustc warn
    // (`unused_braces`) in the user's crate about braces the user never wrote.
    let statements = &block.stmts;
    let body = if function.sig.asyncness.is_some() {
        quote_spanned!(span=> async move { #return_hint #(#statements)* })
    } else {
        quote_spanned!(span=> move || { #return_hint #(#statements)* })
    };
    GuardedBody {
        name: quote!(::core::concat!(
            ::core::module_path!(),
            "::",
            ::core::stringify!(#ident)
        )),
        body,
    }
}

/// `impl Trait` as the whole type (not nested, as in `Result<impl IntoResponse, E>`).
fn is_impl_trait(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::ImplTrait(_) => true,
        syn::Type::Paren(inner) => is_impl_trait(&inner.elem),
        syn::Type::Group(inner) => is_impl_trait(&inner.elem),
        _ => false,
    }
}

/// `impl Responder` (actix-web's), as opposed to `impl IntoResponse` (axum's).
fn names_responder(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::ImplTrait(bounds) => bounds.bounds.iter().any(|bound| {
            matches!(bound, syn::TypeParamBound::Trait(bound)
                if bound.path.segments.last().is_some_and(|last| last.ident == "Responder"))
        }),
        syn::Type::Paren(inner) => names_responder(&inner.elem),
        syn::Type::Group(inner) => names_responder(&inner.elem),
        _ => false,
    }
}

/// `ty` with each `impl Trait` in it replaced by `_`, for a `let` that fixes the other parts.
fn impl_trait_inferred(ty: &syn::Type) -> syn::Type {
    struct Infer;
    impl VisitMut for Infer {
        fn visit_type_mut(&mut self, ty: &mut syn::Type) {
            if let syn::Type::ImplTrait(impl_trait) = ty {
                *ty = syn::Type::Infer(syn::TypeInfer {
                    underscore_token: syn::Token![_](impl_trait.impl_token.span),
                });
            } else {
                syn::visit_mut::visit_type_mut(self, ty);
            }
        }
    }
    let mut ty = ty.clone();
    Infer.visit_type_mut(&mut ty);
    ty
}

fn expand_main(mut function: ItemFn, krate: &Path, args: &Args) -> syn::Result<TokenStream> {
    if function.sig.ident != "main" {
        return Err(syn::Error::new(
            function.sig.ident.span(),
            "`#[crash_guarded]` without arguments guards `fn main`; on another function say what \
             a panic becomes: `#[crash_guarded(http)]` or `#[crash_guarded(fallback = path)]`",
        ));
    }
    let config = config(krate, args);
    let GuardedBody { name, body } = guarded_body(&function);
    let span = function.block.span();
    // `<Returned as MainReturn>::run…`: a return type `main` cannot have is reported at it, in
    // the words of `MainReturn`'s `on_unimplemented`.
    let main_return = match &function.sig.output {
        ReturnType::Default => {
            let unit = quote_spanned!(function.sig.ident.span()=> ());
            quote_spanned!(function.sig.ident.span()=> <#unit as #krate::__private::MainReturn>)
        }
        ReturnType::Type(_, ty) => {
            let ty = impl_trait_inferred(ty);
            let main_return = respan(quote!(#krate::__private::MainReturn), ty.span());
            quote_spanned!(ty.span()=> <#ty as #main_return>)
        }
    };
    let runtime_options = [
        args.flavor.as_ref().map(|option| ("flavor", option.span)),
        args.worker_threads
            .as_ref()
            .map(|option| ("worker_threads", option.span)),
    ];
    let is_async = function.sig.asyncness.is_some();
    let external_runtime = function.attrs.iter().any(is_runtime_attribute);
    if let Some((option, option_span)) = runtime_options.iter().flatten().next() {
        if !is_async {
            return Err(syn::Error::new(
                *option_span,
                format!("`{option}` applies to an `async fn main` only"),
            ));
        }
        if external_runtime {
            return Err(syn::Error::new(
                *option_span,
                format!(
                    "`{option}` sets up the runtime crashguard builds; with another attribute \
                     running `main`, set it there"
                ),
            ));
        }
    }

    function.block = Box::new(if !is_async {
        parse_quote_spanned_block(span, quote!(#main_return::run(#config, #name, #body)))
    } else if external_runtime {
        parse_quote_spanned_block(
            span,
            quote!(match #main_return::run_future(#config, #name, #body).await {}),
        )
    } else {
        // `async`, where the runtime crashguard builds is asked for: the `tokio` feature.
        let async_span = function
            .sig
            .asyncness
            .take()
            .map_or(span, |token| token.span);
        let tokio = respan(
            quote!(<#krate::__private::CrashguardFeatures as #krate::__private::TokioFeature>),
            async_span,
        );
        let flavor = match (args.flavor.as_ref().map(|f| f.value), &args.worker_threads) {
            (Some(Flavor::CurrentThread), Some(workers)) => {
                return Err(syn::Error::new(
                    workers.span,
                    "`worker_threads` needs `flavor = \"multi_thread\"`",
                ))
            }
            (Some(Flavor::CurrentThread), None) => {
                quote!(#tokio::current_thread())
            }
            (_, Some(workers)) => {
                let workers = workers.value;
                quote!(#tokio::multi_thread(::core::option::Option::Some(#workers)))
            }
            (_, None) => {
                quote!(#tokio::multi_thread(::core::option::Option::None))
            }
        };
        parse_quote_spanned_block(
            span,
            quote!(#main_return::run_async(#config, #name, #flavor, #body)),
        )
    });
    Ok(function.into_token_stream())
}

fn config(krate: &Path, args: &Args) -> TokenStream {
    // The package being built is the service: its name and version go in the `start` record.
    let mut config = quote!(#krate::__private::Config::new().__package(
        ::core::option_env!("CARGO_PKG_NAME"),
        ::core::option_env!("CARGO_PKG_VERSION")
    ));
    if let Some(grace_period) = &args.grace_period {
        let millis = u64::try_from(grace_period.value.as_millis()).unwrap_or(u64::MAX);
        config.extend(quote!(.grace_period(::core::time::Duration::from_millis(#millis))));
    }
    if let Some(backtrace) = &args.backtrace {
        let enabled = backtrace.value;
        config.extend(quote!(.backtrace(#enabled)));
    }
    config
}

enum OnPanic<'a> {
    Http,
    Fallback(&'a Path),
}

fn expand_handler(
    mut function: ItemFn,
    krate: &Path,
    on_panic: OnPanic<'_>,
) -> syn::Result<TokenStream> {
    // A future built by a function that is not `async`: `#[async_trait]`'s body is guarded
    // inside; any other would be guarded only while it is built, never while it runs.
    let async_trait = function.sig.asyncness.is_none()
        && crate::futures::async_trait_block(&mut function.block).is_some();
    if function.sig.asyncness.is_none() && !async_trait {
        if let Some(future) = crate::futures::returned_future(&function.sig.output) {
            return Err(syn::Error::new_spanned(
                future,
                "`#[crash_guarded]` cannot guard a future that a function which is not `async` \
                 returns: it would catch only a panic while the future is built, not while it \
                 runs. Make it an `async fn` (in a `#[async_trait]` impl, an `async fn` too)",
            ));
        }
    }
    let GuardedBody { name, body } = guarded_body(&function);
    let span = function.block.span();
    // A declared `impl IntoResponse` cannot name the fallback's type, so both outcomes become
    // one type that is `IntoResponse`.
    let impl_trait_answer =
        matches!(&function.sig.output, ReturnType::Type(_, ty) if is_impl_trait(ty));
    // The first and last token of the return type: rustc spans an expression whose first and
    // last tokens carry them over the whole type (`Json<u64>`, not `Json`).
    let output_type = match &function.sig.output {
        ReturnType::Type(_, ty) if async_trait => crate::futures::future_output(ty),
        ReturnType::Type(_, ty) => Some(&**ty),
        ReturnType::Default => None,
    };
    let (output_span, output_end) = match output_type {
        Some(ty) => {
            let end = ty
                .to_token_stream()
                .into_iter()
                .last()
                .map(|token| token.span());
            (ty.span(), end.unwrap_or_else(|| ty.span()))
        }
        None => (function.sig.ident.span(), function.sig.ident.span()),
    };
    let (completed, answer) = match on_panic {
        OnPanic::Http if impl_trait_answer => {
            // Spanned at `impl IntoResponse`, where a missing `axum` (or `actix`, for
            // `impl Responder`) feature is reported.
            let features = respan_over(
                quote!(#krate::__private::CrashguardFeatures),
                output_span,
                output_end,
            );
            let framework = if output_type.is_some_and(names_responder) {
                quote!(ActixFeature)
            } else {
                quote!(AxumFeature)
            };
            let feature = respan(quote!(#krate::__private::#framework), output_span);
            let framework = quote_spanned!(output_span=> <#features as #feature>);
            (
                quote!(#framework::completed(output)),
                quote!(#framework::panicked(&report)),
            )
        }
        OnPanic::Http => {
            // The trait's function, not a function with a bound, spanned at the return type: "cannot
            // carry the answer" points at it, and at nothing of crashguard's.
            let from_panic = respan_over(
                quote!(#krate::__private::FromPanic::from_panic),
                output_span,
                output_end,
            );
            (
                quote!(output),
                quote_spanned!(output_span=> #from_panic(&report)),
            )
        }
        OnPanic::Fallback(path) => {
            // The call spans the path (a wrong return type points at it), its argument the
            // attribute: a fallback that takes no report then gets no suggestion that edits the
            // path.
            let end = path
                .to_token_stream()
                .into_iter()
                .last()
                .map_or(path.span(), |token| token.span());
            let mut argument =
                proc_macro2::Group::new(proc_macro2::Delimiter::Parenthesis, quote!(&report));
            argument.set_span(end);
            (
                quote!(output),
                quote_spanned!(path.span()=> #path #argument),
            )
        }
    };
    if async_trait {
        let Some(future) = crate::futures::async_trait_block(&mut function.block) else {
            unreachable!("checked above");
        };
        let statements = &future.block.stmts;
        let guarded = quote_spanned! {span=>
            #krate::__private::catch_future(#name, async move { #(#statements)* }).await
        };
        future.block = parse_quote_spanned_block(
            span,
            quote! {
                match #guarded {
                    ::core::result::Result::Ok(output) => #completed,
                    ::core::result::Result::Err(report) => #answer,
                }
            },
        );
        return Ok(function.into_token_stream());
    }
    let caught = if function.sig.asyncness.is_some() {
        quote!(#krate::__private::catch_future(#name, #body).await)
    } else {
        quote!(#krate::__private::catch(#name, #body))
    };
    function.block = Box::new(parse_quote_spanned_block(
        span,
        quote! {
            match #caught {
                ::core::result::Result::Ok(output) => #completed,
                ::core::result::Result::Err(report) => #answer,
            }
        },
    ));
    Ok(function.into_token_stream())
}

/// `tokens` with every span set to `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let proc_macro2::TokenTree::Group(group) = &token {
                let mut inner =
                    proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                token = proc_macro2::TokenTree::Group(inner);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}

/// `tokens` spanned from `first` to `last`: its last token gets `last`, every other `first`.
fn respan_over(tokens: TokenStream, first: Span, last: Span) -> TokenStream {
    let mut tokens: Vec<_> = respan(tokens, first).into_iter().collect();
    if let Some(token) = tokens.last_mut() {
        token.set_span(last);
    }
    tokens.into_iter().collect()
}

fn parse_quote_spanned_block(span: Span, inner: TokenStream) -> syn::Block {
    parse_quote_spanned!(span=> { #inner })
}

use syn::parse_quote_spanned;
