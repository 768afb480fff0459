"""LTX-Video (a local diffusers LTXPipeline directory) -> a vidmesh bundle (format 2). `main(args)` is called by
`models/export.sh` (vidmesh_export.__main__) when DIR/model_index.json names LTXPipeline.

  models/export.sh --from models/work/ltx-tiny-src --out models/ltx-tiny
  VIDMESH_DECODE_TIMESTEP=0.05 VIDMESH_DECODE_NOISE_SCALE=0.025 models/export.sh --from DIR --out BUNDLE

Writes BUNDLE/{tokenizer.json, text_encoder.onnx, dit.onnx, vae_decoder.onnx, model.toml, export_report.json}.

Graphs:
  text_encoder  input_ids, attention_mask int64 [batch, tokens] -> last_hidden_state f32 [batch, tokens, D]
                (text_encoder.py's graph; LTXPipeline runs T5 WITHOUT a mask, so the bundle says
                encoder_mask = false: vidmesh feeds all ones, which is the same computation)
  dit           hidden_states          f32 [batch, C, latent_frames, latent_height, latent_width]
                timestep               f32 [batch]          sigma * 1000, as LTXPipeline passes t (no rounding)
                encoder_hidden_states  f32 [batch, tokens, D]   all max_tokens rows (padding states kept)
                encoder_attention_mask int64 [batch, tokens]    1 = real token
                fps                    f32 [batch]          LTXPipeline's frame_rate
                -> velocity            f32 [batch, C, latent_frames, latent_height, latent_width]
                The wrapper packs the latents to LTX's tokens exactly as LTXPipeline._pack_latents, calls the
                transformer with rope_interpolation_scale = (vae_temporal_ratio / fps, vae_spatial_ratio,
                vae_spatial_ratio) computed per row inside the graph, and unpacks with LTXPipeline._unpack_latents.
  vae_decoder   latents  f32 [1, C, latent_frames, latent_height, latent_width]  de-normalised and noise-mixed
                timestep f32 [1]                                                   decode_timestep
                -> video f32 [1, 3, frames, height, width]  frames = 8 (latent_frames - 1) + 1, 32x the latent size
                `AutoencoderKLLTXVideo.decode(latents, timestep)` (the whole video in one run: the decoder is not
                causal), clamped to [-1, 1] inside the graph as the Wan graphs are; LTXPipeline's postprocess
                (video * 0.5 + 0.5).clamp(0, 1) gives the same frames from the clamped video.
Before decoding, vidmesh computes (as LTXPipeline): z = x * latents_std / scaling_factor + latents_mean per channel,
then z = (1 - s) * z + s * noise with s = decode_noise_scale and noise = the seed's STREAM_DECODE gaussian in the
latents' [C, T, h, w] layout.

Guarantees:
- every graph is compared with PyTorch through ONNX Runtime at two shapes differing in every dynamic axis
  (max abs error <= 1e-4 with float32 weights, else the export fails and no model.toml is written);
- the DiT graph is also checked, for a batch of rows with different fps, timesteps and text masks, against the
  transformer called row by row exactly as LTXPipeline calls it (packed latents, boolean mask, Python-float
  rope_interpolation_scale tuple, num_frames/height/width), and the text encoder graph fed an all-ones mask
  against T5 called without a mask on max_length-padded ids (as LTXPipeline._get_t5_prompt_embeds);
- the VAE graph is checked against `vae.decode(z, timestep)` at two latent sizes and two timesteps;
- the scheduler section is refused unless the config is the flow_match_euler the bundle format describes
  (exponential dynamic shifting, no karras/exponential/beta sigmas, not inverted, not stochastic);
- [scheduler] guidance_rescale is LTXPipeline's default 0.0 (CFG rescale off; a request may still set it);
- model.toml is written by manifest.render and re-read and validated by manifest.validate.
Decode defaults: decode_timestep / decode_noise_scale come from the environment variables VIDMESH_DECODE_TIMESTEP
and VIDMESH_DECODE_NOISE_SCALE (default 0.05 and 0.025: the values diffusers documents for LTX-Video >= 0.9.1;
the shared export.sh command line is left unchanged).
"""

from __future__ import annotations

