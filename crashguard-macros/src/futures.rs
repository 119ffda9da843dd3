//! Functions that return a future without being `async`: the body `#[async_trait]` (and so
//! tonic's generated service traits) writes, whose future the attribute guards, and every other,
//! which it refuses rather than guard only the call that builds the future.

use syn::{Expr, ExprAsync, ReturnType, Stmt, Type, TypeParamBound};

/// The async block of a body `#[async_trait]` rewrote: `Box::pin(async move { … })` as its last
/// expression, as `tracing`'s `#[instrument]` recognises it.
pub(crate) fn async_trait_block(block: &mut syn::Block) -> Option<&mut ExprAsync> {
    let Some(Stmt::Expr(Expr::Call(call), None)) = block.stmts.last_mut() else {
        return None;
    };
    let Expr::Path(function) = &*call.func else {
        return None;
    };
    let segments: Vec<String> = function
        .path
        .segments
        .iter()
        .map(|segment| segment.ident.to_string())
        .collect();
    if !segments.ends_with(&["Box".to_owned(), "pin".to_owned()]) || call.args.len() != 1 {
        return None;
    }
    match call.args.first_mut() {
        Some(Expr::Async(block)) => Some(block),
        _ => None,
    }
}

/// The return type, if it is a future the function builds without awaiting it: `impl Future`,
/// `Pin<Box<dyn Future>>`, or a `BoxFuture`.
pub(crate) fn returned_future(output: &ReturnType) -> Option<&Type> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    is_future(ty).then_some(&**ty)
}

fn is_future(ty: &Type) -> bool {
    match ty {
        Type::ImplTrait(bounds) => bounds.bounds.iter().any(names_future),
        Type::TraitObject(bounds) => bounds.bounds.iter().any(names_future),
        Type::Paren(inner) => is_future(&inner.elem),
        Type::Group(inner) => is_future(&inner.elem),
        Type::Path(path) => {
            let Some(last) = path.path.segments.last() else {
                return false;
            };
            let name = last.ident.to_string();
            if name == "BoxFuture" || name == "LocalBoxFuture" {
                return true;
            }
            if name != "Pin" && name != "Box" {
                return false;
            }
            match &last.arguments {
                syn::PathArguments::AngleBracketed(arguments) => {
                    arguments.args.iter().any(|argument| match argument {
                        syn::GenericArgument::Type(inner) => is_future(inner),
                        _ => false,
                    })
                }
                _ => false,
            }
        }
        _ => false,
    }
}

fn names_future(bound: &TypeParamBound) -> bool {
    match bound {
        TypeParamBound::Trait(bound) => bound
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "Future"),
        _ => false,
    }
}

/// The `Output = T` of a future type, for spans: what a panic must be turned into.
pub(crate) fn future_output(ty: &Type) -> Option<&Type> {
    let bounds: Box<dyn Iterator<Item = &TypeParamBound>> = match ty {
        Type::ImplTrait(bounds) => Box::new(bounds.bounds.iter()),
        Type::TraitObject(bounds) => Box::new(bounds.bounds.iter()),
        Type::Paren(inner) => return future_output(&inner.elem),
        Type::Group(inner) => return future_output(&inner.elem),
        Type::Path(path) => {
            let last = path.path.segments.last()?;
            let syn::PathArguments::AngleBracketed(arguments) = &last.arguments else {
                return None;
            };
            return arguments.args.iter().find_map(|argument| match argument {
                syn::GenericArgument::Type(inner) => future_output(inner),
                _ => None,
            });
        }
        _ => return None,
    };
    for bound in bounds {
        let TypeParamBound::Trait(bound) = bound else {
            continue;
        };
        let last = bound.path.segments.last()?;
        if last.ident != "Future" {
            continue;
        }
        if let syn::PathArguments::AngleBracketed(arguments) = &last.arguments {
            for argument in &arguments.args {
                if let syn::GenericArgument::AssocType(binding) = argument {
                    if binding.ident == "Output" {
                        return Some(&binding.ty);
                    }
                }
            }
        }
    }
    None
}
