//! Compiles `proto/tracker.proto` without a system `protoc`: protox parses it into a
//! `FileDescriptorSet` (keeping comments, which become doc comments) and tonic-prost-build
//! generates the messages, the server trait and the client.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = "../../proto";
    println!("cargo:rerun-if-changed={dir}/tracker.proto");
    let fds = protox::compile(["tracker.proto"], [dir])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .bytes(".shoal.tracker.v1.MetaInfoResponse.metainfo")
        .compile_fds(fds)?;
    Ok(())
}
