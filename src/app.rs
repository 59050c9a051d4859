//! Wires everything — store, hasher, validate path, use cases, gRPC services, TLS, metrics,
//! background tasks — and runs the server's life: bind the ports first, then open and migrate
//! the database, serve until a shutdown future resolves, then announce NOT_SERVING, keep
//! serving for the shutdown delay, drain calls in flight (bounded by the grace time), stop the
//! background tasks, write pending last-use times, and fold SQLite's log into its file.
//! Tests start the server through the same functions as `jeton serve`, on port 0.

pub use crate::background::Rounds;
use crate::background::Task;
use crate::config::{BackupConfig, BootstrapConfig, DbConfig, ServeConfig};
use crate::domain::{ApiUrl, Clock, DisplayName, Networks, Tenant};
use crate::hashing::{HashError, Hasher};
use crate::http::ScanningKeys;
use crate::last_use::{self, LastUse};
use crate::readiness::Readiness;
use crate::store::{Store, StoreError};
use crate::usecase::{self, Core, UseCases};
use crate::validation::Validator;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(Cause),
    #[error(transparent)]
    Hash(Cause),
    #[error(transparent)]
    UseCase(Cause),
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
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("TLS: {message}")]
    Tls { message: String },
    #[error("backup: {0}")]
    Backup(String),
    #[error("secret scanning keys")]
    ScanningKeys(#[source] Cause),
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
    open_store_with(db, None).await
}

/// The same, reading also from the hosts of `read_url` (`--database-read-url`).
async fn open_store_with(db: &DbConfig, read_url: Option<&str>) -> Result<Store, AppError> {
    let mut options = db.options();
    options.read_url = read_url.map(str::to_owned);
    let store = Store::connect(db.url.expose(), &options).await?;
    store.migrate().await?;
    Ok(store)
}

/// `jeton migrate`: brings the schema up to date.
pub async fn migrate(db: &DbConfig) -> Result<(), AppError> {
    open_store(db).await.map(drop)
}

/// `jeton backup`: a consistent copy of the SQLite database at `config.output`, taken while
/// servers keep serving.
pub async fn backup(config: &BackupConfig) -> Result<(), AppError> {
    if config.output.exists() {
        return Err(AppError::Backup(format!(
            "{} exists already; choose a new file",
            config.output.display()
        )));
    }
    let mut options = config.db.options();
    options.create = false;
    let store = Store::connect(config.db.url.expose(), &options).await?;
    match store.backup(&config.output).await? {
        Some(()) => Ok(()),
        None => Err(AppError::Backup(
            "jeton backs up SQLite databases only; for PostgreSQL use its own tools: \
             pg_dump --format=custom --file=jeton.dump DATABASE_URL, restored with pg_restore"
                .into(),
        )),
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { addr, source })
}

/// A server ready to run: ports bound, database open and migrated.
pub struct Server {
    listener: TcpListener,
    metrics: Option<(
        TcpListener,
        &'static metrics_exporter_prometheus::PrometheusHandle,
    )>,
    http: Option<(
        TcpListener,
        Option<tokio_rustls::TlsAcceptor>,
        Option<Arc<ScanningKeys>>,
    )>,
    store: Store,
    cases: UseCases,
    validator: Validator,
    last_use: Arc<LastUse>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    config: ServeConfig,
    sweeps: Sweeps,
}

/// The rounds of the sweepers that make changes by time, as they complete.
#[derive(Debug, Clone, Default)]
pub struct Sweeps {
    /// Tokens retired by their tenant's `revoke_unused_after`.
    pub retirement: Rounds,
    /// Activations of eligible roles that ended.
    pub activation: Rounds,
}

