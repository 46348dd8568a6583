"""Example inputs shipped in assets/examples: held-out faces' maps and sketches, and captions.

    python -m unite_demo.worlds.faces.examples     # (re)write assets/examples from the generator
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from unite_demo import ROOT
from unite_demo.limits import DEFAULTS
from unite_demo.worlds.faces.data import SPLITS, caption_for, make_face, seg_to_rgb

EXAMPLES_DIR = ROOT / "assets" / "examples"
EXAMPLE_SIZE = 256  # stored upscaled (nearest neighbour) so they are pleasant to view and paint on
EXAMPLE_SEEDS = (133, 476, 76, 257, 261, 505)  # offsets into the held-out split: six hair colours, whole faces


@dataclass
class Example:
    name: str
    seg: Path
    sketch: Path
    text: str
    reliability: dict[str, float]
    seed: int


def write_examples(folder: Path = EXAMPLES_DIR, size: int = 32) -> list[Example]:
    """Seg map, sketch and a full caption of the same held-out faces (never trained on)."""
    folder.mkdir(parents=True, exist_ok=True)
    examples = []
    for k, offset in enumerate(EXAMPLE_SEEDS):
        face = make_face(SPLITS["heldout"].start + offset, size)
        up = (EXAMPLE_SIZE, EXAMPLE_SIZE)
        seg_path, sketch_path = folder / f"seg_{k}.png", folder / f"sketch_{k}.png"
        Image.fromarray(seg_to_rgb(face.seg)).resize(up, Image.Resampling.NEAREST).save(seg_path)
        Image.fromarray(face.sketch).resize(up, Image.Resampling.NEAREST).save(sketch_path)
        caption, _ = caption_for(face.attributes, random.Random(offset), mention_p=1.0)
        examples.append(Example(f"example {k}", seg_path, sketch_path, caption,
                                dict(DEFAULTS["reliability"]), k))
    index = [{"name": e.name, "seg": e.seg.name, "sketch": e.sketch.name, "text": e.text,
              "reliability": e.reliability, "seed": e.seed} for e in examples]
    (folder / "examples.json").write_text(json.dumps(index, indent=1) + "\n")
    return examples


def load_examples(folder: Path = EXAMPLES_DIR) -> list[Example]:
    index = json.loads((folder / "examples.json").read_text())
    return [Example(d["name"], folder / d["seg"], folder / d["sketch"], d["text"], d["reliability"], d["seed"])
            for d in index]


if __name__ == "__main__":
    for e in write_examples():
        print(e.name, e.seg, e.sketch, e.text, sep=" | ")
