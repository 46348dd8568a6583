"""Runs as the page shows them: the frames of a run as display-ready updates, the conditions as the
experts received them, the cache of finished runs, newest-wins tickets for live mode, sampling read
ahead of streaming on its own thread, and a run's frames as an animation."""

from __future__ import annotations

import ctypes
import hashlib
import os
import queue
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from unite_demo.worlds.conditions import Request
from unite_demo.worlds.modalities import MODALITIES
from unite_demo.limits import CONCURRENT_RUNS, CONDITION_SIZE, PREVIEW_SIZE, RESULT_SIZE
from unite_demo.studio.strips import Strip, strip_image
from unite_demo.worlds.world import World


def request_key(world_name: str, req: Request) -> str:
    """A digest of everything that determines a run's frames."""
    h = hashlib.sha256()
    for part in (world_name, sorted(req.reliability.items()), req.guidance, req.steps, req.seed, req.sampler,
                 req.superres):
        h.update(repr(part).encode() + b"\0")
    for name, value in sorted(req.values.items()):
        h.update(name.encode() + b"=")
        if isinstance(value, np.ndarray):
            h.update(np.ascontiguousarray(value).tobytes() + repr((value.dtype.str, value.shape)).encode())
        else:
            h.update(repr(value).encode())
        h.update(b"\0")
    return h.hexdigest()


