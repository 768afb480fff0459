//! [`Manifest::validate`]: the internal consistency every service relies on, checked when a bundle opens. Every
//! message names the offending key, so a broken bundle is refused at start-up with a reason a person can act on.

use crate::manifest::{
    Component, DecodeMode, EXTRA_SOURCES, FrameRule, GuidanceMode, Manifest, Padding, SCHEDULERS, WEIGHTS,
};

fn check_component(key: &str, c: &Component) -> Result<(), String> {
    if !WEIGHTS.contains(&c.weights.as_str()) {
        return Err(format!("{key}.weights {:?} is not one of {WEIGHTS:?}", c.weights));
    }
    for d in &c.external_data {
        if d.file.is_empty() || d.file.contains("..") || d.file.starts_with('/') {
            return Err(format!("{key}.external_data file {:?} must be a plain file name in the bundle", d.file));
        }
    }
    Ok(())
}

fn needs(key: &str, c: &Component, name: &str, what: &str) -> Result<(), String> {
    if c.input(name).is_none() {
        return Err(format!("{key}.inputs lacks {name:?} (the {what} input named in the manifest)"));
    }
    Ok(())
}

fn needs_output(key: &str, c: &Component, name: &str, what: &str) -> Result<(), String> {
    if !c.outputs.iter().any(|o| o.name == name) {
        return Err(format!("{key}.outputs lacks {name:?} (the {what} output named in the manifest)"));
    }
    Ok(())
}

