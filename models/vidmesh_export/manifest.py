"""model.toml, schema_version = 2 (docs/model-bundle.md, "Format 2"), for an exported pipeline of any family.

Guarantees:
- Every value comes from the pipeline's configs or the export itself (graph names and signatures, file hashes);
  the only chosen values are the request defaults and ranges in [video]/[scheduler] (CLI flags, with
  WanPipeline's own defaults) and [model] text.
- Only keys the format defines are written (the Rust reader denies unknown keys).
- `validate()` re-reads the written manifest with tomllib, re-hashes every file it names and checks every
  component's declared inputs/outputs against its ONNX graph (names, dtypes, ranks, fixed sizes), and that every
  tensor named in `[vae].names`, `[dit].names` and `[dit].extra_inputs` is one of that graph's inputs/outputs.
- `[vae.decoder_step]` (and `cache`) are written and checked only when present: a `decode = "whole"` VAE
  (LTX-Video) has one decoder graph.
- `[text_encoder_2]` (HunyuanVideo's pooled CLIP encoder) is written and checked (graph signature, file and
  tokenizer sha256, `names`) when present.
- The pieces every family's manifest shares are built here: `header()` (generated_by, [model]),
  `text_encoder_section()`, `graph_keys()` (a graph table's file / sha256 / external_data); `request_defaults()`
  reads the request defaults from the command line; `mismatches()` lists the scheduler config values a family
  refuses; `write()` renders and validates.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import onnx

from .onnx_util import DTYPE_NAMES, sha256

SCHEMA_VERSION = 2
NOISE = {"rng": "philox4x32-10-boxmuller", "dtype": "float32", "layout": "per-sample [C, T, h, w] row-major"}


def _v(v) -> str:  # noqa: ANN001
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_v(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_v(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def _table(lines: list[str], name: str, items: dict) -> None:
    lines.append(f"[{name}]")
    for k, v in items.items():
        if v is None:
            continue
        if isinstance(v, list) and v and isinstance(v[0], dict):  # arrays of inline tables: one per line
            lines.append(f"{k} = [")
            lines.extend(f"  {_v(x)}," for x in v)
            lines.append("]")
        else:
            lines.append(f"{k} = {_v(v)}")
    lines.append("")


def component(exported, weights: str) -> dict:  # noqa: ANN001
    """file / sha256 / external_data / weights / inputs / outputs of one exported graph."""
    files = exported.files
    d = {"file": files[0]["file"], "sha256": files[0]["sha256"]}
    if len(files) > 1:
        d["external_data"] = files[1:]
    d["weights"] = weights
    d["inputs"] = [i.toml() for i in exported.inputs]
    d["outputs"] = [o.toml() for o in exported.outputs]
    return d


def graph_keys(d: dict) -> dict:
    """file / sha256 / external_data (if any) of `component()`'s dict: the head of every graph's table."""
    return {k: d[k] for k in ("file", "sha256", "external_data") if k in d}


def header(a, out: Path, family: str, pipeline: str) -> dict:  # noqa: ANN001
    """generated_by and [model] from the export's arguments: name (default: the bundle directory's), version,
    description (default: "<family> text-to-video (diffusers <pipeline> '<source dir>') exported ..."), license."""
    random = " --random-init" if a.random_init else ""
    return {
        "generated_by": f"--from {a.src.name}{random} --weights {a.weights}",
        "model": {"name": a.name or out.resolve().name, "version": a.version,
                  "description": a.description or (
                      f"{family} text-to-video (diffusers {pipeline} '{a.src.name}'"
                      f"{', random weights' if a.random_init else ''}) exported to ONNX for vidmesh."),
                  "license": a.license},
    }


def text_encoder_section(te: dict, out: Path, max_tokens: int, hidden: int, *, prompt_clean: str,  # noqa: PLR0913
                         encoder_mask: bool, zero_pad_states: bool, dit_mask: bool, extra: dict | None = None,
                         states: str = "last_hidden_state") -> dict:
    """[text_encoder] for `te` = component(...) and out/tokenizer.json (padding = "max_length"); `extra` goes after
    hidden_size, `states` is the name of the graph's states output."""
    return {**graph_keys(te), "weights": te["weights"], "tokenizer": "tokenizer.json",
            "tokenizer_sha256": sha256(out / "tokenizer.json"), "max_tokens": max_tokens, "hidden_size": hidden,
            **(extra or {}), "prompt_clean": prompt_clean, "padding": "max_length", "encoder_mask": encoder_mask,
            "zero_pad_states": zero_pad_states, "dit_mask": dit_mask,
            "names": {"input_ids": "input_ids", "attention_mask": "attention_mask", "hidden_states": states},
            "inputs": te["inputs"], "outputs": te["outputs"]}


def request_defaults(a, defaults: str, steps: int, guidance: float) -> tuple[int, int, int, int, float]:  # noqa: ANN001
    """(frames, height, width, steps, guidance) for [video] / [scheduler]: --defaults FRAMES,HEIGHT,WIDTH, --steps
    and --guidance when given, else the family's `defaults`, `steps`, `guidance`."""
    frames, height, width = (int(x) for x in (a.defaults or defaults).split(","))
    return frames, height, width, a.steps or steps, a.guidance if a.guidance is not None else guidance


def mismatches(cfg: dict, want: dict) -> dict:
    """The keys of `want` whose value in the pipeline config `cfg` differs (an absent key counts as wanted)."""
    return {k: cfg.get(k) for k, v in want.items() if cfg.get(k, v) != v}


