//! `idempotency`: the operator's command line for idempotency stores (the `idempotency-cli`
//! crate). File and memory stores are always built in; Redis and PostgreSQL are the features
//! `redis` (`redis-tls` for `rediss://`) and `postgres`, `redis` and `postgres` on by default.
//!
//! Exit codes: 0 ok; 1 problems found or action refused; 2 usage error, bad store URL (or one
//! whose store this binary was built without), bad key or cursor; 3 store unreachable; 4
//! unknown key. See README_CLI.md.

#![forbid(unsafe_code)]

mod args;
mod decode;
mod error;
mod inspect;
#[cfg(feature = "redis")]
mod redis_store;
mod render;
mod repair;
mod select;
mod store;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use serde_json::{json, Value};

use crate::args::{Cli, Command};
use crate::error::{CliError, Exit};

/// What a command produced: the same result for people and for scripts.
pub(crate) struct Output {
    pub(crate) json: Value,
    pub(crate) human: String,
    pub(crate) exit: Exit,
    /// Bytes written to stdout as they are, instead of `human` or `json` (`show --raw`).
    pub(crate) raw: Option<Vec<u8>>,
}

impl Output {
    pub(crate) fn ok(json: Value, human: String) -> Output {
        Output {
            json,
            human,
            exit: Exit::Ok,
            raw: None,
        }
    }

    pub(crate) fn raw(bytes: Vec<u8>) -> Output {
        Output {
            raw: Some(bytes),
            ..Output::ok(Value::Null, String::new())
        }
    }
}

fn run(cli: Cli) -> Result<Output, CliError> {
    if let Command::Key { select } = &cli.command {
        return key(select);
    }
    if let Command::Show { raw: true, .. } = &cli.command {
        if cli.global.json {
            return Err(CliError::new(
                Exit::Usage,
                "usage",
                "`show --raw` writes the stored bytes; it cannot be combined with --json",
            ));
        }
    }
    let store = store::open(
        cli.global.store.as_deref(),
        cli.global.redis_prefix.as_deref(),
    )?;
    match cli.command {
        Command::List(args) => inspect::list(&store, args),
        Command::Key { .. } => unreachable!("handled above"),
        Command::Show {
            key,
            select,
            raw,
            full,
        } => inspect::show(
            &store,
            &inspect::resolve(key.as_deref(), &select)?,
            raw,
            full,
        ),
        Command::Stats => inspect::stats(&store),
        Command::Delete { key, select, force } => {
            repair::delete(&store, &inspect::resolve(key.as_deref(), &select)?, force)
        }
        Command::PurgeExpired => repair::purge_expired(&store),
        Command::Doctor { fix } => repair::doctor(&store, fix),
    }
}

/// `key`: the idempotency key (and, when arguments were given, the fingerprint) of a call.
fn key(select: &select::Selector) -> Result<Output, CliError> {
    let s = select.derive()?;
    let json = json!({ "key": s.key.as_str(), "fingerprint": s.fingerprint });
    Ok(Output::ok(json, format!("{}\n", s.key)))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.global.json;
    let (text, exit) = match run(cli) {
        Ok(Output {
            raw: Some(bytes),
            exit,
            ..
        }) => {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(&bytes).and_then(|()| stdout.flush());
            return ExitCode::from(exit.code());
        }
        Ok(out) if json => (pretty(&out.json), out.exit),
        Ok(out) => (out.human, out.exit),
        Err(e) => {
            eprintln!("error: {e}");
            let text = if json {
                pretty(
                    &json!({ "error": { "kind": e.kind, "message": e.message, "exit_code": e.exit.code() } }),
                )
            } else {
                String::new()
            };
            (text, e.exit)
        }
    };
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth reporting.
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    ExitCode::from(exit.code())
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}
