"""The explain view: runs sampled side by side from the same noise and shown as one labelled strip.
Each expert alone beside their product (the paper's comparison), or one modality's reliability swept
with the others as set. Which runs a strip holds, their labels, and the strip as one image."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from unite_demo.worlds.conditions import Request, check_view
from unite_demo.worlds.modalities import MODALITIES

MARK = (255, 140, 0)  # the frame around the run as set (the product)
LABEL_HEIGHT = 22
GAP = 6


@dataclass(frozen=True)
class Strip:
    """The runs of one view, side by side: their requests (one batch row each), a label per image, and
    which one is the run as set (the page's result)."""

    view: str
    requests: tuple[Request, ...]
    labels: tuple[str, ...]
    marked: int
    notes: tuple[str, ...] = ()

    @property
    def request(self) -> Request:
        """The run as set."""
        return self.requests[self.marked]

    def caption(self) -> str:
        """The labels in words, the marked one named as the run as set (the page's text beside the image)."""
        return " · ".join(f"[{label}]" if k == self.marked else label for k, label in enumerate(self.labels))


def active_modalities(req: Request) -> tuple[str, ...]:
    """The modalities heard in this run: an input given and a reliability above 0."""
    return tuple(m for m in req.present() if req.reliability.get(m, 0) > 0)


def alone(req: Request, modality: str) -> Request:
    """The run with only `modality`'s input (the others as if left empty), at its reliability."""
    return replace(req.without(*(m for m in req.present() if m != modality)), notes=())


def make_strip(req: Request, view=None, sweep=None, values=None) -> Strip:
    """The strip of a validated request: 'product' (the run alone), 'experts' (each active expert
    alone, then the product) or 'sweep' (the reliability of `sweep` at each of `values` and at the value
    as set, the others as set). Bad view, modality or values: ConditionError naming them; a value outside
    its range is set within it, and the strip's notes say so."""
    said: list[str] = []
    view, sweep, values = check_view(view, sweep, values, req.present(), said)
    if view == "product":
        return Strip(view, (req,), ("product",), 0)
    if view == "experts":
        active = active_modalities(req)
        note = {0: "no expert is on: the strip shows the unconditional sample only",
                1: "only one expert is on: alone, it is the product"}.get(len(active))
        rows = tuple(alone(req, m) for m in active) + (req,)
        labels = tuple(f"{MODALITIES[m].label} alone" for m in active) + ("product",)
        return Strip(view, rows, labels, len(active), (note,) if note else ())
    as_set = req.reliability.get(sweep, 0.0)
    points = sorted({*values, as_set})
    rows = tuple(replace(req, reliability={**req.reliability, sweep: v}) for v in points)
    labels = tuple(f"{MODALITIES[sweep].label} {v:g}" + (" (as set)" if v == as_set else "") for v in points)
    return Strip(view, rows, labels, points.index(as_set), tuple(said))


def strip_image(images: np.ndarray, labels: tuple[str, ...], marked: int, tile: int) -> Image.Image:
    """(B,H,W,3) uint8 images -> one image: each upscaled bicubic to tile x tile, side by side, its label
    under it (smaller type for a long one), the marked one framed."""
    b = len(images)
    out = Image.new("RGB", (b * tile + (b - 1) * GAP, tile + LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(out)
    for k, (image, label) in enumerate(zip(images, labels)):
        x = k * (tile + GAP)
        img = Image.fromarray(image)
        out.paste(img if img.width == tile else img.resize((tile, tile), Image.Resampling.BICUBIC), (x, 0))
        if k == marked:
            draw.rectangle((x, 0, x + tile - 1, tile - 1), outline=MARK, width=max(2, tile // 64))
        text, font = _fit(draw, label, tile - 4, max(10, min(15, tile // 9)))
        draw.text((x + tile / 2, tile + LABEL_HEIGHT / 2), text, fill=MARK if k == marked else (40, 40, 40),
                  font=font, anchor="mm")
    return out


def _fit(draw: ImageDraw.ImageDraw, label: str, width: int, size: int):
    """The label and a font that fit it in `width`: the type made smaller down to 9 px, then the label
    shortened with an ellipsis."""
    for s in range(size, 8, -1):
        font = ImageFont.load_default(size=s)
        if draw.textlength(label, font=font) <= width:
            return label, font
    while label and draw.textlength(label + "...", font=font) > width:
        label = label[:-1]
    return label + "...", font