impl Manifest {
    /// Checks internal consistency; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=2).contains(&self.schema_version) {
            return Err(format!("schema_version {} is not supported (this build reads 1 and 2)", self.schema_version));
        }
        self.validate_geometry()?;
        self.validate_video()?;
        self.validate_scheduler()?;
        if self.noise.rng != "philox4x32-10-boxmuller" {
            return Err(format!("noise.rng {:?} is unknown", self.noise.rng));
        }
        self.validate_text_encoder()?;
        self.validate_conditioning()?;
        for (key, dit) in self.dits() {
            if !["flow_velocity", "epsilon", "v"].contains(&dit.prediction.as_str()) {
                return Err(format!("{key}.prediction {:?} is not flow_velocity, epsilon or v", dit.prediction));
            }
            check_component(key, &dit.component)?;
            if let Some(c) = &dit.cache {
                c.validate(&format!("{key}.cache"))?;
            }
            let n = &dit.names;
            needs(key, &dit.component, &n.latents, "latents")?;
            needs(key, &dit.component, &n.timestep, "timestep")?;
            needs(key, &dit.component, &n.text_states, "text states")?;
            needs_output(key, &dit.component, &n.output, "model")?;
            match (self.text_encoder.dit_mask, n.text_mask.is_empty()) {
                (true, false) => needs(key, &dit.component, &n.text_mask, "text mask")?,
                (true, true) => {
                    return Err(format!("{key}.names.text_mask is empty but text_encoder.dit_mask is true"));
                }
                (false, _) => {}
            }
            if let Some(x) = dit.extra_inputs.iter().find(|x| !EXTRA_SOURCES.contains(&x.source.as_str())) {
                return Err(format!(
                    "{key}.extra_inputs {:?} has source {:?}, which this build cannot fill (known: {EXTRA_SOURCES:?})",
                    x.name, x.source
                ));
            }
            for x in &dit.extra_inputs {
                needs(key, &dit.component, &x.name, "extra")?;
            }
            if dit.guidance == GuidanceMode::None && self.scheduler.guidance != 1.0 {
                return Err(format!("{key}.guidance is \"none\" but scheduler.guidance is not 1"));
            }
            let fed = |source: &str| dit.extra_inputs.iter().any(|x| x.source == source);
            if (dit.guidance == GuidanceMode::Embedded) != fed("guidance_x1000") {
                return Err(format!(
                    "{key}.guidance = \"embedded\" and an extra input with source \"guidance_x1000\" come together"
                ));
            }
            if fed("pooled_text") && self.text_encoder_2.is_none() {
                return Err(format!("{key}.extra_inputs has source \"pooled_text\" but [text_encoder_2] is missing"));
            }
        }
        if let Some(d2) = &self.dit2 {
            if !(d2.boundary_ratio > 0.0 && d2.boundary_ratio < 1.0) {
                return Err(format!("dit2.boundary_ratio {} must be in (0, 1)", d2.boundary_ratio));
            }
            if !d2.guidance_scale.is_finite() {
                return Err("dit2.guidance_scale must be finite".into());
            }
            if d2.dit.patch_size != self.dit.patch_size || d2.dit.prediction != self.dit.prediction {
                return Err("dit2.patch_size and dit2.prediction must equal dit's".into());
            }
        }
        Ok(())
    }

    fn validate_geometry(&self) -> Result<(), String> {
        let vae = &self.vae;
        let (tc, sc) = (vae.temporal_compression, vae.spatial_compression);
        if tc == 0 || sc == 0 || self.dit.patch_size.contains(&0) || vae.latent_channels == 0 {
            return Err("vae compression, latent_channels and dit.patch_size must be positive".into());
        }
        match (vae.latent_scale, vae.latent_shift) {
            (Some(scale), Some(shift)) => {
                if !(scale.is_finite() && scale != 0.0 && shift.is_finite()) {
                    return Err("vae.latent_scale must be finite and non-zero, vae.latent_shift finite".into());
                }
                if !vae.latents_mean.is_empty() || !vae.latents_std.is_empty() {
                    return Err("vae: give latent_shift/latent_scale or latents_mean/latents_std, not both".into());
                }
            }
            (None, None) => {
                for (key, v) in [("latents_mean", &vae.latents_mean), ("latents_std", &vae.latents_std)] {
                    if !(v.len() <= 1 || v.len() == vae.latent_channels) {
                        return Err(format!(
                            "vae.{key} has {} values; give one or latent_channels = {}",
                            v.len(),
                            vae.latent_channels
                        ));
                    }
                    if v.iter().any(|x| !x.is_finite()) {
                        return Err(format!("vae.{key} must be finite"));
                    }
                }
                if vae.latents_std.contains(&0.0) || vae.scaling_factor.is_some_and(|f| f == 0.0) {
                    return Err("vae.latents_std and vae.scaling_factor must be non-zero".into());
                }
            }
            _ => return Err("vae.latent_shift and vae.latent_scale come together".into()),
        }
        if self.schema_version == 1 && self.vae.encoder.is_none() {
            return Err("vae.encoder is required in format 1".into());
        }
        for (key, c) in [("vae.decoder", Some(&vae.decoder)), ("vae.decoder_step", vae.decoder_step.as_ref())]
            .into_iter()
            .chain([("vae.encoder", vae.encoder.as_ref())])
        {
            if let Some(c) = c {
                check_component(key, c)?;
            }
        }
        needs("vae.decoder", &vae.decoder, &vae.names.latents, "latents")?;
        needs_output("vae.decoder", &vae.decoder, &vae.names.video, "video")?;
        match vae.decode_mode() {
            DecodeMode::Independent | DecodeMode::Whole => {}
            DecodeMode::Stateful => {
                let step =
                    vae.decoder_step.as_ref().ok_or("vae.decode is \"stateful\" but vae.decoder_step is missing")?;
                if vae.cache.is_empty() {
                    return Err("vae.decode is \"stateful\" but vae.cache lists no tensors".into());
                }
                needs("vae.decoder_step", step, &vae.names.latents, "latents")?;
                needs_output("vae.decoder_step", step, &vae.names.video, "video")?;
                for c in &vae.cache {
                    needs("vae.decoder_step", step, &c.input, "cache")?;
                    needs_output("vae.decoder_step", step, &c.output, "cache")?;
                    needs_output("vae.decoder", &vae.decoder, &c.output, "cache")?;
                }
            }
            DecodeMode::Windowed => {
                let (w, s, b) = (vae.window.unwrap_or(0), vae.window_stride.unwrap_or(0), vae.window_blend);
                if !(w >= 2 && s >= 1 && s < w) {
                    return Err(
                        "vae.decode = \"windowed\" needs vae.window >= 2 and 1 <= vae.window_stride < window".into()
                    );
                }
                if b.is_none_or(|b| b > (w - 1) * tc) {
                    return Err(
                        "vae.decode = \"windowed\" needs vae.window_blend <= (window - 1) x temporal_compression"
                            .into(),
                    );
                }
                if vae.frame_rule != FrameRule::FirstFrameSeparate {
                    return Err("vae.decode = \"windowed\" is defined for frame_rule = \"first_frame_separate\"".into());
                }
            }
        }
        if vae.decode_chunk.is_some_and(|k| k == 0) || (vae.decode_chunk.is_some() && vae.decoder_step.is_none()) {
            return Err("vae.decode_chunk must be > 0 and is for vae.decode = \"stateful\"".into());
        }
        match (vae.names.timestep.is_empty(), vae.decode_timestep) {
            (false, Some(t)) if t.is_finite() => needs("vae.decoder", &vae.decoder, &vae.names.timestep, "timestep")?,
            (true, None) => {}
            _ => return Err("vae.names.timestep and vae.decode_timestep (finite) come together".into()),
        }
        if let Some(s) = vae.decode_noise_scale
            && (!(0.0..=1.0).contains(&s) || vae.names.timestep.is_empty())
        {
            return Err("vae.decode_noise_scale must be in [0, 1], for a timestep-conditioned decoder".into());
        }
        Ok(())
    }

    fn validate_scheduler(&self) -> Result<(), String> {
        let s = &self.scheduler;
        if !SCHEDULERS.contains(&s.kind.as_str()) {
            return Err(format!("scheduler.kind {:?} is not one of {SCHEDULERS:?}", s.kind));
        }
        if s.steps == 0 || s.shift.is_nan() || s.shift <= 0.0 || !s.guidance.is_finite() {
            return Err("scheduler.steps must be > 0, shift > 0 and guidance finite".into());
        }
        let cog = s.kind.starts_with("cogvideox_");
        if (s.dynamic_shift.is_some() || s.shift_terminal.is_some()) && s.kind != "flow_match_euler" {
            return Err("scheduler.dynamic_shift and scheduler.shift_terminal are for kind \"flow_match_euler\"".into());
        }
        if let Some(d) = &s.dynamic_shift {
            let finite = [d.base_seq_len, d.max_seq_len, d.base_shift, d.max_shift].iter().all(|v| v.is_finite());
            if !finite || d.max_seq_len == d.base_seq_len {
                return Err("scheduler.dynamic_shift: finite values and max_seq_len != base_seq_len".into());
            }
        }
        if s.shift_terminal.is_some_and(|t| !(t > 0.0 && t < 1.0)) {
            return Err("scheduler.shift_terminal must be in (0, 1)".into());
        }
        if (s.snr_shift_scale.is_some() || s.dynamic_cfg) && !cog {
            return Err("scheduler.snr_shift_scale and scheduler.dynamic_cfg are for the cogvideox_* kinds".into());
        }
        if s.guidance_rescale.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
            return Err("scheduler.guidance_rescale must be in [0, 1]".into());
        }
        if s.snr_shift_scale.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
            return Err("scheduler.snr_shift_scale must be finite and > 0".into());
        }
        Ok(())
    }

    fn validate_video(&self) -> Result<(), String> {
        let v = &self.video;
        let (tc, sc, p) = (self.vae.temporal_compression, self.vae.spatial_compression, self.dit.patch_size);
        let frame_ok = |f: u32| -> bool {
            let f = f as usize;
            match self.vae.frame_rule {
                FrameRule::Multiple => f > 0 && f.is_multiple_of(tc * p[0]),
                FrameRule::FirstFrameSeparate => f >= 1 && (f - 1).is_multiple_of(tc * p[0]),
            }
        };
        let rule = match self.vae.frame_rule {
            FrameRule::Multiple => format!("a positive multiple of {}", tc * p[0]),
            FrameRule::FirstFrameSeparate => format!("1 + a multiple of {}", tc * p[0]),
        };
        if let Some(f) = v.frames.values().into_iter().find(|&f| !frame_ok(f)) {
            return Err(format!("video.frames {f} is not {rule}"));
        }
        if v.frames.values().is_empty() {
            return Err("video.frames allows no frame count".into());
        }
        let (gh, gw) = ((sc * p[1]) as u32, (sc * p[2]) as u32);
        for &[h, w] in &v.sizes {
            if h == 0 || w == 0 || !h.is_multiple_of(gh) || !w.is_multiple_of(gw) {
                return Err(format!("video.sizes [{h}, {w}] is not a positive multiple of the latent patch grid"));
            }
        }
        match (&v.height, &v.width) {
            (Some(h), Some(w)) => {
                for (key, r, g) in [("height", h, gh), ("width", w, gw)] {
                    if r.min == 0
                        || r.min > r.max
                        || r.step == 0
                        || !r.min.is_multiple_of(g)
                        || !r.step.is_multiple_of(g)
                    {
                        return Err(format!(
                            "video.{key} {r} must be positive multiples of the latent patch grid ({g})"
                        ));
                    }
                }
            }
            (None, None) if !v.sizes.is_empty() => {}
            _ => return Err("video: give sizes, or both height and width ranges".into()),
        }
        if !v.frames.contains(v.default_frames) {
            return Err(format!("video.default_frames {} is not in video.frames", v.default_frames));
        }
        if !v.size_ok(v.default_height, v.default_width) {
            return Err(format!(
                "video.default_height/width {}x{} is not in video.sizes",
                v.default_height, v.default_width
            ));
        }
        if !v.fps.contains(v.default_fps) {
            return Err(format!("video.default_fps {} is not in video.fps", v.default_fps));
        }
        Ok(())
    }

    fn validate_text_encoder(&self) -> Result<(), String> {
        let t = &self.text_encoder;
        if t.max_tokens < 2 || t.max_tokens > 512 || t.hidden_size == 0 {
            return Err("text_encoder.max_tokens must be in 2..=512 and hidden_size > 0".into());
        }
        check_component("text_encoder", &t.component)?;
        needs("text_encoder", &t.component, &t.names.input_ids, "token ids")?;
        needs("text_encoder", &t.component, &t.names.attention_mask, "attention mask")?;
        needs_output("text_encoder", &t.component, &t.names.hidden_states, "hidden states")?;
        if !t.zero_pad_states && t.padding != Padding::MaxLength {
            return Err("text_encoder.zero_pad_states = false needs padding = \"max_length\"".into());
        }
        if t.template.as_ref().is_some_and(|s| s.matches("{}").count() != 1) {
            return Err("text_encoder.template must hold exactly one {} (where the prompt goes)".into());
        }
        if t.crop_start > 0 && t.padding != Padding::MaxLength {
            return Err("text_encoder.crop_start needs padding = \"max_length\"".into());
        }
        if let Some(t2) = &self.text_encoder_2 {
            if t2.padding != Padding::MaxLength {
                return Err("text_encoder_2.padding must be \"max_length\"".into());
            }
            if t2.max_tokens < 2 || t2.max_tokens > 512 || t2.pooled_size == 0 {
                return Err("text_encoder_2.max_tokens must be in 2..=512 and pooled_size > 0".into());
            }
            check_component("text_encoder_2", &t2.component)?;
            needs("text_encoder_2", &t2.component, &t2.names.input_ids, "token ids")?;
            needs_output("text_encoder_2", &t2.component, &t2.names.pooled, "pooled")?;
        }
        Ok(())
    }
}
