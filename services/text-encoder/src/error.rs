//! The text-encoder's one error enum and its single mapping to gRPC status codes.

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
    /// The batch queue is full.
    #[error("text encoder is overloaded ({queued} prompts queued); retry later")]
    Overloaded {
        /// Queue depth at refusal.
        queued: usize,
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
            Error::UnknownModel { .. } => Status::not_found(e.to_string()),
            Error::InvalidArgument(_) | Error::PromptTooLong { .. } => Status::invalid_argument(e.to_string()),
            Error::Overloaded { retry_after, .. } => {
                vidmesh_runtime::status::resource_exhausted(e.to_string(), *retry_after)
            }
            Error::NotReady | Error::Draining => Status::unavailable(e.to_string()),
            Error::Model(_) | Error::Tokenizer(_) | Error::Inference(_) => vidmesh_runtime::status::internal(&e),
        }
    }
}
