//! The denoiser served in-process on 127.0.0.1:0 with the vidmesh-tiny bundle, called by a real gRPC client.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;

use std::time::Duration;

use tokio::sync::oneshot;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use vidmesh_denoiser::{Config, SERVICE_NAME};
use vidmesh_proto::denoiser::v1::{DenoiseRequest, denoise_event::Event as Ev};
use vidmesh_proto::tensor::v1::{DataType, Tensor};
use vidmesh_runtime::health::wait_serving;

#[test]
fn seeded_noise_is_bit_identical_to_the_python_reference() {
    for i in 0..cases().len() {
        let fx = fixture(i);
        let want = tensor(&fx, "init_noise");
        let seed: u64 = cases()[i]["seed"].as_str().unwrap().parse().unwrap();
        let got = vidmesh_denoiser::engine::noise::gaussian(seed, want.data.len());
        assert!(got.iter().zip(&want.data).all(|(a, b)| a.to_bits() == b.to_bits()), "case {i}");
    }
}

#[tokio::test]
async fn latents_match_the_reference_sampler() {
    let mut r = start(Config::default()).await;
    for i in 0..cases().len() {
        let out = run(&mut r.client, case_request(i)).await;
        assert!(out.error.is_none(), "case {i}: {:?}", out.error);
        let want = tensor(&fixture(i), "latents_final");
        let got = out.latents.expect("latents");
        assert_eq!(got.shape, want.shape);
        let d = max_diff(&got.data, &want.data);
        assert!(d <= 1e-3, "case {i}: max abs diff {d}");
        let steps = cases()[i]["steps"].as_u64().unwrap() as u32;
        let progress: Vec<u32> =
            out.events.iter().filter_map(|e| if let Ev::Progress(p) = e { Some(p.step) } else { None }).collect();
        assert_eq!(progress, (1..=steps).collect::<Vec<_>>());
        assert!(matches!(out.events.first(), Some(Ev::Accepted(_))));
        assert!(matches!(out.events.last(), Some(Ev::Completed(c)) if c.steps == steps));
    }
}

#[tokio::test]
async fn concurrent_requests_share_each_step_and_equal_their_solo_runs() {
    let r = start(Config::default()).await;
    let reqs: Vec<DenoiseRequest> =
        (0..4).map(|k| DenoiseRequest { seed: 100 + k, steps: 20, ..case_request(0) }).collect();
    let (together, widest) = run_together(&r, &reqs).await;
    assert_eq!(widest, 4, "all four requests shared at least one DiT call");
    // The metric agrees: fewer DiT calls than request-steps.
    let calls = metric(&r, "denoiser_batch_requests") - 1.0; // minus the warm-up call
    assert!(calls < 80.0, "{calls} DiT calls for 4 x 20 steps");
    for (q, t) in reqs.into_iter().zip(&together) {
        let solo = run(&mut r.client.clone(), q).await;
        let d = max_diff(&t.latents.as_ref().unwrap().data, &solo.latents.unwrap().data);
        assert!(d <= 1e-5, "batched vs solo: {d}");
    }
}

#[tokio::test]
async fn dropping_the_stream_stops_work_within_one_step() {
    let mut r = start(Config::default()).await;
    let before = metric(&r, "denoiser_steps_total");
    let req = DenoiseRequest { steps: 200, ..case_request(2) };
    let mut stream = r.client.denoise(req).await.unwrap().into_inner();
    let mut seen = 0;
    while seen < 3 {
        if let Some(Ev::Progress(p)) = stream.message().await.unwrap().unwrap().event {
            seen = p.step;
        }
    }
    drop(stream);
    let gone = async {
        while metric(&r, "denoiser_requests_total") < 2.0 {
            // warm-up completed + this one cancelled
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), gone).await.expect("cancellation observed");
    let ran = metric(&r, "denoiser_steps_total") - before;
    assert!(ran <= f64::from(seen) + 1.0, "{ran} steps ran after cancelling at step {seen}");
}

