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
//!    [`IdempotencyManager::try_execute_transient`](idempotency_core::IdempotencyManager::try_execute_transient): the first request runs it; its response
//!    (status, headers without hop-by-hop and [excluded](IdempotencyLayer::exclude_header)
//!    ones, body) is stored and replayed byte for byte, with `Idempotent-Replayed: true`;
//! 4. answers a request whose key is held by a running request with 409 (or waits and replays,
//!    under [`ConflictPolicy::Wait`](idempotency_core::ConflictPolicy::Wait)), and a request whose key was used for another fingerprint
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
mod layer;
mod problem;
mod service;
mod stored;

use bytes::Bytes;
use http::HeaderName;
use http_body_util::{Either, Full};

pub use body::ResponseBody;
pub use key::{parse_key_header, parse_key_value, KeyError, MAX_KEY_BYTES};
pub use layer::{default_fingerprint, default_store_if, FingerprintBuilder, IdempotencyLayer};
pub use problem::{ProblemType, DEFAULT_PROBLEM_BASE};
pub use service::IdempotencyService;

/// The request header that carries the idempotency key (the IETF draft, section 2).
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The response header that marks a replayed response (`Idempotent-Replayed: true`, as Stripe
/// sends it).
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The body the wrapped service receives: the buffered body for a covered request, the original
/// one otherwise.
pub type RequestBody<B> = Either<Full<Bytes>, B>;
