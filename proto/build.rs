//! Compiles `hygiene/v1/*.proto` with protox (pure Rust), so no `protoc` is needed to build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["hygiene/v1/agent.proto", "hygiene/v1/admin.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
