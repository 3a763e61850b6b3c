//! Connection and namespace settings of a [`RedisStorage`](crate::RedisStorage).

use std::time::Duration;

use idempotency_core::{Error, Result};

use crate::replication::Replication;
use crate::RedisStorage;

/// Settings for opening a [`RedisStorage`]: where Redis is, the key prefix, time-outs.
///
/// ```no_run
/// use std::time::Duration;
/// use idempotency_redis::RedisConfig;
///
/// let store = RedisConfig::new("redis://:secret@127.0.0.1:6379/2")
///     .prefix("billing:idem:")
///     .response_timeout(Duration::from_secs(2))
///     .open()?;
/// # Ok::<(), idempotency_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub(crate) nodes: Vec<String>,
    pub(crate) cluster: bool,
    pub(crate) prefix: String,
    pub(crate) response_timeout: Duration,
    pub(crate) connection_timeout: Duration,
    pub(crate) reconnect_retries: usize,
    pub(crate) fence_retention: Duration,
    pub(crate) replication: Option<Replication>,
}

impl RedisConfig {
    /// The default key prefix (namespace).
    pub const DEFAULT_PREFIX: &'static str = "idempotency:";
    /// The default response time-out: 5 s.
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
    /// The default connection time-out: 2 s.
    pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
    /// The default number of reconnection attempts per outage detection: 2.
    pub const DEFAULT_RECONNECT_RETRIES: usize = 2;
    /// The default fence retention: 1 hour.
    pub const DEFAULT_FENCE_RETENTION: Duration = Duration::from_secs(3600);

    /// Settings for one Redis server at `url`:
    /// `redis://[[user]:password@]host[:port][/db]`, or `rediss://...` for TLS (feature
    /// `redis-tls` of `idempotency`, `tls` of this crate).
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            nodes: vec![url.into()],
            cluster: false,
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
            connection_timeout: Self::DEFAULT_CONNECTION_TIMEOUT,
            reconnect_retries: Self::DEFAULT_RECONNECT_RETRIES,
            fence_retention: Self::DEFAULT_FENCE_RETENTION,
            replication: None,
        }
    }

    /// Settings for a Redis Cluster reached through the seed node URLs `nodes` (feature
    /// `cluster`).
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub fn cluster<S: Into<String>>(nodes: impl IntoIterator<Item = S>) -> Self {
        let mut config = Self::new(String::new());
        config.nodes = nodes.into_iter().map(Into::into).collect();
        config.cluster = true;
        config
    }

    /// The key prefix (namespace) put before every record key; default
    /// [`DEFAULT_PREFIX`](Self::DEFAULT_PREFIX). Stores with different prefixes never see each
    /// other's records.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long to wait for a reply before a call fails with [`Error::Storage`]; default 5 s.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long one connection attempt may take; default 2 s.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// How many times a lost async connection is retried (with exponential back-off from
    /// 100 ms, at most 1 s apart) before the calls waiting on it fail; default 2. The next call
    /// after a failed reconnection starts a new one, so the store recovers whenever Redis is
    /// back. A sync call makes a new connection when it needs one (at most one more after a
    /// failure, as its retry allows), without back-off.
    pub fn reconnect_retries(mut self, retries: usize) -> Self {
        self.reconnect_retries = retries;
        self
    }

    /// How long a `Pending` record's key outlives its lease, so that the fencing token of a
    /// crashed holder survives and the next takeover gets the next token (SEMANTICS.md
    /// scenario 10); default 1 hour. After it, the key vanishes and the next claim starts
    /// again at token 1 (still fenced by the execution id).
    pub fn fence_retention(mut self, retention: Duration) -> Self {
        self.fence_retention = retention;
        self
    }

    /// Replicated claims (SEMANTICS.md scenario 25): after each write that a failover must not
    /// lose, the store sends `WAIT replicas timeout` and requires that many replicas to have
    /// acknowledged it; off by default. Redis replication is asynchronous, so without this a
    /// primary can acknowledge a claim and die before any replica has it, and the promoted
    /// replica lets a second caller claim the key and run the function again. `WAIT` narrows
    /// that window; it does not close it (Redis can still lose an acknowledged write in some
    /// failovers, and the fencing token cannot be trusted across one).
    ///
    /// When fewer than `replicas` replicas acknowledge within `timeout` (Redis's clock), the
    /// call fails closed with [`Error::Storage`] (kind `StoreUnavailable`) whose source is a
    /// [`NotReplicated`](crate::NotReplicated). The write itself was applied on the primary:
    /// - **claim**: nothing runs. The store then releases the claim (an owner-checked delete),
    ///   so a retry claims the key again at once and waits again. If that release fails too,
    ///   the pending record blocks the key until its lease ends (never a double run).
    /// - **complete / fail**: the function ran and its outcome is stored on the primary, which
    ///   replays it; a failover before a replica has it brings back the pending claim (which
    ///   was replicated: the claim waited), so the key stays blocked until the lease ends and
    ///   may then run again (scenario 24). Retrying the completion with the same owner (the
    ///   manager's completion attempts do) finds its own finished record, answers it as
    ///   applied, and waits again; when every attempt fails the manager returns
    ///   [`Error::CompletionNotRecorded`] with the value.
    /// - **renew**: the lease was extended on the primary; the renewal reports the error, and
    ///   the next one tries again.
    ///
    /// Releases and deletes do not wait (a lost release only blocks the key until its lease
    /// ends). A hit (replay) never waits. Each wait costs one extra round trip on a claim of a
    /// fresh key, none on a completion or renewal (the `WAIT` is pipelined with the script).
    /// `replicas` must be at least 1, and `timeout` greater than zero and shorter than the
    /// [`response_timeout`](Self::response_timeout) (checked by [`open`](Self::open)).
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.replication = Some(Replication { replicas, timeout });
        self
    }

    /// Connects and returns the store: makes one sync connection to the server, so that an
    /// unreachable server or refused credentials fail here (for a cluster, connects to every
    /// node through the store's background thread). The other connections are made on first
    /// use (see the crate documentation, "Connecting").
    ///
    /// # Errors
    /// [`Error::Config`] for a URL that does not parse, a zero time-out or fence retention, a
    /// [`wait_for_replicas`](Self::wait_for_replicas) setting out of range, or a
    /// `rediss://` URL without the TLS feature (the message names it); [`Error::Storage`] when
    /// Redis cannot be reached or refuses the credentials, its message naming the server and the
    /// cause (`connection refused`, `timed out`, `DNS lookup failed`, `bad database number`, ...).
    pub fn open(self) -> Result<RedisStorage> {
        if self.response_timeout.is_zero() || self.connection_timeout.is_zero() {
            return Err(Error::Config(
                "Redis time-outs must be greater than zero".into(),
            ));
        }
        if self.fence_retention.is_zero() {
            return Err(Error::Config(
                "the Redis fence retention must be greater than zero".into(),
            ));
        }
        if let Some(r) = self.replication {
            if r.replicas == 0 || r.timeout.is_zero() || r.timeout >= self.response_timeout {
                return Err(Error::Config(format!(
                    "`wait_for_replicas({}, {:?})`: needs at least 1 replica and a time-out \
                     greater than zero and shorter than the response time-out ({:?})",
                    r.replicas, r.timeout, self.response_timeout
                )));
            }
        }
        if self.nodes.is_empty() || self.nodes.iter().any(|n| n.trim().is_empty()) {
            return Err(Error::Config("a Redis URL is empty".into()));
        }
        RedisStorage::connect(self)
    }
}
