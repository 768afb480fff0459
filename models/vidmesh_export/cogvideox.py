"""models/export.sh for a diffusers CogVideoXPipeline directory (CogVideoX-5B style) -> a vidmesh bundle (format 2).

  models/export.sh --from models/work/cogvideox-tiny-src --out models/cogvideox-tiny

Writes BUNDLE/{tokenizer.json, text_encoder.onnx, dit.onnx, vae_decoder.onnx, vae_decoder_step.onnx, model.toml,
export_report.json}.

Graphs:
  text_encoder.onnx  T5 encoder, the same graph as Wan's (text_encoder.py): input_ids, attention_mask [batch, tokens]
                     -> last_hidden_state. CogVideoXPipeline pads every prompt to 226 tokens and runs T5 WITHOUT a
                     mask (encoder_mask = false: vidmesh feeds all ones) and hands all 226 rows to the transformer
                     (zero_pad_states = false).
  dit.onnx           hidden_states f32 [batch, 16, latent_frames, latent_height, latent_width] (vidmesh's layout;
                     transposed inside to CogVideoX's [B, F, C, H, W] and back), timestep f32 [batch] (the
                     scheduler's integer timestep; cast to int64 inside, as the pipeline passes it),
                     encoder_hidden_states f32 [batch, tokens, text_dim] -> output (v-prediction, same layout).
                     The 3D RoPE tables (CogVideoXPipeline._prepare_rotary_positional_embeddings: the resize-crop
                     region of the latent grid inside the 5B's 30 x 45 base grid, linspace positions,
                     get_3d_rotary_pos_embed) are computed INSIDE the graph from the dynamic latent F/H/W with
                     torch ops, so one graph serves every size.
  vae_decoder.onnx   first chunk: latents f32 [1, 16, latent_frames (1..3), h, w] -> video [1, 3, frames, 8h, 8w]
                     + cache_out_*; vae_decoder_step.onnx: latents [1, 16, 2, h, w] + cache_in_* -> video
                     [1, 3, 8, 8h, 8w] + cache_out_*. AutoencoderKLCogVideoX._decode decodes z in chunks of
                     num_latent_frames_batch_size = 2 latent frames, the first chunk taking 2 + T mod 2 (capped at
                     T), carrying `conv_cache` (the last 2 input frames of every causal 3x3x3 conv; the 1x1x1
                     spatial-norm convs' entries are never read and are not part of the cache). `latents` is
                     z = x / scaling_factor (done by the caller); `video` is clamped to [-1, 1] inside the graph (as
                     Wan's graphs give it; diffusers clamps later, in postprocess: (v / 2 + 0.5).clamp(0, 1), the same).
                     The decoder's shape branches (odd/even chunk lengths in CogVideoXUpsample3D and
                     CogVideoXSpatialNorm3D, SafeConv3d's memory split) are replaced in the traced wrappers by
                     branch-free equivalents (nearest-neighbour index maps; exact copies of the same values).

Guarantees (each checked here; the export fails and no model.toml is written otherwise):
- every graph was compared with PyTorch through ONNX Runtime at two shapes differing in every dynamic axis (max
  abs error <= 1e-4 with float32 weights);
- the in-graph RoPE tables equal the pipeline's own `_prepare_rotary_positional_embeddings` at several sizes and
  frame counts (in PyTorch, and through the DiT graph: ORT vs the transformer called with the pipeline's tables,
  int64 timesteps and [B, F, C, H, W] latents);
- the text encoder graph with all-ones masks at 226 tokens equals T5 called without a mask (the pipeline's call);
- the wrappers' branch-free VAE decoder equals diffusers' `vae.decode(z)` in PyTorch, and the ONNX Runtime chain
  (first + steps) equals clamp(vae.decode(z), -1, 1) for T = 1, 2, 3, 4, 5 latent frames at two sizes;
- model.toml is re-read and validated against the files and graphs it names (manifest.validate).

Known diffusers behaviour the manifest follows: a chunk of 2 latent frames decodes to 8 video frames (only an odd
first chunk keeps its first frame alone), so an even latent frame count T gives 4T frames, not 4T - 3: CogVideoX-5B
serves frame counts 8k + 1 (odd T; 49 = 13 latent frames), hence [video] frames step 8.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import time
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from . import manifest, text_encoder
from .dit import example_inputs, signature
from .onnx_util import Io, check, export, parity, session
from .replay import chunks, stateful_decode
from .report import TOL, WEIGHTS, start

MAX_TOKENS = 226  # CogVideoXPipeline's max_sequence_length (= the transformer's max_text_seq_length)
DECODE_CHUNK = 2  # AutoencoderKLCogVideoX.num_latent_frames_batch_size
FPS = 8  # CogVideoX is made for 8 fps (49 frames = 6 s)


# ---------------------------------------------------------------------------------------------------------- load
def load(root: Path, random_init: bool, weights: str) -> SimpleNamespace:
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
    from transformers import AutoTokenizer, T5EncoderModel

    from .load import TORCH_DTYPES, _cast, modules

    index = json.loads((root / "model_index.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(str(root / "tokenizer"))
    te, tr, vae = modules(root, random_init, T5EncoderModel, CogVideoXTransformer3DModel, AutoencoderKLCogVideoX)
    dtype = TORCH_DTYPES[weights]
    # The VAE stays float32 (small; its causal cache is numerically sensitive), like Wan's.
    sched = json.loads((root / "scheduler" / "scheduler_config.json").read_text())
    return SimpleNamespace(index=index, tokenizer=tokenizer, text_encoder=_cast(te.eval(), dtype),
                           transformer=_cast(tr.eval(), dtype), vae=vae.eval(), scheduler_config=sched)


# ---------------------------------------------------------------------------------------------------------- DiT
def _f64(n) -> torch.Tensor:  # noqa: ANN001
    """A (symbolic) size as a 0-d float64 tensor (n >= 1), traceable by torch.export."""
    return torch.arange(n, dtype=torch.float64)[-1] + 1.0


def _linspace(start: torch.Tensor, end: torch.Tensor, n) -> torch.Tensor:  # noqa: ANN001
    """torch.linspace(start, end, n, dtype=float32) as its CPU kernel computes it (start/end rounded to float32,
    step = (end - start) / (n - 1) in float32, the first half counted up from start, the second down from end;
    n = 1 gives start)."""
    start, end = start.float(), end.float()
    idx = torch.arange(n, dtype=torch.float32)
    steps = _f64(n).float()
    step = (end - start) / torch.clamp(steps - 1.0, min=1.0)
    half = torch.floor(steps / 2.0)
    vals = torch.where(idx < half, start + step * idx, end - step * (steps - idx - 1.0))
    return torch.where(steps == 1.0, start.expand_as(vals), vals)


class DitWrapper(torch.nn.Module):
    """output = transformer(hidden_states^T, int64(timestep), text, rope(F, H, W))^T, float32 in and out."""

    def __init__(self, transformer: torch.nn.Module):
        super().__init__()
        c = transformer.config
        if not c.use_rotary_positional_embeddings or c.use_learned_positional_embeddings or c.patch_size_t:
            raise SystemExit("only CogVideoX 5B-style transformers (rotary embeddings, no patch_size_t) are supported")
        if c.ofs_embed_dim:
            raise SystemExit("the transformer has an ofs embedding (CogVideoX 1.5 I2V); not a text-to-video 5B")
        self.transformer = transformer
        self.p = c.patch_size
        self.base_h, self.base_w = c.sample_height // self.p, c.sample_width // self.p
        d = c.attention_head_dim
        self.dims = (d // 4, d // 8 * 3, d // 8 * 3)  # get_3d_rotary_pos_embed: t, h, w
        for name, dim in zip("thw", self.dims):
            # get_1d_rotary_pos_embed(dim, pos, theta=10000): 1 / theta ** (arange(0, dim, 2) / dim), float32
            inv = 1.0 / (10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
            self.register_buffer(f"inv_freq_{name}", inv, persistent=False)
        self.dtype = next(p.dtype for n, p in transformer.named_parameters() if n.startswith("patch_embed"))

    @staticmethod
    def _cos_sin(pos: torch.Tensor, inv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = pos[:, None] * inv[None, :]  # torch.outer
        n, k = f.shape
        rep = lambda x: x[:, :, None].expand(n, k, 2).reshape(n, 2 * k)  # noqa: E731  repeat_interleave(2, dim=1)
        return rep(f.cos()), rep(f.sin())

    def rope(self, frames, gh, gw) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
        """CogVideoXPipeline._prepare_rotary_positional_embeddings for a latent grid frames x gh x gw (in tokens)."""
        th, tw = float(self.base_h), float(self.base_w)
        h, w = _f64(gh), _f64(gw)
        # get_resize_crop_region_for_grid((gh, gw), base_w, base_h), Python float64 with round-half-even
        tall = (h / w) > (th / tw)
        rh = torch.where(tall, torch.full_like(h, th), torch.round(tw / w * h))
        rw = torch.where(tall, torch.round(th / h * w), torch.full_like(w, tw))
        top, left = torch.round((th - rh) / 2.0), torch.round((tw - rw) / 2.0)
        bottom, right = top + rh, left + rw
        t = _f64(frames)
        grid_t = _linspace(torch.zeros_like(t), t * (t - 1.0) / t, frames)
        grid_h = _linspace(top, bottom * (h - 1.0) / h, gh)
        grid_w = _linspace(left, right * (w - 1.0) / w, gw)
        parts = [self._cos_sin(g, inv) for g, inv in
                 ((grid_t, self.inv_freq_t), (grid_h, self.inv_freq_h), (grid_w, self.inv_freq_w))]
        dt, dh, dw = self.dims
        out = []
        for k in range(2):  # cos, sin
            a = parts[0][k][:, None, None, :].expand(frames, gh, gw, dt)
            b = parts[1][k][None, :, None, :].expand(frames, gh, gw, dh)
            c = parts[2][k][None, None, :, :].expand(frames, gh, gw, dw)
            out.append(torch.cat([a, b, c], dim=-1).reshape(frames * gh * gw, dt + dh + dw))
        return out[0], out[1]

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor,
                encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        x = hidden_states.permute(0, 2, 1, 3, 4).contiguous()  # [B, C, F, H, W] -> CogVideoX's [B, F, C, H, W]
        f, h, w = x.shape[1], x.shape[3], x.shape[4]
        rope = self.rope(f, h // self.p, w // self.p)
        out = self.transformer(hidden_states=x.to(self.dtype),
                               encoder_hidden_states=encoder_hidden_states.to(self.dtype),
                               timestep=timestep.to(torch.int64), image_rotary_emb=rope, return_dict=False)[0]
        return out.float().permute(0, 2, 1, 3, 4)


def pipeline_rope(transformer, height_px: int, width_px: int, frames: int, vae_scale: int = 8):  # noqa: ANN001
    """The pipeline's own tables (CogVideoXPipeline._prepare_rotary_positional_embeddings, unbound)."""
    from diffusers import CogVideoXPipeline

    fake = SimpleNamespace(vae_scale_factor_spatial=vae_scale, transformer=transformer)
    return CogVideoXPipeline._prepare_rotary_positional_embeddings(fake, height_px, width_px, frames,
                                                                   torch.device("cpu"))


