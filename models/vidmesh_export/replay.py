"""Numpy-only steps of running a bundle's VAE, shared by the golden generators (goldens*.py, which replay every case
from the bundle) and the torch-free fixture tests (models/tests): nothing here imports torch or diffusers.

- `chunks(t, chunk)`: AutoencoderKLCogVideoX._decode's latent frame ranges (the first takes chunk + t % chunk);
- `stateful_decode(...)`: [vae] decode = "stateful", the decoder graph on the first range, then decoder_step on each
  further one with the cache the previous run returned ([vae].cache names the tensors);
- `video_frames(video)`: the pipelines' postprocess, [3, F, H, W] in [-1, 1] -> [F, H, W, 3] in [0, 1].
"""

from __future__ import annotations

import numpy as np


def chunks(t: int, chunk: int) -> list[tuple[int, int]]:
    """AutoencoderKLCogVideoX._decode's latent frame ranges: the first takes chunk + t % chunk (capped at t)."""
    first = min(t, chunk + t % chunk)
    return [(0, first)] + [(s, s + chunk) for s in range(first, t, chunk)]


def stateful_decode(first, step, vae: dict, z: np.ndarray, parts: list[tuple[int, int]]) -> list[np.ndarray]:  # noqa: ANN001
    """The video chunks [1, 3, f, H, W] of z's latent frame ranges `parts`, in order: `first` (the [vae.decoder]
    session) on the first range, `step` ([vae.decoder_step]) on each further one with the previous run's cache."""
    out, cache = [], None
    for a, b in parts:
        feeds = {vae["names"]["latents"]: z[:, :, a:b]}
        if cache is None:
            o = first.run(None, feeds)
        else:
            o = step.run(None, {**feeds, **{c["input"]: v for c, v in zip(vae["cache"], cache)}})
        out.append(o[0])
        cache = o[1:]
    return out


def video_frames(video: np.ndarray) -> np.ndarray:
    """[3, F, H, W] in [-1, 1] -> [F, H, W, 3] in [0, 1]: clamp(video / 2 + 0.5, 0, 1), as the pipelines' output."""
    return np.clip(video / 2 + 0.5, 0, 1).transpose(1, 2, 3, 0)
