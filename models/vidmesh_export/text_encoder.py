"""UMT5 encoder -> text_encoder.onnx, and the tokenizer -> tokenizer.json.

Graph:
  input_ids       int64 [batch, tokens]
  attention_mask  int64 [batch, tokens]   1 = real token, 0 = padding
  -> last_hidden_state  float32 [batch, tokens, hidden]   (manifest: [text_encoder.names].hidden_states)
Guarantees:
- The graph is the encoder's `last_hidden_state` for the given mask (Wan: the real mask, prompt padded to 512 with
  the pad id); batch and tokens are dynamic; `check()` compares ORT with PyTorch at two shapes with padded rows.
- tokenizer.json is the pipeline's fast tokenizer with truncation to `max_tokens` (special tokens included, like
  `tokenizer(..., truncation=True, max_length=max_tokens)`) and no padding, as docs/model-bundle.md requires.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .onnx_util import Io, check, export, parity, session

ARG_NAMES = ["input_ids", "attention_mask"]


class TextEncoderWrapper(torch.nn.Module):
    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.float()


def hidden_size(encoder: torch.nn.Module) -> int:
    return int(encoder.config.d_model)


def spec(encoder: torch.nn.Module) -> tuple[list[Io], list[Io]]:
    return ([Io("input_ids", "int64", ["batch", "tokens"]), Io("attention_mask", "int64", ["batch", "tokens"])],
            [Io("last_hidden_state", "float32", ["batch", "tokens", hidden_size(encoder)])])


def example(encoder: torch.nn.Module, batch: int, tokens: int, seed: int) -> tuple:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, encoder.config.vocab_size, (batch, tokens), generator=g)
    mask = torch.ones(batch, tokens, dtype=torch.int64)
    for b in range(batch):  # row b has tokens - 2b real tokens, then </s>, then padding
        n = max(2, tokens - 2 * b)
        ids[b, n - 1] = 1
        ids[b, n:] = 0
        mask[b, n:] = 0
    return ids, mask


EXPORT_SHAPE = dict(batch=2, tokens=9)
CHECK_SHAPES = [dict(batch=1, tokens=5), dict(batch=3, tokens=160)]  # 160 > relative_attention_max_distance


def export_text_encoder(encoder: torch.nn.Module, path: Path, external_data: bool, tol: float) -> tuple:
    wrapper = TextEncoderWrapper(encoder).eval()
    ins, outs = spec(encoder)
    ex = export(wrapper, example(encoder, seed=0, **EXPORT_SHAPE), ARG_NAMES, ins, outs, path, external_data)
    sess = session(path)
    rows = []
    for i, shp in enumerate(CHECK_SHAPES):
        args = example(encoder, seed=10 + i, **shp)
        errs = parity(wrapper, sess, args, [x.name for x in ins], [o.name for o in outs])
        rows.append({"shape": shp, "max_abs_err": check(errs, tol, f"{path.name} at {shp}")})
    return ex, rows


def write_tokenizer(tokenizer, path: Path, max_tokens: int) -> None:  # noqa: ANN001
    """The fast tokenizer's tokenizer.json with truncation to max_tokens and no padding.

    vidmesh pads with the id of the tokenizer.json's padding config, else of a `<pad>` / `[PAD]` token, else 0: when
    the pipeline's pad token is none of those (Llama's, CLIP's `<|endoftext|>`), a padding config naming it is
    written (batch-longest, which leaves single encodings as they are)."""
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if backend is None:
        raise SystemExit("the pipeline's tokenizer has no fast (tokenizers) backend; cannot write tokenizer.json")
    spec = json.loads(backend.to_str())
    spec["truncation"] = {"direction": "Right", "max_length": max_tokens, "strategy": "LongestFirst", "stride": 0}
    spec["padding"] = None
    pad = getattr(tokenizer, "pad_token", None)
    if pad is not None and pad not in ("<pad>", "[PAD]"):
        spec["padding"] = {"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": None,
                           "pad_id": int(tokenizer.pad_token_id), "pad_type_id": 0, "pad_token": pad}
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(json.dumps(spec))
    # Same ids as the pipeline's tokenizer on a long and a short text (special tokens and truncation included).
    for text in ("a cat walks along the beach", " ".join(["a small boat sails near the river"] * 120)):
        want = tokenizer(text, truncation=True, max_length=max_tokens, add_special_tokens=True).input_ids
        got = tok.encode(text).ids
        if got != want:
            raise SystemExit(f"tokenizer.json disagrees with the pipeline's tokenizer on {text[:40]!r}")
    path.write_text(json.dumps(spec, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
