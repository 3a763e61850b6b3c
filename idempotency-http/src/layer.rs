//! The middleware's settings: [`IdempotencyLayer`] and its builder methods, the default
//! fingerprint ([`FingerprintBuilder`], [`default_fingerprint`]) and the default storage rule
//! ([`default_store_if`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{HeaderName, Method, StatusCode};
use idempotency_core::{ConflictPolicy, IdempotencyManager};
use sha2::{Digest, Sha256};

use crate::problem::DEFAULT_PROBLEM_BASE;
use crate::service::IdempotencyService;

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

    pub(crate) fn finish(self) -> [u8; 32] {
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

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) manager: IdempotencyManager,
    pub(crate) operation: String,
    pub(crate) methods: Vec<Method>,
    pub(crate) require_key: bool,
    pub(crate) lenient_tokens: bool,
    pub(crate) scope: Arc<ScopeFn>,
    pub(crate) fingerprint: Arc<FingerprintFn>,
    pub(crate) store_if: Arc<StoreIfFn>,
    pub(crate) max_request_body: usize,
    pub(crate) max_stored_body: usize,
    pub(crate) excluded: Vec<HeaderName>,
    pub(crate) on_conflict: ConflictPolicy,
    pub(crate) ttl: Option<Duration>,
    pub(crate) lease: Option<Duration>,
    pub(crate) problem_base: String,
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

    /// Applies `f` to this layer's settings (copying them first when another layer or a
    /// service built from this one shares them).
    fn edit(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(Arc::make_mut(&mut self.config));
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
    /// see [`parse_key_value`](crate::parse_key_value)).
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
    /// retry runs the handler again. This alone decides what the layer stores: a manager built
    /// with `cache_failures(false)` does not change it (a stored 4xx is the handler's answer,
    /// as the IETF draft and Stripe replay it); return `false` for 4xx to store only successes.
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
    /// its [`ProblemType::slug`](crate::ProblemType::slug).
    pub fn problem_base(self, base: impl Into<String>) -> Self {
        let b = base.into();
        self.edit(|c| c.problem_base = b)
    }
}

impl<S> tower::Layer<S> for IdempotencyLayer {
    type Service = IdempotencyService<S>;

    fn layer(&self, inner: S) -> IdempotencyService<S> {
        IdempotencyService::new(inner, self.config.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
