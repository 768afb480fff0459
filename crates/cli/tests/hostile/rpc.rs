//! Hostile gRPC to every service, sent as raw message bytes (so undecodable ones go out as they are): messages that
//! do not decode, tensors of the wrong dtype, shape, length or with NaN/Inf, huge steps and dimensions, random and
//! truncated video bytes, oversized uploads, traversal in ids, keys and URIs. The answer must be INVALID_ARGUMENT
//! or another status that blames the request (NOT_FOUND, FAILED_PRECONDITION, OUT_OF_RANGE, RESOURCE_EXHAUSTED, …)
//! with a message.

use std::time::Duration;

use prost::Message;
use tonic::Code;
use tonic::transport::Channel;
use vidmesh_proto::classifier::v1::DetectRequest;
use vidmesh_proto::decoder::v1::{DecodeRequest, EncodeRequest as VaeEncode, PreviewRequest};
use vidmesh_proto::denoiser::v1::DenoiseRequest;
use vidmesh_proto::gateway::v1::{
    CancelJobRequest, GenerateRequest, GetJobRequest, ListJobsRequest, ListModelsRequest, RemixRequest, WatchJobRequest,
};
use vidmesh_proto::tensor::v1::{DataType, Tensor};
use vidmesh_proto::text_encoder::v1::EncodeRequest as TextEncode;
use vidmesh_testkit::Raw;

use crate::tally::{Rng, Verdict};

mod gateway;
mod stages;

/// Which process a case goes to (the index into the channels).
#[derive(Debug, Clone, Copy)]
pub enum Svc {
    Gateway = 0,
    TextEncoder = 1,
    Denoiser = 2,
    Decoder = 3,
    Classifier = 4,
}

/// One call: a method, whether it streams its answer, and the message bytes.
pub struct Case {
    pub cat: &'static str,
    pub svc: Svc,
    pub path: &'static str,
    pub streaming: bool,
    pub msg: Vec<u8>,
    pub note: String,
}

impl Case {
    pub fn what(&self) -> String {
        format!("{} ({} bytes) {}", self.path, self.msg.len(), self.note)
    }
}

/// Codes that tell the caller its request is at fault.
const BLAME_REQUEST: &[Code] = &[
    Code::InvalidArgument,
    Code::NotFound,
    Code::FailedPrecondition,
    Code::OutOfRange,
    Code::ResourceExhausted,
    Code::Unauthenticated,
    Code::PermissionDenied,
    Code::AlreadyExists,
];

fn judge(s: &tonic::Status) -> Verdict {
    if !BLAME_REQUEST.contains(&s.code()) {
        return Verdict::Crashed(format!("{:?}: {}", s.code(), s.message()));
    }
    if s.message().trim().is_empty() {
        return Verdict::Unhelpful(format!("{:?} with an empty message", s.code()));
    }
    Verdict::Handled
}

/// Sends `c` on `channels[c.svc]` and judges the answer (a stream is read to its end or its error).
pub async fn run(channels: &[Channel], c: &Case) -> Verdict {
    let mut grpc = tonic::client::Grpc::new(channels[c.svc as usize].clone()).max_decoding_message_size(256 << 20);
    let path = http::uri::PathAndQuery::from_static(c.path);
    let call = async {
        grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let req = tonic::Request::new(c.msg.clone());
        if !c.streaming {
            grpc.unary::<_, Vec<u8>, _>(req, path, Raw).await?;
            return Ok(());
        }
        let mut stream = grpc.server_streaming::<_, Vec<u8>, _>(req, path, Raw).await?.into_inner();
        while stream.message().await?.is_some() {}
        Ok::<_, tonic::Status>(())
    };
    match tokio::time::timeout(Duration::from_secs(120), call).await {
        Err(_) => Verdict::Crashed("no answer within 120 s".into()),
        Ok(Ok(())) => Verdict::Accepted("OK".into()),
        Ok(Err(s)) => judge(&s),
    }
}

const SUBMIT: &str = "/vidmesh.gateway.v1.Gateway/Submit";
const GENERATE: &str = "/vidmesh.gateway.v1.Gateway/Generate";
const TEXT: &str = "/vidmesh.text_encoder.v1.TextEncoder/Encode";
const DENOISE: &str = "/vidmesh.denoiser.v1.Denoiser/Denoise";
const DECODE: &str = "/vidmesh.decoder.v1.Decoder/Decode";
const PREVIEW: &str = "/vidmesh.decoder.v1.Decoder/Preview";
const VAE_ENCODE: &str = "/vidmesh.decoder.v1.Decoder/Encode";
const DETECT: &str = "/vidmesh.classifier.v1.Classifier/Detect";

fn case(cat: &'static str, svc: Svc, path: &'static str, streaming: bool, msg: Vec<u8>, note: String) -> Case {
    Case { cat, svc, path, streaming, msg, note }
}

/// A float32 tensor of `shape`, `value` everywhere.
fn tensor(shape: &[u64], value: f32) -> Tensor {
    let n: u64 = shape.iter().product();
    let data = (0..n).flat_map(|_| value.to_le_bytes()).collect();
    Tensor { dtype: DataType::Float32 as i32, shape: shape.to_vec(), data }
}

/// Bit patterns that are not finite numbers: NaN, signalling NaN, negative NaN, ±Inf.
const NON_FINITE: &[u32] = &[0x7fc0_0000, 0x7f80_0001, 0xffc0_0000, 0x7f80_0000, 0xff80_0000];

