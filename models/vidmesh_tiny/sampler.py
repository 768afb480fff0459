"""Reference sampler: flow-matching Euler with timestep shift and classifier-free guidance.

Schedule (the Rust denoiser implements the same, see docs/model-bundle.md):
- u_i = 1 - i / N for i = 0..N-1; sigma_i = shift * u_i / (1 + (shift - 1) * u_i); sigma_N = 0.
- x_0 = seeded noise (noise.py); for each step the DiT sees timestep = 1000 * sigma_i;
  v = v_uncond + guidance * (v_cond - v_uncond)  (cond and uncond in one batch of 2B: cond first);
  x_{i+1} = x_i + (sigma_{i+1} - sigma_i) * v.
- Latents are then unscaled, z = x_N / scale + shift, and decoded by the VAE.
The backends (`TorchBackend`, `OrtBackend`) expose the same four calls, so one loop serves both and the
comparison PyTorch vs ONNX Runtime is of the graphs alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import noise
from .text_encoder import Tokenizer


def sigmas(steps: int, shift: float) -> np.ndarray:
    u = 1.0 - np.arange(steps, dtype=np.float64) / steps
    s = shift * u / (1.0 + (shift - 1.0) * u)
    return np.append(s, 0.0).astype(np.float32)


class TorchBackend:
    def __init__(self, text_encoder, dit, vae):  # noqa: ANN001
        self.te, self.dit, self.vae = text_encoder, dit.eval(), vae.eval()

    @torch.no_grad()
    def encode_text(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.te(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()

    @torch.no_grad()
    def velocity(self, x: np.ndarray, t: np.ndarray, states: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.dit(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(states), torch.from_numpy(mask)).numpy()

    @torch.no_grad()
    def decode(self, z: np.ndarray) -> np.ndarray:
        return self.vae.decoder(torch.from_numpy(z)).numpy()


class OrtBackend:
    def __init__(self, bundle: Path, threads: int = 0):
        import onnxruntime as ort

        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        mk = lambda f: ort.InferenceSession(str(bundle / f), so, providers=["CPUExecutionProvider"])  # noqa: E731
        self.te, self.dit, self.dec = mk("text_encoder.onnx"), mk("dit.onnx"), mk("vae_decoder.onnx")

    def encode_text(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.te.run(["hidden_states"], {"input_ids": ids, "attention_mask": mask})[0]

    def velocity(self, x: np.ndarray, t: np.ndarray, states: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.dit.run(["velocity"], {"latents": x, "timestep": t, "text_states": states, "text_mask": mask})[0]

    def decode(self, z: np.ndarray) -> np.ndarray:
        return self.dec.run(["video"], {"latents": z})[0]


@dataclass
class Request:
    prompt: str
    seed: int
    frames: int = 16
    height: int = 64
    width: int = 64
    steps: int = 30
    guidance: float = 5.0
    shift: float = 2.0
    negative_prompt: str = ""


@dataclass
class Trace:
    """Intermediates recorded for golden fixtures."""

    ids: np.ndarray | None = None
    mask: np.ndarray | None = None
    states: np.ndarray | None = None
    init_noise: np.ndarray | None = None
    after_step: list[np.ndarray] = field(default_factory=list)
    latents: np.ndarray | None = None
    video: np.ndarray | None = None


def generate(backend, tok: Tokenizer, reqs: list[Request], latent_shift: float, latent_scale: float,
             trace: bool = False) -> tuple[np.ndarray, list[Trace]]:  # noqa: ANN001
    """Generate a batch (all requests share size, steps, shift). Returns video float [B, 3, T, H, W] in [-1, 1]."""
    r0 = reqs[0]
    assert all((r.frames, r.height, r.width, r.steps, r.shift) == (r0.frames, r0.height, r0.width, r0.steps, r0.shift) for r in reqs)
    B = len(reqs)
    ids, mask = tok([r.prompt for r in reqs] + [r.negative_prompt for r in reqs])
    ids_np, mask_np = ids.numpy(), mask.numpy()
    states = backend.encode_text(ids_np, mask_np).astype(np.float32)
    shape = (16, r0.frames // 4, r0.height // 8, r0.width // 8)
    x = noise.batch_noise([r.seed for r in reqs], shape)
    traces = [Trace(ids=ids_np[i], mask=mask_np[i], states=states[i], init_noise=x[i].copy()) for i in range(B)] if trace else []
    g = np.array([r.guidance for r in reqs], dtype=np.float32)[:, None, None, None, None]
    sig = sigmas(r0.steps, r0.shift)
    for i in range(r0.steps):
        t = np.full(2 * B, sig[i] * 1000.0, dtype=np.float32)
        v = backend.velocity(np.concatenate([x, x]), t, states, mask_np)
        v = v[B:] + g * (v[:B] - v[B:])
        x = (x + (sig[i + 1] - sig[i]) * v).astype(np.float32)
        if trace:
            for k in range(B):
                traces[k].after_step.append(x[k].copy())
    z = (x / latent_scale + latent_shift).astype(np.float32)
    video = backend.decode(z)
    if trace:
        for k in range(B):
            traces[k].latents = x[k]
            traces[k].video = video[k]
    return video, traces
