"""Conditions: the one place where inputs are validated and normalised (images, label maps, captions,
classes, numbers against unite_demo.limits) into a Request, and the tensor forms they are encoded in.
What each modality does with them is declared in worlds.modalities."""

from __future__ import annotations

import difflib
import re
import unicodedata
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from PIL import Image

from unite_demo.limits import (DEFAULTS, GUIDANCE, MAX_SIDE, MAX_SWEEP_VALUES, MAX_TEXT_CHARS, RELIABILITY, SEED, STEPS,
                               SWEEP_VALUES, VIEWS, Range)
from unite_demo.method.sampler import SAMPLERS, heard_steps


@dataclass(frozen=True)
class Labels:
    """A label map already read (e.g. from the page's painter): (H,W) class ids, not an image to read."""

    ids: np.ndarray


def check_labels(ids, size: int, num_classes: int) -> np.ndarray:
    """(H,W) class ids -> (size,size) uint8 ids (majority vote per area), every id below num_classes."""
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
        raise ConditionError(f"segmentation map: expected (H,W) whole class ids, got {ids.dtype} {ids.shape}")
    if ids.min() < 0 or ids.max() >= num_classes:
        raise ConditionError(f"segmentation map: class ids from 0 to {num_classes - 1} are accepted, got "
                             f"{int(ids.min())}..{int(ids.max())}")
    return _labels_down(ids, size)


def one_hot(ids: np.ndarray, num_classes: int) -> torch.Tensor:
    """(H,W) class ids -> (K,H,W) one-hot float."""
    t = torch.from_numpy(np.ascontiguousarray(ids)).long()
    return torch.nn.functional.one_hot(t, num_classes).permute(2, 0, 1).float()  # (K, H, W)


def stroke_planes(sketch: np.ndarray) -> torch.Tensor:
    """(H,W) uint8, strokes > 127 -> (2,H,W): [stroke in {0,1}, present = 1]."""
    strokes = torch.from_numpy((np.asarray(sketch) > 127).astype(np.float32))
    return torch.stack([strokes, torch.ones_like(strokes)])  # (2, H, W)


def one_hot_class(class_id: int, num_classes: int) -> torch.Tensor:
    """A class id -> (1, K) one-hot; an all-zero row is the null class."""
    return torch.nn.functional.one_hot(torch.tensor([class_id]), num_classes).float()  # (1, K)


def describe_reading(reading: dict[str, tuple[str, float]]) -> str:
    """{attribute: (value, probability)} -> 'hair colour: red, glasses: yes (unsure)'."""
    if not reading:
        return "nothing it knows (it reads hair, eyes, skin, expression, glasses, beard and background)"
    return ", ".join(f"{name.replace('_', ' ')}: {value}" + (" (unsure)" if p < 0.6 else "")
                     for name, (value, p) in reading.items())


def image_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """(H,W,3) uint8 images -> (B,3,H,W) in [-1, 1]."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()  # (B, 3, H, W)
    return x / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B,3,H,W) in [-1, 1] -> (B,H,W,3) uint8."""
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


# ---------------------------------------------------------------------------------------------
# User inputs (CLI, page, API): validated here and nowhere else.

PALETTE_TOLERANCE = 60.0  # RGB distance within which a pixel counts as a palette colour
MAX_OFF_PALETTE = 0.02  # strict maps: at most this share of pixels may be off the palette


class ConditionError(ValueError):
    """A user input that cannot be used; the message names the input and what is accepted."""


def without_paths(text: str) -> str:
    """A library's message with every file path shortened to the file's name: a visitor's message never
    shows where the server keeps its uploads."""
    return re.sub(r"(?:[A-Za-z]:)?[/\\][^\s'\"]*[/\\]([^\s'\"/\\]+)", r"\1", text)


