"""Load a local diffusers Wan pipeline directory's components, with its weights or randomly initialised.

Guarantees:
- Only local files are read (no hub access): DIR/model_index.json names the components; each is loaded from its
  subfolder with `from_pretrained`, or, with `random_init`, built from its config.json alone (same architecture,
  seeded random weights: for testing the export of a full-size architecture without downloading weights).
- `weights = "float16" | "bfloat16"` converts weights, keeping the modules diffusers keeps in float32
  (`_keep_in_fp32_modules`, e.g. the DiT's rope / time embedder / norms) and the float64 rope tables as they were.
- Everything is in eval mode on the CPU.
- `Components` is also what ltx.load returns (transformer_2 = None); `modules()` (text encoder, transformer, VAE
  from_pretrained or seeded random) also loads LTX's and CogVideoX's; hunyuan loads with TORCH_DTYPES, `_cast`
  and `_random` from here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class Components:
    root: Path
    index: dict
    tokenizer: object
    text_encoder: torch.nn.Module
    transformer: torch.nn.Module
    transformer_2: torch.nn.Module | None
    vae: torch.nn.Module
    scheduler_config: dict
    weights: str


def _cast(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    if dtype == torch.float32:
        return model
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or ())
    for name, mod in model.named_modules():
        for pname, p in list(mod.named_parameters(recurse=False)):
            if p.dtype == torch.float32 and not keep & set(f"{name}.{pname}".split(".")):
                setattr(mod, pname, torch.nn.Parameter(p.data.to(dtype), requires_grad=False))
        for bname, b in list(mod.named_buffers(recurse=False)):
            if b is not None and b.dtype == torch.float32 and not keep & set(f"{name}.{bname}".split(".")):
                mod._buffers[bname] = b.to(dtype)
    return model


def _random(cls, folder: Path, seed: int):  # noqa: ANN001
    torch.manual_seed(seed)
    cfg = cls.load_config(str(folder)) if hasattr(cls, "load_config") else None
    return cls.from_config(cfg)


def modules(root: Path, random_init: bool, te_cls, tr_cls, vae_cls) -> tuple:  # noqa: ANN001
    """root's text_encoder (a transformers model class), transformer and vae (diffusers classes), float32: with
    from_pretrained, or with `random_init` built from their configs after torch.manual_seed(1 / 2 / 3)."""
    from transformers import AutoConfig

    if random_init:
        torch.manual_seed(1)
        te = te_cls(AutoConfig.from_pretrained(str(root / "text_encoder")))
        return te, _random(tr_cls, root / "transformer", 2), _random(vae_cls, root / "vae", 3)
    return tuple(cls.from_pretrained(str(root / name), torch_dtype=torch.float32)
                 for cls, name in ((te_cls, "text_encoder"), (tr_cls, "transformer"), (vae_cls, "vae")))


def load(root: Path, random_init: bool = False, weights: str = "float32") -> Components:
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import AutoTokenizer, UMT5EncoderModel

    index = json.loads((root / "model_index.json").read_text())
    if index.get("_class_name") != "WanPipeline":
        raise SystemExit(f"{root}: only WanPipeline directories are supported, this is {index.get('_class_name')}")
    dtype = TORCH_DTYPES[weights]
    tokenizer = AutoTokenizer.from_pretrained(str(root / "tokenizer"))
    if random_init:
        tr2 = _random(WanTransformer3DModel, root / "transformer_2", 4) if (root / "transformer_2").is_dir() else None
    else:
        tr2 = (WanTransformer3DModel.from_pretrained(str(root / "transformer_2"), torch_dtype=torch.float32)
               if (root / "transformer_2").is_dir() and index.get("transformer_2", [None])[0] else None)
    te, tr, vae = modules(root, random_init, UMT5EncoderModel, WanTransformer3DModel, AutoencoderKLWan)
    te, tr, vae = te.eval(), _cast(tr.eval(), dtype), vae.eval()
    te = _cast(te, dtype)
    tr2 = _cast(tr2.eval(), dtype) if tr2 is not None else None
    # The VAE stays float32: it is small and its causal cache is numerically sensitive.
    sched = json.loads((root / "scheduler" / "scheduler_config.json").read_text())
    return Components(root, index, tokenizer, te, tr, tr2, vae, sched, weights)
