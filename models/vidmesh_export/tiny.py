"""Seeded tiny random Wan pipelines, built with diffusers' / transformers' own classes and `save_pretrained`.

  python -m vidmesh_export.tiny --family wan2.1 --out models/work/wan2.1-tiny-src
  python -m vidmesh_export.tiny --family wan2.2 --out models/work/wan2.2-tiny-src
  python -m vidmesh_export.tiny --family wan2.2-ti2v --out models/work/wan2.2-ti2v-tiny-src
  python -m vidmesh_export.tiny --family wan2.1-1.3b-arch --out models/work/wan2.1-1.3b-arch-src

Guarantees:
- The same command writes the same weights and the same tokenizer (every component is built after its own
  `torch.manual_seed`; the tokenizer is trained single-threaded on a fixed, generated corpus).
- The architecture is Wan's at toy width: UMT5 encoder (gated-gelu, relative position buckets), the real
  WanTransformer3DModel block structure (rope over t/h/w, qk rms-norm across heads, cross-attention norm) and the
  Wan 2.1 causal VAE (dim_mult [1, 2, 4, 4], 2 res blocks, temporal upsampling in the last two up blocks) with the
  real Wan 2.1 latents_mean / latents_std; UniPC with Wan's scheduler config.
- wan2.1-1.3b-arch = Wan2.1-T2V-1.3B's real transformer (30 layers x 1536, 12 heads x 128, ffn 8960, text_dim
  4096) and real AutoencoderKLWan (base_dim 96), with a 1-layer UMT5 at UMT5-XXL's width (d_model 4096, 64 heads,
  d_ff 10240) and the tiny tokenizer: configs only, no weights (for `models/export.sh --random-init`; see
  models/wan-1.3b-arch.sh).
- wan2.2 = Wan 2.2 A14B layout: `transformer` (high noise) + `transformer_2` (low noise), boundary_ratio 0.875,
  the same (Wan 2.1) VAE, flow_shift 12.0 (Wan 2.2 T2V-A14B's sample_shift).
- wan2.2-ti2v = Wan 2.2 TI2V-5B layout (text-to-video use): one transformer with in/out channels 48 and the
  pipeline's `expand_timesteps=True` (per-token timesteps), the Wan 2.2 VAE (AutoencoderKLWan z_dim 48,
  is_residual=True, patch_size 2, in/out channels 12 = 3 x 2 x 2, scale_factor_spatial 16, temporal 4, residual
  up/down blocks with DupUp3D / AvgDown3D shortcuts) with the real 48-value Wan2.2 VAE latents_mean / latents_std
  (Wan2.2 `vae2_2.py` / Wan-AI/Wan2.2-TI2V-5B-Diffusers vae/config.json), flow_shift 5.0 (TI2V-5B's sample_shift).
- The tokenizer is a Unigram model with UMT5's specials: "<pad>" = 0, "</s>" = 1 (appended to every sequence by a
  TemplateProcessing post-processor), "<unk>" = 2; Metaspace pre-tokenizer like SentencePiece.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

# Wan 2.1 VAE statistics (AutoencoderKLWan defaults = Wan-AI/Wan2.1-T2V-*-Diffusers vae/config.json).
WAN21_LATENTS_MEAN = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                      0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921]
WAN21_LATENTS_STD = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                     3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160]

# Wan 2.2 VAE statistics (48 channels; Wan2.2 vae2_2.py = Wan-AI/Wan2.2-TI2V-5B-Diffusers vae/config.json).
WAN22_LATENTS_MEAN = [-0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
                      -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
                      -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
                      -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
                      -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
                      0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667]
WAN22_LATENTS_STD = [0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
                     0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
                     0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
                     0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
                     0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
                     0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744]

# Wan-AI/Wan2.1-T2V-*-Diffusers scheduler/scheduler_config.json (UniPC, flow prediction).
WAN_SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", trained_betas=None,
    solver_order=2, prediction_type="flow_prediction", thresholding=False, dynamic_thresholding_ratio=0.995,
    sample_max_value=1.0, predict_x0=True, solver_type="bh2", lower_order_final=True, disable_corrector=[],
    solver_p=None, use_karras_sigmas=False, use_exponential_sigmas=False, use_beta_sigmas=False,
    use_flow_sigmas=True, flow_shift=3.0, timestep_spacing="linspace", steps_offset=0, final_sigmas_type="zero",
    rescale_betas_zero_snr=False,
)

# Toy widths (wan2.1, wan2.2) and Wan2.1-T2V-1.3B's real architecture (wan2.1-1.3b-arch).
TINY_TE = dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
TINY_DIT = dict(num_attention_heads=2, attention_head_dim=12, text_dim=32, ffn_dim=64, num_layers=2)
TINY_VAE = dict(base_dim=8)
# Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json and vae/config.json; the text encoder is UMT5-XXL's
# width (d_model 4096, 64 heads x 64, d_ff 10240) with ONE layer instead of 24 (UMT5-XXL does not fit here).
WAN13_TE = dict(d_model=4096, d_kv=64, d_ff=10240, num_layers=1, num_heads=64)
WAN13_DIT = dict(num_attention_heads=12, attention_head_dim=128, text_dim=4096, ffn_dim=8960, num_layers=30)
WAN13_VAE = dict(base_dim=96)
# The Wan 2.2 VAE at toy width (TI2V-5B's real one: base_dim 160, decoder_base_dim 256).
TINY_VAE22 = dict(base_dim=8, decoder_base_dim=8, z_dim=48, is_residual=True, patch_size=2, in_channels=12,
                  out_channels=12, scale_factor_spatial=16, scale_factor_temporal=4,
                  latents_mean=WAN22_LATENTS_MEAN, latents_std=WAN22_LATENTS_STD)

FAMILIES = {
    "wan2.1": dict(flow_shift=3.0, two_stage=False, te=TINY_TE, dit=TINY_DIT, vae=TINY_VAE, config_only=False),
    "wan2.2": dict(flow_shift=12.0, two_stage=True, boundary_ratio=0.875, te=TINY_TE, dit=TINY_DIT, vae=TINY_VAE,
                   config_only=False),
    "wan2.2-ti2v": dict(flow_shift=5.0, two_stage=False, expand_timesteps=True, te=TINY_TE, dit=TINY_DIT,
                        vae=TINY_VAE22, latent_channels=48, config_only=False),
    "wan2.1-1.3b-arch": dict(flow_shift=3.0, two_stage=False, te=WAN13_TE, dit=WAN13_DIT, vae=WAN13_VAE,
                             config_only=True),
}

_SUBJECTS = ["a cat", "a dog", "a red car", "an old man", "a small boat", "a bird", "a girl", "a horse", "two friends",
             "a robot", "a yellow train", "a white cloud", "a child", "a fox", "a cyclist", "a dancer"]
_VERBS = ["walks", "runs", "drives", "sails", "flies", "jumps", "dances", "rolls", "moves", "turns", "waits", "sleeps"]
_PLACES = ["along the beach", "through a forest", "in the city at night", "across a snowy field", "on a quiet road",
           "under a blue sky", "near the river", "inside a bright kitchen", "over the mountains", "in the rain"]
_STYLES = ["", "slow motion", "cinematic lighting", "close up shot", "wide angle", "sunset colors", "soft focus"]


def corpus(n: int = 600, seed: int = 1234) -> list[str]:
    """Generated caption-like sentences: the tokenizer's training text."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_PLACES)}"
        style = rng.choice(_STYLES)
        out.append(f"{s}, {style}" if style else s)
    return out


