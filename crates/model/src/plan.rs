//! The one set of rules that checks a request against a bundle. The gateway, the denoiser, the decoder and the CLI
//! all resolve what a caller asked for into a [`Plan`] here, so a size, frame count, fps, step count, guidance or
//! scheduler that one of them accepts, all of them accept — with the same message when they refuse.
//!
//! Invariant: a [`Plan`] holds only values the bundle supports (frame rule, size grid, fps, scheduler for the
//! model's prediction) within the caller's limits, and its `latent_shape` is the one every stage computes.

use crate::manifest::{CacheTier, FrameRule, Manifest};

/// What a caller asked for; `0` / `None` / empty means the bundle's default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ask {
    /// Frames.
    pub frames: u32,
    /// Height in pixels.
    pub height: u32,
    /// Width in pixels.
    pub width: u32,
    /// Frames per second.
    pub fps: u32,
    /// Denoising steps.
    pub steps: u32,
    /// CFG scale.
    pub guidance: Option<f32>,
    /// CFG rescale φ.
    pub guidance_rescale: Option<f32>,
    /// Timestep shift.
    pub shift: Option<f32>,
    /// Scheduler kind.
    pub scheduler: String,
    /// Step-caching tier (`off`, `balanced`, `fast`).
    pub cache: String,
}

/// Operator limits on what a request may ask (from a service's config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Most denoising steps.
    pub max_steps: u32,
    /// Largest guidance magnitude.
    pub max_guidance: f32,
}

/// A request resolved against the bundle: every value filled in and supported.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Frames.
    pub frames: u32,
    /// Height.
    pub height: u32,
    /// Width.
    pub width: u32,
    /// Frames per second.
    pub fps: u32,
    /// Denoising steps.
    pub steps: u32,
    /// CFG scale (of the first transformer when the bundle has two).
    pub guidance: f32,
    /// CFG rescale φ in [0, 1] (0: off).
    pub guidance_rescale: f32,
    /// Timestep shift.
    pub shift: f32,
    /// Scheduler kind.
    pub scheduler: String,
    /// Step-caching tier.
    pub cache: CacheTier,
    /// Latent shape [C, T', h, w].
    pub latent_shape: [usize; 4],
}

/// Schedulers that drive flow-velocity models; the others drive epsilon and v models.
const FLOW_KINDS: &[&str] = &["flow_match_euler", "flow_match_dpmpp_2m", "unipc_flow"];

impl Manifest {
    /// The frame counts the bundle accepts, as a person reads them.
    pub fn frames_text(&self) -> String {
        let rule = match self.vae.frame_rule {
            FrameRule::Multiple => String::new(),
            FrameRule::FirstFrameSeparate => {
                format!(" (1 + a multiple of {})", self.vae.temporal_compression * self.dit.patch_size[0])
            }
        };
        format!("{}{rule}", self.video.frames)
    }

    /// Refuses a frame count the bundle does not support.
    pub fn check_frames(&self, frames: u32) -> Result<(), String> {
        if self.video.frames.contains(frames) {
            return Ok(());
        }
        Err(format!("{frames} frames is not supported by {}; use one of {}", self.model.name, self.frames_text()))
    }

    /// Refuses a size the bundle does not support.
    pub fn check_size(&self, height: u32, width: u32) -> Result<(), String> {
        if self.video.size_ok(height, width) {
            return Ok(());
        }
        Err(format!(
            "size {width}x{height} (width x height) is not supported by {}; use {}",
            self.model.name,
            self.video.sizes_text().join(", ")
        ))
    }

    /// Refuses an fps the bundle does not support.
    pub fn check_fps(&self, fps: u32) -> Result<(), String> {
        if self.video.fps.contains(fps) {
            return Ok(());
        }
        Err(format!("fps {fps} is not supported by {}; use one of {}", self.model.name, self.video.fps))
    }

