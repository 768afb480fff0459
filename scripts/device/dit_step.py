"""One DiT denoising step at Wan2.1-T2V-1.3B's real size on the lent GPU: vidmesh/ONNX Runtime against PyTorch.

Run by scripts/device/dit-step.sh (which says how the pieces travel); each subcommand also runs alone:
  all       --runner BIN --work DIR --out DIR   export, then the vidmesh runner's variants, then PyTorch, then report
  export    --work DIR                          seeded random init, ONNX export (+ ORT fusions) to DIR/dit.onnx
  ort       --runner BIN --work DIR             vidmesh/ORT on CUDA: host tensors, IO binding, IO binding + CUDA graph
  torch     --work DIR                          PyTorch eager and torch.compile on the same weights
  report    --work DIR [--out DIR]              the markdown table (ms/step, MFU, host<->device bytes, peak memory)
  flops     [--frames --height --width --batch --tokens]   FLOPs of one step, from the config
  peak      --gpu NAME                          dense fp16/bf16 tensor-core peak of a GPU, from its name
  check-config --repo DIR                       this file's Wan config equals models/vidmesh_export/tiny.py's
  selftest                                      the torch-free parts (what the dry run runs)

Guarantees:
- The transformer is WanTransformer3DModel with Wan2.1-T2V-1.3B's config as the repo exports it (WAN13 below,
  checked against models/vidmesh_export/tiny.py by `check-config`), random weights after torch.manual_seed(2) (the
  repo's random-init seed for the transformer), cast to float16 except diffusers' `_keep_in_fp32_modules`, as
  models/vidmesh_export/load.py does. `export` and `torch` build it the same way and record a fingerprint of the
  weights; `report` says whether the two match.
- The graph is the repo's DiT signature (hidden_states, timestep, encoder_hidden_states -> velocity, float32 IO,
  dynamic batch/frames/height/width/tokens), exported at opset 18, with its attention rewritten by onnxscript's ORT
  fusions (SDPA -> com.microsoft.MultiHeadAttention: without it ORT materialises 12 x 32760^2 attention scores per
  row); export.json records the fusion and op counts and each phase's seconds.
- The step: CFG batch 2 (two rows), latents [2, 16, 21, 60, 104] (81 frames at 480x832), 512 text tokens of width
  4096, the timestep changing every step. Times are medians of --iters steps after --warmup steps, each step
  synchronised; the first step is reported apart (CUDA graph capture and torch.compile happen there).
- FLOPs count the matrix products only (2 per multiply-add: projections, attention scores and values, FFN,
  embeddings); MFU = FLOPs per step / step time / the GPU's dense fp16 tensor-core peak looked up by its name.
- Host<->device bytes per step are what each path hands over per step (the runner counts its copies; PyTorch
  copies the timestep in, as the IO-bound paths do). Peak GPU memory: device memory in use (NVML, sampled every
  50 ms) during the variant's steps minus what was in use before its process started, so it includes that
  process's CUDA context; PyTorch's allocator peaks are in the note. The ORT variants' last velocities are compared
  with the host-tensor run's (same inputs and timesteps).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

# Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json, as models/vidmesh_export/tiny.py builds it
# (WAN13_DIT and build_transformer's fixed arguments).
WAN13 = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
             text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
             qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
# `--small`: the same architecture at toy width, for a CPU smoke test of this script (`--device cpu`).
SMALL = dict(WAN13, num_layers=2, num_attention_heads=2, attention_head_dim=16, ffn_dim=64, text_dim=32)
CFG = WAN13  # what the subcommands build and count: WAN13, or SMALL with --small
SEED = 2  # models/vidmesh_export/load.py: the transformer's random init follows torch.manual_seed(2)
VAE_T, VAE_S = 4, 8  # Wan 2.1 VAE: 4x temporal, 8x spatial compression
SIZE = dict(frames=81, height=480, width=832, batch=2, tokens=512)

# Dense (no sparsity) fp16/bf16 tensor-core peaks in TFLOP/s, from NVIDIA's data sheets; first match wins.
PEAKS = [("H100 NVL", 835.5), ("H100 PCIE", 756.5), ("H100", 989.4), ("H200 NVL", 835.5), ("H200", 989.4),
         ("GH200", 989.4), ("B200", 2250.0), ("B100", 1750.0), ("A100", 312.0), ("L40S", 362.1), ("L40", 181.0),
         ("L4", 121.0), ("A10G", 70.0), ("A10", 125.0)]


def latent_shape(frames: int, height: int, width: int, batch: int, channels: int = 16) -> list[int]:
    return [batch, channels, (frames - 1) // VAE_T + 1, height // VAE_S, width // VAE_S]


def flops(frames: int = 81, height: int = 480, width: int = 832, batch: int = 2, tokens: int = 512,
          cfg: dict | None = None) -> dict:
    """Matrix-product FLOPs of one DiT call (all rows), by part (`cfg`: CFG by default)."""
    cfg = cfg or CFG
    _, c, t, h, w = latent_shape(frames, height, width, batch, cfg["in_channels"])
    pt, ph, pw = cfg["patch_size"]
    s = (t // pt) * (h // ph) * (w // pw)  # video tokens per row
    d, f, n, l = cfg["num_attention_heads"] * cfg["attention_head_dim"], cfg["ffn_dim"], cfg["num_layers"], tokens
    mm = lambda m, k, o: 2 * m * k * o  # noqa: E731  (m x k) @ (k x o)
    block = {
        "self_attention_projections": 4 * mm(s, d, d),
        "self_attention_scores_and_values": 2 * mm(s, d, s),
        "cross_attention_projections": 2 * mm(s, d, d) + 2 * mm(l, d, d),
        "cross_attention_scores_and_values": 2 * mm(s, d, l),
        "ffn": mm(s, d, f) + mm(s, f, d),
    }
    parts = {k: batch * n * v for k, v in block.items()}
    parts["embeddings"] = batch * (mm(s, c * pt * ph * pw, d) + mm(l, cfg["text_dim"], d) + mm(l, d, d)
                                   + mm(1, cfg["freq_dim"], d) + mm(1, d, d) + mm(1, d, 6 * d))
    parts["proj_out"] = batch * mm(s, d, cfg["out_channels"] * pt * ph * pw)
    return {"tokens_per_row": s, "rows": batch, "parts": parts, "total": sum(parts.values())}


def peak_tflops(gpu: str) -> float | None:
    name = gpu.upper()
    return next((p for key, p in PEAKS if key in name), None)


def _literal(node: ast.AST):
    """A literal, or a `dict(k=literal, ...)` call, from the AST."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "dict" and not node.args:
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    return ast.literal_eval(node)


