//! An `Idempotency-Key` middleware for tower, axum and hyper, after the IETF draft "The
//! Idempotency-Key HTTP Header Field" (draft-ietf-httpapi-idempotency-key-header-07) and
//! Stripe's API, on any store of the `idempotency` framework. Not for direct use: depend on
//! `idempotency` with the feature `http`, which re-exports this crate as `idempotency::http`.
//!
//! [`IdempotencyLayer`] wraps a service. For a covered method (`POST` and `PATCH` by default)
//! with an `Idempotency-Key` header it:
//!
//! 1. parses the key (one RFC 8941 sf-string; a bare token too, see [`parse_key_header`]) and
//!    answers 400 (problem+json, RFC 9457) for an empty, over-long or list value or two header
//!    lines, and, when the key is [required](IdempotencyLayer::require_key), for a missing one;
//! 2. buffers the request body up to [`max_request_body`](IdempotencyLayer::max_request_body)
//!    (413 above it) and takes its fingerprint: method, path, query and body by default, or
//!    what [`fingerprint`](IdempotencyLayer::fingerprint) selects;
//! 3. runs the handler once per (scope, key) through
//!    [`IdempotencyManager::try_execute_transient`]: the first request runs it; its response
//!    (status, headers without hop-by-hop and [excluded](IdempotencyLayer::exclude_header)
//!    ones, body) is stored and replayed byte for byte, with `Idempotent-Replayed: true`;
//! 4. answers a request whose key is held by a running request with 409 (or waits and replays,
//!    under [`ConflictPolicy::Wait`]), and a request whose key was used for another fingerprint
//!    with 422, before the in-progress check, so even while the first one runs;
//! 5. stores neither 5xx (nor 408, 429) responses nor responses whose body is over
//!    [`max_stored_body`](IdempotencyLayer::max_stored_body): their claim is released, so a
//!    retry runs the handler again ([`store_if`](IdempotencyLayer::store_if) changes which
//!    statuses are stored).
//!
//! Keys are scoped per tenant by a closure over the request ([`scope`](IdempotencyLayer::scope)),
//! so two tenants' identical keys never meet. Every problem body's `type` links to the
//! documentation of its [`ProblemType`].
//!
//! ```
//! use idempotency_core::{IdempotencyManager, MemoryStorage};
//! use idempotency_http::IdempotencyLayer;
//!
//! let manager = IdempotencyManager::new(MemoryStorage::new());
//! let layer = IdempotencyLayer::new(manager)
//!     .require_key(true)
//!     .scope(|req| req.headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(String::from));
//! // axum: Router::new().route("/charges", post(create)).layer(layer)
//! # let _ = layer;
//! ```
//!
//! A request cancelled while its handler runs (the client went away, the server process died)
//! leaves its record `Pending` until the lease ends ([`lease`](IdempotencyLayer::lease));
//! until then retries get 409, after it exactly one retry runs the handler (SEMANTICS.md
//! scenario 9).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod body;
mod key;
mod problem;

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited};
use idempotency_core::{
    Call, ConflictPolicy, Error, FingerprintPolicy, IdempotencyManager, KeyEncoder,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use body::ResponseBody;
pub use key::{parse_key_header, parse_key_value, KeyError, MAX_KEY_BYTES};
pub use problem::{ProblemType, DEFAULT_PROBLEM_BASE};

/// The request header that carries the idempotency key (the IETF draft, section 2).
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The response header that marks a replayed response (`Idempotent-Replayed: true`, as Stripe
/// sends it).
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The body the wrapped service receives: the buffered body for a covered request, the original
/// one otherwise.
pub type RequestBody<B> = Either<Full<Bytes>, B>;

/// Hop-by-hop headers (RFC 9110 section 7.6.1), never stored; nor is any header that
/// `Connection` names.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Hashes the parts of a request that form its fingerprint. Each part is hashed with its
/// length, so `("ab", "c")` and `("a", "bc")` differ.
#[derive(Debug, Clone, Default)]
pub struct FingerprintBuilder {
    hash: Sha256,
}

impl FingerprintBuilder {
    /// Adds one part.
    pub fn part(&mut self, bytes: &[u8]) -> &mut Self {
        self.hash.update((bytes.len() as u64).to_le_bytes());
        self.hash.update(bytes);
        self
    }

    fn finish(self) -> [u8; 32] {
        self.hash.finalize().into()
    }
}

/// The default fingerprint: method, path, query (empty when absent) and body bytes.
pub fn default_fingerprint(req: &Parts, body: &[u8], fp: &mut FingerprintBuilder) {
    fp.part(req.method.as_str().as_bytes())
        .part(req.uri.path().as_bytes())
        .part(req.uri.query().unwrap_or("").as_bytes())
        .part(body);
}

/// The default of [`IdempotencyLayer::store_if`]: every status but 5xx, 408 Request Timeout and
/// 429 Too Many Requests (answers that say "retry", which a replay would repeat for the TTL).
pub fn default_store_if(status: StatusCode) -> bool {
    !(status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS)
}

type ScopeFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;
type FingerprintFn = dyn Fn(&Parts, &[u8], &mut FingerprintBuilder) + Send + Sync;
type StoreIfFn = dyn Fn(StatusCode) -> bool + Send + Sync;

struct Config {
    manager: IdempotencyManager,
    operation: String,
    methods: Vec<Method>,
    require_key: bool,
    lenient_tokens: bool,
    scope: Arc<ScopeFn>,
    fingerprint: Arc<FingerprintFn>,
    store_if: Arc<StoreIfFn>,
    max_request_body: usize,
    max_stored_body: usize,
    excluded: Vec<HeaderName>,
    on_conflict: ConflictPolicy,
    ttl: Option<Duration>,
    lease: Option<Duration>,
    problem_base: String,
}

/// The `Idempotency-Key` middleware as a [`tower::Layer`]: see the [crate docs](crate).
///
/// Defaults: `POST` and `PATCH`; a key is optional (requests without one pass through
/// unprotected); bare tokens accepted; no scope (all clients share one key space: set
/// [`scope`](Self::scope) for a multi-tenant API); fingerprint [`default_fingerprint`];
/// request bodies up to 1 MiB; responses stored unless 5xx, 408 or 429, up to 1 MiB of body; conflicts
/// answered 409 at once; TTL and lease from the manager; problem types documented under
/// [`DEFAULT_PROBLEM_BASE`].
#[derive(Clone)]
pub struct IdempotencyLayer {
    config: Arc<Config>,
}

impl fmt::Debug for IdempotencyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        f.debug_struct("IdempotencyLayer")
            .field("operation", &c.operation)
            .field("methods", &c.methods)
            .field("require_key", &c.require_key)
            .field("max_request_body", &c.max_request_body)
            .field("max_stored_body", &c.max_stored_body)
            .field("on_conflict", &c.on_conflict)
            .finish_non_exhaustive()
    }
}

