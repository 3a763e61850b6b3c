//! The command line, declared with clap's derive API.

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::select::Selector;

/// Inspect and repair an idempotency store: list, show and delete records (by key, or found
/// from a call's own inputs with `key`'s selectors), purge expired ones, count them, and find
/// (and remove) unreadable ones.
///
/// Exit codes: 0 ok; 1 problems found or action refused; 2 usage error, bad store URL or bad
/// key; 3 store unreachable; 4 unknown key.
#[derive(Debug, Parser)]
#[command(name = "idempotency", version)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options that every command takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The store: `file:///path`, `file://relative/path`, a bare directory path,
    /// `redis://host:port/db` (build feature `redis`; `rediss://`: `redis-tls`),
    /// `postgres://user@host/db` (build feature `postgres`; table `idempotency_records`; choose
    /// the schema with `?options=-c%20search_path%3Dname`), `memory://`.
    /// Default: the `IDEMPOTENCY_URL` environment variable, else the file store in
    /// `.idempotency`.
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) store: Option<String>,
    /// The key prefix (namespace) of a Redis store; default `idempotency:`.
    #[arg(long, global = true, value_name = "PREFIX")]
    pub(crate) redis_prefix: Option<String>,
    /// Print one JSON document on stdout instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List records (and unreadable entries), a store page at a time.
    List(ListArgs),
    /// Print the idempotency key of a call, from its operation name and its custom key or
    /// arguments (`--args-json`, `--value-json`), scope and version.
    Key {
        #[command(flatten)]
        select: Selector,
    },
    /// Show one record: status, times, TTL, holder, fingerprint, the encoding and size of the
    /// stored value, the stored value or error decoded (at most 4 KiB unless `--full`).
    Show {
        /// The idempotency key (`operation:32 hex`, as `list` prints it); or use the selectors.
        #[arg(required_unless_present = "operation", conflicts_with = "operation")]
        key: Option<String>,
        #[command(flatten)]
        select: Selector,
        /// Write the stored value's bytes (CBOR) to stdout, nothing else: the result, or for a
        /// failed record the stored error.
        #[arg(long, conflicts_with = "json")]
        raw: bool,
        /// Print the whole decoded value, however long.
        #[arg(long)]
        full: bool,
    },
    /// Delete one record. A live `Pending` record (a call running now) is refused unless
    /// `--force`.
    Delete {
        /// The idempotency key; or use the selectors.
        #[arg(required_unless_present = "operation", conflicts_with = "operation")]
        key: Option<String>,
        #[command(flatten)]
        select: Selector,
        /// Also delete a live `Pending` record (its holder's result will be refused).
        #[arg(long)]
        force: bool,
    },
    /// Remove records that are expired now.
    PurgeExpired,
    /// Count records by status, unreadable entries, TTL remaining and result bytes.
    Stats,
    /// Find unreadable (corrupt or foreign-version) entries; `--fix` removes them.
    Doctor {
        /// Remove the unreadable entries found.
        #[arg(long)]
        fix: bool,
    },
}

/// `list` options.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only records with this status as of now.
    #[arg(long, value_enum)]
    pub(crate) status: Option<StatusFilter>,
    /// Only records of this operation (the key's part before the last `:`, prefix included).
    #[arg(long, value_name = "NAME")]
    pub(crate) operation: Option<String>,
    /// Only records whose key starts with this.
    #[arg(long, value_name = "KEYPREFIX")]
    pub(crate) prefix: Option<String>,
    /// Print at most this many entries, then the cursor to continue from (`--cursor`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) limit: Option<u32>,
    /// Continue a listing from a cursor printed by an earlier `list --limit`.
    #[arg(long, value_name = "CURSOR")]
    pub(crate) cursor: Option<String>,
}

/// The `--status` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StatusFilter {
    /// Claimed, lease not over.
    Pending,
    /// Finished with a value, TTL not over.
    Success,
    /// Finished with a stored error, TTL not over.
    Failed,
    /// Past its lease or TTL, not yet purged.
    Expired,
    /// Corrupt or written by another format version.
    Unreadable,
}
