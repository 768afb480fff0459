"""Train the DiT with rectified flow on cached latents and text states (resumable).

x_sigma = (1 - sigma) x0 + sigma * noise, target velocity = noise - x0, sigma ~ logit-normal(0, 1) (SD3), optionally
shifted toward noise (`--sigma-shift`, same formula as the sampler's shift): layout and motion are decided at high
sigma, which plain logit-normal rarely visits (P(sigma > 0.85) ~ 4%).
10% of captions are replaced by the empty prompt so one model serves both branches of classifier-free guidance.
An exponential moving average of the weights is what gets exported.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import dataset
from .common import WORK, load, save_atomic, seed_all
from .dit import DiT, DiTConfig
from .train_vae import CKPT as VAE_CKPT
from .vae import S_COMP, VAE

CKPT = WORK / "dit.pt"
TOKENS_PER_BATCH = 4096


def load_vae() -> VAE:
    vae = VAE()
    ck = load(VAE_CKPT)
    if ck is None:
        raise SystemExit("train the VAE first (python -m vidmesh_tiny.train_vae)")
    vae.load_state_dict(ck["model"])
    return vae.eval()


def make_batch(ds: dict, key: tuple, gen: np.random.Generator, shift: float, scale: float, p_drop: float):
    b = ds["buckets"][key]
    frames, h, w = key
    pt, ph, pw = DiTConfig.patch
    tokens = (frames // (4 * pt)) * (h // (S_COMP * ph)) * (w // (S_COMP * pw))
    n = max(8, min(64, TOKENS_PER_BATCH // tokens))
    sel = gen.integers(0, len(b["index"]), size=n)
    x0 = (b["latents"][sel] - shift) * scale
    clip_idx = b["index"][sel]
    states = ds["states"][clip_idx].float()
    masks = ds["masks"][clip_idx].clone()
    drop = torch.from_numpy(gen.random(n) < p_drop)
    states[drop] = ds["empty_state"].float()
    masks[drop] = ds["empty_mask"]
    L = int(masks.sum(1).max())
    return x0, states[:, :L], masks[:, :L].long()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--p-drop", type=float, default=0.1)
    ap.add_argument("--clips", type=int, default=30000)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--sigma-shift", type=float, default=1.0)
    ap.add_argument("--ckpt", type=Path, default=CKPT)
    ap.add_argument("--init-from", type=Path, default=None, help="start from this checkpoint's weights (fresh optimizer)")
    args = ap.parse_args(argv)

    seed_all(args.seed)
    ds = dataset.build(load_vae(), n_clips=args.clips)
    shift, scale = dataset.latent_stats(ds)
    cfg = DiTConfig()
    model = DiT(cfg)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    lr_at = lambda s: args.lr * min(1.0, (s + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)))  # noqa: E731
    step = 0
    if args.init_from is not None and not args.ckpt.exists():
        init = load(args.init_from)
        model.load_state_dict(init["ema"])
        ema.load_state_dict(init["ema"])
        print(f"initialised from {args.init_from} (step {init['step']})")
    if (ck := load(args.ckpt)) is not None:
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
        print(f"resumed DiT at step {step}")
    print(f"DiT {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params; latent shift {shift:.4f} scale {scale:.4f}", flush=True)
    keys = sorted(ds["buckets"])
    weights = np.array([len(ds["buckets"][k]["index"]) for k in keys], dtype=np.float64)
    t0, losses = time.time(), []
    while step < args.steps:
        gen = np.random.default_rng([args.seed, step])
        torch.manual_seed(args.seed * 1_000_003 + step)
        key = keys[int(gen.choice(len(keys), p=weights / weights.sum()))]
        x0, states, masks = make_batch(ds, key, gen, shift, scale, args.p_drop)
        u = torch.sigmoid(torch.randn(x0.shape[0]))
        sigma = args.sigma_shift * u / (1 + (args.sigma_shift - 1) * u)
        noise = torch.randn_like(x0)
        s5 = sigma[:, None, None, None, None]
        xt = (1 - s5) * x0 + s5 * noise
        pred = model(xt, sigma * 1000.0, states, masks)
        loss = F.mse_loss(pred, noise - x0)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            d = min(args.ema, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - d)
        step += 1
        losses.append(loss.item())
        if step % 50 == 0:
            print(f"dit step {step} loss {np.mean(losses):.4f} lr {lr_at(step):.2e} {time.time() - t0:.0f}s", flush=True)
            losses = []
        if step % 200 == 0 or step == args.steps:
            save_atomic({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                         "config": cfg.to_dict(), "latent_shift": shift, "latent_scale": scale,
                         "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}, args.ckpt)


if __name__ == "__main__":
    main()
