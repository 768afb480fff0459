"""The LTX-Video bundle (models/ltx-tiny, format 2) against diffusers' golden fixtures, without torch.

The fixtures were written by `python -m vidmesh_export.goldens_ltx` from diffusers' own LTXPipeline; here every
piece a service runs is checked through ONNX Runtime and numpy: tokenizer.json, the text encoder (ids padded to
max_tokens, an all-ones mask: encoder_mask = false; all 128 state rows kept), the flow-match Euler schedule with
LTX's dynamic shift and shift_terminal recomputed from the manifest, the DiT (cond and uncond rows in one batch,
text mask and fps inputs) for the first step and the whole loop (with LTXPipeline's CFG rescale, guidance_rescale,
where a case sets it), and the VAE decoder on the fixture's final latents after de-normalisation and decode-noise
mixing.
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

ROOT = Path(__file__).resolve().parent.parent
NAME = "ltx-tiny"
TOL = 1e-4

pytestmark = pytest.mark.skipif(not (ROOT / NAME / "model.toml").is_file(), reason="no models/ltx-tiny bundle")


@pytest.fixture(scope="module")
def bundle():  # noqa: ANN201
    b = ROOT / NAME
    m = tomllib.loads((b / "model.toml").read_text())
    cases = json.loads((ROOT / "fixtures" / NAME / "cases.json").read_text())["cases"]
    return b, m, cases


def test_manifest(bundle) -> None:  # noqa: ANN001
    b, m, cases = bundle
    assert m["schema_version"] == 2
    te, vae, dit, sched, video = m["text_encoder"], m["vae"], m["dit"], m["scheduler"], m["video"]
    assert_hashes(b, [te], [te, vae["decoder"], dit])
    # text: LTXPipeline pads to 128 and runs T5 unmasked; the DiT gets every state row and the real-token mask
    assert (te["max_tokens"], te["padding"], te["prompt_clean"]) == (128, "max_length", "none")
    assert (te["encoder_mask"], te["zero_pad_states"], te["dit_mask"]) == (False, False, True)
    # VAE: real LTX compression, one whole-video decoder graph with a timestep input, no step graph, no cache
    assert (vae["temporal_compression"], vae["spatial_compression"]) == (8, 32)
    assert (vae["frame_rule"], vae["decode"]) == ("first_frame_separate", "whole")
    assert "decoder_step" not in vae and "cache" not in vae
    assert len(vae["latents_mean"]) == len(vae["latents_std"]) == vae["latent_channels"]
    assert len(set(vae["latents_mean"])) > 1 and len(set(vae["latents_std"])) > 1  # really per channel
    assert vae["names"] == {"latents": "latents", "video": "video", "timestep": "timestep"}
    assert [i["name"] for i in vae["decoder"]["inputs"]] == ["latents", "timestep"]
    assert vae["decoder"]["inputs"][0]["shape"] == [1, vae["latent_channels"], "latent_frames", "latent_height",
                                                    "latent_width"]
    assert vae["decoder"]["outputs"][0]["shape"] == [1, 3, "frames", "height", "width"]
    # DiT: flow velocity, batched CFG, fps as an extra input
    assert (dit["prediction"], dit["guidance"], dit["timestep_scale"], dit["timestep_rounding"]) == (
        "flow_velocity", "cfg_batched", 1000.0, "none")
    assert dit["names"] == {"latents": "hidden_states", "timestep": "timestep", "text_states": "encoder_hidden_states",
                            "text_mask": "encoder_attention_mask", "output": "velocity"}
    assert dit["extra_inputs"] == [{"name": "fps", "source": "fps"}]
    assert [(i["name"], i["dtype"]) for i in dit["inputs"]] == [
        ("hidden_states", "float32"), ("timestep", "float32"), ("encoder_hidden_states", "float32"),
        ("encoder_attention_mask", "int64"), ("fps", "float32")]
    assert dit["inputs"][2]["shape"][2] == te["hidden_size"]
    # scheduler: LTX-Video's flow-match Euler config, LTXPipeline's defaults
    assert (sched["kind"], sched["steps"], sched["shift"], sched["guidance"]) == ("flow_match_euler", 50, 1.0, 3.0)
    assert sched["dynamic_shift"] == {"base_seq_len": 1024, "max_seq_len": 4096, "base_shift": 0.95,
                                      "max_shift": 2.05}
    assert sched["shift_terminal"] == 0.1
    assert sched["guidance_rescale"] == 0.0  # LTXPipeline's default: CFG rescale off unless a request sets it
    assert video["frames"] == {"min": 9, "max": 257, "step": 8}
    assert (video["default_frames"], video["default_height"], video["default_width"], video["default_fps"]) == (
        161, 512, 704, 25)
    for case in cases:
        assert case["shift"] == sched["shift"]
        assert (case["decode_timestep"], case["decode_noise_scale"]) == (
            vae["decode_timestep"], vae["decode_noise_scale"])
        assert (case["frames"] - 1) % 8 == 0 and case["height"] % 32 == 0 and case["width"] % 32 == 0
        assert 0.0 <= case["guidance_rescale"] <= 1.0
    assert any(case["guidance_rescale"] > 0 for case in cases)  # the fixtures exercise CFG rescale


def _mu(ds: dict, tokens: int) -> float:
    """diffusers' calculate_shift (Python floats)."""
    m = (ds["max_shift"] - ds["base_shift"]) / (ds["max_seq_len"] - ds["base_seq_len"])
    b = ds["base_shift"] - m * ds["base_seq_len"]
    return tokens * m + b


