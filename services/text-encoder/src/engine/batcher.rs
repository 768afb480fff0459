//! The model thread: one OS thread owns the ONNX session and runs micro-batches. Jobs arrive on a bounded
//! channel; the first job of a batch waits at most `max_wait` for others, up to `max_batch`. Rows are padded (to
//! the batch's longest prompt, or to `max_tokens` when the bundle says `padding = "max_length"`) with the
//! tokenizer's pad id and attention mask 0, and each job gets back exactly its own real-length rows (padding never
//! leaks: the encoder masks padded keys, so a prompt's states do not depend on its batch-mates beyond float
//! rounding) — or, with `keep_padding` (bundles whose DiT sees the padding states; always padded to max_tokens), all
//! max_tokens rows of its own. With `crop`, the first `crop` rows (a prompt template's) are dropped. A `pooled`
//! layout (a second encoder) returns one vector per prompt instead.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use ort::session::Session;
use tokio::sync::oneshot;

use crate::error::Error;
use vidmesh_runtime::status::Refusal;

/// States of one prompt: [tokens, hidden] row-major.
pub type States = Vec<f32>;

struct Job {
    ids: Vec<i64>,
    reply: oneshot::Sender<Result<States, String>>,
}

/// Batching limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most prompts per run.
    pub max_batch: usize,
    /// Longest wait for company.
    pub max_wait: Duration,
    /// Bounded queue length.
    pub capacity: usize,
}

/// How rows are laid out for the graph (from the bundle's `[text_encoder]`).
#[derive(Debug, Clone)]
pub struct Layout {
    /// Width of the hidden states.
    pub hidden: usize,
    /// Pad every row to this many tokens (`padding = "max_length"`); `None`: to the batch's longest.
    pub pad_to: Option<usize>,
    /// The tokenizer's pad id.
    pub pad_id: i64,
    /// Whether the encoder sees the real mask (`false`: all ones).
    pub encoder_mask: bool,
    /// Return every row, padding included (`text_encoder.zero_pad_states = false`).
    pub keep_padding: bool,
    /// Rows dropped from the front of every result (`text_encoder.crop_start`).
    pub crop: usize,
    /// The output is one pooled vector per prompt ([batch, hidden]; `names.hidden_states` names it) and the graph
    /// takes no attention mask.
    pub pooled: bool,
    /// The graph's tensor names.
    pub names: vidmesh_model::TextEncoderNames,
}

/// Handle to the model thread.
#[derive(Clone)]
pub struct Batcher {
    tx: SyncSender<Job>,
    metrics: Metrics,
}

impl Batcher {
    /// Starts the model thread around `session`.
    pub fn spawn(session: Session, layout: Layout, limits: Limits, metrics: Metrics) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(limits.capacity);
        let m = metrics.clone();
        std::thread::Builder::new()
            .name("text-encoder-model".into())
            .spawn(move || run(session, rx, &layout, limits, m))?;
        Ok(Self { tx, metrics })
    }

    /// Queues one prompt's ids; resolves with its states.
    pub async fn encode(&self, ids: Vec<i64>) -> Result<States, Error> {
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Job { ids, reply }) {
            Ok(()) => self.metrics.queue_depth.inc(),
            Err(TrySendError::Full(_)) => {
                return Err(Refusal::Overloaded {
                    stage: "text encoder",
                    detail: format!(" ({} prompts queued)", self.metrics.queue_depth.get().max(0)),
                    retry_after: Duration::from_millis(200),
                }
                .into());
            }
            Err(TrySendError::Disconnected(_)) => return Err(Error::Inference("model thread stopped".into())),
        }
        rx.await.map_err(|_| Error::Inference("model thread dropped the job".into()))?.map_err(Error::Inference)
    }
}

fn run(mut session: Session, rx: Receiver<Job>, layout: &Layout, limits: Limits, m: Metrics) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let deadline = Instant::now() + limits.max_wait;
        while jobs.len() < limits.max_batch {
            let now = Instant::now();
            let Some(left) = deadline.checked_duration_since(now) else { break };
            match rx.recv_timeout(left) {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        m.queue_depth.sub(jobs.len() as i64);
        m.batch_size.observe(jobs.len() as f64);
        let timer = m.run_seconds.start_timer();
        let result = run_batch(&mut session, &jobs, layout);
        timer.observe_duration();
        match result {
            Ok(rows) => {
                for (job, states) in jobs.into_iter().zip(rows) {
                    let _ = job.reply.send(Ok(states));
                }
            }
            Err(e) => {
                tracing::error!("text encoder run failed: {e}");
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

fn run_batch(session: &mut Session, jobs: &[Job], layout: &Layout) -> Result<Vec<States>, String> {
    let (b, hidden) = (jobs.len(), layout.hidden);
    let longest = jobs.iter().map(|j| j.ids.len()).max().unwrap_or(1);
    let l = layout.pad_to.unwrap_or(longest).max(longest);
    let mut ids = vec![layout.pad_id; b * l];
    let mut mask = vec![i64::from(!layout.encoder_mask); b * l];
    for (i, job) in jobs.iter().enumerate() {
        ids[i * l..i * l + job.ids.len()].copy_from_slice(&job.ids);
        mask[i * l..i * l + job.ids.len()].fill(1);
    }
    let ids = ort::value::Tensor::from_array(([b, l], ids)).map_err(|e| e.to_string())?;
    let n = &layout.names;
    let mut inputs = ort::inputs![n.input_ids.as_str() => ids];
    if !layout.pooled {
        let mask = ort::value::Tensor::from_array(([b, l], mask)).map_err(|e| e.to_string())?;
        inputs.push((n.attention_mask.as_str().into(), mask.into()));
    }
    let outputs = session.run(inputs).map_err(|e| e.to_string())?;
    let (shape, data) = outputs[n.hidden_states.as_str()].try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
    if layout.pooled {
        if shape.len() != 2 || shape[0] as usize != b || shape[1] as usize != hidden {
            return Err(format!("{} has shape {shape:?}, expected [{b}, {hidden}]", n.hidden_states));
        }
        return Ok(data.chunks_exact(hidden).map(<[f32]>::to_vec).collect());
    }
    if shape.len() != 3 || shape[0] as usize != b || shape[1] as usize != l || shape[2] as usize != hidden {
        return Err(format!("hidden_states has shape {shape:?}, expected [{b}, {l}, {hidden}]"));
    }
    let crop = layout.crop.min(l);
    Ok(jobs
        .iter()
        .enumerate()
        .map(|(i, job)| {
            let end = if layout.keep_padding { l } else { job.ids.len().max(crop) };
            data[(i * l + crop) * hidden..(i * l + end) * hidden].to_vec()
        })
        .collect())
}