impl IdempotencyLayer {
    /// A layer over `manager` (any store) with the defaults above.
    pub fn new(manager: IdempotencyManager) -> Self {
        IdempotencyLayer {
            config: Arc::new(Config {
                manager,
                operation: "http".into(),
                methods: vec![Method::POST, Method::PATCH],
                require_key: false,
                lenient_tokens: true,
                scope: Arc::new(|_| None),
                fingerprint: Arc::new(default_fingerprint),
                store_if: Arc::new(default_store_if),
                max_request_body: 1 << 20,
                max_stored_body: 1 << 20,
                excluded: Vec::new(),
                on_conflict: ConflictPolicy::Reject,
                ttl: None,
                lease: None,
                problem_base: DEFAULT_PROBLEM_BASE.into(),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Config)) -> Self {
        match Arc::get_mut(&mut self.config) {
            Some(c) => f(c),
            None => {
                let old = &*self.config;
                let mut c = Config {
                    manager: old.manager.clone(),
                    operation: old.operation.clone(),
                    methods: old.methods.clone(),
                    require_key: old.require_key,
                    lenient_tokens: old.lenient_tokens,
                    scope: old.scope.clone(),
                    fingerprint: old.fingerprint.clone(),
                    store_if: old.store_if.clone(),
                    max_request_body: old.max_request_body,
                    max_stored_body: old.max_stored_body,
                    excluded: old.excluded.clone(),
                    on_conflict: old.on_conflict,
                    ttl: old.ttl,
                    lease: old.lease,
                    problem_base: old.problem_base.clone(),
                };
                f(&mut c);
                self.config = Arc::new(c);
            }
        }
        self
    }

    /// The methods the layer covers (default `POST`, `PATCH`); other requests pass through.
    pub fn methods(self, methods: impl IntoIterator<Item = Method>) -> Self {
        let m: Vec<Method> = methods.into_iter().collect();
        self.edit(|c| c.methods = m)
    }

    /// The operation name that enters every key's identity (default `"http"`). Layers with
    /// different names never share records, even for the same client key.
    pub fn operation(self, name: impl Into<String>) -> Self {
        let n = name.into();
        self.edit(|c| c.operation = n)
    }

    /// Whether a covered request without `Idempotency-Key` is refused with 400 (`true`) or passes
    /// through unprotected (`false`, the default).
    pub fn require_key(self, required: bool) -> Self {
        self.edit(|c| c.require_key = required)
    }

    /// Whether a bare (unquoted) key is accepted next to the draft's sf-string (default `true`;
    /// see [`parse_key_value`]).
    pub fn lenient_tokens(self, lenient: bool) -> Self {
        self.edit(|c| c.lenient_tokens = lenient)
    }

    /// The tenant of a request (an authenticated subject, an API key): keys of different scopes
    /// never share a record. `None` puts the request in the unscoped key space.
    pub fn scope(self, f: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        self.edit(|c| c.scope = Arc::new(f))
    }

    /// What forms the fingerprint: the closure adds parts of the request head and body (for
    /// example leaving out a trace header or a timestamp field). Default
    /// [`default_fingerprint`].
    pub fn fingerprint(
        self,
        f: impl Fn(&Parts, &[u8], &mut FingerprintBuilder) + Send + Sync + 'static,
    ) -> Self {
        self.edit(|c| c.fingerprint = Arc::new(f))
    }

    /// Which response statuses are stored and replayed (default [`default_store_if`]: all but
    /// 5xx, 408 and 429). A response not stored reaches its client and releases the key, so a
    /// retry runs the handler again.
    pub fn store_if(self, f: impl Fn(StatusCode) -> bool + Send + Sync + 'static) -> Self {
        self.edit(|c| c.store_if = Arc::new(f))
    }

    /// The largest request body buffered for the fingerprint, in bytes (default 1 MiB); a
    /// larger one is answered 413.
    pub fn max_request_body(self, bytes: usize) -> Self {
        self.edit(|c| c.max_request_body = bytes)
    }

    /// The largest response body stored, in bytes (default 1 MiB); a larger response reaches
    /// its client but is not stored, and the key is released. Keep it below the manager's
    /// `max_result_bytes` (128 MiB by default).
    pub fn max_stored_body(self, bytes: usize) -> Self {
        self.edit(|c| c.max_stored_body = bytes)
    }

    /// A response header never stored nor replayed (on top of the hop-by-hop headers), for
    /// example `set-cookie`.
    pub fn exclude_header(self, name: HeaderName) -> Self {
        self.edit(|c| c.excluded.push(name))
    }

    /// What a request gets while another request holds its key: 409 at once
    /// ([`ConflictPolicy::Reject`], the default) or, under [`ConflictPolicy::Wait`], the replay
    /// once the holder finishes (409 after the wait's timeout).
    pub fn on_conflict(self, policy: ConflictPolicy) -> Self {
        self.edit(|c| c.on_conflict = policy)
    }

    /// How long a stored response is replayed (the record's TTL; default: the manager's).
    pub fn ttl(self, ttl: Duration) -> Self {
        self.edit(|c| c.ttl = Some(ttl))
    }

    /// The lease of a running request (default: the manager's pending timeout): after it, a
    /// request whose handler never finished (a crashed process) is taken over by a retry.
    pub fn lease(self, lease: Duration) -> Self {
        self.edit(|c| c.lease = Some(lease))
    }

    /// The URI prefix of problem `type`s (default [`DEFAULT_PROBLEM_BASE`]); each type appends
    /// its [`ProblemType::slug`].
    pub fn problem_base(self, base: impl Into<String>) -> Self {
        let b = base.into();
        self.edit(|c| c.problem_base = b)
    }
}

impl<S> tower::Layer<S> for IdempotencyLayer {
    type Service = IdempotencyService<S>;

    fn layer(&self, inner: S) -> IdempotencyService<S> {
        IdempotencyService {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service [`IdempotencyLayer`] wraps around `S`.
///
/// # Errors
/// Only the wrapped service's own errors, unchanged (a service error releases the key, as a 5xx
/// does). The layer's own failures are responses: the problem documents of [`ProblemType`]
/// (400 invalid or missing key, 409 key in use, 413 body too large, 422 key reused, 500
/// response not recorded or internal error, 503 store unavailable).
#[derive(Clone)]
pub struct IdempotencyService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> fmt::Debug for IdempotencyService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyService")
            .field("operation", &self.config.operation)
            .finish_non_exhaustive()
    }
}

/// A response as stored in a record: status, headers (name, value bytes) in order, body.
#[derive(Serialize, Deserialize)]
struct StoredResponse {
    status: u16,
    headers: Vec<(String, Bytes)>,
    body: Bytes,
    /// The response as the handler produced it, for the request that ran it (never stored).
    #[serde(skip)]
    fresh: Option<http::response::Parts>,
}

/// A response that is not stored: its claim is released.
enum Unstored<B: Body, E> {
    Response(http::response::Parts, ResponseBody<B>),
    ServiceError(E),
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, ReqB, ResB> tower::Service<Request<ReqB>> for IdempotencyService<S>
where
    S: tower::Service<Request<RequestBody<ReqB>>, Response = Response<ResB>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Body<Data = Bytes> + Send + 'static,
    ReqB::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResB: Body<Data = Bytes> + Send + Unpin + 'static,
    ResB::Error: Send + Unpin + 'static,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let config = self.config.clone();
        // The ready service handles this request; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(handle(config, inner, req))
    }
}

fn problem_response<B: Body>(
    config: &Config,
    kind: ProblemType,
    detail: &str,
    reason: Option<&str>,
) -> Response<ResponseBody<B>> {
    problem::problem(&config.problem_base, kind, detail, reason).map(ResponseBody::full)
}

async fn handle<S, ReqB, ResB>(
    config: Arc<Config>,
    inner: S,
    req: Request<ReqB>,
) -> Result<Response<ResponseBody<ResB>>, S::Error>
where
    S: tower::Service<Request<RequestBody<ReqB>>, Response = Response<ResB>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Body<Data = Bytes> + Send + 'static,
    ReqB::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResB: Body<Data = Bytes> + Send + Unpin + 'static,
    ResB::Error: Send + Unpin + 'static,
{
    if !config.methods.contains(req.method()) {
        return pass_through(inner, req).await;
    }
    let key = match parse_key_header(
        req.headers().get_all(IDEMPOTENCY_KEY),
        config.lenient_tokens,
    ) {
        Ok(Some(k)) => k,
        Ok(None) if config.require_key => {
            return Ok(problem_response(
                &config,
                ProblemType::MissingKey,
                "this endpoint requires an Idempotency-Key header",
                None,
            ))
        }
        Ok(None) => return pass_through(inner, req).await,
        Err(e) => {
            return Ok(problem_response(
                &config,
                ProblemType::InvalidKey,
                &e.detail(),
                Some(e.code()),
            ))
        }
    };
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        problem_response(
            &config,
            ProblemType::BodyTooLarge,
            &format!(
                "the request body is larger than {} bytes",
                config.max_request_body
            ),
            None,
        )
    };
    if declared.is_some_and(|n| n > config.max_request_body as u64) {
        return Ok(too_large());
    }
    let body = match Limited::new(body, config.max_request_body).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Ok(too_large()),
        Err(e) => {
            return Ok(problem_response(
                &config,
                ProblemType::BodyUnreadable,
                &format!("the request body could not be read: {e}"),
                None,
            ))
        }
    };
    let scope = (config.scope)(&parts);
    let mut fp = FingerprintBuilder::default();
    (config.fingerprint)(&parts, &body, &mut fp);
    let digest = fp.finish();
    let derived = {
        let mut enc = KeyEncoder::new(&config.operation, 1);
        if let Some(s) = &scope {
            enc.scope(s.as_str());
        }
        enc.custom_key(&key).arg(&digest);
        enc.finish()
    };
    let derived = match derived {
        Ok(d) => d,
        Err(e) => {
            return Ok(problem_response(
                &config,
                ProblemType::InvalidKey,
                &e.to_string(),
                Some("invalid"),
            ))
        }
    };
    let mut call = Call::new(derived)
        .fingerprint_policy(FingerprintPolicy::Reject)
        .on_conflict(config.on_conflict);
    if let Some(t) = config.ttl {
        call = call.ttl(t);
    }
    if let Some(l) = config.lease {
        call = call.pending_timeout(l);
    }
    let request = Request::from_parts(parts, Either::Left(Full::new(body)));
    let cfg = config.clone();
    let outcome = config
        .manager
        .try_execute_transient(&call, move || run_and_capture(cfg, inner, request))
        .await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => return Ok(error_response(&config, &e)),
    };
    let replayed = outcome.is_replayed();
    match outcome.value {
        Ok(stored) => Ok(rebuild(&config, stored, replayed)),
        Err(Unstored::Response(parts, body)) => Ok(Response::from_parts(parts, body)),
        Err(Unstored::ServiceError(e)) => Err(e),
    }
}

