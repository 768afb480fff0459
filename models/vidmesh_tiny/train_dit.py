"""Train the DiT with rectified flow on cached latents and text states (resumable; CPU or CUDA).

x_sigma = (1 - sigma) x0 + sigma * noise, target velocity = noise - x0, sigma ~ logit-normal(0, 1) (SD3) shifted
toward noise by `--sigma-shift` (default 2.0, the sampler's own shift, same formula): layout and motion are decided
at high sigma, which plain logit-normal rarely visits (P(sigma > 0.85) ~ 4%; shifted by 2, ~15%).
10% of captions are replaced by the empty prompt so one model serves both branches of classifier-free guidance.
An exponential moving average of the weights is what gets exported.

Invariants:
- Step s draws its bucket, clips, sigmas and noise from (seed, s) alone, so a resumed run sees the same batches
  as an uninterrupted one (bit-identical on CPU; on CUDA up to the kernels' own nondeterminism).
- `--time-budget S` measures the step rate over the first steps and then fixes `--steps` so training ends within
  S seconds; the step count it chose is printed and stored in the checkpoint (`args.steps`), so the run can be
  repeated with `--steps N`.
- The architecture comes from the flags on a fresh run and from the checkpoint on a resumed one.
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
from .vae import S_COMP, T_COMP, VAE

CKPT = WORK / "dit.pt"


def load_vae() -> VAE:
    vae = VAE()
    ck = load(VAE_CKPT)
    if ck is None:
        raise SystemExit("train the VAE first (python -m vidmesh_tiny.train_vae), or take it from the bundle "
                         "(python -m vidmesh_tiny.from_bundle --write-vae)")
    vae.load_state_dict(ck["model"])
    return vae.eval()


def make_batch(ds: dict, key: tuple, gen: np.random.Generator, shift: float, scale: float, p_drop: float,
               patch: tuple[int, int, int], tokens_per_batch: int):
    b = ds["buckets"][key]
    frames, h, w = key
    pt, ph, pw = patch
    tokens = (frames // (T_COMP * pt)) * (h // (S_COMP * ph)) * (w // (S_COMP * pw))
    n = max(8, min(tokens_per_batch // 64, tokens_per_batch // tokens))
    sel = torch.from_numpy(gen.integers(0, len(b["index"]), size=n))
    x0 = (b["latents"][sel.to(b["latents"].device)].float() - shift) * scale
    clip_idx = b["index"][sel].to(ds["states"].device)
    states = ds["states"][clip_idx].float()
    masks = ds["masks"][clip_idx].clone()
    drop = torch.from_numpy(gen.random(n) < p_drop).to(states.device)
    states[drop] = ds["empty_state"].float()
    masks[drop] = ds["empty_mask"]
    L = int(masks.sum(1).max())
    return x0, states[:, :L], masks[:, :L].long()


def to_device(ds: dict, device: str) -> dict:
    out = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in ds.items() if k != "buckets"}
    out["buckets"] = {k: {"index": b["index"], "latents": b["latents"].to(device)} for k, b in ds["buckets"].items()}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3692)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--p-drop", type=float, default=0.1)
    ap.add_argument("--clips", type=int, default=40000)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--sigma-shift", type=float, default=2.0)
    ap.add_argument("--tokens-per-batch", type=int, default=32768, help="latent tokens per step (clips = this / tokens per clip, 8..this/64)")
    ap.add_argument("--hidden", type=int, default=DiTConfig.hidden)
    ap.add_argument("--depth", type=int, default=DiTConfig.depth)
    ap.add_argument("--heads", type=int, default=DiTConfig.heads)
    ap.add_argument("--patch", type=int, default=DiTConfig.patch[1], help="spatial patch size in latent pixels (time patch 1)")
    ap.add_argument("--rope", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--time-budget", type=float, default=None, help="seconds of training; sets --steps from the measured rate")
    ap.add_argument("--end-at", type=float, default=None, help="Unix time by which training must end (instead of --time-budget)")
    ap.add_argument("--save-every", type=int, default=200)
    ap.add_argument("--ema-out", type=Path, default=None, help="also write the EMA weights alone (for export) here at every save")
    ap.add_argument("--ckpt", type=Path, default=CKPT)
    ap.add_argument("--init-from", type=Path, default=None, help="start from this checkpoint's weights (fresh optimizer)")
    ap.add_argument("--init-bundle", action="store_true",
                    help="start from the committed bundle's DiT (dit.onnx, fresh optimizer) and keep its latent scaling")
    ap.add_argument("--bucket-weight", action="append", default=[], metavar="TxHxW=P",
                    help="sample this bucket with probability P instead of its share of the clips (repeatable)")
    args = ap.parse_args(argv)

    seed_all(args.seed)
    dev = args.device
    ds = dataset.build(load_vae(), n_clips=args.clips, device=dev)
    shift, scale = dataset.latent_stats(ds)
    ds = to_device(ds, dev)
    ck = load(args.ckpt)
    bundle_dit = None
    if ck is not None:
        cfg = DiTConfig.from_dict(ck["config"])
    elif args.init_bundle:
        from . import from_bundle

        bundle_dit = from_bundle.dit()
        cfg = bundle_dit.cfg
        shift, scale = from_bundle.latent_scaling()  # the scaling those weights were trained with, not this set's
    else:
        cfg = DiTConfig(patch=(1, args.patch, args.patch), hidden=args.hidden, depth=args.depth, heads=args.heads,
                        rope=args.rope)
    model = DiT(cfg).to(dev)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    lr_at = lambda s: args.lr * min(1.0, (s + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)))  # noqa: E731
    step = 0
    if bundle_dit is not None:
        model.load_state_dict(bundle_dit.state_dict())
        ema.load_state_dict(bundle_dit.state_dict())
        print("initialised from the bundle's dit.onnx")
    if args.init_from is not None and ck is None:
        init = load(args.init_from)
        shift, scale = init["latent_shift"], init["latent_scale"]  # the scaling those weights were trained with
        model.load_state_dict(init["ema"])
        ema.load_state_dict(init["ema"])
        print(f"initialised from {args.init_from} (step {init['step']})")
    if ck is not None:
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
        shift, scale = ck.get("latent_shift", shift), ck.get("latent_scale", scale)
        if args.time_budget is not None or args.end_at is not None:  # the step count the budget chose
            args.steps = ck["args"]["steps"]
        print(f"resumed DiT at step {step}")
    print(f"DiT {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params {cfg.to_dict()}; latent shift {shift:.4f} "
          f"scale {scale:.4f}; device {dev}", flush=True)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.startswith("cuda") else torch.autocast("cpu", enabled=False)
    keys = sorted(ds["buckets"])
    weights = np.array([len(ds["buckets"][k]["index"]) for k in keys], dtype=np.float64)
    weights /= weights.sum()
    for bw in args.bucket_weight:
        size, p = bw.split("=")
        k = keys.index(tuple(int(v) for v in size.split("x")))
        rest = [i for i in range(len(keys)) if i != k]
        weights[rest] *= (1 - float(p)) / weights[rest].sum()
        weights[k] = float(p)
    print("bucket sampling: " + ", ".join(f"{'x'.join(map(str, k))} {w:.2f}" for k, w in zip(keys, weights)), flush=True)

    def save() -> None:
        meta = {"step": step, "config": cfg.to_dict(), "latent_shift": shift, "latent_scale": scale,
                "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
        save_atomic({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), **meta}, args.ckpt)
        if args.ema_out is not None:
            save_atomic({"ema": {k: v.cpu() for k, v in ema.state_dict().items()}, **meta}, args.ema_out)

    t0, losses, rate_from = time.time(), [], None
    if args.end_at is not None:
        args.time_budget = args.end_at - t0
    while step < args.steps:
        gen = np.random.default_rng([args.seed, step])
        torch.manual_seed(args.seed * 1_000_003 + step)
        key = keys[int(gen.choice(len(keys), p=weights / weights.sum()))]
        x0, states, masks = make_batch(ds, key, gen, shift, scale, args.p_drop, cfg.patch, args.tokens_per_batch)
        u = torch.sigmoid(torch.randn(x0.shape[0])).to(dev)
        sigma = args.sigma_shift * u / (1 + (args.sigma_shift - 1) * u)
        noise = torch.randn_like(x0)
        s5 = sigma[:, None, None, None, None]
        xt = (1 - s5) * x0 + s5 * noise
        with amp:
            pred = model(xt, sigma * 1000.0, states, masks)
        loss = F.mse_loss(pred.float(), noise - x0)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            d = min(args.ema, (1 + step) / (10 + step))
            torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - d)
        step += 1
        losses.append(loss.detach())
        if args.time_budget is not None and rate_from is None and step == 20:
            rate_from = (step, time.time())
        if args.time_budget is not None and rate_from is not None and step == rate_from[0] + 100:
            rate = 100 / (time.time() - rate_from[1])
            args.steps = max(step + 1, int(step + rate * (args.time_budget - (time.time() - t0))))
            print(f"{rate:.1f} steps/s: training for {args.steps} steps (repeat with --steps {args.steps})", flush=True)
        if step % 50 == 0:
            print(f"dit step {step} loss {torch.stack(losses).mean().item():.4f} lr {lr_at(step):.2e} {time.time() - t0:.0f}s", flush=True)
            losses = []
        if args.end_at is not None and time.time() >= args.end_at and step < args.steps:
            print(f"out of time at step {step} of {args.steps}", flush=True)
            args.steps = step
        if step % args.save_every == 0 and step < args.steps:
            save()
    save()
    print(f"trained to step {step} in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
