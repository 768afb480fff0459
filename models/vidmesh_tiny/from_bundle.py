"""Torch modules rebuilt from the committed bundle's ONNX graphs (for training the DiT without the VAE checkpoint
or the MiniLM package, e.g. on a machine with a GPU and no network).

Invariants:
- Named initializers map one-to-one onto the modules' parameters and buffers (the exporter keeps parameter names,
  prefixed `enc.` / `dec.` by export.py's wrappers). GroupNorm's affine parameters are exported as anonymous
  `[C, 1, 1]` initializers feeding a Mul then an Add; they are assigned to the GroupNorm modules in forward order.
- `check(...)` compares each rebuilt module with ONNX Runtime on random input; callers use it before trusting one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from .paths import BUNDLE
from .tokenize import HIDDEN, MAX_TOKENS
from .vae import VAE


def latent_scaling(bundle: Path = BUNDLE) -> tuple[float, float]:
    """The DiT's latent (shift, scale) as model.toml's [vae] records it; a DiT continued from the bundle keeps it."""
    import tomllib

    m = tomllib.loads((bundle / "model.toml").read_text())["vae"]
    return float(m["latent_shift"]), float(m["latent_scale"])


def _initializers(path: Path) -> tuple[onnx.GraphProto, dict[str, np.ndarray]]:
    g = onnx.load(str(path)).graph
    return g, {i.name: numpy_helper.to_array(i) for i in g.initializer}


def _group_norm_affines(g: onnx.GraphProto, inits: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight, bias) pairs of every exported GroupNorm, in graph (= forward) order."""
    pairs, pending = [], None
    for n in g.node:
        cand = [i for i in n.input if i in inits and not i.startswith(("enc.", "dec.")) and inits[i].ndim == 3]
        if not cand:
            continue
        if n.op_type == "Mul" and pending is None:
            pending = inits[cand[0]]
        elif n.op_type == "Add" and pending is not None:
            pairs.append((pending, inits[cand[0]]))
            pending = None
    return pairs


def _load_half(module: torch.nn.Module, prefix: str, path: Path) -> None:
    g, inits = _initializers(path)
    sd = {k.removeprefix(prefix): torch.from_numpy(v.copy()) for k, v in inits.items() if k.startswith(prefix)}
    norms = [m for m in module.modules() if isinstance(m, torch.nn.GroupNorm)]
    affines = _group_norm_affines(g, inits)
    if len(affines) != len(norms):
        raise SystemExit(f"{path.name}: {len(affines)} GroupNorm affines in the graph, module has {len(norms)}")
    names = {id(m): n for n, m in module.named_modules()}
    for m, (w, b) in zip(norms, affines):
        sd[names[id(m)] + ".weight"] = torch.from_numpy(w.reshape(-1).copy())
        sd[names[id(m)] + ".bias"] = torch.from_numpy(b.reshape(-1).copy())
    module.load_state_dict(sd, strict=True)


def vae(bundle: Path = BUNDLE) -> VAE:
    v = VAE()
    _load_half(v.encoder, "enc.", bundle / "vae_encoder.onnx")
    _load_half(v.decoder, "dec.", bundle / "vae_decoder.onnx")
    return v.eval()


def text_encoder(bundle: Path = BUNDLE):  # noqa: ANN201
    """The int8 MiniLM (text_encoder.TextEncoder) with the bundle's buffers."""
    from . import text_encoder as te

    _, inits = _initializers(bundle / "text_encoder.onnx")
    sd = {k: torch.from_numpy(v.copy()) for k, v in inits.items()}
    n_vocab = sd["word.qweight"].shape[0]
    skeleton = {"embeddings.word_embeddings.weight": torch.zeros(n_vocab, HIDDEN),
                "embeddings.position_embeddings.weight": torch.zeros(MAX_TOKENS, HIDDEN),
                "embeddings.token_type_embeddings.weight": torch.zeros(2, HIDDEN),
                "embeddings.LayerNorm.weight": torch.ones(HIDDEN), "embeddings.LayerNorm.bias": torch.zeros(HIDDEN)}
    for i in range(6):
        p = f"encoder.layer.{i}."
        for name, (o, k) in {"attention.self.query": (HIDDEN, HIDDEN), "attention.self.key": (HIDDEN, HIDDEN),
                             "attention.self.value": (HIDDEN, HIDDEN), "attention.output.dense": (HIDDEN, HIDDEN),
                             "intermediate.dense": (4 * HIDDEN, HIDDEN), "output.dense": (HIDDEN, 4 * HIDDEN)}.items():
            skeleton[p + name + ".weight"], skeleton[p + name + ".bias"] = torch.zeros(o, k), torch.zeros(o)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            skeleton[p + ln + ".weight"], skeleton[p + ln + ".bias"] = torch.ones(HIDDEN), torch.zeros(HIDDEN)
    enc = te.TextEncoder.from_state(skeleton)
    enc.load_state_dict(sd, strict=True)
    return enc.eval()


