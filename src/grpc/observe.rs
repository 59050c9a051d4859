//! Every call, observed once: its metrics (count by method and status code, latency) and its
//! log — a span per call with the method, the peer, the tenant and the public id of the token
//! involved (filled in by the handlers), and an `info` line for every refused call
//! (`UNAUTHENTICATED`, `PERMISSION_DENIED`) with the reason jeton answered, never the
//! credential. Other calls are logged at `debug`.

use crate::metrics::{self, CODES, METHODS};
use http::{Request, Response};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tracing::Instrument;

/// gRPC status codes that mean "refused": logged at `info`.
const UNAUTHENTICATED: usize = 16;
const PERMISSION_DENIED: usize = 7;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ObserveLayer;

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe { inner }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Observe<S> {
    inner: S,
}

fn peer<B>(req: &Request<B>) -> Option<SocketAddr> {
    let ext = req.extensions();
    ext.get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|i| i.get_ref().remote_addr())
        })
}

/// The status code of a unary response: errors are "trailers-only", with `grpc-status` in
/// the headers; a response without it is OK.
fn code<B>(res: &Response<B>) -> (usize, &str) {
    let header = |name| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let code = header("grpc-status").parse().unwrap_or(0usize);
    (code.min(CODES.len() - 1), header("grpc-message"))
}

impl<S, B, R> tower::Service<Request<B>> for Observe<S>
where
    S: tower::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let start = Instant::now();
        let method = metrics::method_index(req.uri().path());
        let peer = peer(&req);
        let span = tracing::debug_span!(
            "rpc",
            method = METHODS[method],
            peer = ?peer,
            tenant = tracing::field::Empty,
            token.id = tracing::field::Empty,
        );
        let call = self.inner.call(req).instrument(span.clone());
        Box::pin(async move {
            let res = call.await?;
            let took = start.elapsed();
            let (code, message) = code(&res);
            if let Some(m) = metrics::get() {
                m.rpc(method, code, took);
            }
            let _in = span.enter();
            if code == UNAUTHENTICATED || code == PERMISSION_DENIED {
                tracing::info!(
                    method = METHODS[method],
                    peer = ?peer,
                    code = CODES[code],
                    reason = %percent_decode(message),
                    "request refused"
                );
            } else {
                tracing::debug!(
                    code = CODES[code],
                    latency_us = took.as_micros() as u64,
                    "request"
                );
            }
            Ok(res)
        })
    }
}

/// `grpc-message` is percent-encoded.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn grpc_messages_are_decoded() {
        assert_eq!(
            super::percent_decode("missing credential: send authorization%3A Bearer %3Ctoken%3E"),
            "missing credential: send authorization: Bearer <token>"
        );
        assert_eq!(super::percent_decode("100%"), "100%");
    }
}
