"""The registry of worlds: which there are, which can be loaded here, and loading one. The studio
keeps the worlds it has loaded (unite_demo.studio.Studio); the command line loads the one it runs."""

from __future__ import annotations

from . import sd15
from .conditions import ConditionError
from .world import BUILTIN, World, load_faces_world


class WorldLoadError(OSError):
    """A world's weights are there but could not be loaded; the other worlds are not affected."""


def names() -> list[str]:
    """Every world there is; the pretrained ones load only where their weights are configured."""
    return [BUILTIN, *sd15.WORLDS]


def available() -> list[str]:
    """The worlds that can be loaded here: the built-in one always, the pretrained ones when their
    weights are configured and present (sd15.configured_worlds; nothing is loaded or downloaded to find out)."""
    return [BUILTIN, *sd15.configured_worlds()]


def load(name: str) -> World:
    """World `name`, freshly loaded. An unknown name is a ConditionError, weights that are not there a
    FileNotFoundError (sd15.WeightsMissing), and weights that fail to load (damaged, out of memory) a
    WorldLoadError, each with its own message."""
    if name not in names():
        raise ConditionError(f"unknown world {name!r}; accepted: {', '.join(names())}")
    try:
        return load_faces_world() if name == BUILTIN else sd15.load_world(name)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise WorldLoadError(f"{name} could not be loaded ({type(e).__name__}: {e})") from e