def _open_header(source, what: str) -> Image.Image:
    """Open an image file, reading its header only (the pixels are decoded by .load()). PIL's own
    decompression-bomb warning is left to our size check."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(source)
    except FileNotFoundError:
        raise ConditionError(f"{what}: file not found: {source}") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ConditionError(f"{what}: cannot read the image ({without_paths(str(e))}); accepted: PNG, JPEG, "
                             "WebP, BMP") from None


def _check_size(img: Image.Image, what: str) -> None:
    w, h = img.size
    if w < 1 or h < 1:
        raise ConditionError(f"{what}: the image is empty ({w}x{h})")
    if max(w, h) > MAX_SIDE:
        raise ConditionError(f"{what}: the image is {w}x{h}; at most {MAX_SIDE}x{MAX_SIDE} is accepted")


def check_image_file(path, what: str) -> None:
    """An uploaded file, checked from its header before anything decodes it (the page's canvases
    are decoded by gradio before they reach open_image): readable as an image, not empty, at most
    MAX_SIDE on a side. ConditionError otherwise."""
    with _open_header(path, what) as img:
        _check_size(img, what)


def open_image(source, what: str) -> Image.Image:
    """A path, bytes-like file, PIL image or (H,W[,C]) array -> PIL image, refusing unreadable,
    empty and oversized images before decoding them whole."""
    if isinstance(source, Image.Image):
        img = source
    elif isinstance(source, np.ndarray):
        if source.ndim not in (2, 3) or source.size == 0:
            raise ConditionError(f"{what}: expected an image array of shape (H,W) or (H,W,C), got {source.shape}")
        arr = source
        if arr.dtype != np.uint8:
            hi = float(np.nanmax(arr)) if arr.size else 0.0
            arr = np.nan_to_num(arr.astype(np.float64) * (255.0 / hi if hi > 255 else (255.0 if hi <= 1 else 1.0)))
            arr = arr.clip(0, 255).astype(np.uint8)
        img = Image.fromarray(arr)
    else:
        img = _open_header(source, what)
    _check_size(img, what)
    try:
        img.load()
    except (OSError, ValueError, SyntaxError) as e:
        raise ConditionError(f"{what}: the image file is damaged ({without_paths(str(e))})") from None
    return img


def _rgb_on(img: Image.Image, background: tuple[int, int, int]) -> np.ndarray:
    """Any mode (RGBA, LA, P, L, I;16, CMYK, ...) -> (H,W,3) uint8; transparency over `background`."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        arr = (arr / max(arr.max(), 1.0) * 255.0) if arr.max() > 255 else arr
        img = Image.fromarray(arr.clip(0, 255).astype(np.uint8), "L")
    if img.mode == "F":
        img = Image.fromarray(np.nan_to_num(np.asarray(img)).clip(0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (*background, 255))
        return np.asarray(Image.alpha_composite(base, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def _labels_down(labels: np.ndarray, size: int) -> np.ndarray:
    """Class ids (H,W) at any size -> (size,size) by majority vote per area (never interpolate labels).
    Votes are counted for the classes present only, so large palettes cost no more than small ones."""
    if labels.shape == (size, size):
        return labels.astype(np.uint8)
    present = np.unique(labels)
    ids = torch.from_numpy(labels.astype(np.int64))
    masks = torch.stack([(ids == int(k)).float() for k in present])[None]  # (1, P, H, W)
    votes = torch.nn.functional.interpolate(masks, size=(size, size), mode="area")  # (1, P, size, size)
    return present[votes[0].argmax(0).numpy()].astype(np.uint8)


def seg_from_image(source, size: int, strict: bool = True, *, palette: tuple[tuple[str, ...], np.ndarray]
                   ) -> np.ndarray:
    """A painted segmentation map -> (size,size) class ids by nearest palette colour.
    palette: (class names, (K,3) uint8 colours) of the world (World.palette).
    strict: refuse maps where more than 2% of the pixels are far from every palette colour."""
    names, colours_rgb = palette
    rgb = _rgb_on(open_image(source, "segmentation map"), tuple(int(c) for c in colours_rgb[0]))
    # Distances for each distinct colour only: painted maps hold few colours, and (H,W,K) would not fit
    # in memory for a 150-class palette at 512x512.
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]  # (H, W)
    unique, inverse = np.unique(codes.ravel(), return_inverse=True)
    unique_rgb = np.stack([unique >> 16, (unique >> 8) & 255, unique & 255], -1).astype(np.float32)  # (U, 3)
    d = np.linalg.norm(unique_rgb[:, None, :] - colours_rgb[None].astype(np.float32), axis=-1)  # (U, K)
    labels = d.argmin(-1)[inverse].reshape(codes.shape)
    off = (d.min(-1) > PALETTE_TOLERANCE)[inverse].reshape(codes.shape)
    if strict and off.mean() > MAX_OFF_PALETTE:
        colours, counts = np.unique(rgb[off].astype(np.uint8).reshape(-1, 3), axis=0, return_counts=True)
        worst = ", ".join(str(tuple(int(v) for v in c)) for c in colours[np.argsort(-counts)[:3]])
        if len(names) <= 20:
            accepted = ", ".join(f"{name} {tuple(int(v) for v in c)}" for name, c in zip(names, colours_rgb))
        else:
            accepted = f"the {len(names)} colours of the world's palette (e.g. " + ", ".join(
                f"{name} {tuple(int(v) for v in c)}" for name, c in zip(names[:5], colours_rgb[:5])) + ")"
        raise ConditionError(f"segmentation map: {off.mean():.0%} of the pixels are not palette colours "
                             f"(e.g. {worst}); accepted colours: {accepted}")
    return _labels_down(labels, size)


def sketch_from_image(source, size: int) -> np.ndarray:
    """A drawing -> (size,size) uint8 sketch, white strokes (255) on black, in the polarity the
    sketch expert was trained on: light paper with dark strokes is inverted."""
    gray = _rgb_on(open_image(source, "sketch"), (0, 0, 0)).astype(np.float32).mean(-1) / 255.0  # (H, W)
    if np.median(gray) > 0.5:
        gray = 1.0 - gray
    t = torch.from_numpy(gray)[None, None]  # (1, 1, H, W)
    if gray.shape != (size, size):
        # Coverage of each output pixel; a stroke covering a fifth of it counts.
        t = torch.nn.functional.interpolate(t, size=(size, size), mode="area")
        t = t / max(float(t.max()), 1e-6) * (t.max() > 0.02)
        return np.where(t[0, 0].numpy() > 0.2, 255, 0).astype(np.uint8)
    return np.where(gray > 0.5, 255, 0).astype(np.uint8)


def check_text(text, notes: list[str] | None = None) -> str | None:
    """A caption: stripped of control characters and extra spaces; empty -> None (text off); not text ->
    ConditionError. Any script is taken (the text encoder reads what it knows). One over MAX_TEXT_CHARS is
    cut to its first MAX_TEXT_CHARS characters, and `notes` gets a note saying so."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise ConditionError(f"text: expected a string, got {type(text).__name__}")
    text = "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) != "Cc")  # no control characters
    text = " ".join(text.split())
    if len(text) > MAX_TEXT_CHARS:
        if notes is not None:
            notes.append(f"text: {len(text):,} characters; the first {MAX_TEXT_CHARS:,} are read")
        text = text[:MAX_TEXT_CHARS].rstrip()
    return text or None


def shortened(text: str, at: int = 60) -> str:
    """A caption for a note: as it is, or its first `at` characters and an ellipsis."""
    return text if len(text) <= at else text[:at - 1].rstrip() + "…"


def check_class(value, names: tuple[str, ...]) -> int | None:
    """A class: its id (0..K-1) or its name (case-insensitive); None or '' -> None (class off)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, np.integer) or (isinstance(value, float) and value.is_integer()):
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < len(names):
            return value
        raise ConditionError(f"class: expected a class id from 0 to {len(names) - 1}, got {value}")
    if isinstance(value, str):
        wanted = " ".join(value.split()).lower()
        for i, name in enumerate(names):
            if name.lower() == wanted:
                return i
        lower = {n.lower(): n for n in names}
        close = [n for n in names if wanted in n.lower()][:5] or [
            lower[n] for n in difflib.get_close_matches(wanted, list(lower), n=5, cutoff=0.75)]
        hint = (f"; did you mean {', '.join(close)}?" if close else
                f"; accepted: a class id from 0 to {len(names) - 1} or one of the {len(names)} class names")
        raise ConditionError(f"class: unknown class name {value!r}{hint}")
    raise ConditionError(f"class: expected a class id or name, got {type(value).__name__}")


def shown_number(v) -> str:
    """A number as a note shows it: 999, 2.5, 4294967295, 1e+308, 1.18059e+21 (2**70), 1e+400 (10**400)."""
    if isinstance(v, (int, np.integer)):
        digits = str(abs(int(v)))
        if len(digits) <= 15:
            return str(int(v))
        mantissa = (digits[0] + "." + digits[1:6]).rstrip("0").rstrip(".")
        return f"{'-' if v < 0 else ''}{mantissa}e+{len(digits) - 1}"
    return f"{float(v):.15g}"


def _into_range(name: str, v, lo, hi, notes: list[str], given=None):
    """v, or the nearest end of [lo, hi] with a note naming the input, the value given (`given`, where v is
    its reading) and the value used."""
    if lo <= v <= hi:
        return v
    used, end = (hi, "over the maximum") if v > hi else (lo, "under the minimum")
    notes.append(f"{name}: {shown_number(v if given is None else given)} is {end} {shown_number(used)}; "
                 f"{shown_number(used)} is used")
    return used


def check_number(name: str, value, lo: float, hi: float, notes: list[str]) -> float:
    """A finite number (a number in a string counts; True/False do not), or ConditionError naming it. One
    outside [lo, hi] is set to the nearest end, and `notes` gets a note saying so."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return float(_into_range(name, int(value), lo, hi, notes))  # compared as a whole number: 10**400 too
    try:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConditionError(f"{name}: expected a number from {lo:g} to {hi:g}, got {value!r}") from None
    if not np.isfinite(v):
        raise ConditionError(f"{name}: expected a number from {lo:g} to {hi:g}, got {value!r}")
    return float(_into_range(name, v, lo, hi, notes))


def check_whole(name: str, value, lo: int, hi: int, notes: list[str]) -> int:
    """A whole number (1.0 counts as 1), or ConditionError naming it. One outside [lo, hi] is set to the
    nearest end, and `notes` gets a note saying so."""
    given = value
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    elif isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConditionError(f"{name}: expected a whole number from {lo} to {hi}, got {given!r}")
    return _into_range(name, value, lo, hi, notes, given)  # the note shows 1e+308 as given, not its 309 digits


def check_range(name: str, value, limit: Range, notes: list[str]) -> float:
    """A value for one of the limits table's ranges (unite_demo.limits), set within it (with a note in
    `notes`) where it is outside."""
    if limit.whole:
        return check_whole(name, value, int(limit.low), int(limit.high), notes)
    return check_number(name, value, limit.low, limit.high, notes)


def check_switch(name: str, value) -> bool:
    """An on/off switch: True or False (None: on)."""
    if value is None:
        return True
    if not isinstance(value, bool):
        raise ConditionError(f"{name}: expected true or false, got {value!r}")
    return value


def parse_reliability(spec: str, modalities: tuple[str, ...], notes: list[str]) -> dict[str, float]:
    """'seg=1,sketch=0.5,text=2' -> {'seg': 1.0, ...}; unknown names and bad numbers are refused, a number
    outside RELIABILITY is set within it (a note in `notes`)."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep:
            raise ConditionError(f"reliability: expected name=value pairs like seg=1,text=0.5, got {part!r}")
        if name not in modalities:
            raise ConditionError(f"reliability: unknown modality {name!r}; accepted: {', '.join(modalities)}")
        out[name] = check_range(f"reliability of {name}", value, RELIABILITY, notes)
    return out


