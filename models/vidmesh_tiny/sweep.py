"""Train several DiT variants side by side on one GPU and evaluate each: the recipe used on the lent H100.

  python -m vidmesh_tiny.sweep --out DIR --deadline 540 [--variants p2-rope,p2-rope-h160,...]

1. Builds the training set once (clips rendered in worker processes, VAE and int8 MiniLM rebuilt from the
   committed bundle's graphs and run on the GPU; see from_bundle.py), and WORK/vae.pt from the bundle.
2. Starts one `train_dit` process per variant, all ending by the same wall-clock time (`--end-at`), each writing
   its EMA weights to DIR/<variant>.pt at every save.
3. Samples `--eval-n` seen and `--eval-n` held-out prompts per variant at the default size with PyTorch on the
   GPU (the reference sampler, default scheduler settings) and scores them with evaluate.py; DIR/results.json.
Everything must end within `--deadline` seconds of the start: the call that runs it has a hard limit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

VARIANTS: dict[str, list[str]] = {
    "p2-rope": ["--patch", "2", "--rope", "--hidden", "128", "--depth", "6", "--heads", "4"],
    "p2-rope-h160": ["--patch", "2", "--rope", "--hidden", "160", "--depth", "7", "--heads", "5"],
    "p2-rope-s3": ["--patch", "2", "--rope", "--hidden", "128", "--depth", "6", "--heads", "4", "--sigma-shift", "3"],
    "p4-rope": ["--patch", "4", "--rope", "--hidden", "128", "--depth", "6", "--heads", "4"],
    # 0.3.0's phase 3: the shipped 0.2.0 DiT continued at 4x the batch, 32-frame clips sampled twice as often.
    "p3-bundle": ["--init-bundle", "--lr", "5e-4", "--warmup", "100", "--bucket-weight", "32x64x64=0.3"],
}


def evaluate_ckpt(path: Path, n: int, device: str, sizes: tuple[tuple[int, int, int], ...] = ((16, 64, 64),)) -> list[dict]:
    import tomllib

    import torch

    from . import eval_model, from_bundle
    from .dit import from_checkpoint
    from .paths import BUNDLE
    from .sampler import TorchBackend
    from .tokenize import Tokenizer

    ck = torch.load(path, map_location="cpu", weights_only=False)
    backend = TorchBackend(from_bundle.text_encoder(), from_checkpoint(ck), from_bundle.vae(), device=device)
    tok = Tokenizer(BUNDLE / "tokenizer.json")
    # The bundle's sampler defaults; the latent scaling is the checkpoint's own (its training set's).
    scheduler = tomllib.loads((BUNDLE / "model.toml").read_text())["scheduler"]
    m = {"scheduler": scheduler, "vae": {"latent_shift": ck["latent_shift"], "latent_scale": ck["latent_scale"]}}
    rows = []
    for j, size in enumerate(sizes):
        for k, name in enumerate(("seen", "held-out")):
            r = eval_model.run_set(backend, tok, m, name, size, n if j == 0 else n // 2, seed=1000 + k + 10 * j, batch=50)
            r["step"], r["size"] = ck["step"], "x".join(map(str, size))
            rows.append(r)
    return rows


def main(argv: list[str] | None = None) -> None:
    t_start = time.time()
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--deadline", type=float, default=540.0, help="seconds from start by which everything has ended")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--clips", type=int, default=40000)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--tokens-per-batch", type=int, default=32768)
    ap.add_argument("--eval-n", type=int, default=100, help="prompts per set at the default size (half that at the others)")
    ap.add_argument("--eval-sizes", default="16x64x64", help="comma-separated TxHxW, the first is the default size")
    ap.add_argument("--eval-reserve", type=float, default=75.0, help="seconds kept for evaluation after training")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--extra", default="", help="more train_dit flags for every variant")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    import torch

    from . import dataset, from_bundle
    from .common import save_atomic
    from .train_vae import CKPT as VAE_CKPT

    vae = from_bundle.vae()
    save_atomic({"model": vae.state_dict(), "step": 0, "args": {"from_bundle": True}}, VAE_CKPT)
    ds = dataset.build(vae, n_clips=args.clips, text_encoder=from_bundle.text_encoder(), device=args.device,
                       workers=args.workers)
    del ds
    print(f"data ready in {time.time() - t_start:.0f}s; GPU: {torch.cuda.get_device_name() if args.device == 'cuda' else '-'}", flush=True)

    end_at = t_start + args.deadline - args.eval_reserve
    names = [v for v in args.variants.split(",") if v]
    procs = {}
    for name in names:
        cmd = [sys.executable, "-m", "vidmesh_tiny.train_dit", *VARIANTS[name], "--clips", str(args.clips),
               "--tokens-per-batch", str(args.tokens_per_batch), "--device", args.device, "--end-at", str(end_at),
               "--ema", "0.999", "--save-every", "500", "--ckpt", str(dataset.WORK / f"{name}.ckpt"),
               "--ema-out", str(args.out / f"{name}.pt"), *args.extra.split()]
        log = open(dataset.WORK / f"{name}.log", "w")
        env = {**os.environ, "OMP_NUM_THREADS": "2"}
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
    for name, (p, log) in procs.items():
        p.wait()
        log.close()
        tail = (dataset.WORK / f"{name}.log").read_text().splitlines()
        print(f"== {name}: exit {p.returncode}\n" + "\n".join(l for l in tail if "steps/s" in l or "params" in l)
              + "\n" + "\n".join(tail[-3:]), flush=True)
    with open(args.out / "train_logs.txt", "w") as f:
        for name in names:
            f.write(f"== {name}\n" + (dataset.WORK / f"{name}.log").read_text())

    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    done = [n for n in names if (args.out / f"{n}.pt").exists()]
    with ProcessPoolExecutor(max_workers=max(1, len(done)), mp_context=mp.get_context("spawn")) as pool:
        sizes = tuple(tuple(int(v) for v in sz.split("x")) for sz in args.eval_sizes.split(","))
        futs = {n: pool.submit(evaluate_ckpt, args.out / f"{n}.pt", args.eval_n, args.device, sizes) for n in done}
        results = {}
        for name, fut in futs.items():
            results[name] = rows = fut.result()
            for r in rows:
                print(f"{name:14s} step {r['step']} {r['size']} {r['set']:9s} " + " ".join(f"{a}={100 * v:.0f}%" for a, v in r["accuracy"].items())
                      + f" ({r['seconds']:.0f}s)", flush=True)
            (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"sweep done in {time.time() - t_start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