def _split(c: dict) -> tuple[dict, dict]:
    """(keys before the signature, the signature): keeps the signature at the end of each table for readability."""
    head = {k: v for k, v in c.items() if k not in ("inputs", "outputs")}
    return head, {"inputs": c["inputs"], "outputs": c["outputs"]}


def render(m: dict) -> str:
    """m: {model, text_encoder, vae, vae_decoder, vae_decoder_step, dit, dit2?, scheduler, video} -> TOML text."""
    L = ["# vidmesh model bundle manifest; format: docs/model-bundle.md (format 2).",
         f"# Written by models/export.sh ({m['generated_by']}).",
         f"schema_version = {SCHEMA_VERSION}", ""]
    _table(L, "model", m["model"])
    head, sig = _split(m["text_encoder"])
    _table(L, "text_encoder", {**head, **sig})
    if "text_encoder_2" in m:  # HunyuanVideo's CLIP (pooled text)
        head, sig = _split(m["text_encoder_2"])
        _table(L, "text_encoder_2", {**head, **sig})
    _table(L, "vae", m["vae"])
    for key, section in (("vae_decoder", "vae.decoder"), ("vae_decoder_step", "vae.decoder_step")):
        if key in m:  # decoder_step: stateful VAEs only (LTX-Video decodes the whole video in one graph)
            _table(L, section, m[key])
    for key in ("dit", "dit2"):
        if key in m:
            head, sig = _split(m[key])
            _table(L, key, {**head, **sig})
    _table(L, "scheduler", m["scheduler"])
    _table(L, "video", m["video"])
    _table(L, "noise", NOISE)
    return "\n".join(L).rstrip() + "\n"


def _check_component(bundle: Path, name: str, c: dict) -> None:
    for f in [{"file": c["file"], "sha256": c["sha256"]}, *c.get("external_data", [])]:
        if sha256(bundle / f["file"]) != f["sha256"]:
            raise SystemExit(f"{name}: sha256 of {f['file']} does not match")
    g = onnx.load(str(bundle / c["file"]), load_external_data=False).graph
    for kind, values in (("inputs", g.input), ("outputs", g.output)):
        declared = c[kind]
        if [v.name for v in values] != [d["name"] for d in declared]:
            raise SystemExit(f"{name}.{kind}: graph {[v.name for v in values]} != manifest")
        for v, d in zip(values, declared):
            tt = v.type.tensor_type
            dims = [x.dim_value if x.HasField("dim_value") else x.dim_param for x in tt.shape.dim]
            if DTYPE_NAMES.get(tt.elem_type) != d["dtype"] or dims != d["shape"]:
                raise SystemExit(f"{name}.{d['name']}: graph {DTYPE_NAMES.get(tt.elem_type)} {dims} != {d}")


def _check_names(what: str, names: dict, c: dict) -> None:
    """Every non-empty tensor name in `names` is among the component's declared inputs or outputs."""
    declared = {d["name"] for d in c["inputs"]} | {d["name"] for d in c["outputs"]}
    for key, name in names.items():
        if name and name not in declared:
            raise SystemExit(f"{what}.{key} = {name!r} is not an input or output of that graph")


def write(bundle: Path, m: dict) -> dict:
    """Render `m` to bundle/model.toml and validate it."""
    (bundle / "model.toml").write_text(render(m))
    return validate(bundle)


def validate(bundle: Path) -> dict:
    m = tomllib.loads((bundle / "model.toml").read_text())
    assert m["schema_version"] == SCHEMA_VERSION
    te = m["text_encoder"]
    if sha256(bundle / te["tokenizer"]) != te["tokenizer_sha256"]:
        raise SystemExit("tokenizer sha256 does not match")
    if "text_encoder_2" in m and sha256(bundle / m["text_encoder_2"]["tokenizer"]) \
            != m["text_encoder_2"]["tokenizer_sha256"]:
        raise SystemExit("text_encoder_2 tokenizer sha256 does not match")
    comps = {"text_encoder": te, **({"text_encoder_2": m["text_encoder_2"]} if "text_encoder_2" in m else {}),
             "vae.decoder": m["vae"]["decoder"],
             **({"vae.decoder_step": m["vae"]["decoder_step"]} if "decoder_step" in m["vae"] else {}),
             "dit": m["dit"], **({"dit2": m["dit2"]} if "dit2" in m else {})}
    for name, c in comps.items():
        _check_component(bundle, name, c)
    vae = m["vae"]
    if vae.get("decode") == "stateful" and "decoder_step" not in vae:
        raise SystemExit("vae.decode = stateful needs [vae.decoder_step]")
    _check_names("vae.names", vae.get("names", {}), vae["decoder"])
    for key in ("text_encoder", "text_encoder_2"):
        if key in m and "names" in m[key]:
            _check_names(f"{key}.names", m[key]["names"], m[key])
    for key in ("dit", "dit2"):
        if key in m:
            _check_names(f"{key}.names", m[key].get("names", {}), m[key])
            _check_names(f"{key}.extra_inputs", {e["name"]: e["name"] for e in m[key].get("extra_inputs", [])},
                         m[key])
    step_in = [i["name"] for i in vae.get("decoder_step", {}).get("inputs", [])]
    for k, c in enumerate(vae.get("cache", [])):
        if step_in[1 + k] != c["input"] or vae["decoder_step"]["outputs"][1 + k]["name"] != c["output"] \
                or vae["decoder"]["outputs"][1 + k]["name"] != c["output"]:
            raise SystemExit(f"vae.cache[{k}] does not match the graphs' cache tensors")
    if te["hidden_size"] != m["dit"]["inputs"][2]["shape"][2]:
        raise SystemExit("text_encoder.hidden_size != the DiT's text_states width")
    return m
