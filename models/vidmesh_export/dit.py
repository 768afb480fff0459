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
- `expand_timesteps` (Wan 2.2 TI2V-5B's pipeline config): the graph keeps `timestep` [batch] and expands it inside
  to the per-token timesteps WanPipeline passes for text-to-video (mask of ones: every one of the
  latent_frames * latent_height/2 * latent_width/2 tokens carries t), so callers see the same signature;
  `export_dit` also checks the wrapper against the transformer called with the pipeline's own per-token tensor.
- `signature()` / `example_inputs()`: the DiT signature and seeded example inputs every family's DiT shares
  (ltx, cogvideox and hunyuan add their own inputs).
"""

from __future__ import annotations

import gc

import torch

from .onnx_util import Io, check, export, parity, session

ARG_NAMES = ["hidden_states", "timestep", "encoder_hidden_states"]


class DitWrapper(torch.nn.Module):
    """velocity = transformer(hidden_states, timestep, encoder_hidden_states), float32 in and out."""

    def __init__(self, transformer: torch.nn.Module, expand_timesteps: bool = False):
        super().__init__()
        self.transformer = transformer
        self.expand_timesteps = expand_timesteps
        self.dtype = next(p.dtype for n, p in transformer.named_parameters() if n.startswith("patch_embedding"))

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor,
                encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        if self.expand_timesteps:
            # WanPipeline (expand_timesteps, text-to-video): (mask[0][0][:, ::2, ::2] * t).flatten() with mask = 1,
            # expanded to [batch, seq_len]; seq_len = frames * (h / p_h) * (w / p_w).
            _, p_h, p_w = self.transformer.config.patch_size
            f, h, w = hidden_states.shape[2], hidden_states.shape[3], hidden_states.shape[4]
            timestep = timestep[:, None].expand(-1, f * (h // p_h) * (w // p_w))
        out = self.transformer(hidden_states=hidden_states.to(self.dtype), timestep=timestep,
                               encoder_hidden_states=encoder_hidden_states.to(self.dtype), return_dict=False)[0]
        return out.float()


def signature(in_channels: int, out_channels: int, text_dim: int, extra: tuple[Io, ...] = (),
              output: str = "velocity") -> tuple[list[Io], list[Io]]:
    """Every family's DiT graph signature: hidden_states [batch, in_channels, latent_frames, latent_height,
    latent_width], timestep [batch], encoder_hidden_states [batch, tokens, text_dim], the family's `extra` inputs
    -> `output` [batch, out_channels, latent_frames, latent_height, latent_width], all float32 but `extra`'s."""
    def lat(channels: int) -> list:
        return ["batch", channels, "latent_frames", "latent_height", "latent_width"]

    return ([Io("hidden_states", "float32", lat(in_channels)), Io("timestep", "float32", ["batch"]),
             Io("encoder_hidden_states", "float32", ["batch", "tokens", text_dim]), *extra],
            [Io(output, "float32", lat(out_channels))])


def example_inputs(g: torch.Generator, in_channels: int, text_dim: int, timesteps: list[float], batch: int,
                   frames: int, h: int, w: int, tokens: int) -> tuple:
    """Every family's example latents, timesteps (the first `batch` of `timesteps`) and text states, drawn from `g`
    (latents first, then text)."""
    x = torch.randn(batch, in_channels, frames, h, w, generator=g)
    t = torch.tensor(timesteps[:batch])
    text = torch.randn(batch, tokens, text_dim, generator=g)
    return x, t, text


def spec(transformer: torch.nn.Module) -> tuple[list[Io], list[Io]]:
    c = transformer.config
    return signature(c.in_channels, c.out_channels, c.text_dim)


def example(transformer: torch.nn.Module, batch: int, frames: int, h: int, w: int, tokens: int, seed: int) -> tuple:
    c = transformer.config
    x, t, text = example_inputs(torch.Generator().manual_seed(seed), c.in_channels, c.text_dim,
                                [999.0, 500.0, 1.0, 250.0], batch, frames, h, w, tokens)
    text[:, tokens // 2:] = 0.0  # Wan zero-pads the states past the prompt
    return x, t, text


# Export example: every dynamic size distinct from every other input size (torch.export's duck sizing would
# otherwise tie equal-sized axes together). Checks: two shapes differing in every dynamic axis from it and each other.
EXPORT_SHAPE = dict(batch=2, frames=3, h=10, w=6, tokens=7)
CHECK_SHAPES = [dict(batch=1, frames=2, h=4, w=12, tokens=5), dict(batch=3, frames=5, h=8, w=4, tokens=11)]


def _pipeline_call(transformer: torch.nn.Module, x: torch.Tensor, t: torch.Tensor,
                   text: torch.Tensor) -> torch.Tensor:
    """The transformer as WanPipeline calls it with expand_timesteps (text-to-video), one row (own t) at a time."""
    outs = []
    for b in range(x.shape[0]):
        mask = torch.ones(x[b:b + 1].shape, dtype=torch.float32)
        temp_ts = (mask[0][0][:, ::2, ::2] * t[b]).flatten()
        ts = temp_ts.unsqueeze(0).expand(1, -1)
        outs.append(transformer(hidden_states=x[b:b + 1], timestep=ts, encoder_hidden_states=text[b:b + 1],
                                return_dict=False)[0].float())
    return torch.cat(outs)


def export_dit(transformer: torch.nn.Module, path, external_data: bool, tol: float,
               release: bool = False, expand_timesteps: bool = False) -> tuple:
    """Export and check. `release=True` frees the transformer's weights (moved to the meta device; its config
    stays readable) after the PyTorch reference outputs are computed and before ONNX Runtime loads the graph, so
    that a full-size DiT's check never holds the PyTorch and the ORT copy of the weights at once."""
    wrapper = DitWrapper(transformer, expand_timesteps).eval()
    ins, outs = spec(transformer)
    ex = export(wrapper, example(transformer, seed=0, **EXPORT_SHAPE), ARG_NAMES, ins, outs, path, external_data)
    cases = [(shp, example(transformer, seed=10 + i, **shp)) for i, shp in enumerate(CHECK_SHAPES)]
    with torch.no_grad():
        refs = [wrapper(*args) for _, args in cases]
        pipe_errs = ([float((_pipeline_call(transformer, *args) - r).abs().max())
                      for (_, args), r in zip(cases, refs)] if expand_timesteps else [None] * len(cases))
    for e in pipe_errs:
        if e is not None and not e <= tol:
            raise SystemExit(f"{path.name}: in-graph timestep expansion differs from WanPipeline's per-token call "
                             f"by {e:.3g}")
    if release:
        transformer.to("meta")
        gc.collect()
    sess = session(path)
    rows = []
    for (shp, args), ref, pe in zip(cases, refs, pipe_errs):
        errs = parity(lambda *_, r=ref: r, sess, args, [x.name for x in ins], [o.name for o in outs])
        rows.append({"shape": shp, "max_abs_err": check(errs, tol, f"{path.name} at {shp}"),
                     **({"wrapper_vs_pipeline_per_token_call": pe} if pe is not None else {})})
    return ex, rows
