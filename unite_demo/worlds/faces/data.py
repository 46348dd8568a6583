"""The cartoon-faces world: a procedural, seed-deterministic dataset of faces with their
segmentation map, sketch and caption, and the one palette every other module uses."""

from __future__ import annotations

import random
import re
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

DATA_VERSION = 2  # 1: centred upright faces of one size; 2: positions, sizes, tilts, shapes and parts vary

# Layout ranges at 32 px (data version 2): where and how big people draw a face.
FACE_CENTRE = (0.2, 0.8)  # centre anywhere in the middle 60% of the frame (fraction of the side)
FACE_SCALE = (0.55, 1.3)  # face size against version 1's (rx 8.5..10.5 px)
FACE_ASPECT = (1.0, 1.45)  # ry / rx: round to long
FACE_TILT = 20.0  # degrees either way
HAIR_SHAPES = {"short": ("crop", "side parting", "receding", "spiky"), "long": ("straight", "bob", "ponytail"),
               "curly": ("ringlets", "afro"), "bald": ("bald",)}
P_NO_BROWS, P_NO_MOUTH = 0.15, 0.06

SUPERSAMPLE = 4  # draw at 4x the output size, then downsample for clean edges

# Disjoint seed ranges: each expert trains on its own faces (the paper's unpaired setting).
SPLITS: dict[str, range] = {
    "seg": range(0, 1_000_000),
    "sketch": range(1_000_000, 2_000_000),
    "text": range(2_000_000, 3_000_000),
    "joint": range(3_000_000, 4_000_000),
    "base": range(4_000_000, 5_000_000),
    "metrics": range(5_000_000, 6_000_000),
    "superres": range(6_000_000, 7_000_000),
    "heldout": range(9_000_000, 9_100_000),
}


@dataclass(kw_only=True)
class Case:
    """One evaluation or training case: what the experts receive (seg: H,W uint8 class ids; sketch: H,W
    uint8, 255 = stroke; a caption), the attributes of the face and those the caption names."""

    seed: int
    seg: np.ndarray
    sketch: np.ndarray
    caption: str
    attributes: dict[str, str]
    mentioned: tuple[str, ...] = field(default=())


@dataclass(kw_only=True)
class Face(Case):
    """A generated face: its image (H,W,3 uint8) and the conditions rendered from the same drawing."""

    image: np.ndarray

    @property
    def edges(self) -> np.ndarray:
        """The strokes an output's edges are scored against: the sketch itself (one pixel wide)."""
        return self.sketch


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


def _draw_hair(d: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, rx: float, ry: float, u: float,
               rng: random.Random, bottom: float) -> None:
    """The hair behind the face (class 2), one of HAIR_SHAPES."""
    hair = 2
    if shape in ("straight", "bob", "ponytail"):
        end = bottom if shape == "straight" else cy + ry * rng.uniform(0.35, 0.7)
        if shape != "ponytail":
            d.rectangle([cx - rx - 2.5 * u, cy - ry * 0.4, cx + rx + 2.5 * u, end], fill=hair)
        else:
            side = rng.choice((-1, 1))
            _ellipse(d, cx + side * (rx + 1.5 * u), cy + ry * 0.2, 2.2 * u, ry * 0.75, hair)
        _ellipse(d, cx, cy - ry * 0.35, rx + rng.uniform(1.0, 2.5) * u, ry * 0.85, hair)
    elif shape in ("crop", "side parting", "receding", "spiky"):
        _ellipse(d, cx, cy - ry * rng.uniform(0.25, 0.35), rx + rng.uniform(0.6, 1.6) * u, ry * 0.85, hair)
        if shape == "spiky":
            for k in range(rng.randint(4, 7)):
                ang = np.pi * (1.1 + 0.8 * k / 6)
                bx, by = cx + rx * np.cos(ang), cy - ry * 0.3 + ry * 0.85 * np.sin(ang)
                tip = (cx + (rx + 3.5 * u) * np.cos(ang), cy - ry * 0.3 + (ry * 0.85 + 3.5 * u) * np.sin(ang))
                d.polygon([(bx - 2 * u, by), tip, (bx + 2 * u, by)], fill=hair)
    elif shape in ("ringlets", "afro"):
        n, r, out = (11, 3.3, 0.5) if shape == "ringlets" else (14, 4.2, 2.0)
        for k in range(n):
            ang = np.pi * (0.95 + k * 1.1 / (n - 1))
            px = cx + (rx + out * u) * np.cos(ang)
            py = cy - ry * 0.25 + (ry * 0.85 + (out - 0.5) * u) * np.sin(ang)
            _ellipse(d, px, py, r * u, r * u, hair)


