//! The arguments of `#[idempotent(...)]`.
//!
//! Each argument is parsed into its own small type; errors are recorded in the [`Ctxt`] and
//! parsing carries on with the next argument, so every mistake is reported at once. Duplicates
//! are caught by the one generic [`Attr::set`].

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Expr, ExprLit, ExprUnary, Ident, Lit, LitBool, LitInt, LitStr, Path, Token, UnOp};

use crate::ctxt::{Attr, Ctxt};

pub(crate) mod kw {
    syn::custom_keyword!(ttl);
    syn::custom_keyword!(failure_ttl);
    syn::custom_keyword!(pending_timeout);
    syn::custom_keyword!(name);
    syn::custom_keyword!(version);
    syn::custom_keyword!(key);
    syn::custom_keyword!(scope);
    syn::custom_keyword!(manager);
    syn::custom_keyword!(on_conflict);
    syn::custom_keyword!(cache_failures);
    syn::custom_keyword!(renew_lease);
    syn::custom_keyword!(fingerprint);
    syn::custom_keyword!(include_self);
    syn::custom_keyword!(reject);
    syn::custom_keyword!(wait);
    syn::custom_keyword!(replay);
}

/// Every argument, in the order the docs list them (also the "expected one of" list).
pub(crate) const ARGUMENTS: &[&str] = &[
    "ttl",
    "failure_ttl",
    "pending_timeout",
    "name",
    "version",
    "key",
    "scope",
    "manager",
    "on_conflict",
    "cache_failures",
    "renew_lease",
    "fingerprint",
    "include_self",
    "crate",
];

const WHAT: &str = "`idempotent` argument";

/// A duration: an integer number of seconds, or a `Duration` expression.
pub(crate) enum Secs {
    Lit(u64, Span),
    Expr(Box<Expr>),
}

/// `on_conflict = reject | wait(<duration>)`.
pub(crate) enum Conflict {
    Reject,
    Wait(Secs),
}

/// `fingerprint = "replay" | "reject"`.
#[derive(Clone, Copy)]
pub(crate) enum FingerprintArg {
    Replay,
    Reject,
}

/// The parsed arguments (each at most once; unset means "the manager's default").
#[derive(Default)]
pub(crate) struct IdempotentArgs {
    pub(crate) ttl: Option<(Span, Secs)>,
    pub(crate) failure_ttl: Option<(Span, Secs)>,
    pub(crate) pending_timeout: Option<(Span, Secs)>,
    pub(crate) name: Option<LitStr>,
    pub(crate) version: Option<u32>,
    pub(crate) key: Option<(Span, Expr)>,
    pub(crate) scope: Option<Expr>,
    pub(crate) manager: Option<Expr>,
    pub(crate) on_conflict: Option<Conflict>,
    pub(crate) cache_failures: Option<(Span, bool)>,
    /// `renew_lease = bool`: whether the lease is renewed while the body runs.
    pub(crate) renew_lease: Option<bool>,
    pub(crate) fingerprint: Option<FingerprintArg>,
    /// `include_self` (`true`) or `include_self = <bool>`; unset: left out, with a warning
    /// when the receiver could be part of the key.
    pub(crate) include_self: Option<(Span, bool)>,
    pub(crate) krate: Option<Path>,
}

struct Slots {
    ttl: Attr<(Span, Secs)>,
    failure_ttl: Attr<(Span, Secs)>,
    pending_timeout: Attr<(Span, Secs)>,
    name: Attr<LitStr>,
    version: Attr<u32>,
    key: Attr<(Span, Expr)>,
    scope: Attr<Expr>,
    manager: Attr<Expr>,
    on_conflict: Attr<Conflict>,
    cache_failures: Attr<(Span, bool)>,
    renew_lease: Attr<bool>,
    fingerprint: Attr<FingerprintArg>,
    include_self: Attr<(Span, bool)>,
    krate: Attr<Path>,
}

