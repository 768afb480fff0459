//! The decoder's one error enum and its single mapping to gRPC status codes.

use std::time::Duration;

use tonic::Status;

/// Everything that can go wrong serving a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request asks for a model this server does not serve.
    #[error("model {requested:?} is not served here (this server serves {served:?})")]
    UnknownModel {
        /// Asked for.
        requested: String,
        /// Served.
        served: String,
    },
    /// Bad request.
    #[error("{0}")]
    InvalidArgument(String),
    /// A tensor in the request is malformed.
    #[error(transparent)]
    Tensor(#[from] vidmesh_runtime::TensorError),
    /// Too many decodes at once.
    #[error("decoder is at capacity; retry later")]
    Overloaded {
        /// Suggested wait.
        retry_after: Duration,
    },
    /// The model is still loading.
    #[error("model is loading; retry shortly")]
    NotReady,
    /// Shutting down.
    #[error("server is shutting down")]
    Draining,
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
    /// ONNX Runtime failed during a run.
    #[error("inference: {0}")]
    Inference(String),
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match &e {
            Error::UnknownModel { .. } => Status::not_found(e.to_string()),
            Error::InvalidArgument(_) | Error::Tensor(_) => Status::invalid_argument(e.to_string()),
            Error::Storage(vidmesh_storage::StorageError::InvalidKey(..)) => Status::invalid_argument(e.to_string()),
            Error::Overloaded { retry_after } => {
                vidmesh_runtime::status::resource_exhausted(e.to_string(), *retry_after)
            }
            Error::NotReady | Error::Draining => Status::unavailable(e.to_string()),
            Error::Model(_) | Error::Storage(_) | Error::Video(_) | Error::Provenance(_) | Error::Inference(_) => {
                vidmesh_runtime::status::internal(&e)
            }
        }
    }
}
