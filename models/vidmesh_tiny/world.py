"""The procedural "shapes world": captioned videos of one or two moving objects.

Invariants:
- A clip is fully described by a `Clip` spec; `render(spec)` is a pure function of it (no global RNG), so a
  dataset is a list of specs and any clip can be re-rendered bit-identically.
- Pixel values are uint8 RGB, shape [T, H, W, 3]. Sizes and speeds are given at the 64-pixel reference scale and
  scaled by min(H, W) / 64, so a "small" object looks the same at every aspect ratio.
- Objects never leave the frame: the start position is drawn so the whole trajectory stays inside.
- HELD_OUT_* combinations never occur in a training spec (`sample_spec(split="train")`), only in
  `split="heldout"`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

# Object colours (RGB) and background colours; names are the vocabulary captions use.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 70),
    "blue": (50, 90, 235),
    "yellow": (240, 215, 40),
    "purple": (160, 60, 210),
    "orange": (250, 140, 20),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (12, 12, 12),
    "white": (238, 238, 238),
    "gray": (120, 120, 120),
    "navy": (20, 30, 90),
    "brown": (100, 65, 35),
}
SHAPES = ("circle", "square", "triangle", "diamond")
# Unit direction vectors in image coordinates (x right, y down).
DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "up-left": (-math.sqrt(0.5), -math.sqrt(0.5)),
    "up-right": (math.sqrt(0.5), -math.sqrt(0.5)),
    "down-left": (-math.sqrt(0.5), math.sqrt(0.5)),
    "down-right": (math.sqrt(0.5), math.sqrt(0.5)),
}
SIZES = {"small": 7.0, "large": 12.0}  # half-extent in pixels at the 64-px reference scale
SPEEDS = {"slow": 0.6, "fast": 1.2}  # pixels per frame at the 64-px reference scale
TEXTURES = ("plain", "striped", "checkered")

# Attribute combinations training never sees (evaluated as "held-out").
HELD_OUT_COLOR_SHAPE = {("red", "triangle"), ("green", "square"), ("blue", "diamond"), ("yellow", "circle")}
HELD_OUT_DIRECTION_BACKGROUND = {("up", "white"), ("down-left", "navy"), ("right", "brown")}

# (frames, height, width) buckets seen in training, with their sampling weights.
TRAIN_BUCKETS: list[tuple[tuple[int, int, int], float]] = [
    ((16, 64, 64), 0.55),
    ((16, 64, 96), 0.20),
    ((32, 64, 64), 0.15),
    ((8, 64, 64), 0.10),
]


@dataclass(frozen=True)
class Obj:
    color: str
    shape: str
    size: str
    direction: str
    speed: str
    # Start centre as a fraction of the free range (0..1 each), so it is valid at every frame size.
    start: tuple[float, float] = (0.5, 0.5)


@dataclass(frozen=True)
class Clip:
    objects: tuple[Obj, ...]
    background: str
    texture: str
    frames: int
    height: int
    width: int
    fps: int = 8
    caption: str = ""
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> dict:
        d = asdict(self)
        d["objects"] = [asdict(o) for o in self.objects]
        return d

    @staticmethod
    def from_json(d: dict) -> "Clip":
        objs = tuple(Obj(**{**o, "start": tuple(o["start"])}) for o in d["objects"])
        return Clip(**{**d, "objects": objs})


def is_held_out(color: str, shape: str, direction: str, background: str) -> bool:
    return (color, shape) in HELD_OUT_COLOR_SHAPE or (direction, background) in HELD_OUT_DIRECTION_BACKGROUND


def trajectory(obj: Obj, frames: int, height: int, width: int) -> np.ndarray:
    """Centres [frames, 2] (x, y) in pixels; the whole path keeps the object inside the frame."""
    scale = min(height, width) / 64.0
    r = SIZES[obj.size] * scale
    step = SPEEDS[obj.speed] * scale
    dx, dy = DIRECTIONS[obj.direction]
    travel_x, travel_y = dx * step * (frames - 1), dy * step * (frames - 1)
    out = np.zeros((frames, 2), dtype=np.float64)
    for axis, (lim, travel, frac) in enumerate(((width, travel_x, obj.start[0]), (height, travel_y, obj.start[1]))):
        lo = r + 1 + max(0.0, -travel)
        hi = lim - r - 1 - max(0.0, travel)
        if hi < lo:  # path longer than the frame: centre the path
            lo = hi = (lim - travel) / 2.0
        start = lo + frac * (hi - lo)
        out[:, axis] = start + np.arange(frames) * (travel_x if axis == 0 else travel_y) / max(frames - 1, 1)
    return out


def _coverage(shape: str, cx: float, cy: float, r: float, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage in [0,1] from a signed distance (negative inside), one-pixel soft edge."""
    px, py = xs - cx, ys - cy
    if shape == "circle":
        d = np.sqrt(px * px + py * py) - r
    elif shape == "square":
        s = r * 0.886  # same area as the circle of radius r
        d = np.maximum(np.abs(px), np.abs(py)) - s
    elif shape == "diamond":
        s = r * 1.253  # same area as the circle
        d = (np.abs(px) + np.abs(py) - s) / math.sqrt(2.0)
    elif shape == "triangle":
        # Upward equilateral triangle with the circle's area, centroid at (cx, cy).
        side = r * math.sqrt(4 * math.pi / math.sqrt(3))
        h = side * math.sqrt(3) / 2
        top, base = -2 * h / 3, h / 3
        # Signed distances to the base line and to the two slanted edges through the apex (outward normals).
        n = math.sqrt(h * h + (side / 2) ** 2)
        d1 = py - base
        dr = (h * px - (side / 2) * (py - top)) / n
        dl = (-h * px - (side / 2) * (py - top)) / n
        d = np.maximum(np.maximum(d1, dr), dl)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.clip(0.5 - d, 0.0, 1.0)


