//! Serving the HTTP listener: HTTP/1.1 (nginx speaks nothing newer to its auth subrequest),
//! TLS when configured, and bounded connections (`net`): a place per connection, a TLS
//! handshake and the first bytes within the handshake timeout, headers of at most
//! [`MAX_HEADERS`] bytes, every request whole — headers and body — within the request
//! timeout, and a stop that lets requests in flight finish.
//!
//! The request deadline is what keeps a place from being held for nothing: hyper bounds only
//! the headers, and a client that sends headers with a `Content-Length` and then no body
//! would otherwise keep its connection, and its place, for as long as it likes. The
//! deadline counts from when the listener is ready for the request (the connection taken,
//! or the previous answer given), as hyper's header timeout does, so the headers and the
//! body share it; a body not there in time is answered 408 and the connection closed.

use crate::background::Task;
use crate::net::{Acceptor, Guarded};
use axum::Router;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;

/// Largest header section read.
const MAX_HEADERS: usize = 16 * 1024;
/// How long requests in flight may take to finish after a stop.
const DRAIN: Duration = Duration::from_secs(10);

/// How long a client may take, per connection and per request.
#[derive(Debug, Clone, Copy)]
struct Deadlines {
    /// The TLS handshake and the first bytes.
    handshake: Duration,
    /// A whole request, headers and body.
    request: Duration,
}

/// Serves `router` on `acceptor` until stopped; each request must arrive whole within
/// `request_timeout`.
pub(crate) fn serve(
    mut acceptor: Acceptor,
    tls: Option<TlsAcceptor>,
    router: Router,
    request_timeout: Duration,
) -> Task {
    Task::spawn("http listener", move |mut stop| async move {
        let mut connections = tokio::task::JoinSet::new();
        let (closing, closed) = tokio::sync::watch::channel(false);
        let deadlines = Deadlines {
            handshake: acceptor.limits().handshake,
            request: request_timeout,
        };
        loop {
            let (stream, peer, place) = tokio::select! {
                biased;
                _ = &mut stop => break,
                accepted = acceptor.accept() => accepted,
            };
            let (tls, router, closed) = (tls.clone(), router.clone(), closed.clone());
            connections.spawn(async move {
                let stream = Guarded::new(stream, place, 1, deadlines.handshake);
                connection(stream, peer, tls, deadlines, router, closed).await;
            });
            // Forget the connections that are done.
            while connections.try_join_next().is_some() {}
        }
        let _ = closing.send(true);
        let drained = tokio::time::timeout(DRAIN, async {
            while connections.join_next().await.is_some() {}
        });
        if drained.await.is_err() {
            tracing::warn!("http: connections still open after the drain; closed");
            connections.abort_all();
        }
    })
}

/// Resolves when the listener is stopping.
async fn stopping(closed: &mut tokio::sync::watch::Receiver<bool>) {
    while !*closed.borrow_and_update() {
        if closed.changed().await.is_err() {
            return;
        }
    }
}

async fn connection(
    stream: Guarded<tokio::net::TcpStream>,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    deadlines: Deadlines,
    router: Router,
    mut closed: tokio::sync::watch::Receiver<bool>,
) {
    // When the listener became ready for this connection's next request: set when hyper
    // starts reading it, and again as each answer is given.
    let ready = Arc::new(Mutex::new(Instant::now()));
    let service = {
        let ready = ready.clone();
        hyper::service::service_fn(move |req| {
            let (router, ready) = (router.clone(), ready.clone());
            let since = *ready.lock().unwrap_or_else(PoisonError::into_inner);
            async move {
                let late = Arc::new(AtomicBool::new(false));
                let (mut parts, body) = req.into_parts();
                parts.extensions.insert(axum::extract::ConnectInfo(peer));
                let body = Deadlined {
                    inner: body,
                    deadline: Box::pin(tokio::time::sleep_until(since + deadlines.request)),
                    late: late.clone(),
                };
                let answer =
                    tower::ServiceExt::oneshot(router, http::Request::from_parts(parts, body))
                        .await;
                *ready.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
                if late.load(Ordering::Relaxed) {
                    tracing::debug!(%peer, "http: request body not received in time; closed");
                    let mut answer = super::plain(
                        http::StatusCode::REQUEST_TIMEOUT,
                        "the request was not received in time",
                    );
                    answer.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                    return Ok(answer);
                }
                answer
            }
        })
    };
    let builder = {
        let mut b = http1::Builder::new();
        // hyper's header timeout starts when it begins reading a request, as the body's
        // deadline does.
        b.timer(TokioTimer::new())
            .header_read_timeout(deadlines.request)
            .max_buf_size(MAX_HEADERS)
            .keep_alive(true);
        b
    };
    macro_rules! run {
        ($io:expr) => {{
            *ready.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
            let conn = builder.serve_connection(TokioIo::new($io), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stopping(&mut closed) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        }};
    }
    match tls {
        None => run!(stream),
        Some(acceptor) => {
            match tokio::time::timeout(deadlines.handshake, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => run!(tls),
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "http: TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "http: no TLS handshake in time; closed"),
            }
        }
    }
}

/// A request body that must have arrived by `deadline`: after it, reading fails (and `late`
/// says so, for the answer), so the handler gives up and the connection closes.
struct Deadlined {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    late: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body was not received in time")]
struct TooLate;

impl Body for Deadlined {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        // What has come is read, even at the deadline.
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.late.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(TooLate.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
