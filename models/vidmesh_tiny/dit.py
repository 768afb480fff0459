"""Diffusion Transformer over spacetime latent patches (rectified-flow velocity prediction).

Invariants:
- Input latents [B, 8, T, h, w] (scaled, see vae.py) with h, w multiples of 2; patch (1, 2, 2) gives
  T*(h/2)*(w/2) tokens (256 for the default 16 frames at 64x64: an 8x8 grid per latent frame, fine enough that a
  slow object's 1-latent-pixel step between latent frames moves it across tokens rather than inside one).
- Positions are fixed 3D sin-cos embeddings computed from the token grid at run time, so any T, h, w work and
  no learned position table ties the model to one size.
- `timestep` is sigma * 1000 with sigma in [0, 1] (x_sigma = (1 - sigma) x0 + sigma noise); the output is the
  velocity noise - x0, same shape as the input.
- Conditioning: adaLN-single (PixArt-alpha) on the timestep; cross-attention to the text states with the text
  mask (padded keys are ignored, so padding length never changes the output). The unconditional branch for
  classifier-free guidance is the empty prompt's text states (caption dropout trains it).
- Attention is one fused node in ONNX (com.microsoft MultiHeadAttention) when `export_fused` is set; in
  PyTorch it is scaled_dot_product_attention. Both compute the same function.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class DiTConfig:
    in_channels: int = 8
    patch: tuple[int, int, int] = (1, 2, 2)
    hidden: int = 160
    depth: int = 7
    heads: int = 5
    mlp_ratio: float = 3.0
    text_dim: int = 384
    rope: bool = True  # 3D rotary positions in self-attention (on top of the additive sin-cos ones)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DiTConfig":
        """A checkpoint's `config`; those saved before RoPE existed (no `rope` key) had none."""
        return cls(**{**d, "patch": tuple(d["patch"]), "rope": d.get("rope", False)})


