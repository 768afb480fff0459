"""Passive detector: a small CNN that tells vidmesh-tiny frames from real footage, for the classifier service.

  python -m vidmesh_tiny.passive            (torch + scikit-image; ~5 minutes on 2 CPU cores)

Positives are frames of videos the bundled model generates (ONNX pipeline, random captions from the shapes world,
seen and held-out combinations). Negatives are "real" videos made offline: scikit-image's bundled photographs
animated by a random pan and zoom, plus ffmpeg's procedural sources (fractals, cellular automata, test cards,
gradients) — footage vidmesh did not make. Both classes go through the same H.264 round trip at a random CRF, so
compression is no shortcut. Photographs are split by *image* (the held-out ones are never seen in training);
procedural sources and positives by seed.

Writes `vidmesh-tiny/passive.onnx` (input `frames` float32 [N, 3, 64, 64] RGB in [0, 1]; output `logit` [N],
higher = generated; the per-video score is the mean logit over frames) and the `[passive]` table of model.toml:
file, sha256, the decision threshold (the largest held-out negative video score, so 0 held-out false positives),
and the measured rates, which bound what the classifier may claim from passive evidence alone.
"""

from __future__ import annotations

import re
import subprocess
import time
import tomllib
from pathlib import Path

import numpy as np

from .captions import caption
from .manifest import sha256
from .paths import BUNDLE
from .sampler import OrtBackend, Request, frames_u8, generate
from .tokenize import Tokenizer
from .world import sample_spec

SIZE = 64
FRAMES = 16
LAVFI = ["mandelbrot", "life", "cellauto", "testsrc2", "smptehdbars", "gradients", "rgbtestsrc", "zoneplate"]


