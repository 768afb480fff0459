//! The text-encoder's one error enum and its single mapping to gRPC status codes.

use tonic::Status;

/// Everything that can go wrong serving a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Refused before any work: unknown model, at capacity, still loading, draining.
    #[error(transparent)]
    Refused(#[from] vidmesh_runtime::status::Refusal),
    /// Bad request shape.
    #[error("{0}")]
    InvalidArgument(String),
    /// A prompt is longer than max_tokens and the policy is to refuse.
    #[error("prompt {index} has {tokens} tokens; the model takes at most {max} (shorten it or allow truncation)")]
    PromptTooLong {
        /// Position in the request.
        index: usize,
        /// Its token count.
        tokens: usize,
        /// The model's limit.
        max: usize,
    },
    /// The bundle or ONNX Runtime failed to load.
    #[error(transparent)]
    Model(#[from] vidmesh_model::ModelError),
    /// Tokenizer failure.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// ONNX Runtime failed during a run, or the model thread is gone.
    #[error("inference: {0}")]
    Inference(String),
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match &e {
            Error::Refused(r) => r.status(),
            Error::InvalidArgument(_) | Error::PromptTooLong { .. } => Status::invalid_argument(e.to_string()),
            Error::Model(_) | Error::Tokenizer(_) | Error::Inference(_) => vidmesh_runtime::status::internal(&e),
        }
    }
}
