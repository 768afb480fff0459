//! The DiT as three graphs for step caching (`[dit.cache]`): head (embeddings + block 0) on every row, tail (the
//! other blocks) only on the rows whose request runs it this step, out (final norm + projection) on every row.
//!
//! Invariants: a row that runs the tail gets exactly what the whole graph computes (the split is checked against
//! it when the bundle is made, and the tail's per-row inputs are gathered, so batch-mates never mix); a row that
//! skips gets `block_output + cached residual` as the tail's output; requests without a cache always run the tail.

use std::ops::Range;

use ort::session::{Session, SessionInputValue};
use ort::value::DynValue;
use vidmesh_model::{Bundle, DitNames, ExtraInput, Onnx, StepCacheSpec};

use super::cache::StepCache;
use super::dit::{DitBatch, graph_inputs};
use crate::error::Error;

/// One request's rows in a split batch and its caching state.
pub struct Group<'a> {
    /// Its rows in the batch (cond, then uncond).
    pub rows: Range<usize>,
    /// Its cache (`None`: tier `off`, the tail always runs).
    pub cache: Option<&'a mut StepCache>,
    /// The step about to run (0-based) and the schedule's length.
    pub step: (usize, usize),
    /// Which transformer runs the step.
    pub expert: usize,
}

/// The three sessions and the tensor names that join them.
pub struct SplitDit {
    head: Session,
    tail: Session,
    out: Session,
    spec: StepCacheSpec,
    names: DitNames,
    extras: Vec<ExtraInput>,
}

fn input_names(s: &Session) -> Vec<String> {
    s.inputs().iter().map(|o| o.name().to_string()).collect()
}

impl SplitDit {
    /// Opens the split graphs of the transformer `key` and checks that they join: the head gives the names the
    /// manifest lists and every tail and out input is a head output, a DiT input or the tail's output.
    pub fn open(
        onnx: &Onnx,
        bundle: &Bundle,
        key: &str,
        spec: &StepCacheSpec,
        names: DitNames,
        extras: Vec<ExtraInput>,
    ) -> Result<Self, Error> {
        let open = |part: &str, file: &str| {
            onnx.session(&bundle.path(file)).map_err(|e| Error::Inference(format!("{key}.cache.{part}: {e}")))
        };
        let (head, tail, out) =
            (open("head", &spec.head.file)?, open("tail", &spec.tail.file)?, open("out", &spec.out.file)?);
        let made: Vec<String> = head.outputs().iter().map(|o| o.name().to_string()).collect();
        let mut dit_inputs = vec![names.latents.clone(), names.timestep.clone(), names.text_states.clone()];
        dit_inputs.push(names.text_mask.clone());
        dit_inputs.extend(extras.iter().map(|x| x.name.clone()));
        for n in [&spec.block_input, &spec.block_output].into_iter().chain(&spec.per_row) {
            if !made.contains(n) {
                return Err(Error::Inference(format!("{key}.cache: the head graph has no output {n:?}")));
            }
        }
        for (part, s, extra) in [("tail", &tail, None), ("out", &out, Some(&spec.tail_output))] {
            for n in input_names(s) {
                if !(made.contains(&n) || dit_inputs.contains(&n) || extra == Some(&n)) {
                    return Err(Error::Inference(format!(
                        "{key}.cache.{part} takes {n:?}, which neither the head nor the request gives"
                    )));
                }
            }
        }
        if !tail.outputs().iter().any(|o| o.name() == spec.tail_output) {
            return Err(Error::Inference(format!("{key}.cache: the tail graph has no output {:?}", spec.tail_output)));
        }
        Ok(Self { head, tail, out, spec: spec.clone(), names, extras })
    }