def check_view(view, sweep, values, present: tuple[str, ...], notes: list[str]
               ) -> tuple[str, str | None, tuple[float, ...]]:
    """What a run shows (limits.VIEWS; None: the product), the modality a reliability strip sweeps
    (one of the request's `present` modalities) and its values (a list of numbers or '0, 0.5, 1';
    None or '': limits.SWEEP_VALUES; MAX_SWEEP_VALUES at most; one outside RELIABILITY is set within it,
    a note in `notes`)."""
    view = "product" if view is None else view
    if view not in VIEWS:
        raise ConditionError(f"view: unknown view {view!r}; accepted: {', '.join(VIEWS)}")
    if view != "sweep":
        return view, None, ()
    if sweep not in present:
        given = ", ".join(present) if present else "none"
        raise ConditionError(f"sweep: {sweep!r} is not a modality this run has an input for; accepted: {given}")
    if values is None or (isinstance(values, str) and not values.strip()):
        values = SWEEP_VALUES
    elif isinstance(values, str):
        values = [v for v in (part.strip() for part in values.replace(";", ",").split(",")) if v]
    if not isinstance(values, (list, tuple)) or not values:
        raise ConditionError(f"sweep values: expected numbers like 0, 0.5, 1, 2, 3, got {values!r}")
    said: list[str] = []
    checked = sorted({check_range("sweep value", v, RELIABILITY, said) for v in values})
    notes.extend(dict.fromkeys(said))  # "9, 9": said once
    if len(checked) > MAX_SWEEP_VALUES - 1:
        raise ConditionError(f"sweep values: at most {MAX_SWEEP_VALUES - 1} different values, got {len(checked)}")
    return view, sweep, tuple(checked)