impl Server {
    /// Binds `config.listen` (and the metrics port), then opens the database and migrates it.
    pub async fn build(config: ServeConfig, clock: Arc<dyn Clock>) -> Result<Self, AppError> {
        let tls = match config.tls() {
            Some(files) => Some(
                crate::net::tls_config(
                    &files.cert,
                    &files.key,
                    files.client_ca.as_deref(),
                    &[b"h2"],
                )
                .map_err(|message| AppError::Tls { message })?,
            ),
            None => None,
        };
        let pepper = config.hash.pepper()?;
        let listener = bind(config.listen).await?;
        let metrics = match config.metrics_listen {
            Some(addr) => {
                let listener = bind(addr).await?;
                Some((
                    listener,
                    crate::metrics::install().map_err(AppError::Metrics)?,
                ))
            }
            None => None,
        };
        let http = match config.http_listen {
            Some(addr) => {
                let tls = match config.tls() {
                    Some(files) => Some(
                        crate::net::tls_config(&files.cert, &files.key, None, &[b"http/1.1"])
                            .map_err(|message| AppError::Tls { message })?,
                    ),
                    None => None,
                };
                let keys = match &config.secret_scanning_keys {
                    Some(path) => Some(Arc::new(
                        ScanningKeys::load(path)
                            .map_err(|e| AppError::ScanningKeys(Box::new(e)))?,
                    )),
                    None => None,
                };
                Some((bind(addr).await?, tls, keys))
            }
            None if config.secret_scanning_keys.is_some() => {
                return Err(AppError::ScanningKeys(
                    "--secret-scanning-keys: reports are received on the HTTP listener; give --http-listen too".into(),
                ));
            }
            None => None,
        };
        let read_url = config.database_read_url.as_ref().map(|u| u.expose());
        let store = open_store_with(&config.db, read_url).await?;
        let hasher = Hasher::new(&config.hashing(), pepper)?;
        let validator = Validator::new(store.clone(), hasher.clone(), &config.cache());
        let last_use = Arc::new(LastUse::new(store.clone()));
        let cases = UseCases::new(Core {
            store: store.clone(),
            hasher,
            clock,
            validator: validator.clone(),
            last_use: last_use.clone(),
            policy: config.policy(),
            audit_appended: Arc::default(),
            refusals: Default::default(),
        });
        Ok(Self {
            listener,
            metrics,
            http,
            store,
            cases,
            validator,
            last_use,
            tls,
            config,
            sweeps: Sweeps::default(),
        })
    }

    /// The sweepers' rounds, to see one complete (tests, embedders).
    pub fn sweeps(&self) -> Sweeps {
        self.sweeps.clone()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where the HTTP front door is served, when it is.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|(l, _, _)| l.local_addr().ok())
    }

    /// Where metrics are served, when they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serves until `shutdown` resolves, then shuts down in order (see the module's doc).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let Self {
            listener,
            metrics,
            http,
            store,
            cases,
            validator,
            last_use,
            tls,
            config,
            sweeps,
        } = self;
        let addr = listener.local_addr().map_err(|source| AppError::Bind {
            addr: config.listen,
            source,
        })?;
        let readiness = Readiness::new();
        let (routes, reporter) =
            crate::grpc::services(&cases, config.db.connect_timeout, readiness.subscribe()).await?;
        let mut tasks = vec![
            readiness.start_checking(store.clone()),
            crate::grpc::start_reporting(reporter, readiness.subscribe(), store.watch_roles()),
            validator.follow_changes(),
            cases
                .directory
                .start_sweeping(config.activation_sweep_interval, sweeps.activation),
            cases
                .tokens
                .start_retiring(config.retirement_sweep_interval, sweeps.retirement),
        ];
        tasks.extend(store.start_probing());
        tasks.extend(cases.access.start_recording_refusals());
        if let Some((listener, recorder)) = metrics {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "metrics listening");
            }
            tasks.push(crate::metrics::upkeep(recorder));
            let scrape = Scrape {
                store: store.clone(),
                validator: validator.clone(),
                last_use: last_use.clone(),
                readiness: readiness.clone(),
            };
            tasks.push(serve_metrics(listener, recorder, scrape));
        }
        if let Some((listener, tls, scanning)) = http {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, tls = tls.is_some(), "http listening");
            }
            let router = crate::http::router(crate::http::Front {
                access: cases.access.clone(),
                trusted_proxies: Arc::new(Networks::from_nets(config.trusted_proxies.clone())),
                scanning,
            });
            let acceptor = crate::net::Acceptor::new(listener, config.limits());
            tasks.push(crate::http::serve(
                acceptor,
                tls,
                router,
                config.http_request_timeout,
            ));
        }
        let flusher = last_use::start_flushing(last_use, config.last_use_flush_interval);

        let mut builder = tonic::transport::Server::builder()
            // A peer that stops answering pings is closed.
            .http2_keepalive_interval(Some(Duration::from_secs(60)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .layer(crate::grpc::layers(config.db.connect_timeout));
        // A hint only: a database that is away at this moment is readiness's to report (the
        // server serves UNAVAILABLE and comes back with it), not a reason to stop.
        match store.is_empty().await {
            Ok(true) => tracing::info!(
                database = %config.db.url.redacted(),
                "no tenant yet: create the first one with `jeton bootstrap --tenant <id> --admin <principal>` on the same database"
            ),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::chain(&e), "could not tell whether the database has a tenant yet")
            }
        }
        tracing::info!(
            %addr,
            database = %config.db.url.redacted(),
            tls = config.tls_cert.is_some(),
            trusted_frontends = config.client_ca.is_some(),
            "jeton listening"
        );
        // At the signal: NOT_SERVING, keep serving for the delay, then stop accepting and let
        // calls in flight finish — but not for longer than the grace time.
        let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
        let announce = readiness.clone();
        let delay = config.shutdown_delay;
        let shutdown = async move {
            shutdown.await;
            announce.shut_down();
            tracing::info!(?delay, "shutting down: health NOT_SERVING");
            tokio::time::sleep(delay).await;
            let _ = signalled.send(());
        };
        let grace = config.shutdown_grace;
        let drain_deadline = async move {
            if on_signal.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let router = builder.add_routes(routes);
        let acceptor = crate::net::Acceptor::new(listener, config.limits());
        let preface = crate::net::HTTP2_PREFACE;
        let serve = async move {
            match tls {
                None => {
                    let incoming =
                        crate::net::incoming(acceptor, preface, |s| async move { Ok(s) });
                    router
                        .serve_with_incoming_shutdown(incoming, shutdown)
                        .await
                }
                Some(tls) => {
                    let incoming = crate::net::incoming(acceptor, preface, move |s| tls.accept(s));
                    router
                        .serve_with_incoming_shutdown(incoming, shutdown)
                        .await
                }
            }
        };
        let served = tokio::select! {
            r = serve => r,
            () = drain_deadline => {
                tracing::warn!(?grace, "calls still in flight after the shutdown grace time; stopping anyway");
                Ok(())
            }
        };
        for task in tasks {
            task.stop().await;
        }
        // The flusher goes last: its stop writes the uses of the calls that just drained.
        flusher.stop().await;
        if let Err(e) = store.close().await {
            tracing::warn!(error = %crate::telemetry::chain(&e), "could not fold the write-ahead log into the database file");
        }
        tracing::info!("stopped");
        Ok(served?)
    }
}

