//! The classifier's one error enum and its single mapping to gRPC status codes.

use tonic::Status;

/// Everything that can go wrong serving a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Refused before any work: unknown model, at capacity, still loading, draining.
    #[error(transparent)]
    Refused(#[from] vidmesh_runtime::status::Refusal),
    /// Bad request (including bytes that are not a readable video).
    #[error("{0}")]
    InvalidArgument(String),
    /// The URI names no stored object.
    #[error("{0}")]
    NotFound(String),
    /// Misconfiguration found at start-up.
    #[error("configuration: {0}")]
    Config(String),
    /// Storage failed.
    #[error(transparent)]
    Storage(vidmesh_storage::StorageError),
    /// The bundle or ONNX Runtime failed to load.
    #[error(transparent)]
    Model(#[from] vidmesh_model::ModelError),
    /// Unexpected failure inside the service.
    #[error("internal: {0}")]
    Internal(String),
}

impl From<vidmesh_storage::StorageError> for Error {
    fn from(e: vidmesh_storage::StorageError) -> Self {
        use vidmesh_storage::StorageError as S;
        match e {
            S::NotFound(_) => Self::NotFound(e.to_string()),
            S::InvalidKey(..) | S::UnknownUri(..) => Self::InvalidArgument(e.to_string()),
            _ => Self::Storage(e),
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match &e {
            Error::Refused(r) => r.status(),
            Error::InvalidArgument(_) => Status::invalid_argument(e.to_string()),
            Error::NotFound(_) => Status::not_found(e.to_string()),
            Error::Config(_) | Error::Storage(_) | Error::Model(_) | Error::Internal(_) => {
                vidmesh_runtime::status::internal(&e)
            }
        }
    }
}
