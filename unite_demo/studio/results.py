"""Finished runs kept: the digest of what determines a run's frames, the least-recently-used cache of
their frames, and the files a finished run is saved as for slides."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from unite_demo.limits import PREVIEW_SIZE, RESULT_SIZE
from unite_demo.studio.runs import save_frames, shown
from unite_demo.studio.strips import Strip
from unite_demo.worlds.conditions import Request


def request_key(world_name: str, req: Request) -> str:
    """A digest of everything that determines a run's frames."""
    h = hashlib.sha256()
    for part in (world_name, sorted(req.reliability.items()), req.guidance, req.steps, req.seed, req.sampler,
                 req.superres, sorted(req.windows.items())):
        h.update(repr(part).encode() + b"\0")
    maps = {f"map:{m}": v for m, v in req.reliability_maps.items()}  # a run with a map is never a uniform run's
    for name, value in sorted({**req.values, **maps}.items()):
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
    final; B images side by side in a strip), each with what its conflict view showed last (or None).
    Bounded in runs and in bytes (a run of 8 steps is about 72 KB and its conflict view 48 KB, a strip of
    four about four times the frames). 64 runs cover what one page goes back to (the
    examples, a slider moved back in live mode); more would only keep memory growing for hours on a
    busy server as visitors come and go."""

    def __init__(self, max_items: int = 64, max_bytes: int = 16 << 20):
        self.max_items, self.max_bytes = max_items, max_bytes
        self._items: OrderedDict[str, tuple[tuple[np.ndarray, ...], np.ndarray | None]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[np.ndarray, ...] | None:
        item = self._get(key)
        return item[0] if item is not None else None

    def conflict(self, key: str) -> np.ndarray | None:
        """The conflict view the run of `key` showed last (None: none, or the run is not kept)."""
        item = self._get(key)
        return item[1] if item is not None else None

    def _get(self, key: str):
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: str, frames, conflict: np.ndarray | None = None) -> None:
        item = (tuple(frames), conflict)
        with self._lock:
            old = self._items.pop(key, None)
            self._bytes -= _size(old) if old is not None else 0
            self._items[key] = item
            self._bytes += _size(item)
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


def _size(item) -> int:
    frames, conflict = item
    return sum(f.nbytes for f in frames) + (conflict.nbytes if conflict is not None else 0)


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
