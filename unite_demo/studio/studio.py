"""The studio: the one object the page holds. It keeps the process-wide state (the loaded and warmed
worlds, the cache of finished runs, the tickets of live mode, torch's CPU threads) and runs a run's
inputs as a stream of display-ready updates. It knows no UI toolkit; app.py only wires widgets to it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image

from unite_demo.limits import CONDITION_SIZE, PREVIEW_SIZE, RESULT_SIZE
from unite_demo.studio.inputs import RunInputs, build_strip
from unite_demo.studio.pages import WorldPage, world_page
from unite_demo.studio.results import ResultCache, SavedRuns, strip_key
from unite_demo.studio.runs import Update, conditions_view, conflict_image, frame_image, shown, status_line
from unite_demo.studio.threads import Tickets, read_ahead, release_memory
from unite_demo.worlds import registry as worlds
from unite_demo.worlds.canvas import sketch_from_editor
from unite_demo.worlds.conditions import ConditionError, sketch_from_image, to_uint8
from unite_demo.worlds.faces.world import BUILTIN
from unite_demo.worlds.world import World


def torch_threads(environ=os.environ) -> int:
    """CPU threads of one run: UNITE_TORCH_THREADS, by default half the cores (one here). The rest stay
    free for the browser, the web server and a second run, which otherwise stall the run's threads
    (`python scripts/measure_ui.py --compare UNITE_TORCH_THREADS=2`)."""
    value = environ.get("UNITE_TORCH_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else max(1, (os.cpu_count() or 2) // 2)


def check_world(name: str) -> None:
    """worlds.check(name), an unknown name's message naming the input as the page's messages do."""
    try:
        worlds.check(name)
    except worlds.UnknownWorld as e:
        raise ConditionError(f"world: {e}") from None


class LoadedWorlds:
    """The worlds a process has loaded, each loaded and warmed up once; one lock per name, so loading a
    large world does not hold up requests to the others (and the page asks from two events at once
    when a world is picked)."""

    def __init__(self):
        self._worlds: dict[str, World] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock(self, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(name, threading.Lock())

    def get(self, name: str = BUILTIN) -> World:
        """World `name`; ConditionError for an unknown world, one that needs weights (worlds.check: what
        brings them, which worlds are available) or whose weights are gone or damaged (the other worlds go on)."""
        check_world(name)
        with self._lock(name):
            if name not in self._worlds:
                try:
                    world = worlds.load(name)
                except OSError as e:  # sd15.WeightsMissing, worlds.WorldLoadError
                    raise ConditionError(f"world: {e}; the other worlds still work") from e
                world.warm_up()
                self._worlds[name] = world
            return self._worlds[name]

    def unload(self, name: str) -> None:
        """Forget a loaded world and free its networks' memory; the next get(name) loads it again."""
        with self._lock(name):
            world = self._worlds.pop(name, None)
        if world is not None:
            world.unload()


