//! The middleware at work: [`IdempotencyService`] takes a request through the key, the body
//! limit and the fingerprint to the manager, and turns the manager's errors into problem
//! responses.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited};
use idempotency_core::{Call, Error, FingerprintPolicy, KeyEncoder};

use crate::layer::{Config, FingerprintBuilder};
use crate::stored::{rebuild, run_and_capture, Unstored};
use crate::{parse_key_header, problem, ProblemType, RequestBody, ResponseBody, IDEMPOTENCY_KEY};

/// The service [`IdempotencyLayer`](crate::IdempotencyLayer) wraps around `S`.
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

impl<S> IdempotencyService<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        IdempotencyService { inner, config }
    }
}

impl<S> fmt::Debug for IdempotencyService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyService")
            .field("operation", &self.config.operation)
            .finish_non_exhaustive()
    }
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

pub(crate) fn problem_response<B: Body>(
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
