//! The DiT behind a small synchronous interface: one call = one ONNX run over a batch of rows. Tensor names come
//! from the bundle's manifest (`[dit.names]`); a graph without a text mask input never gets one; extra inputs
//! (`dit.extra_inputs`) are filled per row from their source.

use ort::session::Session;
use vidmesh_model::{DitNames, ExtraInput};

/// One batch for the DiT: `rows` rows of latents [C, T', h, w], timesteps, and text states padded to `tokens`.
#[derive(Clone)]
pub struct DitBatch {
    /// Rows in the batch.
    pub rows: usize,
    /// Latent shape of every row.
    pub latent_shape: [usize; 4],
    /// Latents, rows × latent elements.
    pub latents: Vec<f32>,
    /// One timestep per row (already scaled and rounded as the manifest says).
    pub timesteps: Vec<f32>,
    /// Text tokens per row (padded).
    pub tokens: usize,
    /// Hidden size of the text states.
    pub hidden: usize,
    /// Text states, rows × tokens × hidden.
    pub states: Vec<f32>,
    /// Text mask, rows × tokens (1 = real token); ignored when the graph takes none.
    pub mask: Vec<i64>,
    /// Frame rate per row (the `fps` extra input); ignored when the graph takes none.
    pub fps: Vec<f32>,
    /// CFG scale per row (the `guidance_x1000` extra input gets it × 1000); ignored when the graph takes none.
    pub guidance: Vec<f32>,
    /// Pooled text per row, rows × pooled size (the `pooled_text` extra input); ignored when the graph takes none.
    pub pooled: Vec<f32>,
}

/// A DiT session and the names of its tensors.
pub struct Dit {
    /// The whole graph (absent when the split graphs serve every step and no IO-bound loop needs it).
    session: Option<Session>,
    names: DitNames,
    extras: Vec<ExtraInput>,
    /// The split graphs for step caching (bundles with `[dit.cache]`).
    pub split: Option<super::split::SplitDit>,
    /// With CUDA graphs: run options that keep host-path runs out of the captured graphs (`gpu_graph_id = -1`).
    uncaptured: Option<ort::session::RunOptions>,
}

impl Dit {
    /// Wraps an opened session whose tensors are called `names` (empty `text_mask`: the graph has no mask) and
    /// which takes `extras` (sources the manifest validation accepted), and the split graphs when the bundle has
    /// them (at least one of the two).
    pub fn new(
        session: Option<Session>,
        names: DitNames,
        extras: Vec<ExtraInput>,
        split: Option<super::split::SplitDit>,
    ) -> Self {
        Self { session, names, extras, split, uncaptured: None }
    }

    /// Marks the whole graph's session as built for CUDA graph capture: host-path runs then opt out of capture.
    pub fn captured(mut self) -> Result<Self, String> {
        self.uncaptured = Some(super::resident::uncaptured().map_err(|e| e.to_string())?);
        Ok(self)
    }

    /// The whole graph's session, for IO-bound runs (engine::resident).
    pub fn session_mut(&mut self) -> Result<&mut Session, String> {
        self.session.as_mut().ok_or_else(|| "the whole DiT graph is not loaded".to_string())
    }

    /// Runs the batch; returns the model output, same layout as `latents`.
    pub fn run(&mut self, b: DitBatch) -> Result<Vec<f32>, String> {
        let n = b.latents.len();
        let inputs = graph_inputs(&self.names, &self.extras, b)?;
        let e = |e: ort::Error| e.to_string();
        let session = self.session.as_mut().ok_or("the whole DiT graph is not loaded")?;
        let outputs = match &self.uncaptured {
            Some(ro) => session.run_with_options(inputs, ro).map_err(e)?,
            None => session.run(inputs).map_err(e)?,
        };
        let (_, v) = outputs[self.names.output.as_str()].try_extract_tensor::<f32>().map_err(e)?;
        if v.len() != n {
            return Err(format!("{} has {} elements, expected {n}", self.names.output, v.len()));
        }
        Ok(v.to_vec())
    }
}

/// The DiT graph's inputs for a batch, by name (the text mask only where the graph takes one, extra inputs from
/// their sources). Shared by the whole graph and the split graphs of step caching.
pub fn graph_inputs(
    names: &DitNames,
    extras: &[ExtraInput],
    b: DitBatch,
) -> Result<Vec<(String, ort::value::DynValue)>, String> {
    let [c, t, h, w] = b.latent_shape;
    let e = |e: ort::Error| e.to_string();
    let mut inputs: Vec<(String, ort::value::DynValue)> = vec![
        (
            names.latents.clone(),
            ort::value::Tensor::from_array(([b.rows, c, t, h, w], b.latents)).map_err(e)?.into_dyn(),
        ),
        (names.timestep.clone(), ort::value::Tensor::from_array(([b.rows], b.timesteps)).map_err(e)?.into_dyn()),
        (
            names.text_states.clone(),
            ort::value::Tensor::from_array(([b.rows, b.tokens, b.hidden], b.states)).map_err(e)?.into_dyn(),
        ),
    ];
    if !names.text_mask.is_empty() {
        let mask = ort::value::Tensor::from_array(([b.rows, b.tokens], b.mask)).map_err(e)?;
        inputs.push((names.text_mask.clone(), mask.into_dyn()));
    }
    for x in extras {
        let value = match x.source.as_str() {
            "fps" => ort::value::Tensor::from_array(([b.rows], b.fps.clone())).map_err(e)?,
            "guidance_x1000" => {
                let g: Vec<f32> = b.guidance.iter().map(|g| g * 1000.0).collect();
                ort::value::Tensor::from_array(([b.rows], g)).map_err(e)?
            }
            "pooled_text" => {
                let width = b.pooled.len() / b.rows.max(1);
                if width == 0 || width * b.rows != b.pooled.len() {
                    return Err(format!("pooled text: {} values for {} rows", b.pooled.len(), b.rows));
                }
                ort::value::Tensor::from_array(([b.rows, width], b.pooled.clone())).map_err(e)?
            }
            other => return Err(format!("extra input {:?}: source {other:?} is unknown", x.name)),
        };
        inputs.push((x.name.clone(), value.into_dyn()));
    }
    Ok(inputs)
}

impl DitBatch {
    /// The batch of the given rows only (in that order).
    pub fn select(&self, rows: &[usize]) -> DitBatch {
        let per =
            |v: &[f32], k: usize| -> Vec<f32> { rows.iter().flat_map(|&r| v[r * k..(r + 1) * k].to_vec()).collect() };
        let n: usize = self.latent_shape.iter().product();
        let text = self.tokens * self.hidden;
        let pooled = self.pooled.len() / self.rows.max(1);
        DitBatch {
            rows: rows.len(),
            latent_shape: self.latent_shape,
            latents: per(&self.latents, n),
            timesteps: per(&self.timesteps, 1),
            tokens: self.tokens,
            hidden: self.hidden,
            states: per(&self.states, text),
            mask: rows.iter().flat_map(|&r| self.mask[r * self.tokens..(r + 1) * self.tokens].to_vec()).collect(),
            fps: per(&self.fps, 1),
            guidance: per(&self.guidance, 1),
            pooled: per(&self.pooled, pooled),
        }
    }
}
