//! Records the version of the compiler that builds the benchmark (and, in the same
//! `cargo build --workspace`, the server) for the report's machine line.

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "rustc (unknown version)".into());
    println!("cargo:rustc-env=JETON_BENCH_RUSTC={version}");
    println!("cargo:rerun-if-changed=build.rs");
}
