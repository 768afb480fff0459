"""The CogVideoX bundle (models/cogvideox-tiny, format 2) against diffusers' golden fixtures, without torch.

The fixtures were written by `python -m vidmesh_export.goldens_cogvideox` from diffusers' own CogVideoXPipeline
(CogVideoXDPMScheduler, use_dynamic_cfg); here every piece a service runs is checked through ONNX Runtime and numpy:
tokenizer.json, the text encoder (226 tokens padded with <pad>, all-ones mask, all rows kept), the DiT at the first
step (one batched [uncond, cond] run), the whole denoising loop (DiT graph + a numpy CogVideoX DPM scheduler with the
recorded per-step noise = vidmesh's gaussian stream 1 + i), and the stateful VAE pair decoding the final latents in
AutoencoderKLCogVideoX's chunks to the pipeline's frames.

`Cog` below is a numpy reference of diffusers' CogVideoXDPMScheduler / CogVideoXDDIMScheduler (alpha-bar table in
float64, step coefficients in float64 rounded to float32, element-wise arithmetic in float32 in diffusers' order);
it reproduces the golden steps and the scheduler fixtures (models/fixtures/schedulers/cogvideox_*) bit for bit
(asserted within STEP_TOL).
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from helpers import assert_frames, assert_hashes, session
from vidmesh_export.replay import chunks, stateful_decode
from vidmesh_tiny.noise import gaussian

ROOT = Path(__file__).resolve().parent.parent
NAME = "cogvideox-tiny"
BUNDLE, FIXTURES = ROOT / NAME, ROOT / "fixtures" / NAME
SCHEDULERS = ROOT / "fixtures" / "schedulers"
TOL = 1e-4
# numpy's float64 exp/log may differ from torch's by an ulp on some CPUs, which can flip a float32 coefficient by one
# ulp; measured here: bit-identical.
STEP_TOL = 2e-6
f32 = np.float32



class Cog:
    """diffusers' CogVideoX schedulers (v-prediction, trailing timesteps, zero-terminal-SNR, set_alpha_to_one),
    in numpy."""

    def __init__(self, steps: int, snr_shift_scale: float, train: int = 1000):
        betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, train, dtype=np.float64) ** 2  # scaled_linear, float64
        ac = np.cumprod(1.0 - betas)
        ac = ac / (snr_shift_scale + (1 - snr_shift_scale) * ac)  # SNR shift
        s = np.sqrt(ac)  # rescale_zero_terminal_snr
        s0, s_t = s[0], s[-1]
        self.alphas_cumprod = ((s - s_t) * (s0 / (s0 - s_t))) ** 2
        self.steps, self.train = steps, train
        self.timesteps = np.round(np.arange(train, 0, -train / steps)).astype(np.int64) - 1  # trailing

    def _alphas(self, i: int) -> tuple[float, float, int]:
        t = int(self.timesteps[i])
        prev = t - self.train // self.steps  # diffusers' prev_timestep: not always the next timestep
        return self.alphas_cumprod[t], (self.alphas_cumprod[prev] if prev >= 0 else np.float64(1.0)), prev

    @staticmethod
    def _lamb(a: float) -> float:
        with np.errstate(divide="ignore"):
            return np.log(np.sqrt(a / (1 - a)))

    def x0(self, i: int, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        a, _, _ = self._alphas(i)
        return f32(math.sqrt(a)) * x - f32(math.sqrt(1 - a)) * v

    def dpm_step(self, i: int, v: np.ndarray, x: np.ndarray, old_x0: np.ndarray | None,
                 noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CogVideoXDPMScheduler.step(v, old_x0, t_i, t_{i-1}, x) with its noise -> (x_next, x0)."""
        a, ap, prev = self._alphas(i)
        x0 = self.x0(i, x, v)
        lamb = self._lamb(a)
        h = self._lamb(ap) - lamb
        m1 = np.sqrt((1 - ap) / (1 - a)) * np.exp(-h)
        m2 = np.expm1(-2 * h) * np.sqrt(ap)
        mn = np.sqrt(1 - ap) * np.sqrt(1 - np.exp(-2 * h))
        d = x0
        if old_x0 is not None and prev >= 0:  # second order (DPM-Solver++(2M)) from the previous x0
            r = (lamb - self._lamb(self.alphas_cumprod[int(self.timesteps[i - 1])])) / h
            d = f32(1 + 1 / (2 * r)) * x0 - f32(1 / (2 * r)) * old_x0
        return f32(m1) * x - f32(m2) * d + f32(mn) * noise, x0

    def ddim_step(self, i: int, v: np.ndarray, x: np.ndarray) -> np.ndarray:
        a, ap, _ = self._alphas(i)
        at = np.sqrt((1 - ap) / (1 - a))
        return f32(at) * x + f32(np.sqrt(ap) - np.sqrt(a) * at) * self.x0(i, x, v)


