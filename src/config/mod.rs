//! The command line and typed settings. Each setting is declared once, as a clap field: its
//! flag, its `JETON_*` environment variable, its default and its help text; its key in the
//! TOML file given by `--config` is the long flag name with `_` for `-` ([`file`]).
//! Precedence, lowest first: default < file < environment < flag.
//!
//! Every value is checked when it is read, and a bad one is refused with an error that names
//! the setting. Secrets are wrapped so that `Debug` never prints them ([`DatabaseUrl`], the
//! pepper).

mod file;
mod parse;

pub use file::parse_command_line;

use crate::domain::{ApiUrl, DisplayName, PrincipalId, TenantId};
use crate::hashing::{HashSettings, Pepper};
use crate::store::DbOptions;
use crate::usecase::Policy;
use crate::validation::CacheSettings;
use chrono::TimeDelta;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "jeton",
    version,
    about = "Issues, lists, revokes and validates API tokens over gRPC.",
    next_line_help = true
)]
pub struct Cli {
    /// TOML file with settings; its keys are the long flag names with '_' for '-'
    #[arg(long, env = "JETON_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log filter in tracing's EnvFilter syntax, e.g. "info" or "debug,sqlx=warn"
    #[arg(long, env = "JETON_LOG", global = true, value_name = "FILTER",
          default_value = "info,sqlx=warn,sea_orm_migration=warn", value_parser = parse::log_filter)]
    pub log: String,
    /// Log line format: "json" (one object per line), "pretty" (text), or "auto" (text on a
    /// terminal, JSON otherwise)
    #[arg(
        long,
        env = "JETON_LOG_FORMAT",
        global = true,
        value_name = "FORMAT",
        default_value = "auto",
        value_enum
    )]
    pub log_format: crate::telemetry::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gRPC API (TokenService, DirectoryService, health, reflection).
    Serve(Box<ServeConfig>),
    /// Create a tenant and its first admin, and print one admin token on stdout, once.
    Bootstrap(BootstrapConfig),
    /// Bring the database schema up to date and exit.
    Migrate(DbConfig),
    /// Copy the SQLite database, consistently, while it serves (PostgreSQL: use pg_dump).
    Backup(BackupConfig),
}

/// The database and its connection pool.
#[derive(Debug, Clone, Args)]
pub struct DbConfig {
    /// Database URL: sqlite://PATH (created on first use) or
    /// postgres://USER[:PASSWORD]@HOST[:PORT][,HOST[:PORT]…]/DB (several hosts: jeton writes
    /// to the one that is not in recovery, and finds the new one after a failover)
    #[arg(long = "database-url", env = "JETON_DATABASE_URL", value_name = "URL", hide_env_values = true,
          default_value = "sqlite://jeton.db", value_parser = parse::database_url)]
    pub url: DatabaseUrl,
    /// Largest number of pooled database connections
    #[arg(long = "db-max-connections", env = "JETON_DB_MAX_CONNECTIONS", value_name = "N",
          default_value = "16", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_connections: u32,
    /// How long a call waits for the database (a connection, and every statement it needs)
    /// before answering UNAVAILABLE
    #[arg(long = "db-connect-timeout", env = "JETON_DB_CONNECT_TIMEOUT", value_name = "DURATION",
          default_value = "5s", value_parser = parse::positive_duration)]
    pub connect_timeout: Duration,
}

/// Argon2id parameters of new hashes, and the pepper.
#[derive(Debug, Clone, Args)]
pub struct HashConfig {
    /// Argon2id memory cost of new hashes, in KiB
    #[arg(long = "argon2-memory-kib", env = "JETON_ARGON2_MEMORY_KIB", value_name = "KIB",
          default_value = "19456", value_parser = clap::value_parser!(u32).range(8..=4_194_304))]
    pub memory_kib: u32,
    /// Argon2id iterations of new hashes
    #[arg(long = "argon2-iterations", env = "JETON_ARGON2_ITERATIONS", value_name = "N",
          default_value = "2", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub iterations: u32,
    /// Argon2id lanes of new hashes
    #[arg(long = "argon2-parallelism", env = "JETON_ARGON2_PARALLELISM", value_name = "N",
          default_value = "1", value_parser = clap::value_parser!(u32).range(1..=255))]
    pub parallelism: u32,
    /// File whose bytes are the server-side pepper (Argon2's secret input); the pepper may
    /// instead be given in the JETON_PEPPER environment variable. Changing it invalidates
    /// every token issued before
    #[arg(long = "pepper-file", env = "JETON_PEPPER_FILE", value_name = "FILE")]
    pub pepper_file: Option<PathBuf>,
}

