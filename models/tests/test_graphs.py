"""The bundled DiT's graphs: the step-caching split reproduces the whole graph, and the fusions are in place.

- Split (`[dit.cache]`, vidmesh_export.split): head -> tail -> out equals dit.onnx at two batch sizes and two
  latent shapes, and the tail run on some rows (per-row head outputs gathered) equals those rows of the full run.
- Fusions, counted node by node in the graph ONNX Runtime actually runs (its optimized model, basic+extended
  level, which is hardware-independent): attention is one MultiHeadAttention node per attention, every LayerNorm
  one LayerNormalization node, every tanh-GELU one FastGelu (vidmesh_export.fuse; none left as Tanh).
- The text encoder: ONNX Runtime's own fusions turn its erf-GELUs into BiasGelu; its attention stays unfused
  (MatMul + Softmax: no fusion pattern matches the int8-per-row graph) — asserted so that a change shows here.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from vidmesh_export import fuse, split

BUNDLE = Path(__file__).resolve().parent.parent / "vidmesh-tiny"
MANIFEST = tomllib.loads((BUNDLE / "model.toml").read_text())
DEPTH = MANIFEST["dit"]["depth"]


def session(path: Path | bytes) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(path) if isinstance(path, Path) else path, so, providers=["CPUExecutionProvider"])


def feeds(batch: int, frames: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    mask = np.ones((batch, 48), np.int64)
    mask[:, 10:] = 0
    return {"latents": rng.standard_normal((batch, 8, frames, 16, 16)).astype(np.float32),
            "timestep": rng.uniform(50, 950, batch).astype(np.float32),
            "text_states": rng.standard_normal((batch, 48, 384)).astype(np.float32), "text_mask": mask}


@pytest.mark.parametrize("batch,frames", [(2, 4), (3, 8)])
def test_split_graphs_reproduce_the_whole_dit(batch, frames):
    c = MANIFEST["dit"]["cache"]
    whole = session(BUNDLE / "dit.onnx")
    head, tail, out = (session(BUNDLE / c[k]["file"]) for k in ("head", "tail", "out"))
    f = feeds(batch, frames, np.random.default_rng(batch))
    want = whole.run(None, f)[0]
    names = [o.name for o in head.get_outputs()]
    h = dict(zip(names, head.run(None, {i.name: f[i.name] for i in head.get_inputs()})))
    assert c["block_input"] in h and c["block_output"] in h
    vals = {**h, **f}
    t_in = [i.name for i in tail.get_inputs()]
    hn = tail.run(None, {k: vals[k] for k in t_in})[0]
    got = out.run(None, {i.name: hn if i.name == c["tail_output"] else vals[i.name] for i in out.get_inputs()})[0]
    assert np.abs(got - want).max() <= 1e-5
    rows = [batch - 1, 0]
    sub = tail.run(None, {k: vals[k][rows] if (k in c["per_row"] or k in f) else vals[k] for k in t_in})[0]
    assert np.abs(sub - hn[rows]).max() <= 1e-5


def optimized_counts(path: Path, tmp_path: Path) -> Counter:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / f"{path.stem}.opt.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)


@pytest.mark.parametrize("part,attention,gelu,norms", [
    ("dit.onnx", 2 * DEPTH, DEPTH + 1, 3 * DEPTH + 1),
    ("dit_head.onnx", 2, 2, 3),
    ("dit_tail.onnx", 2 * (DEPTH - 1), DEPTH - 1, 3 * (DEPTH - 1)),
    ("dit_out.onnx", 0, 0, 1),
])
def test_dit_fusions_node_by_node(part, attention, gelu, norms, tmp_path):
    # Self- and cross-attention per block; one FastGelu per block MLP (+ the text projection's, in the head);
    # three LayerNorms per block (+ the final one, in the output part).
    n = optimized_counts(BUNDLE / part, tmp_path)
    assert n["MultiHeadAttention"] == attention, n
    assert n["FastGelu"] == gelu, n
    assert n["LayerNormalization"] == norms, n
    for unfused in ("Tanh", "Erf", "Softmax", "Pow", "ReduceMean", "Sqrt"):
        assert n[unfused] == 0, (unfused, n)


def test_text_encoder_fusions_node_by_node(tmp_path):
    n = optimized_counts(BUNDLE / "text_encoder.onnx", tmp_path)
    layers = 6
    assert n["BiasGelu"] == layers and n["Erf"] == 0, n
    assert n["LayerNormalization"] == 2 * layers + 1, n
    assert n["Softmax"] == layers and n["Attention"] == 0 and n["MultiHeadAttention"] == 0, n


def _gelu_graph() -> onnx.ModelProto:
    h = onnx.helper
    c = lambda name, v: h.make_node("Constant", [], [name], value=h.make_tensor(name, 1, [], [v]))  # noqa: E731
    nodes = [
        h.make_node("MatMul", ["x", "w"], ["m"]), h.make_node("Add", ["b", "m"], ["a"]),
        c("c0", 0.044715), c("c1", float(np.sqrt(2 / np.pi))), c("one", 1.0), c("half", 0.5),
        h.make_node("Mul", ["a", "a"], ["sq"]), h.make_node("Mul", ["a", "sq"], ["cube"]),
        h.make_node("Mul", ["c0", "cube"], ["k"]), h.make_node("Add", ["a", "k"], ["inner"]),
        h.make_node("Mul", ["c1", "inner"], ["s"]), h.make_node("Tanh", ["s"], ["t"]),
        h.make_node("Add", ["one", "t"], ["u"]), h.make_node("Mul", ["a", "u"], ["v"]),
        h.make_node("Mul", ["half", "v"], ["y"]),
    ]
    rng = np.random.default_rng(0)
    inits = [onnx.numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "w"),
             onnx.numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b")]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", 1, ["n", 8])],
                     [h.make_tensor_value_info("y", 1, ["n", 16])], inits)
    return h.make_model(g, opset_imports=[h.make_opsetid("", 18)], ir_version=9)


def test_fuse_turns_a_tanh_gelu_into_one_fastgelu_with_the_same_values():
    model = _gelu_graph()
    x = {"x": np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32) * 3}
    want = session(model.SerializeToString()).run(None, x)[0]
    assert fuse.fuse_gelu(model) == 1
    kinds = Counter(n.op_type for n in model.graph.node)
    assert kinds == {"MatMul": 1, "FastGelu": 1}, kinds
    assert list(next(n for n in model.graph.node if n.op_type == "FastGelu").input) == ["m", "b"]
    got = session(model.SerializeToString()).run(None, x)[0]
    assert np.abs(got - want).max() <= 1e-5


def test_fuse_leaves_a_pattern_whose_intermediate_is_used_elsewhere():
    model = _gelu_graph()
    model.graph.output.append(onnx.helper.make_tensor_value_info("t", 1, ["n", 16]))
    assert fuse.fuse_gelu(model) == 0


def test_split_finds_the_hidden_stream_of_the_bundled_dit():
    table = split.split(BUNDLE, "dit", write=False)
    c = MANIFEST["dit"]["cache"]
    for key in ("block_input", "block_output", "tail_output"):
        assert f'{key} = "{c[key]}"' in table
