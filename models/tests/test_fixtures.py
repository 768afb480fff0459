"""The bundle's ONNX graphs, run by ONNX Runtime, reproduce the committed golden fixtures.

These fixtures are what the Rust services' parity tests compare against; this test pins them to the bundle
(a re-exported bundle without regenerated fixtures fails here) and to the Python reference code paths.
"""

import json
import tomllib

import numpy as np
import pytest
from safetensors.numpy import load_file

from vidmesh_tiny import noise
from vidmesh_tiny.fixtures import OUT
from vidmesh_tiny.paths import BUNDLE
from vidmesh_tiny.sampler import OrtBackend, Request, generate, sigmas
from vidmesh_tiny.tokenize import Tokenizer

META = json.loads((OUT / "cases.json").read_text())
MANIFEST = tomllib.loads((BUNDLE / "model.toml").read_text())


@pytest.fixture(scope="module")
def backend():
    return OrtBackend(BUNDLE)


@pytest.fixture(scope="module")
def tok():
    return Tokenizer(BUNDLE / "tokenizer.json")


def test_fixtures_belong_to_this_bundle():
    assert META["bundle"] == MANIFEST["model"]["version"]
    assert META["latent_scale"] == MANIFEST["vae"]["latent_scale"]
    assert len(META["cases"]) >= 3


@pytest.mark.parametrize("case", META["cases"], ids=lambda c: c["file"])
def test_case(case, backend, tok):
    fx = load_file(str(OUT / case["file"]))
    req = Request(**({k: v for k, v in case.items() if k != "file"} | {"seed": int(case["seed"])}))
    ids, mask = tok([req.prompt])
    np.testing.assert_array_equal(ids[0], fx["input_ids"])
    np.testing.assert_array_equal(mask[0], fx["attention_mask"])
    states = backend.encode_text(ids, mask)[0]
    np.testing.assert_allclose(states, fx["text_states"], atol=1e-4, rtol=0)
    v = MANIFEST["vae"]
    tc, sc = v["temporal_compression"], v["spatial_compression"]
    shape = (v["latent_channels"], req.frames // tc, req.height // sc, req.width // sc)
    np.testing.assert_array_equal(noise.latent_noise(req.seed, shape), fx["init_noise"])
    _, (tr,) = generate(backend, tok, [req], META["latent_shift"], META["latent_scale"], trace=True)
    np.testing.assert_allclose(tr.after_step[0], fx["latents_step1"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(tr.latents, fx["latents_final"], atol=1e-3, rtol=0)
    np.testing.assert_allclose(tr.video, fx["video"], atol=1e-3, rtol=0)


def test_schedule_endpoints():
    s = sigmas(30, 2.0)
    assert s[0] == 1.0 and s[-1] == 0.0 and len(s) == 31 and np.all(np.diff(s) < 0)
    np.testing.assert_allclose(sigmas(4, 1.0), [1.0, 0.75, 0.5, 0.25, 0.0])
