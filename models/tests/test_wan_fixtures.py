"""The Wan bundles (models/wan2.*-tiny, format 2) against diffusers' golden fixtures, without torch.

The fixtures were written by `python -m vidmesh_export.goldens` from diffusers' own WanPipeline; here every piece a
service runs is checked through ONNX Runtime: tokenizer.json, the text encoder (prompt padded to max_tokens),
the DiT at the first step (cond and uncond), the UniPC schedule (sigmas/timesteps from the manifest's shift), and
the stateful VAE pair decoding the final latents to the pipeline's frames.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from helpers import assert_frames, assert_hashes, session
from vidmesh_export.replay import stateful_decode

ROOT = Path(__file__).resolve().parent.parent
BUNDLES = [b for b in ("wan2.1-tiny", "wan2.2-tiny", "wan2.2-ti2v-tiny")
           if (ROOT / b / "model.toml").is_file()]
TOL = 1e-4


@pytest.fixture(scope="module", params=BUNDLES)
def bundle(request):  # noqa: ANN001, ANN201
    b = ROOT / request.param
    m = tomllib.loads((b / "model.toml").read_text())
    cases = json.loads((ROOT / "fixtures" / request.param / "cases.json").read_text())["cases"]
    return b, m, cases


def test_manifest_files(bundle) -> None:  # noqa: ANN001
    b, m, _ = bundle
    assert m["schema_version"] == 2
    comps = [m["text_encoder"], m["vae"]["decoder"], m["vae"]["decoder_step"], m["dit"]] + (
        [m["dit2"]] if "dit2" in m else [])
    assert_hashes(b, [m["text_encoder"]], comps)
    assert len(m["vae"]["cache"]) == len(m["vae"]["decoder_step"]["inputs"]) - 1


def _schedule(steps: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """diffusers UniPCMultistepScheduler(use_flow_sigmas, final_sigmas_type="zero").set_timesteps, in numpy."""
    u = np.linspace(1.0, 1.0 / 1000, steps + 1)[:-1]
    s = shift * u / (1 + (shift - 1) * u)
    if abs(s[0] - 1) < 1e-6:  # diffusers: "to avoid inf torch.log(alpha_si)": sigma_0 = 1 - 1e-6, t_0 = 999
        s[0] -= 1e-6
    return np.concatenate([s, [0.0]]).astype(np.float32), (s * 1000).astype(np.int64)


def test_cases(bundle) -> None:  # noqa: ANN001
    b, m, cases = bundle
    te, tok = m["text_encoder"], Tokenizer.from_file(str(b / m["text_encoder"]["tokenizer"]))
    enc = session(b / te["file"])
    dits = {"dit": session(b / m["dit"]["file"])}
    if "dit2" in m:
        dits["dit2"] = session(b / m["dit2"]["file"])
    vae = m["vae"]
    first, step = session(b / vae["decoder"]["file"]), session(b / vae["decoder_step"]["file"])
    n_max = te["max_tokens"]
    for case in cases:
        fx = load_file(str(ROOT / "fixtures" / b.name / case["file"]))
        # Schedule: the manifest's shift with diffusers' formula gives the fixture's sigmas and timesteps.
        assert case["shift"] == m["scheduler"]["shift"]
        sig, ts = _schedule(case["steps"], case["shift"])
        np.testing.assert_array_equal(ts, fx["timesteps"])
        np.testing.assert_allclose(sig, fx["sigmas"], rtol=0, atol=1e-7)
        # Text: tokenizer.json ids, padded to max_tokens; states cut to the real length, then zero-padded.
        states = []
        for text, ids_key, st_key in ((case["prompt"], "input_ids", "text_states"),
                                      (case["negative_prompt"], "neg_input_ids", "neg_text_states")):
            ids = tok.encode(text).ids
            assert ids == fx[ids_key].tolist()
            padded = np.zeros((1, n_max), np.int64)
            padded[0, : len(ids)] = ids
            mask = (np.arange(n_max) < len(ids)).astype(np.int64)[None]
            h = enc.run(None, {"input_ids": padded, "attention_mask": mask})[0][0, : len(ids)]
            np.testing.assert_allclose(h, fx[st_key], rtol=0, atol=TOL)
            s = np.zeros((1, n_max, te["hidden_size"]), np.float32)
            s[0, : len(ids)] = h
            states.append(s)
        # DiT at the first step, both rows (cfg_separate), timestep = trunc(sigma_0 * 1000) as float32.
        names = m["dit"]["names"]
        dit = dits[case.get("dit_per_step", ["dit"])[0]]
        for s, key in zip(states, ("velocity_cond_step1", "velocity_uncond_step1")):
            v = dit.run([names["output"]], {names["latents"]: fx["noise"][None],
                                            names["timestep"]: np.array([float(ts[0])], np.float32),
                                            names["text_states"]: s})[0][0]
            np.testing.assert_allclose(v, fx[key], rtol=0, atol=TOL)
        # VAE: z = x / (1 / std) + mean, first frame alone, then one step per latent frame with the cache.
        mean = np.asarray(vae["latents_mean"], np.float32).reshape(1, -1, 1, 1, 1)
        inv_std = (np.float32(1.0) / np.asarray(vae["latents_std"], np.float32)).reshape(1, -1, 1, 1, 1)
        z = (fx["latents_final"][None] / inv_std + mean).astype(np.float32)
        chunks = stateful_decode(first, step, vae, z, [(t, t + 1) for t in range(z.shape[2])])
        assert all(c.shape[2] == vae["temporal_compression"] for c in chunks[1:])
        assert_frames(np.concatenate(chunks, axis=2)[0], case, fx, TOL)
