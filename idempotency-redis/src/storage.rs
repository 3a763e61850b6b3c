//! `RedisStorage`: the [`Storage`] implementation.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use idempotency_core::{
    Claim, ClaimRequest, Error, IdempotencyKey, Observed, Owner, Page, Record, RecordError,
    RecordStatus, Result, Storage, StorageAdmin, Timestamp,
};
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};

use crate::config::RedisConfig;
use crate::conn::{reply_error, Conn, Replies, Request, Retry};
use crate::replication::Replication;
use crate::reply::{ClaimReply, FastClaim, FinishReply, GetReply, ReleaseReply, ReplyError, Times};
use crate::scripts::{CLAIM, FINISH, GET, RELEASE, RENEW, TOUCH};
use crate::value::{self, n16};
use crate::{connect, layout, reply};

/// The Redis store: records live in Redis (or a Redis Cluster), one string per record; a claim
/// is one pipelined `TIME` + `SET NX PX GET` (falling back to a script when it meets a pending
/// record), and every other state transition is one Lua script run atomically by Redis on
/// Redis's clock.
///
/// See the [crate documentation](crate) for the data layout, the scripts and the guarantees.
/// Clones share one connection; [`prefix`](Self::prefix) gives a clone in another namespace.
///
/// The store's futures can be driven by any executor or by [`idempotency_core::block_on`] on
/// any thread, inside or outside a tokio runtime: sync callers get a sync connection on their
/// own thread, async ones a multiplexed connection driven by their own runtime (see the crate
/// documentation, "Connecting"). Dropping the last clone closes the connections, never
/// blocking the caller.
#[derive(Clone)]
pub struct RedisStorage {
    pub(crate) conn: Arc<Conn>,
    pub(crate) prefix: Arc<str>,
    fence_retention_ms: u64,
    replication: Option<Replication>,
}

impl fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStorage")
            .field("target", &self.conn.target.name)
            .field("prefix", &self.prefix)
            .field("fence_retention_ms", &self.fence_retention_ms)
            .field("replication", &self.replication)
            .finish_non_exhaustive()
    }
}

/// The longest TTL or lease the store keeps, in ms (about 31 700 years; longer ones, up to
/// `Duration::MAX`, are kept this long). Times in a value are 16 decimal digits and the
/// scripts add them in Lua numbers (doubles, exact below 2^53), and Redis refuses an expiry
/// past `i64::MAX` ms: `now + MAX_MILLIS` stays well inside all three.
const MAX_MILLIS: u64 = 1_000_000_000_000_000;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_MILLIS)
}

impl RedisStorage {
    /// Connects to the Redis server at `url` with default settings (prefix `idempotency:`),
    /// `redis://[[user]:password@]host[:port][/db]` or `rediss://...` (TLS: feature `redis-tls`
    /// of `idempotency`, `tls` of this crate). Use [`RedisConfig`] for other settings.
    ///
    /// # Errors
    /// [`Error::Config`] for a URL that does not parse, or a `rediss://` URL without the TLS
    /// feature (the message names it); [`Error::Storage`] when Redis cannot be reached or
    /// refuses the credentials, its message naming the server and the cause (`connection
    /// refused`, `timed out`, `DNS lookup failed`, `bad database number`, ...).
    pub fn open(url: &str) -> Result<RedisStorage> {
        RedisConfig::new(url).open()
    }

    /// Settings for a store at `url`, to adjust before [`RedisConfig::open`].
    pub fn builder(url: impl Into<String>) -> RedisConfig {
        RedisConfig::new(url)
    }

