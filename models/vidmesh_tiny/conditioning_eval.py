"""Evaluate image/video conditioning (image→video, extension, SDEdit) of a model on the shapes world.

Two steps, so that any runtime (the Rust CLI, the mesh, a Python sampler) can make the videos in between:
  python -m vidmesh_tiny.conditioning_eval prepare WORK [--n 100] [--seed 7]
      writes WORK/cases.jsonl and the references under WORK/refs/ (PNG; a clip is a directory of
      frame_0000.png ...); every case keeps its world spec ("spec", `world.Clip.to_json`) for scoring.
  (make WORK/out/<id>.rgb: raw uint8 RGB frames, with WORK/out/<id>.json {"frames", "height", "width"})
  python -m vidmesh_tiny.conditioning_eval score WORK [--out WORK/conditioning.md]
      writes the markdown table (--out) and WORK/conditioning.json; a missing output counts as a failure.

Sets (n cases each; 16x64x64 at 8 fps, one object, split="train" specs, seed `seed * 100000 + global index`):
  i2v     reference = frame 0 of the rendered clip; prompt = a training-style caption of the spec.
  extend  reference = the whole 16-frame clip; 16 new frames; the output is the 32-frame stitched whole.
  edit    reference = the whole clip; prompt = a caption of the spec with the object's colour replaced by another
          (uniform among the other world.COLORS; "target_color"), SDEdit strength 0.5.

Method (attributes from RGB frames alone, as evaluate.py):
- colour, shape, direction, background: `evaluate.analyse` on the whole output (i2v, edit) or on the new segment
  only (extend: output frames 16..), compared with the spec (for edit: the colour with target_color).
- Centroids use the evaluator's labelling: each pixel takes the nearest of evaluate.REFS; the object's mask is
  the pixels labelled with its colour, the centroid the mask's mean pixel centre (None if fewer than 4 pixels).
- i2v "start position kept": the centroid in output frame 0 is within 3 px of the reference image's.
- extend "junction": the centroid in output frame 16 is within 4 px of the source's prediction: its frame-15
  centroid plus the per-frame velocity (least-squares slope of the source's centroids over its frames).
  The source is re-rendered from the spec (render is pure, so it is bit-identical to the reference PNGs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import struct
import zlib
from pathlib import Path

import numpy as np

from . import captions, evaluate, world

BUCKET = (16, 64, 64)
START_TOL_PX = 3.0
JUNCTION_TOL_PX = 4.0
METRICS = {
    "i2v": ("colour kept", "shape kept", "background kept", "image kept", "direction followed",
            "start position kept"),
    "extend": ("colour kept", "shape kept", "direction continued", "continues", "junction"),
    "edit": ("background kept", "new colour taken", "shape kept", "direction kept"),
}


def write_png(path: Path, img: np.ndarray) -> None:
    """Write uint8 [H, W, 3] as an 8-bit RGB PNG (no filtering; zlib from the standard library)."""
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[y].astype(np.uint8).tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9))
                     + chunk(b"IEND", b""))


def centroids(video: np.ndarray, color: str) -> list[tuple[float, float] | None]:
    """Per frame (x, y) centre of the pixels the evaluator labels `color` (None when fewer than 4)."""
    T, H, W, _ = video.shape
    px = video.reshape(-1, 3).astype(np.float32)
    lab = ((px[:, None, :] - evaluate.REFS[None]) ** 2).sum(-1).argmin(1).reshape(T, H, W)
    mask = lab == evaluate.LABELS.index(("object", color))
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5
    out: list[tuple[float, float] | None] = []
    for m in mask:
        n = int(m.sum())
        out.append(((xs * m).sum() / n, (ys * m).sum() / n) if n >= 4 else None)
    return out


def _near(a: tuple[float, float] | None, b: tuple[float, float] | None, tol: float) -> bool:
    return a is not None and b is not None and float(np.hypot(a[0] - b[0], a[1] - b[1])) <= tol


# ---------------------------------------------------------------------------------------------------- prepare


def prepare(work: Path, n: int, seed: int) -> list[dict]:
    (work / "refs").mkdir(parents=True, exist_ok=True)
    cases = []
    for k, mode in enumerate(("i2v", "extend", "edit")):
        rng = np.random.default_rng(seed * 1000 + k)
        for i in range(n):
            spec = world.sample_spec(rng, "train", bucket=BUCKET, n_objects=1)
            clip = world.render(spec)
            cid = f"{mode}-{i:04d}"
            case = {"id": cid, "mode": mode, "seed": seed * 100000 + k * n + i, "spec": spec.to_json()}
            if mode == "i2v":
                write_png(work / "refs" / f"{cid}.png", clip[0])
                case.update(prompt=captions.caption(spec, rng, "train"), reference=f"refs/{cid}.png",
                            frames=BUCKET[0], strength=0, steps=0)
            else:
                d = work / "refs" / cid
                d.mkdir(exist_ok=True)
                for t, frame in enumerate(clip):
                    write_png(d / f"frame_{t:04d}.png", frame)
                case["reference"] = f"refs/{cid}"
                o = spec.objects[0]
                if mode == "extend":
                    case.update(prompt=captions.caption(spec, rng, "train"), frames=BUCKET[0], strength=0, steps=0)
                else:
                    others = [c for c in world.COLORS if c != o.color]
                    target = others[int(rng.integers(len(others)))]
                    edited = dataclasses.replace(spec, objects=(dataclasses.replace(o, color=target),))
                    case.update(prompt=captions.caption(edited, rng, "train"), target_color=target,
                                target_held_out=world.is_held_out(target, o.shape, o.direction, spec.background),
                                frames=0, strength=0.5, steps=0)
            cases.append(case)
    with open(work / "cases.jsonl", "w") as f:
        for c in cases:
            f.write(json.dumps(c) + "\n")
    return cases


# ------------------------------------------------------------------------------------------------------ score


def load_output(work: Path, cid: str) -> np.ndarray | None:
    """WORK/out/<id>.rgb as uint8 [T, H, W, 3], or None when absent or not the size its .json states."""
    raw, meta = work / "out" / f"{cid}.rgb", work / "out" / f"{cid}.json"
    if not raw.is_file() or not meta.is_file():
        return None
    m = json.loads(meta.read_text())
    data = np.fromfile(raw, dtype=np.uint8)
    if data.size != m["frames"] * m["height"] * m["width"] * 3 or data.size == 0:
        return None
    return data.reshape(m["frames"], m["height"], m["width"], 3)


def score_case(case: dict, video: np.ndarray) -> tuple[dict[str, bool], dict]:
    """Metrics of one case's output video, and what the evaluator found (for failure reports)."""
    spec = world.Clip.from_json(case["spec"])
    o = spec.objects[0]
    mode = case["mode"]
    if mode == "extend":
        src = spec.frames
        if video.shape[0] < src + 2:
            return {m: False for m in METRICS[mode]}, {"error": f"only {video.shape[0]} frames"}
        found = evaluate.analyse(video[src:], n_objects=1)
    else:
        found = evaluate.analyse(video, n_objects=1)
    got = found["objects"][0] if found["objects"] else {}
    color, shape, direction = got.get("color"), got.get("shape"), got.get("direction")
    bg = found["background"] == spec.background
    if mode == "i2v":
        ref = world.render(spec)[:1]
        start = _near(centroids(ref, o.color)[0], centroids(video[:1], o.color)[0], START_TOL_PX)
        c, s = color == o.color, shape == o.shape
        res = {"colour kept": c, "shape kept": s, "background kept": bg, "image kept": c and s and bg,
               "direction followed": direction == o.direction, "start position kept": start}
    elif mode == "extend":
        cs = centroids(world.render(spec), o.color)
        ts = [t for t, p in enumerate(cs) if p is not None]
        pred = None
        if len(ts) >= 2 and cs[-1] is not None:
            vx = np.polyfit(ts, [cs[t][0] for t in ts], 1)[0]
            vy = np.polyfit(ts, [cs[t][1] for t in ts], 1)[0]
            pred = (cs[-1][0] + vx, cs[-1][1] + vy)
        got_j = centroids(video[src : src + 1], o.color)[0]
        found["junction"] = {k: None if v is None else [round(float(x), 2) for x in v]
                             for k, v in (("predicted", pred), ("found", got_j))}
        c, s, d = color == o.color, shape == o.shape, direction == o.direction
        res = {"colour kept": c, "shape kept": s, "direction continued": d, "continues": c and s and d,
               "junction": _near(pred, got_j, JUNCTION_TOL_PX)}
    else:
        res = {"background kept": bg, "new colour taken": color == case["target_color"],
               "shape kept": shape == o.shape, "direction kept": direction == o.direction}
    return {k: bool(v) for k, v in res.items()}, found


