"""Evaluation of the paper's central claim on the built-in world: experts trained on separate,
unpaired data, combined as a generalized product of experts, follow all their conditions at once,
close to a model trained on paired data; and the reliability sweep that shows what a slider does.

    python -m unite_demo.evaluate --n 300 --out reports/          # full
    python -m unite_demo.evaluate --quick --out reports/          # N = 50, 4 sweep points

On N held-out faces the seg map, sketch and caption of the SAME face are the conditions. Rows:
each expert alone (r = 1), the product with the world's default reliabilities, the product with
every r_i = 1, the jointly trained model (upper bound) and unconditional sampling, plus the real
faces themselves (the ceiling of each metric). Writes eval.md, eval.json and sweep.png to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from unite_demo.limits import DEFAULTS
from unite_demo.method.combine import REMEDIES, ProductOfExperts
from unite_demo.method.sampler import SAMPLERS, check_steps, sample
from unite_demo.worlds.conditions import to_uint8
from unite_demo.worlds.faces import final_stage
from unite_demo.worlds.faces.conditions import face_conditions
from unite_demo.worlds.faces.data import ATTRIBUTES, SPLITS, make_face
from unite_demo.worlds.faces.evaluation import metric_nets
from unite_demo.worlds.faces.evaluation.drawn import DRAWN_N, drawn_set
from unite_demo.worlds.faces.evaluation.metrics import attribute_hits, diversity, frechet_distance, miou, sketch_f1
from unite_demo.worlds.faces.training import superres
from unite_demo.worlds.faces.world import FACES_DIR, load_faces_world
from unite_demo.worlds.world import World

FULL_SWEEP = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
QUICK_SWEEP = (0.0, 1.0, 2.0, 3.0)
QUICK_N = 50
FULL_N = 300
FD_REFERENCE_OFFSET = 50_000  # real faces for the Fréchet reference: heldout seeds from here on
CONSISTENCIES = ("seg", "sketch", "text")
ATTRIBUTE_NAMES = tuple(ATTRIBUTES)  # the per-attribute text accuracy, in this order


@dataclass
class Row:
    """One line of the table: a denoiser built from the world's experts."""

    key: str
    label: str
    mixture: ProductOfExperts


@dataclass
class Scores:
    """Per-image scores of one set of images of the N faces."""

    seg: np.ndarray  # (N,) mIoU
    sketch: np.ndarray  # (N,) edge F1
    hits: np.ndarray  # (N, 2) attribute (correct, total) over the mentioned attributes
    features: np.ndarray  # (N, D) classifier features
    by_attribute: np.ndarray  # (N, A, 2) the same (correct, total) split by attribute (ATTRIBUTE_NAMES)

    def head(self, n: int) -> "Scores":
        return Scores(self.seg[:n], self.sketch[:n], self.hits[:n], self.features[:n], self.by_attribute[:n])

    def consistency(self) -> dict[str, float]:
        """seg mIoU, sketch F1, text attribute accuracy (pooled) and their mean."""
        text = self.hits[:, 0].sum() / max(self.hits[:, 1].sum(), 1)
        out = {"seg": float(self.seg.mean()), "sketch": float(self.sketch.mean()), "text": float(text)}
        out["mean"] = float(np.mean([out[k] for k in CONSISTENCIES]))
        return out

    def text_by_attribute(self) -> dict[str, dict]:
        """Per attribute: n, the cases whose caption mentions it, and the text accuracy over those
        (None where n = 0). Weighted by n, these accuracies give consistency()['text']."""
        correct, total = self.by_attribute.sum(0).T  # (A,), (A,)
        return {a: {"n": int(t), "text": float(c / t) if t else None}
                for a, c, t in zip(ATTRIBUTE_NAMES, correct, total)}


class Judge:
    """The metric networks and the real-face reference, scoring batches of images."""

    def __init__(self, metrics_dir: Path, fd_reference: int, size: int):
        self.segmenter = metric_nets.load_net("segmenter", metrics_dir)
        self.classifier = metric_nets.load_net("classifier", metrics_dir)
        for net in (self.segmenter, self.classifier):
            if net.config.image_size != size:
                raise ValueError(f"the {net.config.net} judges {net.config.image_size}px images but the world "
                                 f"makes {size}px ones; train metric nets with --size {size}")
        start = SPLITS["heldout"].start + FD_REFERENCE_OFFSET
        ref = np.stack([make_face(start + k, size).image for k in range(fd_reference)])
        self.reference_features = metric_nets.classify(self.classifier, ref)[0]  # (R, D)

    def score(self, images: np.ndarray, faces: list) -> Scores:
        """(N,H,W,3) uint8 images made for the first N faces (or drawn cases) -> per-image scores."""
        faces = faces[:len(images)]
        seg = metric_nets.segment(self.segmenter, images)
        features, preds = metric_nets.classify(self.classifier, images)
        return Scores(
            seg=np.array([miou(p, f.seg) for p, f in zip(seg, faces)]),
            sketch=np.array([sketch_f1(img, f.edges) for img, f in zip(images, faces)]),
            hits=np.array([attribute_hits(p, f.attributes, f.mentioned) for p, f in zip(preds, faces)]),
            features=features,
            by_attribute=np.array([[attribute_hits(p, f.attributes, [m for m in f.mentioned if m == a])
                                    for a in ATTRIBUTE_NAMES] for p, f in zip(preds, faces)],
                                  dtype=np.int64).reshape(len(faces), len(ATTRIBUTE_NAMES), 2),
        )

    def fd(self, scores: Scores) -> float:
        return frechet_distance(scores.features, self.reference_features)