import gc
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from . import manifest, text_encoder
from .dit import example_inputs, signature
from .load import Components
from .onnx_util import Io, check, export, parity, session
from .report import TOL, WEIGHTS, start

MAX_TOKENS = 128  # LTXPipeline's max_sequence_length
DEFAULTS = "161,512,704"  # LTXPipeline's num_frames, height, width
DEFAULT_FPS = 25  # LTXPipeline's frame_rate
STEPS, GUIDANCE = 50, 3.0  # LTXPipeline's num_inference_steps, guidance_scale
GUIDANCE_RESCALE = 0.0  # LTXPipeline's guidance_rescale (CFG rescale, arXiv 2305.08891 §3.4; 0 = off)
DECODE_TIMESTEP, DECODE_NOISE_SCALE = 0.05, 0.025


# ---------------------------------------------------------------------------------------------------- loading
def load(root: Path, random_init: bool = False, weights: str = "float32") -> Components:
    """LTXPipeline components from local files only (as load.load for Wan): from_pretrained, or with `random_init`
    seeded random weights from the configs; weights cast as load._cast (the VAE stays float32). load.Components
    without a second transformer."""
    from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel
    from transformers import AutoTokenizer, T5EncoderModel

    from .load import TORCH_DTYPES, _cast, modules

    index = json.loads((root / "model_index.json").read_text())
    if index.get("_class_name") != "LTXPipeline":
        raise SystemExit(f"{root}: not an LTXPipeline directory ({index.get('_class_name')})")
    tokenizer = AutoTokenizer.from_pretrained(str(root / "tokenizer"))
    te, tr, vae = modules(root, random_init, T5EncoderModel, LTXVideoTransformer3DModel, AutoencoderKLLTXVideo)
    dtype = TORCH_DTYPES[weights]
    te, tr, vae = _cast(te.eval(), dtype), _cast(tr.eval(), dtype), vae.eval().float()
    sched = json.loads((root / "scheduler" / "scheduler_config.json").read_text())
    return Components(root, index, tokenizer, te, tr, None, vae, sched, weights)


# ---------------------------------------------------------------------------------------------------- DiT
DIT_ARGS = ["hidden_states", "timestep", "encoder_hidden_states", "encoder_attention_mask", "fps"]


def _pack(x: torch.Tensor) -> torch.Tensor:
    from diffusers import LTXPipeline

    return LTXPipeline._pack_latents(x, 1, 1)


def _unpack(tokens: torch.Tensor, f: int, h: int, w: int) -> torch.Tensor:
    from diffusers import LTXPipeline

    return LTXPipeline._unpack_latents(tokens, f, h, w, 1, 1)


class LtxDitWrapper(torch.nn.Module):
    """velocity [B, C, F, H, W] = unpack(transformer(pack(hidden_states), ...)), rope scale from fps per row."""

    def __init__(self, transformer: torch.nn.Module, temporal_ratio: int, spatial_ratio: int):
        super().__init__()
        c = transformer.config
        if (c.patch_size, c.patch_size_t) != (1, 1):
            raise SystemExit(f"LTX transformer patch {c.patch_size_t}x{c.patch_size}: only 1x1 (LTX-Video's) is "
                             "supported (LTXPipeline's _unpack_latents assumes it)")
        self.transformer = transformer
        self.temporal_ratio = float(temporal_ratio)
        self.spatial_ratio = float(spatial_ratio)
        self.dtype = transformer.proj_in.weight.dtype

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                encoder_attention_mask: torch.Tensor, fps: torch.Tensor) -> torch.Tensor:
        f, h, w = hidden_states.shape[2], hidden_states.shape[3], hidden_states.shape[4]
        tokens = _pack(hidden_states).to(self.dtype)
        # LTXPipeline: (vae_temporal_compression_ratio / frame_rate, spatial, spatial); the transformer multiplies
        # grid[:, 0:1] ([B, 1, F, H, W]) by the first entry, so a [B, 1, 1, 1, 1] tensor scales each row by its fps.
        scale_t = (self.temporal_ratio / fps.float()).reshape(-1, 1, 1, 1, 1)
        out = self.transformer(hidden_states=tokens, encoder_hidden_states=encoder_hidden_states.to(self.dtype),
                               timestep=timestep, encoder_attention_mask=encoder_attention_mask,
                               num_frames=f, height=h, width=w,
                               rope_interpolation_scale=(scale_t, self.spatial_ratio, self.spatial_ratio),
                               return_dict=False)[0]
        return _unpack(out.float(), f, h, w)


