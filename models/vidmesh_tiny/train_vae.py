"""Train the tubelet VAE on 4-frame windows of shapes-world clips (resumable).

The VAE is tubelet-local (see vae.py), so 4-frame windows are exactly what it sees at any clip length. A fixed pool
of windows is rendered once from seeded specs of every training bucket and size.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from . import world
from .common import WORK, load, save_atomic, seed_all, to_unit
from .vae import VAE

CKPT = WORK / "vae.pt"


def window_pool(n_clips: int, seed: int) -> dict[tuple[int, int], torch.Tensor]:
    """Rendered 4-frame windows grouped by (H, W): uint8 [N, 4, H, W, 3]."""
    rng = np.random.default_rng(seed)
    pools: dict[tuple[int, int], list[np.ndarray]] = {}
    for _ in range(n_clips):
        spec = world.sample_spec(rng, "train")
        v = world.render(spec)
        for t0 in range(0, spec.frames, 4):
            pools.setdefault((spec.height, spec.width), []).append(v[t0 : t0 + 4])
    return {k: torch.from_numpy(np.stack(v)) for k, v in pools.items()}


def foreground_weight(x: torch.Tensor, gain: float = 8.0) -> torch.Tensor:
    """Per-pixel loss weight [B, 1, T, H, W]: 1 + gain where a pixel departs from its frame's median colour
    (objects, their edges, texture), dilated by one pixel, normalised to mean 1. Small objects cover ~4% of a
    frame; without this their shape is the last thing a plain MSE learns."""
    med = x.flatten(3).median(dim=3).values[..., None, None]  # [B, 3, T, 1, 1]
    dev = ((x - med).abs().sum(1, keepdim=True) / 0.6).clamp(0, 1)  # [B, 1, T, H, W]
    B, _, T, H, W = dev.shape
    dev = F.max_pool2d(dev.transpose(1, 2).reshape(B * T, 1, H, W), 3, stride=1, padding=1)
    w = 1 + gain * dev.reshape(B, T, 1, H, W).transpose(1, 2)
    return w / w.mean(dim=(2, 3, 4), keepdim=True)


def loss_fn(vae: VAE, x: torch.Tensor, kl_weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    mean, logvar = vae.encoder(x)
    z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
    rec = vae.decoder(z)
    w = foreground_weight(x)
    err = rec - x
    mse = err.pow(2).mean()
    loss = (w * err.pow(2)).mean() + 0.5 * (w * err.abs()).mean()
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
    loss = loss + kl_weight * kl
    return loss, {"mse": mse.item(), "kl": kl.item()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--kl", type=float, default=1e-4)
    ap.add_argument("--clips", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    seed_all(args.seed)
    vae = VAE()
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    step = 0
    if (ck := load(CKPT)) is not None:
        vae.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        step = ck["step"]
        print(f"resumed VAE at step {step}")
    if step >= args.steps:
        return
    pools = window_pool(args.clips, args.seed)
    keys = sorted(pools)
    sizes = np.array([len(pools[k]) for k in keys], dtype=np.float64)
    t0 = time.time()
    while step < args.steps:
        # Randomness of a step is a function of (seed, step) only, so a resumed run equals an uninterrupted one.
        gen = np.random.default_rng([args.seed, step])
        torch.manual_seed(args.seed * 1_000_003 + step)
        k = keys[int(gen.choice(len(keys), p=sizes / sizes.sum()))]
        idx = gen.integers(0, len(pools[k]), size=args.batch)
        x = torch.stack([to_unit(w) for w in pools[k][idx].numpy()])
        loss, logs = loss_fn(vae, x, args.kl)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        if step % 100 == 0 or step == args.steps:
            psnr = 10 * np.log10(4.0 / max(logs["mse"], 1e-10))
            print(f"vae step {step} mse {logs['mse']:.5f} psnr {psnr:.2f} kl {logs['kl']:.3f} {time.time() - t0:.0f}s", flush=True)
        if step % 250 == 0 or step == args.steps:
            save_atomic({"model": vae.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                         "step": step, "args": vars(args)}, CKPT)


if __name__ == "__main__":
    main()
