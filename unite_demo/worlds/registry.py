"""The registry of worlds: which there are, which can be loaded here and what the others need
(catalogue(), one description for the page, the API and the command line), and loading one. The
studio keeps the worlds it has loaded (unite_demo.studio.studio.Studio); the command line loads the
one it runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from unite_demo.worlds import pretrained as sd15
from unite_demo.worlds.conditions import ConditionError
from unite_demo.worlds.faces.world import BUILTIN, load_faces_world
from unite_demo.worlds.world import World


class WorldLoadError(OSError):
    """A world's weights are there but could not be loaded; the other worlds are not affected."""


class UnknownWorld(ConditionError):
    """A world name there is no world of; the message lists every world."""


class NeedsWeights(ConditionError, sd15.WeightsMissing):
    """A world there is whose weights are not configured here: the message says what brings them and
    which worlds are available. A ConditionError (bad input: the page, the API and the command line
    say it as it is) and a WeightsMissing (a FileNotFoundError, as loading raised before)."""


AVAILABLE, NEEDS_WEIGHTS, BAD_SETTING = "available", "needs weights", "bad setting"


@dataclass(frozen=True)
class WorldEntry:
    """One world as the page, the API and the command line describe it."""

    name: str
    title: str  # what it is, in a few words
    status: str  # AVAILABLE | NEEDS_WEIGHTS | BAD_SETTING (a UNITE_* value that cannot be used)
    how: str = ""  # what brings it here (the setting or command), "" when available

    @property
    def available(self) -> bool:
        return self.status == AVAILABLE

    @property
    def label(self) -> str:
        """Its line in a menu: the name alone when available, else the name, title and status."""
        return self.name if self.available else f"{self.name} · {self.title} ({self.status})"

    def problem(self, available: list[str]) -> str:
        """Why it cannot be asked for here, in the words of every surface; "" when it can."""
        if self.available:
            return ""
        said = "needs weights" if self.status == NEEDS_WEIGHTS else "cannot be loaded"
        return f"world {self.name!r} {said}: {self.how}; available here: {', '.join(available)}"


LOADERS: dict[str, Callable[[], World]] = {}  # worlds that code adds (a Space's own, a test's), by name


def names() -> list[str]:
    """Every world there is; the pretrained ones load only where their weights are configured."""
    return [BUILTIN, *sd15.WORLDS, *LOADERS]


def available() -> list[str]:
    """The worlds that can be loaded here: the built-in one always, the pretrained ones when their
    weights are configured and present (sd15.configured_worlds; nothing is loaded or downloaded to find out)."""
    return [BUILTIN, *sd15.configured_worlds(), *LOADERS]


def catalogue() -> list[WorldEntry]:
    """Every world there is, in names() order, with its status here and what brings the ones that are
    not available (nothing is loaded or downloaded to find out; a bad UNITE_* value marks the
    pretrained worlds BAD_SETTING, naming it)."""
    config, bad = None, ""
    try:
        config = sd15.PretrainedConfig.from_env()
    except ValueError as e:
        bad = f"fix the setting: {e}"
    entries = [WorldEntry(BUILTIN, "cartoon faces, trained for this studio", AVAILABLE)]
    for name in sd15.WORLDS:
        title = sd15.TITLES[name]
        if config is None:
            entries.append(WorldEntry(name, title, BAD_SETTING, bad))
        elif sd15.missing(name, config):
            entries.append(WorldEntry(name, title, NEEDS_WEIGHTS, sd15.how_to_enable(name, config)))
        else:
            entries.append(WorldEntry(name, title, AVAILABLE))
    entries += [WorldEntry(name, name, AVAILABLE) for name in LOADERS]
    return entries


def check(name: str) -> WorldEntry:
    """World `name`'s entry when it can be loaded here; nothing is loaded. An unknown name is an
    UnknownWorld (a ConditionError) listing every world; a world that needs weights a NeedsWeights (a bad UNITE_* value:
    a ConditionError) saying what brings it and which worlds are available here: the same words on the
    page, from the API and on the command line."""
    entries = catalogue()
    entry = next((e for e in entries if isinstance(name, str) and e.name == name), None)
    if entry is None:
        raise UnknownWorld(f"unknown world {name!r}; accepted: {', '.join(e.name for e in entries)}")
    problem = entry.problem([e.name for e in entries if e.available])
    if problem:
        raise NeedsWeights(problem) if entry.status == NEEDS_WEIGHTS else ConditionError(problem)
    return entry


def load(name: str) -> World:
    """World `name`, freshly loaded. An unknown name, a world that needs weights or a bad setting is a
    ConditionError (check(); NeedsWeights is also a FileNotFoundError), and weights that fail to load
    (damaged, out of memory) a WorldLoadError, each with its own message."""
    check(name)
    try:
        if name in LOADERS:
            return LOADERS[name]()
        return load_faces_world() if name == BUILTIN else sd15.load_world(name)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise WorldLoadError(f"{name} could not be loaded ({type(e).__name__}: {e})") from e
