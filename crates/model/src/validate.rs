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
        if !SCHEDULERS.contains(&self.scheduler.kind.as_str()) {
            return Err(format!("scheduler.kind {:?} is not one of {SCHEDULERS:?}", self.scheduler.kind));
        }
        if self.scheduler.steps == 0
            || self.scheduler.shift.is_nan()
            || self.scheduler.shift <= 0.0
            || !self.scheduler.guidance.is_finite()
        {
            return Err("scheduler.steps must be > 0, shift > 0 and guidance finite".into());
        }
        if self.noise.rng != "philox4x32-10-boxmuller" {
            return Err(format!("noise.rng {:?} is unknown", self.noise.rng));
        }
        self.validate_text_encoder()?;
        for (key, dit) in self.dits() {
            if !["flow_velocity", "epsilon", "v"].contains(&dit.prediction.as_str()) {
                return Err(format!("{key}.prediction {:?} is not flow_velocity, epsilon or v", dit.prediction));
            }
            check_component(key, &dit.component)?;
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
            if dit.guidance == GuidanceMode::None && self.scheduler.guidance != 1.0 {
                return Err(format!("{key}.guidance is \"none\" but scheduler.guidance is not 1"));
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
                return Err("vae.decode \"windowed\" is reserved; this build decodes independent and stateful".into());
            }
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
        if !t.zero_pad_states {
            return Err("text_encoder.zero_pad_states = false is not served by this build yet (LTX-Video)".into());
        }
        Ok(())
    }
}