/// `t` with a non-finite value at `at` (in elements).
fn poisoned(mut t: Tensor, at: usize, bits: u32) -> Tensor {
    t.data[at * 4..at * 4 + 4].copy_from_slice(&bits.to_le_bytes());
    t
}

/// Ways a float32 tensor of `shape` can be malformed: dtype, shape, byte length, non-finite values.
fn bad_tensors(rng: &mut Rng, shape: &[u64]) -> Vec<(String, Tensor)> {
    let good = tensor(shape, 0.1);
    let n = good.data.len() / 4;
    let mut out = Vec::new();
    for dtype in [0, 2, 3, 4, 99, -1] {
        out.push((format!("dtype {dtype}"), Tensor { dtype, ..good.clone() }));
    }
    let mut wrong_shapes: Vec<Vec<u64>> = vec![vec![], vec![0], vec![u64::MAX, 2], vec![1 << 32, 1 << 32], vec![1; 9]];
    wrong_shapes.push([shape, &[1]].concat());
    wrong_shapes.push(shape[1..].to_vec());
    wrong_shapes.push(shape.iter().rev().copied().collect());
    let mut plus_one = shape.to_vec();
    plus_one[0] += 1;
    wrong_shapes.push(plus_one);
    for s in wrong_shapes {
        out.push((format!("shape {s:?}"), Tensor { shape: s, ..good.clone() }));
    }
    for len in [0, n * 4 - 1, n * 4 + 1, n * 4 + 4, 3] {
        let mut t = good.clone();
        t.data.resize(len, 0);
        out.push((format!("{len} data bytes"), t));
    }
    for &bits in NON_FINITE {
        for at in [0, rng.below(n), n - 1] {
            out.push((format!("{bits:#x} at {at}"), poisoned(good.clone(), at, bits)));
        }
    }
    out
}

fn undecodable<T: Message + Default>(rng: &mut Rng, n: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![
        vec![0x0e],
        vec![0x0f, 0x01],
        vec![0x0a, 0x05, b'a'],
        vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f],
        vec![0x0a, 0x02, 0xff, 0xfe],
        vec![0x08],
        vec![0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        vec![0x00],
        vec![0x80],
        vec![0xff; 16],
    ];
    // Nested length-delimited fields deeper than prost's recursion limit.
    let mut deep = Vec::new();
    for _ in 0..200 {
        let mut outer = vec![0x12];
        let mut len = deep.len();
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                outer.push(b);
                break;
            }
            outer.push(b | 0x80);
        }
        outer.extend_from_slice(&deep);
        deep = outer;
    }
    out.push(deep);
    while out.len() < n {
        let len = rng.range(1, 512);
        let b = rng.bytes(len);
        if T::decode(b.as_slice()).is_err() {
            out.push(b);
        }
    }
    out.retain(|b| T::decode(b.as_slice()).is_err());
    out
}

fn undecodable_all(rng: &mut Rng, out: &mut Vec<Case>) {
    let cat = "grpc: undecodable messages";
    let mut add = |svc, path, streaming, msgs: Vec<Vec<u8>>| {
        for m in msgs {
            out.push(case(cat, svc, path, streaming, m, String::new()));
        }
    };
    add(Svc::Gateway, SUBMIT, false, undecodable::<GenerateRequest>(rng, 40));
    add(Svc::Gateway, GENERATE, true, undecodable::<GenerateRequest>(rng, 40));
    add(Svc::Gateway, "/vidmesh.gateway.v1.Gateway/Get", false, undecodable::<GetJobRequest>(rng, 30));
    add(Svc::Gateway, "/vidmesh.gateway.v1.Gateway/List", false, undecodable::<ListJobsRequest>(rng, 30));
    add(Svc::Gateway, "/vidmesh.gateway.v1.Gateway/Watch", true, undecodable::<WatchJobRequest>(rng, 30));
    add(Svc::Gateway, "/vidmesh.gateway.v1.Gateway/Cancel", false, undecodable::<CancelJobRequest>(rng, 30));
    add(Svc::Gateway, "/vidmesh.gateway.v1.Gateway/Remix", false, undecodable::<RemixRequest>(rng, 30));
    add(Svc::Gateway, "/vidmesh.gateway.v1.Gateway/ListModels", false, undecodable::<ListModelsRequest>(rng, 20));
    add(Svc::TextEncoder, TEXT, false, undecodable::<TextEncode>(rng, 40));
    add(Svc::Denoiser, DENOISE, true, undecodable::<DenoiseRequest>(rng, 40));
    add(Svc::Decoder, DECODE, true, undecodable::<DecodeRequest>(rng, 40));
    add(Svc::Decoder, PREVIEW, false, undecodable::<PreviewRequest>(rng, 30));
    add(Svc::Decoder, VAE_ENCODE, true, undecodable::<VaeEncode>(rng, 30));
    add(Svc::Classifier, DETECT, false, undecodable::<DetectRequest>(rng, 40));
}

/// Every gRPC case, in a fixed order for `seed`.
pub fn cases(seed: u64, mp4: &[u8], max_video: usize) -> Vec<Case> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    undecodable_all(&mut rng, &mut out);
    stages::text_encoder(&mut out);
    stages::denoiser(&mut rng, &mut out);
    stages::decoder(&mut rng, mp4, &mut out);
    stages::classifier(&mut rng, mp4, max_video, &mut out);
    gateway::gateway(&mut rng, &mut out);
    out
}