REMEDY_LABELS = {"plain": "plain guidance", "interval": "guidance only for sigma in (0.28, 5.42]",
                 "rescale": "rescaled guidance (phi 0.7)",
                 "apg": "adaptive projected guidance (eta 0)"}


def default_reliability(world: World) -> dict[str, float]:
    """The default r of each of the world's experts (1 where the world names none)."""
    named = world.default_reliability()
    return {e.name: float(named.get(e.name, 1.0)) for e in world.experts}


def make_rows(world: World, guidance: float, remedies: tuple[str, ...] = ()) -> list[Row]:
    """The table's rows, each a product of experts (a single expert is a product of one), all with the
    world's guidance options; with remedies, the product at the default r with each of those
    options instead."""
    experts, options = world.experts, world.guidance_options
    rows = [Row(e.name, f"{e.name} expert alone (r=1)", ProductOfExperts([e], {e.name: 1.0}, guidance, options=options))
            for e in experts]
    default = default_reliability(world)
    text = ", ".join(f"{k}={v:g}" for k, v in default.items())
    chosen = next((k for k, v in REMEDIES.items() if v == options), "custom")
    rows.append(Row("poe_default", f"product of experts, default r ({text}), {REMEDY_LABELS.get(chosen, chosen)}",
                    ProductOfExperts(experts, default, guidance, options=options)))
    for name in remedies:
        rows.append(Row(f"poe_{name}", f"product of experts, default r, {REMEDY_LABELS[name]}",
                        ProductOfExperts(experts, default, guidance, options=REMEDIES[name])))
    rows.append(Row("poe_ones", "product of experts, all r_i = 1",
                    ProductOfExperts(experts, {e.name: 1.0 for e in experts}, guidance, options=options)))
    if "joint" in world.baselines:
        joint = world.baselines["joint"]
        rows.append(Row("joint", "joint model, paired data (upper bound)",
                        ProductOfExperts([joint], {joint.name: 1.0}, guidance, options=options)))
    rows.append(Row("uncond", "unconditional (mixed prior, all r_i = 0)",
                    ProductOfExperts(experts, {e.name: 0.0 for e in experts}, guidance, options=options)))
    return rows


def run_key(mixture: ProductOfExperts, seed: int) -> tuple:
    """Two mixtures with the same experts, reliabilities and guidance make the same images."""
    return tuple((e.name, id(e.denoiser), mixture.reliability[e.name]) for e in mixture.experts), \
        mixture.guidance, mixture.options, seed


def generate(mixture: ProductOfExperts, cond: dict, n: int, size: int, args, seed: int,
             world: World, steps: int | None = None, sampler: str | None = None) -> tuple[np.ndarray, float]:
    """(n,H,W,3) uint8 samples for the first n faces, `args.batch` faces per sampler call, one
    generator per seed drawn in chunk order (steps and sampler: args' unless given); and the seconds
    it took."""
    gen = torch.Generator().manual_seed(seed)
    images = []
    t0 = time.perf_counter()
    for i in range(0, n, args.batch):
        chunk = {k: v[i:i + args.batch].to(world.device) for k, v in cond.items()}
        b = len(next(iter(chunk.values())))
        for frame in sample(mixture, chunk, (b, 3, size, size), steps=steps or args.steps, sampler=sampler or args.sampler,
                            generator=gen, num_train_timesteps=world.num_train_timesteps,
                            beta_schedule=world.beta_schedule, device=world.device):
            if frame.done:
                images.append(to_uint8(frame.image))
    return np.concatenate(images), time.perf_counter() - t0


def spread(values: list[float]) -> float:
    """Half the range across seeds (with two seeds: half their difference)."""
    return (max(values) - min(values)) / 2 if len(values) > 1 else 0.0