def dit_spec(transformer: torch.nn.Module) -> tuple[list[Io], list[Io]]:
    c = transformer.config
    return signature(c.in_channels, c.out_channels, c.caption_channels,
                     (Io("encoder_attention_mask", "int64", ["batch", "tokens"]), Io("fps", "float32", ["batch"])))


def dit_example(transformer: torch.nn.Module, batch: int, frames: int, h: int, w: int, tokens: int,
                seed: int) -> tuple:
    c = transformer.config
    x, t, text = example_inputs(torch.Generator().manual_seed(seed), c.in_channels, c.caption_channels,
                                [1000.0, 517.25, 3.5, 250.0], batch, frames, h, w, tokens)
    mask = torch.ones(batch, tokens, dtype=torch.int64)
    for b in range(batch):  # row b: tokens - 1 - 2b real tokens (at least 1), then padding (states kept)
        mask[b, max(1, tokens - 1 - 2 * b):] = 0
    fps = torch.tensor([25.0, 24.0, 30.0, 8.0][:batch])
    return x, t, text, mask, fps


# Every dynamic size distinct from every other input size in the export example (torch.export's duck sizing);
# the two checks differ from it and from each other in every dynamic axis.
DIT_EXPORT_SHAPE = dict(batch=2, frames=3, h=5, w=4, tokens=7)
DIT_CHECK_SHAPES = [dict(batch=1, frames=2, h=3, w=2, tokens=11),
                    dict(batch=3, frames=4, h=2, w=6, tokens=MAX_TOKENS)]


def pipeline_dit_call(transformer: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor,
                      mask: torch.Tensor, fps: list[float], temporal_ratio: int, spatial_ratio: int) -> torch.Tensor:
    """The transformer as LTXPipeline.__call__ calls it, one row (own t, fps, mask) at a time, unpacked."""
    outs = []
    dtype = transformer.proj_in.weight.dtype  # the pipeline runs in the prompt embeddings' (= weights') dtype
    for b in range(x.shape[0]):
        f, h, w = x.shape[2:]
        out = transformer(hidden_states=_pack(x[b:b + 1]).to(dtype), encoder_hidden_states=text[b:b + 1].to(dtype),
                          timestep=t[b:b + 1], encoder_attention_mask=mask[b:b + 1].bool(),
                          num_frames=f, height=h, width=w,
                          rope_interpolation_scale=(temporal_ratio / fps[b], spatial_ratio, spatial_ratio),
                          return_dict=False)[0].float()
        outs.append(_unpack(out, f, h, w))
    return torch.cat(outs)