impl IdempotentArgs {
    /// Parses the attribute's arguments, recording every error in `cx`. Arguments that failed
    /// to parse are left unset, so the function can still be expanded with the rest.
    pub(crate) fn parse(cx: &Ctxt, tokens: TokenStream) -> IdempotentArgs {
        let mut s = Slots {
            ttl: Attr::none(WHAT, "ttl"),
            failure_ttl: Attr::none(WHAT, "failure_ttl"),
            pending_timeout: Attr::none(WHAT, "pending_timeout"),
            name: Attr::none(WHAT, "name"),
            version: Attr::none(WHAT, "version"),
            key: Attr::none(WHAT, "key"),
            scope: Attr::none(WHAT, "scope"),
            manager: Attr::none(WHAT, "manager"),
            on_conflict: Attr::none(WHAT, "on_conflict"),
            cache_failures: Attr::none(WHAT, "cache_failures"),
            renew_lease: Attr::none(WHAT, "renew_lease"),
            fingerprint: Attr::none(WHAT, "fingerprint"),
            include_self: Attr::none(WHAT, "include_self"),
            krate: Attr::none(WHAT, "crate"),
        };
        let parser = |input: ParseStream<'_>| {
            while !input.is_empty() {
                parse_one(cx, input, &mut s)?;
                if input.is_empty() {
                    break;
                }
                input.parse::<Token![,]>()?;
            }
            Ok(())
        };
        if let Err(e) = parser.parse2(tokens) {
            cx.syn_error(e);
        }
        IdempotentArgs {
            ttl: s.ttl.get(),
            failure_ttl: s.failure_ttl.get(),
            pending_timeout: s.pending_timeout.get(),
            name: s.name.get(),
            version: s.version.get(),
            key: s.key.get(),
            scope: s.scope.get(),
            manager: s.manager.get(),
            on_conflict: s.on_conflict.get(),
            cache_failures: s.cache_failures.get(),
            renew_lease: s.renew_lease.get(),
            fingerprint: s.fingerprint.get(),
            include_self: s.include_self.get(),
            krate: s.krate.get(),
        }
    }
}