def summarise(per_seed: list[dict]) -> dict:
    """Mean and spread of each metric over seeds."""
    keys = per_seed[0].keys()
    return {k: {"mean": float(np.mean([s[k] for s in per_seed])), "spread": spread([s[k] for s in per_seed]),
                "per_seed": [s[k] for s in per_seed]} for k in keys}


def summarise_by_attribute(per_seed: list[dict]) -> dict:
    """Scores.text_by_attribute of each seed -> per attribute: n and the accuracy's mean, spread and
    per-seed values over seeds (None where no caption mentions the attribute)."""
    out = {}
    for a in per_seed[0]:
        values = [s[a]["text"] for s in per_seed]
        known = None not in values
        out[a] = {"n": per_seed[0][a]["n"], "mean": float(np.mean(values)) if known else None,
                  "spread": spread(values) if known else None, "per_seed": values}
    return out


def hardware() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores, torch {torch.__version__} on {torch.get_num_threads()} threads"


def evaluate(args) -> dict:
    """Run every row on both held-out sets, then the sweep; return the results (also written to args.out)."""
    t_start = time.perf_counter()
    world = load_faces_world(args.faces_dir, superres_file=args.superres_file or None)
    size = world.image_size
    faces = [make_face(SPLITS["heldout"].start + k, size) for k in range(args.n)]
    sets = {"heldout": faces}
    if args.drawn_n:
        sets["drawn"] = drawn_set(args.drawn_n, size)
    judge = Judge(Path(args.metrics_dir), args.fd_reference, size)
    conds = {name: face_conditions(cases) for name, cases in sets.items()}  # seg map, sketch, caption of one face
    rows = make_rows(world, args.guidance, tuple(args.remedies))
    cache: dict[tuple, tuple[Scores, dict, str]] = {}  # (set, run key) -> scores, cost, the run's first name
    samples: dict[tuple, np.ndarray] = {}  # (set, run key) -> the run's images
    log = print if args.verbose else (lambda *a, **k: None)

    def scores_for(mixture: ProductOfExperts, seed: int, n: int, name: str, which: str = "heldout"
                   ) -> tuple[Scores, dict, str]:
        """Scores of the first n faces of a set; a run with the same key is made once and reused."""
        key = (which, run_key(mixture, seed))
        if key in cache and len(cache[key][0].seg) >= n:
            scores, cost, first = cache[key]
            return scores.head(n), cost, first
        log(f"{which}: {name} seed {seed}: {n} faces", flush=True)
        mixture.calls = mixture.rows = 0
        images, seconds = generate(mixture, conds[which], n, size, args, seed, world)
        cost = {"rows_per_image": mixture.rows / n, "calls_per_image": mixture.calls / n,
                "seconds_per_image": seconds / n}
        cache[key] = judge.score(images, sets[which]), cost, name
        samples[key] = images
        log(f"  {seconds:.1f} s ({mixture.rows / n / args.steps:.0f} rows per image per step); "
            f"{time.perf_counter() - t_start:.0f} s so far", flush=True)
        return cache[key]

    def table(which: str) -> dict:
        out = {}
        for row in rows:
            per_seed, by_attribute, costs, features, same_as = [], [], [], [], set()
            for seed in args.seeds:
                scores, cost, first = scores_for(row.mixture, seed, len(sets[which]), row.key, which)
                per_seed.append({**scores.consistency(), "fd": judge.fd(scores)})
                by_attribute.append(scores.text_by_attribute())
                costs.append(cost)
                features.append(scores.features)
                same_as |= {first} - {row.key}
            out[row.key] = {
                "label": row.label, "reliability": row.mixture.reliability, "metrics": summarise(per_seed),
                "text_by_attribute": summarise_by_attribute(by_attribute),
                "diversity": diversity(np.stack(features, 1)) if len(features) > 1 else None,
                "cost": {k: float(np.mean([c[k] for c in costs])) for k in costs[0]},
                "same_images_as": sorted(same_as)[0] if same_as else None}
        return out

    if args.final_stage_only:
        return {"final_stage": final_stage_section(world, judge, sets, rows, args, scores_for, samples),
                "hardware": hardware(), "runtime_seconds": round(time.perf_counter() - t_start, 1),
                "command": args.command, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    results: dict = {"rows": table("heldout")}
    if "drawn" in sets:
        drawn_rows = table("drawn")
        results["drawn"] = {"n": len(sets["drawn"]), "rows": drawn_rows, "claim": claim(drawn_rows)}
    real = judge.score(np.stack([f.image for f in faces]), faces)
    pairs = np.stack([real.features[0:-1:2], real.features[1::2]], 1)  # (N/2, 2, D): two different faces
    results["real"] = {"label": "real faces (the metrics' ceiling)", **real.consistency(), "fd": judge.fd(real),
                       "diversity_between_faces": diversity(pairs)}

    sweep_n = min(args.sweep_n or args.n, args.n)
    results["sweep"] = {"n": sweep_n, "seed": args.seeds[0], "points": args.sweep_points, "fixed": {}, "curves": {}}
    default = default_reliability(world)
    for modality in ("text", "seg"):
        results["sweep"]["fixed"][modality] = {k: v for k, v in default.items() if k != modality}
        curve = []
        for r in args.sweep_points:
            reliability = {**default, modality: float(r)}
            mixture = ProductOfExperts(world.experts, reliability, args.guidance, options=world.guidance_options)
            scores, _, _ = scores_for(mixture, args.seeds[0], sweep_n, f"sweep {modality}={r:g}")
            curve.append({"r": float(r), "reliability": reliability, **scores.consistency()})
        results["sweep"]["curves"][modality] = curve
    points = [p for curve in results["sweep"]["curves"].values() for p in curve]
    best = max(points, key=lambda p: (round(p["mean"], 6), -sum(abs(v - 1) for v in p["reliability"].values())))
    results["suggested_reliability"] = {
        "reliability": best["reliability"], "mean_consistency": best["mean"],
        "criterion": "the sweep point with the highest mean of the three consistencies (seg mIoU, sketch "
                     "edge F1, text attribute accuracy) on the sweep's faces; ties go to the point closest to all 1"}
    results["claim"] = claim(results["rows"])
    if world.final_stage is not None:
        results["final_stage"] = final_stage_section(world, judge, sets, rows, args, scores_for, samples)
    if args.solvers:
        results["solvers"] = solver_section(world, judge, sets, conds, args, log)
    results["config"] = {
        "n": args.n, "steps": args.steps, "sampler": args.sampler, "guidance": args.guidance, "seeds": args.seeds,
        "batch": args.batch, "image_size": size, "faces": f"faces.SPLITS['heldout'] seeds "
        f"{SPLITS['heldout'].start}..{SPLITS['heldout'].start + args.n - 1}",
        "drawn": f"drawn.drawn_set: cases 0..{args.drawn_n - 1}" if args.drawn_n else None,
        "fd_reference": f"{args.fd_reference} real held-out faces from seed "
                        f"{SPLITS['heldout'].start + FD_REFERENCE_OFFSET}",
        "faces_dir": str(args.faces_dir), "metrics_dir": str(args.metrics_dir), "quick": args.quick,
        "metric_nets": {net: metric_nets.read_config(Path(args.metrics_dir) / f"{net}.safetensors").extra.get(
            "heldout_accuracy") for net in metric_nets.NETS},
    }
    results["hardware"] = hardware()
    results["runtime_seconds"] = round(time.perf_counter() - t_start, 1)
    results["command"] = args.command
    results["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return results


def final_stage_section(world: World, judge: Judge, sets: dict, rows: list[Row], args, scores_for,
                        samples: dict) -> dict:
    """The final-image stage (world.final_stage, 32 -> 128 px) against bicubic upscaling, on the
    product's samples (default r, first seed) of each set: grain and region spread (superres.grain,
    superres.region_spread inside the segmenter's regions of the 32 px sample, scaled up), edge
    sharpness across those regions' boundaries, and the consistencies of the output brought back to
    32 px (box filter) against the sample's own; plus PSNR against 128 px renders of held-out faces."""
    poe = next(r for r in rows if r.key == "poe_default").mixture
    out = {"sets": {}}
    for which, cases in sets.items():
        raw_scores, _, _ = scores_for(poe, args.seeds[0], len(cases), "poe_default", which)
        images = samples[(which, run_key(poe, args.seeds[0]))][:len(cases)]
        out["sets"][which] = final_stage_metrics(world.final_stage, judge, images, cases, raw_scores.consistency())
    out["renders"] = superres.heldout_scores(world.final_stage, min(args.n, 200))
    out["card"] = {k: world.cards.get("superres", {}).get(k) for k in ("steps", "wall_minutes", "data_version")}
    return out


def final_stage_metrics(stage, judge: Judge, images: np.ndarray, cases: list, without: dict) -> dict:
    """A final-image stage on one set of 32 px samples against bicubic upscaling: grain, region spread
    and edge sharpness inside and across the segmenter's regions of the samples (scaled up), and the
    consistencies of its output brought back to 32 px (box filter) beside the samples' own (`without`)."""
    sharp, soft = superres.upscale(stage, images), superres.bicubic(images)
    scale = sharp.shape[1] // images.shape[1]
    regions = metric_nets.segment(judge.segmenter, images).repeat(scale, 1).repeat(scale, 2)
    return {"n": len(sharp),
            **{name: {"superres": measure(sharp, regions), "bicubic": measure(soft, regions)}
               for name, measure in (("grain", superres.grain), ("region_spread", superres.region_spread),
                                     ("edge_sharpness", superres.edge_sharpness))},
            "consistency": {"superres": judge.score(superres.box_down(sharp, scale), cases).consistency(),
                            "without": without}}


def solver_section(world: World, judge: Judge, sets: dict, conds: dict, args, log) -> dict:
    """The product (default r, the world's guidance options, first seed) with each sampler and step
    count of args.solvers, on each set: its consistencies, FD and sampling seconds per image."""
    default = default_reliability(world)
    poe = ProductOfExperts(world.experts, default, args.guidance, options=world.guidance_options)
    out = {}
    for which, cases in sets.items():
        out[which] = []
        for sampler, steps in args.solvers:
            log(f"{which}: solver {sampler}, {steps} steps", flush=True)
            images, seconds = generate(poe, conds[which], len(cases), world.image_size, args, args.seeds[0], world,
                                       steps=steps, sampler=sampler)
            scores = judge.score(images, cases)
            out[which].append({"sampler": sampler, "steps": steps, **scores.consistency(), "fd": judge.fd(scores),
                               "seconds_per_image": seconds / len(cases)})
    return out


def solver_lines(section: dict) -> list[str]:
    sets = list(section)
    head = " | ".join(f"{w} mean ↑ | {w} FD ↓" for w in sets)
    lines = [f"| sampler | steps | {head} | s / image |", "| --- | --- | " + "--- | " * (2 * len(sets)) + "--- |"]
    for k, first in enumerate(section[sets[0]]):
        cells = " | ".join(f"{section[w][k]['mean']:.3f} | {section[w][k]['fd']:.1f}" for w in sets)
        lines.append(f"| {first['sampler']} | {first['steps']} | {cells} | {first['seconds_per_image']:.3f} |")
    return lines


def final_stage_lines(section: dict) -> list[str]:
    r = section["renders"]
    lines = ["| set | grain ↓ (superres / bicubic) | region spread (superres / bicubic) | edge sharpness ↑ "
             "(superres / bicubic) | mean consistency at 32 px (superres / without) |", "| --- | --- | --- | --- | --- |"]
    for which, m in section["sets"].items():
        g, z, e, c = m["grain"], m["region_spread"], m["edge_sharpness"], m["consistency"]
        lines.append(f"| {which} (N = {m['n']}) | {g['superres']:.2f} / {g['bicubic']:.2f} "
                     f"({g['superres'] / g['bicubic']:.0%}) | {z['superres']:.2f} / {z['bicubic']:.2f} | "
                     f"{e['superres']:.2f} / {e['bicubic']:.2f} | "
                     f"{c['superres']['mean']:.3f} / {c['without']['mean']:.3f} |")
    lines += ["", f"On {r['faces']} held-out renders, PSNR against the 128 px render: superres "
              f"{r['psnr_clean_sr']:.2f} dB, bicubic {r['psnr_clean_bicubic']:.2f} dB from the clean 32 px image "
              f"({r['psnr_clean_sr'] - r['psnr_clean_bicubic']:+.2f} dB); from a degraded one "
              f"{r['psnr_degraded_sr']:.2f} against {r['psnr_degraded_bicubic']:.2f} dB "
              f"({r['psnr_degraded_sr'] - r['psnr_degraded_bicubic']:+.2f} dB)."]
    return lines


JOINT_SHARE = 0.95  # the product's mean consistency must reach this share of the joint model's
MODALITY_SHARE = 0.95  # and each of its consistencies this share of that modality's expert alone


def claim(rows: dict) -> dict:
    """The paper's claim on our world: the product (default r) beats every single expert on the
    mean consistency, keeps each consistency within MODALITY_SHARE of that modality's expert alone,
    and (where there is a joint model) reaches JOINT_SHARE of the joint model's mean."""
    poe_metrics = rows["poe_default"]["metrics"]
    poe = poe_metrics["mean"]["mean"]
    singles = {k: rows[k]["metrics"]["mean"]["mean"] for k in CONSISTENCIES if k in rows}
    best = max(singles, key=singles.get)
    spread = poe_metrics["mean"]["spread"] + rows[best]["metrics"]["mean"]["spread"]
    shares = {k: poe_metrics[k]["mean"] / rows[k]["metrics"][k]["mean"] for k in CONSISTENCIES
              if k in rows and k in poe_metrics and rows[k]["metrics"].get(k, {}).get("mean")}
    out = {"poe_mean": poe, "single_means": singles, "beats_every_single": all(poe > v for v in singles.values()),
           "margin_over_best_single": poe - singles[best], "seed_spread": spread,
           "margin_exceeds_seed_spread": poe - singles[best] > spread,
           "modality_shares": shares, "keeps_each_modality": all(v >= MODALITY_SHARE for v in shares.values())}
    if "joint" in rows:
        joint = rows["joint"]["metrics"]["mean"]["mean"]
        out.update(joint_mean=joint, share_of_joint=poe / joint if joint else None,
                   reaches_share_of_joint=joint > 0 and poe >= JOINT_SHARE * joint)
    out["holds"] = out["beats_every_single"] and out.get("reaches_share_of_joint", True)
    return out


def fmt(m: dict, digits: int = 3) -> str:
    return f"{m['mean']:.{digits}f} ± {m['spread']:.{digits}f}"


TABLE_HEAD = ["| row | seg mIoU ↑ | sketch F1 ↑ | text acc ↑ | mean ↑ | FD ↓ | diversity | net rows / image "
              "| s / image |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]


def table_lines(rows: dict) -> list[str]:
    lines = list(TABLE_HEAD)
    for row in rows.values():
        m, cost = row["metrics"], row["cost"]
        div = f"{row['diversity']:.2f}" if row["diversity"] is not None else "n/a"
        label = row["label"] + (f" (same images as {row['same_images_as']})" if row["same_images_as"] else "")
        lines.append(f"| {label} | {fmt(m['seg'])} | {fmt(m['sketch'])} | {fmt(m['text'])} | "
                     f"**{fmt(m['mean'])}** | {fmt(m['fd'], 2)} | {div} | {cost.get('rows_per_image', 0):.0f} | "
                     f"{cost.get('seconds_per_image', 0):.3f} |")
    return lines


BY_ATTRIBUTE_ROWS = {"poe_default": "product", "text": "text expert alone"}
SET_NAMES = {"heldout": "held-out", "drawn": "drawn"}


def attribute_lines(results: dict) -> list[str]:
    """Text accuracy per attribute of the product (default r) and the text expert alone on each set:
    rows = attributes, one column per (set, row) and the counts n (cases whose caption mentions it)."""
    sets = {"heldout": results["rows"], **({"drawn": results["drawn"]["rows"]} if "drawn" in results else {})}
    cols = [(w, k) for w in sets for k in BY_ATTRIBUTE_ROWS if k in sets[w]]
    n_head = "n (" + " / ".join(SET_NAMES[w] for w in sets) + ")"
    lines = ["| attribute | " + " | ".join(f"{BY_ATTRIBUTE_ROWS[k]}, {SET_NAMES[w]} ↑" for w, k in cols)
             + f" | {n_head} |", "| --- | " + "--- | " * len(cols) + "--- |"]
    for a in ATTRIBUTE_NAMES:
        cells = []
        for w, k in cols:
            m = sets[w][k]["text_by_attribute"][a]
            cells.append(fmt(m) if m["mean"] is not None else "n/a")
        n = " / ".join(str(next(iter(rows.values()))["text_by_attribute"][a]["n"]) for rows in sets.values())
        lines.append(f"| {a} | " + " | ".join(cells) + f" | {n} |")
    return lines


def claim_line(cl: dict) -> str:
    singles = ", ".join(f"{k} {v:.3f}" for k, v in cl["single_means"].items())
    verdict = "**The claim holds.**" if cl["holds"] else "**The claim does not hold on this run.**"
    line = (f"{verdict} Mean consistency of the product (default r): {cl['poe_mean']:.3f}; single experts: "
            f"{singles} ({'beats' if cl['beats_every_single'] else 'does not beat'} every single expert; "
            f"margin over the best {cl['margin_over_best_single']:+.3f}, "
            f"{'beyond' if cl['margin_exceeds_seed_spread'] else 'within'} the seed spread {cl['seed_spread']:.3f}). "
            "Each consistency against that modality's expert alone: "
            + ", ".join(f"{k} {v:.0%}" for k, v in cl["modality_shares"].items())
            + f" (target ≥ {MODALITY_SHARE:.0%}).")
    if "joint_mean" in cl:
        line += (f" Joint model: {cl['joint_mean']:.3f}; the product reaches {cl['share_of_joint']:.0%} of it "
                 f"(target ≥ {JOINT_SHARE:.0%}).")
    return line


def write_markdown(results: dict, path: Path) -> None:
    c = results["config"]
    lines = ["# Evaluation: product of experts on the cartoon-faces world", "",
             f"Command: `{results['command']}`  ",
             f"{c['steps']} {c['sampler']} steps, guidance {c['guidance']:g}, seeds {', '.join(map(str, c['seeds']))}, "
             f"{c['image_size']}x{c['image_size']} images.  ",
             f"Hardware: {results['hardware']}. Runtime: {results['runtime_seconds'] / 60:.1f} min "
             f"({results['date']}).", "",
             "Each value: mean over the seeds ± half their range. ↑ higher is better, ↓ lower is better.", "",
             "## The generator's held-out faces", "",
             f"N = {c['n']} held-out faces ({c['faces']}). Conditions: the seg map, sketch and caption of the "
             "same held-out face.", ""]
    lines += table_lines(results["rows"])
    r = results["real"]
    lines.append(f"| {r['label']} | {r['seg']:.3f} | {r['sketch']:.3f} | {r['text']:.3f} | {r['mean']:.3f} | "
                 f"{r['fd']:.2f} | ({r['diversity_between_faces']:.2f} between faces) | 0 | 0 |")
    lines += ["", claim_line(results["claim"])]
    if "drawn" in results:
        d = results["drawn"]
        lines += ["", "## The drawn set", "",
                  f"N = {d['n']} hand-made inputs ({c['drawn']}): maps painted with round-brush ellipses and "
                  "blobs, sketches of thick wobbly polylines, both on the page's 256 px canvases at positions and "
                  "proportions of their own and read by the page's readers; captions in other words and sentence "
                  "shapes than the generator's. Made by a procedure no training run uses. Sketch F1 is scored "
                  "against the strokes' centre lines. There are no real images, so no real-faces row.", ""]
        lines += table_lines(d["rows"]) + ["", claim_line(d["claim"])]
    lines += ["", "## Text accuracy per attribute", "",
              "The text acc column of the product (default r) and of the text expert alone, split by attribute: "
              "the share of the cases whose caption mentions the attribute that the classifier reads right in "
              "the image (n: those cases; n/a: no caption mentions it). Weighted by n, each column gives the "
              "row's text acc above.", ""]
    lines += attribute_lines(results)
    s, sug = results["sweep"], results["suggested_reliability"]
    lines += ["", "## Reliability sweep", "",
              f"Product of experts on the first {s['n']} faces, seed {s['seed']}; one reliability varies from "
              f"{min(s['points']):g} to {max(s['points']):g}, the others stay at the defaults.", "",
              "![sweep](sweep.png)", "",
              "| varied | r | seg mIoU | sketch F1 | text acc | mean |", "| --- | --- | --- | --- | --- | --- |"]
    for modality, curve in s["curves"].items():
        for p in curve:
            lines.append(f"| {modality} | {p['r']:g} | {p['seg']:.3f} | {p['sketch']:.3f} | {p['text']:.3f} | "
                         f"{p['mean']:.3f} |")
    rel = ", ".join(f"{k}={v:g}" for k, v in sug["reliability"].items())
    lines += ["", f"Suggested default reliabilities: **{rel}** (mean consistency {sug['mean_consistency']:.3f}). "
              f"Criterion: {sug['criterion']}.", ""]
    if "final_stage" in results:
        lines += ["## The final-image stage", "",
                  "The product's samples (default r, first seed) upscaled 32 -> 128 px by the super-resolution "
                  "network and by bicubic resampling. Grain: local colour spread (RGB RMS from the mean of the "
                  f"region's pixels in a {superres.GRAIN_WINDOW} px window) inside the segmenter's regions, "
                  f"{superres.GRAIN_MARGIN} px away from their edges; region spread: the same from each region's "
                  "mean colour (high also where a region is drawn in two colours); edge sharpness: gradient "
                  "magnitude across their boundaries; consistencies on the output brought back to 32 px.", ""]
        lines += final_stage_lines(results["final_stage"]) + [""]
    if "solvers" in results:
        lines += ["## Steps and solver", "",
                  "The product (default r and guidance options, first seed) with each sampler and step count.", ""]
        lines += solver_lines(results["solvers"]) + [""]
    lines += ["## Metrics", "",
              "- seg mIoU: the segmenter's map of the output against the input map, mean IoU over the classes "
              "present in either, averaged over images.",
              "- sketch F1: Canny edges of the output (RGB, thresholds 100/200) against the input sketch, one-to-one "
              "matching within 2 pixels (BSDS-style), averaged over images.",
              "- text acc: the attribute classifier's prediction of each attribute the caption mentions, pooled "
              "over (face, attribute) pairs; per attribute: over the faces whose caption mentions it.",
              "- FD: Fréchet distance between the classifier's features of the outputs (per seed) and of "
              f"{c['fd_reference']}. It grows as N shrinks; the real-faces row is the floor at this N.",
              "- diversity: mean feature distance between the outputs of different seeds for the same conditions "
              "(for scale, the real-faces row gives the mean distance between two different faces).",
              "- net rows / image: network rows evaluated per image over all steps; s / image: sampling wall time "
              "per image, faces batched (text encoding and scoring excluded).", "",
              "Metric networks (held-out accuracy on clean real faces): "
              + "; ".join(f"{net} {json.dumps({k: v for k, v in (acc or {}).items() if not isinstance(v, dict)})}"
                          for net, acc in c["metric_nets"].items()) + "."]
    path.write_text("\n".join(lines) + "\n")


def plot_sweep(results: dict, path: Path) -> None:
    """Text accuracy, seg mIoU (and sketch F1, mean) against each swept reliability."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = results["sweep"]["curves"]
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.8), sharey=True)
    for ax, (modality, curve) in zip(np.atleast_1d(axes), curves.items()):
        r = [p["r"] for p in curve]
        ax.plot(r, [p["text"] for p in curve], "o-", label="text attribute accuracy")
        ax.plot(r, [p["seg"] for p in curve], "s-", label="seg mIoU")
        ax.plot(r, [p["sketch"] for p in curve], "^:", label="sketch edge F1", alpha=0.7)
        ax.plot(r, [p["mean"] for p in curve], "k--", label="mean of the three", alpha=0.7)
        fixed = ", ".join(f"{k}={v:g}" for k, v in results["sweep"]["fixed"][modality].items())
        ax.set_title(f"{modality} reliability varied ({fixed})", fontsize=10)
        ax.set_xlabel(f"r_{modality}")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("consistency")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.suptitle(f"Reliability sweep: product of experts, {results['sweep']['n']} held-out faces", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def solver_arg(text: str) -> tuple[str, int]:
    sampler, _, steps = text.partition(":")
    if sampler not in SAMPLERS or not steps.isdigit():
        raise argparse.ArgumentTypeError(f"expected SAMPLER:STEPS with a sampler from {', '.join(SAMPLERS)}, "
                                         f"got {text!r}")
    return sampler, check_steps(int(steps))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, help=f"held-out faces (default {FULL_N}; --quick: {QUICK_N})")
    ap.add_argument("--out", default="reports")
    ap.add_argument("--quick", action="store_true", help=f"N = {QUICK_N} and sweep points {QUICK_SWEEP}")
    ap.add_argument("--drawn-n", type=int, help=f"cases of the drawn set (default {DRAWN_N}; --quick: {QUICK_N}; "
                                                "0: skip it)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="sampler seeds (the spread is over these)")
    ap.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    ap.add_argument("--sampler", default=DEFAULTS["sampler"])
    ap.add_argument("--guidance", type=float, default=DEFAULTS["guidance"])
    ap.add_argument("--batch", type=int, default=50, help="faces per sampler call")
    ap.add_argument("--sweep-points", type=float, nargs="+", help=f"reliabilities (default {FULL_SWEEP})")
    ap.add_argument("--sweep-n", type=int, default=0, help="faces in the sweep (default: min(N, 150))")
    ap.add_argument("--fd-reference", type=int, default=2000, help="real faces for the Fréchet reference")
    ap.add_argument("--faces-dir", default=str(FACES_DIR))
    ap.add_argument("--metrics-dir", default=str(metric_nets.METRICS_DIR))
    ap.add_argument("--superres-file", default=str(final_stage.SUPERRES_FILE), help="the final-image stage's weights ('': none)")
    ap.add_argument("--quiet", dest="verbose", action="store_false")
    ap.add_argument("--remedies", nargs="*", default=[], choices=sorted(REMEDIES),
                    help="also rows of the product with these guidance options (combine.REMEDIES)")
    ap.add_argument("--solvers", nargs="*", type=solver_arg, default=[], metavar="SAMPLER:STEPS",
                    help="also the product with these samplers and step counts, e.g. dpmpp:8 unipc:12")
    ap.add_argument("--final-stage-only", action="store_true", help="only the final-image stage's section "
                    "(written to final_stage.json and printed)")
    args = ap.parse_args(argv)
    args.n = args.n or (QUICK_N if args.quick else FULL_N)
    if args.drawn_n is None:
        args.drawn_n = QUICK_N if args.quick else DRAWN_N
    args.sweep_points = list(args.sweep_points or (QUICK_SWEEP if args.quick else FULL_SWEEP))
    args.sweep_n = args.sweep_n or min(args.n, 150)
    if args.n < 2:
        ap.error("--n must be at least 2 (the Fréchet distance needs a covariance)")
    args.command = "python -m unite_demo.evaluate " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    results = evaluate(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.final_stage_only:
        (out / "final_stage.json").write_text(json.dumps(results, indent=2) + "\n")
        print("\n".join(final_stage_lines(results["final_stage"])))
        print(f"wrote {out / 'final_stage.json'} in {results['runtime_seconds'] / 60:.1f} min")
        return results
    (out / "eval.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, out / "eval.md")
    plot_sweep(results, out / "sweep.png")
    print(f"wrote {out / 'eval.md'}, {out / 'eval.json'} and {out / 'sweep.png'} "
          f"in {results['runtime_seconds'] / 60:.1f} min")
    return results


if __name__ == "__main__":
    main()
