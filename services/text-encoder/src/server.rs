//! The gRPC face of the text-encoder: proto ⇄ engine types and request checks, nothing else. A prompt may be empty
//! (the unconditional row of CFG) but never holds NUL or other control characters ([`vidmesh_model::check_text`]).

use std::sync::{Arc, OnceLock};

use tonic::{Request, Response, Status};
use vidmesh_proto::text_encoder::v1::{
    EncodeRequest, EncodeResponse, Encoding, TruncationPolicy, text_encoder_server::TextEncoder,
};
use vidmesh_runtime::{Drain, TensorF32};

use crate::config::{Config, Truncation};
use crate::engine::Encoder;
use crate::error::Error;
use vidmesh_runtime::status::Refusal;

/// Shared by the handlers and the loader.
pub struct State {
    /// Set once the model is loaded and warm.
    pub encoder: OnceLock<Encoder>,
    /// Refuses new work once shutdown starts.
    pub drain: Drain,
    /// The service configuration.
    pub config: Config,
}

/// The tonic service.
#[derive(Clone)]
pub struct Service(pub Arc<State>);

impl Service {
    async fn encode(&self, req: EncodeRequest) -> Result<EncodeResponse, Error> {
        let enc = self.0.drain.ready(&self.0.encoder)?;
        let cfg = &self.0.config;
        if !req.model.is_empty() && req.model != enc.model {
            return Err(Refusal::UnknownModel { requested: req.model, served: enc.model.clone() }.into());
        }
        if req.prompts.is_empty() {
            return Err(Error::InvalidArgument("prompts is empty; send at least one prompt (\"\" is valid)".into()));
        }
        if req.prompts.len() > cfg.max_prompts_per_request {
            return Err(Error::InvalidArgument(format!(
                "{} prompts in one request; at most {} are accepted",
                req.prompts.len(),
                cfg.max_prompts_per_request
            )));
        }
        if let Some((i, p)) = req.prompts.iter().enumerate().find(|(_, p)| p.len() > cfg.max_prompt_bytes) {
            return Err(Error::InvalidArgument(format!(
                "prompt {i} is {} bytes; at most {} are accepted",
                p.len(),
                cfg.max_prompt_bytes
            )));
        }
        for (i, p) in req.prompts.iter().enumerate() {
            vidmesh_model::check_text(&format!("prompt {i}"), p).map_err(Error::InvalidArgument)?;
        }
        let reject = match TruncationPolicy::try_from(req.truncation) {
            Ok(TruncationPolicy::Reject) => true,
            Ok(TruncationPolicy::Truncate) => false,
            Ok(TruncationPolicy::Unspecified) => cfg.truncation == Truncation::Reject,
            Err(_) => {
                return Err(Error::InvalidArgument(format!("truncation {} is not a known policy", req.truncation)));
            }
        };
        let hits = enc.encode(&req.prompts, reject).await?;
        let encodings = hits
            .into_iter()
            .map(|(e, cached)| Encoding {
                hidden_states: Some(
                    TensorF32::new(vec![e.states.len() / enc.hidden, enc.hidden], e.states.clone()).to_proto(),
                ),
                real_tokens: e.ids.len() as u32,
                pooled: e.pooled.as_ref().map(|p| TensorF32::new(vec![p.len()], p.clone()).to_proto()),
                token_ids: e.ids.clone(),
                truncated: e.truncated,
                original_tokens: e.original_tokens as u32,
                cached,
            })
            .collect();
        Ok(EncodeResponse { encodings, model: enc.model.clone(), model_version: enc.version.clone() })
    }
}

#[tonic::async_trait]
impl TextEncoder for Service {
    async fn encode(&self, request: Request<EncodeRequest>) -> Result<Response<EncodeResponse>, Status> {
        let resp = Service::encode(self, request.into_inner()).await?;
        Ok(Response::new(resp))
    }
}
