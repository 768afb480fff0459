//! Compiles proto/ into OUT_DIR with a vendored protoc, so building needs no system protobuf-compiler.

use std::path::{Path, PathBuf};

const FILES: [&str; 6] = [
    "vidmesh/tensor/v1/tensor.proto",
    "vidmesh/text_encoder/v1/text_encoder.proto",
    "vidmesh/denoiser/v1/denoiser.proto",
    "vidmesh/decoder/v1/decoder.proto",
    "vidmesh/classifier/v1/classifier.proto",
    "vidmesh/gateway/v1/gateway.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .codec_path("crate::codec::Codec")
        .file_descriptor_set_path(out.join("vidmesh_descriptor.bin"))
        .compile_with_config(config, &FILES.map(|f| root.join(f)), std::slice::from_ref(&root))?;
    for f in FILES {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    Ok(())
}
