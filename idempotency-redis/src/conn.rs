//! Sending requests: one round trip each (a pipeline whose first command may be a script
//! call), retried once by a single policy, with Redis errors mapped to [`Error::Storage`] in
//! one place.

use idempotency_core::{Error, Result};
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use crate::error::Target;
use crate::reply::ReplyError;
use crate::scripts::Script;
use crate::worker::Worker;

/// When a failed request is sent again (once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Only when nothing was sent (the connection was refused, e.g. a stale failed reconnection
    /// reported once before the next one starts): safe for every request.
    IfUnsent,
    /// Also when the reply was lost (time-out, connection dropped after sending): Redis may
    /// have applied the request, and the request recognises its own effect found already
    /// applied (a claim its own pending record, a finish its own finished record; SEMANTICS.md
    /// scenario 5).
    IfAmbiguous,
}

impl Retry {
    /// Whether to send again after `e`, and if so whether the first attempt may have been
    /// applied.
    fn after(self, e: &RedisError) -> Option<bool> {
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
#[derive(Debug)]
pub(crate) struct Request {
    /// The store step, for errors (`claim`, `complete`, ...).
    pub(crate) op: &'static str,
    retry: Retry,
    /// Each command, with the script it runs (as `EVALSHA`) if it is a script call.
    parts: Vec<(Cmd, Option<&'static Script>)>,
}

impl Request {
    /// A request for step `op`, retried by `retry`.
    pub(crate) fn new(op: &'static str, retry: Retry) -> Request {
        Request {
            op,
            retry,
            parts: Vec::with_capacity(2),
        }
    }

    /// Adds a call of `script` on `keys` with `args` (`EVALSHA`, or `EVAL` on `NOSCRIPT`).
    pub(crate) fn script<K: redis::ToRedisArgs, A: redis::ToRedisArgs>(
        mut self,
        script: &'static Script,
        keys: &[K],
        args: &[A],
    ) -> Request {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&script.sha).arg(keys.len());
        for k in keys {
            cmd.arg(k);
        }
        for a in args {
            cmd.arg(a);
        }
        self.parts.push((cmd, Some(script)));
        self
    }

    /// Adds a plain command.
    pub(crate) fn cmd(mut self, cmd: Cmd) -> Request {
        self.parts.push((cmd, None));
        self
    }

    /// The pipeline to send: scripts as `EVALSHA`, or as `EVAL` with their source (`eval`).
    fn pipeline(&self, eval: bool) -> Pipeline {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (cmd, script) in &self.parts {
            match script {
                Some(script) if eval => {
                    let mut full = redis::cmd("EVAL");
                    full.arg(&script.source);
                    for arg in cmd.args_iter().skip(2) {
                        if let redis::Arg::Simple(a) = arg {
                            full.arg(a);
                        }
                    }
                    pipe.add_command(full);
                }
                _ => {
                    pipe.add_command(cmd.clone());
                }
            }
        }
        pipe
    }

    /// Whether a reply says Redis had one of the scripts not cached (it ran none of those).
    fn missed_script(&self, values: &[Value]) -> bool {
        self.parts.iter().zip(values).any(|((_, script), v)| {
            script.is_some()
                && matches!(v, Value::ServerError(e) if e.kind() == Some(redis::ServerErrorKind::NoScript))
        })
    }
}

/// The replies of a request, one per command, with what the retry policy saw.
#[derive(Debug)]
pub(crate) struct Replies {
    values: Vec<Value>,
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

/// Where requests go: the connection, the runtime that drives it, and the server's name.
pub(crate) struct Conn {
    pub(crate) conn: AsyncConn,
    pub(crate) worker: Worker,
    pub(crate) target: Target,
}

impl Conn {
    /// Whether this is a cluster connection.
    pub(crate) fn is_cluster(&self) -> bool {
        !matches!(self.conn, AsyncConn::Single(_))
    }

    /// Sends `req` (one round trip; two when Redis did not have the script cached, or when the
    /// retry policy sends it again) and returns its replies.
    ///
    /// # Errors
    /// [`Error::Storage`] for step `req.op` when Redis cannot be reached or the reply is lost
    /// (after the retry its policy allows).
    pub(crate) async fn exec(&self, req: &Request) -> Result<Replies> {
        let mut conn = self.conn.clone();
        self.worker
            .run(send(&mut conn, req))
            .await
            .map_err(|e| self.target.error(req.op, e))
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

    /// All replies, unchecked (the caller reads server errors itself).
    pub(crate) fn all(replies: Replies) -> Value {
        Value::Array(replies.values)
    }
}

/// [`Error::Storage`] for a reply of the wrong shape.
pub(crate) fn reply_error(op: &'static str, e: ReplyError) -> Error {
    Error::storage(op, e)
}

/// Sends `req` on `conn`, retried once as its policy allows.
async fn send<C: ConnectionLike>(conn: &mut C, req: &Request) -> RedisResult<Replies> {
    match attempt(conn, req).await {
        Err(e) => match req.retry.after(&e) {
            Some(maybe_applied) => attempt(conn, req).await.map(|values| Replies {
                values,
                retried_after_loss: maybe_applied,
            }),
            None => Err(e),
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
    let values: Vec<Value> = req.pipeline(false).query_async(conn).await?;
    if req.missed_script(&values) {
        return req.pipeline(true).query_async(conn).await;
    }
    Ok(values)
}