    /// Connects to a Redis Cluster through the seed nodes `nodes` with default settings
    /// (feature `cluster`).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub fn open_cluster<S: Into<String>>(nodes: impl IntoIterator<Item = S>) -> Result<Self> {
        RedisConfig::cluster(nodes).open()
    }

    /// A store over an existing `client`, with default settings otherwise (prefix, time-outs).
    ///
    /// # Errors
    /// [`Error::Storage`] when Redis cannot be reached.
    pub fn from_client(client: redis::Client) -> Result<RedisStorage> {
        let config = RedisConfig::new(client.get_connection_info().addr().to_string());
        let conn = connect::open_client(client, &config)?;
        Ok(Self::assemble(conn, &config))
    }

    /// A store over an existing connection manager, which every call uses (sync ones too).
    /// Its driver task runs on the runtime that created it, so that runtime must keep running
    /// while the store is used, and a sync call from that runtime's only thread would wait on
    /// it forever; prefer [`from_client`](Self::from_client), which serves each caller on its
    /// own thread or runtime.
    ///
    /// # Errors
    /// [`Error::Storage`] if the store's background thread cannot be started.
    pub fn from_connection_manager(manager: ConnectionManager) -> Result<RedisStorage> {
        let conn = connect::from_manager(manager)?;
        Ok(Self::assemble(conn, &RedisConfig::new(String::new())))
    }

    /// A clone of this store (same connection) whose records live under `prefix` instead.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// The key prefix (namespace) of this store.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key holding the record of `key`: the prefix, then `{` + the hex SHA-256 of the
    /// idempotency key + `}` (the braces are a Cluster hash tag). The idempotency key itself is
    /// never part of a Redis key, so any input is binary-safe and glob-free.
    pub fn record_key(&self, key: &IdempotencyKey) -> String {
        record_key(&self.prefix, key)
    }

    pub(crate) fn connect(config: RedisConfig) -> Result<RedisStorage> {
        let conn = connect::open(&config)?;
        Ok(Self::assemble(conn, &config))
    }

    fn assemble(conn: Conn, config: &RedisConfig) -> RedisStorage {
        RedisStorage {
            conn: Arc::new(conn),
            prefix: Arc::from(config.prefix.as_str()),
            fence_retention_ms: millis(config.fence_retention),
            replication: config.replication,
        }
    }

    /// Where the record of `key` lives, for errors.
    fn location(&self, key: &IdempotencyKey) -> String {
        format!("{} ({})", key, self.conn.target.name)
    }

    /// Reads a stored value as the record of `key` (see [`value::decode`]).
    fn decode(&self, key: &IdempotencyKey, value: &[u8], times: Times) -> Result<Record> {
        value::decode(key, value, times, &|| self.location(key))
    }

    fn not_a_record(&self, key: &IdempotencyKey) -> Error {
        Error::CorruptRecord {
            key: self.location(key),
            reason: "a Redis key of another type, not a record string".into(),
        }
    }

    /// Sends `req` and decodes its first reply with `parse`; the other replies are returned.
    pub(crate) async fn run<T>(
        &self,
        req: Request,
        parse: impl FnOnce(redis::Value) -> std::result::Result<T, ReplyError>,
    ) -> Result<(T, Replies)> {
        let op = req.op;
        let mut replies = self.conn.exec(&req).await?;
        let v = self.conn.take(op, &mut replies, 0)?;
        let parsed = parse(v).map_err(|e| reply_error(op, e))?;
        Ok((parsed, replies))
    }

    /// With replicated claims, `req` followed by `touch` (the holder's record written again on
    /// this connection, as `req` left it) and `WAIT`, so the wait covers the record whatever
    /// `req` found (a retry finds its own effect already applied, by another connection).
    fn replicated(&self, req: Request, redis_key: &str, owner: &Owner) -> Request {
        match &self.replication {
            None => req,
            Some(r) => req
                .script(&TOUCH, &[redis_key], &[value::owner_token(owner)])
                .cmd(r.wait_cmd()),
        }
    }

    /// With replicated claims, checks the `WAIT` that [`replicated`](Self::replicated) added
    /// (the last reply).
    fn check_replicated(&self, op: &'static str, replies: &mut Replies) -> Result<()> {
        let Some(r) = &self.replication else {
            return Ok(());
        };
        let last = replies.len().saturating_sub(1);
        let acknowledged =
            reply::parse_int(self.conn.take(op, replies, last)?).map_err(|e| reply_error(op, e))?;
        r.check(&self.conn.target, op, acknowledged)
    }

    /// With replicated claims (its caller checks), waits for the replicas to have `owner`'s
    /// fresh claim; when too few acknowledge, releases it (nothing ran) and fails closed.
    async fn replicate_claim(&self, key: &IdempotencyKey, owner: &Owner) -> Result<()> {
        let redis_key = self.record_key(key);
        let req = self.replicated(Request::new("claim", Retry::IfAmbiguous), &redis_key, owner);
        let waited = async {
            let mut replies = self.conn.exec(&req).await?;
            let touched = reply::parse_int(self.conn.take("claim", &mut replies, 0)?)
                .map_err(|e| reply_error("claim", e))?;
            if touched != 1 {
                return Err(Error::LeaseLost { key: key.clone() });
            }
            self.check_replicated("claim", &mut replies)
        };
        match waited.await {
            Ok(()) => Ok(()),
            Err(e) => {
                // Best effort: a failed release leaves the claim to its lease.
                let _ = self.release(key, owner).await;
                Err(e)
            }
        }
    }

    /// The claim fast path: `TIME` and `SET key value NX PX ms GET` in one round trip, retried
    /// once when its reply was lost (a retry finds the caller's own pending value and goes on
    /// to the claim script).
    async fn fast_claim(&self, key: String, value: Vec<u8>, px: u64) -> Result<FastClaim> {
        let mut set = redis::Cmd::with_capacity(7, key.len() + value.len() + 40);
        set.arg("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(px)
            .arg("GET");
        let req = Request::new("claim", Retry::IfAmbiguous)
            .cmd(cmd_with("TIME", 0))
            .cmd(set);
        let mut replies = self.conn.exec(&req).await?;
        if let Some(redis::Value::ServerError(e)) = replies.values.get(1) {
            if e.code() == "WRONGTYPE" {
                return Ok(FastClaim::WrongType);
            }
        }
        // Any other server error (READONLY, OOM, NOAUTH, ...) keeps its cause and server.
        let time = self.conn.take("claim", &mut replies, 0)?;
        let set = self.conn.take("claim", &mut replies, 1)?;
        FastClaim::parse(time, set).map_err(|e| reply_error("claim", e))
    }

    /// The claim script (the slow path and the cache bypass).
    async fn claim_script(
        &self,
        key: &IdempotencyKey,
        req: &ClaimRequest,
        lease_ms: u64,
    ) -> Result<Claim> {
        let args: [&[u8]; 6] = [
            req.execution_id.as_bytes(),
            &req.fingerprint.0,
            &n16(lease_ms),
            if req.refresh { b"1" } else { b"0" },
            &n16(self.fence_retention_ms),
            &value::body(key, &[], None)?,
        ];
        let request = Request::new("claim", Retry::IfAmbiguous).script(
            &CLAIM,
            &[self.record_key(key)],
            &args,
        );
        let ((now, reply), _) = self.run(request, ClaimReply::parse).await?;
        let acquired = |until, token, takeover| Claim::Acquired {
            owner: Owner {
                execution_id: req.execution_id,
                fencing_token: token,
            },
            lease_until: Timestamp(until),
            takeover,
        };
        match reply {
            ClaimReply::Existing { value, times, .. } => Ok(Claim::Existing(Observed {
                record: self.decode(key, &value, times)?,
                now: Timestamp(now),
            })),
            ClaimReply::Claimed {
                until,
                takeover,
                token,
            } => Ok(acquired(until, token, takeover)),
            ClaimReply::Own { until, token } => Ok(acquired(until, token, false)),
            ClaimReply::WrongType => Err(self.not_a_record(key)),
        }
    }

    /// A claim: the fast path, then the claim script when it met a pending value.
    async fn claim(&self, key: &IdempotencyKey, req: &ClaimRequest) -> Result<Claim> {
        let lease_ms = millis(req.lease);
        if req.refresh {
            return Box::pin(self.claim_script(key, req, lease_ms)).await;
        }
        let value = value::fast_pending(
            key,
            &req.execution_id,
            &req.fingerprint,
            lease_ms,
            self.fence_retention_ms,
        )?;
        let px = lease_ms.saturating_add(self.fence_retention_ms);
        match self.fast_claim(self.record_key(key), value, px).await? {
            FastClaim::WrongType => Err(self.not_a_record(key)),
            // Absent: claimed with token 1. The lease ends at the SET's time + lease, at or
            // after `now + lease` (TIME ran just before the SET): the holder's view is never
            // longer than the lease Redis keeps.
            FastClaim::Done {
                now,
                previous: None,
            } => Ok(Claim::Acquired {
                owner: Owner {
                    execution_id: req.execution_id,
                    fencing_token: 1,
                },
                lease_until: Timestamp(now.saturating_add(lease_ms)),
                takeover: false,
            }),
            // A finished value exists, so it is live: its key expires at its `UNTIL`.
            FastClaim::Done {
                now,
                previous: Some(old),
            } if value::stored_status(&old) != Some(layout::PENDING) => {
                Ok(Claim::Existing(Observed {
                    record: self.decode(key, &old, None)?,
                    now: Timestamp(now),
                }))
            }
            // A pending value: the caller's retried claim, a conflict or an expired lease.
            // (Boxed: the slow path's state stays out of every claim's future.)
            FastClaim::Done { .. } => Box::pin(self.claim_script(key, req, lease_ms)).await,
        }
    }

    async fn finish(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        status: RecordStatus,
        result: &[u8],
        error: Option<&RecordError>,
        ttl: Duration,
    ) -> Result<Record> {
        let op = if status == RecordStatus::Success {
            "complete"
        } else {
            "fail"
        };
        let ttl_ms = millis(ttl).to_string();
        let args: [&[u8]; 4] = [
            &value::owner_token(owner),
            &[value::status_byte(status)],
            ttl_ms.as_bytes(),
            &value::body(key, result, error)?,
        ];
        let redis_key = self.record_key(key);
        let req = Request::new(op, Retry::IfAmbiguous).script(&FINISH, &[&redis_key], &args);
        let (reply, mut replies) = self
            .run(self.replicated(req, &redis_key, owner), FinishReply::parse)
            .await?;
        if !matches!(reply, FinishReply::Refused) {
            self.check_replicated(op, &mut replies)?;
        }
        match reply {
            FinishReply::Refused => Err(Error::LeaseLost { key: key.clone() }),
            FinishReply::Finished {
                created,
                until,
                fingerprint,
            } => Ok(Record {
                key: key.clone(),
                status,
                result: result.to_vec(),
                error: error.cloned(),
                created_at: Timestamp(created),
                expires_at: Timestamp(until),
                owner: *owner,
                lease_until: None,
                fingerprint: idempotency_core::Fingerprint(
                    <[u8; 32]>::try_from(fingerprint.as_slice()).map_err(|_| {
                        Error::CorruptRecord {
                            key: self.location(key),
                            reason: "undecodable fingerprint".into(),
                        }
                    })?,
                ),
            }),
        }
    }
}

