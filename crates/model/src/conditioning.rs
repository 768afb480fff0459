//! Image and video conditioning: which modes a bundle declares (`[conditioning]`), and the rules every service uses
//! to check a conditioned request against it — the mode, the reference's size, and the frame arithmetic of edits
//! and extensions — with the same message wherever they refuse.
//!
//! Invariants: a mode is usable only when the bundle declares it and has a VAE encoder; `keyframes` additionally
//! needs latent frames that each cover their own `temporal_compression` frames (`vae.decode = independent`), so a
//! video's latent frames can be cut, pinned and stitched anywhere on a latent frame boundary.

use serde::{Deserialize, Serialize};

use crate::manifest::{DecodeMode, FrameRule, Manifest};

/// A conditioning mode a bundle can declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// SDEdit: sampling starts part-way from a reference's latents re-noised to the `strength` point.
    Sdedit,
    /// RePaint-style keyframes: clean latent frames pinned at given positions, re-noised to the current level at
    /// every step (image→video, extension). Needs no training.
    Keyframes,
}

impl Mode {
    /// The name the manifest and the API use.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Sdedit => "sdedit",
            Mode::Keyframes => "keyframes",
        }
    }
}

/// What a conditioned request does with its reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// The reference image is the first frame (`keyframes`).
    ImageToVideo,
    /// The reference video re-made with the prompt (`sdedit`).
    Edit,
    /// The reference video continued (`keyframes`).
    Extend,
}

impl Task {
    /// The mode the task needs, and its name in messages.
    pub fn needs(self) -> (Mode, &'static str) {
        match self {
            Task::ImageToVideo => (Mode::Keyframes, "image-to-video"),
            Task::Edit => (Mode::Sdedit, "video edits"),
            Task::Extend => (Mode::Keyframes, "video extensions"),
        }
    }
}

/// `[conditioning]`: what the bundle's model can be conditioned on besides text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditioningSpec {
    /// Supported modes.
    #[serde(default)]
    pub modes: Vec<Mode>,
    /// SDEdit strength when a request leaves it at 0, in (0, 1].
    #[serde(default = "default_strength")]
    pub default_strength: f32,
    /// Keyframes: where in the schedule the free latent frames start from their nearest keyframe, in (0, 1]
    /// (1: from pure noise). Below 1 the free frames begin where the pinned ones are, so the motion continues
    /// from them.
    #[serde(default = "one")]
    pub keyframe_strength: f32,
}

fn one() -> f32 {
    1.0
}

fn default_strength() -> f32 {
    0.6
}

impl Default for ConditioningSpec {
    fn default() -> Self {
        Self { modes: Vec::new(), default_strength: default_strength(), keyframe_strength: one() }
    }
}

/// Sources are scaled to cover the video and centre-cropped; an aspect ratio further than this factor from the
/// video's would lose more than half the source, and is refused.
pub const MAX_ASPECT_FACTOR: f64 = 2.0;
/// Smallest source side in pixels.
pub const MIN_SOURCE_SIDE: u32 = 16;
/// Largest source side in pixels.
pub const MAX_SOURCE_SIDE: u32 = 8192;
/// An extension's stitched total is at most this many times the longest frame count the model makes.
pub const MAX_STITCH_FACTOR: u32 = 8;

/// How an extension is made: a generation of `window` frames whose first `context` frames are the source's last
/// ones (pinned), of which the rest is appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension {
    /// Frames generated (one the model makes).
    pub window: u32,
    /// Source frames pinned at its start (whole latent frames).
    pub context: u32,
    /// Frames appended (`window - context`).
    pub new_frames: u32,
    /// Source + new frames.
    pub total: u32,
}