def _schedule(steps: int, mu: float, shift_terminal: float | None) -> tuple[np.ndarray, np.ndarray]:
    """LTXPipeline + FlowMatchEulerDiscreteScheduler.set_timesteps(sigmas=linspace(1, 1/N, N), mu), in float32."""
    f = np.float32
    s = np.linspace(1.0, 1.0 / steps, steps).astype(f)
    e = f(math.exp(mu))
    s = e / (e + (f(1) / s - f(1)))  # exponential time shift with sigma = 1
    if shift_terminal:
        one_minus = f(1) - s
        scale = one_minus[-1] / f(1 - shift_terminal)
        s = f(1) - one_minus / scale
    return np.concatenate([s, [f(0)]]).astype(f), (s * f(1000)).astype(f)


def _rescale_cfg(guided: np.ndarray, v_cond: np.ndarray, r: float) -> np.ndarray:
    """diffusers' rescale_noise_cfg (arXiv 2305.08891 §3.4) on one row, float32: std with Bessel's correction over
    all of the row's elements; v = r * v * (std(v_cond) / std(v)) + (1 - r) * v, skipped at r = 0 like LTXPipeline."""
    if r <= 0:
        return guided
    std_text, std_cfg = v_cond.std(ddof=1), guided.std(ddof=1)
    return (np.float32(r) * (guided * (std_text / std_cfg)) + np.float32(1 - r) * guided).astype(np.float32)


def test_cases(bundle) -> None:  # noqa: ANN001, PLR0915
    b, m, cases = bundle
    te, dit_m, vae, sched = m["text_encoder"], m["dit"], m["vae"], m["scheduler"]
    tok = Tokenizer.from_file(str(b / te["tokenizer"]))
    enc, dit, dec = session(b / te["file"]), session(b / dit_m["file"]), session(b / vae["decoder"]["file"])
    n_max = te["max_tokens"]
    names = dit_m["names"]
    for case in cases:
        fx = load_file(str(ROOT / "fixtures" / NAME / case["file"]))
        c, t_lat, h_lat, w_lat = fx["noise"].shape
        # Schedule: mu from the manifest's dynamic_shift and the latent token count, then diffusers' sigmas.
        mu = _mu(sched["dynamic_shift"], t_lat * h_lat * w_lat)
        assert mu == pytest.approx(case["mu"], abs=1e-12)
        sig, ts = _schedule(case["steps"], mu, sched.get("shift_terminal"))
        np.testing.assert_array_equal(sig, fx["sigmas"])  # bit-exact in float32 (measured)
        np.testing.assert_array_equal(ts, fx["timesteps"])
        # Text: ids padded to max_tokens with pad id 0, all-ones encoder mask, all rows kept; DiT mask = real ids.
        states, masks = [], []
        for text, ids_key, st_key in ((case["negative_prompt"], "neg_input_ids", "neg_text_states"),
                                      (case["prompt"], "input_ids", "text_states")):
            ids = tok.encode(text).ids
            assert ids == fx[ids_key].tolist()
            padded = np.zeros((1, n_max), np.int64)
            padded[0, : len(ids)] = ids
            h = enc.run(None, {"input_ids": padded, "attention_mask": np.ones((1, n_max), np.int64)})[0]
            assert h.shape == (1, n_max, te["hidden_size"])
            np.testing.assert_allclose(h[0], fx[st_key], rtol=0, atol=TOL)
            states.append(h)
            masks.append((np.arange(n_max) < len(ids)).astype(np.int64)[None])
        states_b, masks_b = np.concatenate(states), np.concatenate(masks)  # rows [uncond, cond]
        fps = {dit_m["extra_inputs"][0]["name"]: np.full((2,), case["fps"], np.float32)}
        g, r = np.float32(case["guidance"]), case["guidance_rescale"]
        # DiT: the first step from the fixture's noise, then the whole loop (Euler on the guided velocity).
        x = fx["noise"][None]
        for i in range(case["steps"]):
            v = dit.run([names["output"]], {names["latents"]: np.concatenate([x, x]),
                                            names["timestep"]: np.full((2,), fx["timesteps"][i], np.float32),
                                            names["text_states"]: states_b, names["text_mask"]: masks_b,
                                            **fps})[0]
            if i == 0:
                np.testing.assert_allclose(v[0], fx["velocity_uncond_step1"], rtol=0, atol=TOL)
                np.testing.assert_allclose(v[1], fx["velocity_cond_step1"], rtol=0, atol=TOL)
            guided = _rescale_cfg(v[0:1] + g * (v[1:2] - v[0:1]), v[1:2], r)
            x = (x + (fx["sigmas"][i + 1] - fx["sigmas"][i]) * guided).astype(np.float32)
            if i == 0:
                np.testing.assert_allclose(x[0], fx["latents_step1"], rtol=0, atol=TOL)
        np.testing.assert_allclose(x[0], fx["latents_final"], rtol=0, atol=10 * TOL)
        # VAE: z = x * std / sf + mean, z = (1 - s) z + s * decode noise, one whole-video decode with the timestep.
        mean = np.asarray(vae["latents_mean"], np.float32).reshape(1, -1, 1, 1, 1)
        std = np.asarray(vae["latents_std"], np.float32).reshape(1, -1, 1, 1, 1)
        z = fx["latents_final"][None] * std / np.float32(vae["scaling_factor"]) + mean
        s = np.float32(vae["decode_noise_scale"])
        z = ((np.float32(1) - s) * z + s * fx["decode_noise"][None]).astype(np.float32)
        video = dec.run([vae["names"]["video"]], {vae["names"]["latents"]: z,
                                                   vae["names"]["timestep"]: np.array([vae["decode_timestep"]],
                                                                                      np.float32)})[0]
        assert video.shape == (1, 3, case["frames"], case["height"], case["width"])
        assert_frames(video[0], case, fx, TOL)
