//! The denoiser's one error enum and its single mapping to gRPC status codes.

use tonic::Status;

/// Everything that can go wrong serving a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Refused before any work: unknown model, at capacity, still loading, draining.
    #[error(transparent)]
    Refused(#[from] vidmesh_runtime::status::Refusal),
    /// Bad request.
    #[error("{0}")]
    InvalidArgument(String),
    /// A tensor in the request is malformed.
    #[error(transparent)]
    Tensor(#[from] vidmesh_runtime::TensorError),
    /// The request's deadline passed.
    #[error("deadline exceeded before the last step")]
    DeadlineExceeded,
    /// The bundle or ONNX Runtime failed to load.
    #[error(transparent)]
    Model(#[from] vidmesh_model::ModelError),
    /// ONNX Runtime failed during a run, or the model thread is gone.
    #[error("inference: {0}")]
    Inference(String),
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match &e {
            Error::Refused(r) => r.status(),
            Error::InvalidArgument(_) | Error::Tensor(_) => Status::invalid_argument(e.to_string()),
            Error::DeadlineExceeded => Status::deadline_exceeded(e.to_string()),
            Error::Model(_) | Error::Inference(_) => vidmesh_runtime::status::internal(&e),
        }
    }
}
