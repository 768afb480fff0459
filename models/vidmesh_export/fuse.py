"""Operator fusions ONNX Runtime's own optimizer misses in exported graphs (no torch).

  python -m vidmesh_export.fuse GRAPH.onnx [--out OUT.onnx]

- tanh-GELU: the exporters write `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` as nine elementwise nodes in an order
  ORT's FastGeluFusion does not match; each becomes one `com.microsoft.FastGelu`, taking the preceding bias `Add`
  (a 1-D initializer) as its bias input. Same formula, one kernel, one pass over the tensor instead of nine.

Invariants: a pattern is fused only when every intermediate it removes has no other consumer and every constant
matches the formula (to 1e-6); the output keeps its tensor name, so the rest of the graph is untouched; the
caller checks parity (vidmesh_export.split and models/tests/test_graphs.py compare outputs with ONNX Runtime).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


class Graph:
    def __init__(self, model: onnx.ModelProto):
        self.model, g = model, model.graph
        self.prod = {o: n for n in g.node for o in n.output}
        self.cons: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for i in n.input:
                self.cons.setdefault(i, []).append(n)
        self.inits = {i.name: i for i in g.initializer}

    def const(self, name: str) -> np.ndarray | None:
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        n = self.prod.get(name)
        if n is not None and n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
        return None

    def is_const(self, name: str, value: float) -> bool:
        c = self.const(name)
        return c is not None and c.size == 1 and abs(float(c.reshape(-1)[0]) - value) < 1e-6

    def op(self, name: str, op_type: str) -> onnx.NodeProto | None:
        n = self.prod.get(name)
        return n if n is not None and n.op_type == op_type else None

    def only(self, name: str) -> onnx.NodeProto | None:
        """The single consumer of a tensor (None if it has several or is a graph output)."""
        c = self.cons.get(name, [])
        outputs = {o.name for o in self.model.graph.output}
        return c[0] if len(c) == 1 and name not in outputs else None

    def split_const(self, node: onnx.NodeProto, value: float) -> str | None:
        """For a binary node with one input equal to the constant `value`: its other input."""
        a, b = node.input
        if self.is_const(a, value):
            return b
        if self.is_const(b, value):
            return a
        return None


def _match_gelu(g: Graph, tanh: onnx.NodeProto) -> tuple[list[onnx.NodeProto], str, str] | None:
    """(nodes to remove, x, output name) for one tanh-GELU, or None."""
    scaled = g.op(tanh.input[0], "Mul")
    if scaled is None or (inner_name := g.split_const(scaled, SQRT_2_OVER_PI)) is None:
        return None
    inner = g.op(inner_name, "Add")
    if inner is None:
        return None
    for x, cubic_name in (tuple(inner.input), tuple(reversed(inner.input))):
        cubic = g.op(cubic_name, "Mul")
        if cubic is None or (cube_name := g.split_const(cubic, 0.044715)) is None:
            continue
        cube = g.op(cube_name, "Mul")
        if cube is None or x not in cube.input:
            continue
        sq_name = cube.input[1] if cube.input[0] == x else cube.input[0]
        sq = g.op(sq_name, "Mul")
        if sq is None or list(sq.input) != [x, x]:
            continue
        one = g.only(tanh.output[0])
        if one is None or one.op_type != "Add" or g.split_const(one, 1.0) != tanh.output[0]:
            return None
        times_x = g.only(one.output[0])
        if times_x is None or times_x.op_type != "Mul" or x not in times_x.input:
            return None
        half = g.only(times_x.output[0])
        if half is None or half.op_type != "Mul" or g.split_const(half, 0.5) != times_x.output[0]:
            return None
        nodes = [sq, cube, cubic, inner, scaled, tanh, one, times_x, half]
        for n in nodes[:-1]:
            users = g.cons.get(n.output[0], [])
            if any(u not in nodes for u in users):
                return None
        return nodes, x, half.output[0]
    return None


def fuse_gelu(model: onnx.ModelProto) -> int:
    """Replaces every tanh-GELU with com.microsoft.FastGelu in place; returns how many."""
    g = Graph(model)
    removed: set[int] = set()
    new_nodes: dict[int, onnx.NodeProto] = {}
    count = 0
    for tanh in [n for n in model.graph.node if n.op_type == "Tanh"]:
        m = _match_gelu(g, tanh)
        if m is None:
            continue
        nodes, x, out = m
        inputs = [x]
        bias_add = g.op(x, "Add")
        users = g.cons.get(x, [])
        if bias_add is not None and all(u in nodes for u in users):
            for a, b in (tuple(bias_add.input), tuple(reversed(bias_add.input))):
                if b in g.inits and g.inits[b].dims and len(g.inits[b].dims) == 1:
                    inputs = [a, b]
                    nodes = [bias_add, *nodes]
                    break
        removed.update(id(n) for n in nodes)
        new_nodes[id(nodes[-1])] = onnx.helper.make_node("FastGelu", inputs, [out], name=f"{out}/FastGelu",
                                                          domain="com.microsoft")
        count += 1
    kept = []
    for n in model.graph.node:
        if id(n) in new_nodes:
            kept.append(new_nodes[id(n)])
        elif id(n) not in removed:
            kept.append(n)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    if count and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    # Constants only the fused nodes read are now dead.
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    live = [n for n in model.graph.node if not (n.op_type == "Constant" and n.output[0] not in used)]
    del model.graph.node[:]
    model.graph.node.extend(live)
    return count


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("graph", type=Path)
    ap.add_argument("--out", type=Path, default=None, help="default: overwrite GRAPH")
    args = ap.parse_args(argv)
    model = onnx.load(str(args.graph))
    n = fuse_gelu(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(args.out or args.graph))
    print(f"{args.graph.name}: {n} tanh-GELU -> FastGelu")


if __name__ == "__main__":
    main()
