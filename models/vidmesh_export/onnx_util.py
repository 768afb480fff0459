"""torch -> ONNX export, ONNX Runtime sessions, parity measurement and file hashes.

Guarantees:
- `export()` writes an ONNX graph whose inputs/outputs carry exactly the given names, whose dynamic axes carry the
  names of the component's spec (the names the manifest declares), and whose dtypes match the spec; it raises if
  any of that does not hold. It tries `torch.onnx.export(dynamo=True)` first and falls back to
  `torch.export.export(strict=False)` + ONNX conversion of the ExportedProgram.
- Weights above `EXTERNAL_LIMIT` bytes (or always, when asked) go to one external-data file `<graph>.data` next to
  the graph, written tensor by tensor from the exporter's IR (peak memory: the module's weights plus the
  exporter's folded copies, never a whole serialized ModelProto on top); `files_of()` lists graph + data files
  with their sha256.
- `parity()` runs the same inputs through PyTorch and ONNX Runtime (CPU) and returns the max abs difference per
  output, failing if an output's shape differs (a graph that froze a dynamic axis).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import torch
from vidmesh_tiny.manifest import sha256

OPSET = 18
EXTERNAL_LIMIT = 2_000_000_000  # protobuf's 2 GiB limit, with margin
DTYPE_NAMES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64", onnx.TensorProto.FLOAT16: "float16",
               onnx.TensorProto.INT32: "int32", onnx.TensorProto.BFLOAT16: "bfloat16"}


@dataclass
class Io:
    """One graph input or output as the manifest declares it: shape entries are ints (fixed) or axis names."""

    name: str
    dtype: str
    shape: list

    def toml(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass
class Exported:
    path: Path
    inputs: list[Io]
    outputs: list[Io]
    exporter: str
    external: bool
    files: list[dict] = field(default_factory=list)  # [{file, sha256}], graph first


def _dynamic_shapes(inputs: list[Io], arg_names: list[str], example: tuple):
    """torch.export dynamic_shapes (one entry per forward argument, nested like the arguments) from the specs:
    every named axis becomes Dim.AUTO, so the exporter derives relations (h even, cache h = 2 * latent h, ...)."""
    auto = torch.export.Dim.AUTO
    it = iter(inputs)

    def one(t):  # noqa: ANN001, ANN202
        spec = next(it)
        return {i: auto for i, d in enumerate(spec.shape) if isinstance(d, str)} or None

    out = {}
    for name, ex in zip(arg_names, example):
        out[name] = [one(t) for t in ex] if isinstance(ex, (list, tuple)) else one(ex)
    return out


def _rename_axes(model: onnx.ModelProto, inputs: list[Io], outputs: list[Io]) -> None:
    """Give the graph's dynamic axes the spec's names and check fixed axes and dtypes against the spec."""
    for values, specs in ((model.graph.input, inputs), (model.graph.output, outputs)):
        if [v.name for v in values] != [s.name for s in specs]:
            raise SystemExit(f"graph io {[v.name for v in values]} != spec {[s.name for s in specs]}")
        for v, s in zip(values, specs):
            tt = v.type.tensor_type
            if DTYPE_NAMES.get(tt.elem_type) != s.dtype:
                raise SystemExit(f"{s.name}: graph dtype {DTYPE_NAMES.get(tt.elem_type)} != spec {s.dtype}")
            dims = tt.shape.dim
            if len(dims) != len(s.shape):
                raise SystemExit(f"{s.name}: graph rank {len(dims)} != spec {s.shape}")
            for d, want in zip(dims, s.shape):
                if isinstance(want, int):
                    if d.HasField("dim_value") and d.dim_value != want:
                        raise SystemExit(f"{s.name}: graph shape {dims} != spec {s.shape}")
                    d.Clear()
                    d.dim_value = want
                else:
                    if d.HasField("dim_value"):
                        raise SystemExit(f"{s.name}: axis {want!r} was frozen to {d.dim_value} in the graph")
                    d.Clear()
                    d.dim_param = want


def _strip_metadata(model: onnx.ModelProto) -> None:
    """Drop the exporter's per-node provenance (stack traces, class names): it is most of a small graph's bytes.
    The module path (`pkg.torch.onnx.name_scopes`) stays: vidmesh_export.split finds the transformer blocks by it."""
    def walk(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            keep = [(p.key, p.value) for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"]
            del node.metadata_props[:]
            for k, v in keep:
                node.metadata_props.add(key=k, value=v)
            node.doc_string = ""
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                for g in a.graphs:
                    walk(g)
        for v in list(graph.value_info) + list(graph.input) + list(graph.output) + list(graph.initializer):
            del v.metadata_props[:]
    walk(model.graph)
    del model.metadata_props[:]


def export(module: torch.nn.Module, example: tuple, arg_names: list[str], inputs: list[Io], outputs: list[Io],
           path: Path, external_data: bool = False) -> Exported:
    """Export `module(*example)` to `path` (see the module docstring for what is guaranteed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(path.name + ".data")):
        stale.unlink(missing_ok=True)
    dyn = _dynamic_shapes(inputs, arg_names, example)
    in_names, out_names = [i.name for i in inputs], [o.name for o in outputs]
    module.eval()
    exporter = "torch.onnx.export(dynamo=True)"
    try:
        with torch.no_grad():
            prog = torch.onnx.export(module, example, dynamo=True, dynamic_shapes=dyn, input_names=in_names,
                                     output_names=out_names, opset_version=OPSET, optimize=True, verbose=False)
    except Exception as e:  # noqa: BLE001
        print(f"  dynamo export failed ({type(e).__name__}: {str(e)[:300]}); trying torch.export(strict=False)")
        exporter = "torch.export(strict=False) + torch.onnx.export(ExportedProgram)"
        with torch.no_grad():
            ep = torch.export.export(module, example, dynamic_shapes=dyn, strict=False)
            prog = torch.onnx.export(ep, (), dynamo=True, input_names=in_names, output_names=out_names,
                                     opset_version=OPSET, optimize=True, verbose=False)
    weight_bytes = sum(v.const_value.nbytes for v in prog.model.graph.initializers.values()
                       if v.const_value is not None)
    external = external_data or weight_bytes > EXTERNAL_LIMIT
    data_name = path.name + ".data"
    if external:
        # Stream the weights from the exporter's IR into <graph>.data tensor by tensor (no in-memory ModelProto
        # holding a second copy of every weight), then edit the small graph-only proto and rewrite it.
        ir.save(prog.model, str(path), external_data=data_name, size_threshold_bytes=1024)
        del prog
        model = onnx.load(str(path), load_external_data=False)
    else:
        model = prog.model_proto
        del prog
    _rename_axes(model, inputs, outputs)
    _strip_metadata(model)
    onnx.save_model(model, str(path))
    files = [{"file": path.name, "sha256": sha256(path)}]
    if external:
        files.append({"file": data_name, "sha256": sha256(path.with_name(data_name))})
    return Exported(path, inputs, outputs, exporter, external, files)


