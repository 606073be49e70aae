//! The `#[burrow_env::test]` attribute.
//!
//! It lives in its own crate only because attribute macros must. It is written against `proc_macro` alone, without
//! a parser crate, because the one transformation it performs (drop `async`, wrap the body) needs no syntax tree.
//!
//! The expansion never names tokio or madsim: it calls `::burrow_env::__private::run_test`, and burrow-env picks
//! the runtime by its own `cfg(madsim)`. That keeps the choice of runtime in the one seam crate and means this
//! crate does not care which flags the host build of proc macros was given.

#![forbid(unsafe_code)]

use proc_macro::{Delimiter, Group, Ident, Punct, Spacing, Span, TokenStream, TokenTree};

/// Runs an `async fn` test to completion on the build's runtime.
///
/// In a normal build the body runs on a current-thread tokio runtime with timers enabled, as `#[tokio::test]`
/// would. In a `--cfg madsim` build it runs in the madsim simulator configured from the environment (for example
/// `MADSIM_TEST_SEED`), as `#[madsim::test]` would. The function may return any type whose value is `Send`,
/// such as `()` or a `Result`.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    if !args.is_empty() {
        return error(Span::call_site(), "#[burrow_env::test] takes no arguments");
    }
    match expand(item) {
        Ok(tokens) => tokens,
        Err((span, message)) => error(span, message),
    }
}

fn expand(item: TokenStream) -> Result<TokenStream, (Span, &'static str)> {
    let mut tokens: Vec<TokenTree> = item.into_iter().collect();

    // The body is the final brace group; everything before it (attributes, visibility, signature) is kept.
    let body = match tokens.pop() {
        Some(TokenTree::Group(group)) if group.delimiter() == Delimiter::Brace => group,
        Some(other) => {
            return Err((other.span(), "#[burrow_env::test] expects a function with a body"));
        }
        None => return Err((Span::call_site(), "#[burrow_env::test] expects a function")),
    };

    // `async` must come before `fn`; anything after `fn` is the name, parameters and return type.
    let fn_at = tokens
        .iter()
        .position(|t| matches!(t, TokenTree::Ident(i) if i.to_string() == "fn"))
        .ok_or((body.span(), "#[burrow_env::test] expects a function"))?;
    let async_at = tokens[..fn_at]
        .iter()
        .position(|t| matches!(t, TokenTree::Ident(i) if i.to_string() == "async"))
        .ok_or((tokens[fn_at].span(), "#[burrow_env::test] expects an `async fn`"))?;
    tokens.remove(async_at);

    let mut out = TokenStream::new();
    out.extend(outer_attribute(&["core", "prelude", "v1", "test"]));
    out.extend(tokens);
    out.extend([TokenTree::Group(Group::new(Delimiter::Brace, runner_call(body)))]);
    Ok(out)
}

/// Builds `::burrow_env::__private::run_test(|| async move { body })`.
///
/// The closure captures nothing, so it coerces to the plain function pointer the simulator's runner requires
/// (it calls the function once per seed).
fn runner_call(body: Group) -> TokenStream {
    let mut call = TokenStream::new();
    call.extend(path(&["burrow_env", "__private", "run_test"]));
    let mut closure = TokenStream::new();
    closure.extend([
        TokenTree::Punct(Punct::new('|', Spacing::Joint)),
        TokenTree::Punct(Punct::new('|', Spacing::Alone)),
        TokenTree::Ident(Ident::new("async", Span::call_site())),
        TokenTree::Ident(Ident::new("move", Span::call_site())),
        TokenTree::Group(body),
    ]);
    call.extend([TokenTree::Group(Group::new(Delimiter::Parenthesis, closure))]);
    call
}

/// Builds an absolute path such as `::a::b::c`, so a local item of the same name cannot shadow it.
fn path(segments: &[&str]) -> TokenStream {
    let mut out = TokenStream::new();
    for segment in segments {
        out.extend([
            TokenTree::Punct(Punct::new(':', Spacing::Joint)),
            TokenTree::Punct(Punct::new(':', Spacing::Alone)),
            TokenTree::Ident(Ident::new(segment, Span::call_site())),
        ]);
    }
    out
}

fn outer_attribute(segments: &[&str]) -> TokenStream {
    let mut out = TokenStream::new();
    out.extend([
        TokenTree::Punct(Punct::new('#', Spacing::Alone)),
        TokenTree::Group(Group::new(Delimiter::Bracket, path(segments))),
    ]);
    out
}

/// Emits `compile_error!("...")` at `span`, so a misuse points at the offending tokens.
fn error(span: Span, message: &str) -> TokenStream {
    let mut literal = proc_macro::Literal::string(message);
    literal.set_span(span);
    let mut out = TokenStream::new();
    out.extend(path(&["core", "compile_error"]));
    out.extend([
        TokenTree::Punct(Punct::new('!', Spacing::Alone)),
        TokenTree::Group(Group::new(Delimiter::Parenthesis, TokenStream::from(TokenTree::Literal(literal)))),
        TokenTree::Punct(Punct::new(';', Spacing::Alone)),
    ]);
    out
}
