//! `jeton`: parse the command line and hand over to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    jeton::cli::run(jeton::config::Cli::parse()).await
}
