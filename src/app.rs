//! Wires everything — store, hasher, engine, gRPC services, health, reflection, TLS — and
//! serves on a bound listener until a shutdown future resolves. Tests start the server
//! through the same functions as `jeton serve`, on port 0.

use crate::cache::{self, CacheSettings, ValidationCache};
use crate::config::{BootstrapSettings, DatabaseUrl, Settings};
use crate::domain::{Clock, PrincipalId, Tenant, TenantId};
use crate::engine::{Engine, Error};
use crate::hashing::{HashError, Hasher};
use crate::service::proto::directory_service_server::DirectoryServiceServer;
use crate::service::proto::token_service_server::TokenServiceServer;
use crate::service::{DirectoryApi, TokenApi, proto};
use crate::store::{DbOptions, Store, StoreError};
use chrono::TimeDelta;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("argon2: {0}")]
    Hash(#[from] HashError),
    #[error("{0}")]
    Engine(#[from] Error),
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
    #[error("invalid {what}: {message}")]
    Invalid { what: &'static str, message: String },
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Connects to the database and brings its schema up to date.
pub async fn open_store(url: &DatabaseUrl, options: &DbOptions) -> Result<Store, AppError> {
    let store = Store::connect(url.expose(), options).await?;
    store.migrate().await?;
    Ok(store)
}

/// How long a stopping server waits for open connections to finish.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A server ready to run: database open and migrated, listener bound.
pub struct Server {
    listener: TcpListener,
    engine: Engine,
    tls: Option<ServerTlsConfig>,
    settings: Settings,
}

impl Server {
    /// Opens the database, migrates it and binds `settings.listen`.
    pub async fn build(settings: Settings, clock: Arc<dyn Clock>) -> Result<Self, AppError> {
        let store = open_store(&settings.database_url, &settings.db).await?;
        let hasher = Hasher::new(&settings.hashing, settings.pepper.clone())?;
        let window =
            TimeDelta::from_std(settings.activity_window).map_err(|e| AppError::Invalid {
                what: "activity window",
                message: e.to_string(),
            })?;
        let cache = Arc::new(ValidationCache::new(&settings.cache));
        let max_activation =
            TimeDelta::from_std(settings.max_activation).map_err(|e| AppError::Invalid {
                what: "maximum activation",
                message: e.to_string(),
            })?;
        let engine =
            Engine::new(store, hasher, clock, window, cache).with_max_activation(max_activation);
        let tls = settings.tls.as_ref().map(tls_config).transpose()?;
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| AppError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        Ok(Self {
            listener,
            engine,
            tls,
            settings,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then drains in-flight calls and flushes pending
    /// last-use times.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let Self {
            listener,
            engine,
            tls,
            settings,
        } = self;
        let addr = listener.local_addr().map_err(|source| AppError::Bind {
            addr: settings.listen,
            source,
        })?;

        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<TokenServiceServer<TokenApi>>().await;
        health
            .set_serving::<DirectoryServiceServer<DirectoryApi>>()
            .await;
        // grpcurl 1.8 speaks only v1alpha reflection; newer clients use v1: serve both.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };

        let flusher = tokio::spawn(flush_every(
            engine.clone(),
            settings.last_use_flush_interval,
        ));
        let sweeper = tokio::spawn(sweep_every(
            engine.clone(),
            settings.activation_sweep_interval,
        ));
        let follower = tokio::spawn(cache::follow(
            engine.store().clone(),
            engine.cache().clone(),
            settings.cache.poll_interval,
        ));

        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls)?;
        }
        tracing::info!(
            %addr,
            database = %settings.database_url.redacted(),
            tls = settings.tls.is_some(),
            trusted_frontends = settings.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
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
        let serve = builder
            .add_service(health_service)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?)
            .add_service(TokenServiceServer::new(TokenApi::new(engine.clone())))
            .add_service(DirectoryServiceServer::new(DirectoryApi::new(
                engine.clone(),
            )))
            .serve_with_incoming_shutdown(
                // Small responses must not wait for Nagle's algorithm and delayed ACKs (40 ms).
                TcpIncoming::from(listener)
                    .with_nodelay(Some(true))
                    .with_keepalive(Some(std::time::Duration::from_secs(60))),
                shutdown,
            );
        let served = tokio::select! {
            r = serve => r,
            () = drain_deadline => {
                tracing::warn!(timeout = ?DRAIN_TIMEOUT, "connections still open after the drain timeout; stopping anyway");
                Ok(())
            }
        };
        flusher.abort();
        follower.abort();
        sweeper.abort();
        match engine.last_use().flush().await {
            Ok(n) => tracing::info!(written = n, "last-use times flushed; stopped"),
            Err(e) => tracing::error!(error = %e, "could not flush last-use times at shutdown"),
        }
        Ok(served?)
    }
}

async fn flush_every(engine: Engine, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every.max(std::time::Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = engine.last_use().flush().await {
            tracing::warn!(error = %e, "last-use flush failed; will retry");
        }
    }
}

/// Records activations that ended by time in the audit trail.
async fn sweep_every(engine: Engine, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every.max(std::time::Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = engine.expire_activations().await {
            tracing::warn!(error = %e, "recording ended activations failed; will retry");
        }
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, AppError> {
    std::fs::read(path).map_err(|source| AppError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn tls_config(files: &crate::config::TlsFiles) -> Result<ServerTlsConfig, AppError> {
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
    settings: &BootstrapSettings,
    clock: Arc<dyn Clock>,
) -> Result<String, AppError> {
    let invalid = |what, e: crate::domain::NameError| AppError::Invalid {
        what,
        message: e.to_string(),
    };
    let tenant = TenantId::parse(&settings.tenant).map_err(|e| invalid("--tenant", e))?;
    let admin = PrincipalId::parse(&settings.admin).map_err(|e| invalid("--admin", e))?;
    let store = open_store(&settings.database_url, &settings.db).await?;
    let hasher = Hasher::new(&settings.hashing, settings.pepper.clone())?;
    let cache = Arc::new(ValidationCache::new(&CacheSettings::default()));
    let engine = Engine::new(store, hasher, clock, TimeDelta::days(7), cache);
    let tenant = Tenant {
        display_name: settings
            .tenant_name
            .clone()
            .unwrap_or_else(|| tenant.to_string()),
        api_url: settings
            .api_url
            .clone()
            .unwrap_or_else(|| format!("https://{tenant}.api.jeton.example")),
        max_token_lifetime: None,
        id: tenant,
    };
    let generated = engine.bootstrap(tenant, admin).await?;
    Ok(generated.string.expose().to_owned())
}
