"""Golden fixtures from diffusers' own HunyuanVideoPipeline (fp32, CPU) for the Rust side's HunyuanVideo parity tests.

  python -m vidmesh_export.goldens_hunyuan --src models/work/hunyuan-tiny-src --bundle models/hunyuan-tiny \
      --out models/fixtures/hunyuan-tiny

Each case runs HunyuanVideoPipeline(prompt, height, width, num_frames, num_inference_steps, guidance_scale=6.0,
true_cfg_scale=1.0 and no negative prompt (one transformer call per step: the guidance is embedded),
latents=<the vidmesh noise>, output_type="np", prompt_template={"template": DEFAULT_PROMPT_TEMPLATE's text,
"crop_start": the tiny tokenizer's crop_start}, max_sequence_length=256); the VAE decodes as the pipeline does by
default (framewise = windowed, spatial tiling off).

Per case `caseN.safetensors` (no batch axis anywhere):
  input_ids       int64 [L]        Llama ids of template.format(prompt) (tokenizer max_length crop_start + 256,
                                   truncation) AFTER the crop (the prompt's tokens and <|eot_id|>), no padding
  text_states     f32 [256, D]     what the pipeline hands the transformer: hidden_states[-3] of the
                                   crop_start + 256 padded ids, first crop_start rows dropped (padding rows kept)
  input_ids_2     int64 [L2]       CLIP ids (<|startoftext|> ... <|endoftext|>), no padding
  pooled          f32 [P]          CLIPTextModel(ids padded to 77 with <|endoftext|>).pooler_output
  guidance        f32 []           the transformer's guidance input, guidance_scale * 1000
  noise           f32 [C, T', h, w] models/vidmesh_tiny/noise.py gaussian(seed, n) (stream 0), passed as latents=
  velocity_step1  f32 [C, T', h, w] the transformer's output at the first step
  latents_step1   f32 [C, T', h, w] after the first scheduler step (callback_on_step_end)
  latents_final   f32 [C, T', h, w] after the last step, before `/ scaling_factor`
  frames          f32 [F, H, W, 3]  HunyuanVideoPipeline(output_type="np") in [0, 1]
  sigmas          f32 [steps + 1]   the FlowMatchEulerDiscreteScheduler's sigmas the run used (last = 0)
  timesteps       f32 [steps]       its timesteps (sigma * 1000, fed to the transformer unrounded)
No negative tensors (negative_prompt is "" in cases.json and unused: true_cfg_scale = 1).
cases.json: prompt, negative_prompt, seed (string: u64), frames, height, width, steps, guidance, shift, fps, and
guidance_x1000, true_cfg_scale, crop_start, max_tokens, real_tokens, real_tokens_2, latent_shape, scaling_factor,
vae_windows (the latent windows [start, end) the framewise decode ran), bundle_replay_max_abs_diff.

Cases: frames 17 and 25 (5 and 7 latent frames: framewise decoding runs windows [0, 5), [3, 5) and [0, 5), [3, 7),
[6, 7), so the blending really happens) x sizes 48x64 and 64x48, 6-10 steps, one seed >= 2^63.

Guarantees: the fixture is what diffusers computes (the DiT ran exactly `steps` times, the mask it got is
`arange(256) < len(input_ids)`, its guidance input is 6000); `replay()` then re-runs every case from the exported
bundle (tokenizer.json / tokenizer_2.json + the ONNX graphs through ONNX Runtime, the Euler steps in numpy from
the manifest's shift, `hunyuan.windowed_decode` on the fixture's final latents) and records the max abs
differences in cases.json, failing above 1e-3 on any of them: bundle and fixture agree.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vidmesh_tiny.noise import gaussian  # noqa: E402

from .goldens import PROMPTS, frames_diff, load_pipeline, parser, save_case, write_cases  # noqa: E402

CASES = [  # (frames, height, width, steps, seed): two aspect ratios x two 4k+1 frame counts
    (17, 48, 64, 8, 42),
    (25, 48, 64, 6, 7),
    (17, 64, 48, 10, 2**63 + 12345),
    (25, 64, 48, 7, 0),
]
GUIDANCE = 6.0
FPS = 24
MAX_TOKENS = 256


def vae_windows(vae, t: int) -> list[list[int]]:  # noqa: ANN001
    """The latent windows AutoencoderKLHunyuanVideo._decode runs for t latent frames (its defaults)."""
    tc = vae.temporal_compression_ratio
    n_min = vae.tile_sample_min_num_frames // tc
    if not (vae.use_framewise_decoding and t > n_min):
        return [[0, t]]
    stride = vae.tile_sample_stride_num_frames // tc
    return [[i, min(t, i + n_min + 1)] for i in range(0, t, stride)]


def run_case(pipe, template: str, crop: int, prompt: str, frames: int, height: int,  # noqa: ANN001
             width: int, steps: int, seed: int) -> dict:
    tok, tok2 = pipe.tokenizer, pipe.tokenizer_2
    ids = tok(template.format(prompt), max_length=crop + MAX_TOKENS, truncation=True).input_ids[crop:]
    ids2 = tok2(prompt, max_length=77, truncation=True).input_ids
    c = pipe.transformer.config.in_channels
    sf, tf = pipe.vae_scale_factor_spatial, pipe.vae_scale_factor_temporal
    shape = (c, (frames - 1) // tf + 1, height // sf, width // sf)
    noise = gaussian(seed, int(np.prod(shape))).reshape(shape)
    seen: dict[int, np.ndarray] = {}

    def cb(p, i, t, kw):  # noqa: ANN001, ANN202
        seen[i] = kw["latents"][0].detach().float().numpy().copy()
        return {}

    calls: list[dict] = []

    def grab(module, args, kwargs, output):  # noqa: ANN001, ANN202
        calls.append({k: kwargs[k][0].detach().float().numpy().copy()
                      for k in ("encoder_hidden_states", "encoder_attention_mask", "pooled_projections", "guidance",
                                "timestep")} | {"out": output[0][0].detach().float().numpy().copy()})

    hook = pipe.transformer.register_forward_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            out = pipe(prompt=prompt, height=height, width=width, num_frames=frames, num_inference_steps=steps,
                       guidance_scale=GUIDANCE, true_cfg_scale=1.0, latents=torch.from_numpy(noise)[None],
                       output_type="np", prompt_template={"template": template, "crop_start": crop},
                       max_sequence_length=MAX_TOKENS, callback_on_step_end=cb,
                       callback_on_step_end_tensor_inputs=["latents"]).frames[0]
    finally:
        hook.remove()
    if len(calls) != steps:
        raise SystemExit(f"expected {steps} transformer calls (embedded guidance, no CFG), saw {len(calls)}")
    first = calls[0]
    want_mask = (np.arange(MAX_TOKENS) < len(ids)).astype(np.float32)
    if not np.array_equal(first["encoder_attention_mask"], want_mask):
        raise SystemExit("the pipeline's text mask is not arange(256) < len(input_ids)")
    if float(first["guidance"]) != GUIDANCE * 1000:
        raise SystemExit(f"guidance input {first['guidance']} != {GUIDANCE * 1000}")
    ts = pipe.scheduler.timesteps.float().numpy().copy()
    if any(float(k["timestep"]) != float(t) for k, t in zip(calls, ts)):
        raise SystemExit("the transformer's timesteps are not the scheduler's")
    return {
        "input_ids": np.asarray(ids, np.int64), "text_states": first["encoder_hidden_states"],
        "input_ids_2": np.asarray(ids2, np.int64), "pooled": first["pooled_projections"],
        "guidance": np.asarray(first["guidance"], np.float32).reshape(()),
        "noise": noise, "velocity_step1": first["out"], "latents_step1": seen[0], "latents_final": seen[steps - 1],
        "frames": np.asarray(out, dtype=np.float32),
        "sigmas": pipe.scheduler.sigmas.float().numpy().copy(), "timesteps": ts,
    }


def schedule(steps: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """HunyuanVideoPipeline + FlowMatchEulerDiscreteScheduler.set_timesteps(sigmas=linspace(1, 0, N + 1)[:-1]), in
    numpy float32: sigma = shift u / (1 + (shift - 1) u), timesteps = sigma * 1000, final sigma 0."""
    u = np.linspace(1.0, 0.0, steps + 1)[:-1].astype(np.float32)
    s = (shift * u / (1 + (shift - 1) * u)).astype(np.float32)
    return np.concatenate([s, np.zeros(1, np.float32)]), (s * np.float32(1000)).astype(np.float32)


def replay(bundle: Path, case: dict, fx: dict) -> dict:
    """Re-run one case from the bundle (ORT graphs, tokenizer files, numpy Euler steps); max abs diffs."""
    import tomllib

    from tokenizers import Tokenizer

    from .hunyuan import encode_clip, encode_llama, windowed_decode
    from .onnx_util import session

    m = tomllib.loads((bundle / "model.toml").read_text())
    te, te2, v, dit = m["text_encoder"], m["text_encoder_2"], m["vae"], m["dit"]
    diff: dict = {}
    ids, states, mask = encode_llama(session(bundle / te["file"]), Tokenizer.from_file(str(bundle / te["tokenizer"])),
                                     te["template"], te["crop_start"], case["prompt"], te["max_tokens"])
    diff["input_ids_equal"] = ids.tolist() == fx["input_ids"].tolist()
    diff["text_states"] = float(np.abs(states - fx["text_states"]).max())
    ids2, pooled = encode_clip(session(bundle / te2["file"]), Tokenizer.from_file(str(bundle / te2["tokenizer"])),
                               case["prompt"])
    diff["input_ids_2_equal"] = ids2.tolist() == fx["input_ids_2"].tolist()
    diff["pooled"] = float(np.abs(pooled - fx["pooled"]).max())
    sig, ts = schedule(case["steps"], m["scheduler"]["shift"])
    diff["sigmas"] = float(np.abs(sig - fx["sigmas"]).max())
    diff["timesteps"] = float(np.abs(ts - fx["timesteps"]).max())
    sess = session(bundle / dit["file"])
    names = dit["names"]
    g = np.array([case["guidance"] * 1000], np.float32)
    x = fx["noise"][None].copy()
    for i in range(case["steps"]):
        vel = sess.run([names["output"]], {names["latents"]: x, names["timestep"]: ts[i: i + 1],
                                           names["text_states"]: states[None], names["text_mask"]: mask[None],
                                           "pooled_projections": pooled[None], "guidance": g})[0]
        if i == 0:
            diff["velocity_step1"] = float(np.abs(vel[0] - fx["velocity_step1"]).max())
        x = (x + (sig[i + 1] - sig[i]) * vel).astype(np.float32)
        if i == 0:
            diff["latents_step1"] = float(np.abs(x[0] - fx["latents_step1"]).max())
    diff["latents_final"] = float(np.abs(x[0] - fx["latents_final"]).max())
    vsess = session(bundle / v["decoder"]["file"])
    z = (fx["latents_final"][None] / np.float32(v["scaling_factor"])).astype(np.float32)
    video = windowed_decode(lambda w: vsess.run(None, {v["names"]["latents"]: w})[0], z, v["window"],
                            v["window_stride"], v["window_blend"], v["temporal_compression"])[0]
    diff["frames"] = frames_diff(video, fx)
    return diff


def main() -> None:
    a = parser(__doc__).parse_args()
    torch.set_num_threads(1)
    from diffusers import HunyuanVideoPipeline

    from .hunyuan import prompt_template

    pipe = load_pipeline(HunyuanVideoPipeline, a.src)
    template, crop = prompt_template(pipe.tokenizer)
    a.out.mkdir(parents=True, exist_ok=True)
    meta, worst = [], 0.0
    for k, ((frames, height, width, steps, seed), prompt) in enumerate(zip(CASES, PROMPTS)):
        fx = run_case(pipe, template, crop, prompt, frames, height, width, steps, seed)
        name = save_case(a.out, k, fx)
        case = {"file": name, "prompt": prompt, "negative_prompt": "", "seed": str(seed), "frames": frames,
                "height": height, "width": width, "steps": steps, "guidance": GUIDANCE,
                "shift": float(pipe.scheduler.config.shift), "fps": FPS,
                "guidance_x1000": GUIDANCE * 1000, "true_cfg_scale": 1.0, "crop_start": crop,
                "max_tokens": MAX_TOKENS, "real_tokens": len(fx["input_ids"]), "real_tokens_2": len(fx["input_ids_2"]),
                "latent_shape": list(fx["noise"].shape), "scaling_factor": float(pipe.vae.config.scaling_factor),
                "vae_windows": vae_windows(pipe.vae, fx["noise"].shape[1])}
        r = replay(a.bundle, case, fx)
        case["bundle_replay_max_abs_diff"] = r
        if not (r["input_ids_equal"] and r["input_ids_2_equal"]):
            raise SystemExit(f"{name}: tokenizer file ids differ from the pipeline tokenizers'")
        worst = max([worst] + [v for v in r.values() if not isinstance(v, bool)])
        meta.append(case)
        print(f"{name}: {frames}x{height}x{width}, {steps} steps, seed {seed}: replay {r}")
    import diffusers
    import transformers

    doc = {"pipeline": "diffusers HunyuanVideoPipeline, float32, CPU", "source": a.src.name, "bundle": a.bundle.name,
           "versions": {"diffusers": diffusers.__version__, "transformers": transformers.__version__,
                        "torch": torch.__version__},
           "noise": "vidmesh_tiny.noise.gaussian(seed, C*T'*h*w) (stream 0).reshape(1, C, T', h, w) passed as latents=",
           "prompt_template": {"template": template, "crop_start": crop},
           "max_sequence_length": MAX_TOKENS, "true_cfg_scale": 1.0, "negative_prompt": None,
           "decode": "z = latents_final / scaling_factor; AutoencoderKLHunyuanVideo.decode with its defaults "
                     "(framewise: windows of 5 latent frames, stride 3, blend_t over 4 frames; no spatial tiling)"}
    write_cases(a.out, worst, doc, meta)


if __name__ == "__main__":
    main()
