"""Split a bundle's DiT graph at its first block for step caching (docs/model-bundle.md, `[dit.cache]`).

  python -m vidmesh_export.split BUNDLE [--key dit] [--check-only]

No torch: works on any exported bundle (the legacy exporter's `/blocks.K/...` node names, or the dynamo exporter's
`pkg.torch.onnx.name_scopes`). Writes three graphs next to the monolithic one and the `[<key>.cache]` table:

- `<dit>_head.onnx`: graph inputs -> `block_input` (the hidden stream entering block 0), `block_output` (leaving
  it) and every tensor the other two graphs need from the head (text projection, timestep modulation, RoPE tables,
  shape scalars).
- `<dit>_tail.onnx`: blocks 1..N-1 -> `tail_output` (the hidden stream after the last block). Runs on the rows that
  compute this step; its inputs are head outputs (gathered per row when listed in `per_row`) and graph inputs.
- `<dit>_out.onnx`: final norm, modulation, projection, unpatchify -> the model output, on every row every step.

Invariants checked before anything is written (the split is refused otherwise, with the reason):
- out(tail(head(x))) equals the monolithic graph within `TOL` at two batch sizes and two latent shapes;
- every head output the tail takes is either batch-major (axis 0 = the row, listed in `per_row`) or the same for
  every batch size, so the tail can run on any subset of rows; the tail run on one row equals that row of the
  full run within `TOL`.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import tomllib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

TOL = 1e-5
SCOPES = "pkg.torch.onnx.name_scopes"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def block_of(node: onnx.NodeProto) -> int | None:
    """Index of the transformer block a node belongs to, from its name scope (None outside the blocks)."""
    for p in node.metadata_props:
        if p.key == SCOPES:
            m = re.search(r"(?:^|[\[,]\s*)'(?:[\w.]*\.)?(?:transformer_blocks|blocks)\.(\d+)'", p.value)
            if m:
                return int(m.group(1))
    m = re.match(r"^/(?:[\w.]*\.)?(?:transformer_blocks|blocks)\.(\d+)/", node.name)
    return int(m.group(1)) if m else None


class Graph:
    def __init__(self, model: onnx.ModelProto):
        self.model, g = model, model.graph
        self.inputs = [i.name for i in g.input]
        self.output = g.output[0].name
        self.prod = {o: n for n in g.node for o in n.output}
        self.block = {id(n): block_of(n) for n in g.node}
        blocks = {b for b in self.block.values() if b is not None}
        if not blocks:
            raise SystemExit("no transformer blocks found in the node names or name scopes")
        self.depth = max(blocks) + 1

    def is_const(self, t: str) -> bool:
        n = self.prod.get(t)
        return n is not None and n.op_type == "Constant"

    def ancestors(self, targets: list[str]) -> set[int]:
        seen, stack = set(), list(targets)
        while stack:
            n = self.prod.get(stack.pop())
            if n is None or id(n) in seen:
                continue
            seen.add(id(n))
            stack.extend(i for i in n.input if i)
        return seen

    def block_io(self, k: int) -> tuple[list[str], list[str]]:
        """Tensors block k takes from outside (no constants or initializers) and those it gives outside."""
        nodes = [n for n in self.model.graph.node if self.block[id(n)] == k]
        made = {o for n in nodes for o in n.output}
        ins = [i for n in nodes for i in n.input if i and i not in made and i in self.prod and not self.is_const(i)]
        used_outside = {i for n in self.model.graph.node if self.block[id(n)] != k for i in n.input}
        outs = [o for n in nodes for o in n.output if o in used_outside or o == self.output]
        return list(dict.fromkeys(ins)), list(dict.fromkeys(outs))

    def cut(self, part: set[int], source: set[int]) -> list[str]:
        """Non-constant tensors made in `source` that nodes of `part` consume."""
        out = []
        for n in self.model.graph.node:
            if id(n) in part:
                for t in n.input:
                    p = self.prod.get(t)
                    if p is not None and id(p) in source and p.op_type != "Constant" and t not in out:
                        out.append(t)
        return out

    def consts_for(self, part: set[int]) -> set[int]:
        """Constant nodes (made elsewhere) that nodes of `part` read: copied into the part."""
        return {id(self.prod[t]) for n in self.model.graph.node if id(n) in part for t in n.input
                if self.is_const(t)}

    def extract(self, part: set[int], inputs: list[str], outputs: list[str], values: dict) -> onnx.ModelProto:
        """A model of the nodes in `part` (graph order kept) with these inputs and outputs, typed from `values`
        (every axis dynamic) and the initializers its nodes read."""
        g = self.model.graph
        nodes = [n for n in g.node if id(n) in part]
        used = {t for n in nodes for t in n.input}
        inits = [i for i in g.initializer if i.name in used]

        def info(name: str) -> onnx.ValueInfoProto:
            v = values[name]
            dtype = onnx.helper.np_dtype_to_tensor_dtype(v.dtype)
            stem = re.sub(r"\W", "_", name)
            return onnx.helper.make_tensor_value_info(name, dtype, [f"{stem}_{k}" for k in range(v.ndim)])

        graph = onnx.helper.make_graph(nodes, g.name, [info(i) for i in inputs], [info(o) for o in outputs], inits)
        m = onnx.helper.make_model(graph, opset_imports=self.model.opset_import, ir_version=self.model.ir_version)
        m.producer_name = "vidmesh_export.split"
        return m

    def graph_inputs_of(self, part: set[int]) -> list[str]:
        used = {t for n in self.model.graph.node if id(n) in part for t in n.input}
        return [i for i in self.inputs if i in used]


def probe_feeds(m: dict, key: str, batch: int, latent: tuple[int, int, int], seed: int) -> dict[str, np.ndarray]:
    """Random inputs for the DiT graph from the manifest's declared inputs."""
    rng = np.random.default_rng(seed)
    t, h, w = latent
    dims = {"batch": batch, "latent_frames": t, "latent_height": h, "latent_width": w,
            "tokens": m["text_encoder"]["max_tokens"]}
    feeds = {}
    for io in m[key]["inputs"]:
        shape = [d if isinstance(d, int) else dims.get(d, 1) for d in io["shape"]]
        if io["dtype"] == "int64":
            x = np.ones(shape, np.int64)
            if len(shape) == 2:
                x[:, shape[1] // 2:] = 0
        elif io["name"] == m[key].get("names", {}).get("timestep", "timestep"):
            x = rng.uniform(100, 900, shape).astype(np.float32)
        else:
            x = rng.standard_normal(shape).astype(np.float32)
        feeds[io["name"]] = x
    return feeds


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
    return m


def latent_shapes(m: dict, key: str) -> list[tuple[int, int, int]]:
    v, vae = m["video"], m["vae"]
    pt, ph, pw = m[key]["patch_size"]
    sizes = v["sizes"] if isinstance(v.get("sizes"), list) else [[v["default_height"], v["default_width"]]]
    out = []
    for (hh, ww), t in zip(sizes[:2] + sizes[:1], (2 * pt, 3 * pt)):
        out.append((t, hh // vae["spatial_compression"] // ph * ph, ww // vae["spatial_compression"] // pw * pw))
    return out[:2]


def split(bundle: Path, key: str, write: bool) -> str:
    m = tomllib.loads((bundle / "model.toml").read_text())
    file = bundle / m[key]["file"]
    model = onnx.load(str(file))
    g = Graph(model)
    _, out0 = g.block_io(0)
    ins0, _ = g.block_io(0)
    ins1, _ = g.block_io(1)
    _, outN = g.block_io(g.depth - 1)
    shapes = latent_shapes(m, key)
    feeds = probe_feeds(m, key, 2, shapes[0], 0)
    cands = list(dict.fromkeys(out0 + ins0 + outN))
    vals = dict(zip(cands, session(with_outputs(model, cands)).run(cands, feeds)))
    # The hidden stream: the last block's output the output part reads; block 0's output and input of that shape.
    tail_out = [t for t in outN if not any(g.block[id(n)] is not None for n in model.graph.node if t in n.input)]
    if len(tail_out) != 1:
        raise SystemExit(f"block {g.depth - 1} hands {tail_out} to the output part; expected one hidden stream")
    hn = tail_out[0]
    h1s = [t for t in out0 if vals[t].shape == vals[hn].shape and vals[t].dtype == np.float32]
    h0s = [t for t in ins0 if t not in ins1 and vals[t].shape == vals[hn].shape]
    if len(h1s) != 1 or len(h0s) != 1:
        raise SystemExit(f"cannot tell the hidden stream: block 0 outputs {h1s}, inputs {h0s} of shape "
                         f"{vals[hn].shape}")
    h0, h1 = h0s[0], h1s[0]
    head = g.ancestors([h0, h1])
    tail = g.ancestors([hn]) - head
    outp = g.ancestors([g.output]) - head - tail
    if any(t != hn for t in g.cut(outp, tail)):
        raise SystemExit(f"the output part reads {g.cut(outp, tail)} from the blocks, not only {hn}")
    tail_in = g.cut(tail, head)
    out_in = g.cut(outp, head)
    head_out = list(dict.fromkeys([h0, h1] + tail_in + out_in))
    every = head_out + [hn, g.output]
    types = dict(zip(every, session(with_outputs(model, every)).run(every, feeds)))
    types.update(feeds)
    parts = {
        "head": g.extract(head, g.inputs, head_out, types),
        "tail": g.extract(tail | g.consts_for(tail), tail_in + g.graph_inputs_of(tail), [hn], types),
        "out": g.extract(outp | g.consts_for(outp), out_in + g.graph_inputs_of(outp) + [hn], [g.output], types),
    }
    # Which head outputs are per row: axis 0 follows the batch; the others must not depend on it.
    per_row = []
    full = session(with_outputs(model, head_out))
    for b, shp in ((2, shapes[0]), (3, shapes[1])):
        f = probe_feeds(m, key, b, shp, 1)
        a = dict(zip(head_out, full.run(head_out, f)))
        f1 = {k: v[:1] for k, v in f.items()}
        a1 = dict(zip(head_out, full.run(head_out, f1)))
        for t in tail_in:
            if a[t].ndim and a[t].shape[0] == b and a1[t].shape[0] == 1:
                if t not in per_row:
                    per_row.append(t)
            elif t in per_row or not np.array_equal(a[t], a1[t]):
                raise SystemExit(f"head output {t} (shape {a[t].shape}) depends on the batch but is not batch-major")
    sess = {k: session(v) for k, v in parts.items()}
    worst = 0.0
    for b, shp in ((2, shapes[0]), (3, shapes[1])):
        f = probe_feeds(m, key, b, shp, 2)
        want = session(model).run([g.output], f)[0]
        hv = dict(zip(head_out, sess["head"].run(head_out, f)))
        tv = {**hv, **f}
        t_names = [i.name for i in parts["tail"].graph.input]
        hN = sess["tail"].run([hn], {n: tv[n] for n in t_names})[0]
        o_names = [i.name for i in parts["out"].graph.input]
        got = sess["out"].run([g.output], {**{n: tv[n] for n in o_names if n != hn}, hn: hN})[0]
        worst = max(worst, float(np.abs(got - want).max()))
        # The tail on the last row alone (gathered per row) equals that row of the batched run.
        one = {n: (tv[n][-1:] if (n in per_row or n in f) else tv[n]) for n in t_names}
        hN1 = sess["tail"].run([hn], one)[0]
        worst = max(worst, float(np.abs(hN1[0] - hN[-1]).max()))
    if worst > TOL:
        raise SystemExit(f"split graphs differ from {file.name} by {worst:.3g} > {TOL}")
    print(f"{file.name}: {g.depth} blocks; block input {h0}, block output {h1}, tail output {hn}; "
          f"head {len(head)} nodes, tail {len(tail)}, out {len(outp)}; per-row head outputs {len(per_row)}; "
          f"max |split - whole| = {worst:.3g}")
    stem = file.name.removesuffix(".onnx")
    lines = [f"[{key}.cache]",
             "# Step caching (docs/model-bundle.md): the DiT split at block 0 by models/vidmesh_export/split.py."]
    for part, mp in parts.items():
        name = f"{stem}_{part}.onnx"
        if write:
            onnx.save(mp, str(bundle / name))
        lines.append(f'{part} = {{ file = "{name}", sha256 = "{sha256(bundle / name) if write else ""}" }}')
    lines += [f'block_input = "{h0}"', f'block_output = "{h1}"', f'tail_output = "{hn}"',
              "per_row = [" + ", ".join(f'"{t}"' for t in per_row) + "]"]
    return "\n".join(lines) + "\n"


def set_table(text: str, header: str, table: str) -> str:
    """model.toml with `table` (starting with `header`) replacing the old one of that name, or appended."""
    lines, out, skip = text.splitlines(keepends=True), [], False
    for ln in lines:
        s = ln.strip()
        if s.startswith("["):
            skip = s == header or s.startswith(header[:-1] + ".")
        if not skip:
            out.append(ln)
    body = "".join(out).rstrip("\n") + "\n\n"
    return body + table


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--key", default="dit", help="the manifest table of the transformer (dit or dit2)")
    ap.add_argument("--tiers", type=Path, default=None,
                    help="a TOML file with [balanced] and [fast] tables (threshold, max_skips, warmup, final) to "
                    "append as [<key>.cache.balanced] / [<key>.cache.fast]")
    ap.add_argument("--check-only", action="store_true", help="check that the split holds; write nothing")
    args = ap.parse_args(argv)
    table = split(args.bundle, args.key, not args.check_only)
    if args.check_only:
        return
    if args.tiers:
        tiers = tomllib.loads(args.tiers.read_text())
        for name in ("balanced", "fast"):
            table += f"\n[{args.key}.cache.{name}]\n" + "".join(f"{k} = {v}\n" for k, v in tiers[name].items())
    path = args.bundle / "model.toml"
    path.write_text(set_table(path.read_text(), f"[{args.key}.cache]", table))


if __name__ == "__main__":
    main()
