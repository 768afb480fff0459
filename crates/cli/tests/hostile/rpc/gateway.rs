//! Hostile calls to the gateway's gRPC API: generation requests valid but for one field, conditioning with junk
//! references, and ids, cursors and filters no job has.

use prost::Message;
use vidmesh_proto::gateway::v1::{
    CancelJobRequest, Conditioning, GenerateRequest, GetJobRequest, ListJobsRequest, RemixRequest, WatchJobRequest,
    conditioning::Reference,
};

use super::{Case, GENERATE, SUBMIT, Svc, case};
use crate::tally::Rng;
use crate::web::{controls, hostile_ids, percent_decode};

pub(super) fn gateway(rng: &mut Rng, out: &mut Vec<Case>) {
    let cat = "grpc: gateway requests and ids";
    let base = || GenerateRequest {
        prompt: "a red circle".into(),
        num_frames: 8,
        num_inference_steps: 2,
        ..Default::default()
    };
    let mut reqs: Vec<(GenerateRequest, String)> = Vec::new();
    for c in controls() {
        reqs.push((GenerateRequest { prompt: c.to_string(), ..base() }, format!("prompt U+{:04X}", c as u32)));
        reqs.push((
            GenerateRequest { prompt: format!("a {c} b"), ..base() },
            format!("prompt with U+{:04X}", c as u32),
        ));
        reqs.push((
            GenerateRequest { negative_prompt: format!("x{c}"), ..base() },
            format!("negative U+{:04X}", c as u32),
        ));
        reqs.push((GenerateRequest { idempotency_key: format!("k{c}"), ..base() }, format!("key U+{:04X}", c as u32)));
    }
    for p in ["", " ", "\u{3000}", &"x".repeat(2001), &"x".repeat(1 << 20)] {
        reqs.push((GenerateRequest { prompt: p.into(), ..base() }, format!("prompt of {} bytes", p.len())));
    }
    for s in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, 1e308, 5e-324, 3.0] {
        reqs.push((GenerateRequest { seconds: s, num_frames: 0, ..base() }, format!("seconds {s}")));
    }
    for g in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -1.0, 1e30, f32::MAX] {
        reqs.push((GenerateRequest { guidance_scale: Some(g), ..base() }, format!("guidance {g}")));
    }
    for (w, h) in [(u32::MAX, u32::MAX), (u32::MAX, 64), (64, 0), (1, 1), (65, 64), (1 << 20, 1 << 20)] {
        reqs.push((GenerateRequest { width: w, height: h, ..base() }, format!("{w}x{h}")));
    }
    for (name, r) in [
        ("num_frames", GenerateRequest { num_frames: u32::MAX, ..base() }),
        ("steps", GenerateRequest { num_inference_steps: u32::MAX, ..base() }),
        ("fps", GenerateRequest { fps: u32::MAX, ..base() }),
        ("preview_every", GenerateRequest { preview_every: u32::MAX, ..base() }),
        ("scheduler", GenerateRequest { scheduler: "\0".into(), ..base() }),
        ("model", GenerateRequest { model: "../vidmesh-tiny".into(), ..base() }),
        ("key", GenerateRequest { idempotency_key: "k".repeat(201), ..base() }),
    ] {
        reqs.push((r, format!("{name} out of range")));
    }
    let cond = |mode: i32, reference: Option<Reference>, strength: f32| Conditioning {
        mode,
        reference,
        strength,
        ..Default::default()
    };
    for i in 0..30 {
        let data = rng.blob(0, 32 << 10);
        let mode = [1, 2, 3, 0, 99][i % 5];
        reqs.push((
            GenerateRequest { conditioning: Some(cond(mode, Some(Reference::Data(data)), 0.0)), ..base() },
            format!("mode {mode}, junk upload"),
        ));
    }
    for id in hostile_ids() {
        reqs.push((
            GenerateRequest { conditioning: Some(cond(2, Some(Reference::VideoId(id.clone())), 0.5)), ..base() },
            format!("reference {id:?}"),
        ));
    }
    for s in [f32::NAN, f32::INFINITY, -1.0, 2.0] {
        reqs.push((
            GenerateRequest { conditioning: Some(cond(2, Some(Reference::Data(vec![1, 2, 3])), s)), ..base() },
            format!("strength {s}"),
        ));
    }
    reqs.push((GenerateRequest { conditioning: Some(cond(1, None, 0.0)), ..base() }, "no reference".into()));
    reqs.push((
        GenerateRequest { conditioning: Some(cond(1, Some(Reference::Data(vec![0; (3 << 20) + 1])), 0.0)), ..base() },
        "upload over the limit".into(),
    ));
    for (r, note) in reqs {
        let msg = r.encode_to_vec();
        out.push(case(cat, Svc::Gateway, SUBMIT, false, msg.clone(), note.clone()));
        out.push(case(cat, Svc::Gateway, GENERATE, true, msg, note));
    }
    for id in hostile_ids().iter().map(|i| percent_decode(i)).chain(["".to_string()]) {
        let g = |path, streaming, msg: Vec<u8>| case(cat, Svc::Gateway, path, streaming, msg, format!("id {id:?}"));
        out.push(g("/vidmesh.gateway.v1.Gateway/Get", false, GetJobRequest { id: id.clone() }.encode_to_vec()));
        out.push(g(
            "/vidmesh.gateway.v1.Gateway/Watch",
            true,
            WatchJobRequest { id: id.clone(), after_sequence: 0 }.encode_to_vec(),
        ));
        out.push(g("/vidmesh.gateway.v1.Gateway/Cancel", false, CancelJobRequest { id: id.clone() }.encode_to_vec()));
        let remix = RemixRequest { id: id.clone(), prompt: "a red circle".into(), ..Default::default() };
        out.push(g("/vidmesh.gateway.v1.Gateway/Remix", false, remix.encode_to_vec()));
        let list = ListJobsRequest { after: id.clone(), ..Default::default() };
        if !id.is_empty() {
            out.push(g("/vidmesh.gateway.v1.Gateway/List", false, list.encode_to_vec()));
        }
    }
    for (limit, states) in [(101, vec![]), (u32::MAX, vec![]), (10, vec![99]), (10, vec![-1]), (10, vec![1, 1000])] {
        let list = ListJobsRequest { limit, states: states.clone(), ..Default::default() };
        out.push(case(
            cat,
            Svc::Gateway,
            "/vidmesh.gateway.v1.Gateway/List",
            false,
            list.encode_to_vec(),
            format!("limit {limit} states {states:?}"),
        ));
    }
}
