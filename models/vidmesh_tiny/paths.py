"""Where things live (no heavy imports): models/, the work directory, the committed bundle."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # models/
WORK = Path(os.environ.get("VIDMESH_WORK", ROOT / "work"))
BUNDLE = ROOT / "vidmesh-tiny"
