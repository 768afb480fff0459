//! Step-level continuous batching on the model thread.
//!
//! One OS thread owns the DiT. Every iteration it admits newly submitted jobs, drops the ones whose client went
//! away or whose deadline passed, picks the shape bucket that has waited longest, and runs ONE scheduler step for
//! up to `max_batch` of that bucket's jobs in a single DiT call (cond and uncond rows of each job side by side).
//! Jobs join and leave only at these step boundaries.
//!
//! Invariants: a job's rows never depend on its batch-mates (text states are always padded to the bundle's
//! max_tokens, masked; every row carries its own timestep), so its result equals its solo run up to float
//! rounding; a dropped client costs at most the step already in flight; every admitted job ends with exactly one
//! terminal event (Done or Failed) unless its client is gone.

use std::sync::mpsc::Receiver;
use std::time::Instant;

use super::dit::{Dit, DitBatch};
use super::job::{Event, Job};
use super::resident::Resident;
use super::scheduler::{guide, rescale};
use super::split::Group;
use crate::error::Error;
use crate::metrics::Metrics;

/// Static parameters of the loop.
pub struct LoopParams {
    /// Most jobs per DiT call.
    pub max_batch: usize,
    /// Padded text length.
    pub tokens: usize,
    /// Text hidden size.
    pub hidden: usize,
    /// Timestep scale of the model.
    pub timestep_scale: f32,
    /// How the graph's timestep is rounded.
    pub rounding: vidmesh_model::TimestepRounding,
    /// Cond and uncond rows as two DiT runs (`dit.guidance = "cfg_separate"`).
    pub separate: bool,
    /// With a second transformer: steps whose timestep is below this run on it.
    pub boundary: Option<f32>,
    /// CogVideoX's dynamic CFG (`scheduler.dynamic_cfg`).
    pub dynamic_cfg: bool,
}

impl LoopParams {
    /// The graph's timestep for `job` at its current step.
    pub fn timestep(&self, job: &Job) -> f32 {
        job.schedule.model_timestep(job.clock.step, self.timestep_scale, self.rounding)
    }

    /// Which transformer runs `job`'s current step (0 = `[dit]`, 1 = `[dit2]`), as diffusers' Wan 2.2 pipeline
    /// decides: the first while `t ≥ boundary_ratio · 1000`.
    pub fn expert(&self, job: &Job) -> usize {
        usize::from(self.boundary.is_some_and(|b| self.timestep(job) < b))
    }

    /// The CFG scale of `job`'s current step.
    pub fn guidance(&self, job: &Job) -> f32 {
        let g = if self.expert(job) == 1 { job.guidance2 } else { job.guidance };
        job.schedule.guidance(job.clock.step, g, self.dynamic_cfg)
    }
}

/// Runs until the submission channel closes and no job is left. With `resident`, latents stay in the execution
/// provider's memory between steps (IO binding); without, every step goes through host vectors.
pub fn run(mut dits: Vec<Dit>, mut resident: Option<Resident>, rx: Receiver<Job>, p: LoopParams, m: Metrics) {
    let mut active: Vec<Job> = Vec::new();
    loop {
        if active.is_empty() {
            match rx.recv() {
                Ok(job) => active.push(job),
                Err(_) => return,
            }
        }
        while let Ok(job) = rx.try_recv() {
            active.push(job);
        }
        let now = Instant::now();
        active.retain(|job| {
            if job.events.is_closed() {
                m.outcome("cancelled");
                return false;
            }
            if job.deadline.is_some_and(|d| now >= d) {
                m.outcome("deadline_exceeded");
                let _ = job.events.send(Event::Failed(Error::DeadlineExceeded));
                return false;
            }
            true
        });
        m.active.set(active.len() as i64);
        // A batch shares the latent shape, the transformer and the loop (device or host) its jobs step on; without
        // a device-resident loop every job steps on the host.
        let on_device = resident.is_some();
        let key = |j: &Job| (j.latent_shape, p.expert(j), j.device_loop && on_device);
        let Some(bucket) = active.iter().min_by_key(|j| j.clock.last_run).map(key) else { continue };
        let mut picked: Vec<usize> = (0..active.len()).filter(|&i| key(&active[i]) == bucket).collect();
        picked.sort_by_key(|&i| active[i].clock.last_run);
        picked.truncate(p.max_batch);
        picked.sort_unstable();
        let dit = &mut dits[bucket.1];
        let resident = resident.as_mut().filter(|_| bucket.2);
        let finished = step_batch(dit, resident, &mut active, &picked, &p, &m);
        // Remove finished jobs (highest index first so the others keep their positions), update the gauge and
        // release their admission permits before their last event goes out, so a client that saw its result
        // never sees itself counted — nor refused for capacity it no longer holds.
        let done: Vec<(Job, Event)> =
            finished.into_iter().rev().map(|(i, last)| (active.swap_remove(i), last)).collect();
        m.active.set(active.len() as i64);
        for (job, last) in done {
            let Job { events, permit, .. } = job;
            drop(permit);
            let _ = events.send(last);
        }
    }
}

