"""What the page shows for a world: the painter's brush colours in painter order and their legend,
the map to start painting on, the class picker, the world's defaults; and the examples as the page's
inputs."""

from __future__ import annotations

import functools
import html
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image

from unite_demo.limits import CANVAS, SEED
from unite_demo.worlds.canvas import Palette, editor_rgba, flatten, sketch_for_canvas
from unite_demo.worlds.conditions import ConditionError, open_image, seg_from_image
from unite_demo.worlds.faces.data import FACES_PALETTE
from unite_demo.worlds.faces.examples import load_examples
from unite_demo.worlds.pretrained.labels import ADE20K_NAMES, ade20k_painter_order
from unite_demo.worlds.world import World

CLASS_OFF = "(none: the class expert is off)"  # the class picker's empty choice


def painter_order(palette: Palette = FACES_PALETTE) -> list[int]:
    """Class ids in the order the painter offers them, one per distinct colour: for ADE20K the common
    classes first, then the rest by id (all reachable); otherwise by id. A class whose colour an
    earlier class has (ADE20K's skyscraper = road) is left out: a painted map reads it as that class."""
    names, colours = palette
    order = ade20k_painter_order() if tuple(names) == ADE20K_NAMES else range(len(names))
    seen, out = set(), []
    for k in order:
        rgb = tuple(int(v) for v in colours[k])
        if rgb not in seen:
            seen.add(rgb)
            out.append(k)
    return out


def palette_hex(palette: Palette = FACES_PALETTE) -> list[str]:
    """The palette's class colours as '#rrggbb' in painter order (the painter's fixed brush palette)."""
    return ["#%02x%02x%02x" % tuple(int(v) for v in palette[1][k]) for k in painter_order(palette)]


def legend_html(palette: Palette = FACES_PALETTE) -> str:
    """A colour swatch and the class name(s) for every brush colour, in painter order."""
    names, colours = palette
    items = []
    for k, colour in zip(painter_order(palette), palette_hex(palette)):
        name = " / ".join(n for n, rgb in zip(names, colours) if (rgb == colours[k]).all())
        items.append(
            f'<span class="legend-item" data-class="{html.escape(name)}" style="display:inline-flex;'
            f'align-items:center;gap:4px;margin:2px 10px 2px 0"><span style="display:inline-block;width:14px;'
            f'height:14px;border:1px solid #888;background:{colour}"></span>{html.escape(name)}</span>')
    return f'<div class="palette-legend">{"".join(items)}</div>'


def blank_map(size: int = CANVAS, palette: Palette = FACES_PALETTE) -> np.ndarray:
    """A painter background of the palette's first class only (what unpainted pixels read as:
    background for the faces, wall in ADE20K): (size,size,3) uint8."""
    return np.broadcast_to(palette[1][0], (size, size, 3)).copy()


def painter_upload(source, world: World) -> np.ndarray:
    """An image given to the painter -> the map as the world reads it, in its palette's colours at the
    canvas size. Maps only: an image whose colours are not the palette's (a photo) is refused, as
    anywhere a segmentation map is given (conditions.seg_from_image, strict)."""
    if world.palette is None:
        raise ConditionError(f"segmentation map: the world {world.name} has no segmentation expert")
    ids = seg_from_image(source, CANVAS, strict=True, palette=world.palette)
    return np.asarray(world.palette[1], np.uint8)[ids]


