"""Seeded initial-latent noise: Philox4x32-10 + Box–Muller, defined so Rust reproduces it bit for bit.

Definition (docs/model-bundle.md, `[noise] rng = "philox4x32-10-boxmuller"`):
- seed: unsigned 64-bit. key = (seed & 0xFFFFFFFF, seed >> 32).
- The latent tensor of one sample, shape [C, T, h, w], is filled in C (row-major) order, element i.
- Block b = i // 4 is Philox4x32-10(counter = (b & 0xFFFFFFFF, b >> 32, stream, 0), key) -> (x0, x1, x2, x3).
- Streams: 0 is the initial latent noise; 1 + i the noise a stochastic sampler adds at step i (CogVideoX's
  DPM scheduler); 0xFFFFFFFF the noise mixed into the latents before a timestep-conditioned VAE decoder
  (LTX-Video's decode_noise_scale). Each stream is laid out like the latents it is added to.
- Two Box–Muller pairs per block: (x0, x1) -> elements 4b, 4b+1 and (x2, x3) -> 4b+2, 4b+3, with
  u1 = (xa + 1) * 2^-32 in (0, 1], u2 = xb * 2^-32 in [0, 1), r = sqrt(-2 ln u1),
  first = r cos(2 pi u2), second = r sin(2 pi u2), computed in IEEE double with the C library's log/cos/sin/sqrt
  and rounded to float32 (round-to-nearest-even).
- A batch of samples uses one seed per sample; there is no state carried between samples or requests.
"""

from __future__ import annotations

import math

import numpy as np

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK = 0xFFFFFFFF


def philox4x32_10(counters: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """counters: uint64 array [N, 4] holding 32-bit words. Returns uint64 [N, 4] of 32-bit outputs."""
    c = counters.astype(np.uint64).copy()
    k0, k1 = np.uint64(key[0] & MASK), np.uint64(key[1] & MASK)
    m0, m1, mask = np.uint64(M0), np.uint64(M1), np.uint64(MASK)
    for r in range(10):
        if r > 0:
            k0 = (k0 + np.uint64(W0)) & mask
            k1 = (k1 + np.uint64(W1)) & mask
        p0 = c[:, 0] * m0
        p1 = c[:, 2] * m1
        hi0, lo0 = p0 >> np.uint64(32), p0 & mask
        hi1, lo1 = p1 >> np.uint64(32), p1 & mask
        c = np.stack([hi1 ^ c[:, 1] ^ k0, lo1, hi0 ^ c[:, 3] ^ k1, lo0], axis=1)
    return c


STREAM_DECODE = 0xFFFFFFFF


def gaussian(seed: int, n: int, stream: int = 0) -> np.ndarray:
    """The first n standard normals of `seed`'s stream `stream` (0: the initial noise), as float32."""
    if not 0 <= seed < 2**64:
        raise ValueError("seed must be an unsigned 64-bit integer")
    if not 0 <= stream < 2**32:
        raise ValueError("stream must be an unsigned 32-bit integer")
    blocks = (n + 3) // 4
    b = np.arange(blocks, dtype=np.uint64)
    ctr = np.stack([b & np.uint64(MASK), b >> np.uint64(32), np.full_like(b, stream), np.zeros_like(b)], axis=1)
    x = philox4x32_10(ctr, (seed & MASK, seed >> 32)).reshape(-1).tolist()
    out = np.empty(blocks * 4, dtype=np.float64)
    two_pi = 2.0 * math.pi
    scale = 2.0**-32
    for j in range(0, blocks * 4, 2):
        u1 = (x[j] + 1) * scale
        u2 = x[j + 1] * scale
        r = math.sqrt(-2.0 * math.log(u1))
        out[j] = r * math.cos(two_pi * u2)
        out[j + 1] = r * math.sin(two_pi * u2)
    return out[:n].astype(np.float32)


def latent_noise(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """Noise for one sample's latent of `shape` ([C, T, h, w])."""
    n = int(np.prod(shape))
    return gaussian(seed, n).reshape(shape)


def batch_noise(seeds: list[int], shape: tuple[int, ...]) -> np.ndarray:
    return np.stack([latent_noise(s, shape) for s in seeds])
