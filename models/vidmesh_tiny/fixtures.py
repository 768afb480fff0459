"""Golden fixtures for the Rust services' parity tests (models/fixtures/vidmesh-tiny/).

One safetensors file per case plus cases.json with the request parameters. Produced by the exported ONNX graphs
through ONNX Runtime (Python), i.e. exactly what the services run; export.py separately checks those graphs against
PyTorch. Tensors per case:
  input_ids, attention_mask            int64 [L]     the prompt's tokens (tokenizer.json, no padding)
  uncond_input_ids, uncond_attention_mask int64 [Lu] the negative prompt's ("" unless given)
  text_states                          f32 [L, 384]  text encoder output for the prompt
  uncond_text_states                   f32 [Lu, 384]
  init_noise                           f32 [8, T/4, H/4, W/4]   Philox noise for the seed (noise.py)
  latents_step1                        f32 same      after the first scheduler step
  latents_final                        f32 same      after the last step (scaled latent space)
  video                                f32 [3, T, H, W]  VAE decoder output in [-1, 1] (before clamping)
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from .paths import BUNDLE, ROOT
from .sampler import OrtBackend, Request, generate
from .tokenize import Tokenizer

OUT = ROOT / "fixtures" / "vidmesh-tiny"

CASES = [
    Request(prompt="a small red circle moving left slowly on a black background", seed=42, steps=30),
    Request(prompt="a large blue square moving up and to the right quickly on a striped white background", seed=7, steps=30),
    Request(prompt="a big green ball drifting down, navy backdrop", seed=2**63 + 12345, steps=8, guidance=3.0,
            frames=32, width=96),
    Request(prompt="a yellow triangle moving right", seed=0, steps=4, guidance=1.0, frames=8,
            negative_prompt="blurry"),
]


def write(bundle: Path = BUNDLE, out: Path = OUT) -> None:
    import tomllib

    m = tomllib.loads((bundle / "model.toml").read_text())
    shift, scale = m["vae"]["latent_shift"], m["vae"]["latent_scale"]
    backend = OrtBackend(bundle)
    tok = Tokenizer(bundle / "tokenizer.json")
    out.mkdir(parents=True, exist_ok=True)
    meta = []
    for i, req in enumerate(CASES):
        _, (tr,) = generate(backend, tok, [req], shift, scale, trace=True)
        # Per-sample tensors without padding: the batch of [prompt, negative] was padded to the longer one.
        n_c = int(tr.mask.sum())
        ids_u, mask_u = tok([req.negative_prompt])
        states_u = backend.encode_text(ids_u, mask_u)[0]
        tensors = {
            "input_ids": tr.ids[:n_c].astype(np.int64),
            "attention_mask": tr.mask[:n_c].astype(np.int64),
            "uncond_input_ids": ids_u[0],
            "uncond_attention_mask": mask_u[0],
            "text_states": tr.states[:n_c].astype(np.float32),
            "uncond_text_states": states_u.astype(np.float32),
            "init_noise": tr.init_noise,
            "latents_step1": tr.after_step[0],
            "latents_final": tr.latents,
            "video": tr.video.astype(np.float32),
        }
        name = f"case{i}.safetensors"
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(out / name))
        meta.append({"file": name, **asdict(req), "seed": str(req.seed)})
        print(f"fixture {name}: {req.prompt!r} seed {req.seed}")
    (out / "cases.json").write_text(json.dumps({"bundle": m["model"]["version"], "latent_shift": shift,
                                                "latent_scale": scale, "cases": meta}, indent=2) + "\n")


if __name__ == "__main__":
    write()
