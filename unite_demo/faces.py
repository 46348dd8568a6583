"""The cartoon-faces world: a procedural, seed-deterministic dataset of faces with their
segmentation map, sketch and caption, and the one palette every other module uses."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

# One palette for the generator, the loaders and the UI: (class id, name, colour in maps).
PALETTE: tuple[tuple[int, str, tuple[int, int, int]], ...] = (
    (0, "background", (0, 0, 0)),
    (1, "skin", (255, 204, 153)),
    (2, "hair", (139, 69, 19)),
    (3, "eyes", (0, 128, 255)),
    (4, "brows", (255, 0, 255)),
    (5, "mouth", (255, 0, 0)),
    (6, "glasses", (0, 255, 0)),
    (7, "beard", (255, 255, 0)),
)
CLASS_NAMES: tuple[str, ...] = tuple(name for _, name, _ in PALETTE)
NUM_CLASSES = len(PALETTE)
PALETTE_RGB = np.array([rgb for _, _, rgb in PALETTE], dtype=np.uint8)  # (K, 3)
FACES_PALETTE = (CLASS_NAMES, PALETTE_RGB)  # a world's palette as the worlds hold it: (names, (K,3) colours)

# Attributes the captions talk about; the value lists double as the classifier's label sets.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "hair_colour": ("black", "brown", "blonde", "red", "grey", "blue"),
    "hair_style": ("short", "long", "curly", "bald"),
    "eye_colour": ("blue", "green", "brown", "purple"),
    "skin_tone": ("pale", "tan", "brown", "dark"),
    "expression": ("smiling", "neutral", "surprised"),
    "glasses": ("no", "yes"),
    "beard": ("no", "yes"),
    "background": ("white", "yellow", "pink", "sky blue", "green", "orange"),
}

HAIR_RGB = {"black": (30, 28, 32), "brown": (110, 62, 30), "blonde": (235, 200, 90),
            "red": (200, 60, 25), "grey": (160, 160, 165), "blue": (40, 90, 220)}
EYE_RGB = {"blue": (30, 110, 230), "green": (30, 170, 60), "brown": (110, 60, 20),
           "purple": (140, 40, 190)}
SKIN_RGB = {"pale": (255, 224, 200), "tan": (225, 175, 120), "brown": (165, 105, 60),
            "dark": (95, 60, 40)}
BACKGROUND_RGB = {"white": (245, 245, 245), "yellow": (250, 225, 80), "pink": (250, 170, 200),
                  "sky blue": (140, 200, 250), "green": (130, 210, 120), "orange": (250, 150, 60)}
LIPS_RGB = (170, 40, 50)
FRAME_RGB = (20, 20, 25)

SUPERSAMPLE = 4  # draw at 4x the output size, then downsample for clean edges

# Disjoint seed ranges: each expert trains on its own faces (the paper's unpaired setting).
SPLITS: dict[str, range] = {
    "seg": range(0, 1_000_000),
    "sketch": range(1_000_000, 2_000_000),
    "text": range(2_000_000, 3_000_000),
    "joint": range(3_000_000, 4_000_000),
    "base": range(4_000_000, 5_000_000),
    "metrics": range(5_000_000, 6_000_000),
    "heldout": range(9_000_000, 9_100_000),
}


@dataclass
class Face:
    """One sample: image (H,W,3 uint8), seg (H,W uint8 class ids), sketch (H,W uint8, 255 = stroke)."""

    seed: int
    image: np.ndarray
    seg: np.ndarray
    sketch: np.ndarray
    caption: str
    attributes: dict[str, str]
    mentioned: tuple[str, ...] = field(default=())


def seg_to_rgb(seg: np.ndarray) -> np.ndarray:
    """Class-id map (H,W) -> palette colours (H,W,3)."""
    return PALETTE_RGB[seg]


def sample_attributes(rng: random.Random) -> dict[str, str]:
    attrs = {name: rng.choice(values) for name, values in ATTRIBUTES.items()}
    attrs["glasses"] = "yes" if rng.random() < 0.35 else "no"
    attrs["beard"] = "yes" if rng.random() < 0.3 else "no"
    return attrs


def _ellipse(draw: ImageDraw.ImageDraw, cx: float, cy: float, rx: float, ry: float, fill: int,
             width: int = 0) -> None:
    box = [cx - rx, cy - ry, cx + rx, cy + ry]
    if width:
        draw.ellipse(box, outline=fill, width=width)
    else:
        draw.ellipse(box, fill=fill)


def _draw_layout(attrs: dict[str, str], rng: random.Random, big: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw the class-id map at the supersampled size; also return an iris mask."""
    u = big / 32.0  # layout unit: one output pixel at 32x32
    labels = Image.new("L", (big, big), 0)
    d = ImageDraw.Draw(labels)
    cx = big / 2 + rng.uniform(-1.5, 1.5) * u
    cy = big / 2 + rng.uniform(-0.5, 1.5) * u
    rx = rng.uniform(8.5, 10.5) * u
    ry = rng.uniform(10.5, 12.5) * u
    style = attrs["hair_style"]
    hair = 2
    if style == "long":
        d.rectangle([cx - rx - 2.5 * u, cy - ry * 0.4, cx + rx + 2.5 * u, big], fill=hair)
        _ellipse(d, cx, cy - ry * 0.35, rx + 2.5 * u, ry * 0.85, hair)
    elif style == "short":
        _ellipse(d, cx, cy - ry * 0.3, rx + 1.2 * u, ry * 0.85, hair)
    elif style == "curly":
        for k in range(11):
            ang = np.pi * (0.95 + k * 1.1 / 10)
            px = cx + (rx + 0.5 * u) * np.cos(ang)
            py = cy - ry * 0.25 + (ry * 0.85) * np.sin(ang)
            _ellipse(d, px, py, 3.3 * u, 3.3 * u, hair)
    # Face (skin) and neck.
    d.rectangle([cx - rx * 0.35, cy + ry * 0.5, cx + rx * 0.35, big], fill=1)
    _ellipse(d, cx, cy, rx, ry, 1)
    if style in ("short", "curly"):
        # Fringe: hair over the top of the forehead.
        d.chord([cx - rx, cy - ry, cx + rx, cy - ry * 0.1], 180, 360, fill=hair)
    elif style == "long":
        d.chord([cx - rx, cy - ry, cx + rx, cy - ry * 0.2], 180, 360, fill=hair)
    if attrs["beard"] == "yes":
        d.chord([cx - rx, cy - ry * 0.25, cx + rx, cy + ry], 0, 180, fill=7)
    eye_dx = rx * rng.uniform(0.38, 0.46)
    eye_y = cy + ry * rng.uniform(-0.05, 0.08)
    erx, ery = 2.4 * u, 1.9 * u
    if attrs["glasses"] == "yes":
        for sx in (-1, 1):
            _ellipse(d, cx + sx * eye_dx, eye_y, erx + 1.6 * u, ery + 1.6 * u, 6, width=int(1.1 * u))
        d.line([cx - eye_dx + erx + 1.2 * u, eye_y, cx + eye_dx - erx - 1.2 * u, eye_y], fill=6,
               width=int(1.0 * u))
    iris = Image.new("L", (big, big), 0)
    di = ImageDraw.Draw(iris)
    for sx in (-1, 1):
        ex = cx + sx * eye_dx
        _ellipse(d, ex, eye_y, erx, ery, 3)
        _ellipse(di, ex + rng.uniform(-0.3, 0.3) * u, eye_y, 1.35 * u, 1.5 * u, 1)
        by = eye_y - ery - (2.6 if attrs["glasses"] == "yes" else 1.6) * u
        tilt = rng.uniform(-0.6, 0.6) * u
        d.line([ex - 2.4 * u, by + sx * tilt, ex + 2.4 * u, by - sx * tilt], fill=4, width=int(1.7 * u))
    my = cy + ry * rng.uniform(0.45, 0.55)
    mw = rx * rng.uniform(0.35, 0.5)
    expression = attrs["expression"]
    if expression == "smiling":
        d.chord([cx - mw, my - 2.5 * u, cx + mw, my + 2.0 * u], 0, 180, fill=5)
    elif expression == "neutral":
        d.rectangle([cx - mw * 0.8, my - 0.6 * u, cx + mw * 0.8, my + 0.6 * u], fill=5)
    else:
        _ellipse(d, cx, my, 1.6 * u, 2.0 * u, 5)
    labels_np = np.asarray(labels)
    iris_np = (np.asarray(iris) > 0) & (labels_np == 3)
    return labels_np, iris_np


