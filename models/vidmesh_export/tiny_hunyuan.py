"""A seeded tiny random HunyuanVideo pipeline, built with diffusers' / transformers' own classes and `save_pretrained`.

  python -m vidmesh_export.tiny_hunyuan --out models/work/hunyuan-tiny-src

Guarantees:
- The same command writes the same weights and the same tokenizers (every module is built after its own
  `torch.manual_seed`; both tokenizers are BPE, trained single-threaded on a fixed, generated corpus).
- The directory loads back through `HunyuanVideoPipeline.from_pretrained(DIR)` (checked before returning: the
  reloaded tokenizers give the built ones' ids, the reloaded modules the same outputs).
- The architecture is HunyuanVideo's at toy width, with the real classes:
  - text_encoder: transformers `LlamaModel`, 4 layers (so `hidden_states[-3]`, what the pipeline hands the DiT with
    its default num_hidden_layers_to_skip = 2, is a real middle layer), hidden 32, grouped-query attention
    (4 heads, 2 kv heads), rope_theta 500000 as Llama 3, initializer_range 0.2 (the un-normalised middle-layer
    states then have a standard deviation near 1.5, as a trained Llama's are O(1) and more; at the default 0.02
    they would be ~0.005 and the prompt would barely condition the DiT); tokenizer: a Llama-3-style byte-level
    BPE fast tokenizer (Llama 3's split regex + ByteLevel, `<|begin_of_text|>` prepended by a TemplateProcessing
    post-processor, the chat specials `<|start_header_id|>`, `<|end_header_id|>`, `<|eot_id|>` of the pipeline's
    DEFAULT_PROMPT_TEMPLATE, `<|end_of_text|>`, pad `<pad>`, right padding) trained on the template and captions,
    saved as transformers' generic fast tokenizer (`TokenizersBackend`, v4's PreTrainedTokenizerFast, the class
    Llama 3's own tokenizer_config names): transformers 5's `LlamaTokenizerFast` (= LlamaTokenizer) rebuilds a
    SentencePiece-style Metaspace BPE from vocab + merges when loading, which gives other ids for a byte-level
    vocabulary;
  - text_encoder_2: transformers `CLIPTextModel` (hidden 32, 2 layers, quick_gelu, 77 positions, eos_token_id =
    the tokenizer's `<|endoftext|>`, so `pooler_output` is the state at the first end-of-text token);
    tokenizer_2: transformers `CLIPTokenizer` built from a locally trained CLIP-style BPE (lower-casing, CLIP's
    split regex, ByteLevel, `</w>` word ends; bos/eos `<|startoftext|>` / `<|endoftext|>`, pad = `<|endoftext|>`,
    model_max_length 77);
  - transformer: diffusers `HunyuanVideoTransformer3DModel` (patch 1x2x2, 16 in/out channels, 2 heads x 16,
    rope_axes_dim (4, 6, 6) summing to the head dim, 2 dual-stream + 2 single-stream blocks, 2 token-refiner
    blocks, text_embed_dim = the Llama hidden size, pooled_projection_dim = the CLIP hidden size,
    guidance_embeds=True as HunyuanVideo's guidance-distilled model);
  - vae: diffusers `AutoencoderKLHunyuanVideo` with the real compression (temporal 4, spatial 8: four up/down
    blocks), block_out_channels (8, 16, 16, 16), 4 norm groups, the mid-block causal attention kept, and the real
    scaling_factor 0.476986;
  - scheduler: `FlowMatchEulerDiscreteScheduler(shift=7.0)` (hunyuanvideo-community/HunyuanVideo's config).
- `crop_start(tokenizer, template)`: the number of template tokens before the prompt, BOS included (the
  pipeline's template dict says 95 for the real Llama 3 tokenizer; the tiny one also gives 95), checked to be what
  the pipeline computes itself when crop_start is None (template tokens - 2) and to be a prefix of every
  formatted prompt's tokens.
"""

from __future__ import annotations

import os
from pathlib import Path

from .tiny import corpus, out_main, save_pipeline

# diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video.DEFAULT_PROMPT_TEMPLATE["template"], copied here only
# for the tokenizer's training corpus (everything else imports the pipeline's own).
_TEMPLATE_TEXT = (
    "<|start_header_id|>system<|end_header_id|>\n\nDescribe the video by detailing the following aspects: "
    "1. The main content and theme of the video."
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
    "4. background environment, light, style and atmosphere."
    "5. camera angles, movements, and transitions used in the video:<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
)
LLAMA_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                  "<pad>"]
# Llama 3's pre-tokenizer split (meta-llama/Meta-Llama-3-8B tokenizer.json).
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# CLIPTokenizer's pre-tokenizer split (transformers.models.clip.tokenization_clip).
CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""

TINY_LLAMA = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=1024, rope_theta=500000.0, rms_norm_eps=1e-5,
                  initializer_range=0.2)
TINY_CLIP = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 max_position_embeddings=77, projection_dim=32, hidden_act="quick_gelu", layer_norm_eps=1e-5)
TINY_DIT = dict(in_channels=16, out_channels=16, num_attention_heads=2, attention_head_dim=16, num_layers=2,
                num_single_layers=2, num_refiner_layers=2, mlp_ratio=4.0, patch_size=2, patch_size_t=1,
                qk_norm="rms_norm", guidance_embeds=True, rope_theta=256.0, rope_axes_dim=(4, 6, 6))
TINY_VAE = dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(8, 16, 16, 16),
                layers_per_block=2, norm_num_groups=4, scaling_factor=0.476986, spatial_compression_ratio=8,
                temporal_compression_ratio=4, mid_block_add_attention=True)
SHIFT = 7.0  # hunyuanvideo-community/HunyuanVideo scheduler/scheduler_config.json


def _train_corpus() -> list[str]:
    # The template (its system text, and the "\n\n{}" the pipeline's crop_start formula counts as one token) a few
    # times, so that its words are whole tokens as in the real vocabulary, plus the caption corpus.
    return [_TEMPLATE_TEXT] * 40 + [_TEMPLATE_TEXT.format(c) for c in corpus(200, seed=99)] + corpus()


def _canonical(tok, specials: list[str], extra: list[str] = ()):  # noqa: ANN001, ANN202
    """The trained BPE with a reproducible vocabulary order: the trainer numbers its initial alphabet in hash order
    (run to run), so renumber: specials (ids 0.., as trained), the sorted alphabet, then each merge's result in merge
    order. Same tokens, same merges, same segmentation; only the ids of alphabet pieces become stable."""
    import json

    from tokenizers import Tokenizer

    spec = json.loads(tok.to_str())
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in spec["model"]["merges"]]
    merged = {a + b for a, b in merges}
    trained = spec["model"]["vocab"]
    vocab = {s: i for i, s in enumerate(specials)}
    assert all(trained[s] == i for s, i in vocab.items())
    for piece in sorted((set(trained) - merged - set(specials)) | set(extra)):
        vocab[piece] = len(vocab)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    spec["model"]["vocab"] = vocab
    return Tokenizer.from_str(json.dumps(spec)), vocab, merges


def build_llama_tokenizer(vocab_size: int = 640):
    """Llama-3-style byte-level BPE (PreTrainedTokenizerFast), `<|begin_of_text|>` prepended, right padding."""
    os.environ["RAYON_NUM_THREADS"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=LLAMA_SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_train_corpus(), trainer)
    tok = _canonical(tok, LLAMA_SPECIALS)[0]
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
        special_tokens=[("<|begin_of_text|>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>",
                                   pad_token="<pad>", padding_side="right", truncation_side="right",
                                   additional_special_tokens=["<|start_header_id|>", "<|end_header_id|>",
                                                              "<|eot_id|>"])


def build_clip_tokenizer(vocab_size: int = 480):
    """A CLIPTokenizer over a locally trained CLIP-style BPE vocabulary (77 tokens, pad = <|endoftext|>)."""
    os.environ["RAYON_NUM_THREADS"] = "1"
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    tok = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix="</w>",
                               unk_token="<|endoftext|>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|startoftext|>", "<|endoftext|>"],
                                  show_progress=False, end_of_word_suffix="</w>", initial_alphabet=alphabet)
    tok.train_from_iterator(corpus(), trainer)
    # Every byte both alone and as a word end, as in CLIP's vocabulary (no unknown pieces).
    _, vocab, merges = _canonical(tok, ["<|startoftext|>", "<|endoftext|>"],
                                  [p for ch in alphabet for p in (ch, ch + "</w>")])
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def crop_start(tokenizer, template: str) -> int:  # noqa: ANN001
    """Template tokens before the prompt ("{}"), BOS included: HunyuanVideoPipeline drops these encoder rows."""
    prefix = template.split("{}")[0]
    n = len(tokenizer(prefix).input_ids)
    # The pipeline's own computation when crop_start is None: tokens of the whole template minus 2
    # ("{}" and <|eot_id|>), the template tokenized with padding="max_length" and no max_length (= no padding).
    ids = tokenizer(template, padding="max_length", return_attention_mask=False).input_ids
    if len(ids) - 2 != n:
        raise SystemExit(f"crop_start {n} != the pipeline's formula {len(ids) - 2}: the tokenizer splits the "
                         "template differently from the prompt")
    for p in corpus(40, seed=5):
        if tokenizer(template.format(p)).input_ids[:n] != tokenizer(prefix).input_ids:
            raise SystemExit(f"template prefix tokens change with the prompt {p!r}")
    return n


