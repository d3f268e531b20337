//! Compiles the service contracts with protox, so no `protoc` is needed anywhere.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "abtrack/dispatcher/v1/dispatcher.proto",
        "abtrack/gateway/v1/gateway.proto",
        "abtrack/logger/v1/logger.proto",
        "abtrack/notices/v1/notices.proto",
    ];
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
