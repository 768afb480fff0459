//! The committed LTX-Video, CogVideoX and HunyuanVideo bundles open with their geometry, and each family's
//! format-2 keys are refused, naming the key, when they do not fit together.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};

use vidmesh_model::{Ask, Bundle, DecodeMode, GuidanceMode, Limits, Part, Plan};

fn bundle(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models").join(name)
}

/// A copy of bundle `name` with `edit` applied to model.toml.
fn edited(name: &str, edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(bundle(name)).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    let toml = dir.path().join("model.toml");
    std::fs::write(&toml, edit(std::fs::read_to_string(&toml).unwrap())).unwrap();
    dir
}

fn refused(dir: &Path) -> String {
    Bundle::open(dir, &[]).unwrap_err().to_string()
}

const LIMITS: Limits = Limits { max_steps: 200, max_guidance: 30.0 };

#[test]
fn ltx_video_opens_with_its_geometry_and_dynamic_shift() {
    let b = Bundle::open(&bundle("ltx-tiny"), &[Part::TextEncoder, Part::Dit, Part::VaeDecoder]).unwrap();
    let m = &b.manifest;
    // 8k+1 frames, 32-pixel latents.
    assert_eq!(m.latent_shape(17, 64, 96), [16, 3, 2, 3]);
    assert!(m.check_frames(16).unwrap_err().contains("1 + a multiple of 8"));
    assert_eq!(m.vae.decode_mode(), DecodeMode::Whole);
    assert!(!m.text_encoder.zero_pad_states && m.text_encoder.dit_mask && !m.text_encoder.encoder_mask);
    // μ is linear in the token count: base_shift at base_seq_len, max_shift at max_seq_len.
    let d = m.scheduler.dynamic_shift.unwrap();
    assert!((d.mu(d.base_seq_len as usize) - d.base_shift).abs() < 1e-12);
    assert!((d.mu(d.max_seq_len as usize) - d.max_shift).abs() < 1e-12);
    // A request's shift would be ignored by the size-dependent schedule: it is refused instead.
    let ask = Ask { shift: Some(3.0), ..Ask::default() };
    assert!(Plan::resolve(m, &ask, &LIMITS).unwrap_err().contains("leave shift unset"));
    assert_eq!(Plan::resolve(m, &Ask { fps: 24, ..Ask::default() }, &LIMITS).unwrap().fps, 24);
}

#[test]
fn ltx_video_keys_that_do_not_fit_are_named() {
    let err = refused(edited("ltx-tiny", |s| s.replace("kind = \"flow_match_euler\"", "kind = \"unipc_flow\"")).path());
    assert!(err.contains("scheduler.dynamic_shift and scheduler.shift_terminal are for kind"), "{err}");
    let err = refused(edited("ltx-tiny", |s| s.replace("shift_terminal = 0.1", "shift_terminal = 1.5")).path());
    assert!(err.contains("scheduler.shift_terminal must be in (0, 1)"), "{err}");
    let err = refused(edited("ltx-tiny", |s| s.replace("decode_timestep = 0.05\n", "")).path());
    assert!(err.contains("vae.names.timestep and vae.decode_timestep"), "{err}");
    let err = refused(edited("ltx-tiny", |s| s.replace("source = \"fps\"", "source = \"frame_rate\"")).path());
    assert!(err.contains("source \"frame_rate\", which this build cannot fill"), "{err}");
    let err = refused(edited("ltx-tiny", |s| s.replace("padding = \"max_length\"", "padding = \"longest\"")).path());
    assert!(err.contains("zero_pad_states = false needs padding = \"max_length\""), "{err}");
}

#[test]
fn cogvideox_opens_with_its_chunked_decode_and_scheduler() {
    let b = Bundle::open(&bundle("cogvideox-tiny"), &[Part::TextEncoder, Part::Dit, Part::VaeDecoder]).unwrap();
    let m = &b.manifest;
    assert_eq!(m.latent_shape(17, 48, 64), [16, 5, 6, 8]);
    assert_eq!(m.vae.decode_mode(), DecodeMode::Stateful);
    // CogVideoX's VAE batches: the first run takes 2 + T mod 2 latent frames, then 2 at a time.
    assert_eq!(m.vae.chunks(5), vec![3, 2]);
    assert_eq!(m.vae.chunks(13), vec![3, 2, 2, 2, 2, 2]);
    assert_eq!(m.vae.chunks(1), vec![1]);
    assert_eq!((m.scheduler.kind.as_str(), m.scheduler.dynamic_cfg), ("cogvideox_dpm", true));
    assert_eq!(m.text_encoder.max_tokens, 226);
    // v-prediction: only the v schedulers may drive it.
    let ask = Ask { scheduler: "flow_match_euler".into(), ..Ask::default() };
    assert!(Plan::resolve(m, &ask, &LIMITS).unwrap_err().contains("cannot sample"));
}

#[test]
fn cogvideox_keys_that_do_not_fit_are_named() {
    let dir = edited("cogvideox-tiny", |s| s.replace("snr_shift_scale = 1.0", "snr_shift_scale = -1.0"));
    assert!(refused(dir.path()).contains("scheduler.snr_shift_scale must be finite and > 0"));
    let dir = edited("cogvideox-tiny", |s| s.replace("decode_chunk = 2", "decode_chunk = 0"));
    assert!(refused(dir.path()).contains("vae.decode_chunk must be > 0"));
    let dir = edited("ltx-tiny", |s| s.replace("shift_terminal = 0.1", "shift_terminal = 0.1\ndynamic_cfg = true"));
    assert!(
        refused(dir.path()).contains("scheduler.snr_shift_scale and scheduler.dynamic_cfg are for the cogvideox_*")
    );
}

#[test]
fn hunyuan_video_opens_with_its_encoders_guidance_and_windows() {
    let b = Bundle::open(&bundle("hunyuan-tiny"), &[Part::TextEncoder, Part::Dit, Part::VaeDecoder]).unwrap();
    let m = &b.manifest;
    assert_eq!(m.dit.guidance, GuidanceMode::Embedded);
    assert!(!m.takes_negative());
    assert_eq!(m.vae.decode_mode(), DecodeMode::Windowed);
    assert_eq!((m.vae.window, m.vae.window_stride, m.vae.window_blend), (Some(5), Some(3), Some(4)));
    let t = &m.text_encoder;
    assert_eq!(t.token_limit(), t.crop_start + 256);
    assert!(t.prepare("a cat").contains("a cat") && t.prepare("a cat").ends_with("<|eot_id|>"));
    assert_eq!(m.text_encoder_2.as_ref().map(|t| t.max_tokens), Some(77));
}

#[test]
fn hunyuan_video_keys_that_do_not_fit_are_named() {
    let err =
        refused(edited("hunyuan-tiny", |s| s.replace("guidance = \"embedded\"", "guidance = \"cfg_batched\"")).path());
    assert!(err.contains("guidance = \"embedded\" and an extra input with source \"guidance_x1000\""), "{err}");
    let err = refused(edited("hunyuan-tiny", |s| s.replace("window_stride = 3", "window_stride = 5")).path());
    assert!(err.contains("vae.window_stride < window"), "{err}");
    let err = refused(edited("hunyuan-tiny", |s| s.replace("{}<|eot_id|>", "<|eot_id|>")).path());
    assert!(err.contains("text_encoder.template must hold exactly one {}"), "{err}");
    let err = refused(edited("hunyuan-tiny", |s| s.replace("[text_encoder_2]", "[unused_encoder]")).path());
    assert!(err.contains("source \"pooled_text\" but [text_encoder_2] is missing"), "{err}");
}
