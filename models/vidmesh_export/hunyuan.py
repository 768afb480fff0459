"""HunyuanVideo (a local diffusers HunyuanVideoPipeline directory) -> a vidmesh bundle (format 2). `main(args)` is
called by `models/export.sh` (vidmesh_export.__main__) when DIR/model_index.json names HunyuanVideoPipeline.

  models/export.sh --from models/work/hunyuan-tiny-src --out models/hunyuan-tiny

Writes BUNDLE/{tokenizer.json, tokenizer_2.json, text_encoder.onnx, text_encoder_2.onnx, dit.onnx,
vae_decoder.onnx, model.toml, export_report.json}.

Graphs:
  text_encoder    input_ids, attention_mask int64 [batch, tokens] -> hidden_states f32 [batch, tokens, D]
                  the LlamaModel's hidden_states[-(num_hidden_layers_to_skip + 1)] (skip 2, the pipeline's
                  default) with the real mask, as HunyuanVideoPipeline._get_llama_prompt_embeds; the caller
                  formats the prompt with [text_encoder].template, tokenizes (tokenizer.json truncates at
                  crop_start + max_tokens), pads to crop_start + max_tokens with the pad id, runs the graph and
                  drops the first crop_start rows of the states and of the mask (max_tokens rows remain, padding
                  states included: zero_pad_states = false).
  text_encoder_2  input_ids int64 [batch, tokens] -> pooled f32 [batch, pooled_size]
                  CLIPTextModel(input_ids).pooler_output, no mask, ids padded to 77 with the pad id
                  (`<|endoftext|>`), as HunyuanVideoPipeline._get_clip_prompt_embeds.
  dit             hidden_states f32 [batch, C, latent_frames, latent_height, latent_width], timestep f32 [batch]
                  (sigma * 1000, unrounded, as the pipeline passes t), encoder_hidden_states f32 [batch, tokens, D],
                  encoder_attention_mask int64 [batch, tokens] (converted to float32 inside, as the pipeline hands
                  the transformer its mask), pooled_projections f32 [batch, pooled_size], guidance f32 [batch]
                  (guidance_scale * 1000) -> velocity f32 [batch, C, latent_frames, latent_height, latent_width].
                  One row per step: HunyuanVideo's guidance is embedded (true_cfg_scale 1, no negative prompt).
  vae_decoder     latents f32 [1, C, latent_frames, latent_height, latent_width] (z = x / scaling_factor)
                  -> video f32 [1, 3, frames, height, width], frames = 1 + 4 (latent_frames - 1), 8x the size:
                  post_quant_conv + decoder of AutoencoderKLHunyuanVideo on one window, NOT clamped (the windows
                  are blended first; the caller clamps after, as postprocess_video's (v / 2 + 0.5).clamp(0, 1)).
Decoding ([vae] decode = "windowed"), exactly AutoencoderKLHunyuanVideo._decode with its defaults (framewise
decoding on, spatial tiling off: use_tiling is False unless a caller enables it, and the tiny sizes are below its
256-pixel threshold anyway): with T latent frames, T <= window - 1 decodes z in one run; otherwise
`windowed_decode()` below (= _temporal_tiled_decode): windows z[i : i + window] for i = 0, stride, 2 stride, ...
< T; windows after the first drop their first decoded frame; each is blended into the previous one with blend_t
(in place, so the previous one is the already-blended row); the first keeps stride * 4 + 1 frames, the others
stride * 4; the result is cut to 1 + (T - 1) * 4 frames. window = tile_sample_min_num_frames / 4 + 1,
stride = tile_sample_stride_num_frames / 4, blend = tile_sample_min_num_frames - tile_sample_stride_num_frames.

Guarantees:
- every graph is compared with PyTorch through ONNX Runtime at two shapes differing in every dynamic axis (max abs
  error <= 1e-4 with float32 weights, else the export fails and no model.toml is written); the VAE decoder also
  at 1 and 4 latent frames (the short last windows) and, through `windowed_decode()` on ORT, against
  `vae.decode(z)` (framewise) at 5, 7 and 8 latent frames and two sizes;
- the text graphs are also checked against the pipeline's own _get_llama_prompt_embeds (template, crop) and
  _get_clip_prompt_embeds on prompts tokenized with the written tokenizer.json / tokenizer_2.json;
- the VAE graph is exported with the legacy TorchScript exporter (torch.onnx.export(dynamo=False), traced with 3
  latent frames; it runs at 1 to 8 latent frames, checked above): the torch.export-based exporter writes a graph
  that fails in ONNX Runtime at any other shape than the traced one (an Expand node, "invalid expand shape", at
  2x4x10 and 5x8x6 latents; measured with torch 2.15 / onnxruntime 1.31);
- the DiT graph's one Where on boolean data (the transformer's `attention_mask.masked_fill(mask_indices, False)`,
  which ONNX Runtime's CPU Where cannot run) is rewritten as And/Or/Not, the same values (`bool_where_to_logic`);
- tokenizer.json (Llama: truncation at crop_start + max_tokens) and tokenizer_2.json (CLIP: truncation at 77) are
  the pipeline's fast tokenizers, checked id for id (text_encoder.write_tokenizer); neither pads a single
  encode, and tokenizer_2.json declares its pad token (`<|endoftext|>`) in a BatchLongest padding section
  (`declare_pad`) so that readers need not guess it; tokenizer.json's pad token is `<pad>`;
- the scheduler section is refused unless the config is plain FlowMatchEulerDiscreteScheduler (static shift, no
  dynamic shifting, no karras/exponential/beta sigmas, not inverted, not stochastic);
- model.toml is written by manifest.render and re-read and validated by manifest.validate.
"""