def score(work: Path, out_md: Path, show: int = 3) -> dict:
    cases = [json.loads(line) for line in (work / "cases.jsonl").read_text().splitlines() if line.strip()]
    summary: dict = {}
    for mode in METRICS:
        ok = {m: 0 for m in METRICS[mode]}
        n, missing, failures = 0, [], []
        for case in (c for c in cases if c["mode"] == mode):
            n += 1
            video = load_output(work, case["id"])
            if video is None:
                missing.append(case["id"])
                continue
            res, found = score_case(case, video)
            for m, v in res.items():
                ok[m] += v
            if not all(res.values()):
                failures.append({"id": case["id"], "prompt": case["prompt"], "failed": [m for m, v in res.items() if not v],
                                 "found": found.get("objects", [])[:1], "background": found.get("background"),
                                 **({"junction": found["junction"]} if "junction" in found else {}),
                                 **({"error": found["error"]} if "error" in found else {})})
        if n:
            summary[mode] = {"n": n, "missing": len(missing), "missing_ids": missing,
                             "rates": {m: ok[m] / n for m in ok}, "failures": failures}
    lines = ["| set | n | metric | rate |", "|---|---|---|---|"]
    for mode, s in summary.items():
        lines += [f"| {mode} | {s['n']} | {m} | {100 * r:.1f}% |" for m, r in s["rates"].items()]
        if s["missing"]:
            lines.append(f"| {mode} | {s['n']} | outputs missing (counted as failures) | {s['missing']} |")
    table = "\n".join(lines) + "\n"
    print(table)
    for mode, s in summary.items():
        if s["missing"]:
            print(f"{mode}: {s['missing']} of {s['n']} outputs missing (first: {', '.join(s['missing_ids'][:show])})")
        for f in s["failures"][:show]:
            print(f"{mode} failure: {json.dumps(f, default=float)}")
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(table)
    (work / "conditioning.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="write WORK/cases.jsonl and WORK/refs/")
    p.add_argument("work", type=Path)
    p.add_argument("--n", type=int, default=100, help="cases per set")
    p.add_argument("--seed", type=int, default=7)
    s = sub.add_parser("score", help="score WORK/out/<id>.rgb against WORK/cases.jsonl")
    s.add_argument("work", type=Path)
    s.add_argument("--out", type=Path, default=None, help="markdown table (default WORK/conditioning.md)")
    args = ap.parse_args(argv)
    if args.cmd == "prepare":
        cases = prepare(args.work, args.n, args.seed)
        print(f"wrote {len(cases)} cases to {args.work / 'cases.jsonl'} and references under {args.work / 'refs'}")
    else:
        score(args.work, args.out or args.work / "conditioning.md")


if __name__ == "__main__":
    main()
