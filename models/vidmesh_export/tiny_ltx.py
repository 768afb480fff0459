"""A seeded tiny random LTX-Video pipeline (diffusers LTXPipeline), built with diffusers' / transformers' own classes
and `save_pipeline`'s `save_pretrained`.

  python -m vidmesh_export.tiny_ltx --out models/work/ltx-tiny-src

Guarantees:
- The same command writes the same weights and the same tokenizer (every component is built after its own
  `torch.manual_seed`; the tokenizer is tiny.py's, trained single-threaded on a fixed, generated corpus).
- Text encoder: transformers' T5EncoderModel (T5 v1.1: gated-gelu, relative position buckets 32 / max distance
  128, untied embeddings) at toy width (d_model 32, 2 layers, 4 heads x 8); the tokenizer is a Unigram model with
  T5's specials "<pad>" = 0, "</s>" = 1 (appended to every sequence), "<unk>" = 2; model_max_length 128
  (LTXPipeline's max_sequence_length).
- Transformer: diffusers' LTXVideoTransformer3DModel at toy width: 2 layers, 2 heads x 16 (inner dim 32, so that
  the rope's `dim % 6` padding is exercised as in the real 2048-wide model), cross_attention_dim = inner dim,
  caption_channels = the T5 width, patch 1 x 1 (as LTX-Video), in/out channels = the VAE's latent channels (16).
- VAE: diffusers' AutoencoderKLLTXVideo with LTX-Video 0.9.5 / 0.9.7's block structure (diffusers'
  scripts/convert_ltx_to_diffusers.py `get_vae_config("0.9.5")`): patch_size 4, four LTXVideo095DownBlock3D with
  downsample types spatial / temporal / spatiotemporal / spatiotemporal, three up blocks with residual
  depth-to-space upsamplers (upsample_factor 2), decoder_inject_noise all false, decoder non-causal,
  timestep_conditioning true, spatial_compression_ratio 32, temporal_compression_ratio 8: the REAL 8 x 32 x 32
  compression. Only the widths (block_out_channels (8, 16, 16, 32, 32), decoder (8, 16, 32)), the layer counts
  (1 per block) and latent_channels (16 instead of 128) are shrunk. latents_mean / latents_std are seeded
  non-trivial per-channel values (mean in [-0.6, 0.6], std in [0.4, 2.5], 4 decimals), scaling_factor 1.0 as the
  real config.
- Scheduler: FlowMatchEulerDiscreteScheduler with LTX-Video's config (diffusers' conversion script and
  Lightricks/LTX-Video scheduler_config.json): use_dynamic_shifting, base_shift 0.95, max_shift 2.05,
  base_image_seq_len 1024, max_image_seq_len 4096, shift_terminal 0.1, shift 1.0 (LTXPipeline reads exactly these
  four dynamic-shift values for calculate_shift and passes sigmas = linspace(1, 1/N, N) and mu to set_timesteps).
"""

from __future__ import annotations

from pathlib import Path

from .tiny import TINY_TE, build_tokenizer, out_main, save_pipeline, t5_encoder

TINY_DIT = dict(num_attention_heads=2, attention_head_dim=16, num_layers=2)
LATENT_CHANNELS = 16
# LTX-Video 0.9.5 / 0.9.7 VAE structure (diffusers' convert_ltx_to_diffusers.get_vae_config), widths shrunk.
TINY_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS,
    block_out_channels=(8, 16, 16, 32, 32),  # real: (128, 256, 512, 1024, 2048)
    down_block_types=("LTXVideo095DownBlock3D",) * 4,
    decoder_block_out_channels=(8, 16, 32),  # real: (256, 512, 1024)
    layers_per_block=(1, 1, 1, 1, 1),  # real: (4, 6, 6, 2, 2)
    decoder_layers_per_block=(1, 1, 1, 1),  # real: (5, 5, 5, 5)
    spatio_temporal_scaling=(True, True, True, True),
    decoder_spatio_temporal_scaling=(True, True, True),
    decoder_inject_noise=(False, False, False, False),
    downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    upsample_residual=(True, True, True),
    upsample_factor=(2, 2, 2),
    timestep_conditioning=True,
    patch_size=4, patch_size_t=1, resnet_norm_eps=1e-6, scaling_factor=1.0,
    encoder_causal=True, decoder_causal=False,
    spatial_compression_ratio=32, temporal_compression_ratio=8,
)
# Lightricks/LTX-Video scheduler/scheduler_config.json (= diffusers' conversion script's scheduler).
LTX_SCHEDULER = dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
                     base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1, invert_sigmas=False,
                     use_karras_sigmas=False, use_exponential_sigmas=False, use_beta_sigmas=False,
                     time_shift_type="exponential", stochastic_sampling=False)
MAX_TOKENS = 128  # LTXPipeline's max_sequence_length


def build_text_encoder(vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    return t5_encoder(T5Config, T5EncoderModel, vocab_size, TINY_TE)


def build_transformer(caption_channels: int):
    import torch
    from diffusers import LTXVideoTransformer3DModel

    torch.manual_seed(2)
    inner = TINY_DIT["num_attention_heads"] * TINY_DIT["attention_head_dim"]
    return LTXVideoTransformer3DModel(in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, patch_size=1,
                                      patch_size_t=1, **TINY_DIT, cross_attention_dim=inner,
                                      caption_channels=caption_channels).eval()


def build_vae():
    import torch
    from diffusers import AutoencoderKLLTXVideo

    torch.manual_seed(3)
    vae = AutoencoderKLLTXVideo(**TINY_VAE).eval()
    g = torch.Generator().manual_seed(33)
    mean = torch.round((torch.rand(LATENT_CHANNELS, generator=g) * 1.2 - 0.6) * 1e4) / 1e4
    std = torch.round((torch.rand(LATENT_CHANNELS, generator=g) * 2.1 + 0.4) * 1e4) / 1e4
    with torch.no_grad():
        vae.latents_mean.copy_(mean)
        vae.latents_std.copy_(std)
    return vae


def build(out: Path) -> None:
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, LTXPipeline

    torch.set_num_threads(1)
    tokenizer = build_tokenizer()
    tokenizer.model_max_length = MAX_TOKENS
    text_encoder = build_text_encoder(len(tokenizer))
    transformer = build_transformer(text_encoder.config.d_model)
    vae = build_vae()
    scheduler = FlowMatchEulerDiscreteScheduler(**LTX_SCHEDULER)
    pipe = LTXPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                       transformer=transformer)
    if (pipe.vae_spatial_compression_ratio, pipe.vae_temporal_compression_ratio) != (32, 8):
        raise SystemExit("tiny LTX VAE does not compress 8 x 32 x 32")
    save_pipeline(pipe, out)
    print(f"wrote LTX-Video tiny pipeline to {out} (vocab {len(tokenizer)})")


def main() -> None:
    out_main(__doc__, build)


if __name__ == "__main__":
    main()
