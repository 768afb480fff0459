//! Watermark on real vidmesh-tiny outputs (the golden fixtures' decoded videos): invisibility, detection after
//! attacks done here in Rust (H.264 re-encode, downscale, crop, brightness, dropped and re-timed frames), and the
//! calibration of the p-value against a key-shuffle null.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use vidmesh_video::{EncodeOptions, Video, decode_video, encode_mp4};
use vidmesh_watermark::{Detection, Embedder, Key, Params, Payload, Suspect, detect, embed};

fn reference_video(case: usize) -> Video {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../models/fixtures/vidmesh-tiny/case{case}.safetensors"));
    let bytes = std::fs::read(path).unwrap();
    // safetensors layout: u64 header length, JSON header, data. Only the "video" tensor is needed.
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let v = &header["video"];
    let shape: Vec<usize> = v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let off = v["data_offsets"].as_array().unwrap();
    let (a, b) = (8 + n + off[0].as_u64().unwrap() as usize, 8 + n + off[1].as_u64().unwrap() as usize);
    let data: Vec<f32> = bytes[a..b].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    let (t, h, w) = (shape[1], shape[2], shape[3]);
    let frames = (0..t)
        .map(|f| {
            let mut rgb = vec![0u8; h * w * 3];
            for c in 0..3 {
                for i in 0..h * w {
                    let v = data[c * t * h * w + f * h * w + i];
                    rgb[i * 3 + c] = ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
                }
            }
            rgb
        })
        .collect();
    Video { width: w, height: h, fps: 8.0, frames }
}

fn reencode(v: &Video, qp: (u8, u8)) -> Video {
    decode_video(&encode_mp4(v, &EncodeOptions { qp, ..Default::default() }).unwrap()).unwrap()
}

fn half(v: &Video) -> Video {
    let (w, h) = ((v.width / 2) & !1, (v.height / 2) & !1);
    let frames = v
        .frames
        .iter()
        .map(|f| {
            let mut o = vec![0u8; w * h * 3];
            for j in 0..h {
                for i in 0..w {
                    for c in 0..3 {
                        let px = |x: usize, y: usize| u32::from(f[(y * v.width + x) * 3 + c]);
                        let s =
                            px(2 * i, 2 * j) + px(2 * i + 1, 2 * j) + px(2 * i, 2 * j + 1) + px(2 * i + 1, 2 * j + 1);
                        o[(j * w + i) * 3 + c] = ((s + 2) / 4) as u8;
                    }
                }
            }
            o
        })
        .collect();
    Video { width: w, height: h, fps: v.fps, frames }
}

fn crop(v: &Video, frac: f64) -> Video {
    let (w, h) = (((v.width as f64 * frac) as usize) & !1, ((v.height as f64 * frac) as usize) & !1);
    let (x0, y0) = ((v.width - w) / 2, (v.height - h) / 2);
    let frames = v
        .frames
        .iter()
        .map(|f| {
            (0..h).flat_map(|j| f[((y0 + j) * v.width + x0) * 3..((y0 + j) * v.width + x0 + w) * 3].to_vec()).collect()
        })
        .collect();
    Video { width: w, height: h, fps: v.fps, frames }
}

fn brightness(v: &Video, k: f64) -> Video {
    let frames = v
        .frames
        .iter()
        .map(|f| f.iter().map(|&p| (f64::from(p) * k).round().clamp(0.0, 255.0) as u8).collect())
        .collect();
    Video { frames, ..v.clone() }
}

fn keep(v: &Video, pick: impl Fn(usize) -> bool) -> Video {
    Video {
        frames: v.frames.iter().enumerate().filter(|(i, _)| pick(*i)).map(|(_, f)| f.clone()).collect(),
        ..v.clone()
    }
}

