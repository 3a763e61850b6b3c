//! RFC 9457 problem details (`application/problem+json`) for the layer's own answers.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

/// Where the problem types are documented by default: `docs/http.md` in the repository,
/// one anchor per type (the IETF draft asks error responses to link to documentation).
pub const DEFAULT_PROBLEM_BASE: &str =
    "https://example.invalid/idempotency/blob/main/docs/http.md#";

/// The problem types the layer answers with. Each one's `type` URI is the problem base
/// ([`IdempotencyLayer::problem_base`](crate::IdempotencyLayer::problem_base)) followed by
/// [`slug`](Self::slug).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemType {
    /// 400: the `Idempotency-Key` header is malformed (empty, too long, a list, two lines).
    InvalidKey,
    /// 400: the route requires an `Idempotency-Key` and the request has none.
    MissingKey,
    /// 409: a request with the same key is still being processed (the draft's 409; Stripe's
    /// `idempotency_key_in_use`).
    KeyInUse,
    /// 422: the key was used for another request (another fingerprint; the draft's 422).
    KeyReused,
    /// 413: the request body is larger than the layer buffers for its fingerprint.
    BodyTooLarge,
    /// 400: the request body could not be read.
    BodyUnreadable,
    /// 500: the handler ran under this key but its response was not recorded (the store failed
    /// when the response was saved, or a newer holder took the key over), or was not retained.
    ResponseNotRecorded,
    /// 503: the idempotency store cannot be reached; the handler did not run.
    StoreUnavailable,
    /// 500: any other failure of the idempotency machinery (a corrupt or incompatible record,
    /// a configuration error); the handler did not run.
    Internal,
}

impl ProblemType {
    /// The anchor of the type in the problem documentation.
    pub fn slug(self) -> &'static str {
        match self {
            ProblemType::InvalidKey => "invalid-idempotency-key",
            ProblemType::MissingKey => "missing-idempotency-key",
            ProblemType::KeyInUse => "idempotency-key-in-use",
            ProblemType::KeyReused => "idempotency-key-reused",
            ProblemType::BodyTooLarge => "body-too-large",
            ProblemType::BodyUnreadable => "body-unreadable",
            ProblemType::ResponseNotRecorded => "response-not-recorded",
            ProblemType::StoreUnavailable => "store-unavailable",
            ProblemType::Internal => "idempotency-internal-error",
        }
    }

    /// The HTTP status of the type.
    pub fn status(self) -> StatusCode {
        match self {
            ProblemType::InvalidKey | ProblemType::MissingKey | ProblemType::BodyUnreadable => {
                StatusCode::BAD_REQUEST
            }
            ProblemType::KeyInUse => StatusCode::CONFLICT,
            ProblemType::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ProblemType::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProblemType::ResponseNotRecorded | ProblemType::Internal => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ProblemType::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The problem's `title`.
    pub fn title(self) -> &'static str {
        match self {
            ProblemType::InvalidKey => "Invalid Idempotency-Key header",
            ProblemType::MissingKey => "Idempotency-Key header required",
            ProblemType::KeyInUse => "A request with this idempotency key is in progress",
            ProblemType::KeyReused => "Idempotency key reused for another request",
            ProblemType::BodyTooLarge => "Request body too large",
            ProblemType::BodyUnreadable => "Request body unreadable",
            ProblemType::ResponseNotRecorded => "Response not recorded",
            ProblemType::StoreUnavailable => "Idempotency store unavailable",
            ProblemType::Internal => "Idempotency error",
        }
    }
}

/// A problem+json response: `type`, `title`, `status`, `detail`, plus `reason` when given.
pub(crate) fn problem(
    base: &str,
    kind: ProblemType,
    detail: &str,
    reason: Option<&str>,
) -> Response<Bytes> {
    let mut doc = serde_json::Map::new();
    doc.insert("type".into(), format!("{base}{}", kind.slug()).into());
    doc.insert("title".into(), kind.title().into());
    doc.insert("status".into(), kind.status().as_u16().into());
    doc.insert("detail".into(), detail.into());
    if let Some(r) = reason {
        doc.insert("reason".into(), r.into());
    }
    let body = serde_json::Value::Object(doc).to_string();
    let mut res = Response::new(Bytes::from(body));
    *res.status_mut() = kind.status();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if kind == ProblemType::KeyInUse {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    res
}
