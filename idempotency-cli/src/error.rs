//! The CLI's errors and exit codes.

use std::fmt;

use idempotency::{Error, ErrorKind};

/// The process exit codes (documented in `--help` and README_CLI.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Done.
    Ok = 0,
    /// Problems found (`doctor`, an unreadable record) or an action refused (`delete` of a live
    /// `Pending` record without `--force`).
    Problems = 1,
    /// A usage error, a bad store URL, a bad key or cursor, a store that cannot list.
    Usage = 2,
    /// The store could not be reached or failed (I/O, network).
    Unreachable = 3,
    /// No record for the key.
    UnknownKey = 4,
}

impl Exit {
    pub(crate) fn code(self) -> u8 {
        self as u8
    }
}

/// A failed command: what to print and how to exit.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) exit: Exit,
    /// A short class name for `--json` (`unknown_key`, `store_unavailable`, ...).
    pub(crate) kind: &'static str,
    pub(crate) message: String,
}

impl CliError {
    pub(crate) fn new(exit: Exit, kind: &'static str, message: impl Into<String>) -> Self {
        CliError {
            exit,
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The snake_case name of an error kind, as printed by `--json` (the library's stable name,
/// [`ErrorKind::as_str`]).
pub(crate) fn kind_name(kind: ErrorKind) -> &'static str {
    kind.as_str()
}

/// An error with its whole source chain on one line.
pub(crate) fn describe(e: &Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        // Some errors repeat their source's text in their own message: print it once.
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        let exit = match e.kind() {
            ErrorKind::Config | ErrorKind::InvalidKey => Exit::Usage,
            ErrorKind::StoreUnavailable => Exit::Unreachable,
            _ => Exit::Problems,
        };
        CliError::new(exit, kind_name(e.kind()), describe(&e))
    }
}
