"""What every family's exporter (__main__ for Wan, ltx, cogvideox, hunyuan) does around its graphs.

- WEIGHTS / TOL: the --weights choices (-> dtype name) and the max abs error allowed against PyTorch per dtype;
- `start(a, ...)`: the bundle directory a.out exists and has no model.toml (a bundle without a manifest is visibly
  unfinished until manifest.write); it returns the export's `Report`;
- `Report`: export_report.json = source (relative to the repository), random_init, weights, the family's extra
  keys, versions, one row per check (component, exporter, the check, seconds), the family's trailing keys and the
  total seconds; `timed()` runs one component's export and checks, `finish()` writes the report and prints the
  check table and the bundle's size.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

WEIGHTS = {"fp32": "float32", "fp16": "float16", "float32": "float32", "float16": "float16"}
TOL = {"float32": 1e-4, "float16": 5e-2}
REPO = Path(__file__).resolve().parents[2]


def start(a, weights: str, t0: float, **extra) -> Report:  # noqa: ANN001
    """Begin the export into a.out: create the directory, remove its model.toml (a bundle without a manifest is
    visibly unfinished); the export's Report (`extra`: the family's keys after weights)."""
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "model.toml").unlink(missing_ok=True)
    return Report(a, weights, t0, **extra)


def versions() -> dict:
    import diffusers, onnx, onnxruntime, transformers  # noqa: E401

    return {"torch": torch.__version__, "python": platform.python_version(), "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


class Report:
    """export_report.json under construction; `t0`: when the export started (time.time())."""

    def __init__(self, a, weights: str, t0: float, **extra) -> None:  # noqa: ANN001
        self.t0 = t0
        self.rows: list[dict] = []
        self.doc = {"source": os.path.relpath(a.src, REPO), "random_init": a.random_init, "weights": weights,
                    **extra, "versions": versions()}

    def add(self, name: str, ex, checks: list[dict], secs: float) -> None:  # noqa: ANN001
        """One row per check of component `name` (exported as `ex`), with the seconds its export and checks took."""
        for chk in checks:
            self.rows.append({"component": name, "exporter": ex.exporter, **chk, "seconds": round(secs, 1)})

    def timed(self, name: str, export, *args, **kwargs):  # noqa: ANN001, ANN201
        """export(*args, **kwargs) -> (exported, check rows), the rows added under `name` with the seconds it took;
        returns the exported graph."""
        t = time.time()
        ex, checks = export(*args, **kwargs)
        self.add(name, ex, checks, time.time() - t)
        return ex

    def finish(self, out: Path, widths: tuple[int, int], **extra) -> None:
        """Write out/export_report.json (`extra` after the rows) and print the rows: component and shape columns
        `widths` wide (a row without a shape shows its latent and video shapes), then the bundle's size."""
        self.doc.update(components=self.rows, **extra, seconds=round(time.time() - self.t0, 1))
        (out / "export_report.json").write_text(json.dumps(self.doc, indent=2) + "\n")
        cw, sw = widths
        print(f"\n{'component':{cw}} {'shape':{sw}} {'max abs err':>12}")
        for r in self.rows:
            shape = r.get("shape") or {"latent": r["latent_shape"], "video": r["video_shape"][2:]}
            print(f"{r['component']:{cw}} {json.dumps(shape):{sw}} {r['max_abs_err']:12.3g}")
        print(f"\nbundle {out}: {sum(p.stat().st_size for p in out.iterdir()) / 1e6:.1f} MB, "
              f"{time.time() - self.t0:.0f} s; model.toml validated")