def repo_config(repo: Path) -> dict:
    """WAN13 as models/vidmesh_export/tiny.py writes it: WAN13_DIT plus build_transformer's keyword arguments."""
    tree = ast.parse((repo / "models/vidmesh_export/tiny.py").read_text())
    cfg = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "WAN13_DIT" for t in node.targets):
            cfg.update(_literal(node.value))
        if isinstance(node, ast.FunctionDef) and node.name == "build_transformer":
            channels = _literal(node.args.defaults[-1])
            for call in ast.walk(node):
                if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "WanTransformer3DModel":
                    for kw in call.keywords:
                        if kw.arg in ("in_channels", "out_channels"):
                            cfg[kw.arg] = channels
                        elif kw.arg:
                            cfg[kw.arg] = _literal(kw.value)
    return cfg


# ---- torch parts (imported lazily: the dry run has no torch) -------------------------------------------------

def build(device: str = "cpu"):
    """The seeded fp16 WanTransformer3DModel (float32 islands kept) inside the repo's DiT wrapper, on `device`."""
    import torch
    from diffusers import WanTransformer3DModel

    torch.manual_seed(SEED)
    tr = WanTransformer3DModel(**CFG).eval()
    keep = set(getattr(tr, "_keep_in_fp32_modules", None) or ())
    for name, mod in tr.named_modules():  # models/vidmesh_export/load.py _cast
        for pname, p in list(mod.named_parameters(recurse=False)):
            if p.dtype == torch.float32 and not keep & set(f"{name}.{pname}".split(".")):
                setattr(mod, pname, torch.nn.Parameter(p.data.to(torch.float16), requires_grad=False))
        for bname, b in list(mod.named_buffers(recurse=False)):
            if b is not None and b.dtype == torch.float32 and not keep & set(f"{name}.{bname}".split(".")):
                mod._buffers[bname] = b.to(torch.float16)
    fingerprint = hashlib.sha256()
    with torch.no_grad():
        for name, p in tr.state_dict().items():
            fingerprint.update(f"{name}:{p.dtype}:{float(p.double().sum()):.10e};".encode())

    class Wrapper(torch.nn.Module):  # models/vidmesh_export/dit.py DitWrapper: float32 in and out
        def __init__(self):
            super().__init__()
            self.transformer = tr

        def forward(self, hidden_states, timestep, encoder_hidden_states):
            out = self.transformer(hidden_states=hidden_states.to(torch.float16), timestep=timestep,
                                   encoder_hidden_states=encoder_hidden_states.to(torch.float16), return_dict=False)[0]
            return out.float()

    params = sum(p.numel() for p in tr.parameters())
    return Wrapper().eval().to(device), fingerprint.hexdigest()[:16], params


