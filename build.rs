//! Compiles `proto/` with the pure-Rust `protox` (no system `protoc`) and generates prost
//! messages and tonic client/server code for the KMS plugin APIs.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/encrypted_object.proto",
        "proto/mvccpb.proto",
        "proto/kms/v1beta1.proto",
        "proto/kms/v2.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
