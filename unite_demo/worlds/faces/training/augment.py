"""Conditions as people make them: training-time augmentation of each expert's own condition (never
of the image). A painted map has brush edges, holes, spills and regions painted as blobs; a drawn
sketch has strokes 1-3 px wide at 32 px, wobble, gaps, stray marks and only some outlines.

Both work at SCALE x the map's size with OpenCV and come back to the map's size, seeded by a
numpy Generator so a training batch is the same on every run.
"""

from __future__ import annotations

import cv2
import numpy as np

from unite_demo.worlds.faces.data import NUM_CLASSES, _downsample_labels

SCALE = 4
P_EXACT_SEG = 0.25  # rows that keep the generator's exact map
P_EXACT_SKETCH = 0.2  # rows that keep the exact one-pixel outline
STROKE_WIDTHS = (1.0, 1.5, 2.0, 2.0, 2.5, 3.0)  # px at 32 px, drawn at random; the canvas brush gives about 2
# Outline groups a person may leave out of a sketch, with the chance of leaving each out.
SKETCH_SKIP = {2: 0.35, 4: 0.3, 5: 0.1, 6: 0.15, 7: 0.2, 3: 0.05}


def _smooth_field(shape: tuple[int, int], amplitude: float, cells: int, rng: np.random.Generator) -> np.ndarray:
    """(H,W) random displacement, smooth over about H/cells pixels, within +-amplitude."""
    coarse = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    return cv2.resize(coarse, shape[::-1], interpolation=cv2.INTER_CUBIC) * amplitude


