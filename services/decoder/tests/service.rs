//! The decoder served in-process on 127.0.0.1:0 with the vidmesh-tiny bundle and local storage in a temp dir.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;
use vidmesh_decoder::{Config, Decoder, SERVICE_NAME};
use vidmesh_proto::decoder::v1::{DecodeRequest, VideoRef, decode_event::Event as Ev, decoder_client::DecoderClient};
use vidmesh_runtime::TensorF32;
use vidmesh_runtime::stage::{Options, serve_with};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(case: usize, name: &str) -> TensorF32 {
    let bytes = std::fs::read(repo().join(format!("models/fixtures/vidmesh-tiny/case{case}.safetensors"))).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    TensorF32::new(
        t.shape().to_vec(),
        t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
    )
}

async fn start(chunk: usize, root: &std::path::Path) -> (DecoderClient<Channel>, CancellationToken) {
    start_with(chunk, root, |_| {}).await
}

async fn start_with(
    chunk: usize,
    root: &std::path::Path,
    edit: impl FnOnce(&mut Config),
) -> (DecoderClient<Channel>, CancellationToken) {
    start_observed(chunk, root, edit, prometheus::Registry::new()).await
}

async fn start_observed(
    chunk: usize,
    root: &std::path::Path,
    edit: impl FnOnce(&mut Config),
    registry: prometheus::Registry,
) -> (DecoderClient<Channel>, CancellationToken) {
    let mut config = Config::default();
    config.model.bundle = repo().join("models/vidmesh-tiny").display().to_string();
    config.storage.local_root = root.display().to_string();
    config.chunk_latent_frames = chunk;
    edit(&mut config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let opts = Options { registry, ..Options::local() };
    let mut server = tokio::spawn(serve_with::<Decoder, _>(config, listener, shutdown.clone(), opts));
    let channel = vidmesh_testkit::connect_when_serving(addr, SERVICE_NAME, &mut server).await;
    (DecoderClient::new(channel), shutdown)
}

async fn decode(
    client: &mut DecoderClient<Channel>,
    req: DecodeRequest,
) -> Result<(Vec<u32>, VideoRef), tonic::Status> {
    let mut stream = client.decode(req).await?.into_inner();
    let mut progress = vec![];
    while let Some(ev) = stream.message().await? {
        match ev.event.unwrap() {
            Ev::Progress(p) => progress.push(p.frames_done),
            Ev::Completed(v) => return Ok((progress, v)),
            Ev::Encoding(_) => {}
        }
    }
    panic!("stream ended without a result")
}

fn req(latents: &TensorF32, prefix: &str) -> DecodeRequest {
    DecodeRequest { latents: Some(latents.to_proto()), output_prefix: prefix.into(), ..Default::default() }
}

fn path_of(uri: &str) -> PathBuf {
    PathBuf::from(uri.strip_prefix("file://").unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latents_become_a_stored_mp4_matching_the_reference_frames() {
    let dir = tempfile::tempdir().unwrap();
    let (mut client, _stop) = start(1, dir.path()).await;
    for case in [0usize, 2] {
        let latents = fixture(case, "latents_final");
        let (progress, v) = decode(&mut client, req(&latents, &format!("jobs/case{case}"))).await.unwrap();
        let frames = latents.shape[1] * 4;
        assert_eq!(progress, (1..=latents.shape[1]).map(|k| (k * 4) as u32).collect::<Vec<_>>(), "one event per chunk");
        assert_eq!((v.frames as usize, v.fps, v.width as usize), (frames, 8, latents.shape[3] * 4));
        assert!((v.duration_seconds - frames as f64 / 8.0).abs() < 1e-9);
        let stored = v.video.unwrap();
        let mp4 = std::fs::read(path_of(&stored.uri)).unwrap();
        assert_eq!((mp4.len() as u64, vidmesh_storage::sha256_hex(&mp4)), (stored.bytes, stored.sha256));
        let thumb = v.thumbnail.unwrap();
        assert!(image_header(&std::fs::read(path_of(&thumb.uri)).unwrap()));

        // The reference frames: the Python sampler's decoded video, quantised the same way.
        let want = fixture(case, "video");
        let (t, h, w) = (want.shape[1], want.shape[2], want.shape[3]);
        let want = vidmesh_decoder::engine::frames_u8(&want.data, t, h, w);
        let got = vidmesh_video::decode_video(&mp4).unwrap();
        assert_eq!(got.frames.len(), frames);
        let worst =
            want.iter().zip(&got.frames).map(|(a, b)| vidmesh_video::luma_psnr(a, b)).fold(f64::INFINITY, f64::min);
        assert!(worst >= 38.0, "case {case}: worst luma PSNR {worst:.1} dB against the reference frames");
    }
}

fn image_header(b: &[u8]) -> bool {
    b.starts_with(b"\x89PNG\r\n\x1a\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_decoding_is_exact() {
    let latents = fixture(2, "latents_final");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut one, _s1) = start(1, a.path()).await;
    let (mut all, _s2) = start(64, b.path()).await;
    let (_, x) = decode(&mut one, req(&latents, "v")).await.unwrap();
    let (_, y) = decode(&mut all, req(&latents, "v")).await.unwrap();
    assert_eq!(x.video.unwrap().sha256, y.video.unwrap().sha256, "chunk size 1 and whole-video decode agree");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (mut client, _stop) = start(2, dir.path()).await;
    let good = fixture(3, "latents_final");
    // Any number of latent frames decodes (an extension's stitched video is longer than one generation); the
    // channels and the size must be the model's.
    let wrong = TensorF32::new(vec![8, 3, 16, 12], vec![0.0; 8 * 3 * 192]);
    let mut nan = good.clone();
    nan.data[5] = f32::NAN;
    let cases = [
        (req(&wrong, "x"), "latents has shape [8, 3, 16, 12]"),
        (req(&nan, "x"), "non-finite"),
        (req(&good, "../escape"), "output_prefix"),
        (req(&good, ""), "output_prefix is empty"),
        (DecodeRequest { fps: 1000, ..req(&good, "x") }, "fps 1000"),
        (DecodeRequest { latents: None, ..req(&good, "x") }, "latents is missing"),
    ];
    for (r, text) in cases {
        let err = decode(&mut client, r).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
        assert!(err.message().contains(text), "{:?} lacks {text:?}", err.message());
    }
    assert!(!dir.path().join("../escape").exists());
    decode(&mut client, req(&good, "still/up")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_are_watermarked_and_c2pa_signed_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let vidmesh_testkit::DevPkiFiles { chain, key, anchors } =
        vidmesh_testkit::DevPki::new("vidmesh").write(dir.path());
    let anchors_pem = std::fs::read(&anchors).unwrap();
    let (mut client, _stop) = start_with(2, &dir.path().join("store"), |c| {
        c.watermark.key_hex = "11".repeat(32);
        c.c2pa.cert_chain_path = chain;
        c.c2pa.private_key_path = key;
        c.c2pa.trust_anchors_path = anchors;
    })
    .await;
    let latents = fixture(0, "latents_final");
    let request = DecodeRequest {
        prompt_sha256: "AB".repeat(32),
        parameters_json: r#"{"seed": 42, "steps": 30}"#.into(),
        ..req(&latents, "signed")
    };
    let (_, v) = decode(&mut client, request).await.unwrap();
    assert!(v.watermarked && v.c2pa_signed, "{v:?}");
    assert!(v.watermark_psnr_db >= 42.0, "watermark PSNR {}", v.watermark_psnr_db);
    let mp4 = std::fs::read(path_of(&v.video.unwrap().uri)).unwrap();
    match vidmesh_provenance::verify_mp4(&mp4, &anchors_pem) {
        vidmesh_provenance::Provenance::Trusted(vidmesh_provenance::Signed { claim: Some(claim), .. }) => {
            assert_eq!(
                (claim.model.as_str(), claim.prompt_sha256.as_str()),
                ("vidmesh-tiny", "ab".repeat(32).as_str())
            );
            assert_eq!(claim.parameters["seed"], 42);
        }
        other => panic!("expected a trusted manifest, got {other:?}"),
    }
    let frames = vidmesh_video::decode_video(&mp4).unwrap();
    let key = vidmesh_watermark::Key([0x11; 32]);
    let marked = vidmesh_watermark::detect(&key, &frames);
    let (_, plain) = decode(&mut start(2, &dir.path().join("plain")).await.0, req(&latents, "plain")).await.unwrap();
    let plain = vidmesh_video::decode_video(&std::fs::read(path_of(&plain.video.unwrap().uri)).unwrap()).unwrap();
    let unmarked = vidmesh_watermark::detect(&key, &plain);
    assert!(marked.z > unmarked.z + 1.0, "marked {marked:?} vs unmarked {unmarked:?}");

    let bad = DecodeRequest { parameters_json: "[1, 2]".into(), ..req(&latents, "x") };
    assert!(decode(&mut client, bad).await.unwrap_err().message().contains("JSON object"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_its_load_and_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let registry = prometheus::Registry::new();
    let (mut client, _stop) = start_observed(2, dir.path(), |_| {}, registry.clone()).await;
    let latents = fixture(0, "latents_final");
    decode(&mut client, req(&latents, "observed")).await.unwrap();
    let value = |name| vidmesh_runtime::metrics::value(&registry, name);
    // The active-decodes gauge (the autoscaler's per-pod metric) is back to zero; outcome and frames counted.
    assert_eq!(value("decoder_active_requests"), Some(0.0));
    assert_eq!(value("decoder_requests_total"), Some(1.0));
    assert_eq!(value("decoder_frames_total"), Some(16.0));
    assert_eq!(value("decoder_decode_seconds"), Some(1.0));
}

/// Encode: an image becomes one latent frame; a video its whole latent frames (a partial one cut), chunk by chunk
/// identical to one run, and the same latents whether sent as bytes or read from storage; a video re-encoded from
/// decoded latents comes back close to them; bad sources are INVALID_ARGUMENT / NOT_FOUND.
#[tokio::test]
async fn references_are_encoded_to_latents() {
    use vidmesh_proto::decoder::v1::{EncodeRequest, encode_event, encode_request::Source};
    async fn encode(client: &mut DecoderClient<Channel>, req: EncodeRequest) -> Result<TensorF32, tonic::Status> {
        let mut stream = client.encode(req).await?.into_inner();
        let mut asm = vidmesh_runtime::tensor::Assembler::new("latents");
        let mut out = None;
        while let Some(ev) = stream.message().await? {
            if let Some(encode_event::Event::Latents(c)) = ev.event {
                out = asm.push(c).unwrap().or(out);
            }
        }
        Ok(out.unwrap())
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut client, _stop) = start(1, dir.path()).await;
    let data = |b: Vec<u8>| EncodeRequest { source: Some(Source::Data(b)), ..Default::default() };

    let rgb: Vec<u8> = (0..80 * 60 * 3).map(|i| (i % 251) as u8).collect();
    let png = vidmesh_video::png_frame(80, 60, &rgb).unwrap();
    assert_eq!(encode(&mut client, data(png)).await.unwrap().shape, vec![8, 1, 16, 16]);

    // Decoded latents → MP4 in storage → encoded again, from storage and from bytes.
    let latents = fixture(0, "latents_final");
    let (_, stored) = decode(&mut client, req(&latents, "enc")).await.unwrap();
    let path = path_of(&stored.video.unwrap().uri);
    let key = path.strip_prefix(dir.path()).unwrap().display().to_string();
    let from_key = encode(&mut client, EncodeRequest { source: Some(Source::Key(key.clone())), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(from_key.shape, latents.shape);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(encode(&mut client, data(bytes)).await.unwrap(), from_key);
    let err = |a: &TensorF32, b: &TensorF32| {
        a.data.iter().zip(&b.data).map(|(x, y)| (x - y).powi(2)).sum::<f32>()
            / a.data.iter().map(|x| x * x).sum::<f32>()
    };
    assert!(err(&from_key, &latents) < 0.1, "relative error {}", err(&from_key, &latents));
    let first = EncodeRequest { source: Some(Source::Key(key.clone())), frames: 8, ..Default::default() };
    assert_eq!(encode(&mut client, first).await.unwrap(), from_key.frames(0, 2));

    for (req, code, why) in [
        (data(b"junk".to_vec()), Code::InvalidArgument, "neither an image"),
        (data(vec![0, 0, 0, 24, b'f', b't', b'y', b'p', 0, 0, 0, 0]), Code::InvalidArgument, "MP4"),
        (
            EncodeRequest { source: Some(Source::Key("jobs/none/video.mp4".into())), ..Default::default() },
            Code::NotFound,
            "none",
        ),
        (
            EncodeRequest { source: Some(Source::Key("../etc/passwd".into())), ..Default::default() },
            Code::InvalidArgument,
            "key",
        ),
        (EncodeRequest { frames: 6, ..data(b"junk".to_vec()) }, Code::InvalidArgument, "multiple of 4"),
        (EncodeRequest { width: 640, height: 480, ..data(b"junk".to_vec()) }, Code::InvalidArgument, "64x64"),
        (EncodeRequest::default(), Code::InvalidArgument, "source is empty"),
    ] {
        let e = encode(&mut client, req).await.unwrap_err();
        assert_eq!(e.code(), code, "{}", e.message());
        assert!(e.message().contains(why), "{} should mention {why}", e.message());
    }
}
