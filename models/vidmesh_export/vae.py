"""AutoencoderKLWan decoder -> vae_decoder.onnx (first latent frame) + vae_decoder_step.onnx (each further frame).

diffusers decodes a Wan latent video one latent frame at a time (`AutoencoderKLWan._decode`): `post_quant_conv` on
all frames, then `decoder(frame_i, feat_cache, feat_idx)` for i = 0, 1, ..., where `feat_cache` holds, per causal
3x3x3 conv, the last (up to) 2 frames of that conv's input, and per temporal upsampler ("upsample3d") the last 2
frames of its input. Frame 0 runs with an empty cache (`first_chunk=True`): its temporal upsamplers only mark their
slot "Rep" and do not upsample, so frame 0 decodes to 1 video frame; every later latent frame decodes to 4.

Normalised cache (what the graphs pass): every used slot is a float32 tensor [1, C_k, 2, h_k, w_k].
- after frame 0 diffusers leaves a conv slot with 1 frame `f`; the graphs pass [0, f] (zeros prepended): the conv
  pads the missing frame with zeros (causal padding) and the next cache keeps `f` as its second-to-last frame, so
  the results are identical;
- a "Rep" slot becomes 2 frames of zeros: diffusers then runs the time conv with causal zero padding and prepends
  zeros to the 1-frame case, which is the same;
- conv slots that diffusers never fills (1x1 shortcut convs) are not part of the cache.
`verify()` checks this claim numerically (diffusers' own loop with None / "Rep" / 1-frame caches vs the graphs'
wrappers with normalised caches, in PyTorch) and then checks the ONNX Runtime chain first + N steps against
`vae.decode(z)` of the whole video for two frame counts and two sizes (max abs error <= 1e-4).

Graphs (batch 1; latent_height / latent_width dynamic):
  vae_decoder:      latents [1, C, 1, h, w] -> video [1, 3, 1, 8h, 8w], cache_out_0..N-1
  vae_decoder_step: latents [1, C, 1, h, w], cache_in_0..N-1 -> video [1, 3, 4, 8h, 8w], cache_out_0..N-1
Wan 2.2 VAE (TI2V-5B: z_dim 48, is_residual, patch_size 2): the decoder outputs 3 x 2 x 2 channels at 8x the
latent size and `_decode` unpatchifies them to 3 channels at 16x (`unpatchify` before the clamp); the graphs do the
same, so `video` is always [1, 3, T, H, W]. Its residual up blocks' DupUp3D shortcuts carry no cache; on frame 0
(`first_chunk=True`) they keep only the last of their factor_t frames, matching the "Rep" upsamplers' 1 frame, so
the first graph still returns 1 video frame and the step graph scale_factor_temporal (4).
`latents` is the unnormalised z (z = x / (1/std) + mean done by the caller); `video` is clamped to [-1, 1] inside
the graph, exactly as `AutoencoderKLWan._decode` does (torch.clamp(out, -1, 1)). post_quant_conv is in the graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

from .onnx_util import Io, export, session


def _slot_info(vae) -> tuple[list[int], set[int], int]:  # noqa: ANN001
    """Which decoder cache slots diffusers fills on the first frame, which of them are "Rep", and the slot count."""
    n = vae._cached_conv_counts["decoder"]
    feat = [None] * n
    with torch.no_grad():
        vae.decoder(torch.zeros(1, vae.config.z_dim, 1, 2, 2), feat_cache=feat, feat_idx=[0], first_chunk=True)
    used = [i for i, v in enumerate(feat) if v is not None]
    rep = {i for i in used if isinstance(feat[i], str)}
    if any(not isinstance(feat[i], str) and feat[i].shape[2] != 1 for i in used):
        raise SystemExit("unexpected first-frame cache layout (not 1 frame per conv slot)")
    return used, rep, n


class _Base(torch.nn.Module):
    def __init__(self, vae):  # noqa: ANN001
        super().__init__()
        self.post_quant_conv = vae.post_quant_conv
        self.decoder = vae.decoder
        self.patch_size = vae.config.patch_size
        self.slots, self.rep, self.n = _slot_info(vae)
        self._inputs: dict[int, torch.Tensor] = {}
        # Record each temporal upsampler's input with its slot index (a "Rep" slot's zeros take its shape).
        for m in vae.decoder.modules():
            if type(m).__name__ == "WanResample" and m.mode == "upsample3d":
                m.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs) -> None:  # noqa: ANN001
        if kwargs.get("feat_cache") is not None:
            self._inputs[kwargs["feat_idx"][0]] = args[0]

    def _video(self, x: torch.Tensor) -> torch.Tensor:
        """As AutoencoderKLWan._decode: unpatchify (Wan 2.2 VAE), then clamp to [-1, 1]."""
        if self.patch_size is not None:
            x = unpatchify(x, patch_size=self.patch_size)
        return torch.clamp(x, min=-1.0, max=1.0)


class VaeFirst(_Base):
    """Latent frame 0 -> (video [1, 3, 1, H, W], *normalised caches)."""

    def forward(self, latents: torch.Tensor):  # noqa: ANN201
        self._inputs = {}
        feat = [None] * self.n
        x = self.post_quant_conv(latents)
        video = self._video(self.decoder(x, feat_cache=feat, feat_idx=[0], first_chunk=True))
        caches = []
        for s in self.slots:
            v = feat[s]
            if isinstance(v, str):  # "Rep": nothing cached yet -> two frames of causal zero padding
                z = torch.zeros_like(self._inputs[s])
                caches.append(torch.cat([z, z], dim=2))
            else:  # one frame f -> [0, f]
                caches.append(torch.cat([torch.zeros_like(v), v], dim=2))
        return (video, *caches)


class VaeStep(_Base):
    """(latent frame i > 0, normalised caches) -> (video [1, 3, 4, H, W], *next caches)."""

    def forward(self, latents: torch.Tensor, cache: list[torch.Tensor]):  # noqa: ANN201
        feat = [None] * self.n
        for s, c in zip(self.slots, cache):
            feat[s] = c
        x = self.post_quant_conv(latents)
        video = self._video(self.decoder(x, feat_cache=feat, feat_idx=[0]))
        nxt = [feat[s] for s in self.slots]
        if any(isinstance(c, str) or c.shape[2] != 2 for c in nxt):
            raise SystemExit("step cache is not 2 frames per slot")
        return (video, *nxt)


def _axis(base: str, latent: int, size: int) -> str:
    r = size // latent
    return base if r == 1 else f"{base}*{r}"


def specs(vae, first: VaeFirst, h: int = 6, w: int = 4) -> tuple:  # noqa: ANN001
    """Manifest specs of both graphs, cache axes named by their ratio to the latent size (e.g. latent_height*4)."""
    with torch.no_grad():
        outs = first(torch.zeros(1, vae.config.z_dim, 1, h, w))
    cache_shapes = [list(c.shape) for c in outs[1:]]
    lat = Io("latents", "float32", [1, vae.config.z_dim, 1, "latent_height", "latent_width"])
    cin, cout = [], []
    for k, s in enumerate(cache_shapes):
        shape = [1, s[1], 2, _axis("latent_height", h, s[3]), _axis("latent_width", w, s[4])]
        cin.append(Io(f"cache_in_{k}", "float32", shape))
        cout.append(Io(f"cache_out_{k}", "float32", shape))
    p = vae.config.patch_size
    out_ch = vae.config.out_channels // (p * p if p is not None else 1)
    v1 = Io("video", "float32", [1, out_ch, 1, "height", "width"])
    v4 = Io("video", "float32", [1, out_ch, vae.config.scale_factor_temporal, "height", "width"])
    return ([lat], [v1, *cout]), ([lat, *cin], [v4, *cout])


def export_vae(vae, out_dir: Path, external_data: bool) -> dict:  # noqa: ANN001
    first, step = VaeFirst(vae).eval(), VaeStep(vae).eval()
    (fi, fo), (si, so) = specs(vae, first)
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(1, vae.config.z_dim, 1, 6, 4, generator=g)  # h, w: see dit.EXPORT_SHAPE on duck sizing
    with torch.no_grad():
        caches = list(first(z0)[1:])
    ex_first = export(first, (z0,), ["latents"], fi, fo, out_dir / "vae_decoder.onnx", external_data)
    z1 = torch.randn(1, vae.config.z_dim, 1, 6, 4, generator=g)
    ex_step = export(step, (z1, caches), ["latents", "cache"], si, so, out_dir / "vae_decoder_step.onnx",
                     external_data)
    return {"first": ex_first, "step": ex_step, "wrappers": (first, step)}


def _diffusers_frames(vae, z: torch.Tensor) -> list[torch.Tensor]:  # noqa: ANN001
    """diffusers' own per-frame loop (AutoencoderKLWan._decode without the final concat), clamped."""
    vae.clear_cache()
    x = vae.post_quant_conv(z)
    outs = []
    for i in range(z.shape[2]):
        vae._conv_idx = [0]
        outs.append(vae.decoder(x[:, :, i:i + 1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx,
                                first_chunk=(i == 0)))
    vae.clear_cache()
    p = vae.config.patch_size
    return [torch.clamp(unpatchify(o, patch_size=p) if p is not None else o, -1.0, 1.0) for o in outs]


CHECKS = [dict(frames=3, h=4, w=10), dict(frames=5, h=8, w=6)]  # latent sizes: 9 and 17 video frames


def verify(vae, exported: dict, tol: float = 1e-4) -> list[dict]:  # noqa: ANN001
    first, step = exported["wrappers"]
    s_first = session(exported["first"].path)
    s_step = session(exported["step"].path)
    n = len(first.slots)
    rows = []
    for i, c in enumerate(CHECKS):
        g = torch.Generator().manual_seed(100 + i)
        z = torch.randn(1, vae.config.z_dim, c["frames"], c["h"], c["w"], generator=g)
        with torch.no_grad():
            full = vae.decode(z).sample
            ref_frames = _diffusers_frames(vae, z)
            # The normalised-cache claim, in PyTorch: wrappers chained vs diffusers' loop, frame by frame.
            o = first(z[:, :, :1])
            torch_frames, cache = [o[0]], list(o[1:])
            for t in range(1, z.shape[2]):
                o = step(z[:, :, t:t + 1], cache)
                torch_frames.append(o[0])
                cache = list(o[1:])
        claim = max(float((a - b).abs().max()) for a, b in zip(torch_frames, ref_frames))
        # ONNX Runtime chain vs vae.decode(z) of the whole video.
        zn = z.numpy()
        o = s_first.run(None, {"latents": zn[:, :, :1]})
        ort_frames, cache = [o[0]], o[1:]
        for t in range(1, z.shape[2]):
            feeds = {"latents": zn[:, :, t:t + 1], **{f"cache_in_{k}": cache[k] for k in range(n)}}
            o = s_step.run(None, feeds)
            ort_frames.append(o[0])
            cache = o[1:]
        video = np.concatenate(ort_frames, axis=2)
        if video.shape != tuple(full.shape):
            raise SystemExit(f"VAE chain shape {video.shape} != vae.decode {tuple(full.shape)}")
        err = float(np.abs(video - full.numpy()).max())
        saturated = float((np.abs(full.numpy()) >= 1.0).mean())
        rows.append({"latent_shape": [c["frames"], c["h"], c["w"]], "video_shape": list(video.shape),
                     "normalised_cache_vs_diffusers_loop": claim, "max_abs_err": err,
                     "clamped_fraction": saturated})
        if not claim <= tol:
            raise SystemExit(f"normalised cache differs from diffusers' cache by {claim:.3g} at {c}")
        if not err <= tol:
            raise SystemExit(f"VAE ORT chain vs vae.decode: max abs error {err:.3g} > {tol:g} at {c}")
    return rows
