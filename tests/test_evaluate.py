"""The evaluation end to end on tiny experts and tiny metric networks trained here (N = 4, two
steps): the table, the JSON, the sweep plot, determinism; and the claim check on hand-made rows."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from unite_demo.limits import DEFAULTS
from unite_demo.worlds.faces.evaluation import evaluate, metric_nets
from unite_demo.worlds.faces.training import train

TINY = ["--size", "32", "--channels", "16", "32", "32", "--batch", "4", "--log-every", "1", "--save-every", "1000",
        "--warmup", "2", "--steps", "2"]
ROWS = {"seg", "sketch", "text", "poe_default", "poe_ones", "joint", "uncond"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    experts, judges = root / "experts", root / "metrics"
    for expert in ("seg", "sketch", "text", "joint"):
        train.main(["--expert", expert, "--out", str(root / "ck" / expert), *TINY])
        train.main(["--expert", expert, "--export", "--out", str(root / "ck" / expert), "--assets", str(experts)])
    for net in metric_nets.NETS:
        metric_nets.main(["--net", net, "--steps", "3", "--faces", "16", "--heldout", "8", "--batch", "8",
                          "--out", str(judges)])
    return root, experts, judges


def _run(tiny, out, *extra):
    root, experts, judges = tiny
    return evaluate.main(["--n", "4", "--drawn-n", "3", "--steps", "2", "--seeds", "0", "1", "--sweep-points", "0", "3",
                          "--fd-reference", "16", "--batch", "3", "--faces-dir", str(experts),
                          "--metrics-dir", str(judges), "--out", str(root / out), "--quiet",
                          "--superres-file", "", *extra])  # the tiny experts alone unless extra says otherwise


@pytest.mark.slow
def test_metric_net_training_writes_self_describing_fp16_safetensors(tiny):
    _, _, judges = tiny
    for net in metric_nets.NETS:
        path = judges / f"{net}.safetensors"
        assert all(v.dtype == torch.float16 for v in load_file(str(path)).values())
        config = metric_nets.read_config(path)
        assert config.net == net and config.extra["steps"] == 3 and "metrics" in config.extra["split"]
        assert set(config.extra["heldout_accuracy"]) >= ({"pixel_accuracy", "miou"} if net == "segmenter"
                                                          else {"attribute_accuracy", "mentioned_accuracy"})
        assert path.with_suffix(".md").read_text().startswith(f"# {net}")
    images = np.zeros((2, 32, 32, 3), np.uint8)
    assert metric_nets.segment(metric_nets.load_net("segmenter", judges), images).shape == (2, 32, 32)
    feats, preds = metric_nets.classify(metric_nets.load_net("classifier", judges), images)
    assert feats.shape == (2, 64) and set(preds[0]) == set(metric_nets.ATTRIBUTE_NAMES)


@pytest.mark.slow
def test_small_evaluation_writes_table_json_and_sweep_and_is_deterministic(tiny):
    root = tiny[0]
    res = _run(tiny, "a")
    md = (root / "a" / "eval.md").read_text()
    assert "N = 4 held-out faces" in md and f"2 {DEFAULTS['sampler']} steps" in md and "Hardware:" in md and "Runtime:" in md
    assert "| row | seg mIoU ↑ | sketch F1 ↑ | text acc ↑ | mean ↑ | FD ↓ |" in md
    # Held-out: table head, rows, real faces; drawn: table head, rows; per attribute: head, a row per
    # attribute; sweep head, 4 points.
    assert md.count("\n| ") == 2 + len(ROWS) + 1 + 2 + len(ROWS) + 2 + len(evaluate.ATTRIBUTE_NAMES) + 2 + 4
    assert "## Text accuracy per attribute" in md and ("| attribute | product, held-out ↑ | text expert alone, "
                                                       "held-out ↑ | product, drawn ↑ | text expert alone, drawn ↑ "
                                                       "| n (held-out / drawn) |") in md
    assert all(f"\n| {a} | " in md for a in evaluate.ATTRIBUTE_NAMES)
    assert "N = 3 hand-made inputs" in md and md.count("Mean consistency of the product") == 2
    assert "python -m unite_demo.evaluate --n 4" in md and "Suggested default reliabilities" in md
    assert (root / "a" / "sweep.png").read_bytes()[:4] == b"\x89PNG"

    data = json.loads((root / "a" / "eval.json").read_text())
    assert set(data["rows"]) == ROWS and data["config"]["n"] == 4 and data["config"]["steps"] == 2
    for row in data["rows"].values():
        for key in ("seg", "sketch", "text", "mean"):
            m = row["metrics"][key]
            assert len(m["per_seed"]) == 2 and 0 <= m["mean"] <= 1 and m["spread"] >= 0
        assert row["metrics"]["fd"]["mean"] >= 0 and row["diversity"] >= 0
    # Network rows per image over the 2 steps: [cond, null] per expert; N + 1 per shared net; nulls only.
    rows_per_image = {k: v["cost"]["rows_per_image"] for k, v in data["rows"].items()}
    assert rows_per_image == {"seg": 4, "sketch": 4, "text": 4, "poe_default": 12, "poe_ones": 12, "joint": 4,
                              "uncond": 6}
    assert data["rows"]["poe_default"]["reliability"] == {k: float(v) for k, v in DEFAULTS["reliability"].items()}
    sweep = data["sweep"]
    assert [p["r"] for p in sweep["curves"]["text"]] == [0.0, 3.0] == [p["r"] for p in sweep["curves"]["seg"]]
    assert sweep["curves"]["text"][0]["reliability"]["text"] == 0.0
    best = data["suggested_reliability"]
    assert best["reliability"] in [p["reliability"] for c in sweep["curves"].values() for p in c]
    assert best["mean_consistency"] == max(p["mean"] for c in sweep["curves"].values() for p in c)
    assert 0 <= data["real"]["mean"] <= 1 and set(data["claim"]) >= {"holds", "beats_every_single"}
    drawn = data["drawn"]
    assert drawn["n"] == 3 and set(drawn["rows"]) == ROWS and set(drawn["claim"]["modality_shares"]) == {
        "seg", "sketch", "text"}
    assert drawn["rows"]["seg"]["metrics"] != data["rows"]["seg"]["metrics"]  # other inputs, other scores
    for rows in (data["rows"], drawn["rows"]):  # per attribute, weighted by n: each seed's text acc
        for row in rows.values():
            by = row["text_by_attribute"]
            assert list(by) == list(evaluate.ATTRIBUTE_NAMES)
            total = sum(m["n"] for m in by.values())
            assert total > 0
            for k, text in enumerate(row["metrics"]["text"]["per_seed"]):
                assert sum(m["n"] * m["per_seed"][k] for m in by.values() if m["n"]) / total == pytest.approx(text)
            assert all((m["mean"] is None) == (m["n"] == 0) for m in by.values())
    assert res["rows"]["seg"]["metrics"] == data["rows"]["seg"]["metrics"]
    fd = data["rows"]["uncond"]["metrics"]["fd"]["per_seed"]
    assert fd[0] != fd[1]  # another seed, other samples

    again = _run(tiny, "b")
    for key in ROWS:
        assert again["rows"][key]["metrics"] == res["rows"][key]["metrics"], key
        assert again["drawn"]["rows"][key]["metrics"] == res["drawn"]["rows"][key]["metrics"], key
    assert again["sweep"]["curves"] == res["sweep"]["curves"]


def test_text_accuracy_per_attribute_counts_only_the_captions_that_mention_it(monkeypatch):
    """Judge.score on faces whose captions never mention the background and a classifier that reads
    glasses wrong on the first two faces: per attribute, n and the accuracy over those n; weighted by n,
    the pooled text accuracy; the background gets no number, in the JSON nor in the table."""
    import dataclasses

    from unite_demo.worlds.faces.data import ATTRIBUTES, SPLITS, make_face

    faces = [make_face(SPLITS["heldout"].start + k, 32) for k in range(6)]
    mentions = [("glasses", "hair_colour"), ("glasses", "beard", "eye_colour"), ("glasses",), ("beard",),
                ("skin_tone", "hair_style", "expression"), ()]
    faces = [dataclasses.replace(f, mentioned=m) for f, m in zip(faces, mentions)]

    def read(attributes, wrong):
        return {a: next(v for v in ATTRIBUTES[a] if v != attributes[a]) if a in wrong else attributes[a]
                for a in ATTRIBUTES}

    preds = [read(f.attributes, {"glasses"} if k < 2 else {"background"}) for k, f in enumerate(faces)]
    monkeypatch.setattr(metric_nets, "segment", lambda net, images: np.zeros(images.shape[:3], np.uint8))
    monkeypatch.setattr(metric_nets, "classify", lambda net, images: (np.zeros((len(images), 4)), preds))
    judge = object.__new__(evaluate.Judge)
    judge.segmenter = judge.classifier = None
    scores = judge.score(np.stack([f.image for f in faces]), faces)

    by = scores.text_by_attribute()
    assert list(by) == list(evaluate.ATTRIBUTE_NAMES)
    assert {a: m["n"] for a, m in by.items()} == {"hair_colour": 1, "hair_style": 1, "eye_colour": 1, "skin_tone": 1,
                                                  "expression": 1, "glasses": 3, "beard": 2, "background": 0}
    assert by["glasses"]["text"] == pytest.approx(1 / 3) and by["beard"]["text"] == 1.0
    assert by["background"]["text"] is None  # read wrong four times, never mentioned: no number
    text = scores.consistency()["text"]
    assert text == pytest.approx(8 / 10)  # 10 mentions, glasses wrong twice
    assert sum(m["n"] * m["text"] for m in by.values() if m["n"]) / sum(m["n"] for m in by.values()) == \
        pytest.approx(text)
    assert scores.head(2).text_by_attribute()["glasses"] == {"n": 2, "text": 0.0}

    seeds = evaluate.summarise_by_attribute([by, {**by, "glasses": {"n": 3, "text": 1.0}}])
    assert seeds["glasses"] == {"n": 3, "mean": pytest.approx(2 / 3), "spread": pytest.approx(1 / 3),
                                "per_seed": [pytest.approx(1 / 3), 1.0]}
    assert seeds["background"] == {"n": 0, "mean": None, "spread": None, "per_seed": [None, None]}

    rows = {k: {"text_by_attribute": seeds} for k in ("seg", "text", "poe_default")}
    lines = evaluate.attribute_lines({"rows": rows})
    assert lines[0] == "| attribute | product, held-out ↑ | text expert alone, held-out ↑ | n (held-out) |"
    assert len(lines) == 2 + len(ATTRIBUTES) and [ln.split(" | ")[0] for ln in lines[2:]] == [
        f"| {a}" for a in ATTRIBUTES]
    assert lines[2 + 5] == "| glasses | 0.667 ± 0.333 | 0.667 ± 0.333 | 3 |"
    assert lines[-1] == "| background | n/a | n/a | 0 |"


def _rows(means: dict, spread: float = 0.01, modality: float = 0.8, poe_modality: float = 0.8) -> dict:
    rows = {}
    for k, v in means.items():
        metrics = {"mean": {"mean": v, "spread": spread}}
        for m in ("seg", "sketch", "text"):
            metrics[m] = {"mean": poe_modality if k == "poe_default" else modality}
        rows[k] = {"metrics": metrics}
    return rows


def test_claim_needs_every_single_expert_beaten_and_95_percent_of_joint():
    ok = evaluate.claim(_rows({"seg": 0.5, "sketch": 0.6, "text": 0.4, "poe_default": 0.72, "joint": 0.75}))
    assert ok["holds"] and ok["beats_every_single"] and ok["share_of_joint"] == pytest.approx(0.72 / 0.75)
    assert ok["margin_over_best_single"] == pytest.approx(0.12) and ok["margin_exceeds_seed_spread"]
    close = evaluate.claim(_rows({"seg": 0.5, "sketch": 0.71, "text": 0.4, "poe_default": 0.72, "joint": 0.75}))
    assert close["holds"] and not close["margin_exceeds_seed_spread"]  # 0.01 ahead, seeds spread 0.02
    below_single = evaluate.claim(_rows({"seg": 0.5, "sketch": 0.73, "text": 0.4, "poe_default": 0.72,
                                         "joint": 0.75}))
    assert not below_single["holds"] and not below_single["beats_every_single"]
    far_from_joint = evaluate.claim(_rows({"seg": 0.5, "sketch": 0.6, "text": 0.4, "poe_default": 0.7,
                                           "joint": 0.75}))  # 93% of the joint model
    assert far_from_joint["beats_every_single"] and not far_from_joint["holds"]


def test_claim_compares_each_consistency_with_that_modalitys_expert():
    kept = evaluate.claim(_rows({"seg": 0.5, "sketch": 0.6, "text": 0.4, "poe_default": 0.7}, poe_modality=0.77))
    assert kept["modality_shares"] == {k: pytest.approx(0.77 / 0.8) for k in ("seg", "sketch", "text")}
    assert kept["keeps_each_modality"] and kept["holds"]  # no joint row: nothing to reach
    lost = evaluate.claim(_rows({"seg": 0.5, "sketch": 0.6, "text": 0.4, "poe_default": 0.7}, poe_modality=0.75))
    assert not lost["keeps_each_modality"]  # 94% of the modality's expert


def test_spread_is_half_the_range_across_seeds():
    assert evaluate.spread([0.5, 0.7]) == pytest.approx(0.1)
    assert evaluate.spread([0.5]) == 0.0
    s = evaluate.summarise([{"seg": 0.5}, {"seg": 0.7}])
    assert s["seg"]["mean"] == pytest.approx(0.6) and s["seg"]["per_seed"] == [0.5, 0.7]


@pytest.mark.slow
def test_the_final_stage_the_guidance_remedies_and_the_solvers_get_their_rows(tiny, tmp_path):
    """With a final-image stage: its section (grain, edge sharpness, consistencies at 32 px, PSNR on
    renders); with --remedies: a product row per guidance option, each making other images; with
    --solvers: the product's consistencies and FD at each sampler and step count, in the report."""
    from unite_demo.worlds.faces import final_stage

    net = final_stage.SuperRes(final_stage.SRConfig(channels=8, blocks=1))
    net.config.extra = {"steps": 0}
    final_stage.save_net(net.eval(), tmp_path / "sr.safetensors")
    data = _run(tiny, "fs", "--superres-file", str(tmp_path / "sr.safetensors"), "--remedies", "plain", "apg",
                "--solvers", "unipc:2", "dpmpp:3")
    section = data["final_stage"]
    assert set(section["sets"]) == {"heldout", "drawn"} and section["renders"]["faces"] == 4
    for m in section["sets"].values():
        assert m["grain"]["superres"] >= 0 and m["edge_sharpness"]["bicubic"] >= 0
        assert set(m["consistency"]["superres"]) == {"seg", "sketch", "text", "mean"}
        assert m["region_spread"]["bicubic"] >= 0
    assert {"poe_plain", "poe_apg"} <= set(data["rows"])
    means = {k: data["rows"][k]["metrics"]["mean"]["per_seed"] for k in ("poe_default", "poe_plain", "poe_apg")}
    assert means["poe_plain"] != means["poe_default"] or means["poe_apg"] != means["poe_default"]
    assert "sigma in (0.28, 5.42]" in data["rows"]["poe_default"]["label"]  # the default options: the interval
    for which in ("heldout", "drawn"):
        got = data["solvers"][which]
        assert [(r["sampler"], r["steps"]) for r in got] == [("unipc", 2), ("dpmpp", 3)]
        assert all(0 <= r["mean"] <= 1 and r["fd"] > 0 for r in got) and got[0]["mean"] != got[1]["mean"]
    md = (tiny[0] / "fs" / "eval.md").read_text()
    assert "## Steps and solver" in md and "| unipc | 2 |" in md and "region spread" in md
    md = (tiny[0] / "fs" / "eval.md").read_text()
    assert "## The final-image stage" in md and "adaptive projected guidance" in md


def test_a_solver_argument_is_a_sampler_and_a_step_count():
    import argparse

    assert evaluate.solver_arg("unipc:12") == ("unipc", 12)
    for bad in ("euler:8", "dpmpp", "dpmpp:x"):
        with pytest.raises(argparse.ArgumentTypeError, match="SAMPLER:STEPS with a sampler from dpmpp, unipc, ddim"):
            evaluate.solver_arg(bad)
    with pytest.raises(ValueError, match="steps must be a whole number from 1 to 200"):
        evaluate.solver_arg("dpmpp:0")
