"""Golden fixtures from diffusers' own LTXPipeline (fp32, CPU) for the Rust side's LTX-Video parity tests.

  python -m vidmesh_export.goldens_ltx --src models/work/ltx-tiny-src --bundle models/ltx-tiny \
      --out models/fixtures/ltx-tiny

Each case is one `LTXPipeline.__call__(prompt, negative_prompt, height, width, num_frames, frame_rate,
num_inference_steps, guidance_scale, guidance_rescale, latents=..., decode_timestep, decode_noise_scale,
output_type="np")` with
  latents = gaussian(seed, n) (stream 0) as [1, C, T', h, w], packed with LTXPipeline._pack_latents into the
            [1, T'*h*w, C] token layout that prepare_latents returns (it returns given latents unchanged);
  the decode noise = gaussian(seed, n, stream=STREAM_DECODE) as [1, C, T', h, w]: the pipeline module's
            `randn_tensor` is replaced for that call only (it is called exactly once, for the decode noise, since
            the initial latents are given; the replacement checks the shape it is asked for);
  decode_timestep / decode_noise_scale = the bundle's [vae] values (0.05 / 0.025 for the tiny).

Per case `caseN.safetensors` (no batch axis anywhere):
  input_ids, neg_input_ids      int64 [L]          the tokenizer's ids incl. the trailing </s>, no padding
  text_states, neg_text_states  f32 [128, D]       what the pipeline hands the transformer: T5 (no mask) over the
                                                   ids padded to max_sequence_length 128, padding states kept
  noise                         f32 [C, T', h, w]  vidmesh_tiny.noise.gaussian(seed, n), stream 0
  decode_noise                  f32 [C, T', h, w]  gaussian(seed, n, stream=STREAM_DECODE)
  velocity_uncond_step1         f32 [C, T', h, w]  the transformer's output at the first step, negative-prompt
  velocity_cond_step1           f32 [C, T', h, w]  row and prompt row (the pipeline batches [uncond, cond])
  latents_step1, latents_final  f32 [C, T', h, w]  after the first / last scheduler step (callback_on_step_end),
                                                   before de-normalisation, unpacked with _unpack_latents
  frames                        f32 [F, H, W, 3]   LTXPipeline(output_type="np") in [0, 1]
  sigmas                        f32 [steps + 1]    FlowMatchEulerDiscreteScheduler.sigmas as used (last = 0)
  timesteps                     f32 [steps]        its timesteps (sigma * 1000), fed to the DiT as they are
cases.json: prompt, negative_prompt, seed (string: u64), frames, height, width, steps, guidance, guidance_rescale
(LTXPipeline's CFG rescale factor, arXiv 2305.08891 §3.4; 0 = off), shift (the
scheduler config's static shift, unused with dynamic shifting), fps (frame_rate), decode_timestep,
decode_noise_scale, mu (calculate_shift of T'*h*w as the pipeline computed it), latent_shape, real_tokens,
neg_real_tokens and the bundle replay's max abs differences.

Cases: two sizes of different aspect ratio (64x96, 96x64) x two 8k+1 frame counts (9, 17), frame_rate 24 and 25,
6-10 steps, four prompts, two with a negative prompt, seeds 42, 7, 2**63 + 12345 and 0; guidance_rescale 0 (the
pipeline's default) except the last case, 0.7: the pipeline then applies rescale_noise_cfg to the guided velocity
every step, v = r * v * (std(v_cond) / std(v)) + (1 - r) * v, std Bessel-corrected over all of the row.

Guarantees: the fixture is what diffusers computes; `replay()` then re-runs every case from the exported bundle
(tokenizer.json + the ONNX graphs through ONNX Runtime, diffusers' scheduler, vidmesh's de-normalisation and
decode-noise mixing in numpy) and records the max abs differences in cases.json, failing above 1e-3 on any of
them (measured: ~1e-6): bundle and fixture agree.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vidmesh_tiny.noise import STREAM_DECODE, gaussian  # noqa: E402

from .goldens import PROMPTS, frames_diff, load_pipeline, parser, save_case, write_cases  # noqa: E402

NEGATIVE_PROMPTS = ["", "soft focus, close up shot", "", "a dog waits in the rain"]
CASES = [  # (frames, height, width, steps, seed, fps, guidance_rescale)
    (9, 64, 96, 8, 42, 25, 0.0),
    (17, 64, 96, 6, 7, 24, 0.0),
    (9, 96, 64, 10, 2**63 + 12345, 24, 0.0),
    (17, 96, 64, 7, 0, 25, 0.7),
]
MAX_TOKENS = 128


def _unpack(pipe, packed: torch.Tensor, shape: tuple) -> np.ndarray:  # noqa: ANN001
    """[1, S, C] token layout -> [C, T', h, w] (LTXPipeline._unpack_latents, batch axis dropped)."""
    _, t, h, w = shape
    return pipe._unpack_latents(packed.detach().float(), t, h, w, pipe.transformer_spatial_patch_size,
                                pipe.transformer_temporal_patch_size)[0].numpy().copy()


def run_case(pipe, prompt: str, negative: str, frames: int, height: int, width: int, steps: int, seed: int,  # noqa: ANN001
             fps: int, guidance: float, guidance_rescale: float, decode_timestep: float,
             decode_noise_scale: float) -> tuple[dict, dict]:
    import diffusers.pipelines.ltx.pipeline_ltx as ltx_module

    tok = pipe.tokenizer
    ids = tok(prompt, add_special_tokens=True).input_ids
    neg_ids = tok(negative, add_special_tokens=True).input_ids
    c = pipe.transformer.config.in_channels
    shape = (c, (frames - 1) // pipe.vae_temporal_compression_ratio + 1,
             height // pipe.vae_spatial_compression_ratio, width // pipe.vae_spatial_compression_ratio)
    n = int(np.prod(shape))
    noise = gaussian(seed, n).reshape(shape)
    decode_noise = gaussian(seed, n, stream=STREAM_DECODE).reshape(shape)
    latents = pipe._pack_latents(torch.from_numpy(noise)[None], pipe.transformer_spatial_patch_size,
                                 pipe.transformer_temporal_patch_size)
    seen: dict[int, np.ndarray] = {}

    def cb(p, i, t, kw):  # noqa: ANN001, ANN202
        seen[i] = _unpack(p, kw["latents"], shape)
        return {}

    calls: list[dict] = []

    def grab(module, args, kwargs, output):  # noqa: ANN001, ANN202
        if not calls:
            calls.append({"out": output[0].detach().float().clone(),
                          "states": kwargs["encoder_hidden_states"].detach().float().clone(),
                          "mask": kwargs["encoder_attention_mask"].detach().clone(),
                          "timestep": kwargs["timestep"].detach().clone(),
                          "rope": kwargs["rope_interpolation_scale"]})

    drawn: list[tuple] = []

    def decode_randn(shp, generator=None, device=None, dtype=None, layout=None):  # noqa: ANN001, ANN202, ARG001
        if tuple(shp) != (1, *shape):
            raise SystemExit(f"randn_tensor asked for {tuple(shp)}, expected the decode noise {(1, *shape)}")
        drawn.append(tuple(shp))
        return torch.from_numpy(decode_noise.copy())[None].to(dtype or torch.float32)

    hook = pipe.transformer.register_forward_hook(grab, with_kwargs=True)
    original = ltx_module.randn_tensor
    ltx_module.randn_tensor = decode_randn
    try:
        with torch.no_grad():
            out = pipe(prompt=prompt, negative_prompt=negative, height=height, width=width, num_frames=frames,
                       frame_rate=fps, num_inference_steps=steps, guidance_scale=guidance,
                       guidance_rescale=guidance_rescale, latents=latents,
                       decode_timestep=decode_timestep, decode_noise_scale=decode_noise_scale, output_type="np",
                       callback_on_step_end=cb, callback_on_step_end_tensor_inputs=["latents"],
                       max_sequence_length=MAX_TOKENS).frames[0]
    finally:
        ltx_module.randn_tensor = original
        hook.remove()
    if len(drawn) != 1:
        raise SystemExit(f"expected one randn_tensor call (the decode noise), saw {len(drawn)}")
    first = calls[0]
    if first["out"].shape[0] != 2:
        raise SystemExit("expected the pipeline's batched [uncond, cond] transformer call")
    # The states the pipeline hands the transformer are its own prompt embeddings, [negative, prompt].
    with torch.no_grad():
        pe, pm = pipe._get_t5_prompt_embeds(prompt=prompt, max_sequence_length=MAX_TOKENS, device=torch.device("cpu"))
        ne, nm = pipe._get_t5_prompt_embeds(prompt=negative, max_sequence_length=MAX_TOKENS,
                                            device=torch.device("cpu"))
    if not (torch.equal(first["states"][0], ne[0]) and torch.equal(first["states"][1], pe[0])):
        raise SystemExit("the transformer's text states are not the pipeline's [negative, prompt] embeddings")
    if [int(pm[0].sum()), int(nm[0].sum())] != [len(ids), len(neg_ids)]:
        raise SystemExit("pipeline attention mask length differs from the unpadded ids")
    sched = pipe.scheduler
    mu = ltx_module.calculate_shift(shape[1] * shape[2] * shape[3], sched.config.get("base_image_seq_len", 256),
                                    sched.config.get("max_image_seq_len", 4096), sched.config.get("base_shift", 0.5),
                                    sched.config.get("max_shift", 1.15))
    fx = {
        "input_ids": np.asarray(ids, dtype=np.int64), "neg_input_ids": np.asarray(neg_ids, dtype=np.int64),
        "text_states": first["states"][1].numpy().copy(), "neg_text_states": first["states"][0].numpy().copy(),
        "noise": noise, "decode_noise": decode_noise,
        "velocity_uncond_step1": _unpack(pipe, first["out"][0:1], shape),
        "velocity_cond_step1": _unpack(pipe, first["out"][1:2], shape),
        "latents_step1": seen[0], "latents_final": seen[steps - 1],
        "frames": np.asarray(out, dtype=np.float32),
        "sigmas": sched.sigmas.float().numpy().copy(),
        "timesteps": sched.timesteps.float().numpy().copy(),
    }
    info = {"mu": float(mu), "rope_interpolation_scale": [float(x) for x in first["rope"]],
            "first_timestep": float(first["timestep"][0])}
    return fx, info


def rescale_cfg(guided: np.ndarray, v_cond: np.ndarray, r: float) -> np.ndarray:
    """diffusers' rescale_noise_cfg on one row (float32): std with Bessel's correction over all its elements."""
    if r <= 0:  # LTXPipeline: `if self.guidance_rescale > 0`
        return guided
    std_text, std_cfg = v_cond.std(ddof=1), guided.std(ddof=1)
    return (np.float32(r) * (guided * (std_text / std_cfg)) + np.float32(1 - r) * guided).astype(np.float32)


def replay(bundle: Path, case: dict, fx: dict, pipe) -> dict:  # noqa: ANN001
    """Re-run one case from the bundle (ORT graphs, tokenizer.json, diffusers' scheduler); max abs diffs."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from tokenizers import Tokenizer

    from .onnx_util import session

    m = tomllib.loads((bundle / "model.toml").read_text())
    te_m, dit_m, vae = m["text_encoder"], m["dit"], m["vae"]
    tok = Tokenizer.from_file(str(bundle / te_m["tokenizer"]))
    te, n_max = session(bundle / te_m["file"]), te_m["max_tokens"]
    dit = session(bundle / dit_m["file"])
    diff: dict = {}

    def encode(text: str, ids_key: str, states_key: str) -> tuple[np.ndarray, np.ndarray]:
        ids = tok.encode(text).ids
        diff[f"{ids_key}_equal"] = ids == fx[ids_key].tolist()
        padded = np.zeros((1, n_max), np.int64)  # pad id 0, padding = "max_length"
        padded[0, : len(ids)] = ids
        ones = np.ones((1, n_max), np.int64)  # encoder_mask = false
        h = te.run(None, {"input_ids": padded, "attention_mask": ones})[0]
        diff[states_key] = float(np.abs(h[0] - fx[states_key]).max())
        return h, (np.arange(n_max) < len(ids)).astype(np.int64)[None]  # states kept, DiT mask = real tokens

    cond, cond_mask = encode(case["prompt"], "input_ids", "text_states")
    uncond, uncond_mask = encode(case["negative_prompt"], "neg_input_ids", "neg_text_states")
    states = np.concatenate([uncond, cond])  # cfg_batched, the pipeline's order: [uncond, cond]
    masks = np.concatenate([uncond_mask, cond_mask])
    fps = np.full((2,), case["fps"], np.float32)
    sched = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    steps = case["steps"]
    sched.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=case["mu"])
    diff["sigmas"] = float(np.abs(sched.sigmas.numpy() - fx["sigmas"]).max())
    x = torch.from_numpy(fx["noise"])[None]
    names = dit_m["names"]
    for i, t in enumerate(sched.timesteps):
        xs = np.concatenate([x.numpy()] * 2)
        v = dit.run([names["output"]], {names["latents"]: xs, names["timestep"]: np.full((2,), float(t), np.float32),
                                        names["text_states"]: states, names["text_mask"]: masks,
                                        dit_m["extra_inputs"][0]["name"]: fps})[0]
        v_u, v_c = v[0:1], v[1:2]
        if i == 0:
            diff["velocity_uncond_step1"] = float(np.abs(v_u[0] - fx["velocity_uncond_step1"]).max())
            diff["velocity_cond_step1"] = float(np.abs(v_c[0] - fx["velocity_cond_step1"]).max())
        guided = torch.from_numpy(rescale_cfg(v_u + np.float32(case["guidance"]) * (v_c - v_u), v_c,
                                              case["guidance_rescale"]))
        x = sched.step(guided, t, x, return_dict=False)[0]
        if i == 0:
            diff["latents_step1"] = float(np.abs(x[0].numpy() - fx["latents_step1"]).max())
    diff["latents_final"] = float(np.abs(x[0].numpy() - fx["latents_final"]).max())
    # Decode the fixture's final latents: z = x * std / sf + mean, z = (1 - s) z + s noise, decoder(z, t).
    mean = np.asarray(vae["latents_mean"], np.float32).reshape(1, -1, 1, 1, 1)
    std = np.asarray(vae["latents_std"], np.float32).reshape(1, -1, 1, 1, 1)
    z = fx["latents_final"][None] * std / np.float32(vae["scaling_factor"]) + mean
    s = np.float32(vae["decode_noise_scale"])
    z = ((np.float32(1) - s) * z + s * fx["decode_noise"][None]).astype(np.float32)
    dec = session(bundle / vae["decoder"]["file"])
    video = dec.run([vae["names"]["video"]], {vae["names"]["latents"]: z,
                                               vae["names"]["timestep"]: np.array([vae["decode_timestep"]],
                                                                                  np.float32)})[0][0]
    diff["frames"] = frames_diff(video, fx)
    return diff


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--guidance", type=float, default=3.0, help="LTXPipeline's default guidance_scale")
    a = ap.parse_args()
    torch.set_num_threads(1)
    from diffusers import LTXPipeline

    m = tomllib.loads((a.bundle / "model.toml").read_text())
    decode_timestep, decode_noise_scale = m["vae"]["decode_timestep"], m["vae"]["decode_noise_scale"]
    pipe = load_pipeline(LTXPipeline, a.src)
    a.out.mkdir(parents=True, exist_ok=True)
    meta = []
    worst = 0.0
    for k, ((frames, height, width, steps, seed, fps, rescale), prompt, negative) in enumerate(
            zip(CASES, PROMPTS, NEGATIVE_PROMPTS)):
        fx, info = run_case(pipe, prompt, negative, frames, height, width, steps, seed, fps, a.guidance, rescale,
                            decode_timestep, decode_noise_scale)
        name = save_case(a.out, k, fx)
        case = {"file": name, "prompt": prompt, "negative_prompt": negative, "seed": str(seed), "frames": frames,
                "height": height, "width": width, "steps": steps, "guidance": a.guidance,
                "guidance_rescale": rescale,
                "shift": float(pipe.scheduler.config.shift), "fps": fps,
                "decode_timestep": decode_timestep, "decode_noise_scale": decode_noise_scale, "mu": info["mu"],
                "rope_interpolation_scale": info["rope_interpolation_scale"],
                "latent_shape": list(fx["noise"].shape), "real_tokens": len(fx["input_ids"]),
                "neg_real_tokens": len(fx["neg_input_ids"])}
        r = replay(a.bundle, case, fx, pipe)
        case["bundle_replay_max_abs_diff"] = r
        for key, v in r.items():
            if isinstance(v, bool):
                if not v:
                    raise SystemExit(f"{name}: tokenizer.json ids differ from the pipeline tokenizer's ({key})")
            else:
                worst = max(worst, v)
        meta.append(case)
        print(f"{name}: {frames}x{height}x{width} @ {fps} fps, {steps} steps, seed {seed}, rescale {rescale}: "
              f"replay {r}")
    doc = {"pipeline": "diffusers LTXPipeline, float32, CPU", "source": a.src.name, "bundle": a.bundle.name,
           "noise": "vidmesh_tiny.noise.gaussian(seed, C*T'*h*w).reshape(1, C, T', h, w), packed with "
                    "LTXPipeline._pack_latents to [1, T'*h*w, C], passed as latents=",
           "decode_noise": "gaussian(seed, C*T'*h*w, stream=STREAM_DECODE = 0xFFFFFFFF).reshape(1, C, T', h, w) "
                           "in place of the pipeline's randn_tensor draw before decoding",
           "max_sequence_length": MAX_TOKENS,
           "text": "T5 over the ids padded to 128 with pad id 0, no attention mask; the transformer gets all 128 "
                   "rows and encoder_attention_mask = 1 for the real tokens (prompt + </s>)",
           "cfg": "one batched transformer call per step, rows [negative, prompt]; "
                  "v = v_uncond + guidance * (v_cond - v_uncond); if guidance_rescale r > 0 (rescale_noise_cfg): "
                  "v = r * v * (std(v_cond) / std(v)) + (1 - r) * v, std with Bessel's correction over all of the "
                  "row; x += (sigma_{i+1} - sigma_i) * v",
           "schedule": "sigmas = FlowMatchEulerDiscreteScheduler.set_timesteps(sigmas=linspace(1, 1/N, N), mu) with "
                       "mu = calculate_shift(T'*h*w, base_image_seq_len, max_image_seq_len, base_shift, "
                       "max_shift): float32 exp(mu) / (exp(mu) + (1/s - 1)), stretched to shift_terminal "
                       "(1 - (1 - s) / ((1 - s_last) / (1 - shift_terminal))); timesteps = sigmas * 1000",
           "latents_denormalise": "z = latents * latents_std / scaling_factor + latents_mean (per channel, float32)",
           "decode_noise_mix": "z = (1 - decode_noise_scale) * z + decode_noise_scale * decode_noise (float32)"}
    write_cases(a.out, worst, doc, meta)


if __name__ == "__main__":
    main()
