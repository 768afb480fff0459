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
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler,
                       UniPCMultistepScheduler)
from safetensors.numpy import save_file

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "schedulers"
SHAPE = (2, 4, 6, 8)
SD = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def unipc_flow(shift: float) -> UniPCMultistepScheduler:
    """UniPC as Wan 2.1 / 2.2 configure it (their scheduler_config.json)."""
    return UniPCMultistepScheduler(num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True,
                                   flow_shift=shift, solver_order=2, solver_type="bh2", predict_x0=True,
                                   lower_order_final=True, final_sigmas_type="zero", timestep_spacing="linspace",
                                   disable_corrector=[], thresholding=False)


CASES = [
    # name, our scheduler kind, prediction, steps, shift, diffusers factory[, skip]
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
]


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
        extra = {}
        if skip:
            # Strength < 1: start `skip` steps in from a noised init, as diffusers' *-to-video pipelines do.
            init = (target + 0.3 * rng.standard_normal(x.size)).astype(np.float32)
            sched.set_begin_index(skip)
            start = sched.timesteps[skip:skip + 1]
            sample = sched.add_noise(torch.from_numpy(init.reshape(SHAPE).copy()), sample, start)
            extra = {"init": init, "noise": x}
        x_init = sample.numpy().reshape(-1).copy()
        samples, outputs = [], []
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
            sample = sched.step(torch.from_numpy(out.reshape(SHAPE).copy()), t, sample, return_dict=False)[0]
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
        save_file(tensors, str(out_dir / f"{name}.safetensors"))
        meta.append({"name": name, "kind": kind, "prediction": prediction, "steps": steps, "shift": shift,
                     **({"skip": skip} if skip else {}),
                     "diffusers": type(sched).__name__, "config": {k: v for k, v in sched.config.items()
                                                                   if isinstance(v, (int, str, bool)) or (isinstance(v, float) and np.isfinite(v))}})
        print(f"{name}: {steps - skip} steps, final |x| max {np.abs(samples[-1]).max():.3f}")
    import diffusers
    (out_dir / "cases.json").write_text(json.dumps({"diffusers": diffusers.__version__, "torch": torch.__version__,
                                                    "shape": SHAPE, "cases": meta}, indent=2) + "\n")


if __name__ == "__main__":
    main()
