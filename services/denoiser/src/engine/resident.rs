//! The device-resident step loop (IO binding): latents stay in the execution provider's memory between steps.
//!
//! Per step, the DiT runs through an [`IoBinding`](ort::session::IoBinding) whose `latents`, `text_states` and `text_mask` inputs are
//! device tensors and whose `velocity` output is allocated on the device; then a small *step graph* — built here
//! with ONNX Runtime's model editor and run on the same provider — applies guidance and the scheduler update
//! (every kind's update is linear: [`StepCoefficients`]) and gathers the next step's DiT input, all on the device.
//! Only the per-row timesteps and step coefficients (a few floats per request) come from the host each step.
//!
//! With CUDA graphs ([`Resident::with_cuda_graphs`], `onnxruntime.cuda_graph`), the DiT session was built for
//! capture (`Onnx::captured_builder`) and each shape bucket — latent shape and DiT rows, [`GraphKey`] — is its own
//! captured graph: its run option `gpu_graph_id` comes from [`GraphIds`] and its DiT inputs and output live in
//! buffers of its own ([`Slot`]) whose device addresses never change. Each step copies the set's DiT input (and,
//! when another set used the bucket last, its text states and mask) into the bucket's buffers on the device, and
//! the timesteps from the host into the bucket's timestep buffer: replaying a graph reads what is at the captured
//! addresses, so nothing may be bound anywhere else.
//!
//! Invariants:
//! - Device state is kept per ordered set of jobs (one DiT call's batch); several sets stay resident, so when more
//!   jobs share a shape than fit one batch and the batcher rotates through them, each recurring set finds its
//!   state on the device. A job's device state lives in at most one set: when a new set is picked, every set
//!   holding one of its jobs goes back to the host mirrors (`Job::x`, `Job::prev`) first and the new set is
//!   uploaded. A step whose set is resident moves no latents (metric `transfer_bytes`).
//! - The step graph's arithmetic on a row depends only on that row, so a job's result equals its solo run up to
//!   the DiT's own batch-size rounding (tested within 1e-5).
//! - Final latents and previews are read back from the device on the step that produces them.
//! - With CUDA graphs, a bucket's graph id and buffers are created on its first step and kept for the engine's
//!   life (ids from 1: ONNX Runtime reserves 0 and reads -1 as "no graph"); the DiT is only ever run here with its
//!   bucket's id and buffers, on the model thread (a captured graph belongs to the thread that captured it). The
//!   step graph is never captured. Memory grows with the distinct buckets served (sizes × batch rows).

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use ort::editor::{Graph, Model, Node, ONNX_DOMAIN, Opset};
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::operator::Attribute;
use ort::session::builder::SessionBuilder;
use ort::session::{RunOptions, Session};
use ort::value::{Outlet, Shape, SymbolicDimensions, Tensor, TensorElementType, ValueType};

use super::job::Job;
use super::scheduler::StepCoefficients;
use crate::metrics::Metrics;

type OrtResult<T> = Result<T, ort::Error>;

/// Where device tensors live.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    /// True for CUDA, false for the CPU provider.
    pub cuda: bool,
    /// CUDA device ordinal.
    pub device_id: i32,
}

impl Placement {
    fn device(&self) -> AllocationDevice<'static> {
        if self.cuda { AllocationDevice::CUDA } else { AllocationDevice::CPU }
    }

    fn memory(&self) -> OrtResult<MemoryInfo<'static>> {
        MemoryInfo::new(self.device(), self.device_id, AllocatorType::Device, MemoryType::Default)
    }
}

/// The step graph's per-row scalar inputs, in input order.
const COEFFS: [&str; 6] = ["a", "b", "c", "p", "q", "g"];

fn f32_input(name: &str, dims: [&str; 5]) -> Outlet {
    let shape = Shape::new(dims.iter().map(|d| if d.is_empty() { 1 } else { -1 }));
    let symbols = SymbolicDimensions::new(dims.iter().map(|d| d.to_string()));
    Outlet::new(name, ValueType::Tensor { ty: TensorElementType::Float32, shape, dimension_symbols: symbols })
}

fn index_input(name: &str, dim: &str) -> Outlet {
    let ty = TensorElementType::Int64;
    Outlet::new(
        name,
        ValueType::Tensor {
            ty,
            shape: Shape::new([-1]),
            dimension_symbols: SymbolicDimensions::new([dim.to_string()]),
        },
    )
}