def build(out: Path) -> None:
    import torch
    from diffusers import (AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline,
                           HunyuanVideoTransformer3DModel)
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    assert DEFAULT_PROMPT_TEMPLATE["template"] == _TEMPLATE_TEXT, "diffusers' template changed"
    torch.set_num_threads(1)
    tokenizer = build_llama_tokenizer()
    tokenizer_2 = build_clip_tokenizer()
    torch.manual_seed(1)
    te = LlamaModel(LlamaConfig(vocab_size=len(tokenizer), **TINY_LLAMA, bos_token_id=tokenizer.bos_token_id,
                                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                tie_word_embeddings=False, attention_bias=False, mlp_bias=False)).eval()
    torch.manual_seed(5)
    te2 = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer_2), **TINY_CLIP,
                                       bos_token_id=tokenizer_2.bos_token_id, eos_token_id=tokenizer_2.eos_token_id,
                                       pad_token_id=tokenizer_2.pad_token_id)).eval()
    torch.manual_seed(2)
    tr = HunyuanVideoTransformer3DModel(**TINY_DIT, text_embed_dim=TINY_LLAMA["hidden_size"],
                                        pooled_projection_dim=TINY_CLIP["hidden_size"]).eval()
    torch.manual_seed(3)
    vae = AutoencoderKLHunyuanVideo(**TINY_VAE).eval()
    sched = FlowMatchEulerDiscreteScheduler(shift=SHIFT)
    pipe = HunyuanVideoPipeline(text_encoder=te, tokenizer=tokenizer, transformer=tr, vae=vae, scheduler=sched,
                                text_encoder_2=te2, tokenizer_2=tokenizer_2)
    n_crop = crop_start(tokenizer, DEFAULT_PROMPT_TEMPLATE["template"])
    save_pipeline(pipe, out)
    _check_reload(pipe, out)
    print(f"wrote HunyuanVideo tiny pipeline to {out} (llama vocab {len(tokenizer)}, clip vocab {len(tokenizer_2)}, "
          f"crop_start {n_crop})")


def _check_reload(pipe, out: Path) -> None:  # noqa: ANN001
    import torch
    from diffusers import HunyuanVideoPipeline
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE

    back = HunyuanVideoPipeline.from_pretrained(str(out), torch_dtype=torch.float32)
    texts = [DEFAULT_PROMPT_TEMPLATE["template"].format(p) for p in corpus(20, seed=7)] + ["", "A Cat, 123 cats!"]
    for name in ("tokenizer", "tokenizer_2"):
        a, b = getattr(pipe, name), getattr(back, name)
        for t in texts:
            if a(t).input_ids != b(t).input_ids:
                raise SystemExit(f"{name} reloaded from {out} gives other ids for {t[:40]!r}")
    if back.tokenizer.padding_side != "right" or back.tokenizer_2.pad_token != "<|endoftext|>":
        raise SystemExit("reloaded tokenizers pad differently")
    with torch.no_grad():
        for name, tok in (("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2")):
            ids = torch.tensor([getattr(back, tok)(texts[0], truncation=True, max_length=77).input_ids])
            a = getattr(pipe, name)(ids).last_hidden_state
            b = getattr(back, name)(ids).last_hidden_state
            if not torch.equal(a, b):
                raise SystemExit(f"{name} reloaded from {out} differs")


def main() -> None:
    out_main(__doc__, build)


if __name__ == "__main__":
    main()