def h264_round_trip(frames: np.ndarray, crf: int) -> np.ndarray:
    """uint8 [T, H, W, 3] -> libx264 yuv420p at `crf` -> uint8 [T, H, W, 3]."""
    import imageio_ffmpeg

    ff = imageio_ffmpeg.get_ffmpeg_exe()
    T, H, W, _ = frames.shape
    enc = subprocess.run(
        [ff, "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-r", "8", "-i", "-",
         "-c:v", "libx264", "-crf", str(crf), "-pix_fmt", "yuv420p", "-f", "h264", "-"],
        input=np.ascontiguousarray(frames).tobytes(), capture_output=True, check=True).stdout
    dec = subprocess.run([ff, "-v", "error", "-f", "h264", "-i", "-", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         input=enc, capture_output=True, check=True).stdout
    return np.frombuffer(dec, np.uint8).reshape(-1, H, W, 3)[:T]


def generated(n: int, seed: int) -> list[np.ndarray]:
    """n videos from the bundled model, uint8 [T, H, W, 3] each."""
    m = tomllib.loads((BUNDLE / "model.toml").read_text())
    backend, tok = OrtBackend(BUNDLE), Tokenizer(BUNDLE / "tokenizer.json")
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    batch = 8
    while len(out) < n:
        h, w = (64, 96) if rng.random() < 0.3 else (64, 64)
        reqs = []
        for _ in range(batch):
            spec = sample_spec(rng, "heldout" if rng.random() < 0.3 else "train", (FRAMES, h, w))
            reqs.append(Request(prompt=caption(spec, rng, "paraphrase" if rng.random() < 0.5 else "train"),
                                seed=int(rng.integers(0, 2**62)), frames=FRAMES, height=h, width=w,
                                steps=m["scheduler"]["steps"], guidance=float(rng.uniform(3.0, 7.0)),
                                shift=m["scheduler"]["shift"]))
        video, _ = generate(backend, tok, reqs, m["vae"]["latent_shift"], m["vae"]["latent_scale"])
        out.extend(frames_u8(v) for v in video)
    return out[:n]


def photos() -> list[tuple[str, np.ndarray]]:
    """scikit-image's bundled photographs as float RGB [H, W, 3] in [0, 1] (no downloads)."""
    from skimage import data, util
    from skimage.color import gray2rgb

    names = ["astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins", "colorwheel", "grass",
             "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo", "microaneurysms", "moon",
             "page", "retina", "rocket", "text", "motorcycle_left", "motorcycle_right", "checkerboard"]
    out = []
    for name in names:
        try:
            img = getattr(data, name)()
        except Exception:  # noqa: BLE001 - an image that needs a download is simply skipped
            continue
        img = util.img_as_float(img)
        if img.ndim == 2:
            img = gray2rgb(img)
        out.append((name, img[..., :3]))
    return out


def pan_zoom(img: np.ndarray, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A FRAMES-long pan and zoom over `img`, uint8 [T, h, w, 3]."""
    from skimage.transform import resize

    H, W, _ = img.shape
    aspect = w / h
    def box() -> tuple[float, float, float]:
        s = rng.uniform(0.15, 0.9) * min(H, W / aspect)
        return s, rng.uniform(0, H - s), rng.uniform(0, W - s * aspect)
    (s0, y0, x0), (s1, y1, x1) = box(), box()
    gain, bias = rng.uniform(0.7, 1.2), rng.uniform(-0.1, 0.1)
    frames = []
    for t in np.linspace(0, 1, FRAMES):
        s, y, x = s0 + t * (s1 - s0), y0 + t * (y1 - y0), x0 + t * (x1 - x0)
        crop = img[int(y):int(y + s), int(x):int(x + s * aspect)]
        f = resize(crop, (h, w), anti_aliasing=True)
        frames.append(np.clip((f * gain + bias) * 255 + 0.5, 0, 255).astype(np.uint8))
    return np.stack(frames)


def procedural(source: str, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
           f"{source}=size={w * 2}x{h * 2}:rate=8", "-ss", str(rng.integers(0, 5)), "-frames:v", str(FRAMES),
           "-vf", f"scale={w}:{h}", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)[:FRAMES]


def real(n: int, images: list[tuple[str, np.ndarray]], sources: list[str], seed: int) -> tuple[list[np.ndarray], list[str]]:
    """n real videos (a quarter procedural) and the family of each ("photo" or "procedural")."""
    rng = np.random.default_rng(seed)
    out, family = [], []
    for i in range(n):
        h, w = (64, 96) if rng.random() < 0.3 else (64, 64)
        if sources and i % 4 == 3:
            try:
                out.append(procedural(sources[int(rng.integers(len(sources)))], rng, h, w))
                family.append("procedural")
                continue
            except subprocess.CalledProcessError:
                pass
        out.append(pan_zoom(images[int(rng.integers(len(images)))][1], rng, h, w))
        family.append("photo")
    return out, family


def compress(videos: list[np.ndarray], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [h264_round_trip(v, int(rng.choice([12, 18, 23, 28, 35]))) for v in videos]


def to_tensor(videos: list[np.ndarray], rng: np.random.Generator | None = None) -> np.ndarray:
    """The centre 64×64 of every frame (a random 64×64 per video when `rng` is given), float32 [N, 3, 64, 64] in
    [0, 1]."""
    out = []
    for v in videos:
        _, H, W, _ = v.shape
        y, x = (H - SIZE) // 2, (W - SIZE) // 2
        if rng is not None:
            y, x = int(rng.integers(0, H - SIZE + 1)), int(rng.integers(0, W - SIZE + 1))
        out.append(v[:, y:y + SIZE, x:x + SIZE].transpose(0, 3, 1, 2))
    return (np.concatenate(out).astype(np.float32) / 255.0)


def network():  # noqa: ANN201
    import torch.nn as nn

    def block(i: int, o: int, stride: int) -> list:
        return [nn.Conv2d(i, o, 3, stride, 1), nn.BatchNorm2d(o), nn.ReLU()]
    return nn.Sequential(*block(3, 16, 1), *block(16, 32, 2), *block(32, 64, 2), *block(64, 64, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 1), nn.Flatten(0))


def video_scores(net, videos: list[np.ndarray]) -> np.ndarray:  # noqa: ANN001
    import torch

    net.eval()
    with torch.no_grad():
        return np.array([float(net(torch.from_numpy(to_tensor([v]))).mean()) for v in videos])


def main() -> None:
    import torch

    torch.manual_seed(0)
    t0 = time.time()
    images = photos()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(images))
    test_images = [images[i] for i in order[: max(4, len(images) // 4)]]
    train_images = [images[i] for i in order[len(test_images):]]
    print(f"{len(images)} photographs: train {[n for n, _ in train_images]}, held out {[n for n, _ in test_images]}")
    pos_train, pos_test = compress(generated(640, 1), 11), compress(generated(96, 2), 12)
    # Photographs are split by image; procedural sources by seed (start time, size), every source in both.
    neg_train = compress(real(640, train_images, LAVFI, 3)[0], 13)
    neg_test, families = real(96, test_images, LAVFI, 4)
    neg_test = compress(neg_test, 14)
    print(f"data in {time.time() - t0:.0f}s")

    crop_rng = np.random.default_rng(5)
    x = torch.from_numpy(np.concatenate([to_tensor(pos_train, crop_rng), to_tensor(neg_train, crop_rng)]))
    y = torch.cat([torch.ones(sum(len(v) for v in pos_train)), torch.zeros(sum(len(v) for v in neg_train))])
    net = network()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for epoch in range(8):
        net.train()
        perm = torch.randperm(len(x))
        total = 0.0
        for i in range(0, len(x), 128):
            idx = perm[i:i + 128]
            xb = x[idx]
            if torch.rand(()) < 0.5:
                xb = xb.flip(3)
            loss = loss_fn(net(xb), y[idx] * 0.9 + 0.05)  # label smoothing keeps logits bounded
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        print(f"epoch {epoch}: loss {total / len(x):.4f} ({time.time() - t0:.0f}s)")

    sp, sn = video_scores(net, pos_test), video_scores(net, neg_test)
    threshold = float(sn.max())
    tpr = float((sp > threshold).mean())
    auc = float((sp[:, None] > sn[None, :]).mean())
    print(f"held out: {len(sp)} generated, {len(sn)} real videos; AUC {auc:.4f}; threshold {threshold:.3f} "
          f"(0/{len(sn)} real above) -> TPR {tpr:.3f}")
    for fam in sorted(set(families)):
        sel = sn[np.array(families) == fam]
        print(f"  real {fam}: {len(sel)} videos, score max {sel.max():.2f} median {np.median(sel):.2f}")
    print(f"  generated: score min {sp.min():.2f} median {np.median(sp):.2f}")

    out = BUNDLE / "passive.onnx"
    net.eval()
    torch.onnx.export(net, torch.zeros(2, 3, SIZE, SIZE), str(out), input_names=["frames"], output_names=["logit"],
                      dynamic_axes={"frames": {0: "batch"}, "logit": {0: "batch"}}, opset_version=18, dynamo=False)
    table = (
        "[passive]\n"
        "# Passive detector (models/vidmesh_tiny/passive.py): per-video score = mean logit over frames (centre 64x64,\n"
        "# RGB in [0, 1]); above `threshold` counts as passive evidence. Rates measured on held-out videos.\n"
        f'file = "passive.onnx"\nsha256 = "{sha256(out)}"\n'
        'inputs = [\n  { name = "frames", dtype = "float32", shape = ["batch", 3, 64, 64] },\n]\n'
        'outputs = [\n  { name = "logit", dtype = "float32", shape = ["batch"] },\n]\n'
        f"threshold = {threshold:.6f}\n"
        f"heldout_real_videos = {len(sn)}\nheldout_false_positives = 0\n"
        f"heldout_generated_videos = {len(sp)}\nheldout_tpr = {tpr:.4f}\nheldout_auc = {auc:.4f}\n"
    )
    toml_path = BUNDLE / "model.toml"
    text = re.sub(r"\n\[passive\]\n.*?(?=\n\[|\Z)", "", toml_path.read_text(), flags=re.S).rstrip("\n")
    toml_path.write_text(text + "\n\n" + table)
    print(f"wrote {out} and [passive] in {toml_path} ({time.time() - t0:.0f}s)")


if __name__ == "__main__":
    main()