/// Builds the step graph on `builder`'s provider:
/// `m = vu + g·(vc − vu)` with `vc`/`vu` gathered from `velocity` by `cond_idx`/`uncond_idx`;
/// `x_next = a·x + b·m + c·prev`; `x0 = p·x + q·m`; `dit_next = x_next[row_job]`.
/// The graph is a few element-wise ops: one intra-op thread that does not spin, so it never competes with the
/// DiT's thread pool for the CPU.
pub fn step_session(builder: SessionBuilder) -> OrtResult<Session> {
    let plain = |e: ort::Error<SessionBuilder>| -> ort::Error { e.into() };
    let builder = builder.with_intra_threads(1).map_err(plain)?.with_intra_op_spinning(false).map_err(plain)?;
    let lat = |rows: &'static str| [rows, "c", "t", "h", "w"];
    let mut graph = Graph::new()?;
    let mut inputs =
        vec![f32_input("velocity", lat("rows")), f32_input("x", lat("batch")), f32_input("prev", lat("batch"))];
    inputs.extend(COEFFS.iter().map(|n| f32_input(n, ["batch", "", "", "", ""])));
    inputs.extend([
        index_input("cond_idx", "batch"),
        index_input("uncond_idx", "batch"),
        index_input("row_job", "rows"),
    ]);
    graph.set_inputs(inputs)?;
    graph.set_outputs([
        f32_input("x_next", lat("batch")),
        f32_input("x0", lat("batch")),
        f32_input("dit_next", lat("rows")),
    ])?;
    let axis0 = || Attribute::new("axis", 0i64);
    let nodes: [(&str, &[&str], &str); 14] = [
        ("Gather", &["velocity", "cond_idx"], "vc"),
        ("Gather", &["velocity", "uncond_idx"], "vu"),
        ("Sub", &["vc", "vu"], "d"),
        ("Mul", &["g", "d"], "gd"),
        ("Add", &["vu", "gd"], "m"),
        ("Mul", &["a", "x"], "ax"),
        ("Mul", &["b", "m"], "bm"),
        ("Mul", &["c", "prev"], "cp"),
        ("Add", &["ax", "bm"], "axbm"),
        ("Add", &["axbm", "cp"], "x_next"),
        ("Mul", &["p", "x"], "px"),
        ("Mul", &["q", "m"], "qm"),
        ("Add", &["px", "qm"], "x0"),
        ("Gather", &["x_next", "row_job"], "dit_next"),
    ];
    for (op, ins, out) in nodes {
        let attrs = if op == "Gather" { vec![axis0()?] } else { vec![] };
        graph.add_node(Node::new(op, ONNX_DOMAIN, out, ins, [out], attrs)?)?;
    }
    let mut model = Model::new([Opset::new(ONNX_DOMAIN, 18)?])?;
    model.set_graph(graph)?;
    model.into_session(&builder)
}

/// ONNX Runtime's run option that picks a CUDA graph.
const GRAPH_ID: &str = "gpu_graph_id";

/// Run options for a run of a captured session outside this loop (e.g. the host path): `gpu_graph_id = -1`, so
/// ONNX Runtime neither captures nor replays a graph for it and reads its inputs as given.
pub fn uncaptured() -> OrtResult<RunOptions> {
    let mut ro = RunOptions::new()?;
    ro.set(GRAPH_ID, "-1")?;
    Ok(ro)
}

/// A CUDA graph's shape bucket: the latent shape [C, T', h, w] and the rows of the DiT call (a captured graph
/// replays exactly these shapes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GraphKey {
    /// Latent shape [C, T', h, w].
    pub latent: [usize; 4],
    /// DiT rows (two per request with guidance).
    pub rows: usize,
}

/// Graph ids per bucket: the first bucket seen gets 1, each new one the next integer; a bucket keeps its id.
#[derive(Debug, Default)]
pub struct GraphIds(HashMap<GraphKey, i32>);

impl GraphIds {
    /// `key`'s id (assigned on first use).
    pub fn id(&mut self, key: GraphKey) -> i32 {
        let next = i32::try_from(self.0.len() + 1).unwrap_or(i32::MAX);
        *self.0.entry(key).or_insert(next)
    }

