"""The registry of worlds: which there are, which can be loaded here, and loading one. The studio
keeps the worlds it has loaded (unite_demo.studio.studio.Studio); the command line loads the one it runs."""

from __future__ import annotations

from collections.abc import Callable

from unite_demo.worlds import pretrained as sd15
from unite_demo.worlds.conditions import ConditionError
from unite_demo.worlds.faces.world import BUILTIN, load_faces_world
from unite_demo.worlds.world import World


class WorldLoadError(OSError):
    """A world's weights are there but could not be loaded; the other worlds are not affected."""


LOADERS: dict[str, Callable[[], World]] = {}  # worlds that code adds (a Space's own, a test's), by name


def names() -> list[str]:
    """Every world there is; the pretrained ones load only where their weights are configured."""
    return [BUILTIN, *sd15.WORLDS, *LOADERS]


def available() -> list[str]:
    """The worlds that can be loaded here: the built-in one always, the pretrained ones when their
    weights are configured and present (sd15.configured_worlds; nothing is loaded or downloaded to find out)."""
    return [BUILTIN, *sd15.configured_worlds(), *LOADERS]


def load(name: str) -> World:
    """World `name`, freshly loaded. An unknown name is a ConditionError, weights that are not there a
    FileNotFoundError (sd15.WeightsMissing), and weights that fail to load (damaged, out of memory) a
    WorldLoadError, each with its own message."""
    if name not in names():
        raise ConditionError(f"unknown world {name!r}; accepted: {', '.join(names())}")
    try:
        if name in LOADERS:
            return LOADERS[name]()
        return load_faces_world() if name == BUILTIN else sd15.load_world(name)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise WorldLoadError(f"{name} could not be loaded ({type(e).__name__}: {e})") from e