    /// One step for the batch; returns the model output (same layout as the latents). Each group's cache decides
    /// whether its rows run the tail, and is updated.
    pub fn run(&mut self, b: DitBatch, groups: &mut [Group<'_>]) -> Result<Vec<f32>, String> {
        let e = |e: ort::Error| e.to_string();
        let Self { head, tail, out, spec, names, extras } = self;
        let rows = b.rows;
        let n = b.latents.len();
        let sub = b.clone();
        let full = graph_inputs(names, extras, b)?;
        let find = |v: &[(String, DynValue)], name: &str| v.iter().position(|(k, _)| k == name);
        let head_in: Vec<(String, SessionInputValue<'_>)> =
            input_names(head).into_iter().filter_map(|k| find(&full, &k).map(|i| (k, (&full[i].1).into()))).collect();
        let houts = head.run(head_in).map_err(e)?;
        let h0 = f32s(&houts, &spec.block_input)?;
        let (h1_shape, h1) = shaped(&houts, &spec.block_output)?;
        let per = h1.len() / rows.max(1);
        if h0.len() != h1.len() || per * rows != h1.len() {
            return Err(format!("{} and {} do not match the batch", spec.block_input, spec.block_output));
        }
        // Decisions, per request, from its own rows only.
        let mut skip = vec![false; groups.len()];
        for (g, s) in groups.iter_mut().zip(&mut skip) {
            if let Some(c) = g.cache.as_deref_mut() {
                let r = g.rows.start * per..g.rows.end * per;
                let signal = h1[r.clone()].iter().zip(&h0[r]).map(|(a, b)| a - b).collect();
                *s = c.skip(g.step.0, g.step.1, g.expert, signal);
            }
        }
        let select: Vec<usize> =
            groups.iter().zip(&skip).filter(|(_, s)| !**s).flat_map(|(g, _)| g.rows.clone()).collect();
        let mut hn = vec![0f32; h1.len()];
        if !select.is_empty() {
            let part = graph_inputs(names, extras, sub.select(&select))?;
            let mut owned: Vec<(String, DynValue)> = Vec::new();
            for k in input_names(tail) {
                if find(&part, &k).is_none() && spec.per_row.contains(&k) {
                    owned.push((k.clone(), gather(&houts, &k, &select, rows)?));
                }
            }
            let mut inputs: Vec<(String, SessionInputValue<'_>)> = Vec::new();
            for k in input_names(tail) {
                let v: SessionInputValue<'_> = if let Some(i) = find(&part, &k) {
                    (&part[i].1).into()
                } else if let Some(i) = find(&owned, &k) {
                    (&owned[i].1).into()
                } else {
                    houts.get(&k).ok_or_else(|| format!("head output {k:?} missing"))?.into()
                };
                inputs.push((k, v));
            }
            let touts = tail.run(inputs).map_err(e)?;
            let t = f32s(&touts, &spec.tail_output)?;
            if t.len() != select.len() * per {
                return Err(format!("{} has {} elements, expected {}", spec.tail_output, t.len(), select.len() * per));
            }
            for (k, &r) in select.iter().enumerate() {
                hn[r * per..(r + 1) * per].copy_from_slice(&t[k * per..(k + 1) * per]);
            }
        }
        for (g, &s) in groups.iter_mut().zip(&skip) {
            let r = g.rows.start * per..g.rows.end * per;
            match g.cache.as_deref_mut() {
                Some(c) if s => {
                    for ((o, a), d) in hn[r.clone()].iter_mut().zip(&h1[r.clone()]).zip(c.residual()) {
                        *o = a + d;
                    }
                }
                Some(c) => c.store(hn[r.clone()].iter().zip(&h1[r]).map(|(o, a)| o - a).collect(), g.expert),
                None => {}
            }
        }
        let hn = ort::value::Tensor::from_array((h1_shape, hn)).map_err(e)?.into_dyn();
        let mut inputs: Vec<(String, SessionInputValue<'_>)> = Vec::new();
        for k in input_names(out) {
            let v: SessionInputValue<'_> = if k == spec.tail_output {
                (&hn).into()
            } else if let Some(i) = find(&full, &k) {
                (&full[i].1).into()
            } else {
                houts.get(&k).ok_or_else(|| format!("head output {k:?} missing"))?.into()
            };
            inputs.push((k, v));
        }
        let outs = out.run(inputs).map_err(e)?;
        let v = f32s(&outs, &names.output)?;
        if v.len() != n {
            return Err(format!("{} has {} elements, expected {n}", names.output, v.len()));
        }
        Ok(v.to_vec())
    }
}

fn shaped(o: &ort::session::SessionOutputs<'_>, name: &str) -> Result<(Vec<usize>, Vec<f32>), String> {
    let v = o.get(name).ok_or_else(|| format!("graph output {name:?} missing"))?;
    let (shape, data) = v.try_extract_tensor::<f32>().map_err(|e| format!("{name}: {e}"))?;
    Ok((shape.iter().map(|&d| d as usize).collect(), data.to_vec()))
}

fn f32s<'a>(o: &'a ort::session::SessionOutputs<'_>, name: &str) -> Result<&'a [f32], String> {
    let v = o.get(name).ok_or_else(|| format!("graph output {name:?} missing"))?;
    Ok(v.try_extract_tensor::<f32>().map_err(|e| format!("{name}: {e}"))?.1)
}

/// The given rows of a batch-major head output (float32 or int64).
fn gather(o: &ort::session::SessionOutputs<'_>, name: &str, rows: &[usize], batch: usize) -> Result<DynValue, String> {
    let v = o.get(name).ok_or_else(|| format!("head output {name:?} missing"))?;
    fn pick<T: Copy>(shape: &[i64], data: &[T], rows: &[usize], batch: usize) -> Result<(Vec<usize>, Vec<T>), String> {
        if shape.first().copied() != Some(batch as i64) {
            return Err(format!("per-row head output has shape {shape:?}, not {batch} rows"));
        }
        let k = data.len() / batch.max(1);
        let mut dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
        dims[0] = rows.len();
        Ok((dims, rows.iter().flat_map(|&r| data[r * k..(r + 1) * k].iter().copied()).collect()))
    }
    let e = |e: ort::Error| format!("{name}: {e}");
    if let Ok((shape, data)) = v.try_extract_tensor::<f32>() {
        let (dims, d) = pick(shape, data, rows, batch)?;
        return Ok(ort::value::Tensor::from_array((dims, d)).map_err(e)?.into_dyn());
    }
    let (shape, data) = v.try_extract_tensor::<i64>().map_err(e)?;
    let (dims, d) = pick(shape, data, rows, batch)?;
    Ok(ort::value::Tensor::from_array((dims, d)).map_err(e)?.into_dyn())
}
