"""The HunyuanVideo bundle (models/hunyuan-tiny, format 2) against diffusers' golden fixtures, without torch.

The fixtures were written by `python -m vidmesh_export.goldens_hunyuan` from diffusers' own HunyuanVideoPipeline;
here every piece a service runs is checked through ONNX Runtime: the manifest (hashes, the keys the Rust side reads,
the graphs' signatures), the flow-match Euler schedule from the manifest's shift, tokenizer.json (template, crop)
and tokenizer_2.json, the Llama text encoder (padded to crop_start + max_tokens, first crop_start rows dropped),
the CLIP pooled encoder, the DiT at the first step with its extra inputs (pooled text, guidance * 1000) and that
step's Euler update, and the VAE decoder run window by window and blended as AutoencoderKLHunyuanVideo's framewise
decode (re-implemented here in numpy) to the pipeline's frames.
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

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "hunyuan-tiny"
FIXTURES = ROOT / "fixtures" / "hunyuan-tiny"
TOL = 1e-4

pytestmark = pytest.mark.skipif(not (BUNDLE / "model.toml").is_file(), reason="no models/hunyuan-tiny bundle")


@pytest.fixture(scope="module")
def m() -> dict:
    return tomllib.loads((BUNDLE / "model.toml").read_text())


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    return json.loads((FIXTURES / "cases.json").read_text())["cases"]


@pytest.fixture(scope="module")
def sessions(m: dict) -> dict:
    return {"te": session(BUNDLE / m["text_encoder"]["file"]), "te2": session(BUNDLE / m["text_encoder_2"]["file"]),
            "dit": session(BUNDLE / m["dit"]["file"]), "vae": session(BUNDLE / m["vae"]["decoder"]["file"])}


def test_manifest_files(m: dict, sessions: dict) -> None:
    assert m["schema_version"] == 2
    te, te2, vae, dit = m["text_encoder"], m["text_encoder_2"], m["vae"], m["dit"]
    assert_hashes(BUNDLE, [te, te2], [te, te2, vae["decoder"], dit])
    # Declared signatures = the graphs' (names, element types, named / fixed axes).
    dtypes = {"tensor(float)": "float32", "tensor(int64)": "int64"}
    for key, c in (("te", te), ("te2", te2), ("vae", vae["decoder"]), ("dit", dit)):
        s = sessions[key]
        for declared, actual in ((c["inputs"], s.get_inputs()), (c["outputs"], s.get_outputs())):
            assert [d["name"] for d in declared] == [a.name for a in actual], key
            for d, a in zip(declared, actual):
                assert dtypes[a.type] == d["dtype"] and list(a.shape) == d["shape"], (key, d, a.shape)
    # The keys the Rust side reads for this family.
    assert te["template"].count("{}") == 1 and te["crop_start"] > 0
    assert (te["max_tokens"], te["padding"], te["prompt_clean"]) == (256, "max_length", "none")
    assert (te["encoder_mask"], te["zero_pad_states"], te["dit_mask"]) == (True, False, True)
    assert te["hidden_size"] == dit["inputs"][2]["shape"][2]
    tok = json.loads((BUNDLE / te["tokenizer"]).read_text())
    assert tok["truncation"]["max_length"] == te["crop_start"] + te["max_tokens"] and tok["padding"] is None
    tok2 = json.loads((BUNDLE / te2["tokenizer"]).read_text())
    assert tok2["truncation"]["max_length"] == te2["max_tokens"] == 77
    assert tok2["padding"]["pad_token"] == "<|endoftext|>"  # CLIP pads with end-of-text (declared, not guessed)
    assert te2["names"] == {"input_ids": "input_ids", "pooled": "pooled"} and te2["padding"] == "max_length"
    assert te2["pooled_size"] == te2["outputs"][0]["shape"][1] == dit["inputs"][4]["shape"][1]
    assert (vae["decode"], vae["window"], vae["window_stride"], vae["window_blend"]) == ("windowed", 5, 3, 4)
    assert (vae["temporal_compression"], vae["spatial_compression"], vae["frame_rule"]) == (4, 8,
                                                                                            "first_frame_separate")
    assert vae["scaling_factor"] == 0.476986 and "latents_mean" not in vae and "decoder_step" not in vae
    assert (dit["guidance"], dit["timestep_rounding"], dit["prediction"]) == ("embedded", "none", "flow_velocity")
    assert dit["extra_inputs"] == [{"name": "pooled_projections", "source": "pooled_text"},
                                   {"name": "guidance", "source": "guidance_x1000"}]
    assert m["scheduler"] == {"kind": "flow_match_euler", "steps": 50, "shift": 7.0, "guidance": 6.0}
    assert m["video"]["frames"] == {"min": 5, "max": 129, "step": 4} and m["video"]["fps"] == [24]


def _schedule(steps: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """HunyuanVideoPipeline's sigmas: linspace(1, 0, N + 1)[:-1] in float32, shifted, then 0; t = sigma * 1000."""
    u = np.linspace(1.0, 0.0, steps + 1)[:-1].astype(np.float32)
    s = (np.float32(shift) * u / (np.float32(1) + np.float32(shift - 1) * u)).astype(np.float32)
    return np.concatenate([s, np.zeros(1, np.float32)]), s * np.float32(1000)