/// Parses one `name = value` (or flag) argument. A syntax error ends parsing (`Err`); a
/// semantic error (unknown name, zero TTL, duplicate) is recorded and parsing goes on.
fn parse_one(cx: &Ctxt, input: ParseStream<'_>, s: &mut Slots) -> syn::Result<()> {
    let lookahead = input.lookahead1();
    if lookahead.peek(kw::ttl) {
        let k = input.parse::<kw::ttl>()?;
        if let Some(v) = parse_secs(cx, input, "ttl")? {
            s.ttl.set(cx, k, (k.span, v));
        }
    } else if lookahead.peek(kw::failure_ttl) {
        let k = input.parse::<kw::failure_ttl>()?;
        if let Some(v) = parse_secs(cx, input, "failure_ttl")? {
            s.failure_ttl.set(cx, k, (k.span, v));
        }
    } else if lookahead.peek(kw::pending_timeout) {
        let k = input.parse::<kw::pending_timeout>()?;
        if let Some(v) = parse_secs(cx, input, "pending_timeout")? {
            s.pending_timeout.set(cx, k, (k.span, v));
        }
    } else if lookahead.peek(kw::name) {
        let k = input.parse::<kw::name>()?;
        input.parse::<Token![=]>()?;
        let lit: LitStr = input.parse()?;
        s.name.set(cx, k, lit);
    } else if lookahead.peek(kw::version) {
        let k = input.parse::<kw::version>()?;
        input.parse::<Token![=]>()?;
        let lit: LitInt = input.parse()?;
        match lit.base10_parse::<u32>() {
            Ok(v) => s.version.set(cx, k, v),
            Err(_) => cx.error_spanned_by(
                &lit,
                "`version` must be an integer from 0 to 4294967295 (a `u32`)",
            ),
        }
    } else if lookahead.peek(kw::key) {
        let k = input.parse::<kw::key>()?;
        input.parse::<Token![=]>()?;
        let e: Expr = input.parse()?;
        s.key.set(cx, k, (k.span, e));
    } else if lookahead.peek(kw::scope) {
        let k = input.parse::<kw::scope>()?;
        input.parse::<Token![=]>()?;
        s.scope.set(cx, k, input.parse()?);
    } else if lookahead.peek(kw::manager) {
        let k = input.parse::<kw::manager>()?;
        input.parse::<Token![=]>()?;
        s.manager.set(cx, k, input.parse()?);
    } else if lookahead.peek(kw::on_conflict) {
        let k = input.parse::<kw::on_conflict>()?;
        input.parse::<Token![=]>()?;
        if let Some(c) = parse_conflict(cx, input)? {
            s.on_conflict.set(cx, k, c);
        }
    } else if lookahead.peek(kw::cache_failures) {
        let k = input.parse::<kw::cache_failures>()?;
        input.parse::<Token![=]>()?;
        let b: LitBool = input.parse()?;
        s.cache_failures.set(cx, k, (k.span, b.value));
    } else if lookahead.peek(kw::renew_lease) {
        let k = input.parse::<kw::renew_lease>()?;
        input.parse::<Token![=]>()?;
        let b: LitBool = input.parse()?;
        s.renew_lease.set(cx, k, b.value);
    } else if lookahead.peek(kw::fingerprint) {
        let k = input.parse::<kw::fingerprint>()?;
        input.parse::<Token![=]>()?;
        if let Some(f) = parse_fingerprint(cx, input)? {
            s.fingerprint.set(cx, k, f);
        }
    } else if lookahead.peek(kw::include_self) {
        let k = input.parse::<kw::include_self>()?;
        // `include_self` alone reads as `include_self = true`.
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            let tt: proc_macro2::TokenTree = input.parse()?;
            match syn::parse2::<LitBool>(tt.clone().into()) {
                Ok(b) => Some(b.value),
                Err(_) => {
                    cx.error_spanned_by(&tt, "expected `include_self = true` (or `include_self` alone) to put the receiver in the key, or `include_self = false` to leave it out");
                    None
                }
            }
        } else {
            Some(true)
        };
        if let Some(value) = value {
            s.include_self.set(cx, k, (k.span, value));
        }
    } else if lookahead.peek(Token![crate]) {
        let k = input.parse::<Token![crate]>()?;
        input.parse::<Token![=]>()?;
        let path = if input.peek(LitStr) {
            input.parse::<LitStr>()?.parse::<Path>()?
        } else {
            Path::parse_mod_style(input)?
        };
        s.krate.set(cx, k, path);
    } else if input.peek(Ident::peek_any) {
        let unknown = Ident::parse_any(input)?;
        cx.error_spanned_by(&unknown, unknown_message(&unknown.to_string()));
        // Skip the value so the remaining arguments are still checked.
        if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            input.parse::<Expr>()?;
        }
    } else {
        return Err(lookahead.error());
    }
    Ok(())
}

fn unknown_message(name: &str) -> String {
    let list = ARGUMENTS
        .iter()
        .map(|a| format!("`{a}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let hint = ARGUMENTS
        .iter()
        .find(|a| close(name, a))
        .map(|a| format!("; did you mean `{a}`?"))
        .unwrap_or_default();
    format!("unknown `idempotent` argument `{name}`; expected one of {list}{hint}")
}

/// Whether `a` is one edit (insert, delete, substitute) away from `b`, or a prefix of it.
fn close(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len() >= 3 && b.starts_with(&a) {
        return true;
    }
    let (short, long) = if a.len() <= b.len() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    match long.len() - short.len() {
        0 => {
            short
                .iter()
                .zip(long.iter())
                .filter(|(x, y)| x != y)
                .count()
                == 1
        }
        1 => (0..long.len()).any(|skip| {
            long.iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, c)| c)
                .eq(short.iter())
        }),
        _ => false,
    }
}

/// `= 3600` (seconds) or `= <Duration expression>`. Zero, negative and non-integer literals
/// are recorded as errors (`None`).
fn parse_secs(cx: &Ctxt, input: ParseStream<'_>, name: &str) -> syn::Result<Option<Secs>> {
    input.parse::<Token![=]>()?;
    let expr: Expr = input.parse()?;
    Ok(secs_from_expr(cx, expr, name))
}

