//! Typed settings and the command line.
//!
//! Precedence, lowest first: built-in defaults < the TOML file given by `--config` <
//! `JETON_*` environment variables < command-line flags. clap merges the last two (a flag
//! wins over its variable); the file fills what both left unset. Keys of the file are the
//! long flag names with `_` for `-` (`database_url = "…"`).

pub use crate::cache::CacheSettings;
use crate::hashing::{HashSettings, Pepper};
use crate::store::DbOptions;
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "jeton",
    version,
    about = "Issues, lists, revokes and validates API tokens over gRPC."
)]
pub struct Cli {
    /// TOML file with settings (keys are the long flag names with '_' for '-').
    #[arg(long, env = "JETON_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log filter in tracing's EnvFilter syntax, e.g. "info", "debug,sqlx=warn".
    #[arg(long, env = "JETON_LOG", global = true, value_name = "FILTER")]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gRPC API (TokenService, DirectoryService, health, reflection).
    Serve(ServeArgs),
    /// Create a tenant and its first admin, and print one admin token on stdout, once.
    Bootstrap(BootstrapArgs),
    /// Bring the database schema up to date and exit.
    Migrate(DbArgs),
}

#[derive(Debug, Args)]
pub struct DbArgs {
    /// Database URL: sqlite://PATH (created on first use) or postgres://USER@HOST/DB
    /// [default: sqlite://jeton.db]
    #[arg(long, env = "JETON_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// Largest number of pooled database connections [default: 16]
    #[arg(long, env = "JETON_DB_MAX_CONNECTIONS", value_name = "N")]
    pub db_max_connections: Option<u32>,
    /// How long to wait for a database connection before answering UNAVAILABLE [default: 5s]
    #[arg(long, env = "JETON_DB_CONNECT_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub db_connect_timeout: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct HashArgs {
    /// Argon2id memory cost in KiB [default: 19456]
    #[arg(long, env = "JETON_ARGON2_MEMORY_KIB", value_name = "KIB")]
    pub argon2_memory_kib: Option<u32>,
    /// Argon2id iterations [default: 2]
    #[arg(long, env = "JETON_ARGON2_ITERATIONS", value_name = "N")]
    pub argon2_iterations: Option<u32>,
    /// Argon2id lanes [default: 1]
    #[arg(long, env = "JETON_ARGON2_PARALLELISM", value_name = "N")]
    pub argon2_parallelism: Option<u32>,
    /// File whose bytes are the server-side pepper (Argon2's secret input). The pepper may
    /// instead be given in the JETON_PEPPER environment variable. Changing it invalidates
    /// every token issued before.
    #[arg(long, env = "JETON_PEPPER_FILE", value_name = "FILE")]
    pub pepper_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub hash: HashArgs,
    /// Address to serve gRPC on [default: 127.0.0.1:50051]
    #[arg(long, env = "JETON_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain; with --tls-key turns TLS on
    #[arg(
        long,
        env = "JETON_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(
        long,
        env = "JETON_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// PEM CA whose client certificates mark trusted frontends (may send x-jeton-principal).
    /// Client certificates stay optional on the port. Needs TLS.
    #[arg(long, env = "JETON_CLIENT_CA", value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// Most Argon2 computations at once [default: number of cores]
    #[arg(long, env = "JETON_ARGON2_MAX_CONCURRENT", value_name = "N")]
    pub argon2_max_concurrent: Option<usize>,
    /// How long a request may queue for an Argon2 slot before RESOURCE_EXHAUSTED [default: 2s]
    #[arg(long, env = "JETON_ARGON2_QUEUE_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub argon2_queue_timeout: Option<Duration>,
    /// A token used within this window is ACTIVE, used before it INACTIVE [default: 7d]
    #[arg(long, env = "JETON_ACTIVITY_WINDOW", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub activity_window: Option<Duration>,
    /// Longest activation of an eligible role (ActivateRole) [default: 8h]
    #[arg(long, env = "JETON_MAX_ACTIVATION", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub max_activation: Option<Duration>,
    /// How often activations that ended are recorded in the audit trail [default: 10s]
    #[arg(long, env = "JETON_ACTIVATION_SWEEP_INTERVAL", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub activation_sweep_interval: Option<Duration>,
    /// Most tokens kept in the validation cache [default: 1000000]
    #[arg(long, env = "JETON_CACHE_CAPACITY", value_name = "N")]
    pub cache_capacity: Option<u64>,
    /// Safety net of the validation cache: a cached token's row is re-read (without Argon2)
    /// and a cached principal reloaded after this long [default: 60s]
    #[arg(long, env = "JETON_CACHE_TTL", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub cache_ttl: Option<Duration>,
    /// How often the change log is read to invalidate cached entries changed by other
    /// replicas [default: 100ms]
    #[arg(long, env = "JETON_CHANGE_POLL_INTERVAL", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub change_poll_interval: Option<Duration>,
    /// How often last-use times are written to the database; a crash loses at most this
    /// much [default: 60s]
    #[arg(long, env = "JETON_LAST_USE_FLUSH_INTERVAL", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub last_use_flush_interval: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub hash: HashArgs,
    /// Tenant id to create: [a-z0-9][a-z0-9-]{1,62}
    #[arg(long, env = "JETON_TENANT")]
    pub tenant: String,
    /// Principal id of the tenant's first admin, e.g. alice@contoso.com
    #[arg(long, env = "JETON_ADMIN")]
    pub admin: String,
    /// Tenant-specific API endpoint handed back with every generated token
    /// [default: https://<tenant>.api.jeton.example]
    #[arg(long, env = "JETON_API_URL", value_name = "URL")]
    pub api_url: Option<String>,
    /// Display name of the tenant [default: the tenant id]
    #[arg(long, env = "JETON_TENANT_NAME", value_name = "NAME")]
    pub tenant_name: Option<String>,
}