/// One DiT call for `picked` jobs, then a scheduler step for each. Returns the jobs that ended (ascending
/// indices) with their terminal event, which the caller sends after removing them.
fn step_batch(
    dit: &mut Dit,
    resident: Option<&mut Resident>,
    active: &mut [Job],
    picked: &[usize],
    p: &LoopParams,
    m: &Metrics,
) -> Vec<(usize, Event)> {
    // Previews due at this step, per picked job.
    let want_x0: Vec<bool> = picked
        .iter()
        .map(|&i| {
            let job = &active[i];
            let done = job.clock.step + 1;
            job.preview_every > 0 && done.is_multiple_of(job.preview_every as usize) && done < job.schedule.steps()
        })
        .collect();
    let timer = Instant::now();
    let result = match resident {
        None => host_step(dit, active, picked, &want_x0, p, m),
        Some(r) => resident_step(r, dit, active, picked, &want_x0, p, m),
    };
    m.step_seconds.observe(timer.elapsed().as_secs_f64());
    m.batch_requests.observe(picked.len() as f64);
    let previews = match result {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("DiT step failed: {e}");
            return picked
                .iter()
                .map(|&i| {
                    m.outcome("failed");
                    (i, Event::Failed(Error::Inference(e.clone())))
                })
                .collect();
        }
    };
    let mut finished = Vec::new();
    for (&i, x0) in picked.iter().zip(previews) {
        let job = &mut active[i];
        let total = job.schedule.steps() as u32;
        let done = (job.clock.step + 1) as u32;
        if let Some(x0) = x0 {
            let _ = job.events.send(Event::Preview { step: done, x0 });
        }
        job.clock.step += 1;
        job.clock.last_run = Instant::now();
        m.steps.inc();
        let elapsed = job.clock.admitted.elapsed();
        let eta = elapsed.mul_f64(f64::from(total - done) / f64::from(done));
        let _ = job.events.send(Event::Progress {
            step: done,
            total,
            sigma: job.schedule.sigmas[job.clock.step],
            elapsed,
            eta,
            batch_requests: picked.len() as u32,
        });
        if job.clock.step == job.schedule.steps() {
            m.outcome("completed");
            let latents = std::mem::take(&mut job.x);
            finished.push((i, Event::Done { latents, steps: total, elapsed }));
        }
    }
    finished
}

/// The host path: batch assembled from host vectors, velocity back to the host, scheduler on the CPU.
/// Returns the requested previews.
fn host_step(
    dit: &mut Dit,
    active: &mut [Job],
    picked: &[usize],
    want_x0: &[bool],
    p: &LoopParams,
    m: &Metrics,
) -> Result<Vec<Option<Vec<f32>>>, String> {
    let shape = active[picked[0]].latent_shape;
    let n: usize = shape.iter().product();
    let rows: usize = picked.iter().map(|&i| if active[i].uncond.is_some() { 2 } else { 1 }).sum();
    // With split graphs every step goes through them (`off` rows always run the tail: the same numbers as the whole
    // graph, which the split was checked against).
    let v = if dit.split.is_some() {
        cached_run(dit, active, picked, p, m)?
    } else if p.separate {
        // Cond rows, then uncond rows, as two runs (diffusers' Wan pipeline); the output is laid out as below.
        let (cond, uncond) = split_rows(active, picked, p, shape);
        let (vc, vu) = (dit.run(cond)?, if uncond.rows > 0 { dit.run(uncond)? } else { Vec::new() });
        let (mut ci, mut ui) = (vc.chunks_exact(n), vu.chunks_exact(n));
        let mut v = Vec::with_capacity(rows * n);
        for &i in picked {
            v.extend_from_slice(ci.next().ok_or("missing cond row")?);
            if active[i].uncond.is_some() {
                v.extend_from_slice(ui.next().ok_or("missing uncond row")?);
            }
        }
        v
    } else {
        let mut batch = empty_batch(shape, p);
        for &i in picked {
            push_row(&mut batch, &active[i], p, false);
            if active[i].uncond.is_some() {
                push_row(&mut batch, &active[i], p, true);
            }
        }
        dit.run(batch)?
    };
    let mut previews = Vec::with_capacity(picked.len());
    let mut row = 0;
    for (&i, &want) in picked.iter().zip(want_x0) {
        let job = &mut active[i];
        let mut vel = v[row * n..(row + 1) * n].to_vec();
        row += 1;
        if job.uncond.is_some() {
            let cond = (job.guidance_rescale != 0.0).then(|| vel.clone());
            guide(&mut vel, &v[row * n..(row + 1) * n], p.guidance(job));
            if let Some(cond) = cond {
                rescale(&mut vel, &cond, job.guidance_rescale);
            }
            row += 1;
        }
        let step = job.clock.step;
        previews.push(want.then(|| job.schedule.x0(step, &job.x, &vel)));
        job.schedule.step(step, &mut job.x, &vel);
        if let Some(pins) = &job.pins {
            pins.apply(&job.schedule, step + 1, job.latent_shape, &mut job.x);
        }
    }
    Ok(previews)
}

