"""The DiT training set: seeded clip specs, one caption each, cached text states and VAE latents.

Invariants:
- Specs come from `world.sample_spec(split="train")` with a fixed seed, so the set never contains a held-out
  combination and is identical on every run.
- Text states are the int8 MiniLM's (text_encoder.py), exactly what the served text encoder returns; stored
  float16 up to the longest caption's token count (the rest of MAX_TOKENS would be masked anyway).
- Latents are the VAE posterior means, unscaled; `latent_stats` gives the bundle's shift/scale.
- Latents are stored per (frames, height, width) bucket in WORK/dataset.pt, text states once in
  WORK/text_states.pt; `build` returns both merged and skips whatever is already cached.
- Rendering is a pure function of the spec, so rendering in worker processes gives the same clips as in one;
  the encoders run on `device` (the result is moved back to the CPU).
"""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np
import torch

from . import captions, world
from .common import WORK, load, save_atomic, to_unit
from .paths import BUNDLE
from .text_encoder import TextEncoder, Tokenizer, encode_texts
from .vae import VAE

PATH = WORK / "dataset.pt"
TEXT_PATH = WORK / "text_states.pt"


def specs_and_captions(n_clips: int, seed: int) -> tuple[list[world.Clip], list[str]]:
    rng = np.random.default_rng(seed)
    specs = [world.sample_spec(rng, "train") for _ in range(n_clips)]
    return specs, [captions.caption(s, rng, "train") for s in specs]


def _tokenizer() -> Tokenizer:
    """MiniLM's tokenizer from its package, else the committed bundle's copy (the same file, truncation set)."""
    try:
        return Tokenizer()
    except ImportError:
        return Tokenizer(BUNDLE / "tokenizer.json")


@torch.no_grad()
def text_states(n_clips: int = 40000, seed: int = 2, enc: TextEncoder | None = None, device: str = "cpu") -> dict:
    """Cached int8-MiniLM states of every caption and of the empty prompt."""
    if (ts := load(TEXT_PATH)) is not None and ts["n_clips"] == n_clips and ts["seed"] == seed:
        return ts
    t0 = time.time()
    _, texts = specs_and_captions(n_clips, seed)
    enc, tok = (enc or TextEncoder()).to(device), _tokenizer()
    states, masks = encode_texts(enc, tok, texts, device=device)
    empty_state, empty_mask = encode_texts(enc, tok, [""], device=device)
    L = int(masks.sum(1).max())
    ts = {"n_clips": n_clips, "seed": seed, "texts": texts, "states": states[:, :L].clone(), "masks": masks[:, :L].clone(),
          "empty_state": empty_state[0, :L].clone(), "empty_mask": empty_mask[0, :L].clone()}
    save_atomic(ts, TEXT_PATH)
    print(f"text states for {n_clips} captions in {time.time() - t0:.0f}s (up to {L} tokens)", flush=True)
    return ts


def _render_all(specs: list[world.Clip], workers: int) -> list[np.ndarray]:
    if workers <= 1:
        return [world.render(s) for s in specs]
    with mp.get_context("spawn").Pool(workers) as pool:  # spawn: the parent may already hold a CUDA context
        return pool.map(world.render, specs, chunksize=64)


@torch.no_grad()
def build(vae: VAE, n_clips: int = 40000, seed: int = 2, text_encoder: TextEncoder | None = None,
          device: str = "cpu", workers: int = 1) -> dict:
    ts = text_states(n_clips, seed, text_encoder, device)
    if (ds := load(PATH)) is not None and ds["n_clips"] == n_clips and ds["seed"] == seed:
        return {**ts, "buckets": ds["buckets"]}
    t0 = time.time()
    specs, _ = specs_and_captions(n_clips, seed)
    buckets: dict[tuple[int, int, int], list[int]] = {}
    for i, s in enumerate(specs):
        buckets.setdefault((s.frames, s.height, s.width), []).append(i)
    vae = vae.to(device).eval()
    out: dict = {"n_clips": n_clips, "seed": seed, "buckets": {}}
    for key, idx in sorted(buckets.items()):
        videos = _render_all([specs[i] for i in idx], workers)
        lats = []
        for j in range(0, len(idx), 64):
            x = torch.stack([to_unit(v) for v in videos[j : j + 64]]).to(device)
            lats.append(vae.encoder(x)[0].cpu())
        out["buckets"][key] = {"index": torch.tensor(idx), "latents": torch.cat(lats)}
        print(f"bucket {key}: {len(idx)} clips, {time.time() - t0:.0f}s", flush=True)
    save_atomic(out, PATH)
    return {**ts, "buckets": out["buckets"]}


def latent_stats(ds: dict) -> tuple[float, float]:
    """Global (shift, scale) so that (z - shift) * scale has zero mean and unit variance over the set."""
    allz = torch.cat([b["latents"].flatten() for b in ds["buckets"].values()])
    return float(allz.mean()), float(1.0 / allz.std())