/// Everything `jeton serve` needs.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    #[command(flatten)]
    pub db: DbConfig,
    #[command(flatten)]
    pub hash: HashConfig,
    /// More PostgreSQL hosts, in the form of --database-url, that jeton may read from (first
    /// validations, List, the directory, ListAuditEvents, once the standby has applied what
    /// the primary had written when the read began) but never writes to: standbys
    #[arg(long = "database-read-url", env = "JETON_DATABASE_READ_URL", value_name = "URL",
          hide_env_values = true, value_parser = parse::postgres_url)]
    pub database_read_url: Option<DatabaseUrl>,
    /// When no database host answers at all, how long after its last complete read of the
    /// change log a replica keeps answering Validate from its cache, counting and logging
    /// each such answer (0s: never — fail closed)
    #[arg(long, env = "JETON_STALE_IF_ERROR", value_name = "DURATION",
          default_value = "0s", value_parser = parse::duration)]
    pub stale_if_error: Duration,
    /// Address to serve gRPC on
    #[arg(
        long,
        env = "JETON_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: SocketAddr,
    /// Address to serve Prometheus metrics on (GET /metrics); off when not given
    #[arg(long, env = "JETON_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Address to serve the HTTP front door on: forward-auth (/v1/forward-auth), RFC 7662
    /// introspection (/oauth2/introspect), Kubernetes TokenReview; HTTP/1.1, with TLS when
    /// --tls-cert is given; off when not given
    #[arg(long, env = "JETON_HTTP_LISTEN", value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,
    /// Proxies whose X-Forwarded-For the HTTP front door believes (comma-separated networks
    /// or addresses): the client address of a forward-auth request from one of them is the
    /// last address in X-Forwarded-For that is not itself such a proxy; from anyone else it
    /// is the connection's. None by default
    #[arg(long, env = "JETON_TRUSTED_PROXIES", value_name = "CIDRS", value_delimiter = ',',
          value_parser = parse::network)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// GitHub's secret-scanning public keys, as GitHub publishes them (JSON with
    /// public_keys: key_identifier, key): turns on POST /v1/secret-scanning/reports on the
    /// HTTP listener, which revokes the leaked tokens that signed reports name
    #[arg(long, env = "JETON_SECRET_SCANNING_KEYS", value_name = "FILE")]
    pub secret_scanning_keys: Option<PathBuf>,
    /// Start on a throwaway database with tenant "dev" and admin "admin@dev", and print the
    /// admin's token and commands to try (for a first look, never for production)
    #[arg(long, env = "JETON_DEV", conflicts_with = "url")]
    pub dev: bool,
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
    /// PEM CA whose client certificates mark trusted frontends (which may send
    /// x-jeton-principal); client certificates stay optional on the port. Needs TLS
    #[arg(
        long,
        env = "JETON_CLIENT_CA",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub client_ca: Option<PathBuf>,
    /// Most Argon2 computations at once (default: one per core)
    #[arg(long, env = "JETON_ARGON2_MAX_CONCURRENT", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub argon2_max_concurrent: Option<u16>,
    /// Longest wait for an Argon2 slot before RESOURCE_EXHAUSTED
    #[arg(long, env = "JETON_ARGON2_QUEUE_TIMEOUT", value_name = "DURATION",
          default_value = "2s", value_parser = parse::duration)]
    pub argon2_queue_timeout: Duration,
    /// A token used within this window is ACTIVE, used before it INACTIVE
    #[arg(long, env = "JETON_ACTIVITY_WINDOW", value_name = "DURATION",
          default_value = "7d", value_parser = parse::positive_duration)]
    pub activity_window: Duration,
    /// How often last-use times are written to the database; a crash loses at most this much
    #[arg(long, env = "JETON_LAST_USE_FLUSH_INTERVAL", value_name = "DURATION",
          default_value = "60s", value_parser = parse::positive_duration)]
    pub last_use_flush_interval: Duration,
    /// Longest activation of an eligible role (ActivateRole)
    #[arg(long, env = "JETON_MAX_ACTIVATION", value_name = "DURATION",
          default_value = "8h", value_parser = parse::positive_duration)]
    pub max_activation: Duration,
    /// How often activations that ended are recorded in the audit trail
    #[arg(long, env = "JETON_ACTIVATION_SWEEP_INTERVAL", value_name = "DURATION",
          default_value = "10s", value_parser = parse::positive_duration)]
    pub activation_sweep_interval: Duration,
    /// How often tokens left unused for their tenant's revoke_unused_after are revoked
    #[arg(long, env = "JETON_RETIREMENT_SWEEP_INTERVAL", value_name = "DURATION",
          default_value = "1m", value_parser = parse::positive_duration)]
    pub retirement_sweep_interval: Duration,
    /// Most connections open at once on each port (gRPC, HTTP); more wait to be accepted
    #[arg(long = "max-connections", env = "JETON_MAX_CONNECTIONS", value_name = "N",
          default_value = "10000", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub connection_limit: u32,
    /// How long a new connection may take to finish its TLS handshake and send its first
    /// request bytes before it is closed
    #[arg(long, env = "JETON_HANDSHAKE_TIMEOUT", value_name = "DURATION",
          default_value = "10s", value_parser = parse::positive_duration)]
    pub handshake_timeout: Duration,
    /// How long a client of the HTTP listener may take to send a whole request, headers and
    /// body, counted from when the listener is ready for it (the connection accepted, or the
    /// previous answer given); a late body is answered 408, and either way the connection is
    /// closed
    #[arg(long, env = "JETON_HTTP_REQUEST_TIMEOUT", value_name = "DURATION",
          default_value = "10s", value_parser = parse::positive_duration)]
    pub http_request_timeout: Duration,
    /// Most live tokens one owner (principal, collector or agent) may hold in one namespace;
    /// Generate beyond it is RESOURCE_EXHAUSTED
    #[arg(long, env = "JETON_MAX_TOKENS_PER_OWNER", value_name = "N",
          default_value = "100", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_tokens_per_owner: u32,
    /// Most tokens kept in the validation cache
    #[arg(long, env = "JETON_CACHE_CAPACITY", value_name = "N",
          default_value = "1000000", value_parser = clap::value_parser!(u64).range(1..))]
    pub cache_capacity: u64,
    /// Safety net of the validation cache: a cached token's row is re-read (without Argon2)
    /// and a cached principal reloaded after this long
    #[arg(long, env = "JETON_CACHE_TTL", value_name = "DURATION",
          default_value = "60s", value_parser = parse::positive_duration)]
    pub cache_ttl: Duration,
    /// How often the change log is read to drop cached entries changed by other replicas (at
    /// most 200ms)
    #[arg(long, env = "JETON_CHANGE_POLL_INTERVAL", value_name = "DURATION",
          default_value = "100ms", value_parser = parse::poll_interval)]
    pub change_poll_interval: Duration,
    /// After SIGTERM, how long to keep serving while health says NOT_SERVING, so that load
    /// balancers stop sending calls first
    #[arg(long, env = "JETON_SHUTDOWN_DELAY", value_name = "DURATION",
          default_value = "0s", value_parser = parse::duration)]
    pub shutdown_delay: Duration,
    /// After that, how long calls in flight may take to finish before the server stops anyway
    #[arg(long, env = "JETON_SHUTDOWN_GRACE", value_name = "DURATION",
          default_value = "10s", value_parser = parse::duration)]
    pub shutdown_grace: Duration,
}

