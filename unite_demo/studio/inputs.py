"""A run's inputs as one structure, a card per modality (its value, its switch, its reliability), built
once from the page's or the API's named values (/generate's parameters), and their reading into a
validated Request for a world: every value through the world's one validation pass."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from unite_demo.limits import DEFAULTS
from unite_demo.studio.strips import Strip, make_strip
from unite_demo.worlds.conditions import ConditionError, Request
from unite_demo.worlds.faces.world import BUILTIN
from unite_demo.worlds.modalities import MODALITIES, Modality
from unite_demo.worlds.world import World

# /generate's parameters that are not a modality's (the modalities' come from worlds.modalities)
SETTINGS = ("seed", "steps", "guidance", "sampler", "world", "superres", "view", "sweep", "sweep_values")


@dataclass(frozen=True)
class Card:
    """One modality as the page offers it: its value (a canvas, a caption, a class name or id), its
    on switch, its reliability (None: the world's default), where it is heard (a reliability map: an
    image, or the page's map painter; None: everywhere) and when (a window 'start,end' or a pair; None:
    every step)."""

    value: Any = None
    on: bool = True
    reliability: Any = None
    reliability_map: Any = None
    window: Any = None


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

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RunInputs:
        """/generate's named values (the page's widgets): each modality's <keyword>, <name>_on, r_<name>,
        map_<name> and window_<name> (worlds.modalities) and SETTINGS; one left out takes its default. A
        name that is neither is refused."""
        known = set(SETTINGS)
        cards = {}
        for m in MODALITIES.values():
            names = (m.param, m.switch_param, m.reliability_param, m.map_param, m.window_param)
            known.update(names)
            if any(n in params for n in names):
                cards[m.name] = Card(params.get(m.param), params.get(m.switch_param, True) if m.switch else True,
                                     params.get(m.reliability_param), params.get(m.map_param),
                                     params.get(m.window_param))
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConditionError(f"unknown input {unknown[0]!r}; accepted: {', '.join(sorted(known))}")
        return cls(cards, **{k: params[k] for k in SETTINGS if k in params})


def _empty(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _switched_off(m: Modality, card: Card) -> str | None:
    return f"{m.label} is switched off" if not _empty(card.value) else None


def build_request(world: World, inputs: RunInputs) -> Request:
    """The run's inputs -> a validated Request for `world` (ConditionError on bad input); its notes
    say, in words, which modalities are off and why. The cards of modalities the world has no expert
    for must be empty (the page hides them); their reliabilities are still checked, by the validation
    (the API sends every card). A card's map and window go with its input: those of a card switched off
    or left empty are not read (the expert is off, and its note says so)."""
    unknown = [m for m in inputs.cards if m not in MODALITIES]
    if unknown:
        raise ConditionError(f"unknown modality {unknown[0]!r}; accepted: {', '.join(MODALITIES)}")
    notes, given, reliability, maps, windows = [], {}, {}, {}, {}
    for name, m in MODALITIES.items():
        card = inputs.card(name)
        if card.reliability is not None:
            reliability[name] = card.reliability
        if name not in world.modalities:
            if card.on and not _empty(card.value):
                given[name] = card.value  # refused by the validation, naming the world's modalities
            continue
        if not card.on:
            note = _switched_off(m, card)
            notes += [note] if note else []
            continue
        given[name] = card.value
        if not _empty(card.value):
            maps.update({name: card.reliability_map} if card.reliability_map is not None else {})
            windows.update({name: card.window} if not _empty(card.window) else {})
    sampling = {k: v for k, v in (("steps", inputs.steps), ("guidance", inputs.guidance)) if v is not None}
    req = world.request(given, from_page=True, reliability=reliability, seed=inputs.seed, sampler=inputs.sampler,
                        superres=inputs.superres, reliability_maps=maps, windows=windows, **sampling)
    req.notes = tuple(dict.fromkeys([*notes, *req.notes]))
    return req


def build_strip(world: World, inputs: RunInputs) -> Strip:
    """The run's inputs -> the runs its view shows side by side (strips.make_strip), the run as set
    marked; ConditionError on bad input."""
    return make_strip(build_request(world, inputs), inputs.view, inputs.sweep, inputs.sweep_values)
