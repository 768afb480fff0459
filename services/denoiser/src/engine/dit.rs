//! The DiT behind a small synchronous interface: one call = one ONNX run over a batch of rows.

use ort::session::Session;

/// One batch for the DiT: `rows` rows of latents [C, T', h, w], timesteps, and text states padded to `tokens`.
pub struct DitBatch {
    /// Rows in the batch.
    pub rows: usize,
    /// Latent shape of every row.
    pub latent_shape: [usize; 4],
    /// Latents, rows × latent elements.
    pub latents: Vec<f32>,
    /// One timestep per row.
    pub timesteps: Vec<f32>,
    /// Text tokens per row (padded).
    pub tokens: usize,
    /// Hidden size of the text states.
    pub hidden: usize,
    /// Text states, rows × tokens × hidden.
    pub states: Vec<f32>,
    /// Text mask, rows × tokens (1 = real token).
    pub mask: Vec<i64>,
}

/// The DiT session.
pub struct Dit {
    session: Session,
}

impl Dit {
    /// Wraps an opened session.
    pub fn new(session: Session) -> Self {
        Self { session }
    }

    /// The session, for IO-bound runs (engine::resident).
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// Runs the batch; returns the velocity, same layout as `latents`.
    pub fn run(&mut self, b: DitBatch) -> Result<Vec<f32>, String> {
        let [c, t, h, w] = b.latent_shape;
        let n = b.latents.len();
        let latents = ort::value::Tensor::from_array(([b.rows, c, t, h, w], b.latents)).map_err(|e| e.to_string())?;
        let timestep = ort::value::Tensor::from_array(([b.rows], b.timesteps)).map_err(|e| e.to_string())?;
        let states =
            ort::value::Tensor::from_array(([b.rows, b.tokens, b.hidden], b.states)).map_err(|e| e.to_string())?;
        let mask = ort::value::Tensor::from_array(([b.rows, b.tokens], b.mask)).map_err(|e| e.to_string())?;
        let outputs = self
            .session
            .run(ort::inputs![
                "latents" => latents,
                "timestep" => timestep,
                "text_states" => states,
                "text_mask" => mask,
            ])
            .map_err(|e| e.to_string())?;
        let (_, v) = outputs["velocity"].try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
        if v.len() != n {
            return Err(format!("velocity has {} elements, expected {n}", v.len()));
        }
        Ok(v.to_vec())
    }
}
