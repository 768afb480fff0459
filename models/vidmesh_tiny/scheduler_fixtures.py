"""Scheduler parity fixtures for the Rust denoiser (models/fixtures/schedulers/), made once with diffusers.

For each case a diffusers scheduler is configured, its timesteps set, and `step` is driven from seeded noise with
model outputs RECORDED along the way. The outputs come from an oracle that knows a fixed clean target x0 (plus a
seeded perturbation), as a trained model would give: flow velocity `noise - x0`, epsilon
`(x - sqrt(a) x0) / sqrt(1 - a)`, v `sqrt(a) eps - sqrt(1 - a) x0` at the step's alpha-bar `a`. The Rust scheduler of
the same name, fed the same recorded outputs, must reproduce every intermediate sample.

A case may start `skip` steps in (strength < 1, as diffusers' image/video-to-video pipelines do): the scheduler is
given `set_begin_index(skip)`, x_init is `add_noise(init, noise)` at that step, and only the remaining steps are
taken (N below is then steps - skip).

Needs torch and diffusers (not in CI; the outputs are committed):
    python -m venv /tmp/sv && /tmp/sv/bin/pip install torch diffusers safetensors
    /tmp/sv/bin/python -m vidmesh_tiny.scheduler_fixtures [--only NAME ...] [--out DIR]
`--only` writes just the named cases and keeps the other entries of the existing cases.json (so committed fixtures
are not rewritten); `--out` writes elsewhere (e.g. to check that a full regeneration reproduces the committed bytes).
Tensors per case (<name>.safetensors): x_init f32 [S]; model_outputs f32 [N, S]; samples f32 [N, S] (after each
step); sigmas f32 [steps+1] (the scheduler's noise levels); timesteps f32 [steps] (the model's timestep input;
integers for UniPC / DDPM kinds); alphas_cumprod f32 [1000] (DDPM-style); init, noise f32 [S] (cases with a skip).

CogVideoX kinds (diffusers CogVideoXDDIMScheduler = `cogvideox_ddim`, CogVideoXDPMScheduler = `cogvideox_dpm`; the
configs of THUDM/CogVideoX-2b / -5b, v-prediction, trailing timesteps, zero-terminal-SNR, SNR shift in cases.json
`snr_shift_scale`) have no sigmas; they add
  alphas_cumprod_f64     f64 [1000]  the scheduler's own table (it is float64: scaled_linear betas in float64, SNR
                                     shift, rescale); alphas_cumprod (f32) is its rounding, as for the other kinds
  pred_original_samples  f32 [N, S]  the x0 each step returns (the DPM step's `old_pred_original_sample` for the
                                     next step, the pipeline's second-order history)
  step_noise             f32 [N, S]  (cogvideox_dpm) the noise step i adds: vidmesh_tiny.noise.gaussian(seed, S,
                                     stream=1+i), seed = cases.json "seed" (a u64 as a string); diffusers draws it
                                     with randn_tensor, patched here to return it (a second-order step draws twice
                                     and uses the second draw: both are this tensor)
The DPM step is called as CogVideoXPipeline does: step(v, old_x0, t_i, t_{i-1} (None at i = 0), x).

LTX-Video's schedule (`flow_match_euler` with `mu`, cases.json "mu" and "shift_terminal"): FlowMatchEulerDiscrete-
Scheduler with LTX-Video's config (exponential dynamic shifting, shift_terminal 0.1), timesteps set as LTXPipeline
sets them: set_timesteps(sigmas=np.linspace(1, 1/N, N), mu=calculate_shift(latent tokens, ...)).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from diffusers import (CogVideoXDDIMScheduler, CogVideoXDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler,
                       FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler)
from safetensors.numpy import save_file

from .noise import gaussian

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "schedulers"
SHAPE = (2, 4, 6, 8)
SD = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def unipc_flow(shift: float) -> UniPCMultistepScheduler:
    """UniPC as Wan 2.1 / 2.2 configure it (their scheduler_config.json)."""
    return UniPCMultistepScheduler(num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True,
                                   flow_shift=shift, solver_order=2, solver_type="bh2", predict_x0=True,
                                   lower_order_final=True, final_sigmas_type="zero", timestep_spacing="linspace",
                                   disable_corrector=[], thresholding=False)


# THUDM/CogVideoX-5b scheduler_config.json (CogVideoXDPMScheduler); the 2B's CogVideoXDDIMScheduler has
# snr_shift_scale 3.0.
COGVIDEOX = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 clip_sample=False, clip_sample_range=1.0, sample_max_value=1.0, set_alpha_to_one=True, steps_offset=0,
                 prediction_type="v_prediction", timestep_spacing="trailing", rescale_betas_zero_snr=True)

# Lightricks/LTX-Video scheduler_config.json (FlowMatchEulerDiscreteScheduler).
LTX = dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
           base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1, time_shift_type="exponential")


def ltx_mu(tokens: int) -> float:
    """LTXPipeline's calculate_shift with LTX-Video's scheduler config."""
    m = (LTX["max_shift"] - LTX["base_shift"]) / (LTX["max_image_seq_len"] - LTX["base_image_seq_len"])
    return tokens * m + (LTX["base_shift"] - m * LTX["base_image_seq_len"])


CASES = [
    # name, our scheduler kind, prediction, steps, shift, diffusers factory[, skip[, noise seed]]
    ("flow_match_euler_30", "flow_match_euler", "flow_velocity", 30, 2.0,
     lambda: FlowMatchEulerDiscreteScheduler(shift=2.0)),
    ("flow_match_euler_7_shift1", "flow_match_euler", "flow_velocity", 7, 1.0,
     lambda: FlowMatchEulerDiscreteScheduler(shift=1.0)),
    ("flow_match_dpmpp_2m_30", "flow_match_dpmpp_2m", "flow_velocity", 30, 3.0,
     lambda: DPMSolverMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0,
                                         algorithm_type="dpmsolver++", solver_order=2)),
    ("flow_match_dpmpp_2m_10", "flow_match_dpmpp_2m", "flow_velocity", 10, 2.0,
     lambda: DPMSolverMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=2.0,
                                         algorithm_type="dpmsolver++", solver_order=2)),
    ("ddim_epsilon_30", "ddim", "epsilon", 30, 1.0,
     lambda: DDIMScheduler(**SD, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                           timestep_spacing="leading", prediction_type="epsilon")),
    ("ddim_v_25", "ddim", "v", 25, 1.0,
     lambda: DDIMScheduler(**SD, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                           timestep_spacing="leading", prediction_type="v_prediction")),
    ("dpmpp_2m_epsilon_30", "dpmpp_2m", "epsilon", 30, 1.0,
     lambda: DPMSolverMultistepScheduler(**SD, algorithm_type="dpmsolver++", solver_order=2,
                                         prediction_type="epsilon")),
    ("dpmpp_2m_v_10", "dpmpp_2m", "v", 10, 1.0,
     lambda: DPMSolverMultistepScheduler(**SD, algorithm_type="dpmsolver++", solver_order=2,
                                         prediction_type="v_prediction")),
    ("unipc_flow_50", "unipc_flow", "flow_velocity", 50, 3.0, lambda: unipc_flow(3.0)),
    ("unipc_flow_10_shift5", "unipc_flow", "flow_velocity", 10, 5.0, lambda: unipc_flow(5.0)),
    ("unipc_flow_4", "unipc_flow", "flow_velocity", 4, 3.0, lambda: unipc_flow(3.0)),
    ("unipc_flow_20_shift5_skip6", "unipc_flow", "flow_velocity", 20, 5.0, lambda: unipc_flow(5.0), 6),
    # 50 steps: prev_timestep = t - 1000 // 50 is the next timestep, the last step goes to alpha-bar 1. 7 steps:
    # prev_timestep = t - 142 is not the next timestep (trailing rounds), and the last step (t = 142) ends at
    # alphas_cumprod[0] (prev_timestep = 0 >= 0; the DPM step stays second order).
    ("cogvideox_dpm_v_50", "cogvideox_dpm", "v", 50, 1.0,
     lambda: CogVideoXDPMScheduler(**COGVIDEOX, snr_shift_scale=1.0), 0, 2024),
    ("cogvideox_dpm_v_7", "cogvideox_dpm", "v", 7, 1.0,
     lambda: CogVideoXDPMScheduler(**COGVIDEOX, snr_shift_scale=1.0), 0, 2**63 + 99),
    ("cogvideox_ddim_v_50_snr3", "cogvideox_ddim", "v", 50, 1.0,
     lambda: CogVideoXDDIMScheduler(**COGVIDEOX, snr_shift_scale=3.0)),
    ("cogvideox_ddim_v_7_snr3", "cogvideox_ddim", "v", 7, 1.0,
     lambda: CogVideoXDDIMScheduler(**COGVIDEOX, snr_shift_scale=3.0)),
    # LTX-Video at its default 161x512x704 (21 x 16 x 22 latent tokens) and at a tiny 9x64x96 (2 x 2 x 3).
    ("flow_match_euler_ltx_40", "flow_match_euler", "flow_velocity", 40, 1.0,
     lambda: FlowMatchEulerDiscreteScheduler(**LTX), 0, None, ltx_mu(21 * 16 * 22)),
    ("flow_match_euler_ltx_8", "flow_match_euler", "flow_velocity", 8, 1.0,
     lambda: FlowMatchEulerDiscreteScheduler(**LTX), 0, None, ltx_mu(2 * 2 * 3)),
]


class _StepNoise:
    """scheduling_dpm_cogvideox.randn_tensor, patched: returns `self.noise` (the current step's) on every draw."""

    noise: torch.Tensor | None = None

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None):  # noqa: ANN001, ANN204
        assert tuple(shape) == tuple(self.noise.shape), (shape, self.noise.shape)
        return self.noise.to(dtype=dtype)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="write only these cases (others kept in cases.json)")
    ap.add_argument("--out", type=Path, default=OUT, help=f"output directory (default {OUT})")
    args = ap.parse_args()
    out_dir: Path = args.out
    names = [c[0] for c in CASES]
    unknown = set(args.only or []) - set(names)
    if unknown:
        raise SystemExit(f"unknown case(s) {sorted(unknown)}; cases are {names}")
    kept = {}
    if args.only:
        kept = {c["name"]: c for c in json.loads((out_dir / "cases.json").read_text())["cases"]}
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = []
    for k, (name, kind, prediction, steps, shift, make, *rest) in enumerate(CASES):
        if args.only and name not in args.only:
            if name in kept:
                meta.append(kept[name])
            continue
        skip = rest[0] if rest else 0
        noise_seed = rest[1] if len(rest) > 1 else None
        mu = rest[2] if len(rest) > 2 else None
        cog = kind.startswith("cogvideox_")
        sched = make()
        if mu is not None:
            sched.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
        elif kind == "flow_match_euler":
            sched.set_timesteps(sigmas=list(1.0 - np.arange(steps) / steps))
        else:
            sched.set_timesteps(steps)
        rng = np.random.default_rng(1000 + k)
        x = rng.standard_normal(int(np.prod(SHAPE))).astype(np.float32)
        target = rng.standard_normal(x.size).astype(np.float32)
        ac = sched.alphas_cumprod.numpy().astype(np.float64) if hasattr(sched, "alphas_cumprod") else None
        sample = torch.from_numpy(x.reshape(SHAPE).copy())
        extra = {}
        if skip:
            # Strength < 1: start `skip` steps in from a noised init, as diffusers' *-to-video pipelines do.
            init = (target + 0.3 * rng.standard_normal(x.size)).astype(np.float32)
            sched.set_begin_index(skip)
            start = sched.timesteps[skip:skip + 1]
            sample = sched.add_noise(torch.from_numpy(init.reshape(SHAPE).copy()), sample, start)
            extra = {"init": init, "noise": x}
        x_init = sample.numpy().reshape(-1).copy()
        samples, outputs, x0s, step_noise = [], [], [], []
        old_x0 = None
        for i, t in enumerate(sched.timesteps[skip:]):
            cur = sample.numpy().reshape(-1).astype(np.float64)
            wobble = 0.05 * rng.standard_normal(x.size)
            if prediction == "flow_velocity":
                out = x - target + wobble
            else:
                a = ac[int(t)]
                eps = (cur - np.sqrt(a) * target) / np.sqrt(1.0 - a) + wobble
                out = eps if prediction == "epsilon" else np.sqrt(a) * eps - np.sqrt(1.0 - a) * target
            out = out.astype(np.float32)
            outputs.append(out)
            model_out = torch.from_numpy(out.reshape(SHAPE).copy())
            if kind == "cogvideox_dpm":
                import diffusers.schedulers.scheduling_dpm_cogvideox as dpm_mod

                patched, orig = _StepNoise(), dpm_mod.randn_tensor
                patched.noise = torch.from_numpy(gaussian(noise_seed, x.size, stream=1 + i).reshape(SHAPE))
                step_noise.append(patched.noise.numpy().reshape(-1).copy())
                dpm_mod.randn_tensor = patched
                try:
                    sample, old_x0 = sched.step(model_out, old_x0, t, sched.timesteps[i - 1] if i > 0 else None,
                                                sample, return_dict=False)
                finally:
                    dpm_mod.randn_tensor = orig
                x0s.append(old_x0.numpy().reshape(-1).copy())
            elif cog:
                sample, x0 = sched.step(model_out, t, sample, return_dict=False)
                x0s.append(x0.numpy().reshape(-1).copy())
            else:
                sample = sched.step(model_out, t, sample, return_dict=False)[0]
            samples.append(sample.numpy().reshape(-1).copy())
        outputs = np.stack(outputs)
        tensors = {
            **extra,
            "x_init": x_init,
            "model_outputs": outputs,
            "samples": np.stack(samples).astype(np.float32),
            "timesteps": sched.timesteps.numpy().astype(np.float32),
        }
        if hasattr(sched, "sigmas"):
            tensors["sigmas"] = sched.sigmas.numpy().astype(np.float32)
        if hasattr(sched, "alphas_cumprod"):
            tensors["alphas_cumprod"] = sched.alphas_cumprod.numpy().astype(np.float32)
        if cog:
            tensors["alphas_cumprod_f64"] = sched.alphas_cumprod.numpy().astype(np.float64)
            tensors["pred_original_samples"] = np.stack(x0s).astype(np.float32)
        if step_noise:
            tensors["step_noise"] = np.stack(step_noise).astype(np.float32)
        save_file(tensors, str(out_dir / f"{name}.safetensors"))
        meta.append({"name": name, "kind": kind, "prediction": prediction, "steps": steps, "shift": shift,
                     **({"skip": skip} if skip else {}),
                     **({"snr_shift_scale": float(sched.config.snr_shift_scale)} if cog else {}),
                     **({"seed": str(noise_seed)} if noise_seed is not None else {}),
                     **({"mu": mu, "shift_terminal": LTX["shift_terminal"]} if mu is not None else {}),
                     "diffusers": type(sched).__name__, "config": {k: v for k, v in sched.config.items()
                                                                   if isinstance(v, (int, str, bool)) or (isinstance(v, float) and np.isfinite(v))}})
        print(f"{name}: {steps - skip} steps, final |x| max {np.abs(samples[-1]).max():.3f}")
    import diffusers
    (out_dir / "cases.json").write_text(json.dumps({"diffusers": diffusers.__version__, "torch": torch.__version__,
                                                    "shape": SHAPE, "cases": meta}, indent=2) + "\n")


if __name__ == "__main__":
    main()
