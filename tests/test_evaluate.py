"""The evaluation end to end on tiny experts and tiny metric networks trained here (N = 4, two
steps): the table, the JSON, the sweep plot, determinism; and the claim check on hand-made rows."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from unite_demo import evaluate, metric_nets, train
from unite_demo.world import DEFAULTS

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
    # Held-out: table head, rows, real faces; drawn: table head, rows; sweep head, 4 points.
    assert md.count("\n| ") == 2 + len(ROWS) + 1 + 2 + len(ROWS) + 2 + 4
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
    assert res["rows"]["seg"]["metrics"] == data["rows"]["seg"]["metrics"]
    fd = data["rows"]["uncond"]["metrics"]["fd"]["per_seed"]
    assert fd[0] != fd[1]  # another seed, other samples

    again = _run(tiny, "b")
    for key in ROWS:
        assert again["rows"][key]["metrics"] == res["rows"][key]["metrics"], key
        assert again["drawn"]["rows"][key]["metrics"] == res["drawn"]["rows"][key]["metrics"], key
    assert again["sweep"]["curves"] == res["sweep"]["curves"]


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
    from unite_demo import superres

    net = superres.SuperRes(superres.SRConfig(channels=8, blocks=1))
    net.config.extra = {"steps": 0}
    superres.save_net(net.eval(), tmp_path / "sr.safetensors")
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
