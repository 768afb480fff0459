"""Golden fixtures from diffusers' own WanPipeline (fp32, CPU) for the Rust side's Wan parity tests.

  python -m vidmesh_export.goldens --src models/work/wan2.1-tiny-src --bundle models/wan2.1-tiny \
      --out models/fixtures/wan2.1-tiny

Per case `caseN.safetensors` (no batch axis anywhere):
  input_ids, neg_input_ids      int64 [L]        the tokenizer's ids incl. the trailing </s>, no padding
  text_states, neg_text_states  f32 [L, text_dim] text encoder output cut to the real length (the pipeline
                                                  zero-pads it to max_tokens = 512 before the DiT)
  noise                         f32 [C, T', h, w] models/vidmesh_tiny/noise.py gaussian(seed, n), passed as latents=
  velocity_cond_step1           f32 [C, T', h, w] the DiT's output at the first step for the prompt ...
  velocity_uncond_step1         f32 [C, T', h, w] ... and for the negative prompt (timestep = timesteps[0])
  latents_step1                 f32 [C, T', h, w] after the first scheduler step (callback_on_step_end)
  latents_final                 f32 [C, T', h, w] after the last step, before unnormalisation
  frames                        f32 [F, H, W, 3]  WanPipeline(output_type="np") in [0, 1]
  sigmas                        f32 [steps + 1]   the UniPC scheduler's sigmas the run used (last = 0)
  timesteps                     int64 [steps]     its timesteps (trunc(sigma * 1000), fed to the DiT as float)
cases.json: prompt, negative_prompt, seed (string: u64), frames, height, width, steps, guidance(, guidance_2),
shift, boundary_ratio, and whether WanPipeline's prompt_clean leaves the prompts unchanged (they are chosen so).

Cases: CASES (Wan 2.1 / 2.2 A14B, 16-pixel grid) or CASES_GRID32 (Wan 2.2 TI2V-5B: VAE 16 x patch 2); with
expand_timesteps the pipeline's DiT gets per-token timesteps, all equal to t for text-to-video, which is what the
bundle's DiT graph builds from its [batch] `timestep` input.

Guarantees: the fixture is what diffusers computes; `replay()` then re-runs every case from the exported bundle
(tokenizer.json + the ONNX graphs through ONNX Runtime, diffusers' scheduler) and records the max abs differences
in cases.json, failing above 1e-3 on any of them (measured: ~1e-5): bundle and fixture agree.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vidmesh_tiny.noise import gaussian  # noqa: E402

from .replay import stateful_decode, video_frames  # noqa: E402

PROMPTS = [
    "a red car drives through a forest, cinematic lighting",
    "a small boat sails near the river at sunset",
    "a white cloud moves over the mountains, wide angle",
    "two friends dance in the rain, slow motion",
]
CASES = [  # (frames, height, width, steps, seed): two aspect ratios x two 4k+1 frame counts
    (9, 48, 64, 8, 42),
    (17, 48, 64, 6, 7),
    (9, 64, 32, 10, 2**63 + 12345),
    (17, 64, 32, 7, 0),
]
# Wan 2.2 TI2V-5B (VAE x DiT patch grid 16 x 2 = 32 pixels): sizes must be multiples of 32.
CASES_GRID32 = [
    (9, 64, 96, 8, 42),
    (17, 64, 96, 8, 7),
    (9, 96, 64, 8, 2**63 + 12345),
    (17, 96, 64, 8, 0),
]
TOL = 1e-3


def _states(pipe, text: str, ids: list[int]) -> np.ndarray:  # noqa: ANN001
    """The pipeline's own prompt embeddings ([1, 512, D], zero-padded), cut to the real length."""
    with torch.no_grad():
        e = pipe._get_t5_prompt_embeds(prompt=text, max_sequence_length=512, device=torch.device("cpu"))[0]
    if float(e[len(ids):].abs().max()) != 0.0:
        raise SystemExit("pipeline states past the prompt are not zero")
    return e[: len(ids)].float().numpy()


