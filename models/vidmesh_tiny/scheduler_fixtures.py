"""Scheduler parity fixtures for the Rust denoiser (models/fixtures/schedulers/), made once with diffusers.

For each case a diffusers scheduler is configured, its timesteps set, and `step` is driven from seeded noise with
model outputs RECORDED along the way. The outputs come from an oracle that knows a fixed clean target x0 (plus a
seeded perturbation), as a trained model would give: flow velocity `noise - x0`, epsilon
`(x - sqrt(a) x0) / sqrt(1 - a)`, v `sqrt(a) eps - sqrt(1 - a) x0` at the step's alpha-bar `a`. The Rust scheduler of
the same name, fed the same recorded outputs, must reproduce every intermediate sample.

Needs torch and diffusers (not in CI; the outputs are committed):
    python -m venv /tmp/sv && /tmp/sv/bin/pip install torch diffusers safetensors
    /tmp/sv/bin/python -m vidmesh_tiny.scheduler_fixtures
Tensors per case (<name>.safetensors): x_init f32 [S]; model_outputs f32 [N, S]; samples f32 [N, S] (after each
step); sigmas f32 [N+1] (the scheduler's noise levels); timesteps f32 [N]; alphas_cumprod f32 [1000] (DDPM-style).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler
from safetensors.numpy import save_file

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "schedulers"
SHAPE = (2, 4, 6, 8)
SD = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")

CASES = [
    # name, our scheduler kind, prediction, steps, shift, diffusers factory
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
]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    meta = []
    for k, (name, kind, prediction, steps, shift, make) in enumerate(CASES):
        sched = make()
        if kind == "flow_match_euler":
            sched.set_timesteps(sigmas=list(1.0 - np.arange(steps) / steps))
        else:
            sched.set_timesteps(steps)
        rng = np.random.default_rng(1000 + k)
        x = rng.standard_normal(int(np.prod(SHAPE))).astype(np.float32)
        target = rng.standard_normal(x.size).astype(np.float32)
        ac = sched.alphas_cumprod.numpy().astype(np.float64) if hasattr(sched, "alphas_cumprod") else None
        sample = torch.from_numpy(x.reshape(SHAPE).copy())
        samples, outputs = [], []
        for i, t in enumerate(sched.timesteps):
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
            sample = sched.step(torch.from_numpy(out.reshape(SHAPE).copy()), t, sample, return_dict=False)[0]
            samples.append(sample.numpy().reshape(-1).copy())
        outputs = np.stack(outputs)
        tensors = {
            "x_init": x,
            "model_outputs": outputs,
            "samples": np.stack(samples).astype(np.float32),
            "timesteps": sched.timesteps.numpy().astype(np.float32),
        }
        if hasattr(sched, "sigmas"):
            tensors["sigmas"] = sched.sigmas.numpy().astype(np.float32)
        if hasattr(sched, "alphas_cumprod"):
            tensors["alphas_cumprod"] = sched.alphas_cumprod.numpy().astype(np.float32)
        save_file(tensors, str(OUT / f"{name}.safetensors"))
        meta.append({"name": name, "kind": kind, "prediction": prediction, "steps": steps, "shift": shift,
                     "diffusers": type(sched).__name__, "config": {k: v for k, v in sched.config.items()
                                                                   if isinstance(v, (int, str, bool)) or (isinstance(v, float) and np.isfinite(v))}})
        print(f"{name}: {steps} steps, final |x| max {np.abs(samples[-1]).max():.3f}")
    import diffusers
    (OUT / "cases.json").write_text(json.dumps({"diffusers": diffusers.__version__, "torch": torch.__version__,
                                                "shape": SHAPE, "cases": meta}, indent=2) + "\n")


if __name__ == "__main__":
    main()