/// The command `name`, with room for `args` more arguments of a record key's size.
pub(crate) fn cmd_with(name: &str, args: usize) -> redis::Cmd {
    let mut cmd = redis::Cmd::with_capacity(1 + args, name.len() + 80 * args);
    cmd.arg(name);
    cmd
}

/// `prefix` + `{` + hex(SHA-256(key)) + `}`.
pub(crate) fn record_key(prefix: &str, key: &IdempotencyKey) -> String {
    let digest = Sha256::digest(key.as_str().as_bytes());
    let mut out = String::with_capacity(prefix.len() + 66);
    out.push_str(prefix);
    out.push('{');
    idempotency_core::hex::push(&mut out, &digest);
    out.push('}');
    out
}

impl Storage for RedisStorage {
    /// The key prefix ([`RedisConfig::prefix`](crate::RedisConfig::prefix)).
    fn namespace(&self, out: &mut String) {
        out.push_str("redis:");
        out.push_str(&self.prefix);
    }

    async fn try_claim(&self, key: &IdempotencyKey, req: &ClaimRequest) -> Result<Claim> {
        let claim = self.claim(key, req).await?;
        if let (Claim::Acquired { owner, .. }, Some(_)) = (&claim, &self.replication) {
            // Boxed: only replicated claims pay for its state.
            Box::pin(self.replicate_claim(key, owner)).await?;
        }
        Ok(claim)
    }

