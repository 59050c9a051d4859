//! Compiles `proto/` with a pure-Rust protobuf compiler (protox), so building jeton needs no
//! system `protoc`, and writes the encoded descriptor set that server reflection serves.

use prost::Message;
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/jeton/v1/jeton.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    // `compile_fds` ignores `file_descriptor_set_path`: write the set ourselves.
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("jeton_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;

    // Envoy's external authorization service: the Rust types come from envoy-types; only
    // the descriptors are compiled here, for server reflection.
    let envoy = "envoy/service/auth/v3/external_auth.proto";
    println!("cargo:rerun-if-changed=vendor/proto");
    let fds = protox::compile([envoy], ["vendor/proto"])?;
    fs::write(out.join("envoy_descriptor.bin"), fds.encode_to_vec())?;
    Ok(())
}