def _downsample_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """Majority class in each supersampled block (never interpolate labels)."""
    f = labels.shape[0] // size
    onehot = np.eye(NUM_CLASSES, dtype=np.float32)[labels]  # (big, big, K)
    votes = onehot.reshape(size, f, size, f, NUM_CLASSES).sum(axis=(1, 3))  # (size, size, K)
    return votes.argmax(-1).astype(np.uint8)


def sketch_from_labels(seg: np.ndarray) -> np.ndarray:
    """White strokes on black, one pixel wide, where a pixel's class differs from its right or
    lower neighbour: the outlines of the map's regions."""
    edge = np.zeros(seg.shape, dtype=bool)
    edge[:, :-1] |= seg[:, :-1] != seg[:, 1:]
    edge[:-1, :] |= seg[:-1, :] != seg[1:, :]
    return np.where(edge, 255, 0).astype(np.uint8)


def render(attrs: dict[str, str], rng: random.Random, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw a face with these attributes: (image, seg, sketch) at size x size."""
    big = size * SUPERSAMPLE
    labels, iris = _draw_layout(attrs, rng, big)
    colours = np.zeros((NUM_CLASSES, 3), dtype=np.float32)
    colours[0] = BACKGROUND_RGB[attrs["background"]]
    colours[1] = SKIN_RGB[attrs["skin_tone"]]
    colours[2] = HAIR_RGB[attrs["hair_colour"]]
    colours[3] = (250, 250, 250)
    colours[4] = np.array(HAIR_RGB[attrs["hair_colour"]]) * 0.7
    colours[5] = LIPS_RGB
    colours[6] = FRAME_RGB
    colours[7] = np.array(HAIR_RGB[attrs["hair_colour"]]) * 0.85
    img = colours[labels]  # (big, big, 3)
    img[iris] = EYE_RGB[attrs["eye_colour"]]
    img = np.clip(img, 0, 255).astype(np.uint8)
    image = np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BOX))
    seg = _downsample_labels(labels, size)
    return image, seg, sketch_from_labels(seg)


_NOUNS = ("person", "face", "character", "cartoon person", "portrait")


def caption_for(attrs: dict[str, str], rng: random.Random, mention_p: float = 0.85) -> tuple[str, tuple[str, ...]]:
    """A caption in varied wording that mentions a random subset of the attributes."""
    mentioned = [a for a in ATTRIBUTES if rng.random() < mention_p]
    parts_hair = []
    if "hair_style" in mentioned and attrs["hair_style"] == "bald":
        hair = "a bald head"
        if "hair_colour" in mentioned:
            mentioned.remove("hair_colour")
    else:
        words = []
        if "hair_style" in mentioned:
            words.append(attrs["hair_style"])
        if "hair_colour" in mentioned:
            words.append(attrs["hair_colour"])
        hair = f"{' '.join(words)} hair" if words else ""
    if hair:
        parts_hair.append(hair)
    feats = list(parts_hair)
    if "eye_colour" in mentioned:
        feats.append(rng.choice(["{} eyes", "{} eyes", "eyes that are {}"]).format(attrs["eye_colour"]))
    if "skin_tone" in mentioned:
        feats.append(rng.choice(["{} skin", "a {} complexion"]).format(attrs["skin_tone"]))
    if "glasses" in mentioned:
        feats.append(rng.choice(["glasses", "round glasses", "spectacles"]) if attrs["glasses"] == "yes"
                     else rng.choice(["no glasses", "no spectacles"]))
    if "beard" in mentioned:
        feats.append(rng.choice(["a beard", "a full beard"]) if attrs["beard"] == "yes"
                     else rng.choice(["no beard", "a clean-shaven chin"]))
    rng.shuffle(feats)
    subject = rng.choice(_NOUNS)
    if "expression" in mentioned:
        subject = {"smiling": rng.choice(["smiling", "happy", "cheerful"]),
                   "neutral": rng.choice(["serious", "neutral", "calm"]),
                   "surprised": rng.choice(["surprised", "astonished", "open-mouthed"])}[attrs["expression"]] \
            + " " + subject
    article = "an" if subject[0] in "aeiou" else "a"
    text = f"{article} {subject}"
    if feats:
        text += " with " + (feats[0] if len(feats) == 1 else ", ".join(feats[:-1]) + " and " + feats[-1])
    if "background" in mentioned:
        text += rng.choice([" on a {} background", " in front of a {} wall", ", {} background"]).format(
            attrs["background"]).replace(" a orange", " an orange")
    if rng.random() < 0.3:
        text = rng.choice(["cartoon of ", "drawing of ", "picture of "]) + text
    return text, tuple(mentioned)


def make_face(seed: int, size: int = 32) -> Face:
    """The face for this seed: identical for the same (seed, size) on every machine."""
    if size % 8:
        raise ValueError(f"face size must be a multiple of 8, got {size}")
    rng = random.Random(seed)
    attrs = sample_attributes(rng)
    image, seg, sketch = render(attrs, rng, size)
    caption, mentioned = caption_for(attrs, rng)
    return Face(seed, image, seg, sketch, caption, attrs, mentioned)
