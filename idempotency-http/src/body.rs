//! The response body of [`IdempotencyService`](crate::IdempotencyService): buffered frames
//! (a replay, a problem, a stored response) followed by the rest of the handler's own body.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// The body of a response that went through the layer: frames already buffered (a replayed or
/// stored response, a problem document, or the part of a handler's body read before it proved
/// too large to store), then an error met while buffering, if any, then the rest of the
/// handler's body, streamed. Requests the layer does not cover get the handler's body
/// unchanged inside this type.
#[derive(Debug)]
pub struct ResponseBody<B: Body> {
    prefix: VecDeque<Frame<Bytes>>,
    error: Option<B::Error>,
    rest: Option<B>,
}

impl<B: Body> ResponseBody<B> {
    /// A body of exactly `bytes`.
    pub fn full(bytes: Bytes) -> Self {
        let mut prefix = VecDeque::new();
        if !bytes.is_empty() {
            prefix.push_back(Frame::data(bytes));
        }
        ResponseBody {
            prefix,
            error: None,
            rest: None,
        }
    }

    /// The handler's body, unchanged.
    pub fn stream(body: B) -> Self {
        ResponseBody {
            prefix: VecDeque::new(),
            error: None,
            rest: Some(body),
        }
    }

    pub(crate) fn resumed(
        prefix: VecDeque<Frame<Bytes>>,
        error: Option<B::Error>,
        rest: Option<B>,
    ) -> Self {
        ResponseBody {
            prefix,
            error,
            rest,
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if let Some(f) = this.prefix.pop_front() {
            return Poll::Ready(Some(Ok(f)));
        }
        if let Some(e) = this.error.take() {
            this.rest = None;
            return Poll::Ready(Some(Err(e)));
        }
        match this.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_empty()
            && self.error.is_none()
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let buffered: u64 = self
            .prefix
            .iter()
            .filter_map(|f| f.data_ref().map(|d| d.len() as u64))
            .sum();
        match (&self.rest, &self.error) {
            (None, None) => SizeHint::with_exact(buffered),
            (Some(r), None) => {
                let h = r.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(h.lower() + buffered);
                if let Some(u) = h.upper() {
                    out.set_upper(u + buffered);
                }
                out
            }
            _ => SizeHint::new(),
        }
    }
}