    /// Buckets seen.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no bucket was seen yet.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One graph bucket's DiT inputs and output, at device addresses fixed for the engine's life.
struct Slot {
    options: RunOptions,
    /// The set whose text states and mask the buffers hold.
    owner: Vec<u64>,
    latents: Tensor<f32>,
    timestep: Tensor<f32>,
    states: Tensor<f32>,
    mask: Tensor<i64>,
    velocity: Tensor<f32>,
}

impl Slot {
    fn new(
        dit: &Session,
        place: &Placement,
        key: GraphKey,
        id: i32,
        (tokens, hidden): (usize, usize),
    ) -> OrtResult<Self> {
        let alloc = if place.cuda { Allocator::new(dit, place.memory()?)? } else { Allocator::default() };
        let [c, t, h, w] = key.latent;
        let lat = [key.rows, c, t, h, w];
        let mut options = RunOptions::new()?;
        options.set(GRAPH_ID, id.to_string())?;
        Ok(Self {
            options,
            owner: Vec::new(),
            latents: Tensor::new(&alloc, lat)?,
            timestep: Tensor::new(&alloc, [key.rows])?,
            states: Tensor::new(&alloc, [key.rows, tokens, hidden])?,
            mask: Tensor::new(&alloc, [key.rows, tokens])?,
            velocity: Tensor::new(&alloc, lat)?,
        })
    }
}

/// One set's DiT inputs as it holds them on the device.
struct DitInputs<'a> {
    ids: &'a [u64],
    latents: &'a Tensor<f32>,
    timesteps: &'a Tensor<f32>,
    states: &'a Tensor<f32>,
    mask: &'a Tensor<i64>,
}

/// Runs the DiT on `set` with its own tensors bound and the velocity allocated on `mem`'s device.
fn run_bound(dit: &mut Session, set: &DitInputs, mem: &MemoryInfo) -> OrtResult<Tensor<f32>> {
    let mut bind = dit.create_binding()?;
    bind.bind_input("latents", set.latents)?;
    bind.bind_input("timestep", set.timesteps)?;
    bind.bind_input("text_states", set.states)?;
    bind.bind_input("text_mask", set.mask)?;
    bind.bind_output_to_device("velocity", mem)?;
    let out = dit.run_binding(&bind)?.remove("velocity");
    out.ok_or_else(|| ort::Error::new("no velocity output"))?.downcast()
}

/// The CUDA graph state: ids and buffers per bucket.
#[derive(Default)]
struct Graphs {
    ids: GraphIds,
    slots: HashMap<GraphKey, Slot>,
}

impl Graphs {
    /// Runs the DiT on `set` as `key`'s graph: copies the set's inputs into the bucket's fixed buffers (text states
    /// and mask only when another set used them last) and runs with the bucket's `gpu_graph_id`, so the first runs
    /// capture and later ones replay. Returns the bucket's velocity buffer.
    fn run(
        &mut self,
        dit: &mut Session,
        place: &Placement,
        key: GraphKey,
        set: &DitInputs,
        text: (usize, usize),
    ) -> OrtResult<&Tensor<f32>> {
        let id = self.ids.id(key);
        let slot = match self.slots.entry(key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(Slot::new(dit, place, key, id, text)?),
        };
        if slot.owner != set.ids {
            set.states.copy_into(&mut slot.states)?;
            set.mask.copy_into(&mut slot.mask)?;
            slot.owner = set.ids.to_vec();
        }
        set.latents.copy_into(&mut slot.latents)?;
        set.timesteps.copy_into(&mut slot.timestep)?;
        let mut bind = dit.create_binding()?;
        bind.bind_input("latents", &slot.latents)?;
        bind.bind_input("timestep", &slot.timestep)?;
        bind.bind_input("text_states", &slot.states)?;
        bind.bind_input("text_mask", &slot.mask)?;
        bind.bind_output("velocity", &mut slot.velocity)?;
        drop(dit.run_binding_with_options(&bind, &slot.options)?);
        Ok(&slot.velocity)
    }
}

/// One bucket's device state, for the jobs `ids` in this order.
struct Bucket {
    ids: Vec<u64>,
    /// Elements per row.
    n: usize,
    x: Tensor<f32>,
    prev: Tensor<f32>,
    dit_in: Tensor<f32>,
    states: Tensor<f32>,
    mask: Tensor<i64>,
    cond_idx: Tensor<i64>,
    uncond_idx: Tensor<i64>,
    row_job: Tensor<i64>,
}

/// The device-resident loop's sessions and state.
pub struct Resident {
    step: Session,
    place: Placement,
    buckets: Vec<Bucket>,
    /// With CUDA graphs: per shape bucket, its graph id and fixed buffers.
    graphs: Option<Graphs>,
}

/// What one resident step produced for the host.
pub struct StepOutput {
    /// Per picked job: its clean estimate, when a preview was asked for.
    pub x0: Vec<Option<Vec<f32>>>,
}

