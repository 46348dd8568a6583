"""README pictures: for each shipped example, the three conditions and the product of experts' image;
and the final-image stage beside bicubic upscaling on the same samples.

    python scripts/results_grid.py                                        # overwrites docs/results.png
    python scripts/results_grid.py --final-stage docs/final_stage.png     # and docs/final_stage.png

Both files are tracked in git: docs/results.png is the README's results picture, docs/final_stage.png
the one in docs/final-stage.md. By default the script rewrites docs/results.png (--out writes
elsewhere), and with --final-stage also the file given. It prints each file it writes, with its size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from unite_demo.worlds.conditions import to_uint8  # noqa: E402
from unite_demo.worlds.faces.examples import load_examples  # noqa: E402
from unite_demo.worlds.faces.data import seg_to_rgb  # noqa: E402
from unite_demo.worlds.faces.world import load_faces_world  # noqa: E402

CELL = 128


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs/results.png",
                    help="the results grid (default: overwrites the tracked docs/results.png)")
    ap.add_argument("--seeds", type=int, default=3, help="images per example (seeds 0..n-1)")
    ap.add_argument("--final-stage", help="also write the final-image stage beside bicubic to this file "
                    "(docs/final_stage.png is the tracked one the docs show)")
    args = ap.parse_args(argv)
    world = load_faces_world()
    if args.final_stage:
        final_stage_figure(world, Path(args.final_stage), args.seeds)
    rows = []
    for ex in load_examples():
        req = world.request(seg=ex.seg, sketch=ex.sketch, text=ex.text, reliability=ex.reliability, seed=0)
        cells = [seg_to_rgb(req.values["seg"]), np.repeat(req.values["sketch"][:, :, None], 3, axis=2)]
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


def final_stage_figure(world, out: Path, seeds: int) -> None:
    """Rows: the examples; pairs of cells: one sample (seed k) at 128 px, bicubic from the model's 32 px
    and through the final-image stage."""
    from unite_demo.worlds.faces.training import superres

    rows = []
    for ex in load_examples():
        pairs = []
        for seed in range(seeds):
            req = world.request(seg=ex.seg, sketch=ex.sketch, text=ex.text, reliability=ex.reliability, seed=seed,
                                superres=False)
            small = to_uint8([f for f in world.generate(req) if f.done][0].image)
            pairs += [superres.bicubic(small)[0], superres.upscale(world.final_stage, small)[0],
                      np.full((CELL, 6, 3), 255, np.uint8)]
        rows.append(np.concatenate(pairs[:-1], 1))
    head = Image.new("RGB", (rows[0].shape[1], 18), (255, 255, 255))
    for seed in range(seeds):
        ImageDraw.Draw(head).text((seed * (2 * CELL + 6) + 4, 3), "bicubic from 32 px | final-image stage",
                                  fill=(0, 0, 0))
    grid = np.concatenate([np.asarray(head), *rows], 0)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(out)
    print(f"wrote {out} ({grid.shape[1]}x{grid.shape[0]})")


if __name__ == "__main__":
    main()
