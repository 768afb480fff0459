//! The text-encoder hot path, free of gRPC: tokenize, look up the embedding cache, send misses to the model
//! thread (micro-batched with every other request's), fill the cache.
//!
//! Invariants: results come back in prompt order; the empty prompt (CFG's unconditional text) is computed at
//! warm-up and never evicted; a cached result is byte-identical to a fresh one of the same prompt run alone.

pub mod batcher;
pub mod tokenize;

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lru::LruCache;
use prometheus::Registry;
use vidmesh_model::{Onnx, Part};

use crate::config::Config;
use crate::error::Error;
use batcher::{Batcher, Limits};

use crate::metrics::Metrics;
use tokenize::Tokenizer;

/// One prompt's encoding.
#[derive(Debug, PartialEq)]
pub struct Encoded {
    /// Token ids, special tokens included (after the template's cropped tokens, where the bundle crops).
    pub ids: Vec<i64>,
    /// Hidden states [rows, hidden] row-major: rows = ids.len(), or max_tokens when the bundle keeps the padding
    /// states (`zero_pad_states = false`).
    pub states: Vec<f32>,
    /// Whether the prompt was cut to max_tokens.
    pub truncated: bool,
    /// Token count before cutting.
    pub original_tokens: usize,
    /// The second encoder's pooled vector (bundles with `[text_encoder_2]`).
    pub pooled: Option<Vec<f32>>,
}

/// A result and whether it came from the cache.
pub type Hit = (Arc<Encoded>, bool);

/// The loaded model behind the service.
pub struct Encoder {
    tokenizer: Tokenizer,
    batcher: Batcher,
    /// `[text_encoder_2]`: its tokenizer and model thread.
    second: Option<(Tokenizer, Batcher)>,
    /// Leading tokens (a template's) whose rows the encoder drops.
    crop: usize,
    cache: Option<Mutex<LruCache<String, Arc<Encoded>>>>,
    empty: Arc<Encoded>,
    /// Width of the hidden states.
    pub hidden: usize,
    /// Model name.
    pub model: String,
    /// Bundle version.
    pub version: String,
    metrics: Metrics,
}

impl Encoder {
    /// Opens the bundle (sha256-checked), starts the model thread and warms up with the empty prompt.
    /// Blocking: call from a blocking thread.
    pub fn load(config: &Config, onnx: &Onnx, registry: &Registry) -> Result<Self, Error> {
        let bundle = config.model.open(&[Part::TextEncoder])?;
        let spec = &bundle.manifest.text_encoder;
        let prepare = {
            let spec = spec.clone();
            move |p: &str| spec.prepare(p)
        };
        let tokenizer = Tokenizer::load(&bundle.path(&spec.tokenizer), spec.token_limit(), prepare)?;
        let session = onnx.checked_session(&bundle, "text_encoder", &spec.component)?;
        let metrics = Metrics::register(registry).map_err(|e| Error::Inference(format!("metrics: {e}")))?;
        let b = &config.batching;
        let limits = Limits {
            max_batch: b.max_batch,
            max_wait: Duration::from_millis(b.max_wait_ms),
            capacity: b.queue_capacity,
        };
        let layout = batcher::Layout {
            hidden: spec.hidden_size,
            pad_to: (spec.padding == vidmesh_model::Padding::MaxLength).then_some(spec.token_limit()),
            pad_id: tokenizer.pad_id(),
            encoder_mask: spec.encoder_mask,
            keep_padding: !spec.zero_pad_states,
            crop: spec.crop_start,
            pooled: false,
            names: spec.names.clone(),
        };
        let batcher = Batcher::spawn(session, layout, limits, metrics.clone())
            .map_err(|e| Error::Inference(format!("cannot start the model thread: {e}")))?;
        let second = match &bundle.manifest.text_encoder_2 {
            None => None,
            Some(t2) => {
                let tok = Tokenizer::load(&bundle.path(&t2.tokenizer), t2.max_tokens, str::to_string)?;
                let session = onnx.checked_session(&bundle, "text_encoder_2", &t2.component)?;
                let layout = batcher::Layout {
                    hidden: t2.pooled_size,
                    pad_to: Some(t2.max_tokens),
                    pad_id: tok.pad_id(),
                    encoder_mask: false,
                    keep_padding: false,
                    crop: 0,
                    pooled: true,
                    names: vidmesh_model::TextEncoderNames {
                        input_ids: t2.names.input_ids.clone(),
                        attention_mask: String::new(),
                        hidden_states: t2.names.pooled.clone(),
                    },
                };
                let b = Batcher::spawn(session, layout, limits, metrics.clone())
                    .map_err(|e| Error::Inference(format!("cannot start the second model thread: {e}")))?;
                Some((tok, b))
            }
        };
        let crop = spec.crop_start;
        let tokens = tokenizer.tokenize(0, "", false)?;
        let empty = Arc::new(futures::executor::block_on(Self::run_one(&batcher, second.as_ref(), crop, tokens, ""))?);
        let cache = NonZeroUsize::new(config.cache_capacity).map(|n| Mutex::new(LruCache::new(n)));
        Ok(Self {
            tokenizer,
            batcher,
            second,
            crop,
            cache,
            empty,
            hidden: spec.hidden_size,
            model: bundle.manifest.model.name.clone(),
            version: bundle.manifest.model.version.clone(),
            metrics,
        })
    }

    fn cached(&self, prompt: &str) -> Option<Arc<Encoded>> {
        if prompt.is_empty() {
            return Some(self.empty.clone());
        }
        let cache = self.cache.as_ref()?;
        cache.lock().ok()?.get(prompt).cloned()
    }

    /// One tokenized prompt through the encoder(s): states and (with a second encoder) its pooled vector.
    async fn run_one(
        batcher: &Batcher,
        second: Option<&(Tokenizer, Batcher)>,
        crop: usize,
        tok: tokenize::Tokens,
        prompt: &str,
    ) -> Result<Encoded, Error> {
        let pooled = match second {
            None => None,
            Some((t2, b2)) => Some(b2.encode(t2.tokenize(0, prompt, false)?.ids).await?),
        };
        let states = batcher.encode(tok.ids.clone()).await?;
        let ids = tok.ids[crop.min(tok.ids.len())..].to_vec();
        Ok(Encoded { ids, states, truncated: tok.truncated, original_tokens: tok.original, pooled })
    }

    /// Encodes `prompts` in order. `reject_long` refuses prompts over max_tokens instead of truncating them.
    pub async fn encode(&self, prompts: &[String], reject_long: bool) -> Result<Vec<Hit>, Error> {
        // Every prompt is tokenized (and an over-long one refused) before any model runs.
        let tokens = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| self.tokenizer.tokenize(i, p, reject_long))
            .collect::<Result<Vec<_>, _>>()?;
        let jobs = prompts.iter().zip(tokens).map(|(prompt, tok)| async move {
            if let Some(hit) = self.cached(prompt) {
                self.metrics.prompts.with_label_values(&["hit"]).inc();
                return Ok((hit, true));
            }
            self.metrics.prompts.with_label_values(&["miss"]).inc();
            let enc = Self::run_one(&self.batcher, self.second.as_ref(), self.crop, tok, prompt).await?;
            let enc = Arc::new(enc);
            if let Some(cache) = &self.cache
                && let Ok(mut c) = cache.lock()
            {
                c.push(prompt.clone(), enc.clone());
            }
            Ok((enc, false))
        });
        futures::future::try_join_all(jobs).await
    }
}
