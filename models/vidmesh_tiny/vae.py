"""Tubelet VAE: 4x temporal and 4x spatial compression into 8 latent channels.

Invariants:
- Video in [-1, 1], shape [B, 3, T, H, W] with T % 4 == 0 and H, W % 4 == 0; latent [B, 8, T/4, H/4, W/4].
- Every latent frame t depends only on video frames 4t..4t+3, and decodes back to exactly those frames. The
  networks fold latent time into the batch, so decoding any temporal chunk of latents gives bit-for-bit the same
  frames as decoding all of them: the decoder service decodes chunk by chunk with memory flat in frame count.
- Convolutions are fully convolutional in space: any H, W (multiples of 8) work.
- The DiT sees `(mean - shift) * scale` where shift/scale are the bundle's latent scaling (model.toml).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

LATENT_CHANNELS = 8
T_COMP, S_COMP = 4, 4


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.n1 = nn.GroupNorm(8, c)
        self.c1 = nn.Conv2d(c, c, 3, padding=1)
        self.n2 = nn.GroupNorm(8, c)
        self.c2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))
        return x + self.c2(F.silu(self.n2(h)))


def fold(x: torch.Tensor, t: int, s: int) -> torch.Tensor:
    """[B, C, T, H, W] -> [B*T/t, C*t*s*s, H/s, W/s] (space- and time-to-depth)."""
    B, C, T, H, W = x.shape
    x = x.reshape(B, C, T // t, t, H // s, s, W // s, s)
    x = x.permute(0, 2, 1, 3, 5, 7, 4, 6)
    return x.reshape(B * (T // t), C * t * s * s, H // s, W // s)


def unfold(x: torch.Tensor, b: int, c: int, t: int, s: int) -> torch.Tensor:
    """Inverse of fold: [B*Tl, c*t*s*s, h, w] -> [B, c, Tl*t, h*s, w*s]."""
    n, _, h, w = x.shape
    tl = n // b
    x = x.reshape(b, tl, c, t, s, s, h, w)
    x = x.permute(0, 2, 1, 3, 6, 4, 7, 5)
    return x.reshape(b, c, tl * t, h * s, w * s)


class Encoder(nn.Module):
    """4-frame x 4x4-pixel tubelets folded into channels, then 2D convs on the latent grid."""

    def __init__(self, c: int = 96):
        super().__init__()
        self.inp = nn.Conv2d(3 * T_COMP * S_COMP * S_COMP, c, 3, padding=1)
        self.r1 = ResBlock(c)
        self.r2 = ResBlock(c)
        self.norm = nn.GroupNorm(8, c)
        self.out = nn.Conv2d(c, 2 * LATENT_CHANNELS, 3, padding=1)

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B = video.shape[0]
        x = fold(video, T_COMP, S_COMP)
        x = self.r2(self.r1(self.inp(x)))
        x = self.out(F.silu(self.norm(x)))
        mean, logvar = x.chunk(2, dim=1)
        n, c, h, w = mean.shape
        to5 = lambda y: y.reshape(B, n // B, c, h, w).permute(0, 2, 1, 3, 4)  # noqa: E731
        return to5(mean), to5(logvar.clamp(-20, 10))


class Decoder(nn.Module):
    """Latent grid (time in channels) -> one feature map per frame -> 2x -> 4x pixels."""

    def __init__(self, c1: int = 96, c2: int = 32):
        super().__init__()
        self.inp = nn.Conv2d(LATENT_CHANNELS, c1, 3, padding=1)
        self.r1 = ResBlock(c1)
        self.r2 = ResBlock(c1)
        self.tsplit = nn.Conv2d(c1, c2 * T_COMP, 3, padding=1)  # time-from-depth: one c2 map per frame
        self.r3 = ResBlock(c2)
        self.up = nn.Conv2d(c2, c2 * 4, 3, padding=1)  # pixel-shuffle 2x
        self.r4 = ResBlock(c2)
        self.norm = nn.GroupNorm(8, c2)
        self.out = nn.Conv2d(c2, 3 * 4, 3, padding=1)  # pixel-shuffle 2x -> RGB
        self.c2 = c2

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        B, C, Tl, h, w = z.shape
        x = z.permute(0, 2, 1, 3, 4).reshape(B * Tl, C, h, w)
        x = self.r2(self.r1(self.inp(x)))
        x = self.tsplit(x).reshape(B * Tl * T_COMP, self.c2, h, w)
        x = self.r3(x)
        x = self.r4(F.pixel_shuffle(self.up(x), 2))
        x = F.pixel_shuffle(self.out(F.silu(self.norm(x))), 2)  # [B*Tl*T_COMP, 3, 4h, 4w]
        x = x.reshape(B, Tl * T_COMP, 3, 4 * h, 4 * w)
        return x.permute(0, 2, 1, 3, 4)


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.decoder = Decoder()