class _FusedMHA(torch.autograd.Function):
    """SDPA in eager mode; exported as com.microsoft::MultiHeadAttention (fused, CPU and CUDA kernels)."""

    @staticmethod
    def forward(ctx, q, k, v, mask, heads: int, dim: int):  # noqa: ANN001
        return _sdpa(q, k, v, mask, heads)

    @staticmethod
    def symbolic(g, q, k, v, mask, heads: int, dim: int):  # noqa: ANN001
        if mask is None or (hasattr(mask, "node") and mask.node().mustBeNone()):
            return g.op("com.microsoft::MultiHeadAttention", q, k, v, num_heads_i=heads)
        zeros = g.op("Constant", value_t=torch.zeros(3 * dim))
        m32 = g.op("Cast", mask, to_i=6)  # INT32 key_padding_mask [B, L]
        return g.op("com.microsoft::MultiHeadAttention", q, k, v, zeros, m32, num_heads_i=heads)


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, heads: int) -> torch.Tensor:
    B, S, D = q.shape
    L = k.shape[1]
    hd = D // heads
    q = q.reshape(B, S, heads, hd).transpose(1, 2)
    k = k.reshape(B, L, heads, hd).transpose(1, 2)
    v = v.reshape(B, L, heads, hd).transpose(1, 2)
    am = None if mask is None else mask.bool()[:, None, None, :]
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=am)
    return o.transpose(1, 2).reshape(B, S, D)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, kv_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(kv_dim or dim, dim)
        self.v = nn.Linear(kv_dim or dim, dim)
        self.o = nn.Linear(dim, dim)
        self.export_fused = False

    def forward(self, x: torch.Tensor, ctx: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        ctx = x if ctx is None else ctx
        q, k, v = self.q(x), self.k(ctx), self.v(ctx)
        if rope is not None:
            q, k = apply_rope(q, rope, self.heads), apply_rope(k, rope, self.heads)
        if self.export_fused:
            o = _FusedMHA.apply(q, k, v, mask, self.heads, self.q.out_features)
        else:
            o = _sdpa(q, k, v, mask, self.heads)
        return self.o(o)


class Block(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        D = cfg.hidden
        self.norm1 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(D, cfg.heads)
        self.norm2 = nn.LayerNorm(D, eps=1e-6)
        self.cross = Attention(D, cfg.heads)
        self.norm3 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        hid = int(D * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(D, hid), nn.GELU(approximate="tanh"), nn.Linear(hid, D))
        self.table = nn.Parameter(torch.randn(6, D) / math.sqrt(D))

    def forward(self, x: torch.Tensor, t6: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        mod = self.table.unsqueeze(0) + t6  # [B, 6, D]
        sh1, sc1, g1, sh2, sc2, g2 = (mod[:, i : i + 1] for i in range(6))
        x = x + g1 * self.attn(self.norm1(x) * (1 + sc1) + sh1, rope=rope)
        x = x + self.cross(self.norm2(x), y, mask)
        x = x + g2 * self.mlp(self.norm3(x) * (1 + sc2) + sh2)
        return x


def sincos_1d(pos: torch.Tensor, dim: int) -> torch.Tensor:
    """[N] positions -> [N, dim] (half sin, half cos), frequencies 1/10000^(i/(dim/2))."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    ang = pos.to(torch.float32)[:, None] * freq[None]
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)


def sincos_3d(t: int, h: int, w: int, dim: int) -> torch.Tensor:
    """[t*h*w, dim]: d_xy = 2*floor(dim/6) channels each for row and column, the rest (even) for time."""
    dxy = (dim // 3) // 2 * 2
    dt = dim - 2 * dxy
    gt, gy, gx = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    return torch.cat([sincos_1d(gt.reshape(-1), dt), sincos_1d(gy.reshape(-1), dxy), sincos_1d(gx.reshape(-1), dxy)], dim=1)


def rope_3d(t: int, h: int, w: int, head_dim: int, base: float = 100.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each [t*h*w, head_dim/2]: a quarter of the rotation pairs turn with time, the rest split
    between row and column; each axis's frequencies run from 1 to 1/base radians per token."""
    pairs = head_dim // 2
    pt = pairs // 4
    py = (pairs - pt) // 2
    px = pairs - pt - py
    gt, gy, gx = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")

    def axis(pos: torch.Tensor, n: int) -> torch.Tensor:
        freq = torch.exp(-math.log(base) * torch.arange(n, dtype=torch.float32) / n)
        return pos.reshape(-1).to(torch.float32)[:, None] * freq[None]

    ang = torch.cat([axis(gt, pt), axis(gy, py), axis(gx, px)], dim=1)
    return torch.cos(ang), torch.sin(ang)


def apply_rope(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], heads: int) -> torch.Tensor:
    """Rotates consecutive channel pairs of every head of x [B, N, D] by the token's angles."""
    cos, sin = rope
    if cos.dtype != x.dtype:  # bf16 under CUDA autocast: q and k must keep the dtype v has
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    B, N, D = x.shape
    x = x.reshape(B, N, heads, D // heads // 2, 2)
    a, b = x[..., 0], x[..., 1]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack([a * c - b * s, a * s + b * c], dim=-1).reshape(B, N, D)


def timestep_embedding(t: torch.Tensor, dim: int = 256) -> torch.Tensor:
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half).to(t.device)
    ang = t.to(torch.float32)[:, None] * freq[None]
    return torch.cat([torch.cos(ang), torch.sin(ang)], dim=1)


class DiT(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        D, C = cfg.hidden, cfg.in_channels
        pt, ph, pw = cfg.patch
        self.embed = nn.Conv3d(C, D, kernel_size=cfg.patch, stride=cfg.patch)
        self.t_mlp = nn.Sequential(nn.Linear(256, D), nn.SiLU(), nn.Linear(D, D))
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))
        self.y_proj = nn.Sequential(nn.Linear(cfg.text_dim, D), nn.GELU(approximate="tanh"), nn.Linear(D, D))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm_out = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.out_table = nn.Parameter(torch.randn(2, D) / math.sqrt(D))
        self.out = nn.Linear(D, C * pt * ph * pw)
        self._init()

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.embed.bias)
        nn.init.normal_(self.t_mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_mlp[2].weight, std=0.02)
        nn.init.zeros_(self.t_block[1].weight)  # adaLN starts as identity with zero gates from the table only
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def set_export_fused(self, on: bool) -> None:
        for m in self.modules():
            if isinstance(m, Attention):
                m.export_fused = on

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor, text_states: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        B, C, T, H, W = latents.shape
        pt, ph, pw = self.cfg.patch
        D = self.cfg.hidden
        x = self.embed(latents)  # [B, D, t, h, w]
        t, h, w = x.shape[2], x.shape[3], x.shape[4]
        x = x.flatten(2).transpose(1, 2) + sincos_3d(t, h, w, D).to(x.device).unsqueeze(0)
        temb = self.t_mlp(timestep_embedding(timestep))
        t6 = self.t_block(temb).reshape(B, 6, D)
        y = self.y_proj(text_states)
        rope = tuple(r.to(x.device) for r in rope_3d(t, h, w, D // self.cfg.heads)) if self.cfg.rope else None
        for blk in self.blocks:
            x = blk(x, t6, y, text_mask, rope)
        sh, sc = (self.out_table.unsqueeze(0) + temb.unsqueeze(1)).chunk(2, dim=1)
        x = self.out(self.norm_out(x) * (1 + sc) + sh)  # [B, N, C*pt*ph*pw]
        x = x.reshape(B, t, h, w, C, pt, ph, pw).permute(0, 4, 1, 5, 2, 6, 3, 7)
        return x.reshape(B, C, t * pt, h * ph, w * pw)


def from_checkpoint(ck: dict) -> DiT:
    """The DiT of a training checkpoint (train_dit.py), with its EMA weights, in eval mode."""
    dit = DiT(DiTConfig.from_dict(ck["config"]))
    dit.load_state_dict(ck["ema"])
    return dit.eval()
