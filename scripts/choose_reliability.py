"""Choose the built-in world's default reliabilities on validation slices that the evaluation's
tables never use: drawn cases 1000..1099 and held-out faces 9,001,000..9,001,099.

    .venv/bin/python scripts/choose_reliability.py [--faces-dir assets/experts]

Rule: among the candidates whose every consistency keeps at least 96% of that modality's expert alone
on the drawn slice (the acceptance's 95%, plus a point for the sampling noise of 100 cases), the one
with the highest mean consistency over both slices. Seed 0; guidance scale and options, sampler and
steps the world's defaults.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from unite_demo.worlds.faces.evaluation import metric_nets  # noqa: E402
from unite_demo.worlds.faces.evaluation import evaluate
from unite_demo.method.combine import ProductOfExperts  # noqa: E402
from unite_demo.worlds.faces.conditions import face_conditions  # noqa: E402
from unite_demo.worlds.faces.evaluation.drawn import drawn_case  # noqa: E402
from unite_demo.worlds.faces.data import SPLITS, make_face  # noqa: E402
from unite_demo.limits import DEFAULTS  # noqa: E402
from unite_demo.worlds.faces.world import FACES_DIR, load_faces_world  # noqa: E402

CANDIDATES = ({"seg": 1.5, "sketch": 1.0, "text": 1.5}, {"seg": 1.5, "sketch": 1.0, "text": 2.0},
              {"seg": 2.0, "sketch": 1.0, "text": 2.0}, {"seg": 1.5, "sketch": 1.25, "text": 1.5},
              {"seg": 2.0, "sketch": 1.0, "text": 2.5}, {"seg": 2.0, "sketch": 1.0, "text": 3.0})
KEEP = 0.96
OFFSET, N = 1000, 100


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces-dir", default=str(FACES_DIR), help="the experts' weights (default: the shipped ones)")
    world = load_faces_world(ap.parse_args().faces_dir)
    size = world.image_size
    args = argparse.Namespace(batch=50, steps=DEFAULTS["steps"], sampler=DEFAULTS["sampler"])
    judge = evaluate.Judge(Path(metric_nets.METRICS_DIR), 200, size)
    sets = {"drawn": [drawn_case(OFFSET + k, size) for k in range(N)],
            "heldout": [make_face(SPLITS["heldout"].start + OFFSET + k, size) for k in range(N)]}
    conds = {name: face_conditions(cases) for name, cases in sets.items()}
    experts = {e.name: e for e in world.experts}

    def consistency(reliability: dict, which: str) -> dict:
        mixture = ProductOfExperts([experts[k] for k in reliability], reliability, DEFAULTS["guidance"],
                                   options=world.guidance_options)
        images, _ = evaluate.generate(mixture, conds[which], N, size, args, 0, world)
        return judge.score(images, sets[which]).consistency()

    alone = {m: consistency({m: 1.0}, "drawn")[m] for m in evaluate.CONSISTENCIES}
    print("each expert alone on the drawn slice: " + ", ".join(f"{m} {v:.3f}" for m, v in alone.items()))
    best = None
    for r in CANDIDATES:
        drawn, held = consistency(r, "drawn"), consistency(r, "heldout")
        shares = {m: drawn[m] / alone[m] for m in evaluate.CONSISTENCIES}
        ok = all(v >= KEEP for v in shares.values())
        score = (drawn["mean"] + held["mean"]) / 2
        print(f"{r}: drawn mean {drawn['mean']:.3f}, held-out mean {held['mean']:.3f}, shares "
              + ", ".join(f"{m} {v:.1%}" for m, v in shares.items()) + ("" if ok else "  (below the rule)"))
        if ok and (best is None or score > best[0]):
            best = (score, r)
    print(f"chosen: {best[1] if best else 'none passes the rule'}")


if __name__ == "__main__":
    main()
