"""Temporal coherence of the DiT's clean-video prediction as a function of noise level.

  python -m vidmesh_tiny.diagnose [work/dit.pt ...]

For 64 training clips (16 frames, 64x64) noised to sigma, the DiT's x0 estimate x_sigma - sigma * v is compared
between adjacent latent frames (mean-centred cosine similarity, averaged). The data's own value is printed as
"true". A model that decides layout well at high noise keeps this close to "true" at sigma 0.9 and above; one that
does not places objects independently per latent frame (motion at chance).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from . import dataset
from .common import WORK, load
from .dit import from_checkpoint


def adjacent_corr(z: torch.Tensor) -> float:
    a, b = z[:, :, :-1].flatten(2), z[:, :, 1:].flatten(2)
    return F.cosine_similarity(a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True), dim=-1).mean().item()


@torch.no_grad()
def main(paths: list[str]) -> None:
    cached = load(dataset.PATH)
    if cached is None:
        raise SystemExit(f"no {dataset.PATH}: run the dit stage first")
    ds = {**dataset.text_states(cached["n_clips"], cached["seed"]), "buckets": cached["buckets"]}
    b = ds["buckets"][(16, 64, 64)]
    idx = b["index"][:64]
    for p in paths or [str(WORK / "dit.pt")]:
        ck = load(Path(p))
        dit = from_checkpoint(ck)
        x0 = (b["latents"][:64] - ck["latent_shift"]) * ck["latent_scale"]
        states, masks = ds["states"][idx].float(), ds["masks"][idx].long()
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
        row = []
        for s in (0.6, 0.8, 0.9, 0.97):
            xt = (1 - s) * x0 + s * noise
            v = dit(xt, torch.full((64,), s * 1000.0), states, masks)
            row.append(f"sigma {s}: {adjacent_corr(xt - s * v):.2f}")
        print(f"{p} (step {ck['step']}): " + " | ".join(row) + f" | true {adjacent_corr(x0):.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