def dit(bundle: Path = BUNDLE):  # noqa: ANN201
    """The exported DiT (its EMA weights) as a torch module. Named initializers keep their parameter names; the
    exporter stores each Linear's weight transposed and anonymous as the MatMul input of a node named after the
    module path (`/blocks.0/mlp/mlp.0/MatMul`), and each adaLN table as a `[1, n, D]` Add input (`/blocks.0/Add`,
    `/Add_1` for the output table). The architecture is read back from model.toml's [dit] section."""
    import re
    import tomllib

    from .dit import DiT, DiTConfig

    g, inits = _initializers(bundle / "dit.onnx")
    m = tomllib.loads((bundle / "model.toml").read_text())["dit"]
    sd = {k: torch.from_numpy(v.copy()) for k, v in inits.items() if not k.startswith("onnx::")}
    for n in g.node:
        for i in n.input:
            if not i.startswith("onnx::") or i not in inits:
                continue
            path = re.sub(r"(\w+)\.\1\.", r"\1.", ".".join(n.name.strip("/").split("/")[:-1]))
            w = torch.from_numpy(inits[i].copy())
            if n.op_type == "MatMul":
                sd[path + ".weight"] = w.T.contiguous()
            elif n.op_type == "Add" and w.ndim == 3:
                sd[(path + ".table") if path else "out_table"] = w[0]
    # Rotary positions have no parameters and model.toml does not name them: take the variant ORT agrees with.
    import onnxruntime as ort

    sess = ort.InferenceSession(str(bundle / "dit.onnx"), providers=["CPUExecutionProvider"])
    feed = _dit_probe()
    ref = sess.run(["velocity"], feed)[0]
    best = None
    for rope in (True, False):
        cfg = DiTConfig(patch=tuple(m["patch_size"]), hidden=m["hidden_size"], depth=m["depth"], heads=m["heads"], rope=rope)
        model = DiT(cfg)
        model.load_state_dict(sd, strict=True)
        model.eval()
        with torch.no_grad():
            err = float(np.abs(model(*(torch.from_numpy(v) for v in feed.values())).numpy() - ref).max())
        if best is None or err < best[0]:
            best = (err, model)
    if best[0] > 1e-4:
        raise SystemExit(f"dit.onnx: the rebuilt DiT differs from ONNX Runtime by {best[0]:.2e}")
    return best[1]


def _dit_probe() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    mask = np.ones((2, 9), dtype=np.int64)
    mask[1, 5:] = 0
    return {"latents": rng.standard_normal((2, 8, 4, 8, 12)).astype(np.float32),
            "timestep": np.array([900.0, 120.0], dtype=np.float32),
            "text_states": rng.standard_normal((2, 9, HIDDEN)).astype(np.float32), "text_mask": mask}


def check(bundle: Path = BUNDLE) -> dict[str, float]:
    """Max abs difference, rebuilt torch module vs ONNX Runtime, per component."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    mk = lambda f: ort.InferenceSession(str(bundle / f), providers=["CPUExecutionProvider"])  # noqa: E731
    v, te = vae(bundle), text_encoder(bundle)
    video = rng.uniform(-1, 1, (2, 3, 8, 64, 96)).astype(np.float32)
    lat = rng.standard_normal((2, 8, 2, 16, 24)).astype(np.float32)
    ids = rng.integers(1000, 5000, (2, 12)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    with torch.no_grad():
        res = {
            "vae_encoder": float(np.abs(v.encoder(torch.from_numpy(video))[0].numpy()
                                        - mk("vae_encoder.onnx").run(["latent_mean"], {"video": video})[0]).max()),
            "vae_decoder": float(np.abs(v.decoder(torch.from_numpy(lat)).numpy()
                                        - mk("vae_decoder.onnx").run(["video"], {"latents": lat})[0]).max()),
            "text_encoder": float(np.abs((te(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
                                          - mk("text_encoder.onnx").run(["hidden_states"], {"input_ids": ids, "attention_mask": mask})[0])
                                         * mask[..., None]).max()),
        }
    return res


def main(argv: list[str] | None = None) -> None:
    import argparse

    from .common import save_atomic
    from .train_vae import CKPT

    ap = argparse.ArgumentParser(description="check the rebuilt modules against ONNX Runtime; optionally write "
                                 "WORK/vae.pt from the bundle (to train only the DiT)")
    ap.add_argument("--bundle", type=Path, default=BUNDLE)
    ap.add_argument("--write-vae", action="store_true")
    args = ap.parse_args(argv)
    res = check(args.bundle)
    print("rebuilt vs ONNX Runtime (max abs diff):", res)
    if max(res.values()) > 1e-4:
        raise SystemExit("the rebuilt modules do not match the bundle's graphs")
    if args.write_vae:
        save_atomic({"model": vae(args.bundle).state_dict(), "step": 0, "args": {"from_bundle": str(args.bundle)}}, CKPT)
        print(f"wrote {CKPT}")


if __name__ == "__main__":
    main()
