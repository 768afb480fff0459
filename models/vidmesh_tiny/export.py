"""Export the components to ONNX, check each against PyTorch with ONNX Runtime, write model.toml.

Usage:
  python -m vidmesh_tiny.export                    # trained bundle -> models/vidmesh-tiny/
  python -m vidmesh_tiny.export --random-init OUT  # same architecture at realistic size (28 x 1152, 16 heads),
                                                   # random weights, for GPU benchmarks; never committed
Invariants:
- opset 18, dynamic batch / tokens / frames / height / width on every component.
- DiT attention is com.microsoft::MultiHeadAttention (one fused node per attention); checked in the graph.
- The text encoder keeps int8 weights in the file (no constant folding); ORT dequantizes once at load.
- Every component is compared with PyTorch on random inputs at two shapes; the max abs diff is recorded in
  parity.json and must be <= 1e-4.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import torch

from .common import BUNDLE, WORK, load
from .dit import DiT, DiTConfig, from_checkpoint
from .manifest import sha256
from .text_encoder import HIDDEN, MAX_TOKENS, TextEncoder, Tokenizer, minilm_dir
from .vae import LATENT_CHANNELS, S_COMP, T_COMP, VAE

OPSET = 18
DTYPES = {1: "float32", 6: "int32", 7: "int64", 10: "float16", 3: "int8"}
VERSION = "0.3.0"


def _export(module: torch.nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
            axes: dict, fold: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET, input_names=inputs,
                      output_names=outputs, dynamic_axes=axes, do_constant_folding=fold)


class _Encode(torch.nn.Module):
    def __init__(self, vae: VAE):
        super().__init__()
        self.enc = vae.encoder

    def forward(self, video: torch.Tensor):  # noqa: ANN201
        return self.enc(video)


class _Decode(torch.nn.Module):
    def __init__(self, vae: VAE):
        super().__init__()
        self.dec = vae.decoder

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.dec(latents)


def export_dit(dit: DiT, path: Path) -> dict:
    dit.eval().set_export_fused(True)
    x = torch.randn(2, dit.cfg.in_channels, 4, 16, 16)
    args = (x, torch.tensor([500.0, 900.0]), torch.randn(2, 12, dit.cfg.text_dim), torch.ones(2, 12, dtype=torch.int64))
    lat = {0: "batch", 2: "latent_frames", 3: "latent_height", 4: "latent_width"}
    _export(dit, args, path, ["latents", "timestep", "text_states", "text_mask"], ["velocity"],
            {"latents": lat, "timestep": {0: "batch"}, "text_states": {0: "batch", 1: "tokens"},
             "text_mask": {0: "batch", 1: "tokens"}, "velocity": lat})
    dit.set_export_fused(False)
    g = onnx.load(str(path), load_external_data=False)
    ops = Counter(n.op_type for n in g.graph.node)
    if ops["MultiHeadAttention"] != 2 * dit.cfg.depth:
        raise SystemExit(f"expected {2 * dit.cfg.depth} fused attention nodes, graph has {ops['MultiHeadAttention']}")
    return dict(ops)


def io_spec(path: Path) -> tuple[list[dict], list[dict]]:
    g = onnx.load(str(path), load_external_data=False).graph

    def spec(v) -> dict:  # noqa: ANN001
        t = v.type.tensor_type
        dims = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
        return {"name": v.name, "dtype": DTYPES[t.elem_type], "shape": dims}

    inits = {i.name for i in g.initializer}
    return [spec(v) for v in g.input if v.name not in inits], [spec(v) for v in g.output]


def parity(path: Path, fn, feeds: list[dict]) -> float:  # noqa: ANN001
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for feed in feeds:
        with torch.no_grad():
            ref = fn(*[torch.from_numpy(v) for v in feed.values()])
        ref = ref if isinstance(ref, tuple) else (ref,)
        got = s.run(None, feed)
        for r, o in zip(ref, got):
            worst = max(worst, float(np.abs(r.numpy() - o).max()))
    return worst


def export_bundle(out: Path, dit_path: Path = WORK / "dit.pt") -> None:
    vae_ck, dit_ck = load(WORK / "vae.pt"), load(dit_path)
    if vae_ck is None or dit_ck is None:
        raise SystemExit("train first: vae.pt and dit.pt missing in " + str(WORK))
    vae = VAE()
    vae.load_state_dict(vae_ck["model"])
    vae.eval()
    dit = from_checkpoint(dit_ck)
    cfg = dit.cfg
    te = TextEncoder()
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    report: dict = {}

    # Text encoder (int8 weights kept: no constant folding).
    ids = torch.randint(1000, 2000, (2, 10))
    _export(te, (ids, torch.ones_like(ids)), out / "text_encoder.onnx", ["input_ids", "attention_mask"], ["hidden_states"],
            {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
             "hidden_states": {0: "batch", 1: "tokens"}}, fold=False)
    tok = Tokenizer()
    feeds = []
    for texts in (["a small red circle moving left slowly on a black background", ""], ["blue box going up fast"] * 3):
        i, m = tok(texts)
        feeds.append({"input_ids": i, "attention_mask": m})
    report["text_encoder"] = parity(out / "text_encoder.onnx", te, feeds)

    # Tokenizer: the MiniLM tokenizer.json with our truncation, no padding.
    from tokenizers import Tokenizer as HFTokenizer

    hft = HFTokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    hft.no_padding()
    hft.enable_truncation(MAX_TOKENS)
    hft.save(str(out / "tokenizer.json"))

    # VAE encoder / decoder.
    vid_axes = {0: "batch", 2: "frames", 3: "height", 4: "width"}
    lat_axes = {0: "batch", 2: "latent_frames", 3: "latent_height", 4: "latent_width"}
    enc, dec = _Encode(vae), _Decode(vae)
    _export(enc, (torch.randn(1, 3, 8, 64, 64),), out / "vae_encoder.onnx", ["video"], ["latent_mean", "latent_logvar"],
            {"video": vid_axes, "latent_mean": lat_axes, "latent_logvar": lat_axes})
    report["vae_encoder"] = parity(out / "vae_encoder.onnx", enc, [
        {"video": rng.uniform(-1, 1, (1, 3, 16, 64, 64)).astype(np.float32)},
        {"video": rng.uniform(-1, 1, (2, 3, 8, 64, 96)).astype(np.float32)}])
    _export(dec, (torch.randn(1, LATENT_CHANNELS, 2, 16, 16),), out / "vae_decoder.onnx", ["latents"], ["video"],
            {"latents": lat_axes, "video": vid_axes})
    report["vae_decoder"] = parity(out / "vae_decoder.onnx", dec, [
        {"latents": rng.standard_normal((1, LATENT_CHANNELS, 4, 16, 16)).astype(np.float32)},
        {"latents": rng.standard_normal((2, LATENT_CHANNELS, 8, 16, 24)).astype(np.float32)}])

    # DiT.
    report["dit_ops"] = export_dit(dit, out / "dit.onnx")
    # Fusions ONNX Runtime misses (tanh-GELU -> FastGelu); the parity check below runs on the fused graph.
    from vidmesh_export import fuse

    fuse.main([str(out / "dit.onnx")])
    feeds = []
    for B, T, h, w, L in ((2, 4, 16, 16, 14), (3, 8, 16, 24, 9)):
        mask = np.ones((B, L), dtype=np.int64)
        mask[0, L // 2:] = 0
        feeds.append({"latents": rng.standard_normal((B, LATENT_CHANNELS, T, h, w)).astype(np.float32),
                      "timestep": rng.uniform(0, 1000, B).astype(np.float32),
                      "text_states": rng.standard_normal((B, L, HIDDEN)).astype(np.float32), "text_mask": mask})
    report["dit"] = parity(out / "dit.onnx", dit, feeds)

    for k in ("text_encoder", "vae_encoder", "vae_decoder", "dit"):
        if report[k] > 1e-4:
            raise SystemExit(f"{k}: ONNX Runtime differs from PyTorch by {report[k]:.2e} > 1e-4")
    print("parity (max abs diff ORT vs PyTorch):", {k: f"{report[k]:.1e}" for k in ("text_encoder", "vae_encoder", "vae_decoder", "dit")})
    write_manifest(out, cfg, dit_ck["latent_shift"], dit_ck["latent_scale"])
    # Step caching: the DiT split at its first block ([dit.cache]), checked against the whole graph.
    from vidmesh_export import split

    split.main([str(out), "--tiers", str(Path(__file__).with_name("cache_tiers.toml"))])
    report["whole_video"] = video_parity(out, te, dit, vae, dit_ck["latent_shift"], dit_ck["latent_scale"])
    (WORK / "parity.json").write_text(json.dumps(report, indent=2))


def video_parity(bundle: Path, te: TextEncoder, dit: DiT, vae: VAE, shift: float, scale: float) -> dict:
    """Sample whole videos (30 steps, CFG) through PyTorch and through the ONNX graphs; compare the frames."""
    from .sampler import OrtBackend, Request, TorchBackend, frames_u8, generate

    tok = Tokenizer(bundle / "tokenizer.json")
    reqs = [Request(prompt="a small red circle moving left slowly on a black background", seed=42),
            Request(prompt="a large blue square moving up and to the right quickly on a white background", seed=7)]
    v_pt, _ = generate(TorchBackend(te, dit, vae), tok, reqs, shift, scale)
    v_ort, _ = generate(OrtBackend(bundle), tok, reqs, shift, scale)
    u_pt = np.stack([frames_u8(v) for v in v_pt]).astype(np.int16)
    u_ort = np.stack([frames_u8(v) for v in v_ort]).astype(np.int16)
    res = {"max_abs_float": float(np.abs(v_pt - v_ort).max()), "max_abs_u8": int(np.abs(u_pt - u_ort).max()),
           "frac_u8_equal": float((u_pt == u_ort).mean())}
    print("whole video, PyTorch vs ONNX Runtime:", res)
    if res["max_abs_u8"] > 1:
        raise SystemExit(f"sampled videos differ between PyTorch and ONNX Runtime: {res}")
    return res


def write_manifest(out: Path, cfg: DiTConfig, shift: float, scale: float) -> None:
    from . import manifest

    comps = {}
    for key, f in (("text_encoder", "text_encoder.onnx"), ("vae_encoder", "vae_encoder.onnx"),
                   ("vae_decoder", "vae_decoder.onnx"), ("dit", "dit.onnx")):
        ins, outs = io_spec(out / f)
        comps[key] = {"file": f, "sha256": sha256(out / f), "inputs": ins, "outputs": outs}
    text = manifest.render(comps, tokenizer_sha256=sha256(out / "tokenizer.json"), cfg=cfg, latent_shift=shift,
                           latent_scale=scale, version=VERSION)
    (out / "model.toml").write_text(text)
    manifest.validate(out)
    print(f"wrote {out / 'model.toml'}")


def export_random_init(out: Path, hidden: int, depth: int, heads: int) -> None:
    torch.manual_seed(0)
    # Production-like latent geometry (16 channels, 2x2 spatial patches, as in Wan / CogVideoX-class models).
    cfg = DiTConfig(in_channels=16, patch=(1, 2, 2), hidden=hidden, depth=depth, heads=heads, mlp_ratio=4.0)
    dit = DiT(cfg)
    for p in dit.parameters():  # non-degenerate outputs (zero-init gates would make the graph trivially 0)
        p.data.add_(torch.randn_like(p) * 0.02)
    out.mkdir(parents=True, exist_ok=True)
    ops = export_dit(dit, out / "tmp" / "dit.onnx")
    # Gather the exporter's per-tensor external files into one dit.onnx.data beside dit.onnx.
    g = onnx.load(str(out / "tmp" / "dit.onnx"))
    onnx.save_model(g, str(out / "dit.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="dit.onnx.data", size_threshold=1024)
    shutil.rmtree(out / "tmp")
    n = sum(p.numel() for p in dit.parameters())
    print(f"random-init DiT {n / 1e6:.0f}M params, {ops['MultiHeadAttention']} fused MultiHeadAttention nodes -> {out}")
    (out / "config.json").write_text(json.dumps({**cfg.to_dict(), "params": n, "ops": ops}, indent=2))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=BUNDLE)
    ap.add_argument("--dit", type=Path, default=WORK / "dit.pt", help="DiT checkpoint to export")
    ap.add_argument("--random-init", type=Path, default=None, metavar="OUT")
    ap.add_argument("--hidden", type=int, default=1152)
    ap.add_argument("--depth", type=int, default=28)
    ap.add_argument("--heads", type=int, default=16)
    args = ap.parse_args(argv)
    if args.random_init:
        export_random_init(args.random_init, args.hidden, args.depth, args.heads)
    else:
        export_bundle(args.out, args.dit)


if __name__ == "__main__":
    main()