async fn pass_through<S, ReqB, ResB>(
    mut inner: S,
    req: Request<ReqB>,
) -> Result<Response<ResponseBody<ResB>>, S::Error>
where
    S: tower::Service<Request<RequestBody<ReqB>>, Response = Response<ResB>>,
    ResB: Body,
{
    let res = inner.call(req.map(Either::Right)).await?;
    Ok(res.map(ResponseBody::stream))
}

/// Runs the handler and buffers its response: `Ok` to store it, `Err` to release the claim.
async fn run_and_capture<S, ReqB, ResB>(
    config: Arc<Config>,
    mut inner: S,
    req: Request<RequestBody<ReqB>>,
) -> Result<StoredResponse, Unstored<ResB, S::Error>>
where
    S: tower::Service<Request<RequestBody<ReqB>>, Response = Response<ResB>>,
    ResB: Body<Data = Bytes> + Unpin,
{
    let res = inner.call(req).await.map_err(Unstored::ServiceError)?;
    let (parts, mut body) = res.into_parts();
    let storable = (config.store_if)(parts.status)
        && body
            .size_hint()
            .upper()
            .is_none_or(|n| n <= config.max_stored_body as u64);
    if !storable {
        return Err(Unstored::Response(parts, ResponseBody::stream(body)));
    }
    let mut frames: VecDeque<Frame<Bytes>> = VecDeque::new();
    let mut len = 0_usize;
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                let is_data = frame.is_data();
                if let Some(d) = frame.data_ref() {
                    len = len.saturating_add(d.len());
                }
                frames.push_back(frame);
                // Trailers cannot be stored; an over-long body is not stored either: the client
                // gets what was read, then the rest, streamed.
                if !is_data || len > config.max_stored_body {
                    return Err(Unstored::Response(
                        parts,
                        ResponseBody::resumed(frames, None, Some(body)),
                    ));
                }
            }
            Some(Err(e)) => {
                return Err(Unstored::Response(
                    parts,
                    ResponseBody::resumed(frames, Some(e), None),
                ))
            }
        }
    }
    let mut buf = BytesMut::with_capacity(len);
    for f in frames {
        if let Ok(d) = f.into_data() {
            buf.extend_from_slice(&d);
        }
    }
    let headers = stored_headers(&parts.headers, &config.excluded);
    Ok(StoredResponse {
        status: parts.status.as_u16(),
        headers,
        body: buf.freeze(),
        fresh: Some(parts),
    })
}