fn secs_from_expr(cx: &Ctxt, expr: Expr, name: &str) -> Option<Secs> {
    match &expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => match int.base10_parse::<u64>() {
            Ok(0) => {
                cx.error_spanned_by(
                    int,
                    format!("`{name}` may not be 0; give a number of seconds of at least 1"),
                );
                None
            }
            Ok(n) => Some(Secs::Lit(n, int.span())),
            Err(_) => {
                cx.error_spanned_by(int, format!("`{name}` in seconds must fit in a `u64`"));
                None
            }
        },
        Expr::Lit(ExprLit { lit, .. }) => {
            let hint = match lit {
                Lit::Str(s) => format!(
                    "; found the string {:?}: write seconds as an integer, e.g. `{name} = 3600`, or a `Duration` expression",
                    s.value()
                ),
                Lit::Float(_) => format!(
                    "; found a float: for fractions of a second write a `Duration`, e.g. `{name} = Duration::from_millis(1500)`"
                ),
                _ => String::new(),
            };
            cx.error_spanned_by(
                lit,
                format!("expected an integer number of seconds or a `Duration` expression for `{name}`{hint}"),
            );
            None
        }
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_), ..
        }) => {
            cx.error_spanned_by(&expr, format!("`{name}` may not be negative"));
            None
        }
        _ => Some(Secs::Expr(Box::new(expr))),
    }
}

/// `reject`, `"reject"`, `wait(30)` or `wait(<Duration expression>)`.
fn parse_conflict(cx: &Ctxt, input: ParseStream<'_>) -> syn::Result<Option<Conflict>> {
    const EXPECTED: &str = "expected `on_conflict = reject` or `on_conflict = wait(<seconds>)`";
    if input.peek(kw::reject) {
        input.parse::<kw::reject>()?;
        return Ok(Some(Conflict::Reject));
    }
    if input.peek(kw::wait) {
        let w = input.parse::<kw::wait>()?;
        if !input.peek(syn::token::Paren) {
            cx.error_spanned_by(w, "`wait` needs a bound: `on_conflict = wait(30)` (seconds) or `wait(Duration::from_millis(500))`");
            return Ok(None);
        }
        let content;
        syn::parenthesized!(content in input);
        let expr: Expr = content.parse()?;
        return Ok(secs_from_expr(cx, expr, "wait").map(Conflict::Wait));
    }
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        return Ok(match lit.value().as_str() {
            "reject" => Some(Conflict::Reject),
            "wait" => {
                cx.error_spanned_by(
                    &lit,
                    "`wait` needs a bound: `on_conflict = wait(30)` (seconds)",
                );
                None
            }
            _ => {
                cx.error_spanned_by(&lit, EXPECTED);
                None
            }
        });
    }
    let tt: proc_macro2::TokenTree = input.parse()?;
    cx.error_spanned_by(&tt, EXPECTED);
    // Skip a parenthesized tail (`on_conflict = block(3)`).
    if input.peek(syn::token::Paren) {
        let _: proc_macro2::TokenTree = input.parse()?;
    }
    Ok(None)
}

/// `"replay"`, `"reject"`, `replay` or `reject`.
fn parse_fingerprint(cx: &Ctxt, input: ParseStream<'_>) -> syn::Result<Option<FingerprintArg>> {
    const EXPECTED: &str = "expected `fingerprint = \"replay\"` or `fingerprint = \"reject\"`";
    if input.peek(kw::replay) {
        input.parse::<kw::replay>()?;
        return Ok(Some(FingerprintArg::Replay));
    }
    if input.peek(kw::reject) {
        input.parse::<kw::reject>()?;
        return Ok(Some(FingerprintArg::Reject));
    }
    let tt: proc_macro2::TokenTree = input.parse()?;
    if let Ok(lit) = syn::parse2::<LitStr>(tt.clone().into()) {
        match lit.value().as_str() {
            "replay" => return Ok(Some(FingerprintArg::Replay)),
            "reject" => return Ok(Some(FingerprintArg::Reject)),
            _ => {}
        }
    }
    cx.error_spanned_by(&tt, EXPECTED);
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::close;

    #[test]
    fn close_names_are_suggested() {
        assert!(close("tl", "ttl"));
        assert!(close("verison", "version") || close("versio", "version"));
        assert!(close("managr", "manager"));
        assert!(!close("colour", "ttl"));
    }
}