def _warp(labels: np.ndarray, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """Move every pixel by a smooth random field: wobbly, hand-made edges."""
    h, w = labels.shape
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = (_smooth_field((h, w), amplitude, rng.integers(4, 9), rng) for _ in range(2))
    return cv2.remap(labels, gx + dx, gy + dy, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def rough_seg(seg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A segmentation map (H,W class ids) as a person paints it with a round brush."""
    if rng.random() < P_EXACT_SEG:
        return seg
    h, w = seg.shape
    big = cv2.resize(seg, (w * SCALE, h * SCALE), interpolation=cv2.INTER_NEAREST)
    out = big.copy()
    for k in rng.permutation(np.arange(1, NUM_CLASSES)):
        mask = (big == k).astype(np.uint8)
        if not mask.any():
            continue
        if rng.random() < 0.3 and k in (3, 5, 7, 4):
            # Painted as ellipses or blobs: each part replaced by the ellipse that fits it.
            n, comp = cv2.connectedComponents(mask)
            mask = np.zeros_like(mask)
            for c in range(1, n):
                pts = np.argwhere(comp == c)[:, ::-1].astype(np.float32)
                if len(pts) >= 5:
                    (ex, ey), (ew, eh), ang = cv2.fitEllipse(pts)
                    cv2.ellipse(mask, ((ex, ey), (ew * rng.uniform(0.9, 1.3), eh * rng.uniform(0.9, 1.3)), ang), 1, -1)
                else:
                    mask[comp == c] = 1
        grow = int(rng.choice([-1, 0, 0, 1, 1, 2]) * SCALE * rng.uniform(0.5, 1.0))
        if grow > 0:
            mask = cv2.dilate(mask, _disc(grow))
        elif grow < 0 and k not in (3, 4, 5, 6):  # thin parts would vanish
            mask = cv2.erode(mask, _disc(-grow))
        out[(big == k) & (mask == 0)] = 0 if k in (1, 2) else 1  # unpainted skin or hair: background
        out[mask > 0] = k
    # Rounded brush corners, then wobble.
    out = _warp(out, rng.uniform(1.0, 2.5) * SCALE / 2, rng)
    for _ in range(rng.integers(0, 4)):  # holes: spots left unpainted
        y, x = rng.integers(0, h * SCALE, 2)
        if out[y, x] in (1, 2):
            cv2.circle(out, (int(x), int(y)), int(rng.uniform(0.6, 1.5) * SCALE), 0 if out[y, x] == 2 else 1, -1)
    for _ in range(rng.integers(0, 3)):  # spills: a dab of a class over its neighbour
        ys, xs = np.nonzero(out > 0)
        if len(ys):
            i = rng.integers(len(ys))
            cv2.circle(out, (int(xs[i] + rng.integers(-SCALE, SCALE + 1)), int(ys[i] + rng.integers(-SCALE, SCALE + 1))),
                       int(rng.uniform(0.5, 1.3) * SCALE), int(out[ys[i], xs[i]]), -1)
    return _downsample_labels(out, h)


def drawn_sketch(seg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The outlines of a map's regions (H,W class ids) as a person sketches them: free curves of
    1-3 px, wobbling, with gaps, some outlines left out and a few stray marks. 255 = stroke."""
    from unite_demo.worlds.faces.data import sketch_from_labels

    if rng.random() < P_EXACT_SKETCH:
        return sketch_from_labels(seg)
    h, w = seg.shape
    big = cv2.resize(seg, (w * SCALE, h * SCALE), interpolation=cv2.INTER_NEAREST)
    dx, dy = (_smooth_field(big.shape, rng.uniform(0.5, 2.0) * SCALE / 2, rng.integers(3, 8), rng) for _ in range(2))
    # People draw thinner strokes on a small face: at most a fifth of its radius.
    radius = np.sqrt((seg > 0).sum() / np.pi)
    width = min(float(rng.choice(STROKE_WIDTHS)), max(1.0, radius / 5))
    thickness = max(1, round(width * SCALE) - 1)
    canvas = np.zeros(big.shape, np.uint8)
    only_face = rng.random() < 0.2  # face and eyes, nothing else
    for k in range(1, NUM_CLASSES):
        if only_face and k not in (1, 3):
            continue
        if rng.random() < SKETCH_SKIP.get(k, 0.0):
            continue
        mask = (big == k).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        for c in contours:
            if len(c) < 4:
                continue
            c = cv2.approxPolyDP(c, SCALE * rng.uniform(0.3, 0.8), True)[:, 0].astype(np.float32)  # (P, 2)
            # Same field for every contour: shared edges stay one line.
            xi = np.clip(c[:, 0].astype(int), 0, big.shape[1] - 1)
            yi = np.clip(c[:, 1].astype(int), 0, big.shape[0] - 1)
            c = c + np.stack([dx[yi, xi], dy[yi, xi]], 1)
            # Frame edges are not outlines people draw.
            inside = (c[:, 0] > 1) & (c[:, 0] < big.shape[1] - 2) & (c[:, 1] > 1) & (c[:, 1] < big.shape[0] - 2)
            n = len(c)
            for i in range(n):
                a, b = c[i], c[(i + 1) % n]
                if not (inside[i] and inside[(i + 1) % n]) or rng.random() < 0.08:  # a gap
                    continue
                cv2.line(canvas, tuple(int(v) for v in a), tuple(int(v) for v in b), 255, thickness, cv2.LINE_AA)
    for _ in range(rng.binomial(3, 0.2)):  # stray marks
        a = rng.integers(0, big.shape[0], 2)
        b = a + rng.integers(-3 * SCALE, 3 * SCALE + 1, 2)
        cv2.line(canvas, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 255, thickness, cv2.LINE_AA)
    small = cv2.resize(canvas.astype(np.float32) / 255.0, (w, h), interpolation=cv2.INTER_AREA)
    return np.where(small > 0.45, 255, 0).astype(np.uint8)


def render_faces(modalities: tuple[str, ...], seeds, size: int, rng: np.random.Generator, augment: bool = True,
                 like=None) -> list:
    """The faces of these seeds as a network reading `modalities` trains on them: its own conditions
    as people make them (rough_seg / drawn_sketch), the others exactly as generated. like: seeds whose
    captions the faces are drawn for instead (faces.make_face_like), one per seed."""
    from dataclasses import replace

    from unite_demo.worlds.faces.data import make_face, make_face_like

    if like is None:
        faces = [make_face(int(s), size) for s in seeds]
    else:
        faces = [make_face_like(make_face(int(c), 8), int(s), size) for s, c in zip(seeds, like)]
    if not augment:
        return faces
    return [replace(f, seg=rough_seg(f.seg, rng) if "seg" in modalities else f.seg,
                    sketch=drawn_sketch(f.seg, rng) if "sketch" in modalities else f.sketch) for f in faces]


def render_arrays(modalities: tuple[str, ...], seeds, size: int, seed: int, like=None) -> dict[str, np.ndarray]:
    """render_faces as uint8 arrays, for a worker process: image (N,H,W,3), and the network's own
    spatial conditions seg (N,H,W) class ids and sketch (N,H,W) 255 = stroke."""
    faces = render_faces(modalities, seeds, size, np.random.default_rng(seed), like=like)
    out = {"image": np.stack([f.image for f in faces])}
    for name in ("seg", "sketch"):
        if name in modalities:
            out[name] = np.stack([getattr(f, name) for f in faces])
    return out
