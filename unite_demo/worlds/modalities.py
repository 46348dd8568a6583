"""The modalities, each declared once. A Modality record says everything the rest of the studio needs to
know about one kind of input: its name and label, the widget the page builds for it and the parameter
names the API and the command line give it, how a given input is read and validated (for a world: its
size, palette or classes), what the page's widget value becomes, how the validated value becomes the
tensor the experts read, how it is shown back to the user, and its reliability when nobody says.

The conditions (worlds.conditions), the studio (studio.inputs, runs, strips), the page (app.py), the
API (/generate's parameters) and the command line (generate.py) all read MODALITIES; a new modality
is one more `register(Modality(...))` plus an expert that reads its key. A null condition is the
all-zero tensor of the shape `tensor` gives (the denoiser signature's convention, method.experts)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from unite_demo.worlds import conditions as c
from unite_demo.worlds.canvas import seg_from_editor, sketch_from_editor


class World(Protocol):
    """What a modality reads of the world it is read for (worlds.world.World has it all)."""

    image_size: int  # the conditions' side
    palette: tuple[tuple[str, ...], np.ndarray] | None  # the seg expert's (class names, (K,3) colours)
    class_names: tuple[str, ...]  # the class expert's classes
    encode_text: Any  # captions -> the text expert's condition
    caption_doubt: Any  # caption -> None where its text expert understands it, else what that expert reads (or None)

    def read_caption(self, text: str) -> dict | None: ...


# What the page can build for a modality: a label-map painter, a drawing canvas, a text box, a picker.
WIDGETS = ("painter", "drawing", "caption", "choice")

# (the validated value, or None: this modality is off; a note for the user, or several, or None)
Reading = tuple[Any, str | tuple[str, ...] | None]


@dataclass(frozen=True)
class Modality:
    name: str  # the key of its condition, its reliability and its expert
    label: str  # in words, for labels, notes and the strips
    widget: str  # one of WIDGETS
    read: Callable[[Any, World], Reading]  # a given input (path, array, PIL image, string ...) -> validated
    from_page: Callable[[Any, World], Reading]  # the page widget's value -> validated (the canvases' own reading)
    tensor: Callable[[Any, World], torch.Tensor]  # validated value -> its batch-1 condition
    example: Callable[[World], Any]  # a small valid input, for warming a world up
    show: Callable[[Any, World, int], Image.Image] | None = None  # validated value -> the image the expert got
    describe: Callable[[Any, World], str] | None = None  # ... or the words it got (the caption box)
    keyword: str = ""  # its name as /generate's and World.request's parameter ('': the name)
    switch: bool = True  # the page offers an on/off box (/generate: <name>_on)
    default_reliability: float = 1.0  # where the world does not say
    help: str = ""  # the command line's help for --<name>
    page_label: str = ""  # the page widget's label ('': the label)
    page_id: str = ""  # the page widget's element id ('': <name>-input)
    view_label: str = ""  # the label of what the expert received, shown as an image ('': the label)

    @property
    def param(self) -> str:
        return self.keyword or self.name

    @property
    def widget_id(self) -> str:
        return self.page_id or f"{self.name}-input"

    @property
    def switch_param(self) -> str:
        return f"{self.name}_on"

    @property
    def reliability_param(self) -> str:
        return f"r_{self.name}"

    @property
    def map_param(self) -> str:
        """/generate's reliability map of this modality: where it is heard (conditions.reliability_map)."""
        return f"map_{self.name}"

    @property
    def window_param(self) -> str:
        """/generate's window of this modality: when it is heard, 'start,end' (conditions.check_window)."""
        return f"window_{self.name}"

    def __post_init__(self):
        if self.widget not in WIDGETS:
            raise ValueError(f"modality {self.name!r}: widget {self.widget!r}; accepted: {', '.join(WIDGETS)}")


MODALITIES: dict[str, Modality] = {}  # by name, in the page's order


def register(modality: Modality) -> Modality:
    """Add a modality (or replace the one of that name); the page, API and CLI built afterwards offer it."""
    MODALITIES[modality.name] = modality
    return modality


def by_keyword() -> dict[str, Modality]:
    """The modalities by the parameter name the API and World.request know them by."""
    return {m.param: m for m in MODALITIES.values()}


# ---------------------------------------------------------------------------------------------
# The built-in modalities: a segmentation map, a sketch, a caption, an ImageNet class.