def cmd_export(a) -> None:
    import collections

    import torch

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    model, fp, params = build("cpu")
    info = {"fingerprint": fp, "params": params, "init_s": round(time.time() - t0, 1), "torch": torch.__version__}
    g = torch.Generator().manual_seed(0)
    example = (torch.randn(2, 16, 3, 6, 10, generator=g), torch.tensor([999.0, 999.0]),
               torch.randn(2, 7, CFG["text_dim"], generator=g))
    auto = torch.export.Dim.AUTO
    dyn = {"hidden_states": {0: auto, 2: auto, 3: auto, 4: auto}, "timestep": {0: auto},
           "encoder_hidden_states": {0: auto, 1: auto}}
    names = dict(input_names=["hidden_states", "timestep", "encoder_hidden_states"], output_names=["velocity"],
                 opset_version=18, optimize=False, verbose=False)
    t0 = time.time()
    with torch.no_grad():
        # torch.export(strict=False) first: with torch 2.11, torch.onnx.export(dynamo=True) alone fails on Wan's rope
        # slicing (seen with the same wheels here); the repo's other order is the fallback.
        try:
            ep = torch.export.export(model, example, dynamic_shapes=dyn, strict=False)
            prog = torch.onnx.export(ep, (), dynamo=True, **names)
            info["exporter"] = "torch.export(strict=False) + torch.onnx.export"
        except Exception as e:  # noqa: BLE001
            print(f"torch.export(strict=False) failed ({type(e).__name__}: {str(e)[:300]}); trying dynamo=True")
            prog = torch.onnx.export(model, example, dynamo=True, dynamic_shapes=dyn, **names)
            info["exporter"] = "torch.onnx.export(dynamo=True)"
    info["export_s"] = round(time.time() - t0, 1)
    ir_model = prog.model
    # Only what the attention fusion needs, once (onnxscript's full optimize_for_ort takes ~10 min at 30 layers on a
    # 2-core machine, quadratic in layers; this takes ~3): one constant-folding pass with ONNX shape inference, then
    # SDPA -> com.microsoft.MultiHeadAttention. ONNX Runtime folds and fuses the rest when it loads the graph.
    t0 = time.time()
    try:
        from onnx_ir.passes import common as common_passes
        from onnxscript import optimizer
        from onnxscript.rewriter.ort_fusions.sdpa import fuse_sdpa
        from onnxscript.rewriter.ort_fusions.sdpa_via_mha import replace_sdpa_by_mha

        optimizer.optimize(ir_model, num_iterations=1, onnx_shape_inference=True)
        info["optimize_s"] = round(time.time() - t0, 1)
        common_passes.ShapeInferencePass()(ir_model)
        info["fusions"] = {"sdpa": fuse_sdpa(ir_model, apply_shape_inference=True),
                           "sdpa_via_mha": replace_sdpa_by_mha(ir_model)}
    except Exception as e:  # noqa: BLE001  keep the unfused graph, say so
        info["fusions_error"] = f"{type(e).__name__}: {str(e)[:300]}"
    info["fuse_s"] = round(time.time() - t0, 1)
    ops = collections.Counter(n.op_type for n in ir_model.graph.all_nodes())
    info["ops"] = {k: ops[k] for k in ("MultiHeadAttention", "Attention", "Softmax", "MatMul", "Gemm",
                                       "SkipLayerNormalization", "LayerNormalization", "SimplifiedLayerNormalization",
                                       "FastGelu", "Gelu") if ops[k]}
    if ops["MultiHeadAttention"] + ops["Attention"] < CFG["num_layers"]:
        print(f"WARNING: only {ops['MultiHeadAttention'] + ops['Attention']} fused attention nodes: ORT will "
              f"materialise the attention scores (about 26 GB per row in fp16 at 480x832x81)")
    import onnx_ir as ir

    t0 = time.time()
    ir.save(ir_model, str(work / "dit.onnx"), external_data="dit.onnx.data")
    info["save_s"] = round(time.time() - t0, 1)
    info["bytes"] = sum(f.stat().st_size for f in work.glob("dit.onnx*"))
    (work / "export.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info))


class Sampler:
    """Device memory in use (MiB) every 50 ms, with unix ms timestamps: NVML, else nvidia-smi."""

    def __init__(self):
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            h = pynvml.nvmlDeviceGetHandleByIndex(0)
            self.read = lambda: pynvml.nvmlDeviceGetMemoryInfo(h).used / 2**20
        except Exception:  # noqa: BLE001
            q = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"]
            self.read = lambda: float(subprocess.run(q, capture_output=True, text=True).stdout.split()[0])
        try:
            self.before = self.read()
        except Exception:  # noqa: BLE001  no GPU (a CPU smoke test): nothing is sampled
            self.before, self.read = None, None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while self.read and not self._stop.is_set():
            self.samples.append((time.time() * 1000, self.read()))
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float, end: float) -> float | None:
        inside = [m for t, m in self.samples if start - 100 <= t <= end + 100]
        return round(max(inside) - self.before, 1) if inside and self.before is not None else None


