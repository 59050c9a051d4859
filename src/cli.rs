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
    crate::telemetry::init(&cli.log);
    let result = match cli.command {
        Command::Serve(config) => serve(*config).await,
        Command::Bootstrap(config) => bootstrap(&config).await,
        Command::Migrate(db) => app::migrate(&db).await.map(|()| {
            tracing::info!(database = %db.url.redacted(), "schema up to date");
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: crate::config::ServeConfig) -> Result<(), app::AppError> {
    let stop = shutdown_signal();
    let server = Server::build(config, Arc::new(SystemClock)).await?;
    server.run(stop).await
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
        tracing::info!("shutdown signal received; draining");
    }
}
