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
    let server = Server::build(settings, Arc::new(SystemClock))
        .await
        .map_err(|e| e.to_string())?;
    server
        .run(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
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

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; draining");
}
