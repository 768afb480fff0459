//! Hostile calls to the four stages: the text-encoder's prompts, the denoiser's tensors and numbers, the decoder's
//! latents, keys and media, the classifier's video bytes and URIs. Each request is valid but for one thing.

use prost::Message;
use vidmesh_proto::classifier::v1::{DetectRequest, detect_request};
use vidmesh_proto::decoder::v1::{DecodeRequest, EncodeRequest as VaeEncode, PreviewRequest, encode_request};
use vidmesh_proto::denoiser::v1::{DenoiseRequest, Keyframes};
use vidmesh_proto::text_encoder::v1::EncodeRequest as TextEncode;

use super::{Case, DECODE, DENOISE, DETECT, PREVIEW, Svc, TEXT, VAE_ENCODE, bad_tensors, case, tensor};
use crate::tally::Rng;
use crate::web::controls;

pub(super) fn text_encoder(out: &mut Vec<Case>) {
    let cat = "grpc: text-encoder prompts";
    let req = |prompts: Vec<String>| TextEncode { prompts, ..Default::default() };
    let mut add =
        |r: TextEncode, note: String| out.push(case(cat, Svc::TextEncoder, TEXT, false, r.encode_to_vec(), note));
    for c in controls() {
        add(req(vec![c.to_string()]), format!("U+{:04X}", c as u32));
        add(req(vec!["a red circle".into(), format!("x{c}y")]), format!("U+{:04X} in the second", c as u32));
        add(req(vec![c.to_string().repeat(500)]), format!("U+{:04X} ×500", c as u32));
    }
    add(req(vec![]), "no prompts".into());
    add(req(vec!["x".into(); 65]), "65 prompts".into());
    add(req(vec!["x".into(); 100_000]), "100,000 prompts".into());
    for n in [4097, 5000, 100_000, 5 << 20] {
        add(req(vec!["y".repeat(n)]), format!("{n}-byte prompt"));
    }
    for t in [3, 9, -1, i32::MAX] {
        add(TextEncode { truncation: t, ..req(vec!["x".into()]) }, format!("truncation {t}"));
    }
    for m in ["sora", "\0", "../vidmesh-tiny", "vidmesh-tiny\0"] {
        add(TextEncode { model: m.into(), ..req(vec!["x".into()]) }, format!("model {m:?}"));
    }
}

/// A valid denoise request (64x64, 8 frames, 2 steps) every case breaks in one way.
fn denoise_base() -> DenoiseRequest {
    DenoiseRequest {
        prompt_states: Some(tensor(&[48, 384], 0.1)),
        negative_states: Some(tensor(&[48, 384], 0.0)),
        seed: 1,
        frames: 8,
        height: 64,
        width: 64,
        steps: 2,
        guidance: Some(5.0),
        fps: 8,
        ..Default::default()
    }
}

