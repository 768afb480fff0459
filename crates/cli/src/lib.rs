//! The `vidmesh` command's library: the whole mesh in one process ([`mesh::Mesh`]: the services' own engines,
//! no gRPC) and the local defaults a laptop needs (where libonnxruntime, the bundle and the watermark key live).

pub mod local;
pub mod mesh;