    /// The tiers requests may name: `off`, and `balanced` and `fast` when every transformer has `[dit.cache]`.
    pub fn cache_tiers(&self) -> Vec<&'static str> {
        if self.dits().iter().all(|(_, d)| d.cache.is_some()) { CacheTier::NAMES.to_vec() } else { vec!["off"] }
    }

    /// The step-caching tier a request's `cache` names ("" = the bundle's default): refused when unknown, or when
    /// it skips steps and a transformer of the bundle has no `[dit.cache]`.
    pub fn check_cache(&self, cache: &str) -> Result<CacheTier, String> {
        if cache.is_empty() {
            return Ok(self.dit.cache.as_ref().map(|c| c.default).unwrap_or_default());
        }
        let tier = CacheTier::parse(cache)
            .ok_or_else(|| format!("cache {cache:?} is unknown; use one of {:?}", CacheTier::NAMES))?;
        if tier != CacheTier::Off && self.dits().iter().any(|(_, d)| d.cache.is_none()) {
            return Err(format!(
                "{} has no step cache (its bundle declares no [dit.cache]); use cache \"off\" or leave it unset",
                self.model.name
            ));
        }
        Ok(tier)
    }

    /// Checks latents of shape [C, T', h, w] (as a stage receives them); returns (frames, height, width).
    pub fn check_latents(&self, shape: &[usize]) -> Result<(u32, u32, u32), String> {
        let (sc, c) = (self.vae.spatial_compression, self.vae.latent_channels);
        let expected = || {
            format!(
                "latents has shape {shape:?}; expected [{c}, latent frames, height/{sc}, width/{sc}] for frames {} and \
                 sizes {}",
                self.frames_text(),
                self.video.sizes_text().join(", ")
            )
        };
        let [lc, t, h, w] = shape[..] else { return Err(expected()) };
        let frames = self.vae.frames_of(t) as u32;
        let (height, width) = ((h * sc) as u32, (w * sc) as u32);
        if lc != c || !self.video.frames.contains(frames) || !self.video.size_ok(height, width) {
            return Err(expected());
        }
        Ok((frames, height, width))
    }

    /// Shapes (frames, height, width) to warm a stage up with: the smallest supported size (the default size for
    /// bundles that list sizes) at the two smallest frame counts, so a graph whose frame axis is not really dynamic
    /// fails at start-up rather than on a user's request.
    pub fn probes(&self) -> Vec<(u32, u32, u32)> {
        let v = &self.video;
        let (h, w) = match (&v.height, &v.width) {
            (Some(h), Some(w)) => (h.min, w.min),
            _ => (v.default_height, v.default_width),
        };
        let mut frames = v.frames.values();
        frames.sort_unstable();
        frames.dedup();
        frames.into_iter().take(2).map(|f| (f, h, w)).collect()
    }

    /// The durations the bundle makes at `fps`, as a person reads them ("1s, 2s, 4s"; a range's ends and step).
    pub fn durations_text(&self, fps: u32) -> String {
        let secs = |f: u32| format!("{}s", f64::from(f) / f64::from(fps));
        let values = self.video.frames.values();
        if values.len() <= 12 {
            return values.into_iter().map(secs).collect::<Vec<_>>().join(", ");
        }
        let (lo, hi) = (values[0], values[values.len() - 1]);
        format!("{} to {} in steps of {}", secs(lo), secs(hi), secs(values[1] - values[0]))
    }

    /// The frame count of exactly `seconds` at `fps`; refused (with the durations the bundle makes) when that is not
    /// a whole frame count the bundle makes.
    pub fn frames_for_seconds(&self, seconds: f64, fps: u32) -> Result<u32, String> {
        let frames = seconds * f64::from(fps);
        let whole = frames.round();
        let ok = seconds.is_finite() && seconds > 0.0 && (frames - whole).abs() < 1e-6 && whole <= f64::from(u32::MAX);
        if ok && self.video.frames.contains(whole as u32) {
            return Ok(whole as u32);
        }
        Err(format!(
            "seconds {seconds} is not a duration {} makes at {fps} fps; use one of {}",
            self.model.name,
            self.durations_text(fps)
        ))
    }
}

impl Plan {
    /// Resolves `ask` against the bundle (defaults filled in) within `limits`.
    pub fn resolve(m: &Manifest, ask: &Ask, limits: &Limits) -> Result<Self, String> {
        let v = &m.video;
        let frames = if ask.frames == 0 { v.default_frames } else { ask.frames };
        m.check_frames(frames)?;
        let (height, width) = match (ask.height, ask.width) {
            (0, 0) => (v.default_height, v.default_width),
            (h, w) => (h, w),
        };
        m.check_size(height, width)?;
        let fps = if ask.fps == 0 { v.default_fps } else { ask.fps };
        m.check_fps(fps)?;
        let steps = if ask.steps == 0 { m.scheduler.steps } else { ask.steps };
        if steps > limits.max_steps {
            return Err(format!("steps {steps} is above the limit {}", limits.max_steps));
        }
        let guidance = ask.guidance.unwrap_or(m.scheduler.guidance);
        if !(0.0..=limits.max_guidance).contains(&guidance) {
            return Err(format!("guidance {guidance} must be between 0 and {}", limits.max_guidance));
        }
        if m.dit.guidance == crate::manifest::GuidanceMode::None && guidance != 1.0 {
            return Err(format!("{} has no classifier-free guidance; guidance must be 1 (or unset)", m.model.name));
        }
        let guidance_rescale = ask.guidance_rescale.unwrap_or(m.scheduler.guidance_rescale.unwrap_or(0.0));
        if !(0.0..=1.0).contains(&guidance_rescale) {
            return Err(format!("guidance_rescale {guidance_rescale} must be in [0, 1]"));
        }
        if guidance_rescale != 0.0 && !m.takes_negative() {
            return Err(format!(
                "{} has no classifier-free guidance to rescale; leave guidance_rescale unset",
                m.model.name
            ));
        }
        if ask.shift.is_some() && m.scheduler.dynamic_shift.is_some() {
            return Err(format!(
                "{}'s timestep shift follows the video size (scheduler.dynamic_shift); leave shift unset",
                m.model.name
            ));
        }
        let shift = ask.shift.unwrap_or(m.scheduler.shift);
        if !(shift.is_finite() && shift > 0.0 && shift <= 100.0) {
            return Err(format!("shift {shift} must be in (0, 100]"));
        }
        let scheduler = if ask.scheduler.is_empty() { m.scheduler.kind.clone() } else { ask.scheduler.clone() };
        let flow = m.dit.prediction == "flow_velocity";
        let allowed: Vec<&str> = crate::SCHEDULERS.iter().copied().filter(|k| FLOW_KINDS.contains(k) == flow).collect();
        if !allowed.contains(&scheduler.as_str()) {
            return Err(format!(
                "scheduler {scheduler:?} cannot sample {} ({} prediction); use one of {allowed:?}",
                m.model.name, m.dit.prediction
            ));
        }
        let cache = m.check_cache(&ask.cache)?;
        Ok(Self {
            frames,
            height,
            width,
            fps,
            steps,
            guidance,
            guidance_rescale,
            shift,
            scheduler,
            cache,
            latent_shape: m.latent_shape(frames, height, width),
        })
    }
}