impl Manifest {
    /// The declared modes as names ("sdedit", "keyframes").
    pub fn conditioning_modes(&self) -> Vec<&'static str> {
        self.conditioning.modes.iter().map(|m| m.name()).collect()
    }

    /// Refuses a mode the bundle does not declare, naming the ones it does.
    pub fn check_mode(&self, mode: Mode, what: &str) -> Result<(), String> {
        if self.conditioning.modes.contains(&mode) {
            return Ok(());
        }
        let modes = self.conditioning_modes();
        if modes.is_empty() {
            return Err(format!(
                "{} cannot do {what}: its bundle declares no image or video conditioning (text only)",
                self.model.name
            ));
        }
        Err(format!(
            "{} cannot do {what} (it needs the {:?} conditioning mode); the bundle supports {}",
            self.model.name,
            mode.name(),
            modes.join(", ")
        ))
    }

    /// Refuses a reference the bundle cannot use for `task`: a mode it does not declare, an image where a video is
    /// needed, a size resizing does not cover (`src` and `video` as (width, height)).
    pub fn check_reference(&self, task: Task, image: bool, src: (u32, u32), video: (u32, u32)) -> Result<(), String> {
        let (mode, what) = task.needs();
        self.check_mode(mode, what)?;
        if task != Task::ImageToVideo && image {
            return Err(format!("{what} take a video as the reference, not an image"));
        }
        self.check_reference_size(src.0, src.1, video.0, video.1)
    }

    /// Refuses a reference of `src_w`×`src_h` that scaling and centre-cropping cannot turn into a `w`×`h` video.
    pub fn check_reference_size(&self, src_w: u32, src_h: u32, w: u32, h: u32) -> Result<(), String> {
        let side = MIN_SOURCE_SIDE..=MAX_SOURCE_SIDE;
        if !side.contains(&src_w) || !side.contains(&src_h) {
            return Err(format!(
                "the reference is {src_w}x{src_h}; each side must be {MIN_SOURCE_SIDE} to {MAX_SOURCE_SIDE} pixels"
            ));
        }
        let ratio = (f64::from(src_w) / f64::from(src_h)) / (f64::from(w) / f64::from(h));
        if !(1.0 / MAX_ASPECT_FACTOR..=MAX_ASPECT_FACTOR).contains(&ratio) {
            return Err(format!(
                "the reference is {src_w}x{src_h}, whose aspect ratio is more than {MAX_ASPECT_FACTOR}x from the \
                 video's {w}x{h}: resizing covers only that much (crop it, or ask for another size)"
            ));
        }
        Ok(())
    }

    /// Latent frames must each stand for `temporal_compression` frames for cutting and stitching (keyframes).
    pub(crate) fn validate_conditioning(&self) -> Result<(), String> {
        let c = &self.conditioning;
        if !c.modes.is_empty() && self.vae.encoder.is_none() {
            return Err("conditioning.modes needs [vae.encoder]".into());
        }
        if c.modes.contains(&Mode::Keyframes)
            && (self.vae.frame_rule != FrameRule::Multiple || self.vae.decode_mode() != DecodeMode::Independent)
        {
            return Err("conditioning.modes \"keyframes\" needs vae.frame_rule = \"multiple\" and vae.decode = \
                        \"independent\" (latent frames that each cover their own frames)"
                .into());
        }
        if !(c.default_strength > 0.0 && c.default_strength <= 1.0) {
            return Err(format!("conditioning.default_strength {} must be in (0, 1]", c.default_strength));
        }
        if !(c.keyframe_strength > 0.0 && c.keyframe_strength <= 1.0) {
            return Err(format!("conditioning.keyframe_strength {} must be in (0, 1]", c.keyframe_strength));
        }
        Ok(())
    }

    /// Frames an edit of a `source`-frame video makes: `asked` (0 = the longest the model makes within the source),
    /// which must be a frame count the model makes and no longer than the source.
    pub fn edit_frames(&self, source: u32, asked: u32) -> Result<u32, String> {
        if asked != 0 {
            self.check_frames(asked)?;
            if asked > source {
                return Err(format!("an edit cannot be longer than its source: {asked} frames asked, {source} given"));
            }
            return Ok(asked);
        }
        let fits = self.video.frames.values().into_iter().filter(|&f| f <= source).max();
        fits.ok_or_else(|| {
            format!(
                "the source video has {source} frames; {} edits at least {} (it makes {})",
                self.model.name,
                self.video.frames.values().into_iter().min().unwrap_or(0),
                self.frames_text()
            )
        })
    }

    /// How to append `new_frames` to a `source`-frame video: the shortest window the model makes with at least one
    /// latent frame of context (more when the window leaves room, up to the source's length).
    pub fn extension(&self, source: u32, new_frames: u32) -> Result<Extension, String> {
        let tc = self.vae.temporal_compression as u32;
        let usable = source - source % tc;
        if usable < tc {
            return Err(format!("the source video has {source} frames; an extension needs at least {tc}"));
        }
        if new_frames == 0 || !new_frames.is_multiple_of(tc) {
            return Err(format!("an extension adds a multiple of {tc} frames; {new_frames} asked"));
        }
        let mut windows = self.video.frames.values();
        windows.sort_unstable();
        let fits = |w: u32| w >= new_frames + tc && w - new_frames <= usable && (w - new_frames).is_multiple_of(tc);
        let window = windows.into_iter().find(|&w| fits(w)).ok_or_else(|| {
            format!(
                "{} cannot add {new_frames} frames to a {source}-frame video in one generation: it makes {} frames, \
                 of which at least {tc} (one latent frame) must be the source's last ones",
                self.model.name,
                self.frames_text()
            )
        })?;
        let context = window - new_frames;
        let total = usable + new_frames;
        let limit = MAX_STITCH_FACTOR * self.video.frames.max();
        if total > limit {
            return Err(format!("the extended video would have {total} frames; at most {limit} are made"));
        }
        Ok(Extension { window, context, new_frames, total })
    }

    /// Checks a stitched video's latents [C, T', h, w] for decoding: a supported size and channel count, and at most
    /// [`MAX_STITCH_FACTOR`] × the longest generation.
    pub fn check_stitched_latents(&self, shape: &[usize]) -> Result<(u32, u32, u32), String> {
        let (sc, c) = (self.vae.spatial_compression, self.vae.latent_channels);
        let [lc, t, h, w] = shape[..] else {
            return Err(format!("latents has shape {shape:?}; expected [{c}, latent frames, height/{sc}, width/{sc}]"));
        };
        let frames = self.vae.frames_of(t) as u32;
        let (height, width) = ((h * sc) as u32, (w * sc) as u32);
        let limit = MAX_STITCH_FACTOR * self.video.frames.max();
        if lc != c || t == 0 || frames > limit || !self.video.size_ok(height, width) {
            return Err(format!(
                "latents has shape {shape:?}; expected [{c}, 1 to {} latent frames, height/{sc}, width/{sc}] for \
                 sizes {}",
                self.vae.latent_frames(limit as usize),
                self.video.sizes_text().join(", ")
            ));
        }
        Ok((frames, height, width))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn manifest(name: &str) -> Manifest {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models").join(name);
        crate::Bundle::manifest_only(&dir).unwrap().manifest
    }

    #[test]
    fn modes_are_checked_with_the_supported_ones_named() {
        let tiny = manifest("vidmesh-tiny");
        assert_eq!(tiny.conditioning_modes(), ["sdedit", "keyframes"]);
        tiny.check_mode(Mode::Keyframes, "image-to-video").unwrap();
        let wan = manifest("wan2.1-tiny");
        let e = wan.check_mode(Mode::Sdedit, "video edits").unwrap_err();
        assert!(e.contains("declares no image or video conditioning"), "{e}");
        let mut only = tiny.clone();
        only.conditioning.modes = vec![Mode::Sdedit];
        let e = only.check_mode(Mode::Keyframes, "video extensions").unwrap_err();
        assert!(e.contains("\"keyframes\"") && e.contains("supports sdedit"), "{e}");
        // Keyframes need latent frames that each cover their own frames.
        let mut wan_kf = wan.clone();
        wan_kf.conditioning.modes = vec![Mode::Keyframes];
        assert!(wan_kf.validate().unwrap_err().contains("conditioning.modes"));
    }

    #[test]
    fn an_extension_pins_whole_latent_frames_of_context_in_a_window_the_model_makes() {
        let m = manifest("vidmesh-tiny"); // frames 8, 16, 32; temporal compression 4
        let e = m.extension(16, 16).unwrap();
        assert_eq!((e.window, e.context, e.new_frames, e.total), (32, 16, 16, 32));
        let e = m.extension(16, 8).unwrap();
        assert_eq!((e.window, e.context, e.total), (16, 8, 24));
        let e = m.extension(18, 4).unwrap(); // 2 trailing frames do not fill a latent frame: cut
        assert_eq!((e.window, e.context, e.total), (8, 4, 20));
        assert!(m.extension(16, 32).unwrap_err().contains("cannot add 32 frames"));
        assert!(m.extension(16, 6).unwrap_err().contains("multiple of 4"));
        assert!(m.extension(3, 4).unwrap_err().contains("at least 4"));
        // 8 source frames cannot fill the 16-frame context a 16-frame extension needs in a 32-frame window.
        assert!(m.extension(8, 16).is_err());
    }

    #[test]
    fn edits_and_references_follow_the_bundle() {
        let m = manifest("vidmesh-tiny");
        assert_eq!(m.edit_frames(20, 0).unwrap(), 16);
        assert_eq!(m.edit_frames(40, 8).unwrap(), 8);
        assert!(m.edit_frames(16, 32).unwrap_err().contains("longer than its source"));
        assert!(m.edit_frames(4, 0).unwrap_err().contains("at least 8"));
        m.check_reference_size(640, 480, 64, 64).unwrap();
        assert!(m.check_reference_size(200, 20, 64, 64).unwrap_err().contains("aspect ratio"));
        assert!(m.check_reference_size(8, 8, 64, 64).unwrap_err().contains("16 to 8192"));
        assert_eq!(m.frames_for_seconds(2.0, 8).unwrap(), 16);
        assert!(m.frames_for_seconds(3.0, 8).unwrap_err().contains("1s, 2s, 4s"));
        assert!(m.frames_for_seconds(f64::NAN, 8).is_err());
    }
}
