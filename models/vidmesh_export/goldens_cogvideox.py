"""Golden fixtures from diffusers' own CogVideoXPipeline (fp32, CPU) for the Rust side's CogVideoX parity tests.

  python -m vidmesh_export.goldens_cogvideox --src models/work/cogvideox-tiny-src --bundle models/cogvideox-tiny \
      --out models/fixtures/cogvideox-tiny

Each case runs CogVideoXPipeline(prompt, negative_prompt="", height, width, num_frames, num_inference_steps,
guidance_scale=6.0, use_dynamic_cfg=True, latents=noise, output_type="np") where
- noise = vidmesh_tiny.noise.gaussian(seed, C*T'*h*w) (stream 0) as [C, T', h, w], permuted to the pipeline's
  [1, T', C, h, w];
- the DPM scheduler's per-step noise (diffusers draws it with randn_tensor inside CogVideoXDPMScheduler.step) is
  replaced, by monkeypatching that module's randn_tensor, with gaussian(seed, C*T'*h*w, stream=1+i) as
  [C, T', h, w] permuted to [1, T', C, h, w] at step i (0-based). step() draws once on a first-order step (the first
  step, and a step whose prev_timestep < 0) and twice on a second-order one, using the second draw; both draws of
  step i return that same tensor, so the noise a step ADDS is always stream 1 + i.

Per case `caseN.safetensors` (no batch axis anywhere):
  input_ids, neg_input_ids      int64 [L]          the tokenizer's ids incl. the trailing </s>, no padding
  text_states, neg_text_states  f32 [226, D]       T5 on the ids padded to 226 with <pad> (= 0), no mask: all 226
                                                   rows go to the transformer (zero_pad_states = false)
  noise                         f32 [C, T', h, w]  stream 0, passed as latents=
  step_noise                    f32 [N, C, T', h, w]  stream 1 + i for step i (what the patched randn_tensor gave)
  velocity_uncond_step1         f32 [C, T', h, w]  the DiT's output at the first step, negative-prompt row (row 0 of
  velocity_cond_step1           f32 [C, T', h, w]  the pipeline's [uncond, cond] batch) and prompt row
  latents_step1, latents_final  f32 [C, T', h, w]  after the first / the last step (callback_on_step_end), before
                                                   the 1 / scaling_factor of decode_latents
  frames                        f32 [F, H, W, 3]   pipeline(output_type="np") in [0, 1]
  timesteps                     int64 [N]          the scheduler's timesteps (trailing), fed to the DiT as float
  guidance_scales               f64 [N]            the CFG scale each step used (use_dynamic_cfg:
                                                   1 + g * (1 - cos(pi * ((N - t) / N) ** 5)) / 2, Python float64
                                                   with t the integer timestep; torch then multiplies in float32)
  alphas_cumprod                f64 [1000]         the scheduler's alpha-bar table (scaled_linear betas in float64,
                                                   SNR shift, zero-terminal-SNR rescale)
cases.json: prompt, negative_prompt, seed (string: u64), frames, height, width, steps, guidance, shift (1.0: none),
use_dynamic_cfg, snr_shift_scale, scheduler, latent_shape, real_tokens, draws_per_step, the decode chunks, and the
bundle replay's max abs differences. There are no sigmas: a DDPM-style scheduler has timesteps and alpha-bars.

Cases: two sizes of opposite aspect (48 x 64, 64 x 48) x 9 and 17 frames (3 and 5 latent frames: CogVideoX-5B's 8k+1
rule, odd latent counts), 6-10 steps, one seed >= 2^63.

Guarantees: the fixture is what diffusers computes; `replay()` then re-runs every case from the exported bundle
(tokenizer.json + the ONNX graphs through ONNX Runtime, diffusers' CogVideoXDPMScheduler with the same step noise,
z = x / scaling_factor, the stateful decoder chained in AutoencoderKLCogVideoX._decode's chunks) and records the max
abs differences in cases.json, failing above 1e-3 on any of them.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vidmesh_tiny.noise import gaussian  # noqa: E402

from .cogvideox import DECODE_CHUNK, MAX_TOKENS  # noqa: E402
from .goldens import PROMPTS, frames_diff, load_pipeline, parser, save_case, write_cases  # noqa: E402
from .replay import chunks, stateful_decode  # noqa: E402

CASES = [  # (frames, height, width, steps, seed)
    (9, 48, 64, 8, 42),
    (17, 48, 64, 6, 7),
    (9, 64, 48, 10, 2**63 + 12345),
    (17, 64, 48, 7, 0),
]
GUIDANCE = 6.0


def dynamic_cfg(guidance: float, steps: int, t: int) -> float:
    """CogVideoXPipeline.__call__ with use_dynamic_cfg (t: the integer timestep, as t.item())."""
    return 1 + guidance * ((1 - math.cos(math.pi * ((steps - t) / steps) ** 5.0)) / 2)


def _to_pipe(x: np.ndarray) -> torch.Tensor:
    """[C, T, h, w] -> the pipeline's [1, T, C, h, w]."""
    return torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2, 3)))[None]


