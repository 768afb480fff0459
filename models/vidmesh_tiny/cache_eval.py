"""Quality of step caching (the `cache` tiers) on the shapes world: attribute accuracy per tier and PSNR to `off`.

Two steps, so that the videos are made by vidmesh's own engines in between (scripts/eval-cache.sh runs all three):
  python -m vidmesh_tiny.cache_eval prepare WORK [--n 200] [--seed 11]
      writes WORK/cases.jsonl: n/2 "seen" and n/2 "held-out" prompts (training-style captions of seeded world
      specs, as eval_model.py's sets), 16x64x64, one object; every case keeps its spec for scoring.
  cache_eval WORK/cases.jsonl WORK/out          (bench/src/bin/cache_eval.rs: WORK/out/<tier>/<id>.rgb)
  python -m vidmesh_tiny.cache_eval score WORK [--out WORK/cache.md]
      scores every tier found under WORK/out with evaluate.py (colour, shape, direction, background, size, speed)
      and compares each video with its `off` twin (same prompt and seed): PSNR over all frames (peak 255; identical
      videos count as 99 dB). Writes the markdown table (--out) and WORK/cache.json; a missing video is a failure.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from . import captions, evaluate, world

BUCKET = (16, 64, 64)
IDENTICAL_DB = 99.0


def prepare(work: Path, n: int, seed: int) -> list[dict]:
    work.mkdir(parents=True, exist_ok=True)
    cases = []
    for k, split in enumerate(("train", "heldout")):
        rng = np.random.default_rng(seed * 1000 + k)
        for i in range(n // 2):
            spec = world.sample_spec(rng, split, bucket=BUCKET, n_objects=1)
            cases.append({"id": f"{'seen' if split == 'train' else 'held-out'}-{i:04d}", "set": split,
                          "prompt": captions.caption(spec, rng, "train"), "seed": seed * 100000 + k * n + i,
                          "frames": BUCKET[0], "height": BUCKET[1], "width": BUCKET[2], "spec": spec.to_json()})
    (work / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    return cases


def load(path: Path) -> np.ndarray | None:
    meta = path.with_suffix(".json")
    if not path.exists() or not meta.exists():
        return None
    m = json.loads(meta.read_text())
    return np.frombuffer(path.read_bytes(), np.uint8).reshape(m["frames"], m["height"], m["width"], 3)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return IDENTICAL_DB if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def score(work: Path) -> dict:
    cases = [json.loads(line) for line in (work / "cases.jsonl").read_text().splitlines() if line.strip()]
    out = work / "out"
    tiers = [t for t in ("off", "balanced", "fast") if (out / t).is_dir()]
    timing = json.loads((out / "tiers.json").read_text()) if (out / "tiers.json").exists() else {}
    rows = {}
    for tier in tiers:
        ok = {a: 0 for a in evaluate.ATTRS}
        all4, db = 0, []
        for c in cases:
            v = load(out / tier / f"{c['id']}.rgb")
            if v is None:
                continue
            res = evaluate.score(world.Clip.from_json(c["spec"]), evaluate.analyse(v, n_objects=1))
            for a in res:
                ok[a] += res[a]
            all4 += all(res[a] for a in ("color", "shape", "direction", "background"))
            ref = load(out / "off" / f"{c['id']}.rgb")
            if tier != "off" and ref is not None:
                db.append(psnr(v, ref))
        n = len(cases)
        acc = {a: ok[a] / n for a in ok}
        rows[tier] = {"n": n, "accuracy": acc, "mean_accuracy": sum(acc.values()) / len(acc), "all_four": all4 / n,
                      "psnr_mean": float(np.mean(db)) if db else None, "psnr_min": float(np.min(db)) if db else None,
                      **{k: timing.get(tier, {}).get(k) for k in ("seconds", "skipped_share")}}
    return rows


def table(rows: dict) -> str:
    attrs = list(evaluate.ATTRS)
    head = ("| tier | n | DiT tail skipped | " + " | ".join(attrs) + " | mean | drop from off (points) | "
            "PSNR to off, mean / min (dB) |\n|---|---|---|" + "---|" * (len(attrs) + 3) + "\n")
    base = rows.get("off", {}).get("mean_accuracy")
    body = ""
    for tier, r in rows.items():
        drop = "" if base is None else f"{100 * (base - r['mean_accuracy']):.2f}"
        skipped = "" if r.get("skipped_share") is None else f"{100 * r['skipped_share']:.1f}%"
        ps = "" if r["psnr_mean"] is None else f"{r['psnr_mean']:.1f} / {r['psnr_min']:.1f}"
        body += (f"| {tier} | {r['n']} | {skipped} | " + " | ".join(f"{100 * r['accuracy'][a]:.1f}%" for a in attrs)
                 + f" | {100 * r['mean_accuracy']:.2f}% | {drop} | {ps} |\n")
    return head + body


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("work", type=Path)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--seed", type=int, default=11)
    s = sub.add_parser("score")
    s.add_argument("work", type=Path)
    s.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.cmd == "prepare":
        print(f"{len(prepare(args.work, args.n, args.seed))} cases in {args.work / 'cases.jsonl'}")
        return
    rows = score(args.work)
    md = table(rows)
    (args.work / "cache.json").write_text(json.dumps(rows, indent=2))
    (args.out or args.work / "cache.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
