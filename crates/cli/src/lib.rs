//! The `vidmesh` command's library: the whole mesh in one process ([`mesh::Mesh`]: the services' own engines,
//! no gRPC), marking any video ([`mark::watermark`]) and the local defaults a laptop needs (where libonnxruntime,
//! the bundle, the watermark key and the C2PA signing chain live).

pub mod local;
pub mod mark;
pub mod mesh;
