//! Responses as records: a handler's response buffered for storing ([`run_and_capture`]), the
//! headers that are stored, and a stored response rebuilt for a replay ([`rebuild`]).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};

use crate::layer::Config;
use crate::service::problem_response;
use crate::{ProblemType, RequestBody, ResponseBody, IDEMPOTENT_REPLAYED};

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

/// A response as stored in a record: status, headers (name, value bytes) in order, body.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredResponse {
    status: u16,
    headers: Vec<(String, Bytes)>,
    body: Bytes,
    /// The response as the handler produced it, for the request that ran it (never stored).
    #[serde(skip)]
    fresh: Option<http::response::Parts>,
}

/// A response that is not stored: its claim is released.
pub(crate) enum Unstored<B: Body, E> {
    Response(http::response::Parts, ResponseBody<B>),
    ServiceError(E),
}

/// Runs the handler and buffers its response: `Ok` to store it, `Err` to release the claim.
pub(crate) async fn run_and_capture<S, ReqB, ResB>(
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
pub(crate) fn rebuild<B: Body>(
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
}
