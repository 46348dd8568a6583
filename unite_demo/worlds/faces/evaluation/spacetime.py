"""Reliability painted in space and time, measured on the drawn set: for a few named cases, the best
uniform reliabilities of a small grid against a reliability map (or a step window) made from the
case's own inputs, on the same cases and seeds, with the same score.

    python -m unite_demo.evaluate_spacetime                      # every case, seeds 0 1 2
    python -m unite_demo.evaluate_spacetime --cases windows --n 200 --choose-n 40 --finalists 2 \\
        --stem spacetime.windows --figure ''            # the step windows alone, 200 measured cases
    python -m unite_demo.evaluate_spacetime --n 2 --seeds 0 --cases two_faces

Each case takes drawn cases (drawn.drawn_case) and makes the inputs of a situation where the inputs do
not cover the same ground (a seg map or a sketch of the face only beside a caption naming the hair
colour; a seg map and a sketch of two different faces) or takes all three inputs of one face (step
windows). Uniform: every point of GRID for the case's two competing modalities (the others at the
world's defaults). Painted: every point of the smaller PAINTED_GRID with the variant's maps or windows
added. Choose, then measure: each side's FINALISTS best points by the case's own score on choose_n
drawn cases (first seed) are measured on n other drawn cases (from MEASURE_FROM on) with every seed,
and each side's result is its best finalist there. A variant beats uniform when its mean score over the
seeds exceeds the best uniform's by more than the sum of their seed spreads (evaluate.spread), as
evaluate.claim judges a margin. Every setting starts case i from the same noise.
Writes spacetime.json and spacetime.md to --out and the figure to --figure.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import torch

from unite_demo import ROOT
from unite_demo.method.combine import ProductOfExperts, ProductStrip
from unite_demo.method.sampler import heard_steps, sample
from unite_demo.worlds.conditions import Labels, to_uint8
from unite_demo.worlds.faces.conditions import face_conditions
from unite_demo.worlds.faces.data import CLASS_NAMES, PALETTE_RGB
from unite_demo.worlds.faces.evaluation import metric_nets
from unite_demo.worlds.faces.evaluation.drawn import DrawnCase, drawn_case
from unite_demo.worlds.faces.evaluation.evaluate import Judge, hardware, summarise
from unite_demo.worlds.faces.evaluation.metrics import edge_f1, image_edges, miou
from unite_demo.worlds.faces.world import FACES_DIR, load_faces_world
from unite_demo.worlds.world import World

GRID = (0.5, 1.0, 1.5, 2.0, 3.0)  # each competing modality's r, uniform settings
PAINTED_GRID = (1.0, 2.0, 3.0)  # the same, painted settings: fewer points than uniform's
DEFAULT_SEEDS = (0, 1, 2)
BACKGROUND, HAIR = CLASS_NAMES.index("background"), CLASS_NAMES.index("hair")
FIGURE_ROWS = 2  # example rows of each case in the figure
FINALISTS = 3  # the best points of each side on the choosing cases, measured on the others
MEASURE_FROM = 200  # the measured cases are drawn cases from here on: not the main evaluation's drawn table
# (cases 0..199), nor those the cases' maps and windows were designed on


# ---------------------------------------------------------------------------------------------
# Regions and maps made from a case's own inputs.

def dilate(mask: np.ndarray, px: int) -> np.ndarray:
    """(S,S) bool grown by px pixels (a (2px+1) square)."""
    if px <= 0:
        return mask.astype(bool)
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)) > 0


def face_region(seg: np.ndarray) -> np.ndarray:
    """(S,S) class ids -> bool: the face, every class but background and hair."""
    return (seg != BACKGROUND) & (seg != HAIR)


def stroke_hull(strokes: np.ndarray) -> np.ndarray:
    """(S,S) uint8 strokes (255) -> bool: the filled convex hull of the stroke pixels (where the sketch draws)."""
    pts = np.argwhere(strokes > 127)[:, ::-1].astype(np.int32)  # (P, 2) x, y
    hull = np.zeros(strokes.shape, np.uint8)
    if len(pts):
        cv2.fillConvexPoly(hull, cv2.convexHull(pts), 1)
    return hull > 0


def soft_map(region: np.ndarray, grow: int = 0, blur: float = 0.0) -> np.ndarray:
    """A region (S,S) bool -> a reliability map (S,S) float32 in [0, 1]: grown by `grow` px, then (blur > 0)
    a Gaussian of that sigma, so it falls from 1 inside to 0 outside over a few pixels."""
    m = dilate(region, grow).astype(np.float32)
    if blur > 0:
        m = cv2.GaussianBlur(m, (0, 0), blur)
        m = np.where(dilate(region, grow), 1.0, m)  # the region itself stays fully heard
    return np.clip(m, 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# The cases.

@dataclass
class Prepared:
    """One case's N inputs: `cases` are what each row is scored against (seg, edges, attributes and the
    attributes its caption mentions: what its inputs ask for), `inputs` its inputs as World.request reads
    them, `regions` the (N,S,S) bool regions the score is measured in, `maps` per painted variant and
    row the {modality: (S,S) map}."""

    cases: list[DrawnCase]
    inputs: list[dict]
    regions: dict[str, np.ndarray] = field(default_factory=dict)
    maps: dict[str, list[dict[str, np.ndarray]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Variant:
    """A painted setting: the maps Prepared.maps[key] holds for it (if any) and step windows."""

    key: str
    label: str
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    """A named case: which drawn cases and inputs (prepare), the two modalities whose r the grids vary
    (the others at the world's defaults), the score (images -> its components and 'score'), the painted
    variants and the default number of cases."""

    key: str
    title: str
    story: str
    modalities: tuple[str, ...]
    axes: tuple[str, str]
    score_label: str
    prepare: Callable[[int, int, int], Prepared]  # (n, size, first drawn case) -> the inputs
    score: Callable[[Judge, np.ndarray, Prepared], dict[str, float]]
    variants: tuple[Variant, ...]
    n: int  # cases measured
    choose_n: int  # cases the grid points are chosen on


_POOL: dict[tuple[int, int], DrawnCase] = {}


def _drawn(k: int, size: int) -> DrawnCase:
    if (k, size) not in _POOL:
        _POOL[(k, size)] = drawn_case(k, size)
    return _POOL[(k, size)]


def _hair_cases(n: int, size: int, start: int) -> list[DrawnCase]:
    """The first n drawn cases from `start` on with hair whose caption names its colour."""
    out, k = [], start
    while len(out) < n:
        c = _drawn(k, size)
        if c.attributes["hair_style"] != "bald" and "hair_colour" in c.mentioned:
            out.append(c)
        k += 1
    return out


def prepare_face_sketch(n: int, size: int, start: int = 0) -> Prepared:
    """The drawn sketch kept only on the face (strokes within 1 px of the seg map's face region: the
    hair outline goes) and the caption, which names the hair colour. Map: the sketch heard in its
    strokes' convex hull, grown 1 px, blurred 1 px beyond."""
    cases, inputs, hulls, maps = [], [], [], []
    for c in _hair_cases(n, size, start):
        keep = dilate(face_region(c.seg), 1)
        sketch = np.where(keep, c.sketch, 0).astype(np.uint8)
        edges = np.where(keep, c.edges, 0).astype(np.uint8)
        hull = dilate(stroke_hull(sketch), 1)
        cases.append(replace(c, sketch=sketch, edges=edges))
        inputs.append({"sketch": sketch, "text": c.caption})
        hulls.append(hull)
        maps.append({"sketch": soft_map(hull, 0, 1.0)})
    return Prepared(cases, inputs, {"sketch": np.stack(hulls)}, {"sketch_hull": maps})


def prepare_face_map(n: int, size: int, start: int = 0) -> Prepared:
    """The drawn seg map with its hair left unpainted (hair -> background, as a visitor who paints only
    the face leaves it) and the caption, which names the hair colour. Map: the seg map heard where it is
    painted (its non-background pixels grown 1 px, blurred 1 px beyond)."""
    cases, inputs, painted, maps = [], [], [], []
    for c in _hair_cases(n, size, start):
        seg = np.where(c.seg == HAIR, BACKGROUND, c.seg).astype(np.uint8)
        area = dilate(seg != BACKGROUND, 1)
        cases.append(replace(c, seg=seg))
        inputs.append({"seg": Labels(seg), "text": c.caption})
        painted.append(area)
        maps.append({"seg": soft_map(area, 0, 1.0)})
    return Prepared(cases, inputs, {"seg": np.stack(painted)}, {"seg_painted": maps})


def prepare_two_faces(n: int, size: int, start: int = 0) -> Prepared:
    """The seg map of drawn case start+2j and the sketch of case start+2j+1: two faces that disagree
    where they overlap. Maps: the sketch heard in its strokes' convex hull (grown 1 px, blurred 1 px beyond), the seg
    map outside it (1 - that)."""
    cases, inputs, seg_side, sketch_side, maps = [], [], [], [], []
    for j in range(n):
        a, b = _drawn(start + 2 * j, size), _drawn(start + 2 * j + 1, size)
        hull = dilate(stroke_hull(b.sketch), 1)
        cases.append(replace(a, sketch=b.sketch, edges=b.edges, caption="", mentioned=()))
        inputs.append({"seg": Labels(a.seg), "sketch": b.sketch})
        seg_side.append(~hull)
        sketch_side.append(hull)
        m = soft_map(hull, 0, 1.0)
        maps.append({"sketch": m, "seg": (1.0 - m).astype(np.float32)})
    return Prepared(cases, inputs, {"seg": np.stack(seg_side), "sketch": np.stack(sketch_side)}, {"split": maps})


def prepare_full(n: int, size: int, start: int = 0) -> Prepared:
    """All three inputs of n drawn cases from `start` on, as the main evaluation gives them."""
    cases = [_drawn(k, size) for k in range(start, start + n)]
    return Prepared(cases, [{"seg": Labels(c.seg), "sketch": c.sketch, "text": c.caption} for c in cases])


def _segmenter_miou(judge: Judge, images: np.ndarray, cases: list, regions: np.ndarray) -> np.ndarray:
    """Per image: metrics.miou of the segmenter's map and the case's seg map within the region."""
    seg = metric_nets.segment(judge.segmenter, images)
    return np.array([miou(p[r], c.seg[r]) for p, c, r in zip(seg, cases, regions)])


def _edge_f1(images: np.ndarray, cases: list, regions: np.ndarray) -> np.ndarray:
    """Per image: metrics.edge_f1 of the image's edges and the case's sketch centre lines within the region."""
    return np.array([edge_f1(image_edges(img) & r, (c.edges > 127) & r) for img, c, r in zip(images, cases, regions)])


def _text(judge: Judge, images: np.ndarray, cases: list) -> dict[str, float]:
    """Text accuracy over every attribute the captions name (evaluate.Judge's), and over hair colour alone."""
    scores = judge.score(images, cases)
    hair = scores.text_by_attribute()["hair_colour"]["text"]
    return {"text": scores.consistency()["text"], "hair_colour": hair if hair is not None else float("nan")}


def score_face_sketch(judge: Judge, images: np.ndarray, prep: Prepared) -> dict[str, float]:
    f1 = float(_edge_f1(images, prep.cases, prep.regions["sketch"]).mean())
    text = _text(judge, images, prep.cases)
    return {"sketch_f1_in_hull": f1, **text, "score": (f1 + text["text"]) / 2}


def score_face_map(judge: Judge, images: np.ndarray, prep: Prepared) -> dict[str, float]:
    m = float(_segmenter_miou(judge, images, prep.cases, prep.regions["seg"]).mean())
    text = _text(judge, images, prep.cases)
    return {"seg_miou_painted": m, **text, "score": (m + text["text"]) / 2}


def score_two_faces(judge: Judge, images: np.ndarray, prep: Prepared) -> dict[str, float]:
    m = float(_segmenter_miou(judge, images, prep.cases, prep.regions["seg"]).mean())
    f1 = float(_edge_f1(images, prep.cases, prep.regions["sketch"]).mean())
    return {"seg_miou_outside_hull": m, "sketch_f1_in_hull": f1, "score": (m + f1) / 2}


def score_full(judge: Judge, images: np.ndarray, prep: Prepared) -> dict[str, float]:
    c = judge.score(images, prep.cases).consistency()
    return {"seg": c["seg"], "sketch": c["sketch"], "text": c["text"], "score": c["mean"]}


SCENARIOS = {s.key: s for s in (
    Scenario("windows", "all three inputs of one face; one expert heard in part of the steps",
             "The drawn seg map, sketch and caption of the same face, as in the main evaluation.",
             ("seg", "sketch", "text"), ("seg", "text"), "mean of seg mIoU, sketch F1 and text accuracy",
             prepare_full, score_full,
             (Variant("text_early", "caption heard in the first 60% of the steps", windows={"text": (0.0, 0.6)}),
              Variant("sketch_early", "sketch heard in the first 60% of the steps", windows={"sketch": (0.0, 0.6)})),
             n=60, choose_n=20),
    Scenario("face_map", "a seg map of the face only (hair left unpainted); the caption names the hair colour",
             "The drawn seg map with its hair painted as background, and the drawn caption. Unpainted canvas "
             "reads as 'background here' to the seg expert, also where the caption's hair should go.",
             ("seg", "text"), ("seg", "text"),
             "mean of seg mIoU on the painted area (grown 1 px) and text accuracy",
             prepare_face_map, score_face_map,
             (Variant("seg_painted", "seg map heard where painted"),), n=36, choose_n=12),
    Scenario("face_sketch", "a sketch of the face only; the caption names the hair colour",
             "The drawn sketch with its hair outline removed (strokes within 1 px of the face), and the "
             "drawn caption. 'No stroke' may read as 'no edge' to the sketch expert, also where the hair should go.",
             ("sketch", "text"), ("sketch", "text"),
             "mean of sketch F1 inside the strokes' hull (grown 1 px) and text accuracy",
             prepare_face_sketch, score_face_sketch,
             (Variant("sketch_hull", "sketch heard in its strokes' hull"),), n=36, choose_n=12),
    Scenario("two_faces", "a seg map and a sketch of two different faces",
             "The seg map of one drawn case and the sketch of the next, which disagree where the faces overlap; "
             "wanted: the sketch's face inside its outline, the seg map's layout elsewhere.",
             ("seg", "sketch"), ("seg", "sketch"),
             "mean of seg mIoU outside the sketch's hull (grown 1 px) and sketch F1 inside it",
             prepare_two_faces, score_two_faces,
             (Variant("split", "sketch heard in its hull, seg map outside it"),), n=36, choose_n=12),
)}


# ---------------------------------------------------------------------------------------------
# Running.

def products(world: World, scenario: Scenario, prep: Prepared, reliability: dict[str, float], args,
             variant: Variant | None = None) -> list[ProductOfExperts]:
    """One product per case, built as the studio builds a run's: World.request (which validates the maps
    and windows) then World.mixture's settings; the modalities the case does not give at r = 0."""
    out = []
    for k, inputs in enumerate(prep.inputs):
        maps = prep.maps[variant.key][k] if variant is not None and variant.key in prep.maps else None
        windows = variant.windows if variant is not None else None
        req = world.request(inputs, reliability=reliability, reliability_maps=maps, windows=windows, steps=args.steps,
                            sampler=args.sampler, guidance=args.guidance, superres=False)
        if set(req.reliability_maps) != set(maps or {}) or set(req.windows) != set(windows or {}):
            raise RuntimeError(f"{scenario.key} case {k}: the request kept maps {sorted(req.reliability_maps)} and "
                               f"windows {sorted(req.windows)} of those asked: {req.notes}")
        settings = world.product_settings(req)
        settings["reliability"] = {m: (r if m in scenario.modalities else 0.0)
                                   for m, r in settings["reliability"].items()}
        out.append(ProductOfExperts(world.experts, options=world.guidance_options, **settings))
    return out


def case_conditions(scenario: Scenario, prep: Prepared) -> list[dict[str, torch.Tensor]]:
    """Each case's conditions (batch 1): face_conditions of the modalities the scenario gives."""
    cond = face_conditions(prep.cases, scenario.modalities)
    return [{m: cond[m][i:i + 1] for m in scenario.modalities} for i in range(len(prep.cases))]


def render(world: World, settings: list[list[ProductOfExperts]], conds: list[dict], seed: int, args
           ) -> list[np.ndarray]:
    """(n,S,S,3) uint8 images of each setting (its n cases' products), every setting's case i from the same
    starting noise (seed's first draw, as evaluate.generate's first chunk): the settings are sampled side
    by side, as many per call as args.batch images allow, each row by its own product (ProductStrip)."""
    n, size = len(conds), world.image_size
    per_call = max(1, args.batch // n)
    out = []
    for i in range(0, len(settings), per_call):
        group = settings[i:i + per_call]
        strip = ProductStrip([p for per_case in group for p in per_case], [c for _ in group for c in conds])
        gen = torch.Generator().manual_seed(seed)
        for frame in sample(strip, {}, (n, 3, size, size), steps=args.steps, sampler=args.sampler, generator=gen,
                            copies=len(group), device=world.device, **world.schedule()):
            if frame.done:
                images = to_uint8(frame.image)  # (len(group) * n, S, S, 3)
        out += [images[k * n:(k + 1) * n] for k in range(len(group))]
    return out


def grid_points(scenario: Scenario, default: dict[str, float], grid) -> list[dict[str, float]]:
    """The reliabilities of each grid point: the two axes from `grid`, the other modalities at the default."""
    a, b = scenario.axes
    base = {m: float(default.get(m, 1.0)) for m in scenario.modalities}
    return [{**base, a: float(ra), b: float(rb)} for ra in grid for rb in grid]


def best_point(points: list[dict]) -> int:
    """Index of the point with the highest mean score over the seeds (ties: the first)."""
    return max(range(len(points)), key=lambda i: (points[i]["metrics"]["score"]["mean"], -i))


def verdict(painted: dict, uniform: dict) -> dict:
    """Margin of a painted setting's mean score over the best uniform's, against the sum of their seed
    spreads (as evaluate.claim judges a margin); and whether it wins on every seed."""
    p, u = painted["metrics"]["score"], uniform["metrics"]["score"]
    margin, spread = p["mean"] - u["mean"], p["spread"] + u["spread"]
    return {"margin": margin, "seed_spread": spread, "beats_beyond_spread": bool(margin > spread),
            "wins_every_seed": all(a > b for a, b in zip(p["per_seed"], u["per_seed"]))}


def _scores(world: World, judge: Judge, scenario: Scenario, prep: Prepared, settings: list, seeds, args
            ) -> tuple[list[list[dict]], list[np.ndarray]]:
    """Each setting's (arm, variant, reliability) scores on these cases per seed, and the first seed's
    images of the first cases (for the figure)."""
    conds = case_conditions(scenario, prep)
    built = [products(world, scenario, prep, rel, args, variant) for _, variant, rel in settings]
    per_seed: list[list[dict]] = [[] for _ in settings]
    shown: list[np.ndarray] = []
    for seed in seeds:
        images = render(world, built, conds, seed, args)
        for k, imgs in enumerate(images):
            per_seed[k].append(scenario.score(judge, imgs, prep))
        shown = shown or [imgs[:FIGURE_ROWS] for imgs in images]
    return per_seed, shown


def run_scenario(world: World, judge: Judge, scenario: Scenario, args, log) -> tuple[dict, dict]:
    """Choose, then measure. Choose: every uniform grid point and every painted variant at each point of
    its grid, on choose_n drawn cases from case 0, the first seed. Measure: the `finalists` best points of
    each (uniform, each variant) by that score, on n other drawn cases (from MEASURE_FROM on), every seed;
    each side's result is its best finalist there -> the results and the figure's images."""
    t0 = time.perf_counter()
    size = world.image_size
    choose = scenario.prepare(args.choose_n or scenario.choose_n, size, 0)
    measure = scenario.prepare(args.n or scenario.n, size, MEASURE_FROM)
    default = world.default_reliability()
    arms = [("uniform", None, grid_points(scenario, default, args.grid))]
    arms += [(v.key, v, grid_points(scenario, default, args.painted_grid)) for v in scenario.variants]
    settings = [(key, variant, rel) for key, variant, points in arms for rel in points]
    chosen_scores, _ = _scores(world, judge, scenario, choose, settings, args.seeds[:1], args)
    log(f"  {scenario.key}: chose among {len(settings)} settings on {len(choose.cases)} cases "
        f"({time.perf_counter() - t0:.0f} s)", flush=True)
    finalists, chosen, start = [], {}, 0
    for key, variant, points in arms:
        block = [{"reliability": rel, "score": chosen_scores[start + i][0]["score"]} for i, rel in enumerate(points)]
        order = sorted(range(len(points)), key=lambda i: (-block[i]["score"], i))[:args.finalists]
        chosen[key] = block
        finalists += [(key, variant, points[i]) for i in order]
        start += len(points)
    t1 = time.perf_counter()
    measured, shown = _scores(world, judge, scenario, measure, finalists, args.seeds, args)
    log(f"  {scenario.key}: measured {len(finalists)} finalists on {len(measure.cases)} cases x "
        f"{len(args.seeds)} seeds ({time.perf_counter() - t1:.0f} s)", flush=True)
    result = {"title": scenario.title, "story": scenario.story, "n": len(measure.cases),
              "choose_n": len(choose.cases), "modalities": scenario.modalities, "axes": scenario.axes,
              "score": scenario.score_label, "variants": {}}
    figure = {"prep": measure}
    for key, variant, _ in arms:
        idx = [k for k, f in enumerate(finalists) if f[0] == key]
        rows = [{"reliability": finalists[k][2], "metrics": summarise(measured[k])} for k in idx]
        best = best_point(rows)
        figure[key] = shown[idx[best]]
        entry = {"label": variant.label if variant else "uniform", "windows": variant.windows if variant else {},
                 "best": rows[best], "finalists": rows, "chosen_on": chosen[key]}
        if variant is None:
            result["uniform"] = entry
        else:
            entry.update(verdict(rows[best], result["uniform"]["best"]))
            result["variants"][key] = entry
        log(f"  {scenario.key} {key}: best {rel_text(rows[best]['reliability'])}: {fmt(rows[best]['metrics']['score'])}"
            + (f" (margin {entry['margin']:+.3f}, spread {entry['seed_spread']:.3f})" if variant else ""), flush=True)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result, figure


def evaluate(args) -> tuple[dict, dict]:
    t_start = time.perf_counter()
    world = load_faces_world(args.faces_dir, superres_file=None)
    judge = Judge(Path(args.metrics_dir), 2, world.image_size)  # no Fréchet distance here: 2 reference faces
    log = print if args.verbose else (lambda *a, **k: None)
    results, figures = {}, {}
    for key in args.cases:
        log(f"{key}: {SCENARIOS[key].title}", flush=True)
        results[key], figures[key] = run_scenario(world, judge, SCENARIOS[key], args, log)
    out = {"scenarios": results,
           "config": {"n": {key: results[key]["n"] for key in results},
                      "choose_n": {key: results[key]["choose_n"] for key in results}, "measure_from": MEASURE_FROM,
                      "finalists": args.finalists, "seeds": list(args.seeds),
                      "steps": args.steps, "sampler": args.sampler, "guidance": args.guidance,
                      "guidance_options": str(world.guidance_options),
                      "grid": list(args.grid), "painted_grid": list(args.painted_grid),
                      "default_reliability": world.default_reliability(), "batch": args.batch,
                      "image_size": world.image_size},
           "hardware": hardware(), "runtime_seconds": round(time.perf_counter() - t_start, 1),
           "command": args.command, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    return out, figures


# ---------------------------------------------------------------------------------------------
# Reports.

def fmt(m: dict) -> str:
    return f"{m['mean']:.3f} ± {m['spread']:.3f}"


def rel_text(rel: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in rel.items())


def summary_lines(results: dict) -> list[str]:
    """One line per (case, painted variant): each best point's score, the margin and the verdict."""
    lines = ["| case | painted | best uniform ↑ | best painted ↑ | margin | seed spread | beyond spread |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for key, s in results["scenarios"].items():
        u = s["uniform"]["best"]
        for v in s["variants"].values():
            b = v["best"]
            beyond = "**yes**" if v["beats_beyond_spread"] else "no"
            lines.append(f"| {key} (N = {s['n']}, chosen on {s['choose_n']}) | {v['label']} | "
                         f"{fmt(u['metrics']['score'])} "
                         f"({rel_text(u['reliability'])}) | {fmt(b['metrics']['score'])} "
                         f"({rel_text(b['reliability'])}) | {v['margin']:+.3f} | {v['seed_spread']:.3f} | {beyond} |")
    return lines


def write_markdown(results: dict, path: Path) -> None:
    c = results["config"]
    grid = ", ".join(f"{g:g}" for g in c["grid"])
    painted = ", ".join(f"{g:g}" for g in c["painted_grid"])
    lines = ["# Reliability painted in space and time, on the drawn set", "",
             f"Command: `{results['command']}`  ",
             f"{c['steps']} {c['sampler']} steps, guidance {c['guidance']:g} ({c['guidance_options']}), seeds "
             f"{', '.join(map(str, c['seeds']))}, {c['image_size']}x{c['image_size']} images.  ",
             f"Hardware: {results['hardware']}. Runtime: {results['runtime_seconds'] / 60:.1f} min "
             f"({results['date']}).", "",
             f"Uniform: every point of {{{grid}}}² for the case's two competing modalities (the others at the "
             f"world's defaults). Painted: every point of {{{painted}}}² with the case's map or window added. "
             f"Chosen: each side's {c['finalists']} best points by the case's score on the first drawn cases "
             f"(from case 0), first seed. Measured: those finalists on other drawn cases (from case "
             f"{c['measure_from']} on) with every seed; each side's result is its best finalist there. Each "
             "value: mean over the seeds ± half their range (the seed spread); beyond spread: the margin exceeds "
             "the sum of the two seed spreads. Every setting starts each case from the same noise.", "",
             "## Summary", ""]
    lines += summary_lines(results)
    for key, s in results["scenarios"].items():
        comps = [k for k in s["uniform"]["best"]["metrics"] if k != "score"]
        lines += ["", f"## {key}: {s['title']}", "", s["story"], "",
                  f"Measured on N = {s['n']} cases, chosen on {s['choose_n']}. Score: {s['score']}. "
                  f"{s['seconds'] / 60:.1f} min.", "", "Measured finalists:", "",
                  "| setting | r | " + " | ".join(comps) + " | score ↑ |",
                  "| --- | --- | " + "--- | " * len(comps) + "--- |"]
        arms = (s["uniform"], *s["variants"].values())
        for arm in arms:
            for row in arm["finalists"]:
                label = f"**{arm['label']} (best)**" if row == arm["best"] else arm["label"]
                cells = " | ".join(fmt(row["metrics"][k]) for k in comps)
                lines.append(f"| {label} | {rel_text(row['reliability'])} | {cells} | {fmt(row['metrics']['score'])} |")
        lines += ["", f"Choosing ({s['choose_n']} cases, first seed), score of every grid point:", "",
                  "| setting | r | score |", "| --- | --- | --- |"]
        for arm in arms:
            for row in sorted(arm["chosen_on"], key=lambda g: -g["score"]):
                lines.append(f"| {arm['label']} | {rel_text(row['reliability'])} | {row['score']:.3f} |")
    path.write_text("\n".join(lines) + "\n")


def _big(a: np.ndarray, scale: int = 3) -> np.ndarray:
    """Nearest-neighbour upscale of an (H,W) or (H,W,3) image."""
    return a.repeat(scale, 0).repeat(scale, 1)


def plot(results: dict, figures: dict, path: Path, steps: int) -> None:
    """Example rows of each case: its inputs, the map (or the windows), the best uniform result and the
    best painted ones (first seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(key, i) for key in figures for i in range(min(FIGURE_ROWS, len(figures[key]["uniform"])))]
    ncols = 4 + max(len(results["scenarios"][k]["variants"]) for k in figures)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.45 * ncols + 1.3, 1.7 * len(rows)), squeeze=False)
    for r, (key, i) in enumerate(rows):
        s, f = results["scenarios"][key], figures[key]
        prep = f["prep"]
        case, given = prep.cases[i], prep.inputs[i]
        first = next(iter(s["variants"]))
        maps = prep.maps.get(first, [{}] * len(prep.cases))[i]
        cells = [("seg map", PALETTE_RGB[case.seg] if "seg" in given else "(none)"),
                 ("sketch", np.repeat(case.sketch[..., None], 3, 2) if "sketch" in given else "(none)")]
        if maps:
            cells.append(("maps: " + ", ".join(maps), np.concatenate(
                [np.repeat((maps[m] * 255).astype(np.uint8)[..., None], 3, 2) for m in maps], 1)))
        else:
            cells.append(("windows", "\n".join(
                f"{m}: steps {', '.join(map(str, heard_steps(tuple(w), steps)))} of {steps}"
                for v in s["variants"].values() for m, w in v["windows"].items())))
        cells.append((f"best uniform\n{rel_text(s['uniform']['best']['reliability'])}", f["uniform"][i]))
        for vk, v in s["variants"].items():
            cells.append((f"{vk}\n{rel_text(v['best']['reliability'])}", f[vk][i]))
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(cells):
                ax.axis("off")
                continue
            title, img = cells[c]
            ax.set_title(title, fontsize=5.5)
            if isinstance(img, str):
                ax.axis("off")
                ax.text(0.5, 0.5, img, ha="center", va="center", fontsize=5.5, transform=ax.transAxes)
                continue
            ax.imshow(_big(img), interpolation="nearest")
        caption = textwrap.fill(case.caption, 24) if "text" in given else "(no caption)"
        axes[r][0].text(-0.12, 0.5, f"{key}\n{caption}", fontsize=5.5, va="center", ha="right",
                        transform=axes[r][0].transAxes)
    fig.suptitle("Reliability painted in space and time, drawn inputs: best uniform r against the best painted "
                 "(first seed)", fontsize=7.5)
    fig.tight_layout(rect=(0.12, 0, 1, 0.98))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    from unite_demo.limits import DEFAULTS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, help="measured drawn cases of every case (default: each case's own, "
                    + ", ".join(f"{k} {s.n}" for k, s in SCENARIOS.items()) + ")")
    ap.add_argument("--choose-n", type=int, help="drawn cases the grid points are chosen on (default: each "
                    "case's own, " + ", ".join(f"{k} {s.choose_n}" for k, s in SCENARIOS.items()) + ")")
    ap.add_argument("--finalists", type=int, default=FINALISTS, help="best points of each side measured")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS), help="sampler seeds (the spread)")
    ap.add_argument("--cases", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    ap.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    ap.add_argument("--sampler", default=DEFAULTS["sampler"])
    ap.add_argument("--guidance", type=float, default=DEFAULTS["guidance"])
    ap.add_argument("--batch", type=int, default=200, help="images per sampler call (settings side by side)")
    ap.add_argument("--grid", type=float, nargs="+", default=list(GRID), help="uniform r of each competing modality")
    ap.add_argument("--painted-grid", type=float, nargs="+", default=list(PAINTED_GRID),
                    help="the same for the painted settings")
    ap.add_argument("--out", default=str(ROOT / "reports"))
    ap.add_argument("--figure", default=str(ROOT / "docs" / "spacetime.png"), help="the figure ('': none)")
    ap.add_argument("--stem", default="spacetime", help="the reports' file name: STEM.json and STEM.md in --out")
    ap.add_argument("--faces-dir", default=str(FACES_DIR))
    ap.add_argument("--metrics-dir", default=str(metric_nets.METRICS_DIR))
    ap.add_argument("--quiet", dest="verbose", action="store_false")
    args = ap.parse_args(argv)
    for name in ("n", "choose_n", "finalists"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    args.command = "python -m unite_demo.evaluate_spacetime " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    results, figures = evaluate(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, out / f"{args.stem}.md")
    if args.figure:
        Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
        plot(results, figures, Path(args.figure), args.steps)
    print("\n".join(summary_lines(results)))
    print(f"wrote {out / (args.stem + '.md')}, {out / (args.stem + '.json')}"
          + (f" and {args.figure}" if args.figure else "")
          + f" in {results['runtime_seconds'] / 60:.1f} min")
    return results
