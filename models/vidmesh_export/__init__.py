"""vidmesh_export: diffusers pipeline directory -> vidmesh model bundle (format 2, docs/model-bundle.md).

Modules:
  __main__     CLI of models/export.sh (`python -m vidmesh_export --from DIR --out BUNDLE ...`)
  load         loads (or random-initialises) the pipeline's components from a local diffusers directory
  onnx_util    torch -> ONNX export with dynamic axes, ONNX Runtime sessions, parity measurement, file hashes
  text_encoder UMT5 encoder wrapper, export and check
  dit          WanTransformer3DModel wrapper, export and check (dynamism checked at two shapes)
  vae          stateful VAE decoder: first-frame graph + step graph with a normalised feature cache
  manifest     model.toml (schema_version = 2) rendering, validation and the tables every family shares
  report       the exporters' common run: --weights / tolerances, bundle directory, export_report.json, summary
  replay       numpy-only VAE decode steps (stateful chain, CogVideoX chunks, frames) for goldens and CI's tests
  tiny         seeded tiny random Wan 2.1 / 2.2 pipelines built with diffusers' own classes; the tokenizer, T5
               encoder, saving and --out command line the other tiny modules share
  goldens      golden fixtures from diffusers' own WanPipeline (fp32, CPU); the command line, case saving and
               cases.json writing every family's goldens share
  ltx          LTX-Video (LTXPipeline) exporter: T5 text encoder, DiT wrapper (packing, fps rope scale),
               whole-video timestep-conditioned VAE decoder
  tiny_ltx     seeded tiny random LTXPipeline (real 8x32x32 VAE compression)
  goldens_ltx  golden fixtures from diffusers' own LTXPipeline (fp32, CPU)
  hunyuan      HunyuanVideo (HunyuanVideoPipeline) exporter: Llama + CLIP text encoders (template, crop), DiT
               wrapper (mask, pooled text, embedded guidance), windowed VAE decoder graph + numpy blending
  tiny_hunyuan seeded tiny random HunyuanVideoPipeline (real 4x8x8 VAE compression, local Llama-3/CLIP BPEs)
  goldens_hunyuan  golden fixtures from diffusers' own HunyuanVideoPipeline (fp32, CPU)
  cogvideox    CogVideoX 5B-style (CogVideoXPipeline) exporter: T5 text encoder, DiT wrapper (in-graph 3D RoPE),
               stateful chunked VAE decoder pair
  tiny_cogvideox  seeded tiny random CogVideoXPipeline (real 4x8x8 VAE compression)
  goldens_cogvideox  golden fixtures from diffusers' own CogVideoXPipeline (fp32, CPU)

Nothing here is needed by the services; the bundles and fixtures it writes are. CI's torch-free tests import only
`replay` (numpy).
"""