def pipeline_call(transformer, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """The transformer exactly as CogVideoXPipeline calls it (latents and text in the weights' dtype, as with
    torch_dtype), in vidmesh's layout."""
    dtype = transformer.patch_embed.proj.weight.dtype
    lat = x.permute(0, 2, 1, 3, 4).contiguous().to(dtype)
    rope = pipeline_rope(transformer, x.shape[3] * 8, x.shape[4] * 8, x.shape[2])
    out = transformer(hidden_states=lat, encoder_hidden_states=text.to(dtype), timestep=t.to(torch.int64),
                      image_rotary_emb=rope, return_dict=False)[0].float()
    return out.permute(0, 2, 1, 3, 4)


DIT_ARGS = ["hidden_states", "timestep", "encoder_hidden_states"]


def dit_spec(transformer) -> tuple[list[Io], list[Io]]:  # noqa: ANN001
    c = transformer.config
    return signature(c.in_channels, c.out_channels, c.text_embed_dim, output="output")


def dit_example(transformer, batch: int, frames: int, h: int, w: int, tokens: int, seed: int) -> tuple:  # noqa: ANN001
    c = transformer.config
    return example_inputs(torch.Generator().manual_seed(seed), c.in_channels, c.text_embed_dim,
                          [999.0, 500.0, 1.0, 250.0], batch, frames, h, w, tokens)


# Every dynamic size distinct (torch.export's duck sizing); checks differ from it and each other in every axis.
# The two check grids fall on both sides of the crop-region test (tall: 8x4 latents; wide: 4x12).
DIT_EXPORT_SHAPE = dict(batch=2, frames=3, h=10, w=6, tokens=7)
DIT_CHECK_SHAPES = [dict(batch=1, frames=2, h=4, w=12, tokens=5), dict(batch=3, frames=5, h=8, w=4, tokens=11)]
# (frames, height px, width px) where the in-graph RoPE is compared with the pipeline's function.
ROPE_CHECKS = [(1, 16, 16), (3, 48, 64), (5, 64, 48), (2, 32, 96), (13, 480, 720), (7, 768, 1360), (9, 720, 480)]


def export_dit(transformer, path: Path, external_data: bool, tol: float) -> tuple:  # noqa: ANN001
    wrapper = DitWrapper(transformer).eval()
    rope_err = 0.0
    with torch.no_grad():
        for f, hp, wp in ROPE_CHECKS:
            ref = pipeline_rope(transformer, hp, wp, f)
            got = wrapper.rope(f, hp // 8 // wrapper.p, wp // 8 // wrapper.p)
            rope_err = max(rope_err, *(float((a - b).abs().max()) for a, b in zip(got, ref)))
    if not rope_err <= 1e-5:
        raise SystemExit(f"in-graph RoPE differs from the pipeline's tables by {rope_err:.3g}")
    ins, outs = dit_spec(transformer)
    ex = export(wrapper, dit_example(transformer, seed=0, **DIT_EXPORT_SHAPE), DIT_ARGS, ins, outs, path,
                external_data)
    sess = session(path)
    rows = []
    for i, shp in enumerate(DIT_CHECK_SHAPES):
        args = dit_example(transformer, seed=10 + i, **shp)
        with torch.no_grad():
            ref_pipe = pipeline_call(transformer, *args)
        errs = parity(wrapper, sess, args, [x.name for x in ins], [o.name for o in outs])
        pipe_errs = parity(lambda *_, r=ref_pipe: r, sess, args, [x.name for x in ins], [o.name for o in outs])
        rows.append({"shape": shp, "max_abs_err": check(errs, tol, f"{path.name} at {shp}"),
                     "vs_pipeline_call": check(pipe_errs, tol, f"{path.name} vs the pipeline's call at {shp}")})
    rows[0]["rope_vs_pipeline"] = rope_err
    return ex, rows


# ---------------------------------------------------------------------------------------------------------- VAE
def _up_hw(x: torch.Tensor, r: int) -> torch.Tensor:
    """Nearest-neighbour upsampling of the last two axes by an integer factor (= F.interpolate nearest, exactly)."""
    if r == 1:
        return x
    b, c, t, h, w = x.shape
    return x[:, :, :, :, None, :, None].expand(b, c, t, h, r, w, r).reshape(b, c, t, h * r, w * r)


def _time_index(t_in, t_out, k: int) -> torch.Tensor:  # noqa: ANN001
    """Frame map of CogVideoX's temporal nearest upsampling by 2**k: an odd-length input keeps its first frame
    alone and upsamples the rest ([0, 1, 1, 2, 2] for 3 -> 5 at k = 1), an even one upsamples all ([0, 0, 1, 1])."""
    odd = t_in % 2
    return torch.div(torch.arange(t_out) + odd * (2**k - 1), 2**k, rounding_mode="floor")


def _upsample_forward(self, inputs: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """CogVideoXUpsample3D.forward without its shape branches (same values)."""
    if self.compress_time:
        t = inputs.shape[2]
        inputs = inputs.index_select(2, _time_index(t, 2 * t - t % 2, 1))
    inputs = _up_hw(inputs, 2)
    b, c, t, h, w = inputs.shape
    x = self.conv(inputs.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
    return x.reshape(b, t, *x.shape[1:]).permute(0, 2, 1, 3, 4)


def _spatial_norm_forward(self, f: torch.Tensor, zq: torch.Tensor, conv_cache=None):  # noqa: ANN001, ANN202
    """CogVideoXSpatialNorm3D.forward without its shape branches: zq (the decoder's input latents) brought to f's
    frames by the same nearest map as the upsamplers that made f (k = log2 of the temporal factor, s = spatial)."""
    k, s = self._vidmesh_ks
    if k:
        zq = zq.index_select(2, _time_index(zq.shape[2], f.shape[2], k))
    zq = _up_hw(zq, 2**s)
    conv_cache = conv_cache or {}
    new = {}
    conv_y, new["conv_y"] = self.conv_y(zq, conv_cache=conv_cache.get("conv_y"))
    conv_b, new["conv_b"] = self.conv_b(zq, conv_cache=conv_cache.get("conv_b"))
    return self.norm_layer(f) * conv_y + conv_b, new


def _safe_conv_forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """CogVideoXSafeConv3d without its > 2 GB split along time (the split computes the same convolution)."""
    return torch.nn.Conv3d.forward(self, x)


class _Base(torch.nn.Module):
    def __init__(self, vae):  # noqa: ANN001
        super().__init__()
        from diffusers.models.autoencoders.autoencoder_kl_cogvideox import (CogVideoXCausalConv3d,
                                                                             CogVideoXSafeConv3d,
                                                                             CogVideoXSpatialNorm3D)
        from diffusers.models.upsampling import CogVideoXUpsample3D

        self.decoder = vae.decoder
        self.post_quant_conv = vae.post_quant_conv
        self.channels = vae.config.latent_channels
        self._patch = [(m, _upsample_forward) for m in vae.decoder.modules() if isinstance(m, CogVideoXUpsample3D)]
        self._patch += [(m, _safe_conv_forward) for m in vae.decoder.modules() if isinstance(m, CogVideoXSafeConv3d)]
        norms = [m for m in vae.decoder.modules() if isinstance(m, CogVideoXSpatialNorm3D)]
        self._patch += [(m, _spatial_norm_forward) for m in norms]
        # Each spatial norm's temporal / spatial factor from a probe with an even chunk (factors = plain ratios).
        seen = {}
        hooks = [m.register_forward_pre_hook(lambda m, a, kw, seen=seen: seen.__setitem__(m, (a[0].shape, a[1].shape)),
                                             with_kwargs=True) for m in norms]
        with torch.no_grad():
            out, cache = self.decoder(torch.zeros(1, self.channels, 2, 2, 2))
        for h in hooks:
            h.remove()
        for m, (fs, zs) in seen.items():
            k, s = (fs[2] // zs[2]).bit_length() - 1, (fs[3] // zs[3]).bit_length() - 1
            if fs[2] != zs[2] << k or fs[3] != zs[3] << s:
                raise SystemExit(f"spatial norm with a non power-of-two factor: f {tuple(fs)}, zq {tuple(zs)}")
            m._vidmesh_ks = (k, s)
        # Cache entries read later: those of causal convs with a time kernel > 1 (the 1x1x1 convs' are never read).
        mods = dict(vae.decoder.named_modules())
        self.keys = []
        for path in _leaves(cache):
            m = mods[_module_path(path)]
            if not isinstance(m, CogVideoXCausalConv3d):
                raise SystemExit(f"unexpected cache entry {path}")
            if m.time_kernel_size > 1:
                if m.pad_mode == "replicate":
                    raise SystemExit(f"{path}: replicate padding keeps no cache")
                self.keys.append(path)

    @contextlib.contextmanager
    def branch_free(self):  # noqa: ANN201
        for m, fn in self._patch:
            m.forward = types.MethodType(fn, m)
        try:
            yield
        finally:
            for m, _ in self._patch:
                del m.forward

    def _decode(self, latents: torch.Tensor, cache: list[torch.Tensor] | None):  # noqa: ANN202
        nested = None
        if cache is not None:
            nested = {}
            for path, c in zip(self.keys, cache):
                d = nested
                for p in path[:-1]:
                    d = d.setdefault(p, {})
                d[path[-1]] = c
        x = self.post_quant_conv(latents) if self.post_quant_conv is not None else latents
        with self.branch_free():
            video, new = self.decoder(x, conv_cache=nested)
        return video, [_get(new, p) for p in self.keys]


def _leaves(d: dict, prefix: tuple = ()) -> list[tuple]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _leaves(v, prefix + (k,))
        elif v is not None:
            out.append(prefix + (k,))
    return out


def _get(d: dict, path: tuple) -> torch.Tensor:
    for p in path:
        d = d[p]
    return d


def _module_path(path: tuple) -> str:
    """conv_cache key path -> decoder module name (up_block_1/resnet_0/conv1 -> up_blocks.1.resnets.0.conv1)."""
    parts = []
    for p in path:
        if p.startswith("up_block_"):
            parts += ["up_blocks", p[len("up_block_"):]]
        elif p.startswith("resnet_"):
            parts += ["resnets", p[len("resnet_"):]]
        else:
            parts.append(p)
    return ".".join(parts)


class VaeFirst(_Base):
    """First chunk (1..3 latent frames) -> (video clamped to [-1, 1], *cache)."""

    def forward(self, latents: torch.Tensor):  # noqa: ANN201
        video, cache = self._decode(latents, None)
        return (torch.clamp(video, -1.0, 1.0), *cache)


class VaeStep(_Base):
    """(2 more latent frames, cache) -> (8 video frames clamped to [-1, 1], *next cache)."""

    def forward(self, latents: torch.Tensor, cache: list[torch.Tensor]):  # noqa: ANN201
        video, nxt = self._decode(latents, cache)
        return (torch.clamp(video, -1.0, 1.0), *nxt)


def _axis(base: str, latent: int, size: int) -> str:
    r = size // latent
    return base if r == 1 else f"{base}*{r}"


def vae_specs(vae, first: VaeFirst, h: int = 6, w: int = 4) -> tuple:  # noqa: ANN001
    c = vae.config.latent_channels
    with torch.no_grad():
        outs = first(torch.zeros(1, c, 3, h, w))
    cin, cout = [], []
    for k, s in enumerate(x.shape for x in outs[1:]):
        if s[2] != 2:
            raise SystemExit(f"cache entry {first.keys[k]} has {s[2]} frames, not 2")
        shape = [1, s[1], 2, _axis("latent_height", h, s[3]), _axis("latent_width", w, s[4])]
        cin.append(Io(f"cache_in_{k}", "float32", shape))
        cout.append(Io(f"cache_out_{k}", "float32", shape))
    oc = vae.config.out_channels
    lat = Io("latents", "float32", [1, c, "latent_frames", "latent_height", "latent_width"])
    lat2 = Io("latents", "float32", [1, c, DECODE_CHUNK, "latent_height", "latent_width"])
    tc = vae.config.temporal_compression_ratio
    v_first = Io("video", "float32", [1, oc, "frames", "height", "width"])
    v_step = Io("video", "float32", [1, oc, DECODE_CHUNK * tc, "height", "width"])
    return ([lat], [v_first, *cout]), ([lat2, *cin], [v_step, *cout])


def export_vae(vae, out_dir: Path, external_data: bool) -> dict:  # noqa: ANN001
    first, step = VaeFirst(vae).eval(), VaeStep(vae).eval()
    (fi, fo), (si, so) = vae_specs(vae, first)
    c = vae.config.latent_channels
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(1, c, 3, 6, 4, generator=g)  # frames / h / w distinct (duck sizing)
    with torch.no_grad():
        caches = list(first(z0)[1:])
    ex_first = export(first, (z0,), ["latents"], fi, fo, out_dir / "vae_decoder.onnx", external_data)
    z1 = torch.randn(1, c, DECODE_CHUNK, 6, 4, generator=g)
    ex_step = export(step, (z1, caches), ["latents", "cache"], si, so, out_dir / "vae_decoder_step.onnx",
                     external_data)
    return {"first": ex_first, "step": ex_step, "wrappers": (first, step)}


VAE_CHECKS = [dict(frames=1, h=4, w=6), dict(frames=2, h=6, w=4), dict(frames=3, h=4, w=10),
              dict(frames=4, h=8, w=6), dict(frames=5, h=8, w=6), dict(frames=5, h=6, w=8)]


def verify_vae(vae, exported: dict, tol: float = 1e-4) -> list[dict]:  # noqa: ANN001
    first, step = exported["wrappers"]
    s_first, s_step = session(exported["first"].path), session(exported["step"].path)
    names = {"names": {"latents": "latents"},  # the graphs' own names ([vae] in model.toml says the same)
             "cache": [{"input": f"cache_in_{k}"} for k in range(len(exported["first"].outputs) - 1)]}
    c = vae.config.latent_channels
    rows = []
    for i, chk in enumerate(VAE_CHECKS):
        g = torch.Generator().manual_seed(100 + i)
        z = torch.randn(1, c, chk["frames"], chk["h"], chk["w"], generator=g)
        parts = chunks(chk["frames"], DECODE_CHUNK)
        with torch.no_grad():
            full = vae.decode(z).sample
            # The branch-free wrappers chained, in PyTorch (unclamped), vs diffusers' decode.
            outs, cache = [], None
            for a, b in parts:
                video, cache = first._decode(z[:, :, a:b], cache)
                outs.append(video)
        claim = float((torch.cat(outs, dim=2) - full).abs().max())
        video = np.concatenate(stateful_decode(s_first, s_step, names, z.numpy(), parts), axis=2)
        ref = torch.clamp(full, -1.0, 1.0).numpy()
        if video.shape != ref.shape:
            raise SystemExit(f"VAE chain shape {video.shape} != vae.decode {ref.shape}")
        err = float(np.abs(video - ref).max())
        rows.append({"latent_shape": [chk["frames"], chk["h"], chk["w"]], "video_shape": list(video.shape),
                     "chunks": parts, "branch_free_vs_diffusers": claim, "max_abs_err": err,
                     "clamped_fraction": float((np.abs(full.numpy()) >= 1.0).mean())})
        if not claim <= tol:
            raise SystemExit(f"branch-free decoder differs from vae.decode by {claim:.3g} at {chk}")
        if not err <= tol:
            raise SystemExit(f"VAE ORT chain vs vae.decode: max abs error {err:.3g} > {tol:g} at {chk}")
    return rows


# ---------------------------------------------------------------------------------------------------------- text
def check_text_encoder_as_pipeline(encoder, path: Path, tol: float) -> float:  # noqa: ANN001
    """The graph with an all-ones mask at max_tokens = T5 called without a mask, as CogVideoXPipeline does."""
    sess = session(path)
    g = torch.Generator().manual_seed(7)
    ids = torch.zeros(2, MAX_TOKENS, dtype=torch.int64)
    for b, n in enumerate((12, 40)):  # prompt, </s>, then padding ids (attended: no mask)
        ids[b, : n - 1] = torch.randint(3, encoder.config.vocab_size, (n - 1,), generator=g)
        ids[b, n - 1] = 1
    with torch.no_grad():
        ref = encoder(ids)[0].float()
    got = sess.run(None, {"input_ids": ids.numpy(), "attention_mask": np.ones_like(ids.numpy())})[0]
    return check({"last_hidden_state": float(np.abs(got - ref.numpy()).max())}, tol, "text_encoder as the pipeline")


def export_text_encoder(encoder, path: Path, external_data: bool, tol: float) -> tuple:  # noqa: ANN001
    """text_encoder.py's graph and checks, plus the all-ones-mask check at 226 tokens (the pipeline's call)."""
    ex, rows = text_encoder.export_text_encoder(encoder, path, external_data, tol)
    return ex, [*rows, {"shape": {"batch": 2, "tokens": MAX_TOKENS, "mask": "all ones (pipeline: no mask)"},
                        "max_abs_err": check_text_encoder_as_pipeline(encoder, path, tol)}]


# ---------------------------------------------------------------------------------------------------------- main
def _scheduler(cfg: dict, steps: int, guidance: float) -> dict:
    want = {"prediction_type": "v_prediction", "timestep_spacing": "trailing", "rescale_betas_zero_snr": True,
            "set_alpha_to_one": True, "steps_offset": 0, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
            "beta_end": 0.012, "num_train_timesteps": 1000, "clip_sample": False, "trained_betas": None}
    kinds = {"CogVideoXDPMScheduler": "cogvideox_dpm", "CogVideoXDDIMScheduler": "cogvideox_ddim"}
    bad = manifest.mismatches(cfg, want)
    if cfg.get("_class_name") not in kinds or bad:
        raise SystemExit(f"scheduler is not a CogVideoX DPM/DDIM scheduler this format defines: "
                         f"{cfg.get('_class_name')} {bad}")
    return {"kind": kinds[cfg["_class_name"]], "steps": steps, "shift": 1.0, "guidance": guidance,
            "snr_shift_scale": float(cfg.get("snr_shift_scale", 3.0)), "dynamic_cfg": True}


def main(a) -> None:  # noqa: ANN001, PLR0915
    a.max_tokens = a.max_tokens or MAX_TOKENS
    if a.max_tokens != MAX_TOKENS:
        raise SystemExit(f"CogVideoX runs T5 on exactly {MAX_TOKENS} tokens (max_text_seq_length)")
    torch.set_num_threads(int(os.environ.get("VIDMESH_EXPORT_THREADS", "1")))
    weights = WEIGHTS[a.weights]
    tol = TOL[weights]
    t0 = time.time()
    c = load(a.src, a.random_init, weights)
    out = a.out
    report = start(a, weights, t0)

    text_encoder.write_tokenizer(c.tokenizer, out / "tokenizer.json", a.max_tokens)
    te_ex = report.timed("text_encoder", export_text_encoder, c.text_encoder, out / "text_encoder.onnx",
                         a.external_data, tol)
    te_hidden = text_encoder.hidden_size(c.text_encoder)
    c.text_encoder = None
    gc.collect()
    tc = c.transformer.config
    dit_ex = report.timed("dit", export_dit, c.transformer, out / "dit.onnx", a.external_data, tol)
    t = time.time()
    vae_ex = export_vae(c.vae, out, a.external_data)
    vae_rows = verify_vae(c.vae, vae_ex)
    report.add("vae_decoder+vae_decoder_step (chained)", vae_ex["step"], vae_rows, time.time() - t)

    frames, height, width, steps, guidance = manifest.request_defaults(a, "49,480,720", 50, 6.0)
    vc = c.vae.config
    te = manifest.component(te_ex, weights)
    n_cache = len(vae_ex["first"].outputs) - 1
    grid = 2 ** (len(vc.block_out_channels) - 1) * tc.patch_size  # pixels per DiT token (16)
    tcomp = vc.temporal_compression_ratio
    d = manifest.component(dit_ex, weights)
    m = {
        **manifest.header(a, out, "CogVideoX 5B-style", "CogVideoXPipeline"),
        "text_encoder": manifest.text_encoder_section(te, out, a.max_tokens, te_hidden, prompt_clean="none",
                                                      encoder_mask=False, zero_pad_states=False, dit_mask=False),
        "vae": {"latent_channels": vc.latent_channels, "temporal_compression": tcomp,
                "spatial_compression": 2 ** (len(vc.block_out_channels) - 1),
                "scaling_factor": float(vc.scaling_factor), "frame_rule": "first_frame_separate",
                "decode": "stateful", "decode_chunk": DECODE_CHUNK,
                "cache": [{"input": f"cache_in_{k}", "output": f"cache_out_{k}"} for k in range(n_cache)],
                "names": {"latents": "latents", "video": "video"}},
        "vae_decoder": manifest.component(vae_ex["first"], "float32"),
        "vae_decoder_step": manifest.component(vae_ex["step"], "float32"),
        "dit": {**manifest.graph_keys(d), "weights": d["weights"], "patch_size": [1, tc.patch_size, tc.patch_size],
                "hidden_size": tc.num_attention_heads * tc.attention_head_dim, "depth": tc.num_layers,
                "heads": tc.num_attention_heads, "prediction": "v", "timestep_scale": 1.0,
                "timestep_rounding": "none", "guidance": "cfg_batched",
                "names": {"latents": "hidden_states", "timestep": "timestep", "text_states": "encoder_hidden_states",
                          "text_mask": "", "output": "output"},
                "inputs": d["inputs"], "outputs": d["outputs"]},
        "scheduler": _scheduler(c.scheduler_config, steps, guidance),
        # 8k + 1 frames: an odd number of latent frames (see the module docstring).
        "video": {"default_frames": frames, "default_height": height, "default_width": width, "default_fps": FPS,
                  "frames": {"min": 2 * tcomp + 1, "max": 49, "step": 2 * tcomp},
                  "height": {"min": 2 * grid, "max": 1280, "step": grid},
                  "width": {"min": 2 * grid, "max": 1280, "step": grid}, "fps": [FPS]},
    }
    manifest.write(out, m)
    report.finish(out, (40, 44), vae_cache_slots=n_cache)