def _draw_fringe(d: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, rx: float, ry: float,
                 rng: random.Random) -> None:
    """Hair over the top of the forehead, drawn over the face."""
    if shape in ("crop", "spiky", "ringlets", "afro"):
        d.chord([cx - rx, cy - ry, cx + rx, cy - ry * rng.uniform(0.0, 0.2)], 180, 360, fill=2)
    elif shape == "side parting":
        side = rng.choice((-1, 1))
        d.chord([cx - rx, cy - ry, cx + rx, cy - ry * 0.1], 180, 360, fill=2)
        d.polygon([(cx + side * rx * 0.1, cy - ry * 0.55), (cx - side * rx, cy - ry * 0.6),
                   (cx - side * rx, cy - ry * 0.05)], fill=2)
    elif shape == "receding":
        d.chord([cx - rx, cy - ry, cx + rx, cy - ry * 0.55], 180, 360, fill=2)
    elif shape in ("straight", "bob", "ponytail"):
        d.chord([cx - rx, cy - ry, cx + rx, cy - ry * rng.uniform(0.1, 0.3)], 180, 360, fill=2)


def _draw_layout(attrs: dict[str, str], rng: random.Random, big: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Draw the class-id map at the supersampled size; also return an iris mask and whether a mouth
    was drawn (people leave parts out; the generator does too). The face is drawn
    upright on a canvas twice the frame's size, then turned by its tilt and cut to the frame, so the
    frame's edge may cut it anywhere."""
    u = big / 32.0  # layout unit: one output pixel at 32x32
    pad = big // 2
    canvas = big + 2 * pad
    labels = Image.new("L", (canvas, canvas), 0)
    d = ImageDraw.Draw(labels)
    cx = pad + rng.uniform(*FACE_CENTRE) * big
    cy = pad + rng.uniform(*FACE_CENTRE) * big
    scale = rng.uniform(*FACE_SCALE)
    rx = rng.uniform(8.0, 10.5) * scale * u
    ry = rx * rng.uniform(*FACE_ASPECT)
    feature = scale ** 0.7  # eyes, brows and mouth shrink less than the face
    shape = rng.choice(HAIR_SHAPES[attrs["hair_style"]])
    neck = canvas if rng.random() < 0.3 else cy + ry * rng.uniform(0.9, 1.5)
    _draw_hair(d, shape, cx, cy, rx, ry, u, rng, bottom=max(neck, cy + ry * 1.1))
    # Face (skin) and neck.
    d.rectangle([cx - rx * 0.35, cy + ry * 0.5, cx + rx * 0.35, neck], fill=1)
    _ellipse(d, cx, cy, rx, ry, 1)
    _draw_fringe(d, shape, cx, cy, rx, ry, rng)
    if attrs["beard"] == "yes":
        if rng.random() < 0.7:
            d.chord([cx - rx, cy - ry * rng.uniform(0.1, 0.35), cx + rx, cy + ry], 0, 180, fill=7)
        else:  # chin beard
            _ellipse(d, cx, cy + ry * 0.75, rx * 0.55, ry * 0.3, 7)
    eye_dx = rx * rng.uniform(0.3, 0.5)
    eye_y = cy + ry * rng.uniform(-0.12, 0.1)
    erx = rng.uniform(1.7, 2.8) * feature * u
    ery = erx * rng.uniform(0.65, 1.0)
    if attrs["glasses"] == "yes":
        rim = max(1, int(1.1 * u))
        square = rng.random() < 0.4
        for sx in (-1, 1):
            box = [cx + sx * eye_dx - erx - 1.6 * u, eye_y - ery - 1.6 * u,
                   cx + sx * eye_dx + erx + 1.6 * u, eye_y + ery + 1.6 * u]
            if square:
                d.rounded_rectangle(box, radius=1.2 * u, outline=6, width=rim)
            else:
                d.ellipse(box, outline=6, width=rim)
        d.line([cx - eye_dx + erx + 1.2 * u, eye_y, cx + eye_dx - erx - 1.2 * u, eye_y], fill=6, width=rim)
    iris = Image.new("L", (canvas, canvas), 0)
    di = ImageDraw.Draw(iris)
    brows = rng.random() >= P_NO_BROWS
    brow_shape = rng.choice(("straight", "arched", "angled"))
    brow_w = max(1, int(rng.uniform(1.3, 2.0) * feature * u))
    for sx in (-1, 1):
        ex = cx + sx * eye_dx
        _ellipse(d, ex, eye_y, erx, ery, 3)
        ir = min(erx, ery) * rng.uniform(0.6, 0.8)
        _ellipse(di, ex + rng.uniform(-0.3, 0.3) * u, eye_y, ir, ir * 1.1, 1)
        if not brows:
            continue
        by = eye_y - ery - (2.6 if attrs["glasses"] == "yes" else rng.uniform(1.2, 2.2)) * u
        half = erx * rng.uniform(0.9, 1.2)
        tilt = rng.uniform(-0.6, 0.6) * u
        if brow_shape == "straight":
            points = [(ex - half, by + sx * tilt), (ex + half, by - sx * tilt)]
        elif brow_shape == "arched":
            points = [(ex - half, by + 0.6 * u), (ex, by - 0.6 * u), (ex + half, by + 0.6 * u)]
        else:
            points = [(ex - sx * half, by + 0.8 * u), (ex + sx * half * 0.3, by - 0.5 * u), (ex + sx * half, by)]
        d.line(points, fill=4, width=brow_w, joint="curve")
    my = cy + ry * rng.uniform(0.4, 0.6)
    mw = rx * rng.uniform(0.3, 0.55)
    expression = attrs["expression"]
    mouth = rng.random() >= P_NO_MOUTH
    if mouth and expression == "smiling":
        d.chord([cx - mw, my - rng.uniform(1.5, 3.0) * feature * u, cx + mw, my + 2.0 * feature * u], 0, 180, fill=5)
    elif mouth and expression == "neutral":
        h = rng.uniform(0.5, 0.8) * feature * u
        d.rectangle([cx - mw * 0.8, my - h, cx + mw * 0.8, my + h], fill=5)
    elif mouth:
        mr = rng.uniform(1.3, 2.0) * feature * u
        _ellipse(d, cx, my, mr, mr * rng.uniform(1.1, 1.4), 5)
    tilt = rng.uniform(-FACE_TILT, FACE_TILT)
    labels = labels.rotate(tilt, resample=Image.Resampling.NEAREST, center=(cx, cy))
    iris = iris.rotate(tilt, resample=Image.Resampling.NEAREST, center=(cx, cy))
    box = (pad, pad, pad + big, pad + big)
    labels_np = np.asarray(labels.crop(box))
    iris_np = (np.asarray(iris.crop(box)) > 0) & (labels_np == 3)
    return labels_np, iris_np, mouth


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


def render(attrs: dict[str, str], rng: random.Random, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Draw a face with these attributes: (image, seg, sketch, whether it has a mouth) at size x size."""
    big = size * SUPERSAMPLE
    labels, iris, mouth = _draw_layout(attrs, rng, big)
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
    return image, seg, sketch_from_labels(seg), mouth


# Words people use for each attribute value (the first is the canonical one). Captions mix them,
# so the text expert reads "blond", "ginger" or "a blue background" as the world's values.
SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "hair_colour": {"black": ("black", "jet-black", "raven", "dark black"),
                    "brown": ("brown", "chestnut", "brunette", "dark brown"),
                    "blonde": ("blonde", "blond", "golden", "yellow", "fair"),
                    "red": ("red", "ginger", "auburn", "copper", "orange-red"),
                    "grey": ("grey", "gray", "silver", "white"),
                    "blue": ("blue", "navy", "dyed blue", "bright blue")},
    "hair_style": {"short": ("short", "cropped", "short-cut", "neat short"),
                   "long": ("long", "flowing", "shoulder-length", "long straight"),
                   "curly": ("curly", "wavy", "frizzy", "curled")},
    "eye_colour": {"blue": ("blue", "light blue", "icy blue"), "green": ("green", "emerald", "jade"),
                   "brown": ("brown", "hazel", "dark brown", "chocolate"), "purple": ("purple", "violet", "lilac")},
    "skin_tone": {"pale": ("pale", "fair", "light", "porcelain"), "tan": ("tan", "tanned", "olive", "golden-brown"),
                  "brown": ("brown", "medium brown", "caramel"), "dark": ("dark", "deep brown", "ebony", "very dark")},
    "expression": {"smiling": ("smiling", "happy", "cheerful", "grinning", "joyful"),
                   "neutral": ("serious", "neutral", "calm", "straight-faced", "expressionless"),
                   "surprised": ("surprised", "astonished", "open-mouthed", "shocked", "amazed")},
    "background": {"white": ("white", "plain white", "snow-white"), "yellow": ("yellow", "lemon", "bright yellow"),
                   "pink": ("pink", "rose", "light pink"), "sky blue": ("sky blue", "blue", "light blue", "sky-blue"),
                   "green": ("green", "lime", "grass-green"), "orange": ("orange", "tangerine", "amber")},
}
BALD_WORDS = ("a bald head", "no hair", "a shaved head", "a bald scalp")
GLASSES_WORDS = (("no glasses", "no spectacles", "bare eyes"), ("glasses", "round glasses", "spectacles", "specs"))
BEARD_WORDS = (("no beard", "a clean-shaven chin", "a smooth chin"), ("a beard", "a full beard", "a bushy beard"))
# Things people mention that this world does not draw: captions carry them as noise.
UNKNOWN_DETAILS = ("freckles", "earrings", "a scarf", "a big nose", "rosy cheeks", "a hat", "a necklace",
                   "a tie", "dimples", "a mole")
_NOUNS = ("person", "face", "character", "cartoon person", "portrait", "man", "woman", "kid", "guy", "lady")


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def caption_for(attrs: dict[str, str], rng: random.Random, mention_p: float = 0.85,
                unsaid: tuple[str, ...] = ()) -> tuple[str, tuple[str, ...]]:
    """A caption in varied wording (synonyms, sentence shapes, details the world does not draw)
    that mentions a random subset of the attributes, none of those in `unsaid`."""
    mentioned = [a for a in ATTRIBUTES if a not in unsaid and rng.random() < mention_p]
    word = {a: rng.choice(SYNONYMS[a][attrs[a]]) for a in SYNONYMS if attrs[a] in SYNONYMS[a]}
    feats = []
    if "hair_style" in mentioned and attrs["hair_style"] == "bald":
        feats.append(rng.choice(BALD_WORDS))
        if "hair_colour" in mentioned:
            mentioned.remove("hair_colour")
    else:
        words = [word[a] for a in ("hair_style", "hair_colour") if a in mentioned]
        if words:
            feats.append(f"{' '.join(words)} hair")
    if "eye_colour" in mentioned:
        feats.append(rng.choice(["{} eyes", "{} eyes", "eyes that are {}"]).format(word["eye_colour"]))
    if "skin_tone" in mentioned:
        feats.append(rng.choice(["{} skin", "a {} complexion"]).format(word["skin_tone"]))
    if "glasses" in mentioned:
        feats.append(rng.choice(GLASSES_WORDS[attrs["glasses"] == "yes"]))
    if "beard" in mentioned:
        feats.append(rng.choice(BEARD_WORDS[attrs["beard"] == "yes"]))
    if rng.random() < 0.25:
        feats.append(rng.choice(UNKNOWN_DETAILS))
    rng.shuffle(feats)
    subject = rng.choice(_NOUNS)
    if "expression" in mentioned:
        subject = word["expression"] + " " + subject
    article = "an" if subject[0] in "aeiou" else "a"
    background = ""
    if "background" in mentioned:
        background = rng.choice(["on a {} background", "in front of a {} wall", "{} background",
                                 "against a {} backdrop"]).format(word["background"])
    shape = rng.random()
    if shape < 0.55 or not feats:
        text = f"{article} {subject}" + (" with " + _join(feats) if feats else "")
        text += (" " if background and not background[0].isalpha() or background.startswith(("on", "in", "against"))
                 else ", ") + background if background else ""
    elif shape < 0.75:
        text = f"{article} {subject} who has {_join(feats)}" + (f", {background}" if background else "")
    elif shape < 0.9:
        text = ", ".join(feats + ([background] if background else [])) + f", {subject}"
    else:
        text = f"this {subject} has {_join(feats)}." + (f" {background}." if background else "")
    if rng.random() < 0.3:
        text = rng.choice(["cartoon of ", "drawing of ", "picture of ", "a sketch of ", "portrait: "]) + text
    text = re.sub(r"\ba ([aeiou])", r"an \1", text)
    if rng.random() < 0.2:
        text = text[0].upper() + text[1:]
    return text, tuple(mentioned)


def make_face(seed: int, size: int = 32) -> Face:
    """The face for this seed: identical for the same (seed, size) on every machine."""
    if size % 8:
        raise ValueError(f"face size must be a multiple of 8, got {size}")
    rng = random.Random(seed)
    attrs = sample_attributes(rng)
    image, seg, sketch, mouth = render(attrs, rng, size)
    # A face drawn without a mouth shows no expression: its caption does not name one.
    caption, mentioned = caption_for(attrs, rng, unsaid=() if mouth else ("expression",))
    return Face(seed=seed, image=image, seg=seg, sketch=sketch, caption=caption, attributes=attrs,
                mentioned=mentioned)


def make_face_like(described: Face, seed: int, size: int = 32) -> Face:
    """Another face that `described`'s caption fits: its attributes, this seed's drawing (layout, shapes),
    its caption. A caption that names the expression needs a mouth: seeds are tried upwards until one
    draws it. Training a caption reader this way sees new images for every caption it has."""
    if size % 8:
        raise ValueError(f"face size must be a multiple of 8, got {size}")
    while True:
        rng = random.Random(seed)
        sample_attributes(rng)  # the same draws as make_face's before the drawing: the layouts follow its law
        image, seg, sketch, mouth = render(described.attributes, rng, size)
        if mouth or "expression" not in described.mentioned:
            return Face(seed=seed, image=image, seg=seg, sketch=sketch, caption=described.caption,
                        attributes=described.attributes, mentioned=described.mentioned)
        seed += 1