#[test]
fn invisible_and_detected_after_attacks() {
    let key = Key::derive(b"vidmesh test key");
    let mut checks = Vec::new();
    for case in [0usize, 2] {
        let original = reference_video(case);
        let mut marked = original.clone();
        let psnr = embed(&key, &mut marked, &Params::default());
        assert!(psnr >= Params::default().psnr_db, "case {case}: watermark PSNR {psnr:.1} dB");
        let clean = detect(&key, &original);
        let attacks: Vec<(&str, Video)> = vec![
            ("none", marked.clone()),
            ("h264 qp 20-24", reencode(&marked, (20, 24))),
            ("h264 qp 28-32", reencode(&marked, (28, 32))),
            ("h264 qp 34-38", reencode(&marked, (34, 38))),
            ("brightness x1.2", brightness(&marked, 1.2)),
            ("brightness x0.5", brightness(&marked, 0.5)),
            ("30% frames dropped", keep(&marked, |i| (i * 3) % 10 >= 3)),
            ("24->15 fps", keep(&marked, |i| (i * 15 / 24) != ((i + 1) * 15 / 24))),
            ("crop 90%", crop(&marked, 0.9)),
            ("crop 71%", crop(&marked, 0.71)),
            ("scale 0.5", half(&marked)),
            ("combined", reencode(&half(&crop(&brightness(&marked, 1.2), 0.9)), (28, 32))),
        ];
        println!("case {case}: PSNR {psnr:.1} dB; unmarked z {:.2} p {:.2e}", clean.z, clean.p_value);
        let found: Vec<(&str, Detection)> = attacks.iter().map(|(name, v)| (*name, detect(&key, v))).collect();
        for (name, d) in &found {
            println!("  {name:20} z {:6.2}  p {:9.2e}  scale {}", d.z, d.p_value, d.scale);
        }
        checks.push((case, clean, found));
    }
    for (case, clean, found) in checks {
        assert!(clean.p_value > 1e-3, "unmarked original flagged: {clean:?}");
        // What this version holds on the fixtures (docs/detection.md has the full ffmpeg evaluation): every
        // single attack down to QP 28-32 at p <= 1e-6 (z >= 8.6 measured on vidmesh-tiny 0.3.0's fixtures).
        // QP 34-38 and the combined attack done here (openh264 at QP 28-32, a harsher encoder than the libx264
        // CRF 28 of the attack) are printed but not held: z 3.1-5.4 on these flat frames. The ffmpeg
        // evaluation's combined attack reaches p <= 1e-6 on 33 of 40 videos (issue target: 95%).
        let p_of = |name: &str| found.iter().find(|(n, _)| *n == name).unwrap().1.p_value;
        for (name, _) in found.iter().filter(|(n, _)| !matches!(*n, "combined" | "h264 qp 34-38")) {
            assert!(p_of(name) <= 1e-6, "case {case}, {name}: p {:.2e}", p_of(name));
        }
    }
}

/// A light striped background like vidmesh-tiny's "striped white" outputs (the evaluation's videos #7–13, rows
/// measured on them): hard-edged diagonal stripes of RGB ~238 and ~210, 8 px each along a row, with the
/// generator's fine texture (±3 levels, fixed) and flicker (±1 level, per frame), and a blue disc moving across.
fn striped(frames: usize, w: usize, h: usize) -> Video {
    // A fixed pseudo-random value in [-1, 1] per (pixel, salt).
    let noise = |k: usize, salt: usize| ((k * 2_654_435_761 + salt * 40_503) % 1000) as f64 / 500.0 - 1.0;
    let frames = (0..frames)
        .map(|t| {
            let mut rgb = vec![0u8; w * h * 3];
            for j in 0..h {
                for i in 0..w {
                    let k = j * w + i;
                    let light = (i + j) % 16 < 8;
                    let grey = if light { 238.0 } else { 210.0 } + 3.0 * noise(k, 0) + noise(k, t + 1);
                    let (dx, dy) = (i as f64 - 16.0 - 2.0 * t as f64, j as f64 - 36.0);
                    let disc = (dx * dx + dy * dy).sqrt() < 9.0;
                    let px = if disc { [40.0, 60.0, 220.0] } else { [grey; 3] };
                    for c in 0..3 {
                        rgb[k * 3 + c] = px[c].round().clamp(0.0, 255.0) as u8;
                    }
                }
            }
            rgb
        })
        .collect();
    Video { width: w, height: h, fps: 8.0, frames }
}