def run_case(pipe, prompt: str, frames: int, height: int, width: int, steps: int, seed: int, guidance: float,  # noqa: ANN001
             guidance_2: float | None) -> dict:
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean

    if prompt_clean(prompt) != prompt or prompt_clean("") != "":
        raise SystemExit(f"prompt_clean changes {prompt!r}: choose another prompt")
    tok = pipe.tokenizer
    ids = tok(prompt, add_special_tokens=True).input_ids
    neg_ids = tok("", add_special_tokens=True).input_ids
    c = pipe.transformer.config.in_channels
    sf = pipe.vae_scale_factor_spatial
    shape = (c, (frames - 1) // 4 + 1, height // sf, width // sf)
    noise = gaussian(seed, int(np.prod(shape))).reshape(shape)
    seen: dict[int, np.ndarray] = {}

    def cb(p, i, t, kw):  # noqa: ANN001, ANN202
        seen[i] = kw["latents"][0].detach().float().numpy().copy()
        return {}

    calls: list[np.ndarray] = []  # DiT outputs in call order: step 0 cond, step 0 uncond, step 1 cond, ...

    def grab(module, args, kwargs, output):  # noqa: ANN001, ANN202
        calls.append(output[0][0].detach().float().numpy().copy())

    hooks = [m.register_forward_hook(grab, with_kwargs=True)
             for m in (pipe.transformer, pipe.transformer_2) if m is not None]
    extra = {"guidance_scale_2": guidance_2} if guidance_2 is not None else {}
    with torch.no_grad():
        out = pipe(prompt=prompt, negative_prompt="", height=height, width=width, num_frames=frames,
                   num_inference_steps=steps, guidance_scale=guidance, latents=torch.from_numpy(noise)[None],
                   output_type="np", callback_on_step_end=cb, callback_on_step_end_tensor_inputs=["latents"],
                   max_sequence_length=512, **extra).frames[0]
    for h in hooks:
        h.remove()
    if len(calls) != 2 * steps:
        raise SystemExit(f"expected {2 * steps} DiT calls (cond + uncond per step), saw {len(calls)}")
    return {
        "input_ids": np.asarray(ids, dtype=np.int64), "neg_input_ids": np.asarray(neg_ids, dtype=np.int64),
        "text_states": _states(pipe, prompt, ids), "neg_text_states": _states(pipe, "", neg_ids),
        "noise": noise, "velocity_cond_step1": calls[0], "velocity_uncond_step1": calls[1],
        "latents_step1": seen[0], "latents_final": seen[steps - 1],
        "frames": np.asarray(out, dtype=np.float32),
        "sigmas": pipe.scheduler.sigmas.float().numpy().copy(),
        "timesteps": pipe.scheduler.timesteps.to(torch.int64).numpy().copy(),
    }


def replay(bundle: Path, case: dict, fx: dict, pipe) -> dict:  # noqa: ANN001
    """Re-run one case from the bundle (ORT graphs, tokenizer.json) with diffusers' scheduler; max abs diffs."""
    import tomllib

    from tokenizers import Tokenizer

    from .onnx_util import session

    m = tomllib.loads((bundle / "model.toml").read_text())
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    te, n_max = session(bundle / "text_encoder.onnx"), m["text_encoder"]["max_tokens"]
    dits = [session(bundle / m["dit"]["file"])] + ([session(bundle / m["dit2"]["file"])] if "dit2" in m else [])
    diff = {}

    def encode(text: str, key: str) -> np.ndarray:
        ids = tok.encode(text).ids
        diff[f"{key}_ids_equal"] = ids == fx[key.replace("text_states", "input_ids")].tolist()
        padded = np.zeros((1, n_max), np.int64)
        padded[0, : len(ids)] = ids
        mask = (np.arange(n_max) < len(ids)).astype(np.int64)[None]
        h = te.run(None, {"input_ids": padded, "attention_mask": mask})[0][0, : len(ids)]
        diff[key] = float(np.abs(h - fx[key]).max())
        states = np.zeros((1, n_max, h.shape[1]), np.float32)
        states[0, : len(ids)] = h
        return states

    cond, uncond = encode(case["prompt"], "text_states"), encode("", "neg_text_states")
    from diffusers import UniPCMultistepScheduler

    sched = UniPCMultistepScheduler.from_config(pipe.scheduler.config)
    sched.set_timesteps(case["steps"])
    x = torch.from_numpy(fx["noise"])[None]
    boundary = m.get("dit2", {}).get("boundary_ratio")
    for i, t in enumerate(sched.timesteps):
        second = boundary is not None and float(t) < boundary * 1000
        sess = dits[1] if second else dits[0]
        g = m["dit2"]["guidance_scale"] if second else case["guidance"]
        ts = np.full((1,), np.trunc(float(t)), np.float32)
        run = lambda s: sess.run(None, {"hidden_states": x.numpy(), "timestep": ts,  # noqa: E731
                                        "encoder_hidden_states": s})[0]
        v_c, v_u = run(cond), run(uncond)
        if i == 0:
            diff["velocity_cond_step1"] = float(np.abs(v_c[0] - fx["velocity_cond_step1"]).max())
            diff["velocity_uncond_step1"] = float(np.abs(v_u[0] - fx["velocity_uncond_step1"]).max())
        v = torch.from_numpy(v_u + g * (v_c - v_u))
        x = sched.step(v, t, x, return_dict=False)[0]
        if i == 0:
            diff["latents_step1"] = float(np.abs(x[0].numpy() - fx["latents_step1"]).max())
    diff["latents_final"] = float(np.abs(x[0].numpy() - fx["latents_final"]).max())
    # Decode the fixture's final latents through the stateful pair: z = x / (1 / std) + mean.
    vae = m["vae"]
    mean = np.asarray(vae["latents_mean"], np.float32).reshape(1, -1, 1, 1, 1)
    inv_std = (1.0 / np.asarray(vae["latents_std"], np.float32)).reshape(1, -1, 1, 1, 1)
    z = (fx["latents_final"][None] / inv_std + mean).astype(np.float32)
    first, step = session(bundle / vae["decoder"]["file"]), session(bundle / vae["decoder_step"]["file"])
    parts = [(t, t + 1) for t in range(z.shape[2])]  # the first latent frame alone, then one step per frame
    diff["frames"] = frames_diff(np.concatenate(stateful_decode(first, step, vae, z, parts), axis=2)[0], fx)
    return diff


def frames_diff(video: np.ndarray, fx: dict) -> float:
    """Max abs difference of the bundle's decoded video ([3, F, H, W] in [-1, 1]) as frames from fx["frames"]."""
    return float(np.abs(video_frames(video) - fx["frames"]).max())


def parser(doc: str) -> argparse.ArgumentParser:
    """The goldens' command line: --src (the diffusers pipeline), --bundle (its export), --out (the fixtures)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, required=True)
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    return ap


def load_pipeline(cls, src: Path):  # noqa: ANN001, ANN201
    """`cls.from_pretrained(src)` in float32, progress bars off."""
    pipe = cls.from_pretrained(str(src), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_case(out: Path, k: int, fx: dict) -> str:
    """Write fx to out/case{k}.safetensors (0-d tensors stay 0-d); its file name."""
    name = f"case{k}.safetensors"
    save_file({n: np.ascontiguousarray(v) if v.ndim else v for n, v in fx.items()}, str(out / name))
    return name


def write_cases(out: Path, worst: float, doc: dict, cases: list[dict]) -> None:
    """Refuse a replay worse than TOL, else write out/cases.json: `doc`, then how frames come from the decoded video
    and the cases."""
    if not worst <= TOL:
        raise SystemExit(f"bundle replay differs from diffusers by {worst:.3g} > {TOL}")
    doc = {**doc, "frames_from_video": "frames = clamp(video / 2 + 0.5, 0, 1), [F, H, W, 3]", "cases": cases}
    (out / "cases.json").write_text(json.dumps(doc, indent=2) + "\n")


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--guidance", type=float)
    ap.add_argument("--guidance-2", type=float)
    a = ap.parse_args()
    torch.set_num_threads(2)
    from diffusers import WanPipeline
    from diffusers.utils import is_ftfy_available

    pipe = load_pipeline(WanPipeline, a.src)
    two = pipe.config.boundary_ratio is not None
    guidance = a.guidance if a.guidance is not None else (4.0 if two else 5.0)
    guidance_2 = (a.guidance_2 if a.guidance_2 is not None else 3.0) if two else None
    a.out.mkdir(parents=True, exist_ok=True)
    meta = []
    worst = 0.0
    grid = pipe.vae_scale_factor_spatial * pipe.transformer.config.patch_size[1]
    cases = CASES if grid == 16 else CASES_GRID32
    for k, ((frames, height, width, steps, seed), prompt) in enumerate(zip(cases, PROMPTS)):
        fx = run_case(pipe, prompt, frames, height, width, steps, seed, guidance, guidance_2)
        name = save_case(a.out, k, fx)
        case = {"file": name, "prompt": prompt, "negative_prompt": "", "seed": str(seed), "frames": frames,
                "height": height, "width": width, "steps": steps, "guidance": guidance,
                **({"guidance_2": guidance_2} if two else {}),
                "shift": float(pipe.scheduler.config.flow_shift), "boundary_ratio": pipe.config.boundary_ratio,
                "latent_shape": list(fx["noise"].shape), "real_tokens": len(fx["input_ids"]),
                "prompt_clean_unchanged": True,
                # which transformer each step ran: diffusers picks `transformer` while t >= boundary_ratio * 1000
                "dit_per_step": ["dit" if not two or int(t) >= pipe.config.boundary_ratio * 1000 else "dit2"
                                 for t in fx["timesteps"]]}
        r = replay(a.bundle, case, fx, pipe)
        case["bundle_replay_max_abs_diff"] = r
        for key in ("text_states", "neg_text_states", "velocity_cond_step1", "velocity_uncond_step1",
                    "latents_step1", "latents_final", "frames"):
            worst = max(worst, r[key])
        if not (r["text_states_ids_equal"] and r["neg_text_states_ids_equal"]):
            raise SystemExit(f"{name}: tokenizer.json ids differ from the pipeline tokenizer's")
        meta.append(case)
        print(f"{name}: {frames}x{height}x{width}, {steps} steps, seed {seed}: replay {r}")
    doc = {"pipeline": "diffusers WanPipeline, float32, CPU", "source": a.src.name, "bundle": a.bundle.name,
           "noise": "vidmesh_tiny.noise.gaussian(seed, C*T'*h*w).reshape(1, C, T', h, w) passed as latents=",
           "prompt_clean": "WanPipeline.prompt_clean (ftfy.fix_text, html.unescape x2, strip, whitespace "
                           "collapse) leaves every prompt here unchanged",
           "ftfy_installed": bool(is_ftfy_available()), "max_sequence_length": 512,
           "latents_unnormalise": "z = latents / (1 / latents_std) + latents_mean (per channel, float32)"}
    write_cases(a.out, worst, doc, meta)


if __name__ == "__main__":
    main()