/// What a scrape reads from the running server.
struct Scrape {
    store: Store,
    validator: Validator,
    last_use: Arc<LastUse>,
    readiness: Readiness,
}

impl Scrape {
    fn snapshot(&self) -> crate::metrics::Snapshot {
        let (cache_tokens, cache_absent, cache_principals) = self.validator.entries();
        let (pool_in_use, pool_idle, pool_waiting) = self.store.pool();
        crate::metrics::Snapshot {
            cache_tokens,
            cache_absent,
            cache_principals,
            pool_in_use,
            pool_idle,
            pool_waiting,
            last_use_pending: self.last_use.pending(),
            database_up: self.readiness.is_serving(),
            database_writable: self.readiness.is_serving() && self.store.roles().primary.is_some(),
        }
    }
}

/// Serves `GET /metrics` on `listener` until stopped.
fn serve_metrics(
    listener: TcpListener,
    recorder: &'static metrics_exporter_prometheus::PrometheusHandle,
    scrape: Scrape,
) -> Task {
    use axum::routing::get;
    let scrape = Arc::new(scrape);
    let router = axum::Router::new().route(
        "/metrics",
        get(move || {
            let scrape = scrape.clone();
            async move {
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    crate::metrics::render(recorder, &scrape.snapshot()),
                )
            }
        }),
    );
    Task::spawn("metrics server", move |stop| async move {
        let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = stop.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "the metrics server failed");
        }
    })
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
        revoke_unused_after: None,
        require_allowed_cidrs: false,
        id: config.tenant.clone(),
    };
    let generated =
        usecase::bootstrap(&store, &hasher, clock.now(), tenant, config.admin.clone()).await?;
    Ok(generated.string.expose().to_owned())
}

/// A throwaway directory for `serve --dev`, removed when dropped.
pub struct DevDir(PathBuf);

impl DevDir {
    pub fn create() -> std::io::Result<Self> {
        let mut random = [0u8; 8];
        rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut random)
            .map_err(std::io::Error::other)?;
        let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let dir = std::env::temp_dir().join(format!("jeton-dev-{name}"));
        std::fs::create_dir(&dir)?;
        Ok(Self(dir))
    }

    /// The URL of the database inside.
    pub fn database_url(&self) -> String {
        format!("sqlite://{}", self.0.join("jeton.db").display())
    }
}

impl Drop for DevDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
