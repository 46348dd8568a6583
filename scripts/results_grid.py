"""README picture: for each shipped example, the three conditions and the product of experts' image.

    python scripts/results_grid.py [--out docs/results.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from unite_demo.conditions import to_uint8  # noqa: E402
from unite_demo.examples import load_examples  # noqa: E402
from unite_demo.faces import seg_to_rgb  # noqa: E402
from unite_demo.world import load_faces_world  # noqa: E402

CELL = 128


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="docs/results.png")
    ap.add_argument("--seeds", type=int, default=3, help="images per example (seeds 0..n-1)")
    args = ap.parse_args(argv)
    world = load_faces_world()
    rows = []
    for ex in load_examples():
        req = world.request(seg=ex.seg, sketch=ex.sketch, text=ex.text, reliability=ex.reliability, seed=0)
        cells = [seg_to_rgb(req.seg), np.repeat(req.sketch[:, :, None], 3, axis=2)]
        for seed in range(args.seeds):
            req.seed = seed
            cells.append(to_uint8([f for f in world.generate(req) if f.done][0].image)[0])
        big = [np.asarray(Image.fromarray(c).resize((CELL, CELL), Image.Resampling.NEAREST if i < 2
                                                    else Image.Resampling.BICUBIC)) for i, c in enumerate(cells)]
        row = Image.fromarray(np.concatenate(big, 1))
        strip = Image.new("RGB", (row.width, 18), (255, 255, 255))
        ImageDraw.Draw(strip).text((4, 3), ex.text[:140], fill=(0, 0, 0))
        rows.append(np.concatenate([np.asarray(strip), np.asarray(row)], 0))
    grid = np.concatenate(rows, 0)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(args.out)
    print(f"wrote {args.out} ({grid.shape[1]}x{grid.shape[0]})")


if __name__ == "__main__":
    main()
