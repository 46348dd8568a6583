"""The studio's logic, free of any UI toolkit: canvas values -> a validated request, runs streamed
as display-ready updates (cached by every input, frames included), example inputs, photo -> sketch
by OpenCV's Canny edge detector, and newest-wins tickets for live mode. app.py only wires widgets."""

from __future__ import annotations

import functools
import hashlib
import html
import os
import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from .conditions import (MAX_SEED, ConditionError, Request, open_image, seg_from_image, sketch_from_image,
                         to_uint8)
from .examples import load_examples
from .faces import FACES_PALETTE
from .labels import ADE20K_NAMES, ade20k_painter_order
from .sd15 import configured_worlds
from .world import BUILTIN, DEFAULTS, World, get_world

CANVAS = 256  # side of the sketch canvas and the segmentation painter, in canvas pixels
RESULT_SIZE = 256  # the final result, upscaled bicubic from the world's 32x32
PREVIEW_SIZE = 128  # the previews on the way: a quarter of the pixels, so each one encodes and travels fast
CONDITION_SIZE = 128  # the conditions as the experts received them, upscaled nearest
DEBOUNCE_S = 0.35  # live mode: the page waits this long after the last change before it runs
PHOTO_EDGE_SIZE = 128  # photos are edge-detected at this side, then reduced like any drawing
MODALITY_NAMES = {"seg": "segmentation", "sketch": "sketch", "text": "text", "class": "class"}
CLASS_OFF = "(none: the class expert is off)"  # the class picker's empty choice

Palette = tuple[tuple[str, ...], np.ndarray]  # a world's (class names, (K,3) uint8 colours), as World.palette


# ---------------------------------------------------------------------------------------------
# Palette and widgets' contents

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


def random_seed() -> int:
    return random.randint(0, 2**31 - 1)


def available_worlds() -> list[str]:
    """Worlds the page offers; the built-in one always, the pretrained ones when their weights are
    configured and present (sd15.configured_worlds; nothing is loaded or downloaded to find out)."""
    return [BUILTIN, *configured_worlds()]


def world_defaults(world: World) -> dict:
    """The sampling defaults of a world: DEFAULTS, with the world's own where it has them (sd15: SD_DEFAULTS)."""
    return {**DEFAULTS, **world.defaults}


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


def world_page(name: str) -> WorldPage:
    """The page's widgets for world `name` (loaded and warmed up here, once per process).
    Raises ConditionError for a world that is not offered or whose weights are gone or damaged."""
    if name not in available_worlds():
        raise ConditionError(f"world: unknown world {name!r}; accepted: {', '.join(available_worlds())}")
    world = load_world(name)
    order = painter_order(world.palette)
    colours = palette_hex(world.palette)
    d = world_defaults(world)
    return WorldPage(name, world.modalities, colours, next(c for k, c in zip(order, colours) if k != 0),
                     legend_html(world.palette), blank_map(CANVAS, world.palette),
                     [(CLASS_OFF, ""), *((n, n) for n in world.class_names)], int(d["steps"]), float(d["guidance"]))


def sketch_for_canvas(sketch: np.ndarray, size: int = CANVAS) -> np.ndarray:
    """White-on-black strokes (any size) -> dark strokes on white paper at the canvas size, RGB."""
    paper = np.where(np.asarray(sketch) > 127, 0, 255).astype(np.uint8)
    img = Image.fromarray(paper).resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(img.convert("RGB"))


@dataclass
class ExampleInputs:
    """Everything one example sets on the page."""

    name: str
    seg: np.ndarray  # painter background, palette colours, (CANVAS, CANVAS, 3)
    sketch: np.ndarray  # canvas background, dark strokes on white, (CANVAS, CANVAS, 3)
    text: str
    reliability: dict[str, float]
    seed: int


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


# ---------------------------------------------------------------------------------------------
# Canvas values -> condition images