def _windowed(run, z: np.ndarray, window: int, stride: int, blend: int, tc: int) -> np.ndarray:  # noqa: ANN001
    """AutoencoderKLHunyuanVideo._decode with framewise decoding (diffusers' _temporal_tiled_decode + blend_t)."""
    t = z.shape[2]
    if t <= window - 1:
        return run(z)
    tiles = []
    for i in range(0, t, stride):
        d = run(np.ascontiguousarray(z[:, :, i: i + window]))
        tiles.append(d if i == 0 else d[:, :, 1:])
    pieces = [tiles[0][:, :, : stride * tc + 1]]
    for k in range(1, len(tiles)):
        a, b = tiles[k - 1], tiles[k]
        e = min(a.shape[2], b.shape[2], blend)
        for x in range(e):  # in place: tiles[k] is the blended tile the next one blends with
            b[:, :, x] = a[:, :, a.shape[2] - e + x] * np.float32(1 - x / e) + b[:, :, x] * np.float32(x / e)
        pieces.append(b[:, :, : stride * tc])
    return np.concatenate(pieces, axis=2)[:, :, : 1 + (t - 1) * tc]


def _text(m: dict, sessions: dict, prompt: str) -> tuple:
    te = m["text_encoder"]
    tok = Tokenizer.from_file(str(BUNDLE / te["tokenizer"]))
    ids = tok.encode(te["template"].format(prompt)).ids
    n = te["crop_start"] + te["max_tokens"]
    padded = np.full((1, n), tok.token_to_id("<pad>"), np.int64)
    padded[0, : len(ids)] = ids
    mask = (np.arange(n) < len(ids)).astype(np.int64)[None]
    h = sessions["te"].run(None, {"input_ids": padded, "attention_mask": mask})[0][0]
    c = te["crop_start"]
    return ids[c:], h[c:], mask[0, c:]


def _pooled(m: dict, sessions: dict, prompt: str) -> tuple:
    te2 = m["text_encoder_2"]
    tok = Tokenizer.from_file(str(BUNDLE / te2["tokenizer"]))
    ids = tok.encode(prompt).ids
    padded = np.full((1, te2["max_tokens"]), tok.padding["pad_id"], np.int64)
    padded[0, : len(ids)] = ids
    return ids, sessions["te2"].run(None, {"input_ids": padded})[0][0]


def test_cases(m: dict, cases: list[dict], sessions: dict) -> None:
    assert len(cases) == 4
    dit, vae = m["dit"], m["vae"]
    names = dit["names"]
    other_states = None
    for case in cases:
        fx = load_file(str(FIXTURES / case["file"]))
        # Schedule from the manifest's shift.
        assert case["shift"] == m["scheduler"]["shift"]
        sig, ts = _schedule(case["steps"], case["shift"])
        np.testing.assert_allclose(sig, fx["sigmas"], rtol=0, atol=1e-7)
        np.testing.assert_allclose(ts, fx["timesteps"], rtol=0, atol=1e-4)
        # Text: template + crop (Llama), pooled CLIP.
        ids, states, mask = _text(m, sessions, case["prompt"])
        assert ids == fx["input_ids"].tolist() and mask.sum() == len(ids) == case["real_tokens"]
        assert states.shape == fx["text_states"].shape == (256, m["text_encoder"]["hidden_size"])
        np.testing.assert_allclose(states, fx["text_states"], rtol=0, atol=TOL)
        ids2, pooled = _pooled(m, sessions, case["prompt"])
        assert ids2 == fx["input_ids_2"].tolist()
        np.testing.assert_allclose(pooled, fx["pooled"], rtol=0, atol=TOL)
        # DiT at the first step (one row: embedded guidance) and its Euler step.
        assert float(fx["guidance"]) == case["guidance"] * 1000 == case["guidance_x1000"]
        feeds = {names["latents"]: fx["noise"][None], names["timestep"]: fx["timesteps"][:1],
                 names["text_states"]: states[None], names["text_mask"]: mask[None],
                 "pooled_projections": pooled[None], "guidance": np.array([case["guidance_x1000"]], np.float32)}
        v = sessions["dit"].run([names["output"]], feeds)[0][0]
        np.testing.assert_allclose(v, fx["velocity_step1"], rtol=0, atol=TOL)
        x1 = fx["noise"] + (fx["sigmas"][1] - fx["sigmas"][0]) * v
        np.testing.assert_allclose(x1, fx["latents_step1"], rtol=0, atol=TOL)
        if other_states is not None:  # the prompt really conditions the DiT (a degenerate fixture would not)
            v2 = sessions["dit"].run([names["output"]], {**feeds, names["text_states"]: other_states[0][None],
                                                         names["text_mask"]: other_states[1][None]})[0][0]
            assert float(np.abs(v2 - v).max()) > 1e-3
        other_states = (states, mask)
        # VAE: z = x / scaling_factor, windows of the decoder graph blended as diffusers' framewise decode.
        z = (fx["latents_final"][None] / np.float32(vae["scaling_factor"])).astype(np.float32)
        runs = []

        def run(w: np.ndarray) -> np.ndarray:
            runs.append(w.shape[2])
            return sessions["vae"].run(None, {vae["names"]["latents"]: w})[0]

        video = _windowed(run, z, vae["window"], vae["window_stride"], vae["window_blend"],
                          vae["temporal_compression"])[0]
        assert runs == [b - a for a, b in case["vae_windows"]]
        assert_frames(video, case, fx, TOL)
