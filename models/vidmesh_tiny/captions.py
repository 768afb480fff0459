"""Captions for shapes-world clips, from templates with paraphrase variety.

Invariants:
- `caption(spec, rng, style="train")` only uses TRAIN templates and synonyms; style="paraphrase" only uses the
  PARAPHRASE templates, whose wording training never sees. Both name every attribute the evaluator checks
  (object colour, shape, motion direction, background colour), so a caption fully determines a correct video up
  to position.
- `canonical(spec)` is the one fixed wording used for golden fixtures and the default evaluation.
"""

from __future__ import annotations

import re

import numpy as np

from .world import Clip, Obj

SHAPE_WORDS = {
    "circle": ["circle", "disc", "ball", "round dot"],
    "square": ["square", "box", "block"],
    "triangle": ["triangle", "triangle shape"],
    "diamond": ["diamond", "rhombus"],
}
SIZE_WORDS = {"small": ["small", "little", "tiny"], "large": ["large", "big"]}
SPEED_WORDS = {"slow": ["slowly", "gently"], "fast": ["quickly", "fast", "rapidly"]}
DIRECTION_WORDS = {
    "left": ["left", "to the left", "leftward"],
    "right": ["right", "to the right", "rightward"],
    "up": ["up", "upward", "toward the top"],
    "down": ["down", "downward", "toward the bottom"],
    "up-left": ["up and to the left", "diagonally up-left", "toward the top left"],
    "up-right": ["up and to the right", "diagonally up-right", "toward the top right"],
    "down-left": ["down and to the left", "diagonally down-left", "toward the bottom left"],
    "down-right": ["down and to the right", "diagonally down-right", "toward the bottom right"],
}
VERBS = ["moving", "sliding", "drifting", "gliding", "heading"]
TEXTURE_WORDS = {"plain": [""], "striped": ["striped "], "checkered": ["checkered "]}

TRAIN_TEMPLATES = [
    "a {size} {color} {shape} {verb} {dir} {speed} on a {tex}{bg} background",
    "a {size} {color} {shape} {verb} {speed} {dir} over a {tex}{bg} background",
    "on a {tex}{bg} background, a {size} {color} {shape} {verb} {dir} {speed}",
    "{size} {color} {shape} {verb} {dir} {speed}, {tex}{bg} background",
    "a {color} {shape}, {size}, {verb} {dir} {speed} against a {tex}{bg} backdrop",
]
TWO_OBJECT_TEMPLATES = [
    "{a} and {b} on a {tex}{bg} background",
    "on a {tex}{bg} background, {a} while {b}",
]
OBJECT_PHRASE = "a {size} {color} {shape} {verb} {dir} {speed}"

# Wording never used in training: new templates and verbs.
PARAPHRASE_TEMPLATES = [
    "a video of a {size} {color} {shape} that travels {dir} {speed} across a {tex}{bg} scene",
    "{tex}{bg} background with a {size} {color} {shape} going {dir} {speed}",
    "watch a {color} {shape} ({size}) move {dir} {speed}; the background is {tex}{bg}",
]


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _fields(o: Obj, rng: np.random.Generator) -> dict[str, str]:
    return {
        "size": _pick(rng, SIZE_WORDS[o.size]),
        "color": o.color,
        "shape": _pick(rng, SHAPE_WORDS[o.shape]),
        "verb": _pick(rng, VERBS),
        "dir": _pick(rng, DIRECTION_WORDS[o.direction]),
        "speed": _pick(rng, SPEED_WORDS[o.speed]),
    }


def caption(spec: Clip, rng: np.random.Generator, style: str = "train") -> str:
    tex = _pick(rng, TEXTURE_WORDS[spec.texture])
    if len(spec.objects) == 1:
        templates = TRAIN_TEMPLATES if style == "train" else PARAPHRASE_TEMPLATES
        text = _pick(rng, templates).format(tex=tex, bg=spec.background, **_fields(spec.objects[0], rng))
    else:
        a = OBJECT_PHRASE.format(**_fields(spec.objects[0], rng))
        b = OBJECT_PHRASE.format(**_fields(spec.objects[1], rng))
        text = _pick(rng, TWO_OBJECT_TEMPLATES).format(a=a, b=b, tex=tex, bg=spec.background)
    return _articles(" ".join(text.split()))


def _articles(text: str) -> str:
    return re.sub(r"\b([Aa]) ([aeiou])", r"\1n \2", text)


def canonical(spec: Clip) -> str:
    """The fixed wording: first synonym of everything, first template."""
    o = spec.objects[0]
    tex = TEXTURE_WORDS[spec.texture][0]
    return _articles(TRAIN_TEMPLATES[0].format(
        size=SIZE_WORDS[o.size][0],
        color=o.color,
        shape=SHAPE_WORDS[o.shape][0],
        verb=VERBS[0],
        dir=DIRECTION_WORDS[o.direction][0],
        speed=SPEED_WORDS[o.speed][0],
        tex=tex,
        bg=spec.background,
    ))
