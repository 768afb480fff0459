//! The DiT behind a small synchronous interface: one call = one ONNX run over a batch of rows. Tensor names come
//! from the bundle's manifest (`[dit.names]`); a graph without a text mask input never gets one; extra inputs
//! (`dit.extra_inputs`) are filled per row from their source.

use ort::session::Session;
use vidmesh_model::{DitNames, ExtraInput};

/// One batch for the DiT: `rows` rows of latents [C, T', h, w], timesteps, and text states padded to `tokens`.
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
    session: Session,
    names: DitNames,
    extras: Vec<ExtraInput>,
}

impl Dit {
    /// Wraps an opened session whose tensors are called `names` (empty `text_mask`: the graph has no mask) and
    /// which takes `extras` (sources the manifest validation accepted).
    pub fn new(session: Session, names: DitNames, extras: Vec<ExtraInput>) -> Self {
        Self { session, names, extras }
    }

    /// The session, for IO-bound runs (engine::resident).
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// Runs the batch; returns the model output, same layout as `latents`.
    pub fn run(&mut self, b: DitBatch) -> Result<Vec<f32>, String> {
        let [c, t, h, w] = b.latent_shape;
        let n = b.latents.len();
        let e = |e: ort::Error| e.to_string();
        let latents = ort::value::Tensor::from_array(([b.rows, c, t, h, w], b.latents)).map_err(e)?;
        let timestep = ort::value::Tensor::from_array(([b.rows], b.timesteps)).map_err(e)?;
        let states = ort::value::Tensor::from_array(([b.rows, b.tokens, b.hidden], b.states)).map_err(e)?;
        let mut inputs = ort::inputs![
            self.names.latents.as_str() => latents,
            self.names.timestep.as_str() => timestep,
            self.names.text_states.as_str() => states,
        ];
        if !self.names.text_mask.is_empty() {
            let mask = ort::value::Tensor::from_array(([b.rows, b.tokens], b.mask)).map_err(e)?;
            inputs.push((self.names.text_mask.as_str().into(), mask.into()));
        }
        for x in &self.extras {
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
            inputs.push((x.name.as_str().into(), value.into()));
        }
        let outputs = self.session.run(inputs).map_err(e)?;
        let (_, v) = outputs[self.names.output.as_str()].try_extract_tensor::<f32>().map_err(e)?;
        if v.len() != n {
            return Err(format!("{} has {} elements, expected {n}", self.names.output, v.len()));
        }
        Ok(v.to_vec())
    }
}
