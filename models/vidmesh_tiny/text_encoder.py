"""Text encoder: all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384) with int8 weight-only quantization.

Invariants:
- Weights of every Linear and of the word-embedding table are stored as int8 with one float32 scale per output
  row (symmetric, scale = max|w| / 127). Compute is float32: w = int8 * scale, exactly as the exported ONNX graph
  does, so PyTorch and ONNX Runtime agree to float rounding, and the DiT is trained on these very states.
- Output is the last hidden state per token [B, L, 384]; padded positions (attention_mask == 0) are ignored by
  attention and their states are meaningless — consumers must use the mask.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .tokenize import HIDDEN, MAX_TOKENS, Tokenizer, minilm_dir  # noqa: F401


class QLinear(nn.Module):
    """Linear with int8 weight + per-row float scale (buffers, not trained)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        scale = weight.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
        self.register_buffer("qweight", torch.round(weight / scale).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.float())
        self.register_buffer("bias", bias.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.qweight.to(torch.float32) * self.scale
        return F.linear(x, w, self.bias)


class QEmbedding(nn.Module):
    def __init__(self, weight: torch.Tensor):
        super().__init__()
        scale = weight.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
        self.register_buffer("qweight", torch.round(weight / scale).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.float())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.qweight[ids].to(torch.float32) * self.scale[ids]


class Layer(nn.Module):
    def __init__(self, sd: dict[str, torch.Tensor], p: str, heads: int):
        super().__init__()
        self.heads = heads
        self.q = QLinear(sd[p + "attention.self.query.weight"], sd[p + "attention.self.query.bias"])
        self.k = QLinear(sd[p + "attention.self.key.weight"], sd[p + "attention.self.key.bias"])
        self.v = QLinear(sd[p + "attention.self.value.weight"], sd[p + "attention.self.value.bias"])
        self.o = QLinear(sd[p + "attention.output.dense.weight"], sd[p + "attention.output.dense.bias"])
        self.ln1 = nn.LayerNorm(HIDDEN, eps=1e-12)
        self.ln1.load_state_dict({"weight": sd[p + "attention.output.LayerNorm.weight"], "bias": sd[p + "attention.output.LayerNorm.bias"]})
        self.fc1 = QLinear(sd[p + "intermediate.dense.weight"], sd[p + "intermediate.dense.bias"])
        self.fc2 = QLinear(sd[p + "output.dense.weight"], sd[p + "output.dense.bias"])
        self.ln2 = nn.LayerNorm(HIDDEN, eps=1e-12)
        self.ln2.load_state_dict({"weight": sd[p + "output.LayerNorm.weight"], "bias": sd[p + "output.LayerNorm.bias"]})

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        hd = D // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(B, L, self.heads, hd).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + bias, dim=-1)
        a = (att @ v).transpose(1, 2).reshape(B, L, D)
        x = self.ln1(x + self.o(a))
        h = self.fc2(F.gelu(self.fc1(x)))
        return self.ln2(x + h)


class TextEncoder(nn.Module):
    def __init__(self, model_dir: Path | None = None, sd: dict[str, torch.Tensor] | None = None):
        super().__init__()
        if sd is None:
            from safetensors.torch import load_file

            d = model_dir or minilm_dir()
            sd = {k.removeprefix("bert."): v.float() for k, v in load_file(str(d / "model.safetensors")).items()}
        self.word = QEmbedding(sd["embeddings.word_embeddings.weight"])
        self.register_buffer("pos", sd["embeddings.position_embeddings.weight"][:MAX_TOKENS].clone())
        self.register_buffer("type0", sd["embeddings.token_type_embeddings.weight"][0].clone())
        self.ln = nn.LayerNorm(HIDDEN, eps=1e-12)
        self.ln.load_state_dict({"weight": sd["embeddings.LayerNorm.weight"], "bias": sd["embeddings.LayerNorm.bias"]})
        self.layers = nn.ModuleList(Layer(sd, f"encoder.layer.{i}.", heads=12) for i in range(6))
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    @classmethod
    def from_state(cls, sd: dict[str, torch.Tensor]) -> "TextEncoder":
        """Built from a MiniLM-shaped state dict (keys without the `bert.` prefix) instead of the package's file."""
        return cls(sd=sd)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        L = input_ids.shape[1]
        x = self.word(input_ids) + self.pos[:L].unsqueeze(0) + self.type0
        x = self.ln(x)
        bias = (1.0 - attention_mask.to(torch.float32))[:, None, None, :] * -1e9
        for layer in self.layers:
            x = layer(x, bias)
        return x


@torch.no_grad()
def encode_texts(enc: TextEncoder, tok: Tokenizer, texts: list[str], batch: int = 256,
                 device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states [N, MAX_TOKENS, 384] (float16, zero past the mask) and masks [N, MAX_TOKENS] (bool)."""
    states = torch.zeros(len(texts), MAX_TOKENS, HIDDEN, dtype=torch.float16)
    masks = torch.zeros(len(texts), MAX_TOKENS, dtype=torch.bool)
    for i in range(0, len(texts), batch):
        ids_np, m_np = tok(texts[i : i + batch])
        ids, m = torch.from_numpy(ids_np), torch.from_numpy(m_np)
        h = enc(ids.to(device), m.to(device)).cpu() * m[..., None]
        states[i : i + batch, : ids.shape[1]] = h.half()
        masks[i : i + batch, : ids.shape[1]] = m.bool()
    return states, masks