def sketch_upload(source) -> np.ndarray:
    """An image given to the sketch canvas -> the canvas at its size, the image fitted whole on white
    paper (a drawing, or a photo that the sketch expert will get as its edges)."""
    img = open_image(source, "sketch").convert("RGBA")
    scale = CANVAS / max(img.size)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.LANCZOS)
    paper = Image.new("RGBA", (CANVAS, CANVAS), (255, 255, 255, 255))
    paper.alpha_composite(img, ((CANVAS - img.width) // 2, (CANVAS - img.height) // 2))
    return np.asarray(paper.convert("RGB"))


def random_seed() -> int:
    return random.randint(int(SEED.low), int(SEED.high))


@dataclass
class WorldPage:
    """What the page shows for one world: which cards are on, the painter's brush colours and legend,
    the map to start painting on, the class picker's choices, the steps and guidance to start from."""

    name: str
    modalities: tuple[str, ...]
    brush_colours: list[str]  # '#rrggbb' in painter order
    default_colour: str  # the first brush colour that is not the unpainted class
    legend: str  # HTML
    blank: np.ndarray  # (CANVAS, CANVAS, 3) uint8, the unpainted class
    class_choices: list[tuple[str, str]]  # (label, value); the first, value '', is off
    steps: int
    guidance: float
    reliability: dict[str, float]  # each modality's slider to start from


def world_page(world: World) -> WorldPage:
    """The page's widgets for a loaded world."""
    order = painter_order(world.palette)
    colours = palette_hex(world.palette)
    d = world.sampling_defaults()
    return WorldPage(world.name, world.modalities, colours, next(c for k, c in zip(order, colours) if k != 0),
                     legend_html(world.palette), blank_map(CANVAS, world.palette),
                     [(CLASS_OFF, ""), *((n, n) for n in world.class_names)], int(d["steps"]), float(d["guidance"]),
                     world.default_reliability())


@dataclass
class ExampleInputs:
    """Everything one example sets on the page."""

    name: str
    seg: np.ndarray  # painter background, palette colours, (CANVAS, CANVAS, 3)
    sketch: np.ndarray  # canvas background, dark strokes on white, (CANVAS, CANVAS, 3)
    text: str
    reliability: dict[str, float]
    seed: int

    @property
    def values(self) -> dict:
        """The page's value of each modality the example sets."""
        return {"seg": self.seg, "sketch": self.sketch, "text": self.text}


@functools.lru_cache(maxsize=None)
def example_inputs(index: int) -> ExampleInputs:
    """Example `index` of assets/examples, read on first use and kept."""
    examples = load_examples()
    if not 0 <= index < len(examples):
        raise IndexError(f"example {index}: there are {len(examples)} examples")
    e = examples[index]
    seg = np.asarray(Image.open(e.seg).convert("RGB").resize((CANVAS, CANVAS), Image.Resampling.NEAREST))
    sketch = sketch_for_canvas(np.asarray(Image.open(e.sketch).convert("L")))
    return ExampleInputs(e.name, seg, sketch, e.text, dict(e.reliability), int(e.seed))


def example_names() -> list[str]:
    return [e.name for e in load_examples()]


# Where each expert is heard: the page paints a reliability map on a clear layer over a faded view of a
# drawing (conditions.reliability_map reads the layer: black not heard, grey half, clear heard).
GUIDE_FADE = 0.3  # how much of the drawing the map painter's background keeps (the rest is white)


def blank_reliability_map(guide=None, size: int = CANVAS) -> dict:
    """The map painter's value with nothing painted (heard everywhere, as the slider says): a clear layer
    over `guide` faded (guide_image; None: white paper)."""
    return reliability_map_over(guide, None, size)


def reliability_map_over(guide, painted, size: int = CANVAS) -> dict:
    """The map painter's value: the layer painted so far (an image editor's value, its first layer; None:
    a clear one) over a faded view of `guide` (a canvas's value or an image; None or empty: white paper)."""
    background = np.full((size, size, 3), 255, np.uint8)
    shown = guide_image(guide, size)
    if shown is not None:
        background = (GUIDE_FADE * shown + (1 - GUIDE_FADE) * background).round().astype(np.uint8)
    layers = painted.get("layers") if isinstance(painted, dict) else None
    layer = next((v for v in layers or () if v is not None), None)
    if layer is not None:
        layer = np.asarray(open_image(layer, "reliability map").convert("RGBA").resize((size, size)))
    else:
        layer = np.zeros((size, size, 4), np.uint8)
    return {"background": background, "layers": [layer], "composite": None}


def guide_image(value, size: int = CANVAS) -> np.ndarray | None:
    """What a canvas shows (an image editor's value or an image) as (size,size,3) uint8 over white; None
    when it holds nothing (canvas.editor_rgba)."""
    rgba = editor_rgba(value, "canvas")
    if rgba is None:
        return None
    return flatten(np.asarray(Image.fromarray(rgba).resize((size, size))), (255, 255, 255))