def cmd_ort(a) -> None:
    work = Path(a.work)
    _, c, t, h, w = latent_shape(**{k: getattr(a, k) for k in ("frames", "height", "width", "batch")})
    groups = [[v] for v in a.variants.split(",")] if a.per_process else [
        [v for v in a.variants.split(",") if v != "graph"], ["graph"] if "graph" in a.variants.split(",") else []]
    results = []
    deadline = time.time() + a.timeout
    for stale in [work / "ort-run.json", *work.glob("*.f32")]:
        stale.unlink(missing_ok=True)
    for group in filter(None, groups):
        (work / "ort-run.json").unlink(missing_ok=True)
        provider = "cpu" if a.device == "cpu" else "cuda"
        env = dict(os.environ, VIDMESH_DIT_STEP_ONNX=str(work / "dit.onnx"), VIDMESH_DIT_STEP_PROVIDER=provider,
                   VIDMESH_DIT_STEP_ROWS=str(a.batch), VIDMESH_DIT_STEP_LATENT=f"{c},{t},{h},{w}",
                   VIDMESH_DIT_STEP_TOKENS=str(a.tokens), VIDMESH_DIT_STEP_HIDDEN=str(CFG["text_dim"]),
                   VIDMESH_DIT_STEP_WARMUP=str(a.warmup), VIDMESH_DIT_STEP_ITERS=str(a.iters),
                   VIDMESH_DIT_STEP_VARIANTS=",".join(group), VIDMESH_DIT_STEP_OUT=str(work / "ort-run.json"),
                   VIDMESH_DIT_STEP_DUMP=str(work))
        cmd = [a.runner, "--ignored", "--exact", "dit_step_on_the_device", "--nocapture", "--test-threads=1"]
        with Sampler() as mem:
            try:
                p = subprocess.run(cmd, env=env, timeout=max(deadline - time.time(), 1), capture_output=True,
                                   text=True)
            except subprocess.TimeoutExpired as e:
                results.append({"variant": ",".join(group), "error": f"timed out after {e.timeout:.0f} s"})
                continue
        print(p.stdout[-3000:], p.stderr[-3000:], sep="\n")
        try:
            run = json.loads((work / "ort-run.json").read_text())
        except (OSError, ValueError):
            results.append({"variant": ",".join(group), "error": f"runner exited {p.returncode}: {p.stderr[-500:]}"})
            continue
        for v in run["variants"]:
            if v.get("error") is None:
                v["peak_mib"] = mem.peak(v["start_unix_ms"], v["end_unix_ms"])
            v["ort"], v["provider"] = run["ort"], run["provider"]
            results.append(v)
    # The variants' last velocities against the host-tensor run's (same inputs and timesteps in every process).
    ref = work / "Host.f32"
    for v in results:
        f = work / f"{v['variant']}.f32"
        if v.get("error") is None and ref.exists() and f.exists():
            import numpy as np

            a_, b_ = np.fromfile(ref, dtype="<f4"), np.fromfile(f, dtype="<f4")
            v["max_abs_diff_vs_host"] = float(np.max(np.abs(a_ - b_))) if a_.shape == b_.shape else None
            v["max_abs_velocity"] = float(np.max(np.abs(b_)))
    (work / "ort.json").write_text(json.dumps(results, indent=1))