pub(super) fn denoiser(rng: &mut Rng, out: &mut Vec<Case>) {
    let cat = "grpc: denoiser tensors and numbers";
    let mut add =
        |r: DenoiseRequest, note: String| out.push(case(cat, Svc::Denoiser, DENOISE, true, r.encode_to_vec(), note));
    for (note, t) in bad_tensors(rng, &[48, 384]) {
        add(DenoiseRequest { prompt_states: Some(t.clone()), ..denoise_base() }, format!("prompt_states {note}"));
        add(DenoiseRequest { negative_states: Some(t), ..denoise_base() }, format!("negative_states {note}"));
    }
    add(DenoiseRequest { prompt_states: None, ..denoise_base() }, "no prompt_states".into());
    add(DenoiseRequest { negative_states: None, ..denoise_base() }, "no negative_states with guidance 5".into());
    for steps in [u32::MAX, 1001, 1 << 31, 100_000] {
        add(DenoiseRequest { steps, ..denoise_base() }, format!("steps {steps}"));
    }
    for frames in [u32::MAX, 1, 7, 9, 33, 1 << 20, 1 << 31] {
        add(DenoiseRequest { frames, ..denoise_base() }, format!("frames {frames}"));
    }
    for d in [u32::MAX, 1, 63, 65, 4096, 1 << 20] {
        add(DenoiseRequest { width: d, ..denoise_base() }, format!("width {d}"));
        add(DenoiseRequest { height: d, ..denoise_base() }, format!("height {d}"));
        add(DenoiseRequest { width: d, height: d, ..denoise_base() }, format!("{d}x{d}"));
    }
    for fps in [u32::MAX, 1, 9, 1000] {
        add(DenoiseRequest { fps, ..denoise_base() }, format!("fps {fps}"));
    }
    for g in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30, 51.0, f32::MAX, f32::MIN] {
        add(DenoiseRequest { guidance: Some(g), ..denoise_base() }, format!("guidance {g}"));
    }
    for s in [f32::NAN, f32::INFINITY, -1.0, 0.0, 1e9] {
        add(DenoiseRequest { shift: Some(s), ..denoise_base() }, format!("shift {s}"));
    }
    for r in [f32::NAN, 2.0, -1.0, f32::INFINITY] {
        add(DenoiseRequest { guidance_rescale: Some(r), ..denoise_base() }, format!("guidance_rescale {r}"));
    }
    for s in ["ddim", "\0", "flow_match_euler\0", "../x"] {
        add(DenoiseRequest { scheduler: s.into(), ..denoise_base() }, format!("scheduler {s:?}"));
    }
    for m in ["sora", "\0"] {
        add(DenoiseRequest { model: m.into(), ..denoise_base() }, format!("model {m:?}"));
    }
    add(DenoiseRequest { preview_every: 3, ..denoise_base() }, "preview_every 3 > 2 steps".into());
    add(DenoiseRequest { preview_every: u32::MAX, ..denoise_base() }, "preview_every u32::MAX".into());
    add(DenoiseRequest { prompt_real_tokens: 49, ..denoise_base() }, "49 real tokens of 48".into());
    add(DenoiseRequest { prompt_real_tokens: u32::MAX, ..denoise_base() }, "u32::MAX real tokens".into());
    add(DenoiseRequest { prompt_pooled: Some(tensor(&[384], 0.0)), ..denoise_base() }, "pooled text".into());
    // Video-to-video and keyframes: latents [8, 2, 16, 16] for 8 frames at 64x64.
    let shape = [8, 2, 16, 16];
    add(DenoiseRequest { strength: 0.5, ..denoise_base() }, "strength without init_latents".into());
    for (note, t) in bad_tensors(rng, &shape) {
        add(
            DenoiseRequest { init_latents: Some(t.clone()), strength: 0.5, ..denoise_base() },
            format!("init_latents {note}"),
        );
        let k = Keyframes { latents: Some(t), positions: vec![0], strength: 0.0 };
        add(DenoiseRequest { keyframes: Some(k), ..denoise_base() }, format!("keyframes {note}"));
    }
    for s in [f32::NAN, f32::INFINITY, -1.0, 0.0, 1.5] {
        add(
            DenoiseRequest { init_latents: Some(tensor(&shape, 0.0)), strength: s, ..denoise_base() },
            format!("strength {s}"),
        );
        let k = Keyframes { latents: Some(tensor(&[8, 1, 16, 16], 0.0)), positions: vec![0], strength: s };
        if !(s == 0.0) {
            add(DenoiseRequest { keyframes: Some(k), ..denoise_base() }, format!("keyframes.strength {s}"));
        }
    }
    for positions in [vec![], vec![2], vec![1, 0], vec![0, 0], vec![u32::MAX]] {
        let n = positions.len().max(1) as u64;
        let k = Keyframes { latents: Some(tensor(&[8, n, 16, 16], 0.0)), positions: positions.clone(), strength: 0.0 };
        add(DenoiseRequest { keyframes: Some(k), ..denoise_base() }, format!("keyframes.positions {positions:?}"));
    }
}

/// A valid decode request (latents for 8 frames at 64x64) every case breaks in one way.
fn decode_base() -> DecodeRequest {
    DecodeRequest {
        latents: Some(tensor(&[8, 2, 16, 16], 0.0)),
        fps: 8,
        output_prefix: "hostile/x".into(),
        ..Default::default()
    }
}