def build_tokenizer(vocab_size: int = 300):
    """A UMT5-like fast tokenizer (PreTrainedTokenizerFast) trained on `corpus()`."""
    os.environ["RAYON_NUM_THREADS"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    # Unigram EM sums in parallel: scores differ run to run in the last bits. Round them so that the same command
    # always writes the same file (1e-6 is far below any gap that changes a segmentation of this corpus).
    spec = json.loads(tok.to_str())
    spec["model"]["vocab"] = [[piece, round(score, 6)] for piece, score in spec["model"]["vocab"]]
    tok = Tokenizer.from_str(json.dumps(spec))
    assert (tok.token_to_id("<pad>"), tok.token_to_id("</s>"), tok.token_to_id("<unk>")) == (0, 1, 2)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=512, padding_side="right")


def t5_encoder(config_cls, model_cls, vocab_size: int, dims: dict, **extra):  # noqa: ANN001, ANN201
    """A (U)T5 v1.1 encoder after torch.manual_seed(1): gated-gelu, relative position buckets 32 / max distance
    128, no dropout, untied embeddings, "<pad>" = 0, "</s>" = 1; `dims` the widths, `extra` more config keys."""
    import torch

    torch.manual_seed(1)
    cfg = config_cls(vocab_size=vocab_size, **dims, num_decoder_layers=dims["num_layers"],
                     relative_attention_num_buckets=32, relative_attention_max_distance=128,
                     feed_forward_proj="gated-gelu", dropout_rate=0.0, pad_token_id=0, eos_token_id=1,
                     decoder_start_token_id=0, tie_word_embeddings=False, **extra)
    return model_cls(cfg).eval()


