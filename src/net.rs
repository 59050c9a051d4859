//! Connections that cannot be held for free: what every listening port of jeton accepts
//! through.
//!
//! - At most `max_connections` at once per port: the accept loop waits for a free place
//!   before it accepts, so a flood waits in the kernel's backlog instead of eating file
//!   descriptors.
//! - An accept that fails (out of file descriptors, …) backs off and is logged — at most once
//!   a second — instead of spinning.
//! - A new connection must finish its TLS handshake, and then send its first bytes (the
//!   HTTP/2 preface, or an HTTP/1.1 request line), within `handshake`; a connection that
//!   says nothing is closed.
//! - At start, the soft limit on open files is raised to the hard one.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes an HTTP/2 client must send before its deadline: the connection preface.
pub(crate) const HTTP2_PREFACE: usize = 24;
/// How long an accept loop waits after a failed accept.
const BACKOFF: Duration = Duration::from_millis(100);

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_connections: usize,
    pub handshake: Duration,
}

/// Raises the soft limit on open files to the hard one; returns the limit now.
pub(crate) fn raise_fd_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the limit on open files");
            None
        }
    }
}

/// Accepts connections on one port within [`Limits`].
#[derive(Debug)]
pub(crate) struct Acceptor {
    listener: TcpListener,
    places: Arc<Semaphore>,
    limits: Limits,
    /// When an accept failure was last logged.
    logged: Option<Instant>,
}

impl Acceptor {
    pub(crate) fn new(listener: TcpListener, limits: Limits) -> Self {
        Self {
            listener,
            places: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            limits,
            logged: None,
        }
    }

    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    /// The next connection, with its place; waits while every place is taken.
    pub(crate) async fn accept(&mut self) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
        loop {
            let Ok(place) = self.places.clone().acquire_owned().await else {
                // The semaphore is never closed.
                std::future::pending::<()>().await;
                unreachable!()
            };
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return (stream, peer, place);
                }
                Err(e) => {
                    if self
                        .logged
                        .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
                    {
                        self.logged = Some(Instant::now());
                        tracing::warn!(error = %e, "accepting a connection failed; backing off");
                    }
                    drop(place);
                    tokio::time::sleep(BACKOFF).await;
                }
            }
        }
    }
}

/// A connection that holds its place, and is cut when its first bytes do not come in time.
pub(crate) struct Guarded<S> {
    inner: S,
    _place: OwnedSemaphorePermit,
    /// Until the first bytes have come: when they must have.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    read: usize,
    first_bytes: usize,
}

impl<S> Guarded<S> {
    /// `first_bytes` must be read within `within` (counted from now).
    pub(crate) fn new(
        inner: S,
        place: OwnedSemaphorePermit,
        first_bytes: usize,
        within: Duration,
    ) -> Self {
        Self {
            inner,
            _place: place,
            deadline: Some(Box::pin(tokio::time::sleep(within))),
            read: 0,
            first_bytes,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.read += buf.filled().len() - before;
            if self.read >= self.first_bytes {
                self.deadline = None;
            }
            return polled;
        }
        if let Some(deadline) = self.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client sent nothing in time",
            )));
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The connection's own information (peer address, client certificates) is its inner
/// stream's, so tonic finds it where it looks.
impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for Guarded<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// The TLS side of a port: the server's certificate, and the CA of the trusted frontends'
/// client certificates (optional for clients) when there is one.
pub(crate) fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
    client_ca: Option<&std::path::Path>,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let read_certs = |path: &std::path::Path| {
        CertificateDer::pem_file_iter(path)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    let certs = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca)? {
                roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections into a stream of ready ones, `Guarded`, with TLS when `tls` is given:
/// handshakes run beside the accept loop (bounded by the limits' `handshake`), so a slow
/// client holds nobody else up. The loop ends when the stream is dropped.
pub(crate) fn incoming<S, F, Fut>(
    mut acceptor: Acceptor,
    first_bytes: usize,
    handshake: F,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Guarded<S>>>
where
    S: Send + 'static,
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = io::Result<S>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (stream, peer, place) = tokio::select! {
                accepted = acceptor.accept() => accepted,
                () = tx.closed() => return,
            };
            let within = acceptor.limits().handshake;
            let started = tokio::time::Instant::now();
            let ready = handshake(stream);
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(within, ready).await {
                    Ok(Ok(s)) => {
                        let left = within.saturating_sub(started.elapsed());
                        let _ = tx.send(Ok(Guarded::new(s, place, first_bytes, left))).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "handshake failed"),
                    Err(_) => tracing::debug!(%peer, "no handshake in time; closed"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
