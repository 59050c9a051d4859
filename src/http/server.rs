//! Serving the HTTP listener: HTTP/1.1 (nginx speaks nothing newer to its auth subrequest),
//! TLS when configured, and bounded connections (`net`): a place per connection, a TLS
//! handshake and every request's headers within the handshake timeout, headers of at most
//! [`MAX_HEADERS`] bytes, and a stop that lets requests in flight finish.

use crate::background::Task;
use crate::net::{Acceptor, Guarded};
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_rustls::TlsAcceptor;

/// Largest header section read.
const MAX_HEADERS: usize = 16 * 1024;
/// How long requests in flight may take to finish after a stop.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `router` on `acceptor` until stopped.
pub(crate) fn serve(mut acceptor: Acceptor, tls: Option<TlsAcceptor>, router: Router) -> Task {
    Task::spawn("http listener", move |mut stop| async move {
        let mut connections = tokio::task::JoinSet::new();
        let (closing, closed) = tokio::sync::watch::channel(false);
        let handshake = acceptor.limits().handshake;
        loop {
            let (stream, peer, place) = tokio::select! {
                biased;
                _ = &mut stop => break,
                accepted = acceptor.accept() => accepted,
            };
            let (tls, router, closed) = (tls.clone(), router.clone(), closed.clone());
            connections.spawn(async move {
                let stream = Guarded::new(stream, place, 1, handshake);
                connection(stream, peer, tls, handshake, router, closed).await;
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
    handshake: Duration,
    router: Router,
    mut closed: tokio::sync::watch::Receiver<bool>,
) {
    let service = TowerToHyperService::new(tower::util::MapRequest::new(
        router,
        move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            req
        },
    ));
    let builder = {
        let mut b = http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(handshake)
            .max_buf_size(MAX_HEADERS)
            .keep_alive(true);
        b
    };
    macro_rules! run {
        ($io:expr) => {{
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
        Some(acceptor) => match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => run!(tls),
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "http: TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "http: no TLS handshake in time; closed"),
        },
    }
}
