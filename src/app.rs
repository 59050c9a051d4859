//! Wires everything — store, hasher, validate path, use cases, gRPC services, TLS,
//! background tasks — and serves on a bound listener until a shutdown future resolves. Tests
//! start the server through the same functions as `jeton serve`, on port 0.

use crate::config::{BootstrapConfig, DbConfig, ServeConfig, TlsFiles};
use crate::domain::{ApiUrl, Clock, DisplayName, Tenant};
use crate::hashing::{HashError, Hasher};
use crate::last_use::{self, LastUse};
use crate::store::{Store, StoreError};
use crate::usecase::{self, UseCases};
use crate::validation::Validator;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("database: {0}")]
    Store(#[source] Cause),
    #[error("argon2: {0}")]
    Hash(#[source] Cause),
    #[error("{0}")]
    UseCase(#[source] Cause),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// The error underneath, with its own sources.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        AppError::Store(e.into())
    }
}

impl From<HashError> for AppError {
    fn from(e: HashError) -> Self {
        AppError::Hash(e.into())
    }
}

impl From<usecase::Error> for AppError {
    fn from(e: usecase::Error) -> Self {
        AppError::UseCase(e.into())
    }
}

/// Connects to the database and brings its schema up to date.
pub(crate) async fn open_store(db: &DbConfig) -> Result<Store, AppError> {
    let store = Store::connect(db.url.expose(), &db.options()).await?;
    store.migrate().await?;
    Ok(store)
}

/// `jeton migrate`: brings the schema up to date.
pub async fn migrate(db: &DbConfig) -> Result<(), AppError> {
    open_store(db).await.map(drop)
}

/// How long a stopping server waits for open connections to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A server ready to run: database open and migrated, listener bound.
pub struct Server {
    listener: TcpListener,
    cases: UseCases,
    validator: Validator,
    last_use: Arc<LastUse>,
    tls: Option<ServerTlsConfig>,
    config: ServeConfig,
}

impl Server {
    /// Opens the database, migrates it and binds `config.listen`.
    pub async fn build(config: ServeConfig, clock: Arc<dyn Clock>) -> Result<Self, AppError> {
        let store = open_store(&config.db).await?;
        let hasher = Hasher::new(&config.hashing(), config.hash.pepper()?)?;
        let validator = Validator::new(store.clone(), hasher.clone(), &config.cache());
        let last_use = Arc::new(LastUse::new(store.clone()));
        let cases = UseCases::new(
            store,
            hasher,
            clock,
            validator.clone(),
            last_use.clone(),
            config.policy(),
        );
        let tls = config.tls().as_ref().map(tls_config).transpose()?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| AppError::Bind {
                addr: config.listen,
                source,
            })?;
        Ok(Self {
            listener,
            cases,
            validator,
            last_use,
            tls,
            config,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then drains in-flight calls, stops the background
    /// tasks and flushes pending last-use times.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let Self {
            listener,
            cases,
            validator,
            last_use,
            tls,
            config,
        } = self;
        let addr = listener.local_addr().map_err(|source| AppError::Bind {
            addr: config.listen,
            source,
        })?;
        let (routes, _health) = crate::grpc::services(&cases).await?;
        let tasks = [
            validator.follow_changes(),
            cases
                .directory
                .start_sweeping(config.activation_sweep_interval),
            last_use::start_flushing(last_use, config.last_use_flush_interval),
        ];

        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls)?;
        }
        tracing::info!(
            %addr,
            database = %config.db.url.redacted(),
            tls = config.tls_cert.is_some(),
            trusted_frontends = config.client_ca.is_some(),
            "jeton listening"
        );
        // Stop accepting at the signal, let in-flight calls finish, but do not wait forever
        // for clients that keep idle connections open.
        let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            shutdown.await;
            let _ = signalled.send(());
        };
        let drain_deadline = async move {
            if on_signal.await.is_ok() {
                tokio::time::sleep(DRAIN_TIMEOUT).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let serve = builder.add_routes(routes).serve_with_incoming_shutdown(
            // Small responses must not wait for Nagle's algorithm and delayed ACKs (40 ms).
            TcpIncoming::from(listener)
                .with_nodelay(Some(true))
                .with_keepalive(Some(Duration::from_secs(60))),
            shutdown,
        );
        let served = tokio::select! {
            r = serve => r,
            () = drain_deadline => {
                tracing::warn!(timeout = ?DRAIN_TIMEOUT, "connections still open after the drain timeout; stopping anyway");
                Ok(())
            }
        };
        // The flusher goes last: its stop writes the uses of the calls that just drained.
        for task in tasks {
            task.stop().await;
        }
        Ok(served?)
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, AppError> {
    std::fs::read(path).map_err(|source| AppError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn tls_config(files: &TlsFiles) -> Result<ServerTlsConfig, AppError> {
    let mut tls =
        ServerTlsConfig::new().identity(Identity::from_pem(read(&files.cert)?, read(&files.key)?));
    if let Some(ca) = &files.client_ca {
        tls = tls
            .client_ca_root(Certificate::from_pem(read(ca)?))
            .client_auth_optional(true);
    }
    Ok(tls)
}

/// `jeton bootstrap`: creates a tenant and its first admin; returns the admin's token string.
pub async fn bootstrap(
    config: &BootstrapConfig,
    clock: Arc<dyn Clock>,
) -> Result<String, AppError> {
    let store = open_store(&config.db).await?;
    let hashing = config.hash.settings(None, Duration::from_secs(60));
    let hasher = Hasher::new(&hashing, config.hash.pepper()?)?;
    let tenant = Tenant {
        display_name: config
            .tenant_name
            .clone()
            .unwrap_or_else(|| DisplayName::from(&config.tenant)),
        api_url: config
            .api_url
            .clone()
            .unwrap_or_else(|| ApiUrl::default_for(&config.tenant)),
        max_token_lifetime: None,
        id: config.tenant.clone(),
    };
    let generated =
        usecase::bootstrap(&store, &hasher, clock.now(), tenant, config.admin.clone()).await?;
    Ok(generated.string.expose().to_owned())
}