def export_dit(transformer: torch.nn.Module, path: Path, external_data: bool, tol: float, temporal_ratio: int,
               spatial_ratio: int) -> tuple:
    wrapper = LtxDitWrapper(transformer, temporal_ratio, spatial_ratio).eval()
    ins, outs = dit_spec(transformer)
    ex = export(wrapper, dit_example(transformer, seed=0, **DIT_EXPORT_SHAPE), DIT_ARGS, ins, outs, path,
                external_data)
    cases = [(shp, dit_example(transformer, seed=10 + i, **shp)) for i, shp in enumerate(DIT_CHECK_SHAPES)]
    # fps rows: a batch of two rows with different fps (and t, mask) vs two separate pipeline-style calls.
    fps_case = dit_example(transformer, seed=20, batch=2, frames=3, h=2, w=3, tokens=MAX_TOKENS)
    with torch.no_grad():
        refs = [wrapper(*args) for _, args in cases]
        x, t, text, mask, fps = fps_case
        fps_ref = pipeline_dit_call(transformer, x, t, text, mask, [float(v) for v in fps], temporal_ratio,
                                    spatial_ratio)
        wrapper_vs_pipe = float((wrapper(*fps_case) - fps_ref).abs().max())
        # every fps a request may use gives the same float32 rope scale in the graph as in the pipeline
        f32 = np.float32
        fps_range = [v for v in range(1, 61) if f32(temporal_ratio) / f32(v) != f32(temporal_ratio / v)]
    if fps_range:
        raise SystemExit(f"float32 {temporal_ratio}/fps differs from the pipeline's Python division for fps "
                         f"{fps_range}")
    if not wrapper_vs_pipe <= tol:
        raise SystemExit(f"{path.name}: wrapper differs from LTXPipeline's per-row call by {wrapper_vs_pipe:.3g}")
    sess = session(path)
    rows = []
    names = [i.name for i in ins]
    for (shp, args), ref in zip(cases, refs):
        errs = parity(lambda *_, r=ref: r, sess, args, names, [o.name for o in outs])
        rows.append({"shape": shp, "max_abs_err": check(errs, tol, f"{path.name} at {shp}")})
    errs = parity(lambda *_: fps_ref, sess, fps_case, names, [o.name for o in outs])
    rows.append({"shape": {"batch": 2, "frames": 3, "h": 2, "w": 3, "tokens": MAX_TOKENS,
                           "fps": [float(v) for v in fps_case[4]]},
                 "vs": "LTXPipeline-style call per row (bool mask, Python-float rope scale)",
                 "wrapper_vs_pipeline_per_row_call": wrapper_vs_pipe,
                 "max_abs_err": check(errs, tol, f"{path.name}: ORT batch of two fps vs per-row pipeline calls")})
    return ex, rows


# ---------------------------------------------------------------------------------------------------- VAE
class LtxVaeDecoder(torch.nn.Module):
    """video = clamp(vae.decode(latents, timestep), -1, 1): latents already de-normalised and noise-mixed."""

    def __init__(self, vae: torch.nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.vae.decode(latents, timestep, return_dict=False)[0], min=-1.0, max=1.0)


def vae_spec(vae: torch.nn.Module) -> tuple[list[Io], list[Io]]:
    c = vae.config
    return ([Io("latents", "float32", [1, c.latent_channels, "latent_frames", "latent_height", "latent_width"]),
             Io("timestep", "float32", [1])],
            [Io("video", "float32", [1, c.out_channels, "frames", "height", "width"])])


VAE_EXPORT_SHAPE = dict(frames=3, h=4, w=5)
VAE_CHECK_SHAPES = [dict(frames=2, h=2, w=3, timestep=0.05), dict(frames=4, h=3, w=2, timestep=0.5)]


def export_vae(vae: torch.nn.Module, path: Path, external_data: bool, tol: float) -> tuple:
    c = vae.config
    if not c.timestep_conditioning:
        raise SystemExit("this LTX VAE has no timestep conditioning (LTX-Video 0.9.0): the bundle contract's "
                         "decoder takes a timestep; not supported yet")
    if any(c.decoder_inject_noise):
        raise SystemExit("this LTX VAE injects unseeded noise in its decoder (decoder_inject_noise, LTX-Video "
                         "0.9.1): its decode is not reproducible and cannot be exported")
    dec = LtxVaeDecoder(vae).eval()
    ins, outs = vae_spec(vae)
    g = torch.Generator().manual_seed(0)
    s = VAE_EXPORT_SHAPE
    z0 = torch.randn(1, c.latent_channels, s["frames"], s["h"], s["w"], generator=g)
    ex = export(dec, (z0, torch.tensor([0.05])), ["latents", "timestep"], ins, outs, path, external_data)
    sess = session(path)
    rows = []
    tr, sr = vae.temporal_compression_ratio, vae.spatial_compression_ratio
    for i, shp in enumerate(VAE_CHECK_SHAPES):
        g = torch.Generator().manual_seed(100 + i)
        z = torch.randn(1, c.latent_channels, shp["frames"], shp["h"], shp["w"], generator=g)
        ts = torch.tensor([shp["timestep"]], dtype=torch.float32)
        with torch.no_grad():
            ref = vae.decode(z, ts).sample
        want = (1, c.out_channels, tr * (shp["frames"] - 1) + 1, sr * shp["h"], sr * shp["w"])
        if tuple(ref.shape) != want:
            raise SystemExit(f"vae.decode gave {tuple(ref.shape)} for latents {shp}, expected {want}")
        errs = parity(lambda *_, r=ref: torch.clamp(r, -1.0, 1.0), sess, (z, ts), ["latents", "timestep"],
                      ["video"])
        rows.append({"shape": shp, "video_shape": list(want), "max_abs_err": check(errs, tol, f"{path.name} at {shp}"),
                     "clamped_fraction": float((ref.abs() >= 1.0).float().mean())})
    return ex, rows


