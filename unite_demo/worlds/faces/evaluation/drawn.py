"""The "drawn" held-out set: conditions made the way a visitor makes them in the page, by a procedure
written only for evaluation and never used in training.

A face is painted on the page's 256 px canvases with OpenCV (ellipses filled by round-brush dabs,
polylines, thick wobbly strokes) at proportions and positions of its own, then read to 32 px by the
page's own readers (conditions.seg_from_image, sketch_from_image). Captions use sentence shapes and
words the generator's templates never use. Nothing here draws on faces.py's layout code.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from unite_demo.worlds.conditions import seg_from_image, sketch_from_image
from unite_demo.worlds.faces.data import ATTRIBUTES, FACES_PALETTE, PALETTE_RGB, Case

DRAWN_SEED = 20_231_101  # the set's own seed space: cases are (DRAWN_SEED, k), no faces.SPLITS seed
CANVAS = 256  # the page's canvas side
DRAWN_N = 200


@dataclass(kw_only=True)
class DrawnCase(Case):
    """One hand-made input: seg and sketch as the experts receive them (read from the painted canvases
    by the page's readers), and the sketch's centre lines (edges, one pixel) that the output's edges
    are scored against."""

    edges: np.ndarray
    seg_canvas: np.ndarray | None = None  # (256,256,3) the painted map, palette colours
    sketch_canvas: np.ndarray | None = None  # (256,256,3) dark strokes on white


class _Pen:
    """Local face coordinates (x right, y down, units of the face's half-width) -> canvas pixels."""

    def __init__(self, cx: float, cy: float, a: float, angle_deg: float):
        self.cx, self.cy, self.a = cx, cy, a
        t = np.deg2rad(angle_deg)
        self.rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        self.angle = angle_deg

    def pts(self, local: np.ndarray) -> np.ndarray:
        """(P,2) local points -> (P,2) float canvas points."""
        return (np.asarray(local, dtype=np.float64) * self.a) @ self.rot.T + (self.cx, self.cy)

    def ellipse(self, x: float, y: float, rx: float, ry: float, start: float = 0, end: float = 360,
                n: int = 48) -> np.ndarray:
        """Canvas points along an ellipse arc given in local units (degrees, y down)."""
        t = np.deg2rad(np.linspace(start, end, n))
        return self.pts(np.stack([x + rx * np.cos(t), y + ry * np.sin(t)], 1))


def _wobble(points: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Low-frequency hand tremor along a curve: two random sinusoids per axis."""
    s = np.linspace(0, 1, len(points))[:, None]
    out = points.copy()
    for _ in range(2):
        freq, phase = rng.uniform(1, 4, 2), rng.uniform(0, 2 * np.pi, 2)
        out += amount * rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * freq * s + phase)
    return out


def _dab_fill(canvas: np.ndarray, outline: np.ndarray, colour, brush: float, rng: np.random.Generator) -> None:
    """Fill a closed outline as a round brush does: the inside, then overlapping dabs of jittered
    size along the edge (rounded, uneven borders)."""
    cv2.fillPoly(canvas, [np.round(outline).astype(np.int32)], colour)
    for p in outline[:: max(1, len(outline) // 24)]:
        r = max(2, int(brush * rng.uniform(0.35, 0.65)))
        q = p + rng.normal(0, brush * 0.2, 2)
        cv2.circle(canvas, (int(q[0]), int(q[1])), r, colour, -1)


def _stroke(canvas: np.ndarray, points: np.ndarray, width: int, colour, rng: np.random.Generator,
            gaps: float = 0.0) -> None:
    """A polyline with round ends; some pieces lifted (gaps)."""
    pts = np.round(points).astype(np.int32)
    for i in range(len(pts) - 1):
        if rng.random() < gaps:
            continue
        cv2.line(canvas, tuple(int(v) for v in pts[i]), tuple(int(v) for v in pts[i + 1]), colour, width, cv2.LINE_AA)


# Caption words: near words of each value, partly ones the generator's captions never use.
_WORDS = {
    "hair_colour": {"black": ("black", "coal-black", "inky"), "brown": ("brown", "mocha", "nut-brown"),
                    "blonde": ("blond", "platinum", "sandy blond"), "red": ("red", "ginger", "crimson"),
                    "grey": ("grey", "silvery", "ash-grey"), "blue": ("blue", "cobalt", "electric blue")},
    "hair_style": {"short": ("short", "buzzed short", "trimmed"), "long": ("long", "very long", "waist-long"),
                   "curly": ("curly", "coiled", "springy curly")},
    "eye_colour": {"blue": ("blue", "sapphire", "ocean blue"), "green": ("green", "olive green", "mint"),
                   "brown": ("brown", "amber brown", "coffee"), "purple": ("purple", "plum", "mauve")},
    "skin_tone": {"pale": ("pale", "milky", "very light"), "tan": ("tan", "sun-tanned", "bronzed"),
                  "brown": ("brown", "cinnamon", "medium"), "dark": ("dark", "dark brown", "espresso")},
    "expression": {"smiling": ("smiling", "beaming", "all smiles"), "neutral": ("serious", "stern", "blank-faced"),
                   "surprised": ("surprised", "startled", "gasping")},
    "background": {"white": ("white", "off-white", "blank white"), "yellow": ("yellow", "sunflower", "mustard"),
                   "pink": ("pink", "bubblegum pink", "salmon"), "sky blue": ("blue", "baby blue", "azure"),
                   "green": ("green", "mint green", "leafy green"), "orange": ("orange", "pumpkin", "peach")},
}
_EXTRAS = ("big ears", "a headband", "a pierced ear", "a long neck", "thick eyelashes", "a bow tie")


def _caption(attrs: dict[str, str], rng: np.random.Generator) -> tuple[str, tuple[str, ...]]:
    """Captions as visitors type them: lists, requests, fragments, in words of _WORDS."""
    names = [a for a in ATTRIBUTES if rng.random() < 0.7]
    if attrs["hair_style"] == "bald" and "hair_colour" in names:
        names.remove("hair_colour")
    if len(names) < 2:
        names = ["hair_colour", "background"] if attrs["hair_style"] != "bald" else ["hair_style", "background"]
    w = {a: str(rng.choice(_WORDS[a][attrs[a]])) for a in _WORDS if a in names and attrs[a] in _WORDS[a]}
    bits = []
    if "hair_style" in names and attrs["hair_style"] == "bald":
        bits.append(str(rng.choice(["bald", "no hair at all", "hairless head"])))
    elif "hair_colour" in names or "hair_style" in names:
        bits.append(" ".join(w[a] for a in ("hair_style", "hair_colour") if a in w) + " hair")
    if "eye_colour" in names:
        bits.append(f"{w['eye_colour']} eyes")
    if "skin_tone" in names:
        bits.append(f"{w['skin_tone']} skin")
    if "glasses" in names:
        bits.append("wearing glasses" if attrs["glasses"] == "yes" else "without glasses")
    if "beard" in names:
        bits.append("bearded" if attrs["beard"] == "yes" else "beardless")
    if "expression" in names:
        bits.append(w["expression"])
    if rng.random() < 0.3:
        bits.append(str(rng.choice(_EXTRAS)))
    order = rng.permutation(len(bits))
    bits = [bits[i] for i in order]
    bg = w.get("background")
    shape = rng.integers(4)
    if shape == 0:
        text = "; ".join(bits) + (f"; backdrop {bg}" if bg else "")
    elif shape == 1:
        text = "make me someone " + ", ".join(bits) + (f", set against {bg}" if bg else "")
    elif shape == 2:
        text = "Portrait - " + " / ".join(bits) + (f" - {bg} behind" if bg else "")
    else:
        text = "i want " + " + ".join(bits) + (f" with the background in {bg}" if bg else "")
    return text, tuple(names)


def _png(rgb: np.ndarray) -> io.BytesIO:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    buf.seek(0)
    return buf


def drawn_case(k: int, size: int = 32) -> DrawnCase:
    """Case k of the drawn set: identical on every machine."""
    rng = np.random.default_rng([DRAWN_SEED, k])
    attrs = {a: str(rng.choice(v)) for a, v in ATTRIBUTES.items()}
    attrs["glasses"] = "yes" if rng.random() < 0.3 else "no"
    attrs["beard"] = "yes" if rng.random() < 0.25 else "no"
    a = rng.uniform(38, 100)  # half-width of the face, canvas px (the page's examples: about 76)
    b = rng.uniform(1.1, 1.4)  # half-height / half-width, local units
    cx, cy = rng.uniform(0.28, 0.72, 2) * CANVAS
    pen = _Pen(cx, cy, a, rng.uniform(-15, 15))
    brush = rng.uniform(10, 22)
    colour = {k: tuple(int(c) for c in PALETTE_RGB[k]) for k in range(len(PALETTE_RGB))}
    seg = np.zeros((CANVAS, CANVAS, 3), np.uint8)  # a blank map: background everywhere
    style = attrs["hair_style"]
    hair_outline = None
    if style == "long":
        hair_outline = np.concatenate([pen.pts([[-1.2, b * rng.uniform(0.8, 1.5)]]), pen.ellipse(0, -0.15 * b, 1.2, b * 0.95, 180, 360),
                                       pen.pts([[1.2, b * rng.uniform(0.8, 1.5)]])])
    elif style == "short":
        hair_outline = pen.ellipse(0, -0.2 * b, 1.1, b * 0.95, 180, 360)
    elif style == "curly":
        for t in np.linspace(160, 380, 9):
            p = pen.pts([[1.05 * np.cos(np.deg2rad(t)), -0.2 * b + 0.95 * b * np.sin(np.deg2rad(t))]])[0]
            cv2.circle(seg, (int(p[0]), int(p[1])), int(a * rng.uniform(0.28, 0.4)), colour[2], -1)
    if hair_outline is not None:
        _dab_fill(seg, hair_outline, colour[2], brush, rng)
    face = _wobble(pen.ellipse(0, 0, 1.0, b), brush * 0.2, rng)
    _dab_fill(seg, face, colour[1], brush, rng)
    if style in ("short", "long"):
        _dab_fill(seg, pen.ellipse(0, -0.45 * b, 0.95, b * 0.5, 190, 350), colour[2], brush * 0.6, rng)
    if attrs["beard"] == "yes":
        _dab_fill(seg, pen.ellipse(0, 0.25 * b, 0.98, b * 0.72, 10, 170), colour[7], brush * 0.6, rng)
    eye_x, eye_y = rng.uniform(0.32, 0.5), rng.uniform(-0.2, 0.05) * b
    eye_r = rng.uniform(0.13, 0.22)
    eyes = [pen.ellipse(sx * eye_x, eye_y, eye_r * 1.2, eye_r, n=24) for sx in (-1, 1)]
    for e in eyes:
        cv2.fillPoly(seg, [np.round(e).astype(np.int32)], colour[3])
    brow_w = int(max(6, a * rng.uniform(0.08, 0.14)))
    brows = [pen.pts([[sx * eye_x - 0.22, eye_y - eye_r - 0.2], [sx * eye_x, eye_y - eye_r - 0.28],
                      [sx * eye_x + 0.22, eye_y - eye_r - 0.2]]) for sx in (-1, 1)] if rng.random() < 0.75 else []
    for br in brows:
        _stroke(seg, br, brow_w, colour[4], rng)
    glasses = []
    if attrs["glasses"] == "yes":
        glasses = [pen.ellipse(sx * eye_x, eye_y, eye_r * 1.9, eye_r * 1.7, n=32) for sx in (-1, 1)]
        glasses.append(pen.pts([[-eye_x + eye_r * 1.9, eye_y], [eye_x - eye_r * 1.9, eye_y]]))
        for g in glasses:
            _stroke(seg, g, int(max(5, a * 0.07)), colour[6], rng)
    mouth_y = rng.uniform(0.45, 0.65) * b
    if attrs["expression"] == "smiling":
        mouth = pen.ellipse(0, mouth_y - 0.15, rng.uniform(0.3, 0.45), 0.2, 20, 160, n=16)
    elif attrs["expression"] == "neutral":
        mouth = pen.pts([[-rng.uniform(0.2, 0.35), mouth_y], [rng.uniform(0.2, 0.35), mouth_y]])
    else:
        mouth = pen.ellipse(0, mouth_y, 0.14, 0.18, n=20)
    if attrs["expression"] == "surprised":
        cv2.fillPoly(seg, [np.round(mouth).astype(np.int32)], colour[5])
    else:
        _stroke(seg, mouth, int(max(6, a * rng.uniform(0.1, 0.16))), colour[5], rng)

    # The sketch: some outlines of the same face, thick, wobbly, with gaps; dark on white paper.
    closed = [face] + (eyes if rng.random() < 0.9 else [])
    closed += glasses[:2] if glasses and rng.random() < 0.8 else []
    opened = [hair_outline] if hair_outline is not None and rng.random() < 0.6 else []
    opened += brows if rng.random() < 0.5 else []
    if rng.random() < 0.85:
        (closed if attrs["expression"] == "surprised" else opened).append(mouth)
    width = int(rng.uniform(6, 20))  # 0.75-2.5 px at 32
    paper = np.full((CANVAS, CANVAS, 3), 255, np.uint8)
    scale = size / CANVAS
    edges = np.zeros((size, size), np.uint8)
    for c in closed + opened:
        c = _wobble(c, rng.uniform(1, 4), rng)
        _stroke(paper, c, width, (30, 30, 30), rng, gaps=0.1)
        cv2.polylines(edges, [np.round(c * scale).astype(np.int32)], False, 255, 1)
    seg_ids = seg_from_image(_png(seg), size, palette=FACES_PALETTE)
    strokes = sketch_from_image(_png(paper), size)
    caption, mentioned = _caption(attrs, rng)
    return DrawnCase(seed=k, seg=seg_ids, sketch=strokes, edges=edges, caption=caption, attributes=attrs,
                     mentioned=mentioned, seg_canvas=seg, sketch_canvas=paper)


def drawn_set(n: int = DRAWN_N, size: int = 32) -> list[DrawnCase]:
    """The first n cases of the drawn set."""
    return [drawn_case(k, size) for k in range(n)]
