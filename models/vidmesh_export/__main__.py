"""models/export.sh: a local diffusers pipeline directory -> a vidmesh bundle (format 2).

The pipeline class in DIR/model_index.json picks the family: WanPipeline here; the other families' exporters live
in their own modules (FAMILIES) and take the same arguments (their defaults where an argument is left unset).

  models/export.sh --from DIR --out BUNDLE [--random-init] [--weights fp32|fp16] [--external-data]
                   [--name NAME] [--version V] [--defaults FRAMES,HEIGHT,WIDTH] [--steps N] [--guidance G]

Writes BUNDLE/{tokenizer.json, text_encoder.onnx, dit.onnx[, dit2.onnx], vae_decoder.onnx, vae_decoder_step.onnx,
model.toml, export_report.json}. Guarantees:
- every graph was compared with PyTorch through ONNX Runtime at two shapes differing in every dynamic axis
  (max abs error <= 1e-4 with float32 weights, else the export fails and no model.toml is written);
- the stateful VAE pair reproduces `vae.decode(z)` when chained (first + N steps) for two frame counts and sizes;
- model.toml is re-read and validated against the files and graphs it names (see manifest.validate).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from . import dit, manifest, text_encoder, vae
from .load import load
from .report import TOL, WEIGHTS, start

# model_index.json `_class_name` -> the module whose `main(args)` exports that family.
FAMILIES = {"LTXPipeline": "ltx", "CogVideoXPipeline": "cogvideox", "HunyuanVideoPipeline": "hunyuan"}


def _scheduler(cfg: dict, steps: int, guidance: float) -> dict:
    want = {"_class_name": "UniPCMultistepScheduler", "prediction_type": "flow_prediction", "use_flow_sigmas": True,
            "solver_type": "bh2", "solver_order": 2, "predict_x0": True, "lower_order_final": True,
            "final_sigmas_type": "zero"}
    bad = manifest.mismatches(cfg, want)
    if bad:
        raise SystemExit(f"scheduler is not the unipc_flow this format defines: {bad}")
    return {"kind": "unipc_flow", "steps": steps, "shift": float(cfg["flow_shift"]), "guidance": guidance}


def _dit_section(tr, exported, weights: str, extra: dict | None = None) -> dict:  # noqa: ANN001
    c = tr.config
    d = manifest.component(exported, weights)
    return {**manifest.graph_keys(d), "weights": d["weights"], "patch_size": list(c.patch_size),
            "hidden_size": c.num_attention_heads * c.attention_head_dim, "depth": c.num_layers,
            "heads": c.num_attention_heads, "prediction": "flow_velocity", "timestep_scale": 1000.0,
            "timestep_rounding": "trunc", "guidance": "cfg_separate",
            "names": {"latents": "hidden_states", "timestep": "timestep", "text_states": "encoder_hidden_states",
                      "text_mask": "", "output": "velocity"},
            **(extra or {}), "inputs": d["inputs"], "outputs": d["outputs"]}


def main() -> None:  # noqa: PLR0915
    ap = argparse.ArgumentParser(prog="models/export.sh", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="src", type=Path, required=True, help="diffusers pipeline directory (WanPipeline, LTXPipeline, CogVideoXPipeline)")
    ap.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    ap.add_argument("--random-init", action="store_true", help="random weights from DIR's configs")
    ap.add_argument("--weights", choices=sorted(WEIGHTS), default="fp32")
    ap.add_argument("--external-data", action="store_true", help="always write ONNX external data files")
    ap.add_argument("--name", help="[model].name (default: the bundle directory's name)")
    ap.add_argument("--version", default="0.1.0")
    ap.add_argument("--license", default="Apache-2.0")
    ap.add_argument("--description")
    ap.add_argument("--max-tokens", type=int, help="the pipeline's max_sequence_length (Wan: 512)")
    ap.add_argument("--defaults", help="default FRAMES,HEIGHT,WIDTH (Wan: 81,480,832, WanPipeline's)")
    ap.add_argument("--steps", type=int, help="default steps (Wan 2.1: 50, Wan 2.2 A14B: 40)")
    ap.add_argument("--guidance", type=float, help="CFG scale (Wan 2.1: 5.0, Wan 2.2 A14B high noise: 4.0)")
    ap.add_argument("--guidance-2", type=float, help="Wan 2.2 A14B low-noise CFG scale (default 3.0)")
    a = ap.parse_args()
    cwd = Path(os.environ.get("VIDMESH_CALLER_CWD", "."))  # export.sh runs from models/
    a.src, a.out = (p if p.is_absolute() else cwd / p for p in (a.src, a.out))
    cls = json.loads((a.src / "model_index.json").read_text())["_class_name"]
    if cls in FAMILIES:
        import importlib

        importlib.import_module(f".{FAMILIES[cls]}", __package__).main(a)
        return
    if cls != "WanPipeline":
        raise SystemExit(f"{a.src}: {cls} is not a pipeline this exporter knows ({', '.join(['WanPipeline', *FAMILIES])})")
    a.max_tokens = a.max_tokens or 512

    torch.set_num_threads(2)
    weights = WEIGHTS[a.weights]
    tol = TOL[weights]
    t0 = time.time()
    c = load(a.src, random_init=a.random_init, weights=weights)
    two = c.transformer_2 is not None
    expand = bool(c.index.get("expand_timesteps"))  # Wan 2.2 TI2V-5B: per-token timesteps, expanded in the graph
    fps = 24 if expand else 16  # TI2V-5B is made for 24 fps; Wan 2.1 and 2.2 A14B for 16
    out = a.out
    report = start(a, weights, t0)

    text_encoder.write_tokenizer(c.tokenizer, out / "tokenizer.json", a.max_tokens)
    te_ex = report.timed("text_encoder", text_encoder.export_text_encoder, c.text_encoder, out / "text_encoder.onnx",
                         a.external_data, tol)
    te_hidden = text_encoder.hidden_size(c.text_encoder)
    c.text_encoder = None  # free it before the DiT export: memory is the limit at full size
    grid = c.vae.config.scale_factor_spatial * c.transformer.config.patch_size[1]  # pixels per DiT token
    dit_ex = report.timed("dit", dit.export_dit, c.transformer, out / "dit.onnx", a.external_data, tol, release=True,
                          expand_timesteps=expand)
    if two:
        dit2_ex = report.timed("dit2", dit.export_dit, c.transformer_2, out / "dit2.onnx", a.external_data, tol,
                               release=True, expand_timesteps=expand)
    t = time.time()
    vae_ex = vae.export_vae(c.vae, out, a.external_data)
    vae_rows = vae.verify(c.vae, vae_ex)
    report.add("vae_decoder+vae_decoder_step (chained)", vae_ex["step"], vae_rows, time.time() - t)

    # ---- manifest
    frames, height, width, steps, guidance = manifest.request_defaults(a, "81,480,832", 40 if two else 50,
                                                                       4.0 if two else 5.0)
    vc = c.vae.config
    te = manifest.component(te_ex, weights)
    first = vae_ex["first"]
    n_cache = len(first.outputs) - 1
    family = "Wan 2.2 A14B" if two else ("Wan 2.2 TI2V-5B" if expand else "Wan 2.1")
    m = {
        **manifest.header(a, out, family, "WanPipeline"),
        "text_encoder": manifest.text_encoder_section(te, out, a.max_tokens, te_hidden, prompt_clean="wan",
                                                      encoder_mask=True, zero_pad_states=True, dit_mask=False),
        "vae": {"latent_channels": vc.z_dim, "temporal_compression": vc.scale_factor_temporal,
                "spatial_compression": vc.scale_factor_spatial,
                "latents_mean": [float(x) for x in vc.latents_mean],
                "latents_std": [float(x) for x in vc.latents_std], "scaling_factor": 1.0,
                "frame_rule": "first_frame_separate", "decode": "stateful",
                "cache": [{"input": f"cache_in_{k}", "output": f"cache_out_{k}"} for k in range(n_cache)],
                "names": {"latents": "latents", "video": "video"}},
        "vae_decoder": manifest.component(first, "float32"),
        "vae_decoder_step": manifest.component(vae_ex["step"], "float32"),
        "dit": _dit_section(c.transformer, dit_ex, weights),
        "scheduler": _scheduler(c.scheduler_config, steps, guidance),
        "video": {"default_frames": frames, "default_height": height, "default_width": width, "default_fps": fps,
                  "frames": {"min": 5, "max": 81, "step": 4}, "height": {"min": 32, "max": 1280, "step": grid},
                  "width": {"min": 32, "max": 1280, "step": grid}, "fps": [fps]},
    }
    if two:
        g2 = a.guidance_2 if a.guidance_2 is not None else 3.0
        m["dit2"] = _dit_section(c.transformer_2, dit2_ex, weights,
                                 {"boundary_ratio": float(c.index["boundary_ratio"]), "guidance_scale": g2})
    manifest.write(out, m)
    report.finish(out, (40, 44), vae_cache_slots=n_cache)


if __name__ == "__main__":
    main()