# ---------------------------------------------------------------------------------------------
# Reliability in space and time: a map per modality over the image, a window over the steps.

def parse_pairs(spec, what: str, example: str) -> dict[str, str]:
    """'seg=a.png,sketch=0,0.6' (or a list of such strings, e.g. a repeated command-line flag) ->
    {'seg': 'a.png', 'sketch': '0,0.6'}: a comma-separated part without '=' continues the value before it."""
    parts = [spec] if isinstance(spec, str) else list(spec)
    out: dict[str, str] = {}
    for text in parts:
        if not isinstance(text, str):
            raise ConditionError(f"{what}: expected name=value pairs like {example}, got {text!r}")
        name = None
        for part in (p.strip() for p in text.split(",")):
            if "=" in part:
                name, value = (v.strip() for v in part.split("=", 1))
                out[name] = value
            elif name is not None:
                out[name] += "," + part
            elif part:
                raise ConditionError(f"{what}: expected name=value pairs like {example}, got {text!r}")
    return out


def _by_modality(given, what: str, example: str) -> dict[str, Any]:
    if given is None:
        return {}
    if isinstance(given, Mapping):
        return dict(given)
    if isinstance(given, (str, list, tuple)):
        return parse_pairs(given, what, example)
    raise ConditionError(f"{what}: expected name=value pairs like {example}, got {type(given).__name__}")


