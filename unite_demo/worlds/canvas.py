"""The page's canvases read as the experts' inputs: an image editor's value (or any image) -> the
painted map's class ids, or the sketch, in which a photo becomes its edges (OpenCV's Canny)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from unite_demo.limits import CANVAS, PHOTO_EDGE_SIZE
from unite_demo.worlds.conditions import open_image, seg_from_image

Palette = tuple[tuple[str, ...], np.ndarray]  # a world's (class names, (K,3) uint8 colours), as World.palette


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


def editor_rgba(value, what: str) -> np.ndarray | None:
    """Any image -> (H,W,4) uint8; None when there is no image or it is fully transparent."""
    img = _editor_image(value)
    if img is None:
        return None
    rgba = np.asarray(open_image(img, what).convert("RGBA"))
    if not rgba[..., 3].any():
        return None
    return rgba


def flatten(rgba: np.ndarray, paper: tuple[int, int, int]) -> np.ndarray:
    """(H,W,4) over an opaque `paper` colour -> (H,W,3) uint8."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    out = rgba[..., :3].astype(np.float32) * a + np.array(paper, np.float32) * (1 - a)
    return out.round().astype(np.uint8)


def seg_from_editor(value, size: int, *, palette: Palette) -> np.ndarray | None:
    """Painted map -> (size,size) class ids by nearest colour of the world's palette (unpainted = its
    first class); None when nothing but that class is there (the segmentation expert is then off)."""
    rgba = editor_rgba(value, "segmentation map")
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
    rgba = editor_rgba(value, "sketch")
    if rgba is None:
        return SketchInput(None, note="sketch canvas is empty: the sketch expert is off")
    background = editor_rgba(value.get("background"), "sketch") if isinstance(value, dict) else rgba
    if background is not None:
        paper = flatten(background, (255, 255, 255))
        if is_photo(paper):
            edges = photo_to_sketch(paper)
            strokes = _layer_strokes(value.get("layers"), edges.shape[0]) if isinstance(value, dict) else None
            if strokes is not None:
                edges = np.maximum(edges, strokes)
            return SketchInput(edges, True, "a photo was given: the sketch is its edges (OpenCV Canny)")
    return SketchInput(flatten(rgba, (255, 255, 255)))


def sketch_for_canvas(sketch: np.ndarray, size: int = CANVAS) -> np.ndarray:
    """White-on-black strokes (any size) -> dark strokes on white paper at the canvas size, RGB."""
    paper = np.where(np.asarray(sketch) > 127, 0, 255).astype(np.uint8)
    img = Image.fromarray(paper).resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(img.convert("RGB"))
