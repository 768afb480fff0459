//! Prompt → text-encoder → denoiser → decoder → MP4 in storage, each stage a real gRPC server on 127.0.0.1:0 and
//! the orchestration done here the way the gateway will: the Rust mesh must reproduce the Python reference sampler's
//! video for the same prompt and seed (golden fixture case 0).
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use vidmesh_proto::decoder::v1::{DecodeRequest, decode_event, decoder_client::DecoderClient};
use vidmesh_proto::denoiser::v1::DenoiseRequest;
use vidmesh_proto::text_encoder::v1::{EncodeRequest, text_encoder_client::TextEncoderClient};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A channel to `kind` served in this process (no watermark: the video is compared with the reference frames).
async fn stage(kind: vidmesh_testmesh::Kind, root: &std::path::Path, shutdown: &CancellationToken) -> Channel {
    let setup = vidmesh_testmesh::Setup { watermark_key_hex: String::new(), ..vidmesh_testmesh::Setup::new(root) };
    let addr = vidmesh_testmesh::serve(kind, &setup, &prometheus::Registry::new(), shutdown).await.unwrap();
    Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_becomes_the_reference_video() {
    let storage = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let te = stage(vidmesh_testmesh::Kind::TextEncoder, storage.path(), &shutdown).await;
    let dn = stage(vidmesh_testmesh::Kind::Denoiser, storage.path(), &shutdown).await;
    let dc = stage(vidmesh_testmesh::Kind::Decoder, storage.path(), &shutdown).await;

    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("models/fixtures/vidmesh-tiny/cases.json")).unwrap())
            .unwrap();
    let case = &cases["cases"][0];
    let prompt = case["prompt"].as_str().unwrap();
    let seed: u64 = case["seed"].as_str().unwrap().parse().unwrap();

    // 1. text-encoder: the prompt and the empty negative prompt in one call.
    let enc = TextEncoderClient::new(te)
        .encode(EncodeRequest { prompts: vec![prompt.into(), String::new()], ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    // 2. denoiser: bundle defaults (30 steps, shift 2, guidance 5, 16x64x64).
    let latents = vidmesh_testmesh::denoise(
        dn,
        DenoiseRequest {
            prompt_states: enc.encodings[0].hidden_states.clone(),
            negative_states: enc.encodings[1].hidden_states.clone(),
            seed,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // 3. decoder: MP4 + thumbnail into local storage.
    let mut events = DecoderClient::new(dc)
        .decode(DecodeRequest {
            latents: Some(latents.to_proto()),
            output_prefix: "jobs/e2e".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut video = None;
    while let Some(ev) = events.message().await.unwrap() {
        if let Some(decode_event::Event::Completed(v)) = ev.event {
            video = Some(v);
        }
    }
    let video = video.expect("a stored video");
    let mp4 = std::fs::read(video.video.unwrap().uri.strip_prefix("file://").unwrap()).unwrap();
    let got = vidmesh_video::decode_video(&mp4).unwrap();

    // The Python reference sampler's frames for the same prompt and seed.
    let bytes = std::fs::read(repo().join("models/fixtures/vidmesh-tiny/case0.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("video").unwrap();
    let data: Vec<f32> = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let (frames, h, w) = (t.shape()[1], t.shape()[2], t.shape()[3]);
    let want = vidmesh_decoder::engine::frames_u8(&data, frames, h, w);
    assert_eq!(got.frames.len(), want.len());
    let worst = want.iter().zip(&got.frames).map(|(a, b)| vidmesh_video::luma_psnr(a, b)).fold(f64::INFINITY, f64::min);
    assert!(worst >= 38.0, "worst luma PSNR {worst:.1} dB between the mesh's video and the Python reference");
    shutdown.cancel();
}