def strip_key(world_name: str, strip: Strip) -> str:
    """A digest of everything that determines a strip's frames (a product-only strip: its request's key)."""
    if len(strip.requests) == 1:
        return request_key(world_name, strip.request)
    parts = [request_key(world_name, r) for r in strip.requests] + [repr((strip.labels, strip.marked))]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class ResultCache:
    """Least-recently-used cache of finished runs: key -> frames ((B,H,W,3) uint8 per step, the last is
    final; B images side by side in a strip). Bounded in runs and in bytes (a run of 8 steps is about
    72 KB, a strip of four about four times that). 64 runs cover what one page goes back to (the
    examples, a slider moved back in live mode); more would only keep memory growing for hours on a
    busy server as visitors come and go."""

    def __init__(self, max_items: int = 64, max_bytes: int = 16 << 20):
        self.max_items, self.max_bytes = max_items, max_bytes
        self._items: OrderedDict[str, tuple[np.ndarray, ...]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[np.ndarray, ...] | None:
        with self._lock:
            frames = self._items.get(key)
            if frames is not None:
                self._items.move_to_end(key)
            return frames

    def put(self, key: str, frames) -> None:
        frames = tuple(frames)
        with self._lock:
            old = self._items.pop(key, None)
            self._bytes -= _size(old) if old is not None else 0
            self._items[key] = frames
            self._bytes += _size(frames)
            while len(self._items) > 1 and (len(self._items) > self.max_items or self._bytes > self.max_bytes):
                self._bytes -= _size(self._items.popitem(last=False)[1])

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


def _size(frames: tuple[np.ndarray, ...]) -> int:
    return sum(f.nbytes for f in frames)


class SavedRuns:
    """The files a finished run is saved as for slides, in a folder of its own: its final image (the
    strip, or the product alone) as PNG and its steps as an animated GIF. The `keep` newest runs' files
    are kept, older ones deleted."""

    def __init__(self, folder: Path | None = None, keep: int = 64):
        self._folder = Path(folder) if folder is not None else None  # None: a temporary folder, made on first use
        self.keep = keep
        self._lock = threading.Lock()

    @property
    def folder(self) -> Path:
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="unite-saved-"))
        return self._folder

    def save(self, key: str, frames: tuple[np.ndarray, ...], strip: Strip) -> tuple[str, str]:
        """(png, gif) paths of this run's files, written unless they are there already."""
        name = "strip" if len(strip.requests) > 1 else "result"
        folder = self.folder / key[:20]
        png, gif = folder / f"{name}.png", folder / f"{name}-steps.gif"
        with self._lock:
            if not (png.is_file() and gif.is_file()):
                folder.mkdir(parents=True, exist_ok=True)
                shown(frames[-1], strip, RESULT_SIZE).save(png)
                save_frames([shown(f, strip, PREVIEW_SIZE) for f in frames], gif)
            os.utime(folder)
            runs = sorted((p for p in self.folder.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
            for old in runs[:-self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        return str(png), str(gif)


def shown(images: np.ndarray, strip: Strip, size: int) -> Image.Image:
    """One step's (B,H,W,3) images as shown: the labelled strip of B > 1, the image alone of B = 1."""
    if len(images) == 1:
        return frame_image(images[0], size)
    return strip_image(images, strip.labels, strip.marked, size)


class Tickets:
    """Newest-wins per session: a run remembers the ticket it started under and stops once a newer
    one is issued for its session (live mode, Stop, a new Run)."""

    def __init__(self, max_sessions: int = 10_000):
        self.max_sessions = max_sessions
        self._n: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def bump(self, session: str) -> int:
        with self._lock:
            n = self._n.pop(session, 0) + 1
            self._n[session] = n
            while len(self._n) > self.max_sessions:
                self._n.popitem(last=False)
            return n

    def current(self, session: str) -> int:
        with self._lock:
            return self._n.get(session, 0)


def frame_image(frame: np.ndarray, size: int = RESULT_SIZE) -> Image.Image:
    """(H,W,3) uint8 -> PIL image upscaled bicubic to size x size."""
    img = Image.fromarray(frame)
    return img if img.width == size else img.resize((size, size), Image.Resampling.BICUBIC)


def image_views() -> tuple[str, ...]:
    """The modalities whose condition the page shows as an image, in the registry's order."""
    return tuple(m.name for m in MODALITIES.values() if m.show is not None)


def conditions_view(req: Request, world: World, size: int = CONDITION_SIZE) -> tuple[dict, str]:
    """The conditions exactly as the experts receive them: an image per image modality (the label map
    in the world's palette colours, the binarised sketch; None where not given) and the words the
    others got (the caption and what the text expert reads in it, the class by name), with each
    modality's reliability."""
    views = {name: MODALITIES[name].show(req.values[name], world, size) if name in req.values else None
             for name in image_views()}
    words = []
    for name in world.modalities:
        m = MODALITIES[name]
        if m.describe is not None and name in req.values:
            words.append(m.describe(req.values[name], world))
        elif m.widget == "caption":
            words.append(f"(no {m.label}: the {m.name} expert is off)")
    active = [f"{MODALITIES[m].label} x{req.reliability.get(m, 0):g}" for m in req.present()
              if req.reliability.get(m, 0) > 0]
    weights = ", ".join(active) if active else "none (unconditional)"
    return views, "\n\n".join([*words, f"experts: {weights}; guidance {req.guidance:g}"])


UNCHANGED = object()  # an output a message leaves as the page shows it


@dataclass
class Update:
    """One message to the page: a preview (or the final image) with its progress line."""

    step: int
    total: int
    image: Image.Image | None
    status: str
    views: dict[str, Image.Image | None] = field(default_factory=dict)  # the conditions as images, by modality
    caption: str = ""  # the conditions in words
    done: bool = False
    cached: bool = False
    superseded: bool = False
    notes: tuple[str, ...] = field(default=())
    strip: Image.Image | None = None  # the strip of the explain view (None: the product view)
    strip_caption: str = ""  # its labels in words
    files: tuple[str, str] | None = None  # with the final image: the run saved for slides (PNG, GIF)

    def outputs(self) -> dict:
        """The page's outputs as this message shows them, by name (OUTPUTS): the conditions and the
        strip's caption once at the first step and again with the final image, the files with the final
        image; a run superseded by a newer live run changes only the progress line (UNCHANGED for the
        others)."""
        if self.superseded:
            return {name: self.status if name == "progress" else UNCHANGED for name in outputs()}
        again = self.step == 1 or self.done
        shown = {**{f"{m}_view": self.views.get(m) for m in image_views()}, "conditions": self.caption,
                 "strip_caption": self.strip_caption}
        png, gif = self.files or (UNCHANGED, UNCHANGED)
        named = {"result": self.image, "progress": self.status,
                 **{k: v if again else UNCHANGED for k, v in shown.items()},
                 "strip": self.strip if self.strip is not None or again else UNCHANGED,  # None clears an earlier strip
                 "save_png": png, "save_gif": gif}
        return {name: named[name] for name in outputs()}


def outputs() -> tuple[str, ...]:
    """The names of a run's outputs on the page (Update.outputs), a condition view per image modality."""
    return ("result", "progress", *(f"{m}_view" for m in image_views()), "conditions", "strip", "strip_caption",
            "save_png", "save_gif")


def status_line(step: int, total: int, notes: tuple[str, ...], tail: str = "") -> str:
    line = f"step {step} / {total}" + (f" · {tail}" if tail else "")
    return "\n".join([line, *(f"note: {n}" for n in notes)])


def read_ahead(items: Iterator, stop: Callable[[], bool] = lambda: False, depth: int = 4) -> Iterator:
    """`items`, produced in a worker thread up to `depth` ahead of the consumer: the sampler computes
    step k+1 while the page encodes and sends the preview of step k. The producer stops before its next
    item once `stop()` is true or the consumer has closed (Stop, a client gone, a newer live run);
    its exceptions are raised in the consumer."""
    out: queue.Queue = queue.Queue(depth)
    closed = threading.Event()
    end = object()

    def put(entry) -> bool:
        while not closed.is_set():
            try:
                out.put(entry, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        try:
            while not (closed.is_set() or stop()):
                try:
                    item = next(items)
                except StopIteration:
                    break
                if not put((item, None)):
                    break
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            put((end, e))
            return
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        put((end, None))

    threading.Thread(target=produce, name="read-ahead", daemon=True).start()
    try:
        while True:
            item, error = out.get()
            if error is not None:
                raise error
            if item is end:
                return
            yield item
    finally:
        closed.set()


def save_frames(frames: list[Image.Image], path: Path, duration_ms: int = 120, hold_ms: int = 1200) -> Path:
    """Preview frames -> an animated GIF or WebP (by suffix) that holds the final image a while."""
    path.parent.mkdir(parents=True, exist_ok=True)
    durations = [duration_ms] * (len(frames) - 1) + [hold_ms]
    if path.suffix.lower() == ".webp":
        options = {"lossless": True}
    else:  # GIF: quantised here by fast octree; PIL's default (median cut) is far slower on a strip
        frames = [f.convert("RGB").quantize(255, method=Image.Quantize.FASTOCTREE) for f in frames]
        options = {"optimize": False}
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0, **options)
    return path


def release_memory() -> None:
    """Give the memory a finished run freed back to the system. The runs allocate in the threads that
    serve them, and glibc keeps what each thread's arena freed while any small block in it lives on (the
    frames the result cache keeps); malloc_trim hands it back. Without glibc this does nothing."""
    if MALLOC_TRIM is not None:
        MALLOC_TRIM(0)


try:
    LIBC = ctypes.CDLL(None)
    MALLOC_TRIM = LIBC.malloc_trim
except (OSError, AttributeError):
    LIBC = MALLOC_TRIM = None


def tune_malloc() -> None:
    """For a long-running server (app.start calls it before the server starts its threads), glibc's
    allocator set so that memory freed by finished runs goes back to the system:
    - a fixed mmap threshold of 1 MB (M_MMAP_THRESHOLD): glibc otherwise raises its threshold once a
      large block is freed, and the final-image stage's few-MB buffers would stay in the thread arenas;
    - one arena per concurrent run (M_ARENA_MAX): otherwise each worker thread that takes a turn at a
      run leaves an arena behind that keeps its high-water mark.
    Without glibc this does nothing."""
    if LIBC is not None and hasattr(LIBC, "mallopt"):
        LIBC.mallopt(-3, 1 << 20)
        LIBC.mallopt(-8, CONCURRENT_RUNS)
