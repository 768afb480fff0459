"""One command for the whole model: data -> VAE -> DiT -> ONNX export -> evaluation -> golden fixtures -> passive
detector (the classifier's; it runs last because export rewrites model.toml).

  python -m vidmesh_tiny.pipeline            # every stage; finished stages are skipped, training resumes
  python -m vidmesh_tiny.pipeline export     # one stage (vae | dit | export | eval | fixtures | passive)

Each stage is seeded and resumable (checkpoints in models/work/); wall time per stage goes to work/timings.json.
"""

from __future__ import annotations

import json
import sys
import time

from .paths import WORK

STAGES = ("vae", "dit", "export", "eval", "fixtures", "passive")


def run(stage: str) -> None:
    if stage == "vae":
        from . import train_vae

        train_vae.main([])
    elif stage == "dit":
        from . import train_dit

        # The 0.3.0 recipe (MODEL_CARD.md): 3,692 steps from scratch at lr 1e-3, then 2,519 more from its EMA
        # weights at lr 5e-4 (warm-up 50) on 40,000 clips -- 0.2.0 --, then 3,415 more at 4x the batch on 60,000
        # clips with 32-frame clips sampled 30% of the time. All cosine to a tenth; each builds its dataset first.
        train_dit.main(["--ckpt", str(WORK / "dit-phase1.pt")])
        train_dit.main(["--init-from", str(WORK / "dit-phase1.pt"), "--ckpt", str(WORK / "dit-phase2.pt"), "--lr", "5e-4",
                        "--warmup", "50", "--steps", "2519"])
        train_dit.main(["--init-from", str(WORK / "dit-phase2.pt"), "--clips", "60000", "--tokens-per-batch", "131072",
                        "--lr", "5e-4", "--warmup", "100", "--steps", "3415", "--bucket-weight", "32x64x64=0.3"])
    elif stage == "export":
        from . import export

        export.main([])
    elif stage == "eval":
        from . import eval_model

        eval_model.main([])
    elif stage == "fixtures":
        from . import fixtures

        fixtures.write()
    elif stage == "passive":
        from . import passive

        passive.main()
    else:
        raise SystemExit(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")


def main() -> None:
    stages = sys.argv[1:] or list(STAGES)
    timings_path = WORK / "timings.json"
    WORK.mkdir(parents=True, exist_ok=True)
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    for s in stages:
        t0 = time.time()
        run(s)
        timings[s] = timings.get(s, 0.0) + (time.time() - t0)
        timings_path.write_text(json.dumps(timings, indent=2))
        print(f"== stage {s} done in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