def build_text_encoder(vocab_size: int, dims: dict = TINY_TE):
    from transformers import UMT5Config, UMT5EncoderModel

    return t5_encoder(UMT5Config, UMT5EncoderModel, vocab_size, dims)


def build_transformer(seed: int, dims: dict = TINY_DIT, channels: int = 16):
    import torch
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    return WanTransformer3DModel(patch_size=(1, 2, 2), **dims, in_channels=channels, out_channels=channels,
                                 freq_dim=256,
                                 cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6,
                                 rope_max_seq_len=1024).eval()


def build_vae(dims: dict = TINY_VAE):
    import torch
    from diffusers import AutoencoderKLWan

    torch.manual_seed(3)
    if "z_dim" in dims:  # Wan 2.2 VAE: everything given
        return AutoencoderKLWan(**dims, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                temperal_downsample=[False, True, True], dropout=0.0).eval()
    return AutoencoderKLWan(**dims, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                            temperal_downsample=[False, True, True], dropout=0.0,
                            latents_mean=WAN21_LATENTS_MEAN, latents_std=WAN21_LATENTS_STD).eval()


def build(family: str, out: Path) -> None:
    import torch
    from diffusers import UniPCMultistepScheduler, WanPipeline

    fam = FAMILIES[family]
    torch.set_num_threads(1)
    tokenizer = build_tokenizer()
    # config_only: the modules are built on the meta device (no memory, no weights) and only their configs are
    # written; `models/export.sh --random-init` needs nothing else.
    with torch.device("meta" if fam["config_only"] else "cpu"):
        text_encoder = build_text_encoder(len(tokenizer), fam["te"])
        vae = build_vae(fam["vae"])
        transformer = build_transformer(2, fam["dit"], fam.get("latent_channels", 16))
        transformer_2 = build_transformer(4, fam["dit"]) if fam["two_stage"] else None
    scheduler = UniPCMultistepScheduler(**{**WAN_SCHEDULER, "flow_shift": fam["flow_shift"]})
    kwargs = dict(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                  transformer=transformer)
    if fam["two_stage"]:
        kwargs.update(transformer_2=transformer_2, boundary_ratio=fam["boundary_ratio"])
    if fam.get("expand_timesteps"):
        kwargs.update(expand_timesteps=True)
    pipe = WanPipeline(**kwargs)
    out.mkdir(parents=True, exist_ok=True)
    if fam["config_only"]:
        pipe.save_config(str(out))  # model_index.json
        tokenizer.save_pretrained(str(out / "tokenizer"))
        scheduler.save_pretrained(str(out / "scheduler"))
        text_encoder.config.save_pretrained(str(out / "text_encoder"))
        for name, m in (("transformer", transformer), ("transformer_2", transformer_2), ("vae", vae)):
            if m is not None:
                m.save_config(str(out / name))
    else:
        pipe.save_pretrained(str(out))
    what = "configs (no weights)" if fam["config_only"] else "pipeline"
    print(f"wrote {family} {what} to {out} (vocab {len(tokenizer)})")


def save_pipeline(pipe, out: Path) -> None:  # noqa: ANN001
    """pipe.save_pretrained(out), the directory created first."""
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(str(out))


def out_main(doc: str, build) -> None:  # noqa: ANN001
    """The command line of a one-pipeline tiny module (tiny_ltx, tiny_cogvideox, tiny_hunyuan): build(--out)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    build(ap.parse_args().out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=sorted(FAMILIES), default="wan2.1")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    build(a.family, a.out)


if __name__ == "__main__":
    main()