def _from_pipe(x: torch.Tensor) -> np.ndarray:
    """[1, T, C, h, w] -> [C, T, h, w]."""
    return x[0].detach().float().numpy().transpose(1, 0, 2, 3).copy()


class StepNoise:
    """Replaces scheduling_dpm_cogvideox.randn_tensor: step i's draws are gaussian(seed, n, stream=1+i)."""

    def __init__(self, seed: int, shape: tuple, steps: int):
        self.noise = [gaussian(seed, int(np.prod(shape)), stream=1 + i).reshape(shape) for i in range(steps)]
        self.step, self.draws = 0, [0] * steps

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None):  # noqa: ANN001, ANN204
        x = _to_pipe(self.noise[self.step])
        if tuple(shape) != tuple(x.shape):
            raise SystemExit(f"scheduler asked for noise {tuple(shape)}, expected {tuple(x.shape)}")
        self.draws[self.step] += 1
        return x.to(dtype=dtype)

    def __enter__(self):  # noqa: ANN204
        import diffusers.schedulers.scheduling_dpm_cogvideox as mod

        self._mod, self._orig = mod, mod.randn_tensor
        mod.randn_tensor = self
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self._mod.randn_tensor = self._orig


def _states(pipe, text: str) -> np.ndarray:  # noqa: ANN001
    with torch.no_grad():
        e = pipe._get_t5_prompt_embeds(prompt=text, max_sequence_length=MAX_TOKENS, device=torch.device("cpu"))[0]
    return e.float().numpy()