# ---------------------------------------------------------------------------------------------------- manifest
def scheduler_section(cfg: dict, steps: int, guidance: float) -> dict:
    """[scheduler] for FlowMatchEulerDiscreteScheduler as LTXPipeline drives it (sigmas = linspace(1, 1/N, N),
    mu = calculate_shift(latent_frames * latent_height * latent_width, the four config values below))."""
    if cfg.get("_class_name") != "FlowMatchEulerDiscreteScheduler":
        raise SystemExit(f"scheduler {cfg.get('_class_name')} is not FlowMatchEulerDiscreteScheduler")
    want = {"use_dynamic_shifting": True, "time_shift_type": "exponential", "invert_sigmas": False,
            "use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False,
            "stochastic_sampling": False, "num_train_timesteps": 1000}
    bad = manifest.mismatches(cfg, want)
    if bad:
        raise SystemExit(f"scheduler is not the flow_match_euler this format defines: {bad}")
    out = {"kind": "flow_match_euler", "steps": steps, "shift": float(cfg.get("shift", 1.0)), "guidance": guidance,
           "guidance_rescale": GUIDANCE_RESCALE,  # written explicitly: LTXPipeline's default, 0 = plain CFG
           # LTXPipeline: self.scheduler.config.get(key, default) for each, with these defaults
           "dynamic_shift": {"base_seq_len": int(cfg.get("base_image_seq_len", 256)),
                             "max_seq_len": int(cfg.get("max_image_seq_len", 4096)),
                             "base_shift": float(cfg.get("base_shift", 0.5)),
                             "max_shift": float(cfg.get("max_shift", 1.15))}}
    if cfg.get("shift_terminal"):
        out["shift_terminal"] = float(cfg["shift_terminal"])
    return out


def _env_float(name: str, default: float) -> float:
    v = os.environ.get(name)
    return float(v) if v not in (None, "") else default