#[tokio::test]
async fn sigterm_drain_finishes_in_flight_work_and_refuses_new_work() {
    let mut r = start(Config::default()).await;
    let mut stream = r.client.denoise(DenoiseRequest { steps: 30, ..case_request(0) }).await.unwrap().into_inner();
    stream.message().await.unwrap(); // accepted
    r.s.shutdown.cancel();
    let refused = r.client.denoise(case_request(0)).await;
    assert!(refused.is_err(), "new work is refused while draining");
    let mut completed = false;
    while let Some(ev) = stream.message().await.unwrap() {
        completed |= matches!(ev.event, Some(Ev::Completed(_)));
    }
    assert!(completed, "the in-flight request finished");
    tokio::time::timeout(Duration::from_secs(30), r.s.task).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn health_is_not_serving_until_warm_up() {
    let (open, gate) = oneshot::channel::<()>();
    let mut r = start_gated(Config::default(), async move {
        let _ = gate.await;
    })
    .await;
    let status = r.health.check(HealthCheckRequest { service: SERVICE_NAME.into() }).await.unwrap().into_inner();
    assert_eq!(status.status, ServingStatus::NotServing as i32);
    assert_eq!(r.client.denoise(case_request(3)).await.unwrap_err().code(), Code::Unavailable);
    open.send(()).unwrap();
    wait_serving(r.s.addr, SERVICE_NAME).await.unwrap();
    // One step at each probe shape (8 and 16 frames: the frame axis must follow the input).
    assert_eq!(metric(&r, "denoiser_steps_total"), 2.0, "warm-up ran one step per probe before SERVING");
    assert_eq!(metric(&r, "denoiser_active_requests"), 0.0, "the warm-up request is gone");
    assert!(run(&mut r.client, case_request(3)).await.error.is_none());
}

fn f32_tensor(shape: &[u64], data: &[f32]) -> Tensor {
    Tensor {
        dtype: DataType::Float32 as i32,
        shape: shape.to_vec(),
        data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_the_server_stays_up() {
    let mut r = start(Config::default()).await;
    let base = case_request(3);
    let mut nan = vec![0.5f32; 3 * 384];
    nan[7] = f32::NAN;
    let cases: Vec<(DenoiseRequest, Code, &str)> = vec![
        (DenoiseRequest { model: "other".into(), ..base.clone() }, Code::NotFound, "not served here"),
        (DenoiseRequest { frames: 100_000, ..base.clone() }, Code::InvalidArgument, "100000 frames is not supported"),
        (
            DenoiseRequest { height: 63, width: 64, ..base.clone() },
            Code::InvalidArgument,
            "size 64x63 (width x height)",
        ),
        (DenoiseRequest { steps: 100_000, ..base.clone() }, Code::InvalidArgument, "steps 100000"),
        (DenoiseRequest { guidance: Some(f32::NAN), ..base.clone() }, Code::InvalidArgument, "guidance"),
        (DenoiseRequest { shift: Some(-1.0), ..base.clone() }, Code::InvalidArgument, "shift"),
        (DenoiseRequest { scheduler: "magic".into(), ..base.clone() }, Code::InvalidArgument, "scheduler"),
        (DenoiseRequest { prompt_states: None, ..base.clone() }, Code::InvalidArgument, "prompt_states is missing"),
        (
            DenoiseRequest { prompt_states: Some(f32_tensor(&[3, 384], &nan)), ..base.clone() },
            Code::InvalidArgument,
            "non-finite",
        ),
        (
            DenoiseRequest { prompt_states: Some(f32_tensor(&[2, 100], &[0.0; 200])), ..base.clone() },
            Code::InvalidArgument,
            "expected [tokens <= 48, 384]",
        ),
        (
            DenoiseRequest { prompt_states: Some(f32_tensor(&[49, 384], &vec![0.0; 49 * 384])), ..base.clone() },
            Code::InvalidArgument,
            "prompt_states has shape [49, 384]",
        ),
        (
            DenoiseRequest {
                prompt_states: Some(Tensor { dtype: DataType::Float32 as i32, shape: vec![2, 384], data: vec![0; 7] }),
                ..base.clone()
            },
            Code::InvalidArgument,
            "bytes",
        ),
        (
            DenoiseRequest {
                prompt_states: Some(Tensor { dtype: DataType::Int64 as i32, ..base.prompt_states.clone().unwrap() }),
                ..base.clone()
            },
            Code::InvalidArgument,
            "must be float32",
        ),
        (DenoiseRequest { negative_states: None, ..base.clone() }, Code::Ok, ""), // guidance 1: no negative needed
        (
            DenoiseRequest { negative_states: None, guidance: Some(4.0), ..base.clone() },
            Code::InvalidArgument,
            "negative_states is required",
        ),
        (DenoiseRequest { strength: 0.5, ..base.clone() }, Code::InvalidArgument, "init_latents is missing"),
        (
            DenoiseRequest { init_latents: Some(f32_tensor(&[8, 1, 1, 1], &[0.0; 8])), strength: 0.5, ..base.clone() },
            Code::InvalidArgument,
            "init_latents has shape",
        ),
        (DenoiseRequest { preview_every: 99, ..base.clone() }, Code::InvalidArgument, "preview_every"),
    ];
    for (req, code, text) in cases {
        let out = run(&mut r.client, req).await;
        match (code, out.error) {
            (Code::Ok, None) => {}
            (code, Some(e)) => {
                assert_eq!(e.code(), code, "{}", e.message());
                assert!(e.message().contains(text), "{:?} lacks {text:?}", e.message());
            }
            (code, None) => panic!("expected {code:?} containing {text:?}"),
        }
    }
    assert!(run(&mut r.client, base).await.latents.is_some(), "still serving");
}

#[tokio::test]
async fn overload_is_refused_with_retry_info() {
    let mut config = Config::default();
    config.batching.max_requests = 1;
    let mut r = start(config).await;
    let mut first = r.client.denoise(DenoiseRequest { steps: 200, ..case_request(2) }).await.unwrap().into_inner();
    first.message().await.unwrap();
    let err = r.client.denoise(case_request(3)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(vidmesh_runtime::status::retry_after(&err), Some(Duration::from_secs(1)));
    assert_eq!(err.metadata().get("retry-after").unwrap(), "1");
    drop(first);
}

#[tokio::test]
async fn deadline_is_honoured() {
    let mut r = start(Config::default()).await;
    let mut req = tonic::Request::new(DenoiseRequest { steps: 200, ..case_request(2) });
    req.set_timeout(Duration::from_millis(300));
    let mut stream = r.client.denoise(req).await.unwrap().into_inner();
    let err = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("completed despite the deadline"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled), "{err:?}");
}

#[tokio::test]
async fn previews_and_init_latents() {
    let mut r = start(Config::default()).await;
    let plain = run(&mut r.client, DenoiseRequest { steps: 8, ..case_request(0) }).await;
    let previews = plain.events.iter().filter(|e| matches!(e, Ev::Preview(_))).count();
    assert_eq!(previews, 0);
    let with = run(&mut r.client, DenoiseRequest { steps: 8, preview_every: 2, ..case_request(0) }).await;
    let steps: Vec<u32> =
        with.events.iter().filter_map(|e| if let Ev::Preview(p) = e { Some(p.step) } else { None }).collect();
    assert_eq!(steps, vec![2, 4, 6]);
    assert_eq!(with.latents, plain.latents, "previews do not change the result");
    // strength 1 starts from pure noise: identical to no init; strength 0.5 runs half the schedule.
    let init = plain.latents.clone().unwrap();
    let full = run(
        &mut r.client,
        DenoiseRequest { steps: 8, init_latents: Some(init.to_proto()), strength: 1.0, ..case_request(0) },
    )
    .await;
    assert_eq!(full.latents, plain.latents);
    let half = run(
        &mut r.client,
        DenoiseRequest { steps: 8, init_latents: Some(init.to_proto()), strength: 0.5, ..case_request(0) },
    )
    .await;
    assert!(matches!(half.events.first(), Some(Ev::Accepted(a)) if a.total_steps == 4));
    let other = run(&mut r.client, DenoiseRequest { steps: 8, seed: 9, ..case_request(0) }).await;
    let mean = |a: &[f32]| a.iter().zip(&init.data).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32;
    let (near, far) = (mean(&half.latents.unwrap().data), mean(&other.latents.unwrap().data));
    assert!(near < far, "half-strength result stays nearer its init ({near}) than another seed's video ({far})");
}

#[tokio::test]
async fn reflection_lists_the_service_and_health() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let r = start(Config::default()).await;
    let mut client = ServerReflectionClient::new(r.s.channel.clone());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = client.server_reflection_info(futures::stream::iter([req])).await.unwrap().into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message().await.unwrap().unwrap().message_response
    else {
        panic!("no service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&SERVICE_NAME.to_string()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_string()), "{names:?}");
}

#[tokio::test]
async fn requests_larger_than_grpcs_default_limit_are_accepted_up_to_the_configured_size() {
    let mut r = start(Config::default()).await;
    // 5 MiB of (invalid-shaped) init latents: over gRPC's 4 MiB default, under the 64 MiB configured limit, so the
    // request reaches validation and gets a precise answer instead of a transport error.
    let big = f32_tensor(&[8, 4, 16, 16 * 80], &vec![0.0; 8 * 4 * 16 * 16 * 80]);
    let req = DenoiseRequest { init_latents: Some(big), strength: 0.5, ..case_request(3) };
    let err = run(&mut r.client, req).await.error.unwrap();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("init_latents has shape"), "{}", err.message());
}

fn io_bound() -> Config {
    Config { io_binding: vidmesh_denoiser::config::IoBinding::On, ..Config::default() }
}

/// The device-resident loop (IO binding, here on the CPU provider: the same code path as on CUDA) reproduces the
/// golden latents and the host loop's results, and moves latents between host and device only when a request
/// joins or leaves — never per step.
#[tokio::test]
async fn io_binding_matches_the_host_loop_and_moves_no_latents_per_step() {
    let mut dev = start(io_bound()).await;
    let mut host = start(Config::default()).await;
    for i in 0..cases().len() {
        let got = run(&mut dev.client, case_request(i)).await.latents.expect("latents");
        let want = tensor(&fixture(i), "latents_final");
        let d = max_diff(&got.data, &want.data);
        assert!(d <= 1e-3, "case {i}: max abs diff {d} from the reference sampler");
        let h = run(&mut host.client, case_request(i)).await.latents.unwrap();
        let d = max_diff(&got.data, &h.data);
        assert!(d <= 1e-5, "case {i}: device loop vs host loop {d}");
    }
    assert_eq!(metric(&host, "denoiser_transfer_bytes_total"), 0.0, "the host loop binds nothing");
    let mut moved = vec![];
    for steps in [5, 20] {
        let before = metric(&dev, "denoiser_transfer_bytes_total");
        let out = run(&mut dev.client, DenoiseRequest { steps, ..case_request(0) }).await;
        assert!(out.latents.is_some());
        moved.push(metric(&dev, "denoiser_transfer_bytes_total") - before);
    }
    assert!(moved[0] > 0.0);
    assert_eq!(moved[0], moved[1], "bytes moved do not grow with the number of steps");
    // Every scheduler kind the model supports, with previews, against the host loop.
    for scheduler in ["flow_match_euler", "flow_match_dpmpp_2m"] {
        let req = DenoiseRequest { steps: 8, preview_every: 3, scheduler: scheduler.into(), ..case_request(1) };
        let (a, b) = (run(&mut dev.client, req.clone()).await, run(&mut host.client, req).await);
        let previews = |o: &Outcome| -> Vec<(u32, usize)> {
            o.events
                .iter()
                .filter_map(|e| {
                    if let Ev::Preview(p) = e {
                        Some((p.step, p.x0.as_ref().map_or(0, |t| t.data.len())))
                    } else {
                        None
                    }
                })
                .collect()
        };
        assert_eq!(previews(&a), previews(&b), "{scheduler}: same previews");
        let d = max_diff(&a.latents.unwrap().data, &b.latents.unwrap().data);
        assert!(d <= 1e-4, "{scheduler}: device loop vs host loop {d}");
    }
}

#[tokio::test]
async fn io_binding_batches_concurrent_requests_each_equal_to_its_solo_run() {
    let r = start(io_bound()).await;
    let reqs: Vec<DenoiseRequest> =
        (0..4).map(|k| DenoiseRequest { seed: 200 + k, steps: 12 + 2 * k as u32, ..case_request(0) }).collect();
    let (together, widest) = run_together(&r, &reqs).await;
    assert_eq!(widest, 4, "all four requests shared at least one DiT call");
    for (q, t) in reqs.into_iter().zip(&together) {
        let solo = run(&mut r.client.clone(), q).await;
        let d = max_diff(&t.latents.as_ref().unwrap().data, &solo.latents.unwrap().data);
        assert!(d <= 1e-5, "batched vs solo: {d}");
    }
}

/// Keyframes (RePaint-style): the pinned latent frames come out exactly as given, the others are generated (and
/// differ from a run without pins); malformed keyframes are refused before any step.
#[tokio::test]
async fn keyframes_come_out_exactly_as_pinned() {
    use vidmesh_proto::denoiser::v1::Keyframes;
    let mut r = start(Config::default()).await;
    let plain = run(&mut r.client, DenoiseRequest { steps: 6, ..case_request(0) }).await.latents.unwrap();
    let [c, t, h, w] = [plain.shape[0], plain.shape[1], plain.shape[2], plain.shape[3]];
    // Pin latent frames 0 and 2 to another seed's video.
    let other = run(&mut r.client, DenoiseRequest { steps: 6, seed: 9, ..case_request(0) }).await.latents.unwrap();
    let pins = other.frames(0, 1).concat_frames(&other.frames(2, 3));
    let keyframes = Keyframes { latents: Some(pins.to_proto()), positions: vec![0, 2], strength: 0.0 };
    let req = DenoiseRequest { steps: 6, keyframes: Some(keyframes.clone()), ..case_request(0) };
    let pinned = run(&mut r.client, req).await.latents.unwrap();
    assert_eq!(pinned.frames(0, 1), other.frames(0, 1));
    assert_eq!(pinned.frames(2, 3), other.frames(2, 3));
    assert_ne!(pinned.frames(1, 2), plain.frames(1, 2), "the free frames follow the pinned ones");
    assert_eq!(pinned.shape, vec![c, t, h, w]);
    // With a strength, the free frames start from their nearest keyframe part-way: fewer steps, pins still exact.
    let started = Keyframes { strength: 0.5, ..keyframes.clone() };
    let out = run(&mut r.client, DenoiseRequest { steps: 6, keyframes: Some(started), ..case_request(0) }).await;
    assert!(matches!(out.events.first(), Some(Ev::Accepted(a)) if a.total_steps == 3));
    let from_pins = out.latents.unwrap();
    assert_eq!(from_pins.frames(2, 3), other.frames(2, 3));
    assert_ne!(from_pins, pinned);

    let bad = |k: Keyframes| DenoiseRequest { steps: 6, keyframes: Some(k), ..case_request(0) };
    for (req, why) in [
        (bad(Keyframes { positions: vec![2, 0], ..keyframes.clone() }), "increasing"),
        (bad(Keyframes { positions: vec![0, t as u32], ..keyframes.clone() }), "below"),
        (bad(Keyframes { positions: vec![0], ..keyframes.clone() }), "keyframes.latents has shape"),
        (bad(Keyframes { strength: 1.5, ..keyframes.clone() }), "keyframes.strength"),
        (
            DenoiseRequest {
                init_latents: Some(plain.to_proto()),
                strength: 0.5,
                ..bad(Keyframes { strength: 0.5, ..keyframes.clone() })
            },
            "exclude each other",
        ),
    ] {
        let err = r.client.denoise(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(why), "{}", err.message());
    }
}
