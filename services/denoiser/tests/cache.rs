//! Step caching over gRPC on the vidmesh-tiny bundle (which carries `[dit.cache]`): tiers compose with step-level
//! batching (each request's skips depend on its own rows only), and bad tiers are refused.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use tonic::Code;
use vidmesh_denoiser::Config;
use vidmesh_proto::denoiser::v1::DenoiseRequest;

fn tiered(seed: u64, cache: &str) -> DenoiseRequest {
    DenoiseRequest { seed, steps: 30, cache: cache.into(), ..case_request(0) }
}

#[tokio::test]
async fn tiers_in_one_batch_each_equal_their_solo_run() {
    let r = start(Config::default()).await;
    let reqs = vec![tiered(11, "off"), tiered(12, "balanced"), tiered(13, "fast"), tiered(14, "balanced")];
    let (together, widest) = run_together(&r, &reqs).await;
    assert_eq!(widest, 4, "all four requests shared at least one DiT call");
    let skipped = metric_labeled(&r, "denoiser_cache_steps_total", "skipped");
    let ran = metric_labeled(&r, "denoiser_cache_steps_total", "run");
    assert!(skipped > 0.0 && ran > 0.0, "the tiered requests skipped {skipped} and ran {ran} DiT tails");
    let mut worst = 0f32;
    for (q, t) in reqs.iter().zip(&together) {
        assert!(t.error.is_none(), "{}: {:?}", q.cache, t.error);
        let solo = run(&mut r.client.clone(), q.clone()).await;
        let d = max_diff(&t.latents.as_ref().unwrap().data, &solo.latents.unwrap().data);
        assert!(d <= 1e-5, "{} (seed {}): batched vs solo differ by {d}", q.cache, q.seed);
        worst = worst.max(d);
    }
    eprintln!("4 tiers in one batch: worst |batched - solo| = {worst:e}; DiT tails skipped {skipped}, run {ran}");
}

#[tokio::test]
async fn a_cached_tier_changes_the_result_a_little_and_off_is_the_whole_graph() {
    let mut r = start(Config::default()).await;
    let off = run(&mut r.client, tiered(21, "off")).await.latents.unwrap();
    let fast = run(&mut r.client, tiered(21, "fast")).await.latents.unwrap();
    let default = run(&mut r.client, tiered(21, "")).await.latents.unwrap();
    assert_eq!(off.data, default.data, "the bundle's default tier is off");
    let d = max_diff(&off.data, &fast.data);
    let scale = off.data.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(d > 0.0 && d < 0.5 * scale, "fast vs off: {d} (latents up to {scale})");
    // `off` through the split graphs equals the reference sampler's whole-graph run (fixture case 0).
    let want = tensor(&fixture(0), "latents_final");
    let exact = run(&mut r.client, DenoiseRequest { cache: "off".into(), ..case_request(0) }).await;
    assert!(max_diff(&exact.latents.unwrap().data, &want.data) <= 1e-3);
}

#[tokio::test]
async fn unknown_tiers_are_invalid_arguments_and_the_stage_stays_up() {
    let mut r = start(Config::default()).await;
    let out = run(&mut r.client, tiered(1, "turbo")).await;
    let e = out.error.expect("refused");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("\"turbo\"") && e.message().contains("balanced"), "{}", e.message());
    assert!(run(&mut r.client, tiered(1, "fast")).await.error.is_none());
}

fn metric_labeled(r: &Running, name: &str, label: &str) -> f64 {
    let families = r.s.registry.gather();
    let f = families.iter().find(|f| f.name() == name).unwrap();
    f.get_metric()
        .iter()
        .filter(|m| m.get_label().iter().any(|l| l.value() == label))
        .map(|m| m.get_counter().get_value())
        .sum()
}
