//! Sending requests: one round trip each (a pipeline whose first command may be a script
//! call), retried once by a single policy, with Redis errors mapped to [`Error::Storage`] in
//! one place.

use idempotency_core::{Error, Result};
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use crate::error::Target;
use crate::reply::ReplyError;
use crate::scripts::Script;
use crate::server::Server;
use crate::worker::Worker;

/// When a failed request is sent again (once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Only when nothing was sent (the connection was refused, e.g. a stale failed reconnection
    /// reported once before the next one starts): safe for every request, and the only retry
    /// for those whose answer a lost reply would falsify (a `DEL` applied twice answers 0).
    IfUnsent,
    /// Also when the reply was lost (time-out, connection dropped after sending): Redis may
    /// have applied the request, and the request recognises its own effect found already
    /// applied (a claim its own pending record, a finish its own finished record; SEMANTICS.md
    /// scenario 5), and for reads.
    IfAmbiguous,
}

impl Retry {
    /// Whether to send again after `e`, and if so whether the first attempt may have been
    /// applied.
    pub(crate) fn after(self, e: &RedisError) -> Option<bool> {
        if e.is_connection_refusal() {
            return Some(false);
        }
        let ambiguous = e.is_timeout()
            || e.is_io_error()
            || e.is_connection_dropped()
            || e.is_unrecoverable_error();
        (self == Retry::IfAmbiguous && ambiguous).then_some(true)
    }
}

/// One round trip: script calls and plain commands, sent as one pipeline.
pub(crate) struct Request {
    /// The store step, for errors (`claim`, `complete`, ...).
    pub(crate) op: &'static str,
    pub(crate) retry: Retry,
    /// The pipeline as sent first (scripts as `EVALSHA`).
    pipe: Pipeline,
    /// The scripts, by their command's index in `pipe`.
    scripts: Vec<(usize, &'static Script)>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The arguments may carry results and keys: only the shape is shown.
        f.debug_struct("Request")
            .field("op", &self.op)
            .field("retry", &self.retry)
            .field("commands", &self.pipe.len())
            .field("scripts", &self.scripts)
            .finish()
    }
}

impl Request {
    /// A request for step `op`, retried by `retry`.
    pub(crate) fn new(op: &'static str, retry: Retry) -> Request {
        let mut pipe = Pipeline::with_capacity(3);
        pipe.ignore_errors();
        Request {
            op,
            retry,
            pipe,
            scripts: Vec::new(),
        }
    }

    /// Adds a call of `script` on `keys` with `args` (`EVALSHA`, or `EVAL` on `NOSCRIPT`).
    pub(crate) fn script<K: redis::ToRedisArgs, A: redis::ToRedisArgs>(
        mut self,
        script: &'static Script,
        keys: &[K],
        args: &[A],
    ) -> Request {
        let mut cmd = Cmd::with_capacity(3 + keys.len() + args.len(), 64 + 80 * keys.len());
        cmd.arg("EVALSHA").arg(&script.sha).arg(keys.len());
        for k in keys {
            cmd.arg(k);
        }
        for a in args {
            cmd.arg(a);
        }
        self.scripts.push((self.pipe.len(), script));
        self.pipe.add_command(cmd);
        self
    }

    /// Adds a plain command.
    pub(crate) fn cmd(mut self, cmd: Cmd) -> Request {
        self.pipe.add_command(cmd);
        self
    }

    /// The pipeline with every script sent as `EVAL` with its source (after `NOSCRIPT`).
    fn with_sources(&self) -> Pipeline {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (i, cmd) in self.pipe.cmd_iter().enumerate() {
            match self.scripts.iter().find(|(at, _)| *at == i) {
                Some((_, script)) => {
                    let mut full = redis::cmd("EVAL");
                    full.arg(&script.source);
                    for arg in cmd.args_iter().skip(2) {
                        if let redis::Arg::Simple(a) = arg {
                            full.arg(a);
                        }
                    }
                    pipe.add_command(full);
                }
                None => {
                    pipe.add_command(cmd.clone());
                }
            }
        }
        pipe
    }

    /// Whether a reply says Redis had one of the scripts not cached (it ran none of those).
    fn missed_script(&self, values: &[Value]) -> bool {
        self.scripts.iter().any(|(i, _)| {
            matches!(values.get(*i), Some(Value::ServerError(e))
                if e.kind() == Some(redis::ServerErrorKind::NoScript))
        })
    }
}

/// The replies of a request, one per command, with what the retry policy saw.
#[derive(Debug)]
pub(crate) struct Replies {
    pub(crate) values: Vec<Value>,
    /// The request was sent again after a first attempt that may have been applied.
    pub(crate) retried_after_loss: bool,
}

impl Replies {
    /// How many replies there are (one per command sent).
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }
}

/// An async connection: a single server through a reconnecting `ConnectionManager`, or a
/// cluster.
#[derive(Clone)]
pub(crate) enum AsyncConn {
    Single(ConnectionManager),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for AsyncConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            AsyncConn::Single(c) => c.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            AsyncConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            AsyncConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "cluster")]
            AsyncConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            AsyncConn::Single(c) => c.get_db(),
            #[cfg(feature = "cluster")]
            AsyncConn::Cluster(c) => c.get_db(),
        }
    }
}