/// The optional TOML file: every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    log: Option<String>,
    database_url: Option<String>,
    db_max_connections: Option<u32>,
    #[serde(default, with = "opt_duration")]
    db_connect_timeout: Option<Duration>,
    argon2_memory_kib: Option<u32>,
    argon2_iterations: Option<u32>,
    argon2_parallelism: Option<u32>,
    argon2_max_concurrent: Option<usize>,
    #[serde(default, with = "opt_duration")]
    argon2_queue_timeout: Option<Duration>,
    pepper_file: Option<PathBuf>,
    listen: Option<SocketAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    #[serde(default, with = "opt_duration")]
    activity_window: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    last_use_flush_interval: Option<Duration>,
    api_url: Option<String>,
    #[serde(default, with = "opt_duration")]
    max_activation: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    activation_sweep_interval: Option<Duration>,
    cache_capacity: Option<u64>,
    #[serde(default, with = "opt_duration")]
    cache_ttl: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    change_poll_interval: Option<Duration>,
}

mod opt_duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Toml {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Toml {
            path: path.to_owned(),
            source,
        })
    }

    pub fn log(&self) -> Option<&str> {
        self.log.as_deref()
    }
}

/// A database URL. `Debug` and [`DatabaseUrl::redacted`] hide the password.
#[derive(Clone)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        let s = &self.0;
        let Some(scheme_end) = s.find("://") else {
            return s.clone();
        };
        let rest = &s[scheme_end + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        match rest[..authority_end].rfind('@') {
            Some(at) => match rest[..at].find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &s[..scheme_end + 3],
                    &rest[..colon],
                    &rest[at..]
                ),
                None => s.clone(),
            },
            None => s.clone(),
        }
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

/// TLS files of `serve`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// Everything `jeton serve` needs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database_url: DatabaseUrl,
    pub db: DbOptions,
    pub tls: Option<TlsFiles>,
    pub hashing: HashSettings,
    pub pepper: Pepper,
    pub activity_window: Duration,
    pub last_use_flush_interval: Duration,
    pub cache: CacheSettings,
    pub max_activation: Duration,
    pub activation_sweep_interval: Duration,
}

impl Settings {
    /// Defaults, with the given database.
    pub fn new(database_url: &str) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            database_url: DatabaseUrl::new(database_url),
            db: DbOptions::default(),
            tls: None,
            hashing: HashSettings::default(),
            pepper: Pepper::default(),
            activity_window: Duration::from_secs(7 * 24 * 3600),
            last_use_flush_interval: Duration::from_secs(60),
            cache: CacheSettings::default(),
            max_activation: Duration::from_secs(8 * 3600),
            activation_sweep_interval: Duration::from_secs(10),
        }
    }
}

pub const DEFAULT_DATABASE_URL: &str = "sqlite://jeton.db";

fn db_settings(args: &DbArgs, file: &FileConfig) -> (DatabaseUrl, DbOptions) {
    let defaults = DbOptions::default();
    let url = args
        .database_url
        .clone()
        .or_else(|| file.database_url.clone())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    let options = DbOptions {
        max_connections: args
            .db_max_connections
            .or(file.db_max_connections)
            .unwrap_or(defaults.max_connections),
        connect_timeout: args
            .db_connect_timeout
            .or(file.db_connect_timeout)
            .unwrap_or(defaults.connect_timeout),
    };
    (DatabaseUrl::new(url), options)
}

fn hash_settings(
    args: &HashArgs,
    file: &FileConfig,
) -> Result<(HashSettings, Pepper), ConfigError> {
    let d = HashSettings::default();
    let settings = HashSettings {
        memory_kib: args
            .argon2_memory_kib
            .or(file.argon2_memory_kib)
            .unwrap_or(d.memory_kib),
        iterations: args
            .argon2_iterations
            .or(file.argon2_iterations)
            .unwrap_or(d.iterations),
        parallelism: args
            .argon2_parallelism
            .or(file.argon2_parallelism)
            .unwrap_or(d.parallelism),
        ..d
    };
    let pepper = match args.pepper_file.as_ref().or(file.pepper_file.as_ref()) {
        Some(path) => Pepper::new(std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?),
        None => match std::env::var_os("JETON_PEPPER") {
            Some(v) => Pepper::new(v.into_encoded_bytes()),
            None => Pepper::default(),
        },
    };
    Ok((settings, pepper))
}