from __future__ import annotations

import gc
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import manifest, text_encoder
from .dit import example_inputs, signature
from .onnx_util import OPSET, Exported, Io, _rename_axes, _strip_metadata, check, export, parity, session, sha256
from .report import TOL, WEIGHTS, start

MAX_TOKENS = 256  # HunyuanVideoPipeline's max_sequence_length
CLIP_TOKENS = 77  # _get_clip_prompt_embeds' max_sequence_length
SKIP_LAYERS = 2  # _get_llama_prompt_embeds' num_hidden_layers_to_skip
DEFAULTS = "129,720,1280"  # HunyuanVideoPipeline's num_frames, height, width
FPS = 24
STEPS, GUIDANCE = 50, 6.0  # HunyuanVideoPipeline's num_inference_steps, (embedded) guidance_scale


# ---------------------------------------------------------------------------------------------------- loading
@dataclass
class Components:
    root: Path
    pipe: object  # HunyuanVideoPipeline (tokenizers, modules, scheduler)
    template: str
    crop_start: int
    scheduler_config: dict


def prompt_template(tokenizer) -> tuple[str, int]:  # noqa: ANN001
    """The pipeline's DEFAULT_PROMPT_TEMPLATE text and the crop_start for `tokenizer` (see tiny_hunyuan)."""
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE

    from .tiny_hunyuan import crop_start

    template = DEFAULT_PROMPT_TEMPLATE["template"]
    return template, crop_start(tokenizer, template)


def load(root: Path, random_init: bool = False, weights: str = "float32") -> Components:
    """HunyuanVideoPipeline from local files only: from_pretrained, or with `random_init` seeded random weights from
    the configs (tokenizers and scheduler from the directory); the Llama encoder and the DiT cast as load._cast,
    CLIP and the VAE stay float32."""
    from diffusers import AutoencoderKLHunyuanVideo, HunyuanVideoPipeline, HunyuanVideoTransformer3DModel

    from .load import TORCH_DTYPES, _cast, _random

    index = json.loads((root / "model_index.json").read_text())
    if index.get("_class_name") != "HunyuanVideoPipeline":
        raise SystemExit(f"{root}: not a HunyuanVideoPipeline directory ({index.get('_class_name')})")
    if random_init:
        from transformers import AutoConfig, AutoTokenizer, CLIPTextModel, LlamaModel

        from diffusers import FlowMatchEulerDiscreteScheduler

        torch.manual_seed(1)
        te = LlamaModel(AutoConfig.from_pretrained(str(root / "text_encoder")))
        torch.manual_seed(5)
        te2 = CLIPTextModel(AutoConfig.from_pretrained(str(root / "text_encoder_2")))
        pipe = HunyuanVideoPipeline(
            text_encoder=te, tokenizer=AutoTokenizer.from_pretrained(str(root / "tokenizer")),
            transformer=_random(HunyuanVideoTransformer3DModel, root / "transformer", 2),
            vae=_random(AutoencoderKLHunyuanVideo, root / "vae", 3),
            scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(str(root / "scheduler")),
            text_encoder_2=te2, tokenizer_2=AutoTokenizer.from_pretrained(str(root / "tokenizer_2")))
    else:
        pipe = HunyuanVideoPipeline.from_pretrained(str(root), torch_dtype=torch.float32)
    dtype = TORCH_DTYPES[weights]
    pipe.text_encoder = _cast(pipe.text_encoder.eval(), dtype)
    pipe.transformer = _cast(pipe.transformer.eval(), dtype)
    pipe.text_encoder_2.eval().float()
    pipe.vae.eval().float()
    template, crop = prompt_template(pipe.tokenizer)
    sched = json.loads((root / "scheduler" / "scheduler_config.json").read_text())
    return Components(root, pipe, template, crop, sched)