def run_case(pipe, prompt: str, frames: int, height: int, width: int, steps: int, seed: int) -> dict:  # noqa: ANN001
    tok = pipe.tokenizer
    ids = tok(prompt, add_special_tokens=True).input_ids
    neg_ids = tok("", add_special_tokens=True).input_ids
    c = pipe.transformer.config.in_channels
    sf = pipe.vae_scale_factor_spatial
    shape = (c, (frames - 1) // pipe.vae_scale_factor_temporal + 1, height // sf, width // sf)
    noise = gaussian(seed, int(np.prod(shape))).reshape(shape)
    sn = StepNoise(seed, shape, steps)
    seen: dict[int, np.ndarray] = {}
    scales: list[float] = []

    def cb(p, i, t, kw):  # noqa: ANN001, ANN202
        seen[i] = _from_pipe(kw["latents"])
        scales.append(float(p._guidance_scale))
        sn.step = i + 1
        return {}

    calls: list[np.ndarray] = []

    def grab(module, args, kwargs, output):  # noqa: ANN001, ANN202
        calls.append(output[0].detach().float().numpy().copy())

    hook = pipe.transformer.register_forward_hook(grab, with_kwargs=True)
    with torch.no_grad(), sn:
        out = pipe(prompt=prompt, negative_prompt="", height=height, width=width, num_frames=frames,
                   num_inference_steps=steps, guidance_scale=GUIDANCE, use_dynamic_cfg=True,
                   latents=_to_pipe(noise), output_type="np", callback_on_step_end=cb,
                   callback_on_step_end_tensor_inputs=["latents"], max_sequence_length=MAX_TOKENS).frames[0]
    hook.remove()
    if len(calls) != steps or calls[0].shape[0] != 2:
        raise SystemExit(f"expected {steps} batched (uncond, cond) DiT calls, saw {len(calls)}")
    timesteps = pipe.scheduler.timesteps.to(torch.int64).numpy().copy()
    want = [dynamic_cfg(GUIDANCE, steps, int(t)) for t in timesteps]
    if scales != want:
        raise SystemExit(f"the pipeline's dynamic CFG {scales} != the formula {want}")
    v0 = calls[0]  # [2, T, C, h, w]: row 0 = negative prompt, row 1 = prompt
    fx = {
        "input_ids": np.asarray(ids, dtype=np.int64), "neg_input_ids": np.asarray(neg_ids, dtype=np.int64),
        "text_states": _states(pipe, prompt), "neg_text_states": _states(pipe, ""),
        "noise": noise, "step_noise": np.stack(sn.noise),
        "velocity_uncond_step1": v0[0].transpose(1, 0, 2, 3).copy(),
        "velocity_cond_step1": v0[1].transpose(1, 0, 2, 3).copy(),
        "latents_step1": seen[0], "latents_final": seen[steps - 1],
        "frames": np.asarray(out, dtype=np.float32),
        "timesteps": timesteps, "guidance_scales": np.asarray(scales, dtype=np.float64),
        "alphas_cumprod": pipe.scheduler.alphas_cumprod.numpy().astype(np.float64),
    }
    return fx, sn.draws


def replay(bundle: Path, case: dict, fx: dict, pipe) -> dict:  # noqa: ANN001
    """Re-run one case from the bundle (ORT graphs, tokenizer.json) with diffusers' scheduler; max abs diffs."""
    import tomllib

    from diffusers import CogVideoXDPMScheduler
    from tokenizers import Tokenizer

    from .onnx_util import session

    m = tomllib.loads((bundle / "model.toml").read_text())
    tok = Tokenizer.from_file(str(bundle / m["text_encoder"]["tokenizer"]))
    te, n_max = session(bundle / m["text_encoder"]["file"]), m["text_encoder"]["max_tokens"]
    dit = session(bundle / m["dit"]["file"])
    names = m["dit"]["names"]
    diff = {}

    def encode(text: str, key: str) -> np.ndarray:
        ids = tok.encode(text).ids
        diff[f"{key}_ids_equal"] = ids == fx[key.replace("text_states", "input_ids")].tolist()
        padded = np.zeros((1, n_max), np.int64)  # padding = "max_length" with <pad> = 0
        padded[0, : len(ids)] = ids
        h = te.run(None, {"input_ids": padded, "attention_mask": np.ones_like(padded)})[0]  # encoder_mask = false
        diff[key] = float(np.abs(h[0] - fx[key]).max())
        return h  # all 226 rows (zero_pad_states = false)

    text = np.concatenate([encode("", "neg_text_states"), encode(case["prompt"], "text_states")])  # [uncond, cond]
    sched = CogVideoXDPMScheduler.from_config(pipe.scheduler.config)
    sched.set_timesteps(case["steps"])
    shape = tuple(fx["noise"].shape)
    sn = StepNoise(int(case["seed"]), shape, case["steps"])
    x = _to_pipe(fx["noise"])
    old = None
    g_err = 0.0
    with sn:
        for i, t in enumerate(sched.timesteps):
            sn.step = i
            xv = np.ascontiguousarray(np.repeat(_from_pipe(x)[None], 2, axis=0))
            v = dit.run([names["output"]], {names["latents"]: xv,
                                            names["timestep"]: np.full((2,), float(t), np.float32),
                                            names["text_states"]: text})[0]
            if i == 0:
                diff["velocity_uncond_step1"] = float(np.abs(v[0] - fx["velocity_uncond_step1"]).max())
                diff["velocity_cond_step1"] = float(np.abs(v[1] - fx["velocity_cond_step1"]).max())
            g = dynamic_cfg(case["guidance"], case["steps"], int(t))
            g_err = max(g_err, abs(g - float(fx["guidance_scales"][i])))
            u, c = _to_pipe(v[0]), _to_pipe(v[1])
            guided = u + g * (c - u)
            x, old = sched.step(guided, old, t, sched.timesteps[i - 1] if i > 0 else None, x, return_dict=False)
            if i == 0:
                diff["latents_step1"] = float(np.abs(_from_pipe(x) - fx["latents_step1"]).max())
    diff["latents_final"] = float(np.abs(_from_pipe(x) - fx["latents_final"]).max())
    diff["guidance_scales"] = g_err
    diff["timesteps_equal"] = sched.timesteps.numpy().tolist() == fx["timesteps"].tolist()
    # Decode the fixture's final latents: z = x / scaling_factor, chunks as AutoencoderKLCogVideoX._decode.
    vae = m["vae"]
    z = (fx["latents_final"][None] / np.float32(vae["scaling_factor"])).astype(np.float32)
    first, step = session(bundle / vae["decoder"]["file"]), session(bundle / vae["decoder_step"]["file"])
    out = stateful_decode(first, step, vae, z, chunks(z.shape[2], vae["decode_chunk"]))
    diff["frames"] = frames_diff(np.concatenate(out, axis=2)[0], fx)
    return diff


def main() -> None:
    a = parser(__doc__).parse_args()
    torch.set_num_threads(1)
    from diffusers import CogVideoXPipeline

    pipe = load_pipeline(CogVideoXPipeline, a.src)
    if type(pipe.scheduler).__name__ != "CogVideoXDPMScheduler":
        raise SystemExit(f"{a.src}: the goldens are for CogVideoXDPMScheduler, not {type(pipe.scheduler).__name__}")
    a.out.mkdir(parents=True, exist_ok=True)
    meta, worst = [], 0.0
    for k, ((frames, height, width, steps, seed), prompt) in enumerate(zip(CASES, PROMPTS)):
        fx, draws = run_case(pipe, prompt, frames, height, width, steps, seed)
        name = save_case(a.out, k, fx)
        t_lat = fx["noise"].shape[1]
        case = {"file": name, "prompt": prompt, "negative_prompt": "", "seed": str(seed), "frames": frames,
                "height": height, "width": width, "steps": steps, "guidance": GUIDANCE, "shift": 1.0,
                "fps": 8, "use_dynamic_cfg": True,
                "scheduler": "CogVideoXDPMScheduler", "snr_shift_scale": float(pipe.scheduler.config.snr_shift_scale),
                "latent_shape": list(fx["noise"].shape), "real_tokens": len(fx["input_ids"]),
                "draws_per_step": draws, "decode_chunks": chunks(t_lat, DECODE_CHUNK)}
        r = replay(a.bundle, case, fx, pipe)
        case["bundle_replay_max_abs_diff"] = r
        for key in ("text_states", "neg_text_states", "velocity_cond_step1", "velocity_uncond_step1",
                    "latents_step1", "latents_final", "frames", "guidance_scales"):
            worst = max(worst, r[key])
        if not (r["text_states_ids_equal"] and r["neg_text_states_ids_equal"] and r["timesteps_equal"]):
            raise SystemExit(f"{name}: tokenizer.json ids or timesteps differ from the pipeline's")
        meta.append(case)
        print(f"{name}: {frames}x{height}x{width}, {steps} steps, seed {seed}: replay {r}")
    import diffusers

    doc = {"pipeline": "diffusers CogVideoXPipeline, float32, CPU", "diffusers": diffusers.__version__,
           "source": a.src.name, "bundle": a.bundle.name,
           "noise": "vidmesh_tiny.noise.gaussian(seed, C*T'*h*w) as [C, T', h, w], permuted to [1, T', C, h, w] "
                    "and passed as latents=",
           "step_noise": "scheduling_dpm_cogvideox.randn_tensor patched: every draw in step i (0-based) returns "
                         "gaussian(seed, C*T'*h*w, stream=1+i) as [C, T', h, w] permuted to [1, T', C, h, w]",
           "text": "tokenizer(prompt, padding='max_length', max_length=226, truncation=True); T5 without a mask; "
                   "all 226 rows to the transformer; negative prompt '' (its ids: just </s>)",
           "cfg": "batched [uncond, cond]; guided = uncond + g_i * (cond - uncond) with g_i = guidance_scales[i]",
           "max_sequence_length": MAX_TOKENS,
           "latents_unnormalise": "z = latents / scaling_factor (0.7; diffusers multiplies by 1 / 0.7)",
           "decode": "AutoencoderKLCogVideoX._decode chunks of 2 latent frames, the first 2 + T mod 2"}
    write_cases(a.out, worst, doc, meta)


if __name__ == "__main__":
    main()