    async fn complete(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        result: &[u8],
        ttl: Duration,
    ) -> Result<Record> {
        self.finish(key, owner, RecordStatus::Success, result, None, ttl)
            .await
    }

    async fn fail(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        error: &RecordError,
        ttl: Duration,
    ) -> Result<Record> {
        self.finish(key, owner, RecordStatus::Failed, &[], Some(error), ttl)
            .await
    }

    async fn release(&self, key: &IdempotencyKey, owner: &Owner) -> Result<bool> {
        let req = Request::new("release", Retry::IfAmbiguous).script(
            &RELEASE,
            &[self.record_key(key)],
            &[value::owner_token(owner)],
        );
        let (reply, replies) = self.run(req, ReleaseReply::parse).await?;
        // Deleted now; or no record, which after a lost reply is the first attempt's delete
        // (answered as it would have been). Another record there (a newer holder, or a
        // finish): nothing was released, or it was and the key was claimed again since; both
        // read as "not released by this call", which never overstates what the caller held.
        Ok(match reply {
            ReleaseReply::Deleted => true,
            ReleaseReply::Absent => replies.retried_after_loss,
            ReleaseReply::Other => false,
        })
    }

    async fn renew(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        lease: Duration,
    ) -> Result<Timestamp> {
        let args: [&[u8]; 3] = [
            &value::owner_token(owner),
            &n16(millis(lease)),
            &n16(self.fence_retention_ms),
        ];
        let redis_key = self.record_key(key);
        let req = Request::new("renew", Retry::IfAmbiguous).script(&RENEW, &[&redis_key], &args);
        let (reply, mut replies) = self
            .run(self.replicated(req, &redis_key, owner), reply::parse_renew)
            .await?;
        match reply {
            None => Err(Error::LeaseLost { key: key.clone() }),
            Some(until) => {
                self.check_replicated("renew", &mut replies)?;
                Ok(Timestamp(until))
            }
        }
    }