/// Everything `jeton backup` needs.
#[derive(Debug, Clone, Args)]
pub struct BackupConfig {
    #[command(flatten)]
    pub db: DbConfig,
    /// File to write the copy to; must not exist yet
    #[arg(long, env = "JETON_BACKUP_OUTPUT", value_name = "FILE")]
    pub output: PathBuf,
}

/// Everything `jeton bootstrap` needs.
#[derive(Debug, Clone, Args)]
pub struct BootstrapConfig {
    #[command(flatten)]
    pub db: DbConfig,
    #[command(flatten)]
    pub hash: HashConfig,
    /// Tenant id to create: [a-z0-9][a-z0-9-]{1,62}
    #[arg(long, env = "JETON_TENANT", value_parser = parse::domain(TenantId::parse))]
    pub tenant: TenantId,
    /// Principal id of the tenant's first admin, e.g. alice@contoso.com
    #[arg(long, env = "JETON_ADMIN", value_parser = parse::domain(PrincipalId::parse))]
    pub admin: PrincipalId,
    /// Tenant-specific API endpoint handed back with every generated token (default:
    /// https://<tenant>.api.jeton.example)
    #[arg(long, env = "JETON_API_URL", value_name = "URL", value_parser = parse::domain(ApiUrl::parse))]
    pub api_url: Option<ApiUrl>,
    /// Display name of the tenant (default: the tenant id)
    #[arg(long, env = "JETON_TENANT_NAME", value_name = "NAME", value_parser = parse::domain(DisplayName::parse))]
    pub tenant_name: Option<DisplayName>,
}

/// Parses the settings of one subcommand from `args` (after the subcommand's name) and the
/// environment, with every default from the declarations above.
fn parse_args<T: Args>(args: &[&str]) -> Result<T, clap::Error> {
    #[derive(Parser)]
    struct Only<T: Args> {
        #[command(flatten)]
        inner: T,
    }
    let argv = std::iter::once("jeton").chain(args.iter().copied());
    Ok(Only::<T>::try_parse_from(argv)?.inner)
}

impl ServeConfig {
    /// The defaults, on `database_url`.
    pub fn with_database(database_url: &str) -> Result<Self, clap::Error> {
        parse_args(&["--database-url", database_url])
    }