def cmd_torch(a) -> None:
    import torch

    work = Path(a.work)
    dev = a.device
    cuda = dev == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    t0 = time.time()
    model, fp, _ = build("cpu")
    model = model.to(dev)
    info = {"fingerprint": fp, "gpu": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
            "init_s": round(time.time() - t0, 1), "variants": []}
    g = torch.Generator().manual_seed(0)
    shape = latent_shape(a.frames, a.height, a.width, a.batch)
    x = torch.randn(*shape, generator=g).to(dev)
    text = torch.randn(a.batch, a.tokens, CFG["text_dim"], generator=g).to(dev)
    t_dev = torch.empty(a.batch, device=dev)
    deadline = a.deadline or float("inf")
    runs = [("eager", model)]
    if not a.no_compile:
        runs.append(("compile", torch.compile(model)))
    for name, fn in runs:
        if name == "compile" and deadline - time.time() < a.compile_reserve:
            info["variants"].append({"variant": name, "error": "skipped: too little time left in the device call"})
            continue
        sync()
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        ms, first, start = [], None, time.time() * 1000
        with torch.inference_mode():
            for step in range(a.warmup + a.iters):
                host_t = torch.full((a.batch,), 999.0 - step)
                sync()
                s = time.perf_counter()
                t_dev.copy_(host_t)
                fn(x, t_dev, text)
                sync()
                took = (time.perf_counter() - s) * 1e3
                first = took if first is None else first
                if step >= a.warmup:
                    ms.append(took)
        mib = lambda b: round(b / 2**20, 1)  # noqa: E731
        info["variants"].append({"variant": name, "first_ms": round(first, 3), "median_ms": sorted(ms)[len(ms) // 2],
                                 "ms": ms, "h2d_bytes_per_step": a.batch * 4 if cuda else 0,
                                 "d2h_bytes_per_step": 0,
                                 "peak_allocated_mib": mib(torch.cuda.max_memory_allocated()) if cuda else None,
                                 "peak_reserved_mib": mib(torch.cuda.max_memory_reserved()) if cuda else None,
                                 "start_unix_ms": start, "end_unix_ms": time.time() * 1000, "error": None})
        print(json.dumps(info["variants"][-1]))
    (work / "torch.json").write_text(json.dumps(info, indent=1))


def gpu_name() -> str:
    try:
        q = ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", "0"]
        return subprocess.run(q, capture_output=True, text=True, timeout=30).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def report(work: Path, gpu: str, size: dict) -> str:
    """The markdown report from work/{export,ort,torch}.json (whichever exist)."""
    load = lambda n: json.loads((work / n).read_text()) if (work / n).exists() else None  # noqa: E731
    exp, ort, tor = load("export.json"), load("ort.json") or [], load("torch.json")
    f = flops(**size)
    peak = peak_tflops(gpu)
    shape = latent_shape(size["frames"], size["height"], size["width"], size["batch"])
    lines = [f"GPU: {gpu} (dense fp16/bf16 peak: {f'{peak:g} TFLOP/s' if peak else 'unknown'}). Step: latents "
             f"{shape} ({size['frames']} frames at {size['height']}x{size['width']}, CFG = {size['batch']} rows), "
             f"{size['tokens']} text tokens; {f['total'] / 1e12:.1f} TFLOP per step (matrix products).", ""]
    if exp:
        lines.append(f"Export: {exp.get('exporter')}, {exp.get('params', 0) / 1e9:.2f} B parameters, fused ops "
                     f"{exp.get('ops')}{', fusion error: ' + exp['fusions_error'] if 'fusions_error' in exp else ''}.")
    if exp and tor:
        same = exp["fingerprint"] == tor["fingerprint"]
        lines.append(f"Weights: {'the same' if same else 'DIFFERENT'} in ONNX and PyTorch (fingerprint "
                     f"{exp['fingerprint']}{'' if same else ' vs ' + tor['fingerprint']}); torch {tor['torch']}.")
    if ort:
        lines.append(f"ONNX Runtime: {ort[0].get('ort', '?')}.")
    lines += ["", "| path | ms/step (median) | first step ms | MFU | host->device B/step | device->host B/step | "
              "peak GPU memory MiB | note |", "|---|---|---|---|---|---|---|---|"]
    labels = {"Host": "vidmesh/ORT CUDA, host tensors", "IoBinding": "vidmesh/ORT CUDA, IO binding",
              "Graph": "vidmesh/ORT CUDA, IO binding + CUDA graph", "eager": "PyTorch eager",
              "compile": "PyTorch torch.compile"}
    rows = [(v, v.get("peak_mib")) for v in ort]
    rows += [(v, v.get("peak_mib")) for v in (tor or {}).get("variants", [])]
    for v, mem in rows:
        label = labels.get(v["variant"], v["variant"])
        if v.get("provider", "cuda") != "cuda":
            label = label.replace("CUDA graph", "fixed buffers").replace("CUDA", v["provider"].upper())
        if v.get("error"):
            lines.append(f"| {label} | - | - | - | - | - | - | {str(v['error'])[:200].replace('|', '/')} |")
            continue
        ms = v["median_ms"]
        mfu = f"{f['total'] / (ms / 1e3) / (peak * 1e12):.1%}" if peak else "n/a"
        if "max_abs_diff_vs_host" in v:
            note = f"last velocity: max abs diff {v['max_abs_diff_vs_host']:.3g} from host tensors' " \
                   f"(max abs {v['max_abs_velocity']:.3g})"
        elif "peak_reserved_mib" in v:
            note = f"torch allocator peak: {v['peak_allocated_mib']} MiB allocated, {v['peak_reserved_mib']} reserved"
        else:
            note = ""
        lines.append(f"| {label} | {ms:.1f} | {v['first_ms']:.1f} | {mfu} | {v['h2d_bytes_per_step']} | "
                     f"{v['d2h_bytes_per_step']} | {mem} | {note} |")
    return "\n".join(lines) + "\n"


def cmd_report(a) -> None:
    work = Path(a.work)
    tor = json.loads((work / "torch.json").read_text()) if (work / "torch.json").exists() else {}
    text = report(work, a.gpu or tor.get("gpu") or gpu_name(), size_of(a))
    print(text)
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out) / "dit-step.md").write_text(text)