def reliability_map(source, size: int, what: str) -> np.ndarray:
    """A reliability map -> (size,size) float32 in [0, 1] (area-resampled): a 2-D float array is the map
    itself (values from 0 to 1); any other image (a path, a PIL image, an array, an image editor's value)
    is read as grey, black 0 (not heard) to white 1 (heard at its reliability), RGB as its luma, an alpha
    channel over white (transparent: heard, so black painted on a clear layer mutes). An image editor's
    value is what is painted on its layers, over white (its background, the page's faded view of the
    drawing, only guides the hand); without layers, its composite or background."""
    if isinstance(source, Mapping):
        layers = [layer for layer in source.get("layers") or () if layer is not None]
        if layers:
            source = _painted(layers, what)
        else:
            source = next((source[k] for k in ("composite", "background") if source.get(k) is not None), None)
        if source is None:
            raise ConditionError(f"{what}: the image editor holds no image")
    if isinstance(source, np.ndarray) and source.ndim == 2 and np.issubdtype(source.dtype, np.floating):
        if source.size == 0:
            raise ConditionError(f"{what}: expected an image array of shape (H,W) or (H,W,C), got {source.shape}")
        if not (np.isfinite(source).all() and source.min() >= 0 and source.max() <= 1):
            got = "nan" if np.isnan(source).any() else f"{source.min():g}..{source.max():g}"
            raise ConditionError(f"{what}: expected values from 0 (not heard) to 1 (heard at its reliability), "
                                 f"got {got}")
        grey = source.astype(np.float32)
    elif isinstance(source, (str, Image.Image, np.ndarray)) or hasattr(source, "read") or \
            hasattr(source, "__fspath__"):
        rgb = _rgb_on(open_image(source, what), (255, 255, 255))
        grey = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32) / 255.0  # (H, W)
    else:
        raise ConditionError(f"{what}: expected an image (a file, a PIL image, an array) or an image editor's "
                             f"value, got {type(source).__name__}")
    if grey.shape != (size, size):
        t = torch.from_numpy(np.ascontiguousarray(grey))[None, None]  # (1, 1, H, W)
        grey = torch.nn.functional.interpolate(t, size=(size, size), mode="area")[0, 0].numpy()
    return np.clip(grey, 0.0, 1.0).astype(np.float32)


def _painted(layers, what: str) -> Image.Image:
    """An image editor's layers, each over the one below on a clear sheet (RGBA)."""
    images = [open_image(layer, what).convert("RGBA") for layer in layers]
    sheet = Image.new("RGBA", images[0].size, (0, 0, 0, 0))
    for img in images:
        sheet = Image.alpha_composite(sheet, img if img.size == sheet.size else img.resize(sheet.size))
    return sheet


