"""Recover object colour, shape, size, motion direction, speed and background colour from RGB frames alone.

Method (no model, no access to the spec):
- Every pixel is labelled with the nearest reference colour among the object colours and the background colours
  (plain and textured shades). The background is the most frequent background label.
- The object colour is the most frequent object label (for two objects, the two most frequent); its mask per frame
  is the pixels labelled with it.
- Motion: a least-squares line through the mask centroids over time; the direction is the nearest of the 8
  compass directions, the speed (pixels per frame at the 64-px reference scale) splits slow/fast at 0.9.
- Shape: a soft alpha matte of the object per frame (projection of each pixel between the nearest background
  shade and the object colour, near the object only) is compared by soft IoU with each shape rendered with the
  same area at the same centroid and blurred with a Gaussian of sigma in BLURS (generated frames are soft; a
  person still sees the shape), best over blur, summed over frames. All shapes of one size share an area
  (world.py), so the size follows from the matte's area.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from . import world


def _references() -> tuple[np.ndarray, list[tuple[str, str]]]:
    refs, labels = [], []
    for name, rgb in world.COLORS.items():
        refs.append(rgb)
        labels.append(("object", name))
    for name, rgb in world.BACKGROUNDS.items():
        base = np.array(rgb, dtype=np.float32)
        shade = np.where(base > 128, -28.0, 28.0)
        for c in (base, base + shade):
            refs.append(tuple(c))
            labels.append(("background", name))
    return np.array(refs, dtype=np.float32), labels


REFS, LABELS = _references()
N_OBJ = len(world.COLORS)
BG_IDX = np.array([i for i, (k, _) in enumerate(LABELS) if k == "background"])
BLURS = (0.0, 1.0, 2.0)


@functools.lru_cache(maxsize=64)
def _gauss_matrix(n: int, sigma: float) -> np.ndarray:
    """[n, n] Gaussian smoothing matrix with edge clamping (rows sum to 1)."""
    r = int(3 * sigma + 0.5)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    m = np.zeros((n, n))
    for i in range(n):
        for j, w in zip(range(i - r, i + r + 1), k):
            m[i, min(max(j, 0), n - 1)] += w
    return m


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return img
    return _gauss_matrix(img.shape[0], sigma) @ img @ _gauss_matrix(img.shape[1], sigma).T


def _matte(frame: np.ndarray, hard: np.ndarray, color: np.ndarray) -> np.ndarray:
    """Soft coverage in [0, 1] of `color` over the per-pixel nearest background shade, within 3 px of `hard`."""
    px = frame.astype(np.float32)
    bgs = REFS[BG_IDX]
    nearest_bg = bgs[((px[..., None, :] - bgs) ** 2).sum(-1).argmin(-1)]
    d = color - nearest_bg
    a = ((px - nearest_bg) * d).sum(-1) / np.maximum((d * d).sum(-1), 1e-6)
    near = _blur(hard.astype(np.float64), 1.5) > 0.02
    return np.clip(a, 0.0, 1.0) * near


def analyse(video: np.ndarray, n_objects: int = 1) -> dict:
    """video: uint8 [T, H, W, 3]. Returns the recovered attributes (for each of n_objects)."""
    T, H, W, _ = video.shape
    scale = min(H, W) / 64.0
    px = video.reshape(-1, 3).astype(np.float32)
    d = ((px[:, None, :] - REFS[None]) ** 2).sum(-1)
    lab = d.argmin(1).reshape(T, H, W)
    counts = np.bincount(lab.reshape(-1), minlength=len(LABELS))
    bg_votes: dict[str, int] = {}
    for i, (kind, name) in enumerate(LABELS):
        if kind == "background":
            bg_votes[name] = bg_votes.get(name, 0) + int(counts[i])
    out: dict = {"background": max(bg_votes, key=bg_votes.get), "objects": []}
    obj_order = np.argsort(-counts[:N_OBJ])[:n_objects]
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5
    for oi in obj_order:
        masks = lab == oi
        areas = masks.reshape(T, -1).sum(1)
        valid = areas >= max(4, 0.15 * np.median(areas[areas > 0])) if areas.any() else areas > 0
        if valid.sum() < 2:
            out["objects"].append({"color": LABELS[oi][1], "shape": None, "direction": None, "size": None, "speed": None})
            continue
        tv = np.nonzero(valid)[0]
        cx = np.array([(xs * masks[t]).sum() / areas[t] for t in tv])
        cy = np.array([(ys * masks[t]).sum() / areas[t] for t in tv])
        vx = np.polyfit(tv, cx, 1)[0] / scale
        vy = np.polyfit(tv, cy, 1)[0] / scale
        ang = math.atan2(vy, vx)
        direction = min(world.DIRECTIONS, key=lambda k: abs(math.remainder(ang - math.atan2(world.DIRECTIONS[k][1], world.DIRECTIONS[k][0]), 2 * math.pi)))
        speed = math.hypot(vx, vy)
        color = REFS[oi]
        ious = {sh: 0.0 for sh in world.SHAPES}
        radii = []
        for t in tv:
            a = _matte(video[t], masks[t], color)
            area = a.sum()
            if area < 4:
                continue
            x0, y0 = (xs * a).sum() / area, (ys * a).sum() / area
            r = math.sqrt(area / math.pi)
            radii.append(r)
            for sh in world.SHAPES:
                cov = world._coverage(sh, x0, y0, r, xs, ys)
                ious[sh] += max(float(np.minimum(a, c).sum() / max(np.maximum(a, c).sum(), 1e-9))
                                for c in (_blur(cov, b) for b in BLURS))
        r = float(np.median(radii)) if radii else 0.0
        out["objects"].append({
            "color": LABELS[oi][1],
            "shape": max(ious, key=ious.get),
            "direction": direction,
            "speed": "fast" if speed > 0.9 else "slow",
            "size": "large" if r / scale > 9.5 else "small",
            "speed_px": speed,
            "radius_px": r / scale,
        })
    return out


ATTRS = ("color", "shape", "direction", "background", "size", "speed")


def score(spec: world.Clip, found: dict) -> dict[str, bool]:
    """Per-attribute correctness of the first object (matched by colour when there are two)."""
    o = spec.objects[0]
    got = next((g for g in found["objects"] if g["color"] == o.color), found["objects"][0] if found["objects"] else {})
    res = {"background": found["background"] == spec.background}
    for a in ("color", "shape", "direction", "size", "speed"):
        res[a] = got.get(a) == getattr(o, a)
    return res