def size_of(a) -> dict:
    return {k: getattr(a, k) for k in SIZE}


def cmd_all(a) -> None:
    """Each phase in its own process, so no GPU memory or CUDA context of one is counted in another's."""
    start = time.time()
    deadline = start + a.budget_s
    me = [sys.executable, os.path.abspath(__file__)]
    common = ["--work", a.work, "--device", a.device] + [x for k in SIZE for x in (f"--{k}", str(getattr(a, k)))] + \
        ["--warmup", str(a.warmup), "--iters", str(a.iters)] + (["--small"] if a.small else [])
    phases = [] if a.skip_export else [("export", me + ["export"] + common)]
    phases += [("ort", me + ["ort", "--runner", a.runner] + common),
               ("torch", me + ["torch", "--deadline", str(deadline)] + common + (["--no-compile"] * a.no_compile))]
    took = {}
    for name, cmd in phases:
        t0 = time.time()
        # ORT leaves PyTorch eager about 100 s; torch.compile runs only if enough is left (torch --compile-reserve).
        left = deadline - t0 - (100 if name == "ort" else 0)
        if left < 30:
            print(f"{name}: skipped, {left:.0f} s left of --budget-s")
            continue
        with Sampler() as mem:  # the torch phase's device memory, per variant (ort samples its own)
            try:
                rc = subprocess.run(cmd + (["--timeout", str(int(left))] if name == "ort" else []),
                                    timeout=left + 30).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        tj = Path(a.work) / "torch.json"
        if name == "torch" and tj.exists():
            info = json.loads(tj.read_text())
            for v in info["variants"]:
                if v.get("error") is None:
                    v["peak_mib"] = mem.peak(v["start_unix_ms"], v["end_unix_ms"])
            tj.write_text(json.dumps(info, indent=1))
        took[name] = round(time.time() - t0, 1)
        print(f"== {name}: exit {rc} after {took[name]} s", flush=True)
        if name == "export" and rc != 0:
            break
    cmd_report(argparse.Namespace(work=a.work, out=a.out, gpu=None if a.device == "cuda" else "cpu", **size_of(a)))
    print(f"phases (s): {took}")


