//! The request body on its way upstream: streamed frame by frame, counted
//! against the route's limit, and cut off with [`BodyError::TooLarge`] as
//! soon as it grows past it.

use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// How much of a refused body is still read (and discarded) so that the
/// client, busy sending, gets to read the 413 instead of a connection reset.
const DRAIN_MAX_BYTES: u64 = 8 * 1024 * 1024;
/// How long a refused body is read at most.
const DRAIN_MAX_TIME: Duration = Duration::from_secs(5);

/// Why the request body did not reach the upstream.
#[derive(Debug, thiserror::Error)]
pub(super) enum BodyError {
    #[error("request body is over the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("reading the request body: {0}")]
    Client(#[source] hyper::Error),
}

/// The client's body, limited.
#[derive(Debug)]
pub(super) struct UpstreamBody {
    inner: Option<Incoming>,
    limit: u64,
    remaining: u64,
}

impl UpstreamBody {
    pub(super) fn new(inner: Incoming, limit: u64) -> Self {
        Self {
            inner: Some(inner),
            limit,
            remaining: limit,
        }
    }

    /// No body: the body of a bodiless request sent once more.
    pub(super) fn empty() -> Self {
        Self {
            inner: None,
            limit: 0,
            remaining: 0,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match ready!(Pin::new(inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        if let Some(rest) = this.inner.take() {
                            drain_in_background(rest);
                        }
                        return Poll::Ready(Some(Err(BodyError::TooLarge { limit: this.limit })));
                    }
                    this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(BodyError::Client(e)))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(inner) => inner.is_end_stream(),
            None => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(inner) => inner.size_hint(),
            None => SizeHint::with_exact(0),
        }
    }
}

/// True if `error` (or anything in its source chain) is the body limit.
pub(super) fn is_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if matches!(
            e.downcast_ref::<BodyError>(),
            Some(BodyError::TooLarge { .. })
        ) {
            return true;
        }
        current = e.source();
    }
    false
}

/// Read and discard what is left of a refused body, bounded in bytes and
/// time, on a task of its own.
pub(super) fn drain_in_background(body: Incoming) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ = tokio::time::timeout(DRAIN_MAX_TIME, drain(body)).await;
        });
    }
}

async fn drain(mut body: Incoming) {
    let mut read = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            read += data.len() as u64;
            if read > DRAIN_MAX_BYTES {
                return;
            }
        }
    }
}