class Studio:
    """The page's worlds, result cache, saved runs, tickets and threads, and its runs."""

    def __init__(self, loaded: LoadedWorlds | None = None, cache: ResultCache | None = None,
                 tickets: Tickets | None = None, threads: int | None = None, saved: SavedRuns | None = None):
        self.worlds = loaded if loaded is not None else LoadedWorlds()
        self.cache = cache if cache is not None else ResultCache()
        self.saved = saved if saved is not None else SavedRuns()
        self._running: dict[str | None, int] = {}  # session -> its runs going now
        self._running_lock = threading.Lock()
        self.tickets = tickets if tickets is not None else Tickets()
        self.threads = threads or torch_threads()

    def serve(self) -> None:
        """For serving: torch computes each run on self.threads CPU threads."""
        torch.set_num_threads(self.threads)

    def available_worlds(self) -> list[str]:
        return worlds.available()

    def world_choices(self) -> list[tuple[str, str]]:
        """The World menu's choices as (label, value): every world there is (worlds.catalogue), the
        available ones by name, the others marked, e.g. "sd15 · Stable Diffusion 1.5 + ControlNets
        (needs weights)"; the value is the world's name either way."""
        return [(entry.label, entry.name) for entry in worlds.catalogue()]

    def check_world(self, name: str) -> None:
        """Nothing when world `name` can be loaded here (nothing is loaded); a ConditionError saying why
        not otherwise, in the words of page(), run() and the command line: "world 'sd15' needs weights:
        <what brings them>; available here: ..." or "world: unknown world ...; accepted: ..."."""
        check_world(name)

    def world(self, name: str = BUILTIN) -> World:
        return self.worlds.get(name)

    def page(self, name: str) -> WorldPage:
        """The page's widgets for world `name` (loaded here if it is not yet)."""
        return world_page(self.world(name))

    def derive_sketch(self, value, world_name: str = BUILTIN) -> tuple[np.ndarray | None, str | None]:
        """For an upload to the sketch canvas: a photo -> the sketch the expert will get from it (white
        strokes on black, CONDITION_SIZE) with a note; a drawing -> (None, None)."""
        s = sketch_from_editor(value)
        if not s.derived:
            return None, None
        binary = sketch_from_image(s.image, self.world(world_name).image_size)
        img = Image.fromarray(binary).resize((CONDITION_SIZE, CONDITION_SIZE), Image.Resampling.NEAREST)
        return np.asarray(img.convert("RGB")), s.note

    def stop(self, session: str) -> bool:
        """The run of this session still going (if any) stops within one step (live mode, Stop); whether
        one was going."""
        self.tickets.bump(session)
        with self._running_lock:
            return self._running.get(session, 0) > 0

    def _count_running(self, session: str | None, change: int) -> None:
        with self._running_lock:
            n = self._running.get(session, 0) + change
            if n > 0:
                self._running[session] = n
            else:
                self._running.pop(session, None)

    def run(self, inputs: RunInputs, *, live: bool = False, session: str | None = None) -> Iterator[Update]:
        """One run: an Update after every denoising step, then the final image (done=True) with the files
        it is saved as for slides (Update.files). A repeated
        request gets its cached final image at once. With a session, every run takes a new ticket, and a
        live run stops within one step once a newer ticket is issued for its session (a newer change,
        Run, Stop). Raises ConditionError on bad input. However it ends (finished, failed, closed by
        Stop or a client gone), the sampler thread stops and the run's memory goes back."""
        updates = self._updates(inputs, live, session)
        self._count_running(session, +1)
        try:
            yield from updates
        finally:
            self._count_running(session, -1)
            updates.close()
            release_memory()

    def _updates(self, inputs: RunInputs, live: bool, session: str | None) -> Iterator[Update]:
        ticket = self.tickets.bump(session) if session is not None else None

        def superseded() -> bool:
            return live and ticket is not None and self.tickets.current(session) != ticket

        world = self.world(inputs.world)
        strip = build_strip(world, inputs)
        req = strip.request
        notes = tuple(dict.fromkeys([*req.notes, *strip.notes]))
        views, words = conditions_view(req, world)
        caption = strip.caption() if len(strip.requests) > 1 else ""
        key = strip_key(world.name, strip)
        n = req.steps

        def update(step: int, images: np.ndarray, tail: str = "", **flags) -> Update:
            size = RESULT_SIZE if flags.get("done") else PREVIEW_SIZE
            return Update(step, n, frame_image(images[strip.marked], size), status_line(step, n, tail),
                          views, words, notes=notes, strip=shown(images, strip, size) if len(images) > 1 else None,
                          strip_caption=caption, **flags)

        frames = self.cache.get(key)
        if frames is not None:  # the final image at once: previews replayed in a burst reached the screen last
            fought = self.cache.conflict(key)  # the conflict view at the run's last step
            yield update(n, frames[-1], "done (cached)", done=True, cached=True,
                         files=self.saved.save(key, frames, strip),
                         conflict=Image.fromarray(fought) if fought is not None else None)
            return

        fought = []  # the conflict view of the last step, kept with the run's frames

        def rendered():  # runs in the read-ahead thread: sampling, the strip, the upscale and, at the end, the files
            steps = []
            for f in world.generate_strip(strip.requests, conflict=True):
                steps.append(to_uint8(f.image))
                files = self.saved.save(key, tuple(steps), strip) if f.done else None
                heat = None
                if f.conflict is not None:  # the product's: the marked run of a strip
                    heat = conflict_image(f.conflict[strip.marked].numpy(), steps[-1][strip.marked])
                    fought[:] = [np.asarray(heat)]
                yield f, steps[-1], update(f.step, steps[-1], done=f.done, files=files, conflict=heat)

        kept = []
        start = time.perf_counter()
        for f, images, shown_update in read_ahead(rendered(), stop=superseded):
            if superseded():
                yield Update(f.step, n, None, f"stopped at step {f.step} / {n}", views, words, superseded=True,
                             notes=notes)
                return
            kept.append(images)
            if f.done:
                shown_update.status = status_line(f.step, n, f"done in {time.perf_counter() - start:.2f} s")
            yield shown_update
        self.cache.put(key, kept, fought[0] if fought else None)