def _read_seg(given, world: World) -> Reading:
    if isinstance(given, c.Labels):
        return c.check_labels(given.ids, world.image_size, len(world.palette[0])), None
    return c.seg_from_image(given, world.image_size, palette=world.palette), None


def _page_seg(value, world: World) -> Reading:

    ids = seg_from_editor(value, world.image_size, palette=world.palette)
    if ids is None:
        return None, "segmentation map is blank (nothing painted): the segmentation expert is off"
    return ids, None


def _seg_tensor(ids, world: World) -> torch.Tensor:
    return c.one_hot(ids, len(world.palette[0]))[None]  # (1, K, S, S)


def _show_seg(ids, world: World, size: int) -> Image.Image:
    return Image.fromarray(world.palette[1][ids]).resize((size, size), Image.Resampling.NEAREST)


def _example_seg(world: World):
    s = world.image_size
    ids = np.zeros((s, s), np.uint8)
    ids[s // 4:3 * s // 4, s // 4:3 * s // 4] = 1
    return c.Labels(ids)


def _read_sketch(given, world: World) -> Reading:
    strokes = c.sketch_from_image(given, world.image_size)
    if not strokes.any():
        return None, "sketch is empty (no strokes): the sketch expert is off"
    return strokes, None


def _page_sketch(value, world: World) -> Reading:

    drawn = sketch_from_editor(value)
    if drawn.image is None:
        return None, drawn.note
    strokes, note = _read_sketch(drawn.image, world)
    return strokes, note or drawn.note


def _show_sketch(strokes, world: World, size: int) -> Image.Image:
    return Image.fromarray(strokes).resize((size, size), Image.Resampling.NEAREST).convert("RGB")


def _example_sketch(world: World):
    s = world.image_size
    strokes = np.zeros((s, s), np.uint8)
    strokes[s // 2, s // 4:3 * s // 4] = 255
    return strokes


def _read_text(given, world: World) -> Reading:
    """A caption; one the world's text expert does not understand (World.caption_doubt) is left out, as
    an empty one is, and a note says so."""
    notes: list[str] = []
    text = c.check_text(given, notes)
    if text is None:
        return None, (*notes, "caption is empty: the text expert is off")
    doubt = world.caption_doubt(text) if getattr(world, "caption_doubt", None) is not None else None
    if doubt:
        return None, (*notes, f'the text expert did not understand: "{c.shortened(text)}"; {doubt}, so the run '
                      "goes on without it")
    return text, tuple(notes)


def _describe_text(text: str, world: World) -> str:
    reading = world.read_caption(text)  # None: the world's text expert reads the whole caption, no attributes
    return text if reading is None else f"{text}\n\nthe text expert reads: {c.describe_reading(reading)}"


def _read_class(given, world: World) -> Reading:
    if given is None or (isinstance(given, str) and not given.strip()):
        return None, "no class picked: the class expert is off"
    return c.check_class(given, world.class_names), None


def _describe_class(class_id: int, world: World) -> str:
    names = world.class_names
    return f"class: {names[class_id] if class_id < len(names) else '?'} (id {class_id})"


SEG = register(Modality(
    "seg", "segmentation", "painter", _read_seg, _page_seg, _seg_tensor, _example_seg, show=_show_seg,
    help="segmentation map PNG in the world's palette colours (sd15: ADE20K)", page_label="Segmentation map",
    page_id="seg-painter", view_label="label map"))
SKETCH = register(Modality(
    "sketch", "sketch", "drawing", _read_sketch, _page_sketch, lambda s, w: c.stroke_planes(s)[None],
    _example_sketch, show=_show_sketch, help="sketch PNG (white strokes on black, or dark strokes on white)",
    page_label="Sketch", page_id="sketch-canvas", view_label="binarised sketch"))
TEXT = register(Modality(
    "text", "text", "caption", _read_text, _read_text, lambda t, w: w.encode_text([t]), lambda w: "a face",
    describe=_describe_text, help="caption", page_label="Caption", page_id="caption"))
CLASS = register(Modality(
    "class", "class", "choice", _read_class, _read_class, lambda k, w: c.one_hot_class(k, len(w.class_names)),
    lambda w: 0, describe=_describe_class, keyword="class_name", switch=False,
    help="ImageNet class name or id 0..999 (worlds with a class expert: sd15-dit)", page_label="ImageNet class",
    page_id="class-name"))