# ---------------------------------------------------------------------------------------------------- text
class LlamaStates(torch.nn.Module):
    """hidden_states[-(skip + 1)] of the LlamaModel with the given mask, float32."""

    def __init__(self, encoder: torch.nn.Module, skip: int = SKIP_LAYERS):
        super().__init__()
        self.encoder, self.skip = encoder, skip

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return out.hidden_states[-(self.skip + 1)].float()


class ClipPooled(torch.nn.Module):
    """CLIPTextModel(input_ids).pooler_output (no mask), float32."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids, output_hidden_states=False).pooler_output.float()


def _ids(tokenizer, batch: int, tokens: int, seed: int, specials: int) -> tuple:  # noqa: ANN001
    """Random ids (bos first, row b with tokens - 3b real tokens then the pad id) and the mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(specials, len(tokenizer), (batch, tokens), generator=g)
    mask = torch.ones(batch, tokens, dtype=torch.int64)
    ids[:, 0] = tokenizer.bos_token_id
    for b in range(batch):
        n = max(2, tokens - 3 * b)
        ids[b, n - 1] = tokenizer.eos_token_id
        ids[b, n:] = tokenizer.pad_token_id
        mask[b, n:] = 0
    return ids, mask


def export_text(c: Components, out: Path, external_data: bool, tol: float, max_tokens: int = MAX_TOKENS) -> tuple:
    p = c.pipe
    wrapper = LlamaStates(p.text_encoder).eval()
    d = int(p.text_encoder.config.hidden_size)
    ins = [Io("input_ids", "int64", ["batch", "tokens"]), Io("attention_mask", "int64", ["batch", "tokens"])]
    outs = [Io("hidden_states", "float32", ["batch", "tokens", d])]
    specials = len(p.tokenizer.all_special_ids)
    ex = export(wrapper, _ids(p.tokenizer, 2, 9, 0, specials), ["input_ids", "attention_mask"], ins, outs,
                out / "text_encoder.onnx", external_data)
    sess = session(out / "text_encoder.onnx")
    rows = []
    for i, (b, n) in enumerate([(1, 40), (3, c.crop_start + max_tokens)]):
        args = _ids(p.tokenizer, b, n, 10 + i, specials)
        errs = parity(wrapper, sess, args, ["input_ids", "attention_mask"], ["hidden_states"])
        rows.append({"shape": {"batch": b, "tokens": n}, "max_abs_err": check(errs, tol, f"text_encoder at {b}x{n}")})

    w2 = ClipPooled(p.text_encoder_2).eval()
    pooled = int(p.text_encoder_2.config.hidden_size)
    ins2 = [Io("input_ids", "int64", ["batch", "tokens"])]
    outs2 = [Io("pooled", "float32", ["batch", pooled])]
    spec2 = len(p.tokenizer_2.all_special_ids)
    ex2 = export(w2, (_ids(p.tokenizer_2, 2, 9, 1, spec2)[0],), ["input_ids"], ins2, outs2,
                 out / "text_encoder_2.onnx", False)
    sess2 = session(out / "text_encoder_2.onnx")
    rows2 = []
    for i, (b, n) in enumerate([(1, CLIP_TOKENS), (3, 20)]):
        args = (_ids(p.tokenizer_2, b, n, 20 + i, spec2)[0],)
        errs = parity(w2, sess2, args, ["input_ids"], ["pooled"])
        rows2.append({"shape": {"batch": b, "tokens": n}, "max_abs_err": check(errs, 1e-4, f"text_encoder_2 {b}x{n}")})
    return ex, rows, ex2, rows2


PROMPTS = ["a cat walks along the beach", "", "Two friends DANCE in the rain, slow motion; 24 fps!",
           " ".join(["a small boat sails near the river"] * 60)]  # the last is truncated by both tokenizers


