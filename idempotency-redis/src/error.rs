//! Maps Redis errors into the framework's [`Error::Storage`], with a message that names the
//! server and the class of the cause.

use std::io;
use std::sync::Arc;

use idempotency_core::Error;
use redis::RedisError;

/// Where a store's calls go, for error messages: `redis 127.0.0.1:6379`, with the database
/// number the URL selects. Built from the parsed connection info, so it never holds a password.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `redis host:port` (`rediss` over TLS), a Unix socket path, or a cluster's node list.
    pub(crate) name: String,
    /// The database number selected on connect (0 when the URL names none).
    pub(crate) db: i64,
}

impl Target {
    pub(crate) fn of(info: &redis::ConnectionInfo) -> Target {
        let scheme = match info.addr() {
            redis::ConnectionAddr::TcpTls { .. } => "rediss",
            _ => "redis",
        };
        Target {
            name: format!("{scheme} {}", info.addr()),
            db: info.redis_settings().db(),
        }
    }

    /// [`Error::Storage`] for `operation`: `reason` says where (`self`) and why ([`why`]); the
    /// Redis error is the source.
    pub(crate) fn error(&self, operation: &'static str, e: RedisError) -> Error {
        let mut reason = format!("{}: {}", self.name, why(&e, self.db));
        if self.name.starts_with("rediss ") && e.is_timeout() {
            // A TLS client facing a plain-text server waits for a handshake that never comes.
            reason.push_str(
                " (a `rediss://` URL speaks TLS: is the server listening for TLS on this port? \
                 use `redis://` for a plain-text server)",
            );
        }
        Error::storage_with_reason(operation, reason, e)
    }
}

/// The class of a Redis error in a few words: `connection refused`, `timed out`, `DNS lookup
/// failed: ...`, `bad database number 999: ...`, `authentication failed`, ... The full error
/// stays the source of the [`Error::Storage`].
pub(crate) fn why(e: &RedisError, db: i64) -> String {
    if e.is_connection_refusal() {
        return "connection refused".into();
    }
    if e.is_timeout() {
        return "timed out".into();
    }
    if let Some(io) = io_error(e) {
        let text = io.to_string();
        // std's resolver error: "failed to lookup address information: <gai_strerror>".
        if let Some(cause) = text.strip_prefix("failed to lookup address information: ") {
            return format!("DNS lookup failed: {cause}");
        }
        if e.is_connection_dropped() {
            return format!("connection lost ({})", io.kind());
        }
        return format!("I/O error: {text}");
    }
    let detail = e.detail().unwrap_or_default();
    // `SELECT db` during connect: "ERR DB index is out of range" (or "invalid DB index").
    if detail.contains("DB index") {
        return format!("bad database number {db}: {detail}");
    }
    if e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"))
    {
        return match e.detail() {
            Some(d) => format!("authentication failed: {d}"),
            None => "authentication failed".into(),
        };
    }
    if e.is_connection_dropped() {
        return "connection lost".into();
    }
    e.to_string()
}

/// The I/O error behind `e`, if any (Redis keeps it as its source, in an `Arc`).
fn io_error(e: &RedisError) -> Option<&io::Error> {
    let source = std::error::Error::source(e)?;
    match source.downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>() {
        Some(inner) => inner.downcast_ref::<io::Error>(),
        None => source.downcast_ref::<io::Error>(),
    }
}
