//! Serving the HTTP listener: HTTP/1.1 (nginx speaks nothing newer to its auth subrequest),
//! TLS when configured, and bounded connections — a TLS handshake and a request's headers
//! must arrive within [`HANDSHAKE`], headers may not exceed [`MAX_HEADERS`] bytes, and a
//! stop lets requests in flight finish.

use crate::background::Task;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to finish its TLS handshake, and to send a request's headers.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Largest header section read.
const MAX_HEADERS: usize = 16 * 1024;
/// How long requests in flight may take to finish after a stop.
const DRAIN: Duration = Duration::from_secs(10);

/// A TLS acceptor for the certificate and key of `--tls-cert`/`--tls-key`.
pub(crate) fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `router` on `listener` until stopped.
pub(crate) fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, router: Router) -> Task {
    Task::spawn("http listener", move |mut stop| async move {
        let mut connections = tokio::task::JoinSet::new();
        let (closing, closed) = tokio::sync::watch::channel(false);
        loop {
            let (stream, peer) = tokio::select! {
                biased;
                _ = &mut stop => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "http: accept failed; backing off");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let (tls, router, closed) = (tls.clone(), router.clone(), closed.clone());
            connections.spawn(connection(stream, peer, tls, router, closed));
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
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
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
            .header_read_timeout(HANDSHAKE)
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
        Some(acceptor) => match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => run!(tls),
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "http: TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "http: no TLS handshake in time; closed"),
        },
    }
}