def _editor_image(value):
    """An image editor's value ({'background', 'layers', 'composite'}) or a plain image -> the image
    that shows what the user sees (composite, else background), or None when there is none."""
    if value is None:
        return None
    if isinstance(value, dict):
        for key in ("composite", "background"):
            if value.get(key) is not None:
                return value[key]
        return None
    return value


def _rgba(value, what: str) -> np.ndarray | None:
    """Any image -> (H,W,4) uint8; None when there is no image or it is fully transparent."""
    img = _editor_image(value)
    if img is None:
        return None
    rgba = np.asarray(open_image(img, what).convert("RGBA"))
    if not rgba[..., 3].any():
        return None
    return rgba


def _flatten(rgba: np.ndarray, paper: tuple[int, int, int]) -> np.ndarray:
    """(H,W,4) over an opaque `paper` colour -> (H,W,3) uint8."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    out = rgba[..., :3].astype(np.float32) * a + np.array(paper, np.float32) * (1 - a)
    return out.round().astype(np.uint8)


def seg_from_editor(value, size: int, palette: Palette = FACES_PALETTE) -> np.ndarray | None:
    """Painted map -> (size,size) class ids by nearest colour of the world's palette (unpainted = its
    first class); None when nothing but that class is there (the segmentation expert is then off)."""
    rgba = _rgba(value, "segmentation map")
    if rgba is None:
        return None
    ids = seg_from_image(rgba, size, strict=False, palette=palette)
    return ids if ids.any() else None


def is_photo(rgb: np.ndarray) -> bool:
    """A photo (or a rendered picture) rather than a line drawing: a drawing is mostly paper of one
    tone with strokes of the opposite tone and little colour; a photo has many tones or colours."""
    px = np.asarray(rgb, dtype=np.float32)
    gray = px.mean(-1)
    paper = float(np.median(gray))
    near_paper = np.abs(gray - paper) < 40
    near_ink = np.abs(gray - (255.0 - paper)) < 80
    midtones = ~(near_paper | near_ink)
    colourful = (px.max(-1) - px.min(-1)) > 60
    return bool(near_paper.mean() < 0.6 or midtones.mean() > 0.12 or colourful.mean() > 0.05)


def photo_to_sketch(rgb: np.ndarray, size: int = PHOTO_EDGE_SIZE) -> np.ndarray:
    """A photo -> white edges on black (size,size) uint8 via OpenCV: grey, area resize, blur, Canny."""
    gray = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
    gray = cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA)
    gray = cv2.GaussianBlur(gray, (3, 3), 0)
    return cv2.Canny(gray, 50, 150)


@dataclass
class SketchInput:
    image: np.ndarray | None  # what goes to the world (a drawing in either polarity), None = off
    derived: bool = False  # True when it came from a photo through edge detection
    note: str | None = None


def _layer_strokes(layers, size: int) -> np.ndarray | None:
    """Strokes drawn on the editor's layers (opaque pixels) -> white on black (size,size) uint8."""
    masks = [np.asarray(open_image(layer, "sketch layer").convert("RGBA"))[..., 3] > 127 for layer in layers or ()
             if layer is not None]
    if not masks or not any(m.any() for m in masks):
        return None
    cover = cv2.resize(np.logical_or.reduce(masks).astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return np.where(cover > 0.25, 255, 0).astype(np.uint8)


def sketch_from_editor(value) -> SketchInput:
    """The sketch canvas (or an uploaded drawing or photo) -> the drawing handed to the world.
    Transparent canvas pixels are paper (white). A photo becomes its Canny edges, plus any strokes
    drawn over it."""
    rgba = _rgba(value, "sketch")
    if rgba is None:
        return SketchInput(None, note="sketch canvas is empty: the sketch expert is off")
    background = _rgba(value.get("background"), "sketch") if isinstance(value, dict) else rgba
    if background is not None:
        paper = _flatten(background, (255, 255, 255))
        if is_photo(paper):
            edges = photo_to_sketch(paper)
            strokes = _layer_strokes(value.get("layers"), edges.shape[0]) if isinstance(value, dict) else None
            if strokes is not None:
                edges = np.maximum(edges, strokes)
            return SketchInput(edges, True, "a photo was given: the sketch is its edges (OpenCV Canny)")
    return SketchInput(_flatten(rgba, (255, 255, 255)))


def derive_sketch(value, world_name: str = BUILTIN) -> tuple[np.ndarray | None, str | None]:
    """For an upload to the sketch canvas: a photo -> the sketch the expert will get from it (white
    strokes on black, CONDITION_SIZE) with a note; a drawing -> (None, None)."""
    s = sketch_from_editor(value)
    if not s.derived:
        return None, None
    binary = sketch_from_image(s.image, load_world(world_name).image_size)
    img = Image.fromarray(binary).resize((CONDITION_SIZE, CONDITION_SIZE), Image.Resampling.NEAREST)
    return np.asarray(img.convert("RGB")), s.note


# ---------------------------------------------------------------------------------------------
# Requests, results and their cache

_WARM_LOCKS: dict[str, threading.Lock] = {}


def serve_setup() -> None:
    """For serving: torch computes each run on UNITE_TORCH_THREADS CPU threads, by default half the
    cores (one here). The rest stay free for the browser, the web server and a second run, which
    otherwise stall the run's threads (`python scripts/measure_ui.py --compare UNITE_TORCH_THREADS=2`)."""
    value = os.environ.get("UNITE_TORCH_THREADS", "")
    threads = int(value) if value.isdigit() and int(value) > 0 else max(1, (os.cpu_count() or 2) // 2)
    torch.set_num_threads(threads)


def load_world(name: str = BUILTIN) -> World:
    """The world, loaded once per process and warmed up once (the page may ask for it from two events
    at once: picking a world both switches the widgets and resets the painter)."""
    try:
        world = get_world(name)
    except OSError as e:  # sd15.WeightsMissing, world.WorldLoadError: said on the page, the other worlds go on
        raise ConditionError(f"world: {e}; the other worlds still work") from e
    with _WARM_LOCKS.setdefault(name, threading.Lock()):
        _warm(name)
    return world


@functools.lru_cache(maxsize=None)
def _warm(name: str) -> None:
    get_world(name).warm_up()


def build_request(world: World, *, seg=None, sketch=None, text=None, seg_on=True, sketch_on=True, text_on=True,
                  r_seg=None, r_sketch=None, r_text=None, seed=DEFAULTS["seed"], steps=None, guidance=None,
                  sampler=DEFAULTS["sampler"], class_name=None, r_class=None) -> Request:
    """Widget values -> a validated Request (ConditionError on bad input); its notes say, in words,
    which modalities are off and why. The painted map is read in the world's palette; class_name (a
    class name or id, '' = off) and r_class count only in worlds with a class expert; steps and
    guidance None take the world's defaults."""
    notes = []
    seg_ids = None
    if seg_on:
        seg_ids = seg_from_editor(seg, world.image_size, world.palette)
        if seg_ids is None:
            notes.append("segmentation map is blank (nothing painted): the segmentation expert is off")
    elif seg is not None:
        notes.append("segmentation is switched off")
    sketch_img = None
    if sketch_on:
        s = sketch_from_editor(sketch)
        sketch_img = s.image
        if s.note:
            notes.append(s.note)
    elif sketch is not None:
        notes.append("sketch is switched off")
    if not text_on:
        if text:
            notes.append("text is switched off")
        text = None
    elif text is None or (isinstance(text, str) and not text.strip()):
        notes.append("caption is empty: the text expert is off")
    if isinstance(class_name, str) and not class_name.strip():
        class_name = None
    if "class" in world.modalities and class_name is None:
        notes.append("no class picked: the class expert is off")
    rel = {name: value for name, value in (("seg", r_seg), ("sketch", r_sketch), ("text", r_text), ("class", r_class))
           if value is not None and name in world.modalities}
    sampling = {name: value for name, value in (("steps", steps), ("guidance", guidance)) if value is not None}
    req = world.request(seg=world.palette[1][seg_ids] if seg_ids is not None else None, sketch=sketch_img, text=text,
                        class_id=class_name, reliability=rel, seed=seed, sampler=sampler, **sampling)
    notes.extend(req.notes)
    req.notes = tuple(dict.fromkeys(notes))
    return req


def request_key(world_name: str, req: Request) -> str:
    """A digest of everything that determines a run's frames."""
    h = hashlib.sha256()
    for part in (world_name, req.text, req.class_id, sorted(req.reliability.items()), req.guidance, req.steps,
                 req.seed, req.sampler):
        h.update(repr(part).encode() + b"\0")
    for arr in (req.seg, req.sketch):
        h.update(b"none" if arr is None else np.ascontiguousarray(arr).tobytes() + repr(arr.shape).encode())
    return h.hexdigest()


class ResultCache:
    """Least-recently-used cache of finished runs: key -> frames ((H,W,3) uint8, the last is final)."""

    def __init__(self, max_items: int = 256):
        self.max_items = max_items
        self._items: OrderedDict[str, tuple[np.ndarray, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[np.ndarray, ...] | None:
        with self._lock:
            frames = self._items.get(key)
            if frames is not None:
                self._items.move_to_end(key)
            return frames

    def put(self, key: str, frames) -> None:
        with self._lock:
            self._items[key] = tuple(frames)
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


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


CACHE = ResultCache()
TICKETS = Tickets()


def frame_image(frame: np.ndarray, size: int = RESULT_SIZE) -> Image.Image:
    """(H,W,3) uint8 -> PIL image upscaled bicubic to size x size."""
    img = Image.fromarray(frame)
    return img if img.width == size else img.resize((size, size), Image.Resampling.BICUBIC)


def describe_reading(reading: dict[str, tuple[str, float]]) -> str:
    """{attribute: (value, probability)} -> 'hair colour: red, glasses: yes (unsure)'."""
    if not reading:
        return "nothing it knows (it reads hair, eyes, skin, expression, glasses, beard and background)"
    return ", ".join(f"{name.replace('_', ' ')}: {value}" + (" (unsure)" if p < 0.6 else "")
                     for name, (value, p) in reading.items())


def conditions_view(req: Request, reading: dict | None = None, size: int = CONDITION_SIZE,
                    world: World | None = None) -> tuple[Image.Image | None, Image.Image | None, str]:
    """The conditions exactly as the experts receive them: the label map in the world's palette
    colours, the binarised sketch (white strokes on black), the caption and what the text expert reads
    in it (`reading`, from World.read_caption; None: not shown), the class by name; with each
    modality's reliability. world None: the cartoon-faces palette, no classes."""
    palette_rgb = (world.palette if world is not None else FACES_PALETTE)[1]
    class_names = world.class_names if world is not None else ()
    seg = sketch = None
    if req.seg is not None:
        seg = Image.fromarray(palette_rgb[req.seg]).resize((size, size), Image.Resampling.NEAREST)
    if req.sketch is not None:
        sketch = Image.fromarray(req.sketch).resize((size, size), Image.Resampling.NEAREST).convert("RGB")
    caption = req.text if req.text is not None else "(no caption: the text expert is off)"
    if req.text is not None and reading is not None:
        caption += f"\n\nthe text expert reads: {describe_reading(reading)}"
    if req.class_id is not None:
        name = class_names[req.class_id] if req.class_id < len(class_names) else "?"
        caption += f"\n\nclass: {name} (id {req.class_id})"
    active = [f"{MODALITY_NAMES[m]} x{req.reliability.get(m, 0):g}" for m in req.present()
              if req.reliability.get(m, 0) > 0]
    weights = ", ".join(active) if active else "none (unconditional)"
    return seg, sketch, f"{caption}\n\nexperts: {weights}; guidance {req.guidance:g}"


@dataclass
class Update:
    """One message to the page: a preview (or the final image) with its progress line."""

    step: int
    total: int
    image: Image.Image | None
    status: str
    seg: Image.Image | None = None
    sketch: Image.Image | None = None
    caption: str = ""
    done: bool = False
    cached: bool = False
    superseded: bool = False
    notes: tuple[str, ...] = field(default=())


def _status(step: int, total: int, notes: tuple[str, ...], tail: str = "") -> str:
    line = f"step {step} / {total}" + (f" · {tail}" if tail else "")
    return "\n".join([line, *(f"note: {n}" for n in notes)])


def run(world_name: str = BUILTIN, *, seg=None, sketch=None, text=None, seg_on=True, sketch_on=True, text_on=True,
        r_seg=None, r_sketch=None, r_text=None, seed=DEFAULTS["seed"], steps=DEFAULTS["steps"],
        guidance=DEFAULTS["guidance"], sampler=DEFAULTS["sampler"], live: bool = False, session: str | None = None,
        cache: ResultCache = CACHE, tickets: Tickets = TICKETS, class_name=None, r_class=None) -> Iterator[Update]:
    """One run from the page's widget values: an Update after every denoising step, then the final
    image (done=True). A repeated request replays its cached frames at once. With a session, every
    run takes a new ticket, and a live run stops within one step once a newer ticket is issued for
    its session (a newer change, Run, Stop). Raises ConditionError on bad input."""
    ticket = tickets.bump(session) if session is not None else None

    def superseded() -> bool:
        return live and ticket is not None and tickets.current(session) != ticket

    if world_name not in available_worlds():
        raise ConditionError(f"world: unknown world {world_name!r}; accepted: {', '.join(available_worlds())}")
    world = load_world(world_name)
    req = build_request(world, seg=seg, sketch=sketch, text=text, seg_on=seg_on, sketch_on=sketch_on,
                        text_on=text_on, r_seg=r_seg, r_sketch=r_sketch, r_text=r_text, seed=seed, steps=steps,
                        guidance=guidance, sampler=sampler, class_name=class_name, r_class=r_class)
    views = conditions_view(req, world.read_caption(req.text), world=world)
    key = request_key(world_name, req)
    frames = cache.get(key)
    n = req.steps
    if frames is not None:
        for k, frame in enumerate(frames[:-1], start=1):
            yield Update(k, n, frame_image(frame, PREVIEW_SIZE), _status(k, n, req.notes), *views, notes=req.notes,
                         cached=True)
        yield Update(n, n, frame_image(frames[-1]), _status(n, n, req.notes, "done (cached)"), *views, done=True,
                     cached=True, notes=req.notes)
        return

    def rendered():  # runs in the read-ahead thread: sampling and the preview's upscale
        for f in world.generate(req):
            frame = to_uint8(f.image)[0]
            yield f, frame, frame_image(frame, RESULT_SIZE if f.done else PREVIEW_SIZE)

    kept = []
    start = time.perf_counter()
    for f, frame, image in read_ahead(rendered(), stop=superseded):
        if superseded():
            yield Update(f.step, n, None, f"stopped at step {f.step} / {n}", *views, superseded=True, notes=req.notes)
            return
        kept.append(frame)
        tail = f"done in {time.perf_counter() - start:.2f} s" if f.done else ""
        yield Update(f.step, n, image, _status(f.step, n, req.notes, tail), *views, done=f.done, notes=req.notes)
    cache.put(key, kept)


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
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0,
                   **({"lossless": True} if path.suffix.lower() == ".webp" else {"optimize": False}))
    return path


__all__ = ["CANVAS", "CACHE", "CLASS_OFF", "TICKETS", "ExampleInputs", "ResultCache", "SketchInput", "Tickets",
           "Update", "WorldPage", "available_worlds", "blank_map", "build_request", "conditions_view", "derive_sketch",
           "example_inputs", "example_names", "is_photo", "legend_html", "load_world", "painter_order",
           "palette_hex", "photo_to_sketch", "random_seed", "read_ahead", "request_key", "run", "save_frames",
           "seg_from_editor", "serve_setup",
           "sketch_for_canvas", "sketch_from_editor", "world_defaults", "world_page", "MAX_SEED"]