pub(super) fn decoder(rng: &mut Rng, mp4: &[u8], out: &mut Vec<Case>) {
    let cat = "grpc: decoder latents, keys and media";
    let mut add =
        |path, streaming, msg: Vec<u8>, note: String| out.push(case(cat, Svc::Decoder, path, streaming, msg, note));
    let shape = [8, 2, 16, 16];
    for (note, t) in bad_tensors(rng, &shape) {
        add(
            DECODE,
            true,
            DecodeRequest { latents: Some(t.clone()), ..decode_base() }.encode_to_vec(),
            format!("latents {note}"),
        );
        add(
            PREVIEW,
            false,
            PreviewRequest { latents: Some(t), ..Default::default() }.encode_to_vec(),
            format!("preview {note}"),
        );
    }
    for s in [[7, 2, 16, 16], [8, 2, 16, 17], [8, 2, 15, 16], [8, 1000, 16, 16], [8, 2, 1, 1]] {
        let t = tensor(&s, 0.0);
        add(
            DECODE,
            true,
            DecodeRequest { latents: Some(t.clone()), ..decode_base() }.encode_to_vec(),
            format!("latents shape {s:?}"),
        );
        add(
            PREVIEW,
            false,
            PreviewRequest { latents: Some(t), ..Default::default() }.encode_to_vec(),
            format!("preview shape {s:?}"),
        );
    }
    let prefixes = [
        "",
        "../../etc",
        "/abs/path",
        "a/../../b",
        "a\0b",
        "jobs/../../..",
        "C:\\x",
        "%2e%2e/x",
        "./x",
        "x/./y",
        "x//y",
        "\u{1}",
        "x/\u{7f}",
    ];
    for p in prefixes.iter().map(|s| s.to_string()).chain([format!("{}/x", "a".repeat(10_000))]) {
        add(
            DECODE,
            true,
            DecodeRequest { output_prefix: p.clone(), ..decode_base() }.encode_to_vec(),
            format!("output_prefix {p:?}"),
        );
    }
    for h in ["xyz", &"g".repeat(64), &"a".repeat(63), &"a".repeat(65)] {
        add(
            DECODE,
            true,
            DecodeRequest { prompt_sha256: h.into(), ..decode_base() }.encode_to_vec(),
            format!("prompt_sha256 {h:?}"),
        );
    }
    for j in ["[]", "{", "\0", "1", "null", "\"x\""] {
        add(
            DECODE,
            true,
            DecodeRequest { parameters_json: j.into(), ..decode_base() }.encode_to_vec(),
            format!("parameters_json {j:?}"),
        );
    }
    for fps in [u32::MAX, 1, 9] {
        add(DECODE, true, DecodeRequest { fps, ..decode_base() }.encode_to_vec(), format!("fps {fps}"));
    }
    add(DECODE, true, DecodeRequest { model: "sora".into(), ..decode_base() }.encode_to_vec(), "model sora".into());
    // Encode: media that is not media, cut short, keys that escape storage, impossible asks.
    let enc =
        |source, frames, width, height| VaeEncode { source: Some(source), frames, width, height, ..Default::default() };
    for i in 0..60 {
        let data = match i % 4 {
            0 => rng.blob(1, 64 << 10),
            1 => [b"\x89PNG\r\n\x1a\n".as_slice(), &rng.blob(0, 4096)].concat(),
            2 => [b"\x00\x00\x00\x18ftypmp42".as_slice(), &rng.blob(0, 4096)].concat(),
            _ => mp4[..rng.range(1, mp4.len() * 3 / 4)].to_vec(),
        };
        let n = data.len();
        add(
            VAE_ENCODE,
            true,
            enc(encode_request::Source::Data(data), 8, 64, 64).encode_to_vec(),
            format!("{n} media bytes ({})", i % 4),
        );
    }
    for k in ["../x", "/etc/passwd", "jobs/../../x", "\0", "jobs/video_0/reference", "s3://bucket/x", "..", "a/..", ""]
    {
        add(
            VAE_ENCODE,
            true,
            enc(encode_request::Source::Key(k.into()), 8, 64, 64).encode_to_vec(),
            format!("key {k:?}"),
        );
    }
    let clip = encode_request::Source::Data(mp4.to_vec());
    for (frames, w, h) in
        [(3, 64, 64), (u32::MAX, 64, 64), (8, u32::MAX, 64), (8, 64, 65), (8, 1, 1), (1 << 20, 64, 64)]
    {
        add(VAE_ENCODE, true, enc(clip.clone(), frames, w, h).encode_to_vec(), format!("frames {frames} {w}x{h}"));
    }
    add(VAE_ENCODE, true, VaeEncode { frames: 8, ..Default::default() }.encode_to_vec(), "no source".into());
}

pub(super) fn classifier(rng: &mut Rng, mp4: &[u8], max_video: usize, out: &mut Vec<Case>) {
    let cat = "grpc: classifier video bytes and URIs";
    let mut add =
        |r: DetectRequest, note: String| out.push(case(cat, Svc::Classifier, DETECT, false, r.encode_to_vec(), note));
    let video = |v: Vec<u8>| DetectRequest { source: Some(detect_request::Source::Video(v)) };
    for i in 0..120 {
        let data = match i % 5 {
            0 => rng.blob(0, 64 << 10),
            1 => [b"\x89PNG\r\n\x1a\n".as_slice(), &rng.blob(0, 4096)].concat(),
            2 => [b"\x1a\x45\xdf\xa3".as_slice(), &rng.blob(0, 4096)].concat(),
            3 => [b"\x00\x00\x00\x18ftypmp42".as_slice(), &rng.blob(0, 8192)].concat(),
            _ => mp4[..rng.range(0, mp4.len() / 2)].to_vec(),
        };
        let n = data.len();
        add(video(data), format!("{n} bytes ({})", i % 5));
    }
    for n in [max_video + 1, max_video + (1 << 20)] {
        add(video(vec![0u8; n]), format!("{n}-byte upload"));
    }
    for uri in [
        "../../etc/passwd",
        "file:///etc/passwd",
        "/etc/passwd",
        "local://../x",
        "s3://bucket/../x",
        "http://169.254.169.254/",
        "\0",
        "",
        "jobs/video_0/video.mp4",
        "%2e%2e/x",
    ] {
        add(DetectRequest { source: Some(detect_request::Source::Uri(uri.into())) }, format!("uri {uri:?}"));
    }
    add(DetectRequest { source: None }, "no source".into());
}
