//! Compiles `proto/peer.proto` with protox (pure Rust, no system `protoc`) and prost-build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let include = "../../proto";
    println!("cargo:rerun-if-changed={include}/peer.proto");
    let descriptors = protox::compile(["peer.proto"], [include])?;
    prost_build::Config::new()
        // `bytes` fields decode as `bytes::Bytes` slices of the frame buffer: no copies.
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
