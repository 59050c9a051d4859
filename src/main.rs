//! `jeton`: hand the command line over to the library.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    jeton::cli::main(std::env::args_os().collect()).await
}
