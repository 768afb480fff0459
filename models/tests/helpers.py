"""What the torch-free bundle fixture tests (test_{wan,ltx,cogvideox,hunyuan}_fixtures.py) share; imported as
`helpers` (pytest puts this directory on sys.path, next to conftest.py).

- `session(path)`: an ONNX Runtime CPU session (2 intra-op threads);
- `assert_hashes(...)`: the tokenizer and graph files (external data included) have the sha256 model.toml declares;
- `assert_frames(...)`: a decoded video, post-processed as the pipelines do (vidmesh_export.replay.video_frames),
  has the case's frame count and size and matches the fixture's frames.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnxruntime as ort

from vidmesh_export.replay import video_frames


def session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def assert_hashes(bundle: Path, text_encoders: list[dict], graphs: list[dict]) -> None:
    """The tokenizer of every [text_encoder*] table in `text_encoders` and the file and external data of every
    graph table in `graphs` hash to the sha256 the manifest gives."""
    files = [(t["tokenizer"], t["tokenizer_sha256"]) for t in text_encoders]
    for c in graphs:
        files += [(c["file"], c["sha256"])] + [(e["file"], e["sha256"]) for e in c.get("external_data", [])]
    for f, h in files:
        assert hashlib.sha256((bundle / f).read_bytes()).hexdigest() == h, f


def assert_frames(video: np.ndarray, case: dict, fx: dict, atol: float) -> None:
    """video [3, F, H, W] in [-1, 1] -> frames [F, H, W, 3]: the case's size, the fixture's frames within atol."""
    frames = video_frames(video)
    assert frames.shape == (case["frames"], case["height"], case["width"], 3)
    np.testing.assert_allclose(frames, fx["frames"], rtol=0, atol=atol)
