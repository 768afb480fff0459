"""Evaluate the exported bundle: generate videos with the ONNX graphs, recover attributes from RGB frames.

Sets (all seeded; prompts never seen verbatim in training):
  seen        combinations from the training distribution, training-style wording
  held-out    combinations training never saw (world.HELD_OUT_*), training-style wording
  paraphrase  seen combinations, wording from templates training never saw
  two-objects two objects per prompt; first object scored (reported, not a target)
Per size: 16x64x64 (default), 16x64x96 (second aspect ratio), 32x64x64 (second duration).
Writes WORK/eval.json and a markdown table to WORK/eval.md (copied into MODEL_CARD.md).
"""

from __future__ import annotations

import argparse
import json
import time
import tomllib
from pathlib import Path

import numpy as np

from . import captions, evaluate, world
from .paths import BUNDLE, WORK
from .sampler import OrtBackend, Request, frames_u8, generate
from .tokenize import Tokenizer

SIZES = {"16x64x64": (16, 64, 64), "16x64x96": (16, 64, 96), "32x64x64": (32, 64, 64)}


def run_set(backend, tok, m: dict, name: str, bucket: tuple, n: int, seed: int, batch: int = 25,
            steps: int | None = None, guidance: float | None = None, shift: float | None = None) -> dict:  # noqa: ANN001
    rng = np.random.default_rng(seed)
    split = "heldout" if name == "held-out" else "train"
    n_obj = 2 if name == "two-objects" else 1
    style = "paraphrase" if name == "paraphrase" else "train"
    specs = [world.sample_spec(rng, split, bucket=bucket, n_objects=n_obj) for _ in range(n)]
    prompts = [captions.caption(s, rng, style) for s in specs]
    sch = m["scheduler"]
    ok = {a: 0 for a in evaluate.ATTRS}
    failures = []
    t0 = time.time()
    for i in range(0, n, batch):
        reqs = [Request(prompt=p, seed=seed * 100000 + i + j, frames=bucket[0], height=bucket[1], width=bucket[2],
                        steps=steps or sch["steps"], guidance=guidance if guidance is not None else sch["guidance"],
                        shift=shift or sch["shift"]) for j, p in enumerate(prompts[i : i + batch])]
        video, _ = generate(backend, tok, reqs, m["vae"]["latent_shift"], m["vae"]["latent_scale"])
        for j, v in enumerate(video):
            spec = specs[i + j]
            found = evaluate.analyse(frames_u8(v), n_objects=n_obj)
            res = evaluate.score(spec, found)
            for a in res:
                ok[a] += res[a]
            if not all(res[a] for a in ("color", "shape", "direction", "background")) and len(failures) < 8:
                failures.append({"prompt": prompts[i + j], "found": found["objects"][:1], "background": found["background"]})
    acc = {a: ok[a] / n for a in ok}
    return {"set": name, "size": "x".join(map(str, bucket)), "n": n, "accuracy": acc, "seconds": time.time() - t0,
            "failures": failures}


def table(rows: list[dict]) -> str:
    head = "| set | size (frames×H×W) | n | colour | shape | direction | background | size | speed |\n|---|---|---|---|---|---|---|---|---|\n"
    body = "".join(
        f"| {r['set']} | {r['size']} | {r['n']} | " + " | ".join(f"{100 * r['accuracy'][a]:.1f}%" for a in evaluate.ATTRS) + " |\n"
        for r in rows)
    return head + body


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, default=BUNDLE)
    ap.add_argument("--n", type=int, default=200, help="videos per set at the default size")
    ap.add_argument("--n-other", type=int, default=100, help="videos per set at the other sizes")
    ap.add_argument("--quick", action="store_true", help="only seen + held-out at the default size")
    ap.add_argument("--sizes", default=",".join(SIZES), help="sizes to evaluate (default: all three)")
    ap.add_argument("--tag", default="", help="suffix of the written eval{tag}.json / eval{tag}.md")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--shift", type=float, default=None)
    ap.add_argument("--batch", type=int, default=25, help="videos sampled together")
    ap.add_argument("--torch-device", default=None, metavar="DEVICE",
                    help="sample with the bundle's weights in PyTorch on DEVICE (e.g. cuda) instead of ONNX Runtime; "
                    "the export's parity check bounds the difference (whole videos within 1/255)")
    args = ap.parse_args(argv)
    m = tomllib.loads((args.bundle / "model.toml").read_text())
    if args.torch_device:
        from . import from_bundle
        from .sampler import TorchBackend

        backend = TorchBackend(from_bundle.text_encoder(args.bundle), from_bundle.dit(args.bundle),
                               from_bundle.vae(args.bundle), device=args.torch_device)
    else:
        backend = OrtBackend(args.bundle)
    tok = Tokenizer(args.bundle / "tokenizer.json")
    # The full plan fixes each set's seed (1000 + its index), so a run over some sizes draws the same prompts.
    plan = [("seen", "16x64x64", args.n), ("held-out", "16x64x64", args.n)]
    if not args.quick:
        plan += [("paraphrase", "16x64x64", args.n), ("two-objects", "16x64x64", args.n_other // 2)]
        for size in ("16x64x96", "32x64x64"):
            plan += [("seen", size, args.n_other), ("held-out", size, args.n_other), ("paraphrase", size, args.n_other)]
    sizes = args.sizes.split(",")
    rows = []
    for k, (name, size, n) in enumerate(plan):
        if size not in sizes:
            continue
        r = run_set(backend, tok, m, name, SIZES[size], n, seed=1000 + k, batch=args.batch, steps=args.steps,
                    guidance=args.guidance, shift=args.shift)
        r["plan_index"], r["backend"] = k, f"torch-{args.torch_device}" if args.torch_device else "onnxruntime-cpu"
        rows.append(r)
        print(f"{name:12s} {size:9s} n={n:4d} " + " ".join(f"{a}={100 * r['accuracy'][a]:.1f}%" for a in evaluate.ATTRS)
              + f" ({r['seconds']:.0f}s)", flush=True)
    if not args.quick:
        WORK.mkdir(parents=True, exist_ok=True)
        (WORK / f"eval{args.tag}.json").write_text(json.dumps(rows, indent=2))
        (WORK / f"eval{args.tag}.md").write_text(table(rows))


if __name__ == "__main__":
    main()
