//! vidmesh-classifier, served through the shared stage shell: config → telemetry → bind → serve → drain on SIGTERM.
//! Usage: vidmesh-classifier [CONFIG.toml]   (environment: VIDMESH__SECTION__KEY, ORT_DYLIB_PATH)

fn main() -> std::process::ExitCode {
    vidmesh_runtime::stage::main::<vidmesh_classifier::Classifier>()
}