def main(a) -> None:  # noqa: ANN001, PLR0915
    torch.set_num_threads(1)  # the machine is shared
    if getattr(a, "guidance_2", None) is not None:
        raise SystemExit("--guidance-2 is for Wan 2.2 A14B's second transformer; LTX-Video has one")
    weights = WEIGHTS[a.weights]
    tol = TOL[weights]
    max_tokens = a.max_tokens or MAX_TOKENS
    decode_timestep = _env_float("VIDMESH_DECODE_TIMESTEP", DECODE_TIMESTEP)
    decode_noise_scale = _env_float("VIDMESH_DECODE_NOISE_SCALE", DECODE_NOISE_SCALE)
    t0 = time.time()
    c = load(a.src, random_init=a.random_init, weights=weights)
    out = a.out
    report = start(a, weights, t0, decode_timestep=decode_timestep, decode_noise_scale=decode_noise_scale)

    # ---- text encoder
    text_encoder.write_tokenizer(c.tokenizer, out / "tokenizer.json", max_tokens)
    te_ex = report.timed("text_encoder", export_text_encoder, c, out / "text_encoder.onnx", a.external_data, tol,
                         max_tokens)
    te_hidden = text_encoder.hidden_size(c.text_encoder)
    c.text_encoder = None
    gc.collect()

    # ---- DiT
    vae = c.vae
    tr_ratio, sp_ratio = int(vae.temporal_compression_ratio), int(vae.spatial_compression_ratio)
    dit_ex = report.timed("dit", export_dit, c.transformer, out / "dit.onnx", a.external_data, tol, tr_ratio,
                          sp_ratio)

    # ---- VAE decoder
    vae_ex = report.timed("vae_decoder", export_vae, vae, out / "vae_decoder.onnx", a.external_data, 1e-4)

    # ---- manifest
    frames, height, width, steps, guidance = manifest.request_defaults(a, DEFAULTS, STEPS, GUIDANCE)
    tc = c.transformer.config
    vc = vae.config
    te = manifest.component(te_ex, weights)
    d = manifest.component(dit_ex, weights)
    grid = sp_ratio * tc.patch_size
    m = {
        **manifest.header(a, out, "LTX-Video", "LTXPipeline"),
        "text_encoder": manifest.text_encoder_section(te, out, max_tokens, te_hidden, prompt_clean="none",
                                                      encoder_mask=False, zero_pad_states=False, dit_mask=True),
        "vae": {"latent_channels": vc.latent_channels, "temporal_compression": tr_ratio,
                "spatial_compression": sp_ratio,
                "latents_mean": [float(x) for x in vae.latents_mean.float()],
                "latents_std": [float(x) for x in vae.latents_std.float()],
                "scaling_factor": float(vc.scaling_factor),
                "frame_rule": "first_frame_separate", "decode": "whole",
                "decode_timestep": decode_timestep, "decode_noise_scale": decode_noise_scale,
                "names": {"latents": "latents", "video": "video", "timestep": "timestep"}},
        "vae_decoder": manifest.component(vae_ex, "float32"),
        "dit": {**manifest.graph_keys(d), "weights": d["weights"], "patch_size": [tc.patch_size_t, tc.patch_size, tc.patch_size],
                "hidden_size": tc.num_attention_heads * tc.attention_head_dim, "depth": tc.num_layers,
                "heads": tc.num_attention_heads, "prediction": "flow_velocity", "timestep_scale": 1000.0,
                "timestep_rounding": "none", "guidance": "cfg_batched",
                "names": {"latents": "hidden_states", "timestep": "timestep",
                          "text_states": "encoder_hidden_states", "text_mask": "encoder_attention_mask",
                          "output": "velocity"},
                "extra_inputs": [{"name": "fps", "source": "fps"}],
                "inputs": d["inputs"], "outputs": d["outputs"]},
        "scheduler": scheduler_section(c.scheduler_config, steps, guidance),
        "video": {"default_frames": frames, "default_height": height, "default_width": width,
                  "default_fps": DEFAULT_FPS,
                  "frames": {"min": 1 + tr_ratio, "max": 257, "step": tr_ratio * tc.patch_size_t},
                  "height": {"min": grid, "max": 1280, "step": grid},
                  "width": {"min": grid, "max": 1280, "step": grid},
                  "fps": {"min": 1, "max": 60, "step": 1}},
    }
    manifest.write(out, m)
    report.finish(out, (16, 72))


def export_text_encoder(c: Components, path: Path, external_data: bool, tol: float, max_tokens: int) -> tuple:
    """text_encoder.py's graph and checks, plus the all-ones-mask check against T5 as LTXPipeline calls it."""
    ex, rows = text_encoder.export_text_encoder(c.text_encoder, path, external_data, tol)
    return ex, [*rows, _check_unmasked_encoder(c, path, max_tokens, tol)]


def _check_unmasked_encoder(c: Components, path: Path, max_tokens: int, tol: float) -> dict:
    """The graph with an all-ones mask vs T5 called without a mask on max_length-padded ids (LTXPipeline)."""
    sess = session(path)
    worst = 0.0
    texts = ["a cat walks along the beach", ""]
    for text in texts:
        ids = c.tokenizer(text, padding="max_length", max_length=max_tokens, truncation=True,
                          add_special_tokens=True, return_tensors="pt").input_ids
        with torch.no_grad():
            ref = c.text_encoder(ids)[0].float().numpy()
        got = sess.run(None, {"input_ids": ids.numpy(), "attention_mask": np.ones_like(ids.numpy())})[0]
        worst = max(worst, float(np.abs(got - ref).max()))
    if not worst <= tol:
        raise SystemExit(f"text_encoder.onnx with an all-ones mask differs from T5 without a mask by {worst:.3g}")
    return {"shape": {"batch": 1, "tokens": max_tokens, "mask": "all ones"},
            "vs": "T5EncoderModel(ids) without attention_mask, as LTXPipeline", "max_abs_err": worst}
