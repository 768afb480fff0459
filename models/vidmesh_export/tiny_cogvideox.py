"""A seeded tiny random CogVideoX 5B-style pipeline, built with diffusers' / transformers' own classes and
`save_pretrained`.

  python -m vidmesh_export.tiny_cogvideox --out models/work/cogvideox-tiny-src

Guarantees:
- The same command writes the same weights and the same tokenizer (every component is built after its own
  `torch.manual_seed`; the tokenizer is tiny.py's, trained single-threaded on a fixed, generated corpus: a
  T5-like Unigram with "<pad>" = 0, "</s>" = 1 appended to every sequence, "<unk>" = 2).
- The structure is CogVideoX-5B's (THUDM/CogVideoX-5b) at toy width:
  - text encoder: transformers' T5EncoderModel (T5 v1.1: gated-gelu, relative position buckets 32 / distance 128,
    untied embeddings), d_model 32, 2 layers;
  - transformer: CogVideoXTransformer3DModel with the 5B's switches (use_rotary_positional_embeddings=True,
    use_learned_positional_embeddings=False, patch_size 2, no patch_size_t, in/out channels 16, gelu-approximate,
    time embedding silu, flip_sin_to_cos, max_text_seq_length 226, temporal_compression_ratio 4) and the 5B's
    sample_height 60 / sample_width 90 / sample_frames 49 (they are the RoPE base grid 30 x 45 that
    CogVideoXPipeline crops from, and the pipeline's default 480 x 720 x 49; with rotary embeddings nothing is
    allocated from them); 2 layers, 2 heads x 16 (the 3D RoPE splits a head into 4 + 6 + 6 dims), time_embed_dim
    32, text_embed_dim = the T5's d_model;
  - VAE: AutoencoderKLCogVideoX with the REAL compression (4 down/up blocks: spatial 8, temporal_compression_ratio 4,
    latent_channels 16) and the 5B's scaling_factor 0.7 (no latents mean/std, no (post-)quant conv), widths
    (8, 16, 16, 16) with 4 groups and 1 layer per block instead of (128, 256, 256, 512) / 32 / 3;
  - scheduler: CogVideoXDPMScheduler with CogVideoX-5B's scheduler_config.json (COGVIDEOX_5B_SCHEDULER below).
"""

from __future__ import annotations

from pathlib import Path

from .tiny import TINY_TE, build_tokenizer, out_main, save_pipeline, t5_encoder

# THUDM/CogVideoX-5b scheduler/scheduler_config.json (CogVideoXDPMScheduler).
COGVIDEOX_5B_SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", trained_betas=None,
    clip_sample=False, clip_sample_range=1.0, sample_max_value=1.0, set_alpha_to_one=True, steps_offset=0,
    prediction_type="v_prediction", timestep_spacing="trailing", rescale_betas_zero_snr=True, snr_shift_scale=1.0,
)
# THUDM/CogVideoX-2b's CogVideoXDDIMScheduler differs in the class and snr_shift_scale = 3.0 (scheduler fixtures).
COGVIDEOX_2B_SCHEDULER = {**COGVIDEOX_5B_SCHEDULER, "snr_shift_scale": 3.0}

TINY_DIT = dict(num_attention_heads=2, attention_head_dim=16, time_embed_dim=32, num_layers=2)
TINY_VAE = dict(block_out_channels=(8, 16, 16, 16), norm_num_groups=4, layers_per_block=1)
SCALING_FACTOR = 0.7  # CogVideoX-5B's vae/config.json (the 2B's is 1.15258426)


def build_text_encoder(vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    return t5_encoder(T5Config, T5EncoderModel, vocab_size, TINY_TE, layer_norm_epsilon=1e-6)


def build_transformer():
    import torch
    from diffusers import CogVideoXTransformer3DModel

    torch.manual_seed(2)
    return CogVideoXTransformer3DModel(
        **TINY_DIT, in_channels=16, out_channels=16, flip_sin_to_cos=True, freq_shift=0, ofs_embed_dim=None,
        text_embed_dim=TINY_TE["d_model"], dropout=0.0, attention_bias=True, sample_width=90, sample_height=60,
        sample_frames=49, patch_size=2, patch_size_t=None, temporal_compression_ratio=4, max_text_seq_length=226,
        activation_fn="gelu-approximate", timestep_activation_fn="silu", norm_elementwise_affine=True, norm_eps=1e-5,
        spatial_interpolation_scale=1.875, temporal_interpolation_scale=1.0, use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=False, patch_bias=True).eval()


def build_vae():
    import torch
    from diffusers import AutoencoderKLCogVideoX

    torch.manual_seed(3)
    return AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4, **TINY_VAE, latent_channels=16, act_fn="silu", norm_eps=1e-6,
        temporal_compression_ratio=4, sample_height=480, sample_width=720, scaling_factor=SCALING_FACTOR,
        shift_factor=None, latents_mean=None, latents_std=None, force_upcast=True, use_quant_conv=False,
        use_post_quant_conv=False, invert_scale_latents=False).eval()


def build(out: Path) -> None:
    import torch
    from diffusers import CogVideoXDPMScheduler, CogVideoXPipeline

    torch.set_num_threads(1)
    tokenizer = build_tokenizer()
    pipe = CogVideoXPipeline(tokenizer=tokenizer, text_encoder=build_text_encoder(len(tokenizer)), vae=build_vae(),
                             transformer=build_transformer(),
                             scheduler=CogVideoXDPMScheduler(**COGVIDEOX_5B_SCHEDULER))
    save_pipeline(pipe, out)
    print(f"wrote CogVideoX tiny pipeline to {out} (vocab {len(tokenizer)})")


def main() -> None:
    out_main(__doc__, build)


if __name__ == "__main__":
    main()
