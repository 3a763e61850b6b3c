//! Opening a store's connection: URLs, TLS, a single server or a cluster.

use idempotency_core::{Error, Result};
use redis::aio::ConnectionManager;

use crate::config::RedisConfig;
use crate::conn::{AsyncConn, Conn};
use crate::error::Target;
use crate::server::{Server, Settings};
use crate::worker::Worker;

/// Opens the connection `config` describes.
///
/// # Errors
/// As [`RedisConfig::open`].
pub(crate) fn open(config: &RedisConfig) -> Result<Conn> {
    if let Some(url) = config
        .nodes
        .iter()
        .find(|url| !cfg!(feature = "tls") && url.trim_start().starts_with("rediss://"))
    {
        return Err(Error::Config(format!(
            "`{}`: `rediss://` (TLS) needs the `redis-tls` feature of `idempotency`: \
             `features = [\"redis-tls\"]` in Cargo.toml, or `--features redis-tls` on the \
             cargo command line (the `tls` feature of `idempotency-redis`)",
            redact(url)
        )));
    }
    if config.cluster {
        return open_cluster(config);
    }
    let url = config.nodes.first().map(String::as_str).unwrap_or_default();
    let client = redis::Client::open(url)
        .map_err(|e| Error::Config(format!("invalid Redis URL `{}`: {e}", redact(url))))?;
    open_client(client, config)
}

/// Opens the connections to the server `client` names (one sync connection now; the others
/// on first use, see `server.rs`).
pub(crate) fn open_client(client: redis::Client, config: &RedisConfig) -> Result<Conn> {
    install_tls_provider();
    let target = Target::of(client.get_connection_info());
    let settings = Settings {
        response_timeout: config.response_timeout,
        connection_timeout: config.connection_timeout,
        reconnect_retries: config.reconnect_retries,
    };
    let server = Server::open(client, settings).map_err(|e| target.error("connect", e))?;
    Ok(Conn::server(server, target))
}

/// A connection over an existing connection manager (driven by the runtime that created it).
pub(crate) fn from_manager(manager: ConnectionManager) -> Result<Conn> {
    let target = Target {
        name: "redis (a connection manager)".into(),
        db: redis::aio::ConnectionLike::get_db(&manager),
    };
    Ok(Conn::fixed(
        AsyncConn::Single(manager),
        Worker::start()?,
        target,
    ))
}

#[cfg(feature = "cluster")]
fn open_cluster(config: &RedisConfig) -> Result<Conn> {
    install_tls_provider();
    let client = redis::cluster::ClusterClient::builder(config.nodes.iter().map(String::as_str))
        .response_timeout(config.response_timeout)
        .connection_timeout(config.connection_timeout)
        .retries(u32::try_from(config.reconnect_retries).unwrap_or(u32::MAX))
        .build()
        .map_err(|e| Error::Config(format!("invalid Redis Cluster URLs: {e}")))?;
    let nodes: Vec<String> = config.nodes.iter().map(|n| redact(n)).collect();
    let target = Target {
        name: format!("redis cluster [{}]", nodes.join(", ")),
        db: 0,
    };
    let worker = Worker::start()?;
    let conn = idempotency_core::block_on(worker.run(client.get_async_connection()))
        .map_err(|e| target.error("connect", e))?;
    Ok(Conn::fixed(AsyncConn::Cluster(conn), worker, target))
}

#[cfg(not(feature = "cluster"))]
fn open_cluster(_: &RedisConfig) -> Result<Conn> {
    Err(Error::Config(
        "Redis Cluster needs the `cluster` feature".into(),
    ))
}

/// rustls needs a process-wide crypto provider for `rediss://`; install ring's unless the
/// application installed one already (then this is a no-op).
fn install_tls_provider() {
    #[cfg(feature = "tls")]
    {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A URL with its password replaced by `***`, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_password() {
        assert_eq!(redact("redis://u:secret@h:1/2"), "redis://u:***@h:1/2");
        assert_eq!(redact("redis://:secret@h"), "redis://:***@h");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }
}