    /// The TLS files, when TLS is on.
    pub fn tls(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.client_ca.clone(),
        })
    }

    pub(crate) fn cache(&self) -> CacheSettings {
        CacheSettings {
            capacity: self.cache_capacity,
            ttl: self.cache_ttl,
            negative_capacity: 100_000,
            negative_ttl: Duration::from_secs(5),
            poll_interval: self.change_poll_interval,
            // A replica that could not read the change log for this long answers from the
            // database only (five polls at the longest poll interval allowed).
            stale_after: crate::validation::TRUST_WINDOW,
            stale_if_error: self.stale_if_error,
        }
    }

    pub(crate) fn limits(&self) -> crate::net::Limits {
        crate::net::Limits {
            max_connections: self.connection_limit as usize,
            handshake: self.handshake_timeout,
        }
    }

    pub(crate) fn hashing(&self) -> HashSettings {
        self.hash.settings(
            self.argon2_max_concurrent.map(usize::from),
            self.argon2_queue_timeout,
        )
    }

    pub(crate) fn policy(&self) -> Policy {
        Policy {
            activity_window: delta(self.activity_window),
            max_activation: delta(self.max_activation),
            max_tokens_per_owner: u64::from(self.max_tokens_per_owner),
            // A use seen by another replica reaches the database within its flush interval.
            retire_margin: delta(self.last_use_flush_interval),
        }
    }
}

/// Durations are bounded by their parser (at most 100 years), so they always fit.
fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

impl BootstrapConfig {
    /// The defaults, creating `tenant` with first admin `admin` on `database_url`.
    pub fn new(database_url: &str, tenant: &str, admin: &str) -> Result<Self, clap::Error> {
        parse_args(&[
            "--database-url",
            database_url,
            "--tenant",
            tenant,
            "--admin",
            admin,
        ])
    }
}

impl DbConfig {
    pub(crate) fn options(&self) -> DbOptions {
        DbOptions {
            max_connections: self.max_connections,
            connect_timeout: self.connect_timeout,
            create: true,
            read_url: None,
        }
    }
}

/// Argon2 computations at once when not configured: one per core.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl HashConfig {
    pub(crate) fn settings(
        &self,
        max_concurrent: Option<usize>,
        queue_timeout: Duration,
    ) -> HashSettings {
        HashSettings {
            memory_kib: self.memory_kib,
            iterations: self.iterations,
            parallelism: self.parallelism,
            max_concurrent: max_concurrent.unwrap_or_else(cores),
            queue_timeout,
        }
    }

    /// The pepper: the bytes of `--pepper-file`, or else of `JETON_PEPPER`, or none.
    pub(crate) fn pepper(&self) -> Result<Pepper, ConfigError> {
        match &self.pepper_file {
            Some(path) => {
                std::fs::read(path)
                    .map(Pepper::new)
                    .map_err(|source| ConfigError::Read {
                        what: "--pepper-file",
                        path: path.clone(),
                        source,
                    })
            }
            None => Ok(std::env::var_os("JETON_PEPPER")
                .map_or_else(Pepper::default, |v| Pepper::new(v.into_encoded_bytes()))),
        }
    }
}

/// The TLS files of `jeton serve`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA of trusted frontends' client certificates.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{what}: cannot read {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(transparent)]
    Args(#[from] clap::Error),
}

/// A database URL. `Debug` and [`DatabaseUrl::redacted`] hide the password.
#[derive(Clone)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        let u = parse::database_url("postgres://jeton:s3cret@db:5432/jeton").unwrap();
        assert_eq!(u.redacted(), "postgres://jeton:***@db:5432/jeton");
        assert!(!format!("{u:?}").contains("s3cret"));
        let cli = Cli::try_parse_from([
            "jeton",
            "migrate",
            "--database-url",
            "postgres://jeton:s3cret@db/jeton",
        ])
        .unwrap();
        assert!(!format!("{cli:?}").contains("s3cret"));
        assert_eq!(
            parse::database_url("sqlite://jeton.db").unwrap().redacted(),
            "sqlite://jeton.db"
        );
        assert_eq!(
            parse::database_url("postgres://root@h/db")
                .unwrap()
                .redacted(),
            "postgres://root@h/db"
        );
    }

    #[test]
    fn defaults_come_from_the_declarations() {
        let s = ServeConfig::with_database("sqlite://x.db").unwrap();
        assert_eq!(s.listen.port(), 50051);
        assert_eq!(s.activity_window, Duration::from_secs(7 * 86400));
        assert_eq!(s.max_activation, Duration::from_secs(8 * 3600));
        assert_eq!(s.db.max_connections, 16);
        assert!(s.tls().is_none());
    }
}