def encode_llama(sess, tok, template: str, crop: int, prompt: str,  # noqa: ANN001
                 max_tokens: int = MAX_TOKENS) -> tuple:
    """The bundle's text path: tokenizer.json ids of template.format(prompt), padded with `pad` to crop + max_tokens,
    the graph, then the first `crop` rows dropped. Returns (ids after the crop, states [max_tokens, D], mask)."""
    ids = tok.encode(template.format(prompt)).ids
    pad = tok.token_to_id("<pad>")
    n = crop + max_tokens
    padded = np.full((1, n), pad, np.int64)
    padded[0, : len(ids)] = ids
    mask = (np.arange(n) < len(ids)).astype(np.int64)[None]
    h = sess.run(None, {"input_ids": padded, "attention_mask": mask})[0][0]
    return np.asarray(ids[crop:], np.int64), h[crop:], mask[0, crop:]


def declare_pad(path: Path, token: str, token_id: int) -> None:
    """Name the pad token in tokenizer_2.json: a padding section with strategy BatchLongest (a single encode is not
    padded; vidmesh reads pad_id from it and pads to max_tokens itself). CLIP pads with `<|endoftext|>`, which a
    reader could not guess from the vocabulary as it can `<pad>`."""
    from tokenizers import Tokenizer

    spec = json.loads(path.read_text(encoding="utf-8"))
    before = Tokenizer.from_str(json.dumps(spec))
    spec["padding"] = {"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": None,
                       "pad_id": int(token_id), "pad_type_id": 0, "pad_token": token}
    after = Tokenizer.from_str(json.dumps(spec))
    if after.token_to_id(token) != token_id or after.padding["pad_id"] != token_id:
        raise SystemExit(f"{path.name}: pad token {token!r} is not id {token_id}")
    for text in PROMPTS:
        if after.encode(text).ids != before.encode(text).ids:
            raise SystemExit(f"{path.name}: the padding section changed a single encode")
    path.write_text(json.dumps(spec, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def encode_clip(sess, tok, prompt: str, pad_id: int | None = None) -> tuple:  # noqa: ANN001
    """The bundle's pooled path: tokenizer_2.json ids padded to 77 with its declared pad id, the graph."""
    pad_id = tok.padding["pad_id"] if pad_id is None else pad_id
    ids = tok.encode(prompt).ids
    padded = np.full((1, CLIP_TOKENS), pad_id, np.int64)
    padded[0, : len(ids)] = ids
    return np.asarray(ids, np.int64), sess.run(None, {"input_ids": padded})[0][0]


def check_pipeline_text(c: Components, out: Path, tol: float, max_tokens: int = MAX_TOKENS) -> list[dict]:
    """ORT graphs fed tokenizer.json / tokenizer_2.json ids vs the pipeline's own prompt embedding functions."""
    from tokenizers import Tokenizer

    p = c.pipe
    tok, tok2 = Tokenizer.from_file(str(out / "tokenizer.json")), Tokenizer.from_file(str(out / "tokenizer_2.json"))
    s1, s2 = session(out / "text_encoder.onnx"), session(out / "text_encoder_2.onnx")
    e1 = e2 = 0.0
    for prompt in PROMPTS:
        with torch.no_grad():
            ref, ref_mask = p._get_llama_prompt_embeds(prompt, {"template": c.template, "crop_start": c.crop_start},
                                                       device=torch.device("cpu"), max_sequence_length=max_tokens)
            ref2 = p._get_clip_prompt_embeds(prompt, device=torch.device("cpu"))
        _, h, mask = encode_llama(s1, tok, c.template, c.crop_start, prompt, max_tokens)
        if not np.array_equal(mask, ref_mask[0].numpy()):
            raise SystemExit(f"text mask differs from the pipeline's for {prompt[:40]!r}")
        e1 = max(e1, float(np.abs(h - ref[0].float().numpy()).max()))
        _, pooled = encode_clip(s2, tok2, prompt)
        e2 = max(e2, float(np.abs(pooled - ref2[0].float().numpy()).max()))
    check({"hidden_states": e1}, tol, "text_encoder vs _get_llama_prompt_embeds")
    check({"pooled": e2}, 1e-4, "text_encoder_2 vs _get_clip_prompt_embeds")
    return [{"component": "text_encoder", "vs": "HunyuanVideoPipeline._get_llama_prompt_embeds (template, crop)",
             "shape": {"prompts": len(PROMPTS), "tokens": max_tokens}, "max_abs_err": e1},
            {"component": "text_encoder_2", "vs": "HunyuanVideoPipeline._get_clip_prompt_embeds",
             "shape": {"prompts": len(PROMPTS), "tokens": CLIP_TOKENS}, "max_abs_err": e2}]


# ---------------------------------------------------------------------------------------------------- DiT
DIT_ARGS = ["hidden_states", "timestep", "encoder_hidden_states", "encoder_attention_mask", "pooled_projections",
            "guidance"]


class HunyuanDitWrapper(torch.nn.Module):
    """velocity = transformer(...) as HunyuanVideoPipeline calls it; the int64 mask becomes the pipeline's float."""

    def __init__(self, transformer: torch.nn.Module):
        super().__init__()
        self.transformer = transformer
        self.dtype = transformer.x_embedder.proj.weight.dtype

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                encoder_attention_mask: torch.Tensor, pooled_projections: torch.Tensor,
                guidance: torch.Tensor) -> torch.Tensor:
        dt = self.dtype
        out = self.transformer(hidden_states=hidden_states.to(dt), timestep=timestep,
                               encoder_hidden_states=encoder_hidden_states.to(dt),
                               encoder_attention_mask=encoder_attention_mask.to(dt),
                               pooled_projections=pooled_projections.to(dt), guidance=guidance.to(dt),
                               return_dict=False)[0]
        return out.float()


def dit_spec(tr: torch.nn.Module) -> tuple[list[Io], list[Io]]:
    c = tr.config
    return signature(c.in_channels, c.out_channels or c.in_channels, c.text_embed_dim,
                     (Io("encoder_attention_mask", "int64", ["batch", "tokens"]),
                      Io("pooled_projections", "float32", ["batch", c.pooled_projection_dim]),
                      Io("guidance", "float32", ["batch"])))


def dit_example(tr: torch.nn.Module, batch: int, frames: int, h: int, w: int, tokens: int, seed: int) -> tuple:
    c = tr.config
    g = torch.Generator().manual_seed(seed)
    x, t, text = example_inputs(g, c.in_channels, c.text_embed_dim, [999.0, 512.5, 1.25, 250.0], batch, frames, h,
                                w, tokens)
    mask = torch.zeros(batch, tokens, dtype=torch.int64)
    for b in range(batch):  # real tokens first, then padding (the pipeline's right-padded, cropped mask)
        mask[b, : max(1, tokens - 2 * b)] = 1
    pooled = torch.randn(batch, c.pooled_projection_dim, generator=g)
    guidance = torch.tensor([6000.0, 1000.0, 3500.0, 0.0][:batch])
    return x, t, text, mask, pooled, guidance


EXPORT_SHAPE = dict(batch=2, frames=3, h=10, w=6, tokens=7)
CHECK_SHAPES = [dict(batch=1, frames=2, h=4, w=12, tokens=5), dict(batch=3, frames=5, h=8, w=4, tokens=11)]


def bool_where_to_logic(ex: Exported) -> int:
    """Rewrite every Where on boolean data (the transformer's `attention_mask.masked_fill(mask_indices, False)`;
    ONNX Runtime's CPU Where has no bool kernel) as Or(And(c, x), And(Not(c), y)): the same values. Rehashes the
    graph file; returns the number of nodes rewritten."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(ex.path), load_external_data=False)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    for n in model.graph.node:
        if n.op_type == "Constant":
            for at in n.attribute:
                if at.name == "value":
                    types[n.output[0]] = at.t.data_type
    nodes, fixed = [], 0
    for n in model.graph.node:
        if n.op_type == "Where" and types.get(n.output[0]) == TensorProto.BOOL:
            c, x, y = n.input
            o = n.output[0]
            nodes += [helper.make_node("And", [c, x], [o + "__cx"], name=n.name + "__cx"),
                      helper.make_node("Not", [c], [o + "__nc"], name=n.name + "__nc"),
                      helper.make_node("And", [o + "__nc", y], [o + "__ncy"], name=n.name + "__ncy"),
                      helper.make_node("Or", [o + "__cx", o + "__ncy"], [o], name=n.name)]
            fixed += 1
        else:
            nodes.append(n)
    if fixed:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        onnx.checker.check_model(model)
        onnx.save_model(model, str(ex.path))
        ex.files[0]["sha256"] = sha256(ex.path)
    return fixed


def export_dit(tr: torch.nn.Module, path: Path, external_data: bool, tol: float) -> tuple:
    wrapper = HunyuanDitWrapper(tr).eval()
    ins, outs = dit_spec(tr)
    ex = export(wrapper, dit_example(tr, seed=0, **EXPORT_SHAPE), DIT_ARGS, ins, outs, path, external_data)
    bool_where_to_logic(ex)
    cases = [(shp, dit_example(tr, seed=10 + i, **shp)) for i, shp in enumerate(CHECK_SHAPES)]
    with torch.no_grad():
        refs = [wrapper(*args) for _, args in cases]
    sess = session(path)
    rows = []
    for (shp, args), ref in zip(cases, refs):
        errs = parity(lambda *_, r=ref: r, sess, args, DIT_ARGS, ["velocity"])
        rows.append({"shape": shp, "max_abs_err": check(errs, tol, f"{path.name} at {shp}")})
    return ex, rows


# ---------------------------------------------------------------------------------------------------- VAE
class HunyuanVaeDecoder(torch.nn.Module):
    """One window: decoder(post_quant_conv(z)) as AutoencoderKLHunyuanVideo._decode / _temporal_tiled_decode run it
    (no clamp: windows are blended before the pipeline's postprocess clamps)."""

    def __init__(self, vae: torch.nn.Module):
        super().__init__()
        self.post_quant_conv = vae.post_quant_conv
        self.decoder = vae.decoder

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(latents))


def vae_spec(vae: torch.nn.Module) -> tuple[list[Io], list[Io]]:
    c = vae.config
    return ([Io("latents", "float32", [1, c.latent_channels, "latent_frames", "latent_height", "latent_width"])],
            [Io("video", "float32", [1, c.out_channels, "frames", "height", "width"])])


def window_params(vae: torch.nn.Module) -> dict:
    """[vae] window keys from the VAE's temporal tiling attributes (16 / 12 frames: window 5, stride 3, blend 4)."""
    tc = int(vae.temporal_compression_ratio)
    n_min, n_stride = int(vae.tile_sample_min_num_frames), int(vae.tile_sample_stride_num_frames)
    if n_min % tc or n_stride % tc:
        raise SystemExit("tile_sample_*_num_frames are not multiples of the temporal compression")
    if not vae.use_framewise_decoding or vae.use_tiling:
        raise SystemExit("expected the VAE defaults: framewise decoding on, spatial tiling off")
    return {"window": n_min // tc + 1, "window_stride": n_stride // tc, "window_blend": n_min - n_stride}


def windowed_decode(run, z: np.ndarray, window: int, stride: int, blend: int,  # noqa: ANN001
                    tc: int = 4) -> np.ndarray:
    """AutoencoderKLHunyuanVideo._decode (framewise) in numpy; run(z_window [1, C, n, h, w]) -> [1, 3, f, H, W]."""
    t = z.shape[2]
    if t <= window - 1:
        return run(z)
    rows = []
    for i in range(0, t, stride):
        d = run(np.ascontiguousarray(z[:, :, i: i + window]))
        rows.append(d[:, :, 1:] if i > 0 else d)
    out = []
    for k, d in enumerate(rows):
        if k > 0:
            a = rows[k - 1]
            e = min(a.shape[2], d.shape[2], blend)
            for x in range(e):  # blend_t, in place (rows[k] is the blended row for the next window)
                d[:, :, x] = a[:, :, a.shape[2] - e + x] * np.float32(1 - x / e) + d[:, :, x] * np.float32(x / e)
            out.append(d[:, :, : stride * tc])
        else:
            out.append(d[:, :, : stride * tc + 1])
    return np.concatenate(out, axis=2)[:, :, : 1 + (t - 1) * tc]


def export_legacy(module: torch.nn.Module, example: tuple, inputs: list[Io], outputs: list[Io], path: Path,
                  external_data: bool) -> Exported:
    """torch.onnx.export(dynamo=False) with the specs' named axes dynamic; names/axes/dtypes checked as export()."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data_name = path.name + ".data"
    for stale in (path, path.with_name(data_name)):
        stale.unlink(missing_ok=True)
    dyn = {s.name: {i: d for i, d in enumerate(s.shape) if isinstance(d, str)} for s in [*inputs, *outputs]}
    import warnings

    import onnx

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), example, str(path), dynamo=False, input_names=[i.name for i in inputs],
                          output_names=[o.name for o in outputs], dynamic_axes=dyn, opset_version=OPSET,
                          do_constant_folding=True)
    model = onnx.load(str(path))
    _rename_axes(model, inputs, outputs)
    _strip_metadata(model)
    if external_data:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
    else:
        onnx.save_model(model, str(path))
    files = [{"file": path.name, "sha256": sha256(path)}]
    if external_data:
        files.append({"file": data_name, "sha256": sha256(path.with_name(data_name))})
    return Exported(path, inputs, outputs, "torch.onnx.export(dynamo=False)", external_data, files)


VAE_EXPORT = dict(frames=3, h=6, w=4)
VAE_CHECKS = [dict(frames=2, h=4, w=10), dict(frames=5, h=8, w=6), dict(frames=1, h=6, w=8),
              dict(frames=4, h=6, w=8)]
VAE_WINDOWED = [dict(frames=5, h=6, w=8), dict(frames=7, h=8, w=6), dict(frames=8, h=4, w=4)]


def export_vae(vae: torch.nn.Module, path: Path, external_data: bool, tol: float) -> tuple:
    wrapper = HunyuanVaeDecoder(vae).eval()
    ins, outs = vae_spec(vae)
    c = vae.config
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(1, c.latent_channels, VAE_EXPORT["frames"], VAE_EXPORT["h"], VAE_EXPORT["w"], generator=g)
    ex = export_legacy(wrapper, (z0,), ins, outs, path, external_data)
    sess = session(path)
    rows = []
    for i, shp in enumerate(VAE_CHECKS):
        g = torch.Generator().manual_seed(10 + i)
        z = torch.randn(1, c.latent_channels, shp["frames"], shp["h"], shp["w"], generator=g)
        errs = parity(wrapper, sess, (z,), ["latents"], ["video"])
        rows.append({"shape": shp, "max_abs_err": check(errs, tol, f"{path.name} at {shp}")})
    win = window_params(vae)
    run = lambda z: sess.run(None, {"latents": z})[0]  # noqa: E731
    for i, shp in enumerate(VAE_WINDOWED):
        g = torch.Generator().manual_seed(20 + i)
        z = torch.randn(1, c.latent_channels, shp["frames"], shp["h"], shp["w"], generator=g)
        with torch.no_grad():
            ref = vae.decode(z).sample.numpy()
        got = windowed_decode(run, z.numpy(), win["window"], win["window_stride"], win["window_blend"],
                              int(vae.temporal_compression_ratio))
        if got.shape != ref.shape:
            raise SystemExit(f"windowed decode shape {got.shape} != vae.decode {ref.shape}")
        err = float(np.abs(got - ref).max())
        rows.append({"shape": {**shp, "windowed": True}, "vs": "vae.decode(z) (framewise), windowed_decode on ORT",
                     "max_abs_err": check({"video": err}, tol, f"windowed decode at {shp}")})
    return ex, rows


# ---------------------------------------------------------------------------------------------------- manifest
def scheduler_section(cfg: dict, steps: int, guidance: float) -> dict:
    """[scheduler] for FlowMatchEulerDiscreteScheduler as HunyuanVideoPipeline drives it: sigmas = linspace(1, 0,
    N + 1)[:-1] passed to set_timesteps, shifted statically: sigma = shift u / (1 + (shift - 1) u)."""
    if cfg.get("_class_name") != "FlowMatchEulerDiscreteScheduler":
        raise SystemExit(f"scheduler {cfg.get('_class_name')} is not FlowMatchEulerDiscreteScheduler")
    want = {"use_dynamic_shifting": False, "invert_sigmas": False, "use_karras_sigmas": False,
            "use_exponential_sigmas": False, "use_beta_sigmas": False, "stochastic_sampling": False,
            "num_train_timesteps": 1000, "shift_terminal": None}
    bad = manifest.mismatches(cfg, want)
    if bad:
        raise SystemExit(f"scheduler is not the flow_match_euler this format defines: {bad}")
    return {"kind": "flow_match_euler", "steps": steps, "shift": float(cfg.get("shift", 1.0)), "guidance": guidance}


def main(a) -> None:  # noqa: ANN001, PLR0915
    torch.set_num_threads(1)  # the machine is shared
    weights = WEIGHTS[a.weights]
    tol = TOL[weights]
    max_tokens = a.max_tokens or MAX_TOKENS
    t0 = time.time()
    c = load(a.src, random_init=a.random_init, weights=weights)
    p = c.pipe
    out = a.out
    report = start(a, weights, t0, crop_start=c.crop_start)

    # ---- text encoders (+ tokenizers: Llama truncated at crop_start + max_tokens, CLIP at 77)
    text_encoder.write_tokenizer(p.tokenizer, out / "tokenizer.json", c.crop_start + max_tokens)
    text_encoder.write_tokenizer(p.tokenizer_2, out / "tokenizer_2.json", CLIP_TOKENS)
    declare_pad(out / "tokenizer_2.json", p.tokenizer_2.pad_token, p.tokenizer_2.pad_token_id)
    t = time.time()
    te_ex, te_rows, te2_ex, te2_rows = export_text(c, out, a.external_data, tol, max_tokens)
    report.add("text_encoder", te_ex, te_rows, time.time() - t)
    report.add("text_encoder_2", te2_ex, te2_rows, 0.0)
    for r in check_pipeline_text(c, out, tol, max_tokens):
        report.rows.append({**r, "exporter": te_ex.exporter})
    te_hidden = int(p.text_encoder.config.hidden_size)
    pooled_size = int(p.text_encoder_2.config.hidden_size)
    p.text_encoder = p.text_encoder_2 = None
    gc.collect()

    # ---- DiT
    dit_ex = report.timed("dit", export_dit, p.transformer, out / "dit.onnx", a.external_data, tol)

    # ---- VAE decoder
    vae = p.vae
    vae_ex = report.timed("vae_decoder", export_vae, vae, out / "vae_decoder.onnx", a.external_data, 1e-4)

    # ---- manifest
    frames, height, width, steps, guidance = manifest.request_defaults(a, DEFAULTS, STEPS, GUIDANCE)
    tc, vc = p.transformer.config, vae.config
    tr_ratio, sp_ratio = int(vae.temporal_compression_ratio), int(vae.spatial_compression_ratio)
    grid = sp_ratio * tc.patch_size
    te, d = manifest.component(te_ex, weights), manifest.component(dit_ex, weights)
    te2 = manifest.component(te2_ex, "float32")
    m = {
        **manifest.header(a, out, "HunyuanVideo", "HunyuanVideoPipeline"),
        "text_encoder": manifest.text_encoder_section(
            te, out, max_tokens, te_hidden, prompt_clean="none", encoder_mask=True, zero_pad_states=False,
            dit_mask=True, extra={"template": c.template, "crop_start": c.crop_start}, states="hidden_states"),
        "text_encoder_2": {**{k: te2[k] for k in ("file", "sha256")}, "weights": "float32",
                           "tokenizer": "tokenizer_2.json",
                           "tokenizer_sha256": manifest.sha256(out / "tokenizer_2.json"),
                           "max_tokens": CLIP_TOKENS, "pooled_size": pooled_size, "padding": "max_length",
                           "names": {"input_ids": "input_ids", "pooled": "pooled"},
                           "inputs": te2["inputs"], "outputs": te2["outputs"]},
        "vae": {"latent_channels": vc.latent_channels, "temporal_compression": tr_ratio,
                "spatial_compression": sp_ratio, "scaling_factor": float(vc.scaling_factor),
                "frame_rule": "first_frame_separate", "decode": "windowed", **window_params(vae),
                "names": {"latents": "latents", "video": "video"}},
        "vae_decoder": manifest.component(vae_ex, "float32"),
        "dit": {**manifest.graph_keys(d), "weights": weights,
                "patch_size": [tc.patch_size_t, tc.patch_size, tc.patch_size],
                "hidden_size": tc.num_attention_heads * tc.attention_head_dim,
                "depth": tc.num_layers + tc.num_single_layers, "heads": tc.num_attention_heads,
                "prediction": "flow_velocity", "timestep_scale": 1000.0, "timestep_rounding": "none",
                "guidance": "embedded",
                "names": {"latents": "hidden_states", "timestep": "timestep",
                          "text_states": "encoder_hidden_states", "text_mask": "encoder_attention_mask",
                          "output": "velocity"},
                "extra_inputs": [{"name": "pooled_projections", "source": "pooled_text"},
                                 {"name": "guidance", "source": "guidance_x1000"}],
                "inputs": d["inputs"], "outputs": d["outputs"]},
        "scheduler": scheduler_section(c.scheduler_config, steps, guidance),
        "video": {"default_frames": frames, "default_height": height, "default_width": width, "default_fps": FPS,
                  "frames": {"min": 1 + tr_ratio, "max": 129, "step": tr_ratio * tc.patch_size_t},
                  "height": {"min": 2 * grid, "max": 1280, "step": grid},
                  "width": {"min": 2 * grid, "max": 1280, "step": grid}, "fps": [FPS]},
    }
    manifest.write(out, m)
    report.finish(out, (16, 72))