WINDOW_ACCEPTED = "start,end with 0 <= start < end <= 1 (the fraction of the steps it is heard in, e.g. 0,0.6)"


def check_window(value, what: str) -> tuple[float, float]:
    """A window over the denoising: a pair (start, end) or a string '0,0.6' -> (start, end), refused unless
    0 <= start < end <= 1."""
    pair = value
    if isinstance(value, str):
        pair = [v.strip() for v in value.strip().strip("()[]").split(",")]
    try:
        if isinstance(pair, (str, bytes, Mapping)) or len(pair) != 2 or any(isinstance(v, bool) for v in pair):
            raise TypeError
        start, end = (float(v) for v in pair)
    except (TypeError, ValueError, OverflowError):
        raise ConditionError(f"{what}: expected {WINDOW_ACCEPTED}, got {value!r}") from None
    if not (0 <= start < end <= 1):  # nan fails too
        raise ConditionError(f"{what}: expected {WINDOW_ACCEPTED}, got {value!r}")
    return start, end


def _check_spacetime(maps, windows, size: int, modalities: tuple[str, ...], known: tuple[str, ...],
                     inputs: Mapping[str, Any], values: Mapping[str, Any], steps: int, notes: list[str]
                     ) -> tuple[dict[str, np.ndarray], dict[str, tuple[float, float]]]:
    """The request's reliability maps and windows (None: not given), each for a modality given an input in
    this run; a white map and the window (0, 1) are today's run and are not kept; those of a modality whose
    input was read as off are dropped (its own note says why)."""
    out: list[dict] = []
    for given, what, per, example, read in (
            (maps, "reliability map", "reliability map of", "seg=mask.png",
             lambda m, v, w: reliability_map(v, size, w)),
            (windows, "window", "window of", "sketch=0,0.6", lambda m, v, w: check_window(v, w))):
        checked = {}
        for m, value in _by_modality(given, what, example).items():
            if m not in modalities:
                if m in known:
                    raise ConditionError(f"{per} {m}: this world has no {m} expert; its modalities: "
                                         f"{', '.join(modalities)}")
                raise ConditionError(f"{what}: unknown modality {m!r}; accepted: {', '.join(modalities)}")
            if value is None:  # not given
                continue
            if inputs.get(m) is None:
                raise ConditionError(f"{per} {m}: no {m} input is given; a {what} applies to a modality given "
                                     "in this run")
            value = read(m, value, f"{per} {m}")
            if m in values:
                checked[m] = value
        out.append(checked)
    maps, windows = out
    for m, grey in list(maps.items()):
        if (grey == 1).all():
            del maps[m]  # white: heard everywhere at its reliability, the number itself
        elif not grey.any():
            notes.append(f"reliability map of {m} is black everywhere: the {m} expert is off")
    for m, window in list(windows.items()):
        if window == (0.0, 1.0):
            del windows[m]  # heard at every step
        elif not heard_steps(window, steps):
            notes.append(f"window of {m} ({window[0]:g} to {window[1]:g}) holds none of the {steps} steps: the {m} "
                         "expert is not heard")
    return maps, windows


@dataclass
class Request:
    """A validated generation request: each given modality's value (at the world's resolution; see
    worlds.modalities), the reliabilities and the sampling settings."""

    values: dict[str, Any] = field(default_factory=dict)  # modality -> validated value; absent: off
    reliability: dict[str, float] = field(default_factory=dict)
    guidance: float = DEFAULTS["guidance"]
    steps: int = DEFAULTS["steps"]
    seed: int = DEFAULTS["seed"]
    sampler: str = DEFAULTS["sampler"]
    notes: tuple[str, ...] = ()  # what was changed or switched off and why, for the user
    superres: bool = True  # the final image through the world's final-image stage, where it has one
    # modality -> (S,S) float32 in [0, 1] at the world's image size: r_i(x) = r_i m_i(x); absent: white (the number)
    reliability_maps: dict[str, np.ndarray] = field(default_factory=dict)
    # modality -> (start, end): the fraction of the denoising it is heard in; absent: (0, 1), every step
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)

    def present(self) -> tuple[str, ...]:
        """The modalities given, in the order of the request's values."""
        return tuple(self.values)

    def without(self, *modalities: str) -> Request:
        """The same request as if these modalities' inputs were left empty."""
        return replace(self, values={m: v for m, v in self.values.items() if m not in modalities},
                       reliability_maps={m: v for m, v in self.reliability_maps.items() if m not in modalities},
                       windows={m: v for m, v in self.windows.items() if m not in modalities})