fn stored_headers(headers: &HeaderMap, excluded: &[HeaderName]) -> Vec<(String, Bytes)> {
    let named_by_connection: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            !HOP_BY_HOP.contains(&n)
                && !excluded.contains(name)
                && !named_by_connection.iter().any(|c| c == n)
                && *name != IDEMPOTENT_REPLAYED
        })
        .map(|(n, v)| (n.as_str().to_owned(), Bytes::copy_from_slice(v.as_bytes())))
        .collect()
}

/// The response for the client: the handler's own head for the request that ran it, the stored
/// one (plus `Idempotent-Replayed: true`) for a replay.
/// A stored response that no longer parses (a corrupt record) is a 500 problem, never a
/// response that differs from the one stored.
fn rebuild<B: Body>(
    config: &Config,
    stored: StoredResponse,
    replayed: bool,
) -> Response<ResponseBody<B>> {
    if let (Some(parts), false) = (stored.fresh, replayed) {
        return Response::from_parts(parts, ResponseBody::full(stored.body));
    }
    let corrupt = |what: &str| {
        problem_response(
            config,
            ProblemType::Internal,
            &format!("the stored response cannot be replayed: {what}"),
            None,
        )
    };
    let Ok(status) = StatusCode::from_u16(stored.status) else {
        return corrupt("its status is invalid");
    };
    let mut res = Response::new(ResponseBody::full(stored.body));
    *res.status_mut() = status;
    let headers = res.headers_mut();
    for (name, value) in stored.headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_maybe_shared(value),
        ) {
            (Ok(n), Ok(v)) => {
                headers.append(n, v);
            }
            _ => return corrupt("a header is invalid"),
        }
    }
    headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    res
}