def selftest() -> None:
    f = flops()
    assert f["tokens_per_row"] == 21 * 30 * 52 == 32760, f
    assert latent_shape(81, 480, 832, 2) == [2, 16, 21, 60, 104]
    s, d, l = 32760, 1536, 512
    attn = 2 * 30 * 2 * (2 * s * d * s)  # rows x layers x (QK^T + PV)
    assert f["parts"]["self_attention_scores_and_values"] == attn
    assert 5.5e14 < f["total"] < 5.8e14, f["total"]  # about 566 TFLOP per CFG step
    assert flops(batch=1)["total"] * 2 == f["total"]
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.4 and peak_tflops("NVIDIA H100 PCIe") == 756.5
    assert peak_tflops("NVIDIA H200") == 989.4 and peak_tflops("NVIDIA H200 NVL") == 835.5
    assert peak_tflops("Tesla T4") is None
    a = parser().parse_args(["ort", "--runner", "/x", "--work", "/w", "--iters", "3"])
    assert a.iters == 3 and a.batch == 2 and a.variants == "host,iobinding,graph" and a.cmd == "ort"
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        w = Path(tmp)
        (w / "ort.json").write_text(json.dumps([
            {"variant": "Host", "median_ms": 2000.0, "first_ms": 2500.0, "h2d_bytes_per_step": 33554432,
             "d2h_bytes_per_step": 16773120, "peak_mib": 12000.0, "max_abs_diff_vs_first": 0.0, "ort": "test"},
            {"variant": "Graph", "error": "capture refused"}]))
        (w / "torch.json").write_text(json.dumps({"gpu": "NVIDIA H100 80GB HBM3", "fingerprint": "x", "torch": "t",
                                                  "variants": [{"variant": "eager", "median_ms": 1000.0,
                                                                "first_ms": 1100.0, "h2d_bytes_per_step": 8,
                                                                "d2h_bytes_per_step": 0, "peak_allocated_mib": 9000,
                                                                "peak_reserved_mib": 9500, "peak_mib": 9800.0,
                                                                "error": None}]}))
        text = report(w, "NVIDIA H100 80GB HBM3", dict(SIZE))
        assert "| vidmesh/ORT CUDA, host tensors | 2000.0 | 2500.0 | 28.6% |" in text, text
        assert "| PyTorch eager | 1000.0 | 1100.0 | 57.2% | 8 | 0 | 9800.0 |" in text, text
        assert "capture refused" in text, text
    print(f"selftest ok: {f['total'] / 1e12:.1f} TFLOP per step, {f['tokens_per_row']} tokens per row; "
          f"H100 SXM peak {peak_tflops('NVIDIA H100 80GB HBM3')} TFLOP/s")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def sized(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        for k, v in SIZE.items():
            p.add_argument(f"--{k}", type=int, default=v)
        p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
        p.add_argument("--iters", type=int, default=5, help="timed steps")
        p.add_argument("--work", default="/root/ditstep", help="graph, weights and JSON results")
        p.add_argument("--small", action="store_true", help="toy widths (SMALL), for a smoke test of this script")
        p.add_argument("--device", default="cuda", help="cuda; cpu runs torch and the runner on the CPU (smoke test)")
        return p

    p = sized(sub.add_parser("all"))
    p.add_argument("--runner", required=True, help="the vidmesh-model providers test binary (release)")
    p.add_argument("--out", required=True)
    p.add_argument("--budget-s", type=float, default=560, help="stop starting phases after this long")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--skip-export", action="store_true", help="use the graph an earlier `export` left in --work")
    sized(sub.add_parser("export"))
    p = sized(sub.add_parser("ort"))
    p.add_argument("--runner", required=True)
    p.add_argument("--variants", default="host,iobinding,graph")
    p.add_argument("--per-process", action="store_true", help="each variant in its own process")
    p.add_argument("--timeout", type=float, default=540)
    p = sized(sub.add_parser("torch"))
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--deadline", type=float, default=0, help="unix time after which torch.compile is skipped")
    p.add_argument("--compile-reserve", type=float, default=150, help="seconds torch.compile needs at least")
    p = sized(sub.add_parser("report"))
    p.add_argument("--out")
    p.add_argument("--gpu")
    p = sub.add_parser("flops")
    for k, v in SIZE.items():
        p.add_argument(f"--{k}", type=int, default=v)
    sub.add_parser("peak").add_argument("--gpu", required=True)
    sub.add_parser("check-config").add_argument("--repo", default=str(Path(__file__).resolve().parents[2]))
    sub.add_parser("selftest")
    return ap


def main() -> None:
    global CFG
    a = parser().parse_args()
    if getattr(a, "small", False):
        CFG = SMALL
    if a.cmd == "flops":
        print(json.dumps(flops(**size_of(a)), indent=1))
    elif a.cmd == "peak":
        print(peak_tflops(a.gpu))
    elif a.cmd == "check-config":
        got = repo_config(Path(a.repo))
        want = {k: (list(v) if isinstance(v, tuple) else v) for k, v in WAN13.items()}
        got = {k: (list(v) if isinstance(v, tuple) else v) for k, v in got.items()}
        if got != want:
            sys.exit(f"dit_step.py's WAN13 differs from models/vidmesh_export/tiny.py: {want} != {got}")
        print("config ok: WAN13 equals models/vidmesh_export/tiny.py's Wan2.1-T2V-1.3B transformer")
    elif a.cmd == "selftest":
        selftest()
    else:
        {"all": cmd_all, "export": cmd_export, "ort": cmd_ort, "torch": cmd_torch, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