def session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def parity(module, sess, example: tuple, in_names: list[str], out_names: list[str]) -> dict:  # noqa: ANN001
    """Max abs diff PyTorch vs ORT per output on `example` (`module`: the PyTorch module, or any callable returning
    its outputs, e.g. precomputed ones); raises if any output shape differs."""
    with torch.no_grad():
        ref = module(*example)
    ref = list(ref) if isinstance(ref, (list, tuple)) else [ref]
    flat = []
    for a in example:
        flat.extend(a if isinstance(a, (list, tuple)) else [a])
    feeds = {n: t.detach().numpy() for n, t in zip(in_names, flat)}
    got = sess.run(out_names, feeds)
    errs = {}
    for name, r, g in zip(out_names, ref, got):
        r = r.detach().float().numpy()
        if tuple(r.shape) != tuple(g.shape):
            raise SystemExit(f"{name}: ORT shape {g.shape} != PyTorch shape {r.shape} (dynamic axis frozen?)")
        errs[name] = float(np.max(np.abs(r - g.astype(np.float32)))) if r.size else 0.0
    return errs


def check(errs: dict, tol: float, what: str) -> float:
    worst = max(errs.values())
    if not worst <= tol:  # also catches NaN
        raise SystemExit(f"{what}: ORT vs PyTorch max abs error {worst:.3g} > {tol:g} ({errs})")
    return worst
