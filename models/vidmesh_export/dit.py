"""WanTransformer3DModel -> dit.onnx (and dit2.onnx for Wan 2.2 A14B's low-noise transformer).

Graph (names as diffusers calls the arguments; the manifest's [dit.names] maps them):
  hidden_states          float32 [batch, C, latent_frames, latent_height, latent_width]   latents as the DiT sees them
  timestep               float32 [batch]            trunc(sigma * 1000), as diffusers' UniPC int64 timesteps
  encoder_hidden_states  float32 [batch, tokens, text_dim]   text states (Wan: zero-padded to max_tokens)
  -> velocity            float32 [batch, C, latent_frames, latent_height, latent_width]   flow prediction
Guarantees:
- batch, latent_frames, latent_height, latent_width (even: patch 2) and tokens are dynamic; `check()` runs ORT
  and PyTorch at two different shapes that differ in every dynamic axis and fails on any shape mismatch or on a
  max abs error above the tolerance (1e-4 for float32 weights).
- float16/bfloat16 weights: inputs and outputs stay float32, cast inside the wrapper.
"""

from __future__ import annotations

import gc

import torch

from .onnx_util import Io, check, export, parity, session

ARG_NAMES = ["hidden_states", "timestep", "encoder_hidden_states"]


class DitWrapper(torch.nn.Module):
    """velocity = transformer(hidden_states, timestep, encoder_hidden_states), float32 in and out."""

    def __init__(self, transformer: torch.nn.Module):
        super().__init__()
        self.transformer = transformer
        self.dtype = next(p.dtype for n, p in transformer.named_parameters() if n.startswith("patch_embedding"))

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor,
                encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        out = self.transformer(hidden_states=hidden_states.to(self.dtype), timestep=timestep,
                               encoder_hidden_states=encoder_hidden_states.to(self.dtype), return_dict=False)[0]
        return out.float()


def spec(transformer: torch.nn.Module) -> tuple[list[Io], list[Io]]:
    c = transformer.config
    lat = ["batch", c.in_channels, "latent_frames", "latent_height", "latent_width"]
    out = ["batch", c.out_channels, "latent_frames", "latent_height", "latent_width"]
    return ([Io("hidden_states", "float32", lat), Io("timestep", "float32", ["batch"]),
             Io("encoder_hidden_states", "float32", ["batch", "tokens", c.text_dim])],
            [Io("velocity", "float32", out)])


def example(transformer: torch.nn.Module, batch: int, frames: int, h: int, w: int, tokens: int, seed: int) -> tuple:
    c = transformer.config
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, c.in_channels, frames, h, w, generator=g)
    t = torch.tensor([999.0, 500.0, 1.0, 250.0][:batch])
    text = torch.randn(batch, tokens, c.text_dim, generator=g)
    text[:, tokens // 2:] = 0.0  # Wan zero-pads the states past the prompt
    return x, t, text


# Export example: every dynamic size distinct from every other input size (torch.export's duck sizing would
# otherwise tie equal-sized axes together). Checks: two shapes differing in every dynamic axis from it and each other.
EXPORT_SHAPE = dict(batch=2, frames=3, h=10, w=6, tokens=7)
CHECK_SHAPES = [dict(batch=1, frames=2, h=4, w=12, tokens=5), dict(batch=3, frames=5, h=8, w=4, tokens=11)]


def export_dit(transformer: torch.nn.Module, path, external_data: bool, tol: float,
               release: bool = False) -> tuple:
    """Export and check. `release=True` frees the transformer's weights (moved to the meta device; its config
    stays readable) after the PyTorch reference outputs are computed and before ONNX Runtime loads the graph, so
    that a full-size DiT's check never holds the PyTorch and the ORT copy of the weights at once."""
    wrapper = DitWrapper(transformer).eval()
    ins, outs = spec(transformer)
    ex = export(wrapper, example(transformer, seed=0, **EXPORT_SHAPE), ARG_NAMES, ins, outs, path, external_data)
    cases = [(shp, example(transformer, seed=10 + i, **shp)) for i, shp in enumerate(CHECK_SHAPES)]
    with torch.no_grad():
        refs = [wrapper(*args) for _, args in cases]
    if release:
        transformer.to("meta")
        gc.collect()
    sess = session(path)
    rows = []
    for (shp, args), ref in zip(cases, refs):
        errs = parity(lambda *_, r=ref: r, sess, args, [x.name for x in ins], [o.name for o in outs])
        rows.append({"shape": shp, "max_abs_err": check(errs, tol, f"{path.name} at {shp}")})
    return ex, rows