fn error_response<B: Body>(config: &Config, e: &Error) -> Response<ResponseBody<B>> {
    let (kind, detail) = match e {
        Error::InProgress { .. } => (
            ProblemType::KeyInUse,
            "a request with this idempotency key is still being processed; retry later".to_owned(),
        ),
        Error::FingerprintMismatch { .. } => (
            ProblemType::KeyReused,
            "this idempotency key was used for a request with another method, path, query or body"
                .to_owned(),
        ),
        Error::LeaseLost { .. }
        | Error::CompletionNotRecorded { .. }
        | Error::ResultNotRetained { .. } => (
            ProblemType::ResponseNotRecorded,
            format!(
                "the request ran under this idempotency key but its response was not recorded: {e}"
            ),
        ),
        e if e.is_store_unavailable() => (
            ProblemType::StoreUnavailable,
            format!("the idempotency store is unavailable: {e}"),
        ),
        e => (ProblemType::Internal, e.to_string()),
    };
    problem_response(config, kind, &detail, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_excluded_and_connection_named_headers_are_not_stored() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close, X-Hop"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert(header::SET_COOKIE, HeaderValue::from_static("s=1"));
        h.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.append("x-keep", HeaderValue::from_static("a"));
        h.append("x-keep", HeaderValue::from_static("b"));
        let stored = stored_headers(&h, &[header::SET_COOKIE]);
        let names: Vec<(&str, &[u8])> = stored
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_ref()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("content-type", &b"application/json"[..]),
                ("x-keep", &b"a"[..]),
                ("x-keep", &b"b"[..]),
            ]
        );
    }

    #[test]
    fn default_store_if_refuses_retry_statuses() {
        assert!(default_store_if(StatusCode::CREATED));
        assert!(default_store_if(StatusCode::BAD_REQUEST));
        assert!(default_store_if(StatusCode::NOT_FOUND));
        assert!(!default_store_if(StatusCode::REQUEST_TIMEOUT));
        assert!(!default_store_if(StatusCode::TOO_MANY_REQUESTS));
        assert!(!default_store_if(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(!default_store_if(StatusCode::SERVICE_UNAVAILABLE));
    }
}
