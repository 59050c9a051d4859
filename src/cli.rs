//! Runs a parsed command line: the whole of `jeton`'s `main`.

use crate::app::{self, Server};
use crate::config::{self, Cli, Command, FileConfig};
use crate::domain::SystemClock;
use std::process::ExitCode;
use std::sync::Arc;

pub async fn run(cli: Cli) -> ExitCode {
    let file = match FileConfig::load(cli.config.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("jeton: {e}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(cli.log.as_deref().or(file.log()));
    let result = match cli.command {
        Command::Serve(args) => serve(&args, &file).await,
        Command::Bootstrap(args) => bootstrap(&args, &file).await,
        Command::Migrate(args) => {
            let (url, opts) = config::database(&args, &file);
            app::open_store(&url, &opts).await.map(|_| {
                tracing::info!(database = %url.redacted(), "schema up to date");
            })
        }
        .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: &config::ServeArgs, file: &FileConfig) -> Result<(), String> {
    let settings = config::serve_settings(args, file).map_err(|e| e.to_string())?;
    let stop = shutdown_signal();
    let server = Server::build(settings, Arc::new(SystemClock))
        .await
        .map_err(|e| e.to_string())?;
    server.run(stop).await.map_err(|e| e.to_string())
}

async fn bootstrap(args: &config::BootstrapArgs, file: &FileConfig) -> Result<(), String> {
    let settings = config::bootstrap_settings(args, file).map_err(|e| e.to_string())?;
    let token = app::bootstrap(&settings, Arc::new(SystemClock))
        .await
        .map_err(|e| e.to_string())?;
    // The one place a token is printed: stdout, once, for the operator to store.
    println!("{token}");
    tracing::info!(tenant = %settings.tenant, admin = %settings.admin, "tenant created; its first admin token was printed on stdout");
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