pub fn database(args: &DbArgs, file: &FileConfig) -> (DatabaseUrl, DbOptions) {
    db_settings(args, file)
}

pub fn serve_settings(args: &ServeArgs, file: &FileConfig) -> Result<Settings, ConfigError> {
    let (database_url, db) = db_settings(&args.db, file);
    let (mut hashing, pepper) = hash_settings(&args.hash, file)?;
    if let Some(n) = args.argon2_max_concurrent.or(file.argon2_max_concurrent) {
        hashing.max_concurrent = n;
    }
    if let Some(t) = args.argon2_queue_timeout.or(file.argon2_queue_timeout) {
        hashing.queue_timeout = t;
    }
    let cert = args.tls_cert.clone().or_else(|| file.tls_cert.clone());
    let key = args.tls_key.clone().or_else(|| file.tls_key.clone());
    let client_ca = args.client_ca.clone().or_else(|| file.client_ca.clone());
    let tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert,
            key,
            client_ca,
        }),
        (None, None) if client_ca.is_some() => {
            return Err(ConfigError::Invalid(
                "--client-ca needs --tls-cert and --tls-key".into(),
            ));
        }
        (None, None) => None,
        _ => {
            return Err(ConfigError::Invalid(
                "--tls-cert and --tls-key go together".into(),
            ));
        }
    };
    let d = Settings::new(DEFAULT_DATABASE_URL);
    let mut cache = d.cache.clone();
    if let Some(n) = args.cache_capacity.or(file.cache_capacity) {
        cache.capacity = n;
    }
    if let Some(t) = args.cache_ttl.or(file.cache_ttl) {
        cache.ttl = t;
    }
    if let Some(t) = args.change_poll_interval.or(file.change_poll_interval) {
        cache.poll_interval = t;
        cache.stale_after = cache.stale_after.max(t * 5);
    }
    Ok(Settings {
        cache,
        max_activation: args
            .max_activation
            .or(file.max_activation)
            .unwrap_or(d.max_activation),
        activation_sweep_interval: args
            .activation_sweep_interval
            .or(file.activation_sweep_interval)
            .unwrap_or(d.activation_sweep_interval),
        listen: args.listen.or(file.listen).unwrap_or(d.listen),
        database_url,
        db,
        tls,
        hashing,
        pepper,
        activity_window: args
            .activity_window
            .or(file.activity_window)
            .unwrap_or(d.activity_window),
        last_use_flush_interval: args
            .last_use_flush_interval
            .or(file.last_use_flush_interval)
            .unwrap_or(d.last_use_flush_interval),
    })
}

/// Everything `jeton bootstrap` needs.
#[derive(Debug, Clone)]
pub struct BootstrapSettings {
    pub database_url: DatabaseUrl,
    pub db: DbOptions,
    pub hashing: HashSettings,
    pub pepper: Pepper,
    pub tenant: String,
    pub tenant_name: Option<String>,
    pub admin: String,
    pub api_url: Option<String>,
}

pub fn bootstrap_settings(
    args: &BootstrapArgs,
    file: &FileConfig,
) -> Result<BootstrapSettings, ConfigError> {
    let (database_url, db) = db_settings(&args.db, file);
    let (hashing, pepper) = hash_settings(&args.hash, file)?;
    Ok(BootstrapSettings {
        database_url,
        db,
        hashing,
        pepper,
        tenant: args.tenant.clone(),
        tenant_name: args.tenant_name.clone(),
        admin: args.admin.clone(),
        api_url: args.api_url.clone().or_else(|| file.api_url.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        let u = DatabaseUrl::new("postgres://jeton:s3cret@db:5432/jeton");
        assert_eq!(u.redacted(), "postgres://jeton:***@db:5432/jeton");
        assert!(!format!("{u:?}").contains("s3cret"));
        assert_eq!(
            DatabaseUrl::new("sqlite://jeton.db").redacted(),
            "sqlite://jeton.db"
        );
        assert_eq!(
            DatabaseUrl::new("postgres://root@h/db").redacted(),
            "postgres://root@h/db"
        );
    }

    #[test]
    fn file_then_env_then_flag() {
        let file: FileConfig = toml::from_str(
            "database_url = \"sqlite://file.db\"\nactivity_window = \"3d\"\nlisten = \"0.0.0.0:1\"",
        )
        .unwrap();
        let cli = Cli::try_parse_from(["jeton", "serve", "--listen", "127.0.0.1:9"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!()
        };
        let s = serve_settings(&args, &file).unwrap();
        assert_eq!(s.listen.port(), 9);
        assert_eq!(s.database_url.expose(), "sqlite://file.db");
        assert_eq!(s.activity_window, Duration::from_secs(3 * 86400));
        assert!(toml::from_str::<FileConfig>("nonsense = 1").is_err());
    }
}
