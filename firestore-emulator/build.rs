//! Compiles the vendored `google.firestore.v1` contract with protox, so no `protoc` is
//! needed anywhere.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let descriptors = protox::compile(["google/firestore/v1/firestore.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        // Calls the emulator does not serve answer UNIMPLEMENTED, as on any server.
        .generate_default_stubs(true)
        .compile_fds(descriptors)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
