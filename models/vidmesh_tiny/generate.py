"""Make an MP4 from a prompt with the bundled model, on CPU, with ONNX Runtime (no torch).

  python -m vidmesh_tiny.generate "a small red circle moving left slowly on a black background" -o out.mp4

This is the Python reference path (same graphs, same noise, same schedule as the services). The MP4 is H.264
yuv420p with the moov atom first, written by the ffmpeg binary that ships inside the `imageio-ffmpeg` wheel.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

from .paths import BUNDLE
from .sampler import OrtBackend, Request, frames_u8, generate
from .tokenize import Tokenizer


def write_mp4(frames: np.ndarray, fps: int, path: Path, scale: int = 1) -> None:
    """uint8 [T, H, W, 3] -> MP4 (H.264, yuv420p, faststart); `scale` enlarges with nearest neighbour."""
    import imageio_ffmpeg

    if scale > 1:
        frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    T, H, W, _ = frames.shape
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{W}x{H}", "-r", str(fps), "-i", "-", "-c:v", "libx264", "-preset", "medium", "-crf", "12",
           "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(path)]
    subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), check=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prompt")
    ap.add_argument("-o", "--output", type=Path, default=Path("out.mp4"))
    ap.add_argument("--bundle", type=Path, default=BUNDLE)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--size", default=None, help="HEIGHTxWIDTH, e.g. 64x96")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--negative-prompt", default="")
    ap.add_argument("--scale", type=int, default=4, help="enlarge the output (nearest neighbour) for viewing")
    args = ap.parse_args(argv)
    m = tomllib.loads((args.bundle / "model.toml").read_text())
    v, s = m["video"], m["scheduler"]
    h, w = (int(x) for x in args.size.split("x")) if args.size else (v["default_height"], v["default_width"])
    frames = args.frames or v["default_frames"]
    if frames not in v["frames"] or [h, w] not in v["sizes"]:
        sys.exit(f"unsupported size: frames must be one of {v['frames']} and HEIGHTxWIDTH one of {v['sizes']}")
    req = Request(prompt=args.prompt, seed=args.seed, frames=frames, height=h, width=w, steps=args.steps or s["steps"],
                  guidance=s["guidance"] if args.guidance is None else args.guidance, shift=s["shift"],
                  negative_prompt=args.negative_prompt)
    t0 = time.time()
    video, _ = generate(OrtBackend(args.bundle), Tokenizer(args.bundle / "tokenizer.json"), [req],
                        m["vae"]["latent_shift"], m["vae"]["latent_scale"])
    write_mp4(frames_u8(video[0]), v["default_fps"], args.output, args.scale)
    print(f"wrote {args.output} ({frames} frames {h}x{w} @ {v['default_fps']} fps, x{args.scale} view scale) "
          f"in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
