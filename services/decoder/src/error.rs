//! The decoder's one error enum and its single mapping to gRPC status codes.

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
    /// The bundle or ONNX Runtime failed to load.
    #[error(transparent)]
    Model(#[from] vidmesh_model::ModelError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] vidmesh_storage::StorageError),
    /// Encoding the MP4 failed.
    #[error(transparent)]
    Video(#[from] vidmesh_video::VideoError),
    /// C2PA signing failed or is misconfigured.
    #[error(transparent)]
    Provenance(#[from] vidmesh_provenance::ProvenanceError),
    /// The bundle cannot do what was asked (e.g. encode without a VAE encoder).
    #[error("{0}")]
    FailedPrecondition(String),
    /// ONNX Runtime failed during a run.
    #[error("inference: {0}")]
    Inference(String),
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match &e {
            Error::Refused(r) => r.status(),
            Error::InvalidArgument(_) | Error::Tensor(_) => Status::invalid_argument(e.to_string()),
            Error::Storage(vidmesh_storage::StorageError::InvalidKey(..)) => Status::invalid_argument(e.to_string()),
            Error::Storage(vidmesh_storage::StorageError::NotFound(_)) => Status::not_found(e.to_string()),
            Error::FailedPrecondition(_) => Status::failed_precondition(e.to_string()),
            Error::Model(_) | Error::Storage(_) | Error::Video(_) | Error::Provenance(_) | Error::Inference(_) => {
                vidmesh_runtime::status::internal(&e)
            }
        }
    }
}