def dynamic_cfg(guidance: float, steps: int, t: int) -> float:
    """CogVideoXPipeline's use_dynamic_cfg scale at integer timestep t (as diffusers computes it, float64)."""
    return 1 + guidance * ((1 - math.cos(math.pi * ((steps - t) / steps) ** 5.0)) / 2)


@pytest.fixture(scope="module")
def bundle():  # noqa: ANN201
    if not (BUNDLE / "model.toml").is_file():
        pytest.skip(f"{NAME} not exported")
    m = tomllib.loads((BUNDLE / "model.toml").read_text())
    cases = json.loads((FIXTURES / "cases.json").read_text())["cases"]
    return m, cases


def test_manifest(bundle) -> None:  # noqa: ANN001
    m, _ = bundle
    assert m["schema_version"] == 2
    te, dit, vae, sch, video = m["text_encoder"], m["dit"], m["vae"], m["scheduler"], m["video"]
    assert_hashes(BUNDLE, [te], [te, vae["decoder"], vae["decoder_step"], dit])
    assert (te["max_tokens"], te["padding"], te["prompt_clean"]) == (226, "max_length", "none")
    assert (te["encoder_mask"], te["zero_pad_states"], te["dit_mask"]) == (False, False, False)
    assert (dit["prediction"], dit["timestep_scale"], dit["timestep_rounding"], dit["guidance"]) == (
        "v", 1.0, "none", "cfg_batched")
    assert dit["names"] == {"latents": "hidden_states", "timestep": "timestep",
                            "text_states": "encoder_hidden_states", "text_mask": "", "output": "output"}
    assert [i["name"] for i in dit["inputs"]] == ["hidden_states", "timestep", "encoder_hidden_states"]
    assert (vae["temporal_compression"], vae["spatial_compression"], vae["latent_channels"]) == (4, 8, 16)
    assert (vae["frame_rule"], vae["decode"], vae["decode_chunk"]) == ("first_frame_separate", "stateful", 2)
    assert "latents_mean" not in vae and vae["scaling_factor"] == 0.7
    assert len(vae["cache"]) == len(vae["decoder_step"]["inputs"]) - 1 == len(vae["decoder"]["outputs"]) - 1
    assert vae["decoder"]["inputs"][0]["shape"][2] == "latent_frames"
    assert vae["decoder_step"]["inputs"][0]["shape"][2] == vae["decode_chunk"]
    assert vae["decoder_step"]["outputs"][0]["shape"][2] == vae["decode_chunk"] * vae["temporal_compression"]
    assert (sch["kind"], sch["shift"], sch["snr_shift_scale"], sch["dynamic_cfg"]) == ("cogvideox_dpm", 1.0, 1.0, True)
    # Every served frame count has an odd number of latent frames (8k + 1): an even count decodes to 4T frames.
    fr = video["frames"]
    for f in range(fr["min"], fr["max"] + 1, fr["step"]):
        assert (f - 1) % 4 == 0 and ((f - 1) // 4 + 1) % 2 == 1, f
    assert video["default_fps"] == 8 and (video["default_frames"] - 1) % 8 == 0


def test_cases(bundle) -> None:  # noqa: ANN001, PLR0915
    m, cases = bundle
    te, vae, names = m["text_encoder"], m["vae"], m["dit"]["names"]
    tok = Tokenizer.from_file(str(BUNDLE / te["tokenizer"]))
    enc, dit = session(BUNDLE / te["file"]), session(BUNDLE / m["dit"]["file"])
    first, step = session(BUNDLE / vae["decoder"]["file"]), session(BUNDLE / vae["decoder_step"]["file"])
    n_max = te["max_tokens"]
    assert len(cases) == 4
    for case in cases:
        fx = load_file(str(FIXTURES / case["file"]))
        steps, seed = case["steps"], int(case["seed"])
        # Noise: stream 0 for the initial latents, stream 1 + i for what step i adds.
        shape = tuple(fx["noise"].shape)
        n = int(np.prod(shape))
        np.testing.assert_array_equal(gaussian(seed, n).reshape(shape), fx["noise"])
        for i in range(steps):
            np.testing.assert_array_equal(gaussian(seed, n, stream=1 + i).reshape(shape), fx["step_noise"][i])
        # Schedule and guidance from the manifest's kind and the case's steps.
        sched = Cog(steps, m["scheduler"]["snr_shift_scale"])
        np.testing.assert_array_equal(sched.timesteps, fx["timesteps"])
        np.testing.assert_allclose(sched.alphas_cumprod, fx["alphas_cumprod"], rtol=1e-13, atol=0)
        g = [dynamic_cfg(case["guidance"], steps, int(t)) for t in sched.timesteps]
        assert g == fx["guidance_scales"].tolist()
        # Text: ids padded to 226 with <pad> = 0, mask all ones, every row kept.
        states = []
        for text, ids_key, st_key in (("", "neg_input_ids", "neg_text_states"),
                                      (case["prompt"], "input_ids", "text_states")):
            ids = tok.encode(text).ids
            assert ids == fx[ids_key].tolist()
            padded = np.zeros((1, n_max), np.int64)
            padded[0, : len(ids)] = ids
            h = enc.run(None, {"input_ids": padded, "attention_mask": np.ones_like(padded)})[0]
            np.testing.assert_allclose(h[0], fx[st_key], rtol=0, atol=TOL)
            states.append(h)
        text = np.concatenate(states)  # [uncond, cond]
        # DiT at the first step: one batched run.
        x = fx["noise"]

        def run(x: np.ndarray, t: int) -> np.ndarray:
            return dit.run([names["output"]], {names["latents"]: np.stack([x, x]),
                                               names["timestep"]: np.full((2,), float(t), np.float32),
                                               names["text_states"]: text})[0]

        v = run(x, sched.timesteps[0])
        np.testing.assert_allclose(v[0], fx["velocity_uncond_step1"], rtol=0, atol=TOL)
        np.testing.assert_allclose(v[1], fx["velocity_cond_step1"], rtol=0, atol=TOL)
        # The scheduler's first step from the recorded velocities is the pipeline's (measured: bit for bit).
        u, c = fx["velocity_uncond_step1"], fx["velocity_cond_step1"]
        x1, _ = sched.dpm_step(0, u + f32(g[0]) * (c - u), x, None, fx["step_noise"][0])
        np.testing.assert_allclose(x1, fx["latents_step1"], rtol=0, atol=STEP_TOL)
        # The whole loop from the bundle: DiT graph + the numpy scheduler.
        old = None
        for i in range(steps):
            v = run(x, sched.timesteps[i])
            x, old = sched.dpm_step(i, v[0] + f32(g[i]) * (v[1] - v[0]), x, old, fx["step_noise"][i])
            if i == 0:
                np.testing.assert_allclose(x, fx["latents_step1"], rtol=0, atol=TOL)
        np.testing.assert_allclose(x, fx["latents_final"], rtol=0, atol=1e-3)
        # VAE: z = x / scaling_factor, decoded in _decode's chunks (first 2 + T mod 2, then 2 each) with the cache.
        z = (fx["latents_final"][None] / f32(vae["scaling_factor"])).astype(np.float32)
        out = stateful_decode(first, step, vae, z, chunks(z.shape[2], vae["decode_chunk"]))
        assert all(o.shape[2] == vae["decode_chunk"] * vae["temporal_compression"] for o in out[1:])
        assert_frames(np.concatenate(out, axis=2)[0], case, fx, TOL)


SCHEDULER_CASES = json.loads((SCHEDULERS / "cases.json").read_text())["cases"]


@pytest.mark.parametrize("case", [c for c in SCHEDULER_CASES if c["kind"].startswith("cogvideox_")],
                         ids=lambda c: c["name"])
def test_scheduler_fixture(case: dict) -> None:
    st = load_file(str(SCHEDULERS / f"{case['name']}.safetensors"))
    sched = Cog(case["steps"], case["snr_shift_scale"])
    np.testing.assert_array_equal(sched.timesteps.astype(np.float32), st["timesteps"])
    np.testing.assert_allclose(sched.alphas_cumprod, st["alphas_cumprod_f64"], rtol=1e-13, atol=0)
    n = st["x_init"].size
    x, old = st["x_init"], None
    for i in range(case["steps"]):
        v = st["model_outputs"][i]
        if case["kind"] == "cogvideox_dpm":
            noise = gaussian(int(case["seed"]), n, stream=1 + i)
            np.testing.assert_array_equal(noise, st["step_noise"][i])
            # teacher-forced from diffusers' own previous sample and x0, then along the trajectory
            prev_x = st["x_init"] if i == 0 else st["samples"][i - 1]
            prev_x0 = None if i == 0 else st["pred_original_samples"][i - 1]
            one, x0 = sched.dpm_step(i, v, prev_x, prev_x0, noise)
            np.testing.assert_allclose(x0, st["pred_original_samples"][i], rtol=0, atol=STEP_TOL)
            x, old = sched.dpm_step(i, v, x, old, noise)
        else:
            one = sched.ddim_step(i, v, st["x_init"] if i == 0 else st["samples"][i - 1])
            x = sched.ddim_step(i, v, x)
        np.testing.assert_allclose(one, st["samples"][i], rtol=0, atol=STEP_TOL)
        np.testing.assert_allclose(x, st["samples"][i], rtol=0, atol=STEP_TOL)