#[test]
fn a_striped_background_keeps_the_mark_at_half_brightness() {
    // Halving the brightness halves the stripes' contrast (~29 → ~14 levels): the content prediction's range
    // gate must still keep the other stripe out, or the stripes leak into the residual and drown the pattern
    // (with the gate at ±12 levels this clip fell to z 4.8, like the evaluation's striped videos: 3.1–4.3).
    let key = Key::derive(b"vidmesh stripes key");
    let original = striped(16, 64, 64);
    let mut marked = original.clone();
    embed(&key, &mut marked, &Params::default());
    let ours = reencode(&marked, EncodeOptions::default().qp);
    let attacked = reencode(&brightness(&ours, 0.5), (20, 24));
    let d = detect(&key, &attacked);
    let clean = detect(&key, &brightness(&original, 0.5));
    println!("striped, brightness x0.5: z {:.2} p {:.2e}; unmarked z {:.2}", d.z, d.p_value, clean.z);
    assert!(d.p_value <= 1e-6, "{d:?}");
    assert!(clean.p_value > 1e-3, "{clean:?}");
}

#[test]
fn p_values_are_calibrated_against_a_key_shuffle_null() {
    // Unmarked videos and marked ones under wrong keys: p-values must not be smaller than they claim.
    let mut videos = vec![reference_video(0), reference_video(1), reference_video(2)];
    let mut marked = reference_video(1);
    embed(&Key::derive(b"the real key"), &mut marked, &Params::default());
    videos.push(marked);
    let mut ps = vec![];
    for v in &videos {
        let suspect = Suspect::new(v);
        for k in 0..100u32 {
            ps.push(suspect.detect(&suspect.reference(&Key::derive(&k.to_le_bytes()))).p_value);
        }
    }
    let n = ps.len() as f64;
    for alpha in [0.5, 0.1, 0.01] {
        let rate = ps.iter().filter(|&&p| p < alpha).count() as f64 / n;
        println!("key-shuffle null: P(p < {alpha}) = {rate:.4} over {n} trials");
        assert!(rate <= alpha * 1.5 + 3.0 / n, "p-values are anti-conservative at {alpha}: {rate}");
    }
}

/// `v` enlarged `k` times (bilinear), standing in for a bigger model's output.
fn enlarge(v: &Video, k: usize) -> Video {
    let (w, h) = (v.width as u32, v.height as u32);
    let k32 = k as u32;
    let frames = v
        .frames
        .iter()
        .map(|f| {
            let img = image::RgbImage::from_raw(w, h, f.clone()).unwrap();
            image::imageops::resize(&img, w * k32, h * k32, image::imageops::FilterType::Triangle).into_raw()
        })
        .collect();
    Video { width: v.width * k, height: v.height * k, fps: v.fps, frames }
}

#[test]
fn the_payload_is_carried_by_large_videos_and_survives_mild_attacks() {
    let key = Key::derive(b"vidmesh payload key");
    let payload = Payload { generator: 7, tag: Payload::tag_of("job-0123") };
    let params = Params::default();
    let embedder = Embedder::new(&key, params).with_payload(payload);
    // 256x256x16: the smallest size that carries a payload by default.
    let original = enlarge(&reference_video(0), 4);
    let mut marked = original.clone();
    let psnr = embedder.embed_video(&mut marked);
    assert!(psnr >= params.psnr_db, "PSNR {psnr:.2}");
    let attacks: Vec<(&str, Video)> = vec![
        ("none", marked.clone()),
        ("h264 qp 20-24", reencode(&marked, (20, 24))),
        ("crop 90%", crop(&marked, 0.9)),
        ("brightness x0.5", brightness(&marked, 0.5)),
        ("30% frames dropped", keep(&marked, |i| (i * 3) % 10 >= 3)),
    ];
    for (name, v) in &attacks {
        let d = detect(&key, v);
        println!("256x256 {name:20} z {:6.2}  p {:9.2e}  payload {:?}", d.z, d.p_value, d.payload);
        assert!(d.p_value <= 1e-6, "{name}: {d:?}");
        assert_eq!(d.payload, Some(payload), "{name}: {d:?}");
    }
    // Another key finds neither the mark nor a payload; the unmarked video carries no payload.
    let other = detect(&Key::derive(b"another key"), &marked);
    assert!(other.p_value > 1e-3 && other.payload.is_none(), "{other:?}");
    assert_eq!(detect(&key, &original).payload, None);

    // A 64x64 clip is below `payload_min_samples`: the embedder spends everything on detection, exactly as
    // without a payload, and nothing decodes.
    let mut small = reference_video(0);
    let mut plain = small.clone();
    embedder.embed_video(&mut small);
    embed(&key, &mut plain, &params);
    assert_eq!(small.frames, plain.frames);
    assert_eq!(detect(&key, &small).payload, None);
}
