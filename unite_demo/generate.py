r"""Generate one image from any mix of a segmentation map, a sketch and a caption (and, in the
sd15-dit world, an ImageNet class).

    python -m unite_demo.generate --seg assets/examples/seg_0.png --sketch assets/examples/sketch_0.png \
        --text "a smiling person with red hair" --reliability seg=1,sketch=1,text=1 --seed 0 --out out.png
    python -m unite_demo.generate --world sd15-dit --text "a photo on the beach" --class "golden retriever" \
        --reliability text=1,class=1 --out dog.png      # pretrained weights configured (README)
    python -m unite_demo.generate --seg ... --sketch ... --text ... --explain --out strip.png --animation strip.gif
    python -m unite_demo.generate --seg ... --text ... --sweep text --values 0,0.5,1,2,3 --out sweep.png
    python -m unite_demo.generate --seg ... --sketch ... --text ... --reliability-map seg=left_white.png \
        --window sketch=0,0.6 --out out.png   # seg heard where its map is white, the sketch in the first 60%

Any modality may be left out. Bad input exits with status 2 and one line naming the problem. What the
validation changed (a number set within its range, a long caption cut, a caption the text expert does not
understand left out) is printed as a note.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from unite_demo.limits import DEFAULTS, GUIDANCE, RELIABILITY, STEPS, SWEEP_VALUES
from unite_demo.method.sampler import SAMPLERS
from unite_demo.studio.runs import save_frames, shown
from unite_demo.studio.strips import make_strip
from unite_demo.worlds import registry as worlds
from unite_demo.worlds.conditions import ConditionError, to_uint8
from unite_demo.worlds.faces.world import BUILTIN
from unite_demo.worlds.modalities import MODALITIES

DISPLAY_SIZE = 256


def main(argv=None) -> int:
    d = DEFAULTS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", default=BUILTIN, help=f"{', '.join(worlds.names())} (default {BUILTIN}; the "
                    "pretrained ones need their weights configured, see the README)")
    for m in MODALITIES.values():  # --seg, --sketch, --text, --class, ... (worlds.modalities)
        ap.add_argument(f"--{m.name}", dest=m.param, help=m.help)
    ap.add_argument("--reliability", default="", help="per-modality reliability, e.g. seg=1,sketch=1,text=1 "
                    f"({RELIABILITY.low:g}..{RELIABILITY.high:g})")
    ap.add_argument("--reliability-map", action="append", metavar="NAME=IMAGE", help="a modality's reliability "
                    "as a map over the image, e.g. seg=mask.png: a greyscale image of any size, black = that expert "
                    "not heard there, white = heard at its reliability (transparent counts as white); repeatable, "
                    "or comma-separated pairs")
    ap.add_argument("--window", action="append", metavar="NAME=START,END", help="the fraction of the denoising a "
                    "modality is heard in, 0 <= START < END <= 1, e.g. sketch=0,0.6 (the sketch in the first 60%% of "
                    "the steps only); repeatable, or pairs like sketch=0,0.6,seg=0.2,1")
    ap.add_argument("--guidance", help=f"guidance scale s, {GUIDANCE.low:g}..{GUIDANCE.high:g} (default: the world's, "
                    f"{d['guidance']} for {BUILTIN})")
    ap.add_argument("--steps", help=f"denoising steps, {STEPS.low}..{STEPS.high} (default: the world's, {d['steps']} "
                    f"for {BUILTIN})")
    ap.add_argument("--seed", default=d["seed"], help="random seed (default 0)")
    ap.add_argument("--sampler", default=d["sampler"], help=f"{', '.join(SAMPLERS)} (default {d['sampler']})")
    ap.add_argument("--no-superres", action="store_true", help="keep the world's own output (32 px for "
                    f"{BUILTIN}) instead of its final-image stage's (128 px)")
    ap.add_argument("--size", type=int, default=0, help="resize the output to this size, bicubic, from the final "
                    f"image (default: as it comes, 128 px for {BUILTIN}; e.g. {DISPLAY_SIZE})")
    ap.add_argument("--out", default="out.png")
    ap.add_argument("--frames", help="folder for one x0 preview PNG per step")
    ap.add_argument("--explain", action="store_true", help="write the strip of each expert alone beside their "
                    "product, all from the same noise, labelled")
    ap.add_argument("--sweep", metavar="MODALITY", help="write the strip of MODALITY's reliability at each of "
                    "--values and as set (the others as set), all from the same noise")
    ap.add_argument("--values", help=f"the sweep's reliabilities (default {','.join(f'{v:g}' for v in SWEEP_VALUES)})")
    ap.add_argument("--animation", help="also write the steps as an animated GIF (or WebP, by its suffix)")
    args = ap.parse_args(argv)
    try:
        sampling = {}  # steps and guidance not given: the world's own defaults
        if args.steps is not None:
            sampling["steps"] = _whole(args.steps, "steps")
        if args.guidance is not None:
            sampling["guidance"] = args.guidance
        seed = _whole(args.seed, "seed")
        world = worlds.load(args.world)
        req = world.request({m.name: getattr(args, m.param) for m in MODALITIES.values()},
                            reliability=args.reliability, reliability_maps=args.reliability_map,
                            windows=args.window, seed=seed, sampler=args.sampler,
                            superres=not args.no_superres, **sampling)
        if args.explain and args.sweep:
            raise ConditionError("--explain and --sweep: choose one strip")
        view = "experts" if args.explain else "sweep" if args.sweep else "product"
        strip = make_strip(req, view, args.sweep, args.values)
    except (ConditionError, ValueError, FileNotFoundError) as e:  # sd15.WeightsMissing is a FileNotFoundError
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    for note in (*req.notes, *strip.notes):
        print(f"note: {note}", file=sys.stderr)
    frames_dir = Path(args.frames) if args.frames else None
    steps = []
    try:
        for frame in world.generate_strip(strip.requests):
            images = to_uint8(frame.image)
            steps.append(images)
            size = args.size or images.shape[1]
            if frame.done:
                save_shown(shown(images, strip, size), Path(args.out))
            elif frames_dir:
                save_shown(shown(images, strip, size), frames_dir / f"step_{frame.step:03d}.png")
    except FloatingPointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}" + (f" ({strip.caption()})" if len(strip.requests) > 1 else ""))
    if args.animation:
        side = args.size or steps[-1].shape[1]
        save_frames([shown(images, strip, side) for images in steps], Path(args.animation))
        print(f"wrote {args.animation}")
    return 0


def save_shown(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def _one_line(e: Exception) -> str:
    """A message on one line (the missing-weights message lists one missing part per line)."""
    return "; ".join(line.strip() for line in str(e).splitlines() if line.strip()).replace(":; ", ": ")


def _whole(value: str, name: str):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConditionError(f"{name}: expected a whole number, got {value!r}") from None


if __name__ == "__main__":
    sys.exit(main())