/// One step through the split graphs (step caching): cond and uncond rows in one batch (also for
/// `cfg_separate` bundles: the same numbers up to float rounding), each job's cache deciding for its rows.
fn cached_run(
    dit: &mut Dit,
    active: &mut [Job],
    picked: &[usize],
    p: &LoopParams,
    m: &Metrics,
) -> Result<Vec<f32>, String> {
    let shape = active[picked[0]].latent_shape;
    let mut batch = empty_batch(shape, p);
    let mut spans = Vec::with_capacity(picked.len());
    for &i in picked {
        let start = batch.rows;
        push_row(&mut batch, &active[i], p, false);
        if active[i].uncond.is_some() {
            push_row(&mut batch, &active[i], p, true);
        }
        spans.push((start..batch.rows, (active[i].clock.step, active[i].schedule.steps()), p.expert(&active[i])));
    }
    // Disjoint mutable borrows of the picked jobs' caches, in `picked` order.
    let mut caches: Vec<Option<&mut super::cache::StepCache>> = Vec::with_capacity(picked.len());
    let mut rest: &mut [Job] = active;
    let mut offset = 0;
    for &i in picked {
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(i - offset);
        let (job, after) = tail.split_first_mut().ok_or("picked job out of range")?;
        caches.push(job.cache.as_mut());
        rest = after;
        offset = i + 1;
    }
    let mut groups: Vec<Group<'_>> = spans
        .into_iter()
        .zip(caches)
        .map(|((rows, step, expert), cache)| Group { rows, cache, step, expert })
        .collect();
    let skipped = |g: &[Group<'_>]| g.iter().filter_map(|g| g.cache.as_ref().map(|c| c.skipped)).sum::<u32>();
    let (before, with_tier) = (skipped(&groups), groups.iter().filter(|g| g.cache.is_some()).count() as u64);
    let split = dit.split.as_mut().ok_or("no split graphs")?;
    let v = split.run(batch, &mut groups)?;
    let now = u64::from(skipped(&groups) - before);
    m.cache_steps.with_label_values(&["skipped"]).inc_by(now);
    m.cache_steps.with_label_values(&["run"]).inc_by(with_tier - now);
    Ok(v)
}

fn empty_batch(shape: [usize; 4], p: &LoopParams) -> DitBatch {
    DitBatch {
        rows: 0,
        latent_shape: shape,
        latents: Vec::new(),
        timesteps: Vec::new(),
        tokens: p.tokens,
        hidden: p.hidden,
        states: Vec::new(),
        mask: Vec::new(),
        fps: Vec::new(),
        guidance: Vec::new(),
        pooled: Vec::new(),
    }
}

/// Appends one row of `job` to `batch`: its uncond branch when `uncond` (the job must have one), else its cond
/// branch. Every DiT row is assembled here.
fn push_row(batch: &mut DitBatch, job: &Job, p: &LoopParams, uncond: bool) {
    let (states, mask, pooled) = match (&job.uncond, uncond) {
        (Some((states, mask)), true) => (states, mask, &job.uncond_pooled),
        _ => (&job.cond, &job.cond_mask, &job.cond_pooled),
    };
    batch.latents.extend_from_slice(&job.x);
    batch.timesteps.push(p.timestep(job));
    batch.states.extend_from_slice(states);
    batch.mask.extend_from_slice(mask);
    batch.fps.push(job.fps);
    batch.guidance.push(p.guidance(job));
    batch.pooled.extend_from_slice(pooled);
    batch.rows += 1;
}

/// The picked jobs' cond rows and uncond rows as two batches.
fn split_rows(active: &[Job], picked: &[usize], p: &LoopParams, shape: [usize; 4]) -> (DitBatch, DitBatch) {
    let (mut cond, mut uncond) = (empty_batch(shape, p), empty_batch(shape, p));
    for &i in picked {
        push_row(&mut cond, &active[i], p, false);
        if active[i].uncond.is_some() {
            push_row(&mut uncond, &active[i], p, true);
        }
    }
    (cond, uncond)
}

/// The device-resident path ([`Resident`]); reads latents back only for previews and finishing jobs.
fn resident_step(
    r: &mut Resident,
    dit: &mut Dit,
    active: &mut [Job],
    picked: &[usize],
    want_x0: &[bool],
    p: &LoopParams,
    m: &Metrics,
) -> Result<Vec<Option<Vec<f32>>>, String> {
    let mut timesteps = Vec::new();
    let mut coeffs = Vec::new();
    let mut read_back = false;
    for &i in picked {
        let job = &active[i];
        let t = p.timestep(job);
        timesteps.push(t);
        if job.uncond.is_some() {
            timesteps.push(t);
        }
        let g = if job.uncond.is_some() { p.guidance(job) } else { 1.0 };
        coeffs.push((job.schedule.coefficients(job.clock.step), g));
        read_back |= job.clock.step + 1 == job.schedule.steps();
    }
    let out = r
        .step(dit.session_mut()?, active, picked, (p.tokens, p.hidden), timesteps, &coeffs, want_x0, read_back, m)
        .map_err(|e| e.to_string());
    if out.is_err() {
        r.forget(&picked.iter().map(|&i| active[i].id).collect::<Vec<_>>());
    }
    Ok(out?.x0)
}
