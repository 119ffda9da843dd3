//! The attribute's arguments, parsed into a typed struct with a span for every value.

use std::time::Duration;

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::{LitBool, LitInt, LitStr, Path, Token};

mod kw {
    syn::custom_keyword!(http);
    syn::custom_keyword!(fallback);
    syn::custom_keyword!(grace_period);
    syn::custom_keyword!(flavor);
    syn::custom_keyword!(worker_threads);
    syn::custom_keyword!(backtrace);
}

/// An argument's value with the span of the argument's name, for errors about where it is used.
pub(crate) struct Arg<T> {
    pub(crate) value: T,
    pub(crate) span: Span,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    CurrentThread,
    MultiThread,
}

#[derive(Default)]
pub(crate) struct Args {
    pub(crate) http: Option<Span>,
    pub(crate) fallback: Option<Arg<Path>>,
    pub(crate) krate: Option<Arg<Path>>,
    pub(crate) grace_period: Option<Arg<Duration>>,
    pub(crate) flavor: Option<Arg<Flavor>>,
    pub(crate) worker_threads: Option<Arg<usize>>,
    pub(crate) backtrace: Option<Arg<bool>>,
}

impl Args {
    /// The main-only arguments that are present, with their names and spans.
    pub(crate) fn main_options(&self) -> Vec<(&'static str, Span)> {
        let mut present = Vec::new();
        if let Some(option) = &self.grace_period {
            present.push(("grace_period", option.span));
        }
        if let Some(option) = &self.flavor {
            present.push(("flavor", option.span));
        }
        if let Some(option) = &self.worker_threads {
            present.push(("worker_threads", option.span));
        }
        if let Some(option) = &self.backtrace {
            present.push(("backtrace", option.span));
        }
        present
    }
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Args> {
        let mut args = Args::default();
        while !input.is_empty() {
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::http) {
                let keyword: kw::http = input.parse()?;
                reject_repeat(&args.http, "http", keyword.span)?;
                args.http = Some(keyword.span);
            } else if lookahead.peek(kw::fallback) {
                let keyword: kw::fallback = input.parse()?;
                start_value(
                    input,
                    &args.fallback,
                    "fallback",
                    keyword.span,
                    "fallback = path::to::function",
                )?;
                let path: Path = input.parse().map_err(|error| {
                    syn::Error::new(
                        error.span(),
                        "`fallback` takes the path of a function: `fallback = path::to::function`",
                    )
                })?;
                args.fallback = Some(Arg {
                    value: path,
                    span: keyword.span,
                });
            } else if lookahead.peek(Token![crate]) {
                let keyword: Token![crate] = input.parse()?;
                let literal: LitStr = value_of(
                    input,
                    &args.krate,
                    "crate",
                    keyword.span,
                    "crate = \"path::to::crashguard\"",
                )?;
                let path = literal.parse::<Path>().map_err(|_| {
                    syn::Error::new(
                        literal.span(),
                        format!(
                            "`crate` takes a path in a string, such as \"::crashguard\"; `{}` is not a path",
                            literal.value()
                        ),
                    )
                })?;
                args.krate = Some(Arg {
                    value: path,
                    span: keyword.span,
                });
            } else if lookahead.peek(kw::grace_period) {
                let keyword: kw::grace_period = input.parse()?;
                let literal: LitStr = value_of(
                    input,
                    &args.grace_period,
                    "grace_period",
                    keyword.span,
                    "grace_period = \"25s\"",
                )?;
                let duration = humantime::parse_duration(literal.value().trim()).map_err(|error| {
                    syn::Error::new(
                        literal.span(),
                        format!(
                            "`grace_period` is not a duration ({error}); write it as \"25s\", \"1500ms\" or \"1m 30s\""
                        ),
                    )
                })?;
                args.grace_period = Some(Arg {
                    value: duration,
                    span: keyword.span,
                });
            } else if lookahead.peek(kw::flavor) {
                let keyword: kw::flavor = input.parse()?;
                let literal: LitStr = value_of(
                    input,
                    &args.flavor,
                    "flavor",
                    keyword.span,
                    "flavor = \"current_thread\"",
                )?;
                let flavor = match literal.value().as_str() {
                    "current_thread" => Flavor::CurrentThread,
                    "multi_thread" => Flavor::MultiThread,
                    other => {
                        return Err(syn::Error::new(
                            literal.span(),
                            format!(
                                "unknown runtime flavor `{other}`; expected \"current_thread\" or \"multi_thread\""
                            ),
                        ))
                    }
                };
                args.flavor = Some(Arg {
                    value: flavor,
                    span: keyword.span,
                });
            } else if lookahead.peek(kw::worker_threads) {
                let keyword: kw::worker_threads = input.parse()?;
                let literal: LitInt = value_of(
                    input,
                    &args.worker_threads,
                    "worker_threads",
                    keyword.span,
                    "worker_threads = 4",
                )?;
                let workers: usize = literal.base10_parse()?;
                if workers == 0 {
                    return Err(syn::Error::new(
                        literal.span(),
                        "`worker_threads` must be at least 1",
                    ));
                }
                args.worker_threads = Some(Arg {
                    value: workers,
                    span: keyword.span,
                });
            } else if lookahead.peek(kw::backtrace) {
                let keyword: kw::backtrace = input.parse()?;
                let literal: LitBool = value_of(
                    input,
                    &args.backtrace,
                    "backtrace",
                    keyword.span,
                    "backtrace = false",
                )?;
                args.backtrace = Some(Arg {
                    value: literal.value,
                    span: keyword.span,
                });
            } else {
                return Err(lookahead.error());
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(args)
    }
}

/// Starts `name = value` after its keyword (at `span`) and parses the value.
fn value_of<L: Parse, T>(
    input: ParseStream<'_>,
    previous: &Option<T>,
    name: &str,
    span: Span,
    example: &str,
) -> syn::Result<L> {
    start_value(input, previous, name, span, example)?;
    input.parse()
}

/// Checks the argument is not a repeat and consumes its `=`, leaving the value to parse.
fn start_value<T>(
    input: ParseStream<'_>,
    previous: &Option<T>,
    name: &str,
    span: Span,
    example: &str,
) -> syn::Result<()> {
    reject_repeat(previous, name, span)?;
    expect_value(input, span, name, example)
}

/// Each argument may appear once; the error points at the second one.
fn reject_repeat<T>(previous: &Option<T>, name: &str, span: Span) -> syn::Result<()> {
    match previous {
        Some(_) => Err(syn::Error::new(
            span,
            format!("expected only a single `{name}` argument"),
        )),
        None => Ok(()),
    }
}

fn expect_value(input: ParseStream<'_>, span: Span, name: &str, example: &str) -> syn::Result<()> {
    if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        if input.is_empty() || input.peek(Token![,]) {
            return Err(syn::Error::new(
                input.span(),
                format!("`{name}` needs a value: `{example}`"),
            ));
        }
        Ok(())
    } else {
        Err(syn::Error::new(
            span,
            format!("`{name}` needs a value: `{example}`"),
        ))
    }
}
