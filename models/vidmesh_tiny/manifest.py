"""model.toml: render (at export) and validate (anywhere: standard library only, no torch).

`python3 -m vidmesh_tiny.manifest models/vidmesh-tiny` validates a bundle: the manifest parses, every required
key is present with the right type, the numbers agree with each other, and every file's sha256 matches.
The format is documented in docs/model-bundle.md; the Rust crate `model` enforces the same rules.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path

SCHEMA_VERSION = 1
NOISE_RNG = "philox4x32-10-boxmuller"


def _toml_value(v) -> str:  # noqa: ANN001
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def render(comps: dict, tokenizer_sha256: str, cfg, latent_shift: float, latent_scale: float, version: str) -> str:  # noqa: ANN001
    L = [
        "# vidmesh model bundle manifest; format: docs/model-bundle.md",
        f"schema_version = {SCHEMA_VERSION}",
        "",
        "[model]",
        'name = "vidmesh-tiny"',
        f'version = "{version}"',
        'description = "Tiny text-to-video DiT trained on the procedural shapes world (models/), for CPU serving and tests."',
        'license = "Apache-2.0 (text encoder weights: all-MiniLM-L6-v2, Apache-2.0)"',
        "",
    ]

    def component(section: str, c: dict, extra: list[str] = ()) -> None:  # noqa: ANN001
        L.append(f"[{section}]")
        L.append(f'file = "{c["file"]}"')
        L.append(f'sha256 = "{c["sha256"]}"')
        L.extend(extra)
        L.append("inputs = [")
        L.extend(f"  {_toml_value(i)}," for i in c["inputs"])
        L.append("]")
        L.append("outputs = [")
        L.extend(f"  {_toml_value(o)}," for o in c["outputs"])
        L.append("]")
        L.append("")

    component("text_encoder", comps["text_encoder"], [
        'tokenizer = "tokenizer.json"', f'tokenizer_sha256 = "{tokenizer_sha256}"', "max_tokens = 48", "hidden_size = 384",
        'weights = "int8-per-row"'])
    L += ["[vae]", f"latent_channels = {cfg.in_channels}", "temporal_compression = 4", "spatial_compression = 4",
          f"latent_shift = {latent_shift!r}", f"latent_scale = {latent_scale!r}",
          "# Each latent frame decodes to exactly temporal_compression frames on its own: any chunking is exact.",
          "decode_chunk_independent = true", ""]
    component("vae.encoder", comps["vae_encoder"])
    component("vae.decoder", comps["vae_decoder"])
    component("dit", comps["dit"], [
        f"patch_size = {_toml_value(list(cfg.patch))}", f"hidden_size = {cfg.hidden}", f"depth = {cfg.depth}",
        f"heads = {cfg.heads}", 'prediction = "flow_velocity"', "timestep_scale = 1000.0", 'attention = "com.microsoft.MultiHeadAttention"'])
    L += ["[scheduler]", 'kind = "flow_match_euler"', "steps = 30", "shift = 2.0", "guidance = 5.0", "",
          "[video]", "default_frames = 16", "default_height = 64", "default_width = 64", "default_fps = 8",
          "frames = [8, 16, 32]", "sizes = [[64, 64], [64, 96]]  # [height, width]", "fps = [8]", "",
          "[noise]", f'rng = "{NOISE_RNG}"', 'dtype = "float32"', 'layout = "per-sample [C, T, h, w] row-major"', "",
          "[conditioning]", "# Image→video and extension pin latent frames (keyframes); edits start part-way (sdedit).",
          'modes = ["sdedit", "keyframes"]', "default_strength = 0.6", "keyframe_strength = 0.7", ""]
    return "\n".join(L)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class BundleError(ValueError):
    pass


def _need(d: dict, key: str, typ, where: str):  # noqa: ANN001, ANN202
    if key not in d:
        raise BundleError(f"{where}: missing key '{key}'")
    if not isinstance(d[key], typ):
        raise BundleError(f"{where}.{key}: expected {typ}, got {type(d[key]).__name__}")
    return d[key]


def validate(bundle: Path) -> dict:
    """Parse and check `bundle/model.toml`; raise BundleError naming the first mismatch."""
    path = bundle / "model.toml"
    try:
        m = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise BundleError(f"{path}: {e}") from e
    if _need(m, "schema_version", int, "model.toml") != SCHEMA_VERSION:
        raise BundleError(f"schema_version {m['schema_version']} unsupported (expected {SCHEMA_VERSION})")
    model = _need(m, "model", dict, "model.toml")
    _need(model, "name", str, "model")
    _need(model, "version", str, "model")
    te = _need(m, "text_encoder", dict, "model.toml")
    vae = _need(m, "vae", dict, "model.toml")
    dit = _need(m, "dit", dict, "model.toml")
    files = {"text_encoder": te, "vae.encoder": _need(vae, "encoder", dict, "vae"),
             "vae.decoder": _need(vae, "decoder", dict, "vae"), "dit": dit}
    if "passive" in m:  # optional: the classifier's passive detector (vidmesh_tiny/passive.py)
        passive = _need(m, "passive", dict, "model.toml")
        files["passive"] = passive
        _need(passive, "threshold", float, "passive")
        if _need(passive, "heldout_real_videos", int, "passive") < 1:
            raise BundleError("passive.heldout_real_videos must be >= 1 (the threshold's false-positive evidence)")
    for where, c in files.items():
        f = bundle / _need(c, "file", str, where)
        if not f.is_file():
            raise BundleError(f"{where}: file {f} not found")
        if (got := sha256(f)) != _need(c, "sha256", str, where):
            raise BundleError(f"{where}: sha256 of {f.name} is {got}, manifest says {c['sha256']}")
        for io in ("inputs", "outputs"):
            for t in _need(c, io, list, where):
                for k in ("name", "dtype", "shape"):
                    if k not in t:
                        raise BundleError(f"{where}.{io}: entry without '{k}'")
    tok = bundle / _need(te, "tokenizer", str, "text_encoder")
    if sha256(tok) != _need(te, "tokenizer_sha256", str, "text_encoder"):
        raise BundleError(f"text_encoder: sha256 of {tok.name} does not match tokenizer_sha256")
    hidden = _need(te, "hidden_size", int, "text_encoder")
    _need(te, "max_tokens", int, "text_encoder")
    te_out = te["outputs"][0]["shape"]
    if te_out[-1] != hidden:
        raise BundleError(f"text_encoder: output width {te_out[-1]} != hidden_size {hidden}")
    ch = _need(vae, "latent_channels", int, "vae")
    tc = _need(vae, "temporal_compression", int, "vae")
    sc = _need(vae, "spatial_compression", int, "vae")
    _need(vae, "latent_shift", float, "vae")
    if _need(vae, "latent_scale", float, "vae") <= 0:
        raise BundleError("vae.latent_scale must be > 0")
    if dit["inputs"][0]["shape"][1] != ch:
        raise BundleError(f"dit: latent channel dim {dit['inputs'][0]['shape'][1]} != vae.latent_channels {ch}")
    if dit["inputs"][2]["shape"][-1] != hidden:
        raise BundleError(f"dit: text_states width {dit['inputs'][2]['shape'][-1]} != text_encoder.hidden_size {hidden}")
    patch = _need(dit, "patch_size", list, "dit")
    if _need(dit, "prediction", str, "dit") not in ("flow_velocity", "epsilon", "v"):
        raise BundleError(f"dit.prediction '{dit['prediction']}' is not flow_velocity | epsilon | v")
    sch = _need(m, "scheduler", dict, "model.toml")
    _need(sch, "kind", str, "scheduler")
    if _need(sch, "steps", int, "scheduler") < 1:
        raise BundleError("scheduler.steps must be >= 1")
    _need(sch, "shift", float, "scheduler")
    _need(sch, "guidance", float, "scheduler")
    video = _need(m, "video", dict, "model.toml")
    for f in _need(video, "frames", list, "video"):
        if f % (tc * patch[0]) != 0:
            raise BundleError(f"video.frames: {f} is not a multiple of temporal_compression x patch ({tc * patch[0]})")
    for h, w in _need(video, "sizes", list, "video"):
        if h % (sc * patch[1]) or w % (sc * patch[2]):
            raise BundleError(f"video.sizes: {h}x{w} not a multiple of spatial_compression x patch")
    if [video["default_height"], video["default_width"]] not in video["sizes"]:
        raise BundleError("video: default size not among sizes")
    if video["default_frames"] not in video["frames"]:
        raise BundleError("video: default_frames not among frames")
    if _need(_need(m, "noise", dict, "model.toml"), "rng", str, "noise") != NOISE_RNG:
        raise BundleError(f"noise.rng '{m['noise']['rng']}' unsupported (expected {NOISE_RNG})")
    return m


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["models/vidmesh-tiny"]:
        try:
            m = validate(Path(arg))
        except BundleError as e:
            print(f"INVALID {arg}: {e}")
            sys.exit(1)
        print(f"ok {arg}: {m['model']['name']} {m['model']['version']}, all sha256 match")
