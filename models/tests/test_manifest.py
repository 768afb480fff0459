"""The committed bundle's manifest parses and validates, every sha256 matches, and mismatches are refused."""

import shutil
from pathlib import Path

import pytest

from vidmesh_tiny.manifest import BundleError, validate
from vidmesh_tiny.paths import BUNDLE


def test_committed_bundle_is_valid():
    m = validate(BUNDLE)
    assert m["model"]["name"] == "vidmesh-tiny"
    assert m["video"]["default_frames"] >= 16 and m["video"]["default_height"] >= 64
    assert m["video"]["default_fps"] == 8


def test_bundle_size_within_budget():
    # 40 MiB for the model itself, plus the DiT's second copy split for step caching ([dit.cache], ~11.6 MB).
    total = sum(p.stat().st_size for p in BUNDLE.rglob("*") if p.is_file())
    assert total <= 52 * 1024 * 1024, f"bundle is {total / 2**20:.1f} MiB"


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(BUNDLE, dst)
    return dst


def test_tampered_file_is_refused(copy: Path):
    with open(copy / "dit.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="dit: sha256 of dit.onnx"):
        validate(copy)


def test_missing_key_is_refused(copy: Path):
    text = (copy / "model.toml").read_text().replace("latent_channels = 8\n", "")
    (copy / "model.toml").write_text(text)
    with pytest.raises(BundleError, match="vae: missing key 'latent_channels'"):
        validate(copy)


def test_inconsistent_numbers_are_refused(copy: Path):
    text = (copy / "model.toml").read_text().replace("frames = [8, 16, 32]", "frames = [8, 18, 32]")
    (copy / "model.toml").write_text(text)
    with pytest.raises(BundleError, match="18 is not a multiple"):
        validate(copy)


def test_missing_file_is_refused(copy: Path):
    (copy / "vae_decoder.onnx").unlink()
    with pytest.raises(BundleError, match="vae.decoder: file .* not found"):
        validate(copy)