def _background(name: str, texture: str, height: int, width: int) -> np.ndarray:
    base = np.array(BACKGROUNDS[name], dtype=np.float32)
    img = np.broadcast_to(base, (height, width, 3)).copy()
    if texture == "plain":
        return img
    ys, xs = np.mgrid[0:height, 0:width]
    period = 8
    if texture == "striped":
        mask = ((xs + ys) // period) % 2 == 0
    elif texture == "checkered":
        mask = ((xs // period) + (ys // period)) % 2 == 0
    else:
        raise ValueError(f"unknown texture {texture!r}")
    # Shade towards mid-gray by a fixed amount so the colour name stays true.
    shade = np.where(base > 128, -28.0, 28.0).astype(np.float32)
    img[mask] += shade
    return img


def render(spec: Clip) -> np.ndarray:
    """Render a clip to uint8 [T, H, W, 3]."""
    T, H, W = spec.frames, spec.height, spec.width
    bg = _background(spec.background, spec.texture, H, W)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5
    video = np.empty((T, H, W, 3), dtype=np.uint8)
    paths = [trajectory(o, T, H, W) for o in spec.objects]
    scale = min(H, W) / 64.0
    for t in range(T):
        frame = bg.copy()
        for o, path in zip(spec.objects, paths):
            cov = _coverage(o.shape, path[t, 0], path[t, 1], SIZES[o.size] * scale, xs, ys)[..., None]
            frame = frame * (1 - cov) + np.array(COLORS[o.color], dtype=np.float32) * cov
        video[t] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    return video


def sample_objects(rng: np.random.Generator, n: int, split: str, background: str) -> tuple[Obj, ...]:
    objs: list[Obj] = []
    while len(objs) < n:
        color = str(rng.choice(list(COLORS)))
        shape = str(rng.choice(SHAPES))
        direction = str(rng.choice(list(DIRECTIONS)))
        held = is_held_out(color, shape, direction, background)
        if (split == "train") == held:
            continue
        if any(o.color == color for o in objs):
            continue  # two objects always differ in colour so captions stay unambiguous
        objs.append(
            Obj(
                color=color,
                shape=shape,
                size=str(rng.choice(list(SIZES))),
                direction=direction,
                speed=str(rng.choice(list(SPEEDS))),
                start=(float(rng.uniform(0.1, 0.9)), float(rng.uniform(0.1, 0.9))),
            )
        )
    return tuple(objs)


def sample_spec(
    rng: np.random.Generator,
    split: str = "train",
    bucket: tuple[int, int, int] | None = None,
    n_objects: int | None = None,
) -> Clip:
    """Draw a clip spec. split="train" never yields a held-out combination; "heldout" always does (for the
    first object; a second object is always a seen combination)."""
    if bucket is None:
        weights = np.array([w for _, w in TRAIN_BUCKETS])
        bucket = TRAIN_BUCKETS[int(rng.choice(len(TRAIN_BUCKETS), p=weights / weights.sum()))][0]
    frames, height, width = bucket
    background = str(rng.choice(list(BACKGROUNDS)))
    texture = str(rng.choice(TEXTURES, p=[0.6, 0.2, 0.2]))
    if n_objects is None:
        n_objects = 2 if rng.random() < 0.2 else 1
    if split == "heldout":
        first = sample_objects(rng, 1, "heldout", background)
        rest = sample_objects(rng, n_objects - 1, "train", background) if n_objects > 1 else ()
        rest = tuple(o for o in rest if o.color != first[0].color)
        objects = first + rest
    else:
        objects = sample_objects(rng, n_objects, "train", background)
    return Clip(objects=objects, background=background, texture=texture, frames=frames, height=height, width=width)
