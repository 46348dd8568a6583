"""A run's inputs as one structure, a card per modality (its value, its switch, its reliability),
and their reading into a validated Request for a world: the canvases through unite_demo.canvas,
then every value through unite_demo.conditions, once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .canvas import seg_from_editor, sketch_from_editor
from .conditions import REQUEST_FIELDS, ConditionError, Request, check_range
from .limits import DEFAULTS, RELIABILITY
from .strips import Strip, make_strip
from .world import BUILTIN, World

MODALITIES = ("seg", "sketch", "text", "class")  # every modality a world may have, in the page's order


@dataclass(frozen=True)
class Card:
    """One modality as the page offers it: its value (a canvas, a caption, a class name or id), its
    on switch, its reliability (None: the world's default)."""

    value: Any = None
    on: bool = True
    reliability: Any = None


@dataclass(frozen=True)
class RunInputs:
    """Everything one run is asked with: a card per modality (a modality without one is read as an
    empty card), the sampling settings (None: the world's default) and the world."""

    cards: Mapping[str, Card] = field(default_factory=dict)
    seed: Any = DEFAULTS["seed"]
    steps: Any = None
    guidance: Any = None
    sampler: Any = DEFAULTS["sampler"]
    world: Any = BUILTIN
    superres: Any = True  # the final image sharpened by the world's final-image stage (None: on)
    view: Any = "product"  # limits.VIEWS: the product, each expert alone beside it, or a reliability strip
    sweep: Any = None  # the modality a reliability strip sweeps
    sweep_values: Any = None  # its values (None: limits.SWEEP_VALUES)

    def card(self, modality: str) -> Card:
        return self.cards.get(modality, Card())


def _seg(card: Card, world: World):
    """The painted map in the world's palette colours, or None with the reason."""
    if not card.on:
        return None, "segmentation is switched off" if card.value is not None else None
    ids = seg_from_editor(card.value, world.image_size, world.palette)
    if ids is None:
        return None, "segmentation map is blank (nothing painted): the segmentation expert is off"
    return world.palette[1][ids], None


def _sketch(card: Card, world: World):
    if not card.on:
        return None, "sketch is switched off" if card.value is not None else None
    s = sketch_from_editor(card.value)
    return s.image, s.note


def _text(card: Card, world: World):
    if not card.on:
        return None, "text is switched off" if card.value else None
    if card.value is None or (isinstance(card.value, str) and not card.value.strip()):
        return None, "caption is empty: the text expert is off"
    return card.value, None


def _class(card: Card, world: World):
    value = card.value if card.on else None
    if isinstance(value, str) and not value.strip():
        value = None
    if value is None and "class" in world.modalities:
        return None, "no class picked: the class expert is off"
    return value, None


READERS = {"seg": _seg, "sketch": _sketch, "text": _text, "class": _class}  # card -> (value for World.request, note)


def build_request(world: World, inputs: RunInputs) -> Request:
    """The run's inputs -> a validated Request for `world` (ConditionError on bad input); its notes
    say, in words, which modalities are off and why. A card of a modality the world has no expert for
    still has its reliability checked (the API sends every card)."""
    unknown = [m for m in inputs.cards if m not in MODALITIES]
    if unknown:
        raise ConditionError(f"unknown modality {unknown[0]!r}; accepted: {', '.join(MODALITIES)}")
    notes, values, reliability = [], {}, {}
    for m in MODALITIES:
        card = inputs.card(m)
        values[REQUEST_FIELDS[m]], note = READERS[m](card, world)
        if note:
            notes.append(note)
        if card.reliability is not None:
            if m in world.modalities:
                reliability[m] = card.reliability
            else:
                check_range(f"reliability of {m}", card.reliability, RELIABILITY)
    sampling = {k: v for k, v in (("steps", inputs.steps), ("guidance", inputs.guidance)) if v is not None}
    req = world.request(**values, reliability=reliability, seed=inputs.seed, sampler=inputs.sampler,
                        superres=inputs.superres, **sampling)
    req.notes = tuple(dict.fromkeys([*notes, *req.notes]))
    return req


def build_strip(world: World, inputs: RunInputs) -> Strip:
    """The run's inputs -> the runs its view shows side by side (strips.make_strip), the run as set
    marked; ConditionError on bad input."""
    return make_strip(build_request(world, inputs), inputs.view, inputs.sweep, inputs.sweep_values)