    async fn get(&self, key: &IdempotencyKey) -> Result<Option<Observed>> {
        let no_args: [&[u8]; 0] = [];
        let req =
            Request::new("get", Retry::IfAmbiguous).script(&GET, &[self.record_key(key)], &no_args);
        match self.run(req, GetReply::parse).await?.0 {
            GetReply::Absent => Ok(None),
            GetReply::Value { now, value, times } => Ok(Some(Observed {
                record: self.decode(key, &value, times)?,
                now: Timestamp(now),
            })),
            GetReply::WrongType => Err(self.not_a_record(key)),
        }
    }

    async fn delete(&self, key: &IdempotencyKey) -> Result<bool> {
        let mut del = cmd_with("DEL", 1);
        del.arg(self.record_key(key));
        let req = Request::new("delete", Retry::IfUnsent).cmd(del);
        Ok(self.run(req, reply::parse_int).await?.0 > 0)
    }
}

// The three operator methods, together (their bodies are in `listing.rs`).
impl StorageAdmin for RedisStorage {
    /// Redis expires records natively (every write sets the key's expiry in the same
    /// command), so there is nothing to purge: always `Ok(0)`.
    async fn purge_expired(&self) -> Result<u64> {
        self.purge_expired_records().await
    }

    /// Lists this store's records with `SCAN` (`COUNT limit`, a hint: a page may hold more or
    /// fewer entries), matching only this store's own key shape (`prefix{<64 hex>}`, the prefix
    /// glob-escaped; never user input), then reads the page's records in one script with
    /// Redis's time. The cursor is Redis's `SCAN` cursor: a record present for the whole listing
    /// is returned at least once (possibly twice). Values that do not read as records (corrupt,
    /// another layout or format version, another Redis type, another key's record) are
    /// [`Listed::Unreadable`](idempotency_core::Listed::Unreadable), located by their Redis key.
    /// A Redis Cluster cannot be listed ([`Error::Config`]).
    async fn list(&self, cursor: Option<&str>, limit: usize) -> Result<Page> {
        self.list_page(cursor, limit).await
    }

    /// Removes the Redis key `location` (as listed) iff it is a record key of this store
    /// (`prefix{<64 hex>}`) and still holds exactly the unreadable content it was judged on:
    /// the check and the `DEL` run in one script, so a key rewritten meanwhile survives.
    async fn remove_unreadable(&self, location: &str) -> Result<bool> {
        self.remove_unreadable_at(location).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_20_record_keys_are_prefixed_hashed_and_hash_tagged() {
        let hostile = IdempotencyKey::derive("op", 1, &"*?[\n../x").unwrap().key;
        let key = record_key("p:", &hostile);
        assert!(key.starts_with("p:{") && key.ends_with('}'));
        assert_eq!(key.len(), 2 + 66);
        assert!(key[3..67].bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!key.contains(hostile.as_str()));
        let other = IdempotencyKey::derive("op", 1, &"*?[\n../y").unwrap().key;
        assert_ne!(record_key("p:", &other), key);
        assert_ne!(record_key("q:", &hostile), key);
    }

    #[test]
    fn record_keys_are_stable_across_builds() {
        // Records are found by this name: a change would run every live key once more. The
        // digest is `sha256sum` of the key's text, computed outside this code.
        let key =
            IdempotencyKey::parse("billing::charge:0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(
            record_key("idempotency:", &key),
            "idempotency:{e77816bc716e061106e07138bce73d67ab8ec912ea66c28ed657b4e032413bc3}"
        );
    }

    #[test]
    fn a_bad_url_is_a_config_error() {
        let e = RedisStorage::open("redis://[::1").unwrap_err();
        assert_eq!(e.kind(), idempotency_core::ErrorKind::Config);
    }

    #[test]
    fn an_unreachable_server_is_store_unavailable() {
        // Port 1 on loopback: nothing listens there.
        let e = RedisConfig::new("redis://127.0.0.1:1/")
            .reconnect_retries(0)
            .open()
            .unwrap_err();
        assert_eq!(e.kind(), idempotency_core::ErrorKind::StoreUnavailable);
    }
}
