"""Runs as the page shows them: a run's frames as display-ready updates with named outputs, the
conditions as the experts received them, the progress line, and a run's frames as an animation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from unite_demo.limits import CONDITION_SIZE, PREVIEW_SIZE, RESULT_SIZE
from unite_demo.studio.strips import Strip, strip_image
from unite_demo.worlds.conditions import Request
from unite_demo.worlds.modalities import MODALITIES
from unite_demo.worlds.world import World


def shown(images: np.ndarray, strip: Strip, size: int) -> Image.Image:
    """One step's (B,H,W,3) images as shown: the labelled strip of B > 1, the image alone of B = 1."""
    if len(images) == 1:
        return frame_image(images[0], size)
    return strip_image(images, strip.labels, strip.marked, size)


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
    conflict: Image.Image | None = None  # where the experts disagree at this step (conflict_image); None: as shown

    def outputs(self) -> dict:
        """The page's outputs as this message shows them, by name (OUTPUTS): the conditions and the
        strip's caption once at the first step and again with the final image, the files with the final
        image; a run superseded by a newer live run changes only the progress line (UNCHANGED for the
        others)."""
        if self.superseded:
            return {name: self.status if name == "progress" else UNCHANGED for name in outputs()}
        again = self.step == 1 or self.done
        shown = {**{f"{m}_view": self.views.get(m) for m in image_views()}, "conditions": self.caption,
                 "strip_caption": self.strip_caption, "notes": notes_text(self.notes)}
        png, gif = self.files or (UNCHANGED, UNCHANGED)
        named = {"result": self.image, "progress": self.status,
                 **{k: v if again else UNCHANGED for k, v in shown.items()},
                 "strip": self.strip if self.strip is not None or again else UNCHANGED,  # None clears an earlier strip
                 "save_png": png, "save_gif": gif,
                 "conflict": self.conflict if self.conflict is not None else UNCHANGED}
        return {name: named[name] for name in outputs()}


def outputs() -> tuple[str, ...]:
    """The names of a run's outputs on the page (Update.outputs), a condition view per image modality."""
    return ("result", "progress", *(f"{m}_view" for m in image_views()), "conditions", "strip", "strip_caption",
            "save_png", "save_gif", "notes", "conflict")  # new outputs go last: each earlier one keeps its place


# The conflict view's colours, from agreement (0) through orthogonal pushes (0.5) to opposite ones (1).
HEAT = np.array([[20, 20, 60], [90, 30, 140], [220, 60, 60], [250, 170, 40], [255, 250, 200]], np.float32)


def conflict_image(conflict: np.ndarray, frame: np.ndarray, size: int = PREVIEW_SIZE) -> Image.Image:
    """Where the experts disagree at one step: conflict (h,w) in [0, 1] (combine.conflict_map) as a heat
    map from HEAT, laid at 70% over the grey of the step's image (H,W,3) uint8, size x size."""
    c = np.clip(np.nan_to_num(np.asarray(conflict, np.float32)), 0, 1)
    at = c * (len(HEAT) - 1)
    lo = np.minimum(at.astype(int), len(HEAT) - 2)
    heat = HEAT[lo] + (at - lo)[..., None] * (HEAT[lo + 1] - HEAT[lo])  # (h, w, 3)
    heat = np.asarray(Image.fromarray(heat.round().astype(np.uint8)).resize((size, size), Image.Resampling.BILINEAR))
    grey = np.asarray(Image.fromarray(frame).convert("L").resize((size, size), Image.Resampling.BICUBIC))
    mixed = 0.7 * heat.astype(np.float32) + 0.3 * grey[..., None].astype(np.float32)
    return Image.fromarray(mixed.round().clip(0, 255).astype(np.uint8))


def status_line(step: int, total: int, tail: str = "") -> str:
    """The progress line: one line, whatever the notes (they have their own place, notes_text)."""
    return f"step {step} / {total}" + (f" · {tail}" if tail else "")


def notes_text(notes: tuple[str, ...]) -> str:
    """What the studio changed or left out of a run's inputs, a line each ('' when nothing)."""
    return "\n".join(f"note: {n}" for n in notes)


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
