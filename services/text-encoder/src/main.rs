//! vidmesh-text-encoder, served through the shared stage shell: config → telemetry → bind → serve → drain on SIGTERM.
//! Usage: vidmesh-text-encoder [CONFIG.toml]   (environment: VIDMESH__SECTION__KEY, ORT_DYLIB_PATH)

fn main() -> std::process::ExitCode {
    vidmesh_runtime::stage::main::<vidmesh_text_encoder::TextEncoder>()
}