def make_request(size: int, modalities: tuple[str, ...], inputs: Mapping[str, Any] | None = None, *,
                 read: Callable[[str, Any], tuple[Any, str | tuple[str, ...] | None]],
                 reliability: dict | str | None = None, guidance=DEFAULTS["guidance"], steps=DEFAULTS["steps"],
                 seed=DEFAULTS["seed"], sampler=DEFAULTS["sampler"], samplers: tuple[str, ...] = SAMPLERS,
                 default_reliability: dict[str, float] | None = None, subject: str = "face", superres=True,
                 known: tuple[str, ...] = (), reliability_maps=None, windows=None) -> Request:
    """Validate and normalise every input of one generation; raise ConditionError on the first bad one.
    inputs: the given input of each modality (left out: off), each read by `read(modality, given)`
    (the modality's own reading for this world, worlds.modalities) into a validated value or None, with
    its notes. Reliability: a dict or 'seg=1,text=0.5'; modalities not named take default_reliability
    (else 1). known: the modalities there are (an input for one of them that this world has no expert
    for is refused; a reliability for one is checked, then left out). superres: whether the final image
    goes through the world's final-image stage (None: it does). A finite number outside its range
    (limits) is set to the nearest end, and the request's notes say so, once.
    reliability_maps: {modality: map} or 'seg=mask.png,sketch=m.png' (or a list of such strings), each
    map an image at any size (reliability_map: black 0 = not heard there, white 1 = heard at its
    reliability; transparent = white) or a 2-D float array in [0, 1], kept at size x size.
    windows: {modality: (start, end) or '0,0.6'} or 'sketch=0,0.6' (or a list), the fraction of the
    denoising the modality is heard in. Each only for a modality given an input; a white map and the
    window (0, 1) are not kept (the request is then today's, exactly)."""
    notes = []
    if isinstance(reliability, str):
        reliability = parse_reliability(reliability, modalities, notes)
    reliability = dict(reliability or {})
    for name in list(reliability):
        if name not in modalities:
            if name not in known:
                raise ConditionError(f"reliability: unknown modality {name!r}; accepted: {', '.join(modalities)}")
            check_range(f"reliability of {name}", reliability.pop(name), RELIABILITY, [])  # checked, then unused
    reliability = {**(default_reliability or {}), **reliability}
    rel = {m: check_range(f"reliability of {m}", reliability.get(m, 1.0), RELIABILITY, notes) for m in modalities}
    guidance = check_range("guidance", guidance, GUIDANCE, notes)
    steps = check_range("steps", steps, STEPS, notes)
    seed = check_range("seed", seed, SEED, notes)
    superres = check_switch("superres", superres)
    if sampler not in samplers:
        raise ConditionError(f"sampler: unknown sampler {sampler!r}; accepted: {', '.join(samplers)}")
    inputs = dict(inputs or {})
    for m, given in inputs.items():
        if m in modalities or given is None:
            continue
        if m in known:
            raise ConditionError(f"{m}: this world has no {m} expert; its modalities: {', '.join(modalities)}")
        raise ConditionError(f"unknown modality {m!r}; accepted: {', '.join(modalities)}")
    values = {}
    for m in (m for m in modalities if m in inputs):
        value, said = read(m, inputs[m])
        notes.extend([said] if isinstance(said, str) else said or ())
        if value is None:
            continue
        values[m] = value
        if rel[m] == 0:
            notes.append(f"{m} reliability is 0: the {m} expert is off")
    maps, windows = _check_spacetime(reliability_maps, windows, size, modalities, known, inputs, values, steps, notes)
    if not values:
        notes.append(f"no modality given: sampling the experts' mixed prior (an unconditional {subject})")
    return Request(values, rel, guidance, steps, seed, sampler, tuple(dict.fromkeys(notes)), superres,
                   reliability_maps=maps, windows=windows)
