"""Shared helpers: work directory, deterministic seeding, atomic resumable checkpoints.

Invariants:
- Every stage writes into WORK (models/work/, git-ignored) and is resumable: checkpoints are written to a temp
  file and renamed, so a process killed at any moment leaves the last complete checkpoint.
- Training is seeded (torch, numpy) and single-process; with the same seed and thread count a run is repeatable.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from .paths import BUNDLE, ROOT, WORK  # noqa: F401


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def save_atomic(obj: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load(path: Path) -> dict | None:
    return torch.load(path, map_location="cpu", weights_only=False) if path.exists() else None


def to_unit(video_u8: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float [3, T, H, W] in [-1, 1]."""
    return torch.from_numpy(video_u8).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)