impl Resident {
    /// Wraps a step-graph session on `place`.
    pub fn new(step: Session, place: Placement) -> Self {
        Self { step, place, buckets: Vec::new(), graphs: None }
    }

    /// With `on`, runs the DiT as one CUDA graph per shape bucket (the DiT session must come from
    /// `Onnx::captured_builder`; on the CPU provider the same fixed-buffer path runs and the graph id is ignored).
    pub fn with_cuda_graphs(mut self, on: bool) -> Self {
        self.graphs = on.then(Graphs::default);
        self
    }

    /// Buckets with a graph id so far (0 without CUDA graphs).
    pub fn graph_buckets(&self) -> usize {
        self.graphs.as_ref().map_or(0, |g| g.ids.len())
    }

    fn upload<T: ort::value::PrimitiveTensorElementType + std::fmt::Debug + Clone + 'static>(
        &self,
        shape: Vec<usize>,
        data: Vec<T>,
        m: &Metrics,
    ) -> OrtResult<Tensor<T>> {
        m.transfer_bytes.with_label_values(&["to_device"]).inc_by((data.len() * size_of::<T>()) as u64);
        let t = Tensor::from_array((shape, data))?;
        if self.place.cuda { t.to(self.place.device(), self.place.device_id) } else { Ok(t) }
    }

    fn download(&self, t: &Tensor<f32>, m: &Metrics) -> OrtResult<Vec<f32>> {
        let data = if self.place.cuda {
            t.to(AllocationDevice::CPU, 0)?.extract_tensor().1.to_vec()
        } else {
            t.extract_tensor().1.to_vec()
        };
        m.transfer_bytes.with_label_values(&["to_host"]).inc_by((data.len() * 4) as u64);
        Ok(data)
    }

    /// Drops the device state of the set `ids` without reading it back (after a failed step, whose jobs all fail).
    pub fn forget(&mut self, ids: &[u64]) {
        self.buckets.retain(|b| b.ids != ids);
    }

    /// Writes set `k`'s device state back into the host mirrors of its jobs still in `active` and drops it.
    fn evict(&mut self, k: usize, active: &mut [Job], m: &Metrics) -> OrtResult<()> {
        let b = self.buckets.swap_remove(k);
        if !active.iter().any(|j| b.ids.contains(&j.id)) {
            return Ok(());
        }
        let (x, prev) = (self.download(&b.x, m)?, self.download(&b.prev, m)?);
        for job in active.iter_mut() {
            if let Some(k) = b.ids.iter().position(|&id| id == job.id) {
                job.x.copy_from_slice(&x[k * b.n..(k + 1) * b.n]);
                job.prev = prev[k * b.n..(k + 1) * b.n].to_vec();
            }
        }
        Ok(())
    }

    fn load(&mut self, active: &[Job], picked: &[usize], tokens: usize, hidden: usize, m: &Metrics) -> OrtResult<()> {
        let shape = active[picked[0]].latent_shape;
        let n: usize = shape.iter().product();
        let lat = |rows: usize| vec![rows, shape[0], shape[1], shape[2], shape[3]];
        let (mut x, mut prev, mut dit_in, mut states, mut mask) = (vec![], vec![], vec![], vec![], vec![]);
        let (mut cond_idx, mut uncond_idx, mut row_job) = (vec![], vec![], vec![]);
        for (k, &i) in picked.iter().enumerate() {
            let job = &active[i];
            x.extend_from_slice(&job.x);
            if job.prev.is_empty() {
                prev.resize(prev.len() + n, 0.0)
            } else {
                prev.extend_from_slice(&job.prev)
            }
            cond_idx.push(row_job.len() as i64);
            row_job.push(k as i64);
            dit_in.extend_from_slice(&job.x);
            states.extend_from_slice(&job.cond);
            mask.extend_from_slice(&job.cond_mask);
            if let Some((s, mk)) = &job.uncond {
                uncond_idx.push(row_job.len() as i64);
                row_job.push(k as i64);
                dit_in.extend_from_slice(&job.x);
                states.extend_from_slice(s);
                mask.extend_from_slice(mk);
            } else {
                uncond_idx.push(*cond_idx.last().unwrap_or(&0));
            }
        }
        let (b, r) = (picked.len(), row_job.len());
        self.buckets.push(Bucket {
            ids: picked.iter().map(|&i| active[i].id).collect(),
            n,
            x: self.upload(lat(b), x, m)?,
            prev: self.upload(lat(b), prev, m)?,
            dit_in: self.upload(lat(r), dit_in, m)?,
            states: self.upload(vec![r, tokens, hidden], states, m)?,
            mask: self.upload(vec![r, tokens], mask, m)?,
            cond_idx: Tensor::from_array((vec![b], cond_idx))?,
            uncond_idx: Tensor::from_array((vec![b], uncond_idx))?,
            row_job: Tensor::from_array((vec![r], row_job))?,
        });
        Ok(())
    }

    /// One step for `picked` (ascending indices into `active`): DiT + guidance + scheduler update on the device.
    /// `timesteps` has one entry per DiT row; `coeffs` one per picked job. `want_x0[k]` asks for picked job k's
    /// clean estimate (a preview); `read_back` asks for every picked job's new latents in its host mirror (a job
    /// finishes), which also ends this device state.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        dit: &mut Session,
        active: &mut [Job],
        picked: &[usize],
        (tokens, hidden): (usize, usize),
        timesteps: Vec<f32>,
        coeffs: &[(StepCoefficients, f32)],
        want_x0: &[bool],
        read_back: bool,
        m: &Metrics,
    ) -> OrtResult<StepOutput> {
        let ids: Vec<u64> = picked.iter().map(|&i| active[i].id).collect();
        // Sets whose jobs have all gone (finished elsewhere, cancelled) hold nothing worth reading back.
        self.buckets.retain(|b| b.ids.iter().any(|id| active.iter().any(|j| j.id == *id)));
        let k = match self.buckets.iter().position(|b| b.ids == ids) {
            Some(k) => k,
            None => {
                while let Some(k) = self.buckets.iter().position(|b| b.ids.iter().any(|id| ids.contains(id))) {
                    self.evict(k, active, m)?;
                }
                self.load(active, picked, tokens, hidden, m)?;
                self.buckets.len() - 1
            }
        };
        let (place, graphs, b) = (&self.place, &mut self.graphs, &mut self.buckets[k]);
        let mem = place.memory()?;
        let timesteps = Tensor::from_array((vec![timesteps.len()], timesteps))?;
        let set =
            DitInputs { ids: &b.ids, latents: &b.dit_in, timesteps: &timesteps, states: &b.states, mask: &b.mask };
        let fresh: Tensor<f32>;
        let velocity = match graphs {
            None => {
                fresh = run_bound(dit, &set, &mem)?;
                &fresh
            }
            Some(g) => {
                let key = GraphKey { latent: active[picked[0]].latent_shape, rows: timesteps.shape()[0] as usize };
                g.run(dit, place, key, &set, (tokens, hidden))?
            }
        };

        let mut sb = self.step.create_binding()?;
        sb.bind_input("velocity", velocity)?;
        sb.bind_input("x", &b.x)?;
        sb.bind_input("prev", &b.prev)?;
        let per_row = |f: &dyn Fn(&(StepCoefficients, f32)) -> f32| -> OrtResult<Tensor<f32>> {
            Tensor::from_array((vec![coeffs.len(), 1, 1, 1, 1], coeffs.iter().map(f).collect::<Vec<f32>>()))
        };
        let scalars = [
            per_row(&|c| c.0.a)?,
            per_row(&|c| c.0.b)?,
            per_row(&|c| c.0.c)?,
            per_row(&|c| c.0.p)?,
            per_row(&|c| c.0.q)?,
            per_row(&|c| c.1)?,
        ];
        for (name, t) in COEFFS.iter().zip(&scalars) {
            sb.bind_input(*name, t)?;
        }
        sb.bind_input("cond_idx", &b.cond_idx)?;
        sb.bind_input("uncond_idx", &b.uncond_idx)?;
        sb.bind_input("row_job", &b.row_job)?;
        for out in ["x_next", "x0", "dit_next"] {
            sb.bind_output_to_device(out, &mem)?;
        }
        let mut outs = self.step.run_binding(&sb)?;
        let mut take = |name: &str| -> OrtResult<Tensor<f32>> {
            outs.remove(name).ok_or_else(|| ort::Error::new(format!("no {name} output")))?.downcast()
        };
        b.x = take("x_next")?;
        b.prev = take("x0")?;
        b.dit_in = take("dit_next")?;
        drop(outs);

        let n = b.n;
        let x0 = if want_x0.iter().any(|&w| w) {
            let all = self.download(&self.buckets[k].prev, m)?;
            want_x0.iter().enumerate().map(|(k, &w)| w.then(|| all[k * n..(k + 1) * n].to_vec())).collect()
        } else {
            vec![None; picked.len()]
        };
        if read_back {
            self.evict(k, active, m)?;
        }
        Ok(StepOutput { x0 })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::PathBuf;

    use vidmesh_model::{Bundle, Onnx, OnnxConfig, Part, noise};

    use super::*;

    #[test]
    fn each_shape_bucket_gets_its_own_stable_graph_id_from_1() {
        let mut ids = GraphIds::default();
        let a = GraphKey { latent: [8, 4, 16, 16], rows: 2 };
        let b = GraphKey { latent: [8, 4, 16, 16], rows: 4 };
        let c = GraphKey { latent: [8, 8, 16, 24], rows: 2 };
        assert!(ids.is_empty());
        assert_eq!([ids.id(a), ids.id(b), ids.id(a), ids.id(c), ids.id(b), ids.id(c)], [1, 2, 1, 3, 2, 3]);
        assert_eq!(ids.len(), 3);
    }

    fn tensor<T: ort::value::PrimitiveTensorElementType + std::fmt::Debug + Clone + 'static>(
        shape: Vec<usize>,
        data: Vec<T>,
    ) -> Tensor<T> {
        Tensor::from_array((shape, data)).unwrap()
    }

    /// The fixed-buffer path CUDA graphs replay, here on the CPU provider (which ignores `gpu_graph_id`): sets that
    /// share a bucket, take turns in it and leave it for another shape get exactly the velocity of a run with their
    /// own tensors bound, and a bucket's buffers never move.
    #[test]
    fn graph_buckets_keep_their_addresses_and_match_runs_on_the_sets_own_tensors() {
        let env: HashMap<String, String> = std::env::vars().collect();
        let onnx = Onnx::init(&OnnxConfig::default(), &env).expect("ORT_DYLIB_PATH must point at libonnxruntime");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/vidmesh-tiny");
        let bundle = Bundle::open(&dir, &[Part::Dit]).unwrap();
        let m = &bundle.manifest;
        let mut dit = onnx.captured_session(&bundle.path(&m.dit.component.file)).unwrap();
        let text = (m.text_encoder.max_tokens, m.text_encoder.hidden_size);
        let place = Placement { cuda: false, device_id: 0 };
        let mem = place.memory().unwrap();
        let (small, large) = (m.latent_shape(16, 64, 64), m.latent_shape(32, 64, 96));
        let mut graphs = Graphs::default();
        let mut addresses = HashMap::new();
        let sets: [(u64, [usize; 4], usize); 6] =
            [(1, small, 2), (2, small, 2), (1, small, 2), (3, large, 2), (2, small, 2), (4, small, 1)];
        for (step, (id, [c, t, h, w], rows)) in sets.into_iter().enumerate() {
            let (n, (tokens, hidden)) = (c * t * h * w, text);
            let set_ids = [id];
            let mask = (0..rows * tokens).map(|i| i64::from(i % tokens < 2 + id as usize)).collect();
            let (latents, timesteps, states, mask) = (
                tensor(vec![rows, c, t, h, w], noise::gaussian(id, rows * n)),
                tensor(vec![rows], vec![900.0 - 100.0 * step as f32; rows]),
                tensor(vec![rows, tokens, hidden], noise::gaussian(100 + id, rows * tokens * hidden)),
                tensor(vec![rows, tokens], mask),
            );
            let set =
                DitInputs { ids: &set_ids, latents: &latents, timesteps: &timesteps, states: &states, mask: &mask };
            let want = run_bound(&mut dit, &set, &mem).unwrap().extract_tensor().1.to_vec();
            let key = GraphKey { latent: [c, t, h, w], rows };
            let got = graphs.run(&mut dit, &place, key, &set, text).unwrap().extract_tensor().1.to_vec();
            assert_eq!(got, want, "step {step}: set {id} in bucket {key:?}");
            let slot = &graphs.slots[&key];
            let now = [
                slot.latents.data_ptr(),
                slot.timestep.data_ptr(),
                slot.states.data_ptr(),
                slot.mask.data_ptr(),
                slot.velocity.data_ptr(),
            ];
            assert_eq!(*addresses.entry(key).or_insert(now), now, "bucket {key:?}: a buffer moved");
        }
        let id = |latent, rows| graphs.ids.0[&GraphKey { latent, rows }];
        assert_eq!([id(small, 2), id(large, 2), id(small, 1)], [1, 2, 3]);
    }
}
