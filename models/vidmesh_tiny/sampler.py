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

from . import noise
from .tokenize import Tokenizer

# Latent geometry of vidmesh-tiny (vae.py; model.toml [vae]). Kept here too so sampling needs no torch.
LATENT_CHANNELS, T_COMP, S_COMP = 8, 4, 4


def sigmas(steps: int, shift: float) -> np.ndarray:
    u = 1.0 - np.arange(steps, dtype=np.float64) / steps
    s = shift * u / (1.0 + (shift - 1.0) * u)
    return np.append(s, 0.0).astype(np.float32)


def frames_u8(video: np.ndarray) -> np.ndarray:
    """One sample's float [3, T, H, W] in [-1, 1] -> uint8 [T, H, W, 3] (clamp, then round half to even)."""
    x = np.rint((np.clip(video, -1.0, 1.0) + 1.0) * np.float32(127.5)).astype(np.uint8)
    return np.ascontiguousarray(x.transpose(1, 2, 3, 0))


class TorchBackend:
    """PyTorch modules behind the backend interface (torch imported only here)."""

    def __init__(self, text_encoder, dit, vae, device: str = "cpu"):  # noqa: ANN001
        import torch

        self.torch, self.device = torch, device
        self.te, self.dit, self.vae = text_encoder.to(device), dit.eval().to(device), vae.eval().to(device)

    def _run(self, fn, *arrays: np.ndarray) -> np.ndarray:  # noqa: ANN001
        with self.torch.no_grad():
            return fn(*[self.torch.from_numpy(a).to(self.device) for a in arrays]).float().cpu().numpy()

    def encode_text(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self._run(self.te, ids, mask)

    def velocity(self, x: np.ndarray, t: np.ndarray, states: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self._run(self.dit, x, t, states, mask)

    def decode(self, z: np.ndarray) -> np.ndarray:
        return self._run(self.vae.decoder, z)


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
    ids_np, mask_np = tok([r.prompt for r in reqs] + [r.negative_prompt for r in reqs])
    states = backend.encode_text(ids_np, mask_np).astype(np.float32)
    shape = (LATENT_CHANNELS, r0.frames // T_COMP, r0.height // S_COMP, r0.width // S_COMP)
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