/// Where requests go, and the server's name for errors.
pub(crate) struct Conn {
    pub(crate) target: Target,
    route: Route,
}

enum Route {
    /// A single server reached through a client: a sync connection on the caller's thread for
    /// sync callers, a multiplexed connection on the caller's own runtime for async ones.
    Server(Box<Server>),
    /// One given async connection (a caller's connection manager, or a cluster), polled with
    /// the store's background runtime entered.
    Fixed { conn: AsyncConn, worker: Worker },
}

impl Conn {
    /// Requests to a single server through `server`.
    pub(crate) fn server(server: Server, target: Target) -> Conn {
        Conn {
            target,
            route: Route::Server(Box::new(server)),
        }
    }

    /// Requests on one given async connection, driven by `worker` when the caller has no
    /// runtime.
    pub(crate) fn fixed(conn: AsyncConn, worker: Worker, target: Target) -> Conn {
        Conn {
            target,
            route: Route::Fixed { conn, worker },
        }
    }

    /// Whether this is a cluster connection.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(
            &self.route,
            Route::Fixed { conn, .. } if !matches!(conn, AsyncConn::Single(_))
        )
    }

    /// Sends `req` (one round trip; two when Redis did not have a script cached, or when the
    /// retry policy sends it again) and returns its replies. A sync caller's request
    /// ([`idempotency_core::in_block_on`]) is sent on a sync connection on its own thread; an
    /// async caller's on a multiplexed connection driven by its own tokio runtime, or, with no
    /// runtime, by the store's background thread.
    ///
    /// # Errors
    /// [`Error::Storage`] for step `req.op` when Redis cannot be reached or the reply is lost
    /// (after the retry its policy allows).
    pub(crate) async fn exec(&self, req: &Request) -> Result<Replies> {
        let sent = match &self.route {
            Route::Server(server) => server.exec(req).await,
            Route::Fixed { conn, worker } => worker.run(send(&mut conn.clone(), req)).await,
        };
        sent.map_err(|e| match e {
            Failure::Redis(e) => self.target.error(req.op, e),
            Failure::Store(e) => e,
        })
    }

    /// The reply at `i` of `replies`; a server error there (a script error, `WRONGTYPE`, ...)
    /// becomes [`Error::Storage`] for step `op`.
    pub(crate) fn take(&self, op: &'static str, replies: &mut Replies, i: usize) -> Result<Value> {
        let v = replies
            .values
            .get_mut(i)
            .map(std::mem::take)
            .ok_or_else(|| reply_error(op, ReplyError(format!("missing reply {i}"))))?;
        v.extract_error().map_err(|e| self.target.error(op, e))
    }
}

/// Why a request failed: Redis's error (mapped by the caller, which knows the server), or a
/// store error already (the background thread could not start).
#[derive(Debug)]
pub(crate) enum Failure {
    Redis(RedisError),
    Store(Error),
}

impl From<RedisError> for Failure {
    fn from(e: RedisError) -> Failure {
        Failure::Redis(e)
    }
}

/// [`Error::Storage`] for a reply of the wrong shape.
pub(crate) fn reply_error(op: &'static str, e: ReplyError) -> Error {
    Error::storage(op, e)
}

/// Sends `req` on `conn`, retried once as its policy allows.
pub(crate) async fn send<C: ConnectionLike>(
    conn: &mut C,
    req: &Request,
) -> Result<Replies, Failure> {
    match attempt(conn, req).await {
        Err(e) => match req.retry.after(&e) {
            Some(maybe_applied) => Ok(Replies {
                values: attempt(conn, req).await?,
                retried_after_loss: maybe_applied,
            }),
            None => Err(e.into()),
        },
        Ok(values) => Ok(Replies {
            values,
            retried_after_loss: false,
        }),
    }
}

/// One attempt: the pipeline, and again with the scripts' sources when Redis had one of them
/// not cached (the scripts are idempotent for their caller, so running the others again is
/// safe).
async fn attempt<C: ConnectionLike>(conn: &mut C, req: &Request) -> RedisResult<Vec<Value>> {
    let values: Vec<Value> = req.pipe.query_async(conn).await?;
    if req.missed_script(&values) {
        return req.with_sources().query_async(conn).await;
    }
    Ok(values)
}

/// [`attempt`] on a sync connection.
pub(crate) fn attempt_sync(conn: &mut redis::Connection, req: &Request) -> RedisResult<Vec<Value>> {
    let values = query_sync(conn, &req.pipe)?;
    if req.missed_script(&values) {
        return query_sync(conn, &req.with_sources());
    }
    Ok(values)
}

/// Sends `pipe` and reads its replies (a server error is a `Value::ServerError` among them).
/// The first failed read ends it (`Pipeline::query` would wait out the read time-out once per
/// command still unread), and the caller then drops the connection.
fn query_sync(conn: &mut redis::Connection, pipe: &Pipeline) -> RedisResult<Vec<Value>> {
    conn.send_packed_command(&pipe.get_packed_pipeline())?;
    let mut values = Vec::with_capacity(pipe.len());
    for _ in 0..pipe.len() {
        values.push(conn.recv_response()?);
    }
    Ok(values)
}
